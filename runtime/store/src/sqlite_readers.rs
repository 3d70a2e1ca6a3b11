//! SQLite's read connections.
//!
//! Reads go through a few connections of their own rather than a sqlx pool: sqlx pings a
//! pooled connection each time it goes back to the pool (always, in a task spawned for it),
//! and on SQLite that ping is a round trip to the connection's thread, a second pair of
//! thread wake-ups for every read. WAL mode lets these connections read while the writer
//! writes. A read takes any connection that is free, else waits for one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use leforge_core::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Sqlite};
use tokio::sync::{Mutex, Semaphore};

use crate::db_err;
use crate::sqlite_writer::ConnGuard;

pub(crate) enum SqliteReaders {
    Dedicated {
        conns: Vec<Arc<Mutex<SqliteConnection>>>,
        /// One permit per connection: a read waits here, for whichever connection frees up
        /// first, rather than in the queue of one connection while others sit idle.
        free: Arc<Semaphore>,
        /// Where the next read starts looking, so reads spread over the connections.
        next: AtomicUsize,
    },
    /// An in-memory database reads through its one pool: see `sqlite_writer::WriterConn`.
    Pooled(sqlx::Pool<Sqlite>),
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("connections", &self.dedicated_connections())
            .finish()
    }
}

impl SqliteReaders {
    /// Opens `n` (at least one) read connections.
    pub(crate) async fn open(options: &SqliteConnectOptions, n: usize) -> Result<Self, StoreError> {
        let mut conns = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let conn = SqliteConnection::connect_with(options)
                .await
                .map_err(db_err)?;
            conns.push(Arc::new(Mutex::new(conn)));
        }
        Ok(SqliteReaders::Dedicated {
            free: Arc::new(Semaphore::new(conns.len())),
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// How many reads can run at once (`None`: as many as the pool allows).
    pub(crate) fn dedicated_connections(&self) -> Option<usize> {
        match self {
            SqliteReaders::Dedicated { conns, .. } => Some(conns.len()),
            SqliteReaders::Pooled(_) => None,
        }
    }

    /// Read connections in use and idle.
    pub(crate) fn stats(&self) -> leforge_core::PoolStats {
        match self {
            SqliteReaders::Dedicated { conns, free, .. } => {
                let idle = free.available_permits().min(conns.len()) as u32;
                leforge_core::PoolStats {
                    in_use: conns.len() as u32 - idle,
                    idle,
                }
            }
            SqliteReaders::Pooled(pool) => {
                let idle = pool.num_idle() as u32;
                leforge_core::PoolStats {
                    in_use: pool.size().saturating_sub(idle),
                    idle,
                }
            }
        }
    }

    /// A connection to read on, exclusively until the guard is dropped. Callers run single
    /// statements on it, so a caller abandoned mid-read leaves nothing open behind it.
    pub(crate) async fn get(&self) -> Result<ConnGuard, StoreError> {
        match self {
            SqliteReaders::Dedicated { conns, free, next } => {
                let permit =
                    free.clone().acquire_owned().await.map_err(|_| {
                        StoreError::Database("the SQLite readers are closed".into())
                    })?;
                // Holding a permit means some connection is free, or is being let go by a
                // holder that already gave its permit back.
                let start = next.fetch_add(1, Ordering::Relaxed);
                loop {
                    for i in 0..conns.len() {
                        let conn = &conns[(start + i) % conns.len()];
                        if let Ok(conn) = conn.clone().try_lock_owned() {
                            return Ok(ConnGuard::Dedicated {
                                conn,
                                _permit: Some(permit),
                            });
                        }
                    }
                    tokio::task::yield_now().await;
                }
            }
            SqliteReaders::Pooled(pool) => {
                Ok(ConnGuard::Pooled(pool.acquire().await.map_err(db_err)?))
            }
        }
    }
}
