//! The lifecycle of container ForgeHooks: one container per ForgeHook, created from the
//! manifest under the server's limits, started on install or on first call, health-checked
//! before it gets traffic, restarted by the next call after it died, stopped when idle,
//! removed on uninstall, and reconciled with what a previous process left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use leforge_core::forgehook::{HealthCheck, Manifest, RuntimeKind, StartPolicy};
use leforge_core::tool::{ToolError, ToolExecutor, ToolOutput};
use leforge_core::FieldError;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::docker::{self, DockerClient};
use crate::errors::{docker_status, from_bollard, ContainerError};
use crate::http_call::{self, Call, CallFailure, Validators};

/// How long a failed call waits for the container's exit to be reported before calling the
/// container merely unreachable.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Label naming the ForgeHook a container runs.
pub const LABEL_FORGEHOOK: &str = "leforge.forgehook";
/// Label naming the server instance that owns a container; reconciliation only ever
/// touches containers of its own instance, so servers can share an engine.
pub const LABEL_INSTANCE: &str = "leforge.instance";
/// Label with a hash of everything the container was created from; a container whose hash
/// differs from the manifest and configuration now installed is replaced, not adopted.
pub const LABEL_SPEC: &str = "leforge.spec";

/// How the server reaches a container's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerAccess {
    /// By the container's address on the ForgeHook network; nothing is published on the
    /// host. Needs the server to be on the engine's host (or on that network).
    #[default]
    Network,
    /// Publish the port on an ephemeral port of 127.0.0.1 and call that, for a server that
    /// cannot route to the bridge (Docker Desktop, a rootless engine).
    PublishLoopback,
}

/// Server-side settings of the container runtime.
#[derive(Debug, Clone)]
pub struct ContainerRuntimeConfig {
    /// Written to [`LABEL_INSTANCE`]; must be stable across restarts of the same server.
    pub instance_id: String,
    /// `unix:///…`, `tcp://…`; `None` means `DOCKER_HOST` or the default socket.
    pub docker_host: Option<String>,
    /// The bridge network ForgeHook containers join (created if missing). It is `internal`
    /// (no route out of the host) with inter-container traffic off, so a container reaches
    /// neither the internet nor its neighbours; only the server reaches it.
    pub network: String,
    /// The network of containers granted egress: routed out, still no inter-container
    /// traffic. Only used when `allow_egress` is on and a manifest asks for egress.
    pub egress_network: String,
    /// Whether a container whose manifest asks for egress (a non-empty
    /// `capabilities.allowed_hosts`) may have it (`--forgehook-container-egress`). Off:
    /// such a manifest is refused, rather than installed and failing at its first call.
    pub allow_egress: bool,
    /// Caps on what a manifest may ask for; also what a manifest gets when it asks nothing.
    pub max_memory_mb: u64,
    pub max_cpus: f64,
    pub max_pids: u64,
    /// Size of the writable tmpfs at `/tmp` (the root filesystem is read-only).
    pub tmpfs_mb: u64,
    pub access: ContainerAccess,
    /// Cap on any response, whatever the manifest's `max_output_bytes` says.
    pub max_response_bytes: u64,
    /// Grace period of `docker stop` before SIGKILL.
    pub stop_timeout_s: u32,
    /// How often idle containers are looked for.
    pub idle_check_interval: Duration,
    /// Whether a missing image may be pulled from a registry.
    pub pull_images: bool,
    /// Cap on any call's time, whatever the manifest asks (`--forgehook-max-timeout-ms`).
    pub max_timeout_ms: u64,
}

impl ContainerRuntimeConfig {
    pub fn new(instance_id: impl Into<String>) -> Self {
        ContainerRuntimeConfig {
            instance_id: instance_id.into(),
            docker_host: None,
            network: "leforge-forgehooks".into(),
            egress_network: "leforge-forgehooks-egress".into(),
            allow_egress: false,
            max_memory_mb: 256,
            max_cpus: 1.0,
            max_pids: 128,
            tmpfs_mb: 16,
            access: ContainerAccess::Network,
            max_response_bytes: 16 * 1024 * 1024,
            stop_timeout_s: 5,
            idle_check_interval: Duration::from_secs(5),
            pull_images: true,
            max_timeout_ms: 60_000,
        }
    }
}

/// Where a container ForgeHook's container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// No container yet (on-demand start, or not reconciled yet).
    NotCreated,
    /// Created, not started.
    Created,
    /// Started, waiting for the health check.
    Starting,
    Running,
    /// Stopped by us (idle); the next call starts it again.
    Stopped,
    /// Ended on its own (crash, kill, out of memory); the next call restarts it.
    Exited,
    /// Could not be started or never became healthy; see `last_error`.
    Failed,
}

