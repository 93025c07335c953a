//! Reading request bodies (size limit, `Content-Encoding`) and writing responses in the three
//! wire formats: JSON, framed protobuf, framed batch protobuf.

use std::pin::Pin;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::Serialize;
use serde_json::Value as Json;
use sluice_proto::compress::{self, Compression};
use sluice_proto::{envelope, pb};

use super::budget::Charge;
use super::AppState;
use crate::service::{Error, Result};

/// A request body read under the memory budget: its bytes (decompressed), and the share of the
/// budget that stays with the request until it is answered.
pub struct RequestBody {
    pub bytes: Vec<u8>,
    pub charge: Charge,
}

impl std::ops::Deref for RequestBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// What decoding a JSON put may build, per body byte, at most (records, cells, strings).
pub const JSON_AMPLIFICATION: usize = 16;

/// Reads the whole body within `body_read_timeout_ms`, refusing more than `max_request_bytes`
/// (a declared Content-Length over it before reading anything), and undoes its compression.
/// The body is charged to the in-flight memory budget, waiting for room if need be.
pub async fn read_body(s: &AppState, headers: &HeaderMap, body: Body) -> Result<RequestBody> {
    let config = &s.catalog.config;
    let limit = config.max_request_bytes;
    let too_large = || {
        Error::InvalidParameter(format!(
            "the request body is larger than max_request_bytes ({limit} bytes)"
        ))
    };
    let declared = match header_str(headers, "content-length") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            Error::InvalidParameter(format!("Content-Length {v:?} is not a number"))
        })?),
        None => None,
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // A body without a declared length (chunked) is charged for the most it may be.
    let expected = declared
        .or_else(|| {
            let hint = axum::body::HttpBody::size_hint(&body);
            hint.upper().map(|n| n as usize)
        })
        .unwrap_or(limit)
        .min(limit);
    let mut charge = s.budget.charge(expected).await;
    let timeout = config.body_read_timeout();
    let raw = tokio::time::timeout(timeout, collect(body, limit, declared.unwrap_or(0)))
        .await
        .map_err(|_| {
            Error::RequestTimeout(format!(
                "the request body did not arrive within body_read_timeout_ms ({} ms)",
                timeout.as_millis()
            ))
        })??;
    let encoding = header_str(headers, "content-encoding").unwrap_or("");
    let kind = Compression::parse(encoding).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    let Some(kind) = kind else {
        return Ok(RequestBody { bytes: raw, charge });
    };
    let raw_size = match header_str(headers, "x-datahub-content-raw-size") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            Error::InvalidParameter(format!("x-datahub-content-raw-size {v:?} is not a number"))
        })?),
        None => None,
    };
    charge
        .grow_to(raw.len() + raw_size.unwrap_or(limit).min(limit))
        .await;
    let bytes = compress::decompress(kind, &raw, raw_size, limit).map_err(|e| {
        Error::InvalidParameter(format!("cannot decompress the {} body: {e}", kind.name()))
    })?;
    Ok(RequestBody { bytes, charge })
}

/// Collects a body's bytes, refusing more than `limit`.
async fn collect(mut body: Body, limit: usize, expected: usize) -> Result<Vec<u8>> {
    use axum::body::HttpBody;
    let mut out = Vec::with_capacity(expected.min(limit));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| Error::InvalidParameter(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Error::InvalidParameter(format!(
                    "the request body is larger than max_request_bytes ({limit} bytes)"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The refusal of a put with more than `max` records (the same words as the service's check,
/// which this one runs ahead of, before decoding).
pub fn too_many_records(n: usize, max: usize) -> Error {
    Error::LimitExceeded(format!(
        "the put has {n} records, more than the limit of {max}"
    ))
}

/// Scans a framed `PutRecordsRequest` before decoding it: refuses more than `max_records`
/// records, and grows the request's charge to what decoding and converting it will build.
pub async fn budget_pb_put(charge: &mut Charge, raw: &[u8], max_records: usize) -> Result<()> {
    let message = unframe(raw)?;
    let scan = pb::scan_put_records(message, max_records)
        .map_err(|e| Error::MalformedRecord(format!("PutRecordsRequest does not decode: {e}")))?;
    if scan.records > max_records {
        return Err(too_many_records(scan.records, max_records));
    }
    charge
        .grow_to(raw.len() + 2 * scan.decoded_bytes(message.len()))
        .await;
    Ok(())
}

/// The same for a batch-protocol put (`PutBinaryRecordsRequest`: one entry per batch).
pub async fn budget_binary_put(charge: &mut Charge, raw: &[u8], max_records: usize) -> Result<()> {
    let message = unframe(raw)?;
    let scan = pb::scan_put_binary_records(message).map_err(|e| {
        Error::MalformedRecord(format!("PutBinaryRecordsRequest does not decode: {e}"))
    })?;
    if scan.records > max_records {
        return Err(too_many_records(scan.records, max_records));
    }
    let entries = scan.records * std::mem::size_of::<pb::BinaryRecordEntry>();
    charge.grow_to(2 * raw.len() + 2 * entries).await;
    Ok(())
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
