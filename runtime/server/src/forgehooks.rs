//! The ForgeHook registry: installed ForgeHooks as stored, kept in step with the runtimes
//! that execute them (the WASM host, the container runtime on Docker, the gateway runtime),
//! dispatching by the manifest's runtime. Routes, the CLI and the agent loop (through
//! `ToolExecutor`) all go through here, so the rules — versions, enabled state,
//! configuration keys, secrets — are enforced in one place.

mod http_hooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use leforge_container::ContainerStatus;
use leforge_core::forgehook::{Manifest, RuntimeKind};
use leforge_core::installed::{InstalledForgehook, NewInstalledForgehook, SECRET_MASK};
use leforge_core::tool::{ToolCatalog, ToolError, ToolExecutor, ToolOutput, UnavailableTool};
use leforge_core::{FieldError, Store};
use leforge_wasm::{InstallError, WasmHost};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
pub use http_hooks::{instance_id, HttpHooks, INSTANCE_ID_FILE};

#[derive(Clone)]
pub struct Forgehooks {
    store: Arc<dyn Store>,
    wasm: WasmHost,
    http: HttpHooks,
    /// Registered MCP servers, offered to agents as `mcp:<server>` tool sets.
    mcp: crate::mcp_servers::McpRegistry,
    /// What this server has applied, so that changes other servers store are found.
    applied: Arc<std::sync::Mutex<Applied>>,
}

/// The stored state this server's runtimes reflect: each ForgeHook's `updated_at` as last
/// applied here, and the store's version token when last compared.
#[derive(Default)]
struct Applied {
    version: Option<String>,
    hooks: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

/// How an install relates to what was there before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed,
    Upgraded { from: String },
}

impl Forgehooks {
    pub fn new(
        store: Arc<dyn Store>,
        wasm: WasmHost,
        http: HttpHooks,
        mcp: crate::mcp_servers::McpRegistry,
    ) -> Self {
        Forgehooks {
            store,
            wasm,
            http,
            mcp,
            applied: Arc::default(),
        }
    }

    pub fn mcp(&self) -> &crate::mcp_servers::McpRegistry {
        &self.mcp
    }

