//! What every adapter needs before serializing: the resolved model, the per-request name
//! map, and the history grouped into turns with each assistant turn's results paired to
//! its calls. Pairing is checked here once so no adapter can send a history its provider
//! would reject with a 400.

use std::collections::HashMap;

use leforge_core::llm::MAX_TOOLS;
use leforge_core::{
    ChatRequest, ChatResponse, LlmError, Message, StopReason, ToolCall, ToolResult, ToolSpec, Usage,
};
use serde_json::{Map, Value};

use crate::config::ModelAliases;
use crate::names::NameMap;

pub(crate) enum Turn<'a> {
    User(&'a str),
    Assistant {
        text: &'a str,
        calls: &'a [ToolCall],
        /// One per call, in call order.
        results: Vec<&'a ToolResult>,
    },
}

pub(crate) struct Prepared<'a> {
    pub req: &'a ChatRequest,
    pub model: String,
    pub names: NameMap,
    pub turns: Vec<Turn<'a>>,
    /// How `req.response_schema`, if any, is sent; the router picks it per provider.
    pub constraint: crate::constrain::Constraint,
}

impl<'a> Prepared<'a> {
    pub fn new(req: &'a ChatRequest, aliases: &ModelAliases) -> Result<Self, LlmError> {
        if req.tools.len() > MAX_TOOLS {
            return Err(LlmError::TooManyTools {
                count: req.tools.len(),
                max: MAX_TOOLS,
            });
        }
        let mut names = NameMap::new();
        // Offered tools first, so their wire names do not depend on the history.
        for t in req.tools.iter() {
            names.wire(&t.name);
        }
        let turns = group(&req.messages)?;
        for turn in &turns {
            if let Turn::Assistant { calls, .. } = turn {
                for c in calls.iter() {
                    names.wire(&c.name);
                }
            }
        }
        Ok(Prepared {
            req,
            model: aliases.resolve(req.provider, &req.model),
            names,
            turns,
            constraint: crate::constrain::Constraint::None,
        })
    }

    /// Builds the normalized response from what an adapter parsed.
    pub fn response(
        &self,
        text: String,
        calls: Vec<RawCall>,
        stop: StopReason,
        usage: Usage,
    ) -> ChatResponse {
        let mut truncated = matches!(stop, StopReason::MaxTokens);
        let mut tool_calls = Vec::with_capacity(calls.len());
        for c in calls {
            let (arguments, ok) = match c.arguments {
                RawArgs::Json(v) if v.is_object() => (v, true),
                RawArgs::Json(Value::Null) => (Value::Object(Map::new()), true),
                RawArgs::Json(v) => (v, false),
                RawArgs::Text(s) => parse_args(&s),
            };
            truncated |= !ok;
            tool_calls.push(ToolCall {
                id: c.id,
                name: self.names.canonical(&c.name),
                arguments,
                recovered: c.recovered,
            });
        }
        let stop_reason = if !tool_calls.is_empty() && stop == StopReason::End {
            // Several local servers report "stop" with tool calls present.
            StopReason::ToolCalls
        } else {
            stop
        };
        ChatResponse {
            text,
            tool_calls,
            stop_reason,
            truncated,
            usage,
            model: self.model.clone(),
        }
    }
}

pub(crate) enum RawArgs {
    Json(Value),
    Text(String),
}

pub(crate) struct RawCall {
    pub id: String,
    /// Wire name, mapped back to canonical by [`Prepared::response`].
    pub name: String,
    pub arguments: RawArgs,
    pub recovered: bool,
}

/// `""` means no arguments; anything that is not a JSON object did not parse (usually cut
/// by the token limit) and is kept as text so the caller can show it.
pub(crate) fn parse_args(raw: &str) -> (Value, bool) {
    if raw.trim().is_empty() {
        return (Value::Object(Map::new()), true);
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v) if v.is_object() => (v, true),
        _ => (Value::String(raw.to_string()), false),
    }
}

/// A tool result as text: strings as they are, anything else as compact JSON.
pub(crate) fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A request body: the fields built for this turn, then the offered tools under `tools`.
/// The tools are the bulk of most bodies and the same on every turn, so each is written
/// from its spec's cached schema text (`ToolSpec::parameters_json`): serializing the schemas
/// again on every turn was about 6% of the server's CPU under load (BENCHMARKS.md).
pub(crate) struct Body<T> {
    pub fields: Map<String, Value>,
    /// Written only when there are some.
    pub tools: Vec<T>,
}

