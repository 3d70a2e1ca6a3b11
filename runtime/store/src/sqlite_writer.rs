//! SQLite's one writer, and group commit for step rows.
//!
//! SQLite admits one writer at a time, so every write goes through one connection. It is a
//! dedicated connection behind an async lock, not a pool of one: a pooled connection is
//! pinged on its way back to the pool, in a task spawned for that, so each pooled statement
//! cost two round trips to the connection's thread (each a pair of thread wake-ups) where
//! one is needed.
//!
//! Step rows are the most frequent write: one per tool call of every live run. A step is
//! queued, and a flush writes the queued steps in groups of up to [`MAX_GROUP`], each group
//! one multi-statement transaction: one round trip and one commit for the group. Steps queue
//! while the writer is busy with other writes, so the busier the server, the larger the
//! groups. A caller hears about its step only after its group committed, and hears its own
//! outcome: when a constraint fails a group, its steps are written again one by one.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use leforge_core::{RunStep, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Sqlite};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::db_err;
use crate::rows::now;
use crate::sql_store::{bind_step, step_write_err};

/// At most this many steps share one transaction. Each group size is its own statement text,
/// prepared once and cached by the connection, so the bound also bounds that cache.
pub(crate) const MAX_GROUP: usize = 16;

#[derive(Clone)]
pub(crate) struct SqliteWriter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: WriterConn,
    queue: std::sync::Mutex<Queue>,
    /// Groups committed, for tests that check steps really are grouped.
    groups: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Steps waiting for a flush.
    steps: Vec<QueuedStep>,
    /// Whether a flush task is running; it runs until it finds `steps` empty.
    flushing: bool,
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

struct QueuedStep {
    run_id: Uuid,
    step: RunStep,
    tokens_input: i64,
    tokens_output: i64,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Exclusive use of the writer's connection until dropped.
pub(crate) enum WriteGuard {
    Dedicated(OwnedMutexGuard<SqliteConnection>),
    Pooled(PoolConnection<Sqlite>),
}

impl Deref for WriteGuard {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            WriteGuard::Dedicated(c) => c,
            WriteGuard::Pooled(c) => c,
        }
    }
}

impl DerefMut for WriteGuard {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            WriteGuard::Dedicated(c) => c,
            WriteGuard::Pooled(c) => c,
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
                groups: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Waits for the connection. Callers run single statements on it: a caller abandoned
    /// mid-statement (its future dropped) leaves no transaction open behind it.
    pub(crate) async fn lock(&self) -> Result<WriteGuard, StoreError> {
        match &self.inner.conn {
            WriterConn::Dedicated { conn, .. } => {
                Ok(WriteGuard::Dedicated(conn.clone().lock_owned().await))
            }
            WriterConn::Pooled(pool) => {
                Ok(WriteGuard::Pooled(pool.acquire().await.map_err(db_err)?))
            }
        }
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        matches!(self.inner.conn, WriterConn::Dedicated { .. })
    }

