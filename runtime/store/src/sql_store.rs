//! The `Store` implementation, written once and instantiated for SQLite and PostgreSQL by
//! `sql_store!`. Queries use `$n` placeholders, which both drivers accept; the only dialect
//! differences (JSON array tests) are macro arguments.

use std::sync::Arc;

use async_trait::async_trait;
use leforge_core::installed::{InstalledForgehook, NewInstalledForgehook};
use leforge_core::mcp::McpServer;
use leforge_core::store::AgentVisibility;
use leforge_core::{
    Agent, AgentPatch, ApiKey, ApiKeyScope, CallbackAttempt, NewAgent, NewApiKey, NewRun,
    NewScript, Page, PageRequest, Run, RunFilter, RunStatus, RunStep, RunUpdate, Script,
    ScriptPatch, Store, StoreError,
};
use sqlx::types::Json;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::db_err;
use crate::pg_groups::{PgGrouped, RunUpdateWrite, StepWrite};
use crate::pg_reads::{AgentRead, KeyRead};
use crate::rows::{now, AgentRow, ApiKeyRow, ForgehookRow, RunHookRow, RunRow, ScriptRow, StepRow};
use crate::sqlite_readers::SqliteReaders;
use crate::sqlite_writer::{ConnGuard, SqliteWriter};

pub(crate) const AGENT_COLS: &str =
    "seq, id, name, slug, description, model, provider, system_prompt, \
    tools, config, is_public, api_key_required, allowed_api_keys, output_schema, created_by, \
    created_at, updated_at, hooks";
pub(crate) const RUN_COLS: &str =
    "seq, id, agent_id, status, input_text, input_data, output, output_text, \
    error_code, error_message, total_steps, tokens_input, tokens_output, duration_ms, \
    triggered_by, ip_address, user_agent, created_at, started_at, completed_at, updated_at, \
    mode, limits, callback_url, callback_attempts, idempotency_key, request_hash, lease_owner, \
    trace_context";
pub(crate) const STEP_COLS: &str =
    "run_id, step, tool, action, input, output, error, duration_ms, started_at";
pub(crate) const KEY_COLS: &str =
    "seq, id, name, prefix, scope, created_at, last_used_at, revoked_at";
const SCRIPT_COLS: &str = "seq, id, name, description, source, version, created_at, updated_at";
const RUN_HOOK_COLS: &str = "run_id, hook, script, script_id, script_version, step, \
    duration_ms, outcome, logs";
const HOOK_COLS: &str =
    "id, manifest, wasm_sha256, enabled, builtin, config, installed_at, updated_at";

/// An MCP server row: the registration, and the timestamps the store keeps.
type McpRow = (
    Json<McpServer>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

/// The timestamps are the row's, whatever the stored registration says.
fn mcp_from_row((Json(mut server), created_at, updated_at): McpRow) -> McpServer {
    server.created_at = created_at;
    server.updated_at = updated_at;
    server
}

/// Maps a failed write to the domain error: unique violations become `Conflict` naming the
/// field (both drivers mention the index or column in the constraint name or message).
fn write_err(e: sqlx::Error, entity: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let hint = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
            let field = ["slug", "name", "key_hash", "step"]
                .into_iter()
                .find(|f| hint.contains(f))
                .unwrap_or("id");
            return StoreError::Conflict {
                entity,
                field: field.to_string(),
            };
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound { entity: "agent" };
        }
    }
    db_err(e)
}

/// The step row's INSERT, `$1`–`$9` bound by [`bind_step`]; a macro so that the one-statement
/// step write can embed it with `concat!`.
macro_rules! insert_step_sql {
    () => {
        "INSERT INTO agent_run_steps (run_id, step, tool, action, input, output, \
         error, duration_ms, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
}
pub(crate) use insert_step_sql;

/// Binds a step's nine columns, in the step INSERT's column order, after whatever `query`
/// has bound already.
pub(crate) fn bind_step<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    run_id: Uuid,
    step: &'q RunStep,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Json<&'q serde_json::Value>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Json<&'q serde_json::Value>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    chrono::DateTime<chrono::Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(run_id)
        .bind(step.step)
        .bind(step.tool.as_str())
        .bind(step.action.as_str())
        .bind(Json(&step.input))
        .bind(step.output.as_ref().map(Json))
        .bind(step.error.as_deref())
        .bind(step.duration_ms)
        .bind(step.started_at)
}

/// A step insert that fails on the foreign key means the run is missing.
pub(crate) fn step_write_err(e: sqlx::Error) -> StoreError {
    match write_err(e, "step") {
        StoreError::NotFound { .. } => StoreError::NotFound { entity: "run" },
        other => other,
    }
}

/// The columns a new run is inserted with, in [`bind_new_run`]'s order.
pub(crate) const NEW_RUN_COLS: &str = "id, agent_id, status, input_text, input_data, \
    triggered_by, ip_address, user_agent, created_at, updated_at, mode, limits, callback_url, \
    idempotency_key, request_hash, started_at, lease_owner, lease_expires_at, idempotency_scope, \
    callback_due_at, trace_context";

/// Binds a new run's twenty-one [`NEW_RUN_COLS`] (created and updated at `ts`; `pending`, or
/// `running` from `ts` on under its lease when it starts at once; a callback owed from `ts`
/// on when it has a callback URL), after whatever `query` has bound already.
pub(crate) fn bind_new_run<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    id: Uuid,
    ts: chrono::DateTime<chrono::Utc>,
    run: &'q NewRun,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Json<&'q serde_json::Value>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    chrono::DateTime<chrono::Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<chrono::DateTime<chrono::Utc>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let status = match run.start {
        Some(_) => RunStatus::Running,
        None => RunStatus::Pending,
    };
    query
        .bind(id)
        .bind(run.agent_id)
        .bind(status.as_str())
        .bind(run.input_text.as_str())
        .bind(run.input_data.as_ref().map(Json))
        .bind(run.triggered_by.as_deref())
        .bind(run.ip_address.as_deref())
        .bind(run.user_agent.as_deref())
        .bind(ts)
        .bind(ts)
        .bind(run.mode.as_str())
        .bind(run.limits.as_ref().map(Json))
        .bind(run.callback_url.as_deref())
        .bind(run.idempotency_key.as_deref())
        .bind(run.request_hash.as_deref())
        .bind(run.start.as_ref().map(|_| ts))
        .bind(run.start.as_ref().map(|s| s.owner.as_str()))
        .bind(run.start.as_ref().map(|s| s.lease_until))
        .bind(run.idempotency_scope.as_str())
        .bind(run.callback_url.as_ref().map(|_| ts))
        .bind(run.trace_context.as_deref())
}

