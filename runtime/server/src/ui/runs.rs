//! Run history (all agents or one, by status, paged with the API's cursors) and a run's
//! trace: the timeline of its steps with durations, inputs, outputs, errors and hooks.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use leforge_core::{PageRequest, Run, RunFilter, RunStatus};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::layout::{self, duration, json_block, status_badge};
use super::pages;
use super::session::UiSession;
use crate::error::ApiError;
use crate::routes::agent_runs::RunView;
use crate::routes::runs::readable_run;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    pub agent: Option<String>,
    pub status: Option<String>,
    pub cursor: Option<String>,
}

pub async fn history(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let mut filter = RunFilter::default();
    let mut agent_name = None;
    let agent_q = q.agent.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = agent_q {
        match state.store.find_agent(a).await {
            Ok(Some(agent)) => {
                filter.agent_id = Some(agent.id);
                agent_name = Some(agent.name);
            }
            Ok(None) => match Uuid::parse_str(a) {
                // A deleted agent's runs stay listable by id, as in the API.
                Ok(id) => filter.agent_id = Some(id),
                Err(_) => {
                    return pages::error(
                        &session,
                        "History",
                        ApiError::not_found(format!("agent '{a}' not found")),
                    )
                }
            },
            Err(e) => return pages::error(&session, "History", e.into()),
        }
    }
    let status_q = q.status.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = status_q {
        match RunStatus::parse(s) {
            Some(st) => filter.status = Some(st),
            None => {
                return pages::error(
                    &session,
                    "History",
                    ApiError::invalid_field("status", "is not a run status"),
                )
            }
        }
    }
    let page = match PageRequest::from_params(Some(50), q.cursor.as_deref()) {
        Ok(p) => p,
        Err(m) => return pages::error(&session, "History", ApiError::invalid_field("cursor", m)),
    };
    let runs = match state.store.list_runs(filter, page).await {
        Ok(r) => r,
        Err(e) => return pages::error(&session, "History", e.into()),
    };
    let names = agent_names(&state, &runs.items).await;
    let title = match &agent_name {
        Some(n) => format!("History of {n}"),
        None => "History".to_string(),
    };
    let query = |cursor: Option<&str>| {
        let mut parts = Vec::new();
        if let Some(a) = agent_q {
            parts.push(format!("agent={}", enc(a)));
        }
        if let Some(s) = status_q {
            parts.push(format!("status={}", enc(s)));
        }
        if let Some(c) = cursor {
            parts.push(format!("cursor={}", enc(c)));
        }
        format!("/runs?{}", parts.join("&"))
    };
    let body = html! {
        div.page-head {
            h1 { (title) }
            @if let Some(a) = agent_q {
                a.button.primary href={ "/agents/" (a) "/run" } { "Run" }
                a.button href="/runs" { "All agents" }
            }
        }
        form.filters method="get" action="/runs" #history-filter {
            @if let Some(a) = agent_q { input type="hidden" name="agent" value=(a); }
            label for="status-filter" { "Status" }
            select #status-filter name="status" {
                option value="" selected[status_q.is_none()] { "any" }
                @for s in RunStatus::ALL {
                    option value=(s.as_str()) selected[status_q == Some(s.as_str())] { (s.as_str()) }
                }
            }
            button type="submit" #filter-apply { "Filter" }
        }
        @if runs.items.is_empty() {
            p.empty #no-runs { "No runs." }
        } @else {
            div.table-wrap {
                table.stack #runs-table {
                    thead { tr {
                        th scope="col" { "Started" }
                        th scope="col" { "Agent" }
                        th scope="col" { "Status" }
                        th scope="col" { "Input" }
                        th scope="col" { "Steps" }
                        th scope="col" { "Tokens" }
                        th scope="col" { "Duration" }
                    } }
                    tbody {
                        @for run in &runs.items {
                            tr data-run=(run.id) {
                                td data-label="Started" { a href={ "/runs/" (run.id) } { (run.created_at.format("%Y-%m-%d %H:%M:%S")) } }
                                td.wrap data-label="Agent" { (names.get(&run.agent_id).cloned().unwrap_or_else(|| run.agent_id.to_string())) }
                                td data-label="Status" { (status_badge(run.status.as_str())) }
                                td.wrap data-label="Input" { (excerpt(&run.input_text, 80)) }
                                td data-label="Steps" { (run.total_steps) }
                                td data-label="Tokens" { (run.tokens_input + run.tokens_output) }
                                td data-label="Duration" { (duration(run.duration_ms)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.cursor.is_some() { a href=(query(None)) { "← First page" } }
            @if let Some(c) = &runs.next_cursor { a href=(query(Some(c))) #next-page { "Next page →" } }
        }
    };
    layout::page(&title, "history", "/runs", &session, body)
}

async fn agent_names(state: &AppState, runs: &[Run]) -> HashMap<Uuid, String> {
    let mut names = HashMap::new();
    for run in runs {
        if names.contains_key(&run.agent_id) {
            continue;
        }
        if let Ok(Some(a)) = state.store.find_agent(&run.agent_id.to_string()).await {
            names.insert(run.agent_id, a.name);
        }
    }
    names
}

fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn trace(
    State(state): State<AppState>,
    session: UiSession,
    Path(run_id): Path<String>,
) -> Response {
    let run = match readable_run(&state, &session.caller, &run_id).await {
        Ok(r) => r,
        Err(e) => return pages::error(&session, "Run", e),
    };
    let agent = state
        .store
        .find_agent(&run.agent_id.to_string())
        .await
        .ok()
        .flatten();
    // The API's own rendering of the run, so fields it gains (hook records) show up here.
    let view = serde_json::to_value(RunView::new(run.clone())).unwrap_or(Value::Null);
    let total = run.duration_ms.unwrap_or(0).max(1);
    let body = html! {
        div.page-head {
            h1 { "Run " code.wrap { (run.id) } }
            @if !run.status.is_terminal() {
                button.danger type="button" #trace-cancel data-run=(run.id) { "Cancel" }
            }
        }
        p.meta {
            "Agent: "
            @match &agent {
                Some(a) => { a href={ "/runs?agent=" (a.slug) } { (a.name) } },
                None => { code { (run.agent_id) } " (deleted)" },
            }
            " · mode " (run.mode.as_str())
            " · created " (run.created_at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
        div.badges #trace-badges data-status=(run.status.as_str()) data-run=(run.id)
            data-terminal=(if run.status.is_terminal() { "1" } else { "0" }) {
            (status_badge(run.status.as_str()))
            span.badge { "duration " (duration(run.duration_ms)) }
            span.badge { (run.total_steps) " step" @if run.total_steps != 1 { "s" } }
            span.badge { (run.tokens_input) " in / " (run.tokens_output) " out tokens" }
        }
        @if run.error_code.is_some() || run.error_message.is_some() {
            div.form-error role="alert" #trace-error {
                @if let Some(c) = &run.error_code { strong { (c) } ": " }
                (run.error_message.as_deref().unwrap_or(""))
            }
        }
        section {
            h2 { "Input" }
            pre.text { (run.input_text) }
            @if let Some(d) = &run.input_data {
                h3 { "Data" }
                (json_block(d))
            }
        }
        section {
            h2 { "Timeline" }
            @if run.steps.is_empty() { p.empty { "No steps." } }
            ol.timeline #trace-steps {
                @for step in &run.steps {
                    li.step.error[step.error.is_some()] data-step=(step.step) {
                        div.step-head {
                            span.step-no { "#" (step.step) }
                            strong.wrap { (step.tool) " → " (step.action) }
                            span.badge { (duration(Some(step.duration_ms))) }
                            meter min="0" max=(total) value=(step.duration_ms.min(total))
                                aria-label="share of the run's duration" {}
                            span.hint { (step.started_at.format("%H:%M:%S%.3f")) }
                        }
                        @if let Some(e) = &step.error {
                            p.step-error role="note" { (e) }
                        }
                        details {
                            summary { "Input" }
                            (json_block(&step.input))
                        }
                        @if let Some(o) = &step.output {
                            details {
                                summary { "Output" }
                                (json_block(o))
                            }
                        }
                    }
                }
            }
        }
        @if let Some(hooks) = view.get("hooks").and_then(|h| h.as_array()).filter(|h| !h.is_empty()) {
            section #trace-hooks {
                h2 { "Hooks" }
                ol.timeline {
                    @for h in hooks { (hook_entry(h)) }
                }
            }
        }
        section {
            h2 { "Output" }
            @match &run.output {
                Some(o) => { pre.json #trace-output { (serde_json::to_string_pretty(o).unwrap_or_default()) } },
                None => { p.empty { "No output." } },
            }
            @if let Some(t) = &run.output_text {
                details {
                    summary { "Final text from the model" }
                    pre.text { (t) }
                }
            }
        }
        @if !run.callback_attempts.is_empty() {
            section {
                h2 { "Callback" }
                p.wrap { (run.callback_url.as_deref().unwrap_or("")) }
                (json_block(&serde_json::to_value(&run.callback_attempts).unwrap_or_default()))
            }
        }
        details {
            summary { "Raw run JSON" }
            (json_block(&view))
        }
    };
    layout::page("Run trace", "trace", "/runs", &session, body)
}

/// One hook record: the hook, the script, how long, what it did (`outcome.kind`, with the
/// reason of a denial, rejection or failure), the step it belongs to and its logs. Anything
/// else in the record is in the JSON under "Details".
fn hook_entry(h: &Value) -> Markup {
    let s = |v: &Value, k: &str| v.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let hook = s(h, "hook").unwrap_or_default();
    let script = s(h, "script").unwrap_or_default();
    let outcome = h.get("outcome").cloned().unwrap_or(Value::Null);
    let kind = s(&outcome, "kind").unwrap_or_default();
    let why = s(&outcome, "reason").or_else(|| {
        s(&outcome, "message").map(|m| match s(&outcome, "code") {
            Some(c) => format!("{c}: {m}"),
            None => m,
        })
    });
    let ms = h.get("duration_ms").and_then(|v| v.as_f64());
    let step = h.get("step").and_then(|v| v.as_i64());
    let logs = h
        .get("logs")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    let failed = matches!(kind.as_str(), "rejected" | "failed" | "denied");
    html! {
        li.step.error[failed] data-hook=(hook) {
            div.step-head {
                strong.wrap { (hook) }
                @if !script.is_empty() { code.wrap { (script) } }
                @if let Some(n) = step { span.hint { "step " (n) } }
                span.badge { @match ms { Some(ms) => { (format!("{ms:.3} ms")) }, None => { "—" } } }
                @if !kind.is_empty() { span.badge.outcome { (kind) } }
            }
            @if let Some(w) = why { p.step-error { (w) } }
            @if !logs.is_empty() {
                ul.logs {
                    @for l in &logs {
                        li { span.badge { (s(l, "level").unwrap_or_default()) } " " (s(l, "message").unwrap_or_default()) }
                    }
                }
            }
            details {
                summary { "Details" }
                (json_block(h))
            }
        }
    }
}
