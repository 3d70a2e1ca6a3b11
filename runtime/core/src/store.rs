//! The persistence contract. Two implementations (SQLite and PostgreSQL) live in the store
//! crate and pass one conformance suite, so the rest of the runtime never asks which it has.

use std::collections::BTreeMap;

use async_trait::async_trait;
use uuid::Uuid;

use crate::agent::{Agent, AgentPatch, NewAgent};
use crate::api_key::{ApiKey, ApiKeyScope, NewApiKey};
use crate::hook::HookRecord;
use crate::installed::{InstalledForgehook, NewInstalledForgehook};
use crate::mcp::McpServer;
use crate::page::{Page, PageRequest};
use crate::run::{CallbackAttempt, NewRun, Run, RunFilter, RunStep, RunUpdate};
use crate::script::{NewScript, Script, ScriptPatch};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    /// A unique field already holds this value; `field` names it (e.g. `name`, `slug`).
    #[error("{entity} with this {field} already exists")]
    Conflict { entity: &'static str, field: String },
    /// The operation is not allowed in the current state (e.g. a step for a finished run).
    #[error("{0}")]
    InvalidState(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The store's connections at one moment, for the operator's metrics: every pool summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
}

/// Which agents a listing may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentVisibility {
    /// Every agent (admin keys).
    All,
    /// Public agents only (no key).
    PublicOnly,
    /// Public agents plus those the given invoke key may run.
    RunnableBy(Uuid),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, as reported by the health route.
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Connections in use and idle now; cheap (no query), read at each metrics scrape.
    fn pool_stats(&self) -> PoolStats;

    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError>;
    /// Finds a live (not deleted) agent by id or slug.
    async fn find_agent(&self, id_or_slug: &str) -> Result<Option<Agent>, StoreError>;
    async fn list_agents(
        &self,
        visibility: AgentVisibility,
        page: PageRequest,
    ) -> Result<Page<Agent>, StoreError>;
    async fn update_agent(&self, id: Uuid, patch: AgentPatch) -> Result<Agent, StoreError>;
    /// Soft delete: the row stays (runs keep their agent) but name and slug become free.
    async fn delete_agent(&self, id: Uuid) -> Result<(), StoreError>;

    async fn create_run(&self, run: NewRun) -> Result<Run, StoreError>;
    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError>;
    async fn list_runs(
        &self,
        filter: RunFilter,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError>;
    async fn update_run(&self, id: Uuid, update: RunUpdate) -> Result<Run, StoreError>;
    /// How many runs have this status, across every server sharing the store (the metrics'
    /// queue depth).
    async fn count_runs(&self, status: crate::run::RunStatus) -> Result<i64, StoreError>;
    /// `update_run` without reading the run back: one statement, for the hot path (a run
    /// starting) where the caller already holds what it needs. Same errors as `update_run`.
    async fn apply_run_update(&self, id: Uuid, update: RunUpdate) -> Result<(), StoreError> {
        self.update_run(id, update).await.map(|_| ())
    }
    /// Persists one finished step. Written as each step ends so a crash keeps the trace.
    async fn append_step(&self, run_id: Uuid, step: RunStep) -> Result<(), StoreError>;
    /// Persists a finished step and, atomically with it, the run's counters (`total_steps`
    /// counts the stored steps): one commit per step.
    async fn append_step_with_progress(
        &self,
        run_id: Uuid,
        step: RunStep,
        tokens_input: i64,
        tokens_output: i64,
    ) -> Result<(), StoreError>;

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;
    async fn list_api_keys(&self, page: PageRequest) -> Result<Page<ApiKey>, StoreError>;
    /// Finds a key that is not revoked by the hash of its plain text.
    async fn find_active_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn count_api_keys(&self, scope: Option<ApiKeyScope>) -> Result<i64, StoreError>;
    /// Records a use of the key, unless one was recorded within
    /// [`LAST_USED_RESOLUTION_SECS`](crate::api_key::LAST_USED_RESOLUTION_SECS).
    async fn touch_api_key(&self, id: Uuid) -> Result<(), StoreError>;
    /// Revokes a key; revoking an already revoked key is `NotFound`.
    async fn revoke_api_key(&self, id: Uuid) -> Result<ApiKey, StoreError>;

    /// Installs, or replaces the manifest and code of, the ForgeHook with the manifest's id.
    /// A replacement keeps the enabled flag and the configuration.
    async fn upsert_forgehook(
        &self,
        hook: NewInstalledForgehook,
    ) -> Result<InstalledForgehook, StoreError>;
    async fn get_forgehook(&self, id: &str) -> Result<Option<InstalledForgehook>, StoreError>;
    /// Every installed ForgeHook, ordered by id.
    async fn list_forgehooks(&self) -> Result<Vec<InstalledForgehook>, StoreError>;
    /// A cheap token that changes whenever an install, upgrade, uninstall, enable, disable
    /// or configuration change is stored, so that servers sharing the database can poll it
    /// and reload only when it moved.
    async fn forgehooks_version(&self) -> Result<String, StoreError>;
    /// Removes the install and returns what it was.
    async fn delete_forgehook(&self, id: &str) -> Result<InstalledForgehook, StoreError>;
    async fn set_forgehook_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<InstalledForgehook, StoreError>;
    async fn set_forgehook_config(
        &self,
        id: &str,
        config: BTreeMap<String, String>,
    ) -> Result<InstalledForgehook, StoreError>;

    /// Keeps a component's bytes (idempotent: the digest names the content).
    async fn put_wasm_blob(&self, sha256: &str, wasm: &[u8]) -> Result<(), StoreError>;
    async fn get_wasm_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn delete_wasm_blob(&self, sha256: &str) -> Result<(), StoreError>;

    /// The newest run of `agent_id` created with `key` by the caller `scope` since `since`.
    async fn find_run_by_idempotency_key(
        &self,
        agent_id: Uuid,
        scope: &str,
        key: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Run>, StoreError>;
    /// Frees `key` on runs older than `before`, so an expired key can be used again.
    async fn expire_idempotency_key(
        &self,
        agent_id: Uuid,
        scope: &str,
        key: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// Claims up to `limit` queued async runs for `owner`: each becomes `running` with a
    /// lease until `lease_until`. Safe with several servers on one database.
    async fn claim_queued_runs(
        &self,
        owner: &str,
        limit: u32,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Run>, StoreError>;
    /// Extends the lease of runs `owner` holds; returns how many it still holds.
    async fn renew_leases(
        &self,
        owner: &str,
        run_ids: &[Uuid],
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    /// Running runs whose lease expired (their worker died), and sync or stream runs still
    /// `pending` that were created before `stale_pending_before` (their server stopped
    /// between the insert and the start), become `interrupted`, keeping their steps.
    /// Returns their ids.
    async fn interrupt_expired_runs(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        stale_pending_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// The callback outbox: claims up to `limit` finished runs whose callback is due at
    /// `now` and not claimed by anyone (or whose claim lapsed), until `claim_until`, and
    /// returns their ids, longest due first. A run with a `callback_url` owes a callback from
    /// its creation on, so a crash before the delivery loses nothing.
    async fn claim_due_callbacks(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        claim_until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Appends one delivery attempt and releases the claim. `next_due`: when to try again;
    /// `None` when delivered or given up, which ends what the run owes.
    async fn record_callback_attempt(
        &self,
        run_id: Uuid,
        attempt: CallbackAttempt,
        next_due: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError>;

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    // Hook scripts (issue #7).
    async fn create_script(&self, script: NewScript) -> Result<Script, StoreError>;
    /// Finds a script by id or name.
    async fn find_script(&self, id_or_name: &str) -> Result<Option<Script>, StoreError>;
    async fn list_scripts(&self, page: PageRequest) -> Result<Page<Script>, StoreError>;
    /// Applies the patch and increments the version.
    async fn update_script(&self, id: Uuid, patch: ScriptPatch) -> Result<Script, StoreError>;
    /// Removes the script and returns what it was. Callers check that no agent uses it.
    async fn delete_script(&self, id: Uuid) -> Result<Script, StoreError>;
    /// Live (not deleted) agents whose `hooks` list the script, oldest first.
    async fn agents_using_script(&self, script_id: Uuid) -> Result<Vec<Agent>, StoreError>;
    // ---- MCP servers (issue 30): keyed by name ----
    /// `Conflict` when the name is taken.
    async fn create_mcp_server(&self, server: McpServer) -> Result<McpServer, StoreError>;
    async fn get_mcp_server(&self, name: &str) -> Result<Option<McpServer>, StoreError>;
    /// Every registered server, by name.
    async fn list_mcp_servers(&self) -> Result<Vec<McpServer>, StoreError>;
    /// Replaces the stored server of the same name; `NotFound` when there is none.
    async fn replace_mcp_server(&self, server: McpServer) -> Result<McpServer, StoreError>;
    async fn delete_mcp_server(&self, name: &str) -> Result<McpServer, StoreError>;

    /// Appends hook records to a run's trace, after those already stored.
    async fn append_run_hooks(
        &self,
        run_id: Uuid,
        records: &[HookRecord],
    ) -> Result<(), StoreError>;
}
