//! Cluster mode (issue 14): a request scoped to a subscription or a connector is served by the
//! node that owns that piece of work (`cluster/ownership.rs`); any other node proxies it there
//! as it is.
//!
//! * Scoped requests: `POST .../subscriptions/{sub}` (join, heartbeat, sync, leave group),
//!   `POST|PUT .../subscriptions/{sub}/offsets` (open and reset offsets; a get or a commit is
//!   served by any node from the shared store: `service/offsets_anywhere.rs`), and every
//!   `GET|POST|DELETE .../connectors/{id}` (get, done time, status, state, offsets, reload,
//!   config, append field, delete); `{id}` may be a type string naming the topic's single
//!   connector of that type. Anything else, and a path naming nothing this node knows, is
//!   served here (the handler answers).
//! * The proxied request keeps its method, path, query, headers (the signature and `Date`
//!   included; hop-by-hop headers and `Host` excepted) and body. The signature covers the
//!   method, the `x-datahub-*` headers and the path, not the host, so the owner verifies it
//!   again. The owner's answer (status, headers, body) is returned byte for byte.
//! * Loop guard: a proxied request carries `x-sluice-forwarded-by: <node id>`; such a request
//!   is served where it lands, or refused as unavailable, never forwarded again. One that also
//!   carries `x-sluice-local-tasks` asks about the connector tasks running here
//!   (`task_fanout.rs`) and is served here whoever controls the connector.
//! * Owner unknown or unreachable: [`Error::Unavailable`] (HTTP 503, a code every SDK
//!   retries), never a wrong answer.
//! * TLS: when this node serves HTTPS (`tls_cert`), so do the others: the proxy speaks HTTPS
//!   and trusts the system roots, the certificates in `tls_cert` (a self-signed or shared
//!   certificate) and `connector_tls_ca_file` (the cluster's CA).
//!
//! This layer runs after authentication (an unsigned request is refused before it costs a
//! hop) and does nothing in the embedded mode.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::cluster::ownership::{Route, WorkKey};
use crate::service::{Catalog, Error};

/// The loop guard's header: the id of the node that forwarded the request.
pub const FORWARDED_BY: &str = "x-sluice-forwarded-by";

/// Marks a response that another node produced (so this node does not audit it again).
#[derive(Clone, Copy, Debug)]
pub struct Forwarded;

/// How long a proxied request may take (a connector change waits for its runtime's stop).
const PROXY_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What a path is scoped to.
#[derive(Debug, PartialEq, Eq)]
enum Scope {
    Subscription {
        project: String,
        topic: String,
        sub: String,
    },
    Connector {
        project: String,
        topic: String,
        id: String,
    },
}

fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let own = |s: &&str| s.to_string();
    match (method, parts.as_slice()) {
        (&Method::POST, ["projects", p, "topics", t, "subscriptions", s])
        | (
            &Method::POST | &Method::PUT,
            ["projects", p, "topics", t, "subscriptions", s, "offsets"],
        ) => Some(Scope::Subscription {
            project: own(p),
            topic: own(t),
            sub: own(s),
        }),
        (
            &Method::GET | &Method::POST | &Method::DELETE,
            ["projects", p, "topics", t, "connectors", c],
        ) => Some(Scope::Connector {
            project: own(p),
            topic: own(t),
            id: own(c),
        }),
        _ => None,
    }
}

/// The work key of a scope, if this node knows what it names (after bringing its connectors
/// up to date once when it does not).
async fn work_key(catalog: &Catalog, scope: &Scope) -> Option<WorkKey> {
    match scope {
        Scope::Subscription {
            project,
            topic,
            sub,
        } => {
            let (t, s) = catalog.subscription(project, topic, sub).ok()?;
            Some(WorkKey::sub(t.uid, &s.sub_id))
        }
        Scope::Connector { project, topic, id } => {
            let key = match catalog.connector_key(project, topic, id) {
                Ok(k) => k,
                Err(_) => {
                    // Created through another node a moment ago?
                    catalog.refresh_connectors().await.ok()?;
                    catalog.connector_key(project, topic, id).ok()?
                }
            };
            Some(WorkKey::conn(key.0, &key.1))
        }
    }
}

/// The middleware (see the module docs).
pub async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(ownership) = state
        .catalog
        .cluster
        .as_ref()
        .and_then(|c| c.ownership.get().cloned())
    else {
        return next.run(req).await;
    };
    let Some(scope) = scope_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    if req.headers().contains_key(super::task_fanout::LOCAL_TASKS)
        && req.headers().contains_key(FORWARDED_BY)
    {
        // A controlling node asks about the tasks running here (`task_fanout.rs`).
        return next.run(req).await;
    }
    let Some(key) = work_key(&state.catalog, &scope).await else {
        return next.run(req).await;
    };
    let req = match served_anywhere(&state, req).await {
        Ok((true, req)) => return next.run(req).await,
        Ok((false, req)) => req,
        Err(e) => return e.into_response(),
    };
    let forwarded = req.headers().contains_key(FORWARDED_BY);
    match ownership.route(&key, forwarded).await {
        Route::Local(_) => next.run(req).await,
        Route::Remote { node, address } => {
            tracing::debug!(kind = key.kind, key = %key.key, to = %node, "forwarding");
            match proxy(&state, req, &address, ownership.node()).await {
                Ok(mut response) => {
                    response.extensions_mut().insert(Forwarded);
                    response
                }
                Err(e) => e.into_response(),
            }
        }
        Route::Unavailable(why) => Error::Unavailable(why).into_response(),
    }
}

