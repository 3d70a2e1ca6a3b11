//! Every adapter against the wire-level fake provider: request shapes, pairing of calls
//! and results across a three-turn conversation, streaming, faults, retries, truncation,
//! recovery and name sanitizing.

use std::time::Duration;

use leforge_core::{
    ChatRequest, LlmClient, LlmError, Message, Provider, StopReason, ToolCall, ToolSpec,
};
use leforge_fake_provider::{FakeProvider, Format, Script, ScriptedCall, TextStyle};
use leforge_llm::{LlmConfig, LlmRouter};
use serde_json::{json, Value};

async fn setup() -> (FakeProvider, LlmRouter) {
    let fake = FakeProvider::start().await;
    let router = LlmRouter::new(LlmConfig::for_test_server(&fake.base_url())).unwrap();
    (fake, router)
}

async fn setup_with(edit: impl FnOnce(&mut LlmConfig)) -> (FakeProvider, LlmRouter) {
    let fake = FakeProvider::start().await;
    let mut cfg = LlmConfig::for_test_server(&fake.base_url());
    edit(&mut cfg);
    (fake, LlmRouter::new(cfg).unwrap())
}

const ADD: &str = "math__add";
/// Not a valid provider name: exercises sanitizing and the reverse map.
const UPPER: &str = "text.tools__upper";

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec::new(
            ADD,
            "Adds two numbers.",
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
        ),
        ToolSpec::new(
            UPPER,
            "Uppercases a string.",
            json!({"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}),
        ),
    ]
}

fn request(provider: Provider) -> ChatRequest {
    let mut r = ChatRequest::new(provider, "test-model", "You are a careful calculator.");
    r.tools = tools().into();
    r.max_tokens = 512;
    r.temperature = Some(0.2);
    r.messages
        .push(Message::user("Add 1 and 2, then uppercase the word done."));
    r
}

/// The wire name the client sent for a canonical tool name (read from the recorded
/// request, whatever the format).
fn wire_name(body: &Value, format: Format, index: usize) -> String {
    let ptr = match format {
        Format::Anthropic => format!("/tools/{index}/name"),
        Format::Bedrock => format!("/toolConfig/tools/{index}/toolSpec/name"),
        _ => format!("/tools/{index}/function/name"),
    };
    body.pointer(&ptr)
        .and_then(Value::as_str)
        .unwrap()
        .to_string()
}

fn format_of(p: Provider) -> Format {
    match p {
        Provider::Anthropic => Format::Anthropic,
        Provider::Bedrock => Format::Bedrock,
        Provider::Ollama => Format::Ollama,
        _ => Format::OpenAi,
    }
}

