//! Agents: the cards, the create/edit form and the run page.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use leforge_core::{Agent, AgentConfig, ApiKey, ApiKeyScope, PageRequest};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, field_error, form_error};
use super::pages;
use super::session::UiSession;
use crate::error::ApiError;
use crate::routes::agents::readable_agent;
use crate::routes::forgehooks::ForgehookView;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = match PageRequest::from_params(Some(60), q.cursor.as_deref()) {
        Ok(p) => p,
        Err(m) => return pages::error(&session, "Agents", ApiError::invalid_field("cursor", m)),
    };
    let agents = match state
        .store
        .list_agents(session.caller.agent_visibility(), page)
        .await
    {
        Ok(a) => a,
        Err(e) => return pages::error(&session, "Agents", e.into()),
    };
    let body = html! {
        div.page-head {
            h1 { "Agents" }
            a.button.primary href="/agents/new" id="new-agent" { "New agent" }
        }
        (form_error("agents-error"))
        @if agents.items.is_empty() {
            p.empty { "No agents yet. " a href="/agents/new" { "Create the first one" } "." }
        }
        ul.cards id="agent-cards" {
            @for agent in &agents.items { (card(agent)) }
        }
        @if let Some(cursor) = &agents.next_cursor {
            p.pager { a href={ "/agents?cursor=" (cursor) } { "More agents →" } }
        }
    };
    layout::page("Agents", "agents", "/agents", &session, body)
}

fn card(agent: &Agent) -> Markup {
    let extra = agent.tools.len().saturating_sub(5);
    html! {
        li.card data-agent=(agent.slug) {
            div.card-head {
                h2 { (agent.name) }
                @if agent.is_public {
                    span.badge.public { "public" }
                } @else {
                    span.badge.private { "private" }
                }
            }
            @if let Some(d) = agent.description.as_deref().filter(|d| !d.is_empty()) {
                p.description { (d) }
            }
            p.meta {
                span { (agent.provider.as_str()) " / " (agent.model) }
                " · "
                span { (agent.tools.len()) " " (if agent.tools.len() == 1 { "tool" } else { "tools" }) }
            }
            ul.tool-badges aria-label="Tools" {
                @for tool in agent.tools.iter().take(5) {
                    li.badge.tool { (tool) }
                }
                @if extra > 0 {
                    li.badge.more { "+" (extra) }
                }
            }
            div.actions {
                a.button.primary href={ "/agents/" (agent.slug) "/run" } { "Run" }
                a.button href={ "/runs?agent=" (agent.slug) } { "History" }
                a.button href={ "/agents/" (agent.slug) "/edit" } { "Edit" }
                button.danger type="button" data-delete-agent=(agent.slug) data-name=(agent.name) {
                    "Delete"
                }
            }
        }
    }
}

pub async fn new(State(state): State<AppState>, session: UiSession) -> Response {
    form_page(&state, &session, None).await
}

pub async fn edit(
    State(state): State<AppState>,
    session: UiSession,
    Path(id_or_slug): Path<String>,
) -> Response {
    match readable_agent(&state, &session.caller, &id_or_slug).await {
        Ok(agent) => form_page(&state, &session, Some(agent)).await,
        Err(e) => pages::error(&session, "Edit agent", e),
    }
}

