//! The LeForge Agent Runtime server: HTTP API, configuration, start-up and shutdown.
//!
//! This is the only crate that knows the concrete backends (SQLite/PostgreSQL store, LLM
//! adapters, WASM and container hosts); it wires them behind the core traits and exposes
//! them over `/api/v1`. Business rules live in core and the backend crates, not in handlers.

// `ApiError` holds the envelope (code, message, details) and exists only on a failed request,
// where its size costs nothing measurable; boxing it would touch every handler for no gain.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod error;
pub mod forgehook_cli;
pub mod forgehooks;
pub mod mcp;
pub mod mcp_servers;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod run_cli;
pub mod runner;
pub mod script_library;
pub mod state;
pub mod telemetry;
pub mod ui;

pub use app::router;
pub use error::ApiError;
pub use state::AppState;
