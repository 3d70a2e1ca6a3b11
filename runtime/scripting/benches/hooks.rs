//! Overhead of hooks per call, run with `cargo bench -p leforge-scripting --bench hooks`:
//! - a no-op `before_tool` (one script that defines it and returns `()`): the hand-off to a
//!   worker thread, a fresh sandboxed engine, converting `ctx` and `call` to Rhai values, the
//!   call, and the way back;
//! - the same with the `audit_log.rhai` example, a hook that does some work;
//! - an empty chain, the path for agents without hooks.
//!
//! A plain binary (no criterion) so it prints exactly the figures BENCHMARKS.md records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leforge_core::hook::{
    HookAgent, HookChain, HookContext, HookRunner, HookScript, HookSession, HookToolCall,
};
use leforge_scripting::{HookConfig, RhaiHookRunner};
use serde_json::json;
use uuid::Uuid;

const CALLS: usize = 5_000;
const WARM_UP: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn session(name: &str, source: &str) -> HookSession {
    HookSession {
        chain: HookChain::new(
            [],
            [HookScript {
                id: Uuid::new_v4(),
                name: name.into(),
                version: 1,
                source: Arc::from(source),
            }],
        ),
        tools: None,
    }
}

async fn measure(label: &str, runner: &RhaiHookRunner, session: &HookSession) {
    let ctx = HookContext {
        agent: HookAgent {
            id: Uuid::new_v4(),
            slug: "bench".into(),
            name: "Bench".into(),
        },
        run_id: Uuid::new_v4(),
        input: "Summarise the open orders of customer c-1".into(),
        data: json!({"customer": "c-1", "region": "eu"}),
        step: 1,
        metadata: json!({}),
    };
    let call = HookToolCall {
        tool: "json-utils".into(),
        action: "query".into(),
        name: "json-utils__query".into(),
        args: json!({"path": "$.orders[*].id", "data": {"orders": [{"id": 1}, {"id": 2}]}}),
    };
    for _ in 0..WARM_UP {
        let out = runner.before_tool(session, &ctx, &call).await;
        assert!(out.outcome.is_ok(), "{:?}", out.outcome);
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let out = runner.before_tool(session, &ctx, &call).await;
        times.push(started.elapsed());
        assert!(out.outcome.is_ok());
    }
    times.sort();
    println!(
        "{label}: p50 {}, p90 {}, p99 {}, min {} ({CALLS} calls after {WARM_UP} warm-up)",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.9)),
        us(percentile(&times, 0.99)),
        us(times[0]),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runner = RhaiHookRunner::new(HookConfig::default()).expect("runner");
    measure(
        "no-op before_tool",
        &runner,
        &session("noop", "fn before_tool(ctx, call) { }"),
    )
    .await;
    let audit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/audit_log.rhai"
    ))
    .expect("audit_log.rhai");
    measure(
        "audit_log.rhai before_tool",
        &runner,
        &session("audit_log", &audit),
    )
    .await;
    measure("empty chain", &runner, &HookSession::default()).await;
}
