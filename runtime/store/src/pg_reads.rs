//! The two reads every run request makes on PostgreSQL, grouped under load like the busiest
//! writes ([`crate::pg_groups`]): the caller's API key and the agent. In a burst of run
//! requests they are most of the statements PostgreSQL receives (a run's creation, steps
//! and updates are grouped already), and each costs a round trip, a pool checkout and a
//! backend wake-up for one indexed row.
//!
//! Nothing is cached: each read still sees every commit made before its caller asked, so a
//! key revoked or an agent changed through any server is seen by the next request here.
//! The statement takes an array, so one group of any size is one prepared statement.

use std::collections::HashMap;
use std::sync::LazyLock;

use leforge_core::{Agent, ApiKey, StoreError};
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

use crate::db_err;
use crate::pg_groups::Grouped;
use crate::rows::{AgentRow, ApiKeyRow};
use crate::sql_store::{AGENT_COLS, KEY_COLS};

/// Statements in flight per kind of read: the reads share the pool with the grouped
/// creations and updates (four each) and everything else.
const READS_IN_FLIGHT: usize = 2;

/// The active key with this SHA-256 hash, if any.
pub(crate) struct KeyRead {
    pub key_hash: String,
}

static KEYS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {KEY_COLS}, key_hash FROM api_keys \
         WHERE key_hash = ANY($1) AND revoked_at IS NULL"
    )
});

/// A read's own outcome: a row that does not decode fails only the callers who asked for it,
/// since each row is matched to them by a column read on its own first.
type Found<T> = Result<Option<T>, StoreError>;

/// PostgreSQL text cannot hold NUL, so no stored hash or slug contains one, and sending one
/// would fail the whole group's statement (it would then run one read at a time): such a
/// read is answered "none" without being sent.
fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// The outcome for `wanted` among `found`: absent is `None`.
fn outcome<K, T>(found: &HashMap<K, Result<T, StoreError>>, wanted: &K) -> Found<T>
where
    K: std::hash::Hash + Eq,
    T: Clone,
{
    found.get(wanted).cloned().transpose()
}

/// A read with nobody to share it: the grouped statement with one member, so that a read
/// is the same prepared statement whether it was grouped or not.
async fn alone<R, T>(read: &R, pool: &PgPool) -> Result<Found<T>, StoreError>
where
    R: Grouped<Out = Found<T>>,
{
    let mut found = R::run_many(std::slice::from_ref(read), pool)
        .await
        .map_err(db_err)?;
    Ok(found.pop().unwrap_or(Ok(None)))
}

impl Grouped for KeyRead {
    type Out = Found<ApiKey>;
    const RUN_ABANDONED: bool = false;
    const IN_FLIGHT: usize = READS_IN_FLIGHT;

    async fn run_one(&self, pool: &PgPool) -> Result<Found<ApiKey>, StoreError> {
        alone(self, pool).await
    }

    async fn run_many(group: &[Self], pool: &PgPool) -> Result<Vec<Found<ApiKey>>, sqlx::Error> {
        let hashes: Vec<&str> = group
            .iter()
            .map(|r| r.key_hash.as_str())
            .filter(|h| storable(h))
            .collect();
        if hashes.is_empty() {
            return Ok(group.iter().map(|_| Ok(None)).collect());
        }
        let mut found = HashMap::new();
        for row in &sqlx::query(&KEYS_SQL).bind(hashes).fetch_all(pool).await? {
            let hash: String = row.try_get("key_hash")?;
            let key = ApiKeyRow::from_row(row)
                .map_err(db_err)
                .and_then(|r| r.into_key().map(|(_, k)| k));
            found.insert(hash, key);
        }
        Ok(group.iter().map(|r| outcome(&found, &r.key_hash)).collect())
    }
}

/// A live (not deleted) agent, by id or by slug, as `find_agent` is asked.
pub(crate) enum AgentRead {
    Id(Uuid),
    Slug(String),
}

static AGENTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {AGENT_COLS} FROM agents \
         WHERE deleted_at IS NULL AND (id = ANY($1) OR slug = ANY($2))"
    )
});

impl Grouped for AgentRead {
    type Out = Found<Agent>;
    const RUN_ABANDONED: bool = false;
    const IN_FLIGHT: usize = READS_IN_FLIGHT;

    async fn run_one(&self, pool: &PgPool) -> Result<Found<Agent>, StoreError> {
        alone(self, pool).await
    }

    async fn run_many(group: &[Self], pool: &PgPool) -> Result<Vec<Found<Agent>>, sqlx::Error> {
        let (mut ids, mut slugs) = (Vec::new(), Vec::new());
        for read in group {
            match read {
                AgentRead::Id(id) => ids.push(*id),
                AgentRead::Slug(slug) if storable(slug) => slugs.push(slug.as_str()),
                AgentRead::Slug(_) => {}
            }
        }
        if ids.is_empty() && slugs.is_empty() {
            return Ok(group.iter().map(|_| Ok(None)).collect());
        }
        let rows = sqlx::query(&AGENTS_SQL)
            .bind(ids)
            .bind(slugs)
            .fetch_all(pool)
            .await?;
        // A live agent's slug is unique among live agents, so either key finds one row.
        let (mut by_id, mut by_slug) = (HashMap::new(), HashMap::new());
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let slug: String = row.try_get("slug")?;
            let agent = AgentRow::from_row(row)
                .map_err(db_err)
                .and_then(|r| r.into_agent().map(|(_, a)| a));
            by_slug.insert(slug, agent.clone());
            by_id.insert(id, agent);
        }
        Ok(group
            .iter()
            .map(|read| match read {
                AgentRead::Id(id) => outcome(&by_id, id),
                AgentRead::Slug(slug) => outcome(&by_slug, slug),
            })
            .collect())
    }
}
