//! Issue 7, the shard log's side: batch puts are checked uncompressed, reads are bounded by what
//! they decode to, retention by age (through the clock seam), and disk-full episodes on /health.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use prost::Message;
use serde_json::{json, Value};
use sluice_proto::batch::{self, BatchCompression, TopicKind};
use sluice_proto::{envelope, pb, sign, Record, RecordData};
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "test-id";
const KEY: &str = "test-key";
const TOPIC: &str = "/projects/proj/topics/t";
const SHARD: &str = "/projects/proj/topics/t/shards/0";

struct Harness {
    server: Server,
}

async fn harness(dir: &std::path::Path, config: ServerConfig) -> Harness {
    let server = Server::open(dir, config, Accounts::with_root(ID, KEY))
        .await
        .unwrap();
    Harness { server }
}

fn signed(path: &str, ct: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Request<Body> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers: Vec<(&str, &str)> = vec![("x-datahub-client-version", "1.1")];
    headers.extend_from_slice(extra);
    let canonical = sign::canonical_string("POST", ct, &date, &headers, path, None);
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", ct)
        .header("date", date)
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(KEY, &canonical)),
        );
    for (k, v) in &headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = app(self.server.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn json(&self, path: &str, body: Value) -> (StatusCode, Value, usize) {
        let req = signed(path, "application/json", &[], body.to_string().into_bytes());
        let (status, bytes) = self.send(req).await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v, bytes.len())
    }

    async fn health(&self) -> Value {
        let req = Request::builder()
            .uri("/health")
            .body(Body::empty())
            .unwrap();
        let (status, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "liveness stays 200");
        serde_json::from_slice(&body).unwrap()
    }

    async fn blob_topic(&self, shards: u32) {
        let (s, v, _) = self.json("/projects/proj", json!({"Comment": "c"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v, _) = self
            .json(
                TOPIC,
                json!({"ShardCount": shards, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// Batch-protocol put of `batches` to shard 0.
    async fn put_batches(&self, batches: Vec<Vec<u8>>) -> (StatusCode, Value) {
        let req = pb::PutBinaryRecordsRequest {
            records: batches
                .into_iter()
                .map(|b| pb::BinaryRecordEntry {
                    data: Some(b.into()),
                    ..Default::default()
                })
                .collect(),
        };
        let raw = envelope::wrap(&req.encode_to_vec());
        let (s, body) = self
            .send(signed(
                SHARD,
                "application/x-binary",
                &[("x-datahub-request-action", "pub")],
                raw,
            ))
            .await;
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (s, v)
    }

    async fn oldest(&self) -> Value {
        let (s, v, _) = self
            .json(SHARD, json!({"Action": "cursor", "Type": "OLDEST"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["Cursor"].clone()
    }

    /// Batch-protocol read from `cursor`: the batches' records, the next cursor, and the
    /// uncompressed bytes of the batches returned.
    async fn read_binary(&self, cursor: &str) -> (Vec<Vec<u8>>, String, usize) {
        let req = pb::GetRecordsRequest {
            cursor: cursor.to_string(),
            limit: Some(1000),
        };
        let (s, body) = self
            .send(signed(
                SHARD,
                "application/x-binary",
                &[("x-datahub-request-action", "sub")],
                envelope::wrap(&req.encode_to_vec()),
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let resp = pb::GetBinaryRecordsResponse::decode(envelope::unwrap(&body).unwrap()).unwrap();
        let (mut records, mut raw) = (Vec::new(), 0);
        for e in resp.records {
            let data = e.data.unwrap();
            raw += batch::HEADER_SIZE + batch::parse_header(&data).unwrap().raw_size as usize;
            for (_, r) in batch::decode_batch(&data, TopicKind::Blob).unwrap() {
                match r.data {
                    RecordData::Blob(b) => records.push(b),
                    other => panic!("{other:?}"),
                }
            }
        }
        (records, resp.next_cursor, raw)
    }
}

fn blob_batch(payloads: &[Vec<u8>], compression: BatchCompression) -> Vec<u8> {
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| Record {
            data: RecordData::Blob(p.clone()),
            attributes: vec![],
        })
        .collect();
    batch::encode_batch(&records, None, -1, compression)
}

#[tokio::test]
async fn a_zlib_batch_expanding_past_the_limits_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path(), ServerConfig::default()).await;
    h.blob_topic(1).await;
    // The repro: one 60 MiB record inside a batch far smaller than the request limit
    // (61 KB at zlib's best level; a few hundred KB at the encoder's).
    let bomb = blob_batch(&[vec![0u8; 60 << 20]], BatchCompression::Zlib);
    assert!(bomb.len() < 512 << 10, "{} bytes compressed", bomb.len());
    let (s, v) = h.put_batches(vec![bomb]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["ErrorCode"], "InvalidParameter", "{v}");
    assert!(
        v["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes"),
        "{v}"
    );
    // Within the request limit but past the record limit (1 MiB + 4 KiB by default).
    let big_record = blob_batch(&[vec![1u8; 2 << 20]], BatchCompression::Zlib);
    let (s, v) = h.put_batches(vec![big_record]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["ErrorCode"], "InvalidParameter", "{v}");
    assert!(
        v["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("max_record_bytes"),
        "{v}"
    );
    // Several batches that each fit but together pass the request limit (8 MiB).
    let part = || blob_batch(&vec![vec![2u8; 1 << 20]; 3], BatchCompression::Zlib);
    let (s, v) = h.put_batches(vec![part(), part(), part()]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes"),
        "{v}"
    );
    // Nothing was stored; a batch within the limits is.
    let (s, v) = h.put_batches(vec![part(), part()]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (records, _, _) = h.read_binary(h.oldest().await.as_str().unwrap()).await;
    assert_eq!(records.len(), 6);
}

/// Four stored batches, each decoding to far more than one response may carry: JSON and batch
/// reads return bounded responses whose cursors continue, and paging reaches every record once.
#[tokio::test]
async fn reads_of_large_stored_batches_are_bounded_and_page_through_everything() {
    const MAX_READ: usize = 64 << 10;
    const PER_BATCH: usize = 60;
    const BATCHES: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_read_bytes: MAX_READ,
        ..ServerConfig::default()
    };
    let h = harness(tmp.path(), config).await;
    h.blob_topic(1).await;
    // 8 KiB records that compress well: 480 KiB per batch uncompressed, a few KiB stored.
    let payload = |n: usize| {
        let mut p = format!("record {n:04} ").into_bytes();
        p.resize(8 << 10, b'a' + (n % 26) as u8);
        p
    };
    for b in 0..BATCHES {
        let batch: Vec<Vec<u8>> = (0..PER_BATCH).map(|i| payload(b * PER_BATCH + i)).collect();
        let (s, v) = h
            .put_batches(vec![blob_batch(&batch, BatchCompression::Zlib)])
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let all: Vec<Vec<u8>> = (0..BATCHES * PER_BATCH).map(payload).collect();

    // JSON: each response is bounded by the limit (plus at most one record), and carries more
    // than one record.
    let mut cursor = h.oldest().await;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut responses = 0;
    loop {
        let (s, v, len) = h
            .json(
                SHARD,
                json!({"Action": "sub", "Cursor": cursor, "Limit": 1000}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let records = v["Records"].as_array().unwrap();
        if records.is_empty() {
            break;
        }
        responses += 1;
        assert!(
            len <= MAX_READ + (12 << 10),
            "a JSON read of {len} bytes, {} records",
            records.len()
        );
        assert!(records.len() > 1);
        for r in records {
            let b64 = r["Data"].as_str().unwrap();
            got.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            );
        }
        cursor = v["NextCursor"].clone();
        assert!(responses < 1000, "paging does not end");
    }
    assert!(
        got == all,
        "JSON paging returned {} of {} records, or out of order",
        got.len(),
        all.len()
    );
    assert!(responses >= all.len() * (8 << 10) / MAX_READ);

    // Protobuf: the same bound on the framed response.
    let mut cursor = h.oldest().await.as_str().unwrap().to_string();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut responses = 0;
    loop {
        let req = pb::GetRecordsRequest {
            cursor: cursor.clone(),
            limit: Some(1000),
        };
        let (s, body) = h
            .send(signed(
                SHARD,
                "application/x-protobuf",
                &[("x-datahub-request-action", "sub")],
                envelope::wrap(&req.encode_to_vec()),
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let resp = pb::GetRecordsResponse::decode(envelope::unwrap(&body).unwrap()).unwrap();
        if resp.records.is_empty() {
            break;
        }
        responses += 1;
        assert!(
            body.len() <= MAX_READ + (12 << 10),
            "a protobuf read of {} bytes",
            body.len()
        );
        for r in resp.records {
            got.push(r.data.data[0].value.clone().unwrap());
        }
        cursor = resp.next_cursor;
        assert!(responses < 1000, "paging does not end");
    }
    assert!(
        got == all,
        "protobuf paging returned {} of {} records, or out of order",
        got.len(),
        all.len()
    );

    // Batch protocol: the uncompressed batches of a response stay within the limit (a batch
    // larger than a response is served in parts, re-encoded).
    let mut cursor = h.oldest().await.as_str().unwrap().to_string();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut responses = 0;
    loop {
        let (records, next, raw) = h.read_binary(&cursor).await;
        if records.is_empty() {
            break;
        }
        responses += 1;
        assert!(
            raw <= MAX_READ + (12 << 10),
            "a batch read decoding to {raw} bytes"
        );
        got.extend(records);
        cursor = next;
        assert!(responses < 1000, "paging does not end");
    }
    assert!(
        got == all,
        "batch paging returned {} of {} records, or out of order",
        got.len(),
        all.len()
    );
}

/// Retention by age: a slow BLOB topic with a one-day lifecycle, driven by the server's clock.
#[tokio::test]
async fn old_records_of_a_slow_topic_expire_within_lifecycle_plus_segment_age() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig::default();
    let clock = config.clock.clone();
    let h = harness(tmp.path(), config).await;
    h.blob_topic(1).await;
    let put = |text: &str| {
        let data = base64::engine::general_purpose::STANDARD.encode(text);
        json!({"Action": "pub", "Records": [{"Data": data, "ShardId": "0"}]})
    };
    let (s, v, _) = h.json("/projects/proj/topics/t/shards", put("day 0")).await;
    assert_eq!(
        (s, &v["FailedRecordCount"]),
        (StatusCode::OK, &json!(0)),
        "{v}"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let (s, v, _) = h
        .json("/projects/proj/topics/t/shards", put("two hours later"))
        .await;
    assert_eq!(
        (s, &v["FailedRecordCount"]),
        (StatusCode::OK, &json!(0)),
        "{v}"
    );
    let retention =
        |h: &Harness| sluice_server::service::retention::enforce_once(&h.server.state.catalog);
    // A day and an hour after the first record it is gone; the later one stays.
    clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(retention(&h), 1);
    let (s, v, _) = h
        .json(
            SHARD,
            json!({"Action": "cursor", "Type": "SEQUENCE", "Sequence": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["ErrorCode"], "SeekOutOfRange", "{v}");
    let (s, v, _) = h
        .json(
            SHARD,
            json!({"Action": "sub", "Cursor": h.oldest().await, "Limit": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Records"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["Records"][0]["Sequence"], 1);
    let data = v["Records"][0]["Data"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        b"two hours later"
    );
    // Two more days: the idle shard's last record goes too.
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(retention(&h), 1);
    let (_, v, _) = h
        .json(
            SHARD,
            json!({"Action": "sub", "Cursor": h.oldest().await, "Limit": 10}),
        )
        .await;
    assert_eq!(v["Records"].as_array().unwrap().len(), 0, "{v}");
}

/// Unmounts a tmpfs (lazily, so a leftover descriptor cannot keep it) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount (this test needs root and mount)");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `path` with a file there; returns the bytes written.
fn fill(path: &std::path::Path) -> usize {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    written
}

#[tokio::test]
async fn disk_full_shows_on_health_until_a_write_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "8m");
    let h = harness(&mnt.join("data"), ServerConfig::default()).await;
    h.blob_topic(2).await;
    assert_eq!(h.health().await, json!({"status": "ok"}));
    let filler = mnt.join("filler");
    assert!(fill(&filler) > 1 << 20);
    // Routed puts of records larger than a page: each needs space the disk no longer has.
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 20 << 10]);
    let records: Vec<Value> = (0..10)
        .map(|i| json!({"Data": data, "ShardId": (i % 2).to_string()}))
        .collect();
    let put = json!({"Action": "pub", "Records": records});
    let (s, v, _) = h.json("/projects/proj/topics/t/shards", put.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["FailedRecordCount"], 10, "{v}");
    let health = h.health().await;
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reason"].as_str().unwrap();
    assert!(reason.contains("No space left"), "{health}");
    // Still degraded after more failures, with the same reason.
    h.json("/projects/proj/topics/t/shards", put.clone()).await;
    assert_eq!(h.health().await["reason"], reason);
    // Space freed, a put succeeds, and health is ok again.
    std::fs::remove_file(&filler).unwrap();
    let (s, v, _) = h.json("/projects/proj/topics/t/shards", put).await;
    assert_eq!(
        (s, &v["FailedRecordCount"]),
        (StatusCode::OK, &json!(0)),
        "{v}"
    );
    assert_eq!(h.health().await, json!({"status": "ok"}));
    h.server.shutdown().await;
}

#[test]
fn open_file_and_segment_age_keys_are_validated_by_name() {
    let ok =
        ServerConfig::from_toml("max_open_segment_files = 64\nsegment_max_age_secs = 600").unwrap();
    assert_eq!(ok.max_open_segment_files, 64);
    assert_eq!(
        ok.log_config().segment_max_age,
        Some(Duration::from_secs(600))
    );
    let default = ServerConfig::default();
    assert_eq!(default.max_open_segment_files, 1024);
    assert_eq!(default.segment_max_age_secs, 3600);
    for (text, field) in [
        ("max_open_segment_files = 2", "max_open_segment_files"),
        ("segment_max_age_secs = 0", "segment_max_age_secs"),
        ("segment_max_age_secs = 99999999", "segment_max_age_secs"),
    ] {
        assert_eq!(ServerConfig::from_toml(text).unwrap_err().field, field);
    }
    // The clock is a test seam, not a key.
    assert!(ServerConfig::from_toml("clock = 1").is_err());
}
