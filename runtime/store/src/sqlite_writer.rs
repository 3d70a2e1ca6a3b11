//! SQLite's one writer, and group commit.
//!
//! SQLite admits one writer at a time, so every write goes through one connection. It is a
//! dedicated connection behind an async lock, not a pool of one: a pooled connection is
//! pinged on its way back to the pool, in a task spawned for that, so each pooled statement
//! cost two round trips to the connection's thread (each a pair of thread wake-ups) where
//! one is needed.
//!
//! The writes every run makes go through group commit: its creation, its step rows (one per
//! tool call) and its final update. Each is queued, and a flush writes queued writes of one
//! kind in groups of up to [`MAX_GROUP`], each group one multi-statement transaction: one
//! round trip and one commit for the group. Writes queue while the writer is busy, so the
//! busier the server, the larger the groups; one at a time, the writer would take them in
//! turn, each waiting for the last one's round trip to the connection's thread. A caller
//! hears about its write only after its group committed, and hears its own outcome: when a
//! constraint fails a group, its writes are made again one by one.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use leforge_core::{NewRun, RunStatus, RunStep, RunUpdate, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, Either, Sqlite};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::db_err;
use crate::rows::{now, RunRow};
use crate::sql_store::{
    bind_new_run, bind_run_update, bind_step, coalesced_update, create_run_err, step_write_err,
    RunCreation, NEW_RUN_COLS, RUN_COLS,
};

/// At most this many writes share one transaction. Each kind and group size is its own
/// statement text, prepared once and cached by the connection, so the bound also bounds that
/// cache.
pub(crate) const MAX_GROUP: usize = 16;

/// Kinds of grouped write: steps, run creations, run updates ([`Job::KIND`]).
const KINDS: usize = 3;

#[derive(Clone)]
pub(crate) struct SqliteWriter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: WriterConn,
    queue: std::sync::Mutex<Queue>,
    /// Groups committed, by kind, for tests that check writes really are grouped.
    step_groups: AtomicU64,
    run_groups: AtomicU64,
    /// Per kind, the command for each group size (see [`group_texts`]), made once.
    texts: [Vec<String>; KINDS],
}

/// Queued writes, one lane per kind; `seq` orders them across lanes, so the flush serves the
/// oldest write first.
#[derive(Default)]
struct Queue {
    steps: VecDeque<Queued<StepWrite>>,
    creates: VecDeque<Queued<RunCreation>>,
    updates: VecDeque<Queued<RunUpdateWrite>>,
    seq: u64,
    /// Whether a flush task is running; it runs until it finds every lane empty.
    flushing: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.steps.len() + self.creates.len() + self.updates.len()
    }

    /// Takes up to [`MAX_GROUP`] writes of the kind whose oldest write is the oldest queued.
    fn take_group(&mut self) -> Option<Group> {
        // A run whose caller gave up before its turn is not created: nobody has its id, and a
        // sync run nobody waits for would stay `pending` for ever. (Steps and updates of an
        // abandoned caller are still written: their run exists.)
        self.creates.retain(|q| !q.done.is_closed());
        let steps = oldest_seq(&self.steps);
        let creates = oldest_seq(&self.creates);
        let updates = oldest_seq(&self.updates);
        let oldest = steps.min(creates).min(updates);
        if oldest == u64::MAX {
            return None;
        }
        fn take<J: Job>(lane: &mut VecDeque<Queued<J>>) -> Vec<Queued<J>> {
            let n = lane.len().min(MAX_GROUP);
            lane.drain(..n).collect()
        }
        Some(if oldest == steps {
            Group::Steps(take(&mut self.steps))
        } else if oldest == creates {
            Group::Creates(take(&mut self.creates))
        } else {
            Group::Updates(take(&mut self.updates))
        })
    }

    fn clear(&mut self) {
        // Dropping their senders tells the waiting callers the writer stopped.
        self.steps.clear();
        self.creates.clear();
        self.updates.clear();
    }
}

fn oldest_seq<J: Job>(lane: &VecDeque<Queued<J>>) -> u64 {
    lane.front().map_or(u64::MAX, |q| q.seq)
}

