//! The loop's side of user hook scripts: one [`RunHooks`] per run whose chain is not empty.
//! It builds `ctx` for each call, hands the call to the `HookRunner`, and persists every
//! record (and emits it as a `hook` event) whether the hook succeeded or not, so the trace
//! shows which script did what — including the one that failed the run.

use std::sync::Arc;

use leforge_core::hook::{
    BeforeToolOutcome, HookAgent, HookContext, HookError, HookOutput, HookPoint, HookRecord,
    HookRunner, HookSession, HookToolCall, HookTools,
};
use leforge_core::Store;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::{emit, Deps, RunEvent, RunInput};

pub(crate) struct RunHooks {
    runner: Arc<dyn HookRunner>,
    session: HookSession,
    /// `ctx` as of now: `input`/`data` after `on_run_start`; `step` is set per call.
    ctx: HookContext,
    store: Arc<dyn Store>,
    events: Option<broadcast::Sender<RunEvent>>,
    writes: crate::writes::Writes,
}

impl RunHooks {
    /// `None` when the run has no hooks (or the server has no runner): the loop then skips
    /// the machinery entirely.
    pub(crate) fn new(
        deps: &Deps,
        input: &RunInput,
        events: &Option<broadcast::Sender<RunEvent>>,
        writes: crate::writes::Writes,
    ) -> Option<RunHooks> {
        if input.hook_chain.is_empty() {
            return None;
        }
        let runner = deps.hooks.clone()?;
        Some(RunHooks {
            runner,
            session: HookSession {
                chain: input.hook_chain.clone(),
                // `forgehook()` reaches the agent's own tools only, through the loop's executor.
                tools: Some(HookTools::new(
                    deps.tools.clone(),
                    input.agent.tools.clone(),
                )),
            },
            ctx: HookContext {
                agent: HookAgent {
                    id: input.agent.id,
                    slug: input.agent.slug.clone(),
                    name: input.agent.name.clone(),
                },
                run_id: input.run_id,
                input: input.input.clone(),
                data: input.data.clone().unwrap_or(Value::Null),
                step: 0,
                metadata: json!({"max_steps": input.limits.max_steps, "stream": input.stream}),
            },
            store: deps.store.clone(),
            events: events.clone(),
            writes,
        })
    }

    fn ctx_at(&self, step: i32) -> HookContext {
        HookContext {
            step,
            ..self.ctx.clone()
        }
    }

    /// Runs one hook point's scripts in a span of their own, then keeps their records.
    async fn traced<T>(
        &self,
        point: HookPoint,
        step: Option<i32>,
        call: impl std::future::Future<Output = HookOutput<T>>,
    ) -> Result<T, HookError> {
        use tracing::Instrument;
        let span = crate::observe::hook_span(point, step);
        let out = call.instrument(span.clone()).await;
        if let Err(e) = &out.outcome {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", e.code());
        }
        self.keep(out, step).await
    }

    /// Keeps the records of one hook call: in the store (retried; a write that still fails
    /// fails the run with `STORE_ERROR` at its next turn) and on the event stream.
    async fn keep<T>(&self, out: HookOutput<T>, step: Option<i32>) -> Result<T, HookError> {
        let mut records: Vec<HookRecord> = out.records;
        if !records.is_empty() {
            for r in &mut records {
                r.step = step;
                crate::observe::hook_call(r);
            }
            let run_id = self.ctx.run_id;
            self.writes
                .write(run_id, "hook records", || {
                    self.store.append_run_hooks(run_id, &records)
                })
                .await;
            for record in records {
                emit(&self.events, RunEvent::Hook { record });
            }
        }
        out.outcome
    }

    /// Runs `on_run_start` and applies its replacements; returns the input text and data the
    /// LLM sees.
    pub(crate) async fn on_run_start(&mut self) -> Result<(String, Option<Value>), HookError> {
        let ctx = self.ctx_at(0);
        let out = self.runner.on_run_start(&self.session, &ctx);
        let outcome = self.traced(HookPoint::OnRunStart, None, out).await?;
        if let Some(input) = outcome.input {
            self.ctx.input = input;
        }
        if let Some(data) = outcome.data {
            self.ctx.data = data;
        }
        let data = Some(self.ctx.data.clone()).filter(|d| !d.is_null());
        Ok((self.ctx.input.clone(), data))
    }

    pub(crate) async fn before_tool(
        &self,
        step: i32,
        call: &HookToolCall,
    ) -> Result<BeforeToolOutcome, HookError> {
        let ctx = self.ctx_at(step);
        let out = self.runner.before_tool(&self.session, &ctx, call);
        self.traced(HookPoint::BeforeTool, Some(step), out).await
    }

    pub(crate) async fn after_tool(
        &self,
        step: i32,
        call: &HookToolCall,
        result: &Value,
    ) -> Result<Option<Value>, HookError> {
        let ctx = self.ctx_at(step);
        let out = self.runner.after_tool(&self.session, &ctx, call, result);
        self.traced(HookPoint::AfterTool, Some(step), out).await
    }

    pub(crate) async fn on_run_end(
        &self,
        steps: i32,
        output: &Value,
    ) -> Result<Option<Value>, HookError> {
        let ctx = self.ctx_at(steps);
        let out = self.runner.on_run_end(&self.session, &ctx, output);
        self.traced(HookPoint::OnRunEnd, None, out).await
    }
}
