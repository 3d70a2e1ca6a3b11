//! `POST/GET/DELETE /mcp`: the agents a caller may run, and for admin keys every enabled
//! ForgeHook endpoint, as MCP tools over Streamable HTTP (the transport is `leforge-mcp`).
//!
//! The caller is resolved on every HTTP request from its key, as on the REST API, so a
//! session carries no rights of its own. An agent's `tools/call` is a sync REST run (stored,
//! with steps, hooks and limits); a ForgeHook's is the admin's direct invoke.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use leforge_agent::RunEvent;
use leforge_core::tool::{ToolError, ToolExecutor};
use leforge_core::{Agent, Caller, RunStatus};
use leforge_mcp::{CallContext, McpService, McpTools};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject, Tool};
use rmcp::ErrorData;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::auth::{authenticate, Authenticated};
use crate::error::ApiError;
use crate::routes::agent_runs::{render_terminal, start_sync, RunRequest};
use crate::state::AppState;

/// The caller of one HTTP request, for the tools it carries.
#[derive(Clone)]
struct McpCaller(Caller);

/// The MCP endpoint in the OpenAPI document. Its body is JSON-RPC 2.0 (MCP's Streamable
/// HTTP transport), which OpenAPI cannot describe message by message; MCP clients use the
/// protocol's own discovery (`initialize`, `tools/list`).
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    description = "MCP over Streamable HTTP: a JSON-RPC 2.0 message (initialize, tools/list, tools/call, notifications) per POST, answered as application/json or text/event-stream. GET opens the server-to-client SSE stream of a session (Mcp-Session-Id); DELETE ends the session. Auth is the REST API's (Bearer key); without a key only public agents are listed. Agents are tools named after their slugs; admin keys also see every enabled ForgeHook endpoint as <forgehook>__<endpoint>.",
    request_body(content = Object, content_type = "application/json", description = "A JSON-RPC 2.0 request or notification"),
    responses((status = 200, description = "The JSON-RPC response, as JSON or an SSE stream"),
              (status = 202, description = "A notification was accepted"),
              (status = 401, description = "An unknown or revoked key"),
              (status = 403, description = "An Origin that is not allowed")),
    security((), ("bearer" = [])))]
#[allow(dead_code)] // Documentation only: `entry` serves the route.
pub(crate) async fn endpoint_doc() {}

/// The transport, built once per router.
pub fn service(state: &AppState) -> McpService {
    leforge_mcp::service(
        Arc::new(ServedTools {
            state: state.clone(),
        }),
        leforge_mcp::McpServerConfig {
            allowed_origins: state.config.mcp_allowed_origins.clone(),
            page_size: 100,
            server_name: "leforge".into(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            instructions: "Each tool named after an agent runs that agent: give the instruction \
                in `input` and any data in `data`. Tools named <forgehook>__<endpoint> call one \
                ForgeHook endpoint directly."
                .into(),
            shutdown: state.runner.stopped_token(),
        },
    )
}

/// Authenticates the request as the REST API does (a made-up or revoked key is a 401 with
/// the usual envelope, before any JSON-RPC), then hands it to the transport.
pub async fn entry(
    State(state): State<AppState>,
    service: McpService,
    mut req: Request,
) -> Response {
    let caller = match req.extensions().get::<Authenticated>() {
        Some(Authenticated(outcome)) => outcome.clone(),
        None => authenticate(state.store.as_ref(), req.headers()).await,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(McpCaller(caller));
    match service.oneshot(req).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

struct ServedTools {
    state: AppState,
}

fn caller_of(parts: &http::request::Parts) -> Result<&Caller, ErrorData> {
    parts
        .extensions
        .get::<McpCaller>()
        .map(|c| &c.0)
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))
}

/// `?names=underscore` lists every `-` of a name as `_`, for clients whose tool names may
/// not hold a hyphen; calls accept either spelling.
fn underscored(parts: &http::request::Parts) -> bool {
    parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "names=underscore"))
}

fn spelled(name: String, underscore: bool) -> String {
    if underscore {
        name.replace('-', "_")
    } else {
        name
    }
}

/// An API error as a JSON-RPC one: the request's fault is -32602 with the field details,
/// anything else -32603 with the code and the message a REST caller would get (never an
/// internal detail, which is logged).
fn rpc_error(e: ApiError) -> ErrorData {
    e.log();
    let mut data = json!({"code": e.code});
    if let Some(details) = &e.details {
        data["details"] = details.clone();
    }
    if e.status == http::StatusCode::BAD_REQUEST {
        ErrorData::invalid_params(e.message, Some(data))
    } else {
        ErrorData::internal_error(e.message, Some(data))
    }
}

fn object_schema(schema: &Value) -> Option<Arc<JsonObject>> {
    let object = schema.as_object()?;
    (object.get("type") == Some(&json!("object"))).then(|| Arc::new(object.clone()))
}

