//! The response envelope and the request extractors that keep every response in it.
//!
//! `{"success": true, "data": …, "request_id": …}` on success (lists add `count` and
//! `next_cursor`); failures are rendered by `ApiError`. The request id is carried in a
//! task-local set by the request-id middleware, so any response built while handling a
//! request — including extractor rejections and the 404 fallback — can include it.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use leforge_core::{FieldError, Page};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;

tokio::task_local! {
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "none".to_string())
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A successful response: `data` under the envelope, with a status (200 unless set).
pub struct Ok<T> {
    status: StatusCode,
    data: T,
    list: Option<(usize, Option<String>)>,
}

impl<T: Serialize> Ok<T> {
    pub fn new(data: T) -> Self {
        Ok {
            status: StatusCode::OK,
            data,
            list: None,
        }
    }

    pub fn created(data: T) -> Self {
        Ok {
            status: StatusCode::CREATED,
            data,
            list: None,
        }
    }
}

impl<T: Serialize> Ok<Vec<T>> {
    pub fn page(page: Page<T>) -> Self {
        let count = page.items.len();
        Ok {
            status: StatusCode::OK,
            data: page.items,
            list: Some((count, page.next_cursor)),
        }
    }
}

impl<T: Serialize> IntoResponse for Ok<T> {
    fn into_response(self) -> Response {
        let data = match serde_json::to_value(&self.data) {
            Result::Ok(v) => v,
            Err(e) => {
                return ApiError::internal(format!("serialising response: {e}")).into_response()
            }
        };
        let mut body = json!({"success": true, "data": data, "request_id": current_request_id()});
        if let Some((count, next_cursor)) = self.list {
            body["count"] = json!(count);
            if let Some(cursor) = next_cursor {
                body["next_cursor"] = json!(cursor);
            }
        }
        json_response(self.status, body)
    }
}

/// A JSON request body. Rejects a wrong content type (415), a body over the limit (413),
/// malformed JSON (400 with line and column) and wrong or unknown fields (400 naming the
/// field), all in the envelope.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than this server accepts",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("could not read the request body: {rejection}"),
        )
    }
}

/// Parses JSON in two passes so that syntax errors and shape errors get different, precise
/// messages: first into a `Value` (line/column of a syntax error), then into `T` with the
/// path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("malformed JSON: {e}"),
        )
        .with_details(json!({"line": e.line(), "column": e.column()}))
    })?;
    from_value(value)
}

/// Deserialises a JSON value, reporting the dotted path of the first offending field.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let (field, message) = describe_serde_error(&path, &inner);
        ApiError::validation(
            format!("{field}: {message}"),
            vec![FieldError::new(field, message)],
        )
    })
}

/// Turns serde's message into a field path and a short message. serde names unknown and
/// missing fields in the message; depending on the error the path already ends in that
/// field or stops at its parent.
fn describe_serde_error(path: &str, message: &str) -> (String, String) {
    let path = if path == "." { "" } else { path };
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    for (prefix, short) in [
        ("unknown field `", "is not a known field"),
        ("missing field `", "is required"),
    ] {
        if let Some((name, _)) = message.strip_prefix(prefix).and_then(|r| r.split_once('`')) {
            return (join(name), short.to_string());
        }
    }
    let field = if path.is_empty() { "body" } else { path };
    (field.to_string(), message.to_string())
}

/// Query-string parameters, with bad values reported as VALIDATION_ERROR.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    format!("invalid query string: {}", e.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_steps: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        config: Option<Inner>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"name": "a", "config": {"max_stepz": 1}}"#).unwrap_err();
        assert_eq!(err.details.unwrap()[0]["field"], "config.max_stepz");
        let err = parse_json::<Outer>(br#"{"config": {}}"#).unwrap_err();
        assert_eq!(err.details.unwrap()[0]["field"], "name");
        let err = parse_json::<Outer>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(err.details.unwrap()[0]["field"], "name");
        let err = parse_json::<Outer>(b"{\"name\": \n}").unwrap_err();
        assert_eq!(err.details.unwrap()["line"], 2);
    }
}
