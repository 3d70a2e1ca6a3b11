//! The registry's side of container and gateway ForgeHooks: which ones are loaded here, the
//! container runtime (created on first use, because its instance id lives in the database),
//! and the gateway runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use leforge_container::{
    ContainerAccess, ContainerError, ContainerRuntime, ContainerRuntimeConfig, ContainerStatus,
    GatewayRuntime, ReconcileReport,
};
use leforge_core::forgehook::{Manifest, RuntimeKind, StartPolicy};
use leforge_core::tool::{ToolError, ToolExecutor, ToolOutput};
use leforge_core::FieldError;
use serde_json::Value;

use crate::config::{Config, ContainerAccessMode};

/// The file under the data directory that names this server instance. Kept beside the
/// server rather than in the database: replicas share the database (and may share a Docker
/// engine), and with one id for all of them their container names collided and one server's
/// reconcile removed another's containers. A restarted server reads its own id back and
/// adopts its containers.
pub const INSTANCE_ID_FILE: &str = "instance-id";

#[derive(Clone)]
pub struct HttpHooks {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: std::path::PathBuf,
    /// Everything but the instance id, which is read from the data directory on first use.
    container_config: ContainerRuntimeConfig,
    containers: tokio::sync::OnceCell<ContainerRuntime>,
    gateway: GatewayRuntime,
    /// Manifests of the container and gateway ForgeHooks callable here (installed, enabled,
    /// configured), for the tool catalogue and dispatch without a database read.
    loaded: RwLock<HashMap<String, Arc<Manifest>>>,
    /// Enabled ForgeHooks that are not loaded because their configuration is incomplete: why.
    waiting: RwLock<HashMap<String, String>>,
}

