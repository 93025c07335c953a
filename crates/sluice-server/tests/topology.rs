//! Splits and merges under routed puts (issue 7, finding 7a): puts routed by hash key and by
//! partition key keep succeeding while the topic's shards are split and merged over and over;
//! no record fails ("no active shard covers hash key", a closed shard), and every acknowledged
//! record is readable afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use sluice_proto::sign;
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "test-id";
const KEY: &str = "test-key";
const TOPIC: &str = "/projects/proj/topics/t";

async fn call(server: &Server, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let headers = [("x-datahub-client-version", "1.1")];
    let canonical = sign::canonical_string(method, "application/json", &date, &headers, path, None);
    let raw = if body.is_null() {
        vec![]
    } else {
        body.to_string().into_bytes()
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("date", &date)
        .header("x-datahub-client-version", "1.1")
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(KEY, &canonical)),
        )
        .body(Body::from(raw))
        .unwrap();
    let resp = app(server.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

/// Puts batches of records routed by hash key (even writers) or partition key (odd ones) until
/// `stop`; returns the ids that were acknowledged and every per-record failure.
async fn writer(
    server: Arc<Server>,
    n: usize,
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut acked = Vec::new();
    let mut batch = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..20).map(|i| format!("w{n}-{batch}-{i}")).collect();
        batch += 1;
        let records: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let data = b64.encode(id);
                if n.is_multiple_of(2) {
                    let key = format!("{:032X}", (batch as u128 * 7919 + i as u128) << 96);
                    json!({"Data": data, "HashKey": key})
                } else {
                    json!({"Data": data, "PartitionKey": format!("pk-{batch}-{i}")})
                }
            })
            .collect();
        let (s, v) = call(
            &server,
            "POST",
            &format!("{TOPIC}/shards"),
            json!({"Action": "pub", "Records": records}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let failed = v["FailedRecords"].as_array().unwrap();
        let failed_at: BTreeSet<u64> = failed
            .iter()
            .map(|f| f["Index"].as_u64().unwrap())
            .collect();
        for f in failed {
            failures.lock().unwrap().push(f.to_string());
        }
        for (i, id) in ids.into_iter().enumerate() {
            if !failed_at.contains(&(i as u64)) {
                acked.push(id);
            }
        }
    }
    acked
}

/// Active shards as (id, right neighbour) from list-shards.
async fn active_shards(server: &Server) -> Vec<(String, String)> {
    let (s, v) = call(server, "GET", &format!("{TOPIC}/shards"), Value::Null).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["Shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["State"] == "ACTIVE")
        .map(|s| {
            (
                s["ShardId"].as_str().unwrap().to_string(),
                s["RightShardId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every record id stored in the topic, over all shards.
async fn read_all(server: &Server) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (_, v) = call(server, "GET", &format!("{TOPIC}/shards"), Value::Null).await;
    let mut ids = Vec::new();
    for shard in v["Shards"].as_array().unwrap() {
        let path = format!("{TOPIC}/shards/{}", shard["ShardId"].as_str().unwrap());
        let (s, c) = call(
            server,
            "POST",
            &path,
            json!({"Action": "cursor", "Type": "OLDEST"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        let mut cursor = c["Cursor"].clone();
        loop {
            let (s, r) = call(
                server,
                "POST",
                &path,
                json!({"Action": "sub", "Cursor": cursor, "Limit": 1000}),
            )
            .await;
            if s != StatusCode::OK {
                // past the end of a closed shard
                assert_eq!(r["ErrorCode"], "InvalidShardOperation", "{r}");
                break;
            }
            let records = r["Records"].as_array().unwrap();
            if records.is_empty() {
                break;
            }
            for rec in records {
                let data = b64.decode(rec["Data"].as_str().unwrap()).unwrap();
                ids.push(String::from_utf8(data).unwrap());
            }
            cursor = r["NextCursor"].clone();
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routed_puts_never_fail_during_splits_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(
        Server::open(
            dir.path(),
            ServerConfig::default(),
            Accounts::with_root(ID, KEY),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        call(&server, "POST", "/projects/proj", json!({"Comment": "c"}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = call(
        &server,
        "POST",
        TOPIC,
        json!({"ShardCount": 2, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|n| tokio::spawn(writer(server.clone(), n, stop.clone(), failures.clone())))
        .collect();
    let changes = async {
        for _ in 0..15 {
            // split the first active shard, then merge the first active shard with its right
            // neighbour: the topic keeps changing shape while the writers put.
            let first = active_shards(&server).await[0].0.clone();
            let (s, v) = call(
                &server,
                "POST",
                &format!("{TOPIC}/shards"),
                json!({"Action": "split", "ShardId": first}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "split: {v}");
            let (a, right) = active_shards(&server)
                .await
                .into_iter()
                .find(|(_, r)| r != "4294967295")
                .expect("two adjacent active shards");
            let (s, v) = call(
                &server,
                "POST",
                &format!("{TOPIC}/shards"),
                json!({"Action": "merge", "ShardId": a, "AdjacentShardId": right}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "merge: {v}");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), changes)
        .await
        .expect("splits and merges finish in time");
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("writers stop in time")
                .unwrap(),
        );
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} routed records failed during splits and merges, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        acked.len() > 100,
        "the writers put records ({})",
        acked.len()
    );
    let stored = read_all(&server).await;
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), stored_set.len(), "no record is stored twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !stored_set.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged records missing: {missing:?}"
    );
}
