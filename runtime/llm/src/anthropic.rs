//! Anthropic Messages API.
//!
//! `system` is top-level, `max_tokens` is required, assistant `tool_use` blocks are kept,
//! and all results of a turn go as `tool_result` blocks at the *start* of the next user
//! message (text may follow them, never precede them). Empty text blocks are rejected, so
//! none are sent.

use std::collections::BTreeMap;

use eventsource_stream::Eventsource;
use leforge_core::{ChatResponse, LlmError, Provider, StopReason, ToolSpec, Usage};
use serde_json::{json, Map, Value};

use crate::convo::{
    args_object, content_text, parse_args, write_tool_members, Body, Prepared, RawArgs, RawCall,
    Turn, WireTool,
};
use crate::names::sanitize_call_id;
use crate::retry::{Read, Reply};
use crate::{emit, next_or_timeout, Ctx, Deltas};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";
const P: Provider = Provider::Anthropic;

fn text_block(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

pub(crate) fn body<'r>(p: &mut Prepared<'r>) -> Result<Body<Tool<'r>>, LlmError> {
    let req = p.req;
    let mut messages: Vec<Value> = Vec::new();
    // Results of the previous assistant turn, waiting to open the next user message.
    let mut pending: Vec<Value> = Vec::new();
    for turn in &p.turns {
        match turn {
            Turn::User(text) => {
                let mut content = std::mem::take(&mut pending);
                if !text.is_empty() {
                    content.push(text_block(text));
                }
                if content.is_empty() {
                    return Err(LlmError::InvalidConversation(
                        "empty user message (Anthropic rejects empty text)".into(),
                    ));
                }
                messages.push(json!({"role": "user", "content": content}));
            }
            Turn::Assistant {
                text,
                calls,
                results,
            } => {
                if !pending.is_empty() {
                    messages.push(json!({"role": "user", "content": std::mem::take(&mut pending)}));
                }
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(text_block(text));
                }
                for c in calls.iter() {
                    content.push(json!({
                        "type": "tool_use",
                        "id": sanitize_call_id(&c.id),
                        "name": p.names.wire(&c.name),
                        "input": args_object(&c.arguments),
                    }));
                }
                // An assistant turn with nothing in it would be rejected; it carries no
                // information, so it is dropped.
                if !content.is_empty() {
                    messages.push(json!({"role": "assistant", "content": content}));
                }
                for r in results {
                    let mut block = Map::new();
                    block.insert("type".into(), json!("tool_result"));
                    block.insert("tool_use_id".into(), json!(sanitize_call_id(&r.call_id)));
                    let text = content_text(&r.content);
                    if !text.is_empty() {
                        block.insert("content".into(), json!(text));
                    }
                    if r.is_error {
                        block.insert("is_error".into(), json!(true));
                    }
                    pending.push(Value::Object(block));
                }
            }
        }
    }
    if !pending.is_empty() {
        messages.push(json!({"role": "user", "content": pending}));
    }
    let mut b = Map::new();
    b.insert("model".into(), json!(p.model));
    b.insert("max_tokens".into(), json!(req.max_tokens));
    if !req.system.is_empty() {
        b.insert("system".into(), json!(req.system));
    }
    b.insert("messages".into(), Value::Array(messages));
    if let Some(t) = req.temperature {
        // Anthropic's range is 0–1; agent configs allow 0–2 (OpenAI's range).
        b.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if !req.tools.is_empty() && req.parallel_tool_calls == Some(false) {
        b.insert(
            "tool_choice".into(),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        );
    }
    if req.stream {
        b.insert("stream".into(), json!(true));
    }
    let tools = req
        .tools
        .iter()
        .map(|t| Tool {
            name: p.names.wire(&t.name),
            spec: t,
        })
        .collect();
    Ok(Body { fields: b, tools })
}

/// An offered tool: `{"name", "description", "input_schema"}`.
pub(crate) struct Tool<'a> {
    name: String,
    spec: &'a ToolSpec,
}

impl WireTool for Tool<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.push(b'{');
        write_tool_members(out, &self.name, self.spec, "input_schema")?;
        out.push(b'}');
        Ok(())
    }
}

pub(crate) async fn chat(
    ctx: &Ctx<'_>,
    p: &mut Prepared<'_>,
    deltas: Deltas,
) -> Result<ChatResponse, LlmError> {
    let cfg = ctx
        .config
        .anthropic
        .as_ref()
        .ok_or_else(|| LlmError::NotConfigured {
            provider: P,
            reason: "set ANTHROPIC_API_KEY".into(),
        })?;
    let url = format!("{}/v1/messages", cfg.base_url);
    let body = body(p)?;
    let bytes = body
        .to_bytes()
        .map_err(|e| malformed(format!("encode: {e}")))?;
    let stream = p.req.stream;
    let reply = ctx
        .sender(P)
        .send(
            || {
                Ok(ctx
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-api-key", cfg.api_key.expose())
                    .header("anthropic-version", ANTHROPIC_VERSION)
                    .body(bytes.clone()))
            },
            if stream { Read::Headers } else { Read::Full },
        )
        .await?;
    let parsed = match reply {
        Reply::Full(b) => parse_full(&b)?,
        Reply::Stream(resp) => read_stream(ctx, resp, &deltas).await?,
    };
    let stop = match parsed.stop.as_deref() {
        Some("end_turn") | Some("stop_sequence") => StopReason::End,
        Some("tool_use") => StopReason::ToolCalls,
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("refusal") => StopReason::Refusal,
        _ => StopReason::Other,
    };
    Ok(p.response(parsed.text, parsed.calls, stop, parsed.usage))
}

