//! Runs in this process: starting them (now, or from the async queue), following them live,
//! cancelling them, keeping their leases, delivering callbacks, and stopping cleanly.
//!
//! Every running run holds a lease in the database that this process renews while it
//! works. A run whose lease lapses — its server was killed — is made `interrupted` by the
//! reaper of any server sharing the database, with its finished steps kept. Interrupted
//! runs are not resumed automatically: the tool calls of an unfinished turn may have had
//! effects, so repeating them must be the caller's decision (start a new run).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use leforge_agent::{Deps, RunEvent, RunInput, RunLimits};
use leforge_core::{
    Agent, CallbackAttempt, NewRun, Run, RunStart, RunStatus, RunUpdate, Store, StoreError,
};
use sha2::Sha256;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::config::Secret;

/// Events buffered per live run for slow subscribers. Small on purpose: tokio allocates the
/// whole buffer per run, and a lagging subscriber only misses text deltas (steps and the
/// result are in the store).
const EVENT_BUFFER: usize = 64;

/// Tunables, with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often leases are renewed (well inside `lease_ttl`).
    pub renew_every: Duration,
    /// How often the queue is polled for work queued by other servers.
    pub poll_every: Duration,
    /// How often expired leases are looked for.
    pub reap_every: Duration,
    /// Runs (async, sync and stream) this process executes at once.
    pub max_concurrent_async: usize,
    /// How long a sync or stream request waits for a free slot before 429 `RATE_LIMITED`.
    pub slot_wait: Duration,
    /// Shutdown waits this long for running runs before interrupting them.
    pub shutdown_grace: Duration,
    pub webhook_secret: Option<Secret>,
    /// Hosts `callback_url` may point at; `None` allows any.
    pub callback_hosts: Option<Vec<String>>,
    pub callback_attempts: u32,
    pub callback_backoff: Duration,
    /// Hook scripts (names or ids) applied to every run before the agent's own.
    pub global_hooks: Vec<String>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            lease_ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            poll_every: Duration::from_millis(500),
            reap_every: Duration::from_secs(15),
            max_concurrent_async: 1024,
            slot_wait: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            webhook_secret: None,
            callback_hosts: None,
            callback_attempts: 5,
            callback_backoff: Duration::from_secs(1),
            global_hooks: Vec::new(),
        }
    }
}

struct LiveRun {
    cancel: CancellationToken,
    events: broadcast::Sender<RunEvent>,
}

/// The runs of this process, and runs cancelled here before their task registered.
#[derive(Default)]
struct Live {
    runs: HashMap<Uuid, LiveRun>,
    /// A claimed run is `running` in the store before its task starts, and its task writes
    /// no status of its own then (that would be a second write per run), so a cancel in
    /// between is kept here, under the same lock as `runs`, for the task to find when it
    /// registers. Entries older than a lease are dropped: a task starts within moments of
    /// its claim, and one that never comes here (another server ran it) leaves no trace.
    cancelled_early: HashMap<Uuid, Instant>,
}

struct Inner {
    deps: Deps,
    settings: RunnerSettings,
    /// Names this process's leases.
    instance: String,
    live: Mutex<Live>,
    /// Stops claiming and starting runs (shutdown).
    closing: CancellationToken,
    /// Cancelled once shutdown has let the runs finish: what is left open (MCP sessions,
    /// their streams) may then be closed without cutting a run's answer off.
    stopped: CancellationToken,
    queued: Notify,
    /// A run with a callback just ended here: the callback worker looks at once.
    callbacks_due: Notify,
    slots: Arc<Semaphore>,
    /// Runs may be waiting in the queue: this server queued one for want of a slot, or its
    /// last claim came back full. While set, new async runs queue behind them rather than
    /// take a freed slot first, and every freed slot wakes the queue worker. Cleared when a
    /// claim comes back short of what it asked for.
    backlog: AtomicBool,
    /// Sends callbacks: no redirects, and a resolver that refuses private addresses (unless
    /// the host is allow-listed), so the address checked is the address connected to.
    http: reqwest::Client,
    callback_private_allowed: leforge_net::PrivateAllowed,
    /// Runs (and their callbacks) still being worked on, for shutdown to wait for.
    tasks: tokio_util::task::TaskTracker,
}

/// Cheap to clone; every clone is the same runner.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

/// The JSON body a terminal run answers with, and its status: shared by the sync response,
/// the async result route and callbacks, so all three say exactly the same.
pub type Rendered = (axum::http::StatusCode, serde_json::Value);

