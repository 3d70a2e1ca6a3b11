//! MCP servers as tool sources: connecting (Streamable HTTP or a child process on stdio),
//! listing tools, and calling them over pooled connections.
//!
//! The protocol (initialize, sessions, SSE parsing, paging, version negotiation) is rmcp's.
//! The HTTP requests are made by the embedder's reqwest client through [`HttpClient`], so
//! the server's SSRF guard (its resolver) and redirect policy apply to every request; rmcp's
//! own reqwest integration would bring a second reqwest and bypass both.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use leforge_core::mcp::McpTransport;
use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ClientJsonRpcMessage,
    Implementation, JsonObject, ServerJsonRpcMessage, Tool,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
    StreamableHttpError, StreamableHttpPostResponse,
};
use rmcp::ServiceExt;
use sse_stream::{Sse, SseStream};
use tokio::sync::Mutex;

/// Largest JSON (not SSE) response read from an MCP server.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;


/// Why talking to an MCP server failed. Messages carry no header values or URLs' secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpClientError {
    #[error("could not connect to the MCP server: {0}")]
    Connect(String),
    #[error("the MCP server did not answer within {0} ms")]
    Timeout(u64),
    /// The server answered with a JSON-RPC error (an unknown tool, invalid params).
    #[error("the MCP server refused the call: {0}")]
    Rejected(String),
    /// The connection failed mid-call; the next call reconnects.
    #[error("the MCP server connection failed: {0}")]
    Transport(String),
    #[error("invalid MCP server configuration: {0}")]
    Config(String),
}

/// A reqwest client as rmcp's Streamable HTTP client, with fixed extra headers.
#[derive(Clone)]
struct HttpClient {
    http: reqwest::Client,
    headers: Arc<HeaderMap>,
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, McpClientError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| McpClientError::Config(format!("header name '{name}' is not valid")))?;
        // The value is a secret: the message names only the header.
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| McpClientError::Config(format!("header '{name}' has an invalid value")))?;
        map.insert(name, value);
    }
    Ok(map)
}

type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

/// A reqwest error without its URL: an MCP URL may carry a token in its query, and these
/// errors reach the run's trace and the model.
fn client_error(e: reqwest::Error) -> StreamableHttpError<reqwest::Error> {
    StreamableHttpError::Client(e.without_url())
}

impl HttpClient {
    fn request(
        &self,
        method: reqwest::Method,
        uri: &str,
        session_id: Option<&str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, uri)
            .headers((*self.headers).clone());
        for (name, value) in custom_headers {
            req = req.header(name, value);
        }
        if let Some(token) = auth_header {
            req = req.bearer_auth(token);
        }
        if let Some(id) = session_id {
            req = req.header("mcp-session-id", id);
        }
        req
    }
}

fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase())
}

fn sse_of(
    resp: reqwest::Response,
) -> futures::stream::BoxStream<'static, Result<Sse, sse_stream::Error>> {
    SseStream::from_bytes_stream(resp.bytes_stream()).boxed()
}

/// A failure status as rmcp classifies it (it retries 429 and 5xx where it may).
fn status_error(resp: &reqwest::Response) -> StreamableHttpError<reqwest::Error> {
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    rmcp::transport::streamable_http_client::HttpStatusError::new(
        resp.status().as_u16(),
        retry_after,
    )
    .into()
}

