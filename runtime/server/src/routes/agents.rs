//! `/api/v1/agents`: create, list, read, update and soft-delete agents.

use axum::extract::{Path, State};
use leforge_core::agent::{
    slugify, validate_model, validate_name, validate_system_prompt, validate_tools, DEFAULT_MODEL,
    DEFAULT_PROVIDER,
};
use leforge_core::{
    Agent, AgentConfig, AgentConfigPatch, AgentPatch, Caller, FieldError, NewAgent, Provider,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, Auth};
use crate::envelope::{ApiJson, ApiQuery, Ok};
use crate::error::{ApiError, ApiResult};
use crate::routes::PageParams;
use crate::state::AppState;

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// 1–255 characters, unique among live agents.
    pub name: Option<String>,
    pub description: Option<String>,
    /// Model id or alias (default `claude-sonnet`).
    pub model: Option<String>,
    /// One of anthropic, openai, azure, bedrock, ollama, lmstudio, openai-compatible
    /// (default anthropic).
    pub provider: Option<String>,
    pub system_prompt: Option<String>,
    /// ForgeHook ids the agent may use.
    pub tools: Option<Vec<String>>,
    /// Merged over the defaults.
    pub config: Option<AgentConfigPatch>,
    pub is_public: Option<bool>,
    pub api_key_required: Option<bool>,
    /// Ids of the API keys allowed to run this agent (empty: any invoke key).
    pub allowed_api_keys: Option<Vec<String>>,
    /// JSON Schema the final output must match.
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
    /// Hook scripts (ids or names) applied in order, after the global ones; stored as ids.
    pub hooks: Option<Vec<String>>,
}

/// Body of `PUT /api/v1/agents/{id_or_slug}`: every field optional; absent fields keep their
/// value, `"description": null` clears the description.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub system_prompt: Option<String>,
    pub tools: Option<Vec<String>>,
    pub config: Option<AgentConfigPatch>,
    pub is_public: Option<bool>,
    pub api_key_required: Option<bool>,
    pub allowed_api_keys: Option<Vec<String>>,
    /// `null` removes the schema.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Option<serde_json::Value>>,
    /// Hook scripts (ids or names); replaces the list.
    pub hooks: Option<Vec<String>>,
}

/// Distinguishes "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: Uuid,
    pub deleted: bool,
}

fn parse_provider(value: &str, errors: &mut Vec<FieldError>) -> Option<Provider> {
    let provider = Provider::parse(value);
    if provider.is_none() {
        let all: Vec<_> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        errors.push(FieldError::new(
            "provider",
            format!("must be one of {}", all.join(", ")),
        ));
    }
    provider
}

fn parse_key_ids(ids: &[String], errors: &mut Vec<FieldError>) -> Vec<Uuid> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| match Uuid::parse_str(id) {
            Result::Ok(u) => Some(u),
            Err(_) => {
                errors.push(FieldError::new(
                    format!("allowed_api_keys[{i}]"),
                    "must be an API key id (a UUID)",
                ));
                None
            }
        })
        .collect()
}

fn validate_output_schema(schema: Option<&serde_json::Value>, errors: &mut Vec<FieldError>) {
    let Some(schema) = schema else { return };
    if !schema.is_object() {
        errors.push(FieldError::new(
            "output_schema",
            "must be a JSON Schema object",
        ));
    } else if let Err(e) = jsonschema::validator_for(schema) {
        errors.push(FieldError::new(
            "output_schema",
            format!("is not a valid JSON Schema: {e}"),
        ));
    }
}

fn validate_description(description: Option<&str>, errors: &mut Vec<FieldError>) {
    if description.is_some_and(|d| d.chars().count() > 10_000) {
        errors.push(FieldError::new(
            "description",
            "must be at most 10000 characters",
        ));
    }
}

