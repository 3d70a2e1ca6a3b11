//! Crash safety and several servers: real `leforge` processes, killed with SIGKILL or
//! sharing one PostgreSQL database, with the fake provider on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

const KEY: &str = "cluster-test-admin-key-0123456789";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, fake: &FakeProvider, envs: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leforge"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("LEFORGE_ADMIN_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-fake")
        .env("LEFORGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    // A first start compiles the built-in components (a debug build, beside the other
    // servers of the parallel tests on 2 cores): slow, and no sign of a fault in itself.
    rx.recv_timeout(Duration::from_secs(300))
        .expect("server started");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url).header("x-api-key", KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Creates an agent through `base`'s API, which must succeed.
async fn create_agent(base: &str, body: Value) {
    let agent = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/agents"),
        Some(body),
    )
    .await;
    assert_eq!(agent["success"], true, "{agent}");
}

/// SIGKILL: the server gets no chance to clean up.
fn kill(mut server: Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[tokio::test]
async fn a_run_killed_with_its_server_is_interrupted_with_its_finished_steps() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lease = [("LEFORGE_RUN_LEASE_MS", "1500")];
    let server = start(dir.path(), &fake, &lease);
    create_agent(
        &server.base,
        json!({"name": "Doomed", "system_prompt": "x", "tools": ["data-transform"]}),
    )
    .await;
    fake.push(Script::tool_call(
        "data-transform__csv_to_json",
        json!({"csv": "a,b\n1,2"}),
    ));
    fake.push(Script::hang());
    let r = call(
        reqwest::Method::POST,
        format!("{}/api/v1/agents/doomed/run", server.base),
        Some(json!({"input": "convert", "mode": "async"})),
    )
    .await;
    let run_id = r["data"]["run_id"].as_str().unwrap().to_string();
    let mut steps = 0;
    for _ in 0..400 {
        let run = call(
            reqwest::Method::GET,
            format!("{}/api/v1/runs/{run_id}", server.base),
            None,
        )
        .await;
        steps = run["data"]["steps"].as_array().map_or(0, Vec::len);
        if steps == 1 && fake.request_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(steps, 1, "the first step finished before the crash");
    kill(server);

    let server = start(dir.path(), &fake, &lease);
    let mut last = Value::Null;
    for _ in 0..200 {
        last = call(
            reqwest::Method::GET,
            format!("{}/api/v1/runs/{run_id}", server.base),
            None,
        )
        .await;
        if last["data"]["status"] == "interrupted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = &last["data"];
    assert_eq!(run["status"], "interrupted", "{last}");
    assert_eq!(run["error_code"], "INTERRUPTED");
    assert_eq!(run["steps"].as_array().unwrap().len(), 1);
    assert_eq!(run["steps"][0]["output"]["row_count"], 1);
    let result = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{run_id}/result", server.base))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        result.status(),
        503,
        "an interrupted run is an error for the caller"
    );
}

#[tokio::test]
async fn two_servers_share_fifty_async_runs_and_none_runs_twice() {
    let Some(db) = leforge_store::testing::postgres().await else {
        return;
    };
    let fake = FakeProvider::start().await;
    fake.set_latency(Duration::from_millis(100));
    fake.set_responder(|_| Script::text("{\"ok\": true}"));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("LEFORGE_MAX_CONCURRENT_RUNS", "4"),
    ];
    let a = start(dir_a.path(), &fake, &env);
    let b = start(dir_b.path(), &fake, &env);
    create_agent(
        &a.base,
        json!({"name": "Shared Worker", "system_prompt": "x"}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = call(
            reqwest::Method::POST,
            format!("{base}/api/v1/agents/shared-worker/run"),
            Some(json!({"input": format!("job {i}"), "mode": "async"})),
        )
        .await;
        ids.push(r["data"]["run_id"].as_str().unwrap().to_string());
    }
    let mut workers = std::collections::HashMap::<String, usize>::new();
    for id in &ids {
        let mut run = Value::Null;
        for _ in 0..600 {
            run = call(
                reqwest::Method::GET,
                format!("{}/api/v1/runs/{id}", a.base),
                None,
            )
            .await;
            if run["data"]["status"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(run["data"]["status"], "completed", "{run}");
        *workers
            .entry(run["data"]["worker"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(fake.chat_count(), 50, "every run executed exactly once");
    assert_eq!(workers.len(), 2, "both servers took a share: {workers:?}");
}

#[tokio::test]
async fn graceful_shutdown_interrupts_runs_that_outlive_the_grace_period() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &fake, &[("LEFORGE_SHUTDOWN_GRACE_MS", "500")]);
    call(
        reqwest::Method::POST,
        format!("{}/api/v1/agents", server.base),
        Some(json!({"name": "Long Haul", "system_prompt": "x"})),
    )
    .await;
    fake.push(Script::hang());
    let r = call(
        reqwest::Method::POST,
        format!("{}/api/v1/agents/long-haul/run", server.base),
        Some(json!({"input": "forever", "mode": "async"})),
    )
    .await;
    let run_id = r["data"]["run_id"].as_str().unwrap().to_string();
    fake.wait_for_requests(1).await;
    let mut server = server;
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "clean exit after the grace period");
    drop(server);
    let server = start(dir.path(), &fake, &[]);
    let run = call(
        reqwest::Method::GET,
        format!("{}/api/v1/runs/{run_id}", server.base),
        None,
    )
    .await;
    assert_eq!(run["data"]["status"], "interrupted", "{run}");
}

/// Callbacks come from the database's outbox, not from memory: a callback owed by a server
/// killed with SIGKILL — one whose first delivery failed, and one for a run the crash
/// interrupted — is sent by the next server, signed, with every attempt recorded.
#[tokio::test]
async fn callbacks_owed_at_a_crash_are_sent_after_the_restart() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/done",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let run = headers["x-leforge-run-id"].to_str().unwrap().to_string();
                    let mut all = sink.lock().unwrap();
                    all.push((run, serde_json::from_slice(&body).unwrap()));
                    // The first delivery fails, so a retry is owed when the server dies.
                    if all.len() == 1 {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/done", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LEFORGE_RUN_LEASE_MS", "1500"),
        ("LEFORGE_WEBHOOK_SECRET", "whsec-cluster"),
        ("LEFORGE_CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
    ];
    let server = start(dir.path(), &fake, &env);
    create_agent(
        &server.base,
        json!({"name": "Call Me", "system_prompt": "x"}),
    )
    .await;
    let run_async = |input: &'static str| {
        let (base, url) = (server.base.clone(), url.clone());
        async move {
            let r = call(
                reqwest::Method::POST,
                format!("{base}/api/v1/agents/call-me/run"),
                Some(json!({"input": input, "mode": "async", "callback_url": url})),
            )
            .await;
            r["data"]["run_id"].as_str().expect("accepted").to_string()
        }
    };
    fake.push(Script::text("{\"done\": 1}"));
    let finished = run_async("finishes").await;
    for _ in 0..200 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "the first attempt was made"
    );
    fake.push(Script::hang());
    let hanging = run_async("hangs").await;
    fake.wait_for_requests(2).await;
    kill(server);

    let server = start(dir.path(), &fake, &env);
    let mut got = Vec::new();
    for _ in 0..300 {
        got = received.lock().unwrap().clone();
        if got.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let retry = got
        .iter()
        .skip(1)
        .find(|(id, _)| *id == finished)
        .expect("retried");
    assert_eq!(retry.1["success"], true);
    assert_eq!(retry.1["data"]["output"], json!({"done": 1}));
    let interrupted = got
        .iter()
        .find(|(id, _)| *id == hanging)
        .expect("interrupted callback");
    assert_eq!(interrupted.1["success"], false);
    assert_eq!(interrupted.1["error"]["code"], "RUN_INTERRUPTED");
    assert_eq!(
        interrupted.1["error"]["details"]["run"]["status"],
        "interrupted"
    );
    // Every attempt is in the run, across both servers.
    let mut attempts = Vec::new();
    for _ in 0..100 {
        let run = call(
            reqwest::Method::GET,
            format!("{}/api/v1/runs/{finished}", server.base),
            None,
        )
        .await;
        attempts = run["data"]["callback_attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if attempts.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(200)]);
    // Delivered once: no more attempts follow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received.lock().unwrap().len(), 3);
}

/// A request's HTTP status and body.
async fn status_of(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url).header("x-api-key", KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A direct invoke through the admin key.
async fn invoke(base: &str, id: &str, endpoint: &str, input: Value) -> (u16, Value) {
    let url = format!("{base}/api/v1/forgehooks/{id}/invoke/{endpoint}");
    status_of(reqwest::Method::POST, url, Some(input)).await
}

/// Polls a direct invoke until `done` holds for its status and body, for at most `limit`;
/// returns how long it took.
async fn invoke_until(
    limit: Duration,
    base: &str,
    id: &str,
    endpoint: &str,
    input: Value,
    done: impl Fn(u16, &Value) -> bool,
) -> Option<Duration> {
    let (done, input) = (&done, &input);
    until(limit, || async move {
        let (status, body) = invoke(base, id, endpoint, input.clone()).await;
        done(status, &body)
    })
    .await
}

/// Polls `probe` until it returns true, for at most `limit`; returns how long it took.
async fn until<F, Fut>(limit: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if probe().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Replicas on one PostgreSQL: a ForgeHook change made through one server (disable, enable,
/// install, configuration, uninstall) is in force on the other within about a second, and
/// two servers on one Docker engine each run their own container, labelled as theirs.
#[tokio::test]
async fn two_servers_agree_on_forgehook_changes() {
    let Some(db) = leforge_store::testing::postgres().await else {
        return;
    };
    use std::sync::{Arc, Mutex};
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = tokens.clone();
    let service = axum::Router::new().route(
        "/svc/echo",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let token = headers
                        .get("x-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push(token.clone());
                    axum::Json(json!({"echo": body["text"], "token": token}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let fake = FakeProvider::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("DATABASE_URL", db.url.as_str())];
    let a = start(dir_a.path(), &fake, &env);
    let b = start(dir_b.path(), &fake, &env);
    // Generous for a loaded machine; the servers look every second.
    let limit = Duration::from_secs(10);
    let csv = || json!({"csv": "a,b\n1,2"});

    let (status, body) = invoke(&b.base, "data-transform", "csv_to_json", csv()).await;
    assert_eq!(status, 200, "{body}");

    // Disabled through A: B stops running it.
    let (status, body) = status_of(
        reqwest::Method::POST,
        format!("{}/api/v1/forgehooks/data-transform/disable", a.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let took = invoke_until(
        limit,
        &b.base,
        "data-transform",
        "csv_to_json",
        csv(),
        |status, _| status != 200,
    )
    .await;
    assert!(
        took.is_some(),
        "B still runs a ForgeHook disabled through A"
    );
    eprintln!("disable reached B after {took:?}");

    // Enabled again through A: B runs it again.
    status_of(
        reqwest::Method::POST,
        format!("{}/api/v1/forgehooks/data-transform/enable", a.base),
        None,
    )
    .await;
    let took = invoke_until(
        limit,
        &b.base,
        "data-transform",
        "csv_to_json",
        csv(),
        |status, _| status == 200,
    )
    .await;
    assert!(
        took.is_some(),
        "B does not run a ForgeHook enabled through A"
    );

    // Installed and configured through A: B calls it with A's configuration.
    let manifest = json!({
        "id": "echo-gw", "name": "Echo gateway", "version": "1.0.0", "runtime": "gateway",
        "gateway": {"baseUrl": format!("http://{addr}/svc"), "headers": {"X-Token": "${TOKEN}"}},
        "capabilities": {"config": [{"name": "TOKEN", "secret": true, "required": true}]},
        "endpoints": [{"name": "echo", "description": "Echoes text", "method": "POST",
            "path": "/echo", "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}]
    });
    let (status, body) = status_of(
        reqwest::Method::POST,
        format!("{}/api/v1/forgehooks", a.base),
        Some(manifest),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for token in ["first", "second"] {
        let (status, body) = status_of(
            reqwest::Method::PUT,
            format!("{}/api/v1/forgehooks/echo-gw/config", a.base),
            Some(json!({"TOKEN": token})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let took = invoke_until(
            limit,
            &b.base,
            "echo-gw",
            "echo",
            json!({"text": "hi"}),
            |status, body| status == 200 && body["data"]["output"]["token"] == token,
        )
        .await;
        assert!(
            took.is_some(),
            "B never used the configuration '{token}' set through A"
        );
    }

    // Uninstalled through A: gone on B.
    let (status, _) = status_of(
        reqwest::Method::DELETE,
        format!("{}/api/v1/forgehooks/echo-gw", a.base),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let took = invoke_until(
        limit,
        &b.base,
        "echo-gw",
        "echo",
        json!({"text": "hi"}),
        |status, _| status == 404,
    )
    .await;
    assert!(
        took.is_some(),
        "B still runs a ForgeHook uninstalled through A"
    );

    // Containers: each server runs its own, named and labelled per server instance.
    if !leforge_container::testing::docker_ready("docker").await {
        return;
    }
    leforge_container::testing::example_image();
    let (status, body) = status_of(
        reqwest::Method::POST,
        format!("{}/api/v1/forgehooks", a.base),
        Some(leforge_container::testing::example_manifest()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let text = || json!({"text": "two servers"});
    for server in [&a, &b] {
        let took = invoke_until(
            Duration::from_secs(120),
            &server.base,
            "container-example",
            "text_stats",
            text(),
            |status, _| status == 200,
        )
        .await;
        assert!(took.is_some(), "{} cannot call the container", server.base);
    }
    let instances = || {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "label=leforge.forgehook=container-example",
            ])
            .args(["--format", "{{.Names}} {{.Label \"leforge.instance\"}}"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ours: Vec<String> = text
            .lines()
            .filter(|l| {
                [dir_a.path(), dir_b.path()].iter().any(|d| {
                    let id = std::fs::read_to_string(d.join("instance-id")).unwrap_or_default();
                    !id.trim().is_empty() && l.ends_with(id.trim())
                })
            })
            .map(str::to_string)
            .collect();
        ours
    };
    let both = instances();
    assert_eq!(both.len(), 2, "one container per server: {both:?}");
    let names: std::collections::HashSet<_> = both
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{both:?}");
    let (status, _) = status_of(
        reqwest::Method::DELETE,
        format!("{}/api/v1/forgehooks/container-example", a.base),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let took = until(Duration::from_secs(30), || {
        let empty = instances().is_empty();
        async move { empty }
    })
    .await;
    assert!(took.is_some(), "containers left behind: {:?}", instances());
}

/// A sync run whose server is killed mid-run is `interrupted` by the next server, and a
/// replay of its idempotency key gets that answer instead of waiting forever.
#[tokio::test]
async fn a_sync_run_killed_with_its_server_is_interrupted_and_its_replay_answers() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lease = [("LEFORGE_RUN_LEASE_MS", "1500")];
    let server = start(dir.path(), &fake, &lease);
    create_agent(
        &server.base,
        json!({"name": "Sync Victim", "system_prompt": "x"}),
    )
    .await;
    fake.push(Script::hang());
    let send = |base: String| async move {
        reqwest::Client::new()
            .post(format!("{base}/api/v1/agents/sync-victim/run"))
            .header("x-api-key", KEY)
            .header("idempotency-key", "sync-crash-1")
            .json(&json!({"input": "wait"}))
            .send()
            .await
    };
    let pending = tokio::spawn(send(server.base.clone()));
    fake.wait_for_requests(1).await;
    kill(server);
    assert!(
        pending.await.unwrap().is_err(),
        "the request died with its server"
    );

    let server = start(dir.path(), &fake, &lease);
    let started = std::time::Instant::now();
    let replay = send(server.base.clone()).await.unwrap();
    let status = replay.status().as_u16();
    let body: Value = replay.json().await.unwrap();
    // Answered with the interrupted run (or, at worst, 202 to poll it): never a hang.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let run = if status == 202 {
        let id = body["data"]["run_id"].as_str().unwrap().to_string();
        let mut last = Value::Null;
        for _ in 0..200 {
            last = call(
                reqwest::Method::GET,
                format!("{}/api/v1/runs/{id}", server.base),
                None,
            )
            .await["data"]
                .clone();
            if last["status"] == "interrupted" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    } else {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "RUN_INTERRUPTED");
        body["error"]["details"]["run"].clone()
    };
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(fake.chat_count(), 1, "the replay did not run it again");
}
