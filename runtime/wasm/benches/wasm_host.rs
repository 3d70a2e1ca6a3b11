//! Benchmarks of the WASM host, run with `cargo bench -p leforge-wasm --bench wasm_host`:
//! - warm call latency: `WasmHost::invoke` of the echo guest with a 1 KB JSON input, which is
//!   schema validation + fresh store + instantiation from the pool + call + output parsing;
//! - start-up: a new host (engine, pool, linker) loading 10 ForgeHooks from the artifact cache.
//!
//! A plain binary (no criterion) so it prints exactly the figures BENCHMARKS.md records.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::json;

const CALLS: usize = 5_000;
const WARM_UP: usize = 500;
const STARTUP_RUNS: usize = 5;
const HOOKS: usize = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Appends a custom section so each copy has its own digest (and its own cache artifact),
/// as ten different ForgeHooks would.
fn with_custom_section(wasm: &[u8], tag: usize) -> Vec<u8> {
    let name = b"leforge-bench";
    let payload = tag.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(size as u8); // LEB128, fits in one byte
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let echo = leforge_test_guests::read(leforge_test_guests::ECHO);

    // Install ten ForgeHooks (distinct components) into the cache.
    let mut installed = Vec::new();
    {
        let host = WasmHost::new(WasmHostConfig::new(dir.path())).expect("host");
        for i in 0..HOOKS {
            let wasm = with_custom_section(&echo, i);
            let mut prepared = host.prepare(&wasm, None).await.expect("prepare");
            prepared.manifest.id = format!("echo-{i}");
            installed.push((prepared.manifest.clone(), prepared.sha256.clone()));
        }
    }

    // Start-up from the cache.
    let mut startups = Vec::new();
    let mut host = None;
    for _ in 0..STARTUP_RUNS {
        let started = Instant::now();
        let h = WasmHost::new(WasmHostConfig::new(dir.path())).expect("host");
        for (manifest, sha256) in &installed {
            h.load(manifest.clone(), sha256, HashMap::new())
                .expect("load");
        }
        startups.push(started.elapsed());
        host = Some(h);
    }
    let host = host.expect("at least one start-up run");
    startups.sort();

    // Warm call latency with a 1 KB input.
    let message = "x".repeat(1024 - r#"{"message":""}"#.len());
    let input = json!({ "message": message });
    assert_eq!(serde_json::to_string(&input).expect("json").len(), 1024);
    for _ in 0..WARM_UP {
        host.invoke("echo-0", "echo", input.clone())
            .await
            .expect("call");
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let input = input.clone();
        let started = Instant::now();
        let out = host.invoke("echo-0", "echo", input).await.expect("call");
        samples.push(started.elapsed());
        assert_eq!(
            out.output["message"].as_str().map(str::len),
            Some(message.len())
        );
    }
    samples.sort();

    println!("warm call, 1 KB JSON echo ({CALLS} calls after {WARM_UP} warm-up):");
    println!(
        "  p50 {}  p90 {}  p99 {}  min {}",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.9)),
        us(percentile(&samples, 0.99)),
        us(samples[0])
    );
    println!("start-up with {HOOKS} ForgeHooks from the cache ({STARTUP_RUNS} runs):");
    println!(
        "  median {:.1} ms  max {:.1} ms",
        percentile(&startups, 0.5).as_secs_f64() * 1e3,
        startups[startups.len() - 1].as_secs_f64() * 1e3
    );
}
