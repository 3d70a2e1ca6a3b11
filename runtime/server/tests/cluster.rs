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
    rx.recv_timeout(Duration::from_secs(120))
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

#[tokio::test]
async fn a_run_killed_with_its_server_is_interrupted_with_its_finished_steps() {
    let fake = FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lease = [("LEFORGE_RUN_LEASE_MS", "1500")];
    let server = start(dir.path(), &fake, &lease);
    let agent = call(
        reqwest::Method::POST,
        format!("{}/api/v1/agents", server.base),
        Some(json!({"name": "Doomed", "system_prompt": "x", "tools": ["data-transform"]})),
    )
    .await;
    assert_eq!(agent["success"], true, "{agent}");
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
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no chance to clean up.
    server.child.wait().unwrap();
    drop(server);

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
    let agent = call(
        reqwest::Method::POST,
        format!("{}/api/v1/agents", a.base),
        Some(json!({"name": "Shared Worker", "system_prompt": "x"})),
    )
    .await;
    assert_eq!(agent["success"], true, "{agent}");
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
