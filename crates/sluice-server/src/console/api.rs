//! The small JSON endpoints the console's JS polls (with the session cookie, never signed):
//! hub totals (for the ingest rate), record sampling from a cursor (and follow mode), and a
//! connector's per-shard progress (for its table and lag chart).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use sluice_proto::record::RecordData;

use super::view::{json, ApiError};
use super::Console;
use crate::service::catalog::{now_ms, Catalog, Topic};
use crate::service::records::CursorKind;
use crate::service::Error;

/// Records a sample shows at most.
const SAMPLE_LIMIT: i64 = 50;

/// Projects, topics, records ever written and bytes stored, hub-wide, with the server's clock:
/// two polls give the ingest rate.
pub async fn overview(State(console): State<Console>) -> Response {
    json(StatusCode::OK, &hub_totals(&console.app.catalog))
}

pub fn hub_totals(catalog: &Catalog) -> Json {
    let topics = catalog.all_topics();
    let (mut records, mut stored) = (0u64, 0u64);
    for topic in &topics {
        for shard in topic.shards.read().iter() {
            records += shard.log.next_seq();
            stored += shard.log.size_bytes();
        }
    }
    json!({
        "projects": catalog.list_projects().len(),
        "topics": topics.len(),
        "records": records,
        "bytes": stored,
        "time_ms": now_ms(),
    })
}

/// Where a sample starts: a cursor from an earlier sample (follow mode), or a kind and value.
#[derive(Deserialize)]
pub struct SampleQuery {
    shard: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    limit: Option<i64>,
}

fn cursor_kind(kind: &str, value: &str) -> Result<CursorKind, Error> {
    let number = |what: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| Error::InvalidParameter(format!("{what} {value:?} is not a whole number")))
    };
    Ok(match kind.to_ascii_uppercase().as_str() {
        "" | "OLDEST" => CursorKind::Oldest,
        "LATEST" => CursorKind::Latest,
        "SEQUENCE" => CursorKind::Sequence(number("sequence")?),
        "SYSTEM_TIME" => CursorKind::SystemTime(number("time (ms)")?),
        other => {
            return Err(Error::InvalidParameter(format!(
                "cursor type {other:?} is not OLDEST, LATEST, SEQUENCE or SYSTEM_TIME"
            )))
        }
    })
}

/// Up to 50 records of one shard from a cursor, with the cursor to follow on from.
pub async fn records(
    State(console): State<Console>,
    Path((project, topic)): Path<(String, String)>,
    Query(q): Query<SampleQuery>,
) -> Result<Response, ApiError> {
    let catalog = &console.app.catalog;
    let topic = catalog.topic(&project, &topic)?;
    let cursor = if q.cursor.is_empty() {
        let kind = cursor_kind(&q.kind, &q.value)?;
        catalog.get_cursor(&topic, &q.shard, kind)?.cursor.encode()
    } else {
        q.cursor.clone()
    };
    let limit = q.limit.unwrap_or(SAMPLE_LIMIT).clamp(1, SAMPLE_LIMIT);
    let read = catalog
        .read_records(&topic, &q.shard, &cursor, limit)
        .await?;
    let records: Vec<Json> = read
        .items
        .iter()
        .map(|r| {
            let values = match &r.record.data {
                RecordData::Tuple(values) => values.iter().map(|v| json!(v.to_text())).collect(),
                RecordData::Blob(bytes) => vec![json!(String::from_utf8_lossy(bytes))],
            };
            json!({
                "sequence": r.seq,
                "system_time": r.system_time,
                "values": values,
                "attributes": r
                    .record
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect::<serde_json::Map<String, Json>>(),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "fields": field_names(&topic),
            "records": records,
            "next_cursor": read.next_cursor.encode(),
            "latest_sequence": read.latest_seq,
        }),
    ))
}

/// The current schema's field names, or `["data"]` for a BLOB topic.
pub fn field_names(topic: &Topic) -> Vec<String> {
    match topic.meta.read().current_schema() {
        Some(schema) => schema.fields.iter().map(|f| f.name.clone()).collect(),
        None => vec!["data".into()],
    }
}

/// A connector's state, done time and each shard's progress against the shard's end.
pub async fn connector_status(
    State(console): State<Console>,
    Path((project, topic, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &connector_progress(&console.app.catalog, &project, &topic, &id).await?,
    ))
}

/// What the connector page shows and polls: state, done time, and per shard its state,
/// position, the shard's end, lag in records and seconds, done time, last error and discards.
pub async fn connector_progress(
    catalog: &Catalog,
    project: &str,
    topic_name: &str,
    id: &str,
) -> Result<Json, Error> {
    let topic = catalog.topic(project, topic_name)?;
    let view = catalog.get_connector(project, topic_name, id).await?;
    let reports = catalog
        .connector_shard_status(project, topic_name, id, None)
        .await?;
    let done = catalog.connector_done_time(project, topic_name, id).await?;
    let now = now_ms();
    let shards: Vec<Json> = reports
        .iter()
        .map(|r| {
            let shard = topic.shard(r.shard_id);
            let end = shard.as_ref().map_or(0, |s| s.log.next_seq() as i64);
            let resumes_at = r.resumes_at();
            let lag = r.lag_records(end);
            let lag_seconds = match (&shard, lag) {
                (Some(s), l) if l > 0 => s
                    .log
                    .time_of(resumes_at as u64)
                    .map_or(0, |t| ((now - t) / 1000).max(0)),
                _ => 0,
            };
            json!({
                "shard": r.shard_id,
                "state": r.state.as_str(),
                "position": r.current_sequence,
                "end": end,
                "lag": lag,
                "lag_seconds": lag_seconds,
                "done_time": r.done_time,
                "last_error": r.last_error,
                "discards": r.discard_count,
                "update_time": r.update_time,
            })
        })
        .collect();
    Ok(json!({
        "id": view.row.connector_id,
        "state": view.row.state,
        "done_time": done.done_time,
        "time_ms": now,
        "shards": shards,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_kinds_parse_and_bad_ones_say_why() {
        assert!(matches!(cursor_kind("", ""), Ok(CursorKind::Oldest)));
        assert!(matches!(cursor_kind("latest", ""), Ok(CursorKind::Latest)));
        assert!(matches!(
            cursor_kind("SEQUENCE", " 7 "),
            Ok(CursorKind::Sequence(7))
        ));
        assert!(matches!(
            cursor_kind("SYSTEM_TIME", "5"),
            Ok(CursorKind::SystemTime(5))
        ));
        let e = cursor_kind("SEQUENCE", "x").err().unwrap().to_string();
        assert!(e.contains("\"x\""), "{e}");
        assert!(cursor_kind("NEWEST", "").is_err());
    }
}
