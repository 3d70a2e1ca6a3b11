//! Rhai hook engine with sandbox limits: runs user hook scripts for the agent loop.
//!
//! [`RhaiHookRunner`] implements `leforge_core::hook::HookRunner`. A script is plain Rhai
//! that defines any of `on_run_start(ctx)`, `before_tool(ctx, call)`,
//! `after_tool(ctx, call, result)` and `on_run_end(ctx, output)`; the runner skips the hooks
//! a script does not define and calls the others in chain order.
//!
//! Scripts come from users, so every call runs under limits (operations, call depth,
//! expression depth, string/array/map sizes, a wall-clock deadline) on a dedicated thread
//! pool, never on the async executor. Scripts get no file system, no `eval`, no `sleep`, and
//! `import` only of other stored scripts (through a [`ScriptLibrary`] the server provides;
//! without one, `import` fails). `print` and `debug` go to the call's log, not stdout.
//!
//! This crate must not depend on the store or the server: stored scripts arrive as
//! `HookScript`s, tools as `HookTools`.

pub mod alloc;
mod convert;
mod errors;
mod helpers;
mod imports;
mod pool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use leforge_core::hook::{
    BeforeToolOutcome, HookContext, HookError, HookLog, HookLogLevel, HookOutput, HookPoint,
    HookRecord, HookRecordOutcome, HookRunner, HookScript, HookSession, HookToolCall, HookTools,
    RunStartOutcome,
};
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope, Shared, AST};
use serde_json::Value;
use uuid::Uuid;

use crate::errors::{DEADLINE_TOKEN, MEMORY_TOKEN};
use crate::helpers::HelperError;
use crate::pool::Pool;

pub use crate::errors::ScriptError;
pub use crate::imports::ScriptLibrary;

/// The sandbox and pool settings. The defaults are the documented limits.
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub max_operations: u64,
    pub max_call_depth: usize,
    /// Nesting of expressions at the top level and inside functions (checked at compile).
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_len: usize,
    pub max_map_len: usize,
    /// Net bytes one script's hook call may allocate (map keys included), when the server
    /// runs with the [`alloc::Counting`] allocator.
    pub max_memory_bytes: usize,
    /// Modules one call may import, transitively.
    pub max_modules: usize,
    /// The wall-clock deadline of one script's hook call, `forgehook()` calls included.
    pub timeout: Duration,
    pub max_regex_pattern_bytes: usize,
    pub max_regex_compiled_bytes: usize,
    /// Log lines kept per hook call, and bytes per line; the rest is dropped (and counted).
    pub max_log_lines: usize,
    pub max_log_line_bytes: usize,
    /// Threads hooks run on. A script at its deadline holds one for `timeout`, so there are
    /// more than cores.
    pub workers: usize,
    pub worker_stack_bytes: usize,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            max_operations: 1_000_000,
            max_call_depth: 64,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_bytes: 1 << 20,
            max_array_len: 100_000,
            max_map_len: 100_000,
            // Half the ~64 MB a hook call may cost the server: progress is checked between
            // operations, and one operation may allocate a few MiB more.
            max_memory_bytes: 32 << 20,
            max_modules: 16,
            timeout: Duration::from_secs(1),
            max_regex_pattern_bytes: 4096,
            max_regex_compiled_bytes: 1 << 20,
            max_log_lines: 100,
            max_log_line_bytes: 2048,
            workers: 8,
            // Rhai recurses per call level and per expression level; a debug build at the
            // depth limits needs several MiB. Untouched stack costs no memory.
            worker_stack_bytes: 32 << 20,
        }
    }
}

/// Starting the runner failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot start the hook worker threads: {0}")]
    Workers(#[from] std::io::Error),
}

/// The result of [`RhaiHookRunner::test_hook`]: what the hook returned (`()` as `null`),
/// what it logged, and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct HookTest {
    pub outcome: Result<Value, HookError>,
    pub logs: Vec<HookLog>,
    pub duration_ms: f64,
}

