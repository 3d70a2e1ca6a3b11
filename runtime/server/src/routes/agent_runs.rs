//! Running agents: `POST /api/v1/agents/{id_or_slug}/run` (sync, async, stream), and the
//! run's `result`, `events` and `cancel` routes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use leforge_agent::RunEvent;
use leforge_core::{AgentConfigPatch, Caller, FieldError, NewRun, Run, RunMode, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::envelope::{current_request_id, json_response, ApiJson};
use crate::error::{ApiError, ApiResult};
use crate::routes::runs::readable_run;
use crate::state::AppState;

/// Body of `POST /api/v1/agents/{id_or_slug}/run`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The instruction, in plain words.
    pub input: Option<String>,
    /// Data for the instruction (a JSON object), shown to the model as pretty JSON.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Answer with server-sent events.
    pub stream: Option<bool>,
    /// `sync` (default) or `async` (202 and poll the result, or get a callback).
    pub mode: Option<String>,
    /// Where to POST the result when the run ends (signed with X-LeForge-Signature).
    pub callback_url: Option<String>,
    /// Per-run limits. Callers that are not admins may only lower the agent's limits; an
    /// admin may raise them up to the server's bounds.
    pub config_override: Option<AgentConfigPatch>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunMetrics {
    pub total_steps: i32,
    pub tokens_input: i64,
    pub tokens_output: i64,
    pub duration_ms: Option<i64>,
}

/// A run as the API shows it: every stored field plus `run_id` and `metrics`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub run_id: Uuid,
    #[serde(flatten)]
    pub run: Run,
    pub metrics: RunMetrics,
    /// The W3C trace the run's spans belong to: the caller's when its request carried a
    /// `traceparent`; `null` when neither it nor the server traces.
    pub trace_id: Option<String>,
}

impl RunView {
    pub fn new(run: Run) -> RunView {
        RunView {
            run_id: run.id,
            trace_id: run.trace_id().map(str::to_string),
            metrics: RunMetrics {
                total_steps: run.total_steps,
                tokens_input: run.tokens_input,
                tokens_output: run.tokens_output,
                duration_ms: run.duration_ms,
            },
            run,
        }
    }
}

/// The body and status of a terminal run — what a sync call answers, what the result route
/// answers once done, and what a callback receives. A step limit, a timeout or a failure is
/// never a 2xx, so automation platforms take their error branch.
pub fn render_terminal(run: &Run) -> (StatusCode, Value) {
    let view = serde_json::to_value(RunView::new(run.clone())).unwrap_or(Value::Null);
    let request_id = current_request_id();
    if run.status == RunStatus::Completed {
        return (
            StatusCode::OK,
            json!({"success": true, "data": view, "request_id": request_id}),
        );
    }
    let (status, code) = match run.status {
        RunStatus::MaxSteps => (StatusCode::UNPROCESSABLE_ENTITY, "MAX_STEPS_EXCEEDED"),
        RunStatus::Timeout => (StatusCode::GATEWAY_TIMEOUT, "RUN_TIMEOUT"),
        RunStatus::Cancelled => (StatusCode::CONFLICT, "RUN_CANCELLED"),
        RunStatus::Interrupted => (StatusCode::SERVICE_UNAVAILABLE, "RUN_INTERRUPTED"),
        RunStatus::Failed
            if run.error_code.as_deref() == Some(leforge_agent::codes::PROVIDER_ERROR) =>
        {
            (StatusCode::BAD_GATEWAY, "PROVIDER_ERROR")
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "RUN_FAILED"),
    };
    let message = run
        .error_message
        .clone()
        .unwrap_or_else(|| format!("the run ended with status {}", run.status));
    (
        status,
        json!({
            "success": false,
            "error": {"code": code, "message": message, "details": {"run": view}},
            "request_id": request_id,
        }),
    )
}

fn terminal_response(run: &Run) -> Response {
    let (status, body) = render_terminal(run);
    json_response(status, body)
}

fn accepted(run_id: Uuid, status: RunStatus) -> Response {
    let mut resp = json_response(
        StatusCode::ACCEPTED,
        json!({"success": true, "data": {"run_id": run_id, "status": status}, "request_id": current_request_id()}),
    );
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/runs/{run_id}/result")) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    resp
}

struct Validated {
    input: String,
    data: Option<Value>,
    mode: RunMode,
    callback_url: Option<String>,
    limits: leforge_agent::RunLimits,
}

