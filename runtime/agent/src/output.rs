//! Turning the model's final text into the run's output.

use serde_json::{json, Value};

/// A JSON object or array found in the final text — the whole text, or the first ```json
/// fenced block — becomes the output; anything else is wrapped as `{"result": text}`.
pub fn parse_final_output(text: &str) -> Value {
    let trimmed = text.trim();
    if let Some(v) = parse_structured(trimmed) {
        return v;
    }
    if let Some(block) = fenced_block(trimmed) {
        if let Some(v) = parse_structured(block.trim()) {
            return v;
        }
    }
    // Models often wrap the JSON in a sentence; take the outermost {...} or [...] span.
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(start), Some(end)) = (trimmed.find(open), trimmed.rfind(close)) {
            if start < end {
                if let Some(v) = parse_structured(&trimmed[start..=end]) {
                    return v;
                }
            }
        }
    }
    json!({"result": text})
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
        assert_eq!(parse_final_output("42"), json!({"result": "42"}));
    }
}
