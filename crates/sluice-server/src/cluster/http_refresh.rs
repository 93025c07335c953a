//! The HTTP layer of the cluster mode's read-your-writes: before a request is served (and
//! authenticated), the node brings its memory up to date with other nodes' changes, so a
//! client behind a load balancer sees its own writes whichever node answers.
//!
//! - Every request but a put by shard checks the catalog version (one single-row query) and
//!   reloads the catalog if it moved (`Catalog::refresh_if_changed`). Record reads included: a
//!   read right after a split or a delete on another node must see the children, or answer
//!   NoSuchTopic, not act on the old metadata.
//! - A put by shard in the protobuf or batch protocol (`x-datahub-request-action: pub`, the
//!   put that producers send most) skips that query: it carries the version this node has
//!   seen ([`CatalogSeen`], taken before the request is authenticated), and the append
//!   statement itself stores the put only if the shared catalog is still at that version.
//!   When it moved, or the put failed on this node's older metadata, the handler catches up and
//!   runs the put again ([`super::checked_put`]). Its signature is checked against the keys
//!   this node has; if that fails and the catalog moved meanwhile (a key created elsewhere), it
//!   is checked again once the node caught up ([`authorize_again`]). At low rates this saves a
//!   query per put; under load, a round trip per put on the shared probe.
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

use crate::accounts::policy::Caller;
use crate::http::records::{is_pub, ContentKind};
use crate::http::{authorize, AppState};
use crate::service::{Error, Result};

/// The catalog version this node had seen when a put by shard came in, before it was
/// authenticated (a request extension; see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct CatalogSeen(pub i64);

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

/// Whether the request is a put by shard whose append checks the catalog version itself: a
/// record put to `/shards/{id}` in the protobuf or batch protocol (a JSON body says its action
/// only inside, where this layer does not look).
fn is_checked_put(req: &Request) -> bool {
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    req.method() == Method::POST
        && matches!(parts.as_slice(), ["projects", _, "topics", _, "shards", _])
        && is_pub(req.headers())
        && ContentKind::of(req.headers()) != ContentKind::Json
}

/// The middleware (see the module docs).
pub async fn refresh(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.catalog.cluster.is_none() {
        return next.run(req).await;
    }
    if is_checked_put(&req) {
        let seen = state.catalog.seen_version.load(Ordering::Acquire);
        req.extensions_mut().insert(CatalogSeen(seen));
        catch_up_keys(&state).await;
        return next.run(req).await;
    }
    if let Err(e) = state.catalog.refresh_if_changed().await {
        return e.into_response();
    }
    if !is_record_path(req.method(), req.uri().path()) {
        catch_up_connectors(&state).await;
    }
    catch_up_keys(&state).await;
    next.run(req).await
}

/// A put by shard that failed authentication on the keys this node had ([`CatalogSeen`]) is
/// authenticated again once the node caught up, if the catalog had moved (a key created on
/// another node); its catalog version becomes the one it was authenticated against. Any other
/// request's `failure` stands.
pub async fn authorize_again(
    state: &AppState,
    req: &mut Request,
    failure: Error,
) -> Result<Caller> {
    let Some(CatalogSeen(seen)) = req.extensions().get::<CatalogSeen>().copied() else {
        return Err(failure);
    };
    let now = catch_up(state).await?;
    if now <= seen {
        return Err(failure);
    }
    req.extensions_mut().insert(CatalogSeen(now));
    authorize(state, req.method(), req.uri(), req.headers())
}

/// Brings the catalog and the access keys up to date with the shared metadata; returns the
/// catalog version this node has seen now (cluster mode).
pub async fn catch_up(state: &AppState) -> Result<i64> {
    state.catalog.refresh_if_changed().await?;
    catch_up_keys(state).await;
    Ok(state.catalog.seen_version.load(Ordering::Acquire))
}

/// Reloads the access keys if the catalog version moved since they were last loaded.
async fn catch_up_keys(state: &AppState) {
    let (Some(cluster), Some(keys)) = (state.catalog.cluster.as_ref(), state.accounts.keys())
    else {
        return;
    };
    let seen = state.catalog.seen_version.load(Ordering::Acquire);
    if cluster.keys_version.load(Ordering::Acquire) != seen {
        match keys.reload().await {
            Ok(()) => cluster.keys_version.store(seen, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "reloading the access keys failed"),
        }
    }
}

/// Reloads the connector registry if the catalog version moved since it was last loaded.
async fn catch_up_connectors(state: &AppState) {
    let Some(cluster) = state.catalog.cluster.as_ref() else {
        return;
    };
    let seen = state.catalog.seen_version.load(Ordering::Acquire);
    if cluster.connectors_version.load(Ordering::Acquire) != seen {
        match state.catalog.refresh_connectors().await {
            Ok(()) => cluster.connectors_version.store(seen, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "reloading the connectors failed"),
        }
    }
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
