//! `/api/v1/mcp-servers` (admin): MCP servers whose tools agents may use as
//! `mcp:<server>` or `mcp:<server>/<tool>`.
//!
//! Registration connects and lists the tools before anything is stored, so a server that
//! cannot be reached is a 400 with the connection error, never a broken entry. Header and
//! env values are secrets: stored, sent to the server, and never returned (the view shows
//! their names with a mask).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use leforge_core::mcp::{
    validate_name, McpServer, McpTool, McpTransport, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS,
};
use leforge_core::installed::SECRET_MASK as MASK;
use leforge_core::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::envelope::{ApiJson, Ok};
use crate::error::{ApiError, ApiResult};
use crate::forgehooks::name_taken;
use crate::state::AppState;

/// Body of `POST /api/v1/mcp-servers`: `url` (Streamable HTTP) or `command` (stdio, when the
/// operator allows it), not both.
/// No `Debug`: it holds header and env values.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerRequest {
    /// Lowercase words joined by single hyphens, e.g. `github-tools`; agents name it as
    /// `mcp:<name>` and the model sees its tools as `<name>__<tool>`.
    pub name: Option<String>,
    /// The Streamable HTTP endpoint, e.g. `https://mcp.example.com/mcp`.
    pub url: Option<String>,
    /// Sent with every request (e.g. `Authorization`); write-only. On update, a value equal
    /// to the mask keeps the stored one.
    pub headers: Option<BTreeMap<String, String>>,
    /// Per call (and per connect) time limit, 1–600000 ms (default 30000).
    pub timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
    /// Stdio: the program to start. Not sandboxed: it runs as the server's user.
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    /// Stdio: the child's whole environment (besides `PATH`); write-only like headers.
    pub env: Option<BTreeMap<String, String>>,
}

/// A registered MCP server as the API shows it: secrets masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpServerView {
    pub name: String,
    /// `http` or `stdio`.
    pub transport: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Header names, each with the mask for its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    pub timeout_ms: u64,
    pub enabled: bool,
    /// The tools as last listed by the server (on create, update or refresh).
    pub tools: Vec<McpTool>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub refreshed_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedMcpServer {
    pub name: String,
    pub deleted: bool,
}

fn masked(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.keys().map(|k| (k.clone(), MASK.to_string())).collect()
}

impl From<&McpServer> for McpServerView {
    fn from(s: &McpServer) -> Self {
        let (transport, url, headers, command, args, env) = match &s.transport {
            McpTransport::Http { url, headers } => (
                "http",
                Some(url.clone()),
                Some(masked(headers)),
                None,
                None,
                None,
            ),
            McpTransport::Stdio { command, args, env } => (
                "stdio",
                None,
                None,
                Some(command.clone()),
                Some(args.clone()),
                Some(masked(env)),
            ),
        };
        McpServerView {
            name: s.name.clone(),
            transport: transport.into(),
            url,
            headers,
            command,
            args,
            env,
            timeout_ms: s.timeout_ms,
            enabled: s.enabled,
            tools: s.tools.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            refreshed_at: s.refreshed_at,
        }
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid_fields("MCP server", errors)
}

/// A value equal to the mask keeps the stored value of that name (a form sends back what it
/// showed); any other value replaces it.
fn merge_secrets(
    new: BTreeMap<String, String>,
    old: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    new.into_iter()
        .map(|(k, v)| {
            let kept = (v == MASK)
                .then(|| old.and_then(|o| o.get(&k)).cloned())
                .flatten();
            (k.clone(), kept.unwrap_or(v))
        })
        .collect()
}

fn check_headers(headers: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if http::HeaderName::try_from(name.as_str()).is_err() {
            errors.push(FieldError::new(field, "is not a valid header name"));
        } else if [
            "host",
            "content-length",
            "content-type",
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
        ]
        .contains(&name.to_ascii_lowercase().as_str())
        {
            errors.push(FieldError::new(
                field,
                "is set by the server and cannot be configured",
            ));
        } else if http::HeaderValue::try_from(value.as_str()).is_err() {
            errors.push(FieldError::new(
                field,
                "has a value that is not a valid header value",
            ));
        }
    }
}

