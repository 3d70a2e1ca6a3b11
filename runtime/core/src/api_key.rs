//! API keys. Only a SHA-256 hash of a key is ever stored; the plain key exists once, in the
//! response that created it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `last_used_at` is kept to this resolution: a key is written back as used at most once
/// per interval, so authentication (on every request) does not turn reads into writes.
pub const LAST_USED_RESOLUTION_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// May do everything.
    Admin,
    /// May list, read and run the agents it is allowed to, and read its own runs.
    Invoke,
}

impl ApiKeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Admin => "admin",
            ApiKeyScope::Invoke => "invoke",
        }
    }

    pub fn parse(s: &str) -> Option<ApiKeyScope> {
        match s {
            "admin" => Some(ApiKeyScope::Admin),
            "invoke" => Some(ApiKeyScope::Invoke),
            _ => None,
        }
    }
}

/// A stored key, without its hash: nothing that leaves the store layer can reveal the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The first 8 characters of the key, for recognising it in a list.
    pub prefix: String,
    pub scope: ApiKeyScope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    /// Lowercase hex SHA-256 of the plain key.
    pub key_hash: String,
    pub scope: ApiKeyScope,
}
