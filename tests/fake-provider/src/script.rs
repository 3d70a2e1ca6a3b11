//! What the fake model answers next. A script is provider-neutral: the server renders it in
//! the format of whichever endpoint the request hit (and streams it if asked), so one test
//! script works against Anthropic, OpenAI, Azure, Bedrock and Ollama alike.

use serde_json::Value;

/// A tool call the fake model makes. `name` is the *wire* name the model "says" (for
/// canonical names that are already `^[a-zA-Z0-9_-]{1,64}$` that is the same string).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    pub name: String,
    pub arguments: Value,
    /// Call id to send; generated (`call_1`, `toolu_fake_2`, …) when `None`.
    pub id: Option<String>,
}

impl ScriptedCall {
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        ScriptedCall {
            name: name.into(),
            arguments,
            id: None,
        }
    }
}

/// How a "local model" writes a tool call into its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// `{"name": …, "arguments": {…}}`
    Bare,
    /// Inside a ```json fence, with a sentence before it.
    Fenced,
    /// Inside `<tool_call>…</tool_call>` tags (Qwen's template).
    Tagged,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// A normal answer: text and/or tool calls (several calls = parallel calls).
    Reply {
        text: String,
        calls: Vec<ScriptedCall>,
    },
    /// HTTP 429 in the provider's error shape, with `Retry-After` when given.
    RateLimited { retry_after: Option<String> },
    /// A transient server error in the provider's shape (500, 502, 503, 504, 529…).
    ServerError { status: u16 },
    /// A client error (4xx) in the provider's shape with this message.
    Error { status: u16, message: String },
    /// 200 with a body (or stream event) that is not valid JSON.
    MalformedJson,
    /// The connection drops in the middle of this tool call's arguments.
    CutMidToolCall { call: ScriptedCall },
    /// The model hits max_tokens while writing this call's arguments.
    MaxTokensMidToolCall { call: ScriptedCall },
    /// Never answers (until the client gives up).
    Hang,
    /// A streamed answer that starts, then carries the provider's in-stream error event
    /// (Anthropic `event: error` with `overloaded_error`, an OpenAI `{"error":…}` chunk, an
    /// Ollama `{"error":…}` line). Non-streamed requests get HTTP 529/500 instead.
    StreamError { message: String },
}

impl Script {
    pub fn text(text: impl Into<String>) -> Script {
        Script::Reply {
            text: text.into(),
            calls: Vec::new(),
        }
    }

    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Script {
        Script::Reply {
            text: String::new(),
            calls: vec![ScriptedCall::new(name, arguments)],
        }
    }

    /// Several calls in one turn (parallel tool calls).
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Script {
        Script::Reply {
            text: String::new(),
            calls: calls
                .into_iter()
                .map(|(n, a)| ScriptedCall::new(n, a))
                .collect(),
        }
    }

    /// Text followed by calls in the same turn.
    pub fn text_and_calls(text: impl Into<String>, calls: Vec<ScriptedCall>) -> Script {
        Script::Reply {
            text: text.into(),
            calls,
        }
    }

    /// A "local model" writing the call as text instead of a structured tool call.
    pub fn text_tool_call(name: &str, arguments: Value, style: TextStyle) -> Script {
        let json = serde_json::json!({"name": name, "arguments": arguments}).to_string();
        let text = match style {
            TextStyle::Bare => json,
            TextStyle::Fenced => format!("I will call the tool.\n```json\n{json}\n```"),
            TextStyle::Tagged => format!("<tool_call>\n{json}\n</tool_call>"),
        };
        Script::text(text)
    }

    pub fn rate_limited(retry_after: impl Into<String>) -> Script {
        Script::RateLimited {
            retry_after: Some(retry_after.into()),
        }
    }

    pub fn rate_limited_without_header() -> Script {
        Script::RateLimited { retry_after: None }
    }

    /// HTTP 500.
    pub fn server_error() -> Script {
        Script::ServerError { status: 500 }
    }

    /// HTTP 529, Anthropic's "overloaded".
    pub fn overloaded() -> Script {
        Script::ServerError { status: 529 }
    }

    pub fn status(status: u16) -> Script {
        Script::ServerError { status }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Script {
        Script::Error {
            status,
            message: message.into(),
        }
    }

    pub fn malformed_json() -> Script {
        Script::MalformedJson
    }

    pub fn cut_mid_tool_call(name: impl Into<String>, arguments: Value) -> Script {
        Script::CutMidToolCall {
            call: ScriptedCall::new(name, arguments),
        }
    }

    pub fn max_tokens_mid_tool_call(name: impl Into<String>, arguments: Value) -> Script {
        Script::MaxTokensMidToolCall {
            call: ScriptedCall::new(name, arguments),
        }
    }

    pub fn hang() -> Script {
        Script::Hang
    }

    pub fn stream_error(message: impl Into<String>) -> Script {
        Script::StreamError {
            message: message.into(),
        }
    }
}