/// What `GET /forgehooks/{id}` shows as `container`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContainerStatus {
    pub state: ContainerState,
    /// Restarts after the container ended on its own (idle stops do not count).
    pub restarts: u64,
    pub last_error: Option<String>,
    pub container_id: Option<String>,
    /// `repository:tag` or `repository@digest`.
    pub image: String,
    /// Where calls go, e.g. `http://172.18.0.2:8080`.
    pub address: Option<String>,
    /// Calls running now.
    pub in_flight: u64,
}

impl ContainerStatus {
    /// A ForgeHook with no container on this server (disabled, or not loaded), and why.
    pub fn not_created(manifest: &Manifest, last_error: Option<String>) -> ContainerStatus {
        ContainerStatus {
            state: ContainerState::NotCreated,
            restarts: 0,
            last_error,
            container_id: None,
            image: image_reference(manifest),
            address: None,
            in_flight: 0,
        }
    }
}

/// `repository:tag` (or `@digest`) of a container manifest; empty for other runtimes.
fn image_reference(manifest: &Manifest) -> String {
    manifest
        .image
        .as_ref()
        .map(|i| i.reference())
        .unwrap_or_default()
}

/// What [`ContainerRuntime::reconcile`] did with the containers it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReconcileReport {
    /// ForgeHook ids whose existing container was taken over.
    pub adopted: Vec<String>,
    /// Container ids removed: unknown ForgeHooks, outdated specs, duplicates.
    pub removed: Vec<String>,
    /// ForgeHook ids being started in the background (`on_install`).
    pub starting: Vec<String>,
}

/// Runs container ForgeHooks. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ContainerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: ContainerRuntimeConfig,
    docker: DockerClient,
    http: reqwest::Client,
    hooks: RwLock<HashMap<String, Arc<Hook>>>,
}

struct Hook {
    manifest: Manifest,
    env: Vec<String>,
    spec: String,
    validators: Validators,
    memory_mb: u64,
    cpus: f64,
    pids: u64,
    /// The manifest asked for egress and the operator allows it: the container joins the
    /// routed egress network instead of the internal one.
    egress: bool,
    /// Held across every create/start/stop/remove of this ForgeHook's container, so calls
    /// arriving together start it once.
    life: tokio::sync::Mutex<Life>,
    status: Mutex<Snapshot>,
    last_used: Mutex<Instant>,
    in_flight: AtomicU64,
}

#[derive(Default)]
struct Life {
    container_id: Option<String>,
    run: Option<Run>,
}

/// One started container: where it listens and a signal that fires when it ends.
#[derive(Clone)]
struct Run {
    address: String,
    /// Set to the exit code when the container stops, by the watcher task.
    exited: watch::Receiver<Option<i64>>,
    /// Passed the health check since this start.
    ready: bool,
}

struct Snapshot {
    state: ContainerState,
    restarts: u64,
    last_error: Option<String>,
    container_id: Option<String>,
    address: Option<String>,
    /// We are stopping or removing the container: its exit is not a crash.
    deliberate: bool,
}

impl Hook {
    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // Every update of the snapshot is a plain field assignment, so a poisoned lock
        // still holds a consistent value.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: ContainerState, error: Option<String>) {
        let mut s = self.snapshot();
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

/// Decrements the in-flight count however the call ends (including cancellation).
struct InFlight<'a>(&'a Hook);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

