//! MCP, the protocol assistants and agent platforms use to find and call tools, over its
//! Streamable HTTP transport.
//!
//! [`client`] connects to other MCP servers and calls their tools for our agents.
//!
//! [`server`] serves tools at one endpoint: what the tools are, who may see them and what a
//! call does is the embedder's ([`McpTools`]); the transport (sessions, SSE, protocol
//! version negotiation, `Origin` checks, cancellation) is the official SDK's, `rmcp`.

pub mod client;
pub mod server;

pub use server::{service, CallContext, McpServerConfig, McpService, McpTools, Progress};
