//! Scripts rendered as each provider's documented response bodies, error shapes and
//! stream framings.

use serde_json::{json, Value};

use crate::script::ScriptedCall;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Anthropic,
    /// OpenAI, Azure, LM Studio and OpenAI-compatible servers share one response format.
    OpenAi,
    Bedrock,
    Ollama,
}

pub const INPUT_TOKENS: u64 = 11;
pub const OUTPUT_TOKENS: u64 = 7;

/// Splits a string into up to three pieces on char boundaries, so streams really arrive
/// in fragments.
pub fn pieces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return vec![s.to_string()];
    }
    let a = chars.len() / 3;
    let b = 2 * chars.len() / 3;
    vec![
        chars[..a].iter().collect(),
        chars[a..b].iter().collect(),
        chars[b..].iter().collect(),
    ]
}

/// The first half of a call's arguments: what a model has written when it is cut off.
pub fn half(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[..chars.len() / 2].iter().collect()
}

/// Error body, extra headers.
pub fn error_body(
    format: Format,
    status: u16,
    kind: &str,
    message: &str,
) -> (Value, Vec<(String, String)>) {
    match format {
        Format::Anthropic => {
            let kind = if kind.is_empty() {
                match status {
                    400 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    _ => "api_error",
                }
            } else {
                kind
            };
            (
                json!({"type": "error", "error": {"type": kind, "message": message}}),
                vec![("request-id".into(), "req_fake".into())],
            )
        }
        Format::OpenAi => {
            let kind = if kind.is_empty() {
                match status {
                    429 => "rate_limit_exceeded",
                    s if s >= 500 => "server_error",
                    _ => "invalid_request_error",
                }
            } else {
                kind
            };
            let code = if kind == "array_above_max_length" || kind == "rate_limit_exceeded" {
                json!(kind)
            } else {
                Value::Null
            };
            let typ = if kind == "array_above_max_length" {
                "invalid_request_error"
            } else {
                kind
            };
            (
                json!({"error": {"message": message, "type": typ, "param": null, "code": code}}),
                vec![],
            )
        }
        Format::Bedrock => {
            let kind = if kind.is_empty() {
                match status {
                    400 => "ValidationException",
                    403 => "AccessDeniedException",
                    404 => "ResourceNotFoundException",
                    429 => "ThrottlingException",
                    503 => "ServiceUnavailableException",
                    _ => "InternalServerException",
                }
            } else {
                kind
            };
            (
                json!({"message": message}),
                vec![(
                    "x-amzn-errortype".into(),
                    format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                )],
            )
        }
        Format::Ollama => (json!({"error": message}), vec![]),
    }
}

/// A complete (non-streamed) answer.
pub fn full(
    format: Format,
    model: &str,
    text: &str,
    calls: &[(String, ScriptedCall)],
    max_tokens: bool,
) -> Value {
    match format {
        Format::OpenAi => {
            let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(
                    calls
                        .iter()
                        .map(|(id, c)| {
                            let args = if max_tokens { half(&c.arguments.to_string()) } else { c.arguments.to_string() };
                            json!({"id": id, "type": "function", "function": {"name": c.name, "arguments": args}})
                        })
                        .collect(),
                );
            }
            let finish = if max_tokens {
                "length"
            } else if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000u64, "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish}],
                "usage": openai_usage(),
                "system_fingerprint": "fp_fake",
            })
        }
        Format::Anthropic => {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
            for (id, c) in calls {
                let input = if max_tokens {
                    json!({})
                } else {
                    c.arguments.clone()
                };
                content.push(json!({"type": "tool_use", "id": id, "name": c.name, "input": input}));
            }
            let stop = if max_tokens {
                "max_tokens"
            } else if calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            })
        }
        Format::Bedrock => {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({"text": text}));
            }
            for (id, c) in calls {
                let input = if max_tokens {
                    json!({})
                } else {
                    c.arguments.clone()
                };
                content.push(json!({"toolUse": {"toolUseId": id, "name": c.name, "input": input}}));
            }
            let stop = if max_tokens {
                "max_tokens"
            } else if calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS},
                "metrics": {"latencyMs": 1},
            })
        }
        Format::Ollama => {
            // Ollama parses tool calls out of the model's text only once they are
            // complete; a cut-off call stays text with done_reason "length".
            let (content, calls_json) = if max_tokens {
                let t: String = calls
                    .first()
                    .map(|(_, c)| {
                        half(&json!({"name": c.name, "arguments": c.arguments}).to_string())
                    })
                    .unwrap_or_default();
                (format!("{text}{t}"), None)
            } else if calls.is_empty() {
                (text.to_string(), None)
            } else {
                (
                    text.to_string(),
                    Some(Value::Array(
                        calls
                            .iter()
                            .map(|(_, c)| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                            .collect(),
                    )),
                )
            };
            let mut msg = json!({"role": "assistant", "content": content});
            if let Some(c) = calls_json {
                msg["tool_calls"] = c;
            }
            let mut done = ollama_done(model, if max_tokens { "length" } else { "stop" });
            done["message"] = msg;
            done
        }
    }
}

