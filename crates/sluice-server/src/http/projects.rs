//! `/projects` and `/projects/{project}`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::body::{self, JsonFields};
use super::AppState;
use crate::service::Result;

pub async fn list(State(s): State<AppState>) -> Result<Response> {
    body::json(&json!({ "ProjectNames": s.catalog.list_projects() }))
}

pub async fn get(State(s): State<AppState>, Path(project): Path<String>) -> Result<Response> {
    let p = s.catalog.get_project(&project)?;
    body::json(&json!({
        "ProjectName": p.name,
        "Comment": p.comment,
        "CreateTime": p.create_time,
        "LastModifyTime": p.last_modify_time,
    }))
}

async fn comment(s: &AppState, headers: &HeaderMap, body: Body) -> Result<String> {
    let raw = body::read_body(s, headers, body).await?;
    Ok(body::parse_json(&raw)?
        .opt_str("Comment")?
        .unwrap_or_default())
}

pub async fn create(
    State(s): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let comment = comment(&s, &headers, body).await?;
    s.catalog.create_project(&project, &comment).await?;
    body::ok()
}

pub async fn update(
    State(s): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let comment = comment(&s, &headers, body).await?;
    s.catalog.update_project(&project, &comment).await?;
    body::ok()
}

pub async fn delete(State(s): State<AppState>, Path(project): Path<String>) -> Result<Response> {
    s.catalog.delete_project(&project).await?;
    body::ok()
}
