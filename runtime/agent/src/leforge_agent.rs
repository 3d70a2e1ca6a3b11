//! The agent loop: from one instruction to a finished run.
//!
//! It sees only core traits — `Store`, `LlmClient`, `ToolExecutor`, `ToolCatalog` — never a
//! concrete backend, so it runs the same against SQLite or PostgreSQL, any provider, and
//! WASM or container tools. Everything observable is persisted as it happens: the run row
//! moves `pending` → `running` → terminal, each step row is written when its tool call
//! ends, and token and step counts are updated as they accrue.

mod hooks;
pub mod json_mode;
pub mod observe;
mod output;
pub mod refs;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use leforge_core::forgehook::Manifest;
use leforge_core::llm::{
    ChatRequest, ChatResponse, LlmClient, LlmError, Message, ToolCall, ToolSpec,
};
use leforge_core::tool::{ToolCatalog, ToolError, ToolExecutor};
use leforge_core::{Agent, Run, RunStatus, RunStep, RunUpdate, Store, StoreError, ToolMode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use writes::Writes;

pub use output::parse_final_output;

/// The limits of one run: the agent's config, possibly lowered by the request.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunLimits {
    pub max_steps: u32,
    pub max_tokens: u32,
    pub temperature: f64,
    pub timeout_ms: u64,
    /// Input plus output tokens over every LLM call of the run.
    pub max_total_tokens: Option<u64>,
    pub retry_on_error: bool,
    pub max_retries: u32,
    /// The tool mode this run uses, already resolved (never `auto`), so the trace says which
    /// one it was. Runs stored before the field existed ran natively.
    #[serde(default = "native")]
    pub tool_mode: ToolMode,
    /// Tool results and data fields larger than this reach the model as previews.
    #[serde(default = "default_budget")]
    pub result_budget_bytes: u32,
}

fn native() -> ToolMode {
    ToolMode::Native
}

fn default_budget() -> u32 {
    leforge_core::agent::DEFAULT_RESULT_BUDGET_BYTES
}

impl RunLimits {
    /// The limits of an agent's config, with its tool mode resolved for its provider.
    pub fn of(config: &leforge_core::AgentConfig, provider: leforge_core::Provider) -> RunLimits {
        RunLimits {
            max_steps: config.max_steps,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            timeout_ms: config.timeout_ms,
            max_total_tokens: config.max_total_tokens,
            retry_on_error: config.retry_on_error,
            max_retries: config.max_retries,
            tool_mode: config.tool_mode.resolve(provider),
            result_budget_bytes: config.result_budget_bytes,
        }
    }
}

/// Everything one run needs besides its dependencies.
#[derive(Debug, Clone)]
pub struct RunInput {
    pub run_id: Uuid,
    pub agent: Agent,
    pub output_schema: Option<Value>,
    pub input: String,
    pub data: Option<Value>,
    pub limits: RunLimits,
    /// Ask the provider to stream, so text deltas reach `RunEvent::LlmDelta`.
    pub stream: bool,
    /// How the run was asked for; a label of the run metrics.
    pub mode: leforge_core::RunMode,
    /// The worker's lease (owner, expiry), written with the `running` status so that starting
    /// a run costs one statement.
    pub lease: Option<(String, chrono::DateTime<chrono::Utc>)>,
    /// The queue's claim (or the run's creation, when its server started it at once)
    /// already made the run `running` under this worker's lease, so the loop writes no
    /// `running` update of its own. A cancel that landed between the claim and the start
    /// must then arrive as `cancel` already cancelled: the loop checks it before any work.
    pub claimed: bool,
    /// The hook scripts of this run (global, then the agent's); empty: no hook overhead.
    pub hook_chain: leforge_core::hook::HookChain,
    /// Whether the caller needs the finished run back (a sync answer, a callback). When it
    /// does not and nobody follows the run's events, the terminal update is written without
    /// reading the run and its steps back.
    pub return_run: bool,
}

/// The backends a run talks to, as traits.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub llm: Arc<dyn LlmClient>,
    pub tools: Arc<dyn ToolExecutor>,
    pub catalog: Arc<dyn ToolCatalog>,
    /// Runs user hook scripts; `None` (or an empty chain) skips hooks.
    pub hooks: Option<Arc<dyn leforge_core::HookRunner>>,
    /// The tool lists of recent ForgeHook sets, shared by every run of this process.
    pub toolboxes: ToolboxCache,
}

/// Tool sets that recent runs used, with the offered tools built once per set rather than
/// once per run (a run of 1,000 identical ones otherwise clones, serializes and drops every
/// schema 1,000 times). Keyed by the identity of the loaded manifests: reinstalling or
/// reloading a ForgeHook loads a new manifest, which misses the cache, so an entry can never
/// offer a stale schema. Entries hold their manifests, so an address is not reused while
/// its entry lives.
#[derive(Clone, Default)]
pub struct ToolboxCache(Arc<Mutex<Vec<CachedToolbox>>>);

/// One cached tool list and the manifests it was built from.
type CachedToolbox = (Vec<Arc<Manifest>>, Arc<Toolbox>);

/// Tool sets kept; the oldest goes first. A server has few distinct agents' tool lists in
/// use at once, and a miss only costs building one list.
const TOOLBOXES_KEPT: usize = 64;