/// Drives tool call → two parallel tool calls (one failing) → final answer, and checks
/// every request was accepted by the fake's validation.
async fn three_turns(provider: Provider, stream: bool) {
    let (fake, router) = setup().await;
    let format = format_of(provider);
    let mut req = request(provider);
    req.stream = stream;

    fake.push(Script::tool_call(ADD, json!({"a": 1, "b": 2})));
    let r1 = router.chat(req.clone(), None).await.unwrap();
    assert_eq!(r1.stop_reason, StopReason::ToolCalls, "{provider}");
    assert!(!r1.truncated);
    assert_eq!(r1.tool_calls.len(), 1);
    assert_eq!(r1.tool_calls[0].name, ADD);
    assert_eq!(r1.tool_calls[0].arguments, json!({"a": 1, "b": 2}));
    assert!(!r1.tool_calls[0].recovered);
    assert_eq!(r1.usage.input_tokens, leforge_fake_provider::INPUT_TOKENS);
    assert_eq!(r1.usage.output_tokens, leforge_fake_provider::OUTPUT_TOKENS);

    let upper_wire = wire_name(&fake.requests()[0].body, format, 1);
    assert_ne!(upper_wire, UPPER, "invalid name must be sanitized");
    req.messages.push(Message::from_response(&r1));
    req.messages.push(Message::tool_result(
        r1.tool_calls[0].id.clone(),
        json!({"sum": 3}),
        false,
    ));

    fake.push(Script::Reply {
        text: "Now the word.".into(),
        calls: vec![
            ScriptedCall::new(upper_wire.clone(), json!({"s": "done"})),
            ScriptedCall::new(ADD, json!({"a": 3, "b": 0})),
        ],
    });
    let r2 = router.chat(req.clone(), None).await.unwrap();
    assert_eq!(r2.tool_calls.len(), 2, "{provider}");
    assert_eq!(r2.tool_calls[0].name, UPPER, "reverse-mapped to canonical");
    assert_eq!(r2.tool_calls[1].name, ADD);
    assert_ne!(r2.tool_calls[0].id, r2.tool_calls[1].id);
    assert_eq!(r2.text, "Now the word.");
    req.messages.push(Message::from_response(&r2));
    // Results arrive out of order; the adapter must restore call order where it matters.
    req.messages.push(Message::tool_result(
        r2.tool_calls[1].id.clone(),
        json!(3),
        false,
    ));
    req.messages.push(Message::tool_result(
        r2.tool_calls[0].id.clone(),
        json!("upper failed: out of capital letters"),
        true,
    ));

    fake.push(Script::text("{\"result\": \"DONE\", \"sum\": 3}"));
    let r3 = router.chat(req.clone(), None).await.unwrap();
    assert_eq!(r3.stop_reason, StopReason::End);
    assert!(r3.tool_calls.is_empty());
    assert_eq!(r3.text, "{\"result\": \"DONE\", \"sum\": 3}");

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{provider}: no retries, no extra requests");
    for r in &reqs {
        assert!(r.rejected.is_none(), "{provider}: {:?}", r.rejected);
        assert_eq!(r.format, format);
        assert_eq!(r.wants_stream(), stream);
    }
    assert_eq!(fake.remaining(), 0);
    // What was sent is exactly what request_body() shows.
    let mut expected = router.request_body(&req).unwrap();
    let sent = reqs[2].body.clone();
    if provider == Provider::Azure || provider == Provider::Bedrock {
        expected.as_object_mut().unwrap().remove("model");
    }
    assert_eq!(sent, expected, "{provider}");
}

#[tokio::test]
async fn three_turns_anthropic() {
    three_turns(Provider::Anthropic, false).await;
}
#[tokio::test]
async fn three_turns_openai() {
    three_turns(Provider::Openai, false).await;
}
#[tokio::test]
async fn three_turns_azure() {
    three_turns(Provider::Azure, false).await;
}
#[tokio::test]
async fn three_turns_bedrock() {
    three_turns(Provider::Bedrock, false).await;
}
#[tokio::test]
async fn three_turns_ollama() {
    three_turns(Provider::Ollama, false).await;
}
#[tokio::test]
async fn three_turns_lmstudio() {
    three_turns(Provider::Lmstudio, false).await;
}
#[tokio::test]
async fn three_turns_openai_compatible() {
    three_turns(Provider::OpenaiCompatible, false).await;
}
#[tokio::test]
async fn three_turns_streamed_anthropic() {
    three_turns(Provider::Anthropic, true).await;
}
#[tokio::test]
async fn three_turns_streamed_openai() {
    three_turns(Provider::Openai, true).await;
}
#[tokio::test]
async fn three_turns_streamed_ollama() {
    three_turns(Provider::Ollama, true).await;
}

