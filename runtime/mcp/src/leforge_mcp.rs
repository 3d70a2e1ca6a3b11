//! MCP, the protocol assistants and agent platforms use to find and call tools, over its
//! Streamable HTTP transport.
//!
//! [`server`] serves tools at one endpoint: what the tools are, who may see them and what a
//! call does is the embedder's ([`McpTools`]); the transport (sessions, SSE, protocol
//! version negotiation, `Origin` checks, cancellation) is the official SDK's, `rmcp`.

pub mod server;

pub use server::{service, CallContext, McpServerConfig, McpService, McpTools, Progress};
