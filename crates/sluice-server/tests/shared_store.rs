//! A topic's shard on a store reached through the `ShardStore` trait (the `Shared` arm of
//! `ShardStorage`, the seam of the cluster mode), driven end to end through the HTTP API: put,
//! cursors by SEQUENCE, SYSTEM_TIME, OLDEST and LATEST, and reads.

mod accounts_harness;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_log::store::ShardStore;
use sluice_log::{LogConfig, ShardLog};
use sluice_server::service::storage::ShardStorage;

use accounts_harness::*;

const SHARD: &str = "/projects/proj/topics/s/shards/0";

async fn put(h: &Harness, values: &[i64]) {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"Data": [v.to_string()], "ShardId": "0"}))
        .collect();
    let v = h
        .ok(
            &root(),
            "POST",
            "/projects/proj/topics/s/shards",
            json!({"Action": "pub", "Records": records}),
        )
        .await;
    assert_eq!(v["FailedRecordCount"], 0, "{v}");
}

async fn cursor(h: &Harness, body: Value) -> Value {
    h.ok(&root(), "POST", SHARD, body).await
}

/// `(sequence, system time, value)` of the records read from `cursor`.
async fn read(h: &Harness, cursor: &Value) -> Vec<(i64, i64, String)> {
    let r = h
        .ok(
            &root(),
            "POST",
            SHARD,
            json!({"Action": "sub", "Cursor": cursor, "Limit": 100}),
        )
        .await;
    r["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["Sequence"].as_i64().unwrap(),
                x["SystemTime"].as_i64().unwrap(),
                x["Data"][0].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_on_a_shard_store_serves_puts_cursors_and_reads_through_the_api() {
    let h = harness().await;
    h.ok(&root(), "POST", "/projects/proj", json!({"Comment": "c"}))
        .await;
    let schema = r#"{"fields":[{"name":"a","type":"bigint"}]}"#;
    h.ok(
        &root(),
        "POST",
        "/projects/proj/topics/s",
        json!({"ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE", "RecordSchema": schema, "Comment": ""}),
    )
    .await;

    // The shard's records go to a log elsewhere, reached only as an `Arc<dyn ShardStore>`.
    let elsewhere = tempfile::tempdir().unwrap();
    let log = Arc::new(ShardLog::open(elsewhere.path(), LogConfig::default()).unwrap());
    let store: Arc<dyn ShardStore> = log.clone();
    let topic = h.server.state.catalog.topic("proj", "s").unwrap();
    let old = topic
        .replace_shard_storage(0, ShardStorage::shared(store))
        .expect("shard 0 exists");
    let local = old
        .log
        .local()
        .expect("a new topic's shard has a local log")
        .clone();
    assert!(topic.shard(0).unwrap().log.local().is_none());

    put(&h, &[10, 11, 12]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    put(&h, &[13, 14]).await;

    // The records are in the store, none in the shard's own local log.
    assert_eq!(ShardLog::next_seq(&log), 5);
    assert_eq!(ShardLog::next_seq(&local), 0);

    let oldest = cursor(&h, json!({"Action": "cursor", "Type": "OLDEST"})).await;
    assert_eq!(oldest["Sequence"], 0);
    let all = read(&h, &oldest["Cursor"]).await;
    let values: Vec<&str> = all.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(values, ["10", "11", "12", "13", "14"]);
    assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let second_put_time = all[3].1;
    assert!(second_put_time > all[2].1, "{all:?}");

    let latest = cursor(&h, json!({"Action": "cursor", "Type": "LATEST"})).await;
    assert_eq!(
        (latest["Sequence"].clone(), latest["RecordTime"].clone()),
        (json!(4), json!(second_put_time))
    );

    let by_seq = cursor(
        &h,
        json!({"Action": "cursor", "Type": "SEQUENCE", "Sequence": 3}),
    )
    .await;
    assert_eq!(by_seq["RecordTime"], second_put_time);
    let tail: Vec<i64> = read(&h, &by_seq["Cursor"])
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(tail, [3, 4]);

    let by_time = cursor(
        &h,
        json!({"Action": "cursor", "Type": "SYSTEM_TIME", "SystemTime": second_put_time}),
    )
    .await;
    assert_eq!(by_time["Sequence"], 3);
    let tail: Vec<String> = read(&h, &by_time["Cursor"])
        .await
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(tail, ["13", "14"]);

    // Out of range by sequence, as on a local shard.
    let (status, v) = h
        .call(
            &root(),
            "POST",
            SHARD,
            json!({"Action": "cursor", "Type": "SEQUENCE", "Sequence": 9}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), v["ErrorCode"].as_str()),
        (400, Some("SeekOutOfRange")),
        "{v}"
    );

    ShardLog::close(&local).unwrap();
    h.server.shutdown().await;
    // Shutdown closed the store through the trait: it refuses appends.
    assert!(ShardLog::append(&log, &[b"x"], 0).is_err());
}
