//! Puts by shard in the cluster mode (issue 14) are served without the per-request catalog
//! query: the append checks the catalog version itself, and the node catches up and checks the
//! put again when another node changed the metadata. Node A here polls the catalog once an hour,
//! so only that check can tell it of node B's changes. Needs the PostgreSQL of
//! scripts/services.sh: absent, the tests fail.

mod accounts_harness;
mod cluster_harness;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::{json, Value};
use sluice_proto::{envelope, pb, sign};
use sluice_server::app;
use tower::ServiceExt;

use accounts_harness::*;
use cluster_harness::*;

/// A node that learns other nodes' catalog changes only when a request makes it look.
async fn node_behind(c: &Cluster, node_id: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut options = c.options(node_id);
    options.catalog_poll = Duration::from_secs(3600);
    let server = open_node(&options, dir.path()).await;
    Harness { dir, server }
}

/// Puts one tuple record with `fields` to shard 0 of `t` through `h` in the protobuf protocol
/// (a put by shard), signed with `key`; returns the status and the error code, if any.
async fn put_pb(h: &Harness, key: &Key, fields: &[&str]) -> (StatusCode, String) {
    let path = "/projects/proj/topics/t/shards/0";
    let request = pb::PutRecordsRequest {
        records: vec![pb::RecordEntry {
            data: pb::RecordData {
                data: fields
                    .iter()
                    .map(|f| pb::FieldData {
                        value: Some(f.as_bytes().to_vec()),
                    })
                    .collect(),
            },
            ..Default::default()
        }],
    };
    let ct = "application/x-protobuf";
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let headers = [
        ("x-datahub-client-version", "1.1"),
        ("x-datahub-request-action", "pub"),
    ];
    let canonical = sign::canonical_string("POST", ct, &date, &headers, path, None);
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", ct)
        .header("date", date)
        .header(
            "authorization",
            format!(
                "DATAHUB {}:{}",
                key.id,
                sign::signature(&key.secret, &canonical)
            ),
        );
    for (k, v) in headers {
        b = b.header(k, v);
    }
    let req = b
        .body(Body::from(envelope::wrap(&request.encode_to_vec())))
        .unwrap();
    let resp = app(h.server.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["ErrorCode"].as_str().map(String::from))
        .unwrap_or_default();
    (status, code)
}

/// The first field of every record of shard 0, read through `h`.
async fn stored(h: &Harness) -> Vec<String> {
    let oldest = cursor(h, "0", json!({"Type": "OLDEST"})).await;
    read_all(h, "0", &oldest["Cursor"])
        .await
        .into_iter()
        .map(|(_, _, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_on_a_node_behind_is_checked_against_the_schema_changed_elsewhere() {
    bounded(async {
        let c = Cluster::new().await;
        let b = c.node("b").await;
        create_topic(&b, 1).await;
        let a = node_behind(&c, "a").await;
        assert_eq!(put_pb(&a, &root(), &["1"]).await.0, StatusCode::OK);
        b.ok(
            &root(),
            "POST",
            "/projects/proj/topics/t",
            json!({"Action": "AppendField", "FieldName": "b", "FieldType": "BIGINT"}),
        )
        .await;
        // A still has the one-field schema: only the append's check can refuse this put.
        assert_eq!(
            put_pb(&a, &root(), &["2"]).await,
            (StatusCode::BAD_REQUEST, "MalformedRecord".to_string()),
            "a record of the old schema after a field was added on another node"
        );
        assert_eq!(put_pb(&a, &root(), &["3", "30"]).await.0, StatusCode::OK);
        assert_eq!(stored(&b).await, ["1", "3"], "exactly the accepted puts");
        b.ok(&root(), "DELETE", "/projects/proj/topics/t", Value::Null)
            .await;
        assert_eq!(
            put_pb(&a, &root(), &["4", "40"]).await,
            (StatusCode::NOT_FOUND, "NoSuchTopic".to_string()),
            "a put to a topic deleted on another node"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_created_or_deleted_on_another_node_counts_at_once_for_puts() {
    bounded(async {
        let c = Cluster::new().await;
        let b = c.node("b").await;
        create_topic(&b, 1).await;
        let a = node_behind(&c, "a").await;
        let producer = b.create_key("producer", &["write:proj/t"], json!({})).await;
        assert_eq!(
            put_pb(&a, &producer, &["1"]).await.0,
            StatusCode::OK,
            "a key created on another node"
        );
        b.ok(&root(), "DELETE", "/accounts/keys/producer", Value::Null)
            .await;
        let (status, code) = put_pb(&a, &producer, &["2"]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a key deleted on another node still put ({code})"
        );
        assert_eq!(stored(&b).await, ["1"], "exactly the accepted puts");
    })
    .await;
}
