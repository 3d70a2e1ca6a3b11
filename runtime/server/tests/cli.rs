//! The real `leforge` binary as a newcomer runs it: first start on the embedded default,
//! the admin key printed once, data kept across restarts, clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    stderr_lines: Vec<String>,
    /// What the server wrote to stderr after it started listening.
    later: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// GET without a key, answered with JSON.
async fn get_json(http: &reqwest::Client, url: String) -> Value {
    json_of(http.get(url)).await
}

/// Sends the request and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `leforge serve` and waits until it logs that it listens.
fn start(data_dir: &std::path::Path, envs: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leforge"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("LEFORGE_ADMIN_KEY")
        .env("LEFORGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn leforge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        // A first start compiles the seven built-in ForgeHooks: on a busy 2-core machine,
        // with other tests doing the same, minutes may pass between two lines.
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                let ready = line.contains("listening on");
                lines.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; stderr:\n{}", lines.join("\n"));
            }
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = later.clone();
    std::thread::spawn(move || {
        while let Ok(line) = rx.recv() {
            kept.lock().unwrap().push(line);
        }
    });
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        stderr_lines: lines,
        later,
    }
}

impl Server {
    fn printed_key(&self) -> Option<String> {
        self.stderr_lines.iter().find_map(|l| {
            l.split("LEFORGE ADMIN KEY: ")
                .nth(1)
                .map(|k| k.trim().to_string())
        })
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("server did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn first_start_prints_a_key_once_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    let server = start(dir.path(), &[]);
    let key = server
        .printed_key()
        .expect("first start prints the admin key");
    assert!(key.starts_with("lf_"));
    assert!(dir.path().join("leforge.db").exists());
    let health: Value = get_json(&http, format!("{}/api/v1/health", server.base)).await;
    assert_eq!(health["database"], "sqlite");
    assert_eq!(health["status"], "ok");
    // A newcomer's first start has the built-in ForgeHooks, with no extra step.
    let hooks: Value = get_json(&http, format!("{}/api/v1/forgehooks", server.base)).await;
    let ids: Vec<_> = hooks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "crypto-utils",
            "data-transform",
            "date-utils",
            "encoding-utils",
            "formula-engine",
            "json-utils",
            "string-utils"
        ]
    );
    assert!(hooks["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["builtin"] == true));
    // An admin who removes a built-in keeps it removed across restarts.
    let removed = http
        .delete(format!("{}/api/v1/forgehooks/crypto-utils", server.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let created = http
        .post(format!("{}/api/v1/agents", server.base))
        .header("x-api-key", &key)
        .json(&json!({"name": "Survivor", "system_prompt": "Persist."}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // The key is not logged anywhere else.
    let mentions = server
        .stderr_lines
        .iter()
        .filter(|l| l.contains(&key))
        .count();
    assert_eq!(mentions, 1);
    assert!(server.terminate().success(), "graceful exit on SIGTERM");

    let server = start(dir.path(), &[]);
    assert!(
        server.printed_key().is_none(),
        "the key is printed only once"
    );
    let r = http
        .get(format!("{}/api/v1/agents/survivor", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.terminate().success());
}

#[tokio::test]
async fn configured_admin_key_and_postgres_url_are_used() {
    let Some(db) = leforge_store::testing::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = "configured-admin-key-0123456789";
    let migrate = Command::new(env!("CARGO_BIN_EXE_leforge"))
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let server = start(
        dir.path(),
        &[("DATABASE_URL", &db.url), ("LEFORGE_ADMIN_KEY", key)],
    );
    assert!(server.printed_key().is_none());
    let http = reqwest::Client::new();
    let health: Value = get_json(&http, format!("{}/api/v1/health", server.base)).await;
    assert_eq!(health["database"], "postgres");
    let r = http
        .get(format!("{}/api/v1/api-keys", server.base))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !dir.path().join("leforge.db").exists(),
        "no SQLite file with PostgreSQL"
    );
    assert!(server.terminate().success());
}

#[test]
fn bad_config_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("leforge.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nunknown_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leforge"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown_key"), "{stderr}");
}

#[tokio::test]
async fn forgehook_cli_installs_and_lists_directly_and_through_a_server() {
    let echo = leforge_test_guests::ECHO;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leforge"));
        cmd.args(args)
            .env_remove("DATABASE_URL")
            .env_remove("LEFORGE_SERVER_URL")
            .env_remove("LEFORGE_API_KEY");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let data_dir = dir.path().to_str().unwrap().to_string();

    // Directly against the database (no server running).
    let out = run(
        &["forgehook", "install", echo, "--data-dir", &data_dir],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed echo 1.0.0 (5 endpoints)"));
    let out = run(&["forgehook", "list", "--data-dir", &data_dir], &[]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("echo") && listing.contains("1.0.0") && listing.contains("wasm"),
        "{listing}"
    );
    let again = run(
        &["forgehook", "install", echo, "--data-dir", &data_dir],
        &[],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already installed"));

    // Through a running server, which serves the ForgeHook installed before it started.
    let key = "cli-test-admin-key-0123456789";
    let server = start(dir.path(), &[("LEFORGE_ADMIN_KEY", key)]);
    let http = reqwest::Client::new();
    let r: Value = http
        .post(format!(
            "{}/api/v1/forgehooks/echo/invoke/echo",
            server.base
        ))
        .header("x-api-key", key)
        .json(&json!({"message": "from the cli"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["output"]["message"], "from the cli");
    let manifest_dir = tempfile::tempdir().unwrap();
    let manifest_path = manifest_dir.path().join("m.json");
    let described: Value = get_json(&http, format!("{}/api/v1/forgehooks/echo", server.base)).await;
    // An upgrade through the server with a manifest file: same component, version 1.1.0.
    let d = &described["data"];
    let manifest = json!({
        "id": "echo", "name": d["name"], "version": "1.1.0", "description": d["description"],
        "endpoints": d["endpoints"].as_array().unwrap().iter().map(|e| json!({
            "name": e["name"], "description": e["description"],
            "input_schema": e["input_schema"], "output_schema": e["output_schema"]})).collect::<Vec<_>>(),
        "capabilities": d["capabilities"],
    });
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let remote = [
        ("LEFORGE_SERVER_URL", server.base.as_str()),
        ("LEFORGE_API_KEY", key),
    ];
    let out = run(
        &[
            "forgehook",
            "install",
            echo,
            "--manifest",
            manifest_path.to_str().unwrap(),
        ],
        &remote,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed echo 1.1.0"));
    let out = run(&["forgehook", "list"], &remote);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.1.0"));
    let out = run(
        &["forgehook", "list"],
        &[
            ("LEFORGE_SERVER_URL", server.base.as_str()),
            ("LEFORGE_API_KEY", "wrong"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 UNAUTHORIZED"));
    assert!(server.terminate().success());
}

/// `leforge run …` with these arguments and environment: (exit code, stdout, stderr).
fn leforge_run(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leforge"));
    cmd.arg("run")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LEFORGE_SERVER_URL")
        .env_remove("LEFORGE_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn leforge run");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Multi-threaded: `leforge_run` blocks this thread while the fake provider answers it.
/// A `leforge run` that completed with the scripted answer, after the model was shown `marker`.
fn shouted(
    (code, stdout, stderr): (i32, &str, &str),
    fake: &leforge_fake_provider::FakeProvider,
    marker: &str,
) {
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(stdout).unwrap(),
        json!({"shout": "HELLO"})
    );
    let sent = fake.last_request().unwrap().body.to_string();
    assert!(sent.contains(marker), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leforge_run_prints_the_output_and_exits_by_outcome() {
    use leforge_fake_provider::{FakeProvider, Script};
    let fake = FakeProvider::start().await;
    let base_url = fake.base_url();
    let llm_env = [
        ("ANTHROPIC_BASE_URL", base_url.as_str()),
        ("ANTHROPIC_API_KEY", "test-anthropic-key"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let server = start(dir.path(), &llm_env);
    let key = server.printed_key().unwrap();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/api/v1/agents", server.base))
        .bearer_auth(&key)
        .json(&json!({
            "name": "Cli Upper", "system_prompt": "You change case.",
            "provider": "anthropic", "model": "claude-sonnet",
            "tools": ["string-utils"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let upper =
        |text: &str| Script::tool_call("string-utils__case", json!({"text": text, "to": "upper"}));
    let answer = || Script::text("```json\n{\"shout\": \"HELLO\"}\n```");

    // Through the server, with progress asked for: a line per step on stderr, the output
    // alone on stdout.
    fake.push_all([upper("hello"), answer()]);
    let (code, stdout, stderr) = leforge_run(
        &[
            "cli-upper",
            "Shout hello",
            "--server",
            &server.base,
            "--api-key",
            &key,
            "--progress",
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"shout": "HELLO"})
    );
    assert!(stderr.contains("step 1 string-utils.case"), "{stderr}");
    assert!(stderr.contains("ms ok"), "{stderr}");
    assert!(!stderr.contains(&key), "{stderr}");

    // Async through the server, data from standard input, which the model is shown.
    fake.push_all([answer()]);
    let (code, stdout, stderr) = leforge_run(
        &[
            "cli-upper",
            "Shout it",
            "--server",
            &server.base,
            "--api-key",
            &key,
            "--mode",
            "async",
            "--data",
            "-",
        ],
        &[],
        Some(r#"{"word": "marker-4711"}"#),
    );
    shouted((code, &stdout, &stderr), &fake, "marker-4711");

    // A run that fails: exit 1, its error code on stderr, nothing on stdout.
    fake.push_all([Script::error(400, "model not allowed")]);
    let (code, stdout, stderr) = leforge_run(
        &[
            "cli-upper",
            "Shout",
            "--server",
            &server.base,
            "--api-key",
            &key,
        ],
        &[],
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("PROVIDER_ERROR"), "{stderr}");
    // A refused request (no such agent, a wrong key) is a failure too, with its code.
    let (code, _, stderr) = leforge_run(
        &[
            "no-such-agent",
            "x",
            "--server",
            &server.base,
            "--api-key",
            &key,
        ],
        &[],
        None,
    );
    assert_eq!((code, stderr.contains("NOT_FOUND")), (1, true), "{stderr}");
    let (code, _, stderr) = leforge_run(
        &[
            "cli-upper",
            "x",
            "--server",
            &server.base,
            "--api-key",
            "lf_wrong_key_0123456789",
        ],
        &[],
        None,
    );
    assert_eq!(
        (code, stderr.contains("UNAUTHORIZED")),
        (1, true),
        "{stderr}"
    );
    assert!(server.terminate().success());

    // In this process, on the server's database, data from a file.
    let data_file = dir.path().join("data.json");
    std::fs::write(&data_file, r#"{"word": "marker-0815"}"#).unwrap();
    fake.push_all([upper("hello"), answer()]);
    let (code, stdout, stderr) = leforge_run(
        &[
            "cli-upper",
            "Shout hello",
            "--data-dir",
            &data_dir,
            "--data",
            data_file.to_str().unwrap(),
        ],
        &llm_env,
        None,
    );
    shouted((code, &stdout, &stderr), &fake, "marker-0815");
    // Without --progress and with stdout a pipe, stderr stays quiet.
    assert!(!stderr.contains("step 1"), "{stderr}");
    // ... and the run is stored like any other, with its step.
    let server = start(dir.path(), &llm_env);
    let runs: Value = json_of(
        http.get(format!("{}/api/v1/agents/cli-upper/runs", server.base))
            .bearer_auth(&key),
    )
    .await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["input_text"], "Shout hello");
    drop(server);

    // Usage errors: exit 2, and nothing is run.
    let before = fake.request_count();
    for args in [
        vec!["cli-upper"],
        vec!["cli-upper", "x", "--mode", "later"],
        vec![
            "cli-upper",
            "x",
            "--data",
            "/nonexistent/data.json",
            "--data-dir",
            &data_dir,
        ],
        vec!["cli-upper", "x", "--api-key", "k", "--data-dir", &data_dir],
    ] {
        let (code, _, stderr) = leforge_run(&args, &llm_env, None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    let (code, _, stderr) = leforge_run(
        &["cli-upper", "x", "--data", "-", "--data-dir", &data_dir],
        &llm_env,
        Some("{not json"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not JSON"), "{stderr}");
    assert_eq!(fake.request_count(), before);
}

/// A span as an OTLP receiver got it: ids in hex, attributes as JSON values.
#[derive(Debug, Clone)]
struct ExportedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: std::collections::BTreeMap<String, Value>,
}

impl ExportedSpan {
    fn attr(&self, key: &str) -> &Value {
        self.attributes.get(key).unwrap_or(&Value::Null)
    }
}

fn any_value(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match &v.value {
        Some(V::StringValue(s)) => json!(s),
        Some(V::IntValue(i)) => json!(i),
        Some(V::BoolValue(b)) => json!(b),
        Some(V::DoubleValue(d)) => json!(d),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(any_value).collect()),
        _ => Value::Null,
    }
}

/// A real OTLP/HTTP receiver (protobuf), plus an endpoint that records callbacks.
struct Receiver {
    base: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>>,
    callbacks: std::sync::Arc<std::sync::Mutex<Vec<axum::http::HeaderMap>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::routing::post;
        use prost::Message;
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let callbacks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (kept, called) = (spans.clone(), callbacks.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        assert_eq!(headers["content-type"], "application/x-protobuf");
                        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                            .expect("an OTLP protobuf export");
                        let mut kept = kept.lock().unwrap();
                        for rs in request.resource_spans {
                            let service = rs.resource.as_ref().and_then(|r| {
                                r.attributes.iter().find(|a| a.key == "service.name")
                            });
                            let service = service.and_then(|a| a.value.as_ref()).map(any_value);
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    let mut attributes: std::collections::BTreeMap<String, Value> = span
                                        .attributes
                                        .iter()
                                        .map(|a| (a.key.clone(), a.value.as_ref().map_or(Value::Null, any_value)))
                                        .collect();
                                    attributes.insert("service.name".into(), service.clone().unwrap_or(Value::Null));
                                    kept.push(ExportedSpan {
                                        name: span.name,
                                        trace_id: hex::encode(&span.trace_id),
                                        span_id: hex::encode(&span.span_id),
                                        parent: hex::encode(&span.parent_span_id),
                                        attributes,
                                    });
                                }
                            }
                        }
                        let reply = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::default();
                        ([("content-type", "application/x-protobuf")], reply.encode_to_vec())
                    }
                }),
            )
            .route(
                "/callback",
                post(move |headers: axum::http::HeaderMap| {
                    let called = called.clone();
                    async move {
                        called.lock().unwrap().push(headers);
                        "ok"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            base: format!("http://{addr}"),
            spans,
            callbacks,
        }
    }

    /// The spans of one trace, once every name in `names` has arrived.
    async fn trace(&self, trace_id: &str, names: &[&str]) -> Vec<ExportedSpan> {
        for _ in 0..200 {
            let spans: Vec<ExportedSpan> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s.trace_id, s.name))
            .collect();
        panic!("trace {trace_id} lacks some of {names:?}; received: {got:#?}");
    }
}

fn one<'a>(spans: &'a [ExportedSpan], name: &str) -> &'a ExportedSpan {
    let found: Vec<&ExportedSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "{name}: {spans:#?}");
    found[0]
}

// Multi-threaded: starting a server blocks this thread while the receiver must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_traced_into_the_callers_trace_over_otlp() {
    use leforge_fake_provider::{FakeProvider, Script};
    let fake = FakeProvider::start().await;
    let receiver = Receiver::start().await;
    let base_url = fake.base_url();
    let env = [
        ("ANTHROPIC_BASE_URL", base_url.as_str()),
        ("ANTHROPIC_API_KEY", "test-anthropic-key"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "leforge-under-test"),
        ("LEFORGE_LOG_FORMAT", "json"),
        ("LEFORGE_CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
        (
            "LEFORGE_WEBHOOK_SECRET",
            "callback-signing-secret-0123456789",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &env);
    let key = server.printed_key().unwrap();
    let http = reqwest::Client::new();
    let admin_post = |path: &str, body: Value| {
        http.post(format!("{}/api/v1{path}", server.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let r = admin_post(
        "/scripts",
        json!({"name": "watch", "source": "fn before_tool(ctx, call) { () }"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let agent: Value = admin_post(
        "/agents",
        json!({"name": "Traced", "system_prompt": "You change case.", "provider": "anthropic",
               "model": "claude-sonnet", "tools": ["string-utils"], "hooks": ["watch"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent_id = agent["data"]["id"].as_str().unwrap().to_string();
    let script = |text: &str| {
        [
            Script::tool_call("string-utils__case", json!({"text": text, "to": "upper"})),
            Script::text("```json\n{\"done\": true}\n```"),
        ]
    };

    // A sync run under the caller's trace context.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    fake.push_all(script("zebra-9931"));
    let r = http
        .post(format!("{}/api/v1/agents/traced/run", server.base))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"input": "Shout the phrase zebra-9931"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let run: Value = r.json().await.unwrap();
    let run_id = run["data"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(run["data"]["trace_id"], caller_trace, "{run}");

    let http_name = "POST /api/v1/agents/{id_or_slug}/run";
    let spans = receiver
        .trace(
            caller_trace,
            &[
                http_name,
                "invoke_agent Traced",
                "chat claude-sonnet",
                "execute_tool string-utils__case",
                "hook before_tool",
            ],
        )
        .await;
    let request = one(&spans, http_name);
    assert_eq!(request.parent, caller_span);
    assert_eq!(
        request.attr("http.route"),
        "/api/v1/agents/{id_or_slug}/run"
    );
    assert_eq!(request.attr("http.response.status_code"), 200);
    assert_eq!(request.attr("service.name"), "leforge-under-test");
    let run_span = one(&spans, "invoke_agent Traced");
    assert_eq!(run_span.parent, request.span_id);
    assert_eq!(run_span.attr("gen_ai.operation.name"), "invoke_agent");
    assert_eq!(run_span.attr("gen_ai.agent.id"), agent_id.as_str());
    assert_eq!(run_span.attr("gen_ai.agent.name"), "Traced");
    assert_eq!(run_span.attr("run_id"), run_id.as_str());
    assert_eq!(run_span.attr("leforge.run.status"), "completed");
    let chats: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|s| s.name == "chat claude-sonnet")
        .collect();
    assert_eq!(chats.len(), 2, "{spans:#?}");
    for chat in &chats {
        assert_eq!(chat.parent, run_span.span_id);
        assert_eq!(chat.attr("gen_ai.operation.name"), "chat");
        assert_eq!(chat.attr("gen_ai.provider.name"), "anthropic");
        assert_eq!(chat.attr("gen_ai.request.model"), "claude-sonnet");
        assert!(chat.attr("gen_ai.response.model").is_string(), "{chat:?}");
        assert!(chat.attr("gen_ai.usage.input_tokens").as_i64().unwrap() > 0);
        assert!(chat.attr("gen_ai.usage.output_tokens").as_i64().unwrap() > 0);
    }
    let reasons: Vec<&Value> = chats
        .iter()
        .map(|c| c.attr("gen_ai.response.finish_reasons"))
        .collect();
    assert!(reasons.contains(&&json!(["tool_calls"])), "{reasons:?}");
    assert!(reasons.contains(&&json!(["stop"])), "{reasons:?}");
    let tool = one(&spans, "execute_tool string-utils__case");
    assert_eq!(tool.parent, run_span.span_id);
    assert_eq!(tool.attr("gen_ai.operation.name"), "execute_tool");
    assert_eq!(tool.attr("gen_ai.tool.name"), "string-utils__case");
    assert!(!tool
        .attr("gen_ai.tool.call.id")
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(tool.attr("leforge.forgehook.id"), "string-utils");
    assert_eq!(tool.attr("leforge.endpoint"), "case");
    assert_eq!(one(&spans, "hook before_tool").parent, tool.span_id);
    // No content by default, and never a secret.
    for span in &spans {
        for (k, v) in &span.attributes {
            let v = v.to_string();
            for banned in [
                "zebra",
                "ZEBRA",
                "You change case",
                "test-anthropic-key",
                key.as_str(),
                "callback-signing-secret",
            ] {
                assert!(!v.contains(banned), "{} {k}={v}", span.name);
            }
            assert!(
                !k.contains("messages") && !k.contains("arguments"),
                "{} {k}",
                span.name
            );
        }
    }

    // Logs: every line about the run carries its id, and the trace ids.
    let logs = server.later.lock().unwrap().clone();
    let finished: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "run finished" && l["run_id"] == run_id.as_str())
        .collect();
    assert_eq!(finished.len(), 1, "{logs:#?}");
    assert_eq!(finished[0]["trace_id"], caller_trace);
    assert_eq!(finished[0]["span_id"], run_span.span_id.as_str());

    // An async run executed later joins the caller's trace too, and so does its callback.
    let async_trace = "0af7651916cd43dd8448eb211c80319c";
    fake.push_all(script("quiet"));
    let r = http
        .post(format!("{}/api/v1/agents/traced/run", server.base))
        .bearer_auth(&key)
        .header(
            "traceparent",
            format!("00-{async_trace}-b7ad6b7169203331-01"),
        )
        .json(&json!({"input": "Shout quietly", "mode": "async",
                      "callback_url": format!("{}/callback", receiver.base)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let spans = receiver
        .trace(async_trace, &["invoke_agent Traced", "POST callback"])
        .await;
    let run_span = one(&spans, "invoke_agent Traced");
    let request = one(&spans, http_name);
    assert_eq!(run_span.parent, request.span_id);
    let callback = one(&spans, "POST callback");
    let headers = receiver.callbacks.lock().unwrap().clone();
    assert_eq!(headers.len(), 1);
    assert_eq!(
        headers[0]["traceparent"].to_str().unwrap(),
        format!("00-{async_trace}-{}-01", callback.span_id)
    );
    assert!(server.terminate().success());

    // With the conventions' switch on, content is recorded.
    let mut env_on = env.to_vec();
    env_on.push(("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"));
    let server = start(dir.path(), &env_on);
    fake.push_all(script("lynx-4410"));
    let content_trace = "1af7651916cd43dd8448eb211c80319d";
    let r = http
        .post(format!("{}/api/v1/agents/traced/run", server.base))
        .bearer_auth(&key)
        .header(
            "traceparent",
            format!("00-{content_trace}-c7ad6b7169203331-01"),
        )
        .json(&json!({"input": "Shout lynx-4410"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spans = receiver
        .trace(
            content_trace,
            &["chat claude-sonnet", "execute_tool string-utils__case"],
        )
        .await;
    let first_chat = spans
        .iter()
        .find(|s| {
            s.name == "chat claude-sonnet"
                && s.attr("gen_ai.response.finish_reasons") == &json!(["tool_calls"])
        })
        .unwrap();
    assert!(first_chat
        .attr("gen_ai.input.messages")
        .as_str()
        .unwrap()
        .contains("lynx-4410"));
    let tool = one(&spans, "execute_tool string-utils__case");
    assert!(tool
        .attr("gen_ai.tool.call.arguments")
        .as_str()
        .unwrap()
        .contains("lynx-4410"));
    assert!(tool
        .attr("gen_ai.tool.call.result")
        .as_str()
        .unwrap()
        .contains("LYNX-4410"));
    assert!(server.terminate().success());
}