fn wants(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(needle))
}

fn validate(
    state: &AppState,
    caller: &Caller,
    agent: &leforge_core::Agent,
    req: &RunRequest,
    headers: &HeaderMap,
) -> ApiResult<Validated> {
    let mut errors = Vec::new();
    let input = req.input.clone().unwrap_or_default();
    if input.trim().is_empty() {
        errors.push(FieldError::new(
            "input",
            "is required and must not be blank",
        ));
    }
    if let Some(d) = &req.data {
        if !d.is_object() && !d.is_null() {
            errors.push(FieldError::new("data", "must be a JSON object"));
        }
    }
    let stream = req.stream == Some(true) || wants(headers, header::ACCEPT, "text/event-stream");
    let mode = match req.mode.as_deref() {
        None => {
            if stream {
                RunMode::Stream
            } else if wants(
                headers,
                header::HeaderName::from_static("prefer"),
                "respond-async",
            ) {
                RunMode::Async
            } else {
                RunMode::Sync
            }
        }
        Some("sync") if stream => RunMode::Stream,
        Some("sync") => RunMode::Sync,
        Some("async") if req.stream == Some(true) => {
            errors.push(FieldError::new(
                "stream",
                "cannot be combined with mode 'async'",
            ));
            RunMode::Async
        }
        Some("async") => RunMode::Async,
        Some(_) => {
            errors.push(FieldError::new("mode", "must be 'sync' or 'async'"));
            RunMode::Sync
        }
    };
    let callback_url = req.callback_url.clone().filter(|u| !u.is_empty());
    if let Some(url) = &callback_url {
        if let Err(message) = check_callback(state, url) {
            errors.push(FieldError::new("callback_url", message));
        }
    }
    let patch = req.config_override.clone().unwrap_or_default();
    if !caller.is_admin() {
        errors.extend(agent.config.raised_by(&patch));
    }
    let config = agent.config.merged(&patch);
    let mut bound_errors = Vec::new();
    config.validate(&mut bound_errors);
    errors.extend(bound_errors.into_iter().map(|e| {
        FieldError::new(
            e.field.replacen("config.", "config_override.", 1),
            e.message,
        )
    }));
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields("run request", errors));
    }
    Ok(Validated {
        input,
        data: req.data.clone().filter(|d| !d.is_null()),
        mode,
        callback_url,
        limits: leforge_agent::RunLimits::of(&config, agent.provider),
    })
}

fn check_callback(state: &AppState, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
    let settings = state.runner.settings();
    if settings.webhook_secret.is_none() {
        return Err("callbacks need LEFORGE_WEBHOOK_SECRET to be configured on the server".into());
    }
    if let Some(allowed) = &settings.callback_hosts {
        if !allowed.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return Err(format!(
                "host '{host}' is not in the server's callback allow-list"
            ));
        }
    }
    Ok(())
}

/// The callback's host must not be (or resolve to) a loopback, private, link-local,
/// unspecified or multicast address, unless the operator allow-listed it. Checked again at
/// delivery, against the address actually connected to.
async fn check_callback_address(state: &AppState, url: &str) -> ApiResult<()> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(()); // Reported by `validate`.
    };
    match leforge_net::check_url(&parsed, state.runner.callback_private_allowed()).await {
        Ok(()) => Ok(()),
        Err(refused) => Err(ApiError::invalid_field("callback_url", refused.to_string())),
    }
}

fn request_hash(req: &RunRequest) -> String {
    let canonical = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be visible ASCII"))?
        .trim()
        .to_string();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1–255 characters",
        ));
    }
    Ok(Some(key))
}