fn openai_usage() -> Value {
    json!({
        "prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

fn ollama_done(model: &str, reason: &str) -> Value {
    json!({
        "model": model, "created_at": "2024-07-22T20:33:28.123648Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason, "done": true,
        "total_duration": 1000, "load_duration": 10, "prompt_eval_count": INPUT_TOKENS,
        "prompt_eval_duration": 100, "eval_count": OUTPUT_TOKENS, "eval_duration": 500,
    })
}

/// A stream as a list of frames (already framed: SSE or NDJSON lines). `cut` stops after
/// the first half of the first call's arguments, so the caller can drop the connection.
pub fn stream(
    format: Format,
    model: &str,
    text: &str,
    calls: &[(String, ScriptedCall)],
    max_tokens: bool,
    cut: bool,
    include_usage: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    match format {
        Format::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                    "model": model, "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                if include_usage {
                    c["usage"] = Value::Null;
                }
                format!("data: {c}\n\n")
            };
            out.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ));
            for p in pieces(text) {
                if !p.is_empty() {
                    out.push(chunk(json!({"content": p}), Value::Null));
                }
            }
            for (i, (id, c)) in calls.iter().enumerate() {
                out.push(chunk(
                    json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let args = c.arguments.to_string();
                let args = if cut || max_tokens { half(&args) } else { args };
                for p in pieces(&args) {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
                if cut {
                    return out;
                }
            }
            let finish = if max_tokens {
                "length"
            } else if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            out.push(chunk(json!({}), json!(finish)));
            if include_usage {
                let u = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                    "model": model, "choices": [], "usage": openai_usage()});
                out.push(format!("data: {u}\n\n"));
            }
            out.push("data: [DONE]\n\n".into());
        }
        Format::Anthropic => {
            let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
            out.push(ev("message_start", json!({"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})));
            out.push(ev("ping", json!({"type": "ping"})));
            let mut index = 0;
            if !text.is_empty() {
                out.push(ev("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
                for p in pieces(text) {
                    out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}})));
                }
                out.push(ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                ));
                index += 1;
            }
            for (id, c) in calls {
                out.push(ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": id, "name": c.name, "input": {}}}),
                ));
                let args = c.arguments.to_string();
                let args = if cut || max_tokens { half(&args) } else { args };
                for p in pieces(&args) {
                    out.push(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": p}}),
                    ));
                }
                if cut {
                    return out;
                }
                out.push(ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                ));
                index += 1;
                if max_tokens {
                    break;
                }
            }
            let stop = if max_tokens {
                "max_tokens"
            } else if calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": OUTPUT_TOKENS}})));
            out.push(ev("message_stop", json!({"type": "message_stop"})));
        }
        Format::Ollama => {
            let line = |content: &str, tool_calls: Option<Value>| {
                let mut msg = json!({"role": "assistant", "content": content});
                if let Some(tc) = tool_calls {
                    msg["tool_calls"] = tc;
                }
                format!(
                    "{}\n",
                    json!({"model": model, "created_at": "2024-07-22T20:33:28.123648Z", "message": msg, "done": false})
                )
            };
            for p in pieces(text) {
                if !p.is_empty() {
                    out.push(line(&p, None));
                }
            }
            if max_tokens || cut {
                if let Some((_, c)) = calls.first() {
                    let t = half(&json!({"name": c.name, "arguments": c.arguments}).to_string());
                    for p in pieces(&t) {
                        out.push(line(&p, None));
                    }
                }
                if cut {
                    return out;
                }
            } else if !calls.is_empty() {
                let tc: Vec<Value> = calls
                    .iter()
                    .map(|(_, c)| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                out.push(line("", Some(Value::Array(tc))));
            }
            out.push(format!(
                "{}\n",
                ollama_done(model, if max_tokens { "length" } else { "stop" })
            ));
        }
        Format::Bedrock => {}
    }
    out
}
