//! Installing: validation of the component and its manifest, the artifact cache, loading at
//! start-up without recompiling, manifest overrides, configuration, and hot (un)loading.

use std::collections::HashMap;

use leforge_core::forgehook::Manifest;
use leforge_core::tool::{ToolError, ToolErrorCode};
use leforge_wasm::{InstallError, WasmHost, WasmHostConfig};
use serde_json::json;
use tempfile::TempDir;

fn echo_wasm() -> Vec<u8> {
    leforge_test_guests::read(leforge_test_guests::ECHO)
}

fn new_host(dir: &TempDir) -> WasmHost {
    WasmHost::new(WasmHostConfig {
        max_concurrent_calls: 8,
        ..WasmHostConfig::new(dir.path())
    })
    .unwrap()
}

fn files_under(dir: &std::path::Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_core_modules_are_rejected_with_a_clear_message() {
    let dir = TempDir::new().unwrap();
    let host = new_host(&dir);
    let err = host
        .prepare(b"MZ\x90\x00 not wasm at all", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("not WebAssembly"), "{err}");

    let core_module = b"\0asm\x01\x00\x00\x00";
    let err = host.prepare(core_module, None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component"),
        "{err}"
    );

    // A component header followed by garbage gets as far as the compiler.
    let mut truncated = echo_wasm();
    truncated.truncate(truncated.len() / 2);
    let err = host.prepare(&truncated, None).await.unwrap_err();
    assert!(matches!(err, InstallError::Malformed(_)), "{err:?}");
    assert!(err.is_client_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_another_world_names_what_is_missing() {
    let dir = TempDir::new().unwrap();
    let host = new_host(&dir);
    let wasm = leforge_test_guests::read(leforge_test_guests::OTHER_WORLD);
    let err = host.prepare(&wasm, None).await.unwrap_err();
    assert!(matches!(err, InstallError::WorldMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("test:other/gadget@1.0.0"), "{err}");
    assert!(
        files_under(dir.path(), "wasm").is_empty(),
        "nothing is cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_caches_and_a_restart_loads_without_recompiling() {
    let dir = TempDir::new().unwrap();
    let wasm = echo_wasm();
    let (manifest, sha256) = {
        let host = new_host(&dir);
        let prepared = host.prepare(&wasm, None).await.unwrap();
        assert_eq!(prepared.manifest.id, "echo");
        assert_eq!(prepared.size_bytes, wasm.len());
        assert_eq!(prepared.sha256.len(), 64);
        (prepared.manifest, prepared.sha256)
    };
    assert_eq!(files_under(dir.path(), "wasm"), [format!("{sha256}.wasm")]);
    let compiled = files_under(dir.path(), "compiled");
    assert_eq!(compiled.len(), 2, "{compiled:?}");

    // Remove the original: loading can then only succeed from the precompiled artifact.
    std::fs::remove_file(dir.path().join("wasm").join(format!("{sha256}.wasm"))).unwrap();
    let host = new_host(&dir);
    host.load(manifest.clone(), &sha256, HashMap::new())
        .unwrap();
    let out = host
        .invoke("echo", "echo", json!({"message": "from cache"}))
        .await
        .unwrap();
    assert_eq!(out.output["message"], "from cache");
    assert_eq!(host.sha256("echo").as_deref(), Some(sha256.as_str()));

    // A corrupt artifact is not deserialized; with no original left, the load fails cleanly.
    let artifact = compiled.iter().find(|f| f.ends_with(".cwasm")).unwrap();
    let artifact = dir.path().join("compiled").join(artifact);
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifact, bytes).unwrap();
    let err = new_host(&dir)
        .load(manifest.clone(), &sha256, HashMap::new())
        .unwrap_err();
    assert!(matches!(err, InstallError::NotCached { .. }), "{err:?}");

    // A planted artifact with a matching plain digest (all a file-system writer could make
    // before) is not trusted either: the tag needs the key kept outside the cache directory.
    let tag_file = artifact.with_extension("cwasm.hmac");
    assert!(tag_file.exists());
    let planted = std::fs::read(&artifact).unwrap();
    std::fs::write(&tag_file, leforge_wasm::sha256_hex(&planted)).unwrap();
    let err = new_host(&dir)
        .load(manifest, &sha256, HashMap::new())
        .unwrap_err();
    assert!(matches!(err, InstallError::NotCached { .. }), "{err:?}");
    let key = dir.path().with_file_name(format!(
        "{}.key",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    assert_eq!(
        std::fs::read(&key).unwrap().len(),
        32,
        "the key sits beside the cache"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the owner's only");
    }
    let _ = std::fs::remove_file(key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_artifact_is_recompiled_from_the_cached_original() {
    let dir = TempDir::new().unwrap();
    let prepared = new_host(&dir).prepare(&echo_wasm(), None).await.unwrap();
    for f in files_under(dir.path(), "compiled") {
        std::fs::remove_file(dir.path().join("compiled").join(f)).unwrap();
    }
    let host = new_host(&dir);
    host.load(prepared.manifest.clone(), &prepared.sha256, HashMap::new())
        .unwrap();
    assert_eq!(files_under(dir.path(), "compiled").len(), 2);
    host.invoke("echo", "echo", json!({"message": "x"}))
        .await
        .unwrap();

    host.remove_artifacts(&prepared.sha256).unwrap();
    assert!(files_under(dir.path(), "wasm").is_empty());
    assert!(files_under(dir.path(), "compiled").is_empty());
    let err = new_host(&dir)
        .load(prepared.manifest, &prepared.sha256, HashMap::new())
        .unwrap_err();
    assert!(matches!(err, InstallError::NotCached { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_manifest_replaces_describe_and_is_validated() {
    let dir = TempDir::new().unwrap();
    let host = new_host(&dir);
    let prepared = host.prepare(&echo_wasm(), None).await.unwrap();
    let mut manifest = prepared.manifest.clone();
    manifest.id = "echo-two".into();
    manifest.version = "2.0.0".into();
    manifest.endpoints.retain(|e| e.name == "echo");
    let prepared = host.prepare(&echo_wasm(), Some(manifest)).await.unwrap();
    assert_eq!(prepared.manifest.id, "echo-two");
    host.load_prepared(prepared, HashMap::new());
    let err = host.invoke("echo-two", "now", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);
    host.invoke("echo-two", "echo", json!({"message": "m"}))
        .await
        .unwrap();

    let mut bad: Manifest = host.manifest("echo-two").unwrap().as_ref().clone();
    bad.id = "Echo Two".into();
    bad.endpoints[0].input_schema = json!({"type": "object", "properties": {"a": {"type": 7}}});
    let err = host.prepare(&echo_wasm(), Some(bad)).await.unwrap_err();
    let fields: Vec<&str> = err
        .field_errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(fields, ["id", "endpoints[0].input_schema"], "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_per_install_and_limited_to_declared_keys() {
    let dir = TempDir::new().unwrap();
    let host = new_host(&dir);
    let prepared = host.prepare(&echo_wasm(), None).await.unwrap();
    let config = HashMap::from([
        ("greeting".to_string(), "hello".to_string()),
        ("token".to_string(), "s3cret".to_string()),
        ("undeclared".to_string(), "leak".to_string()),
    ]);
    host.load_prepared(prepared, config);
    let get = |key: &'static str| {
        let host = host.clone();
        async move {
            host.invoke("echo", "config", json!({ "key": key }))
                .await
                .unwrap()
                .output["value"]
                .clone()
        }
    };
    assert_eq!(get("greeting").await, "hello");
    assert_eq!(get("token").await, "s3cret");
    assert_eq!(get("undeclared").await, json!(null));

    assert!(host.set_config("echo", HashMap::from([("greeting".into(), "hi".into())])));
    assert_eq!(get("greeting").await, "hi");
    assert_eq!(get("token").await, json!(null));
    assert!(!host.set_config("nope", HashMap::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_reaches_granted_hosts_only_if_the_server_allows_them() {
    let (origin, hits) = serve_http().await;
    let port = origin.rsplit(':').next().unwrap().to_string();
    let by_name = format!("http://localhost:{port}");
    let url = format!("{origin}/hello");

    // Granted by the manifest, but loopback: refused by address, by literal and by a name
    // that resolves to it, before any connection is made.
    let guarded_dir = TempDir::new().unwrap();
    let guarded = new_host(&guarded_dir);
    let prepared = guarded.prepare(&echo_wasm(), None).await.unwrap();
    let mut manifest = prepared.manifest.clone();
    manifest.capabilities.allowed_hosts = vec![origin.clone(), by_name.clone()];
    let prepared = guarded
        .prepare(&echo_wasm(), Some(manifest.clone()))
        .await
        .unwrap();
    guarded.load_prepared(prepared, HashMap::new());
    for target in [url.clone(), format!("{by_name}/hello")] {
        let err = guarded
            .invoke("echo", "fetch", json!({ "url": target }))
            .await
            .unwrap_err();
        let ToolError::Guest { code, message } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(code, "FETCH_FAILED");
        assert!(message.contains("loopback"), "{target}: {message}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The operator allows this internal host explicitly.
    let dir = TempDir::new().unwrap();
    let host = WasmHost::new(WasmHostConfig {
        max_concurrent_calls: 8,
        private_hosts: vec!["127.0.0.1".into()],
        ..WasmHostConfig::new(dir.path())
    })
    .unwrap();
    let prepared = host
        .prepare(&echo_wasm(), Some(manifest.clone()))
        .await
        .unwrap();
    host.load_prepared(prepared, HashMap::new());
    let out = host
        .invoke("echo", "fetch", json!({ "url": url }))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"status": 200, "body": "hello"}));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Same grant, but the operator fenced ForgeHooks in to another origin.
    let dir2 = TempDir::new().unwrap();
    let fenced = WasmHost::new(WasmHostConfig {
        allowed_hosts: Some(vec!["https://api.example.com".into()]),
        private_hosts: vec!["127.0.0.1".into()],
        max_concurrent_calls: 4,
        ..WasmHostConfig::new(dir2.path())
    })
    .unwrap();
    let prepared = fenced.prepare(&echo_wasm(), Some(manifest)).await.unwrap();
    fenced.load_prepared(prepared, HashMap::new());
    let err = fenced
        .invoke("echo", "fetch", json!({ "url": url }))
        .await
        .unwrap_err();
    let ToolError::Guest { code, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(code, "FETCH_FAILED");
    assert!(
        message.contains("not permitted by the server's configuration"),
        "{message}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_removal_need_no_restart() {
    let dir = TempDir::new().unwrap();
    let host = new_host(&dir);
    assert!(host.list().is_empty());
    let prepared = host.prepare(&echo_wasm(), None).await.unwrap();
    let mut v2 = prepared.manifest.clone();
    host.load_prepared(prepared, HashMap::new());
    assert_eq!(host.list().len(), 1);

    v2.version = "2.0.0".into();
    let upgraded = host.prepare(&echo_wasm(), Some(v2)).await.unwrap();
    host.load_prepared(upgraded, HashMap::new());
    assert_eq!(host.manifest("echo").unwrap().version, "2.0.0");
    assert_eq!(host.list().len(), 1);

    assert!(host.unload("echo"));
    assert!(!host.unload("echo"));
    let err = host
        .invoke("echo", "echo", json!({"message": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::NotFound);
}

/// An HTTP server on loopback answering "hello" to every request; returns its origin.
async fn serve_http() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                )
                .await;
        }
    });
    (origin, hits)
}
