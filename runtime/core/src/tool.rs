//! The contract between the agent loop and whatever executes a tool (a WASM or container
//! ForgeHook). The loop only ever sees this trait and these error codes, so a new runtime
//! plugs in without the loop (or the HTTP error mapping) changing.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What a successful tool call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolOutput {
    /// The endpoint's output JSON.
    pub output: Value,
    /// Wall-clock time of the call, including instantiation.
    pub duration_ms: u64,
}

/// The stable error codes of a failed tool call. The wire names are the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ToolErrorCode {
    /// The call ran past its time limit (CPU or wall clock, including time in host calls).
    Timeout,
    /// The guest tried to grow its memory past its cap.
    OutOfMemory,
    /// The output exceeded `max_output_bytes`.
    OutputTooLarge,
    /// The guest crashed (panic, unreachable, stack overflow, ...).
    Trap,
    /// The guest returned its own `forgehook-error`.
    GuestError,
    /// The input failed the endpoint's input schema (or the guest rejected it as such).
    InvalidInput,
    /// The guest returned something that is not JSON.
    InvalidOutput,
    /// No such ForgeHook (loaded and enabled) or endpoint.
    NotFound,
    /// The executor cannot run the call right now (too many concurrent calls, a container
    /// that is not running, a gateway that does not answer); worth retrying.
    Unavailable,
    /// A failure of the host itself, not of the guest.
    Internal,
}

impl ToolErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolErrorCode::Timeout => "TIMEOUT",
            ToolErrorCode::OutOfMemory => "OUT_OF_MEMORY",
            ToolErrorCode::OutputTooLarge => "OUTPUT_TOO_LARGE",
            ToolErrorCode::Trap => "TRAP",
            ToolErrorCode::GuestError => "GUEST_ERROR",
            ToolErrorCode::InvalidInput => "INVALID_INPUT",
            ToolErrorCode::InvalidOutput => "INVALID_OUTPUT",
            ToolErrorCode::NotFound => "NOT_FOUND",
            ToolErrorCode::Unavailable => "UNAVAILABLE",
            ToolErrorCode::Internal => "INTERNAL",
        }
    }

    /// Whether retrying the same call may succeed (used by `retry_on_error`). Guest
    /// misbehaviour is deterministic for the same input, so it is not retried.
    pub fn is_transient(self) -> bool {
        matches!(self, ToolErrorCode::Timeout | ToolErrorCode::Unavailable)
    }
}