/// Checks `source` under the default limits, as on save: syntax, expression depth, `eval`,
/// and that any hook function it defines takes the right parameters.
pub fn compile(source: &str) -> Result<(), Vec<ScriptError>> {
    check(&compiler(&HookConfig::default()), source).map(|_| ())
}

/// The Rhai implementation of `HookRunner`. Cheap to clone; clones share the AST cache and
/// the worker pool.
#[derive(Clone)]
pub struct RhaiHookRunner {
    inner: Arc<Inner>,
    pool: Arc<Pool>,
}

pub(crate) struct Inner {
    pub(crate) config: HookConfig,
    /// The standard package, shared by every per-call engine.
    standard: Shared<rhai::Module>,
    helpers: Shared<rhai::Module>,
    /// Parses only; also the engine whose settings define what "compiles" means on save.
    compiler: Engine,
    /// One entry per script id, replaced when a new version is seen, so old versions do not
    /// pile up.
    cache: Mutex<HashMap<Uuid, Arc<Compiled>>>,
    library: Option<Arc<dyn ScriptLibrary>>,
}

pub(crate) struct Compiled {
    version: i64,
    pub(crate) ast: AST,
    hooks: [Defined; 4],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Defined {
    No,
    Yes,
    /// Defined, but not with the hook's parameters (the other arity, for the message).
    WrongArity(usize),
}

impl RhaiHookRunner {
    pub fn new(config: HookConfig) -> Result<Self, RunnerError> {
        Self::build(config, None)
    }

    /// As [`RhaiHookRunner::new`], with `import "name"` resolved against stored scripts.
    pub fn with_library(
        config: HookConfig,
        library: Arc<dyn ScriptLibrary>,
    ) -> Result<Self, RunnerError> {
        Self::build(config, Some(library))
    }

    fn build(
        config: HookConfig,
        library: Option<Arc<dyn ScriptLibrary>>,
    ) -> Result<Self, RunnerError> {
        use rhai::packages::Package;
        let pool = Pool::start(config.workers, config.worker_stack_bytes)?;
        let helpers = helpers::module(helpers::RegexLimits {
            max_pattern_len: config.max_regex_pattern_bytes,
            max_compiled_bytes: config.max_regex_compiled_bytes,
            max_string_bytes: config.max_string_bytes,
        });
        Ok(RhaiHookRunner {
            inner: Arc::new(Inner {
                standard: rhai::packages::StandardPackage::new().as_shared_module(),
                helpers,
                compiler: compiler(&config),
                cache: Mutex::new(HashMap::new()),
                library,
                config,
            }),
            pool: Arc::new(pool),
        })
    }

    pub fn config(&self) -> &HookConfig {
        &self.inner.config
    }

    /// Validation on save under this runner's limits; see [`compile`].
    pub fn compile(&self, source: &str) -> Result<(), Vec<ScriptError>> {
        check(&self.inner.compiler, source).map(|_| ())
    }

    /// Runs one hook of one script with the given arguments (`POST /scripts/{id}/test`).
    /// `hook` must be a hook name and `args` its parameters (`[ctx]`, `[ctx, call]`, ...).
    /// `tools`: what `forgehook()` may call; `None` makes it fail.
    pub async fn test_hook(
        &self,
        script: &HookScript,
        hook: &str,
        args: Vec<Value>,
        tools: Option<HookTools>,
    ) -> HookTest {
        let fail = |message: String| HookTest {
            outcome: Err(HookError::Runtime {
                script: script.name.clone(),
                line: None,
                column: None,
                message,
            }),
            logs: Vec::new(),
            duration_ms: 0.0,
        };
        let Some(point) = HookPoint::parse(hook) else {
            return fail(format!(
                "unknown hook '{hook}'; expected on_run_start, before_tool, after_tool or on_run_end"
            ));
        };
        if args.len() != point.arity() {
            return fail(format!(
                "{} takes {} arguments, {} given",
                point.signature(),
                point.arity(),
                args.len()
            ));
        }
        let inner = self.inner.clone();
        let script = script.clone();
        let env = CallEnv::capture(tools, None);
        let ran = self
            .pool
            .run(move || match inner.call(&script, point, args, &env) {
                None => fail_call(
                    &script,
                    format!("the script does not define {}", point.signature()),
                ),
                Some(call) => call,
            })
            .await;
        match ran {
            Some(call) => HookTest {
                outcome: call.result.map(|v| v.unwrap_or(Value::Null)),
                logs: call.logs,
                duration_ms: call.duration_ms,
            },
            None => HookTest {
                outcome: Err(worker_lost()),
                logs: Vec::new(),
                duration_ms: 0.0,
            },
        }
    }

