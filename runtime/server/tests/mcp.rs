//! `/mcp` with a real MCP client: the official Python SDK's (tests/mcp/client.py), against
//! the real router served on a loopback port, the real store and wasmtime host, and the
//! wire-level fake LLM provider scripting the model.

#[path = "support/harness.rs"]
mod harness;

use axum::http::{Method, StatusCode};
use harness::TestApp;
use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

/// Whether the MCP Python SDK is importable; CI (LEFORGE_REQUIRE_PYTHON_GUEST=1) requires it.
fn sdk_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp.client.streamable_http"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("LEFORGE_REQUIRE_PYTHON_GUEST").as_deref() == Ok("1") {
        panic!("the MCP Python SDK is required: python3 -m pip install mcp==2.3.0");
    }
    if !ok {
        eprintln!("skipping: the MCP Python SDK is not installed (pip install mcp==2.3.0)");
    }
    ok
}

/// Runs the SDK client once and returns its JSON answer and exit status.
async fn client(url: &str, key: Option<&str>, args: &[&str]) -> (i32, Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp/client.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script).arg("--url").arg(url);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    let out = cmd.args(args).output().await.expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// Every stored run, whatever its status.
async fn all_runs(t: &TestApp) -> i64 {
    let mut total = 0;
    for status in leforge_core::RunStatus::ALL {
        total += t.store.count_runs(status).await.unwrap();
    }
    total
}

