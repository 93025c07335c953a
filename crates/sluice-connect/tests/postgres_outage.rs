//! SINK_HOLOGRES while PostgreSQL goes away and comes back (its own test binary, so no other
//! test runs while the server is down).

mod common;

use common::{columns, db_ctl, env, records, s};
use serde_json::json;
use sluice_connect::sink::{ErrorKind, SinkError};
use sluice_connect::sinks::postgres;
use sluice_proto::{FieldType, Value};
use sqlx::postgres::PgPool;

#[tokio::test]
async fn a_stopped_server_is_transient_and_the_sink_reconnects() {
    let url = env("SLUICE_TEST_PG_URL");
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE IF EXISTS pg_outage")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE pg_outage (id bigint PRIMARY KEY, v text)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let cfg = json!({
        "Endpoint": format!("{}:{}", env("SLUICE_TEST_PG_HOST"), env("SLUICE_TEST_PG_PORT")),
        "Project": env("SLUICE_TEST_PG_DATABASE"), "Topic": "pg_outage", "InstanceId": "local",
        "AuthMode": "ak", "TimestampUnit": "MICROSECOND",
        "AccessId": env("SLUICE_TEST_PG_USER"), "AccessKey": env("SLUICE_TEST_PG_PASSWORD"),
    });
    let cols = columns(&[("id", FieldType::Bigint), ("v", FieldType::String)]);
    let mut sink = postgres::open(postgres::parse_config(&cfg).unwrap(), cols.clone())
        .await
        .unwrap();
    sink.write(&records(vec![vec![Value::Int(1), s("before")]]))
        .await
        .unwrap();
    sink.flush().await.unwrap();

    db_ctl("postgres", "stop");
    let outcome = async {
        sink.write(&records(vec![vec![Value::Int(2), s("during")]]))
            .await?;
        sink.flush().await
    }
    .await;
    let opened = postgres::open(postgres::parse_config(&cfg).unwrap(), cols)
        .await
        .err();
    db_ctl("postgres", "start");
    match outcome {
        Err(SinkError {
            kind: ErrorKind::Transient,
            message: msg,
            ..
        }) => assert!(msg.contains("postgres"), "{msg}"),
        other => panic!("expected Transient while the server is down, got {other:?}"),
    }
    assert!(
        matches!(
            opened,
            Some(SinkError {
                kind: ErrorKind::Transient,
                ..
            })
        ),
        "{opened:?}"
    );

    sink.write(&records(vec![vec![Value::Int(2), s("during")]]))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM pg_outage ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2]);
}
