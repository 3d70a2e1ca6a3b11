//! `/api/v1/llm`: which providers this server can use and their model lists. Keys are never
//! shown, only whether a provider is configured.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use leforge_core::llm::{LlmError, ModelInfo, ProviderInfo};
use leforge_core::{Caller, Provider};

use crate::auth::Auth;
use crate::envelope::Ok;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn require_key(caller: &Caller) -> ApiResult<()> {
    if *caller == Caller::Anonymous {
        return Err(ApiError::unauthorized("an API key is required"));
    }
    Result::Ok(())
}

/// Every provider: whether it is configured, its base URL and default model.
#[utoipa::path(get, path = "/api/v1/llm/providers", tag = "llm",
    responses((status = 200, description = "Providers", body = [ProviderInfo])),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn providers(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Ok<Vec<ProviderInfo>>> {
    require_key(&caller)?;
    Result::Ok(Ok::new(state.llm.provider_infos()))
}

/// The models a provider offers, where it has a model list.
#[utoipa::path(get, path = "/api/v1/llm/models/{provider}", tag = "llm",
    params(("provider" = String, Path, description = "Provider name, e.g. openai")),
    responses((status = 200, description = "Models", body = [ModelInfo]),
              (status = 400, description = "The provider is not configured"),
              (status = 404, description = "Unknown provider, or it has no model list"),
              (status = 502, description = "The provider failed")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn models(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(provider): Path<String>,
) -> ApiResult<Ok<Vec<ModelInfo>>> {
    require_key(&caller)?;
    let provider = Provider::parse(&provider).ok_or_else(|| {
        let all: Vec<_> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        ApiError::not_found(format!(
            "unknown provider '{provider}'; known: {}",
            all.join(", ")
        ))
    })?;
    let models = state.llm.list_models(provider).await.map_err(llm_error)?;
    Result::Ok(Ok::new(models))
}

/// Maps a provider failure for routes that talk to a provider directly.
pub fn llm_error(e: LlmError) -> ApiError {
    match &e {
        LlmError::NotConfigured { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "PROVIDER_NOT_CONFIGURED",
            e.to_string(),
        ),
        LlmError::Unsupported { .. } => ApiError::not_found(e.to_string()),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "PROVIDER_ERROR", e.to_string()),
    }
}
