//! OpenAI Chat Completions, also spoken by Azure OpenAI, LM Studio and OpenAI-compatible
//! servers (vLLM, llama.cpp server, LiteLLM).
//!
//! The rules that matter: the assistant message keeps all its `tool_calls` in one message,
//! followed by exactly one `role: tool` message per call id before anything else;
//! `arguments` is a JSON string both ways; `parallel_tool_calls` and `stream_options` are
//! only allowed together with tools and streaming respectively.

use std::collections::BTreeMap;

use eventsource_stream::Eventsource;
use leforge_core::{ChatResponse, LlmError, Provider, StopReason, Usage};
use serde_json::{json, Map, Value};

use crate::convo::{
    content_text, function_tools, parse_args, Body, FunctionTool, Prepared, RawArgs, RawCall, Turn,
};
use crate::names::sanitize_call_id;
use crate::recover::recover_calls;
use crate::retry::{Read, Reply};
use crate::{emit, next_or_timeout, Ctx, Deltas};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
    LmStudio,
    Compatible,
}

impl Flavor {
    pub fn provider(self) -> Provider {
        match self {
            Flavor::OpenAi => Provider::Openai,
            Flavor::Azure => Provider::Azure,
            Flavor::LmStudio => Provider::Lmstudio,
            Flavor::Compatible => Provider::OpenaiCompatible,
        }
    }

    /// Local models write tool calls as text often enough that recovering them decides
    /// whether a run works at all; hosted OpenAI/Azure models do not, so text stays text.
    fn recovers_text_calls(self) -> bool {
        matches!(self, Flavor::LmStudio | Flavor::Compatible)
    }
}

