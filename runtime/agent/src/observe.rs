//! What the loop reports to the operator's metrics, through the `metrics` facade: the server
//! installs the recorder, and without one every call here is a no-op. Label values come
//! only from bounded sets (agent slugs, ForgeHook ids and endpoints, error codes, statuses),
//! never from what a model or a caller wrote.
//!
//! The spans follow the OpenTelemetry GenAI conventions; they are plain `tracing` spans, which
//! the server exports when it traces. Content (arguments, results) is recorded only when the
//! operator set the conventions' variable, `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tracing::field::Empty;

use leforge_core::hook::{HookRecord, HookRecordOutcome};
use leforge_core::run::{RunMode, RunStatus};

/// A run reached its end.
pub fn run_finished(agent: &str, status: RunStatus, mode: RunMode, took: Duration) {
    // The run's span, when it runs inside one (the server's `invoke_agent`).
    let span = tracing::Span::current();
    span.record("leforge.run.status", status.as_str());
    if status != RunStatus::Completed {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
    let (agent, status) = (agent.to_string(), status.as_str());
    metrics::counter!("leforge_runs_total",
        "agent" => agent.clone(), "status" => status, "mode" => mode.as_str())
    .increment(1);
    metrics::histogram!("leforge_run_duration_seconds", "agent" => agent, "status" => status)
        .record(took.as_secs_f64());
}

/// One tool call, retries included; `outcome` is `ok` or the error code.
pub(crate) fn tool_call(forgehook: &str, endpoint: &str, outcome: &str, took: Duration) {
    let (forgehook, endpoint) = (forgehook.to_string(), endpoint.to_string());
    metrics::counter!("leforge_tool_calls_total",
        "forgehook" => forgehook.clone(), "endpoint" => endpoint.clone(),
        "outcome" => outcome.to_string())
    .increment(1);
    metrics::histogram!("leforge_tool_call_duration_seconds",
        "forgehook" => forgehook, "endpoint" => endpoint)
    .record(took.as_secs_f64());
}

/// One call of one hook script.
pub(crate) fn hook_call(record: &HookRecord) {
    let outcome = match &record.outcome {
        HookRecordOutcome::Unchanged => "unchanged",
        HookRecordOutcome::Replaced { .. } => "replaced",
        HookRecordOutcome::Denied { .. } => "denied",
        HookRecordOutcome::Result { .. } => "result",
        HookRecordOutcome::Rejected { .. } => "rejected",
        HookRecordOutcome::Failed { .. } => "failed",
    };
    metrics::counter!("leforge_hook_calls_total",
        "script" => record.script.clone(), "hook_point" => record.hook.as_str(),
        "outcome" => outcome)
    .increment(1);
}

/// Whether spans may hold content: prompts, tool arguments, results. Off unless the standard
/// variable is `true`; read once.
pub fn capture_content() -> bool {
    static CAPTURE: OnceLock<bool> = OnceLock::new();
    *CAPTURE.get_or_init(|| {
        std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
    })
}

/// The `execute_tool {tool name}` span of one tool call (hooks and retries inside it).
pub(crate) fn tool_span(
    step: i32,
    call: &leforge_core::llm::ToolCall,
    target: Option<&(String, String)>,
) -> tracing::Span {
    let (forgehook, endpoint) = match target {
        Some((id, endpoint)) => (id.as_str(), endpoint.as_str()),
        None => ("", ""),
    };
    tracing::info_span!(
        "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        otel.kind = "internal",
        otel.status_code = Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.id,
        gen_ai.tool.type = "function",
        leforge.forgehook.id = forgehook,
        leforge.endpoint = endpoint,
        leforge.step = step,
        error.type = Empty,
        gen_ai.tool.call.arguments = Empty,
        gen_ai.tool.call.result = Empty,
    )
}

/// Records how a tool call ended on its span.
pub(crate) fn tool_span_end(
    span: &tracing::Span,
    arguments: &Value,
    outcome: &Result<Value, (String, String)>,
) {
    if let Err((code, _)) = outcome {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", code.as_str());
    }
    if capture_content() {
        span.record("gen_ai.tool.call.arguments", arguments.to_string());
        if let Ok(result) = outcome {
            span.record("gen_ai.tool.call.result", result.to_string());
        }
    }
}

/// The span of one hook point's scripts (`on_run_start`, `before_tool`, …).
pub(crate) fn hook_span(point: leforge_core::hook::HookPoint, step: Option<i32>) -> tracing::Span {
    tracing::info_span!(
        "hook",
        otel.name = %format!("hook {}", point.as_str()),
        otel.kind = "internal",
        otel.status_code = Empty,
        leforge.hook.point = point.as_str(),
        leforge.step = step,
        error.type = Empty,
    )
}
