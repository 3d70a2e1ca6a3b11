//! The sandbox: the echo guest works, and every member of the hostile corpus ends with its
//! precise error code while the host stays healthy.

use std::time::Duration;

use leforge_core::tool::{ToolError, ToolErrorCode};
use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::{json, Value};
use tempfile::TempDir;

fn config(dir: &TempDir) -> WasmHostConfig {
    WasmHostConfig {
        max_memory_mb: 1024,
        max_concurrent_calls: 16,
        ..WasmHostConfig::new(dir.path())
    }
}

async fn host_with(guests: &[&str]) -> (WasmHost, TempDir) {
    let dir = TempDir::new().unwrap();
    let host = WasmHost::new(config(&dir)).unwrap();
    for path in guests {
        let prepared = host
            .prepare(&leforge_test_guests::read(path), None)
            .await
            .unwrap();
        host.load_prepared(prepared, Default::default());
    }
    (host, dir)
}

async fn hostile(endpoint: &str, input: Value) -> ToolError {
    let (host, _dir) = host_with(&[leforge_test_guests::HOSTILE]).await;
    let err = host
        .invoke("hostile", endpoint, input)
        .await
        .expect_err("the hostile call must fail");
    // Whatever the guest did, the host still serves the next call.
    assert_echo_works(&host_with_echo(&host).await).await;
    err
}

async fn host_with_echo(host: &WasmHost) -> WasmHost {
    if host.manifest("echo").is_none() {
        let prepared = host
            .prepare(&leforge_test_guests::read(leforge_test_guests::ECHO), None)
            .await
            .unwrap();
        host.load_prepared(prepared, Default::default());
    }
    host.clone()
}

