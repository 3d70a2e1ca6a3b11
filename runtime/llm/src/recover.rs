//! Tool calls that small local models write as text instead of structured `tool_calls`.
//!
//! Qwen-style models on llama.cpp-based servers often answer with
//! `{"name": "...", "arguments": {...}}` in `content`, bare, in a ```json fence or in
//! `<tool_call>` tags. Only objects naming one of the offered tools are taken, so ordinary
//! JSON answers (the agent's final output) are left alone.

use serde_json::{Map, Value};

/// A call found in text: wire name and arguments object.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCall {
    pub name: String,
    pub arguments: Value,
}

/// Finds tool calls written in `text`. `is_tool` says whether a wire name was offered.
/// Returns nothing unless every candidate is a well-formed call of an offered tool, so a
/// half-recognised answer is left as text rather than partly executed.
pub fn recover_calls(text: &str, is_tool: impl Fn(&str) -> bool) -> Vec<TextCall> {
    let candidates = candidates(text);
    let mut calls = Vec::new();
    for c in &candidates {
        let Ok(v) = serde_json::from_str::<Value>(c.trim()) else {
            return Vec::new();
        };
        let items = match v {
            Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            match as_call(&item, &is_tool) {
                Some(call) => calls.push(call),
                None => return Vec::new(),
            }
        }
    }
    calls
}

/// The JSON snippets to try: the contents of `<tool_call>` tags, else of ```json fences,
/// else the whole text.
fn candidates(text: &str) -> Vec<String> {
    let tagged = between_all(text, "<tool_call>", "</tool_call>");
    if !tagged.is_empty() {
        return tagged;
    }
    let mut fenced = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        // Skip the info string (`json`, `tool_call`, …) up to the end of the line.
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
        let body = &after[body_start..];
        let Some(end) = body.find("```") else { break };
        fenced.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    if !fenced.is_empty() {
        return fenced;
    }
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![trimmed.to_string()]
    } else {
        Vec::new()
    }
}

fn between_all(text: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(s) = rest.find(open) {
        let after = &rest[s + open.len()..];
        match after.find(close) {
            Some(e) => {
                out.push(after[..e].to_string());
                rest = &after[e + close.len()..];
            }
            // An unclosed last tag (the model stopped early) still holds the JSON.
            None => {
                out.push(after.to_string());
                break;
            }
        }
    }
    out
}

fn as_call(v: &Value, is_tool: &impl Fn(&str) -> bool) -> Option<TextCall> {
    let obj = v.as_object()?;
    // Some models nest it OpenAI-style: {"function": {"name", "arguments"}}.
    let obj: &Map<String, Value> = match obj.get("function").and_then(Value::as_object) {
        Some(inner) if obj.get("name").is_none() => inner,
        _ => obj,
    };
    let name = obj.get("name")?.as_str()?;
    if !is_tool(name) {
        return None;
    }
    let args = obj
        .get("arguments")
        .or_else(|| obj.get("parameters"))
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let args = match args {
        Value::String(s) if s.trim().is_empty() => Value::Object(Map::new()),
        Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
        other => other,
    };
    if !args.is_object() {
        return None;
    }
    Some(TextCall {
        name: name.to_string(),
        arguments: args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(n: &str) -> bool {
        n == "math__add" || n == "csv__parse"
    }

    #[test]
    fn bare_fenced_and_tagged() {
        let bare = r#"{"name": "math__add", "arguments": {"a": 1, "b": 2}}"#;
        assert_eq!(
            recover_calls(bare, tools),
            vec![TextCall {
                name: "math__add".into(),
                arguments: json!({"a": 1, "b": 2})
            }]
        );
        let fenced =
            "Sure:\n```json\n{\"name\": \"csv__parse\", \"arguments\": \"{\\\"x\\\": 1}\"}\n```";
        assert_eq!(recover_calls(fenced, tools)[0].arguments, json!({"x": 1}));
        let tagged = "<tool_call>\n{\"name\": \"math__add\", \"arguments\": {}}\n</tool_call>\n<tool_call>{\"name\": \"csv__parse\", \"parameters\": {\"q\": 2}}</tool_call>";
        let calls = recover_calls(tagged, tools);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, json!({"q": 2}));
    }

    #[test]
    fn ordinary_answers_are_left_alone() {
        assert!(recover_calls(r#"{"name": "Bob", "age": 3}"#, tools).is_empty());
        assert!(recover_calls(r#"{"result": 3}"#, tools).is_empty());
        assert!(recover_calls("The answer is 3.", tools).is_empty());
        assert!(recover_calls(r#"{"name": "math__add", "arguments": {"a": "#, tools).is_empty());
    }
}