fn names(list: &Value) -> Vec<String> {
    list["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_forgehooks_are_mcp_tools_by_scope() {
    if !sdk_available() {
        return;
    }
    let fake = FakeProvider::start().await;
    let t = TestApp::with_llm(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .await;
    t.install_echo().await;
    let agent = |name: &str, public: bool| {
        json!({
            "name": name,
            "description": format!("{name} echoes things."),
            "system_prompt": "You echo things.",
            "provider": "anthropic",
            "model": "claude-sonnet",
            "tools": ["echo"],
            "is_public": public,
        })
    };
    t.create_agent(agent("Echo Private", false)).await;
    t.create_agent(agent("Echo Public", true)).await;
    let (_, invoke_key) = t.create_key("invoke").await;
    let addr = t.serve().await;
    let url = format!("http://{addr}/mcp");

    // tools/list per scope.
    let (code, admin) = client(&url, Some(&t.admin_key), &["list"]).await;
    assert_eq!(code, 0, "{admin}");
    assert_eq!(admin["server_name"], "leforge");
    let admin_names = names(&admin);
    assert!(
        admin_names.contains(&"echo-private".to_string()),
        "{admin_names:?}"
    );
    assert!(
        admin_names.contains(&"echo-public".to_string()),
        "{admin_names:?}"
    );
    assert!(
        admin_names.contains(&"echo__echo".to_string()),
        "{admin_names:?}"
    );
    let agent_tool = admin["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo-public")
        .unwrap();
    assert_eq!(agent_tool["description"], "Echo Public echoes things.");
    assert_eq!(agent_tool["inputSchema"]["required"], json!(["input"]));
    assert_eq!(
        agent_tool["inputSchema"]["properties"]["data"]["type"],
        "object"
    );

    let (_, invoked) = client(&url, Some(&invoke_key), &["list"]).await;
    let mut invoke_names = names(&invoked);
    invoke_names.sort();
    assert_eq!(invoke_names, ["echo-private", "echo-public"]);

    let (_, anonymous) = client(&url, None, &["list"]).await;
    assert_eq!(names(&anonymous), ["echo-public"]);

    // tools/call of an agent: a stored sync run, whose output equals the REST run's.
    let script = || {
        fake.push(Script::tool_call("echo__echo", json!({"message": "hi"})));
        fake.push(Script::text("{\"echoed\": \"hi\"}"));
    };
    script();
    let (code, called) = client(
        &url,
        Some(&invoke_key),
        &[
            "--progress",
            "call",
            "echo-public",
            r#"{"input": "Echo hi", "data": {"k": 1}}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{called}");
    assert_eq!(called["isError"], false, "{called}");
    assert_eq!(called["structuredContent"], json!({"echoed": "hi"}));
    assert_eq!(
        serde_json::from_str::<Value>(called["text"][0].as_str().unwrap()).unwrap(),
        json!({"echoed": "hi"})
    );
    assert_eq!(called["progress"].as_array().unwrap().len(), 1, "{called}");
    let run_id = called["meta"]["run_id"]
        .as_str()
        .expect("run id in _meta")
        .to_string();
    let stored = t
        .call(
            Method::GET,
            &format!("/api/v1/runs/{run_id}"),
            Some(&t.admin_key),
            None,
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(stored.body["data"]["status"], "completed");
    assert_eq!(stored.body["data"]["input_data"], json!({"k": 1}));
    assert_eq!(stored.body["data"]["steps"][0]["tool"], "echo");
    script();
    let rest = t
        .call(
            Method::POST,
            "/api/v1/agents/echo-public/run",
            Some(&invoke_key),
            Some(json!({"input": "Echo hi", "data": {"k": 1}})),
        )
        .await;
    assert_eq!(rest.body["data"]["output"], called["structuredContent"]);

    // The underscore spelling names the same agent.
    fake.push(Script::text("{\"plain\": true}"));
    let (_, underscored) = client(
        &url,
        Some(&t.admin_key),
        &["call", "echo_private", r#"{"input": "x"}"#],
    )
    .await;
    assert_eq!(
        underscored["structuredContent"],
        json!({"plain": true}),
        "{underscored}"
    );

    // A run that fails is isError with its code.
    fake.push(Script::error(400, "model not found: claude-nope"));
    let (_, failed) = client(
        &url,
        Some(&t.admin_key),
        &["call", "echo-public", r#"{"input": "x"}"#],
    )
    .await;
    assert_eq!(failed["isError"], true, "{failed}");
    assert_eq!(
        failed["structuredContent"]["code"], "PROVIDER_ERROR",
        "{failed}"
    );
    assert!(failed["meta"]["run_id"].is_string());

    // Bad arguments: JSON-RPC invalid params, and nothing stored.
    let before = all_runs(&t).await;
    let (_, bad) = client(
        &url,
        Some(&t.admin_key),
        &["call", "echo-public", r#"{"input": "", "extra": 1}"#],
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(all_runs(&t).await, before);

    // A ForgeHook endpoint: the admin's direct invoke; an invoke key cannot call it.
    let (_, direct) = client(
        &url,
        Some(&t.admin_key),
        &["call", "echo__echo", r#"{"message": "direct"}"#],
    )
    .await;
    assert_eq!(direct["isError"], false, "{direct}");
    assert_eq!(direct["structuredContent"]["message"], "direct", "{direct}");
    let (_, refused) = client(
        &url,
        Some(&invoke_key),
        &["call", "echo__echo", r#"{"message": "direct"}"#],
    )
    .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // A made-up key is the REST API's 401, before any JSON-RPC.
    let (code, unknown) = client(&url, Some("lf_not_a_key"), &["list"]).await;
    assert_eq!(code, 3, "{unknown}");
    assert!(
        unknown["http_error"].as_str().unwrap().contains("401"),
        "{unknown}"
    );

    // A browser page from another origin is refused.
    let r = reqwest::Client::new()
        .post(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
}

// ---- MCP servers as tools of agents: against a real server built with the Python SDK ----

/// The reference MCP server (tests/mcp/server.py) on a loopback port, killed on drop.
struct PyServer {
    child: tokio::process::Child,
    port: u16,
}

impl PyServer {
    async fn start_on(port: u16) -> PyServer {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp/server.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/mcp/server.py");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
            .await
            .expect("the MCP server did not start within 120 s")
            .unwrap()
            .expect("the MCP server exited before it was ready");
        assert_eq!(line, format!("READY {port}"));
        PyServer { child, port }
    }

    async fn start() -> PyServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

fn tool_names_offered(fake: &FakeProvider) -> Vec<String> {
    let last = fake.accepted().into_iter().last().expect("a model request");
    last.body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_servers_are_registered_and_their_tools_called_by_agents() {
    if !sdk_available() {
        return;
    }
    let mut py = PyServer::start().await;
    let fake = FakeProvider::start().await;
    let t = TestApp::with_settings(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
        |c| c.mcp_allowed_hosts = vec!["127.0.0.1".into()],
    )
    .await;

    // Registration: the server is connected, its tools listed and stored; secrets masked.
    let r = t
        .admin_post(
            "/api/v1/mcp-servers",
            json!({"name": "calc", "url": py.url(), "headers": {"X-Test-Token": "s3cret-value"}, "timeout_ms": 5000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let data = &r.body["data"];
    assert_eq!(data["transport"], "http");
    assert_eq!(data["headers"]["X-Test-Token"], "********");
    assert!(!r.body.to_string().contains("s3cret-value"));
    let mut tools: Vec<&str> = data["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(tools, ["add", "echo", "fail", "slow", "whoami"]);
    let add = data["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "add")
        .unwrap();
    assert_eq!(add["input_schema"]["required"], json!(["a", "b"]));
    assert!(add["output_schema"].is_object());
    let listed = t.admin_get("/api/v1/mcp-servers").await;
    assert_eq!(listed.body["data"][0]["name"], "calc");
    assert!(!listed.body.to_string().contains("s3cret-value"));

    // What registration refuses, each a 400 (or 409) naming the field.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (
            json!({"name": "calc", "url": py.url()}),
            StatusCode::CONFLICT,
            "name",
        ),
        (
            json!({"name": "down", "url": format!("http://127.0.0.1:{closed}/mcp")}),
            StatusCode::BAD_REQUEST,
            "url",
        ),
        (
            json!({"name": "private", "url": "http://10.1.2.3/mcp"}),
            StatusCode::BAD_REQUEST,
            "url",
        ),
        (
            json!({"name": "local", "command": "python3", "args": ["x.py"]}),
            StatusCode::BAD_REQUEST,
            "command",
        ),
        (
            json!({"name": "Bad Name", "url": py.url()}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "both", "url": py.url(), "command": "x"}),
            StatusCode::BAD_REQUEST,
            "url",
        ),
    ];
    for (body, status, field) in cases {
        let r = t.admin_post("/api/v1/mcp-servers", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"][0]["field"], field,
            "{body}: {}",
            r.body
        );
    }
    // A ForgeHook and an MCP server may not share a name: the model would see the same
    // `<name>__<tool>` for both.
    t.install_echo().await;
    let r = t
        .admin_post("/api/v1/mcp-servers", json!({"name": "echo", "url": py.url()}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["details"][0]["field"], "name", "{}", r.body);
    let r = t
        .admin_post(
            "/api/v1/forgehooks",
            json!({"id": "calc", "name": "Calc gateway", "version": "1.0.0", "runtime": "gateway",
                   "gateway": {"baseUrl": "http://127.0.0.1:9/svc"},
                   "endpoints": [{"name": "add", "description": "Adds", "path": "/add",
                                  "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["details"][0]["field"], "id", "{}", r.body);
    let down = t
        .admin_post(
            "/api/v1/mcp-servers",
            json!({"name": "down", "url": format!("http://127.0.0.1:{closed}/mcp")}),
        )
        .await;
    assert_eq!(down.body["error"]["code"], "VALIDATION_ERROR");
    assert!(
        down.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("could not"),
        "{}",
        down.body
    );
    let unknown = t
        .admin_post(
            "/api/v1/mcp-servers",
            json!({"name": "x", "url": py.url(), "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    let (_, invoke_key) = t.create_key("invoke").await;
    let forbidden = t
        .call(Method::GET, "/api/v1/mcp-servers", Some(&invoke_key), None)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    // Agents naming unknown MCP servers or tools are refused, naming the entry.
    let agent = |tools: Value| {
        json!({"name": "Calculator", "system_prompt": "You compute.", "provider": "anthropic",
               "model": "claude-sonnet", "tools": tools})
    };
    for (tools, field) in [
        (json!(["mcp:nope"]), "tools[0]"),
        (json!(["echo", "mcp:calc/nope"]), "tools[1]"),
        (json!(["mcp:calc", "mcp:calc/add"]), "tools[1]"),
    ] {
        let r = t.admin_post("/api/v1/agents", agent(tools.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{tools}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"][0]["field"], field,
            "{tools}: {}",
            r.body
        );
    }
    t.create_agent(agent(json!(["mcp:calc"]))).await;

    // A run: the model sees `calc__<tool>`; a call is validated, sent, and recorded.
    fake.push(Script::tool_calls([
        ("calc__add", json!({"a": 2, "b": 3})),
        ("calc__fail", json!({"reason": "the reason it failed"})),
        ("calc__add", json!({"a": "two"})),
        ("calc__echo", json!({"text": "{\"k\": [1, 2]}"})),
    ]));
    fake.push(Script::text("{\"done\": true}"));
    let run = t
        .call(
            Method::POST,
            "/api/v1/agents/calculator/run",
            Some(&t.admin_key),
            Some(json!({"input": "Add 2 and 3"})),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(run.body["data"]["status"], "completed", "{}", run.body);
    let mut offered = tool_names_offered(&fake);
    offered.sort();
    assert_eq!(
        offered,
        [
            "calc__add",
            "calc__echo",
            "calc__fail",
            "calc__slow",
            "calc__whoami"
        ]
    );
    let run_id = run.body["data"]["run_id"].as_str().unwrap().to_string();
    let stored = t.admin_get(&format!("/api/v1/runs/{run_id}")).await;
    let steps = stored.body["data"]["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 4, "{}", stored.body);
    let by_input = |needle: &str| {
        steps
            .iter()
            .find(|s| s["input"].to_string().contains(needle))
            .unwrap_or_else(|| panic!("no step with {needle}: {steps:?}"))
            .clone()
    };
    let added = by_input("\"b\":3");
    assert_eq!(added["tool"], "mcp:calc");
    assert_eq!(added["action"], "add");
    assert_eq!(added["output"], json!({"sum": 5}));
    // isError is a tool error the model sees, with the server's message.
    let failed = by_input("the reason it failed");
    assert_eq!(failed["action"], "fail");
    assert!(failed["output"].is_null());
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("the reason it failed"),
        "{failed}"
    );
    // Arguments that fail the tool's input schema never reach the server.
    let invalid = by_input("two");
    assert!(
        invalid["error"].as_str().unwrap().contains("invalid input"),
        "{invalid}"
    );
    // Text content that is JSON becomes JSON.
    let echoed = by_input("\\\"k\\\"");
    assert_eq!(echoed["output"], json!({"k": [1, 2]}), "{echoed}");
    let last = fake.accepted().into_iter().last().unwrap();
    assert!(
        last.body.to_string().contains("the reason it failed"),
        "the model saw the tool error"
    );

    // The registration's header reaches the server with every call.
    fake.push(Script::tool_call(
        "calc__whoami",
        json!({"header": "x-test-token", "env": []}),
    ));
    fake.push(Script::text("{\"done\": true}"));
    let run = t
        .admin_post(
            "/api/v1/agents/calculator/run",
            json!({"input": "who am I"}),
        )
        .await;
    assert_eq!(run.body["data"]["status"], "completed", "{}", run.body);
    let id = run.body["data"]["run_id"].as_str().unwrap();
    let stored = t.admin_get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(
        stored.body["data"]["steps"][0]["output"]["header"], "s3cret-value",
        "{}",
        stored.body
    );

    // The server goes away mid-run: that call is an error result and the run goes on.
    fake.push(Script::tool_call("calc__slow", json!({"seconds": 3})));
    fake.push(Script::text("{\"after\": \"outage\"}"));
    let port = py.port;
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        py.stop().await;
    });
    let run = t
        .call(
            Method::POST,
            "/api/v1/agents/calculator/run",
            Some(&t.admin_key),
            Some(json!({"input": "Sleep"})),
        )
        .await;
    killer.await.unwrap();
    assert_eq!(run.body["data"]["status"], "completed", "{}", run.body);
    assert_eq!(run.body["data"]["output"], json!({"after": "outage"}));
    let run_id = run.body["data"]["run_id"].as_str().unwrap().to_string();
    let stored = t.admin_get(&format!("/api/v1/runs/{run_id}")).await;
    let step = &stored.body["data"]["steps"][0];
    assert_eq!(step["tool"], "mcp:calc");
    assert!(step["output"].is_null(), "{step}");
    assert!(
        step["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{step}"
    );

    // Refresh needs the server; while it is down the stored tools are kept.
    let r = t
        .admin_post("/api/v1/mcp-servers/calc/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        t.admin_get("/api/v1/mcp-servers/calc").await.body["data"]["tools"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Back on the same port: the pool connects again.
    let mut py = PyServer::start_on(port).await;
    fake.push(Script::tool_call("calc__add", json!({"a": 40, "b": 2})));
    fake.push(Script::text("{\"back\": true}"));
    let run = t
        .call(
            Method::POST,
            "/api/v1/agents/calculator/run",
            Some(&t.admin_key),
            Some(json!({"input": "Add"})),
        )
        .await;
    assert_eq!(run.body["data"]["status"], "completed", "{}", run.body);
    let run_id = run.body["data"]["run_id"].as_str().unwrap().to_string();
    let stored = t.admin_get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(
        stored.body["data"]["steps"][0]["output"],
        json!({"sum": 42}),
        "{}",
        stored.body
    );
    let r = t
        .admin_post("/api/v1/mcp-servers/calc/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // One tool only, by `mcp:<server>/<tool>`.
    let narrow = t
        .call(
            Method::PUT,
            "/api/v1/agents/calculator",
            Some(&t.admin_key),
            Some(json!({"tools": ["mcp:calc/add"]})),
        )
        .await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.body);
    fake.push(Script::text("{\"x\": 1}"));
    t.call(
        Method::POST,
        "/api/v1/agents/calculator/run",
        Some(&t.admin_key),
        Some(json!({"input": "x"})),
    )
    .await;
    assert_eq!(tool_names_offered(&fake), ["calc__add"]);

    // Update keeps masked secrets; delete makes the agent's runs fail to start, by name.
    let r = t
        .call(
            Method::PUT,
            "/api/v1/mcp-servers/calc",
            Some(&t.admin_key),
            Some(json!({"headers": {"X-Test-Token": "********"}, "timeout_ms": 4000})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["timeout_ms"], 4000);
    let stored = t.store.get_mcp_server("calc").await.unwrap().unwrap();
    assert_eq!(
        stored.transport,
        leforge_core::mcp::McpTransport::Http {
            url: py.url(),
            headers: [("X-Test-Token".to_string(), "s3cret-value".to_string())].into()
        }
    );
    let r = t
        .call(
            Method::DELETE,
            "/api/v1/mcp-servers/calc",
            Some(&t.admin_key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        t.admin_get("/api/v1/mcp-servers/calc").await.status,
        StatusCode::NOT_FOUND
    );
    let run = t
        .call(
            Method::POST,
            "/api/v1/agents/calculator/run",
            Some(&t.admin_key),
            Some(json!({"input": "x"})),
        )
        .await;
    assert_eq!(
        run.body["error"]["details"]["run"]["error_code"], "TOOLS_UNAVAILABLE",
        "{}",
        run.body
    );
    assert!(
        run.body.to_string().contains("mcp:calc/add"),
        "{}",
        run.body
    );
    py.stop().await;
}

/// The JSON-RPC message of a Streamable HTTP answer, sent as JSON or as an SSE event.
async fn rpc_body(r: reqwest::Response) -> Value {
    let sse = r.headers().get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    });
    let text = r.text().await.unwrap();
    if !sse {
        return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .find_map(|d| {
            serde_json::from_str::<Value>(d)
                .ok()
                .filter(|v| v.get("id").is_some())
        })
        .unwrap_or_else(|| panic!("no JSON-RPC response in: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_rpc_sessions_and_protocol_edges() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let addr = t.serve().await;
    let url = format!("http://{addr}/mcp");
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>, version: Option<&str>| {
        let mut req = http
            .post(&url)
            .bearer_auth(&t.admin_key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        req.send()
    };

    // The previous protocol version is accepted, and a session begins.
    let r = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let session = r
        .headers()
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_string();
    let init = rpc_body(r).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "leforge");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let r = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
        Some("2025-06-18"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);

    // tools/list in the session; a cursor that is not ours is invalid params.
    let list = rpc_body(
        post(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            Some(&session),
            Some("2025-06-18"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    let bad_cursor = rpc_body(
        post(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": "not-a-cursor"}}),
            Some(&session),
            Some("2025-06-18"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(bad_cursor["error"]["code"], -32602, "{bad_cursor}");
    // An unknown tool and an unknown method: standard codes, no internals.
    let unknown = rpc_body(
        post(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "no-such-agent", "arguments": {"input": "x"}}}),
            Some(&session),
            Some("2025-06-18"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let method = rpc_body(
        post(
            json!({"jsonrpc": "2.0", "id": 5, "method": "no/such"}),
            Some(&session),
            Some("2025-06-18"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(method["error"]["code"], -32601, "{method}");

    // DELETE ends the session; it is then unknown.
    let r = http
        .delete(&url)
        .bearer_auth(&t.admin_key)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = post(
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
        Some(&session),
        Some("2025-06-18"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);

    // Malformed JSON is a JSON-RPC parse error or a 4xx, and the server stays up.
    let r = http
        .post(&url)
        .bearer_auth(&t.admin_key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let health = t.get("/api/v1/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_mcp_servers_run_only_when_the_operator_allows_them() {
    if !sdk_available() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp/server.py");
    let fake = FakeProvider::start().await;
    let t = TestApp::with_settings(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
        |c| c.mcp_stdio_allowed = true,
    )
    .await;
    let r = t
        .admin_post(
            "/api/v1/mcp-servers",
            json!({"name": "local", "command": "python3", "args": [script, "--stdio"],
                   "env": {"SOME_TOKEN": "env-secret"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["transport"], "stdio");
    assert_eq!(r.body["data"]["env"]["SOME_TOKEN"], "********");
    assert!(!r.body.to_string().contains("env-secret"));
    assert_eq!(
        r.body["data"]["tools"].as_array().unwrap().len(),
        5,
        "{}",
        r.body
    );
    t.create_agent(
        json!({"name": "Local", "system_prompt": "x", "provider": "anthropic",
               "model": "claude-sonnet", "tools": ["mcp:local/add", "mcp:local/whoami"]}),
    )
    .await;
    fake.push(Script::tool_call("local__add", json!({"a": 1, "b": 1})));
    fake.push(Script::tool_call(
        "local__whoami",
        json!({"header": "x", "env": ["SOME_TOKEN", "HOME"]}),
    ));
    fake.push(Script::text("{\"ok\": true}"));
    let run = t
        .call(
            Method::POST,
            "/api/v1/agents/local/run",
            Some(&t.admin_key),
            Some(json!({"input": "add"})),
        )
        .await;
    assert_eq!(run.body["data"]["status"], "completed", "{}", run.body);
    let id = run.body["data"]["run_id"].as_str().unwrap();
    let stored = t.admin_get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(stored.body["data"]["steps"][0]["tool"], "mcp:local");
    assert_eq!(stored.body["data"]["steps"][0]["output"], json!({"sum": 2}));
    // The child's environment is the registration's (plus PATH), not the server's.
    assert!(std::env::var_os("HOME").is_some(), "the check needs HOME set here");
    assert_eq!(
        stored.body["data"]["steps"][1]["output"],
        json!({"header": null, "env": {"SOME_TOKEN": "env-secret", "HOME": null}}),
        "{}",
        stored.body
    );
    // A command that cannot start is the registration's 400, under `command`.
    let r = t
        .admin_post(
            "/api/v1/mcp-servers",
            json!({"name": "missing", "command": "/nonexistent/mcp-server"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"]["details"][0]["field"], "command");
}