/// Builds the server a request describes (over `current` for an update), checking every
/// field and the URL's host; does not connect.
async fn build(
    state: &AppState,
    req: McpServerRequest,
    current: Option<&McpServer>,
) -> ApiResult<McpServer> {
    let mut errors = Vec::new();
    let name = match current {
        Some(c) => {
            if req.name.as_ref().is_some_and(|n| *n != c.name) {
                errors.push(FieldError::new(
                    "name",
                    "cannot be changed; register a new server",
                ));
            }
            c.name.clone()
        }
        None => req.name.clone().unwrap_or_default(),
    };
    if let Err(m) = validate_name(&name) {
        errors.push(FieldError::new("name", m));
    }
    let timeout_ms = req
        .timeout_ms
        .or(current.map(|c| c.timeout_ms))
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        errors.push(FieldError::new(
            "timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let stdio_fields = req.command.is_some() || req.args.is_some() || req.env.is_some();
    let http_fields = req.url.is_some() || req.headers.is_some();
    let transport = if stdio_fields && http_fields {
        errors.push(FieldError::new(
            "url",
            "give either url (and headers) or command (and args, env), not both",
        ));
        None
    } else if stdio_fields
        || matches!(current.map(|c| &c.transport), Some(McpTransport::Stdio { .. }) if !http_fields)
    {
        let (old_command, old_args, old_env) = match current.map(|c| &c.transport) {
            Some(McpTransport::Stdio { command, args, env }) => {
                (Some(command.clone()), Some(args.clone()), Some(env))
            }
            _ => (None, None, None),
        };
        if !state.forgehooks.mcp().stdio_allowed() {
            errors.push(FieldError::new(
                "command",
                "stdio MCP servers are off on this server; the operator enables them with --mcp-stdio-allowed (they are not sandboxed)",
            ));
        }
        let command = req.command.or(old_command).unwrap_or_default();
        if command.trim().is_empty() {
            errors.push(FieldError::new("command", "is required for a stdio server"));
        }
        let env = match req.env {
            Some(env) => merge_secrets(env, old_env),
            None => old_env.cloned().unwrap_or_default(),
        };
        Some(McpTransport::Stdio {
            command,
            args: req.args.or(old_args).unwrap_or_default(),
            env,
        })
    } else {
        let (old_url, old_headers) = match current.map(|c| &c.transport) {
            Some(McpTransport::Http { url, headers }) => (Some(url.clone()), Some(headers)),
            _ => (None, None),
        };
        let headers = match req.headers {
            Some(h) => merge_secrets(h, old_headers),
            None => old_headers.cloned().unwrap_or_default(),
        };
        check_headers(&headers, &mut errors);
        let url = req.url.or(old_url).unwrap_or_default();
        match reqwest::Url::parse(&url) {
            _ if url.is_empty() => errors.push(FieldError::new(
                "url",
                "is required (or command, for a stdio server)",
            )),
            Err(e) => errors.push(FieldError::new("url", format!("is not a valid URL: {e}"))),
            Result::Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                errors.push(FieldError::new("url", "must be http or https"))
            }
            Result::Ok(u) if !u.username().is_empty() || u.password().is_some() => errors.push(
                FieldError::new("url", "must not hold credentials; send them as headers"),
            ),
            Result::Ok(u) => {
                if let Err(refused) =
                    leforge_net::check_url(&u, state.forgehooks.mcp().private_allowed()).await
                {
                    errors.push(FieldError::new(
                        "url",
                        format!(
                            "{refused}; an operator may allow it with LEFORGE_MCP_ALLOWED_HOSTS"
                        ),
                    ));
                }
            }
        }
        Some(McpTransport::Http { url, headers })
    };
    match transport {
        Some(transport) if errors.is_empty() => {
            let now = chrono::Utc::now();
            Result::Ok(McpServer {
                name,
                transport,
                timeout_ms,
                enabled: req.enabled.or(current.map(|c| c.enabled)).unwrap_or(true),
                tools: current.map(|c| c.tools.clone()).unwrap_or_default(),
                created_at: current.map_or(now, |c| c.created_at),
                updated_at: now,
                refreshed_at: current.map_or(now, |c| c.refreshed_at),
            })
        }
        _ => Err(invalid(errors)),
    }
}

/// Connects and lists the tools into `server`; a failure is the 400 the issue names, with
/// the connection error under the transport's field.
async fn list_into(state: &AppState, server: &mut McpServer) -> ApiResult<()> {
    let field = match server.transport {
        McpTransport::Http { .. } => "url",
        McpTransport::Stdio { .. } => "command",
    };
    let tools = state
        .forgehooks
        .mcp()
        .list_tools(&server.transport, server.timeout_ms)
        .await
        .map_err(|e| {
            invalid(vec![FieldError::new(
                field,
                format!("could not list the server's tools: {e}"),
            )])
        })?;
    server.tools = tools;
    server.refreshed_at = chrono::Utc::now();
    Result::Ok(())
}

async fn find(state: &AppState, name: &str) -> ApiResult<McpServer> {
    state
        .store
        .get_mcp_server(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("MCP server '{name}' is not registered")))
}