    async fn run_chain<F: Fold>(
        &self,
        session: &HookSession,
        run_id: Uuid,
        fold: F,
    ) -> HookOutput<F::Out> {
        if session.chain.is_empty() {
            return HookOutput {
                outcome: Ok(fold.finish()),
                records: Vec::new(),
            };
        }
        let inner = self.inner.clone();
        let scripts = session.chain.scripts().to_vec();
        let env = CallEnv::capture(session.tools.clone(), Some(run_id));
        self.pool
            .run(move || fold_chain(&inner, &scripts, &env, fold))
            .await
            .unwrap_or_else(|| HookOutput {
                outcome: Err(worker_lost()),
                records: Vec::new(),
            })
    }
}

fn worker_lost() -> HookError {
    HookError::Internal {
        message: "the hook worker stopped before answering".into(),
    }
}

fn fail_call(script: &HookScript, message: String) -> ScriptCall {
    ScriptCall {
        result: Err(HookError::Runtime {
            script: script.name.clone(),
            line: None,
            column: None,
            message,
        }),
        logs: Vec::new(),
        duration_ms: 0.0,
    }
}

/// The engine that parses: the limits that apply at parse time, and `eval` disabled so that
/// a script cannot compile code the sandbox never saw.
fn compiler(config: &HookConfig) -> Engine {
    let mut engine = Engine::new_raw();
    apply_limits(&mut engine, config);
    engine.disable_symbol("eval");
    // The hook API names `before_tool`'s parameter `call`, which Rhai reserves (for
    // `call(fn_ptr, ...)`). Lexing it as a plain identifier lets scripts use that name, and
    // `call(f, x)` still works: Rhai dispatches it by name at run time.
    #[allow(deprecated)] // "volatile", not deprecated: the only hook into the tokenizer.
    engine.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(word) if word.as_str() == "call" => rhai::Token::Identifier(word),
        other => other,
    });
    engine
}

fn apply_limits(engine: &mut Engine, config: &HookConfig) {
    engine
        .set_max_operations(config.max_operations)
        .set_max_call_levels(config.max_call_depth)
        .set_max_expr_depths(config.max_expr_depth, config.max_function_expr_depth)
        .set_max_string_size(config.max_string_bytes)
        .set_max_array_size(config.max_array_len)
        .set_max_map_size(config.max_map_len)
        .set_max_modules(config.max_modules);
}

fn check(engine: &Engine, source: &str) -> Result<Compiled, Vec<ScriptError>> {
    let ast = engine
        .compile(source)
        .map_err(|e| vec![errors::script_error(&e)])?;
    let mut hooks = [Defined::No; 4];
    let mut problems = Vec::new();
    for (slot, point) in hooks.iter_mut().zip(HookPoint::ALL) {
        let arities: Vec<usize> = ast
            .iter_functions()
            .filter(|f| f.name == point.as_str())
            .map(|f| f.params.len())
            .collect();
        *slot = if arities.is_empty() {
            Defined::No
        } else if arities.contains(&point.arity()) {
            Defined::Yes
        } else {
            let (line, column) = find_fn(source, point.as_str());
            problems.push(ScriptError {
                line,
                column,
                message: format!(
                    "the hook {} must take {} parameter(s): {}",
                    point.as_str(),
                    point.arity(),
                    point.signature()
                ),
            });
            Defined::WrongArity(arities[0])
        };
    }
    if problems.is_empty() {
        Ok(Compiled {
            version: 0,
            ast,
            hooks,
        })
    } else {
        Err(problems)
    }
}