#[tokio::test]
async fn request_shapes_carry_provider_headers() {
    let (fake, router) = setup().await;
    for p in [
        Provider::Anthropic,
        Provider::Openai,
        Provider::Azure,
        Provider::Bedrock,
        Provider::Ollama,
    ] {
        fake.push(Script::text("ok"));
        router.chat(request(p), None).await.unwrap();
    }
    let r = fake.requests();
    assert_eq!(r[0].path, "/v1/messages");
    assert_eq!(r[0].header("x-api-key"), Some("test-anthropic-key"));
    assert_eq!(r[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r[0].body["max_tokens"], 512);
    assert_eq!(r[0].body["system"], "You are a careful calculator.");
    assert_eq!(r[1].path, "/v1/chat/completions");
    assert_eq!(r[1].header("authorization"), Some("Bearer test-openai-key"));
    assert_eq!(r[1].body["messages"][0]["role"], "system");
    assert_eq!(r[2].path, "/openai/deployments/test-model/chat/completions");
    assert_eq!(r[2].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r[2].header("api-key"), Some("test-azure-key"));
    assert!(r[3].path.starts_with("/model/test-model/converse"));
    let auth = r[3].header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTFAKE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"));
    assert!(r[3].header("x-amz-date").is_some());
    assert_eq!(r[4].path, "/api/chat");
    assert_eq!(
        r[4].body["stream"], false,
        "Ollama streams unless told not to"
    );
    assert_eq!(r[4].body["options"]["num_predict"], 512);
    assert!(r.iter().all(|r| r.rejected.is_none()));
}

#[tokio::test]
async fn bedrock_sends_tool_config_for_history_without_tools_and_session_token() {
    let (fake, router) = setup_with(|c| {
        c.bedrock.as_mut().unwrap().session_token = Some(leforge_llm::Secret::new("tok-123"));
    })
    .await;
    let mut req = request(Provider::Bedrock);
    req.model = "claude-sonnet".into();
    req.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: "call:odd/id".into(),
            name: ADD.into(),
            arguments: json!({"a": 1, "b": 2}),
            recovered: false,
        }],
    });
    req.messages.push(Message::tool_result(
        "call:odd/id",
        json!({"sum": 3}),
        false,
    ));
    req.tools = std::sync::Arc::from([]);
    fake.push(Script::text("3"));
    let resp = router.chat(req, None).await.unwrap();
    assert_eq!(resp.text, "3");
    let r = fake.last_request().unwrap();
    assert!(r.rejected.is_none(), "{:?}", r.rejected);
    assert_eq!(
        r.body["toolConfig"]["tools"][0]["toolSpec"]["name"], ADD,
        "toolConfig declared from history"
    );
    assert_eq!(r.header("x-amz-security-token"), Some("tok-123"));
    // Alias resolved, ':' escaped in the path, decoded by the fake.
    assert!(r.path.contains("anthropic.claude-sonnet"), "{}", r.path);
    assert!(resp.model.starts_with("anthropic.claude-sonnet"));
    let id = r
        .body
        .pointer("/messages/1/content/0/toolUse/toolUseId")
        .unwrap();
    assert_eq!(
        r.body
            .pointer("/messages/2/content/0/toolResult/toolUseId")
            .unwrap(),
        id
    );
}

#[tokio::test]
async fn fake_rejects_a_dropped_tool_result_as_openai_does() {
    // The seed's defect: the assistant tool_calls message followed by no tool message.
    // Check the fake itself catches it, so the pairing tests above can fail.
    let fake = FakeProvider::start().await;
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "again"}
    ]});
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.openai_base_url()))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("must be followed by tool messages"));
    let anthropic = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "no result"}]}
    ]});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tool_result"));
    assert_eq!(fake.request_count(), 2);
    assert!(fake.requests().iter().all(|r| r.rejected.is_some()));
}

#[tokio::test]
async fn streaming_forwards_text_deltas_and_reads_usage() {
    for p in [Provider::Anthropic, Provider::Openai, Provider::Ollama] {
        let (fake, router) = setup().await;
        let mut req = request(p);
        req.stream = true;
        fake.push(Script::text("The answer is three."));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let resp = router.chat(req, Some(tx)).await.unwrap();
        let mut joined = String::new();
        let mut n = 0;
        while let Ok(d) = rx.try_recv() {
            joined.push_str(&d);
            n += 1;
        }
        assert_eq!(joined, "The answer is three.", "{p}");
        assert!(n > 1, "{p}: text must arrive in several deltas");
        assert_eq!(resp.text, joined);
        assert_eq!(
            resp.usage.output_tokens,
            leforge_fake_provider::OUTPUT_TOKENS,
            "{p}"
        );
        let sent = fake.last_request().unwrap();
        if p == Provider::Openai {
            assert_eq!(sent.body["stream_options"]["include_usage"], true);
            assert_eq!(resp.usage.cached_tokens, 3);
        }
    }
}

#[tokio::test]
async fn retries_429_500_529_then_succeeds_honouring_retry_after() {
    let (fake, router) = setup().await;
    fake.push_all([
        Script::rate_limited("0"),
        Script::overloaded(),
        Script::text("finally"),
    ]);
    let resp = router
        .chat(request(Provider::Anthropic), None)
        .await
        .unwrap();
    assert_eq!(resp.text, "finally");
    assert_eq!(fake.request_count(), 3);

    // HTTP-date form, already in the past: retried at once.
    fake.push_all([
        Script::rate_limited("Wed, 21 Oct 2015 07:28:00 GMT"),
        Script::server_error(),
        Script::text("again"),
    ]);
    let resp = router.chat(request(Provider::Openai), None).await.unwrap();
    assert_eq!(resp.text, "again");
    assert_eq!(fake.request_count(), 6);
}

