//! PostgreSQL's busiest statements, grouped under load: step rows (with the run's counters),
//! run creations, run updates, and the two reads every run request makes (its API key and
//! its agent).
//!
//! Each is one statement. Under load most of a statement's cost is not its work but what
//! surrounds it, on both sides of the socket and on the same cores: the pool's checkout and
//! the ping sqlx sends when a connection goes back, the protocol messages, the backend's
//! wake-up, and for a write the commit (for a creation, a WAL flush). So a few statements of
//! a kind run at once ([`Grouped::IN_FLIGHT`]), and one that arrives while they are all busy
//! waits in a queue; the next free turn runs everything queued by then as one multi-row
//! statement. An idle kind adds nothing: a statement that finds a turn free and nobody queued
//! is run at once, by its own caller.
//!
//! A grouped read sees what a read of its own would: it was queued before its group's
//! statement started, so that statement's snapshot holds every commit its caller could
//! have seen.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use leforge_core::{RunStatus, RunStep, RunUpdate, StoreError};
use sqlx::types::Json;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use crate::db_err;
use crate::rows::{now, RunRow};
use crate::sql_store::{
    bind_new_run, bind_run_update, bind_step, coalesced_update, create_run_err, insert_step_sql,
    step_write_err, RunCreation, NEW_RUN_COLS, RUN_COLS, RUN_UPDATE_COLS, STEP_COLS,
};

/// Members of one grouped statement at most. A creation group of each size is its own
/// statement text, prepared once per connection, so sizes are bounded (step and update
/// groups are one text, whatever their size); parameters stay far below PostgreSQL's
/// limit.
const MAX_GROUP: usize = 32;

/// A kind of statement that can be grouped: a write, or a read.
pub(crate) trait Grouped: Send + Sync + Sized + 'static {
    type Out: Send + 'static;

    /// Whether a statement whose caller has gone is still run. A step is: it records work
    /// that was done. A creation is not: nobody has the new run's id. Nor is a read.
    const RUN_ABANDONED: bool;

    /// Statements of this kind run at once; each holds a connection of its pool, which must
    /// keep more for everything else.
    const IN_FLIGHT: usize = 4;

    /// One statement of its own; its own outcome.
    fn run_one(&self, pool: &PgPool) -> impl Future<Output = Result<Self::Out, StoreError>> + Send;

    /// All of `group` (two or more) in one statement, outcomes in order. After a database
    /// error (the statement was rolled back) they are run one by one; see
    /// `run_group`.
    fn run_many(
        group: &[Self],
        pool: &PgPool,
    ) -> impl Future<Output = Result<Vec<Self::Out>, sqlx::Error>> + Send;

    /// Whether `group` can be one statement; when not, its members run one by one, in
    /// the order they were queued.
    fn can_share(_group: &[Self]) -> bool {
        true
    }
}

struct Queued<W: Grouped> {
    member: W,
    done: oneshot::Sender<Result<W::Out, StoreError>>,
}

#[derive(Debug)]
struct Shared {
    /// One permit per statement in flight.
    turns: Arc<Semaphore>,
    /// Statements asked for and not yet taken into one.
    queued: AtomicUsize,
    /// Multi-row statements run to the end (for tests).
    groups: AtomicU64,
}

/// The queue of one kind of statement.
pub(crate) struct PgGrouped<W: Grouped> {
    pool: PgPool,
    tx: mpsc::UnboundedSender<Queued<W>>,
    shared: Arc<Shared>,
}

