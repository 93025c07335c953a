//! Issue 7, file descriptors: 2,000 shards work under an open-file limit of 512, because segment
//! files are held by a bounded, process-wide cache instead of one descriptor per shard.
//!
//! This file holds one test on purpose: it lowers the limit of the whole test process.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use sluice_proto::sign;
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "test-id";
const KEY: &str = "test-key";
const SHARDS: u32 = 2000;
const NOFILE: usize = 512;

async fn call(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let ct = "application/json";
    let headers = [("x-datahub-client-version", "1.1")];
    let canonical = sign::canonical_string("POST", ct, &date, &headers, path, None);
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", ct)
        .header("date", &date)
        .header("x-datahub-client-version", "1.1")
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(KEY, &canonical)),
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(server.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Lowers this process's open-file limit (soft and hard) with `prlimit`.
fn limit_open_files(n: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={n}:{n}"))
        .status()
        .expect("running prlimit (util-linux)");
    assert!(status.success(), "prlimit failed");
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        line.contains(&format!(" {n} ")),
        "limit not applied: {line}"
    );
}

async fn read_one(server: &Server, shard: u32) -> Vec<u8> {
    let path = format!("/projects/proj/topics/t/shards/{shard}");
    let (s, c) = call(server, &path, json!({"Action": "cursor", "Type": "OLDEST"})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, v) = call(
        server,
        &path,
        json!({"Action": "sub", "Cursor": c["Cursor"], "Limit": 10}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let records = v["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "shard {shard}: {v}");
    base64::engine::general_purpose::STANDARD
        .decode(records[0]["Data"].as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_shards_work_under_an_open_file_limit_of_512() {
    limit_open_files(NOFILE);
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_shards_per_topic: SHARDS,
        max_open_segment_files: 128,
        ..ServerConfig::default()
    };
    let server = Server::open(tmp.path(), config.clone(), Accounts::with_root(ID, KEY))
        .await
        .unwrap();
    let (s, v) = call(&server, "/projects/proj", json!({"Comment": "c"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &server,
        "/projects/proj/topics/t",
        json!({"ShardCount": SHARDS, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // One routed put with a record for every shard: 2,000 appends in flight at once.
    let data = |i: u32| base64::engine::general_purpose::STANDARD.encode(format!("to shard {i}"));
    let records: Vec<Value> = (0..SHARDS)
        .map(|i| json!({"Data": data(i), "ShardId": i.to_string()}))
        .collect();
    let (s, v) = call(
        &server,
        "/projects/proj/topics/t/shards",
        json!({"Action": "pub", "Records": records}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["FailedRecordCount"], 0, "{}", v["FailedRecords"][0]);
    for shard in [0, 1, 999, 1998, 1999] {
        assert_eq!(
            read_one(&server, shard).await,
            format!("to shard {shard}").as_bytes()
        );
    }
    assert!(open_fds() < NOFILE, "{} descriptors open", open_fds());
    // A restart opens all 2,000 logs again under the same limit.
    server.shutdown().await;
    let server = Server::open(tmp.path(), config, Accounts::with_root(ID, KEY))
        .await
        .unwrap();
    for shard in [0, 1234, 1999] {
        assert_eq!(
            read_one(&server, shard).await,
            format!("to shard {shard}").as_bytes()
        );
    }
    server.shutdown().await;
}