/// The columns a run update may set, in [`bind_run_update`]'s order, each with its
/// PostgreSQL type (in a `VALUES` list PostgreSQL has no column to infer it from). Both back
/// ends' grouped updates write every field of every `RunUpdate`, so that updates of any shape
/// share one statement text.
pub(crate) const RUN_UPDATE_COLS: [(&str, &str); 13] = [
    ("status", "text"),
    ("output", "jsonb"),
    ("output_text", "text"),
    ("error_code", "text"),
    ("error_message", "text"),
    ("total_steps", "integer"),
    ("tokens_input", "bigint"),
    ("tokens_output", "bigint"),
    ("duration_ms", "bigint"),
    ("started_at", "timestamptz"),
    ("completed_at", "timestamptz"),
    ("lease_owner", "text"),
    ("lease_expires_at", "timestamptz"),
];

/// `col = COALESCE(<new value>, <current>col)` for every one of [`RUN_UPDATE_COLS`]: a field
/// the update leaves out (`None`) keeps its value, as the single-run update query leaves it
/// out; no update sets a field back to NULL. `new_value` gets the column's index, name and
/// PostgreSQL type; `current` qualifies the current value (a table alias and its dot).
pub(crate) fn coalesced_update(
    new_value: impl Fn(usize, &str, &str) -> String,
    current: &str,
) -> String {
    RUN_UPDATE_COLS
        .iter()
        .enumerate()
        .map(|(i, (col, ty))| {
            format!(
                "{col} = COALESCE({}, {current}{col})",
                new_value(i, col, ty)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds an update's fields, in [`RUN_UPDATE_COLS`]' order, after whatever `query` has
/// bound already.
pub(crate) fn bind_run_update<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    u: &'q RunUpdate,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Json<&'q serde_json::Value>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<chrono::DateTime<chrono::Utc>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(u.status.map(RunStatus::as_str))
        .bind(u.output.as_ref().map(Json))
        .bind(u.output_text.as_deref())
        .bind(u.error_code.as_deref())
        .bind(u.error_message.as_deref())
        .bind(u.total_steps)
        .bind(u.tokens_input)
        .bind(u.tokens_output)
        .bind(u.duration_ms)
        .bind(u.started_at)
        .bind(u.completed_at)
        .bind(u.lease.as_ref().map(|(owner, _)| owner.as_str()))
        .bind(u.lease.as_ref().map(|(_, until)| *until))
}

/// A new run as either back end's grouped writer queues it: its id and creation time are
/// chosen before it is written.
pub(crate) struct RunCreation {
    pub id: Uuid,
    pub ts: chrono::DateTime<chrono::Utc>,
    pub run: NewRun,
}

/// A failed run insert: the unique index on (agent, idempotency key) means another request
/// with the same key won.
pub(crate) fn create_run_err(e: sqlx::Error) -> StoreError {
    match write_err(e, "run") {
        StoreError::Conflict { entity, .. } => StoreError::Conflict {
            entity,
            field: "idempotency_key".into(),
        },
        other => other,
    }
}

/// Inserts one step row on a connection (or inside a transaction) of either back end.
async fn insert_step<DB>(
    conn: &mut <DB as sqlx::Database>::Connection,
    run_id: Uuid,
    step: &RunStep,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Json<&'q serde_json::Value>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<Json<&'q serde_json::Value>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> chrono::DateTime<chrono::Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    bind_step(sqlx::query::<DB>(insert_step_sql!()), run_id, step)
        .execute(&mut *conn)
        .await
        .map_err(step_write_err)?;
    Ok(())
}

macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:literal, keys_empty: $empty:literal, keys_contain: ($open:literal, $close:literal), skip_locked: $skip_locked:literal) => {
        impl $store {
            async fn fetch_agent_row(&self, id: Uuid) -> Result<Option<AgentRow>, StoreError> {
                sqlx::query_as::<$db, AgentRow>(&format!(
                    "SELECT {AGENT_COLS} FROM agents WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id)
                .fetch_optional(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)
            }

            /// Loads the steps of several runs at once, grouped by run in step order.
            async fn steps_for(
                &self,
                run_ids: &[Uuid],
            ) -> Result<std::collections::HashMap<Uuid, Vec<RunStep>>, StoreError> {
                let mut grouped: std::collections::HashMap<Uuid, Vec<RunStep>> =
                    std::collections::HashMap::new();
                if run_ids.is_empty() {
                    return Ok(grouped);
                }
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {STEP_COLS} FROM agent_run_steps WHERE run_id IN ("
                ));
                let mut sep = qb.separated(", ");
                for id in run_ids {
                    sep.push_bind(*id);
                }
                qb.push(") ORDER BY run_id, step");
                let rows: Vec<StepRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                for row in rows {
                    grouped.entry(row.run_id).or_default().push(row.into_step());
                }
                Ok(grouped)
            }

            /// The UPDATE for a `RunUpdate`; shared by the read-back and the fire-and-forget form.
            fn run_update_query<'a>(id: Uuid, update: RunUpdate) -> QueryBuilder<'a, $db> {
                let mut qb = QueryBuilder::<$db>::new("UPDATE agent_runs SET updated_at = ");
                qb.push_bind(now());
                if let Some(v) = update.status {
                    qb.push(", status = ").push_bind(v.as_str());
                }
                if let Some(v) = update.output {
                    qb.push(", output = ").push_bind(Json(v));
                }
                if let Some(v) = update.output_text {
                    qb.push(", output_text = ").push_bind(v);
                }
                if let Some(v) = update.error_code {
                    qb.push(", error_code = ").push_bind(v);
                }
                if let Some(v) = update.error_message {
                    qb.push(", error_message = ").push_bind(v);
                }
                if let Some(v) = update.total_steps {
                    qb.push(", total_steps = ").push_bind(v);
                }
                if let Some(v) = update.tokens_input {
                    qb.push(", tokens_input = ").push_bind(v);
                }
                if let Some(v) = update.tokens_output {
                    qb.push(", tokens_output = ").push_bind(v);
                }
                if let Some(v) = update.duration_ms {
                    qb.push(", duration_ms = ").push_bind(v);
                }
                if let Some(v) = update.started_at {
                    qb.push(", started_at = ").push_bind(v);
                }
                if let Some(v) = update.completed_at {
                    qb.push(", completed_at = ").push_bind(v);
                }
                if let Some((owner, until)) = update.lease {
                    qb.push(", lease_owner = ").push_bind(owner);
                    qb.push(", lease_expires_at = ").push_bind(until);
                }
                qb.push(" WHERE id = ").push_bind(id);
                // A terminal status is final: a late writer (say, a worker finishing after a
                // cancel) must not overwrite it.
                if update.status.is_some() {
                    qb.push(" AND status IN ('pending', 'running')");
                }
                qb
            }

            /// Why an update matched no row: the run is missing, or already terminal (a late
            /// writer, say a worker finishing after a cancel, must not overwrite the status).
            async fn not_updated(&self, id: Uuid) -> StoreError {
                let status: Result<Option<(String,)>, _> =
                    match self.read_conn().await {
                        Ok(mut conn) => {
                            sqlx::query_as("SELECT status FROM agent_runs WHERE id = $1")
                                .bind(id)
                                .fetch_optional(&mut *conn)
                                .await
                        }
                        Err(e) => return e,
                    };
                match status {
                    Ok(Some((status,))) => {
                        StoreError::InvalidState(format!("run {id} is already {status}"))
                    }
                    Ok(None) => StoreError::NotFound { entity: "run" },
                    Err(e) => db_err(e),
                }
            }

            async fn runs_with_steps(&self, rows: Vec<RunRow>) -> Result<Vec<(i64, Run)>, StoreError> {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
                let mut steps = self.steps_for(&ids).await?;
                let mut hooks = self.hooks_for(&ids).await?;
                rows.into_iter()
                    .map(|row| {
                        let s = steps.remove(&row.id).unwrap_or_default();
                        let h = hooks.remove(&row.id).unwrap_or_default();
                        row.into_run(s).map(|(seq, mut run)| {
                            run.hooks = h;
                            (seq, run)
                        })
                    })
                    .collect()
            }

            /// Loads the hook records of several runs at once, grouped by run in call order.
            async fn hooks_for(
                &self,
                run_ids: &[Uuid],
            ) -> Result<std::collections::HashMap<Uuid, Vec<leforge_core::hook::HookRecord>>, StoreError> {
                let mut grouped: std::collections::HashMap<Uuid, Vec<leforge_core::hook::HookRecord>> =
                    std::collections::HashMap::new();
                if run_ids.is_empty() {
                    return Ok(grouped);
                }
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {RUN_HOOK_COLS} FROM run_hooks WHERE run_id IN ("
                ));
                let mut sep = qb.separated(", ");
                for id in run_ids {
                    sep.push_bind(*id);
                }
                qb.push(") ORDER BY seq");
                let rows: Vec<RunHookRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                for row in rows {
                    let run_id = row.run_id;
                    grouped.entry(run_id).or_default().push(row.into_record()?);
                }
                Ok(grouped)
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&mut *self.read_conn().await?).await.map_err(db_err)?;
                Ok(())
            }

            fn pool_stats(&self) -> leforge_core::PoolStats {
                self.connection_stats()
            }

            async fn count_runs(&self, status: RunStatus) -> Result<i64, StoreError> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agent_runs WHERE status = $1")
                    .bind(status.as_str())
                    .fetch_one(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                Ok(count)
            }

            async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError> {
                let id = Uuid::now_v7();
                let ts = now();
                let row = sqlx::query_as::<$db, AgentRow>(&format!(
                    "INSERT INTO agents (id, name, slug, description, model, provider, system_prompt, \
                     tools, config, is_public, api_key_required, allowed_api_keys, created_by, \
                     created_at, updated_at, output_schema, hooks) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, \
                     $16) \
                     RETURNING {AGENT_COLS}"
                ))
                .bind(id)
                .bind(&agent.name)
                .bind(&agent.slug)
                .bind(&agent.description)
                .bind(&agent.model)
                .bind(agent.provider.as_str())
                .bind(&agent.system_prompt)
                .bind(Json(&agent.tools))
                .bind(Json(&agent.config))
                .bind(agent.is_public)
                .bind(agent.api_key_required)
                .bind(Json(&agent.allowed_api_keys))
                .bind(&agent.created_by)
                .bind(ts)
                .bind(agent.output_schema.as_ref().map(Json))
                .bind(Json(&agent.hooks))
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(|e| write_err(e, "agent"))?;
                Ok(row.into_agent()?.1)
            }

            async fn find_agent(&self, id_or_slug: &str) -> Result<Option<Agent>, StoreError> {
                self.live_agent(id_or_slug).await
            }

            async fn list_agents(
                &self,
                visibility: AgentVisibility,
                page: PageRequest,
            ) -> Result<Page<Agent>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {AGENT_COLS} FROM agents WHERE deleted_at IS NULL"
                ));
                match visibility {
                    AgentVisibility::All => {}
                    AgentVisibility::PublicOnly => {
                        qb.push(" AND is_public");
                    }
                    AgentVisibility::RunnableBy(key) => {
                        qb.push(concat!(" AND (is_public OR ", $empty, " OR ", $open));
                        qb.push_bind(key.to_string());
                        qb.push(concat!($close, ")"));
                    }
                }
                if let Some(after) = page.after {
                    qb.push(" AND seq < ").push_bind(after);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<AgentRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                let rows = rows
                    .into_iter()
                    .map(AgentRow::into_agent)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_rows(rows, page.limit))
            }

            async fn update_agent(&self, id: Uuid, patch: AgentPatch) -> Result<Agent, StoreError> {
                let row = self
                    .fetch_agent_row(id)
                    .await?
                    .ok_or(StoreError::NotFound { entity: "agent" })?;
                let (_, mut agent) = row.into_agent()?;
                patch.apply(&mut agent);
                agent.updated_at = now();
                let row = sqlx::query_as::<$db, AgentRow>(&format!(
                    "UPDATE agents SET name = $2, slug = $3, description = $4, model = $5, \
                     provider = $6, system_prompt = $7, tools = $8, config = $9, is_public = $10, \
                     api_key_required = $11, allowed_api_keys = $12, updated_at = $13, \
                     output_schema = $14, hooks = $15 \
                     WHERE id = $1 AND deleted_at IS NULL RETURNING {AGENT_COLS}"
                ))
                .bind(id)
                .bind(&agent.name)
                .bind(&agent.slug)
                .bind(&agent.description)
                .bind(&agent.model)
                .bind(agent.provider.as_str())
                .bind(&agent.system_prompt)
                .bind(Json(&agent.tools))
                .bind(Json(&agent.config))
                .bind(agent.is_public)
                .bind(agent.api_key_required)
                .bind(Json(&agent.allowed_api_keys))
                .bind(agent.updated_at)
                .bind(agent.output_schema.as_ref().map(Json))
                .bind(Json(&agent.hooks))
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(|e| write_err(e, "agent"))?
                .ok_or(StoreError::NotFound { entity: "agent" })?;
                Ok(row.into_agent()?.1)
            }

            async fn delete_agent(&self, id: Uuid) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "UPDATE agents SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now())
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { entity: "agent" });
                }
                Ok(())
            }

            async fn create_run(&self, run: NewRun) -> Result<Run, StoreError> {
                let row = self.insert_run(Uuid::now_v7(), now(), run).await?;
                Ok(row.into_run(Vec::new())?.1)
            }

            async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
                let row = sqlx::query_as::<$db, RunRow>(&format!(
                    "SELECT {RUN_COLS} FROM agent_runs WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                match row {
                    None => Ok(None),
                    Some(row) => Ok(self.runs_with_steps(vec![row]).await?.pop().map(|(_, r)| r)),
                }
            }

            async fn list_runs(
                &self,
                filter: RunFilter,
                page: PageRequest,
            ) -> Result<Page<Run>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {RUN_COLS} FROM agent_runs WHERE 1 = 1"
                ));
                if let Some(agent_id) = filter.agent_id {
                    qb.push(" AND agent_id = ").push_bind(agent_id);
                }
                if let Some(status) = filter.status {
                    qb.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(triggered_by) = filter.triggered_by {
                    qb.push(" AND triggered_by = ").push_bind(triggered_by);
                }
                if let Some(after) = page.after {
                    qb.push(" AND seq < ").push_bind(after);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<RunRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                Ok(Page::from_rows(self.runs_with_steps(rows).await?, page.limit))
            }

            async fn update_run(&self, id: Uuid, update: RunUpdate) -> Result<Run, StoreError> {
                let mut qb = Self::run_update_query(id, update);
                // RETURNING saves reading the row back: two round trips (row, steps), not three.
                qb.push(format!(" RETURNING {RUN_COLS}"));
                let row: Option<RunRow> = qb
                    .build_query_as()
                    .fetch_optional(&mut *self.write_conn().await?)
                    .await
                    .map_err(db_err)?;
                match row {
                    Some(row) => {
                        let mut runs = self.runs_with_steps(vec![row]).await?;
                        runs.pop().map(|(_, r)| r).ok_or(StoreError::NotFound { entity: "run" })
                    }
                    None => Err(self.not_updated(id).await),
                }
            }

            async fn apply_run_update(&self, id: Uuid, update: RunUpdate) -> Result<(), StoreError> {
                if !self.write_run_update(id, update).await? {
                    return Err(self.not_updated(id).await);
                }
                Ok(())
            }

            async fn append_step(&self, run_id: Uuid, step: RunStep) -> Result<(), StoreError> {
                self.write_step(run_id, step, None).await
            }

            async fn append_step_with_progress(
                &self,
                run_id: Uuid,
                step: RunStep,
                tokens_input: i64,
                tokens_output: i64,
            ) -> Result<(), StoreError> {
                self.write_step(run_id, step, Some((tokens_input, tokens_output))).await
            }

            async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
                let row = sqlx::query_as::<$db, ApiKeyRow>(&format!(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scope, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLS}"
                ))
                .bind(Uuid::now_v7())
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.key_hash)
                .bind(key.scope.as_str())
                .bind(now())
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(|e| write_err(e, "api key"))?;
                Ok(row.into_key()?.1)
            }

            async fn list_api_keys(&self, page: PageRequest) -> Result<Page<ApiKey>, StoreError> {
                let mut qb =
                    QueryBuilder::<$db>::new(format!("SELECT {KEY_COLS} FROM api_keys WHERE 1 = 1"));
                if let Some(after) = page.after {
                    qb.push(" AND seq < ").push_bind(after);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<ApiKeyRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                let rows = rows
                    .into_iter()
                    .map(ApiKeyRow::into_key)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_rows(rows, page.limit))
            }

            async fn find_active_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
                self.active_key(key_hash).await
            }

            async fn count_api_keys(&self, scope: Option<ApiKeyScope>) -> Result<i64, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
                );
                if let Some(scope) = scope {
                    qb.push(" AND scope = ").push_bind(scope.as_str());
                }
                let (count,): (i64,) = qb
                    .build_query_as()
                    .fetch_one(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                Ok(count)
            }

            async fn touch_api_key(&self, id: Uuid) -> Result<(), StoreError> {
                let ts = now();
                // Conditional, for servers racing on one key; callers skip the statement when
                // the key they read was used within the interval.
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(id)
                .bind(ts)
                .bind(ts - chrono::TimeDelta::seconds(leforge_core::api_key::LAST_USED_RESOLUTION_SECS))
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn revoke_api_key(&self, id: Uuid) -> Result<ApiKey, StoreError> {
                let row = sqlx::query_as::<$db, ApiKeyRow>(&format!(
                    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
                     RETURNING {KEY_COLS}"
                ))
                .bind(id)
                .bind(now())
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "api key" })?;
                Ok(row.into_key()?.1)
            }

            async fn find_run_by_idempotency_key(
                &self,
                agent_id: Uuid,
                scope: &str,
                key: &str,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<Run>, StoreError> {
                let row = sqlx::query_as::<$db, RunRow>(&format!(
                    "SELECT {RUN_COLS} FROM agent_runs WHERE agent_id = $1 AND idempotency_key = $2 \
                     AND created_at >= $3 AND idempotency_scope = $4 ORDER BY seq DESC LIMIT 1"
                ))
                .bind(agent_id)
                .bind(key)
                .bind(since)
                .bind(scope)
                .fetch_optional(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                match row {
                    None => Ok(None),
                    Some(row) => Ok(self.runs_with_steps(vec![row]).await?.pop().map(|(_, r)| r)),
                }
            }

            async fn expire_idempotency_key(
                &self,
                agent_id: Uuid,
                scope: &str,
                key: &str,
                before: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE agent_runs SET idempotency_key = NULL WHERE agent_id = $1 \
                     AND idempotency_key = $2 AND created_at < $3 AND idempotency_scope = $4",
                )
                .bind(agent_id)
                .bind(key)
                .bind(before)
                .bind(scope)
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn claim_queued_runs(
                &self,
                owner: &str,
                limit: u32,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<Run>, StoreError> {
                let ts = now();
                let rows = sqlx::query_as::<$db, RunRow>(&format!(
                    "UPDATE agent_runs SET status = 'running', lease_owner = $1, \
                     lease_expires_at = $2, started_at = $3, updated_at = $3 \
                     WHERE id IN (SELECT id FROM agent_runs WHERE status = 'pending' \
                     AND mode = 'async' ORDER BY seq LIMIT $4{}) RETURNING {RUN_COLS}",
                    $skip_locked
                ))
                .bind(owner)
                .bind(lease_until)
                .bind(ts)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                let mut runs = rows
                    .into_iter()
                    .map(|r| r.into_run(Vec::new()))
                    .collect::<Result<Vec<_>, _>>()?;
                runs.sort_by_key(|(seq, _)| *seq);
                Ok(runs.into_iter().map(|(_, r)| r).collect())
            }

            async fn renew_leases(
                &self,
                owner: &str,
                run_ids: &[Uuid],
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, StoreError> {
                if run_ids.is_empty() {
                    return Ok(0);
                }
                let mut qb = QueryBuilder::<$db>::new("UPDATE agent_runs SET lease_expires_at = ");
                qb.push_bind(lease_until);
                qb.push(" WHERE status = 'running' AND lease_owner = ").push_bind(owner);
                qb.push(" AND id IN (");
                let mut sep = qb.separated(", ");
                for id in run_ids {
                    sep.push_bind(*id);
                }
                qb.push(")");
                let done = qb.build().execute(&mut *self.write_conn().await?).await.map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn interrupt_expired_runs(
                &self,
                at: chrono::DateTime<chrono::Utc>,
                stale_pending_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<Uuid>, StoreError> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    "UPDATE agent_runs SET status = 'interrupted', error_code = 'INTERRUPTED', \
                     error_message = 'the server running this run stopped before it finished; \
                     finished steps are kept', completed_at = $1, updated_at = $1 \
                     WHERE (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < $1)) \
                     OR (status = 'pending' AND mode IN ('sync', 'stream') AND created_at < $2) \
                     RETURNING id",
                )
                .bind(at)
                .bind(stale_pending_before)
                .fetch_all(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn claim_due_callbacks(
                &self,
                at: chrono::DateTime<chrono::Utc>,
                claim_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<Uuid>, StoreError> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(&format!(
                    "UPDATE agent_runs SET callback_claimed_until = $2 \
                     WHERE id IN (SELECT id FROM agent_runs WHERE callback_due_at IS NOT NULL \
                     AND callback_due_at <= $1 AND status NOT IN ('pending', 'running') \
                     AND (callback_claimed_until IS NULL OR callback_claimed_until < $1) \
                     ORDER BY callback_due_at LIMIT $3{}) RETURNING id",
                    $skip_locked
                ))
                .bind(at)
                .bind(claim_until)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn record_callback_attempt(
                &self,
                run_id: Uuid,
                attempt: CallbackAttempt,
                next_due: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<(), StoreError> {
                // Read and write on one writer connection, so that on SQLite (one writer) no
                // other attempt's write lands in between; across PostgreSQL servers the claim
                // keeps a run's attempts to one server at a time.
                let mut conn = self.write_conn().await?;
                let (Json(mut attempts),): (Json<Vec<CallbackAttempt>>,) =
                    sqlx::query_as("SELECT callback_attempts FROM agent_runs WHERE id = $1")
                        .bind(run_id)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db_err)?
                        .ok_or(StoreError::NotFound { entity: "run" })?;
                attempts.push(attempt);
                sqlx::query(
                    "UPDATE agent_runs SET callback_attempts = $2, callback_due_at = $3, \
                     callback_claimed_until = NULL WHERE id = $1",
                )
                .bind(run_id)
                .bind(Json(&attempts))
                .bind(next_due)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT value FROM server_meta WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut *self.read_conn().await?)
                        .await
                        .map_err(db_err)?;
                Ok(row.map(|(v,)| v))
            }

            async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO server_meta (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(value)
                .bind(now())
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn upsert_forgehook(
                &self,
                hook: NewInstalledForgehook,
            ) -> Result<InstalledForgehook, StoreError> {
                let ts = now();
                let m = &hook.manifest;
                let row = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "INSERT INTO forgehooks (id, name, version, runtime, manifest, wasm_sha256, \
                     builtin, installed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, \
                     runtime = excluded.runtime, manifest = excluded.manifest, \
                     wasm_sha256 = excluded.wasm_sha256, updated_at = excluded.updated_at \
                     RETURNING {HOOK_COLS}"
                ))
                .bind(&m.id)
                .bind(&m.name)
                .bind(&m.version)
                .bind(m.runtime.as_str())
                .bind(Json(m))
                .bind(&hook.wasm_sha256)
                .bind(hook.builtin)
                .bind(ts)
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(|e| write_err(e, "forgehook"))?;
                Ok(row.into_installed())
            }

            async fn get_forgehook(&self, id: &str) -> Result<Option<InstalledForgehook>, StoreError> {
                let row = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "SELECT {HOOK_COLS} FROM forgehooks WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(row.map(ForgehookRow::into_installed))
            }

            async fn list_forgehooks(&self) -> Result<Vec<InstalledForgehook>, StoreError> {
                let rows = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "SELECT {HOOK_COLS} FROM forgehooks ORDER BY id"
                ))
                .fetch_all(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(ForgehookRow::into_installed).collect())
            }

            async fn forgehooks_version(&self) -> Result<String, StoreError> {
                // Every change but an uninstall writes `updated_at`, and an uninstall drops
                // a row. All rows, not the newest time, so that a change stamped by a server
                // whose clock runs behind still shows; ids and times only, no manifests.
                let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as("SELECT id, updated_at FROM forgehooks ORDER BY id")
                        .fetch_all(&mut *self.read_conn().await?)
                        .await
                        .map_err(db_err)?;
                use sha2::Digest;
                let mut hash = sha2::Sha256::new();
                for (id, at) in &rows {
                    hash.update(id.as_bytes());
                    hash.update(at.timestamp_micros().to_le_bytes());
                }
                Ok(hex::encode(&hash.finalize()[..16]))
            }

            async fn delete_forgehook(&self, id: &str) -> Result<InstalledForgehook, StoreError> {
                let row = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "DELETE FROM forgehooks WHERE id = $1 RETURNING {HOOK_COLS}"
                ))
                .bind(id)
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "forgehook" })?;
                Ok(row.into_installed())
            }

            async fn set_forgehook_enabled(
                &self,
                id: &str,
                enabled: bool,
            ) -> Result<InstalledForgehook, StoreError> {
                let row = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "UPDATE forgehooks SET enabled = $2, updated_at = $3 WHERE id = $1 \
                     RETURNING {HOOK_COLS}"
                ))
                .bind(id)
                .bind(enabled)
                .bind(now())
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "forgehook" })?;
                Ok(row.into_installed())
            }

            async fn put_wasm_blob(&self, sha256: &str, wasm: &[u8]) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO forgehook_blobs (sha256, wasm, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(sha256)
                .bind(wasm)
                .bind(now())
                .execute(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(())
            }

            async fn get_wasm_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
                let row: Option<(Vec<u8>,)> =
                    sqlx::query_as("SELECT wasm FROM forgehook_blobs WHERE sha256 = $1")
                        .bind(sha256)
                        .fetch_optional(&mut *self.read_conn().await?)
                        .await
                        .map_err(db_err)?;
                Ok(row.map(|(w,)| w))
            }

            async fn delete_wasm_blob(&self, sha256: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM forgehook_blobs WHERE sha256 = $1")
                    .bind(sha256)
                    .execute(&mut *self.write_conn().await?)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn set_forgehook_config(
                &self,
                id: &str,
                config: std::collections::BTreeMap<String, String>,
            ) -> Result<InstalledForgehook, StoreError> {
                let row = sqlx::query_as::<$db, ForgehookRow>(&format!(
                    "UPDATE forgehooks SET config = $2, updated_at = $3 WHERE id = $1 \
                     RETURNING {HOOK_COLS}"
                ))
                .bind(id)
                .bind(Json(&config))
                .bind(now())
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "forgehook" })?;
                Ok(row.into_installed())
            }

            // ---- Hook scripts (issue #7) ----

            async fn create_script(&self, script: NewScript) -> Result<Script, StoreError> {
                let ts = now();
                let row = sqlx::query_as::<$db, ScriptRow>(&format!(
                    "INSERT INTO scripts (id, name, description, source, version, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING {SCRIPT_COLS}"
                ))
                .bind(Uuid::now_v7())
                .bind(&script.name)
                .bind(&script.description)
                .bind(&script.source)
                .bind(ts)
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(|e| write_err(e, "script"))?;
                Ok(row.into_script().1)
            }

            async fn find_script(&self, id_or_name: &str) -> Result<Option<Script>, StoreError> {
                let query = match Uuid::parse_str(id_or_name) {
                    Ok(id) => sqlx::query_as::<$db, ScriptRow>(&format!(
                        "SELECT {SCRIPT_COLS} FROM scripts WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await,
                    Err(_) => sqlx::query_as::<$db, ScriptRow>(&format!(
                        "SELECT {SCRIPT_COLS} FROM scripts WHERE name = $1"
                    ))
                    .bind(id_or_name)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await,
                };
                Ok(query.map_err(db_err)?.map(|r| r.into_script().1))
            }

            async fn list_scripts(&self, page: PageRequest) -> Result<Page<Script>, StoreError> {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {SCRIPT_COLS} FROM scripts WHERE 1 = 1"
                ));
                if let Some(after) = page.after {
                    qb.push(" AND seq < ").push_bind(after);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<ScriptRow> = qb
                    .build_query_as()
                    .fetch_all(&mut *self.read_conn().await?)
                    .await
                    .map_err(db_err)?;
                Ok(Page::from_rows(
                    rows.into_iter().map(ScriptRow::into_script).collect(),
                    page.limit,
                ))
            }

            async fn update_script(&self, id: Uuid, patch: ScriptPatch) -> Result<Script, StoreError> {
                let mut qb = QueryBuilder::<$db>::new("UPDATE scripts SET version = version + 1, updated_at = ");
                qb.push_bind(now());
                if let Some(name) = patch.name {
                    qb.push(", name = ").push_bind(name);
                }
                if let Some(description) = patch.description {
                    qb.push(", description = ").push_bind(description);
                }
                if let Some(source) = patch.source {
                    qb.push(", source = ").push_bind(source);
                }
                qb.push(" WHERE id = ").push_bind(id);
                qb.push(format!(" RETURNING {SCRIPT_COLS}"));
                let row: ScriptRow = qb
                    .build_query_as()
                    .fetch_optional(&mut *self.write_conn().await?)
                    .await
                    .map_err(|e| write_err(e, "script"))?
                    .ok_or(StoreError::NotFound { entity: "script" })?;
                Ok(row.into_script().1)
            }

            async fn delete_script(&self, id: Uuid) -> Result<Script, StoreError> {
                let row = sqlx::query_as::<$db, ScriptRow>(&format!(
                    "DELETE FROM scripts WHERE id = $1 RETURNING {SCRIPT_COLS}"
                ))
                .bind(id)
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "script" })?;
                Ok(row.into_script().1)
            }

            async fn agents_using_script(&self, script_id: Uuid) -> Result<Vec<Agent>, StoreError> {
                // Few agents have hooks, so the membership test is done here rather than in
                // two JSON dialects; `hooks` is written by serde, so an empty list is `[]`.
                let rows = sqlx::query_as::<$db, AgentRow>(&format!(
                    "SELECT {AGENT_COLS} FROM agents WHERE deleted_at IS NULL AND hooks <> '[]' \
                     ORDER BY seq"
                ))
                .fetch_all(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                let mut agents = Vec::new();
                for row in rows {
                    let (_, agent) = row.into_agent()?;
                    if agent.hooks.contains(&script_id) {
                        agents.push(agent);
                    }
                }
                Ok(agents)
            }

            // ---- MCP servers (issue 30) ----

            async fn create_mcp_server(&self, server: McpServer) -> Result<McpServer, StoreError> {
                let ts = now();
                let row: McpRow = sqlx::query_as(
                    "INSERT INTO mcp_servers (name, spec, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3) RETURNING spec, created_at, updated_at",
                )
                .bind(&server.name)
                .bind(Json(&server))
                .bind(ts)
                .fetch_one(&mut *self.write_conn().await?)
                .await
                .map_err(|e| match write_err(e, "MCP server") {
                    // The name is the only key; PostgreSQL's message names the constraint
                    // (`mcp_servers_pkey`), not the column.
                    StoreError::Conflict { entity, .. } => StoreError::Conflict {
                        entity,
                        field: "name".into(),
                    },
                    other => other,
                })?;
                Ok(mcp_from_row(row))
            }

            async fn get_mcp_server(&self, name: &str) -> Result<Option<McpServer>, StoreError> {
                let row: Option<McpRow> = sqlx::query_as(
                    "SELECT spec, created_at, updated_at FROM mcp_servers WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(row.map(mcp_from_row))
            }

            async fn list_mcp_servers(&self) -> Result<Vec<McpServer>, StoreError> {
                let rows: Vec<McpRow> = sqlx::query_as(
                    "SELECT spec, created_at, updated_at FROM mcp_servers ORDER BY name",
                )
                .fetch_all(&mut *self.read_conn().await?)
                .await
                .map_err(db_err)?;
                Ok(rows.into_iter().map(mcp_from_row).collect())
            }

            async fn replace_mcp_server(&self, server: McpServer) -> Result<McpServer, StoreError> {
                let row: McpRow = sqlx::query_as(
                    "UPDATE mcp_servers SET spec = $2, updated_at = $3 WHERE name = $1 \
                     RETURNING spec, created_at, updated_at",
                )
                .bind(&server.name)
                .bind(Json(&server))
                .bind(now())
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "MCP server" })?;
                Ok(mcp_from_row(row))
            }

            async fn delete_mcp_server(&self, name: &str) -> Result<McpServer, StoreError> {
                let row: McpRow = sqlx::query_as(
                    "DELETE FROM mcp_servers WHERE name = $1 RETURNING spec, created_at, updated_at",
                )
                .bind(name)
                .fetch_optional(&mut *self.write_conn().await?)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound { entity: "MCP server" })?;
                Ok(mcp_from_row(row))
            }

            async fn append_run_hooks(
                &self,
                run_id: Uuid,
                records: &[leforge_core::hook::HookRecord],
            ) -> Result<(), StoreError> {
                if records.is_empty() {
                    return Ok(());
                }
                let ts = now();
                let mut qb = QueryBuilder::<$db>::new(
                    "INSERT INTO run_hooks (run_id, hook, script, script_id, script_version, step, \
                     duration_ms, outcome, logs, created_at) ",
                );
                // One statement, so the records of one hook call keep their order (`seq`).
                qb.push_values(records, |mut b, r| {
                    b.push_bind(run_id)
                        .push_bind(r.hook.as_str())
                        .push_bind(r.script.clone())
                        .push_bind(r.script_id)
                        .push_bind(r.script_version)
                        .push_bind(r.step)
                        .push_bind(r.duration_ms)
                        .push_bind(Json(r.outcome.clone()))
                        .push_bind(Json(r.logs.clone()))
                        .push_bind(ts);
                });
                qb.build().execute(&mut *self.write_conn().await?).await.map_err(|e| match write_err(e, "hook record") {
                    StoreError::NotFound { .. } => StoreError::NotFound { entity: "run" },
                    other => other,
                })?;
                Ok(())
            }
        }
    };
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    keys_empty: "json_array_length(allowed_api_keys) = 0",
    keys_contain: ("EXISTS (SELECT 1 FROM json_each(agents.allowed_api_keys) WHERE value = ", ")"),
    // SQLite has one writer at a time, so a plain UPDATE … WHERE id IN (…) claims atomically.
    skip_locked: ""
);
sql_store!(
    PgStore,
    sqlx::Postgres,
    "postgres",
    keys_empty: "jsonb_array_length(allowed_api_keys) = 0",
    keys_contain: ("allowed_api_keys ? ", ""),
    skip_locked: " FOR UPDATE SKIP LOCKED"
);

