//! The contract between the agent loop and user hook scripts run before and after runs and
//! tool calls.
//!
//! Nothing here names a scripting engine: the loop sees only [`HookRunner`] and these types,
//! and `runtime/scripting` implements them with Rhai. A script defines any subset of the four
//! hook functions; the runner skips the ones it does not define.
//!
//! # How the loop uses it
//!
//! One [`HookSession`] per run: the ordered [`HookChain`] (global scripts first, then the
//! agent's) and the [`HookTools`] that the `forgehook()` script helper may call. Each hook
//! method runs the chain in order, each script seeing what the previous one changed, and
//! returns a [`HookOutput`]: the combined outcome plus one [`HookRecord`] per script that
//! defines the hook, which the loop appends to the run's trace *whether or not* the outcome
//! is an error (the trace must show which script failed).
//!
//! | hook | script returns | outcome |
//! |---|---|---|
//! | `on_run_start(ctx)` | `()` / `#{input, data}` (either key) / `throw` | [`RunStartOutcome`] / [`HookError::Rejected`] |
//! | `before_tool(ctx, call)` | `()` / `#{args}` / `#{deny: reason}` / `#{result}` | [`BeforeToolOutcome`] |
//! | `after_tool(ctx, call, result)` | `()` keeps / anything else replaces | `Option<Value>` |
//! | `on_run_end(ctx, output)` | `()` keeps / anything else replaces | `Option<Value>` |
//!
//! A `throw` in any hook rejects the run ([`HookError::Rejected`], `HOOK_REJECTED`); a limit
//! ends it with `HOOK_LIMIT_EXCEEDED`; any other failure (including a return value of the
//! wrong shape) with `HOOK_ERROR`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::tool::ToolExecutor;

/// One stored script as the runner needs it. `(id, version)` identifies the compiled form,
/// so a runner may cache by it: a new version is a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    pub id: Uuid,
    /// Shown in records and errors; unique among scripts.
    pub name: String,
    pub version: i64,
    /// Shared so that building a chain per run does not copy every script's source.
    pub source: Arc<str>,
}

/// The scripts that apply to one run, in the order they run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookChain {
    scripts: Vec<HookScript>,
}

impl HookChain {
    /// Global scripts first, then the agent's own. A script listed twice (globally and by the
    /// agent) runs once, at its first position: running an idempotent redaction twice is
    /// harmless, but a script that appends or counts would surprise its author.
    pub fn new(
        global: impl IntoIterator<Item = HookScript>,
        agent: impl IntoIterator<Item = HookScript>,
    ) -> Self {
        let mut scripts: Vec<HookScript> = Vec::new();
        for script in global.into_iter().chain(agent) {
            if !scripts.iter().any(|s| s.id == script.id) {
                scripts.push(script);
            }
        }
        HookChain { scripts }
    }

    pub fn scripts(&self) -> &[HookScript] {
        &self.scripts
    }

    /// Lets the loop skip the hook machinery entirely for agents without hooks.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }
}

/// What the `forgehook(id, endpoint, args)` script helper may call: the executor the loop
/// uses for its own tool calls (so limits, configuration and any wrapping the loop adds
/// apply alike) and the ForgeHook ids in the agent's `tools`. Any other id is refused.
#[derive(Clone)]
pub struct HookTools {
    pub executor: Arc<dyn ToolExecutor>,
    pub allowed: Vec<String>,
}

impl HookTools {
    pub fn new(executor: Arc<dyn ToolExecutor>, allowed: Vec<String>) -> Self {
        HookTools { executor, allowed }
    }

    pub fn allows(&self, forgehook_id: &str) -> bool {
        self.allowed.iter().any(|a| a == forgehook_id)
    }
}

impl std::fmt::Debug for HookTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookTools")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// Everything about one run the hooks need besides the per-call context. Built once per run.
#[derive(Debug, Clone, Default)]
pub struct HookSession {
    pub chain: HookChain,
    /// `None`: `forgehook()` fails in every script (e.g. the `/scripts/{id}/test` route).
    pub tools: Option<HookTools>,
}

/// `ctx.agent` in scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookAgent {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

/// `ctx` in scripts: `#{agent: #{id, slug, name}, run_id, input, data, step, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookContext {
    pub agent: HookAgent,
    pub run_id: Uuid,
    /// The run's input text, as the LLM will see it (after `on_run_start` replacements).
    pub input: String,
    /// The run's structured input, `null` when there is none.
    pub data: Value,
    /// The number of the current step (tool call); 0 before the first one.
    pub step: i32,
    /// Free-form facts the loop chooses to expose (e.g. `triggered_by`); an object.
    pub metadata: Value,
}

impl HookContext {
    /// The JSON form scripts receive as `ctx`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "agent": {
                "id": self.agent.id.to_string(),
                "slug": self.agent.slug,
                "name": self.agent.name,
            },
            "run_id": self.run_id.to_string(),
            "input": self.input,
            "data": self.data,
            "step": self.step,
            "metadata": self.metadata,
        })
    }
}