/// Run an agent.
///
/// Sync (default): waits and answers with the run; a non-completed run is an error status
/// (`MAX_STEPS_EXCEEDED` 422, `RUN_FAILED` 422, `PROVIDER_ERROR` 502, `RUN_TIMEOUT` 504,
/// `RUN_CANCELLED` 409) with the run in `error.details.run`. Async (`"mode":"async"` or
/// `Prefer: respond-async`): 202 with `Location` to poll. Stream (`"stream":true` or
/// `Accept: text/event-stream`): server-sent events.
#[utoipa::path(post, path = "/api/v1/agents/{id_or_slug}/run", tag = "runs",
    params(("id_or_slug" = String, Path, description = "Agent id or slug"),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the original run for 24 h")),
    request_body = RunRequest,
    responses((status = 200, description = "Completed", body = RunView),
              (status = 202, description = "Accepted (async); poll Location"),
              (status = 400, description = "Invalid request"),
              (status = 409, description = "RUN_CANCELLED, or IDEMPOTENCY_CONFLICT"),
              (status = 422, description = "MAX_STEPS_EXCEEDED or RUN_FAILED"),
              (status = 502, description = "PROVIDER_ERROR"),
              (status = 504, description = "RUN_TIMEOUT")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id_or_slug): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    ApiJson(req): ApiJson<RunRequest>,
) -> ApiResult<Response> {
    let agent = state
        .store
        .find_agent(&id_or_slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent '{id_or_slug}' not found")))?;
    may_start(&state, &caller, &agent)?;
    let v = validate(&state, &caller, &agent, &req, &headers)?;
    if let Some(url) = &v.callback_url {
        check_callback_address(&state, url).await?;
    }
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&req);
    let addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = addr.map(|a| a.to_string());
    // Whose idempotency keys these are: the API key's, or the client address's for
    // anonymous callers, so that one caller can neither replay nor block another's runs.
    let scope = crate::rate_limit::Client::of(&caller, addr).to_string();

    if let Some(key) = &key {
        let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
        if let Some(existing) = state
            .store
            .find_run_by_idempotency_key(agent.id, &scope, key, since)
            .await?
        {
            return replay(&state, existing, &hash, v.mode).await;
        }
        state
            .store
            .expire_idempotency_key(agent.id, &scope, key, since)
            .await?;
    }

    let slot = match v.mode {
        RunMode::Async => None,
        RunMode::Sync | RunMode::Stream => Some(run_slot(&state).await?),
    };
    // Stored already started under this server's lease, so a crash between the insert and
    // the start leaves a run the reaper finds (its lease lapses), never one `pending` forever.
    let start = slot.as_ref().map(|_| state.runner.start_lease());
    let mode = v.mode;
    let mut new = new_run(&agent, &caller, v, &headers, ip, start);
    new.idempotency_key = key.clone();
    new.idempotency_scope = scope.clone();
    new.request_hash = Some(hash.clone());
    let created = match mode {
        // Answered as soon as it is stored; it starts here at once when a slot is free.
        RunMode::Async => state
            .runner
            .accept_async(new, agent.clone())
            .await
            .map(Created::Async),
        RunMode::Stream => state.store.create_run(new).await.map(Created::Stream),
        RunMode::Sync => state.store.create_run(new).await.map(Created::Sync),
    };
    let created = match created {
        Ok(created) => created,
        // A concurrent request with the same key won the race: answer as a replay of it.
        Err(leforge_core::StoreError::Conflict { .. }) if key.is_some() => {
            let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
            let existing = state
                .store
                .find_run_by_idempotency_key(agent.id, &scope, key.as_deref().unwrap_or(""), since)
                .await?
                .ok_or_else(|| ApiError::internal("idempotent run vanished"))?;
            return replay(&state, existing, &hash, mode).await;
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(run_id = %created.run_id(), agent = %agent.slug, mode = mode.as_str(), "run created");
    dispatch(&state, created, slot).await
}

/// Whether this caller may start a run of this agent now: 401/403 by the agent's access
/// rules, 503 while the server shuts down.
fn may_start(state: &AppState, caller: &Caller, agent: &leforge_core::Agent) -> ApiResult<()> {
    if !caller.can_run_agent(agent) {
        return Err(match caller {
            Caller::Anonymous => ApiError::unauthorized("an API key is required to run this agent"),
            _ => ApiError::forbidden("this API key may not run this agent"),
        });
    }
    if state.runner.is_closing() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down and takes no new runs; retry on another server",
        ));
    }
    Ok(())
}

/// Sync and stream runs execute on their caller's connection, and take a slot like async
/// runs do: unbounded parallel sync runs would be a denial of service. The slot is taken
/// before the run is stored, so a refused request leaves nothing behind.
async fn run_slot(state: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.runner.acquire_slot().await.ok_or_else(|| {
        ApiError::rate_limited(
            "every run slot of this server is taken; retry shortly",
            state.runner.settings().slot_wait.as_secs().max(1),
        )
    })
}

