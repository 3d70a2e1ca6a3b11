//! A minimal container ForgeHook. It serves its API under `/api` (the manifest's `basePath`)
//! so the runtime's handling of base paths is exercised, and `/health` at the root.
//!
//! Deliberately dependency-light (hyper, no framework): the binary is linked statically and
//! runs in a `FROM scratch` image with no libc, shell or certificates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const BASE_PATH: &str = "/api";
/// Requests are small JSON documents; a cap keeps a bad caller from exhausting the tiny
/// memory limit the container runs under.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_SLEEP_MS: u64 = 600_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("container-example: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("container-example: listening on {addr}");
    // As PID 1 in a scratch image, SIGTERM has no default action: without this handler
    // `docker stop` would always wait for its timeout and then SIGKILL.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("container-example: cannot handle SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                eprintln!("container-example: SIGTERM, exiting");
                return;
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(async move {
                    let io = TokioIo::new(stream);
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(io, service_fn(handle))
                        .await
                    {
                        eprintln!("container-example: connection error: {e}");
                    }
                });
            }
        }
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/health" {
        return Ok(reply(StatusCode::OK, json!({"status": "ok"})));
    }
    let Some(route) = path.strip_prefix(BASE_PATH) else {
        return Ok(error(StatusCode::NOT_FOUND, format!("no route {path}")));
    };
    let route = route.to_string();
    if method != Method::POST {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed; use POST"),
        ));
    }
    let input = match read_json(req).await {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    Ok(match route.as_str() {
        "/v1/text/stats" => text_stats(&input),
        "/v1/slow" => slow(&input).await,
        _ => error(StatusCode::NOT_FOUND, format!("no route {path}")),
    })
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {MAX_BODY_BYTES} bytes or could not be read"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })
}

fn text_stats(input: &Value) -> Response<Full<Bytes>> {
    let Some(text) = input.get("text").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "\"text\" must be a string".into());
    };
    reply(StatusCode::OK, stats(text))
}

/// Characters are Unicode scalar values, words are whitespace-separated, and lines follow
/// `str::lines` (a trailing newline does not start another line).
fn stats(text: &str) -> Value {
    json!({
        "characters": text.chars().count(),
        "words": text.split_whitespace().count(),
        "lines": text.lines().count(),
    })
}

async fn slow(input: &Value) -> Response<Full<Bytes>> {
    let Some(ms) = input.get("ms").and_then(Value::as_u64) else {
        return error(
            StatusCode::BAD_REQUEST,
            "\"ms\" must be a non-negative integer".into(),
        );
    };
    if ms > MAX_SLEEP_MS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("\"ms\" must be at most {MAX_SLEEP_MS}"),
        );
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    reply(StatusCode::OK, json!({"slept_ms": ms}))
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let code = match status {
        StatusCode::BAD_REQUEST => "INVALID_INPUT",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        _ => "ERROR",
    };
    reply(status, json!({"error": code, "message": message}))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_characters_words_and_lines() {
        assert_eq!(
            stats("héllo world\nsecond line\n"),
            json!({"characters": 24, "words": 4, "lines": 2})
        );
        assert_eq!(stats(""), json!({"characters": 0, "words": 0, "lines": 0}));
        let resp = text_stats(&json!({"text": 3}));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
