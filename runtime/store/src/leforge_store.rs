//! Persistence for the runtime: one implementation of the core `Store` trait, compiled for
//! both SQLite (the zero-setup default) and PostgreSQL (production, several servers).
//!
//! The SQL is written once (see `sql_store.rs`) and instantiated for each back end; the few
//! places where the dialects differ are named explicitly. Nothing here knows about HTTP.

mod pg_groups;
mod pg_reads;
mod rows;
mod sql_store;
mod sqlite_readers;
mod sqlite_writer;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use leforge_core::{Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use pg_groups::PgGrouped;
pub use sql_store::{PgStore, SqliteStore};
use sqlite_readers::SqliteReaders;
use sqlite_writer::SqliteWriter;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Whether to bring the schema up to date while connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrate {
    Yes,
    No,
}

/// When a PostgreSQL store opens its connections. (A SQLite store's are files in this
/// process, cheap to open, and it opens them as it always does.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// As statements first need them: for commands and tests, which use a few.
    OnDemand,
    /// All of them at once, in the background once the store is connected, and kept open
    /// however long they sit idle (sqlx still retires each after 30 minutes, and the next
    /// statement that needs it opens it again): for a server. Opening a PostgreSQL connection costs
    /// a process fork and a SCRAM exchange (thousands of hash rounds on both sides), a few
    /// milliseconds of CPU; a server that opened its pools on demand paid that twenty-odd
    /// times in its first burst of requests, on the cores the burst needed. When PostgreSQL
    /// refuses some (`max_connections`, a role's limit), that is logged and the rest are
    /// opened on demand.
    Warm,
}

/// Opens the store a URL names: `postgres://…`/`postgresql://…` or `sqlite:…`, with
/// connections opened on demand.
pub async fn connect(url: &str, migrate: Migrate) -> Result<Arc<dyn Store>, StoreError> {
    connect_pooled(url, migrate, Pooling::OnDemand).await
}

/// As [`connect`], with a PostgreSQL store's connections opened as `pooling` says.
pub async fn connect_pooled(
    url: &str,
    migrate: Migrate,
    pooling: Pooling,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PgStore::connect_pooled(url, migrate, pooling).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, migrate).await?))
    } else {
        Err(StoreError::Database(
            "unsupported database URL: expected postgres://… or sqlite:…".into(),
        ))
    }
}

/// The SQLite URL for a file, creating the file when missing.
pub fn sqlite_url_for_path(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Read connections of a file database. Reads are short and the cores few; four keep a read
/// from waiting behind another while bounding the connections' threads and page caches.
const SQLITE_READERS: usize = 4;

impl SqliteStore {
    pub async fn connect(url: &str, migrate: Migrate) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .create_if_missing(true)
            // WAL lets readers proceed while a run writes its steps.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = sqlite_pool_options()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        if migrate == Migrate::Yes {
            SQLITE_MIGRATIONS.run(&pool).await.map_err(migrate_err)?;
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let (writer, readers) = if in_memory {
            (
                SqliteWriter::pooled(pool.clone()),
                SqliteReaders::Pooled(pool.clone()),
            )
        } else {
            (
                // Its statement cache holds every group size of each kind of grouped write
                // besides the other writes' statements.
                SqliteWriter::dedicated(&options.clone().statement_cache_capacity(256)).await?,
                SqliteReaders::open(&options, SQLITE_READERS).await?,
            )
        };
        Ok(SqliteStore {
            pool,
            readers: Arc::new(readers),
            writer,
        })
    }
}

/// Connections of a PostgreSQL store's main pool (runs, agents, keys, everything but step
/// rows) and of its step-row pool.
const PG_CONNECTIONS: u32 = 16;
const PG_PROGRESS_CONNECTIONS: u32 = 8;

impl PgStore {
    /// Opens the store with connections opened on demand.
    pub async fn connect(url: &str, migrate: Migrate) -> Result<Self, StoreError> {
        Self::connect_pooled(url, migrate, Pooling::OnDemand).await
    }

