//! The MCP server side: `tools/list` and `tools/call` over Streamable HTTP.
//!
//! The SDK's [`StreamableHttpService`] does the transport: JSON-RPC over POST answered as
//! JSON or SSE, `Mcp-Session-Id` sessions for the protocol versions that have them (DELETE
//! ends one), the current version without sessions, and `notifications/cancelled`. This
//! module adapts it to an embedder's [`McpTools`], which decides per HTTP request who the
//! caller is and which tools they may see and call.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;

/// The tools one HTTP request may see and call. `request` is the request that carried the
/// JSON-RPC message (its headers and the extensions the embedder's middleware set), so
/// that the caller is resolved per request, never per session: a session opened with one
/// key cannot be used with another's rights.
#[async_trait::async_trait]
pub trait McpTools: Send + Sync + 'static {
    /// Every tool this caller may see, in a stable order (pages are cut from it).
    async fn list(&self, request: &http::request::Parts) -> Result<Vec<Tool>, ErrorData>;

    /// Calls one tool. A tool that ran and failed is `Ok` with `is_error: Some(true)`, so
    /// that a model can read the failure; `Err` is for calls that could not be made at all
    /// (an unknown tool, arguments that are not what the tool takes).
    async fn call(
        &self,
        request: &http::request::Parts,
        name: &str,
        arguments: JsonObject,
        cx: CallContext,
    ) -> Result<CallToolResult, ErrorData>;
}

/// What a call gets besides its arguments.
pub struct CallContext {
    /// Set when the client asked for progress (`_meta.progressToken`).
    pub progress: Option<Progress>,
    /// Cancelled when the client sends `notifications/cancelled` for this call, or goes away.
    pub cancelled: CancellationToken,
}

/// Progress notifications for one call: each [`Progress::advance`] sends the next number.
pub struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    sent: AtomicU32,
}

impl Progress {
    pub async fn advance(&self, message: impl Into<String>) {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let param =
            ProgressNotificationParam::new(self.token.clone(), f64::from(n)).with_message(message);
        // Progress is advisory: a client that went away must not fail the call it started.
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "MCP progress notification not delivered");
        }
    }
}

/// How the endpoint is served.
#[derive(Debug, Clone)]
pub struct McpServerConfig {
    /// Browser origins that may call the endpoint. A request without `Origin` (every
    /// non-browser client) passes; one with an `Origin` outside this list is refused with
    /// 403, so that a web page cannot drive the endpoint through a user's browser (DNS
    /// rebinding included: the page's origin is still its own).
    pub allowed_origins: Vec<String>,
    /// Tools per `tools/list` page.
    pub page_size: usize,
    /// Name and version reported in `initialize`.
    pub server_name: String,
    pub server_version: String,
    /// Told to clients in `initialize`.
    pub instructions: String,
    /// Stops every session when cancelled (server shutdown).
    pub shutdown: CancellationToken,
}

pub type McpService = StreamableHttpService<Handler, LocalSessionManager>;

/// The tower service to mount at the endpoint (POST, GET and DELETE).
pub fn service(tools: Arc<dyn McpTools>, config: McpServerConfig) -> McpService {
    let handler = Handler {
        tools,
        page_size: config.page_size.max(1),
        info: Implementation::new(config.server_name, config.server_version),
        instructions: config.instructions,
    };
    let transport = StreamableHttpServerConfig::default()
        // The caller is authenticated by key on every request, and the Origin check below
        // is what stops browsers; the SDK's loopback-only Host list would refuse every
        // deployment that is reached by name.
        .disable_allowed_hosts()
        .with_allowed_origins(config.allowed_origins)
        .enforce_origin_validation()
        .with_cancellation_token(config.shutdown);
    StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        transport,
    )
}

/// One per session (the SDK makes one per session from the factory); cheap to clone.
#[derive(Clone)]
pub struct Handler {
    tools: Arc<dyn McpTools>,
    page_size: usize,
    info: Implementation,
    instructions: String,
}

fn request_parts(context: &RequestContext<RoleServer>) -> Result<&http::request::Parts, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("no HTTP request for this message", None))
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(self.info.clone())
            .with_instructions(self.instructions.clone())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let all = self.tools.list(request_parts(&context)?).await?;
        let cursor = request.and_then(|r| r.cursor);
        let (tools, next) = page(all, cursor.as_deref(), self.page_size)?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let progress = context.meta.get_progress_token().map(|token| Progress {
            peer: context.peer.clone(),
            token,
            sent: AtomicU32::new(0),
        });
        let cx = CallContext {
            progress,
            cancelled: context.ct.clone(),
        };
        let parts = request_parts(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        let result = self.tools.call(parts, &request.name, arguments, cx).await?;
        Ok(CallToolResponse::Complete(result))
    }
}

/// Cuts one page out of the whole list. The cursor is the offset of the page's first tool:
/// opaque to clients, and one that is not a number this list has is a -32602 error rather
/// than an empty page, so that a client holding a stale cursor knows to start over.
fn page<T>(
    all: Vec<T>,
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|&n| n < all.len())
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    "unknown cursor; list the tools again from the start",
                    Some(serde_json::json!({"cursor": c})),
                )
            })?,
    };
    let end = start.saturating_add(size).min(all.len());
    let next = (end < all.len()).then(|| end.to_string());
    Ok((
        all.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn pages_cover_the_list_once_and_end_without_a_cursor() {
        let all: Vec<u32> = (0..7).collect();
        let (first, next) = page(all.clone(), None, 3).unwrap();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(next.as_deref(), Some("3"));
        let (second, next) = page(all.clone(), next.as_deref(), 3).unwrap();
        assert_eq!(second, vec![3, 4, 5]);
        let (last, next) = page(all.clone(), next.as_deref(), 3).unwrap();
        assert_eq!(last, vec![6]);
        assert_eq!(next, None);
        let (whole, next) = page(all, None, 50).unwrap();
        assert_eq!(whole.len(), 7);
        assert_eq!(next, None);
    }

    #[test]
    fn a_cursor_this_list_does_not_have_is_invalid_params() {
        for bad in ["7", "-1", "abc", ""] {
            let err = page((0..7).collect::<Vec<u32>>(), Some(bad), 3).unwrap_err();
            assert_eq!(err.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
            assert_eq!(err.data.unwrap()["cursor"], bad);
        }
    }
}
