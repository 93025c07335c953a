//! `/projects/{project}/topics/{topic}/shards/{shard}`: put by shard (protobuf, batch), get
//! records (JSON, protobuf, batch; PB/batch reads may name a subscription in
//! `x-datahub-sub-id`), get cursor and metering. Get-records answers are compressed as the
//! request's `Accept-Encoding` allows (`body::negotiate`). Batch reads by the Go SDK v1.x get
//! version-1 (Avro) batches, the only ones it parses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use prost::Message;
use serde_json::json;
use sluice_proto::batch::{self, TopicKind};
use sluice_proto::compress::Compression;
use sluice_proto::cursor::Cursor;
use sluice_proto::{pb, pb_read, Record, RecordData};

use super::body::{self, header_str, JsonFields};
use super::json_records::{tuple_from_text, JsonReadHead, JsonRecordsWriter};
use super::AppState;
use crate::cluster::checked_put::{self, RequestHead};
use crate::cluster::http_refresh::CatalogSeen;
use crate::metrics::{Protocol, RequestTimer};
use crate::service::catalog::{RecordType, Topic};
use crate::service::records::{CursorKind, ReadEntry, Route, RoutedRecord};
use crate::service::subscriptions::Subscription;
use crate::service::{Error, Result};

/// The wire format a record call uses, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Json,
    Protobuf,
    Binary,
}

impl ContentKind {
    pub fn of(headers: &HeaderMap) -> ContentKind {
        let ct = header_str(headers, "content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.contains("protobuf") {
            ContentKind::Protobuf
        } else if ct.contains("x-binary") {
            ContentKind::Binary
        } else {
            ContentKind::Json
        }
    }
}

