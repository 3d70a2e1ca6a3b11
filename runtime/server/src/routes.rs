//! HTTP routes, one module per resource. Handlers translate HTTP to calls on core and the
//! backends; rules about agents, keys and runs live in core, not here.

pub mod agent_runs;
pub mod agents;
pub mod api_keys;
pub mod forgehooks;
pub mod health;
pub mod llm;
pub mod mcp_servers;
pub mod runs;
pub mod scripts;

use leforge_core::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// `?limit=&cursor=` for every list route.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct PageParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        PageRequest::from_params(self.limit, self.cursor.as_deref()).map_err(|message| {
            let field = if message.starts_with("limit") {
                "limit"
            } else {
                "cursor"
            };
            ApiError::invalid_field(field, message.trim_start_matches(field).trim().to_string())
        })
    }
}
