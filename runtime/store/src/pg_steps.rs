//! PostgreSQL's step writes, grouped under load.
//!
//! A step is one statement (the row and the run's counters together, see
//! [`write_one`]). Under load most of a statement's cost is not its work but everything
//! around it, on both sides of the socket and on the same cores: the pool's checkout and the
//! ping sqlx sends when a connection goes back, the protocol messages, the backend's wake-up
//! and the commit. So a few statements run at once ([`IN_FLIGHT`]), and a step that arrives
//! while they are all busy waits in a queue; the next free turn writes everything queued by
//! then as one multi-row statement. An idle writer adds nothing: a step that finds a turn
//! free and nobody queued is written at once, by its own caller.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use leforge_core::{RunStep, StoreError};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::rows::now;
use crate::sql_store::{bind_step, insert_step_sql, step_write_err, STEP_COLS};

/// Statements written at once; each holds one connection of the step pool (which has more,
/// for the odd caller outside this writer's turns).
const IN_FLIGHT: usize = 4;
/// Steps per grouped statement at most (11 parameters each; far below PostgreSQL's limit).
const MAX_GROUP: usize = 32;

/// Tokens so far, when the step carries the run's progress.
type Progress = Option<(i64, i64)>;

struct StepJob {
    run_id: Uuid,
    step: RunStep,
    progress: Progress,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Debug)]
struct Shared {
    /// One permit per statement in flight.
    turns: Arc<Semaphore>,
    /// Steps sent and not yet taken into a statement.
    queued: AtomicUsize,
    /// Multi-row statements committed (for tests).
    groups: AtomicU64,
}

#[derive(Debug, Clone)]
pub(crate) struct PgStepWriter {
    tx: mpsc::UnboundedSender<StepJob>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StepJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepJob")
            .field("run_id", &self.run_id)
            .field("step", &self.step.step)
            .finish()
    }
}

impl PgStepWriter {
    /// Starts the queue's task; it ends when the last handle is dropped.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            turns: Arc::new(Semaphore::new(IN_FLIGHT)),
            queued: AtomicUsize::new(0),
            groups: AtomicU64::new(0),
        });
        tokio::spawn(take_groups(pool, rx, shared.clone()));
        PgStepWriter { tx, shared }
    }

    pub(crate) async fn write(
        &self,
        pool: &PgPool,
        run_id: Uuid,
        step: RunStep,
        progress: Progress,
    ) -> Result<(), StoreError> {
        // Nobody waiting and a turn free: no reason to go through the queue's task.
        if self.shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(_turn) = self.shared.turns.clone().try_acquire_owned() {
                return write_one(pool, run_id, &step, progress).await;
            }
        }
        let (done, outcome) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        let job = StepJob {
            run_id,
            step,
            progress,
            done,
        };
        if self.tx.send(job).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Database("the step writer has stopped".into()));
        }
        // A step already sent is written even if this caller goes away, as on SQLite.
        outcome
            .await
            .map_err(|_| StoreError::Database("the step writer has stopped".into()))?
    }

    pub(crate) fn groups_committed(&self) -> u64 {
        self.shared.groups.load(Ordering::Acquire)
    }

    pub(crate) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Takes every turn, so steps queue until the returned permit is dropped (tests).
    pub(crate) async fn hold(&self) -> OwnedSemaphorePermit {
        self.shared
            .turns
            .clone()
            .acquire_many_owned(IN_FLIGHT as u32)
            .await
            .expect("the step writer's turns are never closed")
    }
}

/// The queue's task: waits for a step, then for a free turn, then takes everything queued by
/// then (up to [`MAX_GROUP`]) into one statement, written in a task of its own so the next
/// group can form meanwhile.
async fn take_groups(pool: PgPool, mut rx: mpsc::UnboundedReceiver<StepJob>, shared: Arc<Shared>) {
    while let Some(first) = rx.recv().await {
        let turn = shared
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the step writer's turns are never closed");
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(group.len(), Ordering::AcqRel);
        let pool = pool.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            write_group(&pool, group, &shared).await;
            drop(turn);
        });
    }
}

