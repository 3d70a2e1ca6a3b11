//! Structured output: how each provider is told that a reply must follow a JSON Schema.
//!
//! Servers that speak the same wire format disagree on this one field. llama.cpp-style
//! servers take `response_format: {"type": "json_object", "schema": …}`; OpenAI, vLLM and LM
//! Studio take `{"type": "json_schema", "json_schema": {…}}`; Ollama takes `format: <schema>`
//! (older versions only `format: "json"`). Each provider has an ordered list of variants;
//! the router starts at the one that last worked for the provider and, when the provider
//! refuses a variant with a 400 or 422, tries the next one once.

use leforge_core::Provider;
use serde_json::{json, Map, Value};

/// One way of asking for a reply that follows a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Constraint {
    /// `response_format: {"type": "json_object", "schema": S}` (llama.cpp server,
    /// llama-cpp-python).
    JsonObjectWithSchema,
    /// `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`
    /// (OpenAI, Azure, vLLM, LM Studio).
    JsonSchema,
    /// Ollama's `format: S`.
    OllamaSchema,
    /// Ollama's `format: "json"`: valid JSON, not the schema; the preamble carries the shape.
    OllamaJson,
    /// Nothing: the provider has no structured output (or refused every variant), so the
    /// reply is checked after the fact and corrected once.
    None,
}

/// The name OpenAI requires for a `json_schema` format (`^[a-zA-Z0-9_-]{1,64}$`).
pub(crate) const SCHEMA_NAME: &str = "leforge_reply";

/// The variants to try for a provider, best first.
pub(crate) fn variants(provider: Provider) -> &'static [Constraint] {
    use Constraint::*;
    match provider {
        Provider::OpenaiCompatible => &[JsonObjectWithSchema, JsonSchema, None],
        Provider::Lmstudio => &[JsonSchema, JsonObjectWithSchema, None],
        // Not `strict`: strict mode needs `additionalProperties: false` and every property
        // required at every level, which "any JSON answer" and free-form arguments are not.
        Provider::Openai | Provider::Azure => &[JsonSchema, None],
        Provider::Ollama => &[OllamaSchema, OllamaJson, None],
        // Anthropic's and Bedrock's APIs take no response schema; the preamble and the
        // one corrective turn have to do.
        Provider::Anthropic | Provider::Bedrock => &[None],
    }
}

impl Constraint {
    /// Writes this variant's field(s) into a request body.
    pub(crate) fn apply(self, schema: &Value, body: &mut Map<String, Value>) {
        match self {
            Constraint::JsonObjectWithSchema => {
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_object", "schema": schema}),
                );
            }
            Constraint::JsonSchema => {
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {
                        "name": SCHEMA_NAME, "schema": schema, "strict": false,
                    }}),
                );
            }
            Constraint::OllamaSchema => {
                body.insert("format".into(), schema.clone());
            }
            Constraint::OllamaJson => {
                body.insert("format".into(), json!("json"));
            }
            Constraint::None => {}
        }
    }
}

/// Which variant each provider is at, shared by every request of the router. Starts at the
/// first; moves on only when a provider refused one and the next was accepted.
#[derive(Debug, Default)]
pub(crate) struct Memory(std::sync::Mutex<std::collections::HashMap<Provider, usize>>);

impl Memory {
    /// The index into `variants(provider)` to start at (always a valid one).
    pub(crate) fn current(&self, provider: Provider) -> usize {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let remembered = m.get(&provider).copied().unwrap_or(0);
        remembered.min(variants(provider).len() - 1)
    }

    pub(crate) fn remember(&self, provider: Provider, index: usize) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(provider, index);
    }
}

/// Whether an error is the provider refusing the request's shape (so another variant may
/// be accepted), rather than a failure that another variant would meet as well.
pub(crate) fn is_refusal(e: &leforge_core::LlmError) -> bool {
    matches!(e, leforge_core::LlmError::Rejected { status, .. } if *status == 400 || *status == 422)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_ends_with_no_constraint() {
        for p in Provider::ALL {
            assert_eq!(variants(p).last(), Some(&Constraint::None), "{p}");
        }
    }

    #[test]
    fn variants_write_the_documented_fields() {
        let schema = json!({"type": "object"});
        let mut b = Map::new();
        Constraint::JsonSchema.apply(&schema, &mut b);
        assert_eq!(
            b["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "leforge_reply", "schema": {"type": "object"}, "strict": false}})
        );
        let mut b = Map::new();
        Constraint::OllamaJson.apply(&schema, &mut b);
        assert_eq!(b["format"], "json");
        let mut b = Map::new();
        Constraint::None.apply(&schema, &mut b);
        assert!(b.is_empty());
    }
}
