//! Handler tests: the whole router driven through `oneshot`, without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::{json, Value};
use sluice_proto::{envelope, pb, sign};
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "test-id";
const KEY: &str = "test-key";

struct Harness {
    _dir: tempfile::TempDir,
    server: Server,
}

async fn harness(config: ServerConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), config, Accounts::with_root(ID, KEY))
        .await
        .unwrap();
    Harness { _dir: dir, server }
}

/// Builds a signed request the way pydatahub does.
fn signed(
    method: &str,
    path: &str,
    ct: &str,
    extra: &[(&str, &str)],
    key: &str,
    date: &str,
    body: Vec<u8>,
) -> Request<Body> {
    let mut headers: Vec<(&str, &str)> = vec![("x-datahub-client-version", "1.1")];
    headers.extend_from_slice(extra);
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let canonical = sign::canonical_string(method, ct, date, &headers, p, q);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .header("date", date)
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(key, &canonical)),
        );
    for (k, v) in &headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

fn now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = app(self.server.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-datahub-request-id"));
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let raw = if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        };
        let (status, bytes) = self
            .send(signed(
                method,
                path,
                "application/json",
                &[],
                KEY,
                &now(),
                raw,
            ))
            .await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn setup_topic(&self) {
        assert_eq!(
            self.json("POST", "/projects/proj", json!({"Comment": "c"}))
                .await
                .0,
            StatusCode::OK
        );
        let schema = r#"{"fields":[{"name":"a","type":"bigint","notnull":true},{"name":"b","type":"string"}]}"#;
        let (s, v) = self
            .json(
                "POST",
                "/projects/proj/topics/t",
                json!({"ShardCount": 2, "Lifecycle": 1, "RecordType": "TUPLE", "RecordSchema": schema, "Comment": ""}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

fn code(v: &Value) -> &str {
    v["ErrorCode"].as_str().unwrap_or("")
}

#[tokio::test]
async fn authentication_rejects_bad_signatures_and_dates() {
    let h = harness(ServerConfig::default()).await;
    let unsigned = Request::builder()
        .uri("/projects")
        .body(Body::empty())
        .unwrap();
    let (s, body) = h.send(unsigned).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        code(&serde_json::from_slice(&body).unwrap()),
        "Unauthorized"
    );

    let wrong = signed(
        "GET",
        "/projects",
        "application/json",
        &[],
        "other-key",
        &now(),
        vec![],
    );
    assert_eq!(h.send(wrong).await.0, StatusCode::UNAUTHORIZED);

    let old = "Thu, 01 Jan 2015 00:00:00 GMT";
    let expired = signed(
        "GET",
        "/projects",
        "application/json",
        &[],
        KEY,
        old,
        vec![],
    );
    let (s, body) = h.send(expired).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("server clock"));

    let ok = signed(
        "GET",
        "/projects",
        "application/json",
        &[],
        KEY,
        &now(),
        vec![],
    );
    assert_eq!(h.send(ok).await.0, StatusCode::OK);
    // The health check needs no signature.
    let health = Request::builder()
        .uri("/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(health).await.0, StatusCode::OK);
}

#[tokio::test]
async fn projects_lifecycle_and_errors() {
    let h = harness(ServerConfig::default()).await;
    assert_eq!(
        h.json("POST", "/projects/alpha", json!({"Comment": "first"}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = h
        .json("POST", "/projects/ALPHA", json!({"Comment": "dup"}))
        .await;
    assert_eq!((s.as_u16(), code(&v)), (409, "ProjectAlreadyExist"));
    let (_, v) = h.json("GET", "/projects/alpha", Value::Null).await;
    assert_eq!(v["Comment"], "first");
    assert!(v["CreateTime"].as_i64().unwrap() > 1_700_000_000);
    let (s, v) = h
        .json("POST", "/projects/1bad", json!({"Comment": ""}))
        .await;
    assert_eq!((s.as_u16(), code(&v)), (400, "InvalidParameter"));
    assert!(v["ErrorMessage"].as_str().unwrap().contains("1bad"));
    let (s, v) = h.json("GET", "/projects/nope", Value::Null).await;
    assert_eq!((s.as_u16(), code(&v)), (404, "NoSuchProject"));
    let (_, v) = h.json("GET", "/projects", Value::Null).await;
    assert_eq!(v["ProjectNames"], json!(["alpha"]));
    assert_eq!(
        h.json("DELETE", "/projects/alpha", Value::Null).await.0,
        StatusCode::OK
    );
    let (_, v) = h.json("GET", "/projects", Value::Null).await;
    assert_eq!(v["ProjectNames"], json!([]));
    let (s, v) = h.json("GET", "/nowhere", Value::Null).await;
    assert_eq!((s.as_u16(), code(&v)), (400, "InvalidUriSpec"));
}

#[tokio::test]
async fn json_put_reports_bad_records_individually_and_reads_back() {
    let h = harness(ServerConfig::default()).await;
    h.setup_topic().await;
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": [
                {"Data": ["1", "one"], "ShardId": "0", "Attributes": {"k": "v"}},
                {"Data": ["x", "bad bigint"], "ShardId": "0"},
                {"Data": ["2"], "ShardId": "0"},
                {"Data": [null, "null in not-null"], "ShardId": "0"},
                {"Data": ["3", null], "ShardId": "9"},
                {"Data": ["4", "\u{00e9}\u{4e2d}"], "PartitionKey": "pk"}
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["FailedRecordCount"], 4);
    let failed: Vec<(i64, &str)> = v["FailedRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["Index"].as_i64().unwrap(),
                f["ErrorCode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            (1, "MalformedRecord"),
            (2, "MalformedRecord"),
            (3, "MalformedRecord"),
            (4, "NoSuchShard")
        ]
    );
    let (_, c) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "cursor", "Type": "OLDEST"}),
        )
        .await;
    let (_, r) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "sub", "Cursor": c["Cursor"], "Limit": 10}),
        )
        .await;
    assert_eq!(r["Records"][0]["Data"], json!(["1", "one"]));
    assert_eq!(r["Records"][0]["Attributes"], json!({"k": "v"}));
    assert_eq!(r["Records"][0]["Sequence"], 0);
    assert_eq!(r["RecordCount"], r["Records"].as_array().unwrap().len());
}

