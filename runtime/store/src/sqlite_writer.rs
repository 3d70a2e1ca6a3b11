//! SQLite's one writer, and group commit for step rows.
//!
//! SQLite admits one writer at a time, so every write goes through one connection. It is a
//! dedicated connection behind an async lock, not a pool of one: a pooled connection is
//! pinged on its way back to the pool, in a task spawned for that, so each pooled statement
//! cost two round trips to the connection's thread (each a pair of thread wake-ups) where
//! one is needed.
//!
//! Step rows are the most frequent write: one per tool call of every live run. A step is
//! queued, and one flush writes every step queued by then in a single multi-statement
//! transaction: one round trip and one commit for the group. Steps queue while the writer is
//! busy with other writes, so the busier the server, the larger the groups. A caller hears
//! about its step only after the group committed, and hears its own outcome: when a group
//! fails, its steps are written again one by one.

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
    /// Steps waiting for the next flush. When this goes from empty to one, a flush is started.
    queued: std::sync::Mutex<Vec<QueuedStep>>,
    /// Groups committed, for tests that check steps really are grouped.
    groups: std::sync::atomic::AtomicU64,
}

enum WriterConn {
    Dedicated(Arc<Mutex<SqliteConnection>>),
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
            WriterConn::Dedicated(_) => "dedicated connection",
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
        Ok(Self::new(WriterConn::Dedicated(Arc::new(Mutex::new(conn)))))
    }

    /// Writes through `pool` (an in-memory database's only pool).
    pub(crate) fn pooled(pool: sqlx::Pool<Sqlite>) -> Self {
        Self::new(WriterConn::Pooled(pool))
    }

    fn new(conn: WriterConn) -> Self {
        SqliteWriter {
            inner: Arc::new(Inner {
                conn,
                queued: std::sync::Mutex::new(Vec::new()),
                groups: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Waits for the connection. Callers run single statements on it: a caller abandoned
    /// mid-statement (its future dropped) leaves no transaction open behind it.
    pub(crate) async fn lock(&self) -> Result<WriteGuard, StoreError> {
        match &self.inner.conn {
            WriterConn::Dedicated(conn) => {
                Ok(WriteGuard::Dedicated(conn.clone().lock_owned().await))
            }
            WriterConn::Pooled(pool) => {
                Ok(WriteGuard::Pooled(pool.acquire().await.map_err(db_err)?))
            }
        }
    }

    pub(crate) fn is_dedicated(&self) -> bool {
        matches!(self.inner.conn, WriterConn::Dedicated(_))
    }

    /// Groups of steps committed so far.
    pub(crate) fn groups_committed(&self) -> u64 {
        self.inner.groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Steps queued and not yet taken by a flush.
    pub(crate) fn steps_queued(&self) -> usize {
        self.queued().len()
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<QueuedStep>> {
        // The queue is a plain Vec; a panic elsewhere cannot leave it half-updated.
        self.inner.queued.lock().unwrap_or_else(|e| e.into_inner())
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
        let first = {
            let mut queued = self.queued();
            queued.push(QueuedStep {
                run_id,
                step,
                tokens_input,
                tokens_output,
                done,
            });
            queued.len() == 1
        };
        if first {
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

    /// Takes the writer, then every step queued by then, and writes them in groups.
    async fn flush(self) {
        let conn = self.lock().await;
        let queued = std::mem::take(&mut *self.queued());
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                let message = e.to_string();
                for q in queued {
                    let _ = q.done.send(Err(StoreError::Database(message.clone())));
                }
                return;
            }
        };
        let mut queued = queued.into_iter();
        loop {
            let group: Vec<QueuedStep> = queued.by_ref().take(MAX_GROUP).collect();
            if group.is_empty() {
                return;
            }
            if write_group(&mut conn, &group).await.is_ok() {
                self.inner
                    .groups
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for q in group {
                    let _ = q.done.send(Ok(()));
                }
                continue;
            }
            // One failing statement (a run deleted meanwhile, a step number taken) failed the
            // whole group, and each caller must learn its own outcome: write them one by one.
            for q in group {
                let outcome = write_group(&mut conn, std::slice::from_ref(&q))
                    .await
                    .map_err(step_write_err);
                let _ = q.done.send(outcome);
            }
        }
    }
}

/// Writes `group` in one transaction, sent as one multi-statement command; on failure the
/// transaction is rolled back, so nothing of the group stays.
async fn write_group(conn: &mut SqliteConnection, group: &[QueuedStep]) -> Result<(), sqlx::Error> {
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
    let written = query.execute(&mut *conn).await;
    if written.is_err() {
        // The failed statement stopped the command with the transaction open (or SQLite
        // already rolled it back, and this fails harmlessly with "no transaction is active").
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    written.map(|_| ())
}

/// `BEGIN; (INSERT step; UPDATE run) × n; COMMIT` with positional `?` parameters, which
/// SQLite numbers across the statements of one command (a `$n` would restart at each).
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