impl StreamableHttpClient for HttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<StreamableHttpPostResponse> {
        let had_session = session_id.is_some();
        let resp = self
            .request(
                reqwest::Method::POST,
                &uri,
                session_id.as_deref(),
                auth_header,
                custom_headers,
            )
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .json(&message)
            .send()
            .await
            .map_err(client_error)?;
        let status = resp.status();
        if status == reqwest::StatusCode::ACCEPTED || status == reqwest::StatusCode::NO_CONTENT {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == reqwest::StatusCode::NOT_FOUND && had_session {
            return Err(StreamableHttpError::SessionExpired);
        }
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let kind = content_type(&resp);
        let is_json = kind
            .as_deref()
            .is_some_and(|k| k.starts_with("application/json"));
        let is_sse = kind
            .as_deref()
            .is_some_and(|k| k.starts_with("text/event-stream"));
        if !status.is_success() {
            // A JSON-RPC error may come with a failure status; anything else is the status.
            if is_json {
                if let Ok(bytes) = resp.bytes().await {
                    if let Ok(msg) = serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
                        return Ok(StreamableHttpPostResponse::Json(msg, session));
                    }
                }
                return Err(StreamableHttpError::UnexpectedServerResponse(
                    format!("HTTP {status}").into(),
                ));
            }
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(status_error(&resp));
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!("HTTP {status}").into(),
            ));
        }
        if is_sse {
            return Ok(StreamableHttpPostResponse::Sse(sse_of(resp), session));
        }
        if is_json {
            if resp
                .content_length()
                .is_some_and(|n| n as usize > MAX_JSON_BODY)
            {
                return Err(StreamableHttpError::ResponseBodyTooLarge {
                    max_size: MAX_JSON_BODY,
                });
            }
            let bytes = resp.bytes().await.map_err(client_error)?;
            if bytes.len() > MAX_JSON_BODY {
                return Err(StreamableHttpError::ResponseBodyTooLarge {
                    max_size: MAX_JSON_BODY,
                });
            }
            let msg = serde_json::from_slice(&bytes)?;
            return Ok(StreamableHttpPostResponse::Json(msg, session));
        }
        // Some servers answer a notification with an empty 200 rather than 202.
        let answers_nothing = !matches!(message, ClientJsonRpcMessage::Request(_));
        if answers_nothing {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(kind))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<()> {
        let resp = self
            .request(
                reqwest::Method::DELETE,
                &uri,
                Some(&session_id),
                auth_header,
                custom_headers,
            )
            .send()
            .await
            .map_err(client_error)?;
        if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportDeleteSession);
        }
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<futures::stream::BoxStream<'static, Result<Sse, sse_stream::Error>>> {
        let mut req = self
            .request(
                reqwest::Method::GET,
                &uri,
                session_id.as_deref(),
                auth_header,
                custom_headers,
            )
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.map_err(client_error)?;
        let status = resp.status();
        if status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !status.is_success() {
            return Err(status_error(&resp));
        }
        if !content_type(&resp).is_some_and(|k| k.starts_with("text/event-stream")) {
            return Err(StreamableHttpError::UnexpectedContentType(content_type(
                &resp,
            )));
        }
        Ok(sse_of(resp))
    }
}

type Connection = RunningService<RoleClient, ClientConfig>;

/// Connections to MCP servers, one per server, opened on first use and again after one
/// fails. A change of a server's registration (its `version`) reconnects too.
pub struct McpClients {
    http: reqwest::Client,
    /// One slot per server, so connecting to a slow server holds up only its own calls.
    pool: std::sync::Mutex<HashMap<String, Slot>>,
}

type Slot = Arc<Mutex<Option<Pooled>>>;

struct Pooled {
    version: String,
    conn: Arc<Connection>,
}

fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("leforge", env!("CARGO_PKG_VERSION")),
    )
}

impl McpClients {
    /// `http` makes every HTTP request: give it the server's guarded resolver and no
    /// redirects.
    pub fn new(http: reqwest::Client) -> Self {
        McpClients {
            http,
            pool: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Opens a new connection (initialize included) within `timeout`.
    pub async fn connect(
        &self,
        endpoint: &McpTransport,
        timeout: Duration,
    ) -> Result<Connection, McpClientError> {
        let connecting = async {
            match endpoint {
                McpTransport::Http { url, headers } => {
                    let client = HttpClient {
                        http: self.http.clone(),
                        headers: Arc::new(header_map(headers)?),
                    };
                    let transport = StreamableHttpClientTransport::with_client(
                        client,
                        StreamableHttpClientTransportConfig::with_uri(url.as_str()),
                    );
                    client_info()
                        .serve(transport)
                        .await
                        .map_err(|e| McpClientError::Connect(leforge_core::error_chain(&e)))
                }
                // Started with exactly the registration's environment, plus `PATH` to find
                // the command.
                McpTransport::Stdio { command, args, env } => {
                    let mut cmd = tokio::process::Command::new(command);
                    cmd.args(args).env_clear();
                    if let Some(path) = std::env::var_os("PATH") {
                        cmd.env("PATH", path);
                    }
                    cmd.envs(env);
                    let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .map_err(|e| {
                            McpClientError::Connect(format!("could not start '{command}': {e}"))
                        })?;
                    client_info()
                        .serve(transport)
                        .await
                        .map_err(|e| McpClientError::Connect(leforge_core::error_chain(&e)))
                }
            }
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| McpClientError::Timeout(timeout.as_millis() as u64))?
    }

    /// Connects afresh and lists every tool (all pages), for registration and refresh.
    pub async fn list_tools(
        &self,
        endpoint: &McpTransport,
        timeout: Duration,
    ) -> Result<Vec<Tool>, McpClientError> {
        let conn = self.connect(endpoint, timeout).await?;
        let listed = tokio::time::timeout(timeout, conn.peer().list_all_tools()).await;
        let _ = conn.cancel().await;
        listed
            .map_err(|_| McpClientError::Timeout(timeout.as_millis() as u64))?
            .map_err(call_error)
    }

    /// Calls `tool` on the pooled connection to server `name` (`version` identifies its
    /// registration), connecting first when there is none. A connection that fails is
    /// dropped, so the next call connects again; the failed call itself is not repeated,
    /// as the server may have run it.
    pub async fn call(
        &self,
        name: &str,
        version: &str,
        endpoint: &McpTransport,
        tool: &str,
        arguments: JsonObject,
        timeout: Duration,
    ) -> Result<CallToolResult, McpClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.pooled(name, version, endpoint, timeout).await?;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let result = tokio::time::timeout_at(deadline, conn.peer().call_tool(params)).await;
        match result {
            Err(_) => {
                // A server that stopped answering may have gone: the next call connects anew.
                self.forget(name, &conn).await;
                Err(McpClientError::Timeout(timeout.as_millis() as u64))
            }
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let e = call_error(e);
                if !matches!(e, McpClientError::Rejected(_)) {
                    self.forget(name, &conn).await;
                }
                Err(e)
            }
        }
    }

