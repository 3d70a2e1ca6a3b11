//! HTTP tests for every foundation route and error case, each run against SQLite and (when
//! configured, always in CI) PostgreSQL.

#[path = "support/harness.rs"]
mod harness;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::TestApp;
use leforge_core::{NewRun, RunStatus, RunStep, RunUpdate};
use serde_json::{json, Value};
use uuid::Uuid;

fn agent_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Cleans CSV files",
        "system_prompt": "You are a data cleaning assistant.",
        "tools": ["data-transform", "date-utils"],
        "provider": "openai",
        "model": "gpt-4o",
    })
}

#[tokio::test]
async fn health_reports_backend_and_request_id() {
    for t in TestApp::all().await {
        let r = t.get("/api/v1/health", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["status"], "ok");
        assert_eq!(r.body["database"], t.backend);
        assert_eq!(r.body["data"]["database"], t.backend);
        assert!(r.body["version"].is_string());
        let header = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(r.body["request_id"], header);
        // A sane caller-supplied id is kept, so traces can cross systems.
        let req = Request::get("/api/v1/health")
            .header("x-request-id", "n8n-exec-42")
            .body(Body::empty())
            .unwrap();
        assert_eq!(t.raw(req).await.body["request_id"], "n8n-exec-42");
    }
}

#[tokio::test]
async fn protected_routes_need_the_right_key() {
    for t in TestApp::all().await {
        let body = agent_body("Guarded");
        let r = t
            .call(Method::POST, "/api/v1/agents", None, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["success"], false);
        assert_eq!(r.code(), "UNAUTHORIZED");
        assert!(r.body["request_id"].is_string());

        let r = t
            .call(
                Method::POST,
                "/api/v1/agents",
                Some("lf_not_a_real_key"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let (_, invoke) = t.create_key("invoke").await;
        let r = t
            .call(
                Method::POST,
                "/api/v1/agents",
                Some(&invoke),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "FORBIDDEN");
        let r = t.get("/api/v1/api-keys", Some(&invoke)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // Both header forms work.
        let req = Request::post("/api/v1/agents")
            .header("authorization", format!("Bearer {}", t.admin_key))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(t.raw(req).await.status, StatusCode::CREATED);
        let req = Request::get("/api/v1/agents")
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .body(Body::empty())
            .unwrap();
        let r = t.raw(req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer"));
    }
}

#[tokio::test]
async fn create_agent_applies_defaults_and_slugs_the_name() {
    for t in TestApp::all().await {
        let a = t
            .create_agent(json!({
                "name": "CSV Cleaner Pro",
                "system_prompt": "Clean data.",
                "config": {"max_steps": 4}
            }))
            .await;
        assert_eq!(a["slug"], "csv-cleaner-pro");
        assert_eq!(a["provider"], "anthropic");
        assert_eq!(a["model"], "claude-sonnet");
        assert_eq!(a["tools"], json!([]));
        assert_eq!(
            a["config"],
            json!({"max_steps": 4, "max_tokens": 4096, "temperature": 0.7, "timeout_ms": 60000,
                   "retry_on_error": true, "max_retries": 2, "tool_mode": "auto",
                   "result_budget_bytes": 4096})
        );
        assert_eq!(a["is_public"], false);
        let r = t
            .admin_get(&format!("/api/v1/agents/{}", a["id"].as_str().unwrap()))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["data"], a);
        let r = t.admin_get("/api/v1/agents/csv-cleaner-pro").await;
        assert_eq!(r.body["data"]["id"], a["id"]);
    }
}

#[tokio::test]
async fn invalid_agents_get_every_problem_listed() {
    for t in TestApp::all().await {
        let r = t
            .admin_post(
                "/api/v1/agents",
                json!({
                    "name": "",
                    "provider": "skynet",
                    "tools": ["a", "a"],
                    "config": {"max_steps": 0, "temperature": 3.5, "timeout_ms": 5},
                    "allowed_api_keys": ["nope"]
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "VALIDATION_ERROR");
        let fields: Vec<&str> = r.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        for f in [
            "name",
            "system_prompt",
            "provider",
            "tools[1]",
            "config.max_steps",
            "config.temperature",
            "config.timeout_ms",
            "allowed_api_keys[0]",
        ] {
            assert!(fields.contains(&f), "missing {f} in {fields:?}");
        }
        let max_steps = r.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == "config.max_steps")
            .unwrap();
        assert_eq!(max_steps["message"], "must be between 1 and 100");

        // Unknown fields are rejected by name, at any depth.
        let mut body = agent_body("Typo");
        body["config"] = json!({"max_stepz": 3});
        let r = t.admin_post("/api/v1/agents", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "config.max_stepz");
        let mut body = agent_body("Typo");
        body["colour"] = json!("red");
        let r = t.admin_post("/api/v1/agents", body).await;
        assert_eq!(r.body["error"]["details"][0]["field"], "colour");

        // Wrong types name the field.
        let mut body = agent_body("Typo");
        body["tools"] = json!("data-transform");
        let r = t.admin_post("/api/v1/agents", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "tools");

        // Nothing was stored by any of these.
        let r = t.admin_get("/api/v1/agents").await;
        assert_eq!(r.body["count"], 0);
    }
}

#[tokio::test]
async fn malformed_bodies_get_precise_statuses() {
    for t in TestApp::all().await {
        let send = |ct: &'static str, body: Vec<u8>| {
            Request::post("/api/v1/agents")
                .header("x-api-key", t.admin_key.clone())
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap()
        };
        let r = t
            .raw(send(
                "application/json",
                b"{\"name\": \"x\",\n \"system_prompt\": }".to_vec(),
            ))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["line"], 2);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"));

        let r = t
            .raw(send("text/plain", agent_body("x").to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(r.code(), "UNSUPPORTED_MEDIA_TYPE");

        let mut big = agent_body("Big");
        big["system_prompt"] = json!("x".repeat(100 * 1024));
        let r = t
            .raw(send("application/json", big.to_string().into_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");

        let r = t.raw(send("application/json", b"[1, 2]".to_vec())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        // The server is fine afterwards.
        assert_eq!(t.get("/api/v1/health", None).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn duplicate_names_conflict() {
    for t in TestApp::all().await {
        t.create_agent(agent_body("Report Writer")).await;
        let r = t
            .admin_post("/api/v1/agents", agent_body("Report Writer"))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.code(), "CONFLICT");
        let r = t
            .admin_post("/api/v1/agents", agent_body("report writer!"))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "same slug");
        assert_eq!(r.body["error"]["details"][0]["field"], "slug");
    }
}

#[tokio::test]
async fn update_is_partial_and_renaming_reslugs() {
    for t in TestApp::all().await {
        let a = t.create_agent(agent_body("Old Name")).await;
        t.create_agent(agent_body("Taken")).await;
        let put = |path: String, body: Value| {
            let key = t.admin_key.clone();
            let t = &t;
            async move { t.call(Method::PUT, &path, Some(&key), Some(body)).await }
        };
        let r = put(
            "/api/v1/agents/old-name".into(),
            json!({"name": "New Name", "config": {"max_steps": 20}, "description": null}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let d = &r.body["data"];
        assert_eq!(d["id"], a["id"]);
        assert_eq!(d["slug"], "new-name");
        assert_eq!(d["config"]["max_steps"], 20);
        assert_eq!(d["config"]["max_tokens"], 4096, "other config fields kept");
        assert_eq!(d["description"], Value::Null);
        assert_eq!(d["system_prompt"], a["system_prompt"], "absent fields kept");
        assert_eq!(
            t.admin_get("/api/v1/agents/old-name").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.admin_get("/api/v1/agents/new-name").await.status,
            StatusCode::OK
        );

        let r = put("/api/v1/agents/new-name".into(), json!({"name": "Taken"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = put(
            "/api/v1/agents/new-name".into(),
            json!({"config": {"max_retries": 11}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "config.max_retries");
        let r = put("/api/v1/agents/missing".into(), json!({"name": "x"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.code(), "NOT_FOUND");
        let (_, invoke) = t.create_key("invoke").await;
        let r = t
            .call(
                Method::PUT,
                "/api/v1/agents/new-name",
                Some(&invoke),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn delete_is_soft_and_frees_the_name() {
    for t in TestApp::all().await {
        let a = t.create_agent(agent_body("Short Lived")).await;
        let id = a["id"].as_str().unwrap().to_string();
        let run = t
            .store
            .create_run(NewRun::simple(Uuid::parse_str(&id).unwrap(), "x"))
            .await
            .unwrap();
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/agents/short-lived",
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["data"], json!({"id": id, "deleted": true}));
        assert_eq!(
            t.admin_get(&format!("/api/v1/agents/{id}")).await.status,
            StatusCode::NOT_FOUND
        );
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/agents/short-lived",
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // History survives the agent.
        let r = t.admin_get(&format!("/api/v1/runs/{}", run.id)).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = t.admin_get(&format!("/api/v1/runs?agent={id}")).await;
        assert_eq!(r.body["count"], 1);
        let again = t.create_agent(agent_body("Short Lived")).await;
        assert_ne!(again["id"], a["id"]);
    }
}

#[tokio::test]
async fn listing_depends_on_the_key_and_pages() {
    for t in TestApp::all().await {
        let (invoke_id, invoke) = t.create_key("invoke").await;
        let mut public = agent_body("Public Helper");
        public["is_public"] = json!(true);
        t.create_agent(public).await;
        t.create_agent(agent_body("Any Key")).await;
        let mut mine = agent_body("Mine Only");
        mine["allowed_api_keys"] = json!([invoke_id]);
        t.create_agent(mine).await;
        let mut theirs = agent_body("Theirs Only");
        theirs["allowed_api_keys"] = json!([Uuid::new_v4()]);
        t.create_agent(theirs).await;

        let names = |r: &harness::Reply| {
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let all = t.admin_get("/api/v1/agents").await;
        assert_eq!(all.body["count"], 4);
        assert_eq!(
            names(&all),
            ["Theirs Only", "Mine Only", "Any Key", "Public Helper"]
        );
        assert_eq!(
            names(&t.get("/api/v1/agents", None).await),
            ["Public Helper"]
        );
        assert_eq!(
            names(&t.get("/api/v1/agents", Some(&invoke)).await),
            ["Mine Only", "Any Key", "Public Helper"]
        );

        // Reading follows the same rules.
        assert_eq!(
            t.get("/api/v1/agents/public-helper", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            t.get("/api/v1/agents/any-key", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.get("/api/v1/agents/theirs-only", Some(&invoke))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            t.get("/api/v1/agents/mine-only", Some(&invoke))
                .await
                .status,
            StatusCode::OK
        );

        let p1 = t.admin_get("/api/v1/agents?limit=3").await;
        assert_eq!(p1.body["count"], 3);
        let cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
        let p2 = t
            .admin_get(&format!("/api/v1/agents?limit=3&cursor={cursor}"))
            .await;
        assert_eq!(names(&p2), ["Public Helper"]);
        assert!(p2.body.get("next_cursor").is_none());
        let r = t.admin_get("/api/v1/agents?cursor=garbage").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "cursor");
        let r = t.admin_get("/api/v1/agents?limit=0").await;
        assert_eq!(r.body["error"]["details"][0]["field"], "limit");
        let r = t.admin_get("/api/v1/agents?limit=abc").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

async fn seed_run(t: &TestApp, agent_id: &str, by: Option<String>, steps: &[(i32, &str)]) -> Uuid {
    let run = t
        .store
        .create_run(NewRun {
            input_data: Some(json!({"csv": "a,b"})),
            triggered_by: by,
            ip_address: Some("10.0.0.1".into()),
            user_agent: Some("n8n".into()),
            ..NewRun::simple(Uuid::parse_str(agent_id).unwrap(), "Clean this CSV")
        })
        .await
        .unwrap();
    for (n, tool) in steps {
        t.store
            .append_step(
                run.id,
                RunStep {
                    step: *n,
                    tool: tool.to_string(),
                    action: "go".into(),
                    input: json!({"n": n}),
                    output: Some(json!({"ok": true})),
                    error: None,
                    duration_ms: 3,
                    started_at: chrono::Utc::now(),
                },
            )
            .await
            .unwrap();
    }
    run.id
}

#[tokio::test]
async fn runs_are_readable_with_steps_in_order_and_filtered() {
    for t in TestApp::all().await {
        let (invoke_id, invoke) = t.create_key("invoke").await;
        let a = t.create_agent(agent_body("Runner")).await;
        let b = t.create_agent(agent_body("Walker")).await;
        let aid = a["id"].as_str().unwrap();
        let r1 = seed_run(
            &t,
            aid,
            Some(invoke_id.clone()),
            &[
                (2, "date-utils"),
                (1, "data-transform"),
                (3, "formula-engine"),
            ],
        )
        .await;
        let r2 = seed_run(&t, aid, None, &[]).await;
        let r3 = seed_run(&t, b["id"].as_str().unwrap(), None, &[]).await;
        t.store
            .update_run(
                r2,
                RunUpdate {
                    status: Some(RunStatus::Completed),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        let r = t.admin_get(&format!("/api/v1/runs/{r1}")).await;
        assert_eq!(r.status, StatusCode::OK);
        let steps: Vec<(i64, String)> = r.body["data"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step"].as_i64().unwrap(),
                    s["tool"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                (1, "data-transform".to_string()),
                (2, "date-utils".to_string()),
                (3, "formula-engine".to_string())
            ]
        );
        let step = &r.body["data"]["steps"][0];
        for field in [
            "step",
            "tool",
            "action",
            "input",
            "output",
            "error",
            "duration_ms",
            "timestamp",
        ] {
            assert!(step.get(field).is_some(), "step lacks {field}: {step}");
        }
        assert_eq!(r.body["data"]["status"], "pending");

        let ids = |r: harness::Reply| {
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(t.admin_get("/api/v1/runs").await),
            [r3.to_string(), r2.to_string(), r1.to_string()]
        );
        assert_eq!(
            ids(t.admin_get("/api/v1/runs?agent=runner").await),
            [r2.to_string(), r1.to_string()]
        );
        assert_eq!(
            ids(t.admin_get("/api/v1/runs?status=completed").await),
            [r2.to_string()]
        );
        assert_eq!(
            ids(t
                .admin_get("/api/v1/agents/runner/runs?status=pending")
                .await),
            [r1.to_string()]
        );
        let p = t.admin_get("/api/v1/agents/runner/runs?limit=1").await;
        assert!(p.body["next_cursor"].is_string());

        // An invoke key sees the runs it started, nothing else.
        assert_eq!(
            ids(t.get("/api/v1/runs", Some(&invoke)).await),
            [r1.to_string()]
        );
        assert_eq!(
            t.get(&format!("/api/v1/runs/{r1}"), Some(&invoke))
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            t.get(&format!("/api/v1/runs/{r3}"), Some(&invoke))
                .await
                .status,
            StatusCode::NOT_FOUND
        );

        assert_eq!(
            t.get("/api/v1/runs", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.get("/api/v1/agents/runner/runs", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        let r = t.admin_get("/api/v1/runs?status=finished").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"][0]["field"], "status");
        assert_eq!(
            t.admin_get(&format!("/api/v1/runs/{}", Uuid::new_v4()))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.admin_get("/api/v1/runs/not-a-uuid").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.admin_get("/api/v1/agents/ghost/runs").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            t.admin_get("/api/v1/runs?agent=ghost").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revoke_at_once() {
    for t in TestApp::all().await {
        let r = t
            .admin_post(
                "/api/v1/api-keys",
                json!({"name": "Power Automate", "scope": "invoke"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        let d = r.body["data"].clone();
        let key = d["key"].as_str().unwrap().to_string();
        assert_eq!(d["prefix"].as_str().unwrap(), &key[..8]);
        assert_eq!(d["scope"], "invoke");

        let list = t.admin_get("/api/v1/api-keys").await;
        assert_eq!(list.body["count"], 2, "bootstrap admin key + new key");
        assert!(
            !list.body.to_string().contains(&key),
            "plain key never listed"
        );
        assert!(list.body["data"][0].get("key_hash").is_none());

        assert_eq!(
            t.get("/api/v1/agents", Some(&key)).await.status,
            StatusCode::OK
        );
        let listed = t.admin_get("/api/v1/api-keys").await;
        assert!(
            listed.body["data"][0]["last_used_at"].is_string(),
            "use recorded"
        );

        let id = d["id"].as_str().unwrap();
        let r = t
            .call(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body["data"]["revoked_at"].is_string());
        let r = t.get("/api/v1/agents", Some(&key)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = t
            .call(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                Some(&t.admin_key),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        let r = t
            .admin_post("/api/v1/api-keys", json!({"name": "", "scope": "root"}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["error"]["details"].as_array().unwrap().len(), 2);
        let r = t
            .admin_post(
                "/api/v1/api-keys",
                json!({"name": "x", "scope": "admin", "ttl": 5}),
            )
            .await;
        assert_eq!(r.body["error"]["details"][0]["field"], "ttl");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    for t in TestApp::all().await {
        let r = t.get("/api/v1/nope", None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.code(), "NOT_FOUND");
        let r = t
            .call(Method::PATCH, "/api/v1/agents", Some(&t.admin_key), None)
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.body["success"], false);
    }
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let r = t.get("/api/v1/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/health", &["get"][..]),
        ("/api/v1/agents", &["get", "post"]),
        ("/api/v1/agents/{id_or_slug}", &["get", "put", "delete"]),
        ("/api/v1/agents/{id_or_slug}/runs", &["get"]),
        ("/api/v1/runs", &["get"]),
        ("/api/v1/runs/{run_id}", &["get"]),
        ("/api/v1/api-keys", &["get", "post"]),
        ("/api/v1/api-keys/{id}", &["delete"]),
        ("/metrics", &["get"]),
        ("/api/v1/mcp-servers", &["get", "post"]),
        ("/api/v1/mcp-servers/{name}", &["get", "put", "delete"]),
        ("/api/v1/mcp-servers/{name}/refresh", &["post"]),
        ("/mcp", &["post"]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{m} {path} missing");
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["CreateAgentRequest"].is_object());
}

#[tokio::test]
async fn bootstrap_generates_one_key_or_registers_the_configured_one() {
    let db = leforge_store::testing::sqlite().await;
    let first = leforge_server::auth::bootstrap_admin(db.store.as_ref(), None)
        .await
        .unwrap();
    assert!(first.is_some());
    let second = leforge_server::auth::bootstrap_admin(db.store.as_ref(), None)
        .await
        .unwrap();
    assert!(second.is_none(), "printed only on first start");

    let db = leforge_store::testing::sqlite().await;
    let configured = "my-configured-admin-key-123";
    assert!(
        leforge_server::auth::bootstrap_admin(db.store.as_ref(), Some(configured))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        leforge_server::auth::bootstrap_admin(db.store.as_ref(), Some(configured))
            .await
            .unwrap()
            .is_none()
    );
    let keys = db.store.list_api_keys(Default::default()).await.unwrap();
    assert_eq!(keys.items.len(), 1, "registered once");
    let found = db
        .store
        .find_active_api_key(&leforge_server::auth::hash_key(configured))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.scope, leforge_core::ApiKeyScope::Admin);
}

#[tokio::test]
async fn llm_providers_and_models_never_show_keys() {
    let fake = leforge_fake_provider::FakeProvider::start().await;
    fake.set_models(vec!["model-a".into(), "model-b".into()]);
    let db = leforge_store::testing::sqlite().await;
    let mut llm = leforge_llm::LlmConfig::for_test_server(&fake.base_url());
    if let Some(openai) = llm.openai.as_mut() {
        openai.api_key = Some(leforge_llm::Secret::new("sk-test-very-secret"));
    }
    let t = TestApp::with_llm(db, llm).await;
    let r = t.admin_get("/api/v1/llm/providers").await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<_> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    for p in [
        "anthropic",
        "openai",
        "azure",
        "bedrock",
        "ollama",
        "lmstudio",
        "openai-compatible",
    ] {
        assert!(names.contains(&p.to_string()), "{p} missing");
    }
    let openai = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap();
    assert_eq!(openai["configured"], true);
    assert!(!r.body.to_string().contains("sk-test-very-secret"));

    let r = t.admin_get("/api/v1/llm/models/openai").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<_> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["model-a", "model-b"]);
    assert_eq!(
        t.admin_get("/api/v1/llm/models/skynet").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/llm/providers", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_key() {
    let db = leforge_store::testing::sqlite().await;
    let t = TestApp::with_settings(db, leforge_llm::LlmConfig::default(), |c| {
        c.rate_limit_per_minute = 3
    })
    .await;
    let (_, other) = t.create_key("invoke").await; // 1 request of the admin key
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(t.admin_get("/api/v1/agents").await.status);
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    let limited = t.admin_get("/api/v1/agents").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "RATE_LIMITED");
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= 60
    );
    // Another key has its own budget, and health is never limited.
    assert_eq!(
        t.get("/api/v1/agents", Some(&other)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.get("/api/v1/health", Some(&t.admin_key)).await.status,
        StatusCode::OK
    );
}

/// A slug holding NUL (which PostgreSQL text cannot store) names no agent: 404 on every back
/// end, for reading the agent and for running it, rather than a database error.
#[tokio::test]
async fn an_agent_path_holding_nul_is_not_found() {
    for t in TestApp::all().await {
        t.create_agent(agent_body("Report Writer")).await;
        let r = t.admin_get("/api/v1/agents/report%00writer").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        let r = t
            .admin_post("/api/v1/agents/report%00writer/run", json!({"input": "go"}))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        assert_eq!(r.code(), "NOT_FOUND");
    }
}
