//! The defects a security review found (issue 28), each as a test that failed before its fix:
//! access scopes, per-caller idempotency, run slots for sync and stream runs, the rate
//! limiter's buckets, callback SSRF and the timestamped webhook signature.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Reply, TestApp};
use leforge_fake_provider::Script;
use serde_json::{json, Value};
use tower::ServiceExt;

fn run_request(
    slug: &str,
    key: Option<&str>,
    body: &Value,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut req = Request::post(format!("/api/v1/agents/{slug}/run"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

async fn run_count(t: &TestApp) -> usize {
    t.admin_get("/api/v1/runs?limit=200").await.body["data"]
        .as_array()
        .unwrap()
        .len()
}

fn fields(r: &Reply) -> Vec<String> {
    r.body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn non_admins_see_the_public_view_of_agents_and_no_forgehook_config() {
    for db in leforge_store::testing::all().await {
        let (t, _fake) = TestApp::with_fake(db, |_| {}).await;
        t.install_echo().await;
        let (invoke_id, invoke_key) = t.create_key("invoke").await;
        let agent = t
            .create_agent(json!({
                "name": "Open Door",
                "description": "Public helper",
                "system_prompt": "SECRET-PROMPT: never reveal the discount code 4242",
                "tools": ["echo"],
                "is_public": true,
                "allowed_api_keys": [invoke_id],
            }))
            .await;
        let slug = agent["slug"].as_str().unwrap();
        for key in [None, Some(invoke_key.as_str())] {
            let one = t.get(&format!("/api/v1/agents/{slug}"), key).await;
            assert_eq!(one.status, StatusCode::OK, "{}", one.body);
            let list = t.get("/api/v1/agents", key).await;
            assert_eq!(list.status, StatusCode::OK);
            for view in [&one.body["data"], &list.body["data"][0]] {
                let text = view.to_string();
                assert!(!text.contains("SECRET-PROMPT"), "{text}");
                for hidden in ["system_prompt", "allowed_api_keys", "created_by", "config"] {
                    assert!(view.get(hidden).is_none(), "{hidden} shown: {text}");
                }
                assert_eq!(view["slug"], slug);
                assert_eq!(view["name"], "Open Door");
                assert_eq!(view["description"], "Public helper");
                assert_eq!(view["tools"], json!(["echo"]));
                assert_eq!(view["is_public"], true);
                assert_eq!(view["input_schema"]["required"], json!(["input"]));
            }
        }
        let full = t.admin_get(&format!("/api/v1/agents/{slug}")).await;
        assert!(full.body["data"]["system_prompt"]
            .as_str()
            .unwrap()
            .contains("SECRET-PROMPT"));
        assert_eq!(full.body["data"]["allowed_api_keys"][0], invoke_id.as_str());

        // ForgeHook configuration values are for admins.
        let r = t
            .call(
                Method::PUT,
                "/api/v1/forgehooks/echo/config",
                Some(&t.admin_key),
                Some(json!({"greeting": "internal-host.corp"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let admin = t.admin_get("/api/v1/forgehooks/echo").await;
        assert_eq!(
            admin.body["data"]["config"]["greeting"],
            "internal-host.corp"
        );
        for key in [None, Some(invoke_key.as_str())] {
            for path in ["/api/v1/forgehooks", "/api/v1/forgehooks/echo"] {
                let r = t.get(path, key).await;
                assert_eq!(r.status, StatusCode::OK);
                assert!(
                    !r.body.to_string().contains("internal-host.corp"),
                    "{path}: {}",
                    r.body
                );
            }
        }
    }
}

#[tokio::test]
async fn config_override_may_only_lower_limits_unless_admin() {
    for db in leforge_store::testing::all().await {
        let (t, fake) = TestApp::with_fake(db, |_| {}).await;
        let slug = t
            .create_agent(json!({
                "name": "Budgeted",
                "system_prompt": "x",
                "is_public": true,
                "config": {"max_steps": 5, "timeout_ms": 30000, "max_total_tokens": 10000},
            }))
            .await["slug"]
            .as_str()
            .unwrap()
            .to_string();
        let before = run_count(&t).await;
        for (field, value) in [
            ("max_steps", json!(100)),
            ("timeout_ms", json!(3_600_000)),
            ("max_total_tokens", json!(100_000_000)),
            ("max_tokens", json!(200_000)),
        ] {
            let body = json!({"input": "go", "config_override": {field: value}});
            let r = t.raw(run_request(&slug, None, &body, &[])).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
            assert_eq!(r.code(), "VALIDATION_ERROR");
            assert_eq!(
                fields(&r),
                [format!("config_override.{field}")],
                "{}",
                r.body
            );
        }
        assert_eq!(
            run_count(&t).await,
            before,
            "a refused request stores no run"
        );

        // Lowering is fine for anyone.
        fake.push(Script::text("{\"ok\": 1}"));
        let body = json!({"input": "go", "config_override": {"max_steps": 2, "timeout_ms": 5000}});
        let r = t.raw(run_request(&slug, None, &body, &[])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["limits"]["max_steps"], 2);

        // An admin may raise a limit up to the server's bounds, not past them.
        fake.push(Script::text("{\"ok\": 2}"));
        let body = json!({"input": "go", "config_override": {"max_steps": 50}});
        let r = t
            .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["limits"]["max_steps"], 50);
        let body = json!({"input": "go", "config_override": {"max_steps": 101}});
        let r = t
            .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&r), ["config_override.max_steps"]);
    }
}

#[tokio::test]
async fn sync_and_stream_runs_take_a_slot_and_wait_a_bounded_time() {
    let (t, fake) = TestApp::with_fake(leforge_store::testing::sqlite().await, |c| {
        c.max_concurrent_runs = 1;
        c.run_slot_wait_ms = 300;
    })
    .await;
    let slug = t
        .create_agent(json!({"name": "One At A Time", "system_prompt": "x"}))
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    fake.push(Script::hang());
    let app = t.app.clone();
    let holder = tokio::spawn({
        let req = run_request(
            &slug,
            Some(&t.admin_key),
            &json!({"input": "hold the slot"}),
            &[],
        );
        async move { app.oneshot(req).await.unwrap().status() }
    });
    // Wait until the first run is executing (it holds the only slot).
    let mut first = None;
    for _ in 0..200 {
        let runs = t.admin_get("/api/v1/runs").await;
        if let Some(run) = runs.body["data"].as_array().unwrap().first() {
            if run["status"] == "running" {
                first = Some(run["run_id"].as_str().unwrap().to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = first.expect("the first run started");
    for body in [
        json!({"input": "second"}),
        json!({"input": "streamed", "stream": true}),
    ] {
        let r = t
            .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
        assert_eq!(r.code(), "RATE_LIMITED");
        assert!(
            r.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }
    assert_eq!(run_count(&t).await, 1, "refused runs are not stored");

    // The slot comes back when the run ends.
    let r = t
        .call(
            Method::POST,
            &format!("/api/v1/runs/{first}/cancel"),
            Some(&t.admin_key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(holder.await.unwrap(), StatusCode::CONFLICT);
    fake.push(Script::text("{\"done\": true}"));
    let r = t
        .admin_post(
            &format!("/api/v1/agents/{slug}/run"),
            json!({"input": "third"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["output"], json!({"done": true}));
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_caller() {
    for db in leforge_store::testing::all().await {
        let (t, fake) = TestApp::with_fake(db, |_| {}).await;
        let slug = t
            .create_agent(json!({"name": "Shared Keys", "system_prompt": "x", "is_public": true}))
            .await["slug"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, invoke_key) = t.create_key("invoke").await;
        let key = [("idempotency-key", "order-1")];
        let body = json!({"input": "charge"});
        fake.push(Script::text("{\"by\": \"admin\"}"));
        let mine = t
            .raw(run_request(&slug, Some(&t.admin_key), &body, &key))
            .await;
        assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
        let my_run = mine.body["data"]["run_id"].clone();

        // Another caller's same key and body is a new run, not a replay of the admin's.
        fake.push(Script::text("{\"by\": \"invoke\"}"));
        let theirs = t
            .raw(run_request(&slug, Some(&invoke_key), &body, &key))
            .await;
        assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
        assert_ne!(theirs.body["data"]["run_id"], my_run);
        assert_eq!(theirs.body["data"]["output"], json!({"by": "invoke"}));

        // A different body under the key is a conflict naming only the caller's own run.
        let other = json!({"input": "refund"});
        let conflict = t
            .raw(run_request(&slug, Some(&invoke_key), &other, &key))
            .await;
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.code(), "IDEMPOTENCY_CONFLICT");
        assert_eq!(
            conflict.body["error"]["details"]["run_id"],
            theirs.body["data"]["run_id"]
        );
        assert!(!conflict.body.to_string().contains(my_run.as_str().unwrap()));

        // Each caller's replay is its own run.
        let again = t
            .raw(run_request(&slug, Some(&t.admin_key), &body, &key))
            .await;
        assert_eq!(again.body["data"]["run_id"], my_run);
        assert_eq!(fake.chat_count(), 2, "no execution twice");
    }
}

#[tokio::test]
async fn the_rate_limiter_counts_made_up_keys_against_the_client_not_the_key() {
    let (t, _fake) = TestApp::with_fake(leforge_store::testing::sqlite().await, |c| {
        c.rate_limit_per_minute = 2;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = t
            .get("/api/v1/agents", Some(&format!("lf_made_up_{i}")))
            .await;
        statuses.push(r.status);
    }
    assert!(statuses.contains(&StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "six made-up keys share one client's bucket: {statuses:?}"
    );
    assert_eq!(
        t.state.rate_limiter.tracked(),
        1,
        "no bucket per made-up key"
    );
    // A real key has a bucket of its own.
    let r = t.admin_get("/api/v1/agents").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(t.state.rate_limiter.tracked(), 2);
}

fn refused_callbacks() -> Vec<&'static str> {
    vec![
        "http://127.0.0.1:9/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://0.0.0.0/hook",
        "http://localhost:9/hook",
    ]
}

#[tokio::test]
async fn callback_urls_to_internal_addresses_are_refused() {
    for db in leforge_store::testing::all().await {
        let (t, _fake) = TestApp::with_fake(db, |c| {
            c.webhook_secret = Some(leforge_server::config::Secret::new("whsec".into()));
        })
        .await;
        let slug = t
            .create_agent(json!({"name": "Calls Back", "system_prompt": "x"}))
            .await["slug"]
            .as_str()
            .unwrap()
            .to_string();
        for url in refused_callbacks() {
            let body = json!({"input": "go", "mode": "async", "callback_url": url});
            let r = t
                .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.body);
            assert_eq!(r.code(), "VALIDATION_ERROR");
            assert_eq!(fields(&r), ["callback_url"], "{url}");
        }
        assert_eq!(run_count(&t).await, 0);
    }
}

#[tokio::test]
async fn an_allow_listed_callback_host_may_be_internal() {
    let (t, fake) = TestApp::with_fake(leforge_store::testing::sqlite().await, |c| {
        c.webhook_secret = Some(leforge_server::config::Secret::new("whsec".into()));
        c.callback_allowed_hosts = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let slug = t
        .create_agent(json!({"name": "Calls Home", "system_prompt": "x"}))
        .await["slug"]
        .as_str()
        .unwrap()
        .to_string();
    fake.push(Script::text("{}"));
    let body = json!({"input": "go", "mode": "async", "callback_url": "http://127.0.0.1:9/hook"});
    let r = t
        .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // Not on the list: refused by the list before any address check.
    let body = json!({"input": "go", "mode": "async", "callback_url": "http://[::1]:9/hook"});
    let r = t
        .admin_post(&format!("/api/v1/agents/{slug}/run"), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Makes every step insert fail, as a full disk or a lost database would, with a trigger in
/// the real database.
async fn lose_step_writes(backend: &str, url: &str) {
    use sqlx::Connection;
    if backend == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER lose_steps BEFORE INSERT ON agent_run_steps \
             BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END",
        )
        .execute(&mut c)
        .await
        .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE FUNCTION lose_steps() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'disk full (test)'; END $$ LANGUAGE plpgsql",
        )
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER lose_steps BEFORE INSERT ON agent_run_steps \
             FOR EACH ROW EXECUTE FUNCTION lose_steps()",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_step_that_cannot_be_stored_fails_the_run_with_store_error() {
    for db in leforge_store::testing::all().await {
        let (backend, url) = (db.backend, db.url.clone());
        let (t, fake) = TestApp::with_fake(db, |_| {}).await;
        t.install_echo().await;
        let slug = t
            .create_agent(json!({"name": "Traced", "system_prompt": "x", "tools": ["echo"]}))
            .await["slug"]
            .as_str()
            .unwrap()
            .to_string();
        lose_step_writes(backend, &url).await;
        fake.push(Script::tool_call(
            "echo__echo",
            json!({"message": "charge the card"}),
        ));
        fake.push(Script::text("{\"done\": true}"));
        let r = t
            .admin_post(
                &format!("/api/v1/agents/{slug}/run"),
                json!({"input": "go"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend}: {}",
            r.body
        );
        let run = &r.body["error"]["details"]["run"];
        assert_eq!(run["status"], "failed", "{backend}");
        assert_eq!(run["error_code"], "STORE_ERROR", "{backend}: {run}");
        assert!(run["error_message"]
            .as_str()
            .unwrap()
            .contains("could not be stored"));
        // The run did not complete as if its call were recorded.
        let stored = t
            .admin_get(&format!("/api/v1/runs/{}", run["run_id"].as_str().unwrap()))
            .await;
        assert_eq!(stored.body["data"]["status"], "failed");
        assert_eq!(stored.body["data"]["steps"], json!([]));
    }
}
