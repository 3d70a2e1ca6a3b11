//! Errors of installing and managing container and gateway ForgeHooks. Call errors are
//! `leforge_core::tool::ToolError`s, so the agent loop sees one vocabulary for all runtimes.

use leforge_core::FieldError;

/// A failed install, uninstall, reconcile or start of a container ForgeHook.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContainerError {
    /// No Docker engine answers at `DOCKER_HOST` (or the default socket). The server maps
    /// this to 503 `DOCKER_UNAVAILABLE`; everything not needing Docker keeps working.
    #[error("no Docker engine is reachable: {0}")]
    DockerUnavailable(String),
    /// The manifest is not a valid container manifest.
    #[error("invalid container manifest: {}", summarize(.0))]
    InvalidManifest(Vec<FieldError>),
    /// Required environment variables have no value in the manifest nor the configuration.
    #[error("invalid configuration: {}", summarize(.0))]
    InvalidConfig(Vec<FieldError>),
    /// The image is not present and could not be pulled.
    #[error("image {image} is not available: {message}")]
    ImageUnavailable { image: String, message: String },
    /// The container was created but did not start or never passed its health check.
    #[error("ForgeHook '{id}' did not start: {message}")]
    StartFailed { id: String, message: String },
    #[error("ForgeHook '{0}' is not loaded in the container runtime")]
    NotFound(String),
    /// Docker answered with an error we did not expect.
    #[error("Docker error: {0}")]
    Docker(String),
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ContainerError {
    /// Whether the server should answer 503 `DOCKER_UNAVAILABLE`.
    pub fn is_docker_unavailable(&self) -> bool {
        matches!(self, ContainerError::DockerUnavailable(_))
    }

    /// Whether the request (manifest, configuration, image name) is at fault rather than the
    /// server: the server maps these to 4xx.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ContainerError::InvalidManifest(_)
                | ContainerError::InvalidConfig(_)
                | ContainerError::ImageUnavailable { .. }
                | ContainerError::StartFailed { .. }
                | ContainerError::NotFound(_)
        )
    }

    /// Field errors to show next to the fields, for a validation response.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ContainerError::InvalidManifest(e) | ContainerError::InvalidConfig(e) => e.clone(),
            ContainerError::ImageUnavailable { .. } => {
                vec![FieldError::new("image", self.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// Sorts bollard's errors into "Docker is not there" and "Docker said no": only the first
/// must turn into `DOCKER_UNAVAILABLE`.
pub(crate) fn from_bollard(e: bollard::errors::Error) -> ContainerError {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => ContainerError::Docker(format!("{status_code}: {message}")),
        B::HyperLegacyError { .. }
        | B::IOError { .. }
        | B::SocketNotFoundError(_)
        | B::RequestTimeoutError
        | B::HyperResponseError { .. }
        | B::UnsupportedURISchemeError { .. } => ContainerError::DockerUnavailable(e.to_string()),
        other => ContainerError::Docker(other.to_string()),
    }
}

/// The status code of a Docker error response, to tell "no such container" (404) and
/// "name in use" (409) apart from real failures.
pub(crate) fn docker_status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