/// The `Store` on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Migrations, and every connection of an in-memory database.
    pub(crate) pool: sqlx::Pool<sqlx::Sqlite>,
    /// Reads, on several connections: WAL mode lets them proceed while the writer writes.
    pub(crate) readers: Arc<SqliteReaders>,
    /// Every write, through one connection (see `sqlite_writer`).
    pub(crate) writer: SqliteWriter,
}

impl SqliteStore {
    pub fn pool(&self) -> &sqlx::Pool<sqlx::Sqlite> {
        &self.pool
    }

    fn connection_stats(&self) -> leforge_core::PoolStats {
        // The writer's one connection is not counted: it is always open, and its queue
        // (`writes_queued`) says more about load than its being busy.
        self.readers.stats()
    }

    /// Whether writes go through a connection of their own (every file database), rather than
    /// through the read pool (an in-memory database).
    pub fn writes_through_dedicated_connection(&self) -> bool {
        self.writer.is_dedicated()
    }

    /// How many groups of step rows the writer has committed (each one transaction).
    pub fn step_groups_committed(&self) -> u64 {
        self.writer.step_groups_committed()
    }

    /// How many groups of run creations or run updates the writer has committed.
    pub fn run_groups_committed(&self) -> u64 {
        self.writer.run_groups_committed()
    }

