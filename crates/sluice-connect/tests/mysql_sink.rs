//! SINK_MYSQL against a real MariaDB (SLUICE_TEST_MYSQL_* from scripts/services.sh).

mod common;

use common::{columns, env, records, s};
use serde_json::json;
use sluice_connect::sink::{ErrorKind, SharedColumns, Sink, SinkError};
use sluice_connect::sinks::mysql;
use sluice_proto::{FieldType, Value};
use sqlx::mysql::MySqlPool;
use sqlx::Row;

async fn admin() -> MySqlPool {
    let url = env("SLUICE_TEST_MYSQL_URL");
    MySqlPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

fn config(table: &str, ignore: bool) -> serde_json::Value {
    json!({
        "Host": env("SLUICE_TEST_MYSQL_HOST"),
        "Port": env("SLUICE_TEST_MYSQL_PORT"),
        "Database": env("SLUICE_TEST_MYSQL_DATABASE"),
        "User": env("SLUICE_TEST_MYSQL_USER"),
        "Password": env("SLUICE_TEST_MYSQL_PASSWORD"),
        "Table": table,
        "Ignore": if ignore { "true" } else { "false" },
    })
}

async fn sink(table: &str, ignore: bool, cols: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    mysql::open(mysql::parse_config(&config(table, ignore)).unwrap(), cols).await
}

async fn recreate(pool: &MySqlPool, table: &str, ddl: &str) {
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE TABLE {table} ({ddl})"))
        .execute(pool)
        .await
        .unwrap();
}

fn kv_columns() -> SharedColumns {
    columns(&[("id", FieldType::Bigint), ("v", FieldType::String)])
}

async fn kv_rows(pool: &MySqlPool, table: &str) -> Vec<(i64, String)> {
    sqlx::query(&format!("SELECT id, v FROM {table} ORDER BY id"))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn every_field_type_round_trips() {
    let pool = admin().await;
    recreate(
        &pool,
        "my_types",
        "id BIGINT PRIMARY KEY, i INT, sm SMALLINT, ti TINYINT, d DOUBLE, f FLOAT, b BOOLEAN, \
         ts DATETIME(6), tz TIMESTAMP(6) NULL, tn BIGINT, dt DATE, str VARCHAR(200), \
         dec_ DECIMAL(30,10)",
    )
    .await;
    let cols = columns(&[
        ("id", FieldType::Bigint),
        ("i", FieldType::Integer),
        ("sm", FieldType::Smallint),
        ("ti", FieldType::Tinyint),
        ("d", FieldType::Double),
        ("f", FieldType::Float),
        ("b", FieldType::Boolean),
        ("ts", FieldType::Timestamp),
        ("tz", FieldType::Timestamp),
        ("tn", FieldType::Timestamp),
        ("dt", FieldType::Timestamp),
        ("str", FieldType::String),
        ("dec_", FieldType::Decimal),
    ]);
    let ts = 1_700_000_000_123_456;
    let full = vec![
        Value::Int(i64::MAX),
        Value::Int(i32::MIN as i64),
        Value::Int(i16::MAX as i64),
        Value::Int(-128),
        Value::Double(1.5e300),
        Value::Float(3.25),
        Value::Bool(true),
        Value::Int(ts),
        Value::Int(ts),
        Value::Int(ts),
        Value::Int(ts),
        s("héllo 'quoted' \\ \"x\" 你好 🚀"),
        Value::Decimal("-12345678901234567890.0123456789".into()),
    ];
    let mut nulls = vec![Value::Int(1)];
    nulls.extend(vec![Value::Null; 12]);
    let mut sink = sink("my_types", false, cols).await.unwrap();
    sink.write(&records(vec![full, nulls])).await.unwrap();
    sink.flush().await.unwrap();

    let rows = sqlx::query(
        "SELECT id, i, sm, ti, d, f, b, CAST(ts AS CHAR), CAST(tz AS CHAR), tn, CAST(dt AS CHAR), \
         str, CAST(dec_ AS CHAR) FROM my_types ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[1];
    assert_eq!(r.get::<i64, _>(0), i64::MAX);
    assert_eq!(r.get::<i32, _>(1), i32::MIN);
    assert_eq!(r.get::<i16, _>(2), i16::MAX);
    assert_eq!(r.get::<i8, _>(3), -128);
    assert_eq!(r.get::<f64, _>(4), 1.5e300);
    assert_eq!(r.get::<f32, _>(5), 3.25);
    assert!(r.get::<bool, _>(6));
    assert_eq!(r.get::<String, _>(7), "2023-11-14 22:13:20.123456");
    // The admin session's time zone is the server's (UTC here); compare as the instant.
    let tz_utc: String = sqlx::query_scalar(
        "SELECT CAST(CONVERT_TZ(tz, @@session.time_zone, '+00:00') AS CHAR) FROM my_types WHERE id = ?",
    )
    .bind(i64::MAX)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tz_utc, "2023-11-14 22:13:20.123456");
    assert_eq!(r.get::<i64, _>(9), ts);
    assert_eq!(r.get::<String, _>(10), "2023-11-14");
    assert_eq!(r.get::<String, _>(11), "héllo 'quoted' \\ \"x\" 你好 🚀");
    assert_eq!(r.get::<String, _>(12), "-12345678901234567890.0123456789");
    let n = &rows[0];
    assert_eq!(n.get::<i64, _>(0), 1);
    for i in 1..13 {
        assert!(
            n.try_get_raw(i)
                .map(|v| sqlx::ValueRef::is_null(&v))
                .unwrap(),
            "column {i}"
        );
    }
}

#[tokio::test]
async fn replace_overwrites_and_ignore_keeps_the_first() {
    let pool = admin().await;
    for (table, ignore) in [("my_replace", false), ("my_ignore", true)] {
        recreate(
            &pool,
            table,
            "id BIGINT PRIMARY KEY, v VARCHAR(20) NOT NULL",
        )
        .await;
        let mut sink = sink(table, ignore, kv_columns()).await.unwrap();
        sink.write(&records(vec![
            vec![Value::Int(1), s("first")],
            vec![Value::Int(2), s("two")],
        ]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
        // A later flush, and a duplicate inside one statement.
        sink.write(&records(vec![
            vec![Value::Int(1), s("second")],
            vec![Value::Int(3), s("a")],
            vec![Value::Int(3), s("b")],
        ]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
        let expect: Vec<(i64, String)> = if ignore {
            vec![(1, "first".into()), (2, "two".into()), (3, "a".into())]
        } else {
            vec![(1, "second".into()), (2, "two".into()), (3, "b".into())]
        };
        assert_eq!(kv_rows(&pool, table).await, expect, "ignore={ignore}");
    }
}

#[tokio::test]
async fn many_rows_are_chunked_into_one_transaction() {
    let pool = admin().await;
    recreate(
        &pool,
        "my_bulk",
        "id BIGINT PRIMARY KEY, v VARCHAR(2000) NOT NULL",
    )
    .await;
    let mut sink = sink("my_bulk", false, kv_columns()).await.unwrap();
    let big = "x".repeat(1500);
    let rows: Vec<Vec<Value>> = (0..12_000).map(|i| vec![Value::Int(i), s(&big)]).collect();
    sink.write(&records(rows)).await.unwrap();
    sink.flush().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM my_bulk")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 12_000);
}

#[tokio::test]
async fn bad_records_are_bad_and_the_rest_still_writes() {
    let pool = admin().await;
    for ignore in [false, true] {
        let table = format!("my_bad_{ignore}");
        recreate(
            &pool,
            &table,
            "id BIGINT PRIMARY KEY, v VARCHAR(5) NOT NULL, n INT, CONSTRAINT small CHECK (n < 100)",
        )
        .await;
        let cols = columns(&[
            ("id", FieldType::Bigint),
            ("v", FieldType::String),
            ("n", FieldType::Integer),
        ]);
        let mut sink = sink(&table, ignore, cols).await.unwrap();
        let bad_rows = [
            vec![Value::Int(10), Value::Null, Value::Int(1)],
            vec![Value::Int(11), s("too long!"), Value::Int(1)],
            vec![Value::Int(12), s("ok"), Value::Int(1000)],
            vec![Value::Int(13), s("ok"), Value::Str("nope".into())],
        ];
        for bad in bad_rows {
            sink.write(&records(vec![
                vec![Value::Int(1), s("fine"), Value::Int(1)],
                bad.clone(),
            ]))
            .await
            .unwrap();
            match sink.flush().await {
                Err(SinkError {
                    kind: ErrorKind::BadRecord,
                    message: msg,
                    ..
                }) => assert!(msg.contains("my_bad"), "{msg}"),
                other => panic!("ignore={ignore} {bad:?}: expected BadRecord, got {other:?}"),
            }
        }
        // Nothing of the failed flushes is committed; a separate write goes through.
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        sink.write(&records(vec![vec![
            Value::Int(2),
            s("good"),
            Value::Int(5),
        ]]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
        let got: Vec<i64> = sqlx::query_scalar(&format!("SELECT id FROM {table}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(got, vec![2]);
    }
}

#[tokio::test]
async fn configuration_problems_are_config_errors() {
    let pool = admin().await;
    match sink("my_no_such_table", false, kv_columns()).await {
        Err(SinkError {
            kind: ErrorKind::Config,
            message: msg,
            ..
        }) => assert!(msg.contains("my_no_such_table"), "{msg}"),
        Err(e) => panic!("expected Config, got {e:?}"),
        Ok(_) => panic!("expected Config, got a sink"),
    }
    recreate(&pool, "my_cols", "id BIGINT PRIMARY KEY").await;
    match sink("my_cols", false, kv_columns()).await {
        Err(SinkError {
            kind: ErrorKind::Config,
            message: msg,
            ..
        }) => assert!(msg.contains("no column v"), "{msg}"),
        Err(e) => panic!("expected Config, got {e:?}"),
        Ok(_) => panic!("expected Config, got a sink"),
    }
    let mut cfg = config("my_cols", false);
    cfg["Password"] = json!("wrong");
    match mysql::open(mysql::parse_config(&cfg).unwrap(), kv_columns()).await {
        Err(SinkError {
            kind: ErrorKind::Config,
            message: msg,
            ..
        }) => assert!(msg.contains("denied"), "{msg}"),
        Err(e) => panic!("expected Config, got {e:?}"),
        Ok(_) => panic!("expected Config, got a sink"),
    }
    // The table disappears under a running sink.
    recreate(&pool, "my_dropped", "id BIGINT PRIMARY KEY, v TEXT").await;
    let mut sink = sink("my_dropped", false, kv_columns()).await.unwrap();
    sqlx::query("DROP TABLE my_dropped")
        .execute(&pool)
        .await
        .unwrap();
    sink.write(&records(vec![vec![Value::Int(1), s("x")]]))
        .await
        .unwrap();
    match sink.flush().await {
        Err(SinkError {
            kind: ErrorKind::Config,
            message: msg,
            ..
        }) => assert!(msg.contains("1146"), "{msg}"),
        other => panic!("expected Config, got {other:?}"),
    }
}
