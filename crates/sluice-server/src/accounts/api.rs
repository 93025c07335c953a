//! The key management and audit API (root or `admin:*/*` only; the check is the middleware's,
//! `policy::required`). JSON in and out, DataHub-style field names; see docs/accounts.md.
//!
//! - `GET /accounts/keys`: every key, never a secret.
//! - `POST /accounts/keys` `{"Name", "Allow": ["ACTION:PROJECT/TOPIC", ...], "ExpiresInSecs"?}`:
//!   creates a key and answers `{"AccessId", "AccessKey"}`, the only time the secret is shown.
//! - `POST /accounts/keys/{name}` `{"Action": "disable" | "enable" | "retire"}`, or
//!   `{"Action": "rotate", "OldExpiresInSecs"?}` (answers the new `{"AccessId", "AccessKey"}`).
//! - `DELETE /accounts/keys/{name}`.
//! - `GET /accounts/audit?after=SEQ&limit=N`: audit entries after SEQ, oldest first, and
//!   `NextAfter` for the next page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value as Json};

use super::audit;
use super::keys::KeyRegistry;
use super::policy::{Caller, Grant};
use crate::http::body::{self, JsonFields};
use crate::http::AppState;
use crate::service::catalog::now_ms;
use crate::service::{Error, Result};

/// The most audit entries one page holds.
pub const AUDIT_PAGE_MAX: i64 = 1000;

fn registry(s: &AppState) -> Result<&Arc<KeyRegistry>> {
    s.accounts
        .keys()
        .ok_or_else(|| Error::Internal("the access keys are not loaded".into()))
}

async fn json_body(s: &AppState, headers: &HeaderMap, body: Body) -> Result<Json> {
    let raw = body::read_body(s, headers, body).await?;
    body::parse_json(&raw)
}

/// A duration in seconds from now, as an absolute time in ms.
fn expiry(req: &Json, key: &str) -> Result<Option<i64>> {
    match req.opt_i64(key)? {
        None => Ok(None),
        Some(secs) if secs > 0 && secs < 100 * 365 * 86_400 => Ok(Some(now_ms() + secs * 1000)),
        Some(secs) => Err(Error::InvalidParameter(format!(
            "{key} must be a positive number of seconds, not {secs}"
        ))),
    }
}

/// `GET /accounts/keys`.
pub async fn list(State(s): State<AppState>) -> Result<Response> {
    body::json(&json!({ "Keys": registry(&s)?.list() }))
}

/// `POST /accounts/keys`: creates a key.
pub async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, raw).await?;
    let action = req.action();
    if !(action.is_empty() || action == "create") {
        return Err(Error::InvalidParameter(format!(
            "unknown keys Action {action:?} (POST /accounts/keys creates a key)"
        )));
    }
    let name = req.req_str("Name")?;
    let allow = match req.get("Allow") {
        Some(Json::Array(items)) => items
            .iter()
            .map(|g| {
                let g = g.as_str().ok_or_else(|| {
                    Error::InvalidParameter("Allow must be a list of strings".into())
                })?;
                Grant::parse(g).map_err(|e| Error::InvalidParameter(format!("Allow: {e}")))
            })
            .collect::<Result<Vec<_>>>()?,
        None | Some(Json::Null) => Vec::new(),
        Some(_) => return Err(Error::InvalidParameter("Allow must be a list".into())),
    };
    let expire_time = expiry(&req, "ExpiresInSecs")?;
    let creds = registry(&s)?
        .create(&name, &allow, expire_time, s.accounts.root_id())
        .await?;
    let grants: Vec<String> = allow.iter().map(Grant::to_string).collect();
    let detail = format!("allow {}; expires {:?}", grants.join(","), expire_time);
    audit::record(
        &s.catalog.meta,
        &caller.name,
        "CreateKey",
        &format!("key/{name}"),
        &detail,
    )
    .await;
    body::json(&creds)
}

/// `POST /accounts/keys/{name}`: disable, enable, rotate, retire.
pub async fn change(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response> {
    let req = json_body(&s, &headers, raw).await?;
    let keys = registry(&s)?;
    let action = req.action();
    let (what, detail, response) = match action.as_str() {
        "disable" => {
            keys.set_enabled(&name, false).await?;
            ("DisableKey", String::new(), body::ok()?)
        }
        "enable" => {
            keys.set_enabled(&name, true).await?;
            ("EnableKey", String::new(), body::ok()?)
        }
        "rotate" => {
            let old_expires = expiry(&req, "OldExpiresInSecs")?;
            let creds = keys.rotate(&name, old_expires).await?;
            let detail = format!("old secret expires {old_expires:?}");
            ("RotateKey", detail, body::json(&creds)?)
        }
        "retire" => {
            keys.retire(&name).await?;
            ("RetireKey", String::new(), body::ok()?)
        }
        other => {
            return Err(Error::InvalidParameter(format!(
                "unknown key Action {other:?} (disable, enable, rotate, retire)"
            )))
        }
    };
    audit::record(
        &s.catalog.meta,
        &caller.name,
        what,
        &format!("key/{name}"),
        &detail,
    )
    .await;
    Ok(response)
}

/// `DELETE /accounts/keys/{name}`.
pub async fn delete(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response> {
    registry(&s)?.delete(&name).await?;
    audit::record(
        &s.catalog.meta,
        &caller.name,
        "DeleteKey",
        &format!("key/{name}"),
        "",
    )
    .await;
    body::ok()
}

/// `GET /accounts/audit?after=SEQ&limit=N`.
pub async fn audit_log(
    State(s): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    let number = |key: &str, default: i64| -> Result<i64> {
        match query.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<i64>().map_err(|_| {
                Error::InvalidParameter(format!("query parameter {key}={v:?} is not a number"))
            }),
        }
    };
    let after = number("after", 0)?;
    let limit = number("limit", 100)?.clamp(1, AUDIT_PAGE_MAX);
    let rows = s.catalog.meta.list_audit(after, limit).await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let entries: Vec<Json> = rows
        .into_iter()
        .map(|r| {
            json!({
                "Seq": r.seq,
                "Time": r.time,
                "Who": r.actor,
                "What": r.action,
                "Resource": r.resource,
                "RequestId": r.request_id,
                "Detail": r.detail,
            })
        })
        .collect();
    body::json(&json!({ "Entries": entries, "NextAfter": next }))
}
