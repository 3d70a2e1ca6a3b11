//! `csv_to_json` on a 10 MB CSV: inside WASM through the real `WasmHost` vs the same Rust
//! code natively. Run with `cargo bench -p leforge-builtin-plugins --bench csv_to_json`.
//!
//! Three figures, each the median of RUNS after a warm-up:
//! - wasm: `WasmHost::invoke` end to end (input schema check, fresh instance, copying the
//!   10 MB input in, the guest's JSON decode + CSV parse + JSON encode, copying the output
//!   out, parsing it into a `Value`);
//! - native, same work: the input `Value` serialized, the SDK's `invoke` (the very code the
//!   component runs), and the output parsed into a `Value`, i.e. what the host does around
//!   the guest minus sandboxing;
//! - native function: `csv_to_json` on the Rust struct alone, for scale.
//!
//! A plain binary (no criterion): one 10 MB call takes long enough that a handful of runs
//! gives stable figures, and it prints exactly what BENCHMARKS.md records.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use leforge_plugin_data_transform::{csv_to_json, hook, CsvToJsonInput};
use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::{json, Value};

const TARGET_BYTES: usize = 10 * 1024 * 1024;
const RUNS: usize = 5;

/// A deterministic CSV of about 10 MB with the seed's mix: text, dates in several formats,
/// integers, decimals, quoted fields with commas, ids with leading zeros.
fn make_csv() -> (String, usize) {
    let mut csv = String::with_capacity(TARGET_BYTES + 256);
    csv.push_str("id,name,date,amount,price,region,note\n");
    let regions = ["West", "East", "North", "South"];
    let dates = ["1/15/24", "2024-02-20", "March 5 2024", "05.03.2024"];
    let mut rows = 0;
    while csv.len() < TARGET_BYTES {
        let i = rows;
        csv.push_str(&format!(
            "{:06},Customer {},{},{},{}.{:02},{},\"note {}, with a comma\"\n",
            i,
            i % 9973,
            dates[i % 4],
            (i * 37) % 5000,
            (i * 13) % 1000,
            i % 100,
            regions[i % 4],
            i % 101
        ));
        rows += 1;
    }
    (csv, rows)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (csv, rows) = make_csv();
    let input = json!({ "csv": csv });
    println!(
        "input: {:.1} MB CSV, {rows} rows x 7 columns",
        csv.len() as f64 / (1024.0 * 1024.0)
    );

    // Native, the same work the host and guest do around the CSV parse.
    let h = hook();
    let mut native = Vec::new();
    let mut out_len = 0;
    for run in 0..=RUNS {
        let started = Instant::now();
        let text = serde_json::to_string(&input).expect("input");
        let out = h.invoke("csv_to_json", &text).expect("native csv_to_json");
        let value: Value = serde_json::from_str(&out).expect("output");
        let elapsed = started.elapsed();
        assert_eq!(value["row_count"], rows);
        out_len = out.len();
        if run > 0 {
            native.push(elapsed);
        }
    }
    let mut native_fn = Vec::new();
    for run in 0..=RUNS {
        let started = Instant::now();
        let out = csv_to_json(CsvToJsonInput {
            csv: csv.clone(),
            delimiter: None,
            header: true,
            infer_types: true,
        })
        .expect("native function");
        let elapsed = started.elapsed();
        assert_eq!(out.row_count, rows);
        if run > 0 {
            native_fn.push(elapsed);
        }
    }

    // WASM, through the real host with limits raised for a 10 MB input.
    let dir = tempfile::TempDir::new().expect("temp dir");
    let host = WasmHost::new(WasmHostConfig {
        max_output_bytes: 256 << 20,
        max_memory_mb: 2048,
        max_timeout_ms: 600_000,
        max_concurrent_calls: 2,
        ..WasmHostConfig::new(dir.path())
    })
    .expect("host");
    let builtin = leforge_builtin_plugins::get("data-transform").expect("embedded");
    let mut prepared = host.prepare(builtin.wasm, None).await.expect("prepare");
    let limits = &mut prepared.manifest.capabilities.limits;
    limits.max_output_bytes = 256 << 20;
    limits.memory_mb = 2048;
    limits.timeout_ms = 600_000;
    host.load_prepared(prepared, HashMap::new());
    let mut wasm = Vec::new();
    for run in 0..=RUNS {
        let started = Instant::now();
        let out = host
            .invoke("data-transform", "csv_to_json", input.clone())
            .await
            .expect("wasm csv_to_json");
        let elapsed = started.elapsed();
        assert_eq!(out.output["row_count"], rows);
        if run > 0 {
            wasm.push(elapsed);
        }
    }

    let (w, n, f) = (median(wasm), median(native), median(native_fn));
    println!("output: {:.1} MB JSON", out_len as f64 / (1024.0 * 1024.0));
    println!("median of {RUNS} runs after one warm-up:");
    println!("  wasm (WasmHost::invoke, end to end):        {}", ms(w));
    println!("  native (JSON in -> SDK invoke -> JSON out):   {}", ms(n));
    println!("  native csv_to_json function alone:            {}", ms(f));
    println!(
        "  wasm / native same work: {:.2}x",
        w.as_secs_f64() / n.as_secs_f64()
    );
}