async fn form_page(state: &AppState, session: &UiSession, agent: Option<Agent>) -> Response {
    let title = if agent.is_some() {
        "Edit agent"
    } else {
        "New agent"
    };
    let hooks = match state.forgehooks.list().await {
        Ok(h) => h,
        Err(e) => return pages::error(session, title, e),
    };
    let mcp_servers = match state.store.list_mcp_servers().await {
        Ok(m) => m,
        Err(e) => return pages::error(session, title, e.into()),
    };
    let keys = match state
        .store
        .list_api_keys(PageRequest {
            limit: 200,
            after: None,
        })
        .await
    {
        Ok(k) => k.items,
        Err(e) => return pages::error(session, title, e.into()),
    };
    let providers = state.llm.provider_infos();
    // Read as JSON so fields newer than this page (the Rhai `hooks`) show when present.
    let json = agent
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or_default();
    let hooks_field: Option<Vec<String>> = json.get("hooks").and_then(|h| h.as_array()).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    });
    let config = agent.as_ref().map(|a| a.config.clone()).unwrap_or_default();
    let provider = agent
        .as_ref()
        .map(|a| a.provider.as_str())
        .unwrap_or(leforge_core::agent::DEFAULT_PROVIDER.as_str());
    let model = agent
        .as_ref()
        .map(|a| a.model.as_str())
        .unwrap_or(leforge_core::agent::DEFAULT_MODEL);
    let tools: Vec<&str> = agent
        .as_ref()
        .map(|a| a.tools.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let schema = agent
        .as_ref()
        .and_then(|a| a.output_schema.as_ref())
        .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
        .unwrap_or_default();
    let body = html! {
        h1 { (title) }
        form #agent-form novalidate
            data-mode=(if agent.is_some() { "edit" } else { "create" })
            data-agent=[agent.as_ref().map(|a| a.slug.as_str())]
            data-has-hooks=(if hooks_field.is_some() { "1" } else { "0" }) {
            (form_error("agent-form-error"))
            fieldset {
                legend { "Basics" }
                label for="f-name" { "Name" }
                input #f-name name="name" required maxlength="255" aria-describedby="err-name"
                    value=[agent.as_ref().map(|a| a.name.as_str())];
                (field_error("name"))
                label for="f-description" { "Description " span.hint { "(optional)" } }
                textarea #f-description name="description" rows="2" aria-describedby="err-description" {
                    (agent.as_ref().and_then(|a| a.description.as_deref()).unwrap_or(""))
                }
                (field_error("description"))
            }
            fieldset {
                legend { "Model" }
                div.row {
                    div {
                        label for="f-provider" { "Provider" }
                        select #f-provider name="provider" aria-describedby="err-provider" {
                            @for p in &providers {
                                option value=(p.name.as_str()) selected[p.name.as_str() == provider] {
                                    (p.name.as_str())
                                    @if !p.configured { " (not configured)" }
                                }
                            }
                        }
                        (field_error("provider"))
                    }
                    div {
                        label for="f-model" { "Model" }
                        input #f-model name="model" list="model-options" value=(model)
                            aria-describedby="model-hint err-model" autocomplete="off";
                        datalist #model-options {}
                        p.hint #model-hint { "A model id or alias; the provider's list is offered when it has one." }
                        (field_error("model"))
                    }
                }
                label for="f-system-prompt" { "System prompt" }
                textarea #f-system-prompt name="system_prompt" rows="6" required aria-describedby="err-system_prompt" {
                    (agent.as_ref().map(|a| a.system_prompt.as_str()).unwrap_or(""))
                }
                (field_error("system_prompt"))
            }
            fieldset #tool-picker {
                legend { "Tools (installed ForgeHooks and MCP servers)" }
                (field_error("tools"))
                @if hooks.is_empty() {
                    p.empty { "No ForgeHooks installed. " a href="/forgehooks" { "Install one" } "." }
                }
                ul.picker {
                    @for hook in &hooks {
                        @let view = ForgehookView::from_installed(hook);
                        @let id = format!("tool-{}", view.id);
                        li {
                            input type="checkbox" name="tools" value=(view.id) id=(id)
                                checked[tools.contains(&view.id.as_str())];
                            label for=(id) {
                                strong { (view.name) } " "
                                code { (view.id) } " "
                                span.badge { (view.endpoints.len()) " endpoint" @if view.endpoints.len() != 1 { "s" } }
                                @if !view.enabled { " " span.badge.disabled { "disabled" } }
                                @if !view.description.is_empty() { span.description { (view.description) } }
                            }
                        }
                    }
                }
                @if !mcp_servers.is_empty() {
                    h3 { "MCP servers" }
                    ul.picker #mcp-picker {
                        @for server in &mcp_servers {
                            @let entry = format!("mcp:{}", server.name);
                            @let id = format!("tool-mcp-{}", server.name);
                            li {
                                input type="checkbox" name="tools" value=(entry) id=(id)
                                    checked[tools.contains(&entry.as_str())];
                                label for=(id) {
                                    strong { (server.name) } " "
                                    code { (entry) } " "
                                    span.badge { (server.tools.len()) " tool" @if server.tools.len() != 1 { "s" } }
                                    @if !server.enabled { " " span.badge.disabled { "disabled" } }
                                }
                            }
                            // Single tools an agent lists as `mcp:<server>/<tool>`.
                            @for tool in &server.tools {
                                @let entry = format!("mcp:{}/{}", server.name, tool.name);
                                @let id = format!("tool-mcp-{}-{}", server.name, tool.name);
                                li.sub {
                                    input type="checkbox" name="tools" value=(entry) id=(id)
                                        checked[tools.contains(&entry.as_str())];
                                    label for=(id) {
                                        code { (entry) }
                                        @if !tool.description.is_empty() { span.description { (tool.description) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { "Limits" }
                div.grid {
                    (number("max_steps", "Max steps (tool calls)", config.max_steps as f64, 1.0, 100.0, "1"))
                    (number("max_tokens", "Max tokens per LLM call", config.max_tokens as f64, 1.0, 200_000.0, "1"))
                    (number("temperature", "Temperature", config.temperature, 0.0, 2.0, "0.1"))
                    (number("timeout_ms", "Run timeout (ms)", config.timeout_ms as f64, 1000.0, 3_600_000.0, "1"))
                    (number("max_retries", "Max retries of a failed tool call", config.max_retries as f64, 0.0, 10.0, "1"))
                    (optional_number("max_total_tokens", "Token budget per run (optional)", config.max_total_tokens, 1.0, 100_000_000.0))
                }
                div.check {
                    input type="checkbox" #f-retry name="config.retry_on_error" checked[config.retry_on_error];
                    label for="f-retry" { "Retry transient tool failures" }
                }
            }
            fieldset {
                legend { "Output and hooks" }
                label for="f-output-schema" { "Output JSON Schema " span.hint { "(optional; the final output must match it)" } }
                textarea #f-output-schema.code name="output_schema" rows="6" spellcheck="false"
                    aria-describedby="err-output_schema" { (schema) }
                (field_error("output_schema"))
                label for="f-hooks" { "Hooks " span.hint { "(Rhai script names, comma-separated, applied in order)" } }
                input #f-hooks name="hooks" autocomplete="off" aria-describedby="hooks-hint err-hooks"
                    value=(hooks_field.clone().unwrap_or_default().join(", "));
                p.hint #hooks-hint {}
                (field_error("hooks"))
            }
            fieldset {
                legend { "Access" }
                div.check {
                    input type="checkbox" #f-public name="is_public" checked[agent.as_ref().is_some_and(|a| a.is_public)];
                    label for="f-public" { "Public: readable and runnable without an API key" }
                }
                div.check {
                    input type="checkbox" #f-key-required name="api_key_required" checked[agent.as_ref().is_some_and(|a| a.api_key_required)];
                    label for="f-key-required" { "Require an API key to run, even when public" }
                }
                p { "Allowed invoke keys " span.hint { "(none ticked: any invoke key may run it)" } }
                @if !keys.iter().any(|k| k.revoked_at.is_none() && k.scope == ApiKeyScope::Invoke) {
                    p.empty { "No invoke keys yet." }
                }
                (field_error("allowed_api_keys"))
                ul.picker {
                    // Admin keys may run every agent anyway: only invoke keys are a choice.
                    @for key in keys.iter().filter(|k| k.revoked_at.is_none() && k.scope == ApiKeyScope::Invoke) {
                        (key_choice(key, agent.as_ref()))
                    }
                }
            }
            div.actions {
                button.primary type="submit" #agent-save { (if agent.is_some() { "Save changes" } else { "Create agent" }) }
                a.button href="/agents" { "Cancel" }
            }
        }
    };
    layout::page(title, "agent-form", "/agents", session, body)
}

fn key_choice(key: &ApiKey, agent: Option<&Agent>) -> Markup {
    let id = format!("key-{}", key.id);
    let checked = agent.is_some_and(|a| a.allowed_api_keys.contains(&key.id));
    html! {
        li {
            input type="checkbox" name="allowed_api_keys" value=(key.id) id=(id) checked[checked];
            label for=(id) { (key.name) " " code { (key.prefix) "…" } " " span.badge { (key.scope.as_str()) } }
        }
    }
}

fn number(name: &str, label: &str, value: f64, min: f64, max: f64, step: &str) -> Markup {
    let field = format!("config.{name}");
    let id = format!("f-{name}");
    html! {
        div {
            label for=(id) { (label) }
            input type="number" id=(id) name=(field) value=(value) min=(min) max=(max) step=(step)
                required aria-describedby={ "err-" (field) };
            p.hint { (min) "–" (max) }
            (field_error(&field))
        }
    }
}

fn optional_number(name: &str, label: &str, value: Option<u64>, min: f64, max: f64) -> Markup {
    let field = format!("config.{name}");
    let id = format!("f-{name}");
    html! {
        div {
            label for=(id) { (label) }
            input type="number" id=(id) name=(field) value=[value] min=(min) max=(max) step="1"
                aria-describedby={ "err-" (field) };
            p.hint { (min) "–" (max) ", empty for none" }
            (field_error(&field))
        }
    }
}

pub async fn run(
    State(state): State<AppState>,
    session: UiSession,
    Path(id_or_slug): Path<String>,
) -> Response {
    let agent = match readable_agent(&state, &session.caller, &id_or_slug).await {
        Ok(a) => a,
        Err(e) => return pages::error(&session, "Run agent", e),
    };
    let limits = AgentConfig::default() == agent.config;
    let body = html! {
        div.page-head {
            h1 { "Run " (agent.name) }
            a.button href={ "/runs?agent=" (agent.slug) } { "History" }
        }
        p.meta { (agent.provider.as_str()) " / " (agent.model) " · max " (agent.config.max_steps) " steps"
            @if limits { " (defaults)" } }
        form #run-form novalidate data-agent=(agent.slug) {
            (form_error("run-form-error"))
            label for="run-input" { "Instruction" }
            textarea #run-input name="input" rows="4" required aria-describedby="err-input" {}
            (field_error("input"))
            label for="run-data" { "Data " span.hint { "(optional JSON object)" } }
            textarea #run-data.code name="data" rows="6" spellcheck="false" aria-describedby="err-data" {}
            (field_error("data"))
            div.actions {
                button.primary type="submit" #run-start { "Run" }
                button.danger type="button" #run-cancel disabled { "Cancel" }
            }
        }
        section #run-result aria-live="polite" hidden {
            h2 { "Run" }
            div.badges #run-badges {}
            h3 { "Steps" }
            ol.steps #run-steps {}
            div #run-final hidden {
                h3 { "Output" }
                pre.json #run-output {}
            }
            div.form-error #run-error role="alert" hidden {}
            p { a #run-trace hidden { "Open the full trace" } }
        }
    };
    layout::page(
        &format!("Run {}", agent.name),
        "run",
        "/agents",
        &session,
        body,
    )
}
