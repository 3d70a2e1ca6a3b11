//! Registered MCP servers as tools of agents (issue 30): the agent loop sees each as a
//! manifest with id `mcp:<server>` (see `leforge_core::mcp`); this module resolves an
//! agent's `mcp:` entries to those manifests and executes their calls over the pooled
//! connections of `leforge_mcp::client`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leforge_core::forgehook::Manifest;
use leforge_core::mcp::{parse_tool_ref, McpServer, McpTool, McpTransport};
use leforge_core::tool::{ToolError, ToolOutput, UnavailableTool};
use leforge_core::{FieldError, Store};
use leforge_mcp::client::{call_output, McpClientError, McpClients};
use serde_json::Value;

/// The guest code a tool result with `isError` becomes (the model sees its text).
pub const MCP_TOOL_ERROR: &str = "MCP_TOOL_ERROR";
/// The guest code of a JSON-RPC error answer to a call.
pub const MCP_REJECTED: &str = "MCP_REJECTED";

/// A registration as runs and calls use it, built once per version of the record rather
/// than per call: its tools' compiled input schemas, whether its transport may be used, and
/// the manifests of the agent entries that name it.
struct Loaded {
    server: McpServer,
    /// Identifies the registration to the connection pool (a change reconnects).
    version: String,
    validators: HashMap<String, Arc<jsonschema::Validator>>,
    /// The transport checked against the operator's address and stdio rules, which do not
    /// change while the server runs.
    usable: Result<(), String>,
    /// By the entry's tool (`None`: `mcp:<server>`, every tool). The same `Arc` for an
    /// unchanged server keeps the agent loop's tool-list cache warm.
    manifests: Mutex<HashMap<Option<String>, Arc<Manifest>>>,
}