    /// Writes (steps, run creations, run updates) waiting for the writer.
    pub fn writes_queued(&self) -> usize {
        self.writer.writes_queued()
    }

    /// Holds the writer until the guard is dropped: tests use it to make steps queue up.
    #[cfg(feature = "testing")]
    pub async fn hold_writer(&self) -> Result<impl Send, StoreError> {
        self.writer.lock().await
    }

    async fn write_conn(&self) -> Result<ConnGuard, StoreError> {
        self.writer.lock().await
    }

    async fn read_conn(&self) -> Result<ConnGuard, StoreError> {
        self.readers.get().await
    }

    /// How many connections reads spread over (`None`: an in-memory database's pool).
    pub fn read_connections(&self) -> Option<usize> {
        self.readers.dedicated_connections()
    }

    /// `find_agent`: by id when it parses as one, by slug otherwise.
    async fn live_agent(&self, id_or_slug: &str) -> Result<Option<Agent>, StoreError> {
        let row = match Uuid::parse_str(id_or_slug) {
            Ok(id) => self.fetch_agent_row(id).await?,
            Err(_) => sqlx::query_as::<sqlx::Sqlite, AgentRow>(&format!(
                "SELECT {AGENT_COLS} FROM agents WHERE slug = $1 AND deleted_at IS NULL"
            ))
            .bind(id_or_slug)
            .fetch_optional(&mut *self.read_conn().await?)
            .await
            .map_err(db_err)?,
        };
        row.map(|r| r.into_agent().map(|(_, a)| a)).transpose()
    }

