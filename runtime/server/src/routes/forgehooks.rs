//! `/api/v1/forgehooks`: install (upload a `.wasm`, or a container/gateway manifest as
//! JSON), list, read, enable/disable, configure, remove, and invoke an endpoint directly.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use chrono::{DateTime, Utc};
use leforge_container::ContainerState;
use leforge_core::forgehook::{Capabilities, Manifest};
use leforge_core::installed::InstalledForgehook;
use leforge_core::tool::{ToolError, ToolExecutor, ToolOutput};
use leforge_core::Caller;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::{Admin, Auth};
use crate::envelope::{body_rejection, parse_json, ApiJson, Ok};
use crate::error::{ApiError, ApiResult};
use crate::forgehooks::{Forgehooks, InstallOutcome};
use crate::state::AppState;

/// An endpoint as clients see it, with the tool name the LLM sees.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub name: String,
    /// `<forgehook-id>__<endpoint>`, the name agents' models call it by.
    pub tool_name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[schema(value_type = Object)]
    pub output_schema: Value,
    /// Container and gateway: the HTTP method and path called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `missing` when the manifest gave no schema (a LeForge upstream manifest) and a
    /// permissive one stands in: the model gets no guidance on the input's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'static str>,
}

/// The container of a container ForgeHook, as this server sees it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerView {
    pub state: ContainerState,
    /// Restarts after the container ended on its own (idle stops do not count).
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// An installed ForgeHook. Secret configuration values are masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForgehookView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub runtime: String,
    pub category: String,
    pub tags: Vec<String>,
    pub author: String,
    pub enabled: bool,
    /// Installed by the server on first start.
    pub builtin: bool,
    pub endpoints: Vec<EndpointView>,
    pub capabilities: Capabilities,
    pub config: BTreeMap<String, String>,
    pub wasm_sha256: Option<String>,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by an install that replaced an older version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<String>,
    /// Container ForgeHooks only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerView>,
}

impl ForgehookView {
    pub fn from_installed(hook: &InstalledForgehook) -> Self {
        let m = &hook.manifest;
        ForgehookView {
            id: hook.id.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            runtime: m.runtime.as_str().to_string(),
            category: m.category.clone(),
            tags: m.tags.clone(),
            author: m.author.clone(),
            enabled: hook.enabled,
            builtin: hook.builtin,
            endpoints: m
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    name: e.name.clone(),
                    tool_name: m.tool_name(&e.name),
                    description: e.description.clone(),
                    input_schema: e.input_schema.clone(),
                    output_schema: e.output_schema.clone(),
                    method: m.runtime.is_http().then(|| e.http_method()),
                    path: e.path.clone(),
                    schema: e.schema_missing.then_some("missing"),
                })
                .collect(),
            capabilities: m.capabilities.clone(),
            config: hook.public_config(),
            wasm_sha256: hook.wasm_sha256.clone(),
            installed_at: hook.installed_at,
            updated_at: hook.updated_at,
            upgraded_from: None,
            container: None,
        }
    }

    /// What a caller that is not an admin may see: configuration values (even unmasked
    /// ones name internal hosts and accounts) and container errors (which quote engine and
    /// network details) are left out.
    pub fn for_caller(hook: &InstalledForgehook, registry: &Forgehooks, caller: &Caller) -> Self {
        let mut view = Self::with_status(hook, registry);
        if !caller.is_admin() {
            view.config.clear();
            if let Some(c) = view.container.as_mut() {
                c.last_error = None;
            }
        }
        view
    }

    /// With the live container state, for container ForgeHooks.
    pub fn with_status(hook: &InstalledForgehook, registry: &Forgehooks) -> Self {
        let mut view = Self::from_installed(hook);
        view.container = registry.container_status(hook).map(|s| ContainerView {
            state: s.state,
            restarts: s.restarts,
            last_error: s.last_error,
        });
        view
    }
}

/// The output of a direct invocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvokeResult {
    #[schema(value_type = Object)]
    pub output: Value,
    pub duration_ms: u64,
}

/// List installed ForgeHooks with their endpoints.
#[utoipa::path(get, path = "/api/v1/forgehooks", tag = "forgehooks",
    responses((status = 200, description = "Installed ForgeHooks, by id", body = [ForgehookView])),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    // Anyone may read the catalogue, but a key that is presented must be valid.
    Auth(caller): Auth,
) -> ApiResult<Ok<Vec<ForgehookView>>> {
    let hooks = state.forgehooks.list().await?;
    let views: Vec<_> = hooks
        .iter()
        .map(|h| ForgehookView::for_caller(h, &state.forgehooks, &caller))
        .collect();
    Result::Ok(Ok::page(leforge_core::Page {
        items: views,
        next_cursor: None,
    }))
}

