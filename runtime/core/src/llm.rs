//! The provider-neutral conversation and the `LlmClient` contract every provider adapter
//! implements.
//!
//! The agent loop builds a [`ChatRequest`] from canonical tool names
//! (`<forgehook-id>__<endpoint>`) and gets a [`ChatResponse`] back in the same vocabulary:
//! sanitizing names for a provider, pairing tool calls with results in the provider's shape
//! and normalizing stop reasons is the adapter's job, so the loop never branches on the
//! provider.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::agent::Provider;

/// OpenAI rejects more tools than this; we apply the same limit to every provider so an
/// agent does not work on one provider and fail on another.
pub const MAX_TOOLS: usize = 128;

/// A tool offered to the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Canonical name, `<forgehook-id>__<endpoint>`; the adapter sanitizes it per provider.
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object. Private so that it cannot change under
    /// `parameters_json`.
    parameters: Value,
    /// `parameters` as JSON text, made on first use. Every turn of a run offers the same
    /// tools, and the schemas are the bulk of a request body: serializing them again on
    /// every turn was about 6% of the server's CPU under load (BENCHMARKS.md).
    #[serde(skip)]
    parameters_json: std::sync::OnceLock<String>,
}

impl ToolSpec {
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
            parameters_json: std::sync::OnceLock::new(),
        }
    }

    /// JSON Schema of the arguments object.
    pub fn parameters(&self) -> &Value {
        &self.parameters
    }

    /// The same schema as compact JSON text, serialized once per spec.
    pub fn parameters_json(&self) -> &str {
        self.parameters_json
            .get_or_init(|| self.parameters.to_string())
    }
}

/// Equal when name, description and schema are; whether the text was made yet is no part of it.
impl PartialEq for ToolSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.description == other.description
            && self.parameters == other.parameters
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id (generated for providers that have none, e.g. Ollama).
    pub id: String,
    /// Canonical tool name.
    pub name: String,
    /// The arguments object. When the model's arguments did not parse, this holds the raw
    /// text as a JSON string and the response is marked truncated.
    pub arguments: Value,
    /// True when the call was recovered from text a local model wrote instead of a
    /// structured tool call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The id of the [`ToolCall`] this answers.
    pub call_id: String,
    /// The result. A JSON string is sent to the provider as plain text; anything else is
    /// sent as compact JSON.
    pub content: Value,
    #[serde(default)]
    pub is_error: bool,
}

/// One entry of the conversation history.
///
/// Results are separate entries so the loop can append them as they finish; adapters group
/// the consecutive results that follow an assistant turn into whatever their provider
/// wants (one user message of `tool_result` blocks for Anthropic, one `tool` message per
/// call for OpenAI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        content: String,
    },
    Assistant {
        #[serde(default)]
        text: String,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    Tool(ToolResult),
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message::User {
            content: content.into(),
        }
    }

    pub fn assistant_text(text: impl Into<String>) -> Message {
        Message::Assistant {
            text: text.into(),
            tool_calls: Vec::new(),
        }
    }

    /// The assistant turn of a response, ready to be appended to the history.
    pub fn from_response(response: &ChatResponse) -> Message {
        Message::Assistant {
            text: response.text.clone(),
            tool_calls: response.tool_calls.clone(),
        }
    }

    pub fn tool_result(call_id: impl Into<String>, content: Value, is_error: bool) -> Message {
        Message::Tool(ToolResult {
            call_id: call_id.into(),
            content,
            is_error,
        })
    }
}

/// One call to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub provider: Provider,
    /// A model id or an alias (`claude-sonnet`, `gpt-4o`, …) resolved by the provider
    /// configuration; for Azure this is the deployment name.
    pub model: String,
    pub system: String,
    pub messages: Vec<Message>,
    /// Shared: a run offers the same tools on every turn, and their schemas are not small.
    pub tools: std::sync::Arc<[ToolSpec]>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    /// `None` leaves the provider's default (parallel calls allowed).
    pub parallel_tool_calls: Option<bool>,
    /// Stream the answer; text deltas are sent to the channel given to [`LlmClient::chat`].
    pub stream: bool,
    /// A JSON Schema the reply's text must follow (json tool mode). The adapter constrains
    /// decoding with whatever structured-output feature the provider accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<std::sync::Arc<Value>>,
}

impl ChatRequest {
    /// A request with no history, no tools, 4096 max tokens and no streaming.
    pub fn new(provider: Provider, model: impl Into<String>, system: impl Into<String>) -> Self {
        ChatRequest {
            provider,
            model: model.into(),
            system: system.into(),
            messages: Vec::new(),
            tools: std::sync::Arc::from([]),
            max_tokens: 4096,
            temperature: None,
            parallel_tool_calls: None,
            stream: false,
            response_schema: None,
        }
    }
}