/// The slug for a name; names without ASCII letters or digits get a random one, so every
/// agent stays addressable by a URL-safe slug.
fn slug_for(name: &str) -> String {
    let slug = slugify(name);
    if slug.is_empty() {
        format!("agent-{}", &Uuid::new_v4().simple().to_string()[..8])
    } else {
        slug
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid_fields("agent", errors)
}

/// Validates a create request completely, reporting every problem at once.
pub fn validate_create(
    req: CreateAgentRequest,
    caller: &Caller,
    hooks: ResolvedHooks,
) -> Result<NewAgent, ApiError> {
    let (hooks, mut errors) = hooks;
    let name = req.name.unwrap_or_default();
    validate_name(&name, &mut errors);
    let system_prompt = req.system_prompt.unwrap_or_default();
    validate_system_prompt(&system_prompt, &mut errors);
    let model = req.model.unwrap_or_else(|| DEFAULT_MODEL.to_string());
    validate_model(&model, &mut errors);
    let provider = match req.provider.as_deref() {
        None => Some(DEFAULT_PROVIDER),
        Some(p) => parse_provider(p, &mut errors),
    };
    let tools = req.tools.unwrap_or_default();
    validate_tools(&tools, &mut errors);
    validate_description(req.description.as_deref(), &mut errors);
    let config = AgentConfig::default().merged(&req.config.unwrap_or_default());
    config.validate(&mut errors);
    let allowed_api_keys = parse_key_ids(&req.allowed_api_keys.unwrap_or_default(), &mut errors);
    validate_output_schema(req.output_schema.as_ref(), &mut errors);
    match provider {
        Some(provider) if errors.is_empty() => {
            let name = name.trim().to_string();
            Result::Ok(NewAgent {
                slug: slug_for(&name),
                name,
                description: req.description,
                model: model.trim().to_string(),
                provider,
                system_prompt,
                tools,
                config,
                is_public: req.is_public.unwrap_or(false),
                api_key_required: req.api_key_required.unwrap_or(false),
                allowed_api_keys,
                output_schema: req.output_schema,
                hooks,
                created_by: caller.key_id().map(|id| id.to_string()),
            })
        }
        _ => Err(invalid(errors)),
    }
}

/// Validates an update against the agent it changes.
pub fn validate_update(
    req: UpdateAgentRequest,
    current: &Agent,
    hooks: Option<ResolvedHooks>,
) -> Result<AgentPatch, ApiError> {
    let (hooks, mut errors) = match hooks {
        Some((ids, errors)) => (Some(ids), errors),
        None => (None, Vec::new()),
    };
    if let Some(name) = &req.name {
        validate_name(name, &mut errors);
    }
    if let Some(p) = &req.system_prompt {
        validate_system_prompt(p, &mut errors);
    }
    if let Some(m) = &req.model {
        validate_model(m, &mut errors);
    }
    let provider = req
        .provider
        .as_deref()
        .and_then(|p| parse_provider(p, &mut errors));
    if let Some(t) = &req.tools {
        validate_tools(t, &mut errors);
    }
    validate_description(
        req.description.as_ref().and_then(|d| d.as_deref()),
        &mut errors,
    );
    let config = req.config.as_ref().map(|patch| {
        let merged = current.config.merged(patch);
        merged.validate(&mut errors);
        merged
    });
    let allowed_api_keys = req
        .allowed_api_keys
        .as_ref()
        .map(|ids| parse_key_ids(ids, &mut errors));
    validate_output_schema(
        req.output_schema.as_ref().and_then(|s| s.as_ref()),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let name = req.name.map(|n| n.trim().to_string());
    // Renaming re-slugs; keeping the name keeps the slug (and the URLs callers stored).
    let slug = name
        .as_ref()
        .filter(|n| **n != current.name)
        .map(|n| slug_for(n));
    Result::Ok(AgentPatch {
        name,
        slug,
        description: req.description,
        model: req.model.map(|m| m.trim().to_string()),
        provider,
        system_prompt: req.system_prompt,
        tools: req.tools,
        config,
        is_public: req.is_public,
        api_key_required: req.api_key_required,
        allowed_api_keys,
        output_schema: req.output_schema,
        hooks,
    })
}

/// Script ids for `hooks`, and a `hooks[i]` error for each entry that names no script.
pub type ResolvedHooks = (Vec<Uuid>, Vec<FieldError>);

/// Resolves the ids or names an agent lists in `hooks` to script ids (stored as ids, so a
/// renamed script stays attached).
pub async fn resolve_hooks(state: &AppState, hooks: &[String]) -> ApiResult<ResolvedHooks> {
    let mut ids = Vec::with_capacity(hooks.len());
    let mut errors = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        match state.store.find_script(hook.trim()).await? {
            Some(script) if ids.contains(&script.id) => errors.push(FieldError::new(
                format!("hooks[{i}]"),
                format!("script '{hook}' is listed twice"),
            )),
            Some(script) => ids.push(script.id),
            None => errors.push(FieldError::new(
                format!("hooks[{i}]"),
                format!("no script '{hook}' exists"),
            )),
        }
    }
    Result::Ok((ids, errors))
}

/// Finds a live agent the caller may read: 404 when absent, 401/403 when hidden from it.
pub async fn readable_agent(
    state: &AppState,
    caller: &Caller,
    id_or_slug: &str,
) -> ApiResult<Agent> {
    let agent = state
        .store
        .find_agent(id_or_slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent '{id_or_slug}' not found")))?;
    if caller.can_read_agent(&agent) {
        return Result::Ok(agent);
    }
    Err(match caller {
        Caller::Anonymous => {
            ApiError::unauthorized("this agent is not public: an API key is required")
        }
        _ => ApiError::forbidden("this API key may not use this agent"),
    })
}

/// An agent as a caller that is not an admin sees it: what is needed to call it, and nothing
/// of how it is built (its system prompt, its allowed keys, who made it, its limits).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicAgent {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub tools: Vec<String>,
    pub is_public: bool,
    pub api_key_required: bool,
    /// The fields of a run request: `input` (required text) and `data` (an object).
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

impl PublicAgent {
    pub fn of(agent: Agent) -> PublicAgent {
        PublicAgent {
            id: agent.id,
            slug: agent.slug,
            name: agent.name,
            description: agent.description,
            tools: agent.tools,
            is_public: agent.is_public,
            api_key_required: agent.api_key_required,
            input_schema: run_input_schema(),
        }
    }
}

/// What a caller sends to run an agent, as a JSON Schema.
pub fn run_input_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "input": {"type": "string", "description": "The instruction, in plain words"},
            "data": {"type": "object", "description": "Data for the instruction"}
        },
        "required": ["input"]
    })
}