/// Where `fn name` is defined, for the arity error (Rhai keeps no position per function).
fn find_fn(source: &str, name: &str) -> (u32, u32) {
    for (n, line) in source.lines().enumerate() {
        if let Some(at) = line.find("fn ") {
            if line[at + 3..].trim_start().starts_with(name) {
                let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
                return (to_u32(n + 1), to_u32(at + 1));
            }
        }
    }
    (0, 0)
}

/// What the per-call engine needs from outside the worker.
pub(crate) struct CallEnv {
    tools: Option<HookTools>,
    /// The runtime `forgehook()` calls run on; captured on the async side because worker
    /// threads are not runtime threads.
    handle: Option<tokio::runtime::Handle>,
    run_id: Option<Uuid>,
}

impl CallEnv {
    fn capture(tools: Option<HookTools>, run_id: Option<Uuid>) -> CallEnv {
        CallEnv {
            tools,
            handle: tokio::runtime::Handle::try_current().ok(),
            run_id,
        }
    }
}

/// The mutable state of one script's hook call, shared with the callbacks of its engine.
pub(crate) struct CallState {
    pub(crate) deadline: Instant,
    script: String,
    hook: HookPoint,
    run_id: Option<Uuid>,
    max_lines: usize,
    max_line_bytes: usize,
    logs: Mutex<(Vec<HookLog>, usize)>,
}

impl CallState {
    fn log(&self, level: HookLogLevel, message: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if logs.0.len() >= self.max_lines {
            logs.1 += 1;
            return;
        }
        let message = truncate(message, self.max_line_bytes);
        let run_id = self.run_id.map(|id| id.to_string()).unwrap_or_default();
        let (script, hook) = (self.script.as_str(), self.hook.as_str());
        match level {
            HookLogLevel::Info => {
                tracing::info!(target: "leforge_scripting::script", script, hook, run_id, "{message}")
            }
            HookLogLevel::Warn => {
                tracing::warn!(target: "leforge_scripting::script", script, hook, run_id, "{message}")
            }
            HookLogLevel::Error => {
                tracing::error!(target: "leforge_scripting::script", script, hook, run_id, "{message}")
            }
        }
        logs.0.push(HookLog { level, message });
    }

