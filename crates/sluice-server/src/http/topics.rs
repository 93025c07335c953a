//! `/projects/{project}/topics` and `/projects/{project}/topics/{topic}`: topic CRUD, append
//! field and the schema registry actions.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::body::{self, JsonFields};
use super::AppState;
use crate::service::catalog::RecordType;
use crate::service::topics::NewTopic;
use crate::service::{Error, Result};

pub async fn list(State(s): State<AppState>, Path(project): Path<String>) -> Result<Response> {
    body::json(&json!({ "TopicNames": s.catalog.list_topics(&project)? }))
}

pub async fn get(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
) -> Result<Response> {
    let t = s.catalog.topic(&project, &topic)?;
    let meta = t.meta.read().clone();
    let shard_count = t
        .shards
        .read()
        .iter()
        .filter(|s| s.meta.read().state == crate::service::catalog::ShardState::Active)
        .count();
    let mut out = json!({
        "ProjectName": t.project,
        "TopicName": t.name,
        "Comment": meta.comment,
        "CreateTime": t.create_time,
        "LastModifyTime": meta.last_modify_time,
        "Lifecycle": meta.lifecycle_days,
        "RecordType": t.record_type.name(),
        "ShardCount": shard_count,
        "Status": "on",
        "ExpandMode": t.expand_mode,
        "EnableSchemaRegistry": t.record_type == RecordType::Tuple,
        "ExtraConfig": {},
    });
    if let Some(schema) = meta.current_schema() {
        out["RecordSchema"] = json!(schema.to_json());
    }
    body::json(&out)
}

pub async fn post(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let raw = body::read_body(&s, &headers, body).await?;
    let req = body::parse_json(&raw)?;
    let c = &s.catalog;
    let action = req.action();
    let label = if action.is_empty() { "create" } else { &action };
    crate::accounts::audit_unless_routine(label, &["listschema", "getschema"]);
    match action.as_str() {
        "" | "create" => {
            let new = NewTopic {
                shard_count: req.req_i64("ShardCount")?,
                lifecycle_days: req.req_i64("Lifecycle")?,
                record_type: req.req_str("RecordType")?,
                schema: req.opt_str("RecordSchema")?.filter(|s| !s.is_empty()),
                comment: req.opt_str("Comment")?.unwrap_or_default(),
                expand_mode: req.opt_str("ExpandMode")?,
            };
            c.create_topic(&project, &topic, new).await?;
            body::ok()
        }
        "appendfield" => {
            let field = req.req_str("FieldName")?;
            let ty = req.req_str("FieldType")?;
            c.append_field(&project, &topic, &field, &ty).await?;
            body::ok()
        }
        "listschema" => {
            let page = c.list_schemas(
                &project,
                &topic,
                req.opt_i64("PageNumber")?.unwrap_or(-1),
                req.opt_i64("PageSize")?.unwrap_or(-1),
            )?;
            let list: Vec<_> = page
                .versions
                .iter()
                .map(|v| {
                    json!({
                        "VersionId": v.version_id,
                        "RecordSchema": v.schema.to_json(),
                        "CreateTime": v.create_time,
                        "Creator": v.creator,
                    })
                })
                .collect();
            body::json(&json!({
                "PageNumber": page.page_number,
                "PageSize": page.page_size,
                "PageCount": page.page_count,
                "TotalCount": page.total,
                "RecordSchemaList": list,
            }))
        }
        "getschema" => {
            let text = req.opt_str("RecordSchema")?;
            let v = c.get_schema(
                &project,
                &topic,
                req.opt_i64("VersionId")?.unwrap_or(-1),
                text.as_deref(),
            )?;
            body::json(&json!({
                "VersionId": v.version_id,
                "CreateTime": v.create_time,
                "Creator": v.creator,
                "RecordSchema": v.schema.to_json(),
            }))
        }
        "registerschema" => {
            let version = c
                .register_schema(&project, &topic, &req.req_str("RecordSchema")?)
                .await?;
            body::json(&json!({ "VersionId": version }))
        }
        "deleteschema" => {
            c.delete_schema(&project, &topic, req.req_i64("VersionId")?)
                .await?;
            body::ok()
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown topic Action {other:?}"
        ))),
    }
}

pub async fn update(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let raw = body::read_body(&s, &headers, body).await?;
    let req = body::parse_json(&raw)?;
    s.catalog
        .update_topic(
            &project,
            &topic,
            req.opt_i64("Lifecycle")?,
            req.opt_str("Comment")?,
        )
        .await?;
    body::ok()
}

pub async fn delete(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
) -> Result<Response> {
    s.catalog.delete_topic(&project, &topic).await?;
    body::ok()
}