/// Read one installed ForgeHook.
#[utoipa::path(get, path = "/api/v1/forgehooks/{id}", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id")),
    responses((status = 200, description = "The ForgeHook", body = ForgehookView),
              (status = 404, description = "Not installed")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Ok<ForgehookView>> {
    let hook = state.forgehooks.get(&id).await?;
    Result::Ok(Ok::new(ForgehookView::for_caller(
        &hook,
        &state.forgehooks,
        &caller,
    )))
}

/// What was posted: a component's bytes and an optional manifest that replaces
/// `describe()`, or the manifest of a container or gateway ForgeHook.
enum Upload {
    Wasm {
        wasm: Bytes,
        manifest: Option<Manifest>,
    },
    Http(Manifest),
}

async fn read_upload(req: Request) -> ApiResult<Upload> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match mime.as_str() {
        "application/wasm" | "application/octet-stream" => {
            let wasm = Bytes::from_request(req, &())
                .await
                .map_err(body_rejection)?;
            Result::Ok(Upload::Wasm {
                wasm,
                manifest: None,
            })
        }
        "application/json" => {
            let body = Bytes::from_request(req, &())
                .await
                .map_err(body_rejection)?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::invalid_field("body", "is not UTF-8"))?;
            // Manifest::from_json also accepts LeForge upstream's container and gateway
            // manifests (names derived from paths, schemas marked missing).
            let manifest = Manifest::from_json(text).map_err(|e| {
                ApiError::validation(
                    format!("invalid ForgeHook manifest: {}", e.message),
                    vec![e],
                )
            })?;
            Result::Ok(Upload::Http(manifest))
        }
        "multipart/form-data" => {
            let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| {
                ApiError::invalid_field(
                    "body",
                    format!("is not valid multipart: {}", e.body_text()),
                )
            })?;
            let mut wasm = None;
            let mut manifest = None;
            while let Some(field) = multipart.next_field().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PAYLOAD_TOO_LARGE",
                        "the upload is larger than this server accepts",
                    )
                } else {
                    ApiError::invalid_field(
                        "body",
                        format!("is not valid multipart: {}", e.body_text()),
                    )
                }
            })? {
                let name = field.name().unwrap_or("").to_string();
                let data = field.bytes().await.map_err(|e| {
                    ApiError::invalid_field(&name, format!("could not be read: {}", e.body_text()))
                })?;
                match name.as_str() {
                    "wasm" => wasm = Some(data),
                    "manifest" => {
                        let m: Manifest = parse_json(&data).map_err(|mut e| {
                            e.message = format!("manifest part: {}", e.message);
                            e
                        })?;
                        manifest = Some(m);
                    }
                    other => {
                        return Err(ApiError::invalid_field(
                            other,
                            "is not an expected part (expected 'wasm' and optionally 'manifest')",
                        ))
                    }
                }
            }
            let wasm = wasm.ok_or_else(|| ApiError::invalid_field("wasm", "part is required"))?;
            Result::Ok(Upload::Wasm { wasm, manifest })
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "upload the component as Content-Type: application/wasm, or as multipart/form-data \
             with a 'wasm' part and an optional 'manifest' part; post a container or gateway \
             manifest as application/json",
        )),
    }
}

