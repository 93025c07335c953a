//! `.../subscriptions`, `.../subscriptions/{sub}` and `.../subscriptions/{sub}/offsets`:
//! subscription CRUD, consumer-group actions and offsets (protocol doc §1.5, §4.10–4.12).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value as Json};

use super::body::{self, JsonFields};
use super::AppState;
use crate::service::subscriptions::{Offset, OffsetUpdate, SubView};
use crate::service::{Error, Result};

type SubPath = Path<(String, String, String)>;

async fn json_body(s: &AppState, headers: &HeaderMap, body: Body) -> Result<Json> {
    let raw = body::read_body(s, headers, body).await?;
    body::parse_json(&raw)
}

/// A list of shard ids (strings or numbers); absent or null is empty.
fn id_list(req: &Json, key: &str) -> Result<Vec<String>> {
    match req.get(key) {
        None | Some(Json::Null) => Ok(vec![]),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| match v {
                Json::String(s) => Ok(s.clone()),
                Json::Number(n) => Ok(n.to_string()),
                _ => Err(Error::InvalidParameter(format!(
                    "{key} must hold shard ids"
                ))),
            })
            .collect(),
        Some(_) => Err(Error::InvalidParameter(format!("{key} must be a list"))),
    }
}

/// An optional integer that pydatahub may send as `""` when unknown.
fn loose_i64(obj: &Json, key: &str) -> Result<Option<i64>> {
    match obj.get(key) {
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        _ => obj.opt_i64(key),
    }
}

fn offset_updates(req: &Json) -> Result<Vec<(String, OffsetUpdate)>> {
    let map = req
        .get("Offsets")
        .and_then(Json::as_object)
        .ok_or_else(|| {
            Error::InvalidParameter("Offsets must be an object of shard offsets".into())
        })?;
    map.iter()
        .map(|(shard, o)| {
            if !o.is_object() {
                return Err(Error::InvalidParameter(format!(
                    "the offset of shard {shard} must be an object"
                )));
            }
            Ok((
                shard.clone(),
                OffsetUpdate {
                    sequence: loose_i64(o, "Sequence")?.unwrap_or(-1),
                    timestamp: loose_i64(o, "Timestamp")?.unwrap_or(-1),
                    batch_index: loose_i64(o, "BatchIndex")?.unwrap_or(0),
                    version: loose_i64(o, "Version")?,
                    session_id: loose_i64(o, "SessionId")?,
                },
            ))
        })
        .collect()
}

fn offsets_json(offsets: Vec<(u32, Offset)>) -> Result<Response> {
    let mut out = Map::new();
    for (shard, o) in offsets {
        let mut v = json!({
            "Sequence": o.sequence,
            "Timestamp": o.timestamp,
            "Version": o.version,
            "BatchIndex": o.batch_index,
        });
        if o.session_id >= 0 {
            v["SessionId"] = json!(o.session_id);
        }
        out.insert(shard.to_string(), v);
    }
    body::json(&json!({ "Offsets": out }))
}

fn sub_json(v: &SubView) -> Json {
    json!({
        "SubId": v.sub_id,
        "TopicName": v.topic_name,
        "Comment": v.meta.comment,
        "CreateTime": v.meta.create_time,
        "LastModifyTime": v.meta.last_modify_time,
        "IsOwner": true,
        "Owner": true,
        "State": v.meta.state,
        "Type": 0,
    })
}

/// `POST .../subscriptions`: create or list.
pub async fn post_collection(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, body).await?;
    let c = &s.catalog;
    let action = req.action();
    crate::accounts::audit_unless_routine(&action, &["list"]);
    match action.as_str() {
        "create" => {
            let comment = req.opt_str("Comment")?.unwrap_or_default();
            let id = c.create_subscription(&project, &topic, &comment).await?;
            body::json(&json!({ "SubId": id }))
        }
        "list" => {
            let (total, page) = c.list_subscriptions(
                &project,
                &topic,
                &req.opt_str("Search")?.unwrap_or_default(),
                req.opt_i64("PageIndex")?.unwrap_or(1),
                req.opt_i64("PageSize")?.unwrap_or(10),
            )?;
            let items: Vec<Json> = page.iter().map(sub_json).collect();
            body::json(&json!({ "TotalCount": total, "Subscriptions": items }))
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown subscriptions Action {other:?}"
        ))),
    }
}

