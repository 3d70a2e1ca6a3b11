//! `ApiError`: the one error type of the HTTP layer, rendered as the failure envelope.
//! Internal details are logged with the request id and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leforge_core::{FieldError, StoreError};
use serde_json::{json, Value};

use crate::envelope::{current_request_id, json_response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Logged, never sent.
    internal: Option<String>,
    /// Seconds for the `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            internal: None,
            retry_after: None,
        }
    }

    /// 429 `RATE_LIMITED` with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn validation(message: impl Into<String>, errors: Vec<FieldError>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
            .with_details(json!(errors))
    }

    /// `invalid <what>: <field> <message>; …`, with every problem in `details`.
    pub fn invalid_fields(what: &str, errors: Vec<FieldError>) -> Self {
        let summary = errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::validation(format!("invalid {what}: {summary}"), errors)
    }

    /// One invalid field, e.g. a query parameter.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::validation(
            format!("{field} {message}"),
            vec![FieldError::new(field, message)],
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    /// Detail for the log only (e.g. which socket could not be reached).
    pub fn with_internal(mut self, detail: impl std::fmt::Display) -> Self {
        self.internal = Some(detail.to_string());
        self
    }

    /// A failure that is our fault: the client gets a generic message and the request id.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An internal error occurred. Quote the request id when reporting it.",
        );
        e.internal = Some(detail.to_string());
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity } => ApiError::not_found(format!("{entity} not found")),
            StoreError::Conflict { entity, field } => {
                ApiError::conflict(format!("an {entity} with this {field} already exists"))
                    .with_details(json!([{"field": field, "message": "already in use"}]))
            }
            StoreError::InvalidState(message) => ApiError::conflict(message),
            other @ (StoreError::Database(_) | StoreError::Corrupt(_)) => ApiError::internal(other),
        }
    }
}

/// Container and gateway ForgeHook management: no engine is 503 `DOCKER_UNAVAILABLE` (the
/// rest of the server keeps working), the request's fault is a 4xx naming the field.
impl From<leforge_container::ContainerError> for ApiError {
    fn from(e: leforge_container::ContainerError) -> Self {
        use leforge_container::ContainerError as C;
        match &e {
            C::DockerUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "DOCKER_UNAVAILABLE",
                "no Docker engine is reachable; container ForgeHooks cannot be installed or started",
            )
            .with_internal(e.to_string()),
            C::InvalidManifest(_) | C::InvalidConfig(_) | C::ImageUnavailable { .. } => {
                ApiError::validation(e.to_string(), e.field_errors())
            }
            C::StartFailed { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "FORGEHOOK_START_FAILED",
                e.to_string(),
            ),
            C::NotFound(_) => ApiError::not_found(e.to_string()),
            C::Docker(_) => ApiError::internal(e),
        }
    }
}

impl ApiError {
    /// Logs what the caller is not told (the internal detail), and every server error:
    /// once, by whatever turns the error into an answer (a response, a JSON-RPC error).
    pub fn log(&self) {
        let request_id = current_request_id();
        if let Some(internal) = &self.internal {
            tracing::error!(request_id = %request_id, code = self.code, error = %internal, "request failed");
        } else if self.status.is_server_error() {
            tracing::error!(request_id = %request_id, code = self.code, message = %self.message, "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        self.log();
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut resp = json_response(
            self.status,
            json!({"success": false, "error": error, "request_id": request_id}),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