async fn write_group(pool: &PgPool, group: Vec<StepJob>, shared: &Shared) {
    if group.len() > 1 {
        let mut query = sqlx::query::<sqlx::Postgres>(&GROUP_SQL[group.len()]);
        for job in &group {
            query = bind_step(query, job.run_id, &job.step)
                .bind(job.progress.map(|p| p.0))
                .bind(job.progress.map(|p| p.1));
        }
        match query.bind(now()).execute(pool).await {
            Ok(_) => {
                // Counted before anyone hears back, so a test that waited for its callers
                // sees the count.
                shared.groups.fetch_add(1, Ordering::AcqRel);
                for job in group {
                    let _ = job.done.send(Ok(()));
                }
                return;
            }
            // One bad step (a taken step number, a deleted run) fails the whole statement,
            // and so would a lost connection: write them one by one, so each caller hears its
            // own outcome.
            Err(e) => {
                tracing::debug!(error = %e, steps = group.len(), "grouped step write failed; writing one by one")
            }
        }
    }
    for job in group {
        let outcome = write_one(pool, job.run_id, &job.step, job.progress).await;
        let _ = job.done.send(outcome);
    }
}

/// One step in one statement, so one round trip and one commit. The UPDATE cannot see the
/// row the CTE inserts (same snapshot), hence the `+ 1`. Parallel steps of one run queue on
/// the run's row lock, and a waiter re-reads the row but not the snapshot of its COUNT:
/// `total_steps + 1` covers that case.
pub(crate) async fn write_one(
    pool: &PgPool,
    run_id: Uuid,
    step: &RunStep,
    progress: Progress,
) -> Result<(), StoreError> {
    let Some((tokens_input, tokens_output)) = progress else {
        bind_step(
            sqlx::query::<sqlx::Postgres>(insert_step_sql!()),
            run_id,
            step,
        )
        .execute(pool)
        .await
        .map_err(step_write_err)?;
        return Ok(());
    };
    bind_step(
        sqlx::query::<sqlx::Postgres>(concat!(
            "WITH new_step AS (",
            insert_step_sql!(),
            ") UPDATE agent_runs SET total_steps = GREATEST(total_steps + 1, \
             (SELECT COUNT(*) FROM agent_run_steps WHERE run_id = $1) + 1), \
             tokens_input = $10, tokens_output = $11, updated_at = $12 WHERE id = $1"
        )),
        run_id,
        step,
    )
    .bind(tokens_input)
    .bind(tokens_output)
    .bind(now())
    .execute(pool)
    .await
    .map_err(step_write_err)?;
    Ok(())
}

/// The step columns, then the tokens (NULL: the step carries no progress).
const GROUP_COLS: usize = 11;

/// The statement for `n` steps, indexed by `n` (0 and 1 unused). Each run's counters move by
/// its steps in the group, as in [`write_one`]; its tokens are the highest the group carries
/// for it (they only grow). Every parameter is cast: in a VALUES list PostgreSQL has no
/// column to infer their types from.
static GROUP_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..=MAX_GROUP)
        .map(|n| {
            let rows: Vec<String> = (0..n)
                .map(|r| {
                    let p = |i: usize| r * GROUP_COLS + i;
                    format!(
                        "(${}::uuid, ${}::integer, ${}::text, ${}::text, ${}::jsonb, ${}::jsonb, \
                         ${}::text, ${}::bigint, ${}::timestamptz, ${}::bigint, ${}::bigint)",
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6),
                        p(7),
                        p(8),
                        p(9),
                        p(10),
                        p(11)
                    )
                })
                .collect();
            format!(
                "WITH v ({STEP_COLS}, tokens_input, tokens_output) AS (VALUES {}), \
                 new_steps AS (INSERT INTO agent_run_steps ({STEP_COLS}) SELECT {STEP_COLS} FROM v), \
                 progress AS (SELECT run_id, COUNT(*) AS n, MAX(tokens_input) AS tokens_input, \
                 MAX(tokens_output) AS tokens_output FROM v WHERE tokens_input IS NOT NULL \
                 GROUP BY run_id) \
                 UPDATE agent_runs r SET total_steps = GREATEST(r.total_steps + p.n, \
                 (SELECT COUNT(*) FROM agent_run_steps s WHERE s.run_id = r.id) + p.n), \
                 tokens_input = p.tokens_input, tokens_output = p.tokens_output, updated_at = ${} \
                 FROM progress p WHERE r.id = p.run_id",
                rows.join(", "),
                n * GROUP_COLS + 1
            )
        })
        .collect()
});
