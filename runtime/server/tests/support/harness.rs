// Each test binary uses a different part of the harness.
#![allow(dead_code)]

//! In-process test harness: the real router over a real store (SQLite or PostgreSQL), called
//! without a socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use leforge_core::Store;
use leforge_server::config::{Config, ServerArgs};
use leforge_server::{router, AppState};
use leforge_store::testing::{self, TestStore};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub app: axum::Router,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub admin_key: String,
    pub backend: &'static str,
    _db: TestStore,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// The error code of a failure envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn new(db: TestStore) -> TestApp {
        Self::with_llm(db, leforge_llm::LlmConfig::default()).await
    }

    /// An app whose LLM providers point where the test says (the fake provider).
    pub async fn with_llm(db: TestStore, llm: leforge_llm::LlmConfig) -> TestApp {
        Self::with_settings(db, llm, |_| {}).await
    }

    /// As `with_llm`, with a chance to adjust the configuration first.
    pub async fn with_settings(
        db: TestStore,
        llm: leforge_llm::LlmConfig,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut config = Config::resolve(&ServerArgs::default()).expect("config");
        config.max_body_bytes = 64 * 1024;
        config.data_dir = data_dir.path().to_path_buf();
        adjust(&mut config);
        let store = db.store.clone();
        let admin_key = leforge_server::auth::bootstrap_admin(store.as_ref(), None)
            .await
            .expect("bootstrap")
            .expect("first start generates a key");
        let state = AppState::build_with_llm(store.clone(), config, llm).expect("state");
        state.runner.start_background();
        TestApp {
            app: router(state.clone()),
            state,
            data_dir,
            store,
            admin_key,
            backend: db.backend,
            _db: db,
        }
    }

    /// An app whose LLM providers all point at a fresh fake provider, with a chance to
    /// adjust the configuration first; returns the fake too, to script it.
    pub async fn with_fake(
        db: TestStore,
        adjust: impl FnOnce(&mut Config),
    ) -> (TestApp, leforge_fake_provider::FakeProvider) {
        let fake = leforge_fake_provider::FakeProvider::start().await;
        let llm = leforge_llm::LlmConfig::for_test_server(&fake.base_url());
        (Self::with_settings(db, llm, adjust).await, fake)
    }

    /// One app per available back end.
    pub async fn all() -> Vec<TestApp> {
        let mut apps = Vec::new();
        for db in testing::all().await {
            apps.push(TestApp::new(db).await);
        }
        apps
    }

    /// Serves the app on a real TCP port of the loopback (for clients such as a browser);
    /// the server lives as long as the test's runtime.
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = leforge_server::app::no_delay(listener);
        let app = self
            .app
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    }

    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.get(path, Some(&self.admin_key.clone())).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            path,
            Some(&self.admin_key.clone()),
            Some(body),
        )
        .await
    }

    /// Installs every built-in ForgeHook, as `leforge serve` does on first start; returns
    /// the ids installed.
    pub async fn install_all_builtins(&self) -> Vec<String> {
        let builtins: Vec<(&str, &[u8])> = leforge_builtin_plugins::all()
            .iter()
            .map(|b| (b.id, b.wasm))
            .collect();
        self.state
            .forgehooks
            .install_builtins(&builtins)
            .await
            .unwrap()
    }

    /// Installs the `echo` test component over the API (the usual tool of loop tests).
    pub async fn install_echo(&self) {
        let r = self
            .raw(
                Request::post("/api/v1/forgehooks")
                    .header("x-api-key", &self.admin_key)
                    .header("content-type", "application/wasm")
                    .body(Body::from(leforge_test_guests::read(
                        leforge_test_guests::ECHO,
                    )))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    /// Creates an agent as admin and returns its JSON.
    pub async fn create_agent(&self, body: Value) -> Value {
        let r = self.admin_post("/api/v1/agents", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["data"].clone()
    }

    /// Creates an API key as admin and returns (id, plain key).
    pub async fn create_key(&self, scope: &str) -> (String, String) {
        let r = self
            .admin_post(
                "/api/v1/api-keys",
                serde_json::json!({"name": format!("{scope} key"), "scope": scope}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["data"]["id"].as_str().unwrap().to_string(),
            r.body["data"]["key"].as_str().unwrap().to_string(),
        )
    }
}
