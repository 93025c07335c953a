//! The cluster mode with `--archive` (issue 14): the archiver loop of the node holding a
//! shard's archive lease moves a closed shard's records into the archive (s3s-fs), and reads
//! on every node return the same records, by OLDEST, SEQUENCE and SYSTEM_TIME, before and
//! after. Needs the PostgreSQL and s3s-fs of scripts/services.sh: absent, the test fails.

mod accounts_harness;
mod cluster_harness;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_server::cluster::runtime::ClusterRuntime;

use accounts_harness::*;
use cluster_harness::*;

/// Every record of shard 0 read on `h`, and the cursors by SEQUENCE and SYSTEM_TIME of the
/// `k`-th record.
async fn view(
    h: &Harness,
    k: usize,
) -> (
    Vec<(i64, i64, String)>,
    serde_json::Value,
    serde_json::Value,
) {
    let oldest = cursor(h, "0", json!({"Type": "OLDEST"})).await;
    let all = read_all(h, "0", &oldest["Cursor"]).await;
    let by_seq = cursor(h, "0", json!({"Type": "SEQUENCE", "Sequence": k})).await;
    let from_seq = read_all(h, "0", &by_seq["Cursor"]).await;
    assert_eq!(from_seq, all[k..].to_vec());
    let by_time = cursor(
        h,
        "0",
        json!({"Type": "SYSTEM_TIME", "SystemTime": all[k].1}),
    )
    .await;
    (
        all,
        by_seq["RecordTime"].clone(),
        by_time["Sequence"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_shard_is_archived_and_reads_return_the_same_records() {
    bounded(async {
        let c = Cluster::with_archive().await;
        let (a, b) = (c.node("a").await, c.node("b").await);
        create_topic(&a, 1).await;
        for p in 0..10 {
            let values: Vec<i64> = (0..7).map(|i| p * 100 + i).collect();
            put(if p % 2 == 0 { &a } else { &b }, "0", &values).await;
        }
        let before = view(&a, 33).await;
        assert_eq!(before.0.len(), 70);
        assert_eq!(view(&b, 33).await, before);

        // A split closes shard 0: due for the archive at once.
        a.ok(
            &root(),
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "split", "ShardId": "0"}),
        )
        .await;
        let uid = a.server.state.catalog.topic("proj", "t").unwrap().uid;
        let key = ClusterRuntime::shard_key(uid, 0);
        let cluster = a.server.state.catalog.cluster.clone().unwrap();
        let archive = cluster.archive.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let segments = archive.segments(&key).await.unwrap();
            if segments.last().is_some_and(|s| s.last_seq == 69) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not archived in 30 s: {segments:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The rows left PostgreSQL: what is read now comes from the archive.
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM log_entry WHERE shard_key = $1")
            .bind(&key)
            .fetch_one(cluster.log.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0);
        assert_eq!(view(&a, 33).await, before);
        assert_eq!(view(&b, 33).await, before);
    })
    .await;
}