fn malformed(reason: impl Into<String>) -> LlmError {
    LlmError::MalformedResponse {
        provider: P,
        reason: reason.into(),
    }
}

struct Parsed {
    text: String,
    calls: Vec<RawCall>,
    stop: Option<String>,
    usage: Usage,
}

/// Anthropic's `input_tokens` excludes cache reads and writes; we report the total input
/// (as OpenAI does) with the cache reads as `cached_tokens`.
fn add_usage(u: &mut Usage, v: &Value) {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let read = n("cache_read_input_tokens").unwrap_or(0);
    if let Some(i) = n("input_tokens") {
        u.input_tokens = i + read + n("cache_creation_input_tokens").unwrap_or(0);
        u.cached_tokens = read;
    }
    if let Some(o) = n("output_tokens") {
        u.output_tokens = o;
    }
}

fn parse_full(body: &[u8]) -> Result<Parsed, LlmError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no content array"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(RawCall {
                id: str_field(block, "id")?,
                name: str_field(block, "name")?,
                arguments: RawArgs::Json(block.get("input").cloned().unwrap_or(Value::Null)),
                recovered: false,
            }),
            _ => {}
        }
    }
    let mut usage = Usage::default();
    if let Some(u) = v.get("usage") {
        add_usage(&mut usage, u);
    }
    Ok(Parsed {
        text,
        calls,
        stop: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage,
    })
}

fn str_field(v: &Value, k: &str) -> Result<String, LlmError> {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| malformed(format!("tool_use block without {k}")))
}

enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

async fn read_stream(
    ctx: &Ctx<'_>,
    resp: reqwest::Response,
    deltas: &Deltas,
) -> Result<Parsed, LlmError> {
    let cut = |reason: String| LlmError::StreamCut {
        provider: P,
        reason,
    };
    let mut events = resp.bytes_stream().eventsource();
    let mut text = String::new();
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    let mut calls = Vec::new();
    let mut stop = None;
    let mut usage = Usage::default();
    let mut finished = false;
    while let Some(ev) = next_or_timeout(&mut events, ctx.config.request_timeout)
        .await
        .map_err(|_| cut("no data within the request timeout".into()))?
    {
        let ev = ev.map_err(|e| cut(ctx.sender(P).redact(&e.to_string())))?;
        if ev.event == "ping" || ev.data.trim().is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&ev.data)
            .map_err(|e| malformed(format!("event {} is not JSON: {e}", ev.event)))?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(ev.event.as_str());
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                if let Some(u) = data.pointer("/message/usage") {
                    add_usage(&mut usage, u);
                }
            }
            "content_block_start" => {
                let cb = data.get("content_block").unwrap_or(&Value::Null);
                let block = match cb.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = cb.get("text").and_then(Value::as_str) {
                            if !t.is_empty() {
                                text.push_str(t);
                                emit(deltas, t);
                            }
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::Tool {
                        id: str_field(cb, "id")?,
                        name: str_field(cb, "name")?,
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                blocks.insert(index, block);
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match (
                    delta.get("type").and_then(Value::as_str),
                    blocks.get_mut(&index),
                ) {
                    (Some("text_delta"), _) => {
                        let t = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        text.push_str(t);
                        emit(deltas, t);
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        json.push_str(
                            delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::Tool { id, name, json }) = blocks.remove(&index) {
                    let (v, ok) = parse_args(&json);
                    calls.push(RawCall {
                        id,
                        name,
                        arguments: if ok {
                            RawArgs::Json(v)
                        } else {
                            RawArgs::Text(json)
                        },
                        recovered: false,
                    });
                }
            }
            "message_delta" => {
                if let Some(s) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    stop = Some(s.to_string());
                }
                if let Some(u) = data.get("usage") {
                    add_usage(&mut usage, u);
                }
            }
            "message_stop" => {
                finished = true;
                break;
            }
            "error" => {
                let msg = crate::retry::provider_message(
                    reqwest::StatusCode::OK,
                    data.to_string().as_bytes(),
                );
                return Err(cut(format!("provider error event: {msg}")));
            }
            _ => {}
        }
    }
    if !finished {
        let open_tool = blocks.values().any(|b| matches!(b, Block::Tool { .. }));
        return Err(cut(if open_tool {
            "stream ended in the middle of a tool call".into()
        } else {
            "stream ended before message_stop".into()
        }));
    }
    // A block still open at message_stop (max_tokens mid-call) holds partial JSON.
    for (_, b) in std::mem::take(&mut blocks) {
        if let Block::Tool { id, name, json } = b {
            calls.push(RawCall {
                id,
                name,
                arguments: RawArgs::Text(json),
                recovered: false,
            });
        }
    }
    Ok(Parsed {
        text,
        calls,
        stop,
        usage,
    })
}

pub(crate) fn parse_models(body: &[u8]) -> Result<Vec<String>, LlmError> {
    crate::openai::parse_models(P, body)
}