impl Loaded {
    fn new(server: McpServer, usable: Result<(), String>) -> Loaded {
        let validators = server
            .tools
            .iter()
            .filter_map(|t| {
                // A schema the validator cannot compile checks nothing, as for a tool
                // without one: the server still checks its own arguments.
                let v = jsonschema::validator_for(&t.input_schema).ok()?;
                Some((t.name.clone(), Arc::new(v)))
            })
            .collect();
        Loaded {
            version: server.updated_at.to_rfc3339(),
            server,
            validators,
            usable,
            manifests: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest of `mcp:<server>` (`tool` None) or `mcp:<server>/<tool>`.
    fn manifest(&self, tool: Option<&str>) -> Arc<Manifest> {
        let mut manifests = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        manifests
            .entry(tool.map(str::to_string))
            .or_insert_with(|| {
                let only = tool.map(|t| vec![t.to_string()]);
                Arc::new(self.server.manifest(only.as_deref()))
            })
            .clone()
    }
}

#[derive(Clone)]
pub struct McpRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clients: McpClients,
    private_allowed: leforge_net::PrivateAllowed,
    stdio_allowed: bool,
    /// Servers as last read, by name: calls of a run use the record its start resolved.
    servers: Mutex<HashMap<String, Arc<Loaded>>>,
}

impl McpRegistry {
    pub fn new(store: Arc<dyn Store>, allowed_hosts: &[String], stdio_allowed: bool) -> Self {
        let private_allowed = leforge_net::PrivateAllowed::new(allowed_hosts.iter().cloned());
        let http = reqwest::Client::builder()
            // A redirect could lead past the address check; MCP servers have no need of one.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(leforge_net::GuardedResolver::new(private_allowed.clone()))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        McpRegistry {
            inner: Arc::new(Inner {
                store,
                clients: McpClients::new(http),
                private_allowed,
                stdio_allowed,
                servers: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn stdio_allowed(&self) -> bool {
        self.inner.stdio_allowed
    }

    pub fn private_allowed(&self) -> &leforge_net::PrivateAllowed {
        &self.inner.private_allowed
    }

    /// Connects afresh and lists the server's tools, as registration and refresh store them.
    pub async fn list_tools(
        &self,
        transport: &McpTransport,
        timeout_ms: u64,
    ) -> Result<Vec<McpTool>, String> {
        self.check(transport).map_err(|e| e.to_string())?;
        let tools = self
            .inner
            .clients
            .list_tools(transport, Duration::from_millis(timeout_ms))
            .await
            .map_err(|e| e.to_string())?;
        Ok(tools
            .into_iter()
            .map(|t| McpTool {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
                output_schema: t.output_schema.map(|s| Value::Object((*s).clone())),
            })
            .collect())
    }

    /// Forgets what is cached about `name` and closes its connection (it changed or went).
    pub async fn forget(&self, name: &str) {
        self.inner.lock_servers().remove(name);
        self.inner.clients.disconnect(name).await;
    }

    /// Remembers a server as just read; an unchanged registration keeps what was compiled.
    fn remember(&self, server: McpServer) -> Arc<Loaded> {
        let kept = |servers: &HashMap<String, Arc<Loaded>>| {
            servers
                .get(&server.name)
                .filter(|l| l.server.updated_at == server.updated_at)
                .cloned()
        };
        if let Some(kept) = kept(&self.inner.lock_servers()) {
            return kept;
        }
        // Compiled outside the lock, which every call of every MCP server takes.
        let usable = self.check(&server.transport).map_err(|e| e.to_string());
        let loaded = Arc::new(Loaded::new(server, usable));
        self.inner
            .lock_servers()
            .insert(loaded.server.name.clone(), loaded.clone());
        loaded
    }

    /// Whether the operator's rules let the server use `transport`.
    fn check(&self, transport: &McpTransport) -> Result<(), McpClientError> {
        match transport {
            McpTransport::Http { url, .. } => {
                // The guarded resolver never sees a literal address, so those are checked
                // here.
                let host = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                leforge_net::check_literal(&host, &self.inner.private_allowed)
                    .map_err(|e| McpClientError::Config(e.to_string()))
            }
            McpTransport::Stdio { .. } if !self.inner.stdio_allowed => {
                Err(McpClientError::Config(
                    "stdio MCP servers are disabled on this server (--mcp-stdio-allowed)".into(),
                ))
            }
            McpTransport::Stdio { .. } => Ok(()),
        }
    }

    /// The manifest of one of an agent's `mcp:` entries, or why it cannot be used.
    pub async fn resolve(&self, entry: &str) -> Result<Arc<Manifest>, UnavailableTool> {
        let unavailable = |reason: String| UnavailableTool {
            id: entry.to_string(),
            reason,
        };
        let Some(r) = parse_tool_ref(entry) else {
            return Err(unavailable("not an MCP entry".into()));
        };
        let server = match self.inner.store.get_mcp_server(r.server).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(unavailable("MCP server not registered".into())),
            Err(_) => return Err(unavailable("unknown (database error)".into())),
        };
        if !server.enabled {
            return Err(unavailable("MCP server disabled".into()));
        }
        if let Some(tool) = r.tool {
            if server.tool(tool).is_none() {
                return Err(unavailable(format!("the MCP server has no tool '{tool}'")));
            }
        }
        Ok(self.remember(server).manifest(r.tool))
    }

    /// Problems with an agent's `mcp:` entries, each under `tools[i]`, for agent validation.
    pub async fn check_entries(&self, tools: &[String]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut whole: Vec<&str> = Vec::new();
        for (i, entry) in tools.iter().enumerate() {
            let Some(r) = parse_tool_ref(entry) else {
                continue;
            };
            let field = format!("tools[{i}]");
            if r.server.is_empty() || r.tool == Some("") {
                errors.push(FieldError::new(
                    field,
                    format!("'{entry}' must be mcp:<server> or mcp:<server>/<tool>"),
                ));
                continue;
            }
            match self.inner.store.get_mcp_server(r.server).await {
                Ok(Some(server)) => {
                    if let Some(tool) = r.tool {
                        if server.tool(tool).is_none() {
                            errors.push(FieldError::new(
                                field,
                                format!("MCP server '{}' has no tool '{tool}'", r.server),
                            ));
                        }
                    } else {
                        whole.push(r.server);
                    }
                }
                Ok(None) => errors.push(FieldError::new(
                    field,
                    format!("'{entry}' names no registered MCP server"),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read MCP servers");
                    errors.push(FieldError::new(field, "could not be checked; try again"));
                }
            }
        }
        // `mcp:x` already offers every tool of x: listing one again would offer it twice.
        for (i, entry) in tools.iter().enumerate() {
            if let Some(r) = parse_tool_ref(entry) {
                if r.tool.is_some() && whole.contains(&r.server) {
                    errors.push(FieldError::new(
                        format!("tools[{i}]"),
                        format!("'{entry}' is already included by 'mcp:{}'", r.server),
                    ));
                }
            }
        }
        errors
    }

    /// Calls `tool` of server `id` (`mcp:<server>`), validating the arguments against the
    /// tool's input schema first.
    pub async fn invoke(
        &self,
        id: &str,
        tool: &str,
        input: Value,
    ) -> Result<ToolOutput, ToolError> {
        let started = Instant::now();
        let name = id
            .strip_prefix(leforge_core::mcp::TOOL_PREFIX)
            .unwrap_or(id);
        let loaded = self.server(name).await?;
        let server = &loaded.server;
        if server.tool(tool).is_none() {
            return Err(ToolError::not_found(format!(
                "MCP server '{name}' has no tool '{tool}'"
            )));
        }
        if !input.is_object() {
            return Err(ToolError::invalid_input(
                "the arguments must be a JSON object",
            ));
        }
        if let Some(validator) = loaded.validators.get(tool) {
            ToolError::check_schema(
                validator
                    .iter_errors(&input)
                    .map(|e| (e.instance_path().to_string(), e)),
            )?;
        }
        let Value::Object(arguments) = input else {
            unreachable!("checked above")
        };
        if let Err(message) = &loaded.usable {
            return Err(ToolError::Unavailable {
                message: message.clone(),
            });
        }
        let timeout_ms = server.timeout_ms;
        let result = self
            .inner
            .clients
            .call(
                name,
                &loaded.version,
                &server.transport,
                tool,
                arguments,
                Duration::from_millis(timeout_ms),
            )
            .await
            .map_err(|e| match e {
                McpClientError::Timeout(_) => ToolError::Timeout { timeout_ms },
                McpClientError::Rejected(message) => ToolError::guest(MCP_REJECTED, &message),
                other => ToolError::Unavailable {
                    message: format!("MCP server '{name}': {other}"),
                },
            })?;
        let output =
            call_output(&result).map_err(|message| ToolError::guest(MCP_TOOL_ERROR, &message))?;
        let size = serde_json::to_vec(&output).map(|v| v.len()).unwrap_or(0) as u64;
        let limit = leforge_core::forgehook::DEFAULT_MAX_OUTPUT_BYTES;
        if size > limit {
            return Err(ToolError::OutputTooLarge { size, limit });
        }
        Ok(ToolOutput {
            output,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn server(&self, name: &str) -> Result<Arc<Loaded>, ToolError> {
        if let Some(s) = self.inner.lock_servers().get(name).cloned() {
            return Ok(s);
        }
        match self.inner.store.get_mcp_server(name).await {
            Ok(Some(s)) if s.enabled => Ok(self.remember(s)),
            Ok(Some(_)) => Err(ToolError::not_found(format!(
                "MCP server '{name}' is disabled"
            ))),
            Ok(None) => Err(ToolError::not_found(format!(
                "MCP server '{name}' is not registered"
            ))),
            Err(e) => Err(ToolError::Internal {
                message: e.to_string(),
            }),
        }
    }
}

impl Inner {
    fn lock_servers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
