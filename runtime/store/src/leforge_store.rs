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

/// Opens the store a URL names: `postgres://…`/`postgresql://…` or `sqlite:…`.
pub async fn connect(url: &str, migrate: Migrate) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, migrate).await?))
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

impl PgStore {
    pub async fn connect(url: &str, migrate: Migrate) -> Result<Self, StoreError> {
        // Grouped run creations prepare one statement per group size (up to 32), beside
        // every other query: sqlx's default cache of 100 would evict and re-prepare.
        let options = PgConnectOptions::from_str(url)
            .map_err(db_err)?
            .statement_cache_capacity(256);
        let pool = pg_pool_options()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
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
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await
            .map_err(db_err)?;
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
