//! AWS Bedrock Converse API, SigV4-signed.
//!
//! `toolConfig` must be present whenever the history holds `toolUse`/`toolResult` blocks,
//! even when no tool is offered any more; we then declare the history's tools with an
//! open schema. Streaming (ConverseStream) uses AWS binary event-stream framing; we call
//! Converse and forward the whole text as one delta instead.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use leforge_core::{ChatResponse, LlmError, Provider, StopReason, Usage};
use serde_json::{json, Map, Value};

use crate::config::BedrockConfig;
use crate::convo::{args_object, content_text, Prepared, RawArgs, RawCall, Turn};
use crate::names::sanitize_call_id;
use crate::retry::{Read, Reply};
use crate::{emit, Ctx, Deltas};

const P: Provider = Provider::Bedrock;

pub(crate) fn body(p: &mut Prepared<'_>) -> Result<Value, LlmError> {
    let req = p.req;
    let mut messages: Vec<Value> = Vec::new();
    let mut pending: Vec<Value> = Vec::new();
    let mut history_tools: BTreeSet<String> = BTreeSet::new();
    for turn in &p.turns {
        match turn {
            Turn::User(text) => {
                let mut content = std::mem::take(&mut pending);
                if !text.is_empty() {
                    content.push(json!({"text": text}));
                }
                if content.is_empty() {
                    return Err(LlmError::InvalidConversation(
                        "empty user message (Bedrock rejects blank text)".into(),
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
                    content.push(json!({"text": text}));
                }
                for c in calls.iter() {
                    let name = p.names.wire(&c.name);
                    history_tools.insert(name.clone());
                    content.push(json!({"toolUse": {
                        "toolUseId": sanitize_call_id(&c.id),
                        "name": name,
                        "input": args_object(&c.arguments),
                    }}));
                }
                if !content.is_empty() {
                    messages.push(json!({"role": "assistant", "content": content}));
                }
                for r in results {
                    // `json` must be an object for several models; other values go as text.
                    let item = if r.content.is_object() {
                        json!({"json": r.content})
                    } else {
                        json!({"text": content_text(&r.content)})
                    };
                    let mut tr = Map::new();
                    tr.insert("toolUseId".into(), json!(sanitize_call_id(&r.call_id)));
                    tr.insert("content".into(), json!([item]));
                    if r.is_error {
                        tr.insert("status".into(), json!("error"));
                    }
                    pending.push(json!({"toolResult": tr}));
                }
            }
        }
    }
    if !pending.is_empty() {
        messages.push(json!({"role": "user", "content": pending}));
    }
    let mut b = Map::new();
    b.insert("messages".into(), Value::Array(messages));
    if !req.system.is_empty() {
        b.insert("system".into(), json!([{"text": req.system}]));
    }
    let mut inference = Map::new();
    inference.insert("maxTokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    b.insert("inferenceConfig".into(), Value::Object(inference));
    let mut specs: Vec<Value> = Vec::new();
    let mut offered = BTreeSet::new();
    for t in req.tools.iter() {
        let name = p.names.wire(&t.name);
        offered.insert(name.clone());
        // The schema is cloned into place: `json!` would re-serialize it value by value.
        let mut input_schema = Map::new();
        input_schema.insert("json".into(), t.parameters().clone());
        let mut spec = Map::new();
        spec.insert("name".into(), Value::String(name));
        spec.insert("description".into(), Value::String(t.description.clone()));
        spec.insert("inputSchema".into(), Value::Object(input_schema));
        let mut tool = Map::new();
        tool.insert("toolSpec".into(), Value::Object(spec));
        specs.push(Value::Object(tool));
    }
    for name in history_tools.difference(&offered) {
        specs.push(json!({"toolSpec": {
            "name": name,
            "description": "A tool used earlier in this conversation.",
            "inputSchema": {"json": {"type": "object"}},
        }}));
    }
    if !specs.is_empty() {
        b.insert("toolConfig".into(), json!({"tools": specs}));
    }
    Ok(Value::Object(b))
}

/// Signs one attempt. Returns the headers to add (Authorization, X-Amz-Date, and the
/// session token when there is one).
fn sign_headers(
    cfg: &BedrockConfig,
    url: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, LlmError> {
    let fail = |e: &dyn std::fmt::Display| LlmError::NotConfigured {
        provider: P,
        reason: format!("could not sign the request: {e}"),
    };
    let identity = Credentials::new(
        cfg.access_key_id.clone(),
        cfg.secret_access_key.expose().to_string(),
        cfg.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "leforge-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let headers = [("content-type", "application/json")];
    let signable =
        SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| fail(&e))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| fail(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

pub(crate) async fn chat(
    ctx: &Ctx<'_>,
    p: &mut Prepared<'_>,
    deltas: Deltas,
) -> Result<ChatResponse, LlmError> {
    let cfg = ctx
        .config
        .bedrock
        .as_ref()
        .ok_or_else(|| LlmError::NotConfigured {
            provider: P,
            reason: "set AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        })?;
    // Model ids hold ':' (e.g. `…-v1:0`), which must be escaped in the path.
    let model: String =
        percent_encoding::utf8_percent_encode(&p.model, crate::PATH_SEGMENT).collect();
    let url = format!("{}/model/{model}/converse", cfg.base_url());
    let body = body(p)?;
    let bytes = serde_json::to_vec(&body).map_err(|e| malformed(format!("encode: {e}")))?;
    let reply = ctx
        .sender(P)
        .send(
            || {
                let mut rb = ctx
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(bytes.clone());
                for (k, v) in sign_headers(cfg, &url, &bytes)? {
                    rb = rb.header(k, v);
                }
                Ok(rb)
            },
            Read::Full,
        )
        .await?;
    let Reply::Full(b) = reply else {
        return Err(malformed("unexpected streamed reply"));
    };
    let v: Value = serde_json::from_slice(&b).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no output.message.content"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let s = |k: &str| {
                tu.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| malformed(format!("toolUse without {k}")))
            };
            calls.push(RawCall {
                id: s("toolUseId")?,
                name: s("name")?,
                arguments: RawArgs::Json(tu.get("input").cloned().unwrap_or(Value::Null)),
                recovered: false,
            });
        }
    }
    if p.req.stream && !text.is_empty() {
        emit(&deltas, &text);
    }
    let stop = match v.get("stopReason").and_then(Value::as_str) {
        Some("end_turn") | Some("stop_sequence") => StopReason::End,
        Some("tool_use") => StopReason::ToolCalls,
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("guardrail_intervened") | Some("content_filtered") => StopReason::ContentFilter,
        _ => StopReason::Other,
    };
    let n = |k: &str| v.pointer(k).and_then(Value::as_u64).unwrap_or(0);
    let usage = Usage {
        input_tokens: n("/usage/inputTokens") + n("/usage/cacheReadInputTokens"),
        output_tokens: n("/usage/outputTokens"),
        cached_tokens: n("/usage/cacheReadInputTokens"),
    };
    Ok(p.response(text, calls, stop, usage))
}

fn malformed(reason: impl Into<String>) -> LlmError {
    LlmError::MalformedResponse {
        provider: P,
        reason: reason.into(),
    }
}