/// Whether `req` is an offset request that any node serves from the shared store
/// (`service/offsets_anywhere.rs`): a commit (`PUT .../offsets`, Action commit) or a get
/// (`POST .../offsets`, Action get). Reads the body to see its Action and hands the request
/// back whole. A body that does not decode is left to the handler, which names the problem.
async fn served_anywhere(state: &AppState, req: Request) -> Result<(bool, Request), Error> {
    let wanted = match *req.method() {
        Method::PUT => "commit",
        Method::POST => "get",
        _ => return Ok((false, req)),
    };
    if !req.uri().path().trim_end_matches('/').ends_with("/offsets") {
        return Ok((false, req));
    }
    let (parts, body) = req.into_parts();
    let limit = state.catalog.config.max_request_bytes;
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| Error::InvalidParameter(format!("the request body: {e}")))?;
    let action = match super::body::read_body(state, &parts.headers, Body::from(raw.clone())).await
    {
        Ok(decoded) => super::body::parse_json(&decoded).map(|json| {
            use super::body::JsonFields;
            json.action()
        }),
        Err(e) => Err(e),
    };
    let anywhere = match action {
        Ok(action) => action == wanted,
        Err(_) => true,
    };
    Ok((anywhere, Request::from_parts(parts, Body::from(raw))))
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and `Host`.
fn end_to_end(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

pub(super) fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if end_to_end(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The scheme the nodes speak: HTTPS when this node does.
pub(super) fn scheme(state: &AppState) -> &'static str {
    if state.catalog.config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The one HTTP client of the proxy (see the module docs for its TLS trust).
pub(super) fn client(state: &AppState) -> Result<&'static reqwest::Client, Error> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let built = CLIENT.get_or_init(|| {
        let config = &state.catalog.config;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(PROXY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        for file in [&config.tls_cert, &config.connector_tls_ca_file]
            .into_iter()
            .flatten()
        {
            let pem = std::fs::read(file)
                .map_err(|e| format!("forwarding: cannot read {}: {e}", file.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("forwarding: {}: {e}", file.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build().map_err(|e| format!("forwarding: {e}"))
    });
    built.as_ref().map_err(|e| Error::Internal(e.clone()))
}

/// Sends `req` as it is to the node at `address` and returns its answer.
async fn proxy(state: &AppState, req: Request, address: &str, me: &str) -> Result<Response, Error> {
    let scheme = scheme(state);
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("{scheme}://{address}{target}");
    let method = req.method().clone();
    let mut headers = copy_headers(req.headers());
    headers.insert(
        FORWARDED_BY,
        HeaderValue::from_str(me).map_err(|e| Error::Internal(format!("node id: {e}")))?,
    );
    let limit = state.catalog.config.max_request_bytes;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| Error::InvalidParameter(format!("the request body: {e}")))?;
    let unavailable = |e: reqwest::Error| {
        Error::Unavailable(format!("the owning node at {address} did not answer: {e}"))
    };
    let answer = client(state)?
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(unavailable)?;
    let status = answer.status();
    let headers = copy_headers(answer.headers());
    let bytes = answer.bytes().await.map_err(unavailable)?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_paths_are_told_apart() {
        let sub = |s: &str| Scope::Subscription {
            project: "p".into(),
            topic: "t".into(),
            sub: s.into(),
        };
        assert_eq!(
            scope_of(&Method::POST, "/projects/p/topics/t/subscriptions/s1"),
            Some(sub("s1"))
        );
        assert_eq!(
            scope_of(
                &Method::PUT,
                "/projects/p/topics/t/subscriptions/s1/offsets"
            ),
            Some(sub("s1"))
        );
        assert_eq!(
            scope_of(
                &Method::POST,
                "/projects/p/topics/t/subscriptions/s1/offsets"
            ),
            Some(sub("s1"))
        );
        assert_eq!(
            scope_of(&Method::GET, "/projects/p/topics/t/connectors/c1"),
            Some(Scope::Connector {
                project: "p".into(),
                topic: "t".into(),
                id: "c1".into()
            })
        );
        // Creating, listing and reading subscriptions, record traffic: served anywhere.
        assert_eq!(
            scope_of(&Method::POST, "/projects/p/topics/t/subscriptions"),
            None
        );
        assert_eq!(
            scope_of(&Method::GET, "/projects/p/topics/t/subscriptions/s1"),
            None
        );
        assert_eq!(
            scope_of(&Method::POST, "/projects/p/topics/t/shards/0"),
            None
        );
        assert_eq!(
            scope_of(&Method::GET, "/projects/p/topics/t/connectors"),
            None
        );
    }

    #[test]
    fn hop_by_hop_headers_and_host_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a:1"));
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("authorization", HeaderValue::from_static("DATAHUB id:sig"));
        h.insert("x-datahub-client-version", HeaderValue::from_static("1.1"));
        let out = copy_headers(&h);
        assert!(out.get("host").is_none() && out.get("connection").is_none());
        assert_eq!(out.get("authorization").unwrap(), "DATAHUB id:sig");
        assert_eq!(out.get("x-datahub-client-version").unwrap(), "1.1");
    }
}
