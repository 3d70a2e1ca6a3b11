//! The serialized request of one fixed three-turn conversation, per provider, compared
//! with a reviewed file in tests/golden/. A change here is a wire-format change: review
//! the diff against the provider's documentation before accepting it
//! (`UPDATE_GOLDEN=1 cargo test -p leforge-llm --test golden` rewrites the files).

use leforge_core::{ChatRequest, Message, Provider, ToolCall, ToolSpec};
use leforge_llm::{LlmConfig, LlmRouter};
use serde_json::{json, Value};

fn conversation(provider: Provider, model: &str) -> ChatRequest {
    let mut r = ChatRequest::new(provider, model, "You are a careful calculator.");
    r.max_tokens = 1024;
    r.temperature = Some(0.2);
    r.parallel_tool_calls = Some(true);
    r.tools = std::sync::Arc::from(vec![
        ToolSpec::new(
            "math__add",
            "Adds two numbers.",
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
        ),
        ToolSpec::new(
            "text.tools__upper",
            "Uppercases a string.",
            json!({"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}),
        ),
    ]);
    r.messages = vec![
        Message::user("Add 1 and 2, then uppercase the word done."),
        Message::Assistant {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "call_01".into(),
                name: "math__add".into(),
                arguments: json!({"a": 1, "b": 2}),
                recovered: false,
            }],
        },
        Message::tool_result("call_01", json!({"sum": 3}), false),
        Message::Assistant {
            text: "Now the word.".into(),
            tool_calls: vec![
                ToolCall {
                    id: "call_02".into(),
                    name: "text.tools__upper".into(),
                    arguments: json!({"s": "done"}),
                    recovered: false,
                },
                ToolCall {
                    id: "call_03".into(),
                    name: "math__add".into(),
                    arguments: json!({"a": 3, "b": 0}),
                    recovered: false,
                },
            ],
        },
        // Out of call order on purpose.
        Message::tool_result("call_03", json!(3), false),
        Message::tool_result("call_02", json!("upper failed"), true),
        Message::user("Please finish with a JSON answer."),
    ];
    r
}

fn check(provider: Provider, model: &str, file: &str) {
    let router = LlmRouter::new(LlmConfig::for_test_server("http://127.0.0.1:9")).unwrap();
    let body = router.request_body(&conversation(provider, model)).unwrap();
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let pretty = serde_json::to_string_pretty(&body).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    )
    .unwrap();
    assert_eq!(
        body, golden,
        "{provider}: request differs from {path}\n{pretty}"
    );
}

#[test]
fn golden_anthropic() {
    check(Provider::Anthropic, "claude-sonnet", "anthropic.json");
}

#[test]
fn golden_openai() {
    check(Provider::Openai, "gpt-4o", "openai.json");
}

#[test]
fn golden_azure() {
    check(Provider::Azure, "my-gpt4o-deployment", "azure.json");
}

#[test]
fn golden_bedrock() {
    check(Provider::Bedrock, "claude-sonnet", "bedrock.json");
}

#[test]
fn golden_ollama() {
    check(Provider::Ollama, "qwen2.5-coder:1.5b", "ollama.json");
}

#[test]
fn golden_lmstudio() {
    check(
        Provider::Lmstudio,
        "qwen2.5-coder-1.5b-instruct",
        "lmstudio.json",
    );
}

#[test]
fn golden_openai_compatible() {
    check(
        Provider::OpenaiCompatible,
        "qwen2.5-coder",
        "openai-compatible.json",
    );
}

/// Tools are written into bodies by hand from cached schema text, not through serde:
/// descriptions with quotes, backslashes, newlines and non-ASCII must still come out as
/// the same JSON strings, and a body with no other fields must still be one object.
#[test]
fn offered_tools_survive_escaping_on_every_provider() {
    let router = LlmRouter::new(LlmConfig::for_test_server("http://127.0.0.1:9")).unwrap();
    let description = "Says \"hi\"\\n to C:\\temp\nthen ✓ — done\u{1}";
    let schema = json!({"type": "object", "properties": {"s": {"type": "string", "description": "a \"quoted\" \\ value"}}});
    for provider in Provider::ALL {
        let mut r = ChatRequest::new(provider, "m", "");
        r.messages = vec![Message::user("go")];
        r.tools = std::sync::Arc::from(vec![ToolSpec::new(
            "odd__tool",
            description,
            schema.clone(),
        )]);
        let body = router.request_body(&r).unwrap();
        let tool = &body["tools"][0];
        let (desc, params) = match provider {
            Provider::Anthropic => (&tool["description"], &tool["input_schema"]),
            Provider::Bedrock => {
                let spec = &body["toolConfig"]["tools"][0]["toolSpec"];
                (&spec["description"], &spec["inputSchema"]["json"])
            }
            _ => (
                &tool["function"]["description"],
                &tool["function"]["parameters"],
            ),
        };
        assert_eq!(desc, description, "{provider}: {body}");
        assert_eq!(params, &schema, "{provider}: {body}");
        assert!(body["messages"].is_array(), "{provider}: {body}");
    }
}