/// `call` in scripts: one tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookToolCall {
    /// The ForgeHook id.
    pub tool: String,
    /// The endpoint.
    pub action: String,
    /// The tool name the model used (as in the `ToolSpec`).
    pub name: String,
    pub args: Value,
}

impl HookToolCall {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "tool": self.tool,
            "action": self.action,
            "name": self.name,
            "args": self.args,
        })
    }
}

/// The four hook points; the wire names are the script function names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    OnRunStart,
    BeforeTool,
    AfterTool,
    OnRunEnd,
}

impl HookPoint {
    pub const ALL: [HookPoint; 4] = [
        HookPoint::OnRunStart,
        HookPoint::BeforeTool,
        HookPoint::AfterTool,
        HookPoint::OnRunEnd,
    ];

    /// The script function name.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::OnRunStart => "on_run_start",
            HookPoint::BeforeTool => "before_tool",
            HookPoint::AfterTool => "after_tool",
            HookPoint::OnRunEnd => "on_run_end",
        }
    }

    /// How many parameters the script function takes (`ctx`, then `call`, then the value).
    pub fn arity(self) -> usize {
        match self {
            HookPoint::OnRunStart => 1,
            HookPoint::BeforeTool | HookPoint::OnRunEnd => 2,
            HookPoint::AfterTool => 3,
        }
    }

    /// The parameter names, for error messages.
    pub fn signature(self) -> &'static str {
        match self {
            HookPoint::OnRunStart => "on_run_start(ctx)",
            HookPoint::BeforeTool => "before_tool(ctx, call)",
            HookPoint::AfterTool => "after_tool(ctx, call, result)",
            HookPoint::OnRunEnd => "on_run_end(ctx, output)",
        }
    }

    pub fn parse(name: &str) -> Option<HookPoint> {
        HookPoint::ALL.into_iter().find(|h| h.as_str() == name)
    }
}

impl std::fmt::Display for HookPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The combined result of `on_run_start` over the chain. `None` leaves a field as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStartOutcome {
    /// The new input text for the LLM.
    pub input: Option<String>,
    /// The new structured input (`Some(Value::Null)` removes it).
    pub data: Option<Value>,
}

/// The combined result of `before_tool` over the chain. The first script that denies or
/// supplies a result ends the chain: later scripts never see a call that will not run.
#[derive(Debug, Clone, PartialEq)]
pub enum BeforeToolOutcome {
    /// Run the tool. `Some(args)`: a script replaced the arguments; the loop re-validates
    /// them against the endpoint's input schema before calling.
    Proceed { args: Option<Value> },
    /// Do not run the tool: record the step with error `denied by hook: {reason}` and tell
    /// the model the same.
    Deny { reason: String },
    /// Do not run the tool: use this as its output.
    Result { result: Value },
}

/// One line a script logged (`log_info`, `log_warn`, `log_error`, `print`, `debug`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookLog {
    pub level: HookLogLevel,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookLogLevel {
    Info,
    Warn,
    Error,
}

/// What one script's hook call did, as shown in the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HookRecordOutcome {
    /// The script returned `()`.
    Unchanged,
    /// The script replaced something; `changes` holds the new values by key (`input`, `data`,
    /// `args`, `result` or `output`) so the trace shows what it changed.
    Replaced {
        changes: Value,
    },
    Denied {
        reason: String,
    },
    /// `before_tool` supplied the tool's result.
    Result {
        result: Value,
    },
    /// The script threw.
    Rejected {
        reason: String,
    },
    /// A limit or an error; `code` is [`HookError::code`].
    Failed {
        code: String,
        message: String,
    },
}

/// One hook call of one script, for the run's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookRecord {
    pub hook: HookPoint,
    /// The script's name.
    pub script: String,
    pub script_id: Uuid,
    pub script_version: i64,
    /// Fractional, because a typical hook takes microseconds.
    pub duration_ms: f64,
    pub outcome: HookRecordOutcome,
    /// What the script logged during this call, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<HookLog>,
    /// The step (tool call) a `before_tool`/`after_tool` record belongs to; set by the loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
}

/// What a hook method returns: the outcome and the records, which the loop keeps in both
/// cases.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOutput<T> {
    pub outcome: Result<T, HookError>,
    pub records: Vec<HookRecord>,
}

/// Why a hook ended the run. Messages are safe to show to the run's owner: they name the
/// script and say what happened in it, never host details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookError {
    /// The script threw: `throw "reason"`.
    #[error("hook {hook} of script '{script}' rejected the run: {reason}")]
    Rejected {
        script: String,
        hook: HookPoint,
        reason: String,
    },
    /// `limit` is one of [`HookLimit`]'s names (e.g. `max_operations`, `time`).
    #[error("script '{script}' exceeded its limit {limit}")]
    LimitExceeded { script: String, limit: String },
    /// A runtime error (or a return value of the wrong shape). `line` and `column` are
    /// 1-based positions in `script`, `None` when the engine cannot place the error.
    #[error("script '{script}' failed{}: {message}", position(*line, *column))]
    Runtime {
        script: String,
        line: Option<u32>,
        column: Option<u32>,
        message: String,
    },
    /// A failure of the runner itself (not of a script): its worker pool went away.
    #[error("hook runner failure: {message}")]
    Internal { message: String },
}

