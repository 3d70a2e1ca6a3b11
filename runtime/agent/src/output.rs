//! Turning the model's final text into the run's output.

use serde_json::{json, Value};

/// The JSON value a final text is or contains — the whole text, the first fenced block, or
/// the outermost `{...}` / `[...]` span of a sentence around it — becomes the output. Only
/// real prose is wrapped, as `{"result": text}`.
pub fn parse_final_output(text: &str) -> Value {
    find_json(text).unwrap_or_else(|| json!({"result": text}))
}

/// The one JSON value `text` is or contains, if any. A bare scalar counts only when it is the
/// whole text (or the whole fenced block): a number inside a sentence is prose.
pub fn find_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Some(v);
    }
    if let Some(block) = fenced_block(trimmed) {
        if let Ok(v) = serde_json::from_str::<Value>(block.trim()) {
            return Some(v);
        }
    }
    // Models often wrap the JSON in a sentence; take the outermost {...} or [...] span.
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(start), Some(end)) = (trimmed.find(open), trimmed.rfind(close)) {
            if start < end {
                if let Some(v) = parse_structured(&trimmed[start..=end]) {
                    return Some(v);
                }
            }
        }
    }
    None
}

fn parse_structured(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Some(v),
        _ => None,
    }
}

fn fenced_block(text: &str) -> Option<&str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    // Skip the info string (`json`, `JSON`, or nothing) up to the end of the line.
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    Some(&body[..end])
}

/// Validates the output against the agent's `output_schema`, listing every problem.
pub fn schema_problems(validator: &jsonschema::Validator, output: &Value) -> Vec<String> {
    validator
        .iter_errors(output)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_json_in_plain_fenced_and_wrapped_text() {
        assert_eq!(parse_final_output(r#"{"a": 1}"#), json!({"a": 1}));
        assert_eq!(
            parse_final_output("Here:\n```json\n[1, 2]\n```\nDone."),
            json!([1, 2])
        );
        assert_eq!(
            parse_final_output(r#"The totals are {"West": 2700} as requested."#),
            json!({"West": 2700})
        );
        assert_eq!(
            parse_final_output("just words"),
            json!({"result": "just words"})
        );
        // A bare JSON value is the answer; a number in a sentence is still prose.
        assert_eq!(parse_final_output("42"), json!(42));
        assert_eq!(parse_final_output("```\n\"done\"\n```"), json!("done"));
        assert_eq!(
            parse_final_output("The answer is 42."),
            json!({"result": "The answer is 42."})
        );
    }
}
