//! Reading request bodies (size limit, `Content-Encoding`) and writing responses in the three
//! wire formats: JSON, framed protobuf, framed batch protobuf. Get-records responses are
//! compressed with an encoding the request's `Accept-Encoding` names (`negotiate`, protocol doc
//! §1.7, docs/sdk-wire.md "Response compression"); every other response is sent as is.

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

/// Response bodies smaller than this are never compressed.
pub const MIN_COMPRESSED_RESPONSE: usize = 256;

/// Response bodies at least this large are compressed on the blocking pool.
const OFF_THREAD_COMPRESSION: usize = 256 << 10;

/// The response compression a request's `Accept-Encoding` headers ask for: `lz4`, `zstd` or
/// `zlib` (names case-insensitive), the one with the highest q-value (q=0 refuses), ties going
/// to the cheapest in that order. Never `deflate`: pydatahub passes a deflate response through
/// undecoded, and cannot be told apart from the SDKs that would inflate it. `*`, `gzip`, `br`,
/// `identity` and unknown names select nothing.
pub fn negotiate(headers: &HeaderMap) -> Option<Compression> {
    let mut best: Option<(u16, u8, Compression)> = None;
    let items = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (kind, rank) = match name.as_str() {
            "lz4" => (Compression::Lz4, 3),
            "zstd" => (Compression::Zstd, 2),
            "zlib" => (Compression::Zlib, 1),
            _ => continue,
        };
        let mut q = Some(1000);
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                if key.trim().eq_ignore_ascii_case("q") {
                    q = q_value(value.trim());
                }
            }
        }
        let Some(q) = q.filter(|&q| q > 0) else {
            continue;
        };
        match best {
            Some((bq, br, _)) if (bq, br) >= (q, rank) => {}
            _ => best = Some((q, rank, kind)),
        }
    }
    best.map(|(_, _, kind)| kind)
}

/// An RFC 9110 q-value in thousandths (`0`, `0.5`, `1.000`); `None` when malformed.
fn q_value(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A get-records success response, compressed with `encoding` when the body is at least
/// `MIN_COMPRESSED_RESPONSE` bytes and compression makes it strictly smaller (with
/// `x-datahub-content-raw-size`, which pydatahub needs for LZ4 and every SDK accepts).
pub async fn read_response(
    body: Vec<u8>,
    content_type: &'static str,
    encoding: Option<Compression>,
) -> Result<Response> {
    let Some(kind) = encoding.filter(|_| body.len() >= MIN_COMPRESSED_RESPONSE) else {
        return Ok(with_type(body, content_type));
    };
    let raw_size = body.len();
    let (body, packed) = if raw_size >= OFF_THREAD_COMPRESSION {
        off_thread(move || {
            let packed = compress::compress(kind, &body);
            Ok((body, packed))
        })
        .await?
    } else {
        let packed = compress::compress(kind, &body);
        (body, packed)
    };
    let Some(packed) = packed else {
        return Ok(with_type(body, content_type));
    };
    let mut response = with_type(packed, content_type);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(kind.name()),
    );
    headers.insert("x-datahub-content-raw-size", HeaderValue::from(raw_size));
    Ok(response)
}

/// A JSON get-records response from its rendered body (see `read_response`).
pub async fn json_read(body: Vec<u8>, encoding: Option<Compression>) -> Result<Response> {
    read_response(body, "application/json", encoding).await
}

/// A framed protobuf get-records response (see `read_response`).
pub async fn protobuf_read<M: Message>(
    message: &M,
    encoding: Option<Compression>,
) -> Result<Response> {
    let body = envelope::wrap(&message.encode_to_vec());
    read_response(body, "application/x-protobuf", encoding).await
}