    async fn active_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query_as::<sqlx::Sqlite, ApiKeyRow>(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&mut *self.read_conn().await?)
        .await
        .map_err(db_err)?;
        row.map(|r| r.into_key().map(|(_, k)| k)).transpose()
    }

    /// A new run, through the writer's group commit: at a burst of run requests, one commit
    /// for many rather than one each, in turn, on the single writer.
    async fn insert_run(
        &self,
        id: Uuid,
        ts: chrono::DateTime<chrono::Utc>,
        run: NewRun,
    ) -> Result<RunRow, StoreError> {
        self.writer.insert_run(id, ts, run).await
    }

    /// Whether the update matched the run; grouped like [`Self::insert_run`].
    async fn write_run_update(&self, id: Uuid, update: RunUpdate) -> Result<bool, StoreError> {
        self.writer.update_run(id, update).await
    }

    async fn write_step(
        &self,
        run_id: Uuid,
        step: RunStep,
        progress: Option<(i64, i64)>,
    ) -> Result<(), StoreError> {
        match progress {
            Some((tokens_input, tokens_output)) => {
                self.writer
                    .append_step_with_progress(run_id, step, tokens_input, tokens_output)
                    .await
            }
            None => {
                insert_step::<sqlx::Sqlite>(&mut *self.write_conn().await?, run_id, &step).await
            }
        }
    }
}

