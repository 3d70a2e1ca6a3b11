//! `/api/v1/scripts` (admin): Rhai hook scripts — create, list, read, update, delete, and
//! run one hook of a stored script with given arguments (`/test`, for the admin UI).
//!
//! Sources are compiled on save, so a script with a syntax error never reaches a run; the
//! error's line and column go back in `details`. A script an agent (or the global hook list)
//! uses cannot be deleted: its runs would fail at start.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use leforge_core::hook::{HookError, HookLog, HookPoint};
use leforge_core::script::{
    validate_script_description, validate_script_name, validate_script_source,
};
use leforge_core::{FieldError, NewScript, Script, ScriptPatch};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Admin;
use crate::envelope::{ApiJson, ApiQuery, Ok};
use crate::error::{ApiError, ApiResult};
use crate::routes::PageParams;
use crate::state::AppState;

/// The code of a refused delete (or rename) of a script in use.
pub const SCRIPT_IN_USE: &str = "SCRIPT_IN_USE";

/// Body of `POST /api/v1/scripts`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScriptRequest {
    /// 1–100 of `A-Z a-z 0-9 _ - .`, unique; other scripts `import` it by this name.
    pub name: Option<String>,
    /// Rhai source defining any of `on_run_start(ctx)`, `before_tool(ctx, call)`,
    /// `after_tool(ctx, call, result)`, `on_run_end(ctx, output)`.
    pub source: Option<String>,
    pub description: Option<String>,
}

/// Body of `PUT /api/v1/scripts/{id_or_name}`: absent fields keep their value,
/// `"description": null` clears it. Every update increments `version`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateScriptRequest {
    pub name: Option<String>,
    pub source: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/scripts/{id_or_name}/test`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestScriptRequest {
    /// `on_run_start`, `before_tool`, `after_tool` or `on_run_end`.
    pub hook: Option<String>,
    /// The hook's parameters: `[ctx]`, `[ctx, call]`, `[ctx, call, result]` or `[ctx, output]`.
    #[schema(value_type = Vec<Object>)]
    pub args: Option<Vec<Value>>,
}

/// Why a tested hook failed: the code a run would fail with, and where.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptTestError {
    /// `HOOK_REJECTED` (the script threw), `HOOK_LIMIT_EXCEEDED` or `HOOK_ERROR`.
    pub code: String,
    pub message: String,
    pub script: Option<String>,
    /// 1-based, for runtime errors the engine can place.
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// The limit, for `HOOK_LIMIT_EXCEEDED` (e.g. `max_operations`, `time`).
    pub limit: Option<String>,
    /// The thrown reason, for `HOOK_REJECTED`.
    pub reason: Option<String>,
}

/// What one tested hook call did. `forgehook()` is not available in tests.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptTestResult {
    pub hook: String,
    /// False when the call failed; `error` says how.
    pub ok: bool,
    /// What the hook returned (`null` for `()`).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<ScriptTestError>,
    pub logs: Vec<HookLog>,
    pub duration_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedScript {
    pub id: Uuid,
    pub deleted: bool,
}

fn invalid(errors: Vec<Value>) -> ApiError {
    let summary = errors
        .iter()
        .map(|e| {
            let field = e["field"].as_str().unwrap_or_default();
            match (e["line"].as_u64(), e["column"].as_u64()) {
                (Some(l), Some(c)) => format!("{field} line {l}, column {c}: {}", e["message"]),
                _ => format!("{field} {}", e["message"].as_str().unwrap_or_default()),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        format!("invalid script: {summary}"),
    )
    .with_details(Value::Array(errors))
}

fn field_errors(errors: Vec<FieldError>) -> Vec<Value> {
    errors.into_iter().map(|e| json!(e)).collect()
}

/// Compiles `source` as on save; each problem becomes `{field: "source", line, column,
/// message}`.
fn compile_errors(state: &AppState, source: &str) -> Vec<Value> {
    match state.hooks.compile(source) {
        Result::Ok(()) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|p| json!({"field": "source", "line": p.line, "column": p.column, "message": p.message}))
            .collect(),
    }
}

async fn find(state: &AppState, id_or_name: &str) -> ApiResult<Script> {
    state
        .store
        .find_script(id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("script '{id_or_name}' not found")))
}

