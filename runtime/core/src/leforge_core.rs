//! Domain types, error enums and the traits that every backend implements.
//!
//! This crate owns the vocabulary of the runtime: agents, runs, steps, API keys, and the
//! contracts (`Store`, `LlmClient`, `ToolExecutor`, `HookRunner`) through which the agent
//! loop talks to concrete backends. It must not depend on any backend crate, on axum, or on
//! a database driver: everything else depends on it, never the other way round.

pub mod access;
pub mod agent;
pub mod api_key;
pub mod forgehook;
pub mod hook;
pub mod installed;
pub mod llm;
pub mod mcp;
pub mod page;
pub mod run;
pub mod script;
pub mod store;
pub mod tool;
pub mod validation;

pub use access::Caller;
pub use agent::{Agent, AgentConfig, AgentConfigPatch, AgentPatch, NewAgent, Provider, ToolMode};
pub use api_key::{ApiKey, ApiKeyScope, NewApiKey};
pub use hook::{HookError, HookRunner};
pub use llm::{
    ChatRequest, ChatResponse, LlmClient, LlmError, Message, ModelInfo, ProviderInfo, StopReason,
    ToolCall, ToolResult, ToolSpec, Usage,
};
pub use page::{Page, PageRequest};
pub use run::{
    CallbackAttempt, NewRun, Run, RunFilter, RunMode, RunStart, RunStatus, RunStep, RunUpdate,
};
pub use script::{NewScript, Script, ScriptPatch};
pub use store::{AgentVisibility, PoolStats, Store, StoreError};
pub use validation::FieldError;

/// An error's message followed by its causes (those not already part of it), so that an
/// HTTP client's generic "error sending request" reads with the reason it failed.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !message.contains(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        source = s.source();
    }
    message
}