    fn take_logs(&self) -> Vec<HookLog> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let (mut lines, dropped) = std::mem::take(&mut *logs);
        if dropped > 0 {
            lines.push(HookLog {
                level: HookLogLevel::Warn,
                message: format!("{dropped} more log line(s) dropped"),
            });
        }
        lines
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One script's hook call.
struct ScriptCall {
    /// `Ok(None)`: the script returned `()`.
    result: Result<Option<Value>, HookError>,
    logs: Vec<HookLog>,
    duration_ms: f64,
}

impl Inner {
    /// The compiled script, from the cache when this version was seen before.
    fn compiled(&self, script: &HookScript) -> Result<Arc<Compiled>, HookError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(&script.id) {
                if c.version == script.version {
                    return Ok(c.clone());
                }
            }
        }
        // Compiled outside the lock: other scripts' calls need not wait for this one.
        let mut compiled = match check(&self.compiler, &script.source) {
            Ok(c) => c,
            Err(problems) => {
                // Scripts are validated on save; this is a script saved under other rules
                // (an engine upgrade). Only the first problem is placed.
                let first = problems.into_iter().next();
                return Err(HookError::Runtime {
                    script: script.name.clone(),
                    line: first.as_ref().map(|p| p.line),
                    column: first.as_ref().map(|p| p.column),
                    message: format!(
                        "the script does not compile: {}",
                        first.map(|p| p.message).unwrap_or_default()
                    ),
                });
            }
        };
        // Errors inside the script's functions then name it, even when it was imported.
        compiled.ast.set_source(script.name.as_str());
        let compiled = Arc::new(Compiled {
            version: script.version,
            ..compiled
        });
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(script.id, compiled.clone());
        Ok(compiled)
    }

    /// Calls `hook` of `script` with `args`; `None` when the script does not define it.
    fn call(
        self: &Arc<Self>,
        script: &HookScript,
        hook: HookPoint,
        args: Vec<Value>,
        env: &CallEnv,
    ) -> Option<ScriptCall> {
        let started = Instant::now();
        let compiled = match self.compiled(script) {
            Ok(c) => c,
            Err(e) => {
                return Some(ScriptCall {
                    result: Err(e),
                    logs: Vec::new(),
                    duration_ms: elapsed_ms(started),
                })
            }
        };
        let idx = HookPoint::ALL.iter().position(|h| *h == hook).unwrap_or(0);
        match compiled.hooks[idx] {
            Defined::No => return None,
            Defined::WrongArity(n) => {
                return Some(ScriptCall {
                    result: Err(HookError::Runtime {
                        script: script.name.clone(),
                        line: None,
                        column: None,
                        message: format!(
                            "{} is defined with {n} parameter(s); expected {}",
                            hook.as_str(),
                            hook.signature()
                        ),
                    }),
                    logs: Vec::new(),
                    duration_ms: elapsed_ms(started),
                })
            }
            Defined::Yes => {}
        }
        let state = Arc::new(CallState {
            deadline: started + self.config.timeout,
            script: script.name.clone(),
            hook,
            run_id: env.run_id,
            max_lines: self.config.max_log_lines,
            max_line_bytes: self.config.max_log_line_bytes,
            logs: Mutex::new((Vec::new(), 0)),
        });
        let engine = self.engine(&state, env);
        let args: Vec<Dynamic> = args.iter().map(convert::to_dynamic).collect();
        // What the script allocates is metered; its arguments are the server's own.
        let metering = alloc::Metering::start();
        let returned = engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new(),
            &mut Scope::new(),
            &compiled.ast,
            hook.as_str(),
            args,
        );
        drop(metering);
        let result = match returned {
            Ok(value) if value.is_unit() => Ok(None),
            Ok(value) => convert::to_json(&value)
                .map(Some)
                .map_err(|message| HookError::Runtime {
                    script: script.name.clone(),
                    line: None,
                    column: None,
                    message: format!("{} returned a value that is not JSON: {message}", hook),
                }),
            Err(err) => Err(errors::eval_failure(&script.name, hook, err)),
        };
        // Dropping the engine here (not after reading the logs) would not matter; the logs
        // are complete once the call returned.
        Some(ScriptCall {
            result,
            logs: state.take_logs(),
            duration_ms: elapsed_ms(started),
        })
    }

    /// A fresh engine per call: the deadline, the log and the tools are per call, and a
    /// raw engine plus two shared modules costs microseconds.
    fn engine(self: &Arc<Self>, state: &Arc<CallState>, env: &CallEnv) -> Engine {
        let mut engine = Engine::new_raw();
        engine.register_global_module(self.standard.clone());
        // Registered after the standard package so that its functions (e.g. `sleep`) win.
        engine.register_global_module(self.helpers.clone());
        apply_limits(&mut engine, &self.config);
        engine.disable_symbol("eval");

        let s = state.clone();
        engine.on_print(move |m| s.log(HookLogLevel::Info, m));
        let s = state.clone();
        engine.on_debug(move |m, _, _| s.log(HookLogLevel::Info, m));
        let deadline = state.deadline;
        let max_memory = self.config.max_memory_bytes as isize;
        engine.on_progress(move |ops| {
            // A thread-local read: cheap enough for every operation.
            if alloc::allocated() > max_memory {
                return Some(Dynamic::from(MEMORY_TOKEN));
            }
            // Reading the clock on every operation would cost more than the operation.
            if ops % 64 == 0 && Instant::now() >= deadline {
                Some(Dynamic::from(DEADLINE_TOKEN))
            } else {
                None
            }
        });
        for (name, level) in [
            ("log_info", HookLogLevel::Info),
            ("log_warn", HookLogLevel::Warn),
            ("log_error", HookLogLevel::Error),
        ] {
            let s = state.clone();
            engine.register_fn(name, move |m: Dynamic| s.log(level, &m.to_string()));
        }

        let tools = env.tools.clone();
        let handle = env.handle.clone();
        engine.register_fn(
            "forgehook",
            move |id: &str, endpoint: &str, args: Dynamic| {
                forgehook(
                    tools.as_ref(),
                    handle.as_ref(),
                    deadline,
                    id,
                    endpoint,
                    &args,
                )
            },
        );

        if let Some(library) = &self.library {
            engine.set_module_resolver(imports::Resolver::new(self.clone(), library.clone()));
        }
        engine
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// `forgehook(id, endpoint, args)`: calls a ForgeHook in the agent's tools, bounded by what
/// is left of the hook call's deadline.
fn forgehook(
    tools: Option<&HookTools>,
    handle: Option<&tokio::runtime::Handle>,
    deadline: Instant,
    id: &str,
    endpoint: &str,
    args: &Dynamic,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let err =
        |code: &str, message: String| HelperError::new("forgehook", code, message).into_eval();
    let (Some(tools), Some(handle)) = (tools, handle) else {
        return Err(err(
            "NOT_AVAILABLE",
            "no ForgeHooks are available to this hook call".into(),
        ));
    };
    if !tools.allows(id) {
        return Err(err(
            "NOT_ALLOWED",
            format!("ForgeHook '{id}' is not in the agent's tools"),
        ));
    }
    let input = convert::to_json(args).map_err(|m| err("INVALID_VALUE", m))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let executor = tools.executor.clone();
    let (tool, action) = (id.to_string(), endpoint.to_string());
    // Spawned on the runtime rather than polled here, so the executor runs where it expects
    // to (its own spawn_blocking, timers) while this worker only waits.
    let task = handle.spawn(async move { executor.invoke(&tool, &action, input).await });
    let abort = task.abort_handle();
    match handle.block_on(async { tokio::time::timeout(remaining, task).await }) {
        Err(_elapsed) => {
            abort.abort();
            Err(Box::new(EvalAltResult::ErrorTerminated(
                Dynamic::from(DEADLINE_TOKEN),
                Position::NONE,
            )))
        }
        Ok(Err(join)) => Err(err("INTERNAL", format!("the call did not finish: {join}"))),
        Ok(Ok(Err(tool_err))) => Err(err(
            tool_err.code().as_str(),
            format!("{id}/{endpoint}: {tool_err}"),
        )),
        Ok(Ok(Ok(out))) => Ok(convert::to_dynamic(&out.output)),
    }
}

fn record(
    script: &HookScript,
    hook: HookPoint,
    call: &mut ScriptCall,
    outcome: HookRecordOutcome,
) -> HookRecord {
    HookRecord {
        hook,
        script: script.name.clone(),
        script_id: script.id,
        script_version: script.version,
        duration_ms: call.duration_ms,
        outcome,
        logs: std::mem::take(&mut call.logs),
        // The runner does not know the loop's step numbers; the loop fills this in.
        step: None,
    }
}

fn failed(e: &HookError) -> HookRecordOutcome {
    match e {
        HookError::Rejected { reason, .. } => HookRecordOutcome::Rejected {
            reason: reason.clone(),
        },
        other => HookRecordOutcome::Failed {
            code: other.code().to_string(),
            message: other.to_string(),
        },
    }
}

fn bad_return(script: &HookScript, hook: HookPoint, expected: &str, got: &Value) -> HookError {
    HookError::Runtime {
        script: script.name.clone(),
        line: None,
        column: None,
        message: format!(
            "{hook} must return {expected}; it returned {}",
            describe(got)
        ),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "()".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(m) => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            format!("a map with keys [{}]", keys.join(", "))
        }
    }
}

