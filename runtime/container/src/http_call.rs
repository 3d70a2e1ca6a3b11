//! One HTTP call to a ForgeHook's endpoint, shared by containers and gateways: method and
//! URL from the manifest, JSON in and out, a time limit, a response size cap, and retries
//! only when no connection could be made (a request that reached the service may have had
//! effects, so it is never repeated).

use std::collections::HashMap;
use std::time::Duration;

use leforge_core::forgehook::Manifest;
use leforge_core::tool::{capped, ToolError, MAX_ERROR_MESSAGE_CHARS};
use leforge_core::FieldError;
use serde_json::Value;

pub(crate) struct Call<'a> {
    pub method: &'a str,
    pub url: String,
    pub headers: &'a [(String, String)],
    pub input: &'a Value,
    pub timeout: Duration,
    pub max_bytes: u64,
    /// Extra attempts after a connection failure.
    pub retries: u32,
}

/// Why a call failed. Connection problems are kept apart from other errors because the
/// container runtime first checks whether the container died before reporting them.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// No connection could be made (refused, unreachable), after all retries.
    Connect(String),
    /// The connection broke after the request was sent (reset, truncated response).
    Broken(String),
    /// The service answered, or the call ran out of time: a final result.
    Tool(ToolError),
}

pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        // Calls go to containers on a local bridge or to configured gateways; a proxy from
        // the environment must not intercept them.
        .no_proxy()
        // A redirect is the service choosing where the host sends the body next: a container
        // answering `307 Location: http://127.0.0.1:…` would have the host resend the input
        // to its own loopback services. A 3xx is the endpoint's answer, not an instruction.
        .redirect(reqwest::redirect::Policy::none())
        // Containers restart with new addresses; stale pooled connections only cause errors.
        .pool_idle_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

pub(crate) async fn call(client: &reqwest::Client, call: Call<'_>) -> Result<Value, CallFailure> {
    let method = reqwest::Method::from_bytes(call.method.as_bytes())
        .map_err(|_| CallFailure::Tool(internal(format!("bad method {}", call.method))))?;
    let mut attempt = 0;
    let response = loop {
        let mut req = client
            .request(method.clone(), &call.url)
            .timeout(call.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            // Bodies on GET/DELETE are ignored by many servers: send the fields as a query.
            req.query(&query_pairs(call.input))
        } else {
            req.json(call.input)
        };
        match req.send().await {
            Ok(r) => break r,
            Err(e) if e.is_timeout() => {
                return Err(CallFailure::Tool(ToolError::Timeout {
                    timeout_ms: call.timeout.as_millis() as u64,
                }))
            }
            Err(e) if e.is_connect() => {
                if attempt >= call.retries {
                    return Err(CallFailure::Connect(describe(&e)));
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => return Err(CallFailure::Broken(describe(&e))),
        }
    };
    let status = response.status();
    let body = read_capped(response, call.max_bytes, call.timeout).await?;
    if !status.is_success() {
        let message = error_message(&body);
        let code = format!("HTTP_{}", status.as_u16());
        return Err(CallFailure::Tool(if matches!(status.as_u16(), 502..=504) {
            // The service (or a proxy in front of it) says it cannot serve now.
            ToolError::Unavailable {
                message: format!("{code}: {message}"),
            }
        } else {
            ToolError::Guest { code, message }
        }));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| {
        CallFailure::Tool(ToolError::InvalidOutput {
            message: format!("the response is not JSON: {e}"),
        })
    })
}

async fn read_capped(
    mut response: reqwest::Response,
    max: u64,
    timeout: Duration,
) -> Result<Vec<u8>, CallFailure> {
    let too_large = |size: u64| CallFailure::Tool(ToolError::OutputTooLarge { size, limit: max });
    if let Some(len) = response.content_length() {
        if len > max {
            return Err(too_large(len));
        }
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > max {
                    return Err(too_large(body.len() as u64));
                }
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => {
                return Err(CallFailure::Tool(ToolError::Timeout {
                    timeout_ms: timeout.as_millis() as u64,
                }))
            }
            Err(e) => return Err(CallFailure::Broken(describe(&e))),
        }
    }
}

/// The most useful sentence of an error body: `message`, `error` (a string or an object with
/// `message`), `detail` or `title` of a JSON body, else the text itself, shortened.
pub(crate) fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let pick = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        pick(&v, "message")
            .or_else(|| pick(&v, "error"))
            .or_else(|| v.get("error").and_then(|e| pick(e, "message")))
            .or_else(|| pick(&v, "detail"))
            .or_else(|| pick(&v, "title"))
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_string());
    if message.is_empty() {
        return "(empty response body)".into();
    }
    capped(&message, MAX_ERROR_MESSAGE_CHARS)
}