/// The `Store` on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Reads.
    pub(crate) pool: sqlx::Pool<sqlx::Postgres>,
    /// Writes that must be durable when they return (runs, agents, keys, …): the read pool.
    pub(crate) writer: sqlx::Pool<sqlx::Postgres>,
    /// Step rows and the counters written with them, committed asynchronously: see
    /// `PgStore::connect` for why.
    pub(crate) progress: sqlx::Pool<sqlx::Postgres>,
    /// Writes the steps, on `progress`, grouping them under load.
    pub(crate) steps: PgGrouped<StepWrite>,
    /// Writes new runs, on `writer`, grouping them under load.
    pub(crate) creations: PgGrouped<RunCreation>,
    /// Writes run updates that need no row back (a run's start and end), on `writer`,
    /// grouping them under load.
    pub(crate) updates: PgGrouped<RunUpdateWrite>,
    /// Reads active API keys, on `pool`, grouping them under load.
    pub(crate) keys: PgGrouped<KeyRead>,
    /// Reads live agents, on `pool`, grouping them under load.
    pub(crate) agents: PgGrouped<AgentRead>,
}

impl PgStore {
    pub fn pool(&self) -> &sqlx::Pool<sqlx::Postgres> {
        &self.pool
    }

    fn connection_stats(&self) -> leforge_core::PoolStats {
        // `writer` is `pool` (see its field), so it is counted once.
        [&self.pool, &self.progress].into_iter().fold(
            leforge_core::PoolStats::default(),
            |acc, p| {
                let idle = p.num_idle() as u32;
                leforge_core::PoolStats {
                    in_use: acc.in_use + p.size().saturating_sub(idle),
                    idle: acc.idle + idle,
                }
            },
        )
    }

