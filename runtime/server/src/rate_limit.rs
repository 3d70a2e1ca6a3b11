//! An optional per-client request limit (`LEFORGE_RATE_LIMIT_PER_MINUTE`, off by default):
//! a fixed one-minute window per authenticated API key, or per client address for anonymous
//! calls. Over the limit a request gets 429 `RATE_LIMITED` with `Retry-After`.
//!
//! Buckets are keyed by who the caller *is*, never by what it presents: a made-up key is
//! counted under its client address, so inventing keys neither escapes the limit nor grows
//! the map. The map is a bounded LRU, so a flood of new clients evicts the coldest bucket in
//! O(1) instead of scanning.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hashlink::LruCache;
use leforge_core::Caller;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Clients tracked at once; the least recently seen is forgotten beyond this.
const MAX_TRACKED: usize = 100_000;

/// Whom a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Key(Uuid),
    Address(IpAddr),
    /// No key and no known address (in-process calls).
    Unknown,
}

impl Client {
    /// The key's id for a caller with a valid key, else its address.
    pub fn of(caller: &Caller, addr: Option<IpAddr>) -> Client {
        match (caller.key_id(), addr) {
            (Some(id), _) => Client::Key(id),
            (None, Some(ip)) => Client::Address(ip),
            (None, None) => Client::Unknown,
        }
    }
}

/// `key:<id>`, `ip:<address>` or `ip:unknown`: the form idempotency scopes are stored in,
/// so that rate limits and idempotency keys belong to the same caller.
impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Key(id) => write!(f, "key:{id}"),
            Client::Address(ip) => write!(f, "ip:{ip}"),
            Client::Unknown => f.write_str("ip:unknown"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    minute: u64,
    count: u32,
}

pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<LruCache<Client, Window>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        RateLimiter {
            per_minute,
            windows: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_minute > 0
    }

    /// Clients with a bucket now.
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Counts a request; `Err(seconds)` says how long until the client may call again.
    pub fn check(&self, client: Client, now_secs: u64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let minute = now_secs / 60;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = match windows.get_mut(&client) {
            Some(w) => w,
            None => {
                // At capacity, `insert` drops the least recently used bucket: O(1).
                windows.insert(client, Window { minute, count: 0 });
                windows.get_mut(&client).expect("just inserted")
            }
        };
        if window.minute != minute {
            *window = Window { minute, count: 0 };
        }
        if window.count >= self.per_minute {
            return Err(60 - now_secs % 60);
        }
        window.count += 1;
        Ok(())
    }
}

pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Health checks must never be throttled.
    if !state.rate_limiter.enabled() || req.uri().path() == "/api/v1/health" {
        return next.run(req).await;
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Authenticate once here; the `Auth` extractor reuses the result. A key that does not
    // authenticate counts against the address, and the route still answers 401 for it.
    let outcome = crate::auth::authenticate(state.store.as_ref(), req.headers()).await;
    let caller = *outcome.as_ref().unwrap_or(&Caller::Anonymous);
    req.extensions_mut()
        .insert(crate::auth::Authenticated(outcome));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match state.rate_limiter.check(Client::of(&caller, addr), now) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => ApiError::rate_limited(
            format!("too many requests; retry in {retry_after} s"),
            retry_after,
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Client {
        Client::Address(s.parse().unwrap())
    }

    #[test]
    fn fixed_window_per_client() {
        let l = RateLimiter::new(2);
        assert!(l.check(ip("10.0.0.1"), 120).is_ok());
        assert!(l.check(ip("10.0.0.1"), 121).is_ok());
        assert_eq!(l.check(ip("10.0.0.1"), 130), Err(50));
        assert!(
            l.check(ip("10.0.0.2"), 130).is_ok(),
            "other clients are separate"
        );
        assert!(l.check(ip("10.0.0.1"), 180).is_ok(), "a new minute resets");
        assert!(
            RateLimiter::new(0).check(ip("10.0.0.1"), 1).is_ok(),
            "0 means off"
        );
    }

    #[test]
    fn the_map_is_bounded_and_evicts_the_coldest() {
        let l = RateLimiter::with_capacity(1, 3);
        let hot = Client::Key(Uuid::new_v4());
        assert!(l.check(hot, 0).is_ok());
        for i in 0..1000 {
            // The hot client keeps calling (and stays limited) while new ones flood in.
            assert_eq!(l.check(hot, 1), Err(59));
            assert!(l.check(Client::Key(Uuid::from_u128(i)), 1).is_ok());
            assert!(l.tracked() <= 3);
        }
        assert_eq!(l.check(hot, 2), Err(58), "the hot bucket was never evicted");
    }
}