/// The request body. Public to the crate so golden tests and the fake server agree on
/// what we send.
pub(crate) fn body<'r>(p: &mut Prepared<'r>, flavor: Flavor) -> Body<FunctionTool<'r>> {
    let req = p.req;
    let mut messages = Vec::new();
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system}));
    }
    for turn in &p.turns {
        match turn {
            Turn::User(text) => messages.push(json!({"role": "user", "content": text})),
            Turn::Assistant {
                text,
                calls,
                results,
            } => {
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert(
                    "content".into(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    let tc: Vec<Value> = calls
                        .iter()
                        .map(|c| {
                            let args = match &c.arguments {
                                Value::String(raw) => raw.clone(),
                                v => v.to_string(),
                            };
                            json!({
                                "id": sanitize_call_id(&c.id),
                                "type": "function",
                                "function": {"name": p.names.wire(&c.name), "arguments": args},
                            })
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(tc));
                }
                messages.push(Value::Object(m));
                for r in results {
                    messages.push(json!({
                        "role": "tool",
                        "tool_call_id": sanitize_call_id(&r.call_id),
                        "content": tool_content(&r.content, r.is_error),
                    }));
                }
            }
        }
    }
    let mut b = Map::new();
    if flavor != Flavor::Azure {
        // Azure picks the model by deployment in the URL.
        b.insert("model".into(), json!(p.model));
    }
    b.insert("messages".into(), Value::Array(messages));
    // OpenAI deprecated `max_tokens` (reasoning models reject it); Azure's GA api-version
    // and most local servers only know `max_tokens`.
    let max_key = if flavor == Flavor::OpenAi {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    b.insert(max_key.into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if !req.tools.is_empty() {
        if let Some(par) = req.parallel_tool_calls {
            b.insert("parallel_tool_calls".into(), json!(par));
        }
    }
    if req.stream {
        b.insert("stream".into(), json!(true));
        b.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Body {
        fields: b,
        tools: function_tools(p),
    }
    .constrain(p)
}

/// OpenAI has no error flag on tool messages; the prefix tells the model the call failed.
fn tool_content(content: &Value, is_error: bool) -> String {
    let text = content_text(content);
    if is_error {
        format!("ERROR: {text}")
    } else {
        text
    }
}

pub(crate) async fn chat(
    ctx: &Ctx<'_>,
    flavor: Flavor,
    p: &mut Prepared<'_>,
    deltas: Deltas,
) -> Result<ChatResponse, LlmError> {
    let provider = flavor.provider();
    let cfg = &ctx.config;
    let (url, auth): (String, Option<(&str, String)>) = match flavor {
        Flavor::OpenAi => {
            let c = cfg
                .openai
                .as_ref()
                .ok_or_else(|| not_configured(provider, "OPENAI_API_KEY"))?;
            (
                format!("{}/chat/completions", c.base_url),
                c.api_key
                    .as_ref()
                    .map(|k| ("authorization", format!("Bearer {}", k.expose()))),
            )
        }
        Flavor::Compatible => {
            let c = cfg
                .openai_compatible
                .as_ref()
                .ok_or_else(|| not_configured(provider, "OPENAI_COMPATIBLE_BASE_URL"))?;
            (
                format!("{}/chat/completions", c.base_url),
                c.api_key
                    .as_ref()
                    .map(|k| ("authorization", format!("Bearer {}", k.expose()))),
            )
        }
        Flavor::LmStudio => (format!("{}/chat/completions", cfg.lmstudio.base_url), None),
        Flavor::Azure => {
            let c = cfg.azure.as_ref().ok_or_else(|| {
                not_configured(provider, "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY")
            })?;
            let deployment: String =
                percent_encoding::utf8_percent_encode(&p.model, crate::PATH_SEGMENT).collect();
            (
                format!(
                    "{}/openai/deployments/{deployment}/chat/completions?api-version={}",
                    c.endpoint, c.api_version
                ),
                Some(("api-key", c.api_key.expose().to_string())),
            )
        }
    };
    let body = body(p, flavor);
    let bytes = body.to_bytes().map_err(|e| LlmError::MalformedResponse {
        provider,
        reason: format!("could not encode request: {e}"),
    })?;
    let sender = ctx.sender(provider);
    let stream = p.req.stream;
    let reply = sender
        .send(
            || {
                let mut rb = ctx
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bytes.clone());
                if let Some((name, value)) = &auth {
                    rb = rb.header(*name, value.as_str());
                }
                Ok(rb)
            },
            if stream { Read::Headers } else { Read::Full },
        )
        .await?;
    let parsed = match reply {
        Reply::Full(b) => parse_full(provider, &b)?,
        Reply::Stream(resp) => read_stream(ctx, provider, resp, &deltas).await?,
    };
    Ok(finish(p, flavor, parsed))
}

fn not_configured(provider: Provider, what: &str) -> LlmError {
    LlmError::NotConfigured {
        provider,
        reason: format!("set {what}"),
    }
}

struct Parsed {
    text: String,
    calls: Vec<RawCall>,
    finish: Option<String>,
    refusal: Option<String>,
    usage: Usage,
}

fn finish(p: &Prepared<'_>, flavor: Flavor, parsed: Parsed) -> ChatResponse {
    let mut stop = match parsed.finish.as_deref() {
        Some("stop") => StopReason::End,
        Some("tool_calls") | Some("function_call") => StopReason::ToolCalls,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        _ => StopReason::Other,
    };
    let mut text = parsed.text;
    if let Some(r) = parsed.refusal.filter(|r| !r.is_empty()) {
        stop = StopReason::Refusal;
        if text.is_empty() {
            text = r;
        }
    }
    let mut calls = parsed.calls;
    if calls.is_empty() && flavor.recovers_text_calls() && stop != StopReason::MaxTokens {
        let found = recover_calls(&text, |n| p.names.knows_wire(n));
        if !found.is_empty() {
            calls = found
                .into_iter()
                .map(|c| RawCall {
                    id: crate::new_call_id(),
                    name: c.name,
                    arguments: RawArgs::Json(c.arguments),
                    recovered: true,
                })
                .collect();
            text.clear();
            stop = StopReason::ToolCalls;
        }
    }
    p.response(text, calls, stop, parsed.usage)
}

fn usage_of(v: &Value) -> Usage {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("/prompt_tokens"),
        output_tokens: n("/completion_tokens"),
        cached_tokens: n("/prompt_tokens_details/cached_tokens"),
    }
}

fn malformed(provider: Provider, reason: impl Into<String>) -> LlmError {
    LlmError::MalformedResponse {
        provider,
        reason: reason.into(),
    }
}

fn parse_full(provider: Provider, body: &[u8]) -> Result<Parsed, LlmError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(provider, format!("not JSON: {e}")))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| malformed(provider, "no choices"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| malformed(provider, "choice without message"))?;
    let mut calls = Vec::new();
    if let Some(tcs) = msg.get("tool_calls").and_then(Value::as_array) {
        for tc in tcs {
            let f = tc.get("function").unwrap_or(&Value::Null);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(provider, "tool call without function.name"))?;
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => RawArgs::Text(s.clone()),
                // Some compatible servers send an object, as Ollama does.
                Some(other) => RawArgs::Json(other.clone()),
                None => RawArgs::Text(String::new()),
            };
            calls.push(RawCall {
                id: tc
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(crate::new_call_id),
                name: name.to_string(),
                arguments,
                recovered: false,
            });
        }
    }
    Ok(Parsed {
        text: msg
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        calls,
        finish: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        refusal: msg
            .get("refusal")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: v.get("usage").map(usage_of).unwrap_or_default(),
    })
}

