//! The ForgeHook registry: installed ForgeHooks as stored, kept in step with the runtimes
//! that execute them (the WASM host now; containers later). Routes, the CLI and the agent
//! loop (through `ToolExecutor`) all go through here, so the rules — versions, enabled
//! state, configuration keys, secrets — are enforced in one place.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use leforge_core::forgehook::{Manifest, RuntimeKind};
use leforge_core::installed::{InstalledForgehook, NewInstalledForgehook, SECRET_MASK};
use leforge_core::tool::{ToolCatalog, ToolError, ToolExecutor, ToolOutput, UnavailableTool};
use leforge_core::{FieldError, Store};
use leforge_wasm::{InstallError, WasmHost};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

#[derive(Clone)]
pub struct Forgehooks {
    store: Arc<dyn Store>,
    wasm: WasmHost,
}

/// How an install relates to what was there before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed,
    Upgraded { from: String },
}

impl Forgehooks {
    pub fn new(store: Arc<dyn Store>, wasm: WasmHost) -> Self {
        Forgehooks { store, wasm }
    }

    pub fn wasm(&self) -> &WasmHost {
        &self.wasm
    }

    /// Start-up: makes every enabled, installed ForgeHook callable from the artifact cache.
    /// A ForgeHook that cannot be loaded is logged and skipped so one bad install cannot
    /// keep the server down; calls to it then fail with a clear error.
    pub async fn load_installed(&self) -> Result<usize, leforge_core::StoreError> {
        let mut loaded = 0;
        for hook in self.store.list_forgehooks().await? {
            if !hook.enabled {
                continue;
            }
            match self.activate(&hook).await {
                Ok(()) => loaded += 1,
                Err(e) => {
                    tracing::error!(forgehook = %hook.id, error = %e, "cannot load ForgeHook")
                }
            }
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
        if let Some(existing) = &existing {
            check_upgrade(existing, &prepared.manifest)?;
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
        tracing::info!(forgehook = %record.id, version = %record.manifest.version, ?outcome, "ForgeHook installed");
        Ok((record, outcome))
    }

    pub async fn uninstall(&self, id: &str) -> ApiResult<InstalledForgehook> {
        let removed = self
            .store
            .delete_forgehook(id)
            .await
            .map_err(not_installed(id))?;
        self.wasm.unload(id);
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
        if enabled {
            self.activate(&record).await.map_err(ApiError::internal)?;
        } else {
            self.wasm.unload(id);
        }
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
        let declared = &current.manifest.capabilities.config;
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
        self.wasm
            .set_config(id, record.config.clone().into_iter().collect());
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
                    return Err(ToolError::Unavailable {
                        message: format!("ForgeHook '{forgehook_id}' has no runtime available"),
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
            // Loaded means installed and enabled: the common case needs no database read.
            if let Some(m) = self.wasm.manifest(id) {
                found.push(m);
                continue;
            }
            let reason = match self.store.get_forgehook(id).await {
                Ok(Some(h)) if !h.enabled => "disabled",
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
