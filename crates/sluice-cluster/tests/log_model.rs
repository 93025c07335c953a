//! Property: the local `ShardLog` and the PostgreSQL `PgShardStore`, driven through the
//! `ShardStore` trait with the same appends (the same payloads, and the local log given the
//! time PostgreSQL chose), give the same answers to every read, lookup and head query.

mod log_support;

use std::sync::Arc;

use bytes::Bytes;
use log_support::{connect, unique_key};
use proptest::prelude::*;
use sluice_cluster::log::PgLog;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::{FsyncMode, LogConfig, ShardLog};

#[derive(Clone, Debug)]
enum Op {
    /// Payload sizes of one put.
    Append(Vec<usize>),
    /// Read from (a fraction of next_seq, +0..3), max entries, max bytes.
    Read(f64, usize, usize, u64),
    /// Lookup at (the time of a fraction of the entries) + delta ms.
    Time(f64, i64),
    /// Sleep a few ms, so that appends get distinct times.
    Pause(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0usize..8, 1..6).prop_map(Op::Append),
        3 => (0.0..1.0f64, 0usize..12, prop_oneof![Just(usize::MAX), 0usize..30], 0u64..3)
            .prop_map(|(f, e, b, d)| Op::Read(f, e, b, d)),
        2 => (0.0..1.0f64, -2i64..3).prop_map(|(f, d)| Op::Time(f, d)),
        1 => (1u64..4).prop_map(Op::Pause),
    ]
}

fn payload(seq_hint: usize, size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (seq_hint * 31 + i) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// What each store answered, to compare.
fn outcome<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

async fn run(log: &PgLog, ops: Vec<Op>) {
    let key = unique_key("model");
    log.create_shard(&key, 0).await.unwrap();
    let pg = log.shard(&key).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncMode::Never,
        segment_bytes: 400,
        ..LogConfig::default()
    };
    let local = Arc::new(ShardLog::open(dir.path(), cfg).unwrap());
    let mut times: Vec<i64> = Vec::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(sizes) => {
                let p: Vec<Bytes> = sizes.iter().map(|s| payload(n, *s)).collect();
                let a = pg.clone().append(p.clone(), 0).await.unwrap();
                let b = local.clone().append(p, a.system_time).await.unwrap();
                assert_eq!(a, b, "append {n}");
                times.extend(std::iter::repeat_n(a.system_time, sizes.len()));
            }
            Op::Read(f, max_entries, max_bytes, d) => {
                let from = (times.len() as f64 * f) as u64 + d;
                let a = outcome(pg.clone().read(from, max_entries, max_bytes).await);
                let b = outcome(local.clone().read(from, max_entries, max_bytes).await);
                assert_eq!(a, b, "read({from}, {max_entries}, {max_bytes})");
            }
            Op::Time(f, d) => {
                let t = match times.get((times.len() as f64 * f) as usize) {
                    Some(t) => t + d,
                    None => d,
                };
                let a = outcome(pg.clone().seq_at_or_after_time(t).await);
                let b = outcome(local.clone().seq_at_or_after_time(t).await);
                assert_eq!(a, b, "seq_at_or_after_time({t})");
            }
            Op::Pause(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        }
        assert_eq!(
            outcome(pg.clone().next_seq().await),
            outcome(local.clone().next_seq().await)
        );
        assert_eq!(
            outcome(pg.clone().first_seq().await),
            outcome(local.clone().first_seq().await)
        );
        assert_eq!(*pg.watch().borrow(), *ShardStore::watch(&*local).borrow());
    }
    // Closing refuses appends in both.
    pg.clone().close().await.unwrap();
    local.clone().close().await.unwrap();
    let a = outcome(pg.clone().append(vec![payload(0, 1)], 0).await);
    let b = outcome(local.clone().append(vec![payload(0, 1)], 0).await);
    assert_eq!(a, b);
    assert_eq!(a, "error: shard is closed");
}

#[test]
fn local_and_postgres_stores_answer_alike() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = rt.block_on(connect());
    let started = std::time::Instant::now();
    proptest!(ProptestConfig { cases: 24, ..ProptestConfig::default() },
        |(ops in prop::collection::vec(op(), 1..40))| {
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(60), run(&log, ops))
                .await
                .expect("case timed out");
        });
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(300));
}

#[test]
fn the_local_store_maps_log_errors_to_store_errors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(ShardLog::open(dir.path(), LogConfig::default()).unwrap());
        assert!(matches!(
            local.clone().append(Vec::new(), 0).await,
            Err(StoreError::EmptyAppend)
        ));
        let info = local.clone().append(vec![payload(1, 3)], 5).await.unwrap();
        assert_eq!((info.first_seq, info.system_time), (0, 5));
        // The local log keeps the caller's time, clamped.
        let info = local.clone().append(vec![payload(2, 3)], 1).await.unwrap();
        assert_eq!((info.first_seq, info.system_time), (1, 5));
        assert_eq!(local.clone().seq_at_or_after_time(6).await.unwrap(), None);
        // Usable as a trait object, as the server will hold it.
        let as_dyn: Arc<dyn ShardStore> = local.clone();
        assert_eq!(as_dyn.clone().next_seq().await.unwrap(), 2);
        as_dyn.close().await.unwrap();
        assert!(matches!(
            local.clone().read(0, 1, 1).await,
            Err(StoreError::Closed)
        ));
    });
}