/// Register an MCP server (admin): connects, lists its tools, and stores both.
#[utoipa::path(post, path = "/api/v1/mcp-servers", tag = "mcp-servers", request_body = McpServerRequest,
    responses((status = 201, description = "Registered, with the tools the server listed", body = McpServerView),
              (status = 400, description = "Invalid fields, a refused host, or a server that could not be reached"),
              (status = 409, description = "Name already in use")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(req): ApiJson<McpServerRequest>,
) -> ApiResult<Ok<McpServerView>> {
    let mut server = build(&state, req, None).await?;
    if state.store.get_mcp_server(&server.name).await?.is_some() {
        return Err(name_taken(
            "name",
            format!("an MCP server named '{}' is already registered", server.name),
        ));
    }
    if state.store.get_forgehook(&server.name).await?.is_some() {
        return Err(name_taken(
            "name",
            format!(
                "a ForgeHook '{}' is installed; its tools would share this server's tool names",
                server.name
            ),
        ));
    }
    list_into(&state, &mut server).await?;
    let stored = state.store.create_mcp_server(server).await?;
    state.forgehooks.mcp().forget(&stored.name).await;
    tracing::info!(mcp_server = %stored.name, tools = stored.tools.len(), "MCP server registered");
    Result::Ok(Ok::created(McpServerView::from(&stored)))
}

/// List registered MCP servers (admin).
#[utoipa::path(get, path = "/api/v1/mcp-servers", tag = "mcp-servers",
    responses((status = 200, description = "Every registered server, by name", body = [McpServerView])),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> ApiResult<Ok<Vec<McpServerView>>> {
    let servers = state.store.list_mcp_servers().await?;
    Result::Ok(Ok::new(servers.iter().map(McpServerView::from).collect()))
}

