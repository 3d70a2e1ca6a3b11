//! The admin UI: sessions and CSRF over HTTP on both back ends, and the whole flow in headless
//! Chromium (chromedriver + fantoccini) against the server on a real port, with the real
//! built-in ForgeHooks and the fake LLM provider. Screenshots of every page are written to
//! `target/ui-screenshots/` so they can be looked at.

#[path = "support/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use fantoccini::{Client, ClientBuilder, Locator};
use harness::{Reply, TestApp};
use hyper_util::client::legacy::connect::HttpConnector;
use leforge_fake_provider::{FakeProvider, Script};
use leforge_test_guests as guests;
use serde_json::{json, Value};

// ---------- HTTP: sessions, CSRF, redirects, headers ----------

/// Every `name=value` the response sets, by name.
fn set_cookies(r: &Reply) -> Vec<(String, String)> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.to_string())
        .filter_map(|v| {
            let first = v.split(';').next()?.to_string();
            let (n, val) = first.split_once('=')?;
            Some((
                n.to_string(),
                v.clone().replace(&first, &format!("{n}={val}")),
            ))
        })
        .collect()
}

fn cookie_value(r: &Reply, name: &str) -> Option<String> {
    set_cookies(r)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, full)| {
            full.split(';')
                .next()
                .and_then(|p| p.split_once('='))
                .map(|(_, v)| v.to_string())
        })
}

fn set_cookie_line(r: &Reply, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, full)| full)
        .unwrap_or_default()
}

/// The value of `name="<attr>" … value|content="…"` in a page.
fn attr_after(html: &str, marker: &str, attr: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in page"));
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    let end = rest[start..].find('"').unwrap();
    rest[start..start + end].to_string()
}

async fn request(
    t: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some((ct, b)) => req.header("content-type", ct).body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    t.raw(req).await
}