    /// Groups of steps committed so far.
    pub(crate) fn groups_committed(&self) -> u64 {
        self.inner.groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Steps queued and not yet taken by a flush.
    pub(crate) fn steps_queued(&self) -> usize {
        self.queue().steps.len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Every update of the queue is a push or a drain: a panic elsewhere cannot leave it
        // half-updated.
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a step row and the run's progress counters, and returns once they committed.
    pub(crate) async fn append_step_with_progress(
        &self,
        run_id: Uuid,
        step: RunStep,
        tokens_input: i64,
        tokens_output: i64,
    ) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            queue.steps.push(QueuedStep {
                run_id,
                step,
                tokens_input,
                tokens_output,
                done,
            });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            // A task of its own, so that no caller giving up (a run timing out, say) can
            // abandon a group that other runs' steps are in.
            let writer = self.clone();
            tokio::spawn(async move { writer.flush().await });
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Database(
                "the step writer stopped before the step was written".into(),
            ))
        })
    }

    /// Writes queued steps until none is left: each round takes the writer and up to
    /// [`MAX_GROUP`] steps, and lets the writer go between rounds, so other writes (a run
    /// being created, say) wait for one group at most.
    async fn flush(self) {
        // Should this task be dropped mid-way (the runtime shutting down), the steps still
        // queued fail and the next step starts a new flush, rather than waiting forever.
        let mut stop = StopGuard {
            writer: &self,
            armed: true,
        };
        loop {
            let conn = self.lock().await;
            let group: Vec<QueuedStep> = {
                let mut queue = self.queue();
                if queue.steps.is_empty() {
                    queue.flushing = false;
                    stop.armed = false;
                    return;
                }
                let n = queue.steps.len().min(MAX_GROUP);
                queue.steps.drain(..n).collect()
            };
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    for q in group {
                        let _ = q.done.send(Err(e.clone()));
                    }
                    continue;
                }
            };
            let e = match self.write_group(&mut conn, &group).await {
                Ok(()) => {
                    self.inner
                        .groups
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for q in group {
                        let _ = q.done.send(Ok(()));
                    }
                    continue;
                }
                Err(e) => e,
            };
            let constraint = e
                .as_database_error()
                .is_some_and(|d| d.kind() != sqlx::error::ErrorKind::Other);
            if group.len() == 1 || !constraint {
                // Nothing one step alone could change (the database busy past its timeout,
                // a full disk): every step of the group gets that error.
                let e = step_write_err(e);
                for q in group {
                    let _ = q.done.send(Err(e.clone()));
                }
                continue;
            }
            // A constraint (a run deleted meanwhile, a step number taken) failed the whole
            // group, and each caller must learn its own outcome: write them one by one.
            for q in group {
                let outcome = self
                    .write_group(&mut conn, std::slice::from_ref(&q))
                    .await
                    .map_err(step_write_err);
                let _ = q.done.send(outcome);
            }
        }
    }

    /// Writes `group` in one transaction, sent as one multi-statement command; on failure the
    /// transaction is rolled back, so nothing of the group stays.
    async fn write_group(
        &self,
        conn: &mut WriteGuard,
        group: &[QueuedStep],
    ) -> Result<(), sqlx::Error> {
        let ts = now();
        let mut query = sqlx::query::<Sqlite>(group_sql(group.len()));
        for q in group {
            query = bind_step(query, q.run_id, &q.step)
                .bind(q.run_id)
                .bind(q.tokens_input)
                .bind(q.tokens_output)
                .bind(ts)
                .bind(q.run_id);
        }
        let written = query.execute(&mut **conn).await;
        if written.is_err() {
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
        }
        written.map(|_| ())
    }

    /// A connection whose ROLLBACK failed may still be inside the group's transaction, and
    /// every later write on it would join that transaction and never commit. It is replaced:
    /// closing it rolls back whatever it held.
    async fn replace_connection(&self, conn: &mut WriteGuard, why: &sqlx::Error) {
        tracing::error!(error = %why, "ROLLBACK failed on the SQLite writer; reopening it");
        let fresh = match &self.inner.conn {
            WriterConn::Dedicated { options, .. } => SqliteConnection::connect_with(options)
                .await
                .map(|c| match conn {
                    WriteGuard::Dedicated(guard) => **guard = c,
                    WriteGuard::Pooled(_) => {}
                }),
            WriterConn::Pooled(pool) => {
                if let WriteGuard::Pooled(old) = conn {
                    old.close_on_drop();
                }
                pool.acquire().await.map(|c| *conn = WriteGuard::Pooled(c))
            }
        };
        if let Err(e) = fresh {
            tracing::error!(error = %e, "could not reopen the SQLite writer");
        }
    }
}

/// Fails the steps still queued, and lets the next step start a flush, if a flush task is
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
        // Dropping their senders tells the waiting callers the writer stopped.
        queue.steps.clear();
    }
}

/// `BEGIN; (INSERT step; UPDATE run) × n; COMMIT` with positional `?` parameters, which
/// sqlx numbers on across the statements of one command. (A `$n` names the n-th argument of
/// the whole command, so every step would need numbers of its own.)
fn group_sql(n: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MAX_GROUP)
            .map(|n| {
                let mut sql = String::from("BEGIN; ");
                for _ in 0..n {
                    sql.push_str(
                        "INSERT INTO agent_run_steps (run_id, step, tool, action, input, output, \
                         error, duration_ms, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?); \
                         UPDATE agent_runs SET total_steps = \
                         (SELECT COUNT(*) FROM agent_run_steps WHERE run_id = ?), \
                         tokens_input = ?, tokens_output = ?, updated_at = ? WHERE id = ?; ",
                    );
                }
                sql.push_str("COMMIT");
                sql
            })
            .collect()
    });
    &all[n]
}