fn new_run(
    agent: &leforge_core::Agent,
    caller: &Caller,
    v: Validated,
    headers: &HeaderMap,
    ip: Option<String>,
    start: Option<leforge_core::RunStart>,
) -> NewRun {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect());
    NewRun {
        agent_id: agent.id,
        input_text: v.input,
        input_data: v.data,
        triggered_by: caller.key_id().map(|k| k.to_string()),
        ip_address: ip,
        user_agent,
        mode: v.mode,
        limits: serde_json::to_value(&v.limits).ok(),
        callback_url: v.callback_url,
        idempotency_key: None,
        idempotency_scope: String::new(),
        request_hash: None,
        start,
        // This request's span (the caller's context when it sent one), so that the run's
        // spans join the trace wherever and whenever it executes.
        trace_context: crate::telemetry::current_traceparent(
            headers.get("traceparent").and_then(|v| v.to_str().ok()),
        ),
    }
}

/// A sync run started for a caller that follows it itself (MCP's `tools/call`): the same
/// access rules, validation, limits and slot as `POST .../run` in sync mode, and stored with
/// its steps the same way; no idempotency key and no callback. Returns the run's id, its
/// live events (subscribed before it starts, so none is missed) and the task running it.
pub(crate) async fn start_sync(
    state: &AppState,
    caller: &Caller,
    agent: &leforge_core::Agent,
    req: &RunRequest,
    headers: &HeaderMap,
    ip: Option<String>,
) -> ApiResult<(
    Uuid,
    tokio::sync::broadcast::Receiver<RunEvent>,
    tokio::task::JoinHandle<Result<Run, leforge_core::StoreError>>,
)> {
    may_start(state, caller, agent)?;
    // Validated without the transport's headers: its `Accept` (JSON and SSE) is about the
    // JSON-RPC answer, not a request to stream this run.
    let v = validate(state, caller, agent, req, &HeaderMap::new())?;
    let slot = run_slot(state).await?;
    let new = new_run(
        agent,
        caller,
        v,
        headers,
        ip,
        Some(state.runner.start_lease()),
    );
    let run = state.store.create_run(new).await?;
    tracing::info!(run_id = %run.id, agent = %agent.slug, mode = "sync", "run created");
    let id = run.id;
    let events = state.runner.prepare(id);
    Ok((id, events, state.runner.spawn(run, slot)))
}

/// A run just created, by how its caller follows it.
enum Created {
    /// Stored (and started here, or queued) by `Runner::accept_async`: only its id is needed.
    Async(Uuid),
    Stream(Run),
    Sync(Run),
}

impl Created {
    fn run_id(&self) -> Uuid {
        match self {
            Created::Async(id) => *id,
            Created::Stream(run) | Created::Sync(run) => run.id,
        }
    }
}

/// Answers for a created run: an async one at once; sync and stream runs start here, for
/// their caller to follow on this connection.
async fn dispatch(
    state: &AppState,
    created: Created,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> ApiResult<Response> {
    let slot = || slot.ok_or_else(|| ApiError::internal("a sync or stream run without a slot"));
    match created {
        // The 202 says `pending` whether the run was queued or already started here: it has
        // produced nothing yet, and `Location` is where to follow it.
        Created::Async(run_id) => Ok(accepted(run_id, RunStatus::Pending)),
        Created::Stream(run) => {
            let rx = state.runner.prepare(run.id);
            state.runner.spawn(run, slot()?);
            Ok(sse_response(live_events(rx)))
        }
        Created::Sync(run) => {
            let run = state
                .runner
                .spawn(run, slot()?)
                .await
                .map_err(|e| ApiError::internal(format!("run task: {e}")))??;
            Ok(terminal_response(&run))
        }
    }
}

/// The same key again: never a second execution. A different body under the same key is a
/// conflict.
async fn replay(state: &AppState, existing: Run, hash: &str, mode: RunMode) -> ApiResult<Response> {
    if existing.request_hash.as_deref() != Some(hash) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
            "this Idempotency-Key was used with a different request body",
        )
        .with_details(json!({"run_id": existing.id})));
    }
    match mode {
        RunMode::Async => Ok(accepted(existing.id, existing.status)),
        RunMode::Stream => Ok(sse_response(follow(state.clone(), existing.id))),
        RunMode::Sync => match wait_terminal(state, existing.id).await? {
            Ok(run) => Ok(terminal_response(&run)),
            Err(unfinished) => Ok(accepted(unfinished.id, unfinished.status)),
        },
    }
}