    /// A new ForgeHook may not take a registered MCP server's name (see `name_taken`).
    async fn check_id_free_of_mcp(&self, id: &str) -> ApiResult<()> {
        if self.store.get_mcp_server(id).await?.is_some() {
            return Err(name_taken(
                "id",
                format!("an MCP server named '{id}' is registered; its tools would share this ForgeHook's tool names"),
            ));
        }
        Ok(())
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `hook`, as stored, is what this server now runs.
    fn mark(&self, hook: &InstalledForgehook) {
        self.applied()
            .hooks
            .insert(hook.id.clone(), hook.updated_at);
    }

    /// Replicas: applies the ForgeHook changes other servers sharing the database stored
    /// (install, upgrade, uninstall, enable, disable, configuration) since the last call.
    /// Costs one small query when nothing changed. Returns how many ForgeHooks changed.
    pub async fn sync_with_store(&self) -> Result<usize, leforge_core::StoreError> {
        let version = self.store.forgehooks_version().await?;
        if self.applied().version.as_deref() == Some(version.as_str()) {
            return Ok(0);
        }
        let stored = self.store.list_forgehooks().await?;
        let known = self.applied().hooks.clone();
        let mut changed = 0;
        for hook in &stored {
            if known.get(&hook.id) == Some(&hook.updated_at) {
                continue;
            }
            changed += 1;
            match self.apply_stored(hook).await {
                Ok(()) => {
                    tracing::info!(forgehook = %hook.id, enabled = hook.enabled, version = %hook.manifest.version, "applied a ForgeHook change stored by another server")
                }
                Err(e) => {
                    tracing::error!(forgehook = %hook.id, error = %e, "cannot apply a ForgeHook change stored by another server")
                }
            }
            self.mark(hook);
        }
        for id in known.keys() {
            if stored.iter().any(|h| &h.id == id) {
                continue;
            }
            changed += 1;
            self.wasm.unload(id);
            self.http.unload(id).await;
            self.applied().hooks.remove(id);
            tracing::info!(forgehook = %id, "removed a ForgeHook uninstalled by another server");
        }
        self.applied().version = Some(version);
        Ok(changed)
    }

    /// Polls [`Self::sync_with_store`] until the process ends: for servers sharing a
    /// PostgreSQL database, so that a change made through any one of them is in force on
    /// all within `every` (plus the time to load it).
    pub fn watch_store(&self, every: std::time::Duration) {
        let hooks = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = hooks.sync_with_store().await {
                    tracing::warn!(error = %e, "cannot check for ForgeHook changes of other servers");
                }
            }
        });
    }

    /// Makes the runtimes run `hook` as stored: unloaded when disabled, its configuration
    /// applied when only that changed, reloaded when its code or manifest changed.
    async fn apply_stored(&self, hook: &InstalledForgehook) -> Result<(), String> {
        let id = hook.id.as_str();
        let http_loaded = self.http.manifest(id);
        if !hook.enabled {
            self.wasm.unload(id);
            if http_loaded.is_some() || hook.manifest.runtime.is_http() {
                self.http.unload(id).await;
            }
            return Ok(());
        }
        if hook.manifest.runtime.is_http() {
            // Upgraded from WASM elsewhere: stop serving the component.
            self.wasm.unload(id);
            let result = match http_loaded {
                Some(m) if *m == hook.manifest => {
                    self.http.set_config(&hook.manifest, &hook.config).await
                }
                loaded => {
                    // Another version (or none) is loaded: replace it.
                    if loaded.is_some() {
                        self.http.unload(id).await;
                    }
                    self.http
                        .load(hook.manifest.clone(), &hook.config, true)
                        .await
                }
            };
            return result.map_err(|e| e.to_string());
        }
        if http_loaded.is_some() {
            self.http.unload(id).await;
        }
        if self.wasm.sha256(id) == hook.wasm_sha256 {
            self.wasm
                .set_config(id, hook.config.clone().into_iter().collect());
            return Ok(());
        }
        self.activate(hook).await.map_err(|e| e.to_string())
    }

    pub fn wasm(&self) -> &WasmHost {
        &self.wasm
    }

    /// Container and gateway ForgeHooks (and the container runtime behind them).
    pub fn http(&self) -> &HttpHooks {
        &self.http
    }

    /// Whether a Docker engine answers (for `/health`).
    pub async fn docker_available(&self) -> bool {
        self.http.docker_available().await
    }

    /// The live state of a container ForgeHook's container, for `GET /forgehooks/{id}`:
    /// `None` for other runtimes. One that is not loaded here (disabled, waiting for its
    /// configuration) shows as `not_created`, with the reason when there is one.
    pub fn container_status(&self, hook: &InstalledForgehook) -> Option<ContainerStatus> {
        if hook.manifest.runtime != RuntimeKind::Container {
            return None;
        }
        if let Some(status) = self.http.container_status(&hook.id) {
            return Some(status);
        }
        let last_error = if !hook.enabled {
            None
        } else {
            Some(
                self.http
                    .waiting_reason(&hook.id)
                    .unwrap_or_else(|| "not loaded on this server".into()),
            )
        };
        Some(ContainerStatus::not_created(&hook.manifest, last_error))
    }

    /// Start-up: makes every enabled, installed ForgeHook callable from the artifact cache.
    /// A ForgeHook that cannot be loaded is logged and skipped so one bad install cannot
    /// keep the server down; calls to it then fail with a clear error.
    pub async fn load_installed(&self) -> Result<usize, leforge_core::StoreError> {
        let mut loaded = 0;
        for hook in self.store.list_forgehooks().await? {
            self.mark(&hook);
            if !hook.enabled {
                continue;
            }
            let result = if hook.manifest.runtime.is_http() {
                self.http
                    .load(hook.manifest.clone(), &hook.config, false)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                self.activate(&hook).await.map_err(|e| e.to_string())
            };
            match result {
                Ok(()) => loaded += 1,
                Err(e) => {
                    tracing::error!(forgehook = %hook.id, error = %e, "cannot load ForgeHook")
                }
            }
        }
        // Containers a previous process of this instance left behind are adopted (or
        // removed), and on_install ones started. Without Docker, only containers wait.
        match self.http.reconcile().await {
            Ok(report) => {
                if !report.adopted.is_empty() || !report.removed.is_empty() {
                    tracing::info!(adopted = ?report.adopted, removed = ?report.removed, "ForgeHook containers reconciled");
                }
            }
            Err(e) if e.is_docker_unavailable() => {
                tracing::warn!(error = %e, "no Docker engine: container ForgeHooks are unavailable until one answers")
            }
            Err(e) => tracing::error!(error = %e, "cannot reconcile ForgeHook containers"),
        }
        Ok(loaded)
    }

    async fn activate(&self, hook: &InstalledForgehook) -> Result<(), InstallError> {
        let Some(sha) = hook.wasm_sha256.clone() else {
            return Ok(());
        };
        let wasm = self.wasm.clone();
        let manifest = hook.manifest.clone();
        let config: HashMap<String, String> = hook.config.clone().into_iter().collect();
        // Deserialising (or, after an engine upgrade, recompiling) is CPU work.
        let sha_for_load = sha.clone();
        let cfg = config.clone();
        let loaded = tokio::task::spawn_blocking(move || wasm.load(manifest, &sha_for_load, cfg))
            .await
            .map_err(|e| InstallError::Internal(e.to_string()))?;
        match loaded {
            Err(InstallError::NotCached { .. }) => {
                // Installed through another server sharing this database: compile it from
                // the stored bytes into this server's cache.
                let bytes = self
                    .store
                    .get_wasm_blob(&sha)
                    .await
                    .map_err(|e| InstallError::Internal(e.to_string()))?
                    .ok_or(InstallError::NotCached { sha256: sha })?;
                let prepared = self
                    .wasm
                    .prepare(&bytes, Some(hook.manifest.clone()))
                    .await?;
                self.wasm.load_prepared(prepared, config);
                Ok(())
            }
            other => other,
        }
    }

    /// Installs the built-in ForgeHooks embedded in the binary: each one this database has
    /// never had (so a newcomer's first start lists them all, and one an admin removed stays
    /// removed), and upgrades installed built-ins whose embedded component changed.
    pub async fn install_builtins(&self, builtins: &[(&str, &[u8])]) -> ApiResult<Vec<String>> {
        const SEEN: &str = "builtins_installed";
        let mut seen: Vec<String> = self
            .store
            .get_meta(SEEN)
            .await?
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut installed = Vec::new();
        for (id, wasm) in builtins {
            let existing = self.store.get_forgehook(id).await?;
            let wanted = match &existing {
                None => !seen.iter().any(|s| s == id),
                Some(h) => {
                    h.builtin
                        && h.wasm_sha256.as_deref() != Some(leforge_wasm::sha256_hex(wasm).as_str())
                }
            };
            if wanted {
                match self.install_wasm(wasm, None, true).await {
                    Ok((hook, _)) => {
                        installed.push(format!("{} {}", hook.id, hook.manifest.version))
                    }
                    // Same version with other bytes (a rebuild): keep what is installed.
                    Err(e) if e.status == StatusCode::CONFLICT => {}
                    Err(e) => {
                        tracing::error!(forgehook = %id, error = %e, "cannot install built-in ForgeHook")
                    }
                }
            }
            if !seen.iter().any(|s| s == id) {
                seen.push(id.to_string());
            }
        }
        self.store.set_meta(SEEN, &seen.join(",")).await?;
        Ok(installed)
    }

    pub async fn list(&self) -> ApiResult<Vec<InstalledForgehook>> {
        Ok(self.store.list_forgehooks().await?)
    }

    pub async fn get(&self, id: &str) -> ApiResult<InstalledForgehook> {
        self.store
            .get_forgehook(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("ForgeHook '{id}' is not installed")))
    }

    /// Installs a WASM ForgeHook, or upgrades the installed one when the version is higher.
    pub async fn install_wasm(
        &self,
        wasm: &[u8],
        manifest_override: Option<Manifest>,
        builtin: bool,
    ) -> ApiResult<(InstalledForgehook, InstallOutcome)> {
        let prepared = self
            .wasm
            .prepare(wasm, manifest_override)
            .await
            .map_err(install_error)?;
        let id = prepared.manifest.id.clone();
        let existing = self.store.get_forgehook(&id).await?;
        match &existing {
            Some(existing) => check_upgrade(existing, &prepared.manifest)?,
            None => self.check_id_free_of_mcp(&id).await?,
        }
        let sha = prepared.sha256.clone();
        self.store.put_wasm_blob(&sha, wasm).await?;
        let record = self
            .store
            .upsert_forgehook(NewInstalledForgehook {
                manifest: prepared.manifest.clone(),
                wasm_sha256: Some(sha.clone()),
                builtin,
            })
            .await?;
        if existing
            .as_ref()
            .is_some_and(|e| e.manifest.runtime.is_http())
        {
            // Upgraded from a container or gateway ForgeHook: stop serving (and remove) that.
            self.http.unload(&id).await;
        }
        if record.enabled {
            let config = record.config.clone().into_iter().collect();
            self.wasm.load_prepared(prepared, config);
        }
        if let Some(old) = existing.as_ref().and_then(|e| e.wasm_sha256.clone()) {
            if old != sha {
                self.forget_artifacts_if_unused(&old).await;
            }
        }
        let outcome = match existing {
            Some(old) => InstallOutcome::Upgraded {
                from: old.manifest.version,
            },
            None => InstallOutcome::Installed,
        };
        self.mark(&record);
        tracing::info!(forgehook = %record.id, version = %record.manifest.version, ?outcome, "ForgeHook installed");
        Ok((record, outcome))
    }

    /// Installs a container or gateway ForgeHook from its manifest (ours or LeForge
    /// upstream's, already parsed), or upgrades the installed one when the version is
    /// higher. A container is created (and, for `on_install`, started and health-checked)
    /// before the install is recorded, so a failed start leaves nothing behind.
    pub async fn install_http(
        &self,
        manifest: Manifest,
    ) -> ApiResult<(InstalledForgehook, InstallOutcome)> {
        let mut errors = manifest.validate();
        if !manifest.runtime.is_http() {
            errors.push(FieldError::new(
                "runtime",
                "a JSON manifest installs a container or gateway ForgeHook; upload a WASM \
                 component as application/wasm or multipart/form-data",
            ));
        }
        errors.extend(http_hooks::check_header_placeholders(&manifest));
        if !errors.is_empty() {
            return Err(ApiError::validation("invalid ForgeHook manifest", errors));
        }
        let id = manifest.id.clone();
        let existing = self.store.get_forgehook(&id).await?;
        match &existing {
            Some(existing) => check_upgrade(existing, &manifest)?,
            None => self.check_id_free_of_mcp(&id).await?,
        }
        // An upgrade keeps the enabled flag and configuration of the installed version.
        let enabled = existing.as_ref().is_none_or(|e| e.enabled);
        let config = existing
            .as_ref()
            .map(|e| e.config.clone())
            .unwrap_or_default();
        if enabled {
            self.http.install(manifest.clone(), &config).await?;
        }
        let record = match self
            .store
            .upsert_forgehook(NewInstalledForgehook {
                manifest: manifest.clone(),
                wasm_sha256: None,
                builtin: false,
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.http.unload(&id).await;
                return Err(e.into());
            }
        };
        if let Some(old) = existing.as_ref().filter(|e| !e.manifest.runtime.is_http()) {
            // Upgraded from WASM: stop serving the component, drop it if unused.
            self.wasm.unload(&id);
            if let Some(sha) = &old.wasm_sha256 {
                self.forget_artifacts_if_unused(sha).await;
            }
        }
        let outcome = match existing {
            Some(old) => InstallOutcome::Upgraded {
                from: old.manifest.version,
            },
            None => InstallOutcome::Installed,
        };
        self.mark(&record);
        tracing::info!(forgehook = %record.id, version = %record.manifest.version, runtime = %record.manifest.runtime, ?outcome, "ForgeHook installed");
        Ok((record, outcome))
    }

    pub async fn uninstall(&self, id: &str) -> ApiResult<InstalledForgehook> {
        let removed = self
            .store
            .delete_forgehook(id)
            .await
            .map_err(not_installed(id))?;
        self.applied().hooks.remove(id);
        self.wasm.unload(id);
        if removed.manifest.runtime.is_http() {
            self.http.unload(id).await;
        }
        if let Some(sha) = &removed.wasm_sha256 {
            self.forget_artifacts_if_unused(sha).await;
        }
        tracing::info!(forgehook = %id, "ForgeHook removed");
        Ok(removed)
    }

    pub async fn set_enabled(&self, id: &str, enabled: bool) -> ApiResult<InstalledForgehook> {
        let record = self
            .store
            .set_forgehook_enabled(id, enabled)
            .await
            .map_err(not_installed(id))?;
        if record.manifest.runtime.is_http() {
            if enabled {
                self.http
                    .load(record.manifest.clone(), &record.config, true)
                    .await?;
            } else {
                self.http.unload(id).await;
            }
        } else if enabled {
            self.activate(&record).await.map_err(ApiError::internal)?;
        } else {
            self.wasm.unload(id);
        }
        self.mark(&record);
        Ok(record)
    }

    /// Replaces the per-install configuration. Keys must be declared by the manifest and
    /// required keys present; a secret sent back as its mask keeps its stored value, so a
    /// client can round-trip what it read without erasing secrets.
    pub async fn set_config(
        &self,
        id: &str,
        mut config: BTreeMap<String, String>,
    ) -> ApiResult<InstalledForgehook> {
        let current = self.get(id).await?;
        // Container environment variables are configuration keys too.
        let declared = &current.manifest.config_keys();
        let mut errors = Vec::new();
        for key in config.keys() {
            if !declared.iter().any(|c| &c.name == key) {
                let known: Vec<_> = declared.iter().map(|c| c.name.as_str()).collect();
                errors.push(FieldError::new(
                    key.clone(),
                    if known.is_empty() {
                        "this ForgeHook declares no configuration keys".to_string()
                    } else {
                        format!(
                            "is not declared by the manifest (known: {})",
                            known.join(", ")
                        )
                    },
                ));
            }
        }
        for key in declared.iter().filter(|c| c.required) {
            if !config.contains_key(&key.name) {
                errors.push(FieldError::new(key.name.clone(), "is required"));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(
                "invalid ForgeHook configuration",
                errors,
            ));
        }
        for key in declared.iter().filter(|c| c.secret) {
            if config.get(&key.name).map(String::as_str) == Some(SECRET_MASK) {
                match current.config.get(&key.name) {
                    Some(old) => {
                        config.insert(key.name.clone(), old.clone());
                    }
                    None => {
                        config.remove(&key.name);
                    }
                }
            }
        }
        let record = self.store.set_forgehook_config(id, config).await?;
        if record.manifest.runtime.is_http() {
            if record.enabled {
                self.http
                    .set_config(&record.manifest, &record.config)
                    .await?;
            }
        } else {
            self.wasm
                .set_config(id, record.config.clone().into_iter().collect());
        }
        self.mark(&record);
        Ok(record)
    }

    async fn forget_artifacts_if_unused(&self, sha: &str) {
        let still_used = match self.store.list_forgehooks().await {
            Ok(all) => all.iter().any(|h| h.wasm_sha256.as_deref() == Some(sha)),
            Err(_) => true,
        };
        if !still_used {
            if let Err(e) = self.store.delete_wasm_blob(sha).await {
                tracing::warn!(sha256 = %sha, error = %e, "could not remove stored component");
            }
            if let Err(e) = self.wasm.remove_artifacts(sha) {
                tracing::warn!(sha256 = %sha, error = %e, "could not remove cached component");
            }
        }
    }
}

