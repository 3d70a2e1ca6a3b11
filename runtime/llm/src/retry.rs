//! Sending one provider request: per-attempt timeout, retries with exponential backoff and
//! jitter, `Retry-After`, and turning error bodies into [`LlmError`]s that carry the
//! provider's own message (scrubbed of our keys).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use leforge_core::{LlmError, Provider};
use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::config::RetryPolicy;

/// Transient by every provider's documentation; 529 is Anthropic's "overloaded".
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// Parses `Retry-After` as delta-seconds or an HTTP date (relative to `now`). A date in
/// the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1.0e9)));
        }
        return None;
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before the next attempt after `failed_attempts` failures.
pub fn retry_delay(
    policy: &RetryPolicy,
    failed_attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(policy.retry_after_cap);
    }
    let exp = failed_attempts.saturating_sub(1).min(16);
    let full = policy
        .base_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    // Jitter in [full/2, full] so clients that failed together do not retry together.
    let half = full / 2;
    let extra_ms = half.as_millis() as u64;
    let jitter = if extra_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(rand::thread_rng().gen_range(0..=extra_ms))
    };
    half + jitter
}

/// What one attempt needs besides the request itself.
pub(crate) struct Sender<'a> {
    pub provider: Provider,
    pub policy: &'a RetryPolicy,
    pub timeout: Duration,
    pub secrets: Vec<&'a str>,
}

/// How much of a successful response the retry loop reads.
pub(crate) enum Read {
    /// The whole body, inside the attempt's timeout.
    Full,
    /// Only the headers; the caller consumes the stream.
    Headers,
}

pub(crate) enum Reply {
    Full(Bytes),
    Stream(Response),
}

enum AttemptError {
    Retry {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
        /// Why, as a bounded label of `leforge_llm_retries_total`.
        kind: &'static str,
    },
    Fatal(LlmError),
}

impl Sender<'_> {
    /// Removes our keys from text that came from outside (a provider may echo a key back).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if s.len() >= 4 {
                out = out.replace(s, "[redacted]");
            }
        }
        out
    }

    /// Sends the request built by `build` (called once per attempt, so Bedrock can sign
    /// each attempt with a fresh time) until it succeeds, fails for good, or attempts run out.
    pub async fn send(
        &self,
        build: impl Fn() -> Result<RequestBuilder, LlmError>,
        read: Read,
    ) -> Result<Reply, LlmError> {
        let max = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(build()?, &read).await {
                Ok(reply) => return Ok(reply),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retry {
                    status,
                    reason,
                    retry_after,
                    kind,
                }) => {
                    if attempt >= max {
                        return Err(LlmError::Failed {
                            provider: self.provider,
                            attempts: attempt,
                            status,
                            reason,
                        });
                    }
                    metrics::counter!("leforge_llm_retries_total",
                        "provider" => self.provider.as_str(), "reason" => kind)
                    .increment(1);
                    let delay = retry_delay(self.policy, attempt, retry_after);
                    tracing::warn!(
                        provider = %self.provider,
                        attempt,
                        ?status,
                        delay_ms = delay.as_millis() as u64,
                        "retrying LLM request: {reason}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, rb: RequestBuilder, read: &Read) -> Result<Reply, AttemptError> {
        let fut = async {
            let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(self.status_error(resp).await);
            }
            match read {
                Read::Headers => Ok(Reply::Stream(resp)),
                Read::Full => match resp.bytes().await {
                    Ok(b) => Ok(Reply::Full(b)),
                    Err(e) if e.is_timeout() => Err(self.transport_error(e)),
                    Err(e) => Err(AttemptError::Fatal(LlmError::StreamCut {
                        provider: self.provider,
                        reason: self.redact(&format!("response body cut: {e}")),
                    })),
                },
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::Retry {
                status: None,
                reason: format!("timed out after {} ms", self.timeout.as_millis()),
                retry_after: None,
                kind: "timeout",
            }),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> AttemptError {
        // reqwest's Display includes the URL but never headers, so keys in headers are safe;
        // redact anyway in case a key was put in a query string by a custom base URL.
        let reason = self.redact(&leforge_core::error_chain(&e));
        if e.is_connect() || e.is_timeout() {
            AttemptError::Retry {
                status: None,
                reason,
                retry_after: None,
                kind: if e.is_timeout() { "timeout" } else { "connect" },
            }
        } else {
            AttemptError::Fatal(LlmError::Failed {
                provider: self.provider,
                attempts: 1,
                status: None,
                reason,
            })
        }
    }

    async fn status_error(&self, resp: Response) -> AttemptError {
        let status = resp.status();
        let retry_after = retry_after_of(&resp);
        let body = resp.bytes().await.unwrap_or_default();
        let message = self.redact(&provider_message(status, &body));
        if is_retryable_status(status.as_u16()) {
            AttemptError::Retry {
                status: Some(status.as_u16()),
                reason: format!("HTTP {}: {message}", status.as_u16()),
                retry_after,
                kind: match status.as_u16() {
                    429 => "rate_limited",
                    408 => "timeout",
                    _ => "server_error",
                },
            }
        } else {
            AttemptError::Fatal(LlmError::Rejected {
                provider: self.provider,
                status: status.as_u16(),
                message,
            })
        }
    }
}

fn retry_after_of(resp: &Response) -> Option<Duration> {
    let h = resp.headers();
    // OpenAI also sends the millisecond form, which is more precise when present.
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms.min(1.0e12) / 1000.0));
    }
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The human message of an error body in any of the providers' shapes:
/// OpenAI/Azure/Anthropic `{"error":{"message"}}`, Ollama `{"error":"…"}`, Bedrock
/// `{"message"}`. Falls back to the start of the raw body.
pub(crate) fn provider_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error");
        let msg = err
            .and_then(|e| e.get("message"))
            .or(err.filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str);
        if let Some(m) = msg {
            let kind = err
                .and_then(|e| e.get("type").or_else(|| e.get("code")))
                .and_then(Value::as_str);
            return match kind {
                Some(k) if !k.is_empty() => format!("{k}: {m}"),
                _ => m.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.chars().take(500).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(12))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn delays_cap_retry_after_and_grow_exponentially() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            retry_after_cap: Duration::from_secs(30),
        };
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        for _ in 0..50 {
            let d1 = retry_delay(&p, 1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = retry_delay(&p, 2, None);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = retry_delay(&p, 9, None);
            assert!(d9 <= Duration::from_millis(250), "capped by max_delay");
        }
    }

    #[test]
    fn messages_from_every_error_shape() {
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(
            provider_message(
                s,
                br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#
            ),
            "invalid_request_error: bad"
        );
        assert_eq!(
            provider_message(s, br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(
            provider_message(s, br#"{"message":"ValidationException x"}"#),
            "ValidationException x"
        );
        assert_eq!(provider_message(s, b""), "Bad Request");
    }
}