/// Signs in through the form; returns (session cookie, CSRF token of the session).
async fn sign_in(t: &TestApp, key: &str) -> (String, String) {
    let page = request(t, Method::GET, "/signin", &[], None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap().to_string();
    let form_token = attr_after(&html, "name=\"csrf\"", "value");
    let signin_cookie = cookie_value(&page, "leforge_signin").expect("sign-in cookie");
    assert_eq!(form_token, signin_cookie, "double-submit token");
    let r = request(
        t,
        Method::POST,
        "/signin",
        &[("cookie", &format!("leforge_signin={signin_cookie}"))],
        Some((
            "application/x-www-form-urlencoded",
            format!("key={key}&csrf={form_token}&next=%2Fkeys"),
        )),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/keys");
    let line = set_cookie_line(&r, "leforge_session");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(flag), "{line}");
    }
    let session = cookie_value(&r, "leforge_session").unwrap();
    let page = request(
        t,
        Method::GET,
        "/keys",
        &[("cookie", &format!("leforge_session={session}"))],
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = attr_after(
        page.body.as_str().unwrap(),
        "name=\"csrf-token\"",
        "content",
    );
    (session, csrf)
}

#[tokio::test]
async fn pages_redirect_to_sign_in_without_a_session() {
    for t in TestApp::all().await {
        for path in [
            "/agents",
            "/agents/new",
            "/runs",
            "/forgehooks",
            "/mcp-servers",
            "/scripts",
            "/keys",
            "/runs/00000000-0000-0000-0000-000000000000",
        ] {
            let r = t.get(path, None).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{} {path}", t.backend);
            assert_eq!(
                r.headers["location"],
                format!("/signin?next={path}"),
                "{path}"
            );
        }
        // A stale cookie is no session either.
        let r = request(
            &t,
            Method::GET,
            "/agents",
            &[("cookie", "leforge_session=forged")],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let r = request(
            &t,
            Method::GET,
            "/api/v1/api-keys",
            &[("cookie", "leforge_session=forged")],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The sign-in page itself carries the security headers.
        let r = t.get("/signin", None).await;
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(r.headers["x-frame-options"], "DENY");
        // The API's own 404 is untouched by the UI routes.
        let r = t.get("/api/v1/nope", None).await;
        assert_eq!(r.code(), "NOT_FOUND");
    }
}

#[tokio::test]
async fn mcp_servers_page_and_agent_form_show_tools_never_secrets() {
    use leforge_core::mcp::{McpServer, McpTool, McpTransport};
    let t = TestApp::new(leforge_store::testing::sqlite().await).await;
    let now = chrono::Utc::now();
    t.store
        .create_mcp_server(McpServer {
            name: "calc".into(),
            transport: McpTransport::Http {
                url: "https://mcp.example.com/mcp".into(),
                headers: [("Authorization".to_string(), "Bearer top-secret-token".to_string())]
                    .into(),
            },
            timeout_ms: 30_000,
            enabled: true,
            tools: vec![McpTool {
                name: "add".into(),
                description: "Adds two numbers".into(),
                input_schema: serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                output_schema: None,
            }],
            created_at: now,
            updated_at: now,
            refreshed_at: now,
        })
        .await
        .unwrap();
    let (session, _) = sign_in(&t, &t.admin_key).await;
    let cookie = format!("leforge_session={session}");
    let page = request(
        &t,
        Method::GET,
        "/mcp-servers",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    for expected in [
        "calc__add",
        "Adds two numbers",
        "https://mcp.example.com/mcp",
        "Authorization",
        "id=\"mcp-form\"",
    ] {
        assert!(html.contains(expected), "{expected} missing");
    }
    assert!(!html.contains("top-secret-token"));
    let form = request(&t, Method::GET, "/agents/new", &[("cookie", &cookie)], None).await;
    let html = form.body.as_str().unwrap();
    assert!(
        html.contains("value=\"mcp:calc\""),
        "the agent form offers the server"
    );
    assert!(
        html.contains("value=\"mcp:calc/add\""),
        "and its single tools"
    );
    assert!(!html.contains("top-secret-token"));
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_and_die_with_their_key() {
    for t in TestApp::all().await {
        // Sign-in rejects a wrong double-submit token, unknown keys and invoke keys.
        let page = request(&t, Method::GET, "/signin", &[], None).await;
        let token = cookie_value(&page, "leforge_signin").unwrap();
        let r = request(
            &t,
            Method::POST,
            "/signin",
            &[("cookie", &format!("leforge_signin={token}"))],
            Some((
                "application/x-www-form-urlencoded",
                format!("key={}&csrf=wrong", t.admin_key),
            )),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(cookie_value(&r, "leforge_session").is_none());
        let (_, invoke_key) = t.create_key("invoke").await;
        for (key, status) in [
            ("lf_unknown", StatusCode::UNAUTHORIZED),
            (invoke_key.as_str(), StatusCode::UNAUTHORIZED),
        ] {
            let r = request(
                &t,
                Method::POST,
                "/signin",
                &[("cookie", &format!("leforge_signin={token}"))],
                Some((
                    "application/x-www-form-urlencoded",
                    format!("key={key}&csrf={token}"),
                )),
            )
            .await;
            assert_eq!(r.status, status, "{key}");
            assert!(cookie_value(&r, "leforge_session").is_none());
            assert!(
                !r.body.as_str().unwrap().contains(key),
                "the key is not echoed"
            );
        }

        let (admin2_id, admin2) = t.create_key("admin").await;
        let (session, csrf) = sign_in(&t, &admin2).await;
        let cookie = format!("leforge_session={session}");
        let body = json!({"name": "made in the UI", "scope": "invoke"}).to_string();
        // Reading needs no token.
        let r = request(
            &t,
            Method::GET,
            "/api/v1/api-keys",
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // Changing does: missing and wrong tokens are 403.
        for headers in [
            vec![("cookie", cookie.as_str())],
            vec![("cookie", cookie.as_str()), ("x-csrf-token", "wrong")],
        ] {
            let r = request(
                &t,
                Method::POST,
                "/api/v1/api-keys",
                &headers,
                Some(("application/json", body.clone())),
            )
            .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
            assert_eq!(r.code(), "CSRF_TOKEN_INVALID");
            let r = request(
                &t,
                Method::DELETE,
                &format!("/api/v1/api-keys/{admin2_id}"),
                &headers,
                None,
            )
            .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }
        let r = request(
            &t,
            Method::POST,
            "/api/v1/api-keys",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(("application/json", body.clone())),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        // A key sent with the request wins over the cookie (and needs no CSRF token).
        let r = request(
            &t,
            Method::POST,
            "/api/v1/api-keys",
            &[("cookie", &cookie), ("x-api-key", &t.admin_key)],
            Some(("application/json", body.clone())),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        // Sign-out needs the token too, then the session is gone.
        let r = request(
            &t,
            Method::POST,
            "/signout",
            &[("cookie", &cookie)],
            Some(("application/x-www-form-urlencoded", "csrf=wrong".into())),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = request(
            &t,
            Method::POST,
            "/signout",
            &[("cookie", &cookie)],
            Some(("application/x-www-form-urlencoded", format!("csrf={csrf}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(set_cookie_line(&r, "leforge_session").contains("Max-Age=0"));
        let r = request(
            &t,
            Method::GET,
            "/api/v1/api-keys",
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // Revoking the key ends its sessions.
        let (session, _) = sign_in(&t, &admin2).await;
        let cookie = format!("leforge_session={session}");
        assert_eq!(
            request(&t, Method::GET, "/keys", &[("cookie", &cookie)], None)
                .await
                .status,
            StatusCode::OK
        );
        let r = t
            .call(
                Method::DELETE,
                &format!("/api/v1/api-keys/{admin2_id}"),
                Some(&t.admin_key.clone()),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            request(&t, Method::GET, "/keys", &[("cookie", &cookie)], None)
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        let r = request(
            &t,
            Method::GET,
            "/api/v1/api-keys",
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

// ---------- the browser ----------

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port and a headless Chromium session; `None` (after saying so)
/// when they are not installed and not required.
async fn browser() -> Option<(Driver, Client)> {
    let driver = find_binary(&["chromedriver"]);
    let chrome = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
    let (Some(driver), Some(chrome)) = (driver, chrome) else {
        if std::env::var("LEFORGE_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("LEFORGE_REQUIRE_CHROMIUM=1 but chromium and chromium-driver are not installed");
        }
        eprintln!("SKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..120 {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return Some((driver, c)),
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("could not start a Chromium session: {last:?}");
}

struct Ui {
    c: Client,
    base: String,
    shots: PathBuf,
}

impl Ui {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    async fn css(&self, sel: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(sel))
            .await
            .unwrap_or_else(|e| panic!("{sel}: {e}"))
    }

    async fn fill(&self, sel: &str, text: &str) {
        let e = self.css(sel).await;
        e.clear().await.unwrap();
        // Set through the DOM: typing a long text key by key is slow and newlines submit.
        self.c
            .execute(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                vec![serde_json::to_value(&e).unwrap(), json!(text)],
            )
            .await
            .unwrap();
    }

    async fn click(&self, sel: &str) {
        self.css(sel)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {sel}: {e}"));
    }

    async fn text(&self, sel: &str) -> String {
        self.css(sel).await.text().await.unwrap()
    }

    /// Waits (generously) until a JS expression is truthy.
    async fn until(&self, what: &str, js: &str) {
        for _ in 0..300 {
            let v = self
                .c
                .execute(&format!("return !!({js});"), vec![])
                .await
                .unwrap();
            if v == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self
            .c
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .unwrap();
        panic!(
            "timed out waiting for {what} ({js}); page: {}",
            body.as_str().unwrap_or("")
        );
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

const CSV: &str = "name,date,amount,region\nJohn,2024-01-15,1500,West\nJane,2024-02-20,2000,East\nBob,2024-03-05,1200,West";

fn rows() -> Value {
    json!([
        {"name": "John", "date": "2024-01-15", "amount": 1500, "region": "West"},
        {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
        {"name": "Bob", "date": "2024-03-05", "amount": 1200, "region": "West"}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ui_end_to_end_in_chromium() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let fake = FakeProvider::start().await;
    let t = TestApp::with_llm(
        leforge_store::testing::sqlite().await,
        leforge_llm::LlmConfig::for_test_server(&fake.base_url()),
    )
    .await;
    t.install_all_builtins().await;
    let addr = t.serve().await;
    let ui = Ui {
        c: client,
        base: format!("http://{addr}"),
        shots: screenshot_dir(),
    };
    let result = flow(&ui, &t, &fake).await;
    let _ = ui.c.clone().close().await;
    result
}

async fn flow(ui: &Ui, t: &TestApp, fake: &FakeProvider) {
    // Without a session every page sends us to sign in; a wrong key is refused.
    ui.goto("/agents").await;
    ui.css("#signin-form").await;
    assert_eq!(ui.path().await, "/signin?next=/agents");
    ui.fill("#key", "lf_not_a_key").await;
    ui.click("#signin").await;
    assert!(ui.text("#signin-error").await.contains("unknown"));
    ui.shot("signin").await;
    ui.fill("#key", &t.admin_key).await;
    ui.click("#signin").await;
    ui.css("#new-agent").await;
    assert_eq!(ui.path().await, "/agents");
    ui.shot("agents-empty").await;

    // Create an agent with two built-in ForgeHooks; a server-side error shows at its field.
    ui.click("#new-agent").await;
    ui.css("#agent-form").await;
    ui.fill("#f-name", "Data Transformer").await;
    ui.fill("#f-description", "Cleans CSV data and totals it per region, with a description long enough to wrap on a phone screen.").await;
    ui.fill(
        "#f-system-prompt",
        "You clean data with your tools and answer with JSON only.",
    )
    .await;
    ui.click("#tool-data-transform").await;
    ui.click("#tool-formula-engine").await;
    ui.fill("#f-max_steps", "500").await;
    ui.click("#agent-save").await;
    ui.until("the max_steps error", r#"document.getElementById('err-config.max_steps').textContent.includes('between 1 and 100')"#).await;
    assert_eq!(ui.path().await, "/agents/new");
    ui.shot("agent-form-error").await;
    ui.fill("#f-max_steps", "6").await;
    ui.click("#agent-save").await;
    ui.css("li.card[data-agent='data-transformer']").await;
    let card = ui.text("li.card[data-agent='data-transformer']").await;
    for s in [
        "Data Transformer",
        "private",
        "anthropic / claude-sonnet",
        "2 tools",
        "data-transform",
        "formula-engine",
    ] {
        assert!(card.contains(s), "{s} in {card}");
    }
    let agent = t.admin_get("/api/v1/agents/data-transformer").await.body["data"].clone();
    assert_eq!(agent["tools"], json!(["data-transform", "formula-engine"]));
    assert_eq!(agent["config"]["max_steps"], 6);
    ui.shot("agents").await;

    // Edit it: the form shows the stored values.
    ui.goto("/agents/data-transformer/edit").await;
    assert_eq!(
        ui.css("#f-name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Data Transformer")
    );
    assert_eq!(
        ui.css("#tool-formula-engine")
            .await
            .prop("checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    ui.shot("agent-edit").await;

    // Run it: first a run whose model hangs after one step, so the step is seen while the
    // run is live, then cancelled with the button.
    fake.push(Script::tool_call(
        "data-transform__csv_to_json",
        json!({"csv": CSV}),
    ));
    fake.push(Script::Hang);
    ui.goto("/agents/data-transformer/run").await;
    ui.fill(
        "#run-input",
        "Clean this CSV and total the amount per region",
    )
    .await;
    ui.fill("#run-data", "{not json").await;
    ui.click("#run-start").await;
    ui.until(
        "the JSON error",
        "document.getElementById('err-data').textContent.includes('not valid JSON')",
    )
    .await;
    ui.fill("#run-data", &json!({"csv": CSV}).to_string()).await;
    ui.click("#run-start").await;
    ui.until(
        "step 1 completed while the run is live",
        "document.querySelector('#run-steps li[data-step=\"1\"]:not(.running)') && document.getElementById('run-badges').dataset.status === 'running'",
    )
    .await;
    assert!(ui
        .text("#run-steps")
        .await
        .contains("data-transform → csv_to_json"));
    ui.shot("run-live").await;
    ui.click("#run-cancel").await;
    ui.until(
        "the cancelled status",
        "document.getElementById('run-badges').dataset.status === 'cancelled'",
    )
    .await;

    // Then a run to the end: the steps, the output and the badges.
    fake.push(Script::tool_call(
        "data-transform__csv_to_json",
        json!({"csv": CSV}),
    ));
    fake.push(Script::tool_call(
        "formula-engine__aggregate",
        json!({"records": rows(), "group_by": "region", "field": "amount", "op": "sum"}),
    ));
    fake.push(Script::text(
        json!({"totals": {"West": 2700, "East": 2000}}).to_string(),
    ));
    ui.click("#run-start").await;
    ui.until(
        "the completed status",
        "document.getElementById('run-badges').dataset.status === 'completed'",
    )
    .await;
    let steps = ui.text("#run-steps").await;
    assert!(
        steps.contains("data-transform → csv_to_json")
            && steps.contains("formula-engine → aggregate"),
        "{steps}"
    );
    let output: Value = serde_json::from_str(
        &ui.css("#run-output")
            .await
            .prop("textContent")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(output, json!({"totals": {"West": 2700, "East": 2000}}));
    let badges = ui.text("#run-badges").await;
    assert!(
        badges.contains("completed") && badges.contains("2 steps") && badges.contains("tokens"),
        "{badges}"
    );
    ui.shot("run").await;

    // History of the agent, filtered, and the run's trace.
    ui.goto("/runs?agent=data-transformer").await;
    ui.css("#runs-table").await;
    assert_eq!(
        ui.c.find_all(Locator::Css("#runs-table tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    ui.shot("history").await;
    ui.css("#status-filter")
        .await
        .select_by_value("completed")
        .await
        .unwrap();
    ui.until(
        "the filtered list",
        "location.search.includes('status=completed')",
    )
    .await;
    ui.css("#runs-table").await;
    let rows_now =
        ui.c.find_all(Locator::Css("#runs-table tbody tr"))
            .await
            .unwrap();
    assert_eq!(rows_now.len(), 1);
    ui.click("#runs-table tbody tr a").await;
    ui.css("#trace-steps").await;
    assert!(ui.path().await.starts_with("/runs/"));
    assert_eq!(
        ui.c.find_all(Locator::Css("#trace-steps > li"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(ui.text("#trace-output").await.contains("2700"));
    assert!(ui.text("#trace-badges").await.contains("completed"));
    ui.shot("trace").await;
    ui.goto("/runs").await;
    ui.css("#runs-table").await;
    ui.shot("history-all").await;

    // ForgeHooks: try an endpoint, then upload a component.
    ui.goto("/forgehooks").await;
    ui.css("li[data-hook='data-transform']").await;
    ui.shot("forgehooks").await;
    ui.c.execute(
        "document.querySelector(\"li[data-hook='data-transform'] details\").open = true",
        vec![],
    )
    .await
    .unwrap();
    let form = "li[data-hook='data-transform'] form.try-it[data-endpoint='csv_to_json']";
    ui.c.execute(
        &format!("document.querySelector(\"{form}\").closest('details').open = true"),
        vec![],
    )
    .await
    .unwrap();
    ui.fill(
        &format!("{form} textarea"),
        &json!({"csv": "a,b\n1,2"}).to_string(),
    )
    .await;
    ui.click(&format!("{form} button")).await;
    ui.until(
        "the try-it result",
        &format!("!document.querySelector(\"{form} .try-result\").hidden"),
    )
    .await;
    assert!(ui
        .text(&format!("{form} .try-result"))
        .await
        .contains("row_count"));
    ui.shot("forgehooks-try").await;
    let echo = std::fs::canonicalize(guests::ECHO).unwrap();
    ui.css("#upload-wasm")
        .await
        .send_keys(echo.to_str().unwrap())
        .await
        .unwrap();
    ui.click("#upload-submit").await;
    ui.css("li[data-hook='echo']").await;
    assert_eq!(
        t.admin_get("/api/v1/forgehooks/echo").await.status,
        StatusCode::OK
    );
    ui.shot("forgehooks-uploaded").await;

    // Scripts: a syntax error is shown at its line (when the server has the scripts API).
    let scripts_api = t.admin_get("/api/v1/scripts").await;
    if scripts_api.status == StatusCode::OK {
        ui.goto("/scripts/new").await;
        ui.fill("#script-name", "broken_hook").await;
        ui.fill(
            "#script-source",
            "fn before_tool(ctx, call) {\n    let x = ;\n    x\n}\n",
        )
        .await;
        ui.click("#script-save").await;
        ui.until(
            "the compile error",
            "document.querySelector('#script-errors li[data-line=\"2\"]')",
        )
        .await;
        assert!(ui.text("#script-errors").await.contains("Line 2"));
        assert!(ui
            .c
            .find(Locator::Css("#script-gutter .line.error[data-line='2']"))
            .await
            .is_ok());
        ui.shot("script-error").await;
        ui.fill("#script-source", "fn before_tool(ctx, call) {\n    ()\n}\n")
            .await;
        ui.click("#script-save").await;
        ui.css("#script-test").await;
        assert_eq!(
            t.admin_get("/api/v1/scripts/broken_hook").await.status,
            StatusCode::OK
        );
        ui.click("#test-run").await;
        ui.until("the hook's result", "!document.getElementById('test-result').hidden || !document.getElementById('script-test-error').hidden").await;
        ui.shot("script-test").await;
        ui.goto("/scripts").await;
        ui.css("#scripts-table tr[data-script='broken_hook']").await;
        ui.shot("scripts").await;

        // The agent takes the script as a hook in its form; the run's trace shows the call.
        ui.goto("/agents/data-transformer/edit").await;
        ui.css("#agent-form").await;
        ui.fill("#f-hooks", "broken_hook").await;
        ui.click("#agent-save").await;
        ui.css("#agent-cards").await;
        let agent = t.admin_get("/api/v1/agents/data-transformer").await.body["data"].clone();
        assert_eq!(
            agent["hooks"].as_array().map(|h| h.len()),
            Some(1),
            "{agent}"
        );
        ui.goto("/agents/data-transformer/edit").await;
        ui.until(
            "the hook shown by name",
            "document.getElementById('f-hooks').value === 'broken_hook'",
        )
        .await;
        fake.push(Script::tool_call(
            "data-transform__csv_to_json",
            json!({"csv": CSV}),
        ));
        fake.push(Script::text(json!({"ok": true}).to_string()));
        let r = t
            .admin_post(
                "/api/v1/agents/data-transformer/run",
                json!({"input": "convert"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let run_id = r.body["data"]["run_id"].as_str().unwrap().to_string();
        ui.goto(&format!("/runs/{run_id}")).await;
        let hooks = ui.text("#trace-hooks").await;
        assert!(
            hooks.contains("before_tool")
                && hooks.contains("broken_hook")
                && hooks.contains("unchanged"),
            "{hooks}"
        );
        ui.shot("trace-hooks").await;
    } else {
        eprintln!(
            "scripts API absent ({}): the scripts page part was skipped",
            scripts_api.status
        );
    }

    // API keys: create (shown once), use, revoke.
    ui.goto("/keys").await;
    ui.fill("#key-name", "n8n production").await;
    ui.click("#key-create").await;
    ui.until(
        "the new key",
        "!document.getElementById('key-created').hidden",
    )
    .await;
    let plain = ui
        .css("#key-plain")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(plain.starts_with("lf_") && plain.len() == 43, "{plain}");
    assert_eq!(
        t.get("/api/v1/agents", Some(&plain)).await.status,
        StatusCode::OK
    );
    ui.click("#key-copy").await;
    ui.shot("keys-created").await;
    ui.goto("/keys").await;
    let row = ui.css("#keys-table tbody tr:first-child").await;
    assert!(row.text().await.unwrap().contains("n8n production"));
    assert!(
        !ui.c.source().await.unwrap().contains(&plain),
        "the key is never shown again"
    );
    ui.click("#keys-table tbody tr:first-child button[data-revoke-key]")
        .await;
    ui.css("#confirm[open]").await;
    ui.shot("keys-confirm").await;
    ui.click("#confirm-ok").await;
    ui.until("the revoked row", "document.querySelector('#keys-table tbody tr:first-child').textContent.includes('revoked')").await;
    assert_eq!(
        t.get("/api/v1/agents", Some(&plain)).await.status,
        StatusCode::UNAUTHORIZED
    );
    ui.shot("keys").await;

    // Delete asks first; cancelling keeps the agent.
    ui.goto("/agents").await;
    ui.click("button[data-delete-agent='data-transformer']")
        .await;
    ui.css("#confirm[open]").await;
    ui.click("#confirm-cancel").await;
    assert_eq!(
        t.admin_get("/api/v1/agents/data-transformer").await.status,
        StatusCode::OK
    );

    // The narrow layout.
    ui.c.set_window_size(390, 844).await.unwrap();
    for (path, wait, name) in [
        ("/agents", "#agent-cards", "phone-agents"),
        ("/agents/data-transformer/run", "#run-form", "phone-run"),
        (
            "/agents/data-transformer/edit",
            "#agent-form",
            "phone-agent-form",
        ),
        ("/runs", "#runs-table", "phone-history"),
        ("/forgehooks", "#hook-list", "phone-forgehooks"),
        ("/keys", "#keys-table", "phone-keys"),
    ] {
        ui.goto(path).await;
        ui.css(wait).await;
        let overflow =
            ui.c.execute(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(0) <= 0,
            "{path} is wider than the screen by {overflow}"
        );
        ui.shot(name).await;
    }
    ui.c.set_window_size(1280, 1000).await.unwrap();

    // Deleting after confirming removes the card and the agent.
    ui.goto("/agents").await;
    ui.click("button[data-delete-agent='data-transformer']")
        .await;
    ui.css("#confirm[open]").await;
    ui.click("#confirm-ok").await;
    ui.until(
        "the card gone",
        "!document.querySelector(\"li.card[data-agent='data-transformer']\")",
    )
    .await;
    assert_eq!(
        t.admin_get("/api/v1/agents/data-transformer").await.status,
        StatusCode::NOT_FOUND
    );

    // Sign out: back to the sign-in page, and pages need signing in again.
    ui.goto("/agents").await;
    ui.click("#signout").await;
    ui.css("#signin-form").await;
    ui.goto("/keys").await;
    ui.css("#signin-form").await;
    assert_eq!(ui.path().await, "/signin?next=/keys");
}