pub async fn get(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
) -> Result<Response> {
    body::json(&sub_json(
        &s.catalog.get_subscription(&project, &topic, &sub)?,
    ))
}

/// `PUT .../subscriptions/{sub}`: `Comment` updates the comment, `State` the state.
pub async fn update(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, body).await?;
    let comment = req.opt_str("Comment")?;
    let state = req.opt_i64("State")?;
    if comment.is_none() && state.is_none() {
        return Err(Error::InvalidParameter(
            "the update needs a Comment or a State".into(),
        ));
    }
    s.catalog
        .update_subscription(&project, &topic, &sub, comment, state)
        .await?;
    body::ok()
}

pub async fn delete(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
) -> Result<Response> {
    s.catalog
        .delete_subscription(&project, &topic, &sub)
        .await?;
    body::ok()
}

/// `POST .../subscriptions/{sub}`: the consumer-group actions.
pub async fn group(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, body).await?;
    let c = &s.catalog;
    let member = |req: &Json| -> Result<(String, i64)> {
        Ok((
            req.req_str("ConsumerId")?,
            req.opt_i64("VersionId")?.unwrap_or(0),
        ))
    };
    match req.action().as_str() {
        "joingroup" => {
            let timeout = req.opt_i64("SessionTimeout")?.unwrap_or(60_000);
            let j = c.join_group(&project, &topic, &sub, timeout).await?;
            body::json(&json!({
                "ConsumerId": j.consumer_id,
                "VersionId": j.version_id,
                "SessionTimeout": j.session_timeout_ms,
            }))
        }
        "heartbeat" => {
            let (id, version) = member(&req)?;
            let (plan, shards) = c
                .heartbeat(
                    &project,
                    &topic,
                    &sub,
                    &id,
                    version,
                    &id_list(&req, "HoldShardList")?,
                    &id_list(&req, "ReadEndShardList")?,
                )
                .await?;
            body::json(&json!({ "PlanVersion": plan, "ShardList": shards, "TotalPlan": "" }))
        }
        "syncgroup" => {
            let (id, version) = member(&req)?;
            c.sync_group(
                &project,
                &topic,
                &sub,
                &id,
                version,
                &id_list(&req, "ReleaseShardList")?,
                &id_list(&req, "ReadEndShardList")?,
            )
            .await?;
            body::ok()
        }
        "leavegroup" => {
            let (id, version) = member(&req)?;
            c.leave_group(&project, &topic, &sub, &id, version).await?;
            body::ok()
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown subscription Action {other:?}"
        ))),
    }
}

/// `POST .../offsets`: open (init and get) or get.
pub async fn post_offsets(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, body).await?;
    let c = &s.catalog;
    let ids = id_list(&req, "ShardIds")?;
    match req.action().as_str() {
        "open" => offsets_json(c.open_offsets(&project, &topic, &sub, &ids).await?),
        "get" => offsets_json(c.get_offsets(&project, &topic, &sub, Some(&ids)).await?),
        other => Err(Error::InvalidParameter(format!(
            "unknown offsets Action {other:?}"
        ))),
    }
}

/// `PUT .../offsets`: commit or reset.
pub async fn put_offsets(
    State(s): State<AppState>,
    Path((project, topic, sub)): SubPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, body).await?;
    let c = &s.catalog;
    let updates = offset_updates(&req)?;
    let action = req.action();
    crate::accounts::audit_unless_routine(&action, &["commit"]);
    match action.as_str() {
        "commit" => c.commit_offsets(&project, &topic, &sub, &updates).await?,
        "reset" => c.reset_offsets(&project, &topic, &sub, &updates).await?,
        other => {
            return Err(Error::InvalidParameter(format!(
                "unknown offsets Action {other:?}"
            )))
        }
    }
    body::ok()
}