    pub async fn connect_pooled(
        url: &str,
        migrate: Migrate,
        pooling: Pooling,
    ) -> Result<Self, StoreError> {
        // Each grouped write prepares one statement per group size (up to 32 of each kind),
        // beside every other query: sqlx's default cache of 100 would evict and re-prepare.
        let options = PgConnectOptions::from_str(url)
            .map_err(db_err)?
            .statement_cache_capacity(256);
        // Warm connections are not closed for being idle: a quiet hour must not mean the
        // next burst pays for them again. (No minimum, though: sqlx keeps a minimum by
        // retrying, with pool permits held, whenever one closes, which starves statements of
        // permits when PostgreSQL refuses the connections.)
        let idle_timeout = match pooling {
            Pooling::Warm => None,
            Pooling::OnDemand => Some(Duration::from_secs(600)),
        };
        let pool = pg_pool_options()
            .max_connections(PG_CONNECTIONS)
            .idle_timeout(idle_timeout)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        // One connection now, so that a wrong URL or password fails here rather than at the
        // first request.
        drop(pool.acquire().await.map_err(db_err)?);
        if migrate == Migrate::Yes {
            POSTGRES_MIGRATIONS.run(&pool).await.map_err(migrate_err)?;
        }
        // Step rows commit asynchronously: PostgreSQL acknowledges them before their WAL is
        // flushed, which saves a disk flush (about 0.3 ms here) on every step. What this risks
        // is narrow: WAL is flushed in order, so the run's terminal update — a synchronous
        // commit — makes every earlier step row of that run durable before the caller hears
        // the result. Only a PostgreSQL crash while a run is in flight can lose the last few
        // hundred milliseconds of its step rows, the same trace a LeForge crash a moment
        // earlier would leave; the run's status, output and everything else stay synchronous.
        let progress = pg_pool_options()
            .max_connections(PG_PROGRESS_CONNECTIONS)
            .idle_timeout(idle_timeout)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.options([("synchronous_commit", "off")]));
        drop(progress.acquire().await.map_err(db_err)?);
        if pooling == Pooling::Warm {
            // In the background: the server can answer meanwhile, and a PostgreSQL that
            // refuses some of them (`max_connections`, a role's limit) only means those are
            // opened when needed.
            tokio::spawn(open_all(pool.clone(), PG_CONNECTIONS));
            tokio::spawn(open_all(progress.clone(), PG_PROGRESS_CONNECTIONS));
        }
        Ok(PgStore {
            creations: PgGrouped::start(pool.clone()),
            updates: PgGrouped::start(pool.clone()),
            keys: PgGrouped::start(pool.clone()),
            agents: PgGrouped::start(pool.clone()),
            writer: pool.clone(),
            pool,
            steps: PgGrouped::start(progress.clone()),
            progress,
        })
    }
}

/// How long the background opening of a warm pool's connections may take. sqlx retries a
/// refused connection (PostgreSQL at `max_connections`, or a role at its limit) until its
/// acquire timeout; a PostgreSQL at its limit is better left alone than asked again and
/// again.
const WARM_WITHIN: Duration = Duration::from_secs(3);

/// Opens `n` connections of `pool` at once, and stops at the first it cannot open. Each goes
/// back to the pool as soon as it is open, for whatever needs one meanwhile: the others are
/// being opened by then, so none of them takes it instead of opening its own.
async fn open_all(pool: sqlx::PgPool, n: u32) {
    let open_one = || async {
        match tokio::time::timeout(WARM_WITHIN, pool.acquire()).await {
            Ok(opened) => opened.map(drop).map_err(|e| e.to_string()),
            Err(_) => Err(format!("not opened within {WARM_WITHIN:?}")),
        }
    };
    if let Err(e) = futures::future::try_join_all((0..n).map(|_| open_one())).await {
        tracing::warn!(
            error = %e,
            "could not open all {n} pooled PostgreSQL connections at start; the rest will be \
             opened when needed"
        );
    }
}

/// sqlx pings a pooled connection when it is taken from the pool (`test_before_acquire`) and
/// again when it goes back. On SQLite each ping is a round trip to the connection's thread:
/// two of the three thread hops of every read, for a local file that cannot hang up. The
/// ping on release stays (sqlx always does it), and it is what catches a broken one.
fn sqlite_pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new().test_before_acquire(false)
}

/// Connections idle for less than this were proven alive by the ping sqlx makes when it
/// returns them to the pool, so they are not pinged again when taken.
const PG_PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// On PostgreSQL the ping on acquire is a network round trip before every statement (on the
/// path of every step). Only connections that sat idle long enough for the server, or
/// something between, to have dropped them are pinged.
fn pg_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PG_PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Database(format!("migration failed: {e}"))
}