/// One hook over the chain: the arguments for the next script, what each returned value
/// means, and the outcome when every script went on.
trait Fold: Send + 'static {
    type Out: Send + 'static;
    const HOOK: HookPoint;
    fn args(&self) -> Vec<Value>;
    /// The record's outcome, and `Some` to end the chain with that result.
    fn step(
        &mut self,
        script: &HookScript,
        value: Value,
    ) -> Result<(HookRecordOutcome, Option<Self::Out>), HookError>;
    fn finish(self) -> Self::Out;
}

fn fold_chain<F: Fold>(
    inner: &Arc<Inner>,
    scripts: &[HookScript],
    env: &CallEnv,
    mut fold: F,
) -> HookOutput<F::Out> {
    let hook = F::HOOK;
    let mut records = Vec::new();
    for script in scripts {
        let Some(mut call) = inner.call(script, hook, fold.args(), env) else {
            continue;
        };
        let decided = match std::mem::replace(&mut call.result, Ok(None)) {
            Err(e) => Err(e),
            Ok(None) => Ok((HookRecordOutcome::Unchanged, None)),
            Ok(Some(value)) => fold.step(script, value),
        };
        match decided {
            Err(e) => {
                records.push(record(script, hook, &mut call, failed(&e)));
                return HookOutput {
                    outcome: Err(e),
                    records,
                };
            }
            Ok((outcome, finished)) => {
                records.push(record(script, hook, &mut call, outcome));
                if let Some(result) = finished {
                    return HookOutput {
                        outcome: Ok(result),
                        records,
                    };
                }
            }
        }
    }
    HookOutput {
        outcome: Ok(fold.finish()),
        records,
    }
}

