//! The admin UI, served by `leforge serve` at `/`: server-rendered pages (maud) plus one small
//! script for the live parts. Pages read through the same store and registry calls as the
//! `/api/v1` handlers, and every change is made by the page's script calling `/api/v1` with
//! the session cookie and the CSRF token — so there is no second code path for any rule.

pub mod agents;
pub mod forgehooks;
pub mod keys;
pub mod layout;
pub mod mcp_servers;
pub mod pages;
pub mod runs;
pub mod scripts;
pub mod session;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub use session::Sessions;

const APP_JS: &str = include_str!("ui/static/app.js");
const APP_CSS: &str = include_str!("ui/static/app.css");

/// Only our own files may run or style a page (no inline script, so injected markup cannot
/// execute), and no other site may frame it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/agents") }))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/agents", get(agents::list))
        .route("/agents/new", get(agents::new))
        .route("/agents/{id_or_slug}/edit", get(agents::edit))
        .route("/agents/{id_or_slug}/run", get(agents::run))
        .route("/runs", get(runs::history))
        .route("/runs/{run_id}", get(runs::trace))
        .route("/forgehooks", get(forgehooks::list))
        .route("/mcp-servers", get(mcp_servers::list))
        .route("/scripts", get(scripts::list))
        .route("/scripts/new", get(scripts::new))
        .route("/scripts/{id_or_name}", get(scripts::edit))
        .route("/keys", get(keys::list))
        .route("/ui/static/app.js", get(app_js))
        .route("/ui/static/app.css", get(app_css))
        .layer(middleware::from_fn(security_headers))
}

async fn app_js() -> Response {
    static_file(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    static_file(APP_CSS, "text/css; charset=utf-8")
}

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Embedded in the binary: a new build is a new server, so a short cache is enough.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show live data and, once, new keys: never from a cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