/// A tool as its provider's JSON, written straight into a body.
pub(crate) trait WireTool {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
}

impl<T> Body<T> {
    /// Adds the structured-output field(s) when the request asks for a reply schema.
    pub fn constrain(mut self, p: &Prepared<'_>) -> Self {
        if let Some(schema) = &p.req.response_schema {
            p.constraint.apply(schema, &mut self.fields);
        }
        self
    }
}

impl<T: WireTool> Body<T> {
    pub fn to_bytes(&self) -> Result<bytes::Bytes, serde_json::Error> {
        let mut out = serde_json::to_vec(&self.fields)?;
        if !self.tools.is_empty() {
            // Reopen the object: `fields` serialized as `{…}`.
            out.pop();
            if !self.fields.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"tools\":[");
            for (i, tool) in self.tools.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                tool.write_json(&mut out)?;
            }
            out.extend_from_slice(b"]}");
        }
        Ok(out.into())
    }

    /// The body as a value, for `request_body` (debugging and golden tests).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.to_bytes()?)
    }
}

/// Writes a tool's `"name":…,"description":…,"<schema_key>":<schema>` (no braces): the
/// members every provider's tool object has, whatever wraps them.
pub(crate) fn write_tool_members(
    out: &mut Vec<u8>,
    name: &str,
    spec: &ToolSpec,
    schema_key: &str,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"\"name\":");
    serde_json::to_writer(&mut *out, name)?;
    out.extend_from_slice(b",\"description\":");
    serde_json::to_writer(&mut *out, &spec.description)?;
    out.push(b',');
    serde_json::to_writer(&mut *out, schema_key)?;
    out.push(b':');
    out.extend_from_slice(spec.parameters_json().as_bytes());
    Ok(())
}

/// A tool in the `{"type": "function", "function": {…}}` form of OpenAI and Ollama.
pub(crate) struct FunctionTool<'a> {
    name: String,
    spec: &'a ToolSpec,
}

impl WireTool for FunctionTool<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(br#"{"type":"function","function":{"#);
        write_tool_members(out, &self.name, self.spec, "parameters")?;
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

/// The request's offered tools in that form, under their wire names.
pub(crate) fn function_tools<'r>(p: &mut Prepared<'r>) -> Vec<FunctionTool<'r>> {
    let req = p.req;
    req.tools
        .iter()
        .map(|t| FunctionTool {
            name: p.names.wire(&t.name),
            spec: t,
        })
        .collect()
}

/// Arguments to send back in history: an object, or `{}` when they never parsed (such a
/// turn should not be in history, but a provider must still accept the request).
pub(crate) fn args_object(v: &Value) -> Value {
    if v.is_object() {
        v.clone()
    } else {
        Value::Object(Map::new())
    }
}

fn group(messages: &[Message]) -> Result<Vec<Turn<'_>>, LlmError> {
    let mut turns = Vec::new();
    let mut i = 0;
    while i < messages.len() {
        match &messages[i] {
            Message::User { content } => {
                turns.push(Turn::User(content));
                i += 1;
            }
            Message::Assistant { text, tool_calls } => {
                i += 1;
                let mut by_id: HashMap<&str, &ToolResult> = HashMap::new();
                while let Some(Message::Tool(r)) = messages.get(i) {
                    if !tool_calls.iter().any(|c| c.id == r.call_id) {
                        return Err(LlmError::InvalidConversation(format!(
                            "tool result for unknown call id '{}'",
                            r.call_id
                        )));
                    }
                    if by_id.insert(&r.call_id, r).is_some() {
                        return Err(LlmError::InvalidConversation(format!(
                            "two results for call id '{}'",
                            r.call_id
                        )));
                    }
                    i += 1;
                }
                let mut results = Vec::with_capacity(tool_calls.len());
                for c in tool_calls {
                    match by_id.get(c.id.as_str()) {
                        Some(r) => results.push(*r),
                        None => {
                            return Err(LlmError::InvalidConversation(format!(
                                "tool call '{}' ({}) has no result; answer every call (with an \
                                 error result if it was not run) before the next request",
                                c.id, c.name
                            )))
                        }
                    }
                }
                turns.push(Turn::Assistant {
                    text,
                    calls: tool_calls,
                    results,
                });
            }
            Message::Tool(r) => {
                return Err(LlmError::InvalidConversation(format!(
                    "tool result for call id '{}' does not follow an assistant turn",
                    r.call_id
                )))
            }
        }
    }
    Ok(turns)
}