/// Whether the configured global hooks name this script (by id or by name).
fn is_global(state: &AppState, script: &Script) -> bool {
    let id = script.id.to_string();
    state
        .config
        .global_hooks
        .iter()
        .any(|g| *g == script.name || *g == id)
}

fn global_in_use(script: &Script, action: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        SCRIPT_IN_USE,
        format!(
            "script '{}' is a global hook (LEFORGE_GLOBAL_HOOKS); remove it from the server's \
             global hooks before you {action} it",
            script.name
        ),
    )
    .with_details(json!([{"global_hooks": true, "script": script.name}]))
}

/// List scripts, newest first.
#[utoipa::path(get, path = "/api/v1/scripts", tag = "scripts", params(PageParams),
    responses((status = 200, description = "Scripts, newest first", body = [Script])),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Ok<Vec<Script>>> {
    let page = state.store.list_scripts(params.to_request()?).await?;
    Result::Ok(Ok::page(page))
}

/// Create a script; the source is compiled first.
#[utoipa::path(post, path = "/api/v1/scripts", tag = "scripts", request_body = CreateScriptRequest,
    responses((status = 201, description = "Created", body = Script),
              (status = 400, description = "Invalid fields; a syntax error as {field: source, line, column, message} in error.details"),
              (status = 409, description = "Name already in use")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(req): ApiJson<CreateScriptRequest>,
) -> ApiResult<Ok<Script>> {
    let mut errors = Vec::new();
    let name = req.name.unwrap_or_default();
    validate_script_name(&name, &mut errors);
    validate_script_description(req.description.as_deref(), &mut errors);
    let mut problems = match &req.source {
        None => {
            errors.push(FieldError::new("source", "is required"));
            Vec::new()
        }
        Some(source) => {
            validate_script_source(source, &mut errors);
            Vec::new()
        }
    };
    let mut details = field_errors(errors);
    if details.is_empty() {
        problems = compile_errors(&state, req.source.as_deref().unwrap_or_default());
    }
    details.extend(problems);
    if !details.is_empty() {
        return Err(invalid(details));
    }
    let script = state
        .store
        .create_script(NewScript {
            name,
            description: req.description,
            source: req.source.unwrap_or_default(),
        })
        .await?;
    tracing::info!(script_id = %script.id, name = %script.name, "script created");
    Result::Ok(Ok::created(script))
}

/// Read a script by id or name.
#[utoipa::path(get, path = "/api/v1/scripts/{id_or_name}", tag = "scripts",
    params(("id_or_name" = String, Path, description = "Script id or name")),
    responses((status = 200, description = "The script", body = Script),
              (status = 404, description = "No such script")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id_or_name): Path<String>,
) -> ApiResult<Ok<Script>> {
    Result::Ok(Ok::new(find(&state, &id_or_name).await?))
}

/// Update a script; a new source is compiled first. Every update increments `version`.
#[utoipa::path(put, path = "/api/v1/scripts/{id_or_name}", tag = "scripts",
    params(("id_or_name" = String, Path, description = "Script id or name")),
    request_body = UpdateScriptRequest,
    responses((status = 200, description = "Updated", body = Script),
              (status = 400, description = "Invalid fields or a syntax error (line, column in error.details)"),
              (status = 404, description = "No such script"),
              (status = 409, description = "Name already in use, or renaming a global hook")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id_or_name): Path<String>,
    ApiJson(req): ApiJson<UpdateScriptRequest>,
) -> ApiResult<Ok<Script>> {
    let current = find(&state, &id_or_name).await?;
    let mut errors = Vec::new();
    if let Some(name) = &req.name {
        validate_script_name(name, &mut errors);
    }
    validate_script_description(
        req.description.as_ref().and_then(|d| d.as_deref()),
        &mut errors,
    );
    if let Some(source) = &req.source {
        validate_script_source(source, &mut errors);
    }
    let mut details = field_errors(errors);
    if details.is_empty() {
        if let Some(source) = &req.source {
            details.extend(compile_errors(&state, source));
        }
    }
    if !details.is_empty() {
        return Err(invalid(details));
    }
    let renamed = req.name.as_ref().is_some_and(|n| *n != current.name);
    // The global list names scripts as configured; a rename would leave it dangling and
    // fail every run at start.
    if renamed && state.config.global_hooks.contains(&current.name) {
        return Err(global_in_use(&current, "rename"));
    }
    let script = state
        .store
        .update_script(
            current.id,
            ScriptPatch {
                name: req.name,
                description: req.description,
                source: req.source,
            },
        )
        .await?;
    tracing::info!(script_id = %script.id, version = script.version, "script updated");
    Result::Ok(Ok::new(script))
}