impl ContainerRuntime {
    /// Creates the runtime without contacting Docker (a server without an engine still
    /// starts). Inside a Tokio runtime it also starts the idle-stop task, which ends when
    /// the last clone is dropped.
    pub fn new(config: ContainerRuntimeConfig) -> Result<ContainerRuntime, ContainerError> {
        if config.access == ContainerAccess::PublishLoopback {
            tracing::warn!(
                network = %config.egress_network,
                "loopback container access: Docker publishes no ports from internal networks, \
                 so ForgeHook containers can reach the network in this mode"
            );
        }
        let inner = Arc::new(Inner {
            docker: DockerClient::new(config.docker_host.clone()),
            http: http_call::client().map_err(ContainerError::Docker)?,
            hooks: RwLock::new(HashMap::new()),
            config,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(idle_reaper(Arc::downgrade(&inner)));
        }
        Ok(ContainerRuntime { inner })
    }

    pub fn config(&self) -> &ContainerRuntimeConfig {
        &self.inner.config
    }

    /// Whether a Docker engine answers now (for `/health`: `docker: "unavailable"`).
    pub async fn docker_available(&self) -> bool {
        self.inner.docker.available().await
    }

    /// The engine client (version-negotiated), e.g. for diagnostics and tests.
    pub async fn docker(&self) -> Result<Docker, ContainerError> {
        self.inner.docker.get().await
    }

    /// Installs (or upgrades, or re-installs) a container ForgeHook: checks the manifest and
    /// configuration, makes sure the image is present (pulling it if allowed), replaces any
    /// container of the same id, creates the new one and, for `start: on_install`, starts
    /// it and waits for its health check. On error nothing stays behind.
    pub async fn install(
        &self,
        manifest: Manifest,
        config: &HashMap<String, String>,
    ) -> Result<ContainerStatus, ContainerError> {
        let hook = Arc::new(self.prepare(manifest, config)?);
        let docker = self.inner.docker.get().await?;
        let image = hook.manifest.image.clone().ok_or_else(|| {
            ContainerError::InvalidManifest(vec![FieldError::new("image", "is required")])
        })?;
        docker::ensure_image(&docker, &image, self.inner.config.pull_images).await?;
        let id = hook.manifest.id.clone();
        self.remove_all_containers(&docker, &id).await?;
        self.write().insert(id.clone(), hook.clone());
        let started = async {
            let mut life = hook.life.lock().await;
            self.create(&docker, &hook, &mut life).await?;
            if hook.manifest.lifecycle().start == StartPolicy::OnInstall {
                self.start(&docker, &hook, &mut life).await?;
            }
            Ok::<(), ContainerError>(())
        }
        .await;
        if let Err(e) = started {
            self.write().remove(&id);
            if let Err(cleanup) = self.remove_all_containers(&docker, &id).await {
                tracing::warn!(forgehook = %id, error = %cleanup, "could not remove the container of a failed install");
            }
            return Err(e);
        }
        tracing::info!(forgehook = %id, image = %image.reference(), "container ForgeHook installed");
        Ok(status_of(&hook))
    }

    /// Makes an installed ForgeHook callable without contacting Docker (server start-up,
    /// enable): its container is adopted by [`reconcile`](Self::reconcile) or created by the
    /// first call.
    pub fn load(
        &self,
        manifest: Manifest,
        config: &HashMap<String, String>,
    ) -> Result<(), ContainerError> {
        let hook = Arc::new(self.prepare(manifest, config)?);
        self.write().insert(hook.manifest.id.clone(), hook);
        Ok(())
    }

    /// Removes the ForgeHook's container(s) and forgets it (uninstall, disable). It is
    /// forgotten even if Docker is unreachable; the leftover container is then removed by
    /// the next reconciliation. Returns whether it was loaded.
    pub async fn uninstall(&self, id: &str) -> Result<bool, ContainerError> {
        let hook = self.write().remove(id);
        if let Some(hook) = &hook {
            let mut life = hook.life.lock().await;
            hook.snapshot().deliberate = true;
            life.run = None;
            life.container_id = None;
        }
        let docker = self.inner.docker.get().await?;
        self.remove_all_containers(&docker, id).await?;
        tracing::info!(forgehook = %id, "container ForgeHook removed");
        Ok(hook.is_some())
    }

    /// New per-install configuration (environment values). When it changes what the
    /// container is created from, the container is replaced (now, or at the next call for
    /// `on_demand`); the restart count carries over.
    pub async fn set_config(
        &self,
        id: &str,
        config: &HashMap<String, String>,
    ) -> Result<ContainerStatus, ContainerError> {
        let old = self
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        let new = Arc::new(self.prepare(old.manifest.clone(), config)?);
        if new.spec == old.spec {
            return Ok(status_of(&old));
        }
        new.snapshot().restarts = old.snapshot().restarts;
        {
            let mut life = old.life.lock().await;
            old.snapshot().deliberate = true;
            life.run = None;
            life.container_id = None;
        }
        self.write().insert(id.to_string(), new.clone());
        let docker = self.inner.docker.get().await?;
        self.remove_all_containers(&docker, id).await?;
        if new.manifest.lifecycle().start == StartPolicy::OnInstall {
            let mut life = new.life.lock().await;
            self.create(&docker, &new, &mut life).await?;
            self.start(&docker, &new, &mut life).await?;
        }
        Ok(status_of(&new))
    }

    /// Starts a loaded ForgeHook's container now (creating it if needed) and waits for its
    /// health check; a running, healthy container is left alone. For `start: on_install`
    /// ForgeHooks that were [`load`](Self::load)ed, e.g. after being enabled again.
    pub async fn ensure_started(&self, id: &str) -> Result<ContainerStatus, ContainerError> {
        let hook = self
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        self.ensure_ready(&hook).await?;
        Ok(status_of(&hook))
    }

    /// The container's state for the API; `None` when the ForgeHook is not loaded here.
    pub fn status(&self, id: &str) -> Option<ContainerStatus> {
        self.read().get(id).map(|h| status_of(h))
    }

    pub fn is_loaded(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    /// Start-up: takes over containers of loaded ForgeHooks that a previous process of this
    /// instance left (when created from the same spec), removes every other container with
    /// this instance's label, and starts `on_install` ForgeHooks in the background. Call it
    /// after [`load`](Self::load)ing the installed ForgeHooks.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ContainerError> {
        let docker = self.inner.docker.get().await?;
        let instance = self.inner.config.instance_id.clone();
        let found = docker::list_labelled(&docker, &[(LABEL_INSTANCE, &instance)]).await?;
        let mut report = ReconcileReport::default();
        for c in found {
            let Some(cid) = c.id.clone() else { continue };
            let labels = c.labels.clone().unwrap_or_default();
            let hook = labels
                .get(LABEL_FORGEHOOK)
                .and_then(|id| self.read().get(id).cloned());
            let adopted = match hook {
                Some(hook) if labels.get(LABEL_SPEC) == Some(&hook.spec) => {
                    let mut life = hook.life.lock().await;
                    if life.container_id.is_none() {
                        life.container_id = Some(cid.clone());
                        let running = matches!(
                            c.state,
                            Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                        );
                        let mut s = hook.snapshot();
                        s.container_id = Some(cid.clone());
                        // Not marked ready: the first call re-checks its health and address.
                        s.state = if running {
                            ContainerState::Starting
                        } else {
                            ContainerState::Exited
                        };
                        report.adopted.push(hook.manifest.id.clone());
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !adopted {
                docker::remove_container(&docker, &cid).await?;
                report.removed.push(cid);
            }
        }
        let hooks: Vec<Arc<Hook>> = self.read().values().cloned().collect();
        for hook in hooks {
            if hook.manifest.lifecycle().start != StartPolicy::OnInstall {
                continue;
            }
            report.starting.push(hook.manifest.id.clone());
            let rt = self.clone();
            tokio::spawn(async move {
                if let Err(e) = rt.ensure_ready(&hook).await {
                    tracing::error!(forgehook = %hook.manifest.id, error = %e, "could not start container ForgeHook");
                }
            });
        }
        tracing::info!(adopted = ?report.adopted, removed = report.removed.len(), "reconciled ForgeHook containers");
        Ok(report)
    }

    /// Validates and resolves everything about a ForgeHook that does not need Docker.
    fn prepare(
        &self,
        manifest: Manifest,
        config: &HashMap<String, String>,
    ) -> Result<Hook, ContainerError> {
        let mut errors = manifest.validate();
        if manifest.runtime != RuntimeKind::Container {
            errors.push(FieldError::new(
                "runtime",
                format!("must be container, not {}", manifest.runtime),
            ));
        }
        if !errors.is_empty() {
            return Err(ContainerError::InvalidManifest(errors));
        }
        let validators =
            http_call::compile_validators(&manifest).map_err(ContainerError::InvalidManifest)?;
        // A container cannot be limited to some hosts without a proxy, so egress is all or
        // nothing; any listed host asks for it.
        let egress = !manifest.capabilities.allowed_hosts.is_empty();
        if egress && !self.inner.config.allow_egress {
            return Err(ContainerError::InvalidManifest(vec![FieldError::new(
                "capabilities.allowed_hosts",
                "asks for network access, which this server does not grant to containers \
                 (an operator can allow it with --forgehook-container-egress)",
            )]));
        }
        let mut env = Vec::new();
        let mut missing = Vec::new();
        for var in &manifest.environment {
            match config.get(&var.name).or(var.value.as_ref()) {
                Some(v) => env.push(format!("{}={v}", var.name)),
                None if var.required => {
                    missing.push(FieldError::new(var.name.clone(), "is required"))
                }
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(ContainerError::InvalidConfig(missing));
        }
        let c = &self.inner.config;
        let res = manifest.resources.unwrap_or_default();
        let memory_mb = res
            .memory_mb
            .unwrap_or(c.max_memory_mb)
            .min(c.max_memory_mb);
        let cpus = res.cpus.unwrap_or(c.max_cpus).min(c.max_cpus);
        let pids = res.pids.unwrap_or(c.max_pids).min(c.max_pids);
        let image = manifest
            .image
            .as_ref()
            .map(|i| i.reference())
            .unwrap_or_default();
        // Everything the container is created from; secrets are in `env`, but `docker
        // inspect` shows the environment anyway, so the hash reveals nothing new.
        let (network, internal) = self.network_for(egress);
        let spec_input = serde_json::json!({
            "image": image, "port": manifest.port, "env": env, "memory_mb": memory_mb,
            "cpus": cpus, "pids": pids, "tmpfs_mb": c.tmpfs_mb, "network": network,
            "internal": internal,
            "publish": c.access == ContainerAccess::PublishLoopback,
        });
        let spec = hex::encode(Sha256::digest(spec_input.to_string().as_bytes()));
        let status = Snapshot {
            state: ContainerState::NotCreated,
            restarts: 0,
            last_error: None,
            container_id: None,
            address: None,
            deliberate: false,
        };
        Ok(Hook {
            manifest,
            env,
            spec,
            validators,
            memory_mb,
            cpus,
            pids,
            egress,
            life: tokio::sync::Mutex::new(Life::default()),
            status: Mutex::new(status),
            last_used: Mutex::new(Instant::now()),
            in_flight: AtomicU64::new(0),
        })
    }

    /// The network a container joins, and whether it is internal. Docker publishes no
    /// ports from an internal network, so with `PublishLoopback` every container joins the
    /// routed one (still without inter-container traffic): that mode cannot cut egress.
    fn network_for(&self, egress: bool) -> (&str, bool) {
        let c = &self.inner.config;
        if egress || c.access == ContainerAccess::PublishLoopback {
            (&c.egress_network, false)
        } else {
            (&c.network, true)
        }
    }

    fn container_name(&self, forgehook_id: &str) -> String {
        let instance: String = self
            .inner
            .config
            .instance_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("leforge-{instance}-{forgehook_id}")
    }

    /// Creates the container (not started) with every restriction of the issue.
    async fn create(
        &self,
        docker: &Docker,
        hook: &Hook,
        life: &mut Life,
    ) -> Result<(), ContainerError> {
        let c = &self.inner.config;
        let (network, internal) = self.network_for(hook.egress);
        let network_id = docker::ensure_network(docker, network, internal).await?;
        let image = hook
            .manifest
            .image
            .as_ref()
            .map(|i| i.reference())
            .unwrap_or_default();
        docker::ensure_image(
            docker,
            hook.manifest.image.as_ref().ok_or_else(|| {
                ContainerError::InvalidManifest(vec![FieldError::new("image", "is required")])
            })?,
            c.pull_images,
        )
        .await?;
        let port_key = format!("{}/tcp", hook.manifest.port.unwrap_or(80));
        let publish = c.access == ContainerAccess::PublishLoopback;
        let memory = (hook.memory_mb * 1024 * 1024) as i64;
        let host_config = HostConfig {
            memory: Some(memory),
            // Equal to `memory`: no swap on top, so the limit is the limit.
            memory_swap: Some(memory),
            nano_cpus: Some((hook.cpus * 1e9).round() as i64),
            pids_limit: Some(hook.pids as i64),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,noexec,nosuid,nodev,size={}m", c.tmpfs_mb),
            )])),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            network_mode: Some(network_id),
            port_bindings: publish.then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            ..Default::default()
        };
        let labels = HashMap::from([
            (LABEL_FORGEHOOK.to_string(), hook.manifest.id.clone()),
            (LABEL_INSTANCE.to_string(), c.instance_id.clone()),
            (LABEL_SPEC.to_string(), hook.spec.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image),
            env: Some(hook.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let name = self.container_name(&hook.manifest.id);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Err(e) if docker_status(&e) == Some(409) => {
                // A container of a previous process still holds the name.
                docker::remove_container(docker, &name).await?;
                docker.create_container(Some(options), body).await
            }
            other => other,
        }
        .map_err(from_bollard)?;
        life.container_id = Some(created.id.clone());
        life.run = None;
        let mut s = hook.snapshot();
        s.container_id = Some(created.id);
        s.address = None;
        s.state = ContainerState::Created;
        Ok(())
    }

    /// Starts the created container, finds its address and waits for its health check.
    async fn start(
        &self,
        docker: &Docker,
        hook: &Arc<Hook>,
        life: &mut Life,
    ) -> Result<Run, ContainerError> {
        let id = hook.manifest.id.clone();
        let Some(cid) = life.container_id.clone() else {
            return Err(ContainerError::Docker("no container to start".into()));
        };
        hook.snapshot().deliberate = false;
        hook.set_state(ContainerState::Starting, None);
        let fail = |message: String| {
            hook.set_state(ContainerState::Failed, Some(message.clone()));
            ContainerError::StartFailed {
                id: id.clone(),
                message,
            }
        };
        match docker.start_container(&cid, None).await {
            Ok(()) => {}
            Err(e) if docker_status(&e).is_some() => return Err(fail(e.to_string())),
            Err(e) => return Err(from_bollard(e)),
        }
        let exited = watch_exit(docker.clone(), cid.clone(), hook.clone());
        let address = self
            .address_of(docker, &cid, hook)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut run = Run {
            address: address.clone(),
            exited,
            ready: false,
        };
        hook.snapshot().address = Some(address.clone());
        life.run = Some(run.clone());
        self.wait_healthy(hook, &mut run).await.map_err(fail)?;
        run.ready = true;
        life.run = Some(run.clone());
        let mut s = hook.snapshot();
        s.state = ContainerState::Running;
        drop(s);
        tracing::info!(forgehook = %id, %address, "container ready");
        Ok(run)
    }

    /// `http://<ip>:<port>` on our network, or the published loopback port.
    async fn address_of(
        &self,
        docker: &Docker,
        cid: &str,
        hook: &Hook,
    ) -> Result<String, ContainerError> {
        let port = hook.manifest.port.unwrap_or(80);
        let info = docker
            .inspect_container(cid, None)
            .await
            .map_err(from_bollard)?;
        let settings = info.network_settings.unwrap_or_default();
        if self.inner.config.access == ContainerAccess::PublishLoopback {
            let host_port = settings
                .ports
                .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
                .and_then(|b| b.into_iter().find_map(|b| b.host_port))
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ContainerError::Docker("the port was not published".into()))?;
            return Ok(format!("http://127.0.0.1:{host_port}"));
        }
        let (network, _) = self.network_for(hook.egress);
        let ip = settings
            .networks
            .unwrap_or_default()
            .get(network)
            .and_then(|n| n.ip_address.clone())
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                ContainerError::Docker(format!("the container has no address on network {network}"))
            })?;
        Ok(format!("http://{ip}:{port}"))
    }

