//! Request checks, written from each provider's documentation (and the error messages
//! they are known to return), not from any client's output. A failed check becomes the
//! provider's real error status and body shape.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use serde_json::Value;

/// Why a request was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub status: u16,
    /// The provider's error type/code (`invalid_request_error`, `ValidationException`…).
    pub kind: String,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Reject {
    Reject {
        status: 400,
        kind: "invalid_request_error".into(),
        message: message.into(),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

// ---------------------------------------------------------------- Anthropic Messages

pub fn anthropic(h: &HeaderMap, body: &Value) -> Result<(), Reject> {
    if header(h, "x-api-key").is_none_or(str::is_empty) {
        return Err(Reject {
            status: 401,
            kind: "authentication_error".into(),
            message: "x-api-key header is required".into(),
        });
    }
    match header(h, "anthropic-version") {
        None => return Err(bad("anthropic-version: header is required")),
        Some("2023-06-01") => {}
        Some(v) => return Err(bad(format!("anthropic-version: invalid version '{v}'"))),
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad("model: Field required"));
    }
    match body.get("max_tokens") {
        None => return Err(bad("max_tokens: Field required")),
        Some(v) if v.as_u64().is_none_or(|n| n < 1) => {
            return Err(bad("max_tokens: Input should be a valid positive integer"))
        }
        _ => {}
    }
    if let Some(t) = body.get("temperature") {
        if t.as_f64().is_none_or(|t| !(0.0..=1.0).contains(&t)) {
            return Err(bad("temperature: Input should be less than or equal to 1"));
        }
    }
    match body.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad(format!("system.{i}.type: Input should be 'text'")));
                }
            }
        }
        Some(_) => return Err(bad("system: Input should be a valid string or list")),
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages: Field required"))?;
    if msgs.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    // tool_use ids of the previous assistant message, which the next user message must
    // answer first.
    let mut open: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "system" {
            return Err(bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'. Use the top-level \
                 `system` parameter for a system prompt"
            )));
        }
        if role != "user" && role != "assistant" {
            return Err(bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        if i == 0 && role != "user" {
            return Err(bad("messages: first message must use the \"user\" role"));
        }
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    return Err(bad(format!(
                        "messages.{i}: text content blocks must contain non-whitespace text"
                    )));
                }
                vec![serde_json::json!({"type": "text", "text": s})]
            }
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            Some(Value::Array(_)) => {
                return Err(bad(format!(
                    "messages.{i}: all messages must have non-empty content except for the \
                     optional final assistant message"
                )))
            }
            _ => return Err(bad(format!("messages.{i}.content: Field required"))),
        };
        let mut results: Vec<String> = Vec::new();
        let mut seen_other = false;
        let mut uses: Vec<String> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let t = b.get("text").and_then(Value::as_str);
                    if t.is_none_or(|t| t.trim().is_empty()) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                        )));
                    }
                    seen_other = true;
                }
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: tool_use blocks are only allowed in \
                             assistant messages"
                        )));
                    }
                    let id = b.get("id").and_then(Value::as_str).unwrap_or("");
                    if !id_ok(id) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.tool_use.id: String should match pattern \
                             '^[a-zA-Z0-9_-]+$'"
                        )));
                    }
                    if b.get("name").and_then(Value::as_str).is_none() {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.tool_use.name: Field required"
                        )));
                    }
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.tool_use.input: Input should be a valid \
                             dictionary"
                        )));
                    }
                    uses.push(id.to_string());
                    seen_other = true;
                }
                Some("tool_result") => {
                    if role != "user" {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: tool_result blocks are only allowed in \
                             user messages"
                        )));
                    }
                    if seen_other {
                        return Err(bad(format!(
                            "messages.{i}: tool_result blocks must come first in the user \
                             message, before any other content"
                        )));
                    }
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if !open.iter().any(|o| o == id) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in \
                             `tool_result` blocks: {id}. Each `tool_result` block must have a \
                             corresponding `tool_use` block in the previous message."
                        )));
                    }
                    match b.get("content") {
                        None | Some(Value::String(_)) | Some(Value::Array(_)) => {}
                        Some(_) => {
                            return Err(bad(format!(
                                "messages.{i}.content.{j}.tool_result.content: Input should be a \
                                 valid string or list"
                            )))
                        }
                    }
                    if b.get("is_error").is_some_and(|e| !e.is_boolean()) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.tool_result.is_error: Input should be a \
                             valid boolean"
                        )));
                    }
                    results.push(id.to_string());
                }
                Some(other) => {
                    return Err(bad(format!(
                        "messages.{i}.content.{j}.type: unsupported block type '{other}'"
                    )))
                }
                None => {
                    return Err(bad(format!(
                        "messages.{i}.content.{j}.type: Field required"
                    )))
                }
            }
        }
        if !open.is_empty() {
            let missing: Vec<&String> = open.iter().filter(|o| !results.contains(o)).collect();
            if role != "user" || !missing.is_empty() {
                let ids: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                return Err(bad(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                     immediately after: {}. Each `tool_use` block must have a corresponding \
                     `tool_result` block in the next message.",
                    if ids.is_empty() {
                        open.join(", ")
                    } else {
                        ids.join(", ")
                    }
                )));
            }
        }
        open = uses;
    }
    if let Some(tools) = body.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| bad("tools: Input should be a valid list"))?;
        for (i, t) in tools.iter().enumerate() {
            let name = t.get("name").and_then(Value::as_str).unwrap_or("");
            if !name_ok(name) {
                return Err(bad(format!(
                    "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                )));
            }
            if t.pointer("/input_schema/type").and_then(Value::as_str) != Some("object") {
                return Err(bad(format!(
                    "tools.{i}.custom.input_schema.type: Input should be 'object'"
                )));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------- OpenAI Chat Completions (and Azure)

/// Which door an OpenAI-format request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiDoor {
    /// api.openai.com: Bearer key and `model` required.
    OpenAi,
    /// Azure deployment path: `api-key` header and `api-version` query required.
    Azure,
    /// LM Studio / vLLM / llama.cpp: no key needed (a Bearer header, if any, must be
    /// well-formed).
    Local,
}

fn oai(message: impl Into<String>) -> Reject {
    bad(message)
}

pub fn openai(
    door: OpenAiDoor,
    h: &HeaderMap,
    query: Option<&str>,
    body: &Value,
) -> Result<(), Reject> {
    let bearer = header(h, "authorization");
    match door {
        OpenAiDoor::OpenAi => {
            let ok = bearer
                .and_then(|b| b.strip_prefix("Bearer "))
                .is_some_and(|k| !k.trim().is_empty());
            if !ok {
                return Err(Reject {
                    status: 401,
                    kind: "invalid_request_error".into(),
                    message: "You didn't provide an API key. You need to provide your API key in \
                              an Authorization header using Bearer auth (i.e. Authorization: \
                              Bearer YOUR_KEY)."
                        .into(),
                });
            }
        }
        OpenAiDoor::Azure => {
            if header(h, "api-key").is_none_or(str::is_empty) {
                return Err(Reject {
                    status: 401,
                    kind: "401".into(),
                    message: "Access denied due to invalid subscription key or wrong API \
                              endpoint. Make sure to provide a valid key for an active \
                              subscription and use a correct regional API endpoint for your \
                              resource."
                        .into(),
                });
            }
            let has_version = query
                .unwrap_or("")
                .split('&')
                .any(|kv| kv.starts_with("api-version=") && kv.len() > "api-version=".len());
            if !has_version {
                return Err(Reject {
                    status: 404,
                    kind: "404".into(),
                    message: "Resource not found".into(),
                });
            }
        }
        OpenAiDoor::Local => {
            if let Some(b) = bearer {
                if b.strip_prefix("Bearer ")
                    .is_none_or(|k| k.trim().is_empty())
                {
                    return Err(Reject {
                        status: 401,
                        kind: "invalid_request_error".into(),
                        message: "Malformed Authorization header".into(),
                    });
                }
            }
        }
    }
    if door != OpenAiDoor::Azure
        && body
            .get("model")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(oai("you must provide a model parameter"));
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| oai("Missing required parameter: 'messages'."))?;
    if msgs.is_empty() {
        return Err(oai("[] is too short - 'messages'"));
    }
    let mut open: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    oai(format!(
                        "Missing required parameter: 'messages[{i}].tool_call_id'."
                    ))
                })?;
            match open.iter().position(|o| o == id) {
                Some(pos) => {
                    open.remove(pos);
                }
                None => {
                    return Err(oai(
                        "Invalid parameter: messages with role 'tool' must be a response to a \
                         preceeding message with 'tool_calls'.",
                    ))
                }
            }
            match m.get("content") {
                Some(Value::String(_)) | Some(Value::Array(_)) => {}
                _ => {
                    return Err(oai(format!(
                        "Invalid type for 'messages[{i}].content': expected one of a string or \
                         array of objects, but got null instead."
                    )))
                }
            }
            continue;
        }
        if !open.is_empty() {
            return Err(oai(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages \
                 responding to each 'tool_call_id'. The following tool_call_ids did not have \
                 response messages: {}",
                open.join(", ")
            )));
        }
        match role {
            "system" | "developer" | "user" => {
                if !matches!(
                    m.get("content"),
                    Some(Value::String(_)) | Some(Value::Array(_))
                ) {
                    return Err(oai(format!(
                        "Invalid type for 'messages[{i}].content': expected one of a string or \
                         array of objects"
                    )));
                }
            }
            "assistant" => {
                let calls = m.get("tool_calls");
                let content = m.get("content");
                if calls.is_none() && content.is_none_or(Value::is_null) {
                    return Err(oai(format!(
                        "Invalid value for 'messages[{i}].content': expected a string, got null."
                    )));
                }
                if let Some(calls) = calls {
                    let calls = calls.as_array().ok_or_else(|| {
                        oai(format!(
                            "Invalid type for 'messages[{i}].tool_calls': expected an array"
                        ))
                    })?;
                    for (j, c) in calls.iter().enumerate() {
                        let id = c.get("id").and_then(Value::as_str).unwrap_or("");
                        if id.is_empty() {
                            return Err(oai(format!(
                                "Missing required parameter: 'messages[{i}].tool_calls[{j}].id'."
                            )));
                        }
                        if c.get("type").and_then(Value::as_str) != Some("function") {
                            return Err(oai(format!(
                                "Missing required parameter: 'messages[{i}].tool_calls[{j}].type'."
                            )));
                        }
                        if c.pointer("/function/name")
                            .and_then(Value::as_str)
                            .is_none()
                        {
                            return Err(oai(format!(
                                "Missing required parameter: \
                                 'messages[{i}].tool_calls[{j}].function.name'."
                            )));
                        }
                        match c.pointer("/function/arguments") {
                            Some(Value::String(_)) => {}
                            Some(other) => {
                                return Err(oai(format!(
                                    "Invalid type for \
                                     'messages[{i}].tool_calls[{j}].function.arguments': \
                                     expected a string, but got {} instead.",
                                    json_type(other)
                                )))
                            }
                            None => {
                                return Err(oai(format!(
                                    "Missing required parameter: \
                                     'messages[{i}].tool_calls[{j}].function.arguments'."
                                )))
                            }
                        }
                        open.push(id.to_string());
                    }
                }
            }
            other => {
                return Err(oai(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', \
                     'user', 'function', 'tool', and 'developer'."
                )))
            }
        }
    }
    if !open.is_empty() {
        return Err(oai(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages \
             responding to each 'tool_call_id'. The following tool_call_ids did not have \
             response messages: {}",
            open.join(", ")
        )));
    }
    let tools = body.get("tools").and_then(Value::as_array);
    if let Some(tools) = tools {
        if tools.len() > 128 {
            let mut r = oai(format!(
                "Invalid 'tools': array too long. Expected an array with maximum length 128, \
                 but got an array with length {} instead.",
                tools.len()
            ));
            r.kind = "array_above_max_length".into();
            return Err(r);
        }
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(oai(format!(
                    "Missing required parameter: 'tools[{i}].type'."
                )));
            }
            let name = t
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !name_ok(name) {
                return Err(oai(format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. \
                     Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                )));
            }
            if t.pointer("/function/parameters")
                .is_some_and(|p| !p.is_object())
            {
                return Err(oai(format!(
                    "Invalid type for 'tools[{i}].function.parameters': expected an object"
                )));
            }
        }
    }
    if body.get("parallel_tool_calls").is_some() && tools.is_none_or(|t| t.is_empty()) {
        return Err(oai(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed \
             when 'tools' are specified.",
        ));
    }
    if body.get("stream_options").is_some() && body.get("stream") != Some(&Value::Bool(true)) {
        return Err(oai(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    if let Some(rf) = body.get("response_format") {
        response_format(door, rf, msgs)?;
    }
    Ok(())
}

/// `response_format` as each door documents it. OpenAI (and Azure) know `text`,
/// `json_object` and `json_schema` with exactly the documented keys, and `json_object`
/// needs the word "json" somewhere in the messages. llama.cpp-style servers also take a
/// `schema` next to `json_object`.
fn response_format(door: OpenAiDoor, rf: &Value, msgs: &[Value]) -> Result<(), Reject> {
    let Some(m) = rf.as_object() else {
        return Err(oai(
            "Invalid type for 'response_format': expected an object, but got a string instead.",
        ));
    };
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
    let hosted = door != OpenAiDoor::Local;
    let allowed: &[&str] = match kind {
        "text" => &["type"],
        "json_object" if hosted => &["type"],
        "json_object" => &["type", "schema"],
        "json_schema" => &["type", "json_schema"],
        other => {
            return Err(oai(format!(
                "Invalid value: '{other}'. Supported values are: 'json_object', 'json_schema',                  and 'text'."
            )))
        }
    };
    if let Some(extra) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(oai(format!(
            "Unrecognized request argument supplied: response_format.{extra}"
        )));
    }
    match kind {
        "json_object" => {
            if let Some(schema) = m.get("schema") {
                if !schema.is_object() {
                    return Err(oai("response_format.schema must be an object"));
                }
            }
            let mentions_json = msgs.iter().any(|msg| {
                msg.get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.to_ascii_lowercase().contains("json"))
            });
            if hosted && !mentions_json {
                return Err(oai(
                    "'messages' must contain the word 'json' in some form, to use                      'response_format' of type 'json_object'.",
                ));
            }
        }
        "json_schema" => {
            let js = m
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| oai("Missing required parameter: 'response_format.json_schema'."))?;
            let name = js.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() || name.len() > 64 || !name_ok(name) {
                return Err(oai(
                    "Invalid 'response_format.json_schema.name': string does not match pattern.                      Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                ));
            }
            if let Some(extra) = js
                .keys()
                .find(|k| !["name", "description", "schema", "strict"].contains(&k.as_str()))
            {
                return Err(oai(format!(
                    "Unrecognized request argument supplied: response_format.json_schema.{extra}"
                )));
            }
            if js.get("schema").is_some_and(|s| !s.is_object()) {
                return Err(oai(
                    "Invalid type for 'response_format.json_schema.schema': expected an object.",
                ));
            }
            if js.get("strict").is_some_and(|s| !s.is_boolean()) {
                return Err(oai(
                    "Invalid type for 'response_format.json_schema.strict': expected a boolean.",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ------------------------------------------------------------ Bedrock Converse

fn validation(message: impl Into<String>) -> Reject {
    Reject {
        status: 400,
        kind: "ValidationException".into(),
        message: message.into(),
    }
}

/// Checks the SigV4 `Authorization` header is present and well-formed (not the signature
/// itself: the fake does not know which secret the client was given).
pub fn sigv4(h: &HeaderMap) -> Result<(), Reject> {
    let incomplete = |m: &str| Reject {
        status: 403,
        kind: "IncompleteSignatureException".into(),
        message: m.to_string(),
    };
    let Some(auth) = header(h, "authorization") else {
        return Err(Reject {
            status: 403,
            kind: "MissingAuthenticationTokenException".into(),
            message: "Missing Authentication Token".into(),
        });
    };
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("Authorization header must start with AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential
        .ok_or_else(|| incomplete("Authorization header requires 'Credential' parameter."))?;
    let signed = signed
        .ok_or_else(|| incomplete("Authorization header requires 'SignedHeaders' parameter."))?;
    let signature = signature
        .ok_or_else(|| incomplete("Authorization header requires 'Signature' parameter."))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let date_ok = |d: &str| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit());
    if scope.len() != 5
        || scope[0].is_empty()
        || !date_ok(scope[1])
        || scope[2].is_empty()
        || scope[3] != "bedrock"
        || scope[4] != "aws4_request"
    {
        return Err(incomplete(
            "Credential should be scoped to a valid region, service 'bedrock' and \
             'aws4_request'.",
        ));
    }
    if signature.len() != 64
        || !signature
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(incomplete("Signature must be 64 lowercase hex characters."));
    }
    let signed: Vec<&str> = signed.split(';').collect();
    for needed in ["host", "x-amz-date"] {
        if !signed.contains(&needed) {
            return Err(incomplete(&format!("SignedHeaders must include {needed}.")));
        }
    }
    let amz_date = header(h, "x-amz-date").unwrap_or("");
    let well_formed = amz_date.len() == 16
        && amz_date.as_bytes()[8] == b'T'
        && amz_date.ends_with('Z')
        && amz_date[..8] == *scope[1];
    if !well_formed {
        return Err(incomplete(
            "X-Amz-Date must be present, as YYYYMMDD'T'HHMMSS'Z', and match the credential \
             scope date.",
        ));
    }
    if signed.contains(&"x-amz-security-token") && header(h, "x-amz-security-token").is_none() {
        return Err(incomplete("x-amz-security-token is signed but missing."));
    }
    Ok(())
}

pub fn bedrock(h: &HeaderMap, model: &str, body: &Value) -> Result<(), Reject> {
    sigv4(h)?;
    if model.is_empty() {
        return Err(validation("The provided model identifier is invalid."));
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| validation("1 validation error detected: messages must not be null"))?;
    if msgs.is_empty() {
        return Err(validation(
            "A conversation must start with a user message. Try again with a conversation that \
             starts with a user message.",
        ));
    }
    let mut has_tool_blocks = false;
    let mut open: Vec<String> = Vec::new();
    let mut prev_role = "";
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(validation(format!(
                "1 validation error detected: Value '{role}' at 'messages.{}.member.role' failed \
                 to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                i + 1
            )));
        }
        if i == 0 && role != "user" {
            return Err(validation(
                "A conversation must start with a user message. Try again with a conversation \
                 that starts with a user message.",
            ));
        }
        if role == prev_role {
            return Err(validation(
                "A conversation must alternate between user and assistant roles. Make sure the \
                 conversation alternates between user and assistant roles and try again.",
            ));
        }
        prev_role = role;
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                validation(format!(
                    "The content field in the Message object at messages.{i} is empty. Add a \
                     ContentBlock object to the content field and try again."
                ))
            })?;
        let mut uses = Vec::new();
        let mut results = Vec::new();
        for (j, b) in content.iter().enumerate() {
            let obj = b
                .as_object()
                .ok_or_else(|| validation("ContentBlock must be an object"))?;
            if obj.len() != 1 {
                return Err(validation(format!(
                    "The ContentBlock object at messages.{i}.content.{j} must set exactly one of \
                     text, image, document, toolUse, toolResult."
                )));
            }
            if let Some(t) = obj.get("text") {
                if t.as_str().is_none_or(|t| t.trim().is_empty()) {
                    return Err(validation(format!(
                        "The text field in the ContentBlock object at messages.{i}.content.{j} \
                         is blank. Add text to the text field, and try again."
                    )));
                }
            } else if let Some(tu) = obj.get("toolUse") {
                has_tool_blocks = true;
                if role != "assistant" {
                    return Err(validation(
                        "toolUse blocks are only allowed in assistant messages",
                    ));
                }
                let id = tu.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
                if !name_ok(id) || !name_ok(name) || tu.get("input").is_none() {
                    return Err(validation(format!(
                        "1 validation error detected: Value at \
                         'messages.{}.member.content.{}.member.toolUse' failed to satisfy \
                         constraint: toolUseId and name must match [a-zA-Z0-9_-]{{1,64}} and \
                         input is required",
                        i + 1,
                        j + 1
                    )));
                }
                uses.push(id.to_string());
            } else if let Some(tr) = obj.get("toolResult") {
                has_tool_blocks = true;
                if role != "user" {
                    return Err(validation(
                        "toolResult blocks are only allowed in user messages",
                    ));
                }
                let id = tr.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                if !open.iter().any(|o| o == id) {
                    return Err(validation(format!(
                        "The number of toolResult blocks at messages.{i}.content exceeds the \
                         number of toolUse blocks of previous turn."
                    )));
                }
                let items = tr
                    .get("content")
                    .and_then(Value::as_array)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| validation("toolResult.content must be a non-empty list"))?;
                for item in items {
                    let ok = item.as_object().is_some_and(|o| {
                        o.len() == 1
                            && (o.get("json").is_some()
                                || o.get("text").and_then(Value::as_str).is_some())
                    });
                    if !ok {
                        return Err(validation(
                            "ToolResultContentBlock must set exactly one of json, text, image, \
                             document",
                        ));
                    }
                }
                if let Some(s) = tr.get("status") {
                    if s != "success" && s != "error" {
                        return Err(validation(
                            "toolResult.status must satisfy enum value set: [success, error]",
                        ));
                    }
                }
                results.push(id.to_string());
            } else {
                return Err(validation(format!(
                    "The ContentBlock object at messages.{i}.content.{j} has an unsupported type."
                )));
            }
        }
        if !open.is_empty() {
            let missing: Vec<&str> = open
                .iter()
                .filter(|o| !results.contains(o))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(validation(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing.join(", ")
                )));
            }
        }
        open = uses;
    }
    match body.get("toolConfig") {
        None if has_tool_blocks => {
            return Err(validation(
                "The toolConfig field must be defined when using toolUse and toolResult content \
                 blocks.",
            ))
        }
        None => {}
        Some(tc) => {
            let tools = tc
                .get("tools")
                .and_then(Value::as_array)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| validation("toolConfig.tools must contain at least one tool"))?;
            let mut names = BTreeSet::new();
            for t in tools {
                let spec = t
                    .get("toolSpec")
                    .ok_or_else(|| validation("Tool must set toolSpec"))?;
                let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
                if !name_ok(name) {
                    return Err(validation(
                        "toolSpec.name must satisfy regular expression pattern: \
                         [a-zA-Z0-9_-]{1,64}",
                    ));
                }
                if !names.insert(name.to_string()) {
                    return Err(validation(format!("Duplicate tool name: {name}")));
                }
                if !spec
                    .pointer("/inputSchema/json")
                    .is_some_and(Value::is_object)
                {
                    return Err(validation(
                        "toolSpec.inputSchema.json must be a JSON object",
                    ));
                }
            }
        }
    }
    if let Some(sys) = body.get("system") {
        let ok = sys.as_array().is_some_and(|a| {
            a.iter().all(|b| {
                b.get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty())
            })
        });
        if !ok {
            return Err(validation(
                "system must be a list of non-blank {text} blocks",
            ));
        }
    }
    if let Some(n) = body.pointer("/inferenceConfig/maxTokens") {
        if n.as_u64().is_none_or(|n| n < 1) {
            return Err(validation("inferenceConfig.maxTokens must be at least 1"));
        }
    }
    Ok(())
}

