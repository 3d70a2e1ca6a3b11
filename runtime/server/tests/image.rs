//! Issue 29: the runtime image. `docker/build-image.sh` builds the static binary and the
//! image from the root Dockerfile; the test checks the image's configuration (non-root,
//! a volume, the defaults, the health check) and runs one agent in a container of it, on
//! the real Docker engine, against the wire-level fake provider.
//!
//! Without a reachable engine it prints `SKIP …` and passes, unless
//! `LEFORGE_REQUIRE_DOCKER=1` (CI), where it fails.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().expect("docker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn engine_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up && std::env::var("LEFORGE_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("LEFORGE_REQUIRE_DOCKER=1 but no Docker engine answers");
    }
    up
}

/// Removes what the test made, also when it fails.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = Command::new("docker").args(&args).output();
        }
    }
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

#[tokio::test]
async fn the_image_builds_and_answers_a_run() {
    if !engine_available() {
        eprintln!("SKIP: no Docker engine");
        return;
    }
    let tag = format!("leforge-test:{}", uuid::Uuid::new_v4().simple());
    let name = format!("leforge-image-test-{}", uuid::Uuid::new_v4().simple());
    let volume = format!("{name}-data");
    let _cleanup = Cleanup(vec![
        vec!["rm".into(), "-f".into(), name.clone()],
        vec!["volume".into(), "rm".into(), "-f".into(), volume.clone()],
        vec!["rmi".into(), "-f".into(), tag.clone()],
    ]);
    // A debug build, in a target directory of its own: the static flags rebuild every
    // crate, and a directory apart never waits on the lock of the build running the tests.
    let built = Command::new("sh")
        .arg(repo().join("docker/build-image.sh"))
        .env("PROFILE", "dev")
        .env("CARGO_TARGET_DIR", repo().join("target/image"))
        .env("IMAGE", &tag)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run build-image.sh");
    assert!(
        built.status.success(),
        "build-image.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&built.stdout).trim(), tag);

    // The image's own configuration.
    let (ok, config) = docker(&["image", "inspect", "--format", "{{json .Config}}", &tag]);
    assert!(ok, "{config}");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], json!(["/leforge"]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"LEFORGE_LISTEN=0.0.0.0:4000"), "{env:?}");
    assert!(env.contains(&"LEFORGE_DATA_DIR=/data"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("DATABASE_URL")),
        "{env:?}"
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/leforge", "healthcheck"])
    );

    // One agent run, in a container on the host's network so that it reaches the fake
    // provider on the loopback; a port of its own, for parallel test runs.
    let fake = leforge_fake_provider::FakeProvider::start().await;
    let port = free_port();
    let key = "image-test-admin-key-0123456789";
    let (ok, out) = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--health-interval",
        "1s",
        "--health-start-period",
        "60s",
        "-v",
        &format!("{volume}:/data"),
        "-e",
        &format!("LEFORGE_LISTEN=127.0.0.1:{port}"),
        "-e",
        &format!("LEFORGE_ADMIN_KEY={key}"),
        "-e",
        &format!("ANTHROPIC_BASE_URL={}", fake.base_url()),
        "-e",
        "ANTHROPIC_API_KEY=test-anthropic-key",
        &tag,
    ]);
    assert!(ok, "{out}");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // The first start compiles the seven built-in ForgeHooks (a debug build, on a shared
    // machine): it may take minutes.
    let mut health = Value::Null;
    for _ in 0..3000 {
        if let Ok(r) = http.get(format!("{base}/api/v1/health")).send().await {
            health = r.json().await.unwrap_or(Value::Null);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health["status"],
        "ok",
        "{health}; logs: {}",
        docker(&["logs", &name]).1
    );
    assert_eq!(health["database"], "sqlite");
    // The built-in ForgeHooks are there, from the binary alone.
    let hooks: Value = json_of(http.get(format!("{base}/api/v1/forgehooks"))).await;
    assert_eq!(hooks["data"].as_array().unwrap().len(), 7, "{hooks}");
    let created = http
        .post(format!("{base}/api/v1/agents"))
        .bearer_auth(key)
        .json(
            &json!({"name": "Boxed", "system_prompt": "You change case.",
                      "provider": "anthropic", "model": "claude-sonnet",
                      "tools": ["string-utils"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    fake.push_all([
        leforge_fake_provider::Script::tool_call(
            "string-utils__case",
            json!({"text": "boxed", "to": "upper"}),
        ),
        leforge_fake_provider::Script::text("```json\n{\"word\": \"BOXED\"}\n```"),
    ]);
    let run: Value = json_of(
        http.post(format!("{base}/api/v1/agents/boxed/run"))
            .bearer_auth(key)
            .json(&json!({"input": "Shout boxed"})),
    )
    .await;
    assert_eq!(run["data"]["status"], "completed", "{run}");
    assert_eq!(run["data"]["output"], json!({"word": "BOXED"}));
    assert_eq!(run["data"]["steps"][0]["output"]["text"], "BOXED");

    // The image's health check passes (it runs `leforge healthcheck` inside the container).
    let mut status = String::new();
    for _ in 0..100 {
        status = docker(&["inspect", "--format", "{{.State.Health.Status}}", &name]).1;
        if status == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "healthy");
    // Logs are JSON lines, and never hold the key.
    let (_, logs) = docker(&["logs", &name]);
    assert!(!logs.contains(key), "{logs}");
    assert!(
        logs.lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["message"] == "run finished")),
        "{logs}"
    );
}

/// The compose file is valid, runs the image on PostgreSQL, and keeps data in volumes.
#[test]
fn compose_runs_the_image_with_postgres() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_norway::from_str(&text).unwrap();
    let leforge = &compose["services"]["leforge"];
    assert_eq!(leforge["image"], "leforge");
    assert!(leforge["environment"]["DATABASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("postgres://leforge:leforge@postgres:5432/"));
    assert_eq!(
        leforge["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert_eq!(leforge["volumes"], json!(["data:/data"]));
    assert!(compose["services"]["postgres"]["image"]
        .as_str()
        .unwrap()
        .starts_with("postgres:"));
    // docker-compose, where installed, agrees that the file is valid.
    if let Ok(out) = Command::new("docker-compose")
        .arg("-f")
        .arg(repo().join("docker-compose.yml"))
        .arg("config")
        .arg("--quiet")
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
