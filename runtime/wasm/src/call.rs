//! One call into a component: a fresh store with the call's limits, the epoch deadline and a
//! tokio timeout around everything, and the mapping from what happened to a precise
//! `ToolError`.

use std::sync::Arc;
use std::time::Instant;

use leforge_core::tool::ToolError;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::bindings::{ForgehookError, ForgehookPre};
use crate::host_impl::{Grants, HostState, HttpPolicy};
use crate::limits::CallLimits;

pub(crate) enum Call<'a> {
    Describe,
    Invoke { endpoint: &'a str, input: &'a str },
}

pub(crate) enum Returned {
    Describe(String),
    Invoke(Result<String, ForgehookError>),
}

pub(crate) struct CallEnv<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) pre: &'a ForgehookPre<HostState>,
    pub(crate) limits: CallLimits,
    pub(crate) grants: Arc<Grants>,
    pub(crate) http: Arc<HttpPolicy>,
    pub(crate) stdio_cap: usize,
}

/// Runs `call` in a fresh instance that is dropped afterwards, whatever happened: an
/// instance is never reused, so a trap cannot leave state behind for the next caller.
pub(crate) async fn run(env: CallEnv<'_>, call: Call<'_>) -> Result<Returned, ToolError> {
    let limits = env.limits;
    let state = HostState::new(&limits, env.grants, env.http, env.stdio_cap);
    let mut store = Store::new(env.engine, state);
    store.limiter(|s| &mut s.limiter);

    // Checked every epoch tick: yield to the executor (a spinning guest must not starve the
    // runtime's other tasks) until the deadline, then interrupt with a trap.
    let deadline = Instant::now() + limits.timeout();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        if Instant::now() >= deadline {
            ctx.data_mut().timed_out = true;
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });

    let pre = env.pre;
    let work = async {
        let instance = pre.instantiate_async(&mut store).await?;
        match call {
            Call::Describe => instance
                .call_describe(&mut store)
                .await
                .map(Returned::Describe),
            Call::Invoke { endpoint, input } => instance
                .call_invoke(&mut store, endpoint, input)
                .await
                .map(Returned::Invoke),
        }
    };
    // Epochs cannot interrupt a guest blocked inside a host call (an HTTP request that
    // hangs); this timeout can, because it drops the whole future.
    let outcome = tokio::time::timeout(limits.timeout(), work).await;

    let state = store.data();
    let id = state.forgehook_id().to_string();
    let stdout = state.stdout.contents();
    let stderr = state.stderr.contents();
    if !stdout.is_empty() {
        tracing::info!(forgehook = id, "stdout: {stdout}");
    }
    if !stderr.is_empty() {
        tracing::warn!(forgehook = id, "stderr: {stderr}");
    }

    match outcome {
        Err(_elapsed) => Err(ToolError::Timeout {
            timeout_ms: limits.timeout_ms,
        }),
        Ok(Ok(returned)) => Ok(returned),
        Ok(Err(error)) => Err(classify(&error, state, &limits, &stderr)),
    }
}

/// Maps a failed call to its precise code. Order matters: a memory denial and a deadline are
/// recorded in the store, because the trap they cause does not say why it was raised.
fn classify(
    error: &wasmtime::Error,
    state: &HostState,
    limits: &CallLimits,
    stderr: &str,
) -> ToolError {
    if state.limiter.denied {
        return ToolError::OutOfMemory {
            limit_mb: limits.memory_mb,
        };
    }
    let trap = error.downcast_ref::<Trap>();
    if state.timed_out || trap == Some(&Trap::Interrupt) {
        return ToolError::Timeout {
            timeout_ms: limits.timeout_ms,
        };
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return ToolError::Unavailable {
            message: "too many concurrent ForgeHook calls; try again".into(),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    // A Rust panic prints its message to stderr just before the `unreachable` trap; those
    // lines are what tell an author (or an LLM) what went wrong.
    let tail: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if !tail.is_empty() {
        let joined = tail[tail.len().saturating_sub(3)..].join(" | ");
        let clipped: String = joined.chars().take(1_000).collect();
        message.push_str(&format!(" (stderr: {clipped})"));
    }
    ToolError::Trap { message }
}
