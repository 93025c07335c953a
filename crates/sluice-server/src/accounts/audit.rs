//! The audit log: every management change is appended to the meta store's `audit_log` with
//! who (the key's name), what, the resource, when and the request id. Routine traffic (records,
//! reads and status queries, consumer-group work, offset commits) is not: which requests are
//! changes is decided by the authentication middleware (`http::authenticate`), with the
//! handlers reporting the JSON `Action` of routes whose body decides (docs/accounts.md). Nothing written here ever holds a secret: the
//! callers pass names, paths and actions only.

use sluice_meta::{AuditRow, MetaStore};

use crate::service::catalog::now_ms;

/// The id of the request being served (empty outside one).
fn request_id() -> String {
    crate::http::error::REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_default()
}

/// Appends one entry. A failure is logged, not returned: the change itself is already done.
pub async fn record(meta: &MetaStore, actor: &str, what: &str, resource: &str, detail: &str) {
    let row = AuditRow {
        seq: 0,
        time: now_ms(),
        actor: actor.to_string(),
        action: what.to_string(),
        resource: resource.to_string(),
        request_id: request_id(),
        detail: detail.to_string(),
    };
    if let Err(e) = meta.append_audit(&row).await {
        tracing::error!(error = %e, what, resource, "cannot append to the audit log");
    }
}