struct RunStart {
    ctx: HookContext,
    out: RunStartOutcome,
}

impl Fold for RunStart {
    type Out = RunStartOutcome;
    const HOOK: HookPoint = HookPoint::OnRunStart;

    fn args(&self) -> Vec<Value> {
        vec![self.ctx.to_json()]
    }

    fn step(
        &mut self,
        script: &HookScript,
        value: Value,
    ) -> Result<(HookRecordOutcome, Option<Self::Out>), HookError> {
        const EXPECTED: &str = "(), or a map with `input` and/or `data`";
        let Value::Object(map) = &value else {
            return Err(bad_return(script, Self::HOOK, EXPECTED, &value));
        };
        if map.keys().any(|k| k != "input" && k != "data") {
            return Err(bad_return(script, Self::HOOK, EXPECTED, &value));
        }
        if let Some(input) = map.get("input") {
            let Value::String(text) = input else {
                return Err(HookError::Runtime {
                    script: script.name.clone(),
                    line: None,
                    column: None,
                    message: format!(
                        "on_run_start returned `input` as {}; it must be a string",
                        describe(input)
                    ),
                });
            };
            // Later scripts see the replacement, as the LLM will.
            self.ctx.input = text.clone();
            self.out.input = Some(text.clone());
        }
        if let Some(data) = map.get("data") {
            self.ctx.data = data.clone();
            self.out.data = Some(data.clone());
        }
        Ok((HookRecordOutcome::Replaced { changes: value }, None))
    }

    fn finish(self) -> RunStartOutcome {
        self.out
    }
}

struct BeforeTool {
    ctx: Value,
    call: HookToolCall,
    replaced: Option<Value>,
}

impl Fold for BeforeTool {
    type Out = BeforeToolOutcome;
    const HOOK: HookPoint = HookPoint::BeforeTool;

    fn args(&self) -> Vec<Value> {
        vec![self.ctx.clone(), self.call.to_json()]
    }

