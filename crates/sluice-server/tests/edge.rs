//! The HTTP edge through `oneshot` (no socket): body size limits, DataHub JSON for every error,
//! and record counts refused before decoding.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::{json, Value};
use sluice_proto::{envelope, pb, sign};
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ID: &str = "edge-id";
const KEY: &str = "edge-key";

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

fn now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

/// A signed request builder (pydatahub's way); the caller adds the body.
fn signed(
    method: &str,
    path: &str,
    ct: &str,
    extra: &[(&str, &str)],
) -> axum::http::request::Builder {
    let date = now();
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let canonical = sign::canonical_string(method, ct, &date, extra, p, q);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .header("date", date)
        .header(
            "authorization",
            format!("DATAHUB {ID}:{}", sign::signature(KEY, &canonical)),
        );
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = app(self.server.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "{status}: not a JSON body: {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(ct.as_deref(), Some("application/json"), "{status} {v}");
            assert!(
                v["RequestId"].as_str().is_some_and(|s| !s.is_empty()),
                "{v}"
            );
            assert!(
                v["ErrorMessage"].as_str().is_some_and(|s| !s.is_empty()),
                "{v}"
            );
        }
        (status, v)
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let req = signed(method, path, "application/json", &[])
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    async fn blob_topic(&self) {
        assert_eq!(
            self.json("POST", "/projects/proj", json!({"Comment": "c"}))
                .await
                .0,
            StatusCode::OK
        );
        let (s, v) = self
            .json(
                "POST",
                "/projects/proj/topics/t",
                json!({"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

fn code(v: &Value) -> &str {
    v["ErrorCode"].as_str().unwrap_or("")
}

#[tokio::test]
async fn too_large_bodies_are_invalid_parameter_naming_the_limit() {
    let config = ServerConfig {
        max_request_bytes: 4096,
        max_record_bytes: 1024,
        ..ServerConfig::default()
    };
    let h = harness(config).await;
    h.blob_topic().await;
    // A declared Content-Length over the limit is refused before the body is read: this body
    // never ends, and would hang the request if it were read.
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    let endless = Body::new(ChannelBody(rx));
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards",
        "application/json",
        &[],
    )
    .header("content-length", "5000")
    .body(endless)
    .unwrap();
    let (s, v) = tokio::time::timeout(std::time::Duration::from_secs(10), h.send(req))
        .await
        .expect("refused without reading the body");
    drop(tx);
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "InvalidParameter"));
    assert!(
        v["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes"),
        "{v}"
    );
    // A body without a length that runs past the limit: the same answer (not a retryable 429).
    let big = json!({"Action": "pub", "Records": [{"Data": "x".repeat(6000)}]}).to_string();
    let chunks: Vec<bytes::Bytes> = big
        .into_bytes()
        .chunks(1000)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(chunks.len());
    for c in chunks {
        tx.send(c).await.unwrap();
    }
    drop(tx);
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards",
        "application/json",
        &[],
    )
    .body(Body::new(ChannelBody(rx)))
    .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "InvalidParameter"),
        "{v}"
    );
    assert!(v["ErrorMessage"].as_str().unwrap().contains("4096"), "{v}");
}