#[tokio::test]
async fn bad_bodies_get_error_codes_and_the_server_keeps_working() {
    let h = harness(ServerConfig {
        max_records_per_put: 2,
        ..Default::default()
    })
    .await;
    h.setup_topic().await;
    // Not JSON.
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards/0",
        "application/json",
        &[],
        KEY,
        &now(),
        b"{garbage".to_vec(),
    );
    let (s, body) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        code(&serde_json::from_slice(&body).unwrap()),
        "InvalidParameter"
    );
    // Corrupt LZ4.
    let mut req = signed(
        "POST",
        "/projects/proj/topics/t/shards/0",
        "application/json",
        &[("x-datahub-content-raw-size", "100")],
        KEY,
        &now(),
        vec![0xff; 20],
    );
    req.headers_mut()
        .insert("content-encoding", "lz4".parse().unwrap());
    let (s, body) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("decompress"));
    // A protobuf frame with a bad CRC.
    let mut frame = envelope::wrap(
        &pb::GetRecordsRequest {
            cursor: "x".into(),
            limit: Some(1),
        }
        .encode_to_vec(),
    );
    frame[5] ^= 0xff;
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards/0",
        "application/x-protobuf",
        &[("x-datahub-request-action", "sub")],
        KEY,
        &now(),
        frame,
    );
    let (s, body) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        code(&serde_json::from_slice(&body).unwrap()),
        "MalformedRecord"
    );
    // A malformed cursor.
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "sub", "Cursor": "20000000000000000000000000000000", "Limit": 1}),
        )
        .await;
    assert_eq!((s.as_u16(), code(&v)), (400, "InvalidCursor"));
    // Too many records in one put.
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": [
            {"Data": ["1", "a"]}, {"Data": ["2", "b"]}, {"Data": ["3", "c"]}]}),
        )
        .await;
    assert_eq!((s.as_u16(), code(&v)), (429, "LimitExceeded"));
    // Still serving.
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": [{"Data": ["1", "a"]}]}),
        )
        .await;
    assert_eq!(
        (s, v["FailedRecordCount"].as_i64()),
        (StatusCode::OK, Some(0))
    );
}

#[tokio::test]
async fn lz4_compressed_protobuf_put_and_split_close_the_parent() {
    let h = harness(ServerConfig::default()).await;
    h.setup_topic().await;
    let entry = |a: &str| pb::RecordEntry {
        shard_id: None,
        hash_key: None,
        partition_key: None,
        cursor: None,
        next_cursor: None,
        sequence: None,
        system_time: None,
        attributes: None,
        data: pb::RecordData {
            data: vec![
                pb::FieldData {
                    value: Some(a.as_bytes().to_vec()),
                },
                pb::FieldData { value: None },
            ],
        },
    };
    let raw = envelope::wrap(
        &pb::PutRecordsRequest {
            records: vec![entry("7"), entry("8")],
        }
        .encode_to_vec(),
    );
    let size = raw.len().to_string();
    let mut req = signed(
        "POST",
        "/projects/proj/topics/t/shards/1",
        "application/x-protobuf",
        &[
            ("x-datahub-content-raw-size", &size),
            ("x-datahub-request-action", "pub"),
        ],
        KEY,
        &now(),
        lz4_flex::block::compress(&raw),
    );
    req.headers_mut()
        .insert("content-encoding", "lz4".parse().unwrap());
    assert_eq!(h.send(req).await.0, StatusCode::OK);

    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "split", "ShardId": "1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["NewShards"][0]["ShardId"], "2");
    let (_, list) = h
        .json("GET", "/projects/proj/topics/t/shards", Value::Null)
        .await;
    assert_eq!(list["Shards"][1]["State"], "CLOSED");
    assert_eq!(list["Shards"][2]["ParentShardIds"], json!(["1"]));
    // Writes to the closed parent fail; its data is still readable; reading past its end fails.
    let (_, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": [{"Data": ["1", "a"], "ShardId": "1"}]}),
        )
        .await;
    assert_eq!(v["FailedRecords"][0]["ErrorCode"], "InvalidShardOperation");
    let (_, c) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/1",
            json!({"Action": "cursor", "Type": "OLDEST"}),
        )
        .await;
    let (_, r) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/1",
            json!({"Action": "sub", "Cursor": c["Cursor"], "Limit": 10}),
        )
        .await;
    assert_eq!(r["Records"][1]["Data"], json!(["8", null]));
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards/1",
            json!({"Action": "sub", "Cursor": r["NextCursor"], "Limit": 10}),
        )
        .await;
    assert_eq!((s.as_u16(), code(&v)), (400, "InvalidShardOperation"));
}
