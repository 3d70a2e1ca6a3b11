//! The Docker engine connection and the engine-level steps (image, network, listing and
//! removing our containers) that do not depend on one ForgeHook's state.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use leforge_core::forgehook::ImageRef;

use crate::errors::{docker_status, from_bollard, ContainerError};

/// How long to wait for the engine to answer the version handshake; an absent engine must
/// not stall an install or `/health` for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connected engine client. Connecting never happens at construction, so a server
/// without Docker starts normally and only container operations fail.
pub(crate) struct DockerClient {
    host: Option<String>,
    connected: tokio::sync::Mutex<Option<Docker>>,
}

impl DockerClient {
    pub fn new(host: Option<String>) -> Self {
        DockerClient {
            host,
            connected: tokio::sync::Mutex::new(None),
        }
    }

    /// The client, after agreeing on an API version with the engine (bollard defaults to a
    /// newer API than many installed engines speak). A failure is not cached, so an engine
    /// started later is picked up.
    pub async fn get(&self) -> Result<Docker, ContainerError> {
        let mut connected = self.connected.lock().await;
        if let Some(d) = connected.as_ref() {
            return Ok(d.clone());
        }
        let docker = match &self.host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| ContainerError::DockerUnavailable(e.to_string()))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                ContainerError::DockerUnavailable("the engine did not answer within 5 s".into())
            })?
            .map_err(|e| ContainerError::DockerUnavailable(e.to_string()))?;
        *connected = Some(docker.clone());
        Ok(docker)
    }

    /// Whether the engine answers a ping now.
    pub async fn available(&self) -> bool {
        let Ok(docker) = self.get().await else {
            return false;
        };
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await,
            Ok(Ok(_))
        )
    }
}

/// Makes sure the image is present, pulling it if not (progress is logged). `pull: false`
/// turns a missing image into an error without contacting a registry.
pub(crate) async fn ensure_image(
    docker: &Docker,
    image: &ImageRef,
    pull: bool,
) -> Result<(), ContainerError> {
    let reference = image.reference();
    match docker.inspect_image(&reference).await {
        Ok(_) => return Ok(()),
        Err(e) if docker_status(&e) == Some(404) => {}
        Err(e) => return Err(from_bollard(e)),
    }
    let unavailable = |message: String| ContainerError::ImageUnavailable {
        image: reference.clone(),
        message,
    };
    if !pull {
        return Err(unavailable(
            "it is not present and pulling is disabled".into(),
        ));
    }
    tracing::info!(image = %reference, "pulling image");
    let options = CreateImageOptionsBuilder::new()
        .from_image(&image.repository)
        .tag(image.digest.as_deref().unwrap_or(&image.tag))
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut last_status = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(unavailable(err));
                }
                let status = info.status.unwrap_or_default();
                // Per-layer progress repeats many times a second; log each change of phase.
                if status != last_status {
                    tracing::info!(image = %reference, layer = info.id.as_deref().unwrap_or(""), %status, "pull progress");
                    last_status = status;
                }
            }
            Err(e) => {
                return Err(match from_bollard(e) {
                    ContainerError::DockerUnavailable(m) => ContainerError::DockerUnavailable(m),
                    other => unavailable(other.to_string()),
                })
            }
        }
    }
    // The stream can end "successfully" without the image (e.g. an odd registry answer).
    docker
        .inspect_image(&reference)
        .await
        .map(|_| ())
        .map_err(|e| unavailable(format!("the pull finished but the image is missing: {e}")))
}

/// Serializes network creation within this process: the engines we support (API < 1.44)
/// happily create two networks with the same name when asked concurrently.
static NETWORK_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Docker's bridge option that turns traffic between containers of one network off.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// The id of the bridge network `name`, created if missing, with inter-container traffic
/// off and, when `internal`, no route out of the host. Should another process have raced
/// us into a duplicate, the oldest network wins everywhere (and the others are removed when
/// unused), so all containers still share one network. A network of that name that is not
/// isolated as asked (made by an older version, or by hand) is replaced when unused and
/// refused when in use: joining it would silently give containers more than they may have.
pub(crate) async fn ensure_network(
    docker: &Docker,
    name: &str,
    internal: bool,
) -> Result<String, ContainerError> {
    let _guard = NETWORK_LOCK.lock().await;
    let mut found = networks_named(docker, name).await?;
    if let Some((_, id)) = found.first() {
        let info = docker
            .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .map_err(from_bollard)?;
        let icc_off = info
            .options
            .as_ref()
            .and_then(|o| o.get(ICC_OPTION))
            .is_some_and(|v| v == "false");
        if info.internal.unwrap_or(false) != internal || !icc_off {
            if docker.remove_network(id).await.is_err() {
                return Err(ContainerError::Docker(format!(
                    "network {name} exists without the isolation ForgeHook containers need \
                     (internal={internal}, inter-container traffic off) and is in use; \
                     remove it with `docker network rm {name}` once its containers are gone"
                )));
            }
            tracing::warn!(network = %name, "replaced a network that was not isolated");
            found = networks_named(docker, name).await?;
        }
    }
    if found.is_empty() {
        let labels = HashMap::from([("leforge.managed".to_string(), "true".to_string())]);
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(internal),
            options: Some(HashMap::from([(
                ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(labels),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => tracing::info!(network = %name, internal, "created network"),
            // Created meanwhile by another process: fine, use it.
            Err(e) if docker_status(&e) == Some(409) => {}
            Err(e) => return Err(from_bollard(e)),
        }
        found = networks_named(docker, name).await?;
    }
    let Some((_, id)) = found.first().cloned() else {
        return Err(ContainerError::Docker(format!(
            "network {name} vanished right after its creation"
        )));
    };
    for (_, dup) in found.iter().skip(1) {
        if docker.remove_network(dup).await.is_ok() {
            tracing::warn!(network = %name, id = %dup, "removed a duplicate network");
        }
    }
    Ok(id)
}

/// (created, id) of the networks named exactly `name`, oldest first. The name filter of the
/// API matches substrings, hence the second check.
async fn networks_named(
    docker: &Docker,
    name: &str,
) -> Result<Vec<(String, String)>, ContainerError> {
    let filters = HashMap::from([("name", vec![name])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let mut found: Vec<(String, String)> = docker
        .list_networks(Some(options))
        .await
        .map_err(from_bollard)?
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| Some((n.created.map(|c| c.to_string()).unwrap_or_default(), n.id?)))
        .collect();
    found.sort();
    Ok(found)
}

/// All containers (running or not) carrying every one of `labels`.
pub(crate) async fn list_labelled(
    docker: &Docker,
    labels: &[(&str, &str)],
) -> Result<Vec<bollard::models::ContainerSummary>, ContainerError> {
    let label_filters: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let filters = HashMap::from([("label".to_string(), label_filters)]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .map_err(from_bollard)
}

/// Removes a container whatever its state; one that is already gone is not an error.
pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), ContainerError> {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if docker_status(&e) == Some(404) => Ok(()),
        // 409: removal already in progress — it is going away either way.
        Err(e) if docker_status(&e) == Some(409) => Ok(()),
        Err(e) => Err(from_bollard(e)),
    }
}