    fn slot(&self, name: &str) -> Slot {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.entry(name.to_string()).or_default().clone()
    }

    async fn pooled(
        &self,
        name: &str,
        version: &str,
        endpoint: &McpTransport,
        timeout: Duration,
    ) -> Result<Arc<Connection>, McpClientError> {
        // The slot's lock covers the lookup and the connect: two calls that both find no
        // connection open one, not two. Connecting is bounded by the call's timeout.
        let slot = self.slot(name);
        let mut pooled = slot.lock().await;
        if let Some(p) = pooled.as_ref() {
            if p.version == version && !p.conn.is_closed() {
                return Ok(p.conn.clone());
            }
        }
        let conn = Arc::new(self.connect(endpoint, timeout).await?);
        *pooled = Some(Pooled {
            version: version.to_string(),
            conn: conn.clone(),
        });
        Ok(conn)
    }

    async fn forget(&self, name: &str, conn: &Arc<Connection>) {
        let slot = self.slot(name);
        let mut pooled = slot.lock().await;
        if pooled.as_ref().is_some_and(|p| Arc::ptr_eq(&p.conn, conn)) {
            *pooled = None;
        }
    }

    /// Closes the connection to `name` (the server was changed or deleted).
    pub async fn disconnect(&self, name: &str) {
        let slot = self.slot(name);
        let removed = slot.lock().await.take();
        if let Some(p) = removed {
            if let Ok(conn) = Arc::try_unwrap(p.conn) {
                let _ = conn.cancel().await;
            }
        }
    }
}

fn call_error(e: ServiceError) -> McpClientError {
    match e {
        ServiceError::McpError(data) => McpClientError::Rejected(data.message.to_string()),
        ServiceError::Timeout { timeout } => McpClientError::Timeout(timeout.as_millis() as u64),
        other => McpClientError::Transport(leforge_core::error_chain(&other)),
    }
}

/// What a tool call produced, as a ForgeHook step's output: `structuredContent` when there
/// is one, else the text content, parsed as JSON when it is JSON (several text blocks are a
/// list). `Err` carries the message of a result with `isError`.
pub fn call_output(result: &CallToolResult) -> Result<serde_json::Value, String> {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if result.is_error == Some(true) {
        let message = if texts.is_empty() {
            "the MCP tool reported an error".to_string()
        } else {
            texts.join("\n")
        };
        return Err(message);
    }
    if let Some(structured) = &result.structured_content {
        return Ok(structured.clone());
    }
    let parse = |t: &str| {
        serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_string()))
    };
    Ok(match texts.as_slice() {
        [] => serde_json::Value::Null,
        [one] => parse(one),
        many => serde_json::Value::Array(many.iter().map(|t| parse(t)).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock as Content;
    use serde_json::json;

    #[test]
    fn output_prefers_structured_then_json_text() {
        let structured = CallToolResult::structured(json!({"sum": 3}));
        assert_eq!(call_output(&structured).unwrap(), json!({"sum": 3}));
        let text = CallToolResult::success(vec![Content::text("{\"a\": [1]}")]);
        assert_eq!(call_output(&text).unwrap(), json!({"a": [1]}));
        let plain = CallToolResult::success(vec![Content::text("hello")]);
        assert_eq!(call_output(&plain).unwrap(), json!("hello"));
        let two = CallToolResult::success(vec![Content::text("1"), Content::text("x")]);
        assert_eq!(call_output(&two).unwrap(), json!([1, "x"]));
        let failed = CallToolResult::error(vec![Content::text("boom")]);
        assert_eq!(call_output(&failed).unwrap_err(), "boom");
    }

    #[test]
    fn bad_headers_name_the_header_not_the_value() {
        let err = header_map(&[("x-token".into(), "bad\nvalue".into())].into()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x-token"), "{text}");
        assert!(!text.contains("bad"), "{text}");
    }
}