impl HttpHooks {
    pub fn new(config: &Config) -> Result<HttpHooks, ContainerError> {
        let mut c = ContainerRuntimeConfig::new(String::new());
        c.docker_host = config.docker_host.clone();
        c.max_memory_mb = config.container_max_memory_mb;
        c.max_cpus = config.container_max_cpus;
        c.max_pids = config.container_max_pids;
        c.max_response_bytes = config.http_forgehook_max_response_bytes;
        c.max_timeout_ms = config.forgehook_max_timeout_ms;
        c.allow_egress = config.forgehook_container_egress;
        c.access = match config.container_access {
            ContainerAccessMode::Network => ContainerAccess::Network,
            ContainerAccessMode::Loopback => ContainerAccess::PublishLoopback,
        };
        Ok(HttpHooks {
            inner: Arc::new(Inner {
                data_dir: config.data_dir.clone(),
                container_config: c,
                containers: tokio::sync::OnceCell::new(),
                gateway: GatewayRuntime::new(
                    config.http_forgehook_max_response_bytes,
                    config.forgehook_max_timeout_ms,
                )?,
                loaded: RwLock::new(HashMap::new()),
                waiting: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The container runtime, created on first use with this server's instance id.
    pub async fn containers(&self) -> Result<&ContainerRuntime, ContainerError> {
        self.inner
            .containers
            .get_or_try_init(|| async {
                let id = instance_id(&self.inner.data_dir).map_err(|e| {
                    ContainerError::Docker(format!("cannot read or write the instance id: {e}"))
                })?;
                let mut config = self.inner.container_config.clone();
                config.instance_id = id;
                ContainerRuntime::new(config)
            })
            .await
    }

    /// The container runtime if it exists already (it does once any container ForgeHook was
    /// installed or loaded), without touching the database.
    fn containers_now(&self) -> Option<&ContainerRuntime> {
        self.inner.containers.get()
    }

    pub async fn docker_available(&self) -> bool {
        match self.containers().await {
            Ok(rt) => rt.docker_available().await,
            Err(_) => false,
        }
    }

    pub fn manifest(&self, id: &str) -> Option<Arc<Manifest>> {
        read(&self.inner.loaded).get(id).cloned()
    }

    pub fn waiting_reason(&self, id: &str) -> Option<String> {
        read(&self.inner.waiting).get(id).cloned()
    }

    pub fn container_status(&self, id: &str) -> Option<ContainerStatus> {
        self.containers_now()?.status(id)
    }

    /// Install or upgrade: a container is (re)created and, for `on_install`, started and
    /// health-checked before this returns. With required configuration missing, nothing is
    /// loaded (the container could not start) until `set_config` supplies it; a container
    /// install still needs a reachable engine, so a server without Docker says so at once.
    pub async fn install(
        &self,
        manifest: Manifest,
        config: &BTreeMap<String, String>,
    ) -> Result<(), ContainerError> {
        let id = manifest.id.clone();
        if manifest.runtime == RuntimeKind::Container {
            let rt = self.containers().await?;
            rt.docker().await?;
        }
        if self
            .manifest(&id)
            .is_some_and(|old| old.runtime != manifest.runtime)
        {
            // An upgrade that changes the runtime: the old one must not keep serving.
            self.forget(&id).await?;
        }
        let missing = missing_config(&manifest, config);
        if !missing.is_empty() {
            self.forget(&id).await?;
            write(&self.inner.waiting).insert(id, waiting_message(&missing));
            return Ok(());
        }
        let cfg = to_map(config);
        match manifest.runtime {
            RuntimeKind::Container => {
                self.containers()
                    .await?
                    .install(manifest.clone(), &cfg)
                    .await?;
            }
            _ => {
                self.inner.gateway.install(manifest.clone(), &cfg)?;
            }
        }
        write(&self.inner.waiting).remove(&id);
        write(&self.inner.loaded).insert(id, Arc::new(manifest));
        Ok(())
    }

    /// Makes an installed, enabled ForgeHook callable without contacting Docker (start-up,
    /// enable). A container with `start: on_install` is started in the background when
    /// `start` is set; start-up leaves that to `reconcile`, which adopts first.
    pub async fn load(
        &self,
        manifest: Manifest,
        config: &BTreeMap<String, String>,
        start: bool,
    ) -> Result<(), ContainerError> {
        let id = manifest.id.clone();
        let missing = missing_config(&manifest, config);
        if !missing.is_empty() {
            write(&self.inner.waiting).insert(id, waiting_message(&missing));
            return Ok(());
        }
        let cfg = to_map(config);
        match manifest.runtime {
            RuntimeKind::Container => {
                let rt = self.containers().await?.clone();
                rt.load(manifest.clone(), &cfg)?;
                if start && manifest.lifecycle().start == StartPolicy::OnInstall {
                    let id = id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = rt.ensure_started(&id).await {
                            tracing::error!(forgehook = %id, error = %e, "could not start container ForgeHook");
                        }
                    });
                }
            }
            _ => self.inner.gateway.install(manifest.clone(), &cfg)?,
        }
        write(&self.inner.waiting).remove(&id);
        write(&self.inner.loaded).insert(id, Arc::new(manifest));
        Ok(())
    }

    /// Uninstall or disable: no longer callable, and its container is removed. An engine
    /// that does not answer does not keep the ForgeHook loaded: the leftover container is
    /// removed by the next start-up's reconciliation.
    pub async fn unload(&self, id: &str) {
        if let Err(e) = self.forget(id).await {
            tracing::warn!(forgehook = %id, error = %e, "could not remove the container now; the next start-up removes it");
        }
    }

    async fn forget(&self, id: &str) -> Result<(), ContainerError> {
        write(&self.inner.loaded).remove(id);
        write(&self.inner.waiting).remove(id);
        self.inner.gateway.uninstall(id);
        if let Some(rt) = self.containers_now() {
            rt.uninstall(id).await?;
        }
        Ok(())
    }

    /// New configuration of an enabled ForgeHook: applied to the loaded one (a container
    /// whose environment changed is replaced), or, when it completes a waiting
    /// ForgeHook's configuration, loads (and starts) it.
    pub async fn set_config(
        &self,
        manifest: &Manifest,
        config: &BTreeMap<String, String>,
    ) -> Result<(), ContainerError> {
        let id = manifest.id.as_str();
        let missing = missing_config(manifest, config);
        if !missing.is_empty() {
            self.unload(id).await;
            write(&self.inner.waiting).insert(id.to_string(), waiting_message(&missing));
            return Ok(());
        }
        if self.manifest(id).is_none() {
            return self.install(manifest.clone(), config).await;
        }
        let cfg = to_map(config);
        match manifest.runtime {
            RuntimeKind::Container => match self.containers().await?.set_config(id, &cfg).await {
                Ok(_) => Ok(()),
                // The new configuration is in force; the container is replaced when the
                // engine answers again (at the next call).
                Err(e) if e.is_docker_unavailable() => {
                    tracing::warn!(forgehook = %id, error = %e, "configuration saved; the container is replaced when Docker answers");
                    Ok(())
                }
                Err(e) => Err(e),
            },
            _ => self.inner.gateway.set_config(id, &cfg),
        }
    }

    /// Start-up, after every installed ForgeHook was loaded: adopt or remove the containers
    /// a previous process of this instance left, and start `on_install` ones.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ContainerError> {
        self.containers().await?.reconcile().await
    }

    pub async fn invoke(
        &self,
        manifest: &Manifest,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        match manifest.runtime {
            RuntimeKind::Container => match self.containers_now() {
                Some(rt) => rt.invoke(&manifest.id, endpoint, input).await,
                None => Err(ToolError::Unavailable {
                    message: format!("ForgeHook '{}' is not loaded", manifest.id),
                }),
            },
            _ => {
                self.inner
                    .gateway
                    .invoke(&manifest.id, endpoint, input)
                    .await
            }
        }
    }
}

/// This server instance's id (created on first use). Short: it is part of every container's
/// name.
pub fn instance_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join(INSTANCE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let fresh = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    // Written aside and renamed, so a crash never leaves a half-written id.
    let tmp = data_dir.join(format!("{INSTANCE_ID_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, &fresh)?;
    std::fs::rename(&tmp, &path)?;
    Ok(fresh)
}

/// Configuration a ForgeHook cannot run without: required keys (including environment
/// variables without a value) and keys its gateway headers use.
pub fn missing_config(manifest: &Manifest, config: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing: Vec<String> = manifest
        .config_keys()
        .into_iter()
        .filter(|k| k.required && !config.contains_key(&k.name))
        .map(|k| k.name)
        .collect();
    for key in header_placeholders(manifest) {
        if !config.contains_key(&key) && !missing.contains(&key) {
            missing.push(key);
        }
    }
    missing
}

fn waiting_message(missing: &[String]) -> String {
    format!("waiting for configuration: {}", missing.join(", "))
}

/// `KEY` of every `${KEY}` in the gateway's header values.
pub fn header_placeholders(manifest: &Manifest) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(gw) = &manifest.gateway {
        for value in gw.headers.values() {
            for key in placeholders_in(value) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

fn placeholders_in(value: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        keys.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    keys
}

/// Every header placeholder must be a declared configuration key, or no configuration could
/// ever satisfy it (undeclared keys are refused by `PUT …/config`).
pub fn check_header_placeholders(manifest: &Manifest) -> Vec<FieldError> {
    let declared = manifest.config_keys();
    let mut errors = Vec::new();
    let Some(gw) = &manifest.gateway else {
        return errors;
    };
    for (name, value) in &gw.headers {
        for key in placeholders_in(value) {
            if !declared.iter().any(|k| k.name == key) {
                errors.push(FieldError::new(
                    format!("gateway.headers.{name}"),
                    format!("uses ${{{key}}}, which capabilities.config does not declare"),
                ));
            }
        }
    }
    errors
}

fn to_map(config: &BTreeMap<String, String>) -> HashMap<String, String> {
    config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

// The maps are only ever updated by single inserts and removes, so a poisoned lock still
// holds a consistent map.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers (two data directories) on one database get different ids, so their
    /// container names and reconcile labels never collide; a restart keeps its id.
    #[test]
    fn instance_ids_belong_to_the_data_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = instance_id(a.path()).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(
            instance_id(a.path()).unwrap(),
            first,
            "stable across restarts"
        );
        assert_ne!(
            instance_id(b.path()).unwrap(),
            first,
            "another server, another id"
        );
        let nested = a.path().join("not/yet/there");
        assert_eq!(instance_id(&nested).unwrap().len(), 12);
    }
}