/// Read one MCP server (admin).
#[utoipa::path(get, path = "/api/v1/mcp-servers/{name}", tag = "mcp-servers",
    params(("name" = String, Path, description = "The server's name")),
    responses((status = 200, description = "The server", body = McpServerView),
              (status = 404, description = "Not registered")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Ok<McpServerView>> {
    let server = find(&state, &name).await?;
    Result::Ok(Ok::new(McpServerView::from(&server)))
}

/// Update an MCP server (admin): absent fields keep their value; an enabled server is
/// connected and its tools listed again.
#[utoipa::path(put, path = "/api/v1/mcp-servers/{name}", tag = "mcp-servers",
    params(("name" = String, Path, description = "The server's name")),
    request_body = McpServerRequest,
    responses((status = 200, description = "Updated", body = McpServerView),
              (status = 400, description = "Invalid fields, or a server that could not be reached"),
              (status = 404, description = "Not registered")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<McpServerRequest>,
) -> ApiResult<Ok<McpServerView>> {
    let current = find(&state, &name).await?;
    let mut server = build(&state, req, Some(&current)).await?;
    if server.enabled {
        list_into(&state, &mut server).await?;
    }
    let stored = state.store.replace_mcp_server(server).await?;
    state.forgehooks.mcp().forget(&stored.name).await;
    Result::Ok(Ok::new(McpServerView::from(&stored)))
}

/// Connect again and store the tools the server lists now (admin).
#[utoipa::path(post, path = "/api/v1/mcp-servers/{name}/refresh", tag = "mcp-servers",
    params(("name" = String, Path, description = "The server's name")),
    responses((status = 200, description = "The server with its current tools", body = McpServerView),
              (status = 400, description = "The server could not be reached; the stored tools are kept"),
              (status = 404, description = "Not registered")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn refresh(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Ok<McpServerView>> {
    let mut server = find(&state, &name).await?;
    list_into(&state, &mut server).await?;
    let stored = state.store.replace_mcp_server(server).await?;
    state.forgehooks.mcp().forget(&stored.name).await;
    Result::Ok(Ok::new(McpServerView::from(&stored)))
}

/// Remove an MCP server (admin). Agents that name it fail to start with
/// `TOOLS_UNAVAILABLE` until it is registered again or removed from them.
#[utoipa::path(delete, path = "/api/v1/mcp-servers/{name}", tag = "mcp-servers",
    params(("name" = String, Path, description = "The server's name")),
    responses((status = 200, description = "Removed", body = DeletedMcpServer),
              (status = 404, description = "Not registered")),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Ok<DeletedMcpServer>> {
    let gone = state
        .store
        .delete_mcp_server(&name)
        .await
        .map_err(|e| match e {
            leforge_core::StoreError::NotFound { .. } => {
                ApiError::not_found(format!("MCP server '{name}' is not registered"))
            }
            other => other.into(),
        })?;
    state.forgehooks.mcp().forget(&gone.name).await;
    tracing::info!(mcp_server = %gone.name, "MCP server removed");
    Result::Ok(Ok::new(DeletedMcpServer {
        name: gone.name,
        deleted: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_keep_the_stored_secret() {
        let old: BTreeMap<String, String> =
            [("Authorization".to_string(), "Bearer old".to_string())].into();
        let merged = merge_secrets(
            [
                ("Authorization".to_string(), MASK.to_string()),
                ("X-New".to_string(), "v".to_string()),
            ]
            .into(),
            Some(&old),
        );
        assert_eq!(merged["Authorization"], "Bearer old");
        assert_eq!(merged["X-New"], "v");
        // A mask with nothing stored under that name is taken as written.
        let fresh = merge_secrets([("X".to_string(), MASK.to_string())].into(), None);
        assert_eq!(fresh["X"], MASK);
    }

    #[test]
    fn the_view_never_shows_secret_values() {
        let t = chrono::Utc::now();
        let server = McpServer {
            name: "calc".into(),
            transport: McpTransport::Http {
                url: "https://mcp.example.com/mcp".into(),
                headers: [("Authorization".to_string(), "Bearer s3cret".to_string())].into(),
            },
            timeout_ms: 1000,
            enabled: true,
            tools: Vec::new(),
            created_at: t,
            updated_at: t,
            refreshed_at: t,
        };
        let text = serde_json::to_string(&McpServerView::from(&server)).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("\"Authorization\":\"********\""), "{text}");
    }
}