enum Group {
    Steps(Vec<Queued<StepWrite>>),
    Creates(Vec<Queued<RunCreation>>),
    Updates(Vec<Queued<RunUpdateWrite>>),
}

enum WriterConn {
    Dedicated {
        conn: Arc<Mutex<SqliteConnection>>,
        /// To open a replacement if the connection is ever left inside a transaction.
        options: Box<SqliteConnectOptions>,
    },
    /// An in-memory database keeps to its one pool for reads and writes alike, as it always
    /// did: sqlx opens it in shared-cache mode, where a second connection would take table
    /// locks against the readers instead of the file locks WAL mode is built around.
    Pooled(sqlx::Pool<Sqlite>),
}

/// A write that can share a transaction with others of its kind.
trait Job: Sized + Send + 'static {
    /// What its caller hears back once its group committed.
    type Out: Send;
    /// Its statements, each ending in `; `, with positional `?` parameters.
    fn statements() -> String;
    /// How many statements [`Self::statements`] holds.
    const STATEMENT_COUNT: usize;
    /// Its index among the [`KINDS`].
    const KIND: usize;
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
        ts: chrono::DateTime<chrono::Utc>,
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;
    /// Its outcome from the rows its statements returned.
    fn output(rows: Vec<SqliteRow>) -> Result<Self::Out, sqlx::Error>;
    fn map_err(e: sqlx::Error) -> StoreError;
}

/// A write waiting in its lane, and where its caller waits for the outcome.
struct Queued<J: Job> {
    /// Its place in the order of all queued writes.
    seq: u64,
    job: J,
    done: oneshot::Sender<Result<J::Out, StoreError>>,
}

impl<J: Job> Queued<J> {
    fn reply(self, outcome: Result<J::Out, StoreError>) {
        // A caller that gave up no longer listens.
        let _ = self.done.send(outcome);
    }
}

struct StepWrite {
    run_id: Uuid,
    step: RunStep,
    tokens_input: i64,
    tokens_output: i64,
}

impl Job for StepWrite {
    type Out = ();
    fn statements() -> String {
        "INSERT INTO agent_run_steps (run_id, step, tool, action, \
        input, output, error, duration_ms, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?); \
        UPDATE agent_runs SET total_steps = \
        (SELECT COUNT(*) FROM agent_run_steps WHERE run_id = ?), \
        tokens_input = ?, tokens_output = ?, updated_at = ? WHERE id = ?; "
            .into()
    }
    const STATEMENT_COUNT: usize = 2;
    const KIND: usize = 0;

    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
        ts: chrono::DateTime<chrono::Utc>,
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
        bind_step(query, self.run_id, &self.step)
            .bind(self.run_id)
            .bind(self.tokens_input)
            .bind(self.tokens_output)
            .bind(ts)
            .bind(self.run_id)
    }

    fn output(_: Vec<SqliteRow>) -> Result<(), sqlx::Error> {
        Ok(())
    }

    fn map_err(e: sqlx::Error) -> StoreError {
        step_write_err(e)
    }
}

impl Job for RunCreation {
    type Out = RunRow;
    fn statements() -> String {
        let values = vec!["?"; NEW_RUN_COLS.split(',').count()].join(", ");
        format!("INSERT INTO agent_runs ({NEW_RUN_COLS}) VALUES ({values}) RETURNING {RUN_COLS}; ")
    }
    const STATEMENT_COUNT: usize = 1;
    const KIND: usize = 1;

    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
        _: chrono::DateTime<chrono::Utc>,
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
        bind_new_run(query, self.id, self.ts, &self.run)
    }

    fn output(rows: Vec<SqliteRow>) -> Result<RunRow, sqlx::Error> {
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        sqlx::FromRow::from_row(row)
    }

    fn map_err(e: sqlx::Error) -> StoreError {
        create_run_err(e)
    }
}

struct RunUpdateWrite {
    id: Uuid,
    update: RunUpdate,
}

