//! Issue 12, restart: shutdown closes every shard log (clean-shutdown marker), and start-up opens
//! them lazily: no shard is recovered until it is used, and a use recovers only its own shard.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use sluice_proto::sign;
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "test-id";
const KEY: &str = "test-key";
const SHARDS: u32 = 4;

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

/// Whether each shard's log has been recovered, and whether its directory has the marker.
fn shard_states(server: &Server) -> Vec<(bool, bool)> {
    let topic = server.state.catalog.topic("proj", "t").unwrap();
    let shards = topic.shards.read();
    shards
        .iter()
        .map(|s| {
            let log = s.log.local().expect("a local log");
            (log.is_recovered(), log.dir().join("CLEAN").exists())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_marks_logs_clean_and_start_up_recovers_them_on_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig::default();
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
    let records: Vec<Value> = (0..SHARDS)
        .map(|i| {
            let data = base64::engine::general_purpose::STANDARD.encode(format!("r{i}"));
            json!({"Data": data, "ShardId": i.to_string()})
        })
        .collect();
    let path = "/projects/proj/topics/t/shards";
    let (s, v) = call(&server, path, json!({"Action": "pub", "Records": records})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    server.shutdown().await;

    let server = Server::open(tmp.path(), config, Accounts::with_root(ID, KEY))
        .await
        .unwrap();
    assert_eq!(
        shard_states(&server),
        vec![(false, true); SHARDS as usize],
        "every log closed cleanly at shutdown and not recovered at start"
    );
    let (s, v) = call(
        &server,
        "/projects/proj/topics/t/shards/2",
        json!({"Action": "cursor", "Type": "LATEST"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Sequence"], 0);
    let states = shard_states(&server);
    assert_eq!(states[2], (true, false), "the used shard recovered");
    for i in [0, 1, 3] {
        assert_eq!(states[i], (false, true), "shard {i} untouched");
    }
    server.shutdown().await;
}
