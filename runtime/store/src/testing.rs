//! Fresh, isolated stores for tests: a SQLite file in a temporary directory, or a new
//! PostgreSQL database on the server named by `LEFORGE_TEST_DATABASE_URL`.
//!
//! PostgreSQL tests are skipped (with a printed notice) when that variable is unset, unless
//! `LEFORGE_REQUIRE_POSTGRES=1` — which CI sets, so the PostgreSQL suite can never be skipped
//! silently there.

use std::sync::Arc;

use leforge_core::Store;
use sqlx::Connection;

use crate::{Migrate, PgStore, SqliteStore};

/// A store plus the URL a separate server process can use to open the same database.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub url: String,
    pub backend: &'static str,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    PgDatabase { admin_url: String, name: String },
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore")
            .field("backend", &self.backend)
            .finish()
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = crate::sqlite_url_for_path(&dir.path().join("test.db"));
    let store = SqliteStore::connect(&url, Migrate::Yes)
        .await
        .expect("open sqlite test store");
    TestStore {
        store: Arc::new(store),
        url,
        backend: "sqlite",
        cleanup: Cleanup::Dir(dir),
    }
}

/// The admin URL of the test PostgreSQL server, or `None` when PostgreSQL tests are skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("LEFORGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("LEFORGE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("LEFORGE_REQUIRE_POSTGRES=1 but LEFORGE_TEST_DATABASE_URL is not set");
            }
            eprintln!("SKIP postgres: LEFORGE_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// A new, migrated database on the test server; dropped again when the `TestStore` is.
pub async fn postgres() -> Option<TestStore> {
    let admin_url = postgres_url()?;
    let name = format!("leforge_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to LEFORGE_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let url = replace_database(&admin_url, &name);
    let store = PgStore::connect(&url, Migrate::Yes)
        .await
        .expect("open postgres test store");
    Some(TestStore {
        store: Arc::new(store),
        url,
        backend: "postgres",
        cleanup: Cleanup::PgDatabase { admin_url, name },
    })
}

/// Every back end available here: SQLite always, PostgreSQL when configured.
pub async fn all() -> Vec<TestStore> {
    let mut stores = vec![sqlite().await];
    stores.extend(postgres().await);
    stores
}

fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // The database is the path after the authority: postgres://user@host:port/db
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Cleanup::PgDatabase { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any async context we can rely on; a short-lived runtime on
            // its own thread keeps test databases from piling up.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_database_in_url() {
        assert_eq!(
            super::replace_database(
                "postgres://u:p@localhost:5432/postgres?sslmode=disable",
                "x"
            ),
            "postgres://u:p@localhost:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://localhost", "x"),
            "postgres://localhost/x"
        );
    }
}
