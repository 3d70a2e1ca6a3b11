//! One tool round trip against a real small model (not in CI).
//!
//! Start it with `/work/shared/local-llm/setup.sh` (OpenAI-compatible server on
//! 127.0.0.1:8083, model name `local`; `LOCAL_LLM_URL` overrides the base URL), then run
//! `cargo test -p leforge-llm --test local_model -- --ignored`. The model may answer with a
//! structured call, a call written as text (recovered), or plain text, so the test asserts
//! the runtime's mechanics, not the model's choice.

use leforge_core::{ChatRequest, LlmClient, Message, Provider, StopReason, ToolSpec};
use leforge_llm::{LlmConfig, LlmRouter, OpenAiConfig};
use serde_json::json;

#[tokio::test]
#[ignore = "needs the local model from /work/shared/local-llm/setup.sh"]
async fn one_tool_round_trip_against_a_local_model() {
    let base =
        std::env::var("LOCAL_LLM_URL").unwrap_or_else(|_| "http://127.0.0.1:8083/v1".to_string());
    let cfg = LlmConfig {
        openai_compatible: Some(OpenAiConfig {
            base_url: base,
            api_key: None,
        }),
        // CPU inference at ~14 tokens/s: give each attempt room.
        request_timeout: std::time::Duration::from_secs(600),
        ..LlmConfig::default()
    };
    let router = LlmRouter::new(cfg).unwrap();

    let mut req = ChatRequest::new(
        Provider::OpenaiCompatible,
        "local",
        "You can call tools. To add numbers, call the tool math__add.",
    );
    req.max_tokens = 200;
    req.temperature = Some(0.0);
    req.tools = vec![ToolSpec::new(
        "math__add",
        "Adds two integers a and b.",
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
    )]
    .into();
    req.messages
        .push(Message::user("What is 17 + 25? Use the tool."));

    let first = router.chat(req.clone(), None).await.unwrap();
    eprintln!("first answer: {first:?}");
    if first.tool_calls.is_empty() {
        assert!(!first.text.is_empty(), "neither a call nor text");
        return;
    }
    assert!(!first.truncated);
    assert_eq!(first.stop_reason, StopReason::ToolCalls);
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "math__add");
    let a = call.arguments["a"].as_i64().unwrap_or(0);
    let b = call.arguments["b"].as_i64().unwrap_or(0);
    req.messages.push(Message::from_response(&first));
    for c in &first.tool_calls {
        let content = if c.id == call.id {
            json!({"sum": a + b})
        } else {
            json!("only one call is answered")
        };
        req.messages
            .push(Message::tool_result(c.id.clone(), content, c.id != call.id));
    }
    let second = router.chat(req, None).await.unwrap();
    eprintln!("second answer: {second:?}");
    assert!(!second.text.is_empty() || !second.tool_calls.is_empty());
}