impl ToolboxCache {
    fn get(&self, manifests: &[Arc<Manifest>]) -> Arc<Toolbox> {
        let same = |kept: &[Arc<Manifest>]| {
            kept.len() == manifests.len()
                && kept.iter().zip(manifests).all(|(a, b)| Arc::ptr_eq(a, b))
        };
        let mut sets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, toolbox)) = sets.iter().find(|(kept, _)| same(kept)) {
            return toolbox.clone();
        }
        let toolbox = Arc::new(Toolbox::new(manifests));
        if sets.len() >= TOOLBOXES_KEPT {
            sets.remove(0);
        }
        sets.push((manifests.to_vec(), toolbox.clone()));
        toolbox
    }
}

/// What a live run reports, in order, for streaming to clients.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: Uuid,
    },
    LlmDelta {
        text: String,
    },
    StepStarted {
        step: i32,
        tool: String,
        action: String,
        input: Value,
    },
    StepCompleted {
        step: i32,
        tool: String,
        action: String,
        output: Option<Value>,
        error: Option<String>,
        duration_ms: i64,
    },
    /// One hook call of one script (`hook` SSE event).
    Hook {
        record: leforge_core::hook::HookRecord,
    },
    /// The terminal run, with every step.
    Finished {
        run: Box<Run>,
    },
}

/// Error codes a run can end with (besides the status itself).
pub mod codes {
    pub const PROVIDER_ERROR: &str = "PROVIDER_ERROR";
    pub const TOOLS_UNAVAILABLE: &str = "TOOLS_UNAVAILABLE";
    pub const TOO_MANY_TOOLS: &str = "TOO_MANY_TOOLS";
    pub const PROVIDER_NOT_CONFIGURED: &str = "PROVIDER_NOT_CONFIGURED";
    pub const TRUNCATED_OUTPUT: &str = "TRUNCATED_OUTPUT";
    pub const OUTPUT_SCHEMA_MISMATCH: &str = "OUTPUT_SCHEMA_MISMATCH";
    pub const TOKEN_BUDGET_EXCEEDED: &str = "TOKEN_BUDGET_EXCEEDED";
    pub const MAX_STEPS_EXCEEDED: &str = "MAX_STEPS_EXCEEDED";
    pub const RUN_TIMEOUT: &str = "RUN_TIMEOUT";
    pub const RUN_CANCELLED: &str = "RUN_CANCELLED";
    pub const INVALID_SCHEMA: &str = "INVALID_OUTPUT_SCHEMA";
    /// The code a tool call denied by a `before_tool` hook reports to the model.
    pub const DENIED_BY_HOOK: &str = "DENIED_BY_HOOK";
    /// A `$ref` that names nothing (reported to the model; ends the run only in a final
    /// answer that still has one after a correction).
    pub const INVALID_REFERENCE: &str = crate::refs::INVALID_REFERENCE;
    /// A json-mode reply that could not be used, recorded as a failed step.
    pub const INVALID_REPLY: &str = "INVALID_REPLY";
    /// A step or hook record could not be stored after retries.
    pub const STORE_ERROR: &str = "STORE_ERROR";
}