impl std::fmt::Display for ToolErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed tool call. Messages are safe to show to the LLM and to API clients: they never
/// contain host paths or secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("the call exceeded its time limit of {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("the call exceeded its memory limit of {limit_mb} MiB")]
    OutOfMemory { limit_mb: u64 },
    #[error("the output ({size} bytes) exceeds the limit of {limit} bytes")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("the ForgeHook crashed: {message}")]
    Trap { message: String },
    /// `code` is the guest's own code (e.g. `UPSTREAM_FAILED`).
    #[error("{code}: {message}")]
    Guest { code: String, message: String },
    /// Each entry names one problem, with the JSON path of the offending value.
    #[error("invalid input: {}", problems.join("; "))]
    InvalidInput { problems: Vec<String> },
    #[error("the ForgeHook returned invalid output: {message}")]
    InvalidOutput { message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    Unavailable { message: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

/// Longest error message taken from a ForgeHook (a guest's error, a container's error body):
/// enough to explain, short enough for a prompt, a step row and a response.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;
/// Longest error code taken from a guest.
pub const MAX_ERROR_CODE_CHARS: usize = 64;

/// The first `max` characters of `text`, with `…` when something was cut.
pub fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

impl ToolError {
    /// A guest's own error, with its code and message capped: a third-party ForgeHook's
    /// words go into the step, the next model request and the response.
    pub fn guest(code: &str, message: &str) -> ToolError {
        ToolError::Guest {
            code: capped(code, MAX_ERROR_CODE_CHARS),
            message: capped(message, MAX_ERROR_MESSAGE_CHARS),
        }
    }

    pub fn code(&self) -> ToolErrorCode {
        match self {
            ToolError::Timeout { .. } => ToolErrorCode::Timeout,
            ToolError::OutOfMemory { .. } => ToolErrorCode::OutOfMemory,
            ToolError::OutputTooLarge { .. } => ToolErrorCode::OutputTooLarge,
            ToolError::Trap { .. } => ToolErrorCode::Trap,
            ToolError::Guest { .. } => ToolErrorCode::GuestError,
            ToolError::InvalidInput { .. } => ToolErrorCode::InvalidInput,
            ToolError::InvalidOutput { .. } => ToolErrorCode::InvalidOutput,
            ToolError::NotFound { .. } => ToolErrorCode::NotFound,
            ToolError::Unavailable { .. } => ToolErrorCode::Unavailable,
            ToolError::Internal { .. } => ToolErrorCode::Internal,
        }
    }

    /// The guest's own error code, for `GUEST_ERROR`.
    pub fn guest_code(&self) -> Option<&str> {
        match self {
            ToolError::Guest { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ToolError::NotFound {
            message: message.into(),
        }
    }

    pub fn invalid_input(problem: impl Into<String>) -> Self {
        ToolError::InvalidInput {
            problems: vec![problem.into()],
        }
    }

    /// The outcome of checking input against an endpoint's schema, from the validator's
    /// errors as (instance path, error): the first 20, each with its path when it has one.
    /// One wording for every kind of tool (WASM, container, gateway, MCP).
    pub fn check_schema<E: std::fmt::Display>(
        errors: impl IntoIterator<Item = (String, E)>,
    ) -> Result<(), ToolError> {
        let problems: Vec<String> = errors
            .into_iter()
            .take(20)
            .map(|(path, e)| {
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("at {path}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ToolError::InvalidInput { problems })
        }
    }
}

/// Executes tools for the agent loop (and the `invoke` route). Implemented by the WASM host
/// and, later, the container runtime; a registry in front of them dispatches by ForgeHook id.
#[async_trait]
pub trait ToolExecutor: Send + Sync + 'static {
    /// Calls `endpoint` of the ForgeHook `forgehook_id` with `input`, under that ForgeHook's
    /// limits and with its per-install configuration.
    async fn invoke(
        &self,
        forgehook_id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_wire_names() {
        let e = ToolError::OutputTooLarge { size: 10, limit: 5 };
        assert_eq!(e.code().as_str(), "OUTPUT_TOO_LARGE");
        assert_eq!(
            serde_json::to_value(ToolErrorCode::OutOfMemory).unwrap(),
            "OUT_OF_MEMORY"
        );
        let g = ToolError::Guest {
            code: "UPSTREAM".into(),
            message: "down".into(),
        };
        assert_eq!(g.code(), ToolErrorCode::GuestError);
        assert_eq!(g.guest_code(), Some("UPSTREAM"));
        assert_eq!(g.to_string(), "UPSTREAM: down");
        assert!(ToolErrorCode::Timeout.is_transient());
        assert!(!ToolErrorCode::Trap.is_transient());
    }

    #[test]
    fn guest_errors_are_capped() {
        let huge = "é".repeat(1_000_000);
        let ToolError::Guest { code, message } = ToolError::guest(&huge, &huge) else {
            unreachable!()
        };
        assert_eq!(code.chars().count(), MAX_ERROR_CODE_CHARS + 1);
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
        assert_eq!(capped("short", 10), "short");
    }
}

/// Why a ForgeHook an agent lists cannot be offered to its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnavailableTool {
    pub id: String,
    /// `not installed` or `disabled`.
    pub reason: String,
}

/// What the agent loop needs to know about tools before a run: the manifests of the
/// ForgeHooks an agent lists. Implemented by the server's registry.
#[async_trait]
pub trait ToolCatalog: Send + Sync + 'static {
    /// The manifests of `ids`, in order; an error lists every id that cannot be used.
    async fn resolve(
        &self,
        ids: &[String],
    ) -> Result<Vec<std::sync::Arc<crate::forgehook::Manifest>>, Vec<UnavailableTool>>;
}