/// A request body fed through a channel, chunk by chunk, with no declared length.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test]
async fn every_error_is_a_datahub_json_error() {
    let h = harness(ServerConfig::default()).await;
    h.blob_topic().await;
    let plain = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    };
    // 405 on a route without that method (the health check needs no signature).
    let (s, v) = h.send(plain("DELETE", "/health")).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "InvalidUriSpec")
    );
    let (s, v) = h
        .send(
            signed("PATCH", "/projects/proj", "application/json", &[])
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "InvalidUriSpec"),
        "{v}"
    );
    // An unknown route.
    let (s, v) = h
        .send(
            signed("GET", "/no/such/thing", "application/json", &[])
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "InvalidUriSpec"));
    // A path segment that is not UTF-8.
    let (s, v) = h
        .send(
            signed("GET", "/projects/%FF%FE", "application/json", &[])
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    assert_eq!(code(&v), "InvalidParameter", "{v}");
    // A URI past Sluice's limit (16 KiB; hyper's own is 64 KiB).
    let long = format!("/projects/{}", "a".repeat(20_000));
    let (s, v) = h.send(plain("GET", &long)).await;
    assert_eq!((s, code(&v)), (StatusCode::URI_TOO_LONG, "InvalidUriSpec"));
    // Too many header fields (Sluice: 128, hyper: 1024), and too many header bytes (Sluice:
    // 64 KiB, hyper: 1 MiB).
    let mut b = Request::builder().uri("/health");
    for i in 0..200 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let (s, v) = h.send(b.body(Body::empty()).unwrap()).await;
    assert_eq!(
        (s, code(&v)),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "InvalidParameter"
        )
    );
    let big = "v".repeat(70_000);
    let req = Request::builder()
        .uri("/health")
        .header("x-big", big)
        .body(Body::empty())
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{v}");
}

#[tokio::test]
async fn protobuf_put_counts_records_before_decoding() {
    let config = ServerConfig {
        max_records_per_put: 100,
        ..ServerConfig::default()
    };
    let h = harness(config).await;
    h.blob_topic().await;
    // 101 entries with no value at all (a BLOB record needs one): decoding first would answer
    // MalformedRecord for record 0; counting first answers with the limit.
    let message: Vec<u8> = [0x0a, 0x00].repeat(101);
    let extra = [("x-datahub-request-action", "pub")];
    for path in [
        "/projects/proj/topics/t/shards/0",
        "/projects/proj/topics/t/shards",
    ] {
        let req = signed("POST", path, "application/x-protobuf", &extra)
            .body(Body::from(envelope::wrap(&message)))
            .unwrap();
        let (s, v) = h.send(req).await;
        assert_eq!(code(&v), "LimitExceeded", "{path}: {s} {v}");
        assert!(
            v["ErrorMessage"].as_str().unwrap().contains("101 records"),
            "{v}"
        );
    }
    // The same for the batch protocol's entries.
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards/0",
        "application/x-binary",
        &extra,
    )
    .body(Body::from(envelope::wrap(&[0x0a, 0x00].repeat(101))))
    .unwrap();
    let (_, v) = h.send(req).await;
    assert_eq!(code(&v), "LimitExceeded", "{v}");
    // 100 good records still go in.
    let ok = pb::PutRecordsRequest {
        records: (0..100)
            .map(|i| pb::RecordEntry {
                data: pb::RecordData {
                    data: vec![pb::FieldData {
                        value: Some(format!("r{i}").into_bytes()),
                    }],
                },
                ..Default::default()
            })
            .collect(),
    };
    let req = signed(
        "POST",
        "/projects/proj/topics/t/shards/0",
        "application/x-protobuf",
        &extra,
    )
    .body(Body::from(envelope::wrap(&ok.encode_to_vec())))
    .unwrap();
    let resp = app(h.server.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_put_counts_records_while_decoding() {
    let config = ServerConfig {
        max_records_per_put: 100,
        ..ServerConfig::default()
    };
    let h = harness(config).await;
    h.blob_topic().await;
    // 100 records, then entries that are not records at all: past the limit they are only
    // counted, so the answer is the limit, not a parse error about the 101st entry.
    let mut records: Vec<Value> = (0..100).map(|_| json!({"Data": "eA=="})).collect();
    records.extend([json!(1), json!("two"), json!([3])]);
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": records}),
        )
        .await;
    assert_eq!(code(&v), "LimitExceeded", "{s} {v}");
    assert!(
        v["ErrorMessage"].as_str().unwrap().contains("103 records"),
        "{v}"
    );
    let records: Vec<Value> = (0..100).map(|_| json!({"Data": "eA=="})).collect();
    let (s, v) = h
        .json(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": records}),
        )
        .await;
    assert_eq!(
        (s, v["FailedRecordCount"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
}
