//! Ollama `/api/chat`.
//!
//! Arguments are JSON objects in both directions, calls have no ids (results are matched
//! by order, with `tool_name` as a hint), `stream` defaults to true on the server so it is
//! always sent, and streaming is NDJSON. Small local models often write calls as text,
//! which we recover.

use leforge_core::{ChatResponse, LlmError, Provider, StopReason, Usage};
use serde_json::{json, Map, Value};

use crate::convo::{
    args_object, content_text, function_tools, Body, FunctionTool, Prepared, RawArgs, RawCall, Turn,
};
use crate::recover::recover_calls;
use crate::retry::{Read, Reply};
use crate::{emit, next_or_timeout, Ctx, Deltas};

const P: Provider = Provider::Ollama;

pub(crate) fn body<'r>(p: &mut Prepared<'r>) -> Body<FunctionTool<'r>> {
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
                m.insert("content".into(), json!(text));
                if !calls.is_empty() {
                    let tc: Vec<Value> = calls
                        .iter()
                        .map(|c| {
                            json!({"function": {
                                "name": p.names.wire(&c.name),
                                "arguments": args_object(&c.arguments),
                            }})
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(tc));
                }
                messages.push(Value::Object(m));
                for (c, r) in calls.iter().zip(results.iter()) {
                    let text = content_text(&r.content);
                    messages.push(json!({
                        "role": "tool",
                        "content": if r.is_error { format!("ERROR: {text}") } else { text },
                        "tool_name": p.names.wire(&c.name),
                    }));
                }
            }
        }
    }
    let mut options = Map::new();
    options.insert("num_predict".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), json!(t));
    }
    let mut b = Map::new();
    b.insert("model".into(), json!(p.model));
    b.insert("messages".into(), Value::Array(messages));
    b.insert("stream".into(), json!(req.stream));
    b.insert("options".into(), Value::Object(options));
    Body {
        fields: b,
        tools: function_tools(p),
    }
    .constrain(p)
}

pub(crate) async fn chat(
    ctx: &Ctx<'_>,
    p: &mut Prepared<'_>,
    deltas: Deltas,
) -> Result<ChatResponse, LlmError> {
    let url = format!("{}/api/chat", ctx.config.ollama.base_url);
    let body = body(p);
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
                    .body(bytes.clone()))
            },
            if stream { Read::Headers } else { Read::Full },
        )
        .await?;
    let mut acc = Acc::default();
    match reply {
        Reply::Full(b) => {
            let v: Value =
                serde_json::from_slice(&b).map_err(|e| malformed(format!("not JSON: {e}")))?;
            acc.add(&v, &None)?;
            if !acc.done {
                return Err(malformed("response without \"done\": true"));
            }
        }
        Reply::Stream(resp) => read_stream(ctx, resp, &mut acc, &deltas).await?,
    }
    let mut stop = match acc.done_reason.as_deref() {
        _ if !acc.calls.is_empty() => StopReason::ToolCalls,
        Some("length") => StopReason::MaxTokens,
        Some("stop") | None => StopReason::End,
        _ => StopReason::Other,
    };
    let mut text = acc.text;
    let mut calls = acc.calls;
    if calls.is_empty() && stop != StopReason::MaxTokens {
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
    Ok(p.response(text, calls, stop, acc.usage))
}

fn malformed(reason: impl Into<String>) -> LlmError {
    LlmError::MalformedResponse {
        provider: P,
        reason: reason.into(),
    }
}

#[derive(Default)]
struct Acc {
    text: String,
    calls: Vec<RawCall>,
    done: bool,
    done_reason: Option<String>,
    usage: Usage,
}

impl Acc {
    /// Folds one response object (the whole answer, or one NDJSON line) in.
    fn add(&mut self, v: &Value, deltas: &Deltas) -> Result<(), LlmError> {
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            return Err(LlmError::StreamCut {
                provider: P,
                reason: format!("provider error: {err}"),
            });
        }
        if let Some(msg) = v.get("message") {
            if let Some(t) = msg.get("content").and_then(Value::as_str) {
                if !t.is_empty() {
                    self.text.push_str(t);
                    emit(deltas, t);
                }
            }
            if let Some(tcs) = msg.get("tool_calls").and_then(Value::as_array) {
                for tc in tcs {
                    let f = tc.get("function").unwrap_or(&Value::Null);
                    let name = f
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed("tool call without function.name"))?;
                    let arguments = match f.get("arguments") {
                        Some(Value::String(s)) => RawArgs::Text(s.clone()),
                        Some(v) => RawArgs::Json(v.clone()),
                        None => RawArgs::Json(Value::Null),
                    };
                    self.calls.push(RawCall {
                        // Ollama has no call ids; the loop needs one to pair the result.
                        id: crate::new_call_id(),
                        name: name.to_string(),
                        arguments,
                        recovered: false,
                    });
                }
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.done_reason = v
                .get("done_reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                input_tokens: n("prompt_eval_count"),
                output_tokens: n("eval_count"),
                cached_tokens: 0,
            };
        }
        Ok(())
    }
}

async fn read_stream(
    ctx: &Ctx<'_>,
    resp: reqwest::Response,
    acc: &mut Acc,
    deltas: &Deltas,
) -> Result<(), LlmError> {
    let cut = |reason: String| LlmError::StreamCut {
        provider: P,
        reason,
    };
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = next_or_timeout(&mut body, ctx.config.request_timeout)
            .await
            .map_err(|_| cut("no data within the request timeout".into()))?;
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| cut(ctx.sender(P).redact(&e.to_string())))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line)
                .map_err(|e| malformed(format!("stream line is not JSON: {e}")))?;
            acc.add(&v, deltas)?;
            if acc.done {
                return Ok(());
            }
        }
    }
    if !buf.iter().all(u8::is_ascii_whitespace) {
        // The last line may lack its newline.
        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
            acc.add(&v, deltas)?;
        }
    }
    if acc.done {
        Ok(())
    } else {
        Err(cut("stream ended before \"done\": true".into()))
    }
}

pub(crate) fn parse_models(body: &[u8]) -> Result<Vec<String>, LlmError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let models = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no models array"))?;
    Ok(models
        .iter()
        .filter_map(|m| {
            m.get("name")
                .or_else(|| m.get("model"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect())
}
