//! ForgeHook registry over HTTP with real components (built from tests/guests) on the real
//! wasmtime host, against both stores.

#[path = "support/harness.rs"]
mod harness;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Reply, TestApp};
use leforge_test_guests as guests;
use serde_json::{json, Value};

fn upload(t: &TestApp, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/forgehooks")
        .header("x-api-key", &t.admin_key)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

/// multipart/form-data with a `wasm` part and an optional `manifest` part.
fn multipart(t: &TestApp, wasm: &[u8], manifest: Option<&Value>) -> Request<Body> {
    let boundary = "leforge-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"x.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes());
    body.extend_from_slice(wasm);
    body.extend_from_slice(b"\r\n");
    if let Some(m) = manifest {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\nContent-Type: application/json\r\n\r\n{m}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    upload(
        t,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

async fn install_raw(t: &TestApp, wasm: Vec<u8>) -> Reply {
    t.raw(upload(t, "application/wasm", wasm)).await
}

async fn invoke(t: &TestApp, id: &str, endpoint: &str, input: Value) -> Reply {
    t.call(
        Method::POST,
        &format!("/api/v1/forgehooks/{id}/invoke/{endpoint}"),
        Some(&t.admin_key.clone()),
        Some(input),
    )
    .await
}

/// The manifest a component describes, for building overrides.
async fn described(t: &TestApp, wasm: &[u8]) -> Value {
    let prepared = t.state.forgehooks.wasm().prepare(wasm, None).await.unwrap();
    serde_json::to_value(&prepared.manifest).unwrap()
}

#[tokio::test]
async fn install_list_invoke_upgrade_and_remove() {
    for t in TestApp::all().await {
        let echo = guests::read(guests::ECHO);
        let r = install_raw(&t, echo.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let d = &r.body["data"];
        assert_eq!(d["id"], "echo");
        assert_eq!(d["runtime"], "wasm");
        assert_eq!(d["enabled"], true);
        assert_eq!(d["endpoints"][0]["name"], "echo");
        assert_eq!(d["endpoints"][0]["tool_name"], "echo__echo");
        assert!(d["endpoints"][0]["input_schema"]["properties"]["message"].is_object());
        assert_eq!(d["wasm_sha256"].as_str().unwrap().len(), 64);

        let list = t.get("/api/v1/forgehooks", None).await;
        assert_eq!(list.body["count"], 1);
        assert_eq!(list.body["data"][0]["id"], "echo");
        assert_eq!(
            t.get("/api/v1/forgehooks/echo", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            t.get("/api/v1/forgehooks/nope", None).await.status,
            StatusCode::NOT_FOUND
        );

        let r = invoke(
            &t,
            "echo",
            "echo",
            json!({"message": "hi", "data": {"n": 1}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.body["data"]["output"],
            json!({"message": "hi", "data": {"n": 1}})
        );
        assert!(r.body["data"]["duration_ms"].is_u64());

        let r = invoke(&t, "echo", "echo", json!({"data": 1})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "INVALID_INPUT");
        assert!(r.body["error"]["details"].to_string().contains("message"));
        assert_eq!(
            invoke(&t, "echo", "nope", json!({})).await.status,
            StatusCode::NOT_FOUND
        );
        let anon = t
            .call(
                Method::POST,
                "/api/v1/forgehooks/echo/invoke/echo",
                None,
                Some(json!({"message": "x"})),
            )
            .await;
        // Direct invoke bypasses agents' tool lists, hooks and limits: admin only.
        assert_eq!(anon.status, StatusCode::FORBIDDEN, "{}", anon.body);
        assert_eq!(anon.code(), "FORBIDDEN");
        let (_, invoke_key) = t.create_key("invoke").await;
        let keyed = t
            .call(
                Method::POST,
                "/api/v1/forgehooks/echo/invoke/echo",
                Some(&invoke_key),
                Some(json!({"message": "x"})),
            )
            .await;
        assert_eq!(keyed.status, StatusCode::FORBIDDEN, "{}", keyed.body);
        assert_eq!(keyed.code(), "FORBIDDEN");

        // Same version again: conflict. Higher version (manifest override): upgrade.
        let r = install_raw(&t, echo.clone()).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let mut manifest = described(&t, &echo).await;
        manifest["version"] = json!("2.0.0");
        let r = t.raw(multipart(&t, &echo, Some(&manifest))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["data"]["version"], "2.0.0");
        assert_eq!(r.body["data"]["upgraded_from"], "1.0.0");
        manifest["version"] = json!("1.5.0");
        let r = t.raw(multipart(&t, &echo, Some(&manifest))).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "downgrade refused");

        let r = t
            .call(
                Method::DELETE,
                "/api/v1/forgehooks/echo",
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            t.get("/api/v1/forgehooks/echo", None).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            invoke(&t, "echo", "echo", json!({"message": "x"}))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/forgehooks/echo",
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_uploads_are_rejected_with_reasons() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let r = install_raw(&t, b"\0asm not really".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"][0]["field"], "wasm");

    let r = install_raw(&t, guests::read(guests::OTHER_WORLD)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("leforge:forgehook"), "{msg}");

    let r = install_raw(&t, Vec::new()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = t
        .raw(upload(&t, "text/plain", guests::read(guests::ECHO)))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut bad = described(&t, &guests::read(guests::ECHO)).await;
    bad["id"] = json!("Not Valid");
    let r = t
        .raw(multipart(&t, &guests::read(guests::ECHO), Some(&bad)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["details"][0]["field"], "id");

    let (_, invoke_key) = t.create_key("invoke").await;
    let req = Request::post("/api/v1/forgehooks")
        .header("x-api-key", invoke_key)
        .header("content-type", "application/wasm")
        .body(Body::from(guests::read(guests::ECHO)))
        .unwrap();
    assert_eq!(t.raw(req).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        t.get("/api/v1/forgehooks", None).await.body["count"],
        0,
        "nothing installed"
    );
}

#[tokio::test]
async fn hostile_components_fail_with_precise_codes_while_others_proceed() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let hostile = guests::read(guests::HOSTILE);
    let mut manifest = described(&t, &hostile).await;
    // A short deadline keeps the infinite loop quick to stop, yet leaves the other hostile
    // calls (which end on their own, well before it) room on a loaded CI machine.
    manifest["capabilities"]["limits"]["timeout_ms"] = json!(5000);
    let r = t.raw(multipart(&t, &hostile, Some(&manifest))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        install_raw(&t, guests::read(guests::ECHO)).await.status,
        StatusCode::CREATED
    );

    let spin = invoke(&t, "hostile", "spin", json!({}));
    let echo = invoke(&t, "echo", "echo", json!({"message": "still here"}));
    let (spin, echo) = tokio::join!(spin, echo);
    assert_eq!(spin.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(spin.code(), "TIMEOUT");
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.body["data"]["output"]["message"], "still here");

    for (endpoint, input, status, code) in [
        (
            "memory_bomb",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "OUT_OF_MEMORY",
        ),
        (
            "big_output",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "OUTPUT_TOO_LARGE",
        ),
        ("panic", json!({}), StatusCode::UNPROCESSABLE_ENTITY, "TRAP"),
        (
            "recurse",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "TRAP",
        ),
        (
            "read_file",
            json!({"target": "/etc/passwd"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "GUEST_ERROR",
        ),
        (
            "fetch",
            json!({"target": "https://evil.example.org/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "GUEST_ERROR",
        ),
    ] {
        let r = invoke(&t, "hostile", endpoint, input).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{endpoint}: {}",
            r.body
        );
        assert!(!r.body.to_string().contains("root:x:0:0"), "nothing leaked");
    }
    assert_eq!(t.get("/api/v1/health", None).await.status, StatusCode::OK);
    let r = invoke(&t, "echo", "echo", json!({"message": "after"})).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn enable_disable_and_configuration_with_secrets() {
    for t in TestApp::all().await {
        assert_eq!(
            install_raw(&t, guests::read(guests::ECHO)).await.status,
            StatusCode::CREATED
        );
        let post = |path: &'static str| t.call(Method::POST, path, Some(&t.admin_key), None);
        let r = post("/api/v1/forgehooks/echo/disable").await;
        assert_eq!(r.body["data"]["enabled"], false);
        let r = invoke(&t, "echo", "echo", json!({"message": "x"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"));
        let r = post("/api/v1/forgehooks/echo/enable").await;
        assert_eq!(r.body["data"]["enabled"], true);
        assert_eq!(
            invoke(&t, "echo", "echo", json!({"message": "x"}))
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            post("/api/v1/forgehooks/nope/enable").await.status,
            StatusCode::NOT_FOUND
        );

        let put = |body: Value| {
            t.call(
                Method::PUT,
                "/api/v1/forgehooks/echo/config",
                Some(&t.admin_key),
                Some(body),
            )
        };
        let r = put(json!({"greeting": "hello", "token": "s3cret-value"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.body["data"]["config"],
            json!({"greeting": "hello", "token": "********"})
        );
        let r = invoke(&t, "echo", "config", json!({"key": "token"})).await;
        assert_eq!(
            r.body["data"]["output"]["value"], "s3cret-value",
            "the guest gets the secret"
        );
        let r = invoke(&t, "echo", "config", json!({"key": "undeclared"})).await;
        assert_eq!(r.body["data"]["output"]["value"], Value::Null);
        for path in ["/api/v1/forgehooks", "/api/v1/forgehooks/echo"] {
            assert!(!t
                .admin_get(path)
                .await
                .body
                .to_string()
                .contains("s3cret-value"));
        }
        // Sending the mask back keeps the secret.
        let r = put(json!({"greeting": "bye", "token": "********"})).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = invoke(&t, "echo", "config", json!({"key": "token"})).await;
        assert_eq!(r.body["data"]["output"]["value"], "s3cret-value");
        let r = put(json!({"colour": "red"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "colour");
        let r = put(json!({"greeting": 5})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn installed_forgehooks_survive_a_restart_and_reach_other_servers() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    assert_eq!(
        install_raw(&t, guests::read(guests::ECHO)).await.status,
        StatusCode::CREATED
    );

    // The same data dir: loaded from the precompiled cache.
    let same = leforge_server::AppState::build(t.store.clone(), (*t.state.config).clone()).unwrap();
    assert_eq!(same.forgehooks.load_installed().await.unwrap(), 1);
    // A fresh data dir, as another server sharing the database would have: compiled from
    // the stored component.
    let other_dir = tempfile::tempdir().unwrap();
    let mut config = (*t.state.config).clone();
    config.data_dir = other_dir.path().to_path_buf();
    let other = leforge_server::AppState::build(t.store.clone(), config).unwrap();
    assert_eq!(other.forgehooks.load_installed().await.unwrap(), 1);
    for state in [same, other] {
        use leforge_core::tool::ToolExecutor;
        let out = state
            .forgehooks
            .invoke("echo", "echo", json!({"message": "back"}))
            .await
            .unwrap();
        assert_eq!(out.output["message"], "back");
    }
}

/// A ForgeHook written in Python (componentize-py, against host-api/wit), installed over the
/// API and invoked. Skipped with a SKIP line without componentize-py, unless
/// LEFORGE_REQUIRE_PYTHON_GUEST=1 (CI).
#[tokio::test]
async fn python_forgehook_installs_over_the_api_and_runs() {
    let available = std::process::Command::new("componentize-py")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        assert!(
            std::env::var("LEFORGE_REQUIRE_PYTHON_GUEST").as_deref() != Ok("1"),
            "LEFORGE_REQUIRE_PYTHON_GUEST=1 but componentize-py is not installed"
        );
        println!("SKIP python_forgehook_installs_over_the_api_and_runs: componentize-py is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("py-text.wasm");
    let status = std::process::Command::new("componentize-py")
        .args([
            "-d",
            guests::WIT_DIR,
            "-w",
            "forgehook",
            "componentize",
            "app",
            "-p",
            guests::PYTHON_GUEST_DIR,
            "-o",
        ])
        .arg(&wasm_path)
        .arg("--stub-wasi")
        .status()
        .unwrap();
    assert!(status.success(), "componentize-py failed");

    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let r = install_raw(&t, std::fs::read(&wasm_path).unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["id"], "py-text");
    let r = invoke(
        &t,
        "py-text",
        "word_count",
        json!({"text": "the quick brown fox"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"]["words"], 4);
    assert_eq!(r.body["data"]["output"]["chars"], 19);
}