/// Install a ForgeHook (admin): the raw `.wasm` (`Content-Type: application/wasm`) or
/// multipart with a `wasm` part and an optional `manifest` part overriding `describe()`; or
/// a container or gateway ForgeHook's manifest (`Content-Type: application/json`, ours or
/// LeForge upstream's). A container is created and, for `start: on_install`, started and
/// health-checked before the answer. The same id with a higher version upgrades; the same
/// or a lower version is a conflict.
#[utoipa::path(post, path = "/api/v1/forgehooks", tag = "forgehooks",
    request_body(description = "A WebAssembly component of the leforge:forgehook world (application/wasm, or multipart), or a container or gateway ForgeHook manifest (application/json)",
        content(
        (Vec<u8> = "application/wasm"),
        (Manifest = "application/json"))),
    responses((status = 201, description = "Installed or upgraded", body = ForgehookView),
              (status = 400, description = "Not a valid component of our world, or an invalid manifest"),
              (status = 409, description = "This version (or a newer one) is installed"),
              (status = 413, description = "Too large"),
              (status = 415, description = "Wrong content type"),
              (status = 422, description = "FORGEHOOK_START_FAILED: the container did not become healthy"),
              (status = 503, description = "DOCKER_UNAVAILABLE: no Docker engine for a container ForgeHook")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn install(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    req: Request,
) -> ApiResult<Ok<ForgehookView>> {
    let (hook, outcome) = match read_upload(req).await? {
        Upload::Wasm { wasm, manifest } => {
            if wasm.is_empty() {
                return Err(ApiError::invalid_field("wasm", "is empty"));
            }
            state
                .forgehooks
                .install_wasm(&wasm, manifest, false)
                .await?
        }
        Upload::Http(manifest) => state.forgehooks.install_http(manifest).await?,
    };
    let mut view = ForgehookView::with_status(&hook, &state.forgehooks);
    if let InstallOutcome::Upgraded { from } = outcome {
        view.upgraded_from = Some(from);
    }
    Result::Ok(Ok::created(view))
}

/// Remove a ForgeHook (admin).
#[utoipa::path(delete, path = "/api/v1/forgehooks/{id}", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id")),
    responses((status = 200, description = "Removed", body = ForgehookView),
              (status = 404, description = "Not installed")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Ok<ForgehookView>> {
    let removed = state.forgehooks.uninstall(&id).await?;
    Result::Ok(Ok::new(ForgehookView::from_installed(&removed)))
}

/// Enable a ForgeHook (admin).
#[utoipa::path(post, path = "/api/v1/forgehooks/{id}/enable", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id")),
    responses((status = 200, description = "Enabled", body = ForgehookView),
              (status = 404, description = "Not installed")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Ok<ForgehookView>> {
    let hook = state.forgehooks.set_enabled(&id, true).await?;
    Result::Ok(Ok::new(ForgehookView::with_status(
        &hook,
        &state.forgehooks,
    )))
}

/// Disable a ForgeHook (admin): agents can no longer call it.
#[utoipa::path(post, path = "/api/v1/forgehooks/{id}/disable", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id")),
    responses((status = 200, description = "Disabled", body = ForgehookView),
              (status = 404, description = "Not installed")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Ok<ForgehookView>> {
    let hook = state.forgehooks.set_enabled(&id, false).await?;
    Result::Ok(Ok::new(ForgehookView::with_status(
        &hook,
        &state.forgehooks,
    )))
}

/// Replace a ForgeHook's configuration (admin): an object of string values whose keys the
/// manifest declares. Secrets are never returned; sending a secret's mask keeps its value.
#[utoipa::path(put, path = "/api/v1/forgehooks/{id}/config", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id")),
    request_body = BTreeMap<String, String>,
    responses((status = 200, description = "Configured", body = ForgehookView),
              (status = 400, description = "Undeclared or missing keys"),
              (status = 404, description = "Not installed")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn configure(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
    ApiJson(config): ApiJson<BTreeMap<String, String>>,
) -> ApiResult<Ok<ForgehookView>> {
    let hook = state.forgehooks.set_config(&id, config).await?;
    Result::Ok(Ok::new(ForgehookView::with_status(
        &hook,
        &state.forgehooks,
    )))
}

/// Maps a tool failure to the API: the input's fault is 400, a guest's misbehaviour 422
/// (never 5xx: the server is fine), a timeout 504.
pub fn tool_error(e: ToolError) -> ApiError {
    let code = e.code().as_str();
    let status = match &e {
        ToolError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        ToolError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ToolError::NotFound { .. } => StatusCode::NOT_FOUND,
        ToolError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ToolError::Internal { .. } => return ApiError::internal(e),
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let details = match &e {
        ToolError::InvalidInput { problems } => Some(json!(problems)),
        ToolError::Guest { code, .. } => Some(json!({"guest_code": code})),
        _ => None,
    };
    let err = ApiError::new(status, code, e.to_string());
    match details {
        Some(d) => err.with_details(d),
        None => err,
    }
}

/// Call one endpoint of a ForgeHook directly (admin only). A direct call bypasses every
/// agent's tool list, hooks and limits, and gateway ForgeHooks carry admin-configured
/// secrets in their headers, so invoke keys and anonymous callers get 403 `FORBIDDEN`.
#[utoipa::path(post, path = "/api/v1/forgehooks/{id}/invoke/{endpoint}", tag = "forgehooks",
    params(("id" = String, Path, description = "ForgeHook id"),
           ("endpoint" = String, Path, description = "Endpoint name")),
    request_body(content = Object, description = "The endpoint's input JSON"),
    responses((status = 200, description = "The endpoint's output", body = InvokeResult),
              (status = 400, description = "INVALID_INPUT: the input failed the endpoint's schema"),
              (status = 403, description = "FORBIDDEN: not an admin key"),
              (status = 404, description = "No such ForgeHook or endpoint"),
              (status = 422, description = "GUEST_ERROR, TRAP, OUT_OF_MEMORY, OUTPUT_TOO_LARGE"),
              (status = 504, description = "TIMEOUT")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn invoke(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, endpoint)): Path<(String, String)>,
    ApiJson(input): ApiJson<Value>,
) -> ApiResult<Ok<InvokeResult>> {
    if !caller.is_admin() {
        return Err(ApiError::forbidden(
            "invoking a ForgeHook directly needs an admin API key; run an agent instead",
        ));
    }
    let ToolOutput {
        output,
        duration_ms,
    } = state
        .forgehooks
        .invoke(&id, &endpoint, input)
        .await
        .map_err(tool_error)?;
    Result::Ok(Ok::new(InvokeResult {
        output,
        duration_ms,
    }))
}
