//! Runs of an agent and the steps (tool calls) inside them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a run is in its life. The wire names are the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Timeout,
    MaxSteps,
    Cancelled,
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::MaxSteps,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::MaxSteps => "max_steps",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A terminal run never changes status again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller waits for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The request waits for the result.
    Sync,
    /// 202 at once; a worker claims the run from the queue.
    Async,
    /// The request receives server-sent events.
    Stream,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Sync => "sync",
            RunMode::Async => "async",
            RunMode::Stream => "stream",
        }
    }

    pub fn parse(s: &str) -> Option<RunMode> {
        match s {
            "sync" => Some(RunMode::Sync),
            "async" => Some(RunMode::Async),
            "stream" => Some(RunMode::Stream),
            _ => None,
        }
    }
}

/// One attempt to deliver a run's result to its `callback_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallbackAttempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The HTTP status the receiver answered, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// One finished step of a run: a tool call with what went in and what came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunStep {
    pub step: i32,
    /// The ForgeHook id (or the raw tool name the model asked for when it was not allowed).
    pub tool: String,
    /// The endpoint of the ForgeHook.
    pub action: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// When the step started.
    #[serde(rename = "timestamp")]
    pub started_at: DateTime<Utc>,
}

/// A stored run. `steps` is assembled from the step rows, in step order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub status: RunStatus,
    pub input_text: String,
    pub input_data: Option<Value>,
    pub output: Option<Value>,
    pub output_text: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub total_steps: i32,
    pub tokens_input: i64,
    pub tokens_output: i64,
    pub duration_ms: Option<i64>,
    /// The API key id that started the run, or `None` for an anonymous call to a public agent.
    pub triggered_by: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub mode: RunMode,
    /// The effective limits of the run, fixed at creation.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Value>,
    pub callback_url: Option<String>,
    pub callback_attempts: Vec<CallbackAttempt>,
    pub idempotency_key: Option<String>,
    /// Hash of the request body, to tell an idempotent replay from a conflicting reuse.
    #[serde(skip)]
    pub request_hash: Option<String>,
    /// The server process that executes (or executed) the run.
    pub worker: Option<String>,
    pub steps: Vec<RunStep>,
    /// Every hook call of every script, in call order (empty for agents without hooks).
    #[serde(default)]
    pub hooks: Vec<crate::hook::HookRecord>,
    /// The W3C `traceparent` the run was created under (the API shows its trace id).
    #[serde(skip)]
    pub trace_context: Option<String>,
}

impl Run {
    /// The id of the trace the run's spans belong to, from its stored `traceparent`
    /// (`00-<trace id>-<span id>-<flags>`).
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.trace_context.as_deref()?.split('-');
        let (_version, trace_id) = (parts.next()?, parts.next()?);
        (trace_id.len() == 32).then_some(trace_id)
    }
}

/// What the store needs to create a run: `pending`, or `running` when `start` is given.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub agent_id: Uuid,
    pub input_text: String,
    pub input_data: Option<Value>,
    pub triggered_by: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub mode: RunMode,
    pub limits: Option<Value>,
    pub callback_url: Option<String>,
    pub idempotency_key: Option<String>,
    /// Whose `idempotency_key` it is: `key:<api key id>`, or `ip:<address>` for anonymous
    /// callers. The same key from another caller is another run.
    pub idempotency_scope: String,
    pub request_hash: Option<String>,
    /// Created already claimed: `running`, started at its creation, under this lease. A
    /// server with a free slot starts an async run it accepts at once, rather than queueing
    /// it and claiming it back (a queued run is only claimed by workers looking for
    /// `pending` ones, so a started run is never claimed).
    pub start: Option<RunStart>,
    /// The W3C `traceparent` of the request that created the run: its spans' parent.
    pub trace_context: Option<String>,
}

/// The lease a run is created under when it starts at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// The server process that executes it.
    pub owner: String,
    pub lease_until: DateTime<Utc>,
}

impl NewRun {
    /// A synchronous run with no options, as tests and simple callers create them.
    pub fn simple(agent_id: Uuid, input_text: impl Into<String>) -> NewRun {
        NewRun {
            agent_id,
            input_text: input_text.into(),
            input_data: None,
            triggered_by: None,
            ip_address: None,
            user_agent: None,
            mode: RunMode::Sync,
            limits: None,
            callback_url: None,
            idempotency_key: None,
            idempotency_scope: String::new(),
            request_hash: None,
            start: None,
            trace_context: None,
        }
    }
}

/// The mutable part of a run, written as it progresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub output: Option<Value>,
    pub output_text: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub total_steps: Option<i32>,
    pub tokens_input: Option<i64>,
    pub tokens_output: Option<i64>,
    pub duration_ms: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Take (or renew) the lease: `(owner, expires_at)`.
    pub lease: Option<(String, DateTime<Utc>)>,
}

/// Filters for listing runs; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub agent_id: Option<Uuid>,
    pub status: Option<RunStatus>,
    pub triggered_by: Option<String>,
}
