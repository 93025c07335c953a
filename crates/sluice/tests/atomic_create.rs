//! Half-done creates (issue 7, finding 2): when a topic's or a new shard's log cannot be made,
//! the create (or split) fails and leaves nothing behind: GET says there is no such topic, the
//! parent shard stays active, a retry works once the cause is gone, and a restart does not
//! bring back what failed. The log is made to fail with a regular file where its directory
//! must go.

mod common;

use std::time::Duration;

use common::{blob, Sluice};
use serde_json::{json, Value};

const P: &str = "/projects/atomic";

async fn create_topic(s: &Sluice, name: &str) -> (u16, Value) {
    s.call(
        "POST",
        &format!("{P}/topics/{name}"),
        json!({"ShardCount": 2, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    )
    .await
}

async fn put_one(s: &Sluice, topic: &str, shard: &str, id: &str) {
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/shards"),
            json!({"Action": "pub", "Records": [{"Data": blob(id), "ShardId": shard}]}),
        )
        .await;
    assert!(status == 200 && v["FailedRecordCount"] == 0, "{status} {v}");
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Sluice::start(&data).await;
    assert_eq!(s.call("POST", P, json!({"Comment": "c"})).await.0, 200);

    // 1. A topic whose logs cannot be made.
    let topics_dir = data.join("topics");
    if topics_dir.exists() {
        std::fs::remove_dir(&topics_dir).expect("no topic exists yet");
    }
    std::fs::write(&topics_dir, b"in the way").unwrap();
    let (status, v) = create_topic(&s, "t").await;
    assert!(status >= 500, "the create fails: {status} {v}");
    let (status, v) = s.call("GET", &format!("{P}/topics/t"), Value::Null).await;
    assert_eq!(
        (status, v["ErrorCode"].as_str()),
        (404, Some("NoSuchTopic")),
        "{v}"
    );
    std::fs::remove_file(&topics_dir).unwrap();
    s.kill();
    let mut s = Sluice::start(&data).await;
    let (status, v) = s.call("GET", &format!("{P}/topics/t"), Value::Null).await;
    assert_eq!(
        status, 404,
        "a restart brought back a topic whose create failed: {v}"
    );
    let (status, v) = create_topic(&s, "t").await;
    assert_eq!(status, 200, "the create works once the cause is gone: {v}");
    put_one(&s, "t", "0", "in-t").await;

    // 2. A split whose children's logs cannot be made.
    let topic_dir = std::fs::read_dir(data.join("topics"))
        .unwrap()
        .next()
        .expect("the topic's directory")
        .unwrap()
        .path();
    let child = topic_dir.join("2");
    std::fs::write(&child, b"in the way").unwrap();
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/t/shards"),
            json!({"Action": "split", "ShardId": "0"}),
        )
        .await;
    assert!(status >= 500, "the split fails: {status} {v}");
    let shards = s.shards(&format!("{P}/topics/t")).await;
    let before = vec![
        ("0".to_string(), "ACTIVE".to_string()),
        ("1".to_string(), "ACTIVE".to_string()),
    ];
    assert_eq!(shards, before, "a failed split changes nothing");
    put_one(&s, "t", "0", "still-open").await;
    std::fs::remove_file(&child).unwrap();
    s.kill();
    let s = Sluice::start(&data).await;
    assert_eq!(
        s.shards(&format!("{P}/topics/t")).await,
        before,
        "a restart brought back a split that failed"
    );
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/t/shards"),
            json!({"Action": "split", "ShardId": "0"}),
        )
        .await;
    assert_eq!(status, 200, "the split works once the cause is gone: {v}");
    put_one(&s, "t", "2", "in-child").await;
    let mut stored = s.read_topic(&format!("{P}/topics/t")).await;
    stored.sort();
    assert_eq!(stored, vec!["in-child", "in-t", "still-open"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_or_split_whose_logs_fail_leaves_nothing_behind() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the test finishes in time");
}
