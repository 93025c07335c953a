//! SINK_ES against a real osmem-server (SLUICE_TEST_ES_ENDPOINT from scripts/services.sh).
//! The fault cases osmem-server cannot produce (429 items, auth, TLS) are in
//! compat/test_connector_es.py, behind its fault-injecting front.

mod common;

use common::{columns, env, records, s};
use serde_json::{json, Value as Json};
use sluice_connect::sink::{ErrorKind, SharedColumns, Sink, SinkError};
use sluice_connect::sinks::es::{self, EsConfig};
use sluice_proto::{FieldType, Value};

fn endpoint() -> String {
    env("SLUICE_TEST_ES_ENDPOINT")
}

fn config(
    index: &str,
    endpoint: &str,
    id_fields: &[&str],
    type_fields: &[&str],
    proxy: bool,
) -> EsConfig {
    EsConfig::from_wire(&json!({
        "Index": index, "Endpoint": endpoint, "User": "", "Password": "",
        "IDFields": id_fields, "TypeFields": type_fields,
        "ProxyMode": if proxy { "true" } else { "false" },
    }))
    .unwrap()
}

fn kv() -> SharedColumns {
    columns(&[("id", FieldType::Bigint), ("note", FieldType::String)])
}

async fn new_index(mapping: Json) -> String {
    let index = format!(
        "rs_es_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 10_000_000_000
    );
    let resp = reqwest::Client::new()
        .put(format!("{}/{index}", endpoint()))
        .header("content-type", "application/json")
        .body(json!({"settings": {"number_of_shards": 1}, "mappings": mapping}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    index
}

/// Every document of `index` as (`_id`, `_source`), sorted by `_id`.
async fn docs(index: &str) -> Vec<(String, Json)> {
    let http = reqwest::Client::new();
    http.post(format!("{}/{index}/_refresh", endpoint()))
        .send()
        .await
        .unwrap();
    let body = http
        .post(format!("{}/{index}/_search", endpoint()))
        .header("content-type", "application/json")
        .body(json!({"size": 1000}).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: Json = serde_json::from_slice(&body).unwrap();
    let mut out: Vec<(String, Json)> = body["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn open(cfg: EsConfig, cols: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    es::open(cfg, cols).await
}

#[tokio::test]
async fn documents_arrive_and_redelivery_overwrites() {
    let index = new_index(json!({})).await;
    let mut sink = open(config(&index, &endpoint(), &["id"], &[], false), kv())
        .await
        .unwrap();
    let batch = records(vec![
        vec![Value::Int(1), s("one")],
        vec![Value::Int(2), s("two \"quoted\" ✓")],
        vec![Value::Int(3), Value::Null],
    ]);
    for _ in 0..2 {
        sink.write(&batch).await.unwrap();
        sink.flush().await.unwrap();
    }
    assert_eq!(
        docs(&index).await,
        vec![
            ("1".into(), json!({"id": 1, "note": "one"})),
            ("2".into(), json!({"id": 2, "note": "two \"quoted\" ✓"})),
            ("3".into(), json!({"id": 3, "note": null})),
        ]
    );
    // without IDFields: shard_sequence_index, the same on every delivery
    let index = new_index(json!({})).await;
    let mut sink = open(config(&index, &endpoint(), &[], &[], true), kv())
        .await
        .unwrap();
    for _ in 0..2 {
        sink.write(&batch).await.unwrap();
        sink.flush().await.unwrap();
    }
    let ids: Vec<String> = docs(&index).await.into_iter().map(|d| d.0).collect();
    assert_eq!(ids, vec!["0_0_0", "0_1_0", "0_2_0"]);
}

#[tokio::test]
async fn a_refused_document_is_a_bad_record_and_the_rest_is_written() {
    let index =
        new_index(json!({"properties": {"id": {"type": "long"}, "note": {"type": "long"}}})).await;
    let mut sink = open(config(&index, &endpoint(), &["id"], &[], true), kv())
        .await
        .unwrap();
    let batch = records(vec![
        vec![Value::Int(1), s("10")],
        vec![Value::Int(2), s("not a number")],
        vec![Value::Int(3), s("30")],
    ]);
    sink.write(&batch).await.unwrap();
    let e = sink.flush().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRecord, "{e}");
    assert!(e.message.contains("failed to parse field [note]"), "{e}");
    let ids: Vec<String> = docs(&index).await.into_iter().map(|d| d.0).collect();
    assert_eq!(ids, vec!["1", "3"]);
    // the buffer is empty after the failure: the next flush sends nothing of it
    sink.flush().await.unwrap();
    // the runtime narrows down to the record alone: it fails the same way
    sink.write(&batch[1..2]).await.unwrap();
    assert_eq!(sink.flush().await.unwrap_err().kind, ErrorKind::BadRecord);
}

#[tokio::test]
async fn unreachable_is_transient_and_type_fields_need_a_cluster_with_types() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    match open(config("i", &dead, &[], &[], true), kv()).await {
        Err(e) => assert_eq!(e.kind, ErrorKind::Transient, "{e}"),
        Ok(_) => panic!("opened against a closed port"),
    }
    match open(config("i", &endpoint(), &[], &["note"], true), kv()).await {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Config, "{e}");
            assert!(e.message.contains("TypeFields"), "{e}");
        }
        Ok(_) => panic!("TypeFields accepted by OpenSearch"),
    }
    match open(config("i", &endpoint(), &["nope"], &[], true), kv()).await {
        Err(e) => assert!(
            e.message.contains("IDFields") && e.message.contains("nope"),
            "{e}"
        ),
        Ok(_) => panic!("an unknown id field was accepted"),
    }
}