#[tokio::test]
async fn huge_retry_after_is_capped() {
    let (fake, router) = setup_with(|c| c.retry.retry_after_cap = Duration::from_millis(10)).await;
    fake.push_all([Script::rate_limited("86400"), Script::text("ok")]);
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        router.chat(request(Provider::Ollama), None),
    )
    .await
    .expect("a capped Retry-After must not wait a day")
    .unwrap();
    assert_eq!(resp.text, "ok");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn persistent_5xx_fails_after_max_attempts() {
    let (fake, router) = setup().await;
    fake.push_all([
        Script::status(503),
        Script::status(502),
        Script::status(504),
        Script::text("never reached"),
    ]);
    let err = router
        .chat(request(Provider::Openai), None)
        .await
        .unwrap_err();
    match err {
        LlmError::Failed {
            attempts, status, ..
        } => {
            assert_eq!(attempts, 3);
            assert_eq!(status, Some(504));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.remaining(), 1);
}

#[tokio::test]
async fn other_4xx_is_not_retried_and_surfaces_the_message() {
    for p in [
        Provider::Anthropic,
        Provider::Openai,
        Provider::Bedrock,
        Provider::Ollama,
    ] {
        let (fake, router) = setup().await;
        fake.push_all([
            Script::error(404, "model 'nope' not found"),
            Script::text("unused"),
        ]);
        let err = router.chat(request(p), None).await.unwrap_err();
        match &err {
            LlmError::Rejected {
                status, message, ..
            } => {
                assert_eq!(*status, 404);
                assert!(message.contains("model 'nope' not found"), "{p}: {message}");
            }
            other => panic!("{p}: {other:?}"),
        }
        assert_eq!(fake.request_count(), 1, "{p}");
    }
}

#[tokio::test]
async fn keys_never_appear_in_errors() {
    let (fake, router) = setup().await;
    fake.push(Script::error(
        401,
        "Incorrect API key provided: test-openai-key",
    ));
    let err = router
        .chat(request(Provider::Openai), None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("test-openai-key"), "{text}");
    assert!(text.contains("[redacted]"));
    let dbg = format!("{router:?}");
    assert!(!dbg.contains("test-openai-key") && !dbg.contains("test-aws-secret"));
}

#[tokio::test]
async fn malformed_json_is_reported_not_retried() {
    for stream in [false, true] {
        for p in [Provider::Anthropic, Provider::Openai, Provider::Ollama] {
            let (fake, router) = setup().await;
            let mut req = request(p);
            req.stream = stream;
            fake.push(Script::malformed_json());
            let err = router.chat(req, None).await.unwrap_err();
            assert!(
                matches!(err, LlmError::MalformedResponse { .. }),
                "{p} stream={stream}: {err:?}"
            );
            assert_eq!(fake.request_count(), 1);
        }
    }
}

#[tokio::test]
async fn stream_cut_mid_tool_call_is_an_error() {
    for stream in [true, false] {
        for p in [Provider::Anthropic, Provider::Openai, Provider::Ollama] {
            let (fake, router) = setup().await;
            let mut req = request(p);
            req.stream = stream;
            fake.push(Script::cut_mid_tool_call(ADD, json!({"a": 1, "b": 2})));
            let err = router.chat(req, None).await.unwrap_err();
            assert!(
                matches!(err, LlmError::StreamCut { .. }),
                "{p} stream={stream}: {err:?}"
            );
            assert_eq!(fake.request_count(), 1, "no retry after a cut");
        }
    }
}

#[tokio::test]
async fn max_tokens_mid_tool_call_is_truncated() {
    for stream in [false, true] {
        for p in [
            Provider::Anthropic,
            Provider::Openai,
            Provider::Ollama,
            Provider::Bedrock,
        ] {
            if stream && p == Provider::Bedrock {
                continue;
            }
            let (fake, router) = setup().await;
            let mut req = request(p);
            req.stream = stream;
            fake.push(Script::max_tokens_mid_tool_call(
                ADD,
                json!({"a": 1, "b": 2222222}),
            ));
            let resp = router.chat(req, None).await.unwrap();
            assert!(resp.truncated, "{p} stream={stream}");
            assert_eq!(
                resp.stop_reason,
                StopReason::MaxTokens,
                "{p} stream={stream}"
            );
            assert!(resp.tool_calls.iter().all(|c| !c.recovered));
        }
    }
}

#[tokio::test]
async fn unparseable_arguments_mark_the_turn_truncated() {
    let (fake, router) = setup().await;
    // A server that says "tool_calls" but sends cut-off arguments.
    fake.push(Script::Reply {
        text: String::new(),
        calls: vec![ScriptedCall::new(ADD, json!("{\"a\": 1, \"b\""))],
    });
    let resp = router.chat(request(Provider::Openai), None).await.unwrap();
    assert!(resp.truncated);
    assert_eq!(resp.tool_calls.len(), 1);
}

#[tokio::test]
async fn hang_times_out_and_is_retried() {
    let (fake, router) = setup_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    fake.push_all([
        Script::hang(),
        Script::hang(),
        Script::text("late but fine"),
    ]);
    let resp = router
        .chat(request(Provider::Anthropic), None)
        .await
        .unwrap();
    assert_eq!(resp.text, "late but fine");
    assert_eq!(fake.request_count(), 3);

    fake.push_all([Script::hang(), Script::hang(), Script::hang()]);
    let err = router
        .chat(request(Provider::Openai), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Failed {
                attempts: 3,
                status: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.request_count(), 6);
}

#[tokio::test]
async fn dropping_the_future_abandons_the_request() {
    let (fake, router) = setup().await;
    fake.push_all([Script::hang(), Script::text("for the next one")]);
    let fut = router.chat(request(Provider::Openai), None);
    let waited = tokio::time::timeout(Duration::from_millis(200), fut).await;
    assert!(waited.is_err());
    assert_eq!(fake.request_count(), 1, "no retry once dropped");
    let resp = router.chat(request(Provider::Openai), None).await.unwrap();
    assert_eq!(resp.text, "for the next one");
}

#[tokio::test]
async fn local_models_text_tool_calls_are_recovered() {
    for p in [
        Provider::Lmstudio,
        Provider::OpenaiCompatible,
        Provider::Ollama,
    ] {
        for style in [TextStyle::Bare, TextStyle::Fenced, TextStyle::Tagged] {
            let (fake, router) = setup().await;
            fake.push(Script::text_tool_call(ADD, json!({"a": 4, "b": 5}), style));
            let resp = router.chat(request(p), None).await.unwrap();
            assert_eq!(resp.tool_calls.len(), 1, "{p} {style:?}");
            let c = &resp.tool_calls[0];
            assert!(c.recovered);
            assert_eq!(c.name, ADD);
            assert_eq!(c.arguments, json!({"a": 4, "b": 5}));
            assert_eq!(resp.stop_reason, StopReason::ToolCalls);
            assert!(resp.text.is_empty());
        }
    }
    // Hosted OpenAI: text stays text.
    let (fake, router) = setup().await;
    fake.push(Script::text_tool_call(
        ADD,
        json!({"a": 4}),
        TextStyle::Bare,
    ));
    let resp = router.chat(request(Provider::Openai), None).await.unwrap();
    assert!(resp.tool_calls.is_empty());
    // Names not offered are not recovered.
    let (fake, router) = setup().await;
    fake.push(Script::text_tool_call("rm_rf", json!({}), TextStyle::Bare));
    let resp = router.chat(request(Provider::Ollama), None).await.unwrap();
    assert!(resp.tool_calls.is_empty());
    assert_eq!(resp.stop_reason, StopReason::End);
}

#[tokio::test]
async fn recovered_call_round_trips_in_history() {
    // A recovered call must be sent back as a proper tool call with its result.
    let (fake, router) = setup().await;
    fake.push(Script::text("probe"));
    let mut req = request(Provider::Lmstudio);
    router.chat(req.clone(), None).await.unwrap();
    let upper_wire = wire_name(&fake.requests()[0].body, Format::OpenAi, 1);
    fake.push(Script::text_tool_call(
        &upper_wire,
        json!({"s": "x"}),
        TextStyle::Tagged,
    ));
    let r = router.chat(req.clone(), None).await.unwrap();
    assert_eq!(r.tool_calls[0].name, UPPER);
    req.messages.push(Message::from_response(&r));
    req.messages.push(Message::tool_result(
        r.tool_calls[0].id.clone(),
        json!("X"),
        false,
    ));
    fake.push(Script::text("X"));
    router.chat(req, None).await.unwrap();
    let last = fake.last_request().unwrap();
    assert!(last.rejected.is_none());
    assert_eq!(
        last.body["messages"][2]["tool_calls"][0]["function"]["name"],
        upper_wire
    );
    assert_eq!(last.body["messages"][3]["role"], "tool");
}

#[tokio::test]
async fn too_many_tools_fails_before_any_request() {
    let (fake, router) = setup().await;
    let mut req = request(Provider::Openai);
    req.tools = (0..129)
        .map(|i| {
            ToolSpec::new(
                format!("hook{i}__run"),
                String::new(),
                json!({"type": "object"}),
            )
        })
        .collect();
    let err = router.chat(req.clone(), None).await.unwrap_err();
    assert!(matches!(
        err,
        LlmError::TooManyTools {
            count: 129,
            max: 128
        }
    ));
    assert_eq!(fake.request_count(), 0);
    req.tools = req.tools[..128].into();
    fake.push(Script::text("ok"));
    router.chat(req, None).await.unwrap();
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn a_history_with_an_unanswered_call_is_refused_locally() {
    let (fake, router) = setup().await;
    let mut req = request(Provider::Anthropic);
    req.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: "c1".into(),
            name: ADD.into(),
            arguments: json!({}),
            recovered: false,
        }],
    });
    req.messages.push(Message::user("and?"));
    let err = router.chat(req, None).await.unwrap_err();
    assert!(matches!(err, LlmError::InvalidConversation(_)), "{err:?}");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn not_configured_providers_are_reported() {
    let router = LlmRouter::new(LlmConfig::default()).unwrap();
    let err = router
        .chat(request(Provider::Anthropic), None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LlmError::NotConfigured {
            provider: Provider::Anthropic,
            ..
        }
    ));
    let infos = router.provider_infos();
    assert_eq!(infos.len(), 7);
    assert!(infos.iter().all(|i| !i.configured));
    let anth = infos
        .iter()
        .find(|i| i.name == Provider::Anthropic)
        .unwrap();
    assert_eq!(anth.default_model.as_deref(), Some("claude-sonnet"));
}