impl Job for RunUpdateWrite {
    /// Whether the update matched the run.
    type Out = bool;
    // One text for every `RunUpdate`, so that updates share groups (`coalesced_update`). A
    // status is only written to a run still `pending` or `running`: a terminal status is
    // final.
    fn statements() -> String {
        format!(
            "UPDATE agent_runs SET updated_at = ?, {} \
             WHERE id = ? AND (? IS NULL OR status IN ('pending', 'running')) RETURNING id; ",
            coalesced_update(|_, _, _| "?".into(), "")
        )
    }
    const STATEMENT_COUNT: usize = 1;
    const KIND: usize = 2;

    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
        ts: chrono::DateTime<chrono::Utc>,
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
        bind_run_update(query.bind(ts), &self.update)
            .bind(self.id)
            .bind(self.update.status.map(RunStatus::as_str))
    }

    fn output(rows: Vec<SqliteRow>) -> Result<bool, sqlx::Error> {
        Ok(!rows.is_empty())
    }

    fn map_err(e: sqlx::Error) -> StoreError {
        db_err(e)
    }
}

/// Exclusive use of one SQLite connection (the writer's, or a reader's) until dropped.
pub(crate) enum ConnGuard {
    /// A connection of its own. A reader's comes with its permit; fields drop in order, so the
    /// connection is let go before the permit, and whoever the permit goes to next finds a
    /// free connection.
    Dedicated {
        conn: OwnedMutexGuard<SqliteConnection>,
        _permit: Option<OwnedSemaphorePermit>,
    },
    Pooled(PoolConnection<Sqlite>),
}

impl Deref for ConnGuard {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            ConnGuard::Dedicated { conn, .. } => conn,
            ConnGuard::Pooled(c) => c,
        }
    }
}

impl DerefMut for ConnGuard {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            ConnGuard::Dedicated { conn, .. } => conn,
            ConnGuard::Pooled(c) => c,
        }
    }
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner.conn {
            WriterConn::Dedicated { .. } => "dedicated connection",
            WriterConn::Pooled(_) => "the read pool (in-memory database)",
        };
        f.debug_struct("SqliteWriter")
            .field("writes_through", &kind)
            .finish()
    }
}

impl SqliteWriter {
    /// Opens the writer's own connection.
    pub(crate) async fn dedicated(options: &SqliteConnectOptions) -> Result<Self, StoreError> {
        let conn = SqliteConnection::connect_with(options)
            .await
            .map_err(db_err)?;
        Ok(Self::new(WriterConn::Dedicated {
            conn: Arc::new(Mutex::new(conn)),
            options: Box::new(options.clone()),
        }))
    }

    /// Writes through `pool` (an in-memory database's only pool).
    pub(crate) fn pooled(pool: sqlx::Pool<Sqlite>) -> Self {
        Self::new(WriterConn::Pooled(pool))
    }

    fn new(conn: WriterConn) -> Self {
        SqliteWriter {
            inner: Arc::new(Inner {
                conn,
                queue: std::sync::Mutex::new(Queue::default()),
                step_groups: AtomicU64::new(0),
                run_groups: AtomicU64::new(0),
                texts: [
                    group_texts::<StepWrite>(),
                    group_texts::<RunCreation>(),
                    group_texts::<RunUpdateWrite>(),
                ],
            }),
        }
    }

    /// Waits for the connection. Callers run single statements on it: a caller abandoned
    /// mid-statement (its future dropped) leaves no transaction open behind it.
    pub(crate) async fn lock(&self) -> Result<ConnGuard, StoreError> {
        match &self.inner.conn {
            WriterConn::Dedicated { conn, .. } => Ok(ConnGuard::Dedicated {
                conn: conn.clone().lock_owned().await,
                _permit: None,
            }),
            WriterConn::Pooled(pool) => {
                Ok(ConnGuard::Pooled(pool.acquire().await.map_err(db_err)?))
            }
        }
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        matches!(self.inner.conn, WriterConn::Dedicated { .. })
    }

    /// Groups of steps committed so far.
    pub(crate) fn step_groups_committed(&self) -> u64 {
        self.inner.step_groups.load(Ordering::Relaxed)
    }

    /// Groups of run creations and of run updates committed so far.
    pub(crate) fn run_groups_committed(&self) -> u64 {
        self.inner.run_groups.load(Ordering::Relaxed)
    }

