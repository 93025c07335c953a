//! SINK_MYSQL while MariaDB goes away and comes back (its own test binary, so no other test
//! runs while the server is down).

mod common;

use common::{columns, db_ctl, env, records, s};
use serde_json::json;
use sluice_connect::sink::{ErrorKind, SinkError};
use sluice_connect::sinks::mysql;
use sluice_proto::{FieldType, Value};
use sqlx::mysql::MySqlPool;

#[tokio::test]
async fn a_stopped_server_is_transient_and_the_sink_reconnects() {
    let url = env("SLUICE_TEST_MYSQL_URL");
    let pool = MySqlPool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE IF EXISTS my_outage")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE my_outage (id BIGINT PRIMARY KEY, v TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let cfg = json!({
        "Host": env("SLUICE_TEST_MYSQL_HOST"), "Port": env("SLUICE_TEST_MYSQL_PORT"),
        "Database": env("SLUICE_TEST_MYSQL_DATABASE"), "User": env("SLUICE_TEST_MYSQL_USER"),
        "Password": env("SLUICE_TEST_MYSQL_PASSWORD"), "Table": "my_outage", "Ignore": "false",
    });
    let cols = columns(&[("id", FieldType::Bigint), ("v", FieldType::String)]);
    let mut sink = mysql::open(mysql::parse_config(&cfg).unwrap(), cols.clone())
        .await
        .unwrap();
    sink.write(&records(vec![vec![Value::Int(1), s("before")]]))
        .await
        .unwrap();
    sink.flush().await.unwrap();

    db_ctl("mysql", "stop");
    let outcome = async {
        sink.write(&records(vec![vec![Value::Int(2), s("during")]]))
            .await?;
        sink.flush().await
    }
    .await;
    // A sink opened while the server is down is transient too.
    let opened = mysql::open(mysql::parse_config(&cfg).unwrap(), cols)
        .await
        .err();
    db_ctl("mysql", "start");
    match outcome {
        Err(SinkError {
            kind: ErrorKind::Transient,
            message: msg,
            ..
        }) => assert!(msg.contains("mysql"), "{msg}"),
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

    // The runtime re-writes the failed batch; the pool reconnects by itself.
    sink.write(&records(vec![vec![Value::Int(2), s("during")]]))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let pool = MySqlPool::connect(&url).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM my_outage ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2]);
}