#[tokio::test]
async fn provider_infos_and_model_lists() {
    let (fake, router) = setup().await;
    let infos = router.provider_infos();
    assert!(infos.iter().all(|i| i.configured));
    let json = serde_json::to_string(&infos).unwrap();
    for secret in [
        "test-anthropic-key",
        "test-openai-key",
        "test-azure-key",
        "test-aws-secret",
    ] {
        assert!(!json.contains(secret));
    }
    fake.set_models(vec!["m1".into(), "m2".into()]);
    for p in [
        Provider::Openai,
        Provider::Ollama,
        Provider::Lmstudio,
        Provider::Anthropic,
    ] {
        let models = router.list_models(p).await.unwrap();
        let ids: Vec<_> = models.into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["m1", "m2"], "{p}");
    }
    let paths: Vec<_> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/models",
            "/api/tags",
            "/lmstudio/v1/models",
            "/v1/models"
        ]
    );
    assert!(matches!(
        router.list_models(Provider::Bedrock).await,
        Err(LlmError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn mid_stream_error_events_end_the_turn() {
    for p in [Provider::Anthropic, Provider::Openai, Provider::Ollama] {
        let (fake, router) = setup().await;
        let mut req = request(p);
        req.stream = true;
        fake.push(Script::stream_error("Overloaded right now"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let err = router.chat(req, Some(tx)).await.unwrap_err();
        match &err {
            LlmError::StreamCut { reason, .. } => {
                assert!(reason.contains("Overloaded right now"), "{p}: {reason}")
            }
            other => panic!("{p}: {other:?}"),
        }
        assert!(
            rx.try_recv().is_ok(),
            "{p}: the text before the error was forwarded"
        );
        assert_eq!(fake.request_count(), 1);
    }
}

#[tokio::test]
async fn anthropic_parallel_off_maps_to_tool_choice() {
    let (fake, router) = setup().await;
    let mut req = request(Provider::Anthropic);
    req.parallel_tool_calls = Some(false);
    fake.push(Script::text("ok"));
    router.chat(req, None).await.unwrap();
    let r = fake.last_request().unwrap();
    assert!(r.rejected.is_none());
    assert_eq!(r.body["tool_choice"]["disable_parallel_tool_use"], true);
    assert!(r.body.get("parallel_tool_calls").is_none());
}
