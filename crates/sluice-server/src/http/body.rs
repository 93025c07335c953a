//! Reading request bodies (size limit, `Content-Encoding`) and writing responses in the three
//! wire formats: JSON, framed protobuf, framed batch protobuf.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::Serialize;
use serde_json::Value as Json;
use sluice_proto::compress::{self, Compression};
use sluice_proto::envelope;

use crate::service::{Error, Result};

/// Reads the whole body, refusing more than `limit` bytes, and undoes its compression.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>> {
    let raw = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Error::LimitExceeded(format!("the request body is larger than {limit} bytes"))
    })?;
    let encoding = header_str(headers, "content-encoding").unwrap_or("");
    let kind = Compression::parse(encoding).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    let Some(kind) = kind else {
        return Ok(raw.to_vec());
    };
    let raw_size = match header_str(headers, "x-datahub-content-raw-size") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            Error::InvalidParameter(format!("x-datahub-content-raw-size {v:?} is not a number"))
        })?),
        None => None,
    };
    compress::decompress(kind, &raw, raw_size, limit).map_err(|e| {
        Error::InvalidParameter(format!("cannot decompress the {} body: {e}", kind.name()))
    })
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses a JSON body (an empty body is an empty object).
pub fn parse_json(body: &[u8]) -> Result<Json> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Json::Object(Default::default()));
    }
    let value: Json = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidParameter(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::InvalidParameter(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// Field access on a JSON request body, with errors that name the field.
pub trait JsonFields {
    fn action(&self) -> String;
    fn opt_str(&self, key: &str) -> Result<Option<String>>;
    fn req_str(&self, key: &str) -> Result<String>;
    fn opt_i64(&self, key: &str) -> Result<Option<i64>>;
    fn req_i64(&self, key: &str) -> Result<i64>;
}

impl JsonFields for Json {
    fn action(&self) -> String {
        self.get("Action")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_ascii_lowercase()
    }
    fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Error::InvalidParameter(format!("{key} must be a string"))),
        }
    }
    fn req_str(&self, key: &str) -> Result<String> {
        self.opt_str(key)?
            .ok_or_else(|| Error::InvalidParameter(format!("{key} is missing")))
    }
    fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Error::InvalidParameter(format!("{key} must be an integer"))),
            Some(Json::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error::InvalidParameter(format!("{key} must be an integer"))),
            Some(_) => Err(Error::InvalidParameter(format!("{key} must be an integer"))),
        }
    }
    fn req_i64(&self, key: &str) -> Result<i64> {
        self.opt_i64(key)?
            .ok_or_else(|| Error::InvalidParameter(format!("{key} is missing")))
    }
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON success response.
pub fn json<T: Serialize>(value: &T) -> Result<Response> {
    let body = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(with_type(body, "application/json"))
}

/// An empty JSON success response.
pub fn ok() -> Result<Response> {
    Ok(with_type(b"{}".to_vec(), "application/json"))
}

/// A framed protobuf success response.
pub fn protobuf<M: Message>(message: &M) -> Result<Response> {
    Ok(with_type(
        envelope::wrap(&message.encode_to_vec()),
        "application/x-protobuf",
    ))
}

/// A framed batch-protocol success response.
pub fn binary<M: Message>(message: &M) -> Result<Response> {
    Ok(with_type(
        envelope::wrap(&message.encode_to_vec()),
        "application/x-binary",
    ))
}

/// Runs CPU-heavy decoding (large JSON or protobuf puts) on the blocking pool, so the async
/// workers keep serving other requests meanwhile.
pub async fn off_thread<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("decoding task failed: {e}")))?
}

/// The protobuf message inside a framed request body.
pub fn unframe(body: &[u8]) -> Result<&[u8]> {
    envelope::unwrap(body).map_err(|e| Error::MalformedRecord(e.to_string()))
}