fn position(line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl HookError {
    /// The run's `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            HookError::Rejected { .. } => "HOOK_REJECTED",
            HookError::LimitExceeded { .. } => "HOOK_LIMIT_EXCEEDED",
            HookError::Runtime { .. } | HookError::Internal { .. } => "HOOK_ERROR",
        }
    }

    /// The script the error happened in, if any.
    pub fn script(&self) -> Option<&str> {
        match self {
            HookError::Rejected { script, .. }
            | HookError::LimitExceeded { script, .. }
            | HookError::Runtime { script, .. } => Some(script),
            HookError::Internal { .. } => None,
        }
    }
}

/// The names `HookError::LimitExceeded::limit` uses: stable, documented to users.
pub struct HookLimit;

impl HookLimit {
    pub const MAX_OPERATIONS: &'static str = "max_operations";
    pub const CALL_DEPTH: &'static str = "call_depth";
    pub const EXPRESSION_DEPTH: &'static str = "expression_depth";
    pub const STRING_SIZE: &'static str = "string_size";
    pub const ARRAY_SIZE: &'static str = "array_size";
    pub const MAP_SIZE: &'static str = "map_size";
    pub const MODULES: &'static str = "modules";
    pub const VARIABLES: &'static str = "variables";
    /// The wall-clock deadline of one hook call.
    pub const TIME: &'static str = "time";
    /// The bytes one hook call may allocate.
    pub const MEMORY: &'static str = "memory";
}

/// Runs hook scripts for the agent loop. Each method runs `session.chain` in order and
/// returns what the loop must do plus the records for the trace (see the module docs).
/// Implementations must not block the async executor: script evaluation runs elsewhere.
#[async_trait]
pub trait HookRunner: Send + Sync + 'static {
    /// Before the first LLM call. Apply `input`/`data` replacements to the run; on error
    /// fail the run with [`HookError::code`].
    async fn on_run_start(
        &self,
        session: &HookSession,
        ctx: &HookContext,
    ) -> HookOutput<RunStartOutcome>;

    /// Before each tool call, after the loop resolved the model's tool name to `call`.
    async fn before_tool(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        call: &HookToolCall,
    ) -> HookOutput<BeforeToolOutcome>;

    /// After a tool call that produced `result` (the tool's output, or the one `before_tool`
    /// supplied). `Some(v)`: give `v` to the model and the step instead.
    async fn after_tool(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        call: &HookToolCall,
        result: &Value,
    ) -> HookOutput<Option<Value>>;

    /// Once the run has its final output. `Some(v)`: store `v` as the output instead.
    async fn on_run_end(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        output: &Value,
    ) -> HookOutput<Option<Value>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(n: u128, name: &str) -> HookScript {
        HookScript {
            id: Uuid::from_u128(n),
            name: name.into(),
            version: 1,
            source: Arc::from(""),
        }
    }

    #[test]
    fn chain_puts_global_scripts_first_and_runs_a_duplicate_once() {
        let chain = HookChain::new(
            [script(1, "g1"), script(2, "g2")],
            [script(3, "a1"), script(1, "g1")],
        );
        let names: Vec<_> = chain.scripts().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["g1", "g2", "a1"]);
    }

    #[test]
    fn error_codes_and_messages() {
        let e = HookError::Rejected {
            script: "s".into(),
            hook: HookPoint::OnRunStart,
            reason: "no".into(),
        };
        assert_eq!(e.code(), "HOOK_REJECTED");
        assert_eq!(
            e.to_string(),
            "hook on_run_start of script 's' rejected the run: no"
        );
        let e = HookError::LimitExceeded {
            script: "s".into(),
            limit: HookLimit::TIME.into(),
        };
        assert_eq!(e.code(), "HOOK_LIMIT_EXCEEDED");
        assert_eq!(e.to_string(), "script 's' exceeded its limit time");
        let e = HookError::Runtime {
            script: "s".into(),
            line: Some(3),
            column: Some(7),
            message: "boom".into(),
        };
        assert_eq!(e.code(), "HOOK_ERROR");
        assert_eq!(e.to_string(), "script 's' failed at line 3, column 7: boom");
    }

    #[test]
    fn record_outcome_wire_form() {
        let o = HookRecordOutcome::Denied { reason: "r".into() };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"kind": "denied", "reason": "r"})
        );
        assert_eq!(HookPoint::parse("after_tool"), Some(HookPoint::AfterTool));
        assert_eq!(
            serde_json::to_value(HookPoint::BeforeTool).unwrap(),
            "before_tool"
        );
    }
}
