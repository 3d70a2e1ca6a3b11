//! MCP `tools/call` of a ForgeHook against the REST invoke of the same endpoint (issue 30):
//! `cargo bench -p leforge-server --bench mcp`.
//!
//! The router is served on a loopback port; one keep-alive HTTP client sends, one call at a
//! time, `POST /api/v1/forgehooks/string-utils/invoke/slugify` and, in an initialized MCP
//! session (protocol 2025-06-18), `tools/call` of `string-utils__slugify` with the same input.
//! Each side gets a warm-up, then the two alternate in rounds so that drift on this shared
//! machine hits both alike. Reported: p50/p90/p99 wall time per call as the client sees it,
//! response fully read.

use std::time::{Duration, Instant};

use leforge_server::config::{Config, ServerArgs};
use leforge_server::AppState;
use serde_json::{json, Value};

const WARMUP: usize = 300;
const ROUNDS: usize = 20;
const PER_ROUND: usize = 100;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn report(name: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let p50 = pct(&samples, 0.5);
    println!(
        "{name:<44} n={} p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        samples.len(),
        p50,
        pct(&samples, 0.9),
        pct(&samples, 0.99)
    );
    p50
}

/// The JSON-RPC message of a Streamable HTTP answer (JSON, or the first SSE event with an id).
fn rpc(content_type: &str, text: &str) -> Value {
    if !content_type.starts_with("text/event-stream") {
        return serde_json::from_str(text).expect("JSON-RPC");
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| {
            serde_json::from_str::<Value>(d.trim())
                .ok()
                .filter(|v| v.get("id").is_some())
        })
        .expect("a JSON-RPC response event")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db = leforge_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::resolve(&ServerArgs::default()).unwrap();
    config.data_dir = dir.path().to_path_buf();
    let admin = leforge_server::auth::bootstrap_admin(db.store.as_ref(), None)
        .await
        .unwrap()
        .unwrap();
    let state = AppState::build(db.store.clone(), config).unwrap();
    let builtins: Vec<(&str, &[u8])> = leforge_builtin_plugins::all()
        .iter()
        .filter(|b| b.id == "string-utils")
        .map(|b| (b.id, b.wasm))
        .collect();
    state.forgehooks.install_builtins(&builtins).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = leforge_server::app::no_delay(listener);
    let app = leforge_server::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let http = reqwest::Client::new();
    let input = json!({"text": "Hello, MCP World — 2026!"});

    let rest_url = format!("http://{addr}/api/v1/forgehooks/string-utils/invoke/slugify");
    let rest = || async {
        let t = Instant::now();
        let r = http
            .post(&rest_url)
            .bearer_auth(&admin)
            .json(&input)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let body: Value = r.json().await.unwrap();
        assert!(body["data"]["output"].is_object(), "{body}");
        t.elapsed()
    };

    let mcp_url = format!("http://{addr}/mcp");
    let init = http
        .post(&mcp_url)
        .bearer_auth(&admin)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = init.text().await;
    http.post(&mcp_url)
        .bearer_auth(&admin)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    let mut id = 1u64;
    let mut mcp = || {
        id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "string-utils__slugify", "arguments": input}});
        let (http, url, admin, session) = (&http, &mcp_url, &admin, &session);
        async move {
            let t = Instant::now();
            let r = http
                .post(url)
                .bearer_auth(admin)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18")
                .json(&body)
                .send()
                .await
                .unwrap();
            let kind = r.headers()["content-type"].to_str().unwrap().to_string();
            let text = r.text().await.unwrap();
            let answer = rpc(&kind, &text);
            assert_eq!(answer["result"]["isError"], false, "{answer}");
            t.elapsed()
        }
    };

    for _ in 0..WARMUP {
        rest().await;
        mcp().await;
    }
    let (mut rest_samples, mut mcp_samples) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            rest_samples.push(rest().await);
        }
        for _ in 0..PER_ROUND {
            mcp_samples.push(mcp().await);
        }
    }
    let r = report("REST POST /forgehooks/{id}/invoke/{endpoint}", rest_samples);
    let m = report("MCP tools/call string-utils__slugify", mcp_samples);
    println!(
        "MCP overhead at p50: {:+.1} µs ({:+.0} %)",
        m - r,
        (m - r) / r * 100.0
    );
}