/// A ForgeHook and an MCP server of the same name would offer the model the same tool
/// names (`<name>__<tool>`), so each refuses the other's names.
pub fn name_taken(field: &str, message: String) -> ApiError {
    ApiError::conflict(message)
        .with_details(json!([{"field": field, "message": "already in use"}]))
}

fn not_installed(id: &str) -> impl FnOnce(leforge_core::StoreError) -> ApiError + '_ {
    move |e| match e {
        leforge_core::StoreError::NotFound { .. } => {
            ApiError::not_found(format!("ForgeHook '{id}' is not installed"))
        }
        other => other.into(),
    }
}

/// Same version again, or an older one, is refused: an upgrade must say it is one.
fn check_upgrade(existing: &InstalledForgehook, new: &Manifest) -> ApiResult<()> {
    let (Some(old_v), Some(new_v)) = (existing.manifest.semver(), new.semver()) else {
        return Err(ApiError::conflict(format!(
            "ForgeHook '{}' is already installed",
            new.id
        )));
    };
    if new_v > old_v {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "ForgeHook '{}' version {} is already installed; install a higher version to upgrade",
        new.id, existing.manifest.version
    ))
    .with_details(
        json!({"installed_version": existing.manifest.version, "uploaded_version": new.version}),
    ))
}