impl<W: Grouped> Clone for PgGrouped<W> {
    fn clone(&self) -> Self {
        PgGrouped {
            pool: self.pool.clone(),
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<W: Grouped> std::fmt::Debug for PgGrouped<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGrouped")
            .field("queued", &self.queued())
            .field("groups_committed", &self.groups_committed())
            .finish()
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the PostgreSQL statement group has stopped".into())
}

impl<W: Grouped> PgGrouped<W> {
    /// Starts the queue's task, running statements on `pool`; the task ends with the last
    /// handle.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            turns: Arc::new(Semaphore::new(W::IN_FLIGHT)),
            queued: AtomicUsize::new(0),
            groups: AtomicU64::new(0),
        });
        tokio::spawn(take_groups(pool.clone(), rx, shared.clone()));
        PgGrouped { pool, tx, shared }
    }

    pub(crate) async fn run(&self, member: W) -> Result<W::Out, StoreError> {
        // The queue's task ends only with its runtime (a store used after the runtime that
        // opened it has gone): run alone rather than not at all.
        if self.tx.is_closed() {
            return member.run_one(&self.pool).await;
        }
        // Nobody waiting and a turn free: no reason to go through the queue's task.
        if self.shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(_turn) = self.shared.turns.try_acquire() {
                return member.run_one(&self.pool).await;
            }
        }
        let (done, outcome) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Queued { member, done }).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(stopped());
        }
        outcome.await.map_err(|_| stopped())?
    }

    pub(crate) fn groups_committed(&self) -> u64 {
        self.shared.groups.load(Ordering::Acquire)
    }

    pub(crate) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Takes every turn, so statements queue until the returned permit is dropped (tests).
    #[cfg(feature = "testing")]
    pub(crate) async fn hold(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.shared
            .turns
            .clone()
            .acquire_many_owned(W::IN_FLIGHT as u32)
            .await
            .expect("the turns are never closed")
    }
}

/// The queue's task: waits for a statement, then for a free turn, then takes everything queued by
/// then (up to [`MAX_GROUP`]) into one statement, run in a task of its own so that the
/// next group can form meanwhile.
async fn take_groups<W: Grouped>(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Queued<W>>,
    shared: Arc<Shared>,
) {
    while let Some(first) = rx.recv().await {
        let turn = shared
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the turns are never closed");
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(queued) => group.push(queued),
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(group.len(), Ordering::AcqRel);
        if !W::RUN_ABANDONED {
            group.retain(|q| !q.done.is_closed());
        }
        let pool = pool.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            run_group(&pool, group, &shared).await;
            drop(turn);
        });
    }
}