impl Runner {
    pub fn new(deps: Deps, settings: RunnerSettings) -> Runner {
        let slots = Arc::new(Semaphore::new(settings.max_concurrent_async));
        let callback_private_allowed =
            leforge_net::PrivateAllowed::new(settings.callback_hosts.clone().unwrap_or_default());
        Runner {
            inner: Arc::new(Inner {
                deps,
                settings,
                instance: format!("leforge-{}", Uuid::new_v4().simple()),
                live: Mutex::new(Live::default()),
                closing: CancellationToken::new(),
                stopped: CancellationToken::new(),
                queued: Notify::new(),
                callbacks_due: Notify::new(),
                slots,
                backlog: AtomicBool::new(false),
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(leforge_net::GuardedResolver::new(
                        callback_private_allowed.clone(),
                    ))
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_default(),
                callback_private_allowed,
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.deps.store
    }

    pub fn settings(&self) -> &RunnerSettings {
        &self.inner.settings
    }

    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn is_closing(&self) -> bool {
        self.inner.closing.is_cancelled()
    }

    /// Subscribes to a run executing in this process.
    pub fn subscribe(&self, run_id: Uuid) -> Option<broadcast::Receiver<RunEvent>> {
        self.live().runs.get(&run_id).map(|l| l.events.subscribe())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a run as live before it starts, so a subscriber sees every event.
    pub fn prepare(&self, run_id: Uuid) -> broadcast::Receiver<RunEvent> {
        let (tx, rx) = broadcast::channel(EVENT_BUFFER);
        self.live().runs.insert(
            run_id,
            LiveRun {
                cancel: CancellationToken::new(),
                events: tx,
            },
        );
        rx
    }

    /// Hosts a callback may reach even when they resolve to private addresses.
    pub fn callback_private_allowed(&self) -> &leforge_net::PrivateAllowed {
        &self.inner.callback_private_allowed
    }

    /// A run slot for a sync or stream run, waiting at most `slot_wait`; `None` when every
    /// slot stayed taken (or the server is closing).
    pub async fn acquire_slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.is_closing() {
            return None;
        }
        let slots = self.inner.slots.clone();
        tokio::time::timeout(self.inner.settings.slot_wait, slots.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// The lease a run executed here at once is created under.
    pub fn start_lease(&self) -> RunStart {
        RunStart {
            owner: self.inner.instance.clone(),
            lease_until: chrono::Utc::now() + self.lease_ttl(),
        }
    }

    /// Executes a created run in a task of its own (so a caller that disconnects does not
    /// abandon it), in the slot it was given, and returns its handle.
    pub fn spawn(
        &self,
        run: Run,
        slot: OwnedSemaphorePermit,
    ) -> tokio::task::JoinHandle<Result<Run, StoreError>> {
        let runner = self.clone();
        self.inner.tasks.spawn(async move {
            // Created `running` under this server's lease: the loop writes no start.
            let claimed = run.status == RunStatus::Running;
            // Asked for, the finished run is always returned.
            let result = runner
                .execute(run, true, None, claimed)
                .await?
                .ok_or(StoreError::NotFound { entity: "run" });
            runner.release(slot);
            result
        })
    }

    /// Gives a run's slot back; with runs waiting in the queue, the queue worker takes it.
    fn release(&self, slot: OwnedSemaphorePermit) {
        drop(slot);
        if self.inner.backlog.load(Ordering::Acquire) {
            self.notify_queued();
        }
    }

    /// Runs `run` to its end. `return_run`: whether the finished run is wanted back; a run
    /// with a callback reads it back anyway, for the callback's body. `agent`: the run's
    /// agent when the caller has just read it (the queue worker reads each agent once per
    /// claimed batch); `None` reads it here. `claimed`: the queue's claim made it `running`.
    async fn execute(
        &self,
        run: Run,
        return_run: bool,
        agent: Option<Agent>,
        claimed: bool,
    ) -> Result<Option<Run>, StoreError> {
        let run_id = run.id;
        let (cancel, events) = {
            let mut guard = self.live();
            let live = &mut *guard;
            let entry = live.runs.entry(run_id).or_insert_with(|| LiveRun {
                cancel: CancellationToken::new(),
                events: broadcast::channel(EVENT_BUFFER).0,
            });
            if live.cancelled_early.remove(&run_id).is_some() {
                entry.cancel.cancel();
            }
            (entry.cancel.clone(), entry.events.clone())
        };
        let return_run = return_run || run.callback_url.is_some();
        let active = ActiveRun::start();
        let result = self
            .execute_inner(run, return_run, agent, claimed, cancel.clone(), events)
            .await;
        drop(active);
        self.live().runs.remove(&run_id);
        cancel.cancel();
        let run = result?;
        if run.as_ref().is_some_and(|r| r.callback_url.is_some()) {
            // The store owes the callback (the outbox); this only saves the poll's wait.
            self.inner.callbacks_due.notify_one();
        }
        Ok(run)
    }

    async fn execute_inner(
        &self,
        run: Run,
        return_run: bool,
        agent: Option<Agent>,
        claimed: bool,
        cancel: CancellationToken,
        events: broadcast::Sender<RunEvent>,
    ) -> Result<Option<Run>, StoreError> {
        let store = &self.inner.deps.store;
        let input = match self.run_input(&run, return_run, agent, claimed).await {
            Ok(input) => input,
            Err(message) => {
                // Without its agent the run has no slug to be counted under.
                leforge_agent::observe::run_finished(
                    "unknown",
                    RunStatus::Failed,
                    run.mode,
                    std::time::Duration::ZERO,
                );
                return store
                    .update_run(
                        run.id,
                        RunUpdate {
                            status: Some(RunStatus::Failed),
                            error_code: Some("AGENT_UNAVAILABLE".into()),
                            error_message: Some(message),
                            completed_at: Some(chrono::Utc::now()),
                            ..Default::default()
                        },
                    )
                    .await
                    .map(Some);
            }
        };
        let mut input = input;
        if let Err(message) = self.resolve_hooks(&mut input).await {
            leforge_agent::observe::run_finished(
                &input.agent.slug,
                RunStatus::Failed,
                run.mode,
                std::time::Duration::ZERO,
            );
            return self.fail_hooks_at_start(run.id, message).await.map(Some);
        }
        // The lease was taken with the `running` status (by the claim, or by the loop before
        // any work); keep it fresh while the loop runs.
        let renewer = self.keep_lease(run.id, cancel.clone());
        let span = crate::telemetry::run_span(&input.agent, &run);
        let result = leforge_agent::execute(&self.inner.deps, input, cancel, Some(events))
            .instrument(span)
            .await;
        renewer.abort();
        result
    }

    fn lease_ttl(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.inner.settings.lease_ttl)
            .unwrap_or(chrono::TimeDelta::seconds(30))
    }

    /// Renews the lease periodically. When the renewal finds the run no longer ours —
    /// cancelled through another server, or reaped — the local work is cancelled too.
    fn keep_lease(&self, run_id: Uuid, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(runner.inner.settings.renew_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let until = chrono::Utc::now() + runner.lease_ttl();
                match runner
                    .inner
                    .deps
                    .store
                    .renew_leases(&runner.inner.instance, &[run_id], until)
                    .await
                {
                    Ok(0) => {
                        cancel.cancel();
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(run_id = %run_id, error = %e, "lease renewal failed"),
                }
            }
        })
    }

    /// Rebuilds what the loop needs from the stored run: the agent as it is now and the
    /// limits fixed when the run was created.
    async fn run_input(
        &self,
        run: &Run,
        return_run: bool,
        agent: Option<Agent>,
        claimed: bool,
    ) -> Result<RunInput, String> {
        let agent = match agent {
            Some(agent) => agent,
            None => self
                .find_agent(run.agent_id)
                .await?
                .ok_or_else(|| "the agent of this run no longer exists".to_string())?,
        };
        let limits = match &run.limits {
            Some(v) => serde_json::from_value::<RunLimits>(v.clone())
                .map_err(|e| format!("stored limits are unreadable: {e}"))?,
            None => RunLimits::of(&agent.config, agent.provider),
        };
        Ok(RunInput {
            run_id: run.id,
            output_schema: agent.output_schema.clone(),
            agent,
            input: run.input_text.clone(),
            data: run.input_data.clone(),
            limits,
            stream: run.mode == leforge_core::RunMode::Stream,
            mode: run.mode,
            hook_chain: Default::default(),
            return_run,
            claimed,
            lease: Some((
                self.inner.instance.clone(),
                chrono::Utc::now() + self.lease_ttl(),
            )),
        })
    }

    async fn find_agent(&self, id: Uuid) -> Result<Option<Agent>, String> {
        self.inner
            .deps
            .store
            .find_agent(&id.to_string())
            .await
            .map_err(|e| e.to_string())
    }

    /// Loads the run's hook scripts (global, then the agent's). Agents without hooks and a
    /// server without global hooks cost nothing here.
    async fn resolve_hooks(&self, input: &mut RunInput) -> Result<(), String> {
        input.hook_chain = crate::script_library::resolve_chain(
            self.inner.deps.store.as_ref(),
            &self.inner.settings.global_hooks,
            &input.agent,
        )
        .await?;
        Ok(())
    }

    /// A run whose hook scripts cannot be loaded fails before it starts, with `HOOK_ERROR`.
    async fn fail_hooks_at_start(&self, run_id: Uuid, message: String) -> Result<Run, StoreError> {
        tracing::warn!(run_id = %run_id, error = %message, "run failed: hook scripts unavailable");
        self.inner
            .deps
            .store
            .update_run(
                run_id,
                RunUpdate {
                    status: Some(RunStatus::Failed),
                    error_code: Some("HOOK_ERROR".into()),
                    error_message: Some(message),
                    completed_at: Some(chrono::Utc::now()),
                    ..Default::default()
                },
            )
            .await
    }

    /// Cancels a run wherever it is: the database status first (so any server sees it),
    /// then the local task if it runs here. Terminal runs are a conflict.
    pub async fn cancel(&self, run_id: Uuid) -> Result<Run, StoreError> {
        let run = self
            .inner
            .deps
            .store
            .update_run(
                run_id,
                RunUpdate {
                    status: Some(RunStatus::Cancelled),
                    error_code: Some(leforge_agent::codes::RUN_CANCELLED.into()),
                    error_message: Some("the run was cancelled".into()),
                    completed_at: Some(chrono::Utc::now()),
                    ..Default::default()
                },
            )
            .await?;
        let mut live = self.live();
        if let Some(running) = live.runs.get(&run_id) {
            running.cancel.cancel();
        } else {
            let ttl = self.inner.settings.lease_ttl;
            live.cancelled_early.retain(|_, at| at.elapsed() < ttl);
            live.cancelled_early.insert(run_id, Instant::now());
        }
        Ok(run)
    }

    /// Creates an async run and answers with its id as soon as it is stored. With a free
    /// slot here and no run known to be waiting in the queue, the run is created already
    /// started under this server's lease, and this server executes it at once: queueing it
    /// only for this same server to claim it back would put a claim statement, and a wait
    /// for the queue worker's next turn, in front of every run (the worker takes a batch per
    /// turn, so under a burst each run waited for the batches before it). Otherwise, or while
    /// shutting down, it is queued `pending` behind the runs already waiting, for whichever
    /// server has room first.
    ///
    /// Creation and start happen in one task of their own, so a caller that goes away while
    /// the run is being stored cannot leave it stored as started and never executed.
    pub async fn accept_async(&self, mut new: NewRun, agent: Agent) -> Result<Uuid, StoreError> {
        let permit = if self.is_closing() || self.inner.backlog.load(Ordering::Acquire) {
            None
        } else {
            self.inner.slots.clone().try_acquire_owned().ok()
        };
        if permit.is_some() {
            new.start = Some(self.start_lease());
        }
        let (created, outcome) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.inner.tasks.spawn(async move {
            let run = match runner.inner.deps.store.create_run(new).await {
                Ok(run) => run,
                Err(e) => {
                    let _ = created.send(Err(e));
                    return;
                }
            };
            let _ = created.send(Ok(run.id));
            let Some(permit) = permit else {
                runner.inner.backlog.store(true, Ordering::Release);
                runner.notify_queued();
                return;
            };
            runner.execute_async(run, Some(agent), permit).await;
        });
        outcome
            .await
            .map_err(|_| StoreError::Database("the run's task ended before it was stored".into()))?
    }

    /// Executes an async run in the slot it holds. A freed slot goes to the queue first when
    /// runs may be waiting there.
    async fn execute_async(&self, run: Run, agent: Option<Agent>, slot: OwnedSemaphorePermit) {
        // Nobody waits for an async run's result here: the store has it (and its callback,
        // if any, is sent from it).
        if let Err(e) = self.execute(run, false, agent, true).await {
            tracing::error!(error = %e, "async run failed to persist");
        }
        self.release(slot);
    }

    /// Wakes the local queue worker (a run was just queued here).
    pub fn notify_queued(&self) {
        self.inner.queued.notify_one();
    }

    /// Starts the background work: the queue worker, the lease reaper and the callback
    /// worker.
    pub fn start_background(&self) {
        let worker = self.clone();
        tokio::spawn(async move { worker.queue_worker().await });
        let reaper = self.clone();
        tokio::spawn(async move { reaper.reaper().await });
        let callbacks = self.clone();
        tokio::spawn(async move { callbacks.callback_worker().await });
    }

    async fn queue_worker(&self) {
        loop {
            if self.is_closing() {
                return;
            }
            // The slots are taken before the claim: requests take slots too (a run they
            // start at once), and a claimed run without one would be stranded, `running`
            // under this server's lease with nothing executing it.
            let mut slots = Vec::new();
            while slots.len() < 64 {
                match self.inner.slots.clone().try_acquire_owned() {
                    Ok(slot) => slots.push(slot),
                    Err(_) => break,
                }
            }
            if !slots.is_empty() {
                let until = chrono::Utc::now() + self.lease_ttl();
                let claim_size = slots.len() as u32;
                match self
                    .inner
                    .deps
                    .store
                    .claim_queued_runs(&self.inner.instance, claim_size, until)
                    .await
                {
                    Ok(runs) => {
                        let claimed = runs.len();
                        // A full batch: more may be waiting. A short one: the queue is
                        // drained, as far as this server can tell.
                        self.inner
                            .backlog
                            .store(claimed as u32 == claim_size, Ordering::Release);
                        // One read per agent per batch, not per run: a batch is usually
                        // many runs of a few agents, claimed at one moment.
                        let mut agents: HashMap<Uuid, Option<Agent>> = HashMap::new();
                        // The slots not needed go back when `slots` drops.
                        for (run, slot) in runs.into_iter().zip(slots.drain(..)) {
                            let agent = match agents.get(&run.agent_id) {
                                Some(agent) => agent.clone(),
                                None => {
                                    // A failed read leaves it to the run, which records why.
                                    let agent = self.find_agent(run.agent_id).await.ok().flatten();
                                    agents.insert(run.agent_id, agent.clone());
                                    agent
                                }
                            };
                            let runner = self.clone();
                            self.inner.tasks.spawn(async move {
                                runner.execute_async(run, agent, slot).await;
                            });
                        }
                        if claimed as u32 == claim_size {
                            continue; // More may be waiting.
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming queued runs failed"),
                }
            }
            // Unused slots go back before the worker sleeps.
            drop(slots);
            tokio::select! {
                _ = self.inner.queued.notified() => {}
                _ = tokio::time::sleep(self.inner.settings.poll_every) => {}
                _ = self.inner.closing.cancelled() => return,
            }
        }
    }

    async fn reaper(&self) {
        loop {
            self.reap_once().await;
            tokio::select! {
                _ = tokio::time::sleep(self.inner.settings.reap_every) => {}
                _ = self.inner.closing.cancelled() => return,
            }
        }
    }

    /// Sync and stream runs are created started, so one still `pending` was left by a server
    /// that stopped between its insert and its start (or by an older version): after two
    /// leases nobody is going to start it.
    fn stale_pending_before(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() - self.lease_ttl() * 2
    }

    /// Marks runs whose lease lapsed, and sync or stream runs never started, as interrupted;
    /// returns how many.
    pub async fn reap_once(&self) -> usize {
        match self
            .inner
            .deps
            .store
            .interrupt_expired_runs(chrono::Utc::now(), self.stale_pending_before())
            .await
        {
            Ok(ids) => {
                for id in &ids {
                    tracing::warn!(run_id = %id, "run interrupted: its lease expired");
                }
                ids.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "reaping expired runs failed");
                0
            }
        }
    }

    /// Cancelled when shutdown has let the runs finish (see the `stopped` field).
    pub fn stopped_token(&self) -> CancellationToken {
        self.inner.stopped.clone()
    }

    /// Graceful shutdown: take no new runs, let running ones finish within the grace
    /// period, then mark the rest interrupted (finished steps kept) and stop them.
    pub async fn shutdown(&self) {
        self.finish_runs().await;
        self.inner.stopped.cancel();
    }

    async fn finish_runs(&self) {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        let grace = self.inner.settings.shutdown_grace;
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            return;
        }
        let left: Vec<(Uuid, CancellationToken)> = self
            .live()
            .runs
            .iter()
            .map(|(id, l)| (*id, l.cancel.clone()))
            .collect();
        for (id, cancel) in left {
            let _ = self
                .inner
                .deps
                .store
                .update_run(
                    id,
                    RunUpdate {
                        status: Some(RunStatus::Interrupted),
                        error_code: Some("INTERRUPTED".into()),
                        error_message: Some(
                            "the server shut down before the run finished; finished steps are kept"
                                .into(),
                        ),
                        completed_at: Some(chrono::Utc::now()),
                        ..Default::default()
                    },
                )
                .await;
            cancel.cancel();
            tracing::warn!(run_id = %id, "run interrupted by shutdown");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.tasks.wait()).await;
    }

    /// A literal address in the URL never reaches the resolver, so it is checked here.
    fn checked_callback_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid callback URL: {e}"))?;
        leforge_net::check_literal(
            parsed.host_str().unwrap_or_default(),
            &self.inner.callback_private_allowed,
        )
        .map_err(|e| e.to_string())
    }

    /// Delivers the callbacks the store says are due, whoever's runs they are: runs that
    /// ended here, runs interrupted by any server's reaper, and attempts left owing by a
    /// server that died. Delivery is at least once (a receiver deduplicates with
    /// `X-LeForge-Run-Id`): an attempt whose result could not be recorded is sent again.
    async fn callback_worker(&self) {
        if self.inner.settings.webhook_secret.is_none() {
            // No run gets a callback URL accepted without a secret.
            return;
        }
        loop {
            if self.is_closing() {
                return;
            }
            let now = chrono::Utc::now();
            let claim = chrono::TimeDelta::from_std(CALLBACK_CLAIM).unwrap_or_default();
            match self
                .inner
                .deps
                .store
                .claim_due_callbacks(now, now + claim, 32)
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        let runner = self.clone();
                        self.inner
                            .tasks
                            .spawn(async move { runner.attempt_callback(id).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for due callbacks failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.settings.poll_every) => {}
                _ = self.inner.callbacks_due.notified() => {}
                _ = self.inner.closing.cancelled() => return,
            }
        }
    }

    /// One signed POST of the run's terminal body to its callback URL; records it, with
    /// the next attempt's time after a failure (exponential backoff) until the attempts run
    /// out.
    async fn attempt_callback(&self, run_id: Uuid) {
        let store = &self.inner.deps.store;
        let run = match store.get_run(run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => return,
            Err(e) => {
                // The claim lapses and the attempt is made later.
                tracing::warn!(%run_id, error = %e, "cannot read a run to send its callback");
                return;
            }
        };
        let (Some(url), Some(secret)) = (
            run.callback_url.clone(),
            self.inner.settings.webhook_secret.clone(),
        ) else {
            return;
        };
        let (_, body) = crate::routes::agent_runs::render_terminal(&run);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let attempts = self.inner.settings.callback_attempts.max(1);
        let attempt = run.callback_attempts.len() as u32 + 1;
        // Signed per attempt: the timestamp says when it was sent, so a receiver can refuse
        // a captured callback replayed later.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign_timestamped(secret.expose(), timestamp, &bytes);
        // The delivery is a span of the run's trace, and tells the receiver so.
        let span = tracing::info_span!(
            "callback",
            otel.name = "POST callback",
            otel.kind = "client",
            run_id = %run.id,
            http.request.method = "POST",
        );
        span.set_attribute("leforge.callback.attempt", i64::from(attempt));
        crate::telemetry::set_parent(&span, run.trace_context.as_deref());
        let traceparent =
            span.in_scope(|| crate::telemetry::current_traceparent(run.trace_context.as_deref()));
        let result = match self.checked_callback_url(&url) {
            Err(refused) => Err(refused),
            Ok(()) => {
                let mut request = self
                    .inner
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-leforge-signature", format!("sha256={signature}"))
                    .header("x-leforge-timestamp", timestamp.to_string())
                    .header("x-leforge-run-id", run.id.to_string());
                if let Some(traceparent) = traceparent {
                    request = request.header("traceparent", traceparent);
                }
                request
                    .body(bytes)
                    .send()
                    .instrument(span.clone())
                    .await
                    .map_err(|e| leforge_net::error_chain(&e.without_url()))
            }
        };
        if let Ok(resp) = &result {
            span.set_attribute(
                "http.response.status_code",
                i64::from(resp.status().as_u16()),
            );
        }
        let (status, error, ok) = match result {
            Ok(resp) => {
                let s = resp.status();
                (Some(s.as_u16()), None, s.is_success())
            }
            Err(e) => (None, Some(e), false),
        };
        let next_due = (!ok && attempt < attempts).then(|| {
            let backoff = self.inner.settings.callback_backoff
                * 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
            chrono::Utc::now() + chrono::TimeDelta::from_std(backoff).unwrap_or_default()
        });
        let record = CallbackAttempt {
            attempt,
            at: chrono::Utc::now(),
            status,
            error,
        };
        if let Err(e) = store
            .record_callback_attempt(run.id, record, next_due)
            .await
        {
            tracing::warn!(run_id = %run.id, error = %e, "cannot record a callback attempt");
            return;
        }
        // A retry is picked up by the worker's poll once due.
        if next_due.is_none() && !ok {
            tracing::warn!(run_id = %run.id, "callback not delivered after {attempts} attempts");
        }
    }
}

/// How long a claimed callback stays this server's: longer than one attempt can take (the
/// client's 30 s timeout), so no other server sends the same attempt meanwhile.
const CALLBACK_CLAIM: Duration = Duration::from_secs(45);

/// Counts a run in `leforge_runs_active` while it lives, also when its task is dropped.
struct ActiveRun(metrics::Gauge);

impl ActiveRun {
    fn start() -> ActiveRun {
        let gauge = metrics::gauge!("leforge_runs_active");
        gauge.increment(1.0);
        ActiveRun(gauge)
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    sign_parts(secret, &[body])
}

/// The callback signature: HMAC-SHA256 of `<timestamp>.<body>`, as Standard Webhooks do, so
/// the timestamp cannot be changed without breaking it.
pub fn sign_timestamped(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sign_parts(secret, &[timestamp.to_string().as_bytes(), b".", body])
}

fn sign_parts(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leforge_core::{NewAgent, NewRun, RunMode};

    /// A claimed run is `running` in the store before its task starts, and the task writes
    /// no status then. A cancel in that gap must still stop it: no model call, no step, and
    /// the run stays `cancelled`.
    #[tokio::test]
    async fn a_cancel_between_claim_and_start_stops_the_run() {
        let fake = leforge_fake_provider::FakeProvider::start().await;
        let db = leforge_store::testing::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            crate::config::Config::resolve(&crate::config::ServerArgs::default()).unwrap();
        config.data_dir = dir.path().to_path_buf();
        let state = crate::AppState::build_with_llm(
            db.store.clone(),
            config,
            leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
        )
        .unwrap();
        let store = state.store.clone();
        let agent = store
            .create_agent(NewAgent {
                name: "Gap".into(),
                slug: "gap".into(),
                description: None,
                model: "claude-sonnet".into(),
                provider: leforge_core::Provider::Anthropic,
                system_prompt: "Answer.".into(),
                tools: vec![],
                config: Default::default(),
                is_public: false,
                api_key_required: false,
                allowed_api_keys: vec![],
                output_schema: None,
                hooks: vec![],
                created_by: None,
            })
            .await
            .unwrap();
        let runner = &state.runner;
        let until = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        let mut queued = Vec::new();
        for _ in 0..2 {
            let mut new = NewRun::simple(agent.id, "go");
            new.mode = RunMode::Async;
            queued.push(store.create_run(new).await.unwrap().id);
        }
        let mut claimed = store
            .claim_queued_runs(runner.instance(), 10, until)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(claimed.iter().all(|r| r.status == RunStatus::Running));

        let cancelled = runner.cancel(queued[0]).await.unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled);
        let first = claimed.remove(0);
        assert_eq!(first.id, queued[0]);
        let done = runner
            .execute(first, true, None, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, RunStatus::Cancelled);
        assert_eq!(done.total_steps, 0);
        assert_eq!(
            fake.chat_count(),
            0,
            "a cancelled run must not call the model"
        );
        assert!(runner.live().cancelled_early.is_empty());

        // The other claimed run, not cancelled, runs to its end without a `running` write.
        fake.push(leforge_fake_provider::Script::text("{\"ok\": true}"));
        let done = runner
            .execute(claimed.remove(0), true, None, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.output, Some(serde_json::json!({"ok": true})));
        assert!(done.started_at.is_some());
        assert_eq!(fake.chat_count(), 1);
    }
}
