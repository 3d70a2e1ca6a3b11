//! The router: every route, the fallbacks, and the middleware stack (request ids, body
//! limit, panic safety, access log).

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodFilter};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::REQUEST_ID;
use crate::error::ApiError;
use crate::routes::{
    agent_runs, agents, api_keys, forgehooks, health, llm, mcp_servers, runs, scripts,
};
use crate::state::AppState;

/// The listener the router is served on, by `leforge serve` and by the tests and benches.
/// Without TCP_NODELAY a streamed response (SSE: MCP answers, run events) waits for the
/// client's delayed ACK, about 40 ms, between its header and its first event.
/// (A named type, not `impl Listener`: axum's `ConnectInfo<SocketAddr>` is implemented for
/// `TapIo` itself.)
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn set(tcp: &mut tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
    }
    axum::serve::ListenerExt::tap_io(listener, set as fn(&mut tokio::net::TcpStream))
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let max_upload = state.max_upload_bytes();
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/openapi.json", get(openapi_json))
        .route("/agents", get(agents::list).post(agents::create))
        .route(
            "/agents/{id_or_slug}",
            get(agents::get).put(agents::update).delete(agents::delete),
        )
        .route("/agents/{id_or_slug}/runs", get(runs::list_for_agent))
        .route("/agents/{id_or_slug}/run", post(agent_runs::run))
        .route("/runs", get(runs::list))
        .route("/runs/{run_id}", get(runs::get))
        .route("/runs/{run_id}/result", get(agent_runs::result))
        .route("/runs/{run_id}/events", get(agent_runs::events))
        .route("/runs/{run_id}/cancel", post(agent_runs::cancel))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route(
            "/forgehooks",
            get(forgehooks::list)
                .post(forgehooks::install.layer(DefaultBodyLimit::max(max_upload))),
        )
        .route(
            "/forgehooks/{id}",
            get(forgehooks::get).delete(forgehooks::remove),
        )
        .route("/forgehooks/{id}/enable", post(forgehooks::enable))
        .route("/forgehooks/{id}/disable", post(forgehooks::disable))
        .route("/forgehooks/{id}/config", put(forgehooks::configure))
        .route(
            "/forgehooks/{id}/invoke/{endpoint}",
            post(forgehooks::invoke),
        )
        .route("/llm/providers", get(llm::providers))
        .route("/llm/models/{provider}", get(llm::models))
        .route("/scripts", get(scripts::list).post(scripts::create))
        .route(
            "/scripts/{id_or_name}",
            get(scripts::get)
                .put(scripts::update)
                .delete(scripts::delete),
        )
        .route("/scripts/{id_or_name}/test", post(scripts::test))
        .route(
            "/mcp-servers",
            get(mcp_servers::list).post(mcp_servers::create),
        )
        .route(
            "/mcp-servers/{name}",
            get(mcp_servers::get)
                .put(mcp_servers::update)
                .delete(mcp_servers::delete),
        )
        .route("/mcp-servers/{name}/refresh", post(mcp_servers::refresh))
        .route_layer(middleware::from_fn(crate::telemetry::tag_route));
    let mcp = crate::mcp::service(&state);
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/mcp",
            // The transport's three methods; any other is the usual 405. (`any` would be a
            // fallback, which `route_layer` refuses.)
            axum::routing::on(
                MethodFilter::GET
                    .or(MethodFilter::POST)
                    .or(MethodFilter::DELETE),
                move |state, req| crate::mcp::entry(state, mcp.clone(), req),
            )
            .route_layer(middleware::from_fn(crate::telemetry::tag_route)),
        )
        .merge(crate::ui::router().route_layer(middleware::from_fn(crate::telemetry::tag_route)))
        .route(
            "/metrics",
            get(crate::telemetry::scrape)
                .route_layer(middleware::from_fn(crate::telemetry::tag_route)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn openapi_json() -> Response {
    // The document itself, not wrapped: tools that read OpenAPI expect the bare document.
    axum::Json(crate::openapi::document()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not accept this method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}

/// Gives each request an id (the caller's `x-request-id` when it is sane, so a trace can
/// cross systems), makes it available to the envelope, returns it as a header, and logs
/// one line per request — method, path, status, latency; never headers, which carry keys.
async fn request_context(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The server span, named `{method} {route}` once the route is known. Never headers or
    // the query string: they may carry keys.
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        request_id = %id,
        %method,
        %path,
        http.request.method = %method,
        url.path = %path,
        http.route = tracing::field::Empty,
    );
    // A caller's W3C trace context: this request, and the runs it starts, join its trace.
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    crate::telemetry::set_parent(&span, traceparent);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let took = started.elapsed();
    let route = crate::telemetry::record_http(&method, &response, took);
    span.record("http.route", route.as_str());
    crate::telemetry::rename(&span, format!("{method} {route}"));
    // As an integer attribute, which a recorded `u16` field does not become.
    span.set_attribute(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = took.as_millis() as u64,
            "request done"
        );
    });
    if let Result::Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
