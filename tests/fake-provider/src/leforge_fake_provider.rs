//! A wire-level fake LLM provider for tests.
//!
//! One axum server on `127.0.0.1:0` speaks Anthropic Messages (`POST /v1/messages`),
//! OpenAI Chat Completions (`POST /v1/chat/completions`, and `POST
//! /{prefix}/v1/chat/completions` as a key-less "local" server such as LM Studio), Azure
//! OpenAI (`POST /openai/deployments/{deployment}/chat/completions?api-version=…`),
//! Bedrock Converse (`POST /model/{modelId}/converse`) and Ollama (`POST /api/chat`), plus
//! the model lists (`GET /v1/models`, `GET /api/tags`).
//!
//! Every request is checked against the provider's documented rules and rejected with its
//! real error shape when malformed; accepted requests consume the next [`Script`] entry,
//! rendered in the request's format (streamed when the request asks for it). Every
//! request is recorded, so tests can assert on shapes and counts.
//!
//! ```ignore
//! let fake = FakeProvider::start().await;
//! fake.push(Script::tool_call("math__add", json!({"a": 1, "b": 2})));
//! fake.push(Script::text("3"));
//! // point the client at fake.base_url() …
//! assert_eq!(fake.request_count(), 2);
//! ```

mod render;
mod script;
mod validate;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

