//! Structured output for json tool mode, against the wire-level fake provider: the exact
//! field each provider gets, the fallback when a provider refuses a variant, and that the
//! variant which worked is remembered for the provider.

use std::sync::Arc;

use leforge_core::{ChatRequest, LlmClient, LlmError, Message, Provider};
use leforge_fake_provider::{FakeProvider, Script};
use leforge_llm::{LlmConfig, LlmRouter};
use serde_json::{json, Value};

async fn setup() -> (FakeProvider, LlmRouter) {
    let fake = FakeProvider::start().await;
    let router = LlmRouter::new(LlmConfig::for_test_server(&fake.base_url())).unwrap();
    (fake, router)
}

fn schema() -> Value {
    json!({"type": "object", "properties": {"action": {"const": "final_answer"}, "answer": {}}, "required": ["action", "answer"]})
}

fn request(provider: Provider) -> ChatRequest {
    let mut r = ChatRequest::new(provider, "test-model", "Reply with one JSON object.");
    r.messages.push(Message::user("What is 6 times 7?"));
    r.temperature = Some(0.0);
    r.response_schema = Some(Arc::new(schema()));
    r
}

const ANSWER: &str = r#"{"action":"final_answer","answer":42}"#;

/// The constraint field of the last accepted request: `response_format` or `format`.
fn constraint(fake: &FakeProvider) -> (Option<Value>, Option<Value>) {
    let body = fake.accepted().last().unwrap().body.clone();
    (
        body.get("response_format").cloned(),
        body.get("format").cloned(),
    )
}

#[tokio::test]
async fn each_provider_gets_its_documented_structured_output_field() {
    let (fake, router) = setup().await;
    let json_schema = json!({"type": "json_schema", "json_schema": {
        "name": "leforge_reply", "schema": schema(), "strict": false}});
    let cases = [
        (
            Provider::OpenaiCompatible,
            Some(json!({"type": "json_object", "schema": schema()})),
            None,
        ),
        (Provider::Lmstudio, Some(json_schema.clone()), None),
        (Provider::Openai, Some(json_schema.clone()), None),
        (Provider::Azure, Some(json_schema), None),
        (Provider::Ollama, None, Some(schema())),
        (Provider::Anthropic, None, None),
        (Provider::Bedrock, None, None),
    ];
    for (provider, response_format, format) in cases {
        fake.push(Script::text(ANSWER));
        let r = router.chat(request(provider), None).await.unwrap();
        assert_eq!(r.text, ANSWER, "{provider}");
        let (rf, f) = constraint(&fake);
        assert_eq!(rf, response_format, "{provider}: response_format");
        assert_eq!(f, format, "{provider}: format");
        // No tools array is sent when none are offered.
        assert!(fake.accepted().last().unwrap().body.get("tools").is_none());
    }
    // Without a response schema nothing is added.
    fake.push(Script::text("plain"));
    let mut r = request(Provider::OpenaiCompatible);
    r.response_schema = None;
    router.chat(r, None).await.unwrap();
    assert_eq!(constraint(&fake), (None, None));
}

#[tokio::test]
async fn a_refused_variant_falls_back_once_and_the_next_is_remembered() {
    let (fake, router) = setup().await;
    // A vLLM-like server: no `json_object` with a schema.
    fake.refuse_formats(&["json_object"]);
    fake.push_all([Script::text(ANSWER), Script::text(ANSWER)]);
    let r = router
        .chat(request(Provider::OpenaiCompatible), None)
        .await
        .unwrap();
    assert_eq!(r.text, ANSWER);
    let all = fake.requests();
    assert_eq!(all.len(), 2, "one refusal, one retry");
    assert_eq!(all[0].rejected.as_ref().unwrap().status, 400);
    assert_eq!(all[1].body["response_format"]["type"], "json_schema");

    // The next request starts at the variant that worked: no refused request first.
    router
        .chat(request(Provider::OpenaiCompatible), None)
        .await
        .unwrap();
    let all = fake.requests();
    assert_eq!(all.len(), 3);
    assert!(all[2].rejected.is_none());
    assert_eq!(all[2].body["response_format"]["type"], "json_schema");

    // Remembered per provider: LM Studio starts at its own first variant.
    fake.refuse_formats(&[]);
    fake.push(Script::text(ANSWER));
    router
        .chat(request(Provider::Lmstudio), None)
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[3].body["response_format"]["type"],
        "json_schema"
    );
}

#[tokio::test]
async fn ollama_falls_back_from_a_schema_to_plain_json() {
    let (fake, router) = setup().await;
    fake.refuse_formats(&["ollama_schema"]);
    fake.push(Script::text(ANSWER));
    router.chat(request(Provider::Ollama), None).await.unwrap();
    let all = fake.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].body["format"], schema());
    assert_eq!(all[1].body["format"], "json");
    assert!(all[1].rejected.is_none());
}

/// Only one fallback per request: a server that refuses two variants in a row fails the
/// request with its own message, and nothing is remembered.
#[tokio::test]
async fn a_second_refusal_is_the_providers_error() {
    let (fake, router) = setup().await;
    fake.refuse_formats(&["json_object", "json_schema"]);
    let e = router
        .chat(request(Provider::OpenaiCompatible), None)
        .await
        .unwrap_err();
    let LlmError::Rejected {
        status, message, ..
    } = e
    else {
        panic!("expected Rejected, got {e:?}")
    };
    assert_eq!(status, 400);
    assert!(message.contains("json_schema"), "{message}");
    assert_eq!(fake.requests().len(), 2);
    // Nothing was remembered: once the server accepts again, the first variant is used.
    fake.refuse_formats(&[]);
    fake.push(Script::text(ANSWER));
    router
        .chat(request(Provider::OpenaiCompatible), None)
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[2].body["response_format"]["type"],
        "json_object"
    );
}

/// Errors that are not about the request's shape are not retried with another variant.
#[tokio::test]
async fn other_errors_do_not_trigger_a_fallback() {
    let (fake, router) = setup().await;
    fake.push(Script::Error {
        status: 401,
        message: "bad key".into(),
    });
    let e = router
        .chat(request(Provider::OpenaiCompatible), None)
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Rejected { status: 401, .. }), "{e:?}");
    assert_eq!(fake.requests().len(), 1);
}

/// The fake checks `response_format` as OpenAI documents it, so a wrong shape from the
/// adapter could not pass: an unknown key next to `json_object` is refused on OpenAI's door.
#[tokio::test]
async fn the_fake_enforces_openais_response_format_rules() {
    let fake = FakeProvider::start().await;
    let http = reqwest::Client::new();
    let send = |rf: Value, text: &str| {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": text}], "response_format": rf});
        http.post(format!("{}/v1/chat/completions", fake.base_url()))
            .header("authorization", "Bearer sk-test")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    fake.push_all([Script::text("{}"), Script::text("{}")]);
    let r = send(json!({"type": "json_object", "schema": {}}), "json please")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = send(json!({"type": "json_object"}), "no keyword")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = send(
        json!({"type": "json_schema", "json_schema": {"schema": {}}}),
        "x",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "a json_schema needs a name");
    let r = send(json!({"type": "json_object"}), "answer in JSON")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
