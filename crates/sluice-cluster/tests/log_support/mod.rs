//! Shared by the cluster log tests: the PostgreSQL from scripts/services.sh (absent = FAIL),
//! unique shard keys, a bound on every test.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_cluster::log::{PgLog, PgLogOptions};

/// The test PostgreSQL's URL; panics (the test fails) when the service is not running.
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: run under scripts/test.sh, or \
         `source scripts/services.sh; services_start` first",
    )
}

/// A node's log on the test PostgreSQL (a short poll, so that cross-node tests are quick).
pub async fn connect() -> PgLog {
    PgLog::connect(
        &pg_url(),
        PgLogOptions {
            poll_interval: Duration::from_millis(50),
            // Tests run in parallel against one server with a bounded max_connections.
            max_connections: 8,
            ..PgLogOptions::default()
        },
    )
    .await
    .expect("connect to the test PostgreSQL")
}

/// A shard key no other test (or earlier run) uses.
pub fn unique_key(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test/{name}/{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a test body with a bound of 120 s (nothing may hang).
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(120), body)
        .await
        .expect("test timed out");
}

/// `n` distinct payloads for put `put` (sizes vary, some empty).
pub fn payloads(put: usize, n: usize) -> Vec<bytes::Bytes> {
    (0..n)
        .map(|i| {
            bytes::Bytes::from(format!(
                "put {put} entry {i} {}",
                "x".repeat((put + i) % 13)
            ))
        })
        .collect()
}