pub use render::{Format, INPUT_TOKENS, OUTPUT_TOKENS};
pub use script::{Script, ScriptedCall, TextStyle};
pub use validate::{OpenAiDoor, Reject};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub format: Format,
    /// For OpenAI-format requests: which door (OpenAI, Azure, local).
    pub door: Option<OpenAiDoor>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` for GETs or bodies that are not JSON).
    pub body: Value,
    /// Set when the request failed validation; it then consumed no script entry.
    pub rejected: Option<Reject>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request asked for a streamed answer (Ollama streams unless told not to).
    pub fn wants_stream(&self) -> bool {
        wants_stream(self.format, &self.body)
    }
}

fn wants_stream(format: Format, body: &Value) -> bool {
    stream_flag(format, body.get("stream").and_then(Value::as_bool))
}

/// Whether a request whose top-level `stream` is `flag` wants a streamed reply.
fn stream_flag(format: Format, flag: Option<bool>) -> bool {
    match format {
        // Ollama streams unless told not to.
        Format::Ollama => flag != Some(false),
        Format::Bedrock => false,
        _ => flag == Some(true),
    }
}

/// As `wants_stream`, for a body that was not parsed into a `Value`, cheaply under load: a
/// body without the bytes `"stream"` has no such key (bodies spelling a key with `\u`
/// escapes are not expected here), and otherwise only the top-level `stream` is read, the
/// rest being skipped without being built.
fn raw_wants_stream(format: Format, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct StreamOnly {
        stream: Option<bool>,
    }
    let flag = if memchr::memmem::find(body, b"\"stream\"").is_none() {
        None
    } else {
        serde_json::from_slice::<StreamOnly>(body)
            .ok()
            .and_then(|b| b.stream)
    };
    stream_flag(format, flag)
}

/// Decides the reply to a chat request from its body, for conversations whose turns are
/// not known in advance (many concurrent runs).
type Responder = Arc<dyn Fn(&Value) -> Script + Send + Sync>;

/// Decides the reply from the raw request body, for load benchmarks (`set_load_responder`).
type LoadResponder = Arc<dyn Fn(&[u8]) -> Script + Send + Sync>;

/// A load benchmark's responder, and which requests are still parsed and validated.
struct Load {
    check_every: u64,
    /// Requests to let through unchecked before the next checked one.
    until_check: u64,
    respond: LoadResponder,
}

struct Inner {
    scripts: VecDeque<Script>,
    requests: Vec<RecordedRequest>,
    models: Vec<String>,
    /// Used when no script is queued.
    responder: Option<Responder>,
    /// Used instead of `responder` when set: answers from the raw body.
    load: Option<Load>,
    /// Added before every chat reply, like a real model's thinking time.
    latency: std::time::Duration,
    /// Load tests turn this off so memory stays flat.
    keep_requests: bool,
    chat_count: usize,
    /// Structured-output variants answered with a 400 (`refuse_formats`).
    refused_formats: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// Time spent handling requests, minus scripted latency: what a benchmark subtracts to
    /// get the runtime's own overhead (a real provider's time replaces this fake's).
    busy_ns: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide the state from others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeProvider {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and serves in the background.
    ///
    /// # Panics
    /// When the listener cannot be bound (this is test support).
    pub async fn start() -> FakeProvider {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                scripts: VecDeque::new(),
                requests: Vec::new(),
                models: vec!["fake-model-large".into(), "fake-model-small".into()],
                responder: None,
                load: None,
                latency: std::time::Duration::ZERO,
                keep_requests: true,
                chat_count: 0,
                refused_formats: Vec::new(),
            }),
            next_id: AtomicU64::new(1),
            busy_ns: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        #[allow(clippy::expect_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake provider");
        #[allow(clippy::expect_used)]
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider {
            base_url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash). Anthropic, Ollama, Azure and Bedrock
    /// clients use it as is.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `…/v1`, the base URL an OpenAI client wants.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url)
    }

    /// `…/local/v1`: OpenAI format without a required key (LM Studio, vLLM, llama.cpp).
    pub fn local_openai_base_url(&self) -> String {
        format!("{}/local/v1", self.base_url)
    }

    /// Queues the answer to the next accepted request.
    pub fn push(&self, script: Script) {
        self.shared.lock().scripts.push_back(script);
    }

    pub fn push_all(&self, scripts: impl IntoIterator<Item = Script>) {
        self.shared.lock().scripts.extend(scripts);
    }

    /// Script entries not consumed yet.
    pub fn remaining(&self) -> usize {
        self.shared.lock().scripts.len()
    }

    /// Every request received, rejected ones included, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Waits until at least `n` requests have arrived (a test's way to know a model call is
    /// in flight); panics after 6 s.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..600 {
            if self.request_count() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "the fake provider got {} requests, expected {n}",
            self.request_count()
        );
    }

    /// Requests that passed validation (each consumed a script entry, if one was left).
    pub fn accepted(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.rejected.is_none())
            .collect()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().requests.last().cloned()
    }

    /// The ids the model-list endpoints return.
    pub fn set_models(&self, models: Vec<String>) {
        self.shared.lock().models = models;
    }

    /// Answers chat requests for which no script is queued by calling `f` with the request
    /// body: scripts whole conversations when many run at once.
    pub fn set_responder(&self, f: impl Fn(&Value) -> Script + Send + Sync + 'static) {
        self.shared.lock().responder = Some(Arc::new(f));
    }

    /// For load benchmarks: answers chat requests for which no script is queued by calling
    /// `f` with the raw request body, and parses and validates only one request in
    /// `check_every` (the first, then every `check_every`-th; a rejected one is answered
    /// with the provider's error as usual).
    ///
    /// Why: the fake shares the machine's cores with the server a benchmark measures, and
    /// building a `serde_json::Value` of every request was a third of its CPU time. A real
    /// provider's parsing costs the runtime nothing, so under load the fake should not
    /// either. The tests keep `set_responder`, which checks every request's shape. Replies
    /// to unparsed requests carry the model name `unparsed`, and a kept record of one has a
    /// null body. Setting a load responder starts the count again: the next request is
    /// checked.
    pub fn set_load_responder(
        &self,
        check_every: u64,
        f: impl Fn(&[u8]) -> Script + Send + Sync + 'static,
    ) {
        self.shared.lock().load = Some(Load {
            check_every: check_every.max(1),
            until_check: 0,
            respond: Arc::new(f),
        });
    }

    /// Delays every chat reply by `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().latency = latency;
    }

    /// Whether to keep every request for inspection (default true); load tests turn it off.
    pub fn set_keep_requests(&self, keep: bool) {
        self.shared.lock().keep_requests = keep;
    }

    /// Answers requests that use one of these structured-output variants with a 400, as a
    /// server without that feature does: `json_object` (with or without a `schema`),
    /// `json_schema` (the `response_format` types), `ollama_schema` (`format: {…}`) and
    /// `ollama_json` (`format: "json"`).
    pub fn refuse_formats(&self, kinds: &[&str]) {
        self.shared.lock().refused_formats = kinds.iter().map(|k| k.to_string()).collect();
    }

    /// Chat requests answered so far (counted even when requests are not kept).
    pub fn chat_count(&self) -> usize {
        self.shared.lock().chat_count
    }

    /// Total time the fake spent in its request handler, scripted latency excluded.
    pub fn busy_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.busy_ns.load(Ordering::Relaxed))
    }
}

