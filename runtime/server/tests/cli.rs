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
}

/// GET without a key, answered with JSON.
async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
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
        match rx.recv_timeout(Duration::from_secs(60)) {
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
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        stderr_lines: lines,
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
