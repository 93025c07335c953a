//! The HTTP layer of the cluster mode's read-your-writes: before a request is served (and
//! authenticated), the node brings its memory up to date with other nodes' changes, so a
//! client behind a load balancer sees its own writes whichever node answers.
//!
//! - Every request checks the catalog version (one single-row query) and reloads the catalog
//!   if it moved (`Catalog::refresh_if_changed`). Record puts and reads included: a put right
//!   after a split, an `append_field` or a delete on another node must route to the children,
//!   accept the new field, or answer NoSuchTopic, not act on the old metadata. (The query is
//!   small beside the put's own append and commit on PostgreSQL.)
//! - When the version this node has seen moved since they were last loaded (an atomic
//!   compare), every request reloads the access keys, and every request but a record put or
//!   read reloads the connector registry (connectors created, changed or deleted elsewhere:
//!   their list, their configuration).
//!
//! In the embedded mode this layer does nothing.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// Whether the request puts or reads records (no connector registry reload on those).
fn is_record_path(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", _, "topics", _, "shards"] | ["projects", _, "topics", _, "shards", _]
    )
}

/// The middleware (see the module docs).
pub async fn refresh(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.catalog.cluster.clone() else {
        return next.run(req).await;
    };
    if let Err(e) = state.catalog.refresh_if_changed().await {
        return e.into_response();
    }
    let seen = state.catalog.seen_version.load(Ordering::Acquire);
    if !is_record_path(req.method(), req.uri().path())
        && cluster.connectors_version.load(Ordering::Acquire) != seen
    {
        match state.catalog.refresh_connectors().await {
            Ok(()) => cluster.connectors_version.store(seen, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "reloading the connectors failed"),
        }
    }
    if cluster.keys_version.load(Ordering::Acquire) != seen {
        if let Some(keys) = state.accounts.keys() {
            match keys.reload().await {
                Ok(()) => cluster.keys_version.store(seen, Ordering::Release),
                Err(e) => tracing::warn!(error = %e, "reloading the access keys failed"),
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_puts_and_reads_are_told_apart_from_metadata_requests() {
        let post = Method::POST;
        assert!(is_record_path(&post, "/projects/p/topics/t/shards"));
        assert!(is_record_path(&post, "/projects/p/topics/t/shards/0"));
        assert!(!is_record_path(&Method::GET, "/projects/p/topics/t/shards"));
        assert!(!is_record_path(&post, "/projects/p/topics/t"));
        assert!(!is_record_path(&post, "/projects/p/topics/t/subscriptions"));
    }
}
