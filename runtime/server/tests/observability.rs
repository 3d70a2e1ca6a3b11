//! Issue 29: `GET /metrics` after scripted runs (real store, real wasm component, the Rhai
//! runner, the wire-level fake provider): the series' names and labels, bounded label
//! values, and who may scrape.

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::TestApp;
use leforge_fake_provider::Script;
use serde_json::json;

/// One sample of the text exposition format: its labels and value.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of the series `name` (exactly that name, so `_count` is a name of its own).
fn samples(text: &str, name: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (series_name, labels) = match series.find('{') {
            // Label values hold route templates with braces: the label set ends at the last.
            Some(i) => (&series[..i], &series[i + 1..series.rfind('}').unwrap()]),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push(Sample {
            labels: map,
            value: value.parse().expect("a number"),
        });
    }
    out
}

/// The value of the one sample of `name` whose labels include `want`; panics naming what
/// is there when there is none.
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let all = samples(text, name);
    let found: Vec<&Sample> = all
        .iter()
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} with {want:?}: {all:#?}");
    found[0].value
}

async fn scrape(t: &TestApp, key: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::builder().method(Method::GET).uri("/metrics");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let r = t.raw(req.body(Body::empty()).unwrap()).await;
    let content_type = r
        .headers
        .get("content-type")
        .map_or(String::new(), |v| v.to_str().unwrap().to_string());
    let text = match r.body {
        serde_json::Value::String(text) => text,
        json => json.to_string(),
    };
    (r.status, content_type, text)
}

