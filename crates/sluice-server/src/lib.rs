//! Sluice's HTTP API: the DataHub protocol over axum.
//!
//! - [`http`]: the accept loop (`http::listen`: connection limit, timeouts, shutdown deadline),
//!   routes, authentication, request ids, body codecs under a memory budget, and one handler file per
//!   resource (`projects`, `topics`, `shards`, `records`, `connectors`, `subscriptions`); errors
//!   become DataHub error codes in
//!   exactly one place, `http/error.rs`;
//! - [`service`]: the domain logic, free of HTTP: the in-memory [`service::Catalog`] over the
//!   meta store, topology changes, record routing, reads, cursors and retention, subscriptions
//!   with their offsets, and consumer groups;
//! - [`config`]: the server's tunables, validated at start;
//! - [`accounts`]: access keys, policies (checked for every route by the authentication
//!   middleware), key management and the audit log.
//! - [`console`]: the web console under `/console` (sessions, server-rendered pages).
//! - [`metrics`]: Prometheus metrics, recorded as things happen and served unsigned on their own
//!   listener (`metrics_listen`).
//! - [`cluster`]: the cluster mode (`sluice serve --cluster`, issue 14): its options, the node's
//!   runtime on the shared PostgreSQL and archive, the archiver loop, the HTTP refresh layer.
//!
//! [`Server::open`] builds the state from a data directory ([`Server::open_cluster`] from the
//! cluster's shared PostgreSQL); [`http::app`] turns it into a
//! router, which tests drive with `oneshot` and the binary serves with [`http::listen::serve`].

pub mod accounts;
pub mod clock;
// issue 14: cluster
pub mod cluster;
pub mod config;
// issue 13: console
pub mod console;
pub mod http;
pub mod metrics;
pub mod server;
pub mod service;

pub use config::ServerConfig;
pub use http::{app, auth::Accounts, AppState};
pub use server::Server;