/// How the loop ended.
#[derive(Debug)]
enum Finish {
    Completed { output: Value, text: String },
    Failed { code: &'static str, message: String },
    MaxSteps { message: String },
    Timeout,
    Cancelled,
}

/// Counters that must survive the loop future being dropped at a deadline or cancel.
#[derive(Debug, Default)]
struct Progress {
    steps: i32,
    tokens_in: u64,
    tokens_out: u64,
    last_text: String,
}

fn emit(events: &Option<broadcast::Sender<RunEvent>>, event: RunEvent) {
    if let Some(tx) = events {
        // No subscriber is fine: events are a view, the store is the record.
        let _ = tx.send(event);
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The first user message: the instruction, then the data as pretty JSON, with each field
/// larger than `budget` bytes shown as a preview and its `input.data.<field>` reference.
pub fn user_message(input: &str, data: Option<&Value>, budget: usize) -> String {
    match data {
        Some(d) if !d.is_null() => {
            let shown = refs::data_for_model(d, budget);
            format!(
                "{input}\n\nData:\n{}",
                serde_json::to_string_pretty(&shown).unwrap_or_else(|_| shown.to_string())
            )
        }
        _ => input.to_string(),
    }
}

/// Runs an agent to a terminal status and returns the stored run (`None` when the input
/// said it is not wanted and nobody follows the events). Only store failures are errors;
/// everything else (provider down, tool crash, timeout, cancel) is a run outcome.
pub async fn execute(
    deps: &Deps,
    input: RunInput,
    cancel: CancellationToken,
    events: Option<broadcast::Sender<RunEvent>>,
) -> Result<Option<Run>, StoreError> {
    let started = Instant::now();
    let run_id = input.run_id;
    // Cancelled (or otherwise finished) before it started: nothing to do.
    let not_started = || async {
        deps.store
            .get_run(run_id)
            .await?
            .ok_or(StoreError::NotFound { entity: "run" })
            .map(Some)
    };
    if input.claimed {
        if cancel.is_cancelled() {
            return not_started().await;
        }
    } else {
        match deps
            .store
            .apply_run_update(
                run_id,
                RunUpdate {
                    status: Some(RunStatus::Running),
                    started_at: Some(now()),
                    lease: input.lease.clone(),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::InvalidState(_)) => return not_started().await,
            Err(e) => return Err(e),
        }
    }
    emit(&events, RunEvent::RunStarted { run_id });

    let progress = Arc::new(Mutex::new(Progress::default()));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(input.limits.timeout_ms);
    // Step writes in flight: they outlive the loop when a deadline or cancel drops it.
    let writes = Writes::default();
    let body = run_loop(deps, &input, progress.clone(), &events, &writes);
    let finish = tokio::select! {
        finish = body => finish,
        _ = tokio::time::sleep_until(deadline) => Finish::Timeout,
        _ = cancel.cancelled() => Finish::Cancelled,
    };
    // Every step row is stored before the run's end is, and its event sent before the end's.
    // Not bounded by the deadline: a step write that cannot finish (its run's row locked from
    // outside) would hold the terminal update back just the same, and a write's own waits
    // are bounded by the store's pool timeouts and its few retries.
    writes.wait().await;
    // A lost trace write fails the run, whatever else it came to (but a cancel stays).
    let finish = match (writes.failure(), finish) {
        (_, Finish::Cancelled) => Finish::Cancelled,
        (Some(message), _) => Finish::Failed {
            code: codes::STORE_ERROR,
            message,
        },
        (None, finish) => finish,
    };

    let p = std::mem::take(&mut *progress.lock().unwrap_or_else(|e| e.into_inner()));
    let mut update = RunUpdate {
        total_steps: Some(p.steps),
        tokens_input: Some(p.tokens_in as i64),
        tokens_output: Some(p.tokens_out as i64),
        duration_ms: Some(started.elapsed().as_millis() as i64),
        completed_at: Some(now()),
        output_text: Some(p.last_text.clone()),
        ..Default::default()
    };
    match finish {
        Finish::Completed { output, text } => {
            update.status = Some(RunStatus::Completed);
            update.output = Some(output);
            update.output_text = Some(text);
        }
        Finish::Failed { code, message } => {
            update.status = Some(RunStatus::Failed);
            update.error_code = Some(code.to_string());
            update.error_message = Some(message);
        }
        Finish::MaxSteps { message } => {
            update.status = Some(RunStatus::MaxSteps);
            update.error_code = Some(codes::MAX_STEPS_EXCEEDED.to_string());
            update.error_message = Some(message);
        }
        Finish::Timeout => {
            update.status = Some(RunStatus::Timeout);
            update.error_code = Some(codes::RUN_TIMEOUT.to_string());
            update.error_message = Some(format!(
                "the run exceeded its time limit of {} ms",
                input.limits.timeout_ms
            ));
        }
        Finish::Cancelled => {
            update.status = Some(RunStatus::Cancelled);
            update.error_code = Some(codes::RUN_CANCELLED.to_string());
            update.error_message = Some("the run was cancelled".to_string());
        }
    }
    // Someone else may have made it terminal first (a cancel through the API): then their
    // status stays, and only the metrics this worker gathered are recorded.
    let metrics = RunUpdate {
        total_steps: update.total_steps,
        tokens_input: update.tokens_input,
        tokens_output: update.tokens_output,
        duration_ms: update.duration_ms,
        ..Default::default()
    };
    // A subscriber that joins after this check misses `Finished`, and finishes from the
    // store when the channel closes.
    let followed = events.as_ref().is_some_and(|tx| tx.receiver_count() > 0);
    if !input.return_run && !followed {
        let (status, steps) = (update.status, p.steps);
        let status = match deps.store.apply_run_update(run_id, update).await {
            Ok(()) => {
                tracing::info!(run_id = %run_id, status = ?status, steps, "run finished");
                status.unwrap_or(RunStatus::Failed)
            }
            Err(StoreError::InvalidState(_)) => {
                deps.store.apply_run_update(run_id, metrics).await?;
                tracing::info!(run_id = %run_id, steps, "run finished after it was ended elsewhere");
                // Only a cancel ends a run from outside while its worker still runs it.
                RunStatus::Cancelled
            }
            Err(e) => return Err(e),
        };
        observe::run_finished(&input.agent.slug, status, input.mode, started.elapsed());
        return Ok(None);
    }
    let run = match deps.store.update_run(run_id, update).await {
        Ok(run) => run,
        Err(StoreError::InvalidState(_)) => deps.store.update_run(run_id, metrics).await?,
        Err(e) => return Err(e),
    };
    tracing::info!(run_id = %run_id, status = %run.status, steps = run.total_steps, "run finished");
    observe::run_finished(&input.agent.slug, run.status, input.mode, started.elapsed());
    emit(
        &events,
        RunEvent::Finished {
            run: Box::new(run.clone()),
        },
    );
    Ok(Some(run))
}

/// The tools of a run: what the model is offered and how its names map back.
struct Toolbox {
    specs: Arc<[ToolSpec]>,
    by_name: HashMap<String, (String, String)>,
    /// Json mode's preamble and reply schema for these tools, made by the first json-mode run
    /// that uses the set rather than by every run.
    json: std::sync::OnceLock<(String, Arc<Value>)>,
}

impl Toolbox {
    fn json_mode(&self) -> &(String, Arc<Value>) {
        self.json.get_or_init(|| {
            (
                json_mode::preamble(&self.specs),
                Arc::new(json_mode::reply_schema(&self.specs)),
            )
        })
    }
}

impl Toolbox {
    fn new(manifests: &[Arc<Manifest>]) -> Toolbox {
        let mut specs = Vec::new();
        let mut by_name = HashMap::new();
        for m in manifests {
            for ep in &m.endpoints {
                let name = m.tool_name(&ep.name);
                // Registration keeps ForgeHook and MCP server names apart; should two still
                // meet (a race of the two), the model is offered each name once, and calls
                // go to the first entry.
                if by_name.contains_key(&name) {
                    continue;
                }
                specs.push(ToolSpec::new(
                    name.clone(),
                    ep.description.clone(),
                    ep.input_schema.clone(),
                ));
                by_name.insert(name, (m.id.clone(), ep.name.clone()));
            }
        }
        Toolbox {
            specs: specs.into(),
            by_name,
            json: std::sync::OnceLock::new(),
        }
    }
}

fn llm_failure(e: LlmError) -> Finish {
    let code = match &e {
        LlmError::TooManyTools { .. } => codes::TOO_MANY_TOOLS,
        LlmError::NotConfigured { .. } => codes::PROVIDER_NOT_CONFIGURED,
        _ => codes::PROVIDER_ERROR,
    };
    Finish::Failed {
        code,
        message: e.to_string(),
    }
}

async fn chat(
    deps: &Deps,
    request: ChatRequest,
    events: &Option<broadcast::Sender<RunEvent>>,
) -> Result<ChatResponse, LlmError> {
    match events {
        Some(tx) if request.stream => {
            let (delta_tx, mut delta_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let forward = async {
                while let Some(text) = delta_rx.recv().await {
                    let _ = tx.send(RunEvent::LlmDelta { text });
                }
            };
            // The adapter drops its sender when the call ends, which ends `forward`.
            let (response, ()) = tokio::join!(deps.llm.chat(request, Some(delta_tx)), forward);
            response
        }
        _ => deps.llm.chat(request, None).await,
    }
}

async fn run_loop(
    deps: &Deps,
    input: &RunInput,
    progress: Arc<Mutex<Progress>>,
    events: &Option<broadcast::Sender<RunEvent>>,
    writes: &Writes,
) -> Finish {
    let limits = &input.limits;
    let schema = match &input.output_schema {
        None => None,
        Some(s) => match jsonschema::validator_for(s) {
            Ok(v) => Some(v),
            Err(e) => {
                return Finish::Failed {
                    code: codes::INVALID_SCHEMA,
                    message: format!("the agent's output_schema is not a valid JSON Schema: {e}"),
                }
            }
        },
    };
    let manifests = match deps.catalog.resolve(&input.agent.tools).await {
        Ok(m) => m,
        Err(missing) => {
            let list: Vec<_> = missing
                .iter()
                .map(|u| format!("{} ({})", u.id, u.reason))
                .collect();
            return Finish::Failed {
                code: codes::TOOLS_UNAVAILABLE,
                message: format!(
                    "the agent's ForgeHooks are not available: {}",
                    list.join(", ")
                ),
            };
        }
    };
    let toolbox = deps.toolboxes.get(&manifests);
    let budget = limits.result_budget_bytes as usize;
    let json_mode = limits.tool_mode == ToolMode::Json;
    let mut hooks = hooks::RunHooks::new(deps, input, events, writes.clone());
    let (text, data) = match &mut hooks {
        None => (input.input.clone(), input.data.clone()),
        Some(h) => match h.on_run_start().await {
            Ok(started) => started,
            Err(e) => return hook_failure(e),
        },
    };
    let mut first = user_message(&text, data.as_ref(), budget);
    if json_mode {
        // A long tool list is where a small model loses the one tool the task needs, so the
        // ones whose names and descriptions share the task's words are named up front.
        if let Some(hint) = json_mode::task_hint(&text, &toolbox.specs) {
            first.push_str("\n\n");
            first.push_str(&hint);
        }
    }
    let hooks = hooks.map(Arc::new);
    let mut scope = refs::Scope {
        data,
        outputs: HashMap::new(),
        text_refs: json_mode,
    };
    // Json mode offers the tools through the preamble and the reply schema, never as `tools`.
    let (preamble, offered, response_schema) = if json_mode {
        let (preamble, schema) = toolbox.json_mode();
        (Some(preamble.as_str()), Arc::from([]), Some(schema.clone()))
    } else if toolbox.specs.is_empty() {
        (None, toolbox.specs.clone(), None)
    } else {
        (Some(json_mode::REFS_NOTE), toolbox.specs.clone(), None)
    };
    let system = system_prompt(&input.agent.system_prompt, preamble);
    let mut messages = vec![Message::user(first)];
    let mut resent_truncated = false;
    let mut repaired_output = false;
    let mut repaired_refs = false;
    let mut corrected_reply = false;
    // Json mode: a first answer given without any tool call is questioned once.
    let mut checked_toolless = false;
    let mut steps_done: u32 = 0;

    loop {
        if let Some(budget) = limits.max_total_tokens {
            let used = {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.tokens_in + p.tokens_out
            };
            if used >= budget {
                return Finish::Failed {
                    code: codes::TOKEN_BUDGET_EXCEEDED,
                    message: format!("the run used {used} tokens; its budget is {budget}"),
                };
            }
        }
        let request = ChatRequest {
            provider: input.agent.provider,
            model: input.agent.model.clone(),
            system: system.clone(),
            messages: messages.clone(),
            tools: offered.clone(),
            max_tokens: limits.max_tokens,
            temperature: Some(limits.temperature),
            parallel_tool_calls: None,
            stream: input.stream,
            response_schema: response_schema.clone(),
        };
        // The last turn's step writes go on while this call is in flight; its reply is acted
        // on only once they are stored, so steps and their events keep their order.
        let (response, ()) = tokio::join!(chat(deps, request, events), writes.wait());
        if let Some(message) = writes.failure() {
            return Finish::Failed {
                code: codes::STORE_ERROR,
                message,
            };
        }
        let response = match response {
            Ok(r) => r,
            Err(e) => return llm_failure(e),
        };
        let (tokens_in, tokens_out) = {
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            p.tokens_in += response.usage.input_tokens;
            p.tokens_out += response.usage.output_tokens;
            if !response.text.is_empty() {
                p.last_text = response.text.clone();
            }
            (p.tokens_in, p.tokens_out)
        };
        // The final turn's counters are written with the terminal status; a turn with tool
        // calls writes them together with the step count after its tools ran.

        // A cut-off turn is never acted on: its tool arguments may be partial.
        if response.truncated {
            if resent_truncated {
                return Finish::Failed {
                    code: codes::TRUNCATED_OUTPUT,
                    message: "the model's reply was cut off twice (max_tokens); nothing from it was executed".into(),
                };
            }
            resent_truncated = true;
            messages.push(Message::user(
                "Your previous reply was cut off because it reached the token limit, so none of it was used. \
                 Send it again, more concisely.",
            ));
            continue;
        }

        // What the reply asks for: native tool calls or text; in json mode, one action object.
        let action = if json_mode {
            let first_id = steps_done as usize + 1;
            match json_mode::parse_reply(
                &response.text,
                &|n| toolbox.by_name.contains_key(n),
                first_id,
            ) {
                Ok(action) => {
                    corrected_reply = false;
                    action
                }
                Err(problem) => {
                    messages.push(Message::assistant_text(response.text.clone()));
                    messages.push(Message::user(json_mode::correction(&problem)));
                    if !corrected_reply {
                        corrected_reply = true;
                        continue;
                    }
                    // Corrected once already: this reply costs a step, so a model that never
                    // gets it right ends at max_steps rather than looping.
                    steps_done += 1;
                    let step = steps_done as i32;
                    let tokens = (tokens_in as i64, tokens_out as i64);
                    record_invalid_reply(
                        deps,
                        input,
                        (step, tokens),
                        &response.text,
                        &problem,
                        events,
                        writes,
                    )
                    .await;
                    progress.lock().unwrap_or_else(|e| e.into_inner()).steps += 1;
                    if steps_done >= limits.max_steps {
                        return Finish::MaxSteps {
                            message: format!(
                                "the agent reached its limit of {} steps; the model's last reply could not be used: {problem}",
                                limits.max_steps
                            ),
                        };
                    }
                    continue;
                }
            }
        } else if response.tool_calls.is_empty() {
            json_mode::Action::Answer(parse_final_output(&response.text))
        } else {
            json_mode::Action::Calls(response.tool_calls.clone())
        };

        let calls = match action {
            json_mode::Action::Calls(calls) => calls,
            json_mode::Action::Answer(_)
                if json_mode
                    && steps_done == 0
                    && !toolbox.specs.is_empty()
                    && !checked_toolless =>
            {
                checked_toolless = true;
                messages.push(Message::assistant_text(response.text.clone()));
                // The task and data as the model saw them, after any `on_run_start` hook.
                messages.push(Message::user(json_mode::check_toolless(
                    &text,
                    scope.data.as_ref(),
                    &toolbox.specs,
                )));
                continue;
            }
            json_mode::Action::Answer(answer) => {
                // In json mode the answer is the output as given; its text form keeps any
                // references unexpanded (the output has the values).
                let text = match (&answer, json_mode) {
                    (Value::String(s), true) => s.clone(),
                    (v, true) => v.to_string(),
                    (_, false) => response.text.clone(),
                };
                let output = if refs::contains_ref(&answer, scope.text_refs) {
                    match refs::resolve(&answer, &scope) {
                        Ok(v) => v,
                        Err(problem) if !repaired_refs => {
                            repaired_refs = true;
                            messages.push(Message::assistant_text(response.text.clone()));
                            messages.push(Message::user(format!(
                                "Your answer has a reference that does not resolve: {problem}. Answer again."
                            )));
                            continue;
                        }
                        Err(problem) => {
                            return Finish::Failed {
                                code: codes::INVALID_REFERENCE,
                                message: format!("the final answer's {problem}"),
                            }
                        }
                    }
                } else {
                    answer
                };
                if let Some(validator) = &schema {
                    let problems = output::schema_problems(validator, &output);
                    if !problems.is_empty() {
                        if repaired_output {
                            return Finish::Failed {
                                code: codes::OUTPUT_SCHEMA_MISMATCH,
                                message: format!(
                                    "the final output does not match the agent's output_schema: {}",
                                    problems.join("; ")
                                ),
                            };
                        }
                        repaired_output = true;
                        messages.push(Message::assistant_text(response.text.clone()));
                        let how = if json_mode {
                            "Reply with the final_answer action again, its answer corrected."
                        } else {
                            "Reply with only the corrected JSON."
                        };
                        messages.push(Message::user(format!(
                            "Your answer does not match the required JSON Schema:\n- {}\n{how}",
                            problems.join("\n- ")
                        )));
                        continue;
                    }
                }
                let output = match &hooks {
                    None => output,
                    Some(h) => match h.on_run_end(steps_done as i32, &output).await {
                        Ok(Some(replaced)) => replaced,
                        Ok(None) => output,
                        Err(e) => return hook_failure(e),
                    },
                };
                return Finish::Completed { output, text };
            }
        };

        if steps_done >= limits.max_steps {
            return Finish::MaxSteps {
                message: format!(
                    "the agent reached its limit of {} tool calls and the model asked for more",
                    limits.max_steps
                ),
            };
        }
        if json_mode {
            messages.push(Message::assistant_text(response.text.clone()));
        } else {
            messages.push(Message::from_response(&response));
        }
        let remaining = (limits.max_steps - steps_done) as usize;
        let scope_now = &scope;
        let steps: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let within_budget = i < remaining;
                let step = (steps_done as usize + i + 1) as i32;
                let deps = deps.clone();
                let toolbox = toolbox.clone();
                let progress = progress.clone();
                let hooks = hooks.clone();
                async move {
                    if !within_budget {
                        return Ok((
                            None,
                            json!({"error": {"code": "NOT_EXECUTED", "message": "not executed: the run's step limit was reached"}}),
                            true,
                        ));
                    }
                    let tokens = (tokens_in as i64, tokens_out as i64);
                    let result = run_step(&deps, input, &toolbox, scope_now, step, call, tokens, events, hooks.as_deref(), writes).await;
                    progress.lock().unwrap_or_else(|e| e.into_inner()).steps += 1;
                    result.map(|(content, is_error)| (Some(step), content, is_error))
                }
            })
            .collect();
        let executed = calls.len().min(remaining) as u32;
        // Concurrently, answered together in call order, as providers require.
        let results = join_all(steps).await;
        steps_done += executed;
        let mut hook_error = None;
        let mut report = Vec::new();
        let mut any_error = false;
        for (call, result) in calls.iter().zip(results) {
            match result {
                Ok((step, content, is_error)) => {
                    any_error |= is_error;
                    // The model sees a preview of a large result; references reach the whole.
                    let shown = match step {
                        Some(n) if !is_error => {
                            let shown =
                                refs::for_model(&content, &format!("steps.{n}.output"), budget);
                            scope.outputs.insert(n, Arc::new(content));
                            shown
                        }
                        _ => content,
                    };
                    if json_mode {
                        report.push(json_mode::result_text(step, &call.name, &shown, is_error));
                    } else {
                        messages.push(Message::tool_result(call.id.clone(), shown, is_error));
                    }
                }
                Err(e) => {
                    hook_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = hook_error {
            return hook_failure(e);
        }
        if json_mode {
            report.push(
                if any_error {
                    json_mode::AFTER_ERROR
                } else {
                    json_mode::AFTER_RESULTS
                }
                .to_string(),
            );
            messages.push(Message::user(report.join("\n\n")));
        }
    }
}

/// Splits a tool name the model used into (ForgeHook, endpoint) for the trace, even when it
/// is not one of ours.
fn split_name(name: &str) -> (String, String) {
    match name.split_once("__") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (name.to_string(), String::new()),
    }
}

/// A hook that failed ends the run with its code (`HOOK_REJECTED`, `HOOK_LIMIT_EXCEEDED`,
/// `HOOK_ERROR`) and a message naming the script.
fn hook_failure(e: leforge_core::HookError) -> Finish {
    Finish::Failed {
        code: e.code(),
        message: e.to_string(),
    }
}

/// Executes one tool call, persists its step, and returns the result for the model; `Err`
/// when a hook failed, which ends the run (the step is still recorded).
#[allow(clippy::too_many_arguments)]
async fn run_step(
    deps: &Deps,
    input: &RunInput,
    toolbox: &Toolbox,
    scope: &refs::Scope,
    step: i32,
    call: &ToolCall,
    (tokens_in, tokens_out): (i64, i64),
    events: &Option<broadcast::Sender<RunEvent>>,
    hooks: Option<&hooks::RunHooks>,
    writes: &Writes,
) -> Result<(Value, bool), leforge_core::HookError> {
    let started_at = now();
    let clock = Instant::now();
    let mut hook_error = None;
    // What the tool is (or would have been) called with, as the trace keeps it: the model's
    // arguments with their references as written (the values they name are already stored,
    // as the run's data or an earlier step), or the arguments a `before_tool` hook put in
    // their place.
    let mut step_input = call.arguments.clone();
    // References are resolved before hooks and schema validation see the arguments.
    let resolved = if refs::contains_ref(&call.arguments, scope.text_refs) {
        refs::resolve(&call.arguments, scope).map(|arguments| ToolCall {
            arguments,
            ..call.clone()
        })
    } else {
        Ok(call.clone())
    };
    let span = observe::tool_span(step, call, toolbox.by_name.get(&call.name));
    let (tool, action, outcome) = async {
        match (toolbox.by_name.get(&call.name), hooks, resolved) {
            (Some((id, endpoint)), _, Err(problem)) => {
                emit_started(events, step, id, endpoint, &call.arguments);
                (
                    id.clone(),
                    endpoint.clone(),
                    Err((codes::INVALID_REFERENCE.to_string(), problem)),
                )
            }
            (None, _, _) => {
                let (tool, action) = split_name(&call.name);
                emit_started(events, step, &tool, &action, &call.arguments);
                let mut offered: Vec<_> = toolbox.by_name.keys().cloned().collect();
                offered.sort();
                let message = format!(
                    "'{}' is not a tool of this agent; its tools are: {}",
                    call.name,
                    offered.join(", ")
                );
                (tool, action, Err(("UNKNOWN_TOOL".to_string(), message)))
            }
            (Some((id, endpoint)), Some(hooks), Ok(call)) => {
                let outcome = hooked_call(
                    deps,
                    input,
                    hooks,
                    (step, id, endpoint, &call, events),
                    &mut step_input,
                    &mut hook_error,
                )
                .await;
                (id.clone(), endpoint.clone(), outcome)
            }
            (Some((id, endpoint)), None, Ok(call)) => {
                emit_started(events, step, id, endpoint, &step_input);
                let outcome = invoke_with_retries(deps, input, id, endpoint, &call.arguments).await;
                (
                    id.clone(),
                    endpoint.clone(),
                    outcome.map_err(|e| (e.code().as_str().to_string(), e.to_string())),
                )
            }
        }
    }
    .instrument(span.clone())
    .await;
    let took = clock.elapsed();
    let duration_ms = took.as_millis() as i64;
    // A name the model made up is no label value: the set of those is unbounded.
    let (forgehook, endpoint) = match toolbox.by_name.get(&call.name) {
        Some((id, endpoint)) => (id.as_str(), endpoint.as_str()),
        None => ("unknown", "unknown"),
    };
    let code = match &outcome {
        Ok(_) => "ok",
        Err((code, _)) => code.as_str(),
    };
    observe::tool_call(forgehook, endpoint, code, took);
    observe::tool_span_end(&span, &step_input, &outcome);
    let (output, error) = match &outcome {
        Ok(v) => (Some(v.clone()), None),
        Err((_, message)) => (None, Some(message.clone())),
    };
    let record = RunStep {
        step,
        tool,
        action,
        input: step_input,
        output,
        error,
        duration_ms,
        started_at,
    };
    persist_step(deps, input, record, (tokens_in, tokens_out), events, writes).await;
    if let Some(e) = hook_error {
        return Err(e);
    }
    Ok(match outcome {
        Ok(v) => (v, false),
        Err((code, message)) => (json!({"error": {"code": code, "message": message}}), true),
    })
}

/// Stores a finished step with the run's counters in one commit, so GET /runs/{id} of a live
/// run is current at the cost of a single write per step. Its event is sent once the row is
/// stored, as a subscriber that replays the stored steps and then follows the events expects.
async fn persist_step(
    deps: &Deps,
    input: &RunInput,
    record: RunStep,
    (tokens_in, tokens_out): (i64, i64),
    events: &Option<broadcast::Sender<RunEvent>>,
    writes: &Writes,
) {
    let event = RunEvent::StepCompleted {
        step: record.step,
        tool: record.tool.clone(),
        action: record.action.clone(),
        output: record.output.clone(),
        error: record.error.clone(),
        duration_ms: record.duration_ms,
    };
    let (store, run_id, sender) = (deps.store.clone(), input.run_id, events.clone());
    let retrying = writes.clone();
    let persist = async move {
        let what = format!("step {}", record.step);
        let stored = retrying
            .write(run_id, &what, || {
                store.append_step_with_progress(run_id, record.clone(), tokens_in, tokens_out)
            })
            .await;
        // Only a stored step is announced: a follower replays steps from the store.
        if stored.is_some() {
            emit(&sender, event);
        }
    };
    if input.stream {
        // The next turn streams `llm_delta` events, which must come after this step's. Still
        // tracked, so that a deadline or cancel dropping the loop mid-write leaves the write
        // for `execute` to wait for.
        let _ = writes.spawn(persist).await;
    } else {
        // Written while the next model call is in flight, rather than before it: the write
        // then costs the run nothing on its way to the result. `run_loop` waits for the
        // writes before it acts on that call's reply, and `execute` before the run ends.
        writes.spawn(persist);
    }
}

/// Records a json-mode reply that could not be used, after its correction, as a failed step.
async fn record_invalid_reply(
    deps: &Deps,
    input: &RunInput,
    (step, tokens): (i32, (i64, i64)),
    reply: &str,
    problem: &str,
    events: &Option<broadcast::Sender<RunEvent>>,
    writes: &Writes,
) {
    let record = RunStep {
        step,
        tool: "leforge".to_string(),
        action: "reply".to_string(),
        input: json!({"reply": reply}),
        output: None,
        error: Some(format!("{}: {problem}", codes::INVALID_REPLY)),
        duration_ms: 0,
        started_at: now(),
    };
    persist_step(deps, input, record, tokens, events, writes).await;
}

/// The system prompt a run sends: the agent's, then the runtime's preamble — the tools and
/// the reply protocol in json mode, the note on references in native mode with tools.
fn system_prompt(agent_prompt: &str, preamble: Option<&str>) -> String {
    match preamble {
        None => agent_prompt.to_string(),
        Some(preamble) if agent_prompt.trim().is_empty() => preamble.to_string(),
        Some(preamble) => format!("{}\n\n{preamble}", agent_prompt.trim_end()),
    }
}

/// A tool call with `before_tool` and `after_tool` around it. Replaced arguments go through
/// the normal invoke path, which validates them against the endpoint's input schema.
async fn hooked_call(
    deps: &Deps,
    input: &RunInput,
    hooks: &hooks::RunHooks,
    (step, id, endpoint, call, events): (
        i32,
        &String,
        &String,
        &leforge_core::llm::ToolCall,
        &Option<broadcast::Sender<RunEvent>>,
    ),
    step_input: &mut Value,
    hook_error: &mut Option<leforge_core::HookError>,
) -> Result<Value, (String, String)> {
    use leforge_core::hook::{BeforeToolOutcome, HookToolCall};
    let mut hook_call = HookToolCall {
        tool: id.clone(),
        action: endpoint.clone(),
        name: call.name.clone(),
        args: call.arguments.clone(),
    };
    let failed = |e: &leforge_core::HookError| (e.code().to_string(), e.to_string());
    let decided = match hooks.before_tool(step, &hook_call).await {
        Err(e) => {
            emit_started(events, step, id, endpoint, step_input);
            let out = Err(failed(&e));
            *hook_error = Some(e);
            return out;
        }
        Ok(BeforeToolOutcome::Proceed { args }) => {
            if let Some(args) = args {
                *step_input = args.clone();
                hook_call.args = args;
            }
            None
        }
        Ok(BeforeToolOutcome::Deny { reason }) => Some(Err((
            codes::DENIED_BY_HOOK.to_string(),
            format!("denied by hook: {reason}"),
        ))),
        Ok(BeforeToolOutcome::Result { result }) => Some(Ok(result)),
    };
    emit_started(events, step, id, endpoint, step_input);
    let outcome = match decided {
        Some(outcome) => outcome,
        None => invoke_with_retries(deps, input, id, endpoint, step_input)
            .await
            .map_err(|e| (e.code().as_str().to_string(), e.to_string())),
    };
    let Ok(result) = outcome else { return outcome };
    match hooks.after_tool(step, &hook_call, &result).await {
        Ok(Some(replaced)) => Ok(replaced),
        Ok(None) => Ok(result),
        Err(e) => {
            let out = Err(failed(&e));
            *hook_error = Some(e);
            out
        }
    }
}

fn emit_started(
    events: &Option<broadcast::Sender<RunEvent>>,
    step: i32,
    tool: &str,
    action: &str,
    input: &Value,
) {
    emit(
        events,
        RunEvent::StepStarted {
            step,
            tool: tool.to_string(),
            action: action.to_string(),
            input: input.clone(),
        },
    );
}

/// Transient failures (timeouts, an unavailable container) are retried with backoff when the
/// agent allows; input errors and guest errors are deterministic and go straight back.
async fn invoke_with_retries(
    deps: &Deps,
    input: &RunInput,
    id: &str,
    endpoint: &str,
    arguments: &Value,
) -> Result<Value, ToolError> {
    let mut attempt = 0;
    loop {
        match deps.tools.invoke(id, endpoint, arguments.clone()).await {
            Ok(out) => return Ok(out.output),
            Err(e) => {
                let retry = input.limits.retry_on_error
                    && e.code().is_transient()
                    && attempt < input.limits.max_retries;
                if !retry {
                    return Err(e);
                }
                attempt += 1;
                let backoff = Duration::from_millis(100 * (1 << attempt.min(6)));
                tracing::warn!(forgehook = id, endpoint, attempt, error = %e, "retrying tool call");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, schema: Value) -> Arc<Manifest> {
        Arc::new(
            Manifest::from_value(json!({
                "id": id, "name": id, "version": "1.0.0",
                "endpoints": [{"name": "run", "description": "Runs.",
                               "input_schema": schema, "output_schema": {"type": "object"}}]
            }))
            .unwrap(),
        )
    }

    /// The same loaded manifests share one tool list; a reinstalled ForgeHook (a new manifest)
    /// never gets the old one; the cache stays bounded.
    #[test]
    fn tool_lists_are_shared_per_manifest_set_and_never_stale() {
        let cache = ToolboxCache::default();
        let a = manifest("alpha", json!({"type": "object"}));
        let b = manifest("beta", json!({"type": "object"}));
        let first = cache.get(&[a.clone(), b.clone()]);
        assert!(Arc::ptr_eq(&first, &cache.get(&[a.clone(), b.clone()])));
        assert_eq!(first.specs.len(), 2);
        assert_eq!(
            first.by_name["beta__run"],
            ("beta".to_string(), "run".to_string())
        );

        // The same ForgeHooks in another order are offered in that order.
        let reordered = cache.get(&[b.clone(), a.clone()]);
        assert!(!Arc::ptr_eq(&first, &reordered));
        assert_eq!(reordered.specs[0].name, "beta__run");

        let schema = json!({"type": "object", "required": ["x"]});
        let reinstalled = manifest("alpha", schema.clone());
        let fresh = cache.get(&[reinstalled, b.clone()]);
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(fresh.specs[0].parameters(), &schema);

        for i in 0..TOOLBOXES_KEPT + 10 {
            cache.get(&[manifest(&format!("m{i}"), json!({"type": "object"}))]);
        }
        assert_eq!(cache.0.lock().unwrap().len(), TOOLBOXES_KEPT);
    }
}