    /// Polls the health check (or, without one, the port) until it answers, the container
    /// exits, or the attempts run out.
    async fn wait_healthy(&self, hook: &Hook, run: &mut Run) -> Result<(), String> {
        let (check, http) = match &hook.manifest.health_check {
            Some(hc) => (hc.clone(), true),
            None => (HealthCheck::default(), false),
        };
        let mut last = String::from("no attempt made");
        for attempt in 0..=check.retries {
            if let Some(code) = *run.exited.borrow() {
                return Err(format!(
                    "the container exited with code {code} while starting"
                ));
            }
            let timeout = Duration::from_millis(check.timeout_ms);
            let outcome = if http {
                let url = http_call::join_url(&run.address, "", &check.path);
                match self.inner.http.get(&url).timeout(timeout).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{} answered {}", check.path, r.status())),
                    Err(e) => Err(format!("{} did not answer: {e}", check.path)),
                }
            } else {
                let target = run.address.trim_start_matches("http://").to_string();
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("port not open: {e}")),
                    Err(_) => Err("port connect timed out".into()),
                }
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if attempt < check.retries {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(check.interval_ms)) => {}
                    _ = run.exited.changed() => {}
                }
            }
        }
        Err(format!(
            "not healthy after {} attempts: {last}",
            u64::from(check.retries) + 1
        ))
    }

    /// The address of a running, healthy container, starting (or restarting, or creating)
    /// it first when needed.
    async fn ensure_ready(&self, hook: &Arc<Hook>) -> Result<Run, ContainerError> {
        let mut life = hook.life.lock().await;
        if let Some(run) = &life.run {
            // `state` turns to exited as soon as a failed call sees the container dead,
            // possibly before the watcher reports it.
            if run.ready
                && run.exited.borrow().is_none()
                && hook.snapshot().state == ContainerState::Running
            {
                return Ok(run.clone());
            }
        }
        let docker = self.inner.docker.get().await?;
        let previous = hook.snapshot().state;
        match &life.container_id {
            None => {
                self.create(&docker, hook, &mut life).await?;
            }
            Some(cid) => match docker.inspect_container(cid, None).await {
                Err(e) if docker_status(&e) == Some(404) => {
                    // Removed behind our back: make a new one.
                    self.create(&docker, hook, &mut life).await?;
                }
                Err(e) => return Err(from_bollard(e)),
                Ok(info) => {
                    let running = info.state.and_then(|s| s.running).unwrap_or(false);
                    if running {
                        // Adopted, or still starting after a failed health check: re-check.
                        let cid = cid.clone();
                        return self.resume(&docker, hook, &mut life, &cid).await;
                    }
                }
            },
        }
        // We believed it running (or knew it crashed) and it is not: it ended on its own,
        // whether or not the watcher has reported it yet. Idle stops and first starts are
        // not restarts.
        if matches!(
            previous,
            ContainerState::Exited | ContainerState::Running | ContainerState::Starting
        ) {
            let mut s = hook.snapshot();
            s.restarts += 1;
            tracing::warn!(forgehook = %hook.manifest.id, restarts = s.restarts, "restarting container that ended on its own");
        }
        self.start(&docker, hook, &mut life).await
    }

    /// Takes over an already-running container: watch it, find it, check its health.
    async fn resume(
        &self,
        docker: &Docker,
        hook: &Arc<Hook>,
        life: &mut Life,
        cid: &str,
    ) -> Result<Run, ContainerError> {
        let id = hook.manifest.id.clone();
        let fail = |message: String| {
            hook.set_state(ContainerState::Failed, Some(message.clone()));
            ContainerError::StartFailed {
                id: id.clone(),
                message,
            }
        };
        let exited = match &life.run {
            Some(run) => run.exited.clone(),
            None => watch_exit(docker.clone(), cid.to_string(), hook.clone()),
        };
        let address = self
            .address_of(docker, cid, hook)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut run = Run {
            address: address.clone(),
            exited,
            ready: false,
        };
        hook.snapshot().address = Some(address);
        life.run = Some(run.clone());
        self.wait_healthy(hook, &mut run).await.map_err(fail)?;
        run.ready = true;
        life.run = Some(run.clone());
        hook.set_state(ContainerState::Running, None);
        Ok(run)
    }

    /// Stops an idle container (if still idle once we hold its lock).
    async fn stop_if_idle(&self, hook: &Arc<Hook>, idle: Duration) {
        let Ok(mut life) = hook.life.try_lock() else {
            return; // busy starting or stopping: not idle
        };
        if hook.in_flight.load(Ordering::SeqCst) > 0
            || hook.idle_for() < idle
            || hook.snapshot().state != ContainerState::Running
        {
            return;
        }
        let Some(cid) = life.container_id.clone() else {
            return;
        };
        let Ok(docker) = self.inner.docker.get().await else {
            return;
        };
        hook.snapshot().deliberate = true;
        let options = StopContainerOptionsBuilder::new()
            .t(self.inner.config.stop_timeout_s as i32)
            .build();
        match docker.stop_container(&cid, Some(options)).await {
            Ok(()) => {
                life.run = None;
                hook.set_state(ContainerState::Stopped, None);
                tracing::info!(forgehook = %hook.manifest.id, "stopped idle container");
            }
            Err(e) => {
                hook.snapshot().deliberate = false;
                tracing::warn!(forgehook = %hook.manifest.id, error = %e, "could not stop idle container");
            }
        }
    }

    /// Removes every container of this instance for `forgehook_id` (normally one).
    async fn remove_all_containers(
        &self,
        docker: &Docker,
        forgehook_id: &str,
    ) -> Result<(), ContainerError> {
        let instance = self.inner.config.instance_id.clone();
        let found = docker::list_labelled(
            docker,
            &[(LABEL_INSTANCE, &instance), (LABEL_FORGEHOOK, forgehook_id)],
        )
        .await?;
        for c in found {
            if let Some(cid) = c.id {
                docker::remove_container(docker, &cid).await?;
            }
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Hook>>> {
        // Inserts and removes are single operations: a poisoned map is still consistent.
        self.inner.hooks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Hook>>> {
        self.inner.hooks.write().unwrap_or_else(|p| p.into_inner())
    }

    /// After a failed connection: did the container die? Updates the state if so.
    async fn explain_failure(&self, hook: &Hook, run: &Run, failure: String) -> ToolError {
        let id = &hook.manifest.id;
        // A connection that broke mid-call usually means the container died; the engine may
        // need a moment to report it (a killed container can still show as running right
        // after the kill), so give the watcher a short while before asking Docker directly.
        let mut exited = run.exited.clone();
        let mut code =
            match tokio::time::timeout(EXIT_GRACE, exited.wait_for(Option::is_some)).await {
                Ok(Ok(v)) => *v,
                _ => None,
            };
        let cid = hook.snapshot().container_id.clone();
        if code.is_none() {
            if let (Ok(docker), Some(cid)) = (self.inner.docker.get().await, cid) {
                if let Ok(info) = docker.inspect_container(&cid, None).await {
                    let state = info.state.unwrap_or_default();
                    if !state.running.unwrap_or(false) {
                        code = Some(state.exit_code.unwrap_or(-1));
                        let mut s = hook.snapshot();
                        if !s.deliberate {
                            s.state = ContainerState::Exited;
                            s.last_error = Some(format!("exited with code {}", code.unwrap_or(-1)));
                        }
                    }
                }
            }
        }
        if code.is_none() {
            // Running but unreachable: the next call must re-check it (health, address,
            // liveness) instead of trusting the last health check.
            let mut s = hook.snapshot();
            if s.state == ContainerState::Running {
                s.state = ContainerState::Starting;
            }
        }
        match code {
            Some(code) => ToolError::Unavailable {
                message: format!(
                    "the container of ForgeHook '{id}' exited (code {code}) during the call; the next call restarts it"
                ),
            },
            None => ToolError::Unavailable {
                message: format!("ForgeHook '{id}' could not be reached: {failure}"),
            },
        }
    }
}

fn status_of(hook: &Hook) -> ContainerStatus {
    let s = hook.snapshot();
    ContainerStatus {
        state: s.state,
        restarts: s.restarts,
        last_error: s.last_error.clone(),
        container_id: s.container_id.clone(),
        image: image_reference(&hook.manifest),
        address: s.address.clone(),
        in_flight: hook.in_flight.load(Ordering::SeqCst),
    }
}

/// Watches one started container and reports its exit code. An exit we did not cause is
/// recorded as `exited`, so the next call knows to restart (and count) it.
fn watch_exit(docker: Docker, cid: String, hook: Arc<Hook>) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let code = loop {
            let options = WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build();
            let mut stream = docker.wait_container(&cid, Some(options));
            match stream.next().await {
                Some(Ok(r)) => break r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    break code
                }
                // bollard's request timeout covers the response head only; retry if the
                // engine was slow to send it.
                Some(Err(bollard::errors::Error::RequestTimeoutError)) => continue,
                Some(Err(e)) if docker_status(&e) == Some(404) => break -1,
                Some(Err(e)) => {
                    tracing::warn!(container = %cid, error = %e, "stopped watching container");
                    return;
                }
                None => break -1,
            }
        };
        let oom = match docker.inspect_container(&cid, None).await {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        };
        {
            let mut s = hook.snapshot();
            if !s.deliberate && s.container_id.as_deref() == Some(cid.as_str()) {
                s.state = ContainerState::Exited;
                s.last_error = Some(if oom {
                    format!("exited with code {code}: killed for exceeding its memory limit")
                } else {
                    format!("exited with code {code}")
                });
                tracing::warn!(forgehook = %hook.manifest.id, code, oom, "container ended on its own");
            }
        }
        let _ = tx.send(Some(code));
    });
    rx
}

