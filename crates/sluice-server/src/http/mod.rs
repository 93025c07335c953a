//! The HTTP edge: routes, authentication and request ids, and one file per API resource.

pub mod auth;
pub mod body;
mod connectors;
pub mod error;
mod json_records;
mod projects;
mod records;
mod shards;
mod subscriptions;
mod topics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::service::{Catalog, Error};
use auth::Accounts;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub accounts: Arc<Accounts>,
}

/// The whole API as a router, so tests can drive it without a socket.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/projects", get(projects::list))
        .route(
            "/projects/{project}",
            get(projects::get)
                .post(projects::create)
                .put(projects::update)
                .delete(projects::delete),
        )
        .route("/projects/{project}/topics", get(topics::list))
        .route(
            "/projects/{project}/topics/{topic}",
            get(topics::get)
                .post(topics::post)
                .put(topics::update)
                .delete(topics::delete),
        )
        .route(
            "/projects/{project}/topics/{topic}/shards",
            get(shards::list).post(shards::post),
        )
        .route(
            "/projects/{project}/topics/{topic}/shards/{shard}",
            axum::routing::post(records::post_shard),
        )
        .route(
            "/projects/{project}/topics/{topic}/connectors",
            get(connectors::list),
        )
        .route(
            "/projects/{project}/topics/{topic}/connectors/{connector}",
            get(connectors::get)
                .post(connectors::post)
                .delete(connectors::delete),
        )
        .route(
            "/projects/{project}/topics/{topic}/subscriptions",
            axum::routing::post(subscriptions::post_collection),
        )
        .route(
            "/projects/{project}/topics/{topic}/subscriptions/{sub}",
            get(subscriptions::get)
                .post(subscriptions::group)
                .put(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            "/projects/{project}/topics/{topic}/subscriptions/{sub}/offsets",
            axum::routing::post(subscriptions::post_offsets).put(subscriptions::put_offsets),
        )
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Liveness: always 200 while the server answers. The body says whether record writes are
/// failing: `{"status":"ok"}`, or `{"status":"degraded","reason":...}` until a write succeeds.
async fn health(State(state): State<AppState>) -> crate::service::Result<Response> {
    let body = match state.catalog.write_health.degraded() {
        None => serde_json::json!({"status": "ok"}),
        Some(reason) => serde_json::json!({"status": "degraded", "reason": reason}),
    };
    body::json(&body)
}

async fn unknown_route(req: Request) -> Error {
    Error::UnknownRequest(format!("{} {}", req.method(), req.uri().path()))
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let skew = state.catalog.config.max_clock_skew_secs;
    match state
        .accounts
        .verify(req.method(), req.uri(), req.headers(), skew)
    {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Gives every request an id (`x-datahub-request-id`) that error bodies repeat.
async fn request_id(req: Request, next: Next) -> Response {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!(
        "{}{:08x}",
        crate::service::catalog::now_ms(),
        n & 0xffff_ffff
    );
    let mut response = error::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-datahub-request-id", v);
    }
    response
}