/// Delete a script. Refused (409 `SCRIPT_IN_USE`, the agents in `details`) while an agent or
/// the global hook list uses it.
#[utoipa::path(delete, path = "/api/v1/scripts/{id_or_name}", tag = "scripts",
    params(("id_or_name" = String, Path, description = "Script id or name")),
    responses((status = 200, description = "Deleted", body = DeletedScript),
              (status = 404, description = "No such script"),
              (status = 409, description = "Used by agents (listed in error.details) or a global hook")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id_or_name): Path<String>,
) -> ApiResult<Ok<DeletedScript>> {
    let script = find(&state, &id_or_name).await?;
    if is_global(&state, &script) {
        return Err(global_in_use(&script, "delete"));
    }
    let agents = state.store.agents_using_script(script.id).await?;
    if !agents.is_empty() {
        let names: Vec<_> = agents.iter().map(|a| format!("'{}'", a.name)).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            SCRIPT_IN_USE,
            format!(
                "script '{}' is used by agent(s) {}; remove it from their hooks first",
                script.name,
                names.join(", ")
            ),
        )
        .with_details(Value::Array(
            agents
                .iter()
                .map(|a| json!({"agent_id": a.id, "agent_name": a.name, "agent_slug": a.slug}))
                .collect(),
        )));
    }
    let deleted = state.store.delete_script(script.id).await?;
    tracing::info!(script_id = %deleted.id, "script deleted");
    Result::Ok(Ok::new(DeletedScript {
        id: deleted.id,
        deleted: true,
    }))
}

/// Run one hook of a stored script with the given arguments, under the same limits as in a
/// run. A failing hook is still a 200: `ok` is false and `error` has its code and position.
#[utoipa::path(post, path = "/api/v1/scripts/{id_or_name}/test", tag = "scripts",
    params(("id_or_name" = String, Path, description = "Script id or name")),
    request_body = TestScriptRequest,
    responses((status = 200, description = "What the hook returned or how it failed", body = ScriptTestResult),
              (status = 400, description = "Unknown hook or wrong number of arguments"),
              (status = 404, description = "No such script")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(id_or_name): Path<String>,
    ApiJson(req): ApiJson<TestScriptRequest>,
) -> ApiResult<Ok<ScriptTestResult>> {
    let script = find(&state, &id_or_name).await?;
    let mut errors = Vec::new();
    let hook = req.hook.unwrap_or_default();
    let point = HookPoint::parse(&hook);
    if point.is_none() {
        errors.push(FieldError::new(
            "hook",
            "must be one of on_run_start, before_tool, after_tool, on_run_end",
        ));
    }
    let args = req.args.unwrap_or_default();
    if let Some(point) = point {
        if args.len() != point.arity() {
            errors.push(FieldError::new(
                "args",
                format!(
                    "{} takes {} argument(s), {} given",
                    point.signature(),
                    point.arity(),
                    args.len()
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(invalid(field_errors(errors)));
    }
    let tested = state
        .hooks
        .test_hook(&script.to_hook_script(), &hook, args, None)
        .await;
    let (ok, result, error) = match tested.outcome {
        Result::Ok(v) => (true, Some(v), None),
        Err(e) => (false, None, Some(test_error(&e))),
    };
    Result::Ok(Ok::new(ScriptTestResult {
        hook,
        ok,
        result,
        error,
        logs: tested.logs,
        duration_ms: tested.duration_ms,
    }))
}

fn test_error(e: &HookError) -> ScriptTestError {
    let mut out = ScriptTestError {
        code: e.code().to_string(),
        message: e.to_string(),
        script: e.script().map(str::to_string),
        line: None,
        column: None,
        limit: None,
        reason: None,
    };
    match e {
        HookError::Runtime { line, column, .. } => {
            out.line = *line;
            out.column = *column;
        }
        HookError::LimitExceeded { limit, .. } => out.limit = Some(limit.clone()),
        HookError::Rejected { reason, .. } => out.reason = Some(reason.clone()),
        HookError::Internal { .. } => {}
    }
    out
}
