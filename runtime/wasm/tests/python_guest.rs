//! A ForgeHook written in Python, built with componentize-py against host-api/wit, then
//! prepared, loaded and invoked like any other.
//!
//! Skipped (with a SKIP line) when componentize-py is not installed, unless
//! LEFORGE_REQUIRE_PYTHON_GUEST=1, which CI sets after `pip install componentize-py==0.25.1`.

use std::collections::HashMap;
use std::process::Command;

use leforge_core::tool::ToolError;
use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::json;
use tempfile::TempDir;

fn componentize_py_available() -> bool {
    Command::new("componentize-py")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_forgehook_builds_installs_and_runs() {
    if !componentize_py_available() {
        let required = std::env::var("LEFORGE_REQUIRE_PYTHON_GUEST").as_deref() == Ok("1");
        assert!(
            !required,
            "LEFORGE_REQUIRE_PYTHON_GUEST=1 but componentize-py is not on PATH \
             (pip install componentize-py==0.25.1)"
        );
        println!(
            "SKIP python_forgehook_builds_installs_and_runs: componentize-py is not installed"
        );
        return;
    }
    let dir = TempDir::new().unwrap();
    let wasm_path = dir.path().join("py-text.wasm");
    let status = Command::new("componentize-py")
        .args([
            "-d",
            leforge_test_guests::WIT_DIR,
            "-w",
            "forgehook",
            "componentize",
            "app",
        ])
        .args(["-p", leforge_test_guests::PYTHON_GUEST_DIR, "-o"])
        .arg(&wasm_path)
        .arg("--stub-wasi")
        .status()
        .unwrap();
    assert!(status.success(), "componentize-py failed");

    let host = WasmHost::new(WasmHostConfig {
        max_concurrent_calls: 4,
        ..WasmHostConfig::new(dir.path().join("cache"))
    })
    .unwrap();
    let prepared = host
        .prepare(&std::fs::read(&wasm_path).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(prepared.manifest.id, "py-text");
    let (manifest, sha256) = (prepared.manifest.clone(), prepared.sha256.clone());
    host.load_prepared(prepared, HashMap::new());

    let out = host
        .invoke(
            "py-text",
            "word_count",
            json!({"text": "the quick brown fox"}),
        )
        .await
        .unwrap();
    assert_eq!(
        out.output,
        json!({"words": 4, "chars": 19, "clock_ok": true})
    );

    let err = host.invoke("py-text", "fail", json!({})).await.unwrap_err();
    assert_eq!(
        err,
        ToolError::Guest {
            code: "NOPE".into(),
            message: "this endpoint always fails".into()
        }
    );
    let err = host
        .invoke("py-text", "word_count", json!({"text": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "INVALID_INPUT");

    // And from the cache, as at start-up.
    drop(host);
    let host = WasmHost::new(WasmHostConfig::new(dir.path().join("cache"))).unwrap();
    host.load(manifest, &sha256, HashMap::new()).unwrap();
    let out = host
        .invoke("py-text", "word_count", json!({"text": "a b"}))
        .await
        .unwrap();
    assert_eq!(out.output["words"], 2);
}