/// Which structured-output variant a chat body asks for, in `refuse_formats`' words.
fn format_kind(body: &Value) -> Option<&'static str> {
    if let Some(t) = body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        return match t {
            "json_object" => Some("json_object"),
            "json_schema" => Some("json_schema"),
            _ => None,
        };
    }
    match body.get("format") {
        Some(Value::Object(_)) => Some("ollama_schema"),
        Some(Value::String(_)) => Some("ollama_json"),
        _ => None,
    }
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn stream_response(content_type: &str, frames: Vec<String>, cut: bool) -> Response {
    use futures::StreamExt;
    let frames = futures::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, std::io::Error>(Bytes::from(f))),
    );
    let tail = futures::stream::once(async move {
        if cut {
            // Pending for a moment first, so hyper flushes the headers and frames; then an
            // error from the body makes it drop the connection without the final chunk:
            // what a client sees when a provider dies mid-answer.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fake provider cut the stream",
            ))
        } else {
            Ok(Bytes::new())
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(frames.chain(tail)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

enum Route {
    Chat {
        format: Format,
        door: Option<OpenAiDoor>,
        bedrock_model: Option<String>,
    },
    Models(Format),
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let chat = |format, door| Route::Chat {
        format,
        door,
        bedrock_model: None,
    };
    if method == Method::GET {
        return match path {
            "/v1/models" => Route::Models(Format::OpenAi),
            "/api/tags" => Route::Models(Format::Ollama),
            p if p.ends_with("/v1/models") => Route::Models(Format::OpenAi),
            _ => Route::NotFound,
        };
    }
    if method != Method::POST {
        return Route::NotFound;
    }
    if path == "/v1/messages" {
        return chat(Format::Anthropic, None);
    }
    if path == "/api/chat" {
        return chat(Format::Ollama, None);
    }
    if path == "/v1/chat/completions" {
        return chat(Format::OpenAi, Some(OpenAiDoor::OpenAi));
    }
    if path.starts_with("/openai/deployments/") && path.ends_with("/chat/completions") {
        return chat(Format::OpenAi, Some(OpenAiDoor::Azure));
    }
    if path.ends_with("/v1/chat/completions") {
        return chat(Format::OpenAi, Some(OpenAiDoor::Local));
    }
    if let Some(rest) = path.strip_prefix("/model/") {
        if let Some(model) = rest.strip_suffix("/converse") {
            return Route::Chat {
                format: Format::Bedrock,
                door: None,
                bedrock_model: Some(percent_decode(model)),
            };
        }
    }
    Route::NotFound
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let mut slept = std::time::Duration::ZERO;
    let response = answer(&shared, method, uri, headers, body, &mut slept).await;
    let busy = started.elapsed().saturating_sub(slept);
    shared
        .busy_ns
        .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    response
}

/// Handles one request, adding to `slept` the scripted latency it waited.
async fn answer(
    shared: &Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    slept: &mut std::time::Duration,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let (format, door, bedrock_model) = match route(&method, &path) {
        Route::NotFound => {
            return json_response(
                404,
                &json!({"error": format!("no route for {method} {path}")}),
                &[],
            )
        }
        Route::Models(format) => {
            let models = shared.lock().models.clone();
            let body = match format {
                Format::Ollama => json!({"models": models.iter().map(|m| json!({
                    "name": m, "model": m, "modified_at": "2024-07-22T20:33:28Z", "size": 1, "digest": "0", "details": {}
                })).collect::<Vec<_>>()}),
                _ => json!({"object": "list", "data": models.iter().map(|m| json!({
                    "id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "fake",
                    "type": "model", "display_name": m
                })).collect::<Vec<_>>()}),
            };
            shared.lock().requests.push(RecordedRequest {
                format,
                door: None,
                method: method.to_string(),
                path,
                query,
                headers: header_list,
                body: Value::Null,
                rejected: None,
            });
            return json_response(200, &body, &[]);
        }
        Route::Chat {
            format,
            door,
            bedrock_model,
        } => (format, door, bedrock_model),
    };
    let (load, checked) = match shared.lock().load.as_mut() {
        None => (None, true),
        Some(l) => {
            let checked = l.until_check == 0;
            l.until_check = if checked {
                l.check_every - 1
            } else {
                l.until_check - 1
            };
            (Some(l.respond.clone()), checked)
        }
    };
    let parsed: Result<Value, String> = if checked {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        Ok(Value::Null)
    };
    let check = match &parsed {
        Ok(_) if !checked => Ok(()),
        Err(e) => Err(Reject {
            status: 400,
            kind: if format == Format::Bedrock {
                "SerializationException".into()
            } else {
                "invalid_request_error".into()
            },
            message: format!("request body is not valid JSON: {e}"),
        }),
        Ok(v) => match format {
            Format::Anthropic => validate::anthropic(&headers, v),
            Format::OpenAi => validate::openai(
                door.unwrap_or(OpenAiDoor::OpenAi),
                &headers,
                query.as_deref(),
                v,
            ),
            Format::Bedrock => {
                validate::bedrock(&headers, bedrock_model.as_deref().unwrap_or(""), v)
            }
            Format::Ollama => validate::ollama(v),
        },
    };
    let body_json = parsed.unwrap_or(Value::Null);
    // The body is cloned into the record only when the record is kept: under a load test
    // the fake provider shares the cores with the server it measures.
    let record = |body: Value, rejected: Option<Reject>| RecordedRequest {
        format,
        door,
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: header_list.clone(),
        body,
        rejected,
    };
    let check = check.and_then(|()| {
        let kind = format_kind(&body_json);
        match kind {
            Some(k) if shared.lock().refused_formats.iter().any(|r| r == k) => Err(Reject {
                status: 400,
                kind: "invalid_request_error".into(),
                message: format!("this server does not support structured output of kind '{k}'"),
            }),
            _ => Ok(()),
        }
    });
    if let Err(reject) = check {
        let r = record(body_json, Some(reject.clone()));
        shared.lock().requests.push(r);
        let (b, h) = render::error_body(format, reject.status, &reject.kind, &reject.message);
        return json_response(reject.status, &b, &h);
    }
    let stream = if checked {
        wants_stream(format, &body_json)
    } else {
        raw_wants_stream(format, &body)
    };
    let (script, latency) = {
        let keep = shared.lock().keep_requests;
        let kept = keep.then(|| record(body_json.clone(), None));
        let mut inner = shared.lock();
        inner.chat_count += 1;
        if let Some(r) = kept {
            inner.requests.push(r);
        }
        let script = match (inner.scripts.pop_front(), &load) {
            (Some(s), _) => Some(s),
            (None, Some(respond)) => Some(respond(&body)),
            (None, None) => inner.responder.clone().map(|r| r(&body_json)),
        };
        (script, inner.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
        *slept = latency;
    }
    let Some(script) = script else {
        let (b, h) = render::error_body(
            format,
            400,
            "",
            "fake provider: no scripted response left for this request",
        );
        return json_response(400, &b, &h);
    };
    let model = match (
        &bedrock_model,
        body_json.get("model").and_then(Value::as_str),
    ) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.to_string(),
        (None, None) if !checked => "unparsed".to_string(),
        (None, None) => "azure-deployment".to_string(),
    };
    let include_usage =
        body_json.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    let ids = |calls: Vec<ScriptedCall>| -> Vec<(String, ScriptedCall)> {
        calls
            .into_iter()
            .map(|c| {
                let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let id = c.id.clone().unwrap_or_else(|| match format {
                    Format::Anthropic => format!("toolu_fake_{n}"),
                    Format::Bedrock => format!("tooluse_fake_{n}"),
                    _ => format!("call_fake_{n}"),
                });
                (id, c)
            })
            .collect()
    };
    let reply = |text: &str, calls: &[(String, ScriptedCall)], max_tokens: bool, cut: bool| {
        if stream {
            let frames =
                render::stream(format, &model, text, calls, max_tokens, cut, include_usage);
            let ct = if format == Format::Ollama {
                "application/x-ndjson"
            } else {
                "text/event-stream"
            };
            stream_response(ct, frames, cut)
        } else if cut {
            let full = render::full(format, &model, text, calls, false).to_string();
            stream_response("application/json", vec![render::half(&full)], true)
        } else {
            json_response(
                200,
                &render::full(format, &model, text, calls, max_tokens),
                &[],
            )
        }
    };
    match script {
        Script::Reply { text, calls } => reply(&text, &ids(calls), false, false),
        Script::MaxTokensMidToolCall { call } => reply("", &ids(vec![call]), true, false),
        Script::CutMidToolCall { call } => reply("", &ids(vec![call]), false, true),
        Script::RateLimited { retry_after } => {
            let (b, mut h) = render::error_body(format, 429, "", "Rate limit exceeded (fake)");
            if let Some(ra) = retry_after {
                h.push(("retry-after".into(), ra));
            }
            json_response(429, &b, &h)
        }
        Script::ServerError { status } => {
            let msg = if status == 529 {
                "Overloaded"
            } else {
                "Internal server error (fake)"
            };
            let (b, h) = render::error_body(format, status, "", msg);
            json_response(status, &b, &h)
        }
        Script::Error { status, message } => {
            let (b, h) = render::error_body(format, status, "", &message);
            json_response(status, &b, &h)
        }
        Script::MalformedJson => {
            if stream {
                let frame = match format {
                    Format::Anthropic => "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\n\n".to_string(),
                    Format::Ollama => "{\"model\": \"x\", \"message\": {\n".to_string(),
                    _ => "data: {\"id\": \"chatcmpl-fake\", \"choices\": [\n\n".to_string(),
                };
                let ct = if format == Format::Ollama {
                    "application/x-ndjson"
                } else {
                    "text/event-stream"
                };
                stream_response(ct, vec![frame], false)
            } else {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        "{\"id\": \"broken\", \"choices\": [ {\"message\": ",
                    ))
                    .unwrap_or_else(|_| Response::new(Body::empty()))
            }
        }
        Script::StreamError { message } if stream => {
            // The opening frames and three text deltas, without the frames that end a turn.
            let mut frames =
                render::stream(format, &model, "Partial answer ", &[], false, false, false);
            frames.truncate(match format {
                Format::Anthropic => 6,
                Format::Ollama => 3,
                _ => 4,
            });
            let (ct, err) = match format {
                Format::Anthropic => (
                    "text/event-stream",
                    format!(
                        "event: error\ndata: {}\n\n",
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": message}})
                    ),
                ),
                Format::Ollama => (
                    "application/x-ndjson",
                    format!("{}\n", json!({"error": message})),
                ),
                _ => (
                    "text/event-stream",
                    format!(
                        "data: {}\n\n",
                        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
                    ),
                ),
            };
            frames.push(err);
            stream_response(ct, frames, false)
        }
        Script::StreamError { message } => {
            let status = if format == Format::Anthropic {
                529
            } else {
                500
            };
            let (b, h) = render::error_body(format, status, "", &message);
            json_response(status, &b, &h)
        }
        Script::Hang => {
            // Long enough for any client timeout; the future is dropped when the client
            // closes the connection.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            json_response(500, &json!({"error": "hang ended"}), &[])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// POSTs an Anthropic Messages request.
    async fn send(fake: &FakeProvider, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/messages", fake.base_url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// As `send`, for a JSON reply: its status and body.
    async fn post(fake: &FakeProvider, body: &Value) -> (u16, Value) {
        let r = send(fake, body).await;
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The load responder sees raw bodies, and one request in `check_every` is still checked.
    #[tokio::test]
    async fn a_load_responder_answers_from_raw_bodies_and_checks_one_in_n() {
        let fake = FakeProvider::start().await;
        fake.set_keep_requests(false);
        fake.set_load_responder(2, |body| Script::text(body.len().to_string()));
        let valid = json!({"model": "claude-x", "max_tokens": 16,
                           "messages": [{"role": "user", "content": "hi"}]});
        let invalid = json!({"model": "claude-x",
                             "messages": [{"role": "user", "content": "hi"}]});
        let valid_len = serde_json::to_vec(&valid).unwrap().len().to_string();

        // First request: checked, valid, answered from its raw body.
        let (status, reply) = post(&fake, &valid).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["content"][0]["text"], valid_len);
        assert_eq!(
            reply["model"], "claude-x",
            "a checked request's model is echoed"
        );
        // Second: not checked, so even an invalid body is answered.
        let (status, reply) = post(&fake, &invalid).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["model"], "unparsed");
        // Third: checked again, and rejected as the provider would.
        let (status, reply) = post(&fake, &invalid).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"));
        assert_eq!(fake.chat_count(), 2, "a rejected request is not answered");
        // A queued script still comes first (request 4, unchecked).
        fake.push(Script::text("scripted"));
        let (_, reply) = post(&fake, &valid).await;
        assert_eq!(reply["content"][0]["text"], "scripted");
        // Request 5 is checked; request 6 is not, and still streams when asked to.
        post(&fake, &valid).await;
        let mut streamed = valid.clone();
        streamed["stream"] = json!(true);
        let r = send(&fake, &streamed).await;
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert!(r.text().await.unwrap().contains("event: message_stop"));
        // Setting the responder again starts the count again: the next request is checked.
        fake.set_load_responder(2, |_| Script::text("again"));
        let (status, _) = post(&fake, &invalid).await;
        assert_eq!(status, 400);
    }
}