#[derive(Default)]
struct Partial {
    id: String,
    name: String,
    args: String,
}

async fn read_stream(
    ctx: &Ctx<'_>,
    provider: Provider,
    resp: reqwest::Response,
    deltas: &Deltas,
) -> Result<Parsed, LlmError> {
    let cut = |reason: String| LlmError::StreamCut { provider, reason };
    let mut events = resp.bytes_stream().eventsource();
    let mut text = String::new();
    let mut refusal = String::new();
    // Keyed by `index`: ids and names come only in a call's first fragment.
    let mut partials: BTreeMap<u64, Partial> = BTreeMap::new();
    let mut finish: Option<String> = None;
    let mut usage = Usage::default();
    let mut done = false;
    while let Some(ev) = next_or_timeout(&mut events, ctx.config.request_timeout)
        .await
        .map_err(|_| cut("no data within the request timeout".into()))?
    {
        let ev = ev.map_err(|e| cut(ctx.sender(provider).redact(&e.to_string())))?;
        let data = ev.data.trim();
        if data == "[DONE]" {
            done = true;
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| malformed(provider, format!("stream chunk is not JSON: {e}")))?;
        if let Some(err) = chunk.get("error") {
            return Err(cut(format!(
                "provider error event: {}",
                crate::retry::provider_message(
                    reqwest::StatusCode::OK,
                    json!({ "error": err }).to_string().as_bytes()
                )
            )));
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = usage_of(u);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            continue;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                if !t.is_empty() {
                    text.push_str(t);
                    emit(deltas, t);
                }
            }
            if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                refusal.push_str(r);
            }
            if let Some(tcs) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, tc) in tcs.iter().enumerate() {
                    let idx = tc
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(pos as u64);
                    let entry = partials.entry(idx).or_default();
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        if entry.id.is_empty() {
                            entry.id = id.to_string();
                        }
                    }
                    if let Some(f) = tc.get("function") {
                        if let Some(n) = f.get("name").and_then(Value::as_str) {
                            if entry.name.is_empty() {
                                entry.name = n.to_string();
                            }
                        }
                        match f.get("arguments") {
                            Some(Value::String(a)) => entry.args.push_str(a),
                            Some(Value::Null) | None => {}
                            Some(other) => entry.args.push_str(&other.to_string()),
                        }
                    }
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            finish = Some(f.to_string());
        }
    }
    if !done && finish.is_none() {
        return Err(cut(if partials.is_empty() {
            "stream ended before a finish_reason".into()
        } else {
            "stream ended in the middle of a tool call".into()
        }));
    }
    let calls = partials
        .into_values()
        .map(|pc| {
            let (v, ok) = parse_args(&pc.args);
            RawCall {
                id: if pc.id.is_empty() {
                    crate::new_call_id()
                } else {
                    pc.id
                },
                name: pc.name,
                arguments: if ok {
                    RawArgs::Json(v)
                } else {
                    RawArgs::Text(pc.args)
                },
                recovered: false,
            }
        })
        .collect();
    Ok(Parsed {
        text,
        calls,
        finish,
        refusal: Some(refusal),
        usage,
    })
}

pub(crate) fn parse_models(provider: Provider, body: &[u8]) -> Result<Vec<String>, LlmError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(provider, format!("not JSON: {e}")))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(provider, "no data array"))?;
    Ok(data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}