async fn run_group<W: Grouped>(pool: &PgPool, group: Vec<Queued<W>>, shared: &Shared) {
    let (members, dones): (Vec<W>, Vec<_>) = group.into_iter().map(|q| (q.member, q.done)).unzip();
    if members.len() < 2 || !W::can_share(&members) {
        return run_each(pool, &members, dones).await;
    }
    match W::run_many(&members, pool).await {
        Ok(outs) if outs.len() != members.len() => {
            // The statement ran (for a write, committed), so running it again could write
            // twice.
            let message = format!(
                "a grouped statement returned {} outcomes for {} callers",
                outs.len(),
                members.len()
            );
            tracing::error!("{message}");
            for done in dones {
                let _ = done.send(Err(StoreError::Database(message.clone())));
            }
        }
        Ok(outs) => {
            // Counted before anyone hears back, so a test that waited for its callers
            // sees the count.
            shared.groups.fetch_add(1, Ordering::AcqRel);
            for (done, out) in dones.into_iter().zip(outs) {
                let _ = done.send(Ok(out));
            }
        }
        // One bad write (a taken step number or idempotency key, a deleted run) fails the
        // whole statement, which PostgreSQL then rolled back: run them one by one, so
        // each caller hears its own outcome.
        Err(sqlx::Error::Database(e)) => {
            tracing::debug!(error = %e, group = members.len(), "grouped statement failed; running one by one");
            run_each(pool, &members, dones).await;
        }
        // Anything else (a lost connection, a row that would not decode) may come after
        // the commit: writing again could write twice, so every caller hears the error.
        Err(e) => {
            let error = db_err(e);
            for done in dones {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

/// Each in a statement of its own, in order; each caller hears its own outcome.
async fn run_each<W: Grouped>(
    pool: &PgPool,
    members: &[W],
    dones: Vec<oneshot::Sender<Result<W::Out, StoreError>>>,
) {
    for (member, done) in members.iter().zip(dones) {
        let _ = done.send(member.run_one(pool).await);
    }
}

/// `VALUES` rows for `n` writes of `cols` parameters each, `$1` on, uncast (an INSERT's
/// columns give them their types).
fn values_rows(n: usize, cols: usize) -> String {
    (0..n)
        .map(|r| {
            let params: Vec<String> = (1..=cols).map(|i| format!("${}", r * cols + i)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$1::<type>[], $2::…`: one array parameter per column, of the columns' `types`.
fn array_params(types: &[&str]) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}[]", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One column of a group, as the array a grouped statement takes.
fn column<'a, W, T>(group: &'a [W], field: impl Fn(&'a W) -> T) -> Vec<T> {
    group.iter().map(field).collect()
}

/// A step row, with the run's tokens so far when it carries them.
pub(crate) struct StepWrite {
    pub run_id: Uuid,
    pub step: RunStep,
    pub progress: Option<(i64, i64)>,
}

/// The types of the step columns, then of the tokens (NULL: the step carries no progress):
/// each is a parameter holding that column for the whole group, as an array.
const STEP_TYPES: [&str; 11] = [
    "uuid",
    "integer",
    "text",
    "text",
    "jsonb",
    "jsonb",
    "text",
    "bigint",
    "timestamptz",
    "bigint",
    "bigint",
];

/// The statement for a group of steps, whatever its size: each column comes as one array
/// (`UNNEST` makes them rows again), so every group is the same statement text. A text per
/// group size, as an earlier version had, meant PostgreSQL planned nearly every group from
/// scratch: a connection ran each size too few times to settle on a cached plan, and
/// planning took about half as long as executing (pg_stat_statements, BENCHMARKS.md
/// thirteenth session). Each run's counters move by its steps in the group, as in
/// [`StepWrite::run_one`]; its tokens are the highest the group carries for it (they only
/// grow). A run's existing rows do not include those this statement inserts (one
/// snapshot), hence `+ p.rows`: every step of the run in the group, with progress or
/// without. `locked` takes the runs' row locks in id order before the UPDATE: two groups in
/// flight can hold steps of the same runs (parallel tool calls), and locking them in
/// whatever order a join produced could deadlock one against the other.
static STEP_GROUP_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH v AS (SELECT * FROM UNNEST({}) AS v ({STEP_COLS}, tokens_input, tokens_output)), \
         new_steps AS (INSERT INTO agent_run_steps ({STEP_COLS}) SELECT {STEP_COLS} FROM v), \
         progress AS (SELECT run_id, COUNT(*) AS rows, COUNT(tokens_input) AS n, \
         MAX(tokens_input) AS tokens_input, MAX(tokens_output) AS tokens_output \
         FROM v GROUP BY run_id HAVING COUNT(tokens_input) > 0), \
         locked AS MATERIALIZED (SELECT r.id FROM agent_runs r \
         WHERE r.id IN (SELECT run_id FROM progress) ORDER BY r.id FOR NO KEY UPDATE OF r) \
         UPDATE agent_runs r SET total_steps = GREATEST(r.total_steps + p.n, \
         (SELECT COUNT(*) FROM agent_run_steps s WHERE s.run_id = r.id) + p.rows), \
         tokens_input = p.tokens_input, tokens_output = p.tokens_output, updated_at = ${} \
         FROM progress p JOIN locked l ON l.id = p.run_id WHERE r.id = p.run_id",
        array_params(&STEP_TYPES),
        STEP_TYPES.len() + 1
    )
});

impl Grouped for StepWrite {
    type Out = ();
    const RUN_ABANDONED: bool = true;

    /// One statement, so one round trip and one commit. The UPDATE cannot see the row the
    /// CTE inserts (same snapshot), hence the `+ 1`. Parallel steps of one run queue on the
    /// run's row lock, and a waiter re-reads the row but not the snapshot of its COUNT:
    /// `total_steps + 1` covers that case.
    async fn run_one(&self, pool: &PgPool) -> Result<(), StoreError> {
        let Some((tokens_input, tokens_output)) = self.progress else {
            bind_step(sqlx::query(insert_step_sql!()), self.run_id, &self.step)
                .execute(pool)
                .await
                .map_err(step_write_err)?;
            return Ok(());
        };
        bind_step(
            sqlx::query(concat!(
                "WITH new_step AS (",
                insert_step_sql!(),
                ") UPDATE agent_runs SET total_steps = GREATEST(total_steps + 1, \
                 (SELECT COUNT(*) FROM agent_run_steps WHERE run_id = $1) + 1), \
                 tokens_input = $10, tokens_output = $11, updated_at = $12 WHERE id = $1"
            )),
            self.run_id,
            &self.step,
        )
        .bind(tokens_input)
        .bind(tokens_output)
        .bind(now())
        .execute(pool)
        .await
        .map_err(step_write_err)?;
        Ok(())
    }

    async fn run_many(group: &[Self], pool: &PgPool) -> Result<Vec<()>, sqlx::Error> {
        // One array per column, in STEP_TYPES' order.
        sqlx::query(&STEP_GROUP_SQL)
            .bind(column(group, |w| w.run_id))
            .bind(column(group, |w| w.step.step))
            .bind(column(group, |w| w.step.tool.as_str()))
            .bind(column(group, |w| w.step.action.as_str()))
            .bind(column(group, |w| Json(&w.step.input)))
            .bind(column(group, |w| w.step.output.as_ref().map(Json)))
            .bind(column(group, |w| w.step.error.as_deref()))
            .bind(column(group, |w| w.step.duration_ms))
            .bind(column(group, |w| w.step.started_at))
            .bind(column(group, |w| w.progress.map(|p| p.0)))
            .bind(column(group, |w| w.progress.map(|p| p.1)))
            .bind(now())
            .execute(pool)
            .await?;
        Ok(vec![(); group.len()])
    }
}

/// The INSERT for `n` runs, indexed by `n` (0 unused). Its parameters need no casts: their
/// types come from the INSERT's columns.
static CREATION_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    let cols = NEW_RUN_COLS.split(',').count();
    (0..=MAX_GROUP)
        .map(|n| {
            format!(
                "INSERT INTO agent_runs ({NEW_RUN_COLS}) VALUES {} RETURNING {RUN_COLS}",
                values_rows(n, cols)
            )
        })
        .collect()
});

impl Grouped for RunCreation {
    type Out = RunRow;
    const RUN_ABANDONED: bool = false;

    async fn run_one(&self, pool: &PgPool) -> Result<RunRow, StoreError> {
        let row = bind_new_run(sqlx::query(&CREATION_SQL[1]), self.id, self.ts, &self.run)
            .fetch_one(pool)
            .await
            .map_err(create_run_err)?;
        sqlx::FromRow::from_row(&row).map_err(db_err)
    }

    async fn run_many(group: &[Self], pool: &PgPool) -> Result<Vec<RunRow>, sqlx::Error> {
        let mut query = sqlx::query(&CREATION_SQL[group.len()]);
        for c in group {
            query = bind_new_run(query, c.id, c.ts, &c.run);
        }
        let rows = query.fetch_all(pool).await?;
        // RETURNING promises no order: match the rows to the writes by id.
        let mut by_id = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let run: RunRow = sqlx::FromRow::from_row(row)?;
            by_id.insert(run.id, run);
        }
        Ok(group.iter().filter_map(|c| by_id.remove(&c.id)).collect())
    }
}

/// A run update. Every shape of [`RunUpdate`] is the same statement text, so that any
/// updates can share a group: a field left `None` keeps its value (`COALESCE`; no update
/// sets a field back to NULL), as the single-run update query leaves it out.
pub(crate) struct RunUpdateWrite {
    pub id: Uuid,
    pub update: RunUpdate,
}

/// One update: `$1` the run, `$2` on its fields, then the time. A status is only written to
/// a run still `pending` or `running` (a terminal status is final); an update that matches
/// no row (a missing run, or a terminal one) returns none. A plain `UPDATE`, so an idle
/// server's updates cost about what they did before grouping.
static UPDATE_ONE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE agent_runs r SET updated_at = ${}, {} \
         WHERE r.id = $1 AND ($2::text IS NULL OR r.status IN ('pending', 'running')) \
         RETURNING r.id",
        RUN_UPDATE_COLS.len() + 2,
        coalesced_update(|i, _, ty| format!("${}::{ty}", i + 2), "r."),
    )
});

/// The statement for a group of updates, whatever its size: as [`UPDATE_ONE_SQL`], for every
/// run of the group, each column one array (as for step groups, so that PostgreSQL need
/// not plan each group size afresh). The runs are locked in id order first, as in a step
/// group, so that groups in flight cannot deadlock.
static UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = RUN_UPDATE_COLS.iter().map(|(col, _)| *col).collect();
    let mut types = vec!["uuid"];
    types.extend(RUN_UPDATE_COLS.iter().map(|(_, ty)| *ty));
    format!(
        "WITH v AS (SELECT * FROM UNNEST({}) AS v (id, {})), \
         locked AS MATERIALIZED (SELECT r.id FROM agent_runs r \
         WHERE r.id IN (SELECT id FROM v) ORDER BY r.id FOR NO KEY UPDATE OF r) \
         UPDATE agent_runs r SET updated_at = ${}, {} \
         FROM v JOIN locked l ON l.id = v.id \
         WHERE r.id = v.id AND (v.status IS NULL OR r.status IN ('pending', 'running')) \
         RETURNING r.id",
        array_params(&types),
        names.join(", "),
        types.len() + 1,
        coalesced_update(|_, col, _| format!("v.{col}"), "r."),
    )
});

impl Grouped for RunUpdateWrite {
    /// Whether the update matched the run.
    type Out = bool;
    /// Its caller may have gone, but the run has not: what it records still happened.
    const RUN_ABANDONED: bool = true;

    async fn run_one(&self, pool: &PgPool) -> Result<bool, StoreError> {
        let rows = bind_run_update(sqlx::query(&UPDATE_ONE_SQL).bind(self.id), &self.update)
            .bind(now())
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
        Ok(!rows.is_empty())
    }

    async fn run_many(group: &[Self], pool: &PgPool) -> Result<Vec<bool>, sqlx::Error> {
        // One array per column: the id, then RUN_UPDATE_COLS' order.
        let rows = sqlx::query(&UPDATE_SQL)
            .bind(column(group, |w| w.id))
            .bind(column(group, |w| w.update.status.map(RunStatus::as_str)))
            .bind(column(group, |w| w.update.output.as_ref().map(Json)))
            .bind(column(group, |w| w.update.output_text.as_deref()))
            .bind(column(group, |w| w.update.error_code.as_deref()))
            .bind(column(group, |w| w.update.error_message.as_deref()))
            .bind(column(group, |w| w.update.total_steps))
            .bind(column(group, |w| w.update.tokens_input))
            .bind(column(group, |w| w.update.tokens_output))
            .bind(column(group, |w| w.update.duration_ms))
            .bind(column(group, |w| w.update.started_at))
            .bind(column(group, |w| w.update.completed_at))
            .bind(column(group, |w| {
                w.update.lease.as_ref().map(|(owner, _)| owner.as_str())
            }))
            .bind(column(group, |w| {
                w.update.lease.as_ref().map(|(_, until)| *until)
            }))
            .bind(now())
            .fetch_all(pool)
            .await?;
        let mut matched = std::collections::HashSet::with_capacity(rows.len());
        for row in &rows {
            matched.insert(sqlx::Row::try_get::<Uuid, _>(row, 0)?);
        }
        Ok(group.iter().map(|u| matched.contains(&u.id)).collect())
    }

    /// Two updates of one run in one statement would apply only one of them (an `UPDATE`
    /// changes a row once) and report both as applied.
    fn can_share(group: &[Self]) -> bool {
        let mut ids = std::collections::HashSet::with_capacity(group.len());
        group.iter().all(|u| ids.insert(u.id))
    }
}