/// Waits for a run to end, wherever it executes, by watching the store. Bounded: past the
/// run's own time limit plus two leases it must have ended or been reaped, and a wait that
/// still sees it unfinished answers 202 with where to poll, rather than hang.
async fn wait_terminal(state: &AppState, run_id: Uuid) -> ApiResult<Result<Run, Run>> {
    let mut delay = Duration::from_millis(50);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let run = state
            .store
            .get_run(run_id)
            .await?
            .ok_or_else(|| ApiError::not_found("run not found"))?;
        if run.status.is_terminal() {
            return Ok(Ok(run));
        }
        let deadline = *deadline.get_or_insert_with(|| {
            let max = leforge_core::agent::MAX_TIMEOUT_MS;
            let timeout_ms = run
                .limits
                .clone()
                .and_then(|l| serde_json::from_value::<leforge_agent::RunLimits>(l).ok())
                .map_or(max, |l| l.timeout_ms.min(max));
            tokio::time::Instant::now()
                + Duration::from_millis(timeout_ms)
                + state.runner.settings().lease_ttl * 2
        });
        if tokio::time::Instant::now() >= deadline {
            return Ok(Err(run));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

fn sse_response<S>(events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn sse_event(name: &str, data: Value) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(&data).unwrap_or_else(|_| "{}".into()))
}

fn finished_event(run: &Run) -> Event {
    let name = if run.status == RunStatus::Completed {
        "run_completed"
    } else {
        "run_failed"
    };
    sse_event(
        name,
        serde_json::to_value(RunView::new(run.clone())).unwrap_or(Value::Null),
    )
}

/// Maps one loop event to its SSE event; `None` for the terminal one (handled apart).
fn to_sse(event: &RunEvent) -> Event {
    match event {
        RunEvent::RunStarted { run_id } => sse_event("run_started", json!({"run_id": run_id})),
        RunEvent::LlmDelta { text } => sse_event("llm_delta", json!({"text": text})),
        RunEvent::StepStarted {
            step,
            tool,
            action,
            input,
        } => sse_event(
            "step_started",
            json!({"step": step, "tool": tool, "action": action, "input": input}),
        ),
        RunEvent::StepCompleted {
            step,
            tool,
            action,
            output,
            error,
            duration_ms,
        } => sse_event(
            "step_completed",
            json!({"step": step, "tool": tool, "action": action, "output": output,
                   "error": error, "duration_ms": duration_ms}),
        ),
        RunEvent::Hook { record } => sse_event("hook", json!(record)),
        RunEvent::Finished { run } => finished_event(run),
    }
}

/// Events of a run executing here, from its start to its end.
fn live_events(rx: tokio::sync::broadcast::Receiver<RunEvent>) -> impl Stream<Item = Event> + Send {
    stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let last = matches!(event, RunEvent::Finished { .. });
                    return Some((to_sse(&event), (rx, last)));
                }
                // A slow client skipped some deltas; the record stays in the store.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn step_events(step: &leforge_core::RunStep) -> [Event; 2] {
    [
        sse_event(
            "step_started",
            json!({"step": step.step, "tool": step.tool, "action": step.action, "input": step.input}),
        ),
        sse_event(
            "step_completed",
            json!({"step": step.step, "tool": step.tool, "action": step.action,
                   "output": step.output, "error": step.error, "duration_ms": step.duration_ms}),
        ),
    ]
}