/// Why the model stopped, the same words for every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    End,
    ToolCalls,
    MaxTokens,
    ContentFilter,
    Refusal,
    Other,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (0 when it does not say).
    pub cached_tokens: u64,
}

/// A normalized answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    /// Canonical names. Never execute these when `truncated` is true.
    pub tool_calls: Vec<ToolCall>,
    pub stop_reason: StopReason,
    /// The turn was cut by the token limit or its tool arguments did not parse: the calls
    /// are partial and must not be executed.
    pub truncated: bool,
    pub usage: Usage,
    /// The model id the provider was actually asked for (after alias resolution).
    pub model: String,
}

/// What `GET /api/v1/llm/providers` shows for one provider. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderInfo {
    pub name: Provider,
    /// Credentials (or, for local servers, an explicit URL) are set.
    pub configured: bool,
    pub base_url: Option<String>,
    pub default_model: Option<String>,
}

/// One entry of a provider's model list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("provider {provider} is not configured: {reason}")]
    NotConfigured { provider: Provider, reason: String },
    #[error("{count} tools offered; at most {max} are allowed")]
    TooManyTools { count: usize, max: usize },
    /// The history breaks a rule every provider enforces (e.g. a result for an unknown call).
    #[error("invalid conversation: {0}")]
    InvalidConversation(String),
    /// A 4xx other than 429: not retried; `message` is the provider's own explanation.
    #[error("{provider} rejected the request (HTTP {status}): {message}")]
    Rejected {
        provider: Provider,
        status: u16,
        message: String,
    },
    /// 5xx, 429, connect errors or timeouts that persisted through every retry.
    #[error("{provider} failed after {attempts} attempt(s): {reason}")]
    Failed {
        provider: Provider,
        attempts: u32,
        status: Option<u16>,
        reason: String,
    },
    #[error("malformed response from {provider}: {reason}")]
    MalformedResponse { provider: Provider, reason: String },
    /// The stream ended (or the provider sent an error event) before the answer was
    /// complete. Not retried: deltas may already have been forwarded.
    #[error("stream from {provider} was cut: {reason}")]
    StreamCut { provider: Provider, reason: String },
    #[error("{provider} does not support {what}")]
    Unsupported { provider: Provider, what: String },
}

impl LlmError {
    /// The kind of failure, as a bounded label for metrics and the `error.type` of spans.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::NotConfigured { .. } => "not_configured",
            LlmError::TooManyTools { .. } => "too_many_tools",
            LlmError::InvalidConversation(_) => "invalid_conversation",
            LlmError::Rejected { .. } => "rejected",
            LlmError::Failed { .. } => "failed",
            LlmError::MalformedResponse { .. } => "malformed_response",
            LlmError::StreamCut { .. } => "stream_cut",
            LlmError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Sends a conversation to a model.
///
/// Dropping the returned future abandons the request (the agent loop relies on this for
/// cancel and run timeouts), so implementations must not spawn detached work.
#[async_trait::async_trait]
pub trait LlmClient: Send + Sync {
    /// When `request.stream` is true and `deltas` is given, text deltas are sent to it as
    /// they arrive; the returned response still holds the full text.
    async fn chat(
        &self,
        request: ChatRequest,
        deltas: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<ChatResponse, LlmError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_spec_schema_text_is_its_parameters_and_not_part_of_equality() {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string", "description": "a \"quoted\" word"}}});
        let spec = ToolSpec::new("a__b", "does b", schema.clone());
        let fresh = spec.clone();
        let text = spec.parameters_json();
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), schema);
        assert_eq!(
            spec, fresh,
            "a spec whose text was made equals one whose was not"
        );
        assert_ne!(
            spec,
            ToolSpec::new("a__b", "does b", json!({"type": "object"}))
        );
        let round: ToolSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(round, spec);
        assert_eq!(round.parameters_json(), text);
    }

    #[test]
    fn messages_round_trip_through_json() {
        let msgs = vec![
            Message::user("hi"),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "csv__parse".into(),
                    arguments: json!({"a": 1}),
                    recovered: false,
                }],
            },
            Message::tool_result("c1", json!({"ok": true}), false),
        ];
        let v = serde_json::to_value(&msgs).unwrap();
        assert_eq!(v[0], json!({"role": "user", "content": "hi"}));
        assert_eq!(v[2]["role"], "tool");
        assert_eq!(v[2]["call_id"], "c1");
        let back: Vec<Message> = serde_json::from_value(v).unwrap();
        assert_eq!(back, msgs);
    }

    #[test]
    fn stop_reason_wire_names() {
        assert_eq!(
            serde_json::to_value(StopReason::ToolCalls).unwrap(),
            json!("tool_calls")
        );
        assert_eq!(
            serde_json::to_value(StopReason::MaxTokens).unwrap(),
            json!("max_tokens")
        );
    }
}
