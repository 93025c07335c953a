//! The `/metrics` listener: plain HTTP, unsigned (scrapers do not sign), on its own address
//! (`metrics_listen`), serving nothing but `GET /metrics`. It is never routed on the signed API
//! port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::{ServerConfig, DEFAULT_METRICS_LISTEN};
use crate::service::Catalog;

/// The content type of OpenMetrics text, which Prometheus scrapes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `metrics_listen`; None when it is empty (metrics off), or when it is unset and the
/// default address is taken (logged as a warning).
pub async fn bind(config: &ServerConfig) -> std::io::Result<Option<TcpListener>> {
    match config.metrics_listen.as_deref().map(str::trim) {
        Some("") => Ok(None),
        Some(addr) => TcpListener::bind(addr).await.map(Some),
        None => match TcpListener::bind(DEFAULT_METRICS_LISTEN).await {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(addr = DEFAULT_METRICS_LISTEN, error = %e,
                    "cannot listen on the default metrics address: /metrics is not served; set metrics_listen");
                Ok(None)
            }
        },
    }
}

/// The metrics router (also for tests without a socket).
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(catalog)
}

async fn metrics(State(catalog): State<Arc<Catalog>>) -> impl IntoResponse {
    let text = super::scrape::render(&catalog).await;
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], text)
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    catalog: Arc<Catalog>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(catalog))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}