    fn step(
        &mut self,
        script: &HookScript,
        value: Value,
    ) -> Result<(HookRecordOutcome, Option<Self::Out>), HookError> {
        const EXPECTED: &str = "(), #{args: …}, #{deny: \"reason\"} or #{result: …}";
        let bad = |value: &Value| bad_return(script, Self::HOOK, EXPECTED, value);
        let Value::Object(map) = &value else {
            return Err(bad(&value));
        };
        // Exactly one key: a map with both `deny` and `result` has no single meaning.
        let mut entries = map.iter();
        let (Some((key, v)), None) = (entries.next(), entries.next()) else {
            return Err(bad(&value));
        };
        match (key.as_str(), v) {
            ("args", args) => {
                self.call.args = args.clone();
                self.replaced = Some(args.clone());
                Ok((
                    HookRecordOutcome::Replaced {
                        changes: value.clone(),
                    },
                    None,
                ))
            }
            ("deny", Value::String(reason)) => Ok((
                HookRecordOutcome::Denied {
                    reason: reason.clone(),
                },
                Some(BeforeToolOutcome::Deny {
                    reason: reason.clone(),
                }),
            )),
            ("result", result) => Ok((
                HookRecordOutcome::Result {
                    result: result.clone(),
                },
                Some(BeforeToolOutcome::Result {
                    result: result.clone(),
                }),
            )),
            _ => Err(bad(&value)),
        }
    }

    fn finish(self) -> BeforeToolOutcome {
        BeforeToolOutcome::Proceed {
            args: self.replaced,
        }
    }
}

/// `after_tool` and `on_run_end`: `()` keeps the value, anything else replaces it for the
/// rest of the chain. `Some` only when some script replaced it.
struct Replace<const AFTER_TOOL: bool> {
    fixed: Vec<Value>,
    current: Value,
    replaced: bool,
}

impl<const AFTER_TOOL: bool> Fold for Replace<AFTER_TOOL> {
    type Out = Option<Value>;
    const HOOK: HookPoint = if AFTER_TOOL {
        HookPoint::AfterTool
    } else {
        HookPoint::OnRunEnd
    };

    fn args(&self) -> Vec<Value> {
        let mut args = self.fixed.clone();
        args.push(self.current.clone());
        args
    }

    fn step(
        &mut self,
        _script: &HookScript,
        value: Value,
    ) -> Result<(HookRecordOutcome, Option<Self::Out>), HookError> {
        let key = if AFTER_TOOL { "result" } else { "output" };
        let mut changes = serde_json::Map::new();
        changes.insert(key.to_string(), value.clone());
        self.current = value;
        self.replaced = true;
        Ok((
            HookRecordOutcome::Replaced {
                changes: Value::Object(changes),
            },
            None,
        ))
    }

    fn finish(self) -> Option<Value> {
        self.replaced.then_some(self.current)
    }
}

#[async_trait]
impl HookRunner for RhaiHookRunner {
    async fn on_run_start(
        &self,
        session: &HookSession,
        ctx: &HookContext,
    ) -> HookOutput<RunStartOutcome> {
        let fold = RunStart {
            ctx: ctx.clone(),
            out: RunStartOutcome::default(),
        };
        self.run_chain(session, ctx.run_id, fold).await
    }

    async fn before_tool(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        call: &HookToolCall,
    ) -> HookOutput<BeforeToolOutcome> {
        let fold = BeforeTool {
            ctx: ctx.to_json(),
            call: call.clone(),
            replaced: None,
        };
        self.run_chain(session, ctx.run_id, fold).await
    }

    async fn after_tool(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        call: &HookToolCall,
        result: &Value,
    ) -> HookOutput<Option<Value>> {
        let fold = Replace::<true> {
            fixed: vec![ctx.to_json(), call.to_json()],
            current: result.clone(),
            replaced: false,
        };
        self.run_chain(session, ctx.run_id, fold).await
    }

    async fn on_run_end(
        &self,
        session: &HookSession,
        ctx: &HookContext,
        output: &Value,
    ) -> HookOutput<Option<Value>> {
        let fold = Replace::<false> {
            fixed: vec![ctx.to_json()],
            current: output.clone(),
            replaced: false,
        };
        self.run_chain(session, ctx.run_id, fold).await
    }
}