/// Replays a run's persisted steps, then follows it to its end: live when it executes in
/// this process, by watching the store when it executes elsewhere (or is still queued).
fn follow(state: AppState, run_id: Uuid) -> impl Stream<Item = Event> + Send {
    struct Follow {
        state: AppState,
        run_id: Uuid,
        live: Option<tokio::sync::broadcast::Receiver<RunEvent>>,
        pending: std::collections::VecDeque<Event>,
        /// Steps whose `step_started` went out, and steps whose `step_completed` did. Sets,
        /// not the highest number: parallel calls are stored as each ends, so step 3 can be
        /// stored (and replayed) while step 2 is still running, and step 2's live event
        /// must still go out. Two sets, so a store read after a lag repeats neither half.
        sent_started: std::collections::HashSet<i32>,
        sent_completed: std::collections::HashSet<i32>,
        started: bool,
        /// The live receiver fell behind and lost events: read the store again.
        resync: bool,
        done: bool,
    }
    let live = state.runner.subscribe(run_id);
    let init = Follow {
        state,
        run_id,
        live,
        pending: Default::default(),
        sent_started: Default::default(),
        sent_completed: Default::default(),
        started: false,
        resync: false,
        done: false,
    };
    stream::unfold(init, |mut f| async move {
        loop {
            if let Some(e) = f.pending.pop_front() {
                return Some((e, f));
            }
            if f.done {
                return None;
            }
            // First, whenever not live, and after losing live events: bring the replay up to
            // date from the store.
            if !f.started || f.live.is_none() || f.resync {
                f.resync = false;
                let run = match f.state.store.get_run(f.run_id).await {
                    Ok(Some(run)) => run,
                    _ => return None,
                };
                if !f.started {
                    f.started = true;
                    f.pending
                        .push_back(sse_event("run_started", json!({"run_id": f.run_id})));
                }
                for step in &run.steps {
                    let [started, completed] = step_events(step);
                    if f.sent_started.insert(step.step) {
                        f.pending.push_back(started);
                    }
                    if f.sent_completed.insert(step.step) {
                        f.pending.push_back(completed);
                    }
                }
                if run.status.is_terminal() {
                    f.pending.push_back(finished_event(&run));
                    f.done = true;
                    continue;
                }
                if f.live.is_none() && f.pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // Send the replay before waiting for live events: the next one may be long
                // in coming (a slow tool), and the replay must not wait for it.
                continue;
            }
            let Some(rx) = f.live.as_mut() else { continue };
            match rx.recv().await {
                Ok(RunEvent::RunStarted { .. }) => {}
                Ok(RunEvent::StepStarted { step, .. }) if f.sent_started.contains(&step) => {}
                Ok(RunEvent::StepCompleted { step, .. }) if f.sent_completed.contains(&step) => {}
                // A step that started before this subscriber joined: its row is stored before
                // this event is sent and holds the start's input too, so both halves come
                // from the store, in order.
                Ok(RunEvent::StepCompleted { step, .. }) if !f.sent_started.contains(&step) => {
                    f.resync = true;
                }
                Ok(event) => {
                    match &event {
                        RunEvent::Finished { .. } => f.done = true,
                        RunEvent::StepStarted { step, .. } => {
                            f.sent_started.insert(*step);
                        }
                        RunEvent::StepCompleted { step, .. } => {
                            f.sent_completed.insert(*step);
                        }
                        _ => {}
                    }
                    f.pending.push_back(to_sse(&event));
                }
                // Lost events may include steps; the store has every finished one.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => f.resync = true,
                // The run left this process (it ended): finish from the store.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => f.live = None,
            }
        }
    })
}

/// Poll an async run: 202 with `Retry-After` while it is pending or running, then exactly
/// the sync response.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/result", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 200, description = "Completed", body = RunView),
              (status = 202, description = "Still pending or running"),
              (status = 404, description = "No such run")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn result(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(run_id): Path<String>,
) -> ApiResult<Response> {
    let run = readable_run(&state, &caller, &run_id).await?;
    if run.status.is_terminal() {
        Ok(terminal_response(&run))
    } else {
        Ok(accepted(run.id, run.status))
    }
}

/// Server-sent events of a run: its persisted steps, then live until it ends.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 200, description = "text/event-stream of run_started, step_started, step_completed, llm_delta, run_completed | run_failed")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(run_id): Path<String>,
) -> ApiResult<Response> {
    let run = readable_run(&state, &caller, &run_id).await?;
    Ok(sse_response(follow(state, run.id)))
}

/// Cancel a pending or running run; in-flight LLM and tool calls are abandoned.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 200, description = "Cancelled", body = RunView),
              (status = 404, description = "No such run"),
              (status = 409, description = "Already finished")),
    security((), ("api_key" = []), ("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(run_id): Path<String>,
) -> ApiResult<crate::envelope::Ok<RunView>> {
    let run = readable_run(&state, &caller, &run_id).await?;
    match state.runner.cancel(run.id).await {
        Ok(run) => Ok(crate::envelope::Ok::new(RunView::new(run))),
        Err(leforge_core::StoreError::InvalidState(_)) => Err(ApiError::conflict(format!(
            "the run already ended with status {}",
            run.status
        ))
        .with_details(json!({"status": run.status}))),
        Err(e) => Err(e.into()),
    }
}
