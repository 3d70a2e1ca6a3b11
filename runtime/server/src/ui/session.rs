//! Admin UI sessions: signing in with an admin API key, the `leforge_session` cookie, and
//! the CSRF token every mutating request made with that cookie must carry.
//!
//! Sessions live in memory: a restart signs everyone out, which costs an admin one paste of
//! their key and keeps session secrets out of the database. A session holds only the hash of
//! the key it was opened with, and every request re-checks that hash with the same lookup as
//! `X-API-Key` (`find_active_api_key`), so revoking the key ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use leforge_core::{ApiKeyScope, Caller};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::auth::hash_key;
use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "leforge_session";
/// Double-submit token for the sign-in form, which has no session yet to bind a token to.
pub const SIGNIN_COOKIE: &str = "leforge_signin";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after sign-in, whatever its use.
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// ... or after this long unused.
const IDLE: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Clone)]
struct Session {
    key_hash: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The server-side session table, keyed by the SHA-256 of the cookie value so the table
/// never holds a usable cookie.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

/// A signed-in admin, as pages see it.
#[derive(Debug, Clone)]
pub struct UiSession {
    pub caller: Caller,
    pub csrf: String,
}

fn random_token() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Opens a session; returns (cookie value, CSRF token).
    fn open(&self, key_hash: String) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| live(s, now));
        map.insert(
            hash_key(&id),
            Session {
                key_hash,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        (id, csrf)
    }

    fn close(&self, id: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&hash_key(id));
    }

    /// The live session for a cookie value, marked as used.
    fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = hash_key(id);
        match map.get_mut(&key) {
            Some(s) if live(s, now) => {
                s.last_seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Drops every session opened with this key hash (used when a check finds it revoked).
    fn forget_key(&self, key_hash: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.key_hash != key_hash);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < MAX_AGE && now.duration_since(s.last_seen) < IDLE
}

/// The value of one cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Why a cookie did not give an admin.
enum Denied {
    NoCookie,
    Expired,
}

/// Resolves the session cookie to an admin caller: the session must be live and its key
/// still an active admin key.
async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<(Caller, Session), Denied> {
    let id = cookie(headers, SESSION_COOKIE).ok_or(Denied::NoCookie)?;
    let session = state.sessions.touch(&id).ok_or(Denied::Expired)?;
    let found = match state.store.find_active_api_key(&session.key_hash).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not check a UI session's key");
            None
        }
    };
    match found {
        Some(key) if key.scope == ApiKeyScope::Admin => {
            if let Err(e) = state.store.touch_api_key(key.id).await {
                tracing::warn!(key_id = %key.id, error = %e, "could not record API key use");
            }
            Ok((
                Caller::Key {
                    id: key.id,
                    scope: key.scope,
                },
                session,
            ))
        }
        _ => {
            state.sessions.forget_key(&session.key_hash);
            Err(Denied::Expired)
        }
    }
}

fn safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// For the `/api/v1` extractor: the admin behind a session cookie, when the request carries
/// no key. A mutating request authenticated this way must echo the session's CSRF token in
/// `X-CSRF-Token` (403 `CSRF_TOKEN_INVALID` otherwise); SameSite=Strict alone would leave
/// same-site subdomains and old browsers able to forge requests.
pub async fn cookie_caller(state: &AppState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    let (caller, session) = match resolve(state, &parts.headers).await {
        Ok(found) => found,
        Err(Denied::NoCookie) => return Ok(None),
        Err(Denied::Expired) => {
            return Err(ApiError::unauthorized(
                "the admin UI session has ended; sign in again",
            ))
        }
    };
    if !safe_method(&parts.method) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent, &session.csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF_TOKEN_INVALID",
                "a request authenticated by the session cookie must carry the session's \
                 CSRF token in the X-CSRF-Token header",
            )
            .with_details(json!([{"field": "X-CSRF-Token", "message": "missing or wrong"}])));
        }
    }
    Ok(Some(caller))
}

