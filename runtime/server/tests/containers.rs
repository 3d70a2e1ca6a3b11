//! Container and gateway ForgeHooks through the server: installed over HTTP, invoked
//! directly and from agent runs (fake provider), on the real Docker engine.
//!
//! Without a reachable engine the Docker tests print `SKIP …` and pass, unless
//! `LEFORGE_REQUIRE_DOCKER=1` (CI), where they fail. Gateway and no-Docker tests always run.
//! Each test fixes its own instance id (the `leforge.instance` label), so parallel tests never
//! touch each other's containers, and removes its containers when it ends, even on panic.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Reply, TestApp};
use leforge_container::testing::{docker_ready, example_image, example_manifest};
use leforge_core::tool::ToolExecutor;
use leforge_fake_provider::{FakeProvider, Script};
use leforge_server::forgehooks::INSTANCE_ID_FILE;
use serde_json::{json, Value};

/// Generous: a cold image build or a slow, shared machine must not fail a test.
const DEADLINE: Duration = Duration::from_secs(120);

/// Removes every container of one test's instance when dropped, even after a panic.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in containers_of(&self.0, None) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &id])
                .output();
        }
    }
}

/// Ids of the containers (running or not) labelled with `instance` (and `forgehook`).
fn containers_of(instance: &str, forgehook: Option<&str>) -> Vec<String> {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=leforge.instance={instance}"));
    if let Some(f) = forgehook {
        cmd.arg("--filter")
            .arg(format!("label=leforge.forgehook={f}"));
    }
    let out = cmd.output().expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn docker_inspect(cid: &str) -> Option<Value> {
    let out = std::process::Command::new("docker")
        .args(["inspect", cid])
        .output()
        .expect("docker inspect");
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.get(0).cloned()
}

fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fixes the app's instance id before anything uses the container runtime (it reads the id
/// from the data directory on first use), and returns the guard that removes its containers.
async fn own_instance(t: &TestApp, test: &str) -> (String, Cleanup) {
    let id = format!("t-{test}-{}-{}", t.backend, std::process::id());
    std::fs::write(t.data_dir.path().join(INSTANCE_ID_FILE), &id).unwrap();
    (id.clone(), Cleanup(id))
}

async fn install(t: &TestApp, manifest: &Value) -> Reply {
    t.admin_post("/api/v1/forgehooks", manifest.clone()).await
}

async fn invoke(t: &TestApp, id: &str, endpoint: &str, input: Value) -> Reply {
    t.admin_post(&format!("/api/v1/forgehooks/{id}/invoke/{endpoint}"), input)
        .await
}

fn container_id(t: &TestApp, id: &str) -> String {
    t.state
        .forgehooks
        .http()
        .container_status(id)
        .and_then(|s| s.container_id)
        .expect("a container")
}

/// Polls `GET /forgehooks/{id}` until `pred` holds for its `container`.
async fn wait_container(t: &TestApp, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let r = t.admin_get(&format!("/api/v1/forgehooks/{id}")).await;
        let c = r.body["data"]["container"].clone();
        if pred(&c) {
            return c;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_forgehook_installs_runs_locked_down_and_uninstalls() {
    if !docker_ready("container_forgehook_installs_runs_locked_down_and_uninstalls").await {
        return;
    }
    example_image();
    for db in leforge_store::testing::all().await {
        let t = TestApp::new(db).await;
        let (instance, _cleanup) = own_instance(&t, "basic").await;
        let mut manifest = example_manifest();
        manifest["environment"] = json!([{"name": "GREETING", "secret": true}]);

        // Bad manifests: every problem, each under its field.
        let mut bad = manifest.clone();
        bad["port"] = json!(0);
        bad["image"]["repository"] = json!("Not Valid");
        bad["endpoints"][0]["path"] = json!("no-slash");
        let r = install(&t, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.code(), "VALIDATION_ERROR");
        let fields: Vec<&str> = r.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        for f in ["port", "image.repository", "endpoints[0].path"] {
            assert!(fields.contains(&f), "{f} missing in {fields:?}");
        }
        let r = t
            .raw(
                Request::post("/api/v1/forgehooks")
                    .header("x-api-key", &t.admin_key)
                    .header("content-type", "application/json")
                    .body(Body::from("{not json"))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["error"]["details"][0]["field"], "manifest");

        // Install: created and started (on_install) before the answer.
        let r = install(&t, &manifest).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let hook = &r.body["data"];
        assert_eq!(hook["runtime"], "container");
        assert_eq!(hook["container"]["state"], "running", "{hook}");
        assert_eq!(hook["container"]["restarts"], 0);
        assert_eq!(hook["container"]["last_error"], Value::Null);
        assert_eq!(hook["endpoints"][0]["name"], "text_stats");
        assert_eq!(hook["endpoints"][0]["method"], "POST");
        assert_eq!(hook["endpoints"][0]["path"], "/v1/text/stats");
        assert!(hook["endpoints"][0].get("schema").is_none(), "{hook}");
        assert_eq!(hook["wasm_sha256"], Value::Null);
        let r = install(&t, &manifest).await;
        assert_eq!(
            r.status,
            StatusCode::CONFLICT,
            "same version again: {}",
            r.body
        );

        // Persisted: listed with its container.
        let r = t.admin_get("/api/v1/forgehooks").await;
        let listed = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == "container-example")
            .cloned()
            .expect("listed");
        assert_eq!(listed["container"]["state"], "running");
        let stored = t
            .store
            .get_forgehook("container-example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.manifest.base_path, "/api");
        assert_eq!(stored.manifest.image.unwrap().tag, "0.1.0");

        // Invoke: the basePath is kept (the binary serves only under /api).
        let r = invoke(
            &t,
            "container-example",
            "text_stats",
            json!({"text": "hello big world\nline two"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.body["data"]["output"],
            json!({"characters": 24, "words": 5, "lines": 2})
        );
        let r = invoke(&t, "container-example", "text_stats", json!({"text": 3})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "INVALID_INPUT");
        let r = invoke(&t, "container-example", "nope", json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Locked down as the issue says.
        let cid = container_id(&t, "container-example");
        let info = docker_inspect(&cid).expect("container exists");
        let hc = &info["HostConfig"];
        assert_eq!(hc["Memory"], 32 * 1024 * 1024);
        assert_eq!(hc["NanoCpus"], 500_000_000);
        assert_eq!(hc["PidsLimit"], 16);
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["CapDrop"], json!(["ALL"]));
        assert!(hc["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "no-new-privileges"));
        assert!(hc["Tmpfs"]["/tmp"].is_string(), "{}", hc["Tmpfs"]);
        assert!(
            hc["PortBindings"].is_null() || hc["PortBindings"] == json!({}),
            "no published ports: {}",
            hc["PortBindings"]
        );
        let labels = &info["Config"]["Labels"];
        assert_eq!(labels["leforge.forgehook"], "container-example");
        assert_eq!(labels["leforge.instance"], instance.as_str());
        assert!(info["NetworkSettings"]["Networks"]["leforge-forgehooks"].is_object());

        // Configuration: the environment variable is a key; the secret is masked, and the
        // container is replaced with it.
        let r = t
            .call(
                Method::PUT,
                "/api/v1/forgehooks/container-example/config",
                Some(&t.admin_key.clone()),
                Some(json!({"GREETING": "hi there"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["config"]["GREETING"], "********");
        assert!(!r.body.to_string().contains("hi there"));
        let new_cid = container_id(&t, "container-example");
        assert_ne!(new_cid, cid, "a new environment means a new container");
        let env = docker_inspect(&new_cid).unwrap()["Config"]["Env"].clone();
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .any(|e| e == "GREETING=hi there"),
            "{env}"
        );
        assert!(
            docker_inspect(&cid).is_none(),
            "the old container is removed"
        );
        let r = t
            .call(
                Method::PUT,
                "/api/v1/forgehooks/container-example/config",
                Some(&t.admin_key.clone()),
                Some(json!({"COLOUR": "red"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "COLOUR");

        // Disable removes the container; enable brings it back (on_install).
        let r = t
            .admin_post("/api/v1/forgehooks/container-example/disable", json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(containers_of(&instance, Some("container-example")).is_empty());
        let r = invoke(&t, "container-example", "text_stats", json!({"text": "x"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        let r = t
            .admin_post("/api/v1/forgehooks/container-example/enable", json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = invoke(
            &t,
            "container-example",
            "text_stats",
            json!({"text": "a b"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["output"]["words"], 2);

        // Health reports the engine.
        let r = t.get("/api/v1/health", None).await;
        assert_eq!(r.body["data"]["docker"], "available");
        assert_eq!(r.body["docker"], "available");

        // Uninstall removes the container.
        let cid = container_id(&t, "container-example");
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/forgehooks/container-example",
                Some(&t.admin_key.clone()),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(docker_inspect(&cid).is_none(), "container removed");
        assert!(containers_of(&instance, None).is_empty());
        let r = t.admin_get("/api/v1/forgehooks/container-example").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

/// A container killed during a call: the step fails as UNAVAILABLE (transient), the next
/// call restarts it, and `container.restarts` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_run_uses_the_container_and_survives_a_kill_mid_call() {
    if !docker_ready("agent_run_uses_the_container_and_survives_a_kill_mid_call").await {
        return;
    }
    example_image();
    let fake = FakeProvider::start().await;
    let t = TestApp::with_llm(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .await;
    let (_instance, _cleanup) = own_instance(&t, "kill").await;
    let r = install(&t, &example_manifest()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let agent = t
        .create_agent(json!({
            "name": "Counter",
            "system_prompt": "You count words.",
            "provider": "anthropic",
            "model": "claude-sonnet",
            "tools": ["container-example"],
            // The step must show the failure rather than hide it behind a retry.
            "config": {"retry_on_error": false},
        }))
        .await;
    let slug = agent["slug"].as_str().unwrap().to_string();

    // A plain run first: tool call, result, final answer.
    fake.push(Script::tool_call(
        "container-example__text_stats",
        json!({"text": "one two three"}),
    ));
    fake.push(Script::text("{\"words\": 3}"));
    let r = t
        .admin_post(
            &format!("/api/v1/agents/{slug}/run"),
            json!({"input": "count"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["steps"][0]["tool"], "container-example");
    assert_eq!(run["steps"][0]["action"], "text_stats");
    assert_eq!(
        run["steps"][0]["output"],
        json!({"characters": 13, "words": 3, "lines": 1})
    );
    assert_eq!(run["output"], json!({"words": 3}));
    let offered = fake.accepted()[0].body["tools"].to_string();
    assert!(offered.contains("container-example__slow"), "{offered}");

    // Now kill the container while `slow` runs.
    fake.push(Script::tool_call(
        "container-example__slow",
        json!({"ms": 60000}),
    ));
    fake.push(Script::tool_call(
        "container-example__text_stats",
        json!({"text": "after the crash"}),
    ));
    fake.push(Script::text("{\"ok\": true}"));
    let app = t.app.clone();
    let key = t.admin_key.clone();
    let run = tokio::spawn({
        let slug = slug.clone();
        async move {
            use tower::ServiceExt;
            let req = Request::post(format!("/api/v1/agents/{slug}/run"))
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(Body::from(json!({"input": "be slow"}).to_string()))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    });
    let start = std::time::Instant::now();
    let cid = loop {
        let status = t
            .state
            .forgehooks
            .http()
            .container_status("container-example")
            .unwrap();
        if status.in_flight > 0 {
            break status.container_id.unwrap();
        }
        assert!(start.elapsed() < DEADLINE, "the slow call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The call is in flight; give the request a moment to reach the container.
    tokio::time::sleep(Duration::from_millis(300)).await;
    docker(&["kill", &cid]);
    let (status, body) = tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let steps = body["data"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{body}");
    let err = steps[0]["error"].as_str().unwrap_or_default();
    // Either way an UNAVAILABLE tool error (transient, so retry_on_error would retry it).
    assert!(
        err.contains("exited") || err.contains("could not be reached"),
        "{body}"
    );
    assert_eq!(steps[0]["output"], Value::Null);
    assert_eq!(
        steps[1]["output"],
        json!({"characters": 15, "words": 3, "lines": 1})
    );
    let c = wait_container(&t, "container-example", "running", |c| {
        c["state"] == "running"
    })
    .await;
    assert_eq!(c["restarts"], 1, "{c}");
    assert!(
        c["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("exited"),
        "{c}"
    );
    assert_ne!(container_id(&t, "container-example"), String::new());
}

/// `idle_stop_after_s`: stopped after the idle time (not counted as a restart), started
/// again by the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_container_stops_and_the_next_call_starts_it() {
    if !docker_ready("idle_container_stops_and_the_next_call_starts_it").await {
        return;
    }
    example_image();
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let (_instance, _cleanup) = own_instance(&t, "idle").await;
    let mut manifest = example_manifest();
    manifest["id"] = json!("idle-example");
    manifest["lifecycle"] = json!({"start": "on_demand", "idle_stop_after_s": 1});
    let r = install(&t, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["data"]["container"]["state"], "created",
        "on_demand: not started by the install"
    );
    let r = invoke(&t, "idle-example", "text_stats", json!({"text": "x"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cid = container_id(&t, "idle-example");
    wait_container(&t, "idle-example", "idle stop", |c| c["state"] == "stopped").await;
    assert_eq!(docker_inspect(&cid).unwrap()["State"]["Running"], false);
    let r = invoke(&t, "idle-example", "text_stats", json!({"text": "y z"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"]["words"], 2);
    let r = t.admin_get("/api/v1/forgehooks/idle-example").await;
    assert_eq!(r.body["data"]["container"]["state"], "running");
    assert_eq!(
        r.body["data"]["container"]["restarts"], 0,
        "idle stops are not crashes"
    );
}

/// A restarted server (same database, new process state) adopts its running container and
/// removes containers of its instance that no installed ForgeHook owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_reconciles_containers() {
    if !docker_ready("restart_reconciles_containers").await {
        return;
    }
    example_image();
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let (instance, _cleanup) = own_instance(&t, "restart").await;
    let r = install(&t, &example_manifest()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let kept = container_id(&t, "container-example");
    // A second one whose record disappears behind the registry's back: its container is
    // a leftover the next start must remove.
    let mut stray = example_manifest();
    stray["id"] = json!("stray-example");
    let r = install(&t, &stray).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let stray_cid = container_id(&t, "stray-example");
    t.store.delete_forgehook("stray-example").await.unwrap();

    let restarted =
        leforge_server::AppState::build(t.store.clone(), (*t.state.config).clone()).unwrap();
    assert_eq!(restarted.forgehooks.load_installed().await.unwrap(), 1);
    assert!(docker_inspect(&stray_cid).is_none(), "leftover removed");
    let status = restarted
        .forgehooks
        .http()
        .container_status("container-example")
        .unwrap();
    assert_eq!(
        status.container_id.as_deref(),
        Some(kept.as_str()),
        "adopted"
    );
    let out = restarted
        .forgehooks
        .invoke(
            "container-example",
            "text_stats",
            json!({"text": "still here"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output["words"], 2);
    let status = restarted
        .forgehooks
        .http()
        .container_status("container-example")
        .unwrap();
    assert_eq!(status.container_id.as_deref(), Some(kept.as_str()));
    assert_eq!(status.restarts, 0);
    assert_eq!(containers_of(&instance, None), vec![kept]);
    assert_eq!(
        leforge_server::forgehooks::instance_id(t.data_dir.path()).unwrap(),
        instance,
        "the instance id is stable"
    );
}

/// LeForge upstream's container manifest: no runtime, names or schemas; `hostPort` ignored;
/// its resources in upstream units.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_container_manifest_is_accepted_with_schema_missing() {
    if !docker_ready("upstream_container_manifest_is_accepted_with_schema_missing").await {
        return;
    }
    example_image();
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let (_instance, _cleanup) = own_instance(&t, "upstream").await;
    let manifest = json!({
        "id": "upstream-stats",
        "name": "Upstream stats",
        "version": "1.0.0",
        "description": "An upstream-format manifest",
        "image": {"repository": "leforge/container-example", "tag": "0.1.0"},
        "port": 8080,
        "hostPort": 18080,
        "basePath": "/api",
        "healthCheck": {"path": "/health", "interval": "200ms", "timeout": "1s", "retries": 100},
        "resources": {"memory": "64m", "cpu": "0.25"},
        "endpoints": [
            {"method": "POST", "path": "/v1/text/stats"},
            {"method": "POST", "path": "/v1/slow", "description": "Sleeps"}
        ]
    });
    let r = install(&t, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let eps = r.body["data"]["endpoints"].as_array().unwrap().clone();
    assert_eq!(eps[0]["name"], "text_stats");
    assert_eq!(eps[0]["schema"], "missing");
    assert_eq!(eps[1]["name"], "slow");
    assert_eq!(eps[1]["schema"], "missing");
    let r = t.admin_get("/api/v1/forgehooks/upstream-stats").await;
    assert_eq!(r.body["data"]["endpoints"][0]["schema"], "missing");
    assert_eq!(r.body["data"]["runtime"], "container");
    let r = invoke(&t, "upstream-stats", "text_stats", json!({"text": "a b c"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"]["words"], 3);
    let info = docker_inspect(&container_id(&t, "upstream-stats")).unwrap();
    assert_eq!(info["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(info["HostConfig"]["NanoCpus"], 250_000_000);
    assert_eq!(info["HostConfig"]["PidsLimit"], 128, "the server default");
}

/// What the gateway test's service saw.
#[derive(Default)]
struct Seen {
    auth: Vec<String>,
}

/// A gateway ForgeHook in front of a local axum service: header placeholders come from the
/// (secret) configuration, the base URL's prefix is kept, errors carry status and message.
#[tokio::test]
async fn gateway_forgehook_calls_a_local_http_service() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Seen::default()));
    let service = axum::Router::new()
        .route(
            "/svc/v2/upper",
            post({
                let seen = seen.clone();
                move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().auth.push(auth);
                    axum::Json(json!({"upper": body["text"].as_str().unwrap_or("").to_uppercase()}))
                }
            }),
        )
        .route(
            "/svc/v2/fail",
            post(|| async {
                (
                    StatusCode::IM_A_TEAPOT,
                    axum::Json(json!({"message": "short and stout"})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let fake = FakeProvider::start().await;
    let t = TestApp::with_llm(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .await;
    let mut manifest = json!({
        "id": "upper-gw",
        "name": "Upper gateway",
        "version": "1.0.0",
        "runtime": "gateway",
        "gateway": {
            "baseUrl": format!("http://{addr}/svc"),
            "headers": {"Authorization": "Bearer ${TOKEN}"},
            "timeout_ms": 5000,
            "retries": 1
        },
        "capabilities": {"config": [{"name": "TOKEN", "secret": true, "required": true}]},
        "endpoints": [
            {"name": "upper", "description": "Uppercases text", "method": "POST", "path": "/v2/upper",
             "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
             "output_schema": {"type": "object"}},
            {"name": "fail", "description": "Always fails", "path": "/v2/fail",
             "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
        ]
    });
    // A placeholder no configuration key could fill is refused up front.
    let mut undeclared = manifest.clone();
    undeclared["gateway"]["headers"]["X-Other"] = json!("${NOPE}");
    let r = install(&t, &undeclared).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        r.body["error"]["details"][0]["field"],
        "gateway.headers.X-Other"
    );

    let r = install(&t, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["runtime"], "gateway");
    assert!(r.body["data"].get("container").is_none());
    // Installed, but not callable until its required secret is configured.
    let r = invoke(&t, "upper-gw", "upper", json!({"text": "hi"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.code(), "UNAVAILABLE");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TOKEN"));
    let r = t
        .call(
            Method::PUT,
            "/api/v1/forgehooks/upper-gw/config",
            Some(&t.admin_key.clone()),
            Some(json!({"TOKEN": "s3cret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["config"]["TOKEN"], "********");

    let r = invoke(&t, "upper-gw", "upper", json!({"text": "hi there"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"], json!({"upper": "HI THERE"}));
    assert_eq!(seen.lock().unwrap().auth, ["Bearer s3cret"]);
    let r = invoke(&t, "upper-gw", "fail", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "GUEST_ERROR");
    assert_eq!(r.body["error"]["details"]["guest_code"], "HTTP_418");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("short and stout"));

    // From an agent run.
    let agent = t
        .create_agent(json!({
            "name": "Shouter",
            "system_prompt": "You shout.",
            "provider": "anthropic",
            "model": "claude-sonnet",
            "tools": ["upper-gw"],
        }))
        .await;
    fake.push(Script::tool_call(
        "upper-gw__upper",
        json!({"text": "quiet"}),
    ));
    fake.push(Script::text("{\"said\": \"QUIET\"}"));
    let r = t
        .admin_post(
            &format!("/api/v1/agents/{}/run", agent["slug"].as_str().unwrap()),
            json!({"input": "shout quiet"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["data"]["steps"][0]["output"],
        json!({"upper": "QUIET"})
    );
    assert_eq!(r.body["data"]["output"], json!({"said": "QUIET"}));

    // A gateway that does not answer is UNAVAILABLE (transient), not a server error.
    manifest["version"] = json!("1.1.0");
    manifest["gateway"]["baseUrl"] = json!("http://127.0.0.1:9/svc");
    let r = install(&t, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["upgraded_from"], "1.0.0");
    assert_eq!(
        r.body["data"]["config"]["TOKEN"], "********",
        "kept on upgrade"
    );
    let r = invoke(&t, "upper-gw", "upper", json!({"text": "x"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.code(), "UNAVAILABLE");

    let r = t
        .call(
            Method::DELETE,
            "/api/v1/forgehooks/upper-gw",
            Some(&t.admin_key.clone()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = invoke(&t, "upper-gw", "upper", json!({"text": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

/// No engine at the configured DOCKER_HOST: container installs are 503 DOCKER_UNAVAILABLE,
/// health says so without being degraded, and everything else works.
#[tokio::test]
async fn without_docker_container_installs_are_503_and_the_rest_works() {
    let dead = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}", dead.path().join("docker.sock").display());
    let t = TestApp::with_settings(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::default(),
        |c| c.docker_host = Some(socket.clone()),
    )
    .await;
    let r = t.get("/api/v1/health", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["docker"], "unavailable");
    assert_eq!(r.body["status"], "ok");

    let r = install(&t, &example_manifest()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.code(), "DOCKER_UNAVAILABLE");
    assert!(!r.body.to_string().contains("docker.sock"), "no host paths");
    let r = t.admin_get("/api/v1/forgehooks/container-example").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was recorded");

    // Bad input is still 400 before Docker is asked.
    let mut bad = example_manifest();
    bad["port"] = json!(0);
    let r = install(&t, &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // Gateways need no engine.
    let r = install(
        &t,
        &json!({
            "id": "gw-only", "name": "Gateway", "version": "1.0.0", "runtime": "gateway",
            "gateway": {"baseUrl": "http://127.0.0.1:9"},
            "endpoints": [{"name": "ping", "description": "Ping", "path": "/ping",
                           "input_schema": {"type": "object"}, "output_schema": {}}]
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t.admin_get("/api/v1/forgehooks").await;
    assert_eq!(r.status, StatusCode::OK);
    // Start-up without an engine loads what it can.
    let restarted =
        leforge_server::AppState::build(t.store.clone(), (*t.state.config).clone()).unwrap();
    assert_eq!(restarted.forgehooks.load_installed().await.unwrap(), 1);
}