fn agent_input_schema() -> Arc<JsonObject> {
    let schema = json!({
        "type": "object",
        "properties": {
            "input": {"type": "string", "description": "The instruction, in plain words."},
            "data": {"type": "object", "description": "Data for the instruction."}
        },
        "required": ["input"],
        "additionalProperties": false
    });
    Arc::new(schema.as_object().cloned().unwrap_or_default())
}

fn agent_tool(agent: &Agent, underscore: bool) -> Tool {
    let description = agent
        .description
        .clone()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| format!("Runs the agent '{}'.", agent.name));
    let mut tool = Tool::new_with_raw(
        spelled(agent.slug.clone(), underscore),
        Some(description.into()),
        agent_input_schema(),
    )
    .with_title(agent.name.clone());
    // Advertised only when it describes an object: MCP's structured content is one, and a
    // client checks results against the schema it was given.
    if let Some(schema) = agent.output_schema.as_ref().and_then(object_schema) {
        tool = tool.with_raw_output_schema(schema);
    }
    tool
}

/// A tool's output as an MCP result: an object is the structured content (and its JSON the
/// text); any other value is the text alone, since structured content must be an object.
fn output_result(output: Value) -> CallToolResult {
    if output.is_object() {
        CallToolResult::structured(output)
    } else {
        CallToolResult::success(vec![ContentBlock::text(output.to_string())])
    }
}

fn failure(code: &str, message: &str) -> CallToolResult {
    CallToolResult::structured_error(json!({"code": code, "message": message}))
}

/// What agent arguments may hold: `input` (required) and `data`, nothing else.
fn run_request(arguments: JsonObject) -> Result<RunRequest, ErrorData> {
    let mut problems = Vec::new();
    for key in arguments.keys() {
        if key != "input" && key != "data" {
            problems.push(json!({"field": key, "message": "is not an argument of an agent tool; use input and data"}));
        }
    }
    let input = match arguments.get("input") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) | None => {
            problems
                .push(json!({"field": "input", "message": "is required and must not be blank"}));
            None
        }
        Some(_) => {
            problems.push(json!({"field": "input", "message": "must be a string"}));
            None
        }
    };
    let data = match arguments.get("data") {
        None | Some(Value::Null) => None,
        Some(d @ Value::Object(_)) => Some(d.clone()),
        Some(_) => {
            problems.push(json!({"field": "data", "message": "must be a JSON object"}));
            None
        }
    };
    if !problems.is_empty() {
        return Err(ErrorData::invalid_params(
            "invalid arguments for an agent tool",
            Some(json!({"code": "VALIDATION_ERROR", "details": problems})),
        ));
    }
    Ok(RunRequest {
        input,
        data,
        mode: Some("sync".into()),
        ..RunRequest::default()
    })
}

fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown tool '{name}': list the tools this key may call with tools/list"),
        Some(json!({"tool": name})),
    )
}

impl ServedTools {
    /// The agent a tool name means, in either spelling, if this caller may run it; one it may
    /// not is unknown, as on `tools/list`.
    async fn agent(&self, caller: &Caller, name: &str) -> Result<Option<Agent>, ErrorData> {
        let store = &self.state.store;
        let mut found = store
            .find_agent(name)
            .await
            .map_err(|e| rpc_error(e.into()))?;
        if found.is_none() && name.contains('_') {
            found = store
                .find_agent(&name.replace('_', "-"))
                .await
                .map_err(|e| rpc_error(e.into()))?;
        }
        Ok(found.filter(|a| caller.can_run_agent(a)))
    }

