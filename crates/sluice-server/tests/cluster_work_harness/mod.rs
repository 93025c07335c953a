//! Shared by the two-node cluster work tests (`cluster_work.rs`: subscriptions and offsets;
//! `cluster_tasks.rs`: connector shard tasks): a fresh database per test on the PostgreSQL of
//! scripts/services.sh (a missing `SLUICE_TEST_PG_URL` fails), in-process nodes on real
//! sockets with short leases, signed calls, bounded waits.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_cluster::lease::LeaseConfig;
use sluice_proto::sign;
use sluice_server::cluster::ownership::{Ownership, WorkKey};
use sluice_server::cluster::ClusterOptions;
use sluice_server::{app, Accounts, Server, ServerConfig};

pub const ID: &str = "cluster-id";
pub const KEY: &str = "cluster-key";

pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: start the services (scripts/services.sh: services_start)",
    )
}

/// A fresh database on the test server, and its URL.
pub async fn fresh_database() -> String {
    let url = pg_url();
    let name = format!(
        "work_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("PostgreSQL answers");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

pub struct Node {
    pub server: Server,
    pub base: String,
    pub serving: tokio::task::JoinHandle<()>,
    pub _dir: tempfile::TempDir,
}

impl Node {
    pub fn ownership(&self) -> Arc<Ownership> {
        self.server
            .state
            .catalog
            .cluster
            .as_ref()
            .unwrap()
            .ownership
            .get()
            .unwrap()
            .clone()
    }
}

pub fn short_leases() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(250),
    }
}

/// Starts a cluster node `id` on `url`, serving on a loopback port.
pub async fn node(url: &str, id: &str, key_file: &std::path::Path) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClusterOptions::new(url, id, addr.clone(), key_file);
    options.work_leases = short_leases();
    let server = Server::open_cluster(
        &options,
        dir.path(),
        ServerConfig::default(),
        Accounts::with_root(ID, KEY),
    )
    .await
    .expect("the cluster node starts");
    let router = app(server.state.clone());
    let serving = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Node {
        server,
        base: format!("http://{addr}"),
        serving,
        _dir: dir,
    }
}

pub fn key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let p = dir.path().join("server.key");
    std::fs::write(&p, "11".repeat(32)).unwrap();
    p
}

/// A request signed as pydatahub signs it, with a fixed date (so it can be sent twice).
pub fn signed(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    date: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let ct = "application/json";
    let headers = [("x-datahub-client-version", "1.1")];
    let canonical = sign::canonical_string(method.as_str(), ct, date, &headers, path, None);
    client
        .request(method, format!("{base}{path}"))
        .header("content-type", ct)
        .header("date", date)
        .header("x-datahub-client-version", "1.1")
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(KEY, &canonical)),
        )
        .body(body.to_string())
}

pub fn now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

pub async fn call(base: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let client = reqwest::Client::new();
    let r = signed(&client, base, method, path, &now(), &body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("the test finishes in time");
}

/// Waits until `cond` holds (checked every 50 ms, at most `secs`).
pub async fn until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A project, a topic and `n` subscriptions, created through `base`; returns the sub ids.
pub async fn setup(base: &str, n: usize) -> Vec<String> {
    use reqwest::Method;
    let (s, b) = call(
        base,
        Method::POST,
        "/projects/proj",
        json!({"Comment": "c"}),
    )
    .await;
    assert!(s < 300, "create project: {s} {b}");
    let (s, b) = call(
        base,
        Method::POST,
        "/projects/proj/topics/top",
        json!({"Action": "create", "ShardCount": 2, "Lifecycle": 1, "RecordType": "BLOB", "Comment": "c"}),
    )
    .await;
    assert!(s < 300, "create topic: {s} {b}");
    let mut ids = Vec::new();
    for _ in 0..n {
        let (s, b) = call(
            base,
            Method::POST,
            "/projects/proj/topics/top/subscriptions",
            json!({"Action": "create", "Comment": "c"}),
        )
        .await;
        assert!(s < 300, "create subscription: {s} {b}");
        ids.push(b["SubId"].as_str().unwrap().to_string());
    }
    ids
}

pub fn sub_keys(node: &Node) -> Vec<WorkKey> {
    node.ownership()
        .held()
        .into_iter()
        .filter(|k| k.kind == "sub")
        .collect()
}
