//! `/projects/{project}/topics/{topic}/shards`: list, split, merge, extend, and routed puts
//! (JSON `Action: pub`, or protobuf with `x-datahub-request-action: pub`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use prost::Message;
use serde_json::json;
use sluice_proto::{hashkey, pb};

use super::body::{self, header_str};
use super::error::error_code;
use super::json_records::ShardsPost;
use super::records::{is_pub, pb_put_records, ContentKind};
use super::AppState;
use crate::service::{Error, Result};

const NO_SHARD: &str = "4294967295";

pub async fn list(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
) -> Result<Response> {
    let shards: Vec<_> = s
        .catalog
        .list_shards(&project, &topic)?
        .into_iter()
        .map(|v| {
            json!({
                "ShardId": v.id.to_string(),
                "State": v.meta.state.name(),
                "BeginHashKey": hashkey::format_key(v.meta.begin_key),
                "EndHashKey": hashkey::format_key(v.meta.end_key),
                "BeginKey": hashkey::format_key(v.meta.begin_key),
                "EndKey": hashkey::format_key(v.meta.end_key),
                "ClosedTime": v.meta.closed_time,
                "CreateTime": v.meta.create_time,
                "ParentShardIds": v.meta.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "LeftShardId": v.left.map(|l| l.to_string()).unwrap_or_else(|| NO_SHARD.into()),
                "RightShardId": v.right.map(|r| r.to_string()).unwrap_or_else(|| NO_SHARD.into()),
            })
        })
        .collect();
    body::json(&json!({ "Protocol": "http1.1", "Interval": 300000, "Shards": shards }))
}

pub async fn post(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let c = &s.catalog;
    // issue 13: metrics — put latency by protocol, from the first byte read.
    let mut timer = c.metrics.timer();
    // The body's charge on the memory budget is held until the answer.
    let mut req_body = body::read_body(&s, &headers, body).await?;
    let raw = std::mem::take(&mut req_body.bytes);
    if is_pub(&headers) && ContentKind::of(&headers) == ContentKind::Protobuf {
        timer.put(crate::metrics::Protocol::Protobuf);
        let t = c.topic(&project, &topic)?;
        body::budget_pb_put(&mut req_body.charge, &raw, c.config.max_records_per_put).await?;
        let decode_topic = t.clone();
        // Decoded, encoded and appended in one blocking task (issue 12).
        let failed = c
            .put_routed_decoded(&t, move || {
                let req = pb::PutRecordsRequest::decode(body::unframe(&raw)?).map_err(|e| {
                    Error::MalformedRecord(format!("PutRecordsRequest does not decode: {e}"))
                })?;
                Ok(pb_put_records(&decode_topic, req.records, true))
            })
            .await?;
        return body::protobuf(&pb::PutRecordsResponse {
            failed_count: Some(failed.len() as i32),
            failed_records: failed
                .into_iter()
                .map(|(i, e)| pb::FailedRecord {
                    index: i as i32,
                    error_code: Some(error_code(&e).as_str().to_string()),
                    error_message: Some(e.to_string()),
                })
                .collect(),
        });
    }
    if ContentKind::of(&headers) != ContentKind::Json {
        return Err(Error::InvalidParameter(format!(
            "unsupported Content-Type {:?} for this request",
            header_str(&headers, "content-type").unwrap_or("")
        )));
    }
    req_body
        .charge
        .grow_to(raw.len() * body::JSON_AMPLIFICATION)
        .await;
    let max_records = c.config.max_records_per_put;
    let req: ShardsPost = body::off_thread(move || ShardsPost::parse(&raw, max_records)).await?;
    let action = req.action.as_deref().unwrap_or("").to_ascii_lowercase();
    crate::accounts::check(
        &crate::accounts::policy::required_for_shard_action(&project, &topic, &action),
        &action,
    )?;
    let shard_arg = |cell: Option<super::json_records::Cell>, name: &str| {
        cell.and_then(|c| c.0)
            .ok_or_else(|| Error::InvalidParameter(format!("{name} is missing")))
    };
    match action.as_str() {
        "pub" => {
            timer.put(crate::metrics::Protocol::Json);
            let t = c.topic(&project, &topic)?;
            let schema = t.meta.read().current_schema();
            let list = req.records.unwrap_or_default().list;
            // Values parsed, records encoded and appended in one blocking task (issue 12).
            let failed = c
                .put_routed_decoded(&t, move || {
                    Ok(list
                        .into_iter()
                        .map(|r| r.into_routed(schema.as_deref()))
                        .collect())
                })
                .await?;
            let list: Vec<_> = failed
                .iter()
                .map(|(i, e)| json!({"Index": i, "ErrorCode": error_code(e).as_str(), "ErrorMessage": e.to_string()}))
                .collect();
            body::json(&json!({ "FailedRecordCount": list.len(), "FailedRecords": list }))
        }
        "split" => {
            let shard = shard_arg(req.shard_id, "ShardId")?;
            let new = c
                .split_shard(&project, &topic, &shard, req.split_key.as_deref())
                .await?;
            let list: Vec<_> = new
                .iter()
                .map(|n| json!({"ShardId": n.id.to_string(), "BeginHashKey": hashkey::format_key(n.begin_key), "EndHashKey": hashkey::format_key(n.end_key)}))
                .collect();
            body::json(&json!({ "NewShards": list }))
        }
        "merge" => {
            let shard = shard_arg(req.shard_id, "ShardId")?;
            let adjacent = shard_arg(req.adjacent_shard_id, "AdjacentShardId")?;
            let n = c.merge_shards(&project, &topic, &shard, &adjacent).await?;
            body::json(
                &json!({"ShardId": n.id.to_string(), "BeginHashKey": hashkey::format_key(n.begin_key), "EndHashKey": hashkey::format_key(n.end_key)}),
            )
        }
        "extend" => {
            let target = req
                .shard_number
                .ok_or_else(|| Error::InvalidParameter("ShardNumber is missing".into()))?;
            c.extend_shards(&project, &topic, target).await?;
            body::ok()
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown shards Action {other:?}"
        ))),
    }
}