    async fn run_agent(
        &self,
        parts: &http::request::Parts,
        caller: &Caller,
        agent: &Agent,
        arguments: JsonObject,
        cx: CallContext,
    ) -> Result<CallToolResult, ErrorData> {
        let req = run_request(arguments)?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let (run_id, mut events, mut task) =
            start_sync(&self.state, caller, agent, &req, &parts.headers, ip)
                .await
                .map_err(rpc_error)?;
        let mut events_open = true;
        let mut cancel_asked = false;
        let finished = loop {
            tokio::select! {
                done = &mut task => break done,
                event = events.recv(), if events_open => match event {
                    Ok(RunEvent::StepCompleted { step, tool, action, error, .. }) => {
                        if let Some(progress) = &cx.progress {
                            let outcome = if error.is_some() { "failed" } else { "done" };
                            progress.advance(format!("step {step}: {tool} {action} {outcome}")).await;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => events_open = false,
                },
                () = cx.cancelled.cancelled(), if !cancel_asked => {
                    cancel_asked = true;
                    // The run ends `cancelled` and keeps its steps; the SDK sends no answer
                    // to a cancelled request, so there is nobody to tell.
                    if let Err(e) = self.state.runner.cancel(run_id).await {
                        tracing::debug!(run_id = %run_id, error = %e, "MCP cancel of a run that already ended");
                    }
                }
            }
        };
        let run = finished
            .map_err(|e| rpc_error(ApiError::internal(format!("run task: {e}"))))?
            .map_err(|e| rpc_error(e.into()))?;
        let result = if run.status == RunStatus::Completed {
            output_result(run.output.clone().unwrap_or(Value::Null))
        } else {
            let (_, body) = render_terminal(&run);
            failure(
                body["error"]["code"].as_str().unwrap_or("RUN_FAILED"),
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("the run failed"),
            )
        };
        let mut meta = JsonObject::new();
        meta.insert("run_id".into(), json!(run.id));
        meta.insert("status".into(), json!(run.status));
        Ok(result.with_meta(Some(MetaObject(meta))))
    }

    /// The admin's direct invoke of `<forgehook>__<endpoint>`.
    async fn invoke(&self, name: &str, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let Some((hook, endpoint)) = name.split_once("__") else {
            return Err(unknown_tool(name));
        };
        // One lookup by id (two for the underscore spelling), not a listing per call.
        let store = &self.state.store;
        let mut installed = store
            .get_forgehook(hook)
            .await
            .map_err(|e| rpc_error(e.into()))?;
        if installed.is_none() && hook.contains('_') {
            installed = store
                .get_forgehook(&hook.replace('_', "-"))
                .await
                .map_err(|e| rpc_error(e.into()))?;
        }
        let Some(installed) = installed else {
            return Err(unknown_tool(name));
        };
        if !installed
            .manifest
            .endpoints
            .iter()
            .any(|e| e.name == endpoint)
        {
            return Err(unknown_tool(name));
        }
        match self
            .state
            .forgehooks
            .invoke(&installed.id, endpoint, Value::Object(arguments))
            .await
        {
            Ok(out) => Ok(output_result(out.output)),
            Err(ToolError::InvalidInput { problems }) => Err(ErrorData::invalid_params(
                format!("invalid arguments: {}", problems.join("; ")),
                Some(json!({"code": "INVALID_INPUT", "details": problems})),
            )),
            Err(e @ ToolError::Internal { .. }) => Err(rpc_error(ApiError::internal(e))),
            Err(e) => Ok(failure(e.code().as_str(), &e.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl McpTools for ServedTools {
    async fn list(&self, parts: &http::request::Parts) -> Result<Vec<Tool>, ErrorData> {
        let caller = caller_of(parts)?;
        let underscore = underscored(parts);
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let request = leforge_core::PageRequest::from_params(
                Some(leforge_core::page::MAX_LIMIT),
                cursor.as_deref(),
            )
            .map_err(|e| rpc_error(ApiError::internal(e)))?;
            let page = self
                .state
                .store
                .list_agents(caller.agent_visibility(), request)
                .await
                .map_err(|e| rpc_error(e.into()))?;
            tools.extend(
                page.items
                    .iter()
                    .filter(|a| caller.can_run_agent(a))
                    .map(|a| agent_tool(a, underscore)),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if caller.is_admin() {
            for hook in self.state.forgehooks.list().await.map_err(rpc_error)? {
                if !hook.enabled {
                    continue;
                }
                for endpoint in &hook.manifest.endpoints {
                    let name = spelled(format!("{}__{}", hook.id, endpoint.name), underscore);
                    let input = object_schema(&endpoint.input_schema).unwrap_or_else(|| {
                        Arc::new(JsonObject::from_iter([("type".into(), json!("object"))]))
                    });
                    let mut tool =
                        Tool::new_with_raw(name, Some(endpoint.description.clone().into()), input);
                    if let Some(output) = object_schema(&endpoint.output_schema) {
                        tool = tool.with_raw_output_schema(output);
                    }
                    tools.push(tool);
                }
            }
        }
        Ok(tools)
    }

    async fn call(
        &self,
        parts: &http::request::Parts,
        name: &str,
        arguments: JsonObject,
        cx: CallContext,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(parts)?;
        if let Some(agent) = self.agent(caller, name).await? {
            return self.run_agent(parts, caller, &agent, arguments, cx).await;
        }
        // ForgeHook endpoints are the admin's: an invoke key neither sees nor calls them.
        if caller.is_admin() {
            return self.invoke(name, arguments).await;
        }
        Err(unknown_tool(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn agent_arguments_are_input_and_data_only() {
        let ok = run_request(args(json!({"input": "total it", "data": {"a": 1}}))).unwrap();
        assert_eq!(ok.input.as_deref(), Some("total it"));
        assert_eq!(ok.data, Some(json!({"a": 1})));
        assert_eq!(ok.mode.as_deref(), Some("sync"));

        let err = run_request(args(json!({"input": "", "data": [1], "extra": true}))).unwrap_err();
        assert_eq!(err.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        let fields: Vec<_> = err.data.unwrap()["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(fields, ["extra", "input", "data"]);
    }

    #[test]
    fn only_object_outputs_are_structured() {
        let object = output_result(json!({"total": 3}));
        assert_eq!(object.structured_content, Some(json!({"total": 3})));
        let text = output_result(json!("three"));
        assert_eq!(text.structured_content, None);
        assert_eq!(text.content.len(), 1);
        assert_eq!(
            serde_json::to_value(&text.content[0]).unwrap()["text"],
            "\"three\""
        );
    }
}