fn query_pairs(input: &Value) -> Vec<(String, String)> {
    let Some(obj) = input.as_object() else {
        return Vec::new();
    };
    obj.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// reqwest's top-level message is generic ("error sending request"); the cause says why.
fn describe(e: &reqwest::Error) -> String {
    let msg = leforge_core::error_chain(e);
    // The URL of a gateway may carry credentials in its query; never show it.
    msg.replace(e.url().map(|u| u.as_str()).unwrap_or("\u{0}"), "<url>")
}

fn internal(message: String) -> ToolError {
    ToolError::Internal { message }
}

/// Compiled input schemas, by endpoint name. A schemaless (upstream) endpoint's permissive
/// schema compiles too, so every call is checked the same way.
pub(crate) type Validators = HashMap<String, jsonschema::Validator>;

pub(crate) fn compile_validators(manifest: &Manifest) -> Result<Validators, Vec<FieldError>> {
    let mut validators = HashMap::new();
    let mut errors = Vec::new();
    for (i, ep) in manifest.endpoints.iter().enumerate() {
        match jsonschema::validator_for(&ep.input_schema) {
            Ok(v) => {
                validators.insert(ep.name.clone(), v);
            }
            Err(e) => errors.push(FieldError::new(
                format!("endpoints[{i}].input_schema"),
                format!("is not a valid JSON Schema: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(validators)
    } else {
        Err(errors)
    }
}

pub(crate) fn check_input(
    validator: &jsonschema::Validator,
    input: &Value,
) -> Result<(), ToolError> {
    ToolError::check_schema(
        validator
            .iter_errors(input)
            .map(|e| (e.instance_path().to_string(), e)),
    )
}

/// Joins a base (`http://10.0.0.2:8080` + `/api`) and an endpoint path without doubling or
/// dropping the `/` between them — upstream dropped `basePath` here.
pub(crate) fn join_url(base: &str, prefix: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let prefix = prefix.trim_end_matches('/');
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{base}{prefix}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path() {
        assert_eq!(
            join_url("http://10.0.0.2:8080", "/api", "/v1/text/stats"),
            "http://10.0.0.2:8080/api/v1/text/stats"
        );
        assert_eq!(join_url("http://h/", "", "x"), "http://h/x");
        assert_eq!(join_url("https://h/v2/", "", "/chat"), "https://h/v2/chat");
    }

    #[test]
    fn error_messages_come_from_the_body() {
        assert_eq!(error_message(br#"{"message":"bad text"}"#), "bad text");
        assert_eq!(
            error_message(br#"{"error":{"message":"nested"}}"#),
            "nested"
        );
        assert_eq!(error_message(br#"{"error":"flat"}"#), "flat");
        assert_eq!(error_message(b"plain failure\n"), "plain failure");
        assert_eq!(error_message(b""), "(empty response body)");
        assert!(error_message("x".repeat(2000).as_bytes()).chars().count() <= 501);
    }

    #[test]
    fn get_inputs_become_query_pairs() {
        let pairs = query_pairs(&serde_json::json!({"q": "a b", "n": 3, "skip": null}));
        assert_eq!(
            pairs,
            [("q".into(), "a b".into()), ("n".into(), "3".into())]
        );
    }
}