async fn idle_reaper(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.config.idle_check_interval,
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let rt = ContainerRuntime { inner };
        let hooks: Vec<Arc<Hook>> = rt.read().values().cloned().collect();
        for hook in hooks {
            let idle = hook.manifest.lifecycle().idle_stop_after_s.unwrap_or(0);
            if idle > 0 {
                rt.stop_if_idle(&hook, Duration::from_secs(idle)).await;
            }
        }
    }
}

#[async_trait]
impl ToolExecutor for ContainerRuntime {
    async fn invoke(
        &self,
        forgehook_id: &str,
        endpoint: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        let started = Instant::now();
        let hook = self.read().get(forgehook_id).cloned().ok_or_else(|| {
            ToolError::not_found(format!("ForgeHook '{forgehook_id}' is not loaded"))
        })?;
        let ep = hook.manifest.endpoint(endpoint).cloned().ok_or_else(|| {
            ToolError::not_found(format!(
                "ForgeHook '{forgehook_id}' has no endpoint '{endpoint}'"
            ))
        })?;
        if let Some(v) = hook.validators.get(endpoint) {
            http_call::check_input(v, &input)?;
        }
        hook.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&hook);
        hook.touch();
        let mut run = self
            .ensure_ready(&hook)
            .await
            .map_err(|e| ToolError::Unavailable {
                message: format!("ForgeHook '{forgehook_id}' is not available: {e}"),
            })?;
        let limits = hook.manifest.capabilities.limits;
        let method = ep.http_method();
        let call = http_call::call(
            &self.inner.http,
            Call {
                method: &method,
                url: http_call::join_url(
                    &run.address,
                    &hook.manifest.base_path,
                    ep.path.as_deref().unwrap_or("/"),
                ),
                headers: &[],
                input: &input,
                timeout: Duration::from_millis(
                    limits.timeout_ms.min(self.inner.config.max_timeout_ms),
                ),
                max_bytes: limits
                    .max_output_bytes
                    .min(self.inner.config.max_response_bytes),
                // One retry: a container that just passed its health check may still be
                // re-binding after a fast restart.
                retries: 1,
            },
        );
        let mut exited = run.exited.clone();
        let result = tokio::select! {
            r = call => r,
            // A killed container's connections may never see a reset; don't wait out the
            // whole timeout for an answer that cannot come.
            _ = exited.wait_for(Option::is_some) => Err(CallFailure::Broken("the container exited".into())),
        };
        let output = match result {
            Ok(v) => v,
            Err(CallFailure::Tool(e)) => return Err(e),
            Err(CallFailure::Connect(m)) | Err(CallFailure::Broken(m)) => {
                run.ready = false;
                return Err(self.explain_failure(&hook, &run, m).await);
            }
        };
        Ok(ToolOutput {
            output,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}
