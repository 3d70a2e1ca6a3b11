//! Rhai hooks end to end (issue #7): the scripts API, agents' `hooks`, global hooks, every
//! hook point and return form through real runs (real store, real wasm component, the Rhai
//! runner, the wire-level fake LLM provider), hostile scripts, and the example scripts in
//! `scripts/`.

#[path = "support/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Reply, TestApp};
use leforge_fake_provider::{FakeProvider, Script};
use serde_json::{json, Value};

struct Env {
    t: TestApp,
    fake: FakeProvider,
}

async fn env_with(
    db: leforge_store::testing::TestStore,
    adjust: impl FnOnce(&mut leforge_server::config::Config),
) -> Env {
    let (t, fake) = TestApp::with_fake(db, adjust).await;
    t.install_echo().await;
    Env { t, fake }
}

async fn env() -> Env {
    env_with(leforge_store::testing::sqlite().await, |_| {}).await
}

async fn all_envs() -> Vec<Env> {
    let mut envs = Vec::new();
    for db in leforge_store::testing::all().await {
        envs.push(env_with(db, |_| {}).await);
    }
    envs
}

fn example(name: &str) -> String {
    let path = format!("{}/../../scripts/{name}.rhai", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl Env {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.t
            .call(method, path, Some(&self.t.admin_key.clone()), body)
            .await
    }

    /// Saves a script and returns its JSON.
    async fn script(&self, name: &str, source: &str) -> Value {
        let r = self
            .t
            .admin_post("/api/v1/scripts", json!({"name": name, "source": source}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["data"].clone()
    }

    /// An agent with the echo tool and these hooks; returns its slug.
    async fn agent(&self, name: &str, hooks: Value) -> String {
        let body = json!({
            "name": name,
            "system_prompt": "You echo things.",
            "tools": ["echo"],
            "hooks": hooks,
        });
        self.t.create_agent(body).await["slug"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn run(&self, slug: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/api/v1/agents/{slug}/run"),
            Some(body),
        )
        .await
    }

    /// Every request the model was sent, as text.
    fn sent(&self) -> Vec<String> {
        self.fake
            .accepted()
            .iter()
            .map(|r| r.body.to_string())
            .collect()
    }
}

fn run_of(r: &Reply) -> &Value {
    if r.body["success"] == true {
        &r.body["data"]
    } else {
        &r.body["error"]["details"]["run"]
    }
}

fn hooks_of(run: &Value) -> Vec<(String, String, String)> {
    run["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["hook"].as_str().unwrap().to_string(),
                h["script"].as_str().unwrap().to_string(),
                h["outcome"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---- The scripts API ----

#[tokio::test]
async fn scripts_crud_with_compile_errors_placed() {
    for e in all_envs().await {
        let s = e.script("masker", "fn on_run_start(ctx) { () }").await;
        assert_eq!(s["version"], 1);
        let id = s["id"].as_str().unwrap().to_string();

        let by_name = e.t.admin_get("/api/v1/scripts/masker").await;
        assert_eq!(by_name.status, StatusCode::OK);
        assert_eq!(by_name.body["data"]["id"], id.as_str());
        let by_id = e.t.admin_get(&format!("/api/v1/scripts/{id}")).await;
        assert_eq!(by_id.body["data"]["name"], "masker");
        let list = e.t.admin_get("/api/v1/scripts").await;
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);

        // A syntax error on create: 400 with line and column.
        let bad =
            e.t.admin_post(
                "/api/v1/scripts",
                json!({"name": "broken", "source": "fn on_run_start(ctx) {\n  let x = ;\n}"}),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert_eq!(bad.code(), "VALIDATION_ERROR");
        let d = &bad.body["error"]["details"][0];
        assert_eq!(d["line"], 2, "{}", bad.body);
        assert!(d["column"].as_u64().unwrap() > 0, "{}", bad.body);
        assert!(!d["message"].as_str().unwrap().is_empty());
        assert_eq!(
            e.t.admin_get("/api/v1/scripts/broken").await.status,
            StatusCode::NOT_FOUND
        );

        // ... and on update, where the stored version stays as it was.
        let bad = e
            .call(
                Method::PUT,
                "/api/v1/scripts/masker",
                Some(json!({"source": "fn before_tool(ctx, call) {\n\n   x +* 1\n}"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert_eq!(bad.body["error"]["details"][0]["line"], 3, "{}", bad.body);
        // A hook with the wrong parameters is a compile error too.
        let bad = e
            .call(
                Method::PUT,
                "/api/v1/scripts/masker",
                Some(json!({"source": "fn before_tool(ctx) { () }"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(bad.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("before_tool(ctx, call)"));

        let ok = e
            .call(
                Method::PUT,
                "/api/v1/scripts/masker",
                Some(
                    json!({"source": "fn on_run_end(ctx, output) { output }", "description": "v2"}),
                ),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.body["data"]["version"], 2);
        assert_eq!(ok.body["data"]["description"], "v2");

        // Names: unique, plain.
        let dup =
            e.t.admin_post("/api/v1/scripts", json!({"name": "masker", "source": ""}))
                .await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
        let bad_name =
            e.t.admin_post(
                "/api/v1/scripts",
                json!({"name": "has space", "source": "", "extra": 1}),
            )
            .await;
        assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
        let bad_name =
            e.t.admin_post("/api/v1/scripts", json!({"name": "has space"}))
                .await;
        let fields: Vec<_> = bad_name.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(fields, ["name", "source"], "{}", bad_name.body);

        // Admin only.
        let (_, invoke) = e.t.create_key("invoke").await;
        let r = e.t.get("/api/v1/scripts", Some(&invoke)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let del = e.call(Method::DELETE, "/api/v1/scripts/masker", None).await;
        assert_eq!(del.status, StatusCode::OK, "{}", del.body);
        assert_eq!(
            e.t.admin_get("/api/v1/scripts/masker").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn agent_hooks_are_validated_stored_as_ids_and_block_deletes() {
    for e in all_envs().await {
        let a = e.script("first", "fn on_run_start(ctx) { () }").await;
        let b = e.script("second", "fn on_run_end(ctx, o) { o }").await;
        let r =
            e.t.admin_post(
                "/api/v1/agents",
                json!({"name": "Bad Hooks", "system_prompt": "x", "hooks": ["first", "missing"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.code(), "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"][0]["field"], "hooks[1]");

        // Names or ids in, ids out, in order.
        let agent =
            e.t.create_agent(
                json!({"name": "Hooked", "system_prompt": "x", "hooks": ["second", a["id"]]}),
            )
            .await;
        assert_eq!(agent["hooks"], json!([b["id"], a["id"]]));
        let got = e.t.admin_get("/api/v1/agents/hooked").await;
        assert_eq!(got.body["data"]["hooks"], agent["hooks"]);

        // A rename does not detach the script.
        let r = e
            .call(
                Method::PUT,
                "/api/v1/scripts/first",
                Some(json!({"name": "first-renamed"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let got = e.t.admin_get("/api/v1/agents/hooked").await;
        assert_eq!(got.body["data"]["hooks"][1], a["id"]);

        // In use: 409 naming the agent.
        let r = e
            .call(Method::DELETE, "/api/v1/scripts/first-renamed", None)
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(r.code(), "SCRIPT_IN_USE");
        assert_eq!(r.body["error"]["details"][0]["agent_id"], agent["id"]);
        assert_eq!(r.body["error"]["details"][0]["agent_name"], "Hooked");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Hooked"));

        // Update: replace the list; an unknown entry is placed.
        let r = e
            .call(
                Method::PUT,
                "/api/v1/agents/hooked",
                Some(json!({"hooks": ["second", "nope"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "hooks[1]");
        let r = e
            .call(
                Method::PUT,
                "/api/v1/agents/hooked",
                Some(json!({"hooks": ["second"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["hooks"], json!([b["id"]]));
        let r = e
            .call(Method::DELETE, "/api/v1/scripts/first-renamed", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // A deleted agent holds nothing.
        e.call(Method::DELETE, "/api/v1/agents/hooked", None).await;
        let r = e.call(Method::DELETE, "/api/v1/scripts/second", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

#[tokio::test]
async fn test_route_returns_results_and_placed_errors() {
    let e = env().await;
    e.script(
        "probe",
        "fn before_tool(ctx, call) {\n  log_info(`tool ${call.name}`);\n  if call.args.n > 3 { return #{ deny: \"too many\" }; }\n  if call.args.n == 0 { throw \"zero\"; }\n  if call.args.n < 0 { let x = call.args.n / 0; }\n}",
    )
    .await;
    let ctx = json!({"agent": {"id": "00000000-0000-0000-0000-000000000000", "slug": "a", "name": "A"},
                     "run_id": "00000000-0000-0000-0000-000000000000", "input": "", "data": null,
                     "step": 1, "metadata": {}});
    let call =
        |n: i64| json!({"tool": "echo", "action": "echo", "name": "echo__echo", "args": {"n": n}});
    let test = |args: Value| {
        e.t.admin_post(
            "/api/v1/scripts/probe/test",
            json!({"hook": "before_tool", "args": args}),
        )
    };

    let r = test(json!([ctx, call(5)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["ok"], true);
    assert_eq!(r.body["data"]["result"], json!({"deny": "too many"}));
    assert_eq!(r.body["data"]["logs"][0]["message"], "tool echo__echo");

    let r = test(json!([ctx, call(1)])).await;
    assert_eq!(r.body["data"]["ok"], true);
    assert_eq!(r.body["data"]["result"], Value::Null);

    let r = test(json!([ctx, call(0)])).await;
    assert_eq!(r.body["data"]["ok"], false);
    assert_eq!(r.body["data"]["error"]["code"], "HOOK_REJECTED");
    assert_eq!(r.body["data"]["error"]["reason"], "zero");

    let r = test(json!([ctx, call(-1)])).await;
    let err = &r.body["data"]["error"];
    assert_eq!(err["code"], "HOOK_ERROR", "{}", r.body);
    assert_eq!(err["script"], "probe");
    assert_eq!(err["line"], 5, "{}", r.body);
    assert!(err["column"].as_u64().is_some(), "{}", r.body);

    let r =
        e.t.admin_post(
            "/api/v1/scripts/probe/test",
            json!({"hook": "before_tool", "args": [ctx]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["details"][0]["field"], "args");
    let r =
        e.t.admin_post(
            "/api/v1/scripts/probe/test",
            json!({"hook": "before_run", "args": []}),
        )
        .await;
    assert_eq!(r.body["error"]["details"][0]["field"], "hook");
    let r =
        e.t.admin_post(
            "/api/v1/scripts/nope/test",
            json!({"hook": "on_run_start", "args": [ctx]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// ---- Hook points through runs ----

#[tokio::test]
async fn on_run_start_replaces_input_and_data_before_the_llm_sees_them() {
    for e in all_envs().await {
        e.script(
            "rewrite",
            "fn on_run_start(ctx) { #{ input: ctx.input + \" (rewritten)\", data: #{ kept: ctx.data.secret.len() } } }",
        )
        .await;
        let slug = e.agent("Starter", json!(["rewrite"])).await;
        e.fake.push(Script::text("```json\n{\"ok\": true}\n```"));
        let r = e
            .run(
                &slug,
                json!({"input": "Hello", "data": {"secret": "abcdef"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let sent = e.sent();
        assert!(sent[0].contains("Hello (rewritten)"), "{}", sent[0]);
        assert!(sent[0].contains("\\\"kept\\\": 6"), "{}", sent[0]);
        assert!(!sent[0].contains("abcdef"), "{}", sent[0]);

        // The record is on the stored run.
        let id = r.body["data"]["run_id"].as_str().unwrap();
        let stored = e.t.admin_get(&format!("/api/v1/runs/{id}")).await;
        let run = &stored.body["data"];
        assert_eq!(
            hooks_of(run),
            [("on_run_start".into(), "rewrite".into(), "replaced".into())]
        );
        assert_eq!(
            run["hooks"][0]["outcome"]["changes"]["input"],
            "Hello (rewritten)"
        );
        assert_eq!(run["hooks"], r.body["data"]["hooks"]);
        // The stored input is what the caller sent.
        assert_eq!(run["input_text"], "Hello");
    }
}

#[tokio::test]
async fn before_tool_replaces_args_denies_or_supplies_the_result() {
    let e = env().await;
    e.script(
        "gate",
        r#"fn before_tool(ctx, call) {
            switch call.args.message {
                "rewrite" => #{ args: #{ message: `rewritten at step ${ctx.step}` } },
                "invalid" => #{ args: #{ nothing: 1 } },
                "deny" => #{ deny: "too risky" },
                "cached" => #{ result: #{ cached: true } },
                _ => ()
            }
        }"#,
    )
    .await;
    let slug = e.agent("Gated", json!(["gate"])).await;
    e.fake.push(Script::tool_calls([
        ("echo__echo", json!({"message": "rewrite"})),
        ("echo__echo", json!({"message": "invalid"})),
        ("echo__echo", json!({"message": "deny"})),
        ("echo__echo", json!({"message": "cached"})),
        ("echo__echo", json!({"message": "plain"})),
    ]));
    e.fake.push(Script::text("done"));
    let r = e.run(&slug, json!({"input": "go"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let steps = r.body["data"]["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 5);

    // Replaced arguments are what the tool got, and what the step shows.
    assert_eq!(steps[0]["input"], json!({"message": "rewritten at step 1"}));
    assert_eq!(steps[0]["output"]["message"], "rewritten at step 1");
    // Replaced arguments are validated against the endpoint's schema like the model's.
    assert_eq!(steps[1]["output"], Value::Null);
    assert!(
        steps[1]["error"]
            .as_str()
            .unwrap()
            .contains("invalid input"),
        "{}",
        steps[1]
    );
    // Denied: not executed, recorded, and the model told.
    assert_eq!(steps[2]["error"], "denied by hook: too risky");
    assert_eq!(steps[2]["output"], Value::Null);
    // A supplied result stands in for the tool.
    assert_eq!(steps[3]["output"], json!({"cached": true}));
    assert_eq!(steps[4]["output"]["message"], "plain");
    let second = &e.sent()[1];
    assert!(second.contains("denied by hook: too risky"), "{second}");
    assert!(second.contains("DENIED_BY_HOOK"), "{second}");
    assert!(second.contains("cached"), "{second}");

    let mut kinds: Vec<_> = r.body["data"]["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["step"].as_i64().unwrap(),
                h["outcome"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (1, "replaced".to_string()),
            (2, "replaced".to_string()),
            (3, "denied".to_string()),
            (4, "result".to_string()),
            (5, "unchanged".to_string()),
        ]
    );
}

#[tokio::test]
async fn after_tool_and_on_run_end_replace_what_they_get() {
    let e = env().await;
    e.script(
        "shape",
        r#"
        fn after_tool(ctx, call, result) {
            if result.message == "keep" { return; }
            #{ message: result.message.to_upper(), by: call.name }
        }
        fn on_run_end(ctx, output) { #{ wrapped: output, steps: ctx.step } }
        "#,
    )
    .await;
    let slug = e.agent("Shaper", json!(["shape"])).await;
    e.fake.push(Script::tool_calls([
        ("echo__echo", json!({"message": "loud"})),
        ("echo__echo", json!({"message": "keep"})),
    ]));
    e.fake.push(Script::text("```json\n{\"answer\": 42}\n```"));
    let r = e.run(&slug, json!({"input": "go"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = &r.body["data"];
    assert_eq!(
        run["steps"][0]["output"],
        json!({"message": "LOUD", "by": "echo__echo"})
    );
    assert_eq!(run["steps"][1]["output"]["message"], "keep");
    assert!(e.sent()[1].contains("LOUD"));
    assert_eq!(
        run["output"],
        json!({"wrapped": {"answer": 42}, "steps": 2})
    );
    let id = run["run_id"].as_str().unwrap();
    let stored = e.t.admin_get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(stored.body["data"]["output"], run["output"]);
    let last = hooks_of(run).pop().unwrap();
    assert_eq!(
        last,
        ("on_run_end".into(), "shape".into(), "replaced".into())
    );
}

#[tokio::test]
async fn global_hooks_run_before_the_agents_own() {
    let db = leforge_store::testing::sqlite().await;
    let e = env_with(db, |c| c.global_hooks = vec!["global-tag".into()]).await;
    e.script(
        "global-tag",
        "fn on_run_start(ctx) { #{ input: ctx.input + \" +global\" } }",
    )
    .await;
    e.script(
        "agent-tag",
        "fn on_run_start(ctx) { #{ input: ctx.input + \" +agent\" } }",
    )
    .await;
    let slug = e.agent("Layered", json!(["agent-tag"])).await;
    let plain = e.agent("Plain", json!([])).await;
    e.fake.push(Script::text("one"));
    e.fake.push(Script::text("two"));
    let r = e.run(&slug, json!({"input": "base"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        e.sent()[0].contains("base +global +agent"),
        "{}",
        e.sent()[0]
    );
    let scripts: Vec<_> = hooks_of(&r.body["data"]).into_iter().map(|h| h.1).collect();
    assert_eq!(scripts, ["global-tag", "agent-tag"]);
    // Every agent gets the global hook.
    let r = e.run(&plain, json!({"input": "base"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(e.sent()[1].contains("base +global\""), "{}", e.sent()[1]);

    // A global hook cannot be deleted or renamed away.
    let r = e
        .call(Method::DELETE, "/api/v1/scripts/global-tag", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "SCRIPT_IN_USE");
    let r = e
        .call(
            Method::PUT,
            "/api/v1/scripts/global-tag",
            Some(json!({"name": "elsewhere"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
}

#[tokio::test]
async fn a_missing_global_script_fails_the_run_at_start() {
    let db = leforge_store::testing::sqlite().await;
    let e = env_with(db, |c| c.global_hooks = vec!["not-there".into()]).await;
    let slug = e.agent("Orphan", json!([])).await;
    let r = e.run(&slug, json!({"input": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let run = run_of(&r);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error_code"], "HOOK_ERROR");
    assert!(run["error_message"]
        .as_str()
        .unwrap()
        .contains("'not-there'"));
    assert_eq!(e.fake.request_count(), 0);
}

#[tokio::test]
async fn throw_rejects_and_runtime_errors_are_placed() {
    for e in all_envs().await {
        e.script(
            "gatekeeper",
            "fn on_run_start(ctx) {\n  if ctx.input == \"no\" { throw \"inputs saying no are refused\"; }\n}",
        )
        .await;
        e.script(
            "buggy",
            "fn before_tool(ctx, call) {\n  let n = 1;\n  n.no_such_method();\n}",
        )
        .await;
        let slug = e.agent("Guarded", json!(["gatekeeper", "buggy"])).await;

        let r = e.run(&slug, json!({"input": "no"})).await;
        let run = run_of(&r);
        assert_eq!(run["status"], "failed", "{}", r.body);
        assert_eq!(run["error_code"], "HOOK_REJECTED");
        assert!(run["error_message"]
            .as_str()
            .unwrap()
            .contains("inputs saying no are refused"));
        assert_eq!(
            hooks_of(run),
            [(
                "on_run_start".into(),
                "gatekeeper".into(),
                "rejected".into()
            )]
        );
        assert_eq!(e.fake.request_count(), 0, "the model never saw the run");

        e.fake
            .push(Script::tool_call("echo__echo", json!({"message": "m"})));
        let r = e.run(&slug, json!({"input": "yes"})).await;
        let run = run_of(&r);
        assert_eq!(run["status"], "failed", "{}", r.body);
        assert_eq!(run["error_code"], "HOOK_ERROR");
        let message = run["error_message"].as_str().unwrap();
        assert!(
            message.contains("'buggy'") && message.contains("line 3"),
            "{message}"
        );
        let last = run["hooks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["outcome"]["kind"], "failed");
        assert_eq!(last["outcome"]["code"], "HOOK_ERROR");
        // The stored run says the same.
        let id = run["run_id"].as_str().unwrap();
        let stored = e.t.admin_get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(stored.body["data"]["error_code"], "HOOK_ERROR");
        assert_eq!(stored.body["data"]["hooks"], run["hooks"]);
    }
}

#[tokio::test]
async fn hostile_scripts_hit_limits_while_another_run_proceeds() {
    let e = env().await;
    let hostile = [
        ("spin", "fn on_run_start(ctx) { loop { } }"),
        (
            "doubling",
            "fn on_run_start(ctx) { let s = \"xx\"; loop { s += s; } }",
        ),
        (
            "recursion",
            "fn down(n) { down(n + 1) }\nfn on_run_start(ctx) { down(0) }",
        ),
        (
            "huge-array",
            "fn on_run_start(ctx) { let a = []; a.pad(1000000, 0); }",
        ),
    ];
    for (name, source) in hostile {
        e.script(name, source).await;
    }
    let good = e.agent("Good", json!([])).await;
    for (name, _) in hostile {
        let slug = e.agent(&format!("Hostile {name}"), json!([name])).await;
        // The good run is slowed by the model, so it overlaps the hostile one.
        e.fake
            .push(Script::tool_call("echo__echo", json!({"message": name})));
        e.fake.push(Script::text("fine"));
        e.fake.set_latency(Duration::from_millis(300));
        let good_run = e.run(&good, json!({"input": "work"}));
        let hostile_run = async {
            let started = Instant::now();
            let r = e.run(&slug, json!({"input": "attack"})).await;
            (r, started.elapsed())
        };
        let (good_reply, (r, took)) = tokio::join!(good_run, hostile_run);
        let run = run_of(&r);
        assert_eq!(run["status"], "failed", "{name}: {}", r.body);
        assert_eq!(
            run["error_code"], "HOOK_LIMIT_EXCEEDED",
            "{name}: {}",
            r.body
        );
        let message = run["error_message"].as_str().unwrap();
        assert!(message.contains(&format!("'{name}'")), "{message}");
        assert!(message.contains("limit"), "{message}");
        assert!(took < Duration::from_secs(2), "{name} took {took:?}");
        assert_eq!(good_reply.status, StatusCode::OK, "{}", good_reply.body);
        assert_eq!(good_reply.body["data"]["status"], "completed");
    }
}

#[tokio::test]
async fn hook_records_stream_as_sse_events() {
    let e = env().await;
    e.script("tagger", "fn on_run_end(ctx, o) { #{ tagged: o } }")
        .await;
    let slug = e.agent("Streamer", json!(["tagger"])).await;
    e.fake.push(Script::text("plain"));
    let r =
        e.t.raw(
            Request::post(format!("/api/v1/agents/{slug}/run"))
                .header("x-api-key", &e.t.admin_key)
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"input": "x", "stream": true}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    let text = r
        .body
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| r.body.to_string());
    assert!(text.contains("event: hook"), "{text}");
    assert!(text.contains("\"on_run_end\""), "{text}");
}

// ---- The example scripts in scripts/ ----

#[tokio::test]
async fn example_redact_pii_masks_before_the_llm_sees_it() {
    let e = env().await;
    e.script("redact_pii", &example("redact_pii")).await;
    let slug = e.agent("Redacted", json!(["redact_pii"])).await;
    e.fake.push(Script::text("ok"));
    let r = e
        .run(
            &slug,
            json!({
                "input": "Write to jane.doe@example.com or call +1 (555) 123-4567.",
                "data": {"contacts": [{"email": "bob@corp.io", "phone": "020 7946 0958", "id": 12345}]}
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sent = &e.sent()[0];
    for secret in ["jane.doe@example.com", "555", "bob@corp.io", "7946"] {
        assert!(!sent.contains(secret), "{secret} leaked: {sent}");
    }
    assert!(
        sent.contains("[email]") && sent.contains("[phone]"),
        "{sent}"
    );
    // Short numbers are not phone numbers.
    assert!(sent.contains("12345"), "{sent}");
}

#[tokio::test]
async fn example_deny_large_batches_denies_over_the_limit() {
    let e = env().await;
    e.script("deny_large_batches", &example("deny_large_batches"))
        .await;
    let slug = e.agent("Batcher", json!(["deny_large_batches"])).await;
    let rows = |n: usize| (0..n).map(|i| json!({"i": i})).collect::<Vec<_>>();
    e.fake.push(Script::tool_calls([
        (
            "echo__echo",
            json!({"message": "big", "data": 1, "records": rows(101)}),
        ),
        (
            "echo__echo",
            json!({"message": "small", "records": rows(3)}),
        ),
    ]));
    e.fake.push(Script::text("done"));
    let r = e.run(&slug, json!({"input": "load"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let steps = &r.body["data"]["steps"];
    assert_eq!(
        steps[0]["error"],
        "denied by hook: echo__echo: 101 records exceed the limit of 100 per call"
    );
    assert_eq!(steps[1]["error"], Value::Null, "{}", steps[1]);
    assert_eq!(steps[1]["output"]["message"], "small");
}

#[tokio::test]
async fn example_totals_envelope_wraps_the_output() {
    let e = env().await;
    e.script("totals_envelope", &example("totals_envelope"))
        .await;
    let slug = e.agent("Totals", json!(["totals_envelope"])).await;
    e.fake.push(Script::text("```json\n{\"total\": 7}\n```"));
    let r = e.run(&slug, json!({"input": "sum"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let output = &r.body["data"]["output"];
    assert_eq!(output["result"], json!({"total": 7}));
    let at = output["generated_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
}

#[tokio::test]
async fn example_audit_log_logs_names_and_argument_keys_only() {
    let e = env().await;
    e.script("audit_log", &example("audit_log")).await;
    let slug = e.agent("Audited", json!(["audit_log"])).await;
    e.fake.push(Script::tool_call(
        "echo__echo",
        json!({"message": "top secret", "data": {"x": 1}}),
    ));
    e.fake.push(Script::text("done"));
    let r = e.run(&slug, json!({"input": "go"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let hooks = r.body["data"]["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["outcome"]["kind"], "unchanged");
    let line = hooks[0]["logs"][0]["message"].as_str().unwrap();
    assert_eq!(line, "step 1: echo__echo (echo/echo) args: [data, message]");
    assert!(!r.body.to_string().contains("top secret\"]"));
    // The tool ran with the model's arguments.
    assert_eq!(
        r.body["data"]["steps"][0]["output"]["message"],
        "top secret"
    );
}
