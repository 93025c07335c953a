//! Shared by the cluster log tests: the PostgreSQL from scripts/services.sh (absent = FAIL),
//! unique shard keys, a bound on every test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_cluster::log::{PgLog, PgLogOptions, PgShardStore};
use sluice_log::store::ShardStore;
use sluice_log::AppendInfo;

/// The test PostgreSQL's URL; panics (the test fails) when the service is not running.
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: run under scripts/test.sh, or \
         `source scripts/services.sh; services_start` first",
    )
}

/// A node's log on the test PostgreSQL (a short poll, so that cross-node tests are quick).
pub async fn connect() -> PgLog {
    connect_with(PgLogOptions::default().appends_in_flight).await
}

/// [`connect`], running at most `appends_in_flight` append statements at a time.
pub async fn connect_with(appends_in_flight: usize) -> PgLog {
    connect_to(&pg_url(), appends_in_flight).await
}

/// [`connect_with`] to the PostgreSQL at `url`.
pub async fn connect_to(url: &str, appends_in_flight: usize) -> PgLog {
    PgLog::connect(
        url,
        PgLogOptions {
            poll_interval: Duration::from_millis(50),
            // Tests run in parallel against one server with a bounded max_connections.
            max_connections: 8,
            appends_in_flight,
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

/// A new shard (unique key, sequences from 0) and this node's store of it.
pub async fn new_shard(log: &PgLog, name: &str) -> Arc<PgShardStore> {
    let key = unique_key(name);
    assert!(log.create_shard(&key, 0).await.unwrap());
    log.shard(&key).await.unwrap()
}

/// All entries of a shard, read in pages of `page` entries.
pub async fn read_all(store: &Arc<PgShardStore>, page: usize) -> Vec<sluice_log::Entry> {
    let mut out = Vec::new();
    loop {
        let from = out.len() as u64;
        let got = store.clone().read(from, page, usize::MAX).await.unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Checks that the appends cover 0..total densely, each exactly once, and returns them by
/// first sequence.
pub fn assert_dense(infos: &[(Vec<Bytes>, AppendInfo)]) -> BTreeMap<u64, (Vec<Bytes>, AppendInfo)> {
    let by_seq: BTreeMap<u64, _> = infos
        .iter()
        .map(|(p, i)| (i.first_seq, (p.clone(), *i)))
        .collect();
    assert_eq!(
        by_seq.len(),
        infos.len(),
        "two appends got the same first sequence"
    );
    let mut next = 0;
    let mut last_time = i64::MIN;
    for (first, (p, info)) in &by_seq {
        assert_eq!(*first, next, "gap or overlap before sequence {first}");
        assert_eq!(info.last_seq - info.first_seq + 1, p.len() as u64);
        assert!(
            info.system_time >= last_time,
            "time went backwards at {first}"
        );
        last_time = info.system_time;
        next = info.last_seq + 1;
    }
    by_seq
}