/// The whole agent for admins, the public view for everyone else.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AgentView {
    Full(Box<Agent>),
    Public(PublicAgent),
}

impl AgentView {
    pub fn for_caller(caller: &Caller, agent: Agent) -> AgentView {
        if caller.is_admin() {
            AgentView::Full(Box::new(agent))
        } else {
            AgentView::Public(PublicAgent::of(agent))
        }
    }
}

/// List agents: all with an admin key, those it may run with an invoke key, public ones
/// without a key. Only admins see whole agents; others get the public view.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(PageParams),
    responses((status = 200, description = "Agents, newest first", body = [AgentView])),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Ok<Vec<AgentView>>> {
    let page = state
        .store
        .list_agents(caller.agent_visibility(), params.to_request()?)
        .await?;
    Result::Ok(Ok::page(page.map(|a| AgentView::for_caller(&caller, a))))
}

/// Create an agent (admin).
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = CreateAgentRequest,
    responses((status = 201, description = "Created", body = Agent),
              (status = 400, description = "Invalid fields, listed in error.details"),
              (status = 409, description = "Name or slug already in use")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<CreateAgentRequest>,
) -> ApiResult<Ok<Agent>> {
    let mut hooks = resolve_hooks(&state, req.hooks.as_deref().unwrap_or_default()).await?;
    if let Some(tools) = &req.tools {
        hooks
            .1
            .extend(state.forgehooks.mcp().check_entries(tools).await);
    }
    let new = validate_create(req, &caller, hooks)?;
    let agent = state.store.create_agent(new).await?;
    tracing::info!(agent_id = %agent.id, slug = %agent.slug, "agent created");
    Result::Ok(Ok::created(agent))
}

/// Read an agent by id or slug.
#[utoipa::path(get, path = "/api/v1/agents/{id_or_slug}", tag = "agents",
    params(("id_or_slug" = String, Path, description = "Agent id or slug")),
    responses((status = 200, description = "The agent (the public view unless admin)", body = AgentView),
              (status = 404, description = "No such agent")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id_or_slug): Path<String>,
) -> ApiResult<Ok<AgentView>> {
    let agent = readable_agent(&state, &caller, &id_or_slug).await?;
    Result::Ok(Ok::new(AgentView::for_caller(&caller, agent)))
}

/// Update an agent (admin); renaming changes the slug.
#[utoipa::path(put, path = "/api/v1/agents/{id_or_slug}", tag = "agents",
    params(("id_or_slug" = String, Path, description = "Agent id or slug")),
    request_body = UpdateAgentRequest,
    responses((status = 200, description = "Updated", body = Agent),
              (status = 400, description = "Invalid fields"),
              (status = 404, description = "No such agent"),
              (status = 409, description = "Name or slug already in use")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id_or_slug): Path<String>,
    ApiJson(req): ApiJson<UpdateAgentRequest>,
) -> ApiResult<Ok<Agent>> {
    let current = readable_agent(&state, &caller, &id_or_slug).await?;
    let mcp_errors = match &req.tools {
        Some(tools) => state.forgehooks.mcp().check_entries(tools).await,
        None => Vec::new(),
    };
    let hooks = match &req.hooks {
        Some(h) => {
            let mut resolved = resolve_hooks(&state, h).await?;
            resolved.1.extend(mcp_errors);
            Some(resolved)
        }
        None if mcp_errors.is_empty() => None,
        // Errors carried with no hook change: validation fails, so the empty list is never
        // applied, and every problem is reported at once.
        None => Some((Vec::new(), mcp_errors)),
    };
    let patch = validate_update(req, &current, hooks)?;
    let agent = state.store.update_agent(current.id, patch).await?;
    Result::Ok(Ok::new(agent))
}

/// Delete an agent (admin). Soft delete: its runs stay readable and its name becomes free.
#[utoipa::path(delete, path = "/api/v1/agents/{id_or_slug}", tag = "agents",
    params(("id_or_slug" = String, Path, description = "Agent id or slug")),
    responses((status = 200, description = "Deleted", body = Deleted),
              (status = 404, description = "No such agent")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id_or_slug): Path<String>,
) -> ApiResult<Ok<Deleted>> {
    let agent = readable_agent(&state, &caller, &id_or_slug).await?;
    state.store.delete_agent(agent.id).await?;
    tracing::info!(agent_id = %agent.id, "agent deleted");
    Result::Ok(Ok::new(Deleted {
        id: agent.id,
        deleted: true,
    }))
}