/// A framed batch-protocol get-records response (see `read_response`).
pub async fn binary_read<M: Message>(
    message: &M,
    encoding: Option<Compression>,
) -> Result<Response> {
    let body = envelope::wrap(&message.encode_to_vec());
    read_response(body, "application/x-binary", encoding).await
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

/// Runs CPU-heavy work (decoding large puts, compressing large reads) on the blocking pool, so the async
/// workers keep serving other requests meanwhile.
pub async fn off_thread<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

/// The protobuf message inside a framed request body.
pub fn unframe(body: &[u8]) -> Result<&[u8]> {
    envelope::unwrap(body).map_err(|e| Error::MalformedRecord(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> Option<Compression> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn negotiates_only_what_the_client_names() {
        // What the SDKs send: one lower-case name.
        assert_eq!(accept(&["lz4"]), Some(Compression::Lz4));
        assert_eq!(accept(&["zlib"]), Some(Compression::Zlib));
        assert_eq!(accept(&["zstd"]), Some(Compression::Zstd));
        // Nothing, empty, or names Sluice does not answer with.
        assert_eq!(accept(&[]), None);
        assert_eq!(accept(&[""]), None);
        for other in [
            "deflate",
            "gzip",
            "br",
            "identity",
            "*",
            "gzip, deflate, br",
            "lz4x",
        ] {
            assert_eq!(accept(&[other]), None, "{other}");
        }
        // Case and spaces do not matter.
        assert_eq!(accept(&[" LZ4 "]), Some(Compression::Lz4));
        assert_eq!(accept(&["ZStd;Q=0.5"]), Some(Compression::Zstd));
        // Several values: the first supported one in a list, across repeated headers too.
        assert_eq!(accept(&["gzip, zlib, br"]), Some(Compression::Zlib));
        assert_eq!(accept(&["gzip", "zstd"]), Some(Compression::Zstd));
        // Equal q: the cheapest (lz4, then zstd, then zlib), whatever the order.
        assert_eq!(accept(&["zlib, zstd, lz4"]), Some(Compression::Lz4));
        assert_eq!(accept(&["zlib, zstd"]), Some(Compression::Zstd));
        // The highest q wins; q=0 refuses; a malformed q drops the entry.
        assert_eq!(accept(&["lz4;q=0.2, zlib;q=0.9"]), Some(Compression::Zlib));
        assert_eq!(
            accept(&["lz4;q=0.2", "zlib;q=1.0"]),
            Some(Compression::Zlib)
        );
        assert_eq!(accept(&["lz4;q=0, zlib;q=0.001"]), Some(Compression::Zlib));
        assert_eq!(accept(&["lz4;q=0"]), None);
        assert_eq!(accept(&["lz4;q=0.000"]), None);
        assert_eq!(accept(&["lz4;q=2, zlib"]), Some(Compression::Zlib));
        assert_eq!(accept(&["lz4;q=abc"]), None);
        assert_eq!(accept(&["lz4;q=0.5000"]), None);
    }

    #[tokio::test]
    async fn compresses_only_large_enough_bodies_that_shrink() {
        let header = |r: &Response, name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let bytes = |r: Response| async move {
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec()
        };
        let text = b"record-".repeat(100);
        for kind in [Compression::Lz4, Compression::Zlib, Compression::Zstd] {
            let r = read_response(text.clone(), "application/json", Some(kind))
                .await
                .unwrap();
            assert_eq!(header(&r, "content-encoding").as_deref(), Some(kind.name()));
            assert_eq!(header(&r, "x-datahub-content-raw-size"), Some("700".into()));
            let body = bytes(r).await;
            assert!(body.len() < text.len());
            let back = compress::decompress(kind, &body, Some(text.len()), 1 << 20).unwrap();
            assert_eq!(back, text);
        }
        // Not asked, too small, or not shrinking: sent as is, without the headers.
        let small = b"record-".repeat(30);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        for (body, kind) in [
            (text.clone(), None),
            (small, Some(Compression::Lz4)),
            (noise, Some(Compression::Lz4)),
        ] {
            let r = read_response(body.clone(), "application/json", kind)
                .await
                .unwrap();
            assert_eq!(header(&r, "content-encoding"), None);
            assert_eq!(header(&r, "x-datahub-content-raw-size"), None);
            assert_eq!(bytes(r).await, body);
        }
    }
}
