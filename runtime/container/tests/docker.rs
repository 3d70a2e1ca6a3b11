//! The container and gateway runtimes against the real Docker engine. Without a reachable
//! engine the Docker tests print `SKIP …` and pass, unless
//! `LEFORGE_REQUIRE_DOCKER=1` (CI), where they fail.
//!
//! Each test uses its own instance id, so containers never collide and cleanup (also on
//! panic) removes exactly what the test created. The network `leforge-forgehooks` and the
//! image `leforge/container-example:0.1.0` are shared and reused by name.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use leforge_container::testing::{docker_ready, example_image, example_manifest};
use leforge_container::{
    ContainerRuntime, ContainerRuntimeConfig, ContainerState, ContainerStatus, GatewayRuntime,
};
use leforge_core::forgehook::Manifest;
use leforge_core::tool::{ToolErrorCode, ToolExecutor};
use serde_json::{json, Value};

/// Generous: a cold image build or a slow CI machine must not fail a test.
const DEADLINE: Duration = Duration::from_secs(120);

fn manifest(value: Value) -> Manifest {
    let m = Manifest::from_json(&value.to_string()).unwrap();
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    m
}

/// Removes every container of one test's instance when dropped, even after a panic.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=leforge.instance={}", self.0))
            .output();
        if let Ok(out) = out {
            let ids = String::from_utf8_lossy(&out.stdout).to_string();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

fn instance(test: &str) -> (String, Cleanup) {
    let id = format!("test-{test}-{}", std::process::id());
    (id.clone(), Cleanup(id))
}

fn runtime(instance: &str) -> ContainerRuntime {
    let mut config = ContainerRuntimeConfig::new(instance);
    config.idle_check_interval = Duration::from_millis(200);
    ContainerRuntime::new(config).unwrap()
}

async fn wait_for(
    rt: &ContainerRuntime,
    id: &str,
    what: &str,
    pred: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let start = std::time::Instant::now();
    loop {
        let status = rt.status(id).expect("loaded");
        if pred(&status) {
            return status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn inspect(docker: &Docker, cid: &str) -> Option<bollard::models::ContainerInspectResponse> {
    match docker.inspect_container(cid, None).await {
        Ok(i) => Some(i),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => panic!("inspect failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_invoke_inspect_and_uninstall() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("basic");
    let rt = runtime(&inst);
    assert!(rt.docker_available().await);
    let status = rt
        .install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap();
    assert_eq!(status.state, ContainerState::Running, "{status:?}");

    let out = rt
        .invoke(
            "container-example",
            "text_stats",
            json!({"text": "hello big world\nline two"}),
        )
        .await
        .unwrap();
    assert_eq!(
        out.output,
        json!({"characters": 24, "words": 5, "lines": 2})
    );
    let out = rt
        .invoke("container-example", "slow", json!({"ms": 10}))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"slept_ms": 10}));
    let err = rt
        .invoke("container-example", "text_stats", json!({"text": 3}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput, "{err}");
    let err = rt
        .invoke("container-example", "nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);

    let docker = rt.docker().await.unwrap();
    let cid = rt
        .status("container-example")
        .unwrap()
        .container_id
        .unwrap();
    let info = inspect(&docker, &cid).await.unwrap();
    let hc = info.host_config.unwrap();
    assert_eq!(hc.memory, Some(32 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.pids_limit, Some(16));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")));
    assert!(hc.tmpfs.unwrap_or_default().contains_key("/tmp"));
    assert!(hc
        .port_bindings
        .unwrap_or_default()
        .values()
        .all(|b| b.as_ref().is_none_or(|b| b.is_empty())));
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(labels["leforge.forgehook"], "container-example");
    assert_eq!(labels["leforge.instance"], inst);
    let networks = info.network_settings.unwrap().networks.unwrap();
    assert!(networks.contains_key("leforge-forgehooks"), "{networks:?}");

    assert!(rt.uninstall("container-example").await.unwrap());
    assert!(
        inspect(&docker, &cid).await.is_none(),
        "container still exists"
    );
    assert!(rt.status("container-example").is_none());
    let err = rt
        .invoke("container-example", "text_stats", json!({"text": ""}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);
}

/// Whether network `name` is internal, and whether traffic between its containers is off.
async fn isolation_of(docker: &Docker, name: &str) -> (bool, bool) {
    let info = docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    let icc_off = info
        .options
        .unwrap_or_default()
        .get("com.docker.network.bridge.enable_icc")
        .is_some_and(|v| v == "false");
    (info.internal.unwrap_or(false), icc_off)
}

/// The networks the example ForgeHook's container is attached to.
async fn networks_of(docker: &Docker, rt: &ContainerRuntime) -> Vec<String> {
    let cid = rt
        .status("container-example")
        .unwrap()
        .container_id
        .unwrap();
    let info = inspect(docker, &cid).await.unwrap();
    let networks = info.network_settings.unwrap().networks.unwrap();
    networks.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containers_get_no_egress_unless_asked_and_allowed() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let docker = Docker::connect_with_local_defaults().unwrap();
    let (inst, _cleanup) = instance("egress");

    // Default: internal network, no traffic between containers; the server still calls it.
    let rt = runtime(&inst);
    rt.install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap();
    let out = rt
        .invoke("container-example", "text_stats", json!({"text": "a b"}))
        .await
        .unwrap();
    assert_eq!(out.output["words"], 2);
    assert_eq!(
        isolation_of(&docker, "leforge-forgehooks").await,
        (true, true)
    );
    assert_eq!(networks_of(&docker, &rt).await, ["leforge-forgehooks"]);
    rt.uninstall("container-example").await.unwrap();

    // Asking for hosts without the operator's consent is refused, naming the field.
    let mut asks = example_manifest();
    asks["capabilities"]["allowed_hosts"] = json!(["https://api.example.com"]);
    let err = rt
        .install(manifest(asks.clone()), &HashMap::new())
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("capabilities.allowed_hosts"), "{text}");
    assert!(rt.status("container-example").is_none());

    // Allowed: the routed egress network, still without inter-container traffic.
    let mut config = ContainerRuntimeConfig::new(&inst);
    config.allow_egress = true;
    let rt = ContainerRuntime::new(config).unwrap();
    rt.install(manifest(asks), &HashMap::new()).await.unwrap();
    let out = rt
        .invoke("container-example", "text_stats", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(out.output["characters"], 1);
    assert_eq!(
        isolation_of(&docker, "leforge-forgehooks-egress").await,
        (false, true)
    );
    assert_eq!(
        networks_of(&docker, &rt).await,
        ["leforge-forgehooks-egress"]
    );
    rt.uninstall("container-example").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resources_are_capped_by_the_server() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("caps");
    let rt = runtime(&inst);
    let mut m = example_manifest();
    m["resources"] = json!({"memory_mb": 4096, "cpus": 8, "pids": 10000});
    m["lifecycle"] = json!({"start": "on_demand"});
    let status = rt.install(manifest(m), &HashMap::new()).await.unwrap();
    // On demand: created, not started.
    assert_eq!(status.state, ContainerState::Created, "{status:?}");
    let docker = rt.docker().await.unwrap();
    let hc = inspect(&docker, &status.container_id.unwrap())
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(hc.memory, Some(256 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(1_000_000_000));
    assert_eq!(hc.pids_limit, Some(128));
    // The first call starts it.
    let out = rt
        .invoke("container-example", "text_stats", json!({"text": "a"}))
        .await
        .unwrap();
    assert_eq!(out.output["characters"], 1);
    assert_eq!(
        rt.status("container-example").unwrap().state,
        ContainerState::Running
    );
    rt.uninstall("container-example").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_container_fails_the_call_and_the_next_call_restarts_it() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("kill");
    let rt = runtime(&inst);
    rt.install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap();
    let cid = rt
        .status("container-example")
        .unwrap()
        .container_id
        .unwrap();

    let rt2 = rt.clone();
    let call = tokio::spawn(async move {
        rt2.invoke("container-example", "slow", json!({"ms": 600000}))
            .await
    });
    wait_for(&rt, "container-example", "the call in flight", |s| {
        s.in_flight == 1
    })
    .await;
    let docker = rt.docker().await.unwrap();
    docker.kill_container(&cid, None).await.unwrap();
    let err = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the call must end when the container dies")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::Unavailable, "{err}");
    let status = wait_for(&rt, "container-example", "exited", |s| {
        s.state == ContainerState::Exited
    })
    .await;
    assert_eq!(status.restarts, 0);
    assert!(status.last_error.unwrap().contains("exited"));

    let out = rt
        .invoke("container-example", "text_stats", json!({"text": "back"}))
        .await
        .unwrap();
    assert_eq!(out.output["words"], 1);
    let status = rt.status("container-example").unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!(status.restarts, 1);
    assert_eq!(status.container_id.as_deref(), Some(cid.as_str()));
    rt.uninstall("container-example").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_container_is_stopped_and_started_by_the_next_call() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("idle");
    let rt = runtime(&inst);
    let mut m = example_manifest();
    m["lifecycle"] = json!({"start": "on_install", "idle_stop_after_s": 1});
    rt.install(manifest(m), &HashMap::new()).await.unwrap();
    rt.invoke("container-example", "text_stats", json!({"text": "x"}))
        .await
        .unwrap();
    let status = wait_for(&rt, "container-example", "idle stop", |s| {
        s.state == ContainerState::Stopped
    })
    .await;
    let docker = rt.docker().await.unwrap();
    let info = inspect(&docker, status.container_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(info.state.unwrap().running, Some(false));

    let out = rt
        .invoke("container-example", "text_stats", json!({"text": "again"}))
        .await
        .unwrap();
    assert_eq!(out.output["characters"], 5);
    let status = rt.status("container-example").unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!(status.restarts, 0, "an idle stop is not a crash");
    rt.uninstall("container-example").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_runtime_adopts_its_containers_and_removes_the_rest() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("reconcile");
    let first = runtime(&inst);
    first
        .install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap();
    let mut orphan = example_manifest();
    orphan["id"] = json!("container-orphan");
    orphan["lifecycle"] = json!({"start": "on_demand"});
    first
        .install(manifest(orphan), &HashMap::new())
        .await
        .unwrap();
    let kept = first
        .status("container-example")
        .unwrap()
        .container_id
        .unwrap();
    let orphan_cid = first
        .status("container-orphan")
        .unwrap()
        .container_id
        .unwrap();
    drop(first); // a server stopping leaves its containers running

    let second = runtime(&inst);
    second
        .load(manifest(example_manifest()), &HashMap::new())
        .unwrap();
    assert_eq!(
        second.status("container-example").unwrap().state,
        ContainerState::NotCreated
    );
    let report = second.reconcile().await.unwrap();
    assert_eq!(report.adopted, ["container-example"]);
    assert_eq!(report.removed, std::slice::from_ref(&orphan_cid));
    let docker = second.docker().await.unwrap();
    assert!(inspect(&docker, &orphan_cid).await.is_none());

    let out = second
        .invoke(
            "container-example",
            "text_stats",
            json!({"text": "adopted"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output["characters"], 7);
    let status = second.status("container-example").unwrap();
    assert_eq!(status.container_id.as_deref(), Some(kept.as_str()));
    assert_eq!(status.state, ContainerState::Running);
    second.uninstall("container-example").await.unwrap();
    assert!(inspect(&docker, &kept).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_manifest_runs_with_derived_names() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("upstream");
    let rt = runtime(&inst);
    // LeForge upstream's shape: no runtime, hostPort, unit strings, no names or schemas.
    let upstream = json!({
        "id": "container-upstream",
        "name": "Upstream-style example",
        "version": "0.1.0",
        "description": "The example image described the way upstream does.",
        "image": {"repository": "leforge/container-example", "tag": "0.1.0"},
        "port": 8080,
        "hostPort": 4010,
        "basePath": "/api",
        "healthCheck": {"path": "/health", "interval": "200ms", "timeout": "1s", "retries": 100},
        "resources": {"memory": "32m", "cpu": "0.25"},
        "endpoints": [
            {"method": "POST", "path": "/v1/text/stats", "description": "Text statistics"},
            {"method": "POST", "path": "/v1/slow", "description": "Sleep"}
        ]
    });
    let m = Manifest::from_json(&upstream.to_string()).unwrap();
    assert!(m.endpoints.iter().all(|e| e.schema_missing));
    let status = rt.install(m, &HashMap::new()).await.unwrap();
    assert_eq!(status.state, ContainerState::Running);
    let out = rt
        .invoke("container-upstream", "text_stats", json!({"text": "a b"}))
        .await
        .unwrap();
    assert_eq!(out.output["words"], 2);
    // No schema to stop bad input here: the service's 400 comes back with its message.
    let err = rt
        .invoke("container-upstream", "text_stats", json!({"text": 3}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::GuestError);
    assert_eq!(err.guest_code(), Some("HTTP_400"));
    assert!(
        err.to_string().contains("\"text\" must be a string"),
        "{err}"
    );
    let docker = rt.docker().await.unwrap();
    let hc = inspect(&docker, &status.container_id.unwrap())
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(hc.memory, Some(32 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(250_000_000));
    // hostPort is not published.
    assert!(hc
        .port_bindings
        .unwrap_or_default()
        .values()
        .all(|b| b.as_ref().is_none_or(|b| b.is_empty())));
    rt.uninstall("container-upstream").await.unwrap();
}

#[tokio::test]
async fn without_an_engine_installs_fail_as_docker_unavailable() {
    let mut config = ContainerRuntimeConfig::new("test-no-engine");
    config.docker_host = Some("unix:///nonexistent/leforge-docker.sock".into());
    let rt = ContainerRuntime::new(config).unwrap();
    assert!(!rt.docker_available().await);
    let err = rt
        .install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap_err();
    assert!(err.is_docker_unavailable(), "{err:?}");
    // An invalid manifest is reported as such before Docker is needed.
    let mut bad = example_manifest();
    bad["port"] = json!(0);
    let err = rt
        .install(
            Manifest::from_json(&bad.to_string()).unwrap(),
            &HashMap::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.is_client_error() && !err.is_docker_unavailable(),
        "{err:?}"
    );
    // Calls to a loaded ForgeHook fail as UNAVAILABLE, not as a crash.
    rt.load(manifest(example_manifest()), &HashMap::new())
        .unwrap();
    let err = rt
        .invoke("container-example", "text_stats", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::Unavailable, "{err}");
}

#[tokio::test]
async fn gateway_calls_a_local_http_server() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use axum::Json;

    let internal_hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/v2/echo",
            post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Json(json!({"echo": body, "token": token}))
            }),
        )
        .route(
            "/v2/fail",
            post(|| async {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"message": "nope"})),
                )
            }),
        )
        .route(
            "/v2/search",
            get(
                |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    Json(json!({"query": q}))
                },
            ),
        )
        .route("/v2/big", post(|| async { "x".repeat(100_000) }))
        // A service that bounces the host's request to a loopback service of the host.
        .route(
            "/v2/bounce",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "/v2/internal")],
                    "",
                )
            }),
        )
        .route(
            "/v2/internal",
            post({
                let hits = internal_hits.clone();
                move || async move {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Json(json!({"secret": true}))
                }
            }),
        )
        .route(
            "/v2/slow",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Json(json!({}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The server caps every call at 1.5 s, whatever the manifest's 10 s says.
    let gw = GatewayRuntime::new(1024 * 1024, 1500).unwrap();
    let m = Manifest::from_json(
        &json!({
            "id": "local-gateway", "name": "Local", "version": "1.0.0",
            "gateway": {"baseUrl": format!("http://127.0.0.1:{port}/v2"), "timeout": "10s",
                        "retries": 1, "headers": {"X-Token": "Bearer ${TOKEN}"}},
            "capabilities": {"limits": {"max_output_bytes": 1000}},
            "endpoints": [
                {"method": "POST", "path": "/echo", "description": "Echo"},
                {"method": "POST", "path": "/fail", "description": "Fails"},
                {"method": "GET", "path": "/search", "description": "Search"},
                {"method": "POST", "path": "/big", "description": "Too big"},
                {"method": "POST", "path": "/bounce", "description": "Redirects"},
                {"method": "POST", "path": "/slow", "description": "Slow"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    // The header needs TOKEN from the configuration.
    let err = gw.install(m.clone(), &HashMap::new()).unwrap_err();
    assert!(err.is_client_error(), "{err}");
    let config = HashMap::from([("TOKEN".to_string(), "t0k".to_string())]);
    gw.install(m, &config).unwrap();

    let out = gw
        .invoke("local-gateway", "echo", json!({"a": 1}))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"echo": {"a": 1}, "token": "Bearer t0k"}));
    let err = gw
        .invoke("local-gateway", "fail", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.guest_code(), Some("HTTP_422"));
    assert!(err.to_string().contains("nope"), "{err}");
    let out = gw
        .invoke("local-gateway", "search", json!({"q": "rust"}))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"query": "q=rust"}));
    let err = gw
        .invoke("local-gateway", "big", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::OutputTooLarge, "{err}");
    // A redirect is the answer, never followed: the body is not resent elsewhere.
    let err = gw
        .invoke("local-gateway", "bounce", json!({"card": "4242"}))
        .await
        .unwrap_err();
    assert_eq!(err.guest_code(), Some("HTTP_307"), "{err}");
    assert_eq!(internal_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The server's cap on a call's time wins over the manifest's.
    let err = gw
        .invoke("local-gateway", "slow", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        leforge_core::tool::ToolError::Timeout { timeout_ms: 1500 }
    );

    // A gateway nobody listens on: UNAVAILABLE after the retries.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead = Manifest::from_json(
        &json!({
            "id": "dead-gateway", "name": "Dead", "version": "1.0.0",
            "gateway": {"baseUrl": format!("http://127.0.0.1:{dead_port}"), "retries": 1},
            "endpoints": [{"method": "POST", "path": "/x", "description": "X"}]
        })
        .to_string(),
    )
    .unwrap();
    gw.install(dead, &HashMap::new()).unwrap();
    let err = gw.invoke("dead-gateway", "x", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::Unavailable, "{err}");
    assert!(gw.uninstall("dead-gateway"));
    assert!(!gw.is_loaded("dead-gateway"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_loopback_mode_calls_through_127_0_0_1() {
    if !docker_ready("docker").await {
        return;
    }
    example_image();
    let (inst, _cleanup) = instance("publish");
    let mut config = ContainerRuntimeConfig::new(&inst);
    config.access = leforge_container::ContainerAccess::PublishLoopback;
    let rt = ContainerRuntime::new(config).unwrap();
    let status = rt
        .install(manifest(example_manifest()), &HashMap::new())
        .await
        .unwrap();
    assert!(
        status
            .address
            .as_deref()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{status:?}"
    );
    let out = rt
        .invoke(
            "container-example",
            "text_stats",
            json!({"text": "via loopback"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output["words"], 2);
    let docker = rt.docker().await.unwrap();
    let bindings = inspect(&docker, &status.container_id.unwrap())
        .await
        .unwrap()
        .host_config
        .unwrap()
        .port_bindings
        .unwrap();
    let bound = bindings["8080/tcp"].clone().unwrap();
    assert!(
        bound
            .iter()
            .all(|b| b.host_ip.as_deref() == Some("127.0.0.1")),
        "{bound:?}"
    );
    rt.uninstall("container-example").await.unwrap();
}
