//! The seed's example end to end: "Clean this CSV: fix the date formats to ISO, calculate the
//! total amount per region, and return as JSON", with the real built-in ForgeHooks on the
//! real WASM host, the model's turns scripted by the fake provider in the Anthropic, OpenAI
//! and Ollama wire formats.

#[path = "support/harness.rs"]
mod harness;

use axum::http::StatusCode;
use harness::TestApp;
use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

const CSV: &str = "name,date,amount,region\nJohn,1/15/24,1500,West\nJane,2024-02-20,2000,East\nBob,March 5 2024,1200,West";

fn rows() -> Value {
    json!([
        {"name": "John", "date": "1/15/24", "amount": 1500, "region": "West"},
        {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
        {"name": "Bob", "date": "March 5 2024", "amount": 1200, "region": "West"}
    ])
}

fn iso_rows() -> Value {
    json!([
        {"name": "John", "date": "2024-01-15", "amount": 1500, "region": "West"},
        {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
        {"name": "Bob", "date": "2024-03-05", "amount": 1200, "region": "West"}
    ])
}

#[tokio::test]
async fn seed_example_runs_on_three_provider_formats() {
    let fake = FakeProvider::start().await;
    let t = TestApp::with_llm(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .await;
    let installed = t.install_all_builtins().await;
    assert_eq!(installed.len(), 7, "{installed:?}");
    let listed = t.get("/api/v1/forgehooks", None).await;
    assert_eq!(listed.body["count"], 7);

    for (provider, model) in [
        ("anthropic", "claude-sonnet"),
        ("openai", "gpt-4o"),
        ("ollama", "llama3.1"),
    ] {
        let agent = t
            .create_agent(json!({
                "name": format!("Data Transformer {provider}"),
                "system_prompt": "You clean data with your tools and answer with JSON only.",
                "provider": provider,
                "model": model,
                "tools": ["data-transform", "date-utils", "formula-engine"],
            }))
            .await;
        let slug = agent["slug"].as_str().unwrap();
        let before = fake.request_count();
        // Ollama runs in json mode by default (`tool_mode: auto`): the model's calls and its
        // answer are JSON action objects in its text. Hosted providers call tools natively.
        let json_mode = provider == "ollama";
        let turn = |name: &str, args: Value| {
            if json_mode {
                Script::text(
                    json!({"action": "call_tools", "calls": [{"tool": name, "arguments": args}]})
                        .to_string(),
                )
            } else {
                Script::tool_call(name, args)
            }
        };
        fake.push(turn("data-transform__csv_to_json", json!({"csv": CSV})));
        fake.push(turn(
            "date-utils__parse_dates",
            json!({"records": rows(), "fields": ["date"]}),
        ));
        fake.push(turn(
            "formula-engine__aggregate",
            json!({"records": iso_rows(), "group_by": "region", "field": "amount", "op": "sum"}),
        ));
        let output = json!({"records": iso_rows(), "totals": {"West": 2700, "East": 2000}});
        fake.push(Script::text(if json_mode {
            json!({"action": "final_answer", "answer": output}).to_string()
        } else {
            output.to_string()
        }));
        let r = t
            .admin_post(
                &format!("/api/v1/agents/{slug}/run"),
                json!({
                    "input": "Clean this CSV: fix the date formats to ISO, calculate the total amount per region, and return as JSON",
                    "data": {"csv": CSV}
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{provider}: {}", r.body);
        let run = &r.body["data"];
        assert_eq!(run["status"], "completed");
        let mode = if json_mode { "json" } else { "native" };
        assert_eq!(run["limits"]["tool_mode"], mode, "{provider}");
        let steps = run["steps"].as_array().unwrap();
        let actions: Vec<_> = steps
            .iter()
            .map(|s| {
                format!(
                    "{}__{}",
                    s["tool"].as_str().unwrap(),
                    s["action"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                "data-transform__csv_to_json",
                "date-utils__parse_dates",
                "formula-engine__aggregate"
            ]
        );
        assert!(
            steps.iter().all(|s| s["error"].is_null()),
            "{provider}: {steps:?}"
        );
        // The real tools' outputs, as persisted.
        assert_eq!(steps[0]["output"]["rows"], rows());
        assert_eq!(steps[0]["output"]["row_count"], 3);
        let dates: Vec<_> = steps[1]["output"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["date"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(dates, ["2024-01-15", "2024-02-20", "2024-03-05"]);
        assert_eq!(
            steps[2]["output"]["groups"],
            json!({"West": 2700, "East": 2000})
        );
        assert_eq!(run["output"]["totals"], json!({"West": 2700, "East": 2000}));
        assert_eq!(run["output"]["records"][2]["date"], "2024-03-05");
        assert_eq!(
            fake.request_count() - before,
            4,
            "{provider}: four model turns"
        );
        let stored = t
            .admin_get(&format!("/api/v1/runs/{}", run["run_id"].as_str().unwrap()))
            .await;
        assert_eq!(stored.body["data"]["steps"].as_array().unwrap().len(), 3);
        // The results reached the model in the provider's own shape.
        let last = fake.accepted().last().unwrap().body.to_string();
        assert!(
            last.contains("2700"),
            "{provider}: the aggregate result went back to the model"
        );
    }
}

#[tokio::test]
async fn seed_pipeline_over_the_invoke_route() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    t.install_all_builtins().await;
    let invoke = |id: &'static str, endpoint: &'static str, input: Value| {
        let t = &t;
        async move {
            let r = t
                .admin_post(&format!("/api/v1/forgehooks/{id}/invoke/{endpoint}"), input)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{id}/{endpoint}: {}", r.body);
            r.body["data"]["output"].clone()
        }
    };
    let parsed = invoke("data-transform", "csv_to_json", json!({"csv": CSV})).await;
    assert_eq!(
        parsed["columns"],
        json!(["name", "date", "amount", "region"])
    );
    assert_eq!(parsed["rows"], rows());
    let dated = invoke(
        "date-utils",
        "parse_dates",
        json!({"records": parsed["rows"], "fields": ["date"]}),
    )
    .await;
    assert_eq!(dated["records"], iso_rows());
    assert_eq!(dated["failed"], json!([]));
    let totals = invoke(
        "formula-engine",
        "aggregate",
        json!({"records": dated["records"], "group_by": "region", "field": "amount", "op": "sum"}),
    )
    .await;
    assert_eq!(totals["groups"], json!({"West": 2700, "East": 2000}));
    assert_eq!(totals["total"], 4700);
    // Bad input is a clear INVALID_INPUT, never a trap.
    let r = t
        .admin_post(
            "/api/v1/forgehooks/data-transform/invoke/csv_to_json",
            json!({"csv": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "INVALID_INPUT");
}
