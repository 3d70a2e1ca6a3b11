//! Row shapes as both back ends return them, and their conversion into domain types.
//! Column types are chosen so one `FromRow` decodes on SQLite and PostgreSQL alike.

use chrono::{DateTime, Utc};
use leforge_core::forgehook::Manifest;
use leforge_core::installed::InstalledForgehook;
use leforge_core::{
    Agent, AgentConfig, ApiKey, ApiKeyScope, CallbackAttempt, Provider, Run, RunMode, RunStatus,
    RunStep, StoreError,
};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    pub seq: i64,
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub model: String,
    pub provider: String,
    pub system_prompt: String,
    pub tools: Json<Vec<String>>,
    pub config: Json<AgentConfig>,
    pub is_public: bool,
    pub api_key_required: bool,
    pub allowed_api_keys: Json<Vec<Uuid>>,
    pub output_schema: Option<Json<Value>>,
    pub hooks: Json<Vec<Uuid>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AgentRow {
    pub fn into_agent(self) -> Result<(i64, Agent), StoreError> {
        let provider = Provider::parse(&self.provider).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "agent {} has unknown provider '{}'",
                self.id, self.provider
            ))
        })?;
        Ok((
            self.seq,
            Agent {
                id: self.id,
                name: self.name,
                slug: self.slug,
                description: self.description,
                model: self.model,
                provider,
                system_prompt: self.system_prompt,
                tools: self.tools.0,
                config: self.config.0,
                is_public: self.is_public,
                api_key_required: self.api_key_required,
                allowed_api_keys: self.allowed_api_keys.0,
                output_schema: self.output_schema.map(|j| j.0),
                hooks: self.hooks.0,
                created_by: self.created_by,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
        ))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    pub seq: i64,
    pub id: Uuid,
    pub agent_id: Uuid,
    pub status: String,
    pub input_text: String,
    pub input_data: Option<Json<Value>>,
    pub output: Option<Json<Value>>,
    pub output_text: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub total_steps: i32,
    pub tokens_input: i64,
    pub tokens_output: i64,
    pub duration_ms: Option<i64>,
    pub triggered_by: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub mode: String,
    pub limits: Option<Json<Value>>,
    pub callback_url: Option<String>,
    pub callback_attempts: Json<Vec<CallbackAttempt>>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub lease_owner: Option<String>,
    pub trace_context: Option<String>,
}

impl RunRow {
    pub fn into_run(self, steps: Vec<RunStep>) -> Result<(i64, Run), StoreError> {
        let status = RunStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "run {} has unknown status '{}'",
                self.id, self.status
            ))
        })?;
        Ok((
            self.seq,
            Run {
                id: self.id,
                agent_id: self.agent_id,
                status,
                input_text: self.input_text,
                input_data: self.input_data.map(|j| j.0),
                output: self.output.map(|j| j.0),
                output_text: self.output_text,
                error_code: self.error_code,
                error_message: self.error_message,
                total_steps: self.total_steps,
                tokens_input: self.tokens_input,
                tokens_output: self.tokens_output,
                duration_ms: self.duration_ms,
                triggered_by: self.triggered_by,
                ip_address: self.ip_address,
                user_agent: self.user_agent,
                created_at: self.created_at,
                started_at: self.started_at,
                completed_at: self.completed_at,
                updated_at: self.updated_at,
                mode: RunMode::parse(&self.mode).unwrap_or(RunMode::Sync),
                limits: self.limits.map(|j| j.0),
                callback_url: self.callback_url,
                callback_attempts: self.callback_attempts.0,
                idempotency_key: self.idempotency_key,
                request_hash: self.request_hash,
                worker: self.lease_owner,
                steps,
                hooks: Vec::new(),
                trace_context: self.trace_context,
            },
        ))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StepRow {
    pub run_id: Uuid,
    pub step: i32,
    pub tool: String,
    pub action: String,
    pub input: Json<Value>,
    pub output: Option<Json<Value>>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub started_at: DateTime<Utc>,
}

impl StepRow {
    pub fn into_step(self) -> RunStep {
        RunStep {
            step: self.step,
            tool: self.tool,
            action: self.action,
            input: self.input.0,
            output: self.output.map(|j| j.0),
            error: self.error,
            duration_ms: self.duration_ms,
            started_at: self.started_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub seq: i64,
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub fn into_key(self) -> Result<(i64, ApiKey), StoreError> {
        let scope = ApiKeyScope::parse(&self.scope).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "api key {} has unknown scope '{}'",
                self.id, self.scope
            ))
        })?;
        Ok((
            self.seq,
            ApiKey {
                id: self.id,
                name: self.name,
                prefix: self.prefix,
                scope,
                created_at: self.created_at,
                last_used_at: self.last_used_at,
                revoked_at: self.revoked_at,
            },
        ))
    }
}

/// Timestamps are taken in Rust (not `now()` in SQL) so both back ends agree, truncated to
/// microseconds because that is what PostgreSQL keeps: a value read back equals the one
/// written.
pub(crate) fn now() -> DateTime<Utc> {
    use chrono::Timelike;
    let now = Utc::now();
    let micros = now.timestamp_subsec_micros();
    now.with_nanosecond(micros * 1_000).unwrap_or(now)
}

#[derive(sqlx::FromRow)]
pub(crate) struct ForgehookRow {
    pub id: String,
    pub manifest: Json<Manifest>,
    pub wasm_sha256: Option<String>,
    pub enabled: bool,
    pub builtin: bool,
    pub config: Json<std::collections::BTreeMap<String, String>>,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ForgehookRow {
    pub fn into_installed(self) -> InstalledForgehook {
        InstalledForgehook {
            id: self.id,
            manifest: self.manifest.0,
            wasm_sha256: self.wasm_sha256,
            enabled: self.enabled,
            builtin: self.builtin,
            config: self.config.0,
            installed_at: self.installed_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ScriptRow {
    pub seq: i64,
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub source: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ScriptRow {
    pub fn into_script(self) -> (i64, leforge_core::Script) {
        (
            self.seq,
            leforge_core::Script {
                id: self.id,
                name: self.name,
                description: self.description,
                source: self.source,
                version: self.version,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
        )
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunHookRow {
    pub run_id: Uuid,
    pub hook: String,
    pub script: String,
    pub script_id: Uuid,
    pub script_version: i64,
    pub step: Option<i32>,
    pub duration_ms: f64,
    pub outcome: Json<leforge_core::hook::HookRecordOutcome>,
    pub logs: Json<Vec<leforge_core::hook::HookLog>>,
}

impl RunHookRow {
    pub fn into_record(self) -> Result<leforge_core::hook::HookRecord, StoreError> {
        let hook = leforge_core::hook::HookPoint::parse(&self.hook).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "run {} has a hook record of unknown hook '{}'",
                self.run_id, self.hook
            ))
        })?;
        Ok(leforge_core::hook::HookRecord {
            hook,
            script: self.script,
            script_id: self.script_id,
            script_version: self.script_version,
            duration_ms: self.duration_ms,
            outcome: self.outcome.0,
            logs: self.logs.0,
            step: self.step,
        })
    }
}