    /// Writes queued and not yet taken by a flush.
    pub(crate) fn writes_queued(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Every update of the queue is a push or a drain: a panic elsewhere cannot leave it
        // half-updated.
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a write in its lane, starts a flush unless one is running, and waits for the
    /// outcome.
    async fn submit<J: Job>(
        &self,
        job: J,
        lane: fn(&mut Queue) -> &mut VecDeque<Queued<J>>,
    ) -> Result<J::Out, StoreError> {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            queue.seq += 1;
            let seq = queue.seq;
            lane(&mut queue).push_back(Queued { seq, job, done });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            // A task of its own, so that no caller giving up (a run timing out, say) can
            // abandon a group that other callers' writes are in.
            let writer = self.clone();
            tokio::spawn(async move { writer.flush().await });
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Database(
                "the SQLite writer stopped before the write was made".into(),
            ))
        })
    }

    /// Writes a step row and the run's progress counters, and returns once they committed.
    pub(crate) async fn append_step_with_progress(
        &self,
        run_id: Uuid,
        step: RunStep,
        tokens_input: i64,
        tokens_output: i64,
    ) -> Result<(), StoreError> {
        let job = StepWrite {
            run_id,
            step,
            tokens_input,
            tokens_output,
        };
        self.submit(job, |queue| &mut queue.steps).await
    }

    /// Inserts a new run (`pending`), and returns its row once committed.
    pub(crate) async fn insert_run(
        &self,
        id: Uuid,
        ts: chrono::DateTime<chrono::Utc>,
        run: NewRun,
    ) -> Result<RunRow, StoreError> {
        self.submit(RunCreation { id, ts, run }, |queue| &mut queue.creates)
            .await
    }

    /// Applies an update to a run; `false` when it matched none (the run is missing, or the
    /// update sets a status and the run is already terminal).
    pub(crate) async fn update_run(&self, id: Uuid, update: RunUpdate) -> Result<bool, StoreError> {
        self.submit(RunUpdateWrite { id, update }, |queue| &mut queue.updates)
            .await
    }

    /// Writes queued writes until none is left: each round takes the writer and one group,
    /// and lets the writer go between rounds, so other writes (a claim of queued runs, say)
    /// wait for one group at most.
    async fn flush(self) {
        // Should this task be dropped mid-way (the runtime shutting down), the writes still
        // queued fail and the next write starts a new flush, rather than waiting forever.
        let mut stop = StopGuard {
            writer: &self,
            armed: true,
        };
        loop {
            let conn = self.lock().await;
            let group = {
                let mut queue = self.queue();
                let group = queue.take_group();
                if group.is_none() {
                    queue.flushing = false;
                }
                group
            };
            let Some(group) = group else {
                stop.armed = false;
                return;
            };
            let inner = &self.inner;
            match group {
                Group::Steps(g) => self.flush_group(conn, g, &inner.step_groups).await,
                Group::Creates(g) => self.flush_group(conn, g, &inner.run_groups).await,
                Group::Updates(g) => self.flush_group(conn, g, &inner.run_groups).await,
            }
        }
    }

    /// Writes one group and tells each caller its outcome. When the group committed as one,
    /// `committed` goes up, before any caller hears back (tests rely on that order).
    async fn flush_group<J: Job>(
        &self,
        conn: Result<ConnGuard, StoreError>,
        group: Vec<Queued<J>>,
        committed: &AtomicU64,
    ) {
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                for job in group {
                    job.reply(Err(e.clone()));
                }
                return;
            }
        };
        let e = match self.write_group(&mut conn, &group).await {
            Ok(outputs) => {
                committed.fetch_add(1, Ordering::Relaxed);
                for (job, out) in group.into_iter().zip(outputs) {
                    job.reply(out.map_err(J::map_err));
                }
                return;
            }
            Err(e) => e,
        };
        let constraint = e
            .as_database_error()
            .is_some_and(|d| d.kind() != sqlx::error::ErrorKind::Other);
        if group.len() == 1 || !constraint {
            // Nothing one write alone could change (the database busy past its timeout, a
            // full disk): every write of the group gets that error.
            let e = J::map_err(e);
            for job in group {
                job.reply(Err(e.clone()));
            }
            return;
        }
        // A constraint (a run deleted meanwhile, a step number or an idempotency key taken)
        // failed the whole group, and each caller must learn its own outcome: one by one.
        for job in group {
            let outcome = match self
                .write_group(&mut conn, std::slice::from_ref(&job))
                .await
            {
                Ok(mut outputs) => outputs.pop().unwrap_or(Err(sqlx::Error::RowNotFound)),
                Err(e) => Err(e),
            };
            job.reply(outcome.map_err(J::map_err));
        }
    }

    /// Writes `group` in one transaction, sent as one multi-statement command, and returns
    /// each write's outcome read from the rows its statements returned. On failure the
    /// transaction is rolled back, so nothing of the group stays.
    async fn write_group<J: Job>(
        &self,
        conn: &mut ConnGuard,
        group: &[Queued<J>],
    ) -> Result<Vec<Result<J::Out, sqlx::Error>>, sqlx::Error> {
        let ts = now();
        let mut query = sqlx::query::<Sqlite>(&self.inner.texts[J::KIND][group.len()]);
        for queued in group {
            query = queued.job.bind(query, ts);
        }
        // One result per statement, each after the rows it returned: `BEGIN`, the group's
        // statements in order, `COMMIT`.
        let mut statements: Vec<Vec<SqliteRow>> =
            Vec::with_capacity(group.len() * J::STATEMENT_COUNT + 2);
        let mut rows = Vec::new();
        let written: Result<(), sqlx::Error> = async {
            // sqlx deprecates `fetch_many` because only SQLite runs several statements as one
            // prepared command; this writer is SQLite's alone, and one command is the point.
            // Only `fetch_many` tells where each statement's rows end.
            #[allow(deprecated)]
            let mut stream = query.fetch_many(&mut **conn);
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(_) => statements.push(std::mem::take(&mut rows)),
                    Either::Right(row) => rows.push(row),
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            // The failed statement stopped the command with the transaction open, or SQLite
            // already rolled it back and this fails harmlessly with "no transaction is active".
            if let Err(e) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
                let harmless = e
                    .as_database_error()
                    .is_some_and(|d| d.message().contains("no transaction is active"));
                if !harmless {
                    self.replace_connection(conn, &e).await;
                }
            }
            return Err(e);
        }
        let mut per_statement = statements.into_iter().skip(1);
        Ok(group
            .iter()
            .map(|_| {
                let rows: Vec<SqliteRow> = per_statement
                    .by_ref()
                    .take(J::STATEMENT_COUNT)
                    .flatten()
                    .collect();
                J::output(rows)
            })
            .collect())
    }

    /// A connection whose ROLLBACK failed may still be inside the group's transaction, and
    /// every later write on it would join that transaction and never commit. It is replaced:
    /// closing it rolls back whatever it held.
    async fn replace_connection(&self, conn: &mut ConnGuard, why: &sqlx::Error) {
        tracing::error!(error = %why, "ROLLBACK failed on the SQLite writer; reopening it");
        let fresh = match &self.inner.conn {
            WriterConn::Dedicated { options, .. } => SqliteConnection::connect_with(options)
                .await
                .map(|c| match conn {
                    ConnGuard::Dedicated { conn, .. } => **conn = c,
                    ConnGuard::Pooled(_) => {}
                }),
            WriterConn::Pooled(pool) => {
                if let ConnGuard::Pooled(old) = conn {
                    old.close_on_drop();
                }
                pool.acquire().await.map(|c| *conn = ConnGuard::Pooled(c))
            }
        };
        if let Err(e) = fresh {
            tracing::error!(error = %e, "could not reopen the SQLite writer");
        }
    }
}

/// Fails the writes still queued, and lets the next write start a flush, if a flush task is
/// dropped before it finished.
struct StopGuard<'a> {
    writer: &'a SqliteWriter,
    armed: bool,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.writer.queue();
        queue.flushing = false;
        queue.clear();
    }
}

/// For each group size up to [`MAX_GROUP`], `BEGIN; <the job's statements> × n COMMIT` with
/// positional `?` parameters, which sqlx numbers on across the statements of one command. (A
/// `$n` names the n-th argument of the whole command, so every write would need numbers of
/// its own.)
fn group_texts<J: Job>() -> Vec<String> {
    let statements = J::statements();
    (0..=MAX_GROUP)
        .map(|n| format!("BEGIN; {}COMMIT", statements.repeat(n)))
        .collect()
}
