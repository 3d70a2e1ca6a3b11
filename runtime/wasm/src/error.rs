//! Errors of the host's set-up and of installing or loading a component. Call failures are
//! `leforge_core::tool::ToolError`, shared with every other tool runtime.

use leforge_core::FieldError;

/// The host could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("wasm engine: {0}")]
    Engine(String),
    #[error("artifact cache at {path}: {source}")]
    Cache {
        path: String,
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("invalid host configuration: {0}")]
    Config(String),
}

/// A component could not be installed (or loaded from the cache). Every variant except
/// `Cache` and `Internal` is the uploader's fault (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the component is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("not a valid WebAssembly component: {0}")]
    Malformed(String),
    /// The component does not fit the `leforge:forgehook` world; the message names the
    /// missing import or export.
    #[error("the component does not match the leforge:forgehook@0.1.0 world: {0}")]
    WorldMismatch(String),
    /// `describe` trapped, timed out or returned something that is not a manifest.
    #[error("describe() failed: {0}")]
    Describe(String),
    #[error("the manifest is invalid: {}", summary(.0))]
    InvalidManifest(Vec<FieldError>),
    /// Start-up: neither a precompiled artifact nor the original `.wasm` is in the cache.
    #[error("component {sha256} is not in the artifact cache; install it again")]
    NotCached { sha256: String },
    #[error("artifact cache: {0}")]
    Cache(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl InstallError {
    /// Whether the request (the uploaded component or manifest) is at fault, as opposed to
    /// the server.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            InstallError::Cache(_) | InstallError::Internal(_) | InstallError::NotCached { .. }
        )
    }

    /// Field-level problems, for the API's validation error envelope.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            InstallError::InvalidManifest(errors) => errors,
            _ => &[],
        }
    }
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