#[tokio::test]
async fn a_scripted_run_shows_in_every_series_with_bounded_labels() {
    for db in leforge_store::testing::all().await {
        let (t, fake) = TestApp::with_fake(db, |_| {}).await;
        t.install_echo().await;
        // The recorder is the process's: names of their own keep the two back ends apart.
        let watcher = format!("watcher_{}", t.backend);
        let script = t
            .admin_post(
                "/api/v1/scripts",
                json!({"name": watcher, "source": "fn before_tool(ctx, call) { () }"}),
            )
            .await;
        assert_eq!(script.status, StatusCode::CREATED, "{}", script.body);
        let agent = t
            .create_agent(json!({
                "name": format!("Metered {}", uuid::Uuid::new_v4()),
                "system_prompt": "You echo things.",
                "tools": ["echo"],
                "hooks": [watcher],
            }))
            .await;
        let slug = agent["slug"].as_str().unwrap().to_string();
        let (provider, model) = (
            agent["provider"].as_str().unwrap().to_string(),
            agent["model"].as_str().unwrap().to_string(),
        );
        // One retry, one good call, one call the schema refuses, then the answer.
        fake.push(Script::rate_limited("0"));
        fake.push(Script::tool_calls([
            ("echo__echo", json!({"message": "hi"})),
            ("echo__echo", json!({"nope": 1})),
        ]));
        fake.push(Script::text("done"));
        let r = t
            .call(
                Method::POST,
                &format!("/api/v1/agents/{slug}/run"),
                Some(&t.admin_key.clone()),
                Some(json!({"input": "echo hi"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["status"], "completed", "{}", r.body);
        let refused = r.body["data"]["steps"][1]["error"]
            .as_str()
            .unwrap()
            .to_string();
        // A path no route has, with a made-up segment that must not become a label.
        let stray = t.get("/no-such-route-7f3a", None).await;
        assert_eq!(stray.status, StatusCode::NOT_FOUND);

        let (status, content_type, text) = scrape(&t, Some(&t.admin_key)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );

        let agent_l = ("agent", slug.as_str());
        assert_eq!(
            value(
                &text,
                "leforge_runs_total",
                &[agent_l, ("status", "completed"), ("mode", "sync")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "leforge_run_duration_seconds_count",
                &[agent_l, ("status", "completed")]
            ),
            1.0
        );
        assert!(!samples(&text, "leforge_run_duration_seconds_bucket").is_empty());
        assert_eq!(samples(&text, "leforge_runs_active").len(), 1, "{text}");
        assert_eq!(samples(&text, "leforge_runs_queued").len(), 1, "{text}");

        let echo = [("forgehook", "echo"), ("endpoint", "echo")];
        assert!(
            value(
                &text,
                "leforge_tool_calls_total",
                &[echo[0], echo[1], ("outcome", "ok")]
            ) >= 1.0
        );
        // The refused call is counted under its error code, the one the model was shown.
        let sent_to_model = fake.last_request().unwrap().body.to_string();
        let failed: Vec<Sample> = samples(&text, "leforge_tool_calls_total")
            .into_iter()
            .filter(|s| s.labels["forgehook"] == "echo" && s.labels["outcome"] != "ok")
            .collect();
        assert!(!failed.is_empty(), "{text}");
        for s in &failed {
            let code = &s.labels["outcome"];
            assert!(
                code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{code}"
            );
        }
        assert!(
            failed
                .iter()
                .any(|s| sent_to_model.contains(&s.labels["outcome"])),
            "{failed:?} / {sent_to_model} / {refused}"
        );
        assert!(value(&text, "leforge_tool_call_duration_seconds_count", &echo) >= 2.0);

        let llm = [("provider", provider.as_str()), ("model", model.as_str())];
        assert!(
            value(
                &text,
                "leforge_llm_requests_total",
                &[llm[0], llm[1], ("outcome", "ok")]
            ) >= 2.0
        );
        assert!(
            value(
                &text,
                "leforge_llm_request_duration_seconds_count",
                &[llm[0]]
            ) >= 2.0
        );
        for direction in ["input", "output"] {
            assert!(
                value(
                    &text,
                    "leforge_llm_tokens_total",
                    &[llm[0], llm[1], ("direction", direction)]
                ) > 0.0
            );
        }
        assert!(
            value(
                &text,
                "leforge_llm_retries_total",
                &[llm[0], ("reason", "rate_limited")]
            ) >= 1.0
        );
        assert_eq!(
            value(
                &text,
                "leforge_hook_calls_total",
                &[
                    ("script", watcher.as_str()),
                    ("hook_point", "before_tool"),
                    ("outcome", "unchanged")
                ]
            ),
            2.0
        );

        // Routes are templates; a path that matched nothing is one value.
        assert!(
            value(
                &text,
                "leforge_http_requests_total",
                &[
                    ("method", "POST"),
                    ("route", "/api/v1/agents/{id_or_slug}/run"),
                    ("status", "200")
                ]
            ) >= 1.0
        );
        assert!(
            value(
                &text,
                "leforge_http_requests_total",
                &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
            ) >= 1.0
        );
        assert!(!text.contains("no-such-route-7f3a"), "{text}");
        assert!(!text.contains(&format!("agents/{slug}")), "{text}");
        assert!(!samples(&text, "leforge_http_request_duration_seconds_count").is_empty());
        let in_use = samples(&text, "leforge_store_pool_in_use");
        let idle = samples(&text, "leforge_store_pool_idle");
        assert_eq!((in_use.len(), idle.len()), (1, 1), "{text}");
        assert!(in_use[0].value + idle[0].value >= 1.0, "{text}");
        // Keys never reach the metrics.
        assert!(!text.contains(&t.admin_key));
    }
}

#[tokio::test]
async fn metrics_need_an_admin_key_unless_opened() {
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let (status, _, body) = scrape(&t, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "UNAUTHORIZED", "{body}");
    let (_, invoke) = t.create_key("invoke").await;
    let (status, _, body) = scrape(&t, Some(&invoke)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = scrape(&t, Some("lf_not_a_real_key_at_all_123456")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = scrape(&t, Some(&t.admin_key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("# TYPE leforge_runs_active gauge"), "{body}");

    let open = TestApp::with_settings(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::default(),
        |c| c.metrics_public = true,
    )
    .await;
    let (status, _, body) = scrape(&open, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("leforge_store_pool_idle"), "{body}");
}

/// Without an exporter the server makes no spans of its own, but a caller's trace context
/// still travels with the run: its trace id in the run view (and a malformed one is not).
#[tokio::test]
async fn a_callers_traceparent_is_kept_with_the_run_without_tracing() {
    let (t, fake) = TestApp::with_fake(leforge_store::testing::sqlite().await, |_| {}).await;
    let agent = t
        .create_agent(json!({"name": "Untraced", "system_prompt": "Answer."}))
        .await;
    let slug = agent["slug"].as_str().unwrap().to_string();
    let run = |traceparent: Option<&'static str>| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/agents/{slug}/run"))
            .header("content-type", "application/json")
            .header("x-api-key", &t.admin_key);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        t.raw(req.body(Body::from(r#"{"input": "hi"}"#)).unwrap())
    };
    fake.push(Script::text("hello"));
    let r = run(Some(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["data"]["trace_id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    let id = r.body["data"]["run_id"].as_str().unwrap().to_string();
    let read = t
        .get(&format!("/api/v1/runs/{id}"), Some(&t.admin_key))
        .await;
    assert_eq!(
        read.body["data"]["trace_id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    for bad in [
        None,
        Some("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"),
        Some("not a traceparent"),
    ] {
        fake.push(Script::text("hello"));
        let r = run(bad).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.body["data"]["trace_id"],
            serde_json::Value::Null,
            "{bad:?}"
        );
    }
}
