//! Liveness and readiness, without authentication.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::envelope::{current_request_id, json_response};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database does not answer.
    pub status: &'static str,
    /// `postgres` or `sqlite`.
    pub database: &'static str,
    pub version: &'static str,
    /// `available` or `unavailable`: whether a Docker engine answers. Without one only
    /// container ForgeHooks are affected, so it does not make the server `degraded`.
    pub docker: &'static str,
}

/// Health of the server and its database.
///
/// The fields are also repeated at the top level of the body, where load balancers and
/// uptime checks look for `status`.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "Healthy", body = Health),
              (status = 503, description = "Database unreachable", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Response {
    // An engine that hangs must not make the health check itself slow: after 2 s it
    // counts as unavailable.
    let (db_ok, docker_ok) = tokio::join!(async { state.store.ping().await.is_ok() }, async {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            state.forgehooks.docker_available(),
        )
        .await
        .unwrap_or(false)
    });
    let health = Health {
        status: if db_ok { "ok" } else { "degraded" },
        database: state.store.backend(),
        version: env!("CARGO_PKG_VERSION"),
        docker: if docker_ok {
            "available"
        } else {
            "unavailable"
        },
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        json!({
            "success": db_ok,
            "data": &health,
            "status": health.status,
            "database": health.database,
            "version": health.version,
            "docker": health.docker,
            "request_id": current_request_id(),
        }),
    )
    .into_response()
}