    pub fn writer_pool(&self) -> &sqlx::Pool<sqlx::Postgres> {
        &self.writer
    }

    pub fn progress_pool(&self) -> &sqlx::Pool<sqlx::Postgres> {
        &self.progress
    }

    /// Steps written together in one statement, counted once per statement.
    pub fn step_groups_committed(&self) -> u64 {
        self.steps.groups_committed()
    }

    /// Runs created together in one statement, counted once per statement.
    pub fn creation_groups_committed(&self) -> u64 {
        self.creations.groups_committed()
    }

    /// Steps, creations and updates waiting for a turn of their writers.
    pub fn writes_queued(&self) -> usize {
        self.steps.queued() + self.creations.queued() + self.updates.queued()
    }

    /// Run updates written together in one statement, counted once per statement.
    pub fn update_groups_committed(&self) -> u64 {
        self.updates.groups_committed()
    }

    /// Takes every turn of the step, creation and update writers, so those writes queue
    /// until the guard is dropped.
    #[cfg(feature = "testing")]
    pub async fn hold_group_writers(&self) -> impl Send {
        (
            self.steps.hold().await,
            self.creations.hold().await,
            self.updates.hold().await,
        )
    }

    /// Key and agent reads made together in one statement, counted once per statement.
    pub fn read_groups_run(&self) -> u64 {
        self.keys.groups_committed() + self.agents.groups_committed()
    }

