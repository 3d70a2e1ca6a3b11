//! `/api/v1/api-keys` (admin): create, list and revoke keys. A key's plain text is returned
//! only by the request that created it.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use leforge_core::{ApiKey, ApiKeyScope, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{generate_key, new_api_key, Admin};
use crate::envelope::{ApiJson, ApiQuery, Ok};
use crate::error::{ApiError, ApiResult};
use crate::routes::PageParams;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label, 1–255 characters.
    pub name: Option<String>,
    /// `admin` or `invoke`.
    pub scope: Option<String>,
}

/// The one response that contains the plain key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scope: ApiKeyScope,
    /// The key itself. Store it now: it is not shown again.
    pub key: String,
    pub created_at: DateTime<Utc>,
}

/// List API keys (admin), revoked ones included, newest first.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(PageParams),
    responses((status = 200, description = "Keys (never their plain text)", body = [ApiKey])),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Ok<Vec<ApiKey>>> {
    let page = state.store.list_api_keys(params.to_request()?).await?;
    Result::Ok(Ok::page(page))
}

/// Create an API key (admin). The plain key is in this response only.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    responses((status = 201, description = "Created", body = CreatedApiKey),
              (status = 400, description = "Invalid fields")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<Ok<CreatedApiKey>> {
    let mut errors = Vec::new();
    let name = req.name.unwrap_or_default().trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        errors.push(FieldError::new("name", "is required, 1–255 characters"));
    }
    let scope = match req.scope.as_deref() {
        Some(s) => ApiKeyScope::parse(s),
        None => None,
    };
    if scope.is_none() {
        errors.push(FieldError::new("scope", "must be 'admin' or 'invoke'"));
    }
    let Some(scope) = scope.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation("invalid API key request", errors));
    };
    let plain = generate_key();
    let key = state
        .store
        .create_api_key(new_api_key(&name, scope, &plain))
        .await?;
    tracing::info!(key_id = %key.id, scope = scope.as_str(), "API key created");
    Result::Ok(Ok::created(CreatedApiKey {
        id: key.id,
        name: key.name,
        prefix: key.prefix,
        scope: key.scope,
        key: plain,
        created_at: key.created_at,
    }))
}

/// Revoke an API key (admin). It stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, description = "Revoked", body = ApiKey),
              (status = 404, description = "No such active key")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Ok<ApiKey>> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::not_found(format!("API key '{id}' not found")))?;
    let key = state.store.revoke_api_key(id).await?;
    tracing::info!(key_id = %key.id, "API key revoked");
    Result::Ok(Ok::new(key))
}
