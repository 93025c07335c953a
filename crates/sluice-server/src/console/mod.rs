//! The web console under `/console` on the API port: server-rendered HTML (maud) plus a little
//! hand-written JS and CSS embedded in the binary, for operators who steer the hub from a browser.
//!
//! Console requests are not DataHub-signed. A user signs in with an access key pair (checked by
//! [`crate::http::auth::Accounts::key_matches`]) and gets a session (`session`): an HttpOnly,
//! SameSite=Strict cookie (Secure when the server speaks TLS) that expires, and a CSRF token
//! every POST form carries. Pages call the service layer directly, never the HTTP API:
//! - `pages`: hub overview, project (topics, schemas, create topic), topic (shards, record
//!   sampling, subscriptions with lag, connectors, create connector), connector (config with
//!   secrets masked, per-shard progress, lag chart, stop/start, reload, offset reset);
//! - `actions`: the POST forms (sign-in/out, create topic, create and steer connectors);
//! - `api`: small JSON endpoints the JS polls (hub totals, record sampling, connector status);
//! - `view`: the shared page frame, error page and formatting helpers.

mod actions;
mod api;
mod pages;
mod session;
mod view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;
pub use session::Sessions;

/// What every console handler shares: the API's state (catalog, accounts) and the sessions.
#[derive(Clone)]
pub struct Console {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    /// Whether the server speaks TLS (the session cookie is then `Secure`).
    pub secure: bool,
}

const CONSOLE_JS: &str = include_str!("static/console.js");
const CONSOLE_CSS: &str = include_str!("static/console.css");

/// The console's routes, all under `/console`, to be merged into the API's router.
pub fn router<S>(app: AppState) -> Router<S> {
    let console = Console {
        secure: app.catalog.config.tls_cert.is_some(),
        sessions: Arc::new(Sessions::default()),
        app,
    };
    let signed_in = Router::new()
        .route("/console/", get(pages::overview))
        .route("/console/logout", post(actions::sign_out))
        .route("/console/projects/{project}", get(pages::project))
        .route(
            "/console/projects/{project}/topics",
            post(actions::create_topic),
        )
        .route(
            "/console/projects/{project}/topics/{topic}",
            get(pages::topic),
        )
        .route(
            "/console/projects/{project}/topics/{topic}/connectors",
            post(actions::create_connector),
        )
        .route(
            "/console/projects/{project}/topics/{topic}/connectors/{id}",
            get(pages::connector),
        )
        .route(
            "/console/projects/{project}/topics/{topic}/connectors/{id}/state",
            post(actions::connector_state),
        )
        .route(
            "/console/projects/{project}/topics/{topic}/connectors/{id}/reload",
            post(actions::connector_reload),
        )
        .route(
            "/console/projects/{project}/topics/{topic}/connectors/{id}/offset",
            post(actions::connector_offset),
        )
        .route("/console/api/overview", get(api::overview))
        .route(
            "/console/api/projects/{project}/topics/{topic}/records",
            get(api::records),
        )
        .route(
            "/console/api/projects/{project}/topics/{topic}/connectors/{id}/status",
            get(api::connector_status),
        )
        .layer(middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(pages::sign_in).post(actions::sign_in))
        .route("/console/static/console.js", get(script))
        .route("/console/static/console.css", get(stylesheet))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// Lets a request with a live session through (with the session in its extensions); sends a
/// page request without one to the sign-in page and answers an API request 401.
async fn require_session(State(console): State<Console>, mut req: Request, next: Next) -> Response {
    match console.sessions.from_headers(req.headers()) {
        Some(session) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        None if req.uri().path().starts_with("/console/api/") || req.method() != Method::GET => {
            let body = serde_json::json!({"error": "not signed in (or the session expired)"});
            view::json(StatusCode::UNAUTHORIZED, &body)
        }
        None => Redirect::to("/console/login").into_response(),
    }
}

/// Console pages are never framed, cached or sniffed, and load scripts only from the console.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CONSOLE_JS,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CONSOLE_CSS,
    )
        .into_response()
}
