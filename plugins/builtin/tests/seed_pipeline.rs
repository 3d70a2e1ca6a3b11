//! The seed's example run end to end on the real WASM host with the embedded components:
//! "Clean this CSV: fix the date formats to ISO, calculate the total amount per region, and
//! return as JSON" = csv_to_json -> parse_dates -> aggregate.

use std::collections::HashMap;

use leforge_core::tool::ToolErrorCode;
use leforge_wasm::{WasmHost, WasmHostConfig};
use serde_json::{json, Value};
use tempfile::TempDir;

const SEED_CSV: &str = "name,date,amount,region\nJohn,1/15/24,1500,West\nJane,2024-02-20,2000,East\nBob,March 5 2024,1200,West";

async fn host_with(dir: &TempDir, ids: &[&str]) -> WasmHost {
    let host = WasmHost::new(WasmHostConfig {
        max_concurrent_calls: 4,
        ..WasmHostConfig::new(dir.path())
    })
    .unwrap();
    for id in ids {
        let builtin =
            leforge_builtin_plugins::get(id).unwrap_or_else(|| panic!("{id} is not embedded"));
        let prepared = host.prepare(builtin.wasm, None).await.unwrap();
        assert_eq!(prepared.manifest.id, *id);
        host.load_prepared(prepared, HashMap::new());
    }
    host
}

async fn invoke(host: &WasmHost, id: &str, endpoint: &str, input: Value) -> Value {
    host.invoke(id, endpoint, input)
        .await
        .unwrap_or_else(|e| panic!("{id}/{endpoint}: {e}"))
        .output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_pipeline_csv_to_iso_dates_to_totals_per_region() {
    let dir = TempDir::new().unwrap();
    let host = host_with(&dir, &["data-transform", "date-utils", "formula-engine"]).await;

    let table = invoke(
        &host,
        "data-transform",
        "csv_to_json",
        json!({"csv": SEED_CSV}),
    )
    .await;
    assert_eq!(
        table,
        json!({
            "rows": [
                {"name": "John", "date": "1/15/24", "amount": 1500, "region": "West"},
                {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
                {"name": "Bob", "date": "March 5 2024", "amount": 1200, "region": "West"}
            ],
            "columns": ["name", "date", "amount", "region"],
            "row_count": 3
        })
    );

    let cleaned = invoke(
        &host,
        "date-utils",
        "parse_dates",
        json!({"records": table["rows"], "fields": ["date"]}),
    )
    .await;
    assert_eq!(
        cleaned,
        json!({
            "records": [
                {"name": "John", "date": "2024-01-15", "amount": 1500, "region": "West"},
                {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
                {"name": "Bob", "date": "2024-03-05", "amount": 1200, "region": "West"}
            ],
            "failed": []
        })
    );

    let totals = invoke(
        &host,
        "formula-engine",
        "aggregate",
        json!({"records": cleaned["records"], "group_by": "region", "field": "amount", "op": "sum"}),
    )
    .await;
    assert_eq!(
        totals,
        json!({"groups": {"West": 2700, "East": 2000}, "total": 4700})
    );
    // Integers, not 2700.0.
    assert_eq!(
        serde_json::to_string(&totals).unwrap(),
        r#"{"groups":{"West":2700,"East":2000},"total":4700}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clean_error_not_a_trap() {
    let dir = TempDir::new().unwrap();
    let host = host_with(&dir, &["data-transform", "date-utils", "formula-engine"]).await;

    // Rejected by the input schema before the guest runs.
    let err = host
        .invoke("data-transform", "csv_to_json", json!({"csv": 5}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput);
    // Passes the schema, rejected by the guest's own validation.
    let err = host
        .invoke(
            "data-transform",
            "csv_to_json",
            json!({"csv": "a,b\n1,2,3"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput);
    assert!(
        err.to_string()
            .contains("line 2 has 3 fields but the header has 2 columns"),
        "{err}"
    );
    let err = host
        .invoke(
            "formula-engine",
            "evaluate",
            json!({"formula": "=SUM(1, 2"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::InvalidInput);
    assert!(err.to_string().contains("at position 10"), "{err}");
    let err = host
        .invoke("formula-engine", "evaluate", json!({"formula": "1/0"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ToolErrorCode::GuestError);
    assert_eq!(
        err.to_string(),
        "EVALUATION_ERROR: #DIV/0! at position 2: division by zero"
    );
    let out = invoke(&host, "date-utils", "parse", json!({"value": "not a date"})).await;
    assert_eq!(out, json!({"iso": null, "date": null, "valid": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_reads_the_host_clock() {
    let dir = TempDir::new().unwrap();
    let host = host_with(&dir, &["date-utils"]).await;
    let ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = ms();
    let out = invoke(&host, "date-utils", "now", json!({"timezone": "UTC"})).await;
    let after = ms();
    let now = out["unix_ms"].as_i64().unwrap();
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    assert!(out["iso"].as_str().unwrap().ends_with('Z'));
}