async fn assert_echo_works(host: &WasmHost) {
    let input = json!({"message": "still alive", "data": {"n": [1, 2, 3]}});
    let out = host.invoke("echo", "echo", input.clone()).await.unwrap();
    assert_eq!(out.output, input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trips_and_describes_itself() {
    let (host, _dir) = host_with(&[leforge_test_guests::ECHO]).await;
    let manifest = host.manifest("echo").unwrap();
    assert_eq!(manifest.version, "1.0.0");
    let names: Vec<_> = manifest.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["echo", "config", "fetch", "now", "calls"]);
    let schema = &manifest.endpoints[0].input_schema;
    assert_eq!(schema["required"], json!(["message"]));
    assert_eq!(schema["properties"]["message"]["type"], "string");

    let input = json!({"message": "héllo", "data": [1, {"a": null}]});
    let out = host.invoke("echo", "echo", input.clone()).await.unwrap();
    assert_eq!(out.output, input);

    let now = host.invoke("echo", "now", json!({})).await.unwrap();
    assert!(now.output["now_ms"].as_u64().unwrap() > 1_600_000_000_000);
}

/// Each call runs in a fresh instance, so nothing a call leaves in memory reaches the next.
/// The pooling allocator resets a used memory in place (the pages it dirtied, where the kernel
/// can tell which), or decommits it; either way a static the guest bumps must start from its
/// initial value on every call, including calls that land on a reused slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_survives_from_one_call_to_the_next() {
    let (host, _dir) = host_with(&[leforge_test_guests::ECHO]).await;
    for _ in 0..20 {
        let out = host.invoke("echo", "calls", json!({})).await.unwrap();
        assert_eq!(out.output, json!({"calls": 1}));
    }
    let call = || host.invoke("echo", "calls", json!({}));
    let (a, b, c, d) = tokio::join!(call(), call(), call(), call());
    for out in [a, b, c, d] {
        assert_eq!(out.unwrap().output, json!({"calls": 1}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_failing_the_schema_is_rejected_before_the_call() {
    let (host, _dir) = host_with(&[leforge_test_guests::ECHO]).await;
    let err = host
        .invoke("echo", "echo", json!({"message": 5}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput);
    let ToolError::InvalidInput { problems } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("at /message: 5 is not of type"),
        "{problems:?}"
    );

    let err = host.invoke("echo", "echo", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput);
    assert!(
        err.to_string()
            .contains("\"message\" is a required property"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_forgehooks_and_endpoints_are_not_found() {
    let (host, _dir) = host_with(&[leforge_test_guests::ECHO]).await;
    let err = host.invoke("nope", "echo", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);
    let err = host.invoke("echo", "shout", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);
    assert_eq!(
        err.to_string(),
        "ForgeHook 'echo' has no endpoint 'shout'; it has: echo, config, fetch, now, calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out() {
    let err = hostile("spin", json!({})).await;
    assert_eq!(err, ToolError::Timeout { timeout_ms: 5_000 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_runs_out_of_memory() {
    let err = hostile("memory_bomb", json!({})).await;
    assert_eq!(err, ToolError::OutOfMemory { limit_mb: 512 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps() {
    let err = hostile("recurse", json!({})).await;
    assert_eq!(err.code(), ToolErrorCode::Trap);
    assert!(err.to_string().contains("call stack exhausted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_output_is_too_large() {
    let err = hostile("big_output", json!({})).await;
    let ToolError::OutputTooLarge { size, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 4 << 20);
    assert_eq!(size, (100 << 20) + r#"{"data":""}"#.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_traps_with_the_panic_message() {
    let err = hostile("panic", json!({})).await;
    assert_eq!(err.code(), ToolErrorCode::Trap);
    let msg = err.to_string();
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("hostile guest panicked on purpose"), "{msg}");
}

fn assert_blocked(err: &ToolError, expect_in_message: &str) {
    let ToolError::Guest { code, message } = err else {
        panic!("expected GUEST_ERROR, got {err:?}")
    };
    assert_eq!(code, "BLOCKED", "{message}");
    assert!(
        message.contains(expect_in_message),
        "'{message}' should contain '{expect_in_message}'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_etc_passwd_is_blocked() {
    let err = hostile("read_file", json!({"target": "/etc/passwd"})).await;
    // No directory is preopened, so no path resolves at all.
    assert_blocked(&err, "");
    assert!(!err.to_string().contains("root:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_vars_and_args_are_empty() {
    assert!(
        std::env::vars().count() > 0,
        "the test itself has an environment"
    );
    let err = hostile("read_env", json!({})).await;
    assert_blocked(&err, "no env vars, no args, cwd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_socket_is_blocked() {
    // A listener the guest would reach if sockets were not denied.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let err = hostile("open_socket", json!({ "target": addr })).await;
    assert_blocked(&err, "");
    let accepted = listener.accept();
    assert_eq!(
        accepted.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the guest connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_to_a_host_not_granted_is_refused() {
    let (url, hits) = serve_http_once().await;
    let err = hostile("fetch", json!({ "target": url })).await;
    assert_blocked(
        &err,
        "host not allowed: http://127.0.0.1 is not in this ForgeHook's allowed_hosts",
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_running_at_once_leaves_echo_calls_unharmed() {
    let (host, _dir) = host_with(&[leforge_test_guests::HOSTILE, leforge_test_guests::ECHO]).await;
    let corpus = [
        ("spin", ToolErrorCode::Timeout),
        ("memory_bomb", ToolErrorCode::OutOfMemory),
        ("recurse", ToolErrorCode::Trap),
        ("big_output", ToolErrorCode::OutputTooLarge),
        ("panic", ToolErrorCode::Trap),
        ("read_env", ToolErrorCode::GuestError),
    ];
    let mut hostile_calls = Vec::new();
    for (endpoint, code) in corpus {
        let host = host.clone();
        hostile_calls.push(tokio::spawn(async move {
            let err = host
                .invoke("hostile", endpoint, json!({}))
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{endpoint}: {err}");
        }));
    }
    // Echo calls interleave with the corpus; the loop guest alone runs for five seconds.
    let mut echoes = 0;
    while !hostile_calls.iter().all(|h| h.is_finished()) {
        assert_echo_works(&host).await;
        echoes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for call in hostile_calls {
        call.await.unwrap();
    }
    assert!(echoes > 0);
    assert_echo_works(&host).await;
}

/// A one-shot HTTP server on loopback; counts the requests it received.
async fn serve_http_once() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/secret", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret",
                )
                .await;
        }
    });
    (url, hits)
}
