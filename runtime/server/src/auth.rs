//! API-key authentication. Keys are random, shown once, and stored only as SHA-256 hashes;
//! a key is accepted as `X-API-Key: <key>` or `Authorization: Bearer <key>` on every route.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use leforge_core::{ApiKeyScope, Caller, NewApiKey, Store};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

pub const KEY_PREFIX_LEN: usize = 8;

/// A new plain key: `lf_` and 40 random alphanumerics (~238 bits).
pub fn generate_key() -> String {
    let random: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("lf_{random}")
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn new_api_key(name: &str, scope: ApiKeyScope, plain: &str) -> NewApiKey {
    NewApiKey {
        name: name.to_string(),
        prefix: plain.chars().take(KEY_PREFIX_LEN).collect(),
        key_hash: hash_key(plain),
        scope,
    }
}

/// The key a request presents, if any. A malformed `Authorization` header is an error
/// rather than "anonymous", so a misconfigured client hears about it.
fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the X-API-Key header is not valid text"))?
            .trim();
        if !key.is_empty() {
            return Ok(Some(key.to_string()));
        }
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "unsupported Authorization header: use 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            ));
        }
        return Ok(Some(token.trim().to_string()));
    }
    Ok(None)
}

pub async fn authenticate(store: &dyn Store, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(key) = presented_key(headers)? else {
        return Ok(Caller::Anonymous);
    };
    let found = store.find_active_api_key(&hash_key(&key)).await?;
    let Some(found) = found else {
        return Err(ApiError::unauthorized(
            "the API key is unknown or has been revoked",
        ));
    };
    // A key read back as used within the interval needs no statement at all: a write
    // statement, even one that changes nothing, waits for the single writer.
    let resolution = chrono::TimeDelta::seconds(leforge_core::api_key::LAST_USED_RESOLUTION_SECS);
    let recent = found
        .last_used_at
        .is_some_and(|at| chrono::Utc::now() - at < resolution);
    if !recent {
        if let Err(e) = store.touch_api_key(found.id).await {
            // Bookkeeping only: never fail a request because last_used_at could not be written.
            tracing::warn!(key_id = %found.id, error = %e, "could not record API key use");
        }
    }
    Ok(Caller::Key {
        id: found.id,
        scope: found.scope,
    })
}

/// How the rate limiter already authenticated the request (the caller, or why the key was
/// refused), so the key is looked up once: a made-up key costs one lookup, not two.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Result<Caller, ApiError>);

/// Whoever is calling; anonymous when no key is presented.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(outcome)) => outcome.clone()?,
            None => authenticate(state.store.as_ref(), &parts.headers).await?,
        };
        if caller == Caller::Anonymous {
            // No key: the admin UI's session cookie may stand in for one (CSRF-checked).
            if let Some(admin) = crate::ui::session::cookie_caller(state, parts).await? {
                return Ok(Auth(admin));
            }
        }
        Ok(Auth(caller))
    }
}

/// An admin key is required: 401 without a key, 403 with an invoke key.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        match caller {
            Caller::Anonymous => Err(ApiError::unauthorized(
                "an admin API key is required (X-API-Key or Authorization: Bearer)",
            )),
            c if c.is_admin() => Ok(Admin(c)),
            _ => Err(ApiError::forbidden("this action needs an admin API key")),
        }
    }
}

/// Ensures an admin can get in. `LEFORGE_ADMIN_KEY`, when set, is registered as an admin key
/// (once; a revoked one stays revoked). Otherwise, when the key table is empty — the first
/// start — a key is generated and returned so the caller can print it, once.
pub async fn bootstrap_admin(
    store: &dyn Store,
    configured: Option<&str>,
) -> Result<Option<String>, leforge_core::StoreError> {
    if let Some(key) = configured {
        let hash = hash_key(key);
        if store.find_active_api_key(&hash).await?.is_none() {
            match store
                .create_api_key(new_api_key(
                    "bootstrap (LEFORGE_ADMIN_KEY)",
                    ApiKeyScope::Admin,
                    key,
                ))
                .await
            {
                Ok(_) => {}
                // Already registered and later revoked: respect the revocation.
                Err(leforge_core::StoreError::Conflict { .. }) => {
                    tracing::warn!("LEFORGE_ADMIN_KEY has been revoked; it will not be accepted");
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(None);
    }
    let any_keys = !store
        .list_api_keys(leforge_core::PageRequest {
            limit: 1,
            after: None,
        })
        .await?
        .items
        .is_empty();
    if any_keys {
        return Ok(None);
    }
    let key = generate_key();
    store
        .create_api_key(new_api_key("bootstrap admin", ApiKeyScope::Admin, &key))
        .await?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let a = generate_key();
        assert!(a.starts_with("lf_") && a.len() == 43);
        assert_ne!(a, generate_key());
        assert_eq!(hash_key("x"), hash_key("x"));
        assert_eq!(hash_key("x").len(), 64);
        assert_eq!(new_api_key("n", ApiKeyScope::Admin, &a).prefix, &a[..8]);
    }

    #[test]
    fn presented_key_reads_both_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h).unwrap(), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap().as_deref(), Some("abc"));
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap().as_deref(), Some("xyz"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic Zm9v".parse().unwrap());
        assert!(presented_key(&basic).is_err());
    }
}