    /// Key and agent reads waiting for a turn.
    pub fn reads_queued(&self) -> usize {
        self.keys.queued() + self.agents.queued()
    }

    /// Takes every turn of the key and agent reads, so they queue until the guard is dropped.
    #[cfg(feature = "testing")]
    pub async fn hold_group_reads(&self) -> impl Send {
        (self.keys.hold().await, self.agents.hold().await)
    }

    async fn live_agent(&self, id_or_slug: &str) -> Result<Option<Agent>, StoreError> {
        let read = match Uuid::parse_str(id_or_slug) {
            Ok(id) => AgentRead::Id(id),
            Err(_) => AgentRead::Slug(id_or_slug.to_string()),
        };
        self.agents.run(read).await?
    }

    async fn active_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.keys
            .run(KeyRead {
                key_hash: key_hash.to_string(),
            })
            .await?
    }

    async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.writer.acquire().await.map_err(db_err)
    }

    async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool.acquire().await.map_err(db_err)
    }

    async fn insert_run(
        &self,
        id: Uuid,
        ts: chrono::DateTime<chrono::Utc>,
        run: NewRun,
    ) -> Result<RunRow, StoreError> {
        self.creations.run(RunCreation { id, ts, run }).await
    }

    async fn write_run_update(&self, id: Uuid, update: RunUpdate) -> Result<bool, StoreError> {
        self.updates.run(RunUpdateWrite { id, update }).await
    }

    async fn write_step(
        &self,
        run_id: Uuid,
        step: RunStep,
        progress: Option<(i64, i64)>,
    ) -> Result<(), StoreError> {
        self.steps
            .run(StepWrite {
                run_id,
                step,
                progress,
            })
            .await
    }
}