fn request_action(headers: &HeaderMap) -> String {
    header_str(headers, "x-datahub-request-action")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn is_pub(headers: &HeaderMap) -> bool {
    request_action(headers) == "pub"
}

/// Converts protobuf records into routed records (`routed`: honour shard/hash/partition keys).
pub fn pb_put_records(
    topic: &Topic,
    entries: Vec<pb::RecordEntry>,
    routed: bool,
) -> Vec<Result<RoutedRecord>> {
    let schema = topic.meta.read().current_schema();
    entries
        .into_iter()
        .map(|e| {
            let data = match (&schema, topic.record_type) {
                (Some(schema), RecordType::Tuple) => {
                    let texts = e
                        .data
                        .data
                        .iter()
                        .map(|f| match &f.value {
                            None => Ok(None),
                            Some(v) => std::str::from_utf8(v).map(Some).map_err(|_| {
                                Error::MalformedRecord("a field value is not UTF-8 text".into())
                            }),
                        })
                        .collect::<Result<Vec<Option<&str>>>>()?;
                    RecordData::Tuple(tuple_from_text(schema, &texts)?)
                }
                _ => {
                    if e.data.data.len() != 1 {
                        return Err(Error::MalformedRecord(format!(
                            "a BLOB record carries exactly one value, not {}",
                            e.data.data.len()
                        )));
                    }
                    RecordData::Blob(e.data.data[0].value.clone().unwrap_or_default())
                }
            };
            let route = match (routed, e.shard_id, e.hash_key, e.partition_key) {
                (false, ..) => Route::Any,
                (true, Some(s), _, _) => Route::Shard(s),
                (true, None, Some(h), _) => Route::HashKey(h),
                (true, None, None, Some(p)) => Route::PartitionKey(p),
                (true, None, None, None) => Route::Any,
            };
            let attributes = e
                .attributes
                .map(|a| a.attributes.into_iter().map(|p| (p.key, p.value)).collect())
                .unwrap_or_default();
            Ok(RoutedRecord {
                record: Record { data, attributes },
                route,
            })
        })
        .collect()
}

pub async fn post_shard(
    State(s): State<AppState>,
    Path((project, topic, shard)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    seen: Option<Extension<CatalogSeen>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let c = &s.catalog;
    // issue 13: metrics — put/get latency by protocol, from the first byte read.
    let mut timer = c.metrics.timer();
    // The body's charge on the memory budget is held until the answer.
    let mut req_body = body::read_body(&s, &headers, body).await?;
    let raw = std::mem::take(&mut req_body.bytes);
    let t: Arc<Topic> = c.topic(&project, &topic)?;
    let kind = ContentKind::of(&headers);
    // A read on behalf of a subscription (PB/batch clients send its id).
    let sub = match header_str(&headers, "x-datahub-sub-id").map(str::trim) {
        Some(id) if !id.is_empty() && !is_pub(&headers) => Some(c.subscription_of(&t, id)?),
        _ => None,
    };
    // Get-records answers are compressed as the client's Accept-Encoding allows.
    let encoding = body::negotiate(&headers);
    // issue 14: cluster — a put by shard checks the catalog version in its append, and runs
    // again after catching up if another node changed the metadata (`checked_put`).
    let seen = seen.map(|Extension(seen)| seen);
    let head = RequestHead {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    match (request_action(&headers).as_str(), kind) {
        ("pub", ContentKind::Protobuf) => {
            timer.put(Protocol::Protobuf);
            body::budget_pb_put(&mut req_body.charge, &raw, c.config.max_records_per_put).await?;
            let raw = Bytes::from(raw);
            checked_put::run(&s, head, seen, |catalog_seen| {
                let (c, project, topic, shard) =
                    (c.clone(), project.clone(), topic.clone(), shard.clone());
                let raw = raw.clone();
                async move {
                    let t = c.topic(&project, &topic)?;
                    let decode_topic = t.clone();
                    // Decoded, encoded and appended in one blocking task (issue 12).
                    c.put_to_shard_decoded(&t, &shard, catalog_seen, move || {
                        let req =
                            pb::PutRecordsRequest::decode(body::unframe(&raw)?).map_err(|e| {
                                Error::MalformedRecord(format!(
                                    "PutRecordsRequest does not decode: {e}"
                                ))
                            })?;
                        pb_put_records(&decode_topic, req.records, false)
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| {
                                r.map(|r| r.record)
                                    .map_err(|e| Error::MalformedRecord(format!("record {i}: {e}")))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .await
                }
            })
            .await?;
            body::protobuf(&pb::PutRecordsResponse {
                failed_count: Some(0),
                failed_records: vec![],
            })
        }
        ("pub", ContentKind::Binary) => {
            timer.put(Protocol::Batch);
            body::budget_binary_put(&mut req_body.charge, &raw, c.config.max_records_per_put)
                .await?;
            let req = pb::PutBinaryRecordsRequest::decode(body::unframe(&raw)?).map_err(|e| {
                Error::MalformedRecord(format!("PutBinaryRecordsRequest does not decode: {e}"))
            })?;
            let batches: Vec<Bytes> = req
                .records
                .into_iter()
                .map(|r| r.data.unwrap_or_default())
                .collect();
            checked_put::run(&s, head, seen, |catalog_seen| {
                let (c, project, topic, shard) =
                    (c.clone(), project.clone(), topic.clone(), shard.clone());
                let batches = batches.clone();
                async move {
                    let t = c.topic(&project, &topic)?;
                    c.put_batches(&t, &shard, batches, catalog_seen).await
                }
            })
            .await?;
            body::binary(&pb::PutRecordsResponse {
                failed_count: Some(0),
                failed_records: vec![],
            })
        }
        ("sub", ContentKind::Protobuf) => {
            timer.get(Protocol::Protobuf);
            let req = get_request(&raw)?;
            if sub_must_wait(&s, &t, sub.as_deref(), &shard) {
                return body::protobuf_read(
                    &pb::GetRecordsResponse {
                        next_cursor: req.cursor,
                        record_count: 0,
                        start_sequence: None,
                        records: vec![],
                        latest_sequence: None,
                        latest_time: None,
                    },
                    encoding,
                )
                .await;
            }
            let limit = req.limit.unwrap_or(0) as i64;
            // Written straight into the framed body as the records are decoded (same bytes as
            // the prost structs).
            let writer = pb_read::GetRecordsWriter::with_capacity(c.read_limit(limit));
            let read = c
                .read_records_into(&t, &shard, &req.cursor, limit, writer)
                .await;
            let read = note_read_end(&s, &t, sub.as_deref(), read).await?;
            let next_cursor = read.next_cursor.encode_array();
            let framed = read.writer.finish(&pb_read::ReadHead {
                next_cursor: Cursor::encode_str(&next_cursor),
                start_sequence: read.start_seq as i64,
                latest_sequence: read.latest_seq,
                latest_time: read.latest_time,
            });
            body::read_response(framed, "application/x-protobuf", encoding).await
        }
        ("sub", ContentKind::Binary) => {
            timer.get(Protocol::Batch);
            let req = get_request(&raw)?;
            if sub_must_wait(&s, &t, sub.as_deref(), &shard) {
                return body::binary_read(
                    &pb::GetBinaryRecordsResponse {
                        next_cursor: req.cursor,
                        record_count: 0,
                        start_sequence: None,
                        records: vec![],
                        latest_sequence: None,
                        latest_time: None,
                    },
                    encoding,
                )
                .await;
            }
            let read = c
                .read_batches(&t, &shard, &req.cursor, req.limit.unwrap_or(0) as i64)
                .await;
            let read = note_read_end(&s, &t, sub.as_deref(), read).await?;
            let records: Vec<pb::BinaryRecordEntry> = if go_avro_reader(&headers) {
                let topic = t.clone();
                body::off_thread(move || avro_entries(&topic, read.items)).await?
            } else {
                read.items
                    .into_iter()
                    .map(|e| pb::BinaryRecordEntry {
                        cursor: Some(e.cursor.encode()),
                        next_cursor: Some(e.next_cursor.encode()),
                        sequence: Some(e.seq as i64),
                        system_time: Some(e.system_time),
                        serial: Some(0),
                        data: Some(e.data),
                    })
                    .collect()
            };
            body::binary_read(
                &pb::GetBinaryRecordsResponse {
                    next_cursor: read.next_cursor.encode(),
                    record_count: records.len() as i32,
                    start_sequence: Some(read.start_seq as i64),
                    records,
                    latest_sequence: Some(read.latest_seq),
                    latest_time: Some(read.latest_time),
                },
                encoding,
            )
            .await
        }
        (action, ContentKind::Protobuf | ContentKind::Binary) => Err(Error::InvalidParameter(
            format!("x-datahub-request-action {action:?} is not pub or sub"),
        )),
        (_, ContentKind::Json) => {
            json_shard_action(&s, &t, &shard, &raw, encoding, &mut timer).await
        }
    }
}

/// Whether a batch reader is the Go SDK v1.x, which parses only version-1 (Avro) batches
/// (docs/sdk-wire.md "Go SDK batch version 1").
fn go_avro_reader(headers: &HeaderMap) -> bool {
    header_str(headers, "user-agent").is_some_and(batch::reads_avro_batches)
}

/// A batch read for a Go SDK v1.x reader: every stored batch (always version 0) as version-1
/// batches, one entry per run of one schema version, each with the cursor of its first record.
fn avro_entries(t: &Topic, items: Vec<ReadEntry>) -> Result<Vec<pb::BinaryRecordEntry>> {
    let versions = t.versions();
    let kind = match t.record_type {
        RecordType::Tuple => TopicKind::Tuple(&versions),
        RecordType::Blob => TopicKind::Blob,
    };
    let mut out = Vec::with_capacity(items.len());
    for e in items {
        let parts = batch::avro_parts(&e.data, kind).map_err(|err| {
            Error::Internal(format!(
                "stored batch at sequence {} is unreadable: {err}",
                e.seq
            ))
        })?;
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let at = |offset: u32| Cursor::new(e.cursor.shard, e.seq, e.cursor.index + offset);
            out.push(pb::BinaryRecordEntry {
                cursor: Some(at(part.first).encode()),
                next_cursor: Some(if i + 1 == n {
                    e.next_cursor.encode()
                } else {
                    at(part.first + part.count).encode()
                }),
                sequence: Some(e.seq as i64),
                system_time: Some(e.system_time),
                serial: Some(0),
                data: Some(Bytes::from(part.data)),
            });
        }
    }
    Ok(out)
}

/// The `GetRecordsRequest` of a protobuf or batch read.
fn get_request(raw: &[u8]) -> Result<pb::GetRecordsRequest> {
    pb::GetRecordsRequest::decode(body::unframe(raw)?)
        .map_err(|e| Error::InvalidParameter(format!("GetRecordsRequest does not decode: {e}")))
}

/// A subscription reads a child shard only after its parents were read to the end (order per
/// key across a split or merge): until then its reads come back empty.
fn sub_must_wait(s: &AppState, t: &Topic, sub: Option<&Subscription>, shard: &str) -> bool {
    let (Some(sub), Ok(shard)) = (sub, t.shard_by_text(shard)) else {
        return false;
    };
    s.catalog.parents_pending(t, sub, shard.id)
}

/// A subscription that reaches the end of a closed shard has read it to the end.
async fn note_read_end<T>(
    s: &AppState,
    t: &Topic,
    sub: Option<&Subscription>,
    read: Result<T>,
) -> Result<T> {
    if let (Some(sub), Err(Error::ShardReadEnd(id))) = (sub, &read) {
        s.catalog.mark_read_end(t, sub, &[*id]).await?;
    }
    read
}

async fn json_shard_action(
    s: &AppState,
    t: &Arc<Topic>,
    shard: &str,
    raw: &[u8],
    encoding: Option<Compression>,
    timer: &mut RequestTimer,
) -> Result<Response> {
    let c = &s.catalog;
    let req = body::parse_json(raw)?;
    crate::accounts::check(
        &crate::accounts::policy::required_for_shard_action(&t.project, &t.name, &req.action()),
        &req.action(),
    )?;
    match req.action().as_str() {
        "cursor" => {
            let ty = req.req_str("Type")?.to_ascii_uppercase();
            let kind = match ty.as_str() {
                "OLDEST" => CursorKind::Oldest,
                "LATEST" => CursorKind::Latest,
                "SEQUENCE" => CursorKind::Sequence(req.req_i64("Sequence")?),
                "SYSTEM_TIME" => CursorKind::SystemTime(req.req_i64("SystemTime")?),
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "cursor Type {other:?} is not OLDEST, LATEST, SEQUENCE or SYSTEM_TIME"
                    )))
                }
            };
            let a = c.get_cursor(t, shard, kind)?;
            body::json(
                &json!({"Cursor": a.cursor.encode(), "RecordTime": a.record_time, "Sequence": a.sequence}),
            )
        }
        "sub" => {
            timer.get(Protocol::Json);
            let cursor = req.req_str("Cursor")?;
            let limit = req.opt_i64("Limit")?.unwrap_or(0);
            let writer = JsonRecordsWriter::with_capacity(c.read_limit(limit));
            let read = c
                .read_records_into(t, shard, &cursor, limit, writer)
                .await?;
            let out = read.writer.finish(&JsonReadHead {
                next_cursor: read.next_cursor.encode(),
                start_seq: read.start_seq as i64,
                latest_seq: read.latest_seq,
                latest_time: read.latest_time,
            });
            body::json_read(out, encoding).await
        }
        "meter" => {
            let (active, storage) = c.metering(t, shard)?;
            body::json(&json!({"ActiveTime": active, "Storage": storage}))
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown shard Action {other:?}"
        ))),
    }
}
