//! An optional per-client request limit (`LEFORGE_RATE_LIMIT_PER_MINUTE`, off by default):
//! a fixed one-minute window per API key, or per client address for anonymous calls. Over
//! the limit a request gets 429 `RATE_LIMITED` with `Retry-After`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Windows of more clients than this are pruned when a new minute starts.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request; `Err(seconds)` says how long until the client may call again.
    pub fn check(&self, client: &str, now_secs: u64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let minute = now_secs / 60;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > MAX_TRACKED {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let entry = windows.entry(client.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= self.per_minute {
            return Err(60 - now_secs % 60);
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Who a request counts against: a hash of the presented key (never the key itself), else
/// the client address.
fn client_of(req: &Request) -> String {
    let headers = req.headers();
    let key = headers
        .get("x-api-key")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok());
    if let Some(key) = key {
        return format!("key:{}", hex::encode(&Sha256::digest(key.as_bytes())[..12]));
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| format!("ip:{}", c.0.ip()))
        .unwrap_or_else(|| "anonymous".to_string())
}

pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Health checks must never be throttled.
    if req.uri().path() == "/api/v1/health" {
        return next.run(req).await;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match state.rate_limiter.check(&client_of(&req), now) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many requests; retry in {retry_after} s"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_per_client() {
        let l = RateLimiter::new(2);
        assert!(l.check("a", 120).is_ok());
        assert!(l.check("a", 121).is_ok());
        assert_eq!(l.check("a", 130), Err(50));
        assert!(l.check("b", 130).is_ok(), "other clients are separate");
        assert!(l.check("a", 180).is_ok(), "a new minute resets");
        assert!(RateLimiter::new(0).check("a", 1).is_ok(), "0 means off");
    }
}
