//! The HTTP layer of the cluster mode's read-your-writes: before a request is served (and
//! authenticated), the node brings its memory up to date with other nodes' changes.
//!
//! - Every request but a record put or read (`POST .../shards` and `POST .../shards/{id}`)
//!   checks the catalog version (one cheap query) and reloads the catalog if it moved
//!   (`Catalog::refresh_if_changed`), so a client behind a load balancer sees its own
//!   metadata writes whichever node answers. Record puts and reads get no extra round trip;
//!   a miss on their topic refreshes (`Catalog::refresh_on_miss`) and the background poll
//!   follows within ~100 ms.
//! - Every request reloads the access keys when the catalog version this node has seen moved
//!   since they were last loaded (an atomic compare; the keys are catalog changes too).
//!
//! In the embedded mode this layer does nothing.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// Whether the request puts or reads records (kept free of metadata round trips).
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
    if !is_record_path(req.method(), req.uri().path()) {
        if let Err(e) = state.catalog.refresh_if_changed().await {
            return e.into_response();
        }
    }
    let seen = state.catalog.seen_version.load(Ordering::Acquire);
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
