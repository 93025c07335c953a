//! The HTTP edge: routes, authentication, request ids and head limits, and one file per API
//! resource; `listen` is the accept loop (connection limit, timeouts, shutdown deadline) and
//! `budget` the memory budget of in-flight request bodies; `tls` loads the certificate and key
//! for HTTPS. Authentication also authorizes: every request is checked against the signing
//! key's policy (`accounts::policy::required`) before its handler runs, and management changes
//! are written to the audit log once they succeed.

pub mod auth;
pub mod body;
pub mod budget;
mod connectors;
pub mod error;
// issue 14: cluster — requests of a subscription or connector go to its owner
pub mod forward;
mod json_records;
pub mod listen;
mod projects;
pub(crate) mod records;
mod shards;
mod subscriptions;
mod task_fanout;
pub mod tls;
mod topics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::accounts::policy::Caller;
use crate::accounts::{self, audit, policy};
use crate::service::{Catalog, Error};
use auth::Accounts;
use error::EdgeError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub accounts: Arc<Accounts>,
    /// Memory of the request bodies being read and decoded (`max_inflight_bytes`).
    pub budget: Arc<budget::MemoryBudget>,
}

/// Sluice's own limits on a request's head, below hyper's (see `listen`), so that an oversized
/// request gets a DataHub error.
pub const MAX_URI_BYTES: usize = 16 << 10;
pub const MAX_HEADER_BYTES: usize = 64 << 10;
pub const MAX_HEADERS: usize = 128;

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
        // issue 15: accounts — key management and the audit log (docs/accounts.md)
        .route(
            "/accounts/keys",
            get(accounts::api::list).post(accounts::api::create),
        )
        .route(
            "/accounts/keys/{name}",
            axum::routing::post(accounts::api::change).delete(accounts::api::delete),
        )
        .route("/accounts/audit", get(accounts::api::audit_log))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // issue 14: cluster — to the owning node, once authenticated
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // issue 14: cluster — other nodes' metadata and key changes, before authenticating.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::http_refresh::refresh,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .layer(middleware::from_fn(request_id))
        // issue 13: console (session sign-in, HTML pages; outside the DataHub error mapping);
        // issue 14: in a cluster it too sees keys and metadata changed on other nodes.
        .merge(
            crate::console::router(state.clone()).layer(middleware::from_fn_with_state(
                state.clone(),
                crate::cluster::http_refresh::refresh,
            )),
        )
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

async fn method_not_allowed(req: Request) -> EdgeError {
    EdgeError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

/// Refuses a request whose URI or headers pass Sluice's limits.
fn check_head(req: &Request) -> Result<(), EdgeError> {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        return Err(EdgeError::UriTooLong {
            len,
            limit: MAX_URI_BYTES,
        });
    }
    let count = req.headers().len();
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(EdgeError::HeadersTooLarge {
            count,
            bytes,
            max_count: MAX_HEADERS,
            max_bytes: MAX_HEADER_BYTES,
        });
    }
    Ok(())
}

/// Turns the framework's plain-text refusals (a path that is not UTF-8, ...) into DataHub
/// errors, so every error Sluice answers is a JSON error body.
async fn as_datahub_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    EdgeError::Rejected { status, message }.into_response()
}

/// The request's `x-datahub-request-action` header, trimmed.
fn request_action(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-datahub-request-action")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// The caller of a request: its signature verified against the accounts as this node has
/// them, and the key's policy checked for what the route needs (403 NoPermission otherwise).
pub(crate) fn authorize(
    state: &AppState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, Error> {
    let skew = state.catalog.config.max_clock_skew_secs;
    let caller = state.accounts.verify(method, uri, headers, skew)?;
    let action = request_action(headers);
    let need = policy::required(method, uri.path(), action.as_deref());
    caller.check(&need).map_err(Error::NoPermission)?;
    Ok(caller)
}

/// Verifies the signature, then checks the key's policy for what the route needs (refusing
/// with 403 NoPermission), runs the handler as that caller, and audits a management change.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match authorize(&state, req.method(), req.uri(), req.headers()) {
        Ok(caller) => caller,
        // issue 14: cluster — a put by shard came in without the catalog query: its key may
        // be new on another node.
        Err(e) => match crate::cluster::http_refresh::authorize_again(&state, &mut req, e).await {
            Ok(caller) => caller,
            Err(e) => return e.into_response(),
        },
    };
    let action = request_action(req.headers());
    let path = req.uri().path().to_string();
    let need = policy::required(req.method(), &path, action.as_deref());
    // Key management audits itself, with more detail; a route whose JSON `Action` says what
    // it does is audited only if its handler reports a change.
    let audited = policy::is_management(req.method(), &need)
        && need != policy::Need::KeyAdmin
        && !policy::body_decides(req.method(), &path);
    let what = match &action {
        Some(a) if !a.is_empty() => format!("{} {path} ({a})", req.method()),
        _ => format!("{} {path}", req.method()),
    };
    req.extensions_mut().insert(caller.clone());
    let name = caller.name.clone();
    let late = caller.late_audit.clone();
    let method = req.method().clone();
    let response = accounts::CALLER.scope(caller, next.run(req)).await;
    // issue 14: cluster — a forwarded request is audited by the node that served it.
    if !response.status().is_success()
        || response.extensions().get::<forward::Forwarded>().is_some()
    {
        return response;
    }
    let late = late.lock().take();
    let (need, what) = match late {
        Some((late_need, action)) => (
            late_need.unwrap_or(need),
            format!("{method} {path} ({action})"),
        ),
        None if audited => (need, what),
        None => return response,
    };
    let resource = match &need {
        policy::Need::All(_, r) | policy::Need::Any(r) => r.to_string(),
        _ => String::new(),
    };
    audit::record(&state.catalog.meta, &name, &what, &resource, "").await;
    response
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Gives every request an id (`x-datahub-request-id`) that error bodies repeat, refuses heads
/// past Sluice's limits, and makes sure every error answered is a DataHub JSON error.
async fn request_id(req: Request, next: Next) -> Response {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!(
        "{}{:08x}",
        crate::service::catalog::now_ms(),
        n & 0xffff_ffff
    );
    let mut response = error::REQUEST_ID
        .scope(id.clone(), async move {
            match check_head(&req) {
                Ok(()) => as_datahub_error(next.run(req).await).await,
                Err(e) => e.into_response(),
            }
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-datahub-request-id", v);
    }
    response
}
