//! Tool modes, data references and JSON answers end to end: the real router, store and
//! wasmtime host with real components, and the wire-level fake provider as the model.

#[path = "support/harness.rs"]
mod harness;

use axum::http::{Method, StatusCode};
use harness::{Reply, TestApp};
use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

struct Env {
    t: TestApp,
    fake: FakeProvider,
}

async fn env() -> Env {
    env_with(leforge_store::testing::sqlite().await, |_| {}).await
}

async fn env_with(
    db: leforge_store::testing::TestStore,
    adjust: impl FnOnce(&mut leforge_server::config::Config),
) -> Env {
    let (t, fake) = TestApp::with_fake(db, adjust).await;
    t.install_echo().await;
    Env { t, fake }
}

impl Env {
    async fn agent(&self, provider: &str, extra: Value) -> String {
        let mut body = json!({
            "name": format!("agent {}", uuid::Uuid::new_v4()),
            "system_prompt": "You echo things.",
            "provider": provider,
            "model": "local",
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
}

/// The run inside a terminal envelope, success or not.
fn run_of(r: &Reply) -> &Value {
    if r.body["success"] == true {
        &r.body["data"]
    } else {
        &r.body["error"]["details"]["run"]
    }
}

/// The text of the last message of a recorded OpenAI-format request.
fn last_message(body: &Value) -> String {
    let msgs = body["messages"].as_array().unwrap();
    msgs.last().unwrap()["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn call(tool: &str, arguments: Value) -> String {
    json!({"action": "call_tools", "calls": [{"tool": tool, "arguments": arguments}]}).to_string()
}

fn answer(answer: Value) -> String {
    json!({"action": "final_answer", "answer": answer}).to_string()
}

/// `auto` on a local provider is json mode: no `tools` array, the preamble after the
/// agent's prompt, every reply constrained, results back as plain messages, references
/// resolved in the arguments and in the answer, and the mode recorded with the run.
#[tokio::test]
async fn auto_mode_on_a_local_provider_runs_json_mode_with_references() {
    for db in leforge_store::testing::all().await {
        let e = env_with(db, |_| {}).await;
        let slug = e.agent("openai-compatible", json!({})).await;
        e.fake.push_all([
            Script::text(call(
                "echo__echo",
                json!({"message": {"$ref": "input.data.greeting"}}),
            )),
            Script::text(answer(json!({"$ref": "steps.1.output"}))),
        ]);
        let r = e
            .run(
                &slug,
                json!({"input": "Echo the greeting", "data": {"greeting": "hi there"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let run = &r.body["data"];
        assert_eq!(run["status"], "completed");
        assert_eq!(run["limits"]["tool_mode"], "json");
        let step = &run["steps"][0];
        assert_eq!(
            (step["tool"].as_str(), step["action"].as_str()),
            (Some("echo"), Some("echo"))
        );
        // The trace keeps the reference as the model wrote it; the tool got the value.
        assert_eq!(
            step["input"],
            json!({"message": {"$ref": "input.data.greeting"}})
        );
        assert_eq!(step["output"]["message"], "hi there");
        // The answer was a reference to the step's output: the output is that value.
        assert_eq!(run["output"], step["output"]);

        let reqs = e.fake.accepted();
        assert_eq!(reqs.len(), 2);
        for req in &reqs {
            let b = &req.body;
            assert!(b.get("tools").is_none(), "no tools array in json mode: {b}");
            assert_eq!(b["response_format"]["type"], "json_object");
            let tools = &b["response_format"]["schema"]["anyOf"][0]["properties"]["calls"]["items"]
                ["anyOf"];
            assert_eq!(
                tools[0]["properties"]["tool"],
                json!({"const": "echo__echo"})
            );
            let system = b["messages"][0]["content"].as_str().unwrap();
            assert!(system.starts_with("You echo things.\n\n"), "{system}");
            assert!(system.contains("- echo__echo(message: string"), "{system}");
            assert!(system.contains("$ref"), "{system}");
        }
        let second = last_message(&reqs[1].body);
        assert!(
            second.starts_with("Result of step 1 (echo__echo): {"),
            "{second}"
        );
        assert!(second.contains("hi there"), "{second}");
        // The assistant's JSON reply is in the history as plain text.
        let msgs = reqs[1].body["messages"].as_array().unwrap();
        assert_eq!(msgs[2]["role"], "assistant");
        assert!(msgs[2].get("tool_calls").is_none());
    }
}

/// `auto` on a hosted provider keeps native tool calling, and references work there too;
/// a fenced JSON final text is the output.
#[tokio::test]
async fn native_mode_resolves_references_and_parses_a_fenced_json_answer() {
    let e = env().await;
    let slug = e.agent("anthropic", json!({})).await;
    e.fake.push_all([
        Script::tool_call(
            "echo__echo",
            json!({"message": {"$ref": "input.data.greeting"}}),
        ),
        Script::text("Here you go:\n```json\n[\"hi\", 2]\n```"),
    ]);
    let r = e
        .run(&slug, json!({"input": "Echo", "data": {"greeting": "hi"}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(run["limits"]["tool_mode"], "native");
    assert_eq!(run["steps"][0]["output"]["message"], "hi");
    assert_eq!(run["output"], json!(["hi", 2]));
    let reqs = e.fake.accepted();
    assert_eq!(reqs[0].body["tools"][0]["name"], "echo__echo");
    assert!(reqs[0].body.get("response_format").is_none());
    let system = reqs[0].body["system"].as_str().unwrap();
    assert!(
        system.starts_with("You echo things.\n\n")
            && system.contains("{\"$ref\": \"input.data.<field>\"}"),
        "{system}"
    );

    // A bare JSON scalar is the answer too; prose stays wrapped.
    e.fake.push(Script::text("42"));
    let r = e.run(&slug, json!({"input": "How many?"})).await;
    assert_eq!(r.body["data"]["output"], json!(42));
    e.fake.push(Script::text("I counted 42 of them."));
    let r = e.run(&slug, json!({"input": "How many?"})).await;
    assert_eq!(
        r.body["data"]["output"],
        json!({"result": "I counted 42 of them."})
    );
}

/// An unknown reference is an error result the model sees, not a call; the run goes on.
#[tokio::test]
async fn an_unknown_reference_is_an_error_result_for_the_model() {
    let e = env().await;
    let slug = e.agent("openai-compatible", json!({})).await;
    e.fake.push_all([
        Script::text(call(
            "echo__echo",
            json!({"message": {"$ref": "input.data.nope"}}),
        )),
        Script::text(answer(json!("gave up"))),
    ]);
    let r = e
        .run(&slug, json!({"input": "Echo", "data": {"greeting": "hi"}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(run["output"], json!("gave up"));
    let step = &run["steps"][0];
    assert_eq!(step["output"], Value::Null);
    let error = step["error"].as_str().unwrap();
    assert!(
        error.contains("'input.data.nope' does not resolve") && error.contains("greeting"),
        "{error}"
    );
    let seen = last_message(&e.fake.accepted()[1].body);
    assert!(
        seen.contains("ERROR") && seen.contains("INVALID_REFERENCE"),
        "{seen}"
    );
    // After a failed call the model is told to fix it, not to answer with the error.
    assert!(
        seen.contains("call the tool again with corrected arguments"),
        "{seen}"
    );

    // In a final answer, an unknown reference gets one correction, then fails the run. (The
    // first answer, given before any tool call, is questioned once first.)
    e.fake.push_all([
        Script::text(answer(json!({"$ref": "steps.9.output"}))),
        Script::text(answer(json!({"$ref": "steps.9.output"}))),
        Script::text(answer(json!({"$ref": "steps.9.output"}))),
    ]);
    let r = e.run(&slug, json!({"input": "Answer"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(run_of(&r)["error_code"], "INVALID_REFERENCE");
    let fix = last_message(&e.fake.accepted().last().unwrap().body);
    assert!(fix.contains("does not resolve"), "{fix}");
}

/// A result larger than the budget reaches the model as a preview with its reference; the
/// step keeps it whole, and the answer can name it.
#[tokio::test]
async fn a_large_result_is_previewed_for_the_model_and_kept_whole() {
    let e = env_with(leforge_store::testing::sqlite().await, |c| {
        c.max_body_bytes = 1 << 20
    })
    .await;
    let slug = e.agent("anthropic", json!({})).await;
    let big = "abcdefghij".repeat(2_000);
    e.fake.push_all([
        Script::tool_call(
            "echo__echo",
            json!({"message": {"$ref": "input.data.text"}}),
        ),
        Script::text(r#"{"$ref": "steps.1.output.message"}"#),
    ]);
    let r = e
        .run(
            &slug,
            json!({"input": "Echo it", "data": {"text": big, "n": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(run["steps"][0]["output"]["message"], big.as_str());
    assert_eq!(run["output"], big.as_str());
    let reqs = e.fake.accepted();
    // Neither the data nor the result went to the model whole.
    for req in &reqs {
        let text = req.body.to_string();
        assert!(
            !text.contains(&big),
            "the whole value was sent to the model"
        );
        assert!(text.len() < 16_000, "{} bytes", text.len());
    }
    let first = reqs[0].body["messages"][0]["content"].to_string();
    assert!(
        first.contains("input.data.text") && first.contains("size_bytes"),
        "{first}"
    );
    let result = reqs[1].body.to_string();
    assert!(
        result.contains("steps.1.output") && result.contains("size_bytes"),
        "{result}"
    );
}

/// Without structured output (Anthropic in json mode), a reply that is not a valid action
/// gets one corrective message; the next one counts as a failed step, so a model that never
/// gets it right ends at max_steps instead of looping.
#[tokio::test]
async fn invalid_replies_get_one_correction_then_count_as_failed_steps() {
    let e = env().await;
    let slug = e
        .agent("anthropic", json!({"config": {"tool_mode": "json"}}))
        .await;
    e.fake.push_all([
        Script::text("Sure! In Python you would write a loop."),
        Script::text(call("no_such__tool", json!({}))),
        Script::text(answer(json!({"done": true}))),
    ]);
    let r = e.run(&slug, json!({"input": "Do it"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(run["limits"]["tool_mode"], "json");
    assert_eq!(run["output"], json!({"done": true}));
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(
        (steps[0]["tool"].as_str(), steps[0]["action"].as_str()),
        (Some("leforge"), Some("reply"))
    );
    let error = steps[0]["error"].as_str().unwrap();
    assert!(
        error.contains("INVALID_REPLY")
            && error.contains("'no_such__tool' is not one of the tools"),
        "{error}"
    );
    let reqs = e.fake.accepted();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].body.get("tools").is_none());
    let fix = reqs[1].body["messages"].as_array().unwrap().last().unwrap()["content"].to_string();
    assert!(
        fix.contains("could not be used: the reply is not a JSON object"),
        "{fix}"
    );

    // Bounded: always prose, one step allowed.
    let slug = e
        .agent(
            "anthropic",
            json!({"config": {"tool_mode": "json", "max_steps": 1}}),
        )
        .await;
    e.fake.set_responder(|_| Script::text("I cannot do that."));
    let before = e.fake.accepted().len();
    let r = e.run(&slug, json!({"input": "Do it"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.code(), "MAX_STEPS_EXCEEDED");
    assert_eq!(run_of(&r)["steps"].as_array().unwrap().len(), 1);
    assert_eq!(
        e.fake.accepted().len() - before,
        2,
        "the reply, its correction, then the end"
    );
}

/// `config.tool_mode` is validated like every other config field.
#[tokio::test]
async fn tool_mode_is_validated() {
    let e = env().await;
    let r =
        e.t.admin_post(
            "/api/v1/agents",
            json!({"name": "Bad mode", "system_prompt": "x", "config": {"tool_mode": "xml"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "VALIDATION_ERROR");
    let slug = e.agent("ollama", json!({})).await;
    e.fake.push(Script::text(answer(json!("ok"))));
    let r = e
        .run(
            &slug,
            json!({"input": "x", "config_override": {"tool_mode": "native"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["limits"]["tool_mode"], "native");
    // Native mode: the JSON text is just text, parsed as the output.
    assert_eq!(
        r.body["data"]["output"],
        json!({"action": "final_answer", "answer": "ok"})
    );
    assert!(e.fake.accepted()[0].body.get("format").is_none());
}

/// A 10 MB CSV is cleaned by two chained ForgeHook calls whose arguments are references:
/// its text never reaches the model, and the output is the cleaned CSV in full.
#[tokio::test]
async fn a_10_mb_csv_is_cleaned_without_its_text_reaching_the_model() {
    let e = env_with(leforge_store::testing::sqlite().await, |c| {
        c.max_body_bytes = 64 << 20
    })
    .await;
    e.t.install_all_builtins().await;
    let slug = e
        .agent(
            "openai-compatible",
            json!({"tools": ["string-utils"], "config": {"timeout_ms": 600000}}),
        )
        .await;
    let (mut dirty, mut clean) = (
        String::from("id , region , date\n"),
        String::from("id,region,date\n"),
    );
    let mut i = 0;
    while dirty.len() < 10_000_000 {
        let (d, m) = (1 + i % 28, 1 + i % 12);
        dirty.push_str(&format!("{i} , West , {d:02}/{m:02}/2024\n"));
        clean.push_str(&format!("{i},West,2024-{m:02}-{d:02}\n"));
        i += 1;
    }
    e.fake.push_all([
        Script::text(call(
            "string-utils__regex_replace",
            json!({"text": {"$ref": "input.data.csv"}, "pattern": " *, *", "replacement": ","}),
        )),
        Script::text(call(
            "string-utils__regex_replace",
            json!({"text": {"$ref": "steps.1.output.text"}, "pattern": "(\\d{2})/(\\d{2})/(\\d{4})", "replacement": "${3}-${2}-${1}"}),
        )),
        Script::text(answer(json!({"$ref": "steps.2.output.text"}))),
    ]);
    let r = e
        .run(
            &slug,
            json!({"input": "Trim the cells and make the dates ISO.", "data": {"csv": dirty}}),
        )
        .await;
    let run = run_of(&r);
    let trace: Vec<_> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["action"].clone(), s["error"].clone()))
        .collect();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?} {trace:?}",
        run["error_message"]
    );
    let run = &r.body["data"];
    assert_eq!(run["steps"].as_array().unwrap().len(), 2);
    assert!(
        run["output"] == clean.as_str(),
        "the output is the cleaned CSV"
    );
    let reqs = e.fake.accepted();
    assert_eq!(reqs.len(), 3);
    for req in &reqs {
        let size = req.body.to_string().len();
        assert!(size < 20_000, "a request of {size} bytes went to the model");
    }
}

/// A json-mode answer given before any tool call is questioned once, naming the tools whose
/// names fit the task; a model that needs no tool answers again and the run completes.
#[tokio::test]
async fn a_first_answer_without_a_tool_is_questioned_once() {
    let e = env().await;
    let slug = e.agent("openai-compatible", json!({})).await;
    e.fake.push_all([
        Script::text(answer(json!("from memory"))),
        Script::text(answer(json!("still from memory"))),
    ]);
    let r = e.run(&slug, json!({"input": "Echo the greeting"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"], json!("still from memory"));
    assert_eq!(r.body["data"]["steps"], json!([]));
    let requests = e.fake.accepted();
    assert_eq!(requests.len(), 2, "one question, no more");
    // The task's words name the likely tool up front, after the task.
    let task = requests[0].body["messages"].as_array().unwrap()[1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        task.starts_with("Echo the greeting") && task.ends_with("Tools that may fit: echo__echo."),
        "{task}"
    );
    let question = last_message(&requests[1].body);
    assert!(
        question.contains("without calling a tool") && question.contains("echo__echo"),
        "{question}"
    );
}