// -------------------------------------------------------------------- Ollama

fn ollama_err(message: impl Into<String>) -> Reject {
    Reject {
        status: 400,
        kind: String::new(),
        message: message.into(),
    }
}

/// Ollama itself is lenient about pairing; this check is stricter on purpose: after an
/// assistant turn with N tool calls come exactly N `tool` messages, in call order (their
/// `tool_name`, when given, matching), because results are matched by order.
pub fn ollama(body: &Value) -> Result<(), Reject> {
    match body.get("format") {
        None | Some(Value::Object(_)) => {}
        Some(Value::String(f)) if f == "json" => {}
        Some(other) => {
            return Err(ollama_err(format!(
                "invalid format: {other}; it must be \"json\" or a JSON schema object"
            )))
        }
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ollama_err("model is required"));
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ollama_err("messages is required"))?;
    let mut expected: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if let Some(c) = m.get("content") {
            if !c.is_string() {
                return Err(ollama_err(format!(
                    "json: cannot unmarshal {} into Go struct field Message.messages.content of \
                     type string",
                    json_type(c)
                        .trim_start_matches("a ")
                        .trim_start_matches("an ")
                )));
            }
        }
        if role == "tool" {
            if expected.is_empty() {
                return Err(ollama_err(format!(
                    "messages[{i}]: tool message without a preceding assistant tool call"
                )));
            }
            let want = expected.remove(0);
            if let Some(n) = m.get("tool_name").and_then(Value::as_str) {
                if n != want {
                    return Err(ollama_err(format!(
                        "messages[{i}]: tool_name '{n}' does not match the call at this \
                         position ('{want}')"
                    )));
                }
            }
            continue;
        }
        if !expected.is_empty() {
            return Err(ollama_err(format!(
                "messages[{i}]: expected tool results for: {}",
                expected.join(", ")
            )));
        }
        match role {
            "system" | "user" => {}
            "assistant" => {
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if name.is_empty() {
                            return Err(ollama_err("tool call function name is required"));
                        }
                        match c.pointer("/function/arguments") {
                            Some(Value::Object(_)) => {}
                            Some(other) => {
                                return Err(ollama_err(format!(
                                    "json: cannot unmarshal {} into Go struct field \
                                     ToolCallFunction.messages.tool_calls.function.arguments of \
                                     type api.ToolCallFunctionArguments",
                                    json_type(other)
                                        .trim_start_matches("a ")
                                        .trim_start_matches("an ")
                                )))
                            }
                            None => {}
                        }
                        expected.push(name.to_string());
                    }
                }
            }
            other => return Err(ollama_err(format!("invalid role: {other}"))),
        }
    }
    if !expected.is_empty() {
        return Err(ollama_err(format!(
            "expected tool results for: {}",
            expected.join(", ")
        )));
    }
    if let Some(tools) = body.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| ollama_err("tools must be a list"))?;
        for t in tools {
            if t.pointer("/function/name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ollama_err("tool function name is required"));
            }
        }
    }
    Ok(())
}