pub fn install_error(e: InstallError) -> ApiError {
    if !e.is_client_error() {
        return ApiError::internal(e);
    }
    let details: Value = match &e {
        InstallError::InvalidManifest(errors) => json!(errors),
        _ => json!([{"field": "wasm", "message": e.to_string()}]),
    };
    let status = match e {
        InstallError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "PAYLOAD_TOO_LARGE"
    } else {
        "VALIDATION_ERROR"
    };
    ApiError::new(status, code, e.to_string()).with_details(details)
}

#[async_trait]
impl ToolExecutor for Forgehooks {
    async fn invoke(
        &self,
        forgehook_id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        if forgehook_id.starts_with(leforge_core::mcp::TOOL_PREFIX) {
            return self.mcp.invoke(forgehook_id, endpoint, input).await;
        }
        if let Some(manifest) = self.http.manifest(forgehook_id) {
            return self.http.invoke(&manifest, endpoint, input).await;
        }
        let result = self.wasm.invoke(forgehook_id, endpoint, input).await;
        if let Err(ToolError::NotFound { .. }) = &result {
            // Only on the error path: say *why* it is not callable.
            if let Ok(Some(hook)) = self.store.get_forgehook(forgehook_id).await {
                if !hook.enabled {
                    return Err(ToolError::not_found(format!(
                        "ForgeHook '{forgehook_id}' is disabled"
                    )));
                }
                if hook.manifest.runtime != RuntimeKind::Wasm {
                    let why = self
                        .http
                        .waiting_reason(forgehook_id)
                        .unwrap_or_else(|| "it is not loaded on this server".into());
                    return Err(ToolError::Unavailable {
                        message: format!("ForgeHook '{forgehook_id}' is not available: {why}"),
                    });
                }
            }
        }
        result
    }
}

#[async_trait]
impl ToolCatalog for Forgehooks {
    async fn resolve(&self, ids: &[String]) -> Result<Vec<Arc<Manifest>>, Vec<UnavailableTool>> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            if id.starts_with(leforge_core::mcp::TOOL_PREFIX) {
                match self.mcp.resolve(id).await {
                    Ok(m) => found.push(m),
                    Err(u) => missing.push(u),
                }
                continue;
            }
            // Loaded means installed and enabled: the common case needs no database read.
            if let Some(m) = self.wasm.manifest(id).or_else(|| self.http.manifest(id)) {
                found.push(m);
                continue;
            }
            let waiting = self.http.waiting_reason(id);
            let reason = match self.store.get_forgehook(id).await {
                Ok(Some(h)) if !h.enabled => "disabled",
                Ok(Some(_)) if waiting.is_some() => waiting.as_deref().unwrap_or_default(),
                Ok(Some(_)) => "failed to load",
                Ok(None) => "not installed",
                Err(_) => "unknown (database error)",
            };
            missing.push(UnavailableTool {
                id: id.clone(),
                reason: reason.to_string(),
            });
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(missing)
        }
    }
}
