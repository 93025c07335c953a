//! The harness of the cluster-mode tests (tests/cluster_serve.rs): a fresh database on the
//! PostgreSQL of scripts/services.sh (absent = the test FAILS), a shared server key file, and
//! nodes (`Server::open_cluster`) driven through the router like tests/accounts_harness.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_server::cluster::{ArchiveCredentials, ClusterOptions};
use sluice_server::{Accounts, Server, ServerConfig};

use super::accounts_harness::{root, Harness, ROOT_ID, ROOT_KEY};

/// The test PostgreSQL's URL; panics (the test fails) when the service is not running.
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: run under scripts/test.sh, or \
         `source scripts/services.sh; services_start` first",
    )
}

/// A database of its own for one test (the nodes of the test share it).
pub async fn fresh_database() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = sqlx::PgPool::connect(&pg_url())
        .await
        .expect("connect to the test PostgreSQL");
    let name = format!(
        "sluice_cl_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// One cluster under test: its database, shared key file and archive location.
pub struct Cluster {
    pub url: String,
    pub key_dir: tempfile::TempDir,
    pub archive: Option<String>,
    pub archive_keys: Option<ArchiveCredentials>,
}

impl Cluster {
    pub async fn new() -> Cluster {
        let key_dir = tempfile::tempdir().unwrap();
        let key: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        std::fs::write(key_dir.path().join("server.key"), key).unwrap();
        Cluster {
            url: fresh_database().await,
            key_dir,
            archive: None,
            archive_keys: None,
        }
    }

    /// The same, with an archive on the s3s-fs of scripts/services.sh (absent = FAIL), in a
    /// bucket of its own.
    pub async fn with_archive() -> Cluster {
        let env = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run under scripts/test.sh (s3s-fs is needed)")
            })
        };
        let bucket = format!(
            "cl-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        std::fs::create_dir_all(Path::new(&env("SLUICE_TEST_S3_DIR")).join(&bucket)).unwrap();
        let mut c = Cluster::new().await;
        c.archive = Some(format!(
            "s3://{bucket}/archive?endpoint={}",
            env("SLUICE_TEST_S3_ENDPOINT")
        ));
        c.archive_keys = Some(ArchiveCredentials {
            access_key_id: env("SLUICE_TEST_S3_ACCESS_KEY"),
            secret_access_key: env("SLUICE_TEST_S3_SECRET_KEY"),
        });
        c
    }

    pub fn key_file(&self) -> PathBuf {
        self.key_dir.path().join("server.key")
    }

    pub fn options(&self, node_id: &str) -> ClusterOptions {
        let mut o = ClusterOptions::new(
            self.url.clone(),
            node_id,
            format!("127.0.0.1:{}", 9000 + node_id.len()),
            self.key_file(),
        );
        o.archive = self.archive.clone();
        o.archive_keys = self.archive_keys.clone();
        o.archive_every = Duration::from_millis(200);
        o
    }

    /// A node with a scratch data dir of its own.
    pub async fn node(&self, node_id: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let server = open_node(&self.options(node_id), dir.path()).await;
        Harness { dir, server }
    }
}

pub async fn open_node(options: &ClusterOptions, dir: &Path) -> Server {
    Server::open_cluster(
        options,
        dir,
        ServerConfig::default(),
        Accounts::with_root(ROOT_ID, ROOT_KEY),
    )
    .await
    .expect("open a cluster node")
}

/// Runs a test body with a bound of 120 s (nothing may hang).
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(120), body)
        .await
        .expect("test timed out");
}

pub const SCHEMA: &str = r#"{"fields":[{"name":"a","type":"bigint"}]}"#;

/// Project `proj` and tuple topic `t` with `shards` shards, created on `h`.
pub async fn create_topic(h: &Harness, shards: i64) {
    h.ok(&root(), "POST", "/projects/proj", json!({"Comment": "c"}))
        .await;
    h.ok(
        &root(),
        "POST",
        "/projects/proj/topics/t",
        json!({"ShardCount": shards, "Lifecycle": 1, "RecordType": "TUPLE", "RecordSchema": SCHEMA, "Comment": ""}),
    )
    .await;
}

/// Puts `values` to shard `shard` of `t` through `h`; returns the response.
pub async fn put(h: &Harness, shard: &str, values: &[i64]) -> Value {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"Data": [v.to_string()], "ShardId": shard}))
        .collect();
    h.ok(
        &root(),
        "POST",
        "/projects/proj/topics/t/shards",
        json!({"Action": "pub", "Records": records}),
    )
    .await
}

/// A cursor of shard `shard` (`body` without the Action).
pub async fn cursor(h: &Harness, shard: &str, body: Value) -> Value {
    let mut body = body;
    body["Action"] = json!("cursor");
    h.ok(
        &root(),
        "POST",
        &format!("/projects/proj/topics/t/shards/{shard}"),
        body,
    )
    .await
}

/// `(sequence, system time, value)` of every record of `shard` from `cursor` on.
pub async fn read_all(h: &Harness, shard: &str, cursor: &Value) -> Vec<(i64, i64, String)> {
    let mut out = Vec::new();
    let mut next = cursor.clone();
    loop {
        let (s, r) = h
            .call(
                &root(),
                "POST",
                &format!("/projects/proj/topics/t/shards/{shard}"),
                json!({"Action": "sub", "Cursor": next, "Limit": 1000}),
            )
            .await;
        if s.as_u16() == 400 && r["ErrorCode"] == "InvalidShardOperation" {
            return out; // the end of a closed shard
        }
        assert_eq!(s.as_u16(), 200, "{r}");
        let records = r["Records"].as_array().unwrap();
        if records.is_empty() {
            return out;
        }
        for x in records {
            out.push((
                x["Sequence"].as_i64().unwrap(),
                x["SystemTime"].as_i64().unwrap(),
                x["Data"][0].as_str().unwrap().to_string(),
            ));
        }
        next = r["NextCursor"].clone();
    }
}
