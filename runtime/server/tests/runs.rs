//! Agent runs end to end: the real router and store, the real wasmtime host with a real
//! component, and the wire-level fake LLM provider scripting the model's turns.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Reply, TestApp};
use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

struct Env {
    t: TestApp,
    fake: FakeProvider,
}

async fn env_with(db: leforge_store::testing::TestStore) -> Env {
    env_configured(db, |_| {}).await
}

async fn env_configured(
    db: leforge_store::testing::TestStore,
    adjust: impl FnOnce(&mut leforge_server::config::Config),
) -> Env {
    let fake = FakeProvider::start().await;
    let t = TestApp::with_settings(
        db,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
        adjust,
    )
    .await;
    t.install_echo().await;
    Env { t, fake }
}

async fn env() -> Env {
    env_with(leforge_store::testing::sqlite().await).await
}

async fn all_envs() -> Vec<Env> {
    let mut envs = Vec::new();
    for db in leforge_store::testing::all().await {
        envs.push(env_with(db).await);
    }
    envs
}

impl Env {
    async fn agent(&self, name: &str, extra: Value) -> String {
        let mut body = json!({
            "name": name,
            "system_prompt": "You echo things.",
            "provider": "anthropic",
            "model": "claude-sonnet",
            "tools": ["echo"],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.t.create_agent(body).await["slug"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn run(&self, slug: &str, body: Value) -> Reply {
        self.t
            .call(
                Method::POST,
                &format!("/api/v1/agents/{slug}/run"),
                Some(&self.t.admin_key.clone()),
                Some(body),
            )
            .await
    }

    async fn run_with_headers(&self, slug: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::post(format!("/api/v1/agents/{slug}/run"))
            .header("x-api-key", &self.t.admin_key)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.t
            .raw(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// Polls the result route until the run is terminal.
    async fn poll(&self, run_id: &str) -> Reply {
        for _ in 0..600 {
            let r = self
                .t
                .admin_get(&format!("/api/v1/runs/{run_id}/result"))
                .await;
            if r.status != StatusCode::ACCEPTED {
                return r;
            }
            assert_eq!(r.headers["retry-after"], "2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run_id} did not finish");
    }

    async fn cancel(&self, run_id: &str) -> Reply {
        self.t
            .call(
                Method::POST,
                &format!("/api/v1/runs/{run_id}/cancel"),
                Some(&self.t.admin_key),
                None,
            )
            .await
    }

    async fn wait_status(&self, run_id: &str, status: &str) {
        self.wait_run(run_id, status, |run| run["status"] == status)
            .await;
    }

    /// Reads the run until `ready` holds for it (`what` names that state for a failure),
    /// and returns it.
    async fn wait_run(&self, run_id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let r = self.t.admin_get(&format!("/api/v1/runs/{run_id}")).await;
            if ready(&r.body["data"]) {
                return r.body["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("run {run_id} never became {what}");
    }

    /// Starts an async run and returns its id.
    async fn start_async(&self, slug: &str, input: &str) -> String {
        let r = self
            .run(slug, json!({"input": input, "mode": "async"}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        r.body["data"]["run_id"].as_str().unwrap().to_string()
    }
}

fn run_of(r: &Reply) -> &Value {
    if r.body["success"] == true {
        &r.body["data"]
    } else {
        &r.body["error"]["details"]["run"]
    }
}

#[tokio::test]
async fn sync_run_calls_the_tool_and_returns_the_parsed_output() {
    for e in all_envs().await {
        let slug = e.agent("Echoer", json!({})).await;
        e.fake
            .push(Script::tool_call("echo__echo", json!({"message": "hello"})));
        e.fake
            .push(Script::text("Done:\n```json\n{\"echoed\": \"hello\"}\n```"));
        let r = e
            .run(&slug, json!({"input": "Echo hello", "data": {"k": 1}}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let run = &r.body["data"];
        assert_eq!(run["status"], "completed");
        assert_eq!(run["output"], json!({"echoed": "hello"}));
        assert!(run["output_text"].as_str().unwrap().contains("```json"));
        assert_eq!(run["metrics"]["total_steps"], 1);
        assert!(run["metrics"]["tokens_input"].as_i64().unwrap() > 0);
        let step = &run["steps"][0];
        assert_eq!(
            (
                step["step"].as_i64(),
                step["tool"].as_str(),
                step["action"].as_str()
            ),
            (Some(1), Some("echo"), Some("echo"))
        );
        assert_eq!(step["output"]["message"], "hello");
        assert_eq!(step["error"], Value::Null);

        // What the model was sent: the data as pretty JSON, then the tool result paired.
        let reqs = e.fake.accepted();
        assert_eq!(reqs.len(), 2);
        let first = reqs[0].body.to_string();
        assert!(
            first.contains("Echo hello") && first.contains("Data:"),
            "{first}"
        );
        assert!(reqs[0].body["tools"][0]["name"] == "echo__echo");
        let second = reqs[1].body.to_string();
        assert!(second.contains("tool_result"), "{second}");

        // Persisted exactly as returned.
        let id = run["run_id"].as_str().unwrap();
        let stored = e.t.admin_get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(stored.body["data"]["steps"], run["steps"]);
        assert_eq!(stored.body["data"]["status"], "completed");
    }
}

#[tokio::test]
async fn step_limit_is_an_error_status_with_the_partial_run() {
    let e = env().await;
    let slug = e
        .agent("Limited", json!({"config": {"max_steps": 1}}))
        .await;
    e.fake
        .push(Script::tool_call("echo__echo", json!({"message": "one"})));
    e.fake
        .push(Script::tool_call("echo__echo", json!({"message": "two"})));
    let r = e.run(&slug, json!({"input": "loop"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "MAX_STEPS_EXCEEDED");
    let run = run_of(&r);
    assert_eq!(run["status"], "max_steps");
    assert_eq!(run["steps"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_tools_and_invalid_arguments_are_fed_back_not_executed() {
    let e = env().await;
    let slug = e.agent("Careful", json!({})).await;
    e.fake.push(Script::tool_calls([
        ("rm_rf__everything", json!({"path": "/"})),
        ("echo__echo", json!({"wrong": true})),
    ]));
    e.fake.push(Script::text("{\"gave_up\": true}"));
    let r = e.run(&slug, json!({"input": "do it"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let steps = r.body["data"]["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 2, "both count as steps");
    assert_eq!(steps[0]["tool"], "rm_rf");
    assert!(steps[0]["error"]
        .as_str()
        .unwrap()
        .contains("not a tool of this agent"));
    assert!(steps[1]["error"]
        .as_str()
        .unwrap()
        .contains("invalid input"));
    assert_eq!(steps[1]["output"], Value::Null);
    // The model saw both errors as error results.
    let last = e.fake.accepted().last().unwrap().body.to_string();
    assert!(
        last.contains("UNKNOWN_TOOL") && last.contains("INVALID_INPUT"),
        "{last}"
    );
    assert!(last.contains("\"is_error\":true"));
}

#[tokio::test]
async fn parallel_calls_run_concurrently_and_answer_in_call_order() {
    let e = env().await;
    let slug = e.agent("Parallel", json!({})).await;
    e.fake.push(Script::tool_calls([
        ("echo__echo", json!({"message": "first"})),
        ("echo__echo", json!({"message": "second"})),
        ("echo__echo", json!({"message": "third"})),
    ]));
    e.fake.push(Script::text("{\"n\": 3}"));
    let r = e.run(&slug, json!({"input": "three at once"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let msgs: Vec<_> = r.body["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["output"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs, ["first", "second", "third"]);
    // One user message with all three results, in order (Anthropic's rule).
    let body = &e.fake.accepted()[1].body;
    let results = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|b| b["type"] == "tool_result"));
}

#[tokio::test]
async fn provider_failure_timeout_and_truncation_map_to_their_statuses() {
    let e = env().await;
    let slug = e.agent("Fragile", json!({})).await;

    e.fake
        .push(Script::error(400, "model not found: claude-nope"));
    let r = e.run(&slug, json!({"input": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.code(), "PROVIDER_ERROR");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("model not found"));
    assert_eq!(run_of(&r)["status"], "failed");

    e.fake.push(Script::hang());
    let r = e
        .run(
            &slug,
            json!({"input": "x", "config_override": {"timeout_ms": 1000}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert_eq!(r.code(), "RUN_TIMEOUT");
    assert_eq!(run_of(&r)["status"], "timeout");

    e.fake.push(Script::max_tokens_mid_tool_call(
        "echo__echo",
        json!({"message": "cut"}),
    ));
    e.fake.push(Script::max_tokens_mid_tool_call(
        "echo__echo",
        json!({"message": "cut"}),
    ));
    let r = e.run(&slug, json!({"input": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "RUN_FAILED");
    let run = run_of(&r);
    assert_eq!(run["error_code"], "TRUNCATED_OUTPUT");
    assert_eq!(
        run["steps"].as_array().unwrap().len(),
        0,
        "a truncated turn is never executed"
    );

    let r = e
        .run(
            &slug,
            json!({"input": "x", "config_override": {"max_steps": 500}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["error"]["details"][0]["field"],
        "config_override.max_steps"
    );
    let r = e.run(&slug, json!({"input": "  "})).await;
    assert_eq!(r.body["error"]["details"][0]["field"], "input");
}

#[tokio::test]
async fn missing_or_disabled_forgehooks_fail_the_run_before_any_llm_call() {
    let e = env().await;
    let slug = e
        .agent("Needs Tools", json!({"tools": ["echo", "ghost-tool"]}))
        .await;
    let r = e.run(&slug, json!({"input": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let run = run_of(&r);
    assert_eq!(run["error_code"], "TOOLS_UNAVAILABLE");
    assert!(run["error_message"]
        .as_str()
        .unwrap()
        .contains("ghost-tool (not installed)"));
    e.t.call(
        Method::POST,
        "/api/v1/forgehooks/echo/disable",
        Some(&e.t.admin_key),
        None,
    )
    .await;
    let slug2 = e.agent("Needs Echo", json!({})).await;
    let r = e.run(&slug2, json!({"input": "x"})).await;
    assert!(run_of(&r)["error_message"]
        .as_str()
        .unwrap()
        .contains("echo (disabled)"));
    assert_eq!(e.fake.request_count(), 0);
}

#[tokio::test]
async fn output_schema_gets_one_repair_turn() {
    let e = env().await;
    let schema = json!({"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}});
    let slug = e.agent("Strict", json!({"output_schema": schema})).await;
    e.fake.push(Script::text("{\"sum\": 5}"));
    e.fake.push(Script::text("{\"total\": 5}"));
    let r = e.run(&slug, json!({"input": "add"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"], json!({"total": 5}));
    assert!(e.fake.accepted()[1]
        .body
        .to_string()
        .contains("does not match the required JSON Schema"));

    e.fake.push(Script::text("{\"sum\": 5}"));
    e.fake.push(Script::text("{\"still\": \"wrong\"}"));
    let r = e.run(&slug, json!({"input": "add"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(run_of(&r)["error_code"], "OUTPUT_SCHEMA_MISMATCH");
    let r = e.t.admin_post("/api/v1/agents", json!({"name": "Bad Schema", "system_prompt": "x", "output_schema": {"type": "nonsense"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["details"][0]["field"], "output_schema");
}

#[tokio::test]
async fn async_runs_are_polled_until_done() {
    for e in all_envs().await {
        let slug = e.agent("Background", json!({})).await;
        e.fake
            .push(Script::tool_call("echo__echo", json!({"message": "later"})));
        e.fake.push(Script::text("{\"ok\": true}"));
        let r = e.run(&slug, json!({"input": "go", "mode": "async"})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let run_id = r.body["data"]["run_id"].as_str().unwrap().to_string();
        assert_eq!(r.body["data"]["status"], "pending");
        assert_eq!(
            r.headers["location"],
            format!("/api/v1/runs/{run_id}/result")
        );
        assert_eq!(r.headers["retry-after"], "2");
        let done = e.poll(&run_id).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert_eq!(done.body["data"]["output"], json!({"ok": true}));
        assert_eq!(done.body["data"]["mode"], "async");

        // `Prefer: respond-async` does the same.
        e.fake.push(Script::text("{\"ok\": 2}"));
        let r = e
            .run_with_headers(
                &slug,
                json!({"input": "go"}),
                &[("prefer", "respond-async")],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let done = e.poll(r.body["data"]["run_id"].as_str().unwrap()).await;
        assert_eq!(done.body["data"]["output"], json!({"ok": 2}));
    }
}

/// With a free slot, an async run is created already started by the server that accepted
/// it; without one it is queued `pending`, and a queue worker claims it once a slot frees.
/// The 202 says `pending` either way.
#[tokio::test]
async fn async_runs_start_at_once_with_a_free_slot_and_queue_without_one() {
    for db in leforge_store::testing::all().await {
        let e = env_configured(db, |c| c.max_concurrent_runs = 1).await;
        let slug = e.agent("One Slot", json!({})).await;
        e.fake.push(Script::hang());
        let first = e.run(&slug, json!({"input": "a", "mode": "async"})).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
        assert_eq!(first.body["data"]["status"], "pending");
        let first_id = first.body["data"]["run_id"].as_str().unwrap().to_string();
        // Stored as started before the 202 was sent: no queue worker came into it.
        let stored = e.t.admin_get(&format!("/api/v1/runs/{first_id}")).await;
        assert_eq!(stored.body["data"]["status"], "running", "{}", stored.body);
        let instance = e.t.state.runner.instance().to_string();
        assert_eq!(stored.body["data"]["worker"], instance.as_str());
        let first_run =
            e.t.store
                .get_run(first_id.parse().unwrap())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            first_run.started_at,
            Some(first_run.created_at),
            "created started, not claimed later"
        );

        let second = e.run(&slug, json!({"input": "b", "mode": "async"})).await;
        assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
        assert_eq!(second.body["data"]["status"], "pending");
        let second_id = second.body["data"]["run_id"].as_str().unwrap().to_string();
        let queued = e.t.admin_get(&format!("/api/v1/runs/{second_id}")).await;
        assert_eq!(queued.body["data"]["status"], "pending", "{}", queued.body);
        assert_eq!(queued.body["data"]["worker"], Value::Null);

        // The first run ends (cancelled) once its model call is in flight, its slot frees,
        // and the worker claims the second.
        e.fake.wait_for_requests(1).await;
        e.fake.push(Script::text("{\"second\": true}"));
        let cancelled = e.cancel(&first_id).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        let done = e.poll(&second_id).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert_eq!(done.body["data"]["output"], json!({"second": true}));
        let stored = e.t.admin_get(&format!("/api/v1/runs/{second_id}")).await;
        assert_eq!(stored.body["data"]["worker"], instance.as_str());
        assert_eq!(e.fake.chat_count(), 2, "each run executed once");
    }
}

/// The queue worker reads each agent once per claimed batch: runs of different agents
/// queued together must each still run with their own agent. (The runs are queued through
/// the store, as another server would queue them: this server would start runs it
/// accepted itself at once.)
#[tokio::test]
async fn queued_runs_of_several_agents_each_run_with_their_own_agent() {
    for e in all_envs().await {
        let a = e
            .agent("Queue A", json!({"system_prompt": "Prompt of A."}))
            .await;
        let b = e
            .agent("Queue B", json!({"system_prompt": "Prompt of B."}))
            .await;
        e.fake
            .set_responder(|body| Script::text(json!({ "system": body["system"] }).to_string()));
        let agent_id = |slug: &str| {
            let store = e.t.store.clone();
            let slug = slug.to_string();
            async move { store.find_agent(&slug).await.unwrap().unwrap().id }
        };
        let (a_id, b_id) = (agent_id(&a).await, agent_id(&b).await);
        let mut queued = Vec::new();
        for i in 0..8 {
            let agent = if i % 2 == 0 { a_id } else { b_id };
            let run =
                e.t.store
                    .create_run(leforge_core::NewRun {
                        mode: leforge_core::RunMode::Async,
                        ..leforge_core::NewRun::simple(agent, format!("job {i}"))
                    })
                    .await
                    .unwrap();
            assert_eq!(run.status, leforge_core::RunStatus::Pending);
            let prompt = if i % 2 == 0 {
                "Prompt of A."
            } else {
                "Prompt of B."
            };
            queued.push((run.id.to_string(), prompt));
        }
        e.t.state.runner.notify_queued();
        for (run_id, prompt) in queued {
            let done = e.poll(&run_id).await;
            assert_eq!(done.status, StatusCode::OK, "{}", done.body);
            // The agent's prompt, then the runtime's note on references (the agent has tools).
            let system = done.body["data"]["output"]["system"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(system.starts_with(&format!("{prompt}\n\n")), "{system}");
            assert!(system.contains("$ref"), "{system}");
        }
    }
}

#[tokio::test]
async fn cancel_abandons_the_inflight_call() {
    let e = env().await;
    let slug = e.agent("Slowpoke", json!({})).await;
    e.fake.push(Script::hang());
    let r = e
        .run(&slug, json!({"input": "wait", "mode": "async"}))
        .await;
    let run_id = r.body["data"]["run_id"].as_str().unwrap().to_string();
    e.wait_status(&run_id, "running").await;
    // `running` is stored before the model is called: cancel once the call is in flight.
    e.fake.wait_for_requests(1).await;
    let r = e.cancel(&run_id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["status"], "cancelled");
    let done = e.poll(&run_id).await;
    assert_eq!(done.status, StatusCode::CONFLICT);
    assert_eq!(done.code(), "RUN_CANCELLED");
    let again = e.cancel(&run_id).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // The server is not stuck on the hung call.
    e.fake.push(Script::text("{\"fine\": true}"));
    assert_eq!(
        e.run(&slug, json!({"input": "next"})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn idempotent_requests_never_execute_twice() {
    for e in all_envs().await {
        let slug = e.agent("Once Only", json!({})).await;
        e.fake
            .push(Script::tool_call("echo__echo", json!({"message": "x"})));
        e.fake.push(Script::text("{\"n\": 1}"));
        let body = json!({"input": "charge the card"});
        let key = [("idempotency-key", "order-7")];
        let first = e.run_with_headers(&slug, body.clone(), &key).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        let calls = e.fake.request_count();
        let second = e.run_with_headers(&slug, body.clone(), &key).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(second.body["data"]["run_id"], first.body["data"]["run_id"]);
        assert_eq!(e.fake.request_count(), calls, "no second execution");
        let conflict = e
            .run_with_headers(&slug, json!({"input": "something else"}), &key)
            .await;
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.code(), "IDEMPOTENCY_CONFLICT");
        // Async replay returns the same run id.
        let a1 = e
            .run_with_headers(
                &slug,
                json!({"input": "a", "mode": "async"}),
                &[("idempotency-key", "job-1")],
            )
            .await;
        e.fake.push(Script::text("{}"));
        let a2 = e
            .run_with_headers(
                &slug,
                json!({"input": "a", "mode": "async"}),
                &[("idempotency-key", "job-1")],
            )
            .await;
        assert_eq!(a1.body["data"]["run_id"], a2.body["data"]["run_id"]);
        e.poll(a1.body["data"]["run_id"].as_str().unwrap()).await;
    }
}

fn parse_sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

#[tokio::test]
async fn streamed_runs_emit_events_in_order_and_can_be_replayed() {
    let e = env().await;
    let slug = e.agent("Streamer", json!({})).await;
    e.fake
        .push(Script::tool_call("echo__echo", json!({"message": "s"})));
    e.fake.push(Script::text("{\"streamed\": true}"));
    let r = e
        .run(&slug, json!({"input": "stream it", "stream": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = parse_sse(r.body.as_str().unwrap());
    let names: Vec<_> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "llm_delta")
        .collect();
    assert_eq!(
        names,
        [
            "run_started",
            "step_started",
            "step_completed",
            "run_completed"
        ]
    );
    assert!(
        events.iter().any(|(n, _)| n == "llm_delta"),
        "the provider streamed text"
    );
    let (_, done) = events.last().unwrap();
    assert_eq!(done["output"], json!({"streamed": true}));
    assert_eq!(events[2].1["output"]["message"], "s");
    assert!(e.fake.accepted()[0].wants_stream());

    let run_id = done["run_id"].as_str().unwrap();
    let replay =
        e.t.admin_get(&format!("/api/v1/runs/{run_id}/events"))
            .await;
    let names: Vec<_> = parse_sse(replay.body.as_str().unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "run_started",
            "step_started",
            "step_completed",
            "run_completed"
        ]
    );

    // Accept: text/event-stream works too, and a failure ends with run_failed.
    e.fake.push(Script::error(400, "nope"));
    let req = Request::post(format!("/api/v1/agents/{slug}/run"))
        .header("x-api-key", &e.t.admin_key)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Body::from(json!({"input": "x"}).to_string()))
        .unwrap();
    let r = e.t.raw(req).await;
    let events = parse_sse(r.body.as_str().unwrap());
    assert_eq!(events.last().unwrap().0, "run_failed");
}

/// Parallel calls are stored as each ends, so the second of a turn can be stored while the
/// first still runs. A subscriber that joins in between replays the second and must still
/// receive the first's `step_completed` live (it once went missing, being numbered below
/// the highest step replayed).
#[tokio::test]
async fn a_subscriber_joining_between_out_of_order_parallel_steps_gets_both() {
    use futures::StreamExt;
    use std::sync::Arc;
    use tower::ServiceExt;
    // A gateway ForgeHook whose one endpoint answers only when the test lets it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let service = axum::Router::new().route(
        "/hold",
        axum::routing::post({
            let gate = gate.clone();
            move || async move {
                gate.acquire().await.expect("open").forget();
                axum::Json(json!({"held": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let e = env().await;
    let r =
        e.t.admin_post(
            "/api/v1/forgehooks",
            json!({
                "id": "gate", "name": "Gate", "version": "1.0.0", "runtime": "gateway",
                "gateway": {"baseUrl": format!("http://{addr}"), "timeout_ms": 30000},
                "endpoints": [{"name": "hold", "description": "Answers when let", "path": "/hold",
                               "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}]
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let slug = e.agent("Joiner", json!({"tools": ["gate", "echo"]})).await;
    e.fake.push(Script::tool_calls([
        ("gate__hold", json!({})),
        ("echo__echo", json!({"message": "quick"})),
    ]));
    e.fake.push(Script::text("{\"joined\": true}"));
    let run_id = e.start_async(&slug, "two at once").await;

    // Step 2 (the echo) is stored while step 1 is held.
    let run = e
        .wait_run(&run_id, "a run with a stored step", |run| {
            run["steps"].as_array().is_some_and(|s| !s.is_empty())
        })
        .await;
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["step"], 2, "the quick call is step 2: {steps:?}");

    // Join, read the replay up to step 2's completion, and only then let step 1 end.
    let req = Request::get(format!("/api/v1/runs/{run_id}/events"))
        .header("x-api-key", &e.t.admin_key)
        .body(Body::empty())
        .unwrap();
    let resp = e.t.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("event: step_completed") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("the replay arrives")
            .expect("the stream goes on")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    gate.add_permits(1);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), body.next())
        .await
        .expect("the run ends")
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }

    let events = parse_sse(&text);
    // Each event once, in order; step 1 started before the subscriber joined, and its start
    // is sent with its end.
    let names: Vec<_> = events
        .iter()
        .map(|(n, d)| format!("{n} {}", d["step"]))
        .collect();
    assert_eq!(
        names,
        [
            "run_started null",
            "step_started 2",
            "step_completed 2",
            "step_started 1",
            "step_completed 1",
            "run_completed null"
        ],
        "{text}"
    );
    let (_, started) = &events[3];
    assert_eq!(
        (&started["tool"], &started["action"], &started["input"]),
        (&json!("gate"), &json!("hold"), &json!({}))
    );
    let completed: Vec<_> = events
        .iter()
        .filter(|(n, _)| n == "step_completed")
        .map(|(_, d)| (d["step"].clone(), d["output"].clone()))
        .collect();
    assert_eq!(
        completed,
        [
            (json!(2), json!({"message": "quick", "data": null})),
            (json!(1), json!({"held": true}))
        ],
        "{text}"
    );
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "run_completed", "{text}");
    assert_eq!(done["output"], json!({"joined": true}));
    assert_eq!(done["steps"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn callbacks_are_signed_and_recorded() {
    use std::sync::{Arc, Mutex};
    /// Each callback the sink received: its headers and body.
    type Received = Vec<(axum::http::HeaderMap, Vec<u8>)>;
    let received: Arc<Mutex<Received>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/resume",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let mut all = sink.lock().unwrap();
                    all.push((headers, body.to_vec()));
                    // Fail the first delivery to exercise the retry.
                    if all.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let (t, fake) = TestApp::with_fake(leforge_store::testing::sqlite().await, |c| {
        c.webhook_secret = Some(leforge_server::config::Secret::new("whsec-test".into()));
        // The sink is on loopback, which callbacks may reach only when allow-listed.
        c.callback_allowed_hosts = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let slug = t
        .create_agent(json!({"name": "Caller Back", "system_prompt": "x"}))
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    fake.push(Script::text("{\"called\": \"back\"}"));
    let url = format!("http://{addr}/resume");
    let r = t
        .admin_post(
            &format!("/api/v1/agents/{slug}/run"),
            json!({"input": "go", "mode": "async", "callback_url": url}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["data"]["run_id"].as_str().unwrap().to_string();
    for _ in 0..400 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failure, one retry");
    let (headers, body) = &got[1];
    assert_eq!(headers["x-leforge-run-id"], run_id.as_str());
    // Signed over "<timestamp>.<body>", so a replay with another timestamp fails the check.
    let timestamp: i64 = headers["x-leforge-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 120);
    let expected = format!(
        "sha256={}",
        leforge_server::runner::sign_timestamped("whsec-test", timestamp, body)
    );
    assert_eq!(headers["x-leforge-signature"], expected.as_str());
    let replayed = format!(
        "sha256={}",
        leforge_server::runner::sign_timestamped("whsec-test", timestamp + 600, body)
    );
    assert_ne!(headers["x-leforge-signature"], replayed.as_str());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    assert_eq!(
        leforge_server::runner::sign("whsec-test", &signed),
        leforge_server::runner::sign_timestamped("whsec-test", timestamp, body),
        "the documented recipe: HMAC of the timestamp, a dot and the raw body"
    );
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["success"], true);
    assert_eq!(payload["data"]["output"], json!({"called": "back"}));
    for _ in 0..100 {
        let run = t.admin_get(&format!("/api/v1/runs/{run_id}")).await;
        if run.body["data"]["callback_attempts"]
            .as_array()
            .unwrap()
            .len()
            == 2
        {
            assert_eq!(run.body["data"]["callback_attempts"][0]["status"], 503);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("callback attempts not recorded");
}

#[tokio::test]
async fn run_access_follows_the_agent_rules() {
    let e = env().await;
    let public = e.agent("Open Runner", json!({"is_public": true})).await;
    let private = e.agent("Closed Runner", json!({})).await;
    e.fake.push(Script::text("{\"anon\": true}"));
    let r =
        e.t.call(
            Method::POST,
            &format!("/api/v1/agents/{public}/run"),
            None,
            Some(json!({"input": "hi"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["triggered_by"], Value::Null);
    let r =
        e.t.call(
            Method::POST,
            &format!("/api/v1/agents/{private}/run"),
            None,
            Some(json!({"input": "hi"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (other_id, _) = e.t.create_key("invoke").await;
    let (_, mine) = e.t.create_key("invoke").await;
    let r =
        e.t.call(
            Method::PUT,
            &format!("/api/v1/agents/{private}"),
            Some(&e.t.admin_key),
            Some(json!({"allowed_api_keys": [other_id]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r =
        e.t.call(
            Method::POST,
            &format!("/api/v1/agents/{private}/run"),
            Some(&mine),
            Some(json!({"input": "hi"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A step is written while the next model call is in flight rather than before it, and the
/// run acts on that call's reply only once the step is stored. PostgreSQL: a row lock taken
/// on the run from outside holds the step's write back (it updates the run's counters).
#[tokio::test]
async fn a_step_is_written_during_the_next_model_call_and_stored_before_its_reply_is_used() {
    use sqlx::Connection;
    let Some(db) = leforge_store::testing::postgres().await else {
        return;
    };
    let url = db.url.clone();
    let e = env_with(db).await;
    let slug = e.agent("Overlap", json!({})).await;
    // Each model turn takes 200 ms, so the lock below is taken before the first ends.
    e.fake.set_latency(Duration::from_millis(200));
    e.fake
        .push(Script::tool_call("echo__echo", json!({"message": "one"})));
    e.fake
        .push(Script::tool_call("echo__echo", json!({"message": "two"})));
    e.fake.push(Script::text("{\"done\": true}"));
    let run_id = e.start_async(&slug, "go").await;
    let run_uuid: uuid::Uuid = run_id.parse().unwrap();

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut lock = conn.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM agent_runs WHERE id = $1 FOR UPDATE")
        .bind(run_uuid)
        .execute(&mut *lock)
        .await
        .unwrap();
    // The step's write waits for the lock, and the second model call goes out meanwhile.
    tokio::time::timeout(Duration::from_secs(20), e.fake.wait_for_requests(2))
        .await
        .expect("the next model call should not wait for the step's write");
    // Its reply (the second tool call) came back after 200 ms, but is not acted on while the
    // first step is unstored: no second tool call, so no third model call.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(e.fake.chat_count(), 2);
    let live = e.t.store.get_run(run_uuid).await.unwrap().unwrap();
    assert_eq!(live.status, leforge_core::RunStatus::Running);
    assert!(live.steps.is_empty(), "the step's write is still held back");

    lock.rollback().await.unwrap();
    let done = e.poll(&run_id).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["data"]["output"], json!({"done": true}));
    let steps = done.body["data"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", done.body);
    for (i, message) in ["one", "two"].iter().enumerate() {
        assert_eq!(steps[i]["step"], i + 1);
        assert_eq!(steps[i]["input"]["message"], *message);
    }
    assert_eq!(done.body["data"]["metrics"]["total_steps"], 2);
    assert_eq!(e.fake.chat_count(), 3);
}
