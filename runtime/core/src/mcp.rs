//! MCP servers registered as tool sources of agents (issue 30): what is stored about one,
//! and how an agent's `mcp:<server>[/<tool>]` entries name them.
//!
//! To the agent loop an MCP server is one more tool set: [`McpServer::manifest`] describes
//! its tools as the endpoints of a manifest whose id is `mcp:<server>`, so the loop, the
//! trace and the metrics need no second code path.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::forgehook::{
    Capabilities, Endpoint, Limits, Manifest, RuntimeKind, DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY_MB,
};

/// What an agent's `tools` entry starts with to name an MCP server.
pub const TOOL_PREFIX: &str = "mcp:";
/// A call's time limit when the registration sets none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;
pub const MAX_NAME_LEN: usize = 40;

/// How the server reaches an MCP server. `Debug` shows header and env names only: a value
/// must not reach a log line by way of a `{:?}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum McpTransport {
    /// Streamable HTTP. Header values are secrets: stored, sent, never returned.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// A child process speaking MCP on stdin/stdout. Not sandboxed; the operator must allow
    /// it (`--mcp-stdio-allowed`). Env values are secrets like header values.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for McpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McpTransport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
            McpTransport::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One tool an MCP server listed, as stored at registration or refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct McpTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<Value>,
}

/// A registered MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    pub name: String,
    #[serde(flatten)]
    pub transport: McpTransport,
    pub timeout_ms: u64,
    pub enabled: bool,
    pub tools: Vec<McpTool>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the tool list was last read from the server.
    pub refreshed_at: DateTime<Utc>,
}

impl McpServer {
    /// The manifest id agents' steps record for this server's tools.
    pub fn tool_id(&self) -> String {
        format!("{TOOL_PREFIX}{}", self.name)
    }

    pub fn tool(&self, name: &str) -> Option<&McpTool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// This server's tools (all, or the named ones) as a manifest the agent loop offers like
    /// a ForgeHook's: the model sees `<server>__<tool>` (see [`Manifest::tool_name`]).
    pub fn manifest(&self, only: Option<&[String]>) -> Manifest {
        let endpoints = self
            .tools
            .iter()
            .filter(|t| only.is_none_or(|names| names.contains(&t.name)))
            .map(|t| Endpoint {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
                output_schema: t
                    .output_schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({})),
                method: None,
                path: None,
                schema_missing: false,
            })
            .collect();
        Manifest {
            id: self.tool_id(),
            name: self.name.clone(),
            version: "0.0.0".into(),
            description: format!("MCP server {}", self.name),
            // An external service the server only calls, as a gateway is; the executor
            // dispatches on the `mcp:` id before the runtime kind matters.
            runtime: RuntimeKind::Gateway,
            category: "mcp".into(),
            tags: Vec::new(),
            author: String::new(),
            endpoints,
            capabilities: Capabilities {
                allowed_hosts: Vec::new(),
                config: Vec::new(),
                limits: Limits {
                    timeout_ms: self.timeout_ms,
                    memory_mb: DEFAULT_MEMORY_MB,
                    max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
                },
            },
            image: None,
            port: None,
            host_port: None,
            base_path: String::new(),
            health_check: None,
            resources: None,
            environment: Vec::new(),
            lifecycle: None,
            gateway: None,
        }
    }
}

/// An agent's `tools` entry that names an MCP server: `mcp:<server>` or `mcp:<server>/<tool>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRef<'a> {
    pub server: &'a str,
    pub tool: Option<&'a str>,
}

/// `Some` when `entry` is an `mcp:` entry (well-formed or not: the caller reports it).
pub fn parse_tool_ref(entry: &str) -> Option<ToolRef<'_>> {
    let rest = entry.strip_prefix(TOOL_PREFIX)?;
    Some(match rest.split_once('/') {
        Some((server, tool)) => ToolRef {
            server,
            tool: Some(tool),
        },
        None => ToolRef {
            server: rest,
            tool: None,
        },
    })
}

/// Lowercase letters, digits, single hyphens; no `__`, which separates server and tool in
/// the names the model sees.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    // A trailing hyphen gets its own message below.
    if !crate::forgehook::is_words(name.strip_suffix('-').unwrap_or(name), '-') {
        return Err(
            "must be lowercase letters and digits in words separated by single hyphens, starting with a letter (e.g. github-tools)"
                .into(),
        );
    }
    if name.ends_with('-') {
        return Err("must not end with a hyphen".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> McpServer {
        let t = Utc::now();
        let tool = |name: &str| McpTool {
            name: name.into(),
            description: format!("{name} things"),
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: None,
        };
        McpServer {
            name: "calc".into(),
            transport: McpTransport::Http {
                url: "https://mcp.example.com/mcp".into(),
                headers: BTreeMap::new(),
            },
            timeout_ms: 1234,
            enabled: true,
            tools: vec![tool("add"), tool("fail")],
            created_at: t,
            updated_at: t,
            refreshed_at: t,
        }
    }

    #[test]
    fn manifest_offers_server_tools_under_the_server_name() {
        let m = server().manifest(None);
        assert_eq!(m.id, "mcp:calc");
        assert_eq!(m.tool_name("add"), "calc__add");
        assert_eq!(m.endpoints.len(), 2);
        assert_eq!(m.capabilities.limits.timeout_ms, 1234);
        let only = server().manifest(Some(&["fail".to_string()]));
        let names: Vec<_> = only.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["fail"]);
    }

    #[test]
    fn tool_refs_parse() {
        assert_eq!(parse_tool_ref("echo"), None);
        assert_eq!(
            parse_tool_ref("mcp:calc"),
            Some(ToolRef {
                server: "calc",
                tool: None
            })
        );
        assert_eq!(
            parse_tool_ref("mcp:calc/add"),
            Some(ToolRef {
                server: "calc",
                tool: Some("add")
            })
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("github-tools").is_ok());
        assert!(validate_name("a1").is_ok());
        for bad in ["", "Calc", "1calc", "a__b", "a--b", "a-", "a_b", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_secret_values() {
        let t = McpTransport::Http {
            url: "https://x/mcp".into(),
            headers: [("Authorization".to_string(), "Bearer s3cret".to_string())].into(),
        };
        let text = format!("{t:?}");
        assert!(
            text.contains("Authorization") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn transport_is_tagged_and_flat() {
        let original = server();
        let v = serde_json::to_value(&original).unwrap();
        assert_eq!(v["transport"], "http");
        assert_eq!(v["url"], "https://mcp.example.com/mcp");
        let back: McpServer = serde_json::from_value(v).unwrap();
        assert_eq!(back, original);
    }
}