/// Page extractor: the signed-in admin, or a redirect to the sign-in page.
impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match resolve(state, &parts.headers).await {
            Ok((caller, session)) => Ok(UiSession {
                caller,
                csrf: session.csrf,
            }),
            Err(_) => {
                let target = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next = percent_encode(target);
                Err(Redirect::to(&format!("/signin?next={next}")).into_response())
            }
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Only a local path may be a post-sign-in target (no `//host` or scheme: no open redirect).
/// Browsers drop tab and newline characters from URLs and read a backslash as `/`, so
/// `/<tab>/evil` and `/<backslash>evil` would become `//evil`: any control character or
/// backslash is refused.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.chars().any(|c| c == '\\' || c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/agents".to_string(),
    }
}

/// Secure cookies when the browser reached us over TLS: leforge serves plain HTTP, so TLS
/// means a proxy in front, which says so in `X-Forwarded-Proto`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if over_tls(headers) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Debug, Deserialize)]
pub struct SigninQuery {
    pub next: Option<String>,
}

pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SigninQuery>,
) -> Response {
    if resolve(&state, &headers).await.is_ok() {
        return Redirect::to(&local_target(q.next.as_deref())).into_response();
    }
    signin_response(&headers, q.next.as_deref(), None, StatusCode::OK)
}

fn signin_response(
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_token();
    let mut resp = (
        status,
        super::layout::html(super::pages::signin(&token, next, error)),
    )
        .into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, SIGNIN_COOKIE, &token, Some(600)),
    );
    resp
}

#[derive(Debug, Deserialize)]
pub struct SigninForm {
    pub key: String,
    pub csrf: String,
    pub next: Option<String>,
}

pub async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&expected, &form.csrf) {
        return signin_response(
            &headers,
            form.next.as_deref(),
            Some("The sign-in form expired. Please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let key = form.key.trim();
    let hash = hash_key(key);
    let found = match state.store.find_active_api_key(&hash).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "sign-in: key lookup failed");
            return signin_response(
                &headers,
                form.next.as_deref(),
                Some("The server could not check the key. Try again."),
                StatusCode::INTERNAL_SERVER_ERROR,
            );
        }
    };
    let message = match &found {
        None => Some("This key is unknown or has been revoked."),
        Some(k) if k.scope != ApiKeyScope::Admin => {
            Some("This is an invoke key; the admin UI needs an admin key.")
        }
        Some(_) => None,
    };
    if let Some(message) = message {
        return signin_response(
            &headers,
            form.next.as_deref(),
            Some(message),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (id, _csrf) = state.sessions.open(hash);
    tracing::info!(key_prefix = %found.map(|k| k.prefix).unwrap_or_default(), "admin UI sign-in");
    let mut resp = Redirect::to(&local_target(form.next.as_deref())).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &id, None),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SIGNIN_COOKIE, "", Some(0)),
    );
    resp
}

#[derive(Debug, Deserialize)]
pub struct SignoutForm {
    pub csrf: String,
}

pub async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignoutForm>,
) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        match state.sessions.touch(&id) {
            Some(s) if !same(&s.csrf, &form.csrf) => {
                return (StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response();
            }
            _ => state.sessions.close(&id),
        }
    }
    let mut resp = Redirect::to("/signin").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", Some(0)),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_targets() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; leforge_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(local_target(Some("/runs?x=1")), "/runs?x=1");
        assert_eq!(local_target(Some("//evil.example")), "/agents");
        assert_eq!(local_target(Some("https://evil.example")), "/agents");
        for hostile in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil",
            "/\\evil",
            "/\u{7f}/x",
        ] {
            assert_eq!(local_target(Some(hostile)), "/agents", "{hostile:?}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn sessions_open_touch_close() {
        let s = Sessions::default();
        let (id, csrf) = s.open("h".into());
        assert_eq!(s.touch(&id).unwrap().csrf, csrf);
        s.forget_key("h");
        assert!(s.touch(&id).is_none());
        let (id, _) = s.open("h".into());
        s.close(&id);
        assert!(s.touch(&id).is_none());
    }
}
