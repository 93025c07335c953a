//! SINK_HOLOGRES against a real PostgreSQL (SLUICE_TEST_PG_* from scripts/services.sh).

mod common;

use common::{columns, env, records, s};
use serde_json::json;
use sluice_connect::sink::{ErrorKind, SharedColumns, Sink, SinkError};
use sluice_connect::sinks::postgres;
use sluice_proto::{FieldType, Value};
use sqlx::postgres::PgPool;
use sqlx::Row;

async fn admin() -> PgPool {
    let url = env("SLUICE_TEST_PG_URL");
    PgPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

fn config(table: &str) -> serde_json::Value {
    json!({
        "Endpoint": format!("{}:{}", env("SLUICE_TEST_PG_HOST"), env("SLUICE_TEST_PG_PORT")),
        "Project": env("SLUICE_TEST_PG_DATABASE"),
        "Topic": table,
        "InstanceId": "ignored",
        "AuthMode": "ak",
        "TimestampUnit": "MICROSECOND",
        "AccessId": env("SLUICE_TEST_PG_USER"),
        "AccessKey": env("SLUICE_TEST_PG_PASSWORD"),
    })
}

async fn open(cfg: serde_json::Value, cols: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    postgres::open(postgres::parse_config(&cfg).unwrap(), cols).await
}

async fn recreate(pool: &PgPool, table: &str, ddl: &str) {
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

async fn kv_rows(pool: &PgPool, table: &str) -> Vec<(i64, String)> {
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
        "pg_types",
        "id bigint PRIMARY KEY, i integer, sm smallint, ti smallint, d double precision, \
         f real, b boolean, ts timestamp(6), tz timestamptz, tn bigint, dt date, \
         str varchar(200), dec numeric(30,10), j jsonb",
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
        ("dec", FieldType::Decimal),
        ("j", FieldType::String),
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
        s(r#"{"a": [1, 2]}"#),
    ];
    let mut nulls = vec![Value::Int(1)];
    nulls.extend(vec![Value::Null; 13]);
    let mut sink = open(config("pg_types"), cols).await.unwrap();
    sink.write(&records(vec![full, nulls])).await.unwrap();
    sink.flush().await.unwrap();

    let rows = sqlx::query(
        "SELECT id, i, sm, ti, d, f, b, ts::text, (tz AT TIME ZONE 'UTC')::text, tn, dt::text, \
         str, dec::text, j::text FROM pg_types ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[1];
    assert_eq!(r.get::<i64, _>(0), i64::MAX);
    assert_eq!(r.get::<i32, _>(1), i32::MIN);
    assert_eq!(r.get::<i16, _>(2), i16::MAX);
    assert_eq!(r.get::<i16, _>(3), -128);
    assert_eq!(r.get::<f64, _>(4), 1.5e300);
    assert_eq!(r.get::<f32, _>(5), 3.25);
    assert!(r.get::<bool, _>(6));
    assert_eq!(r.get::<String, _>(7), "2023-11-14 22:13:20.123456");
    assert_eq!(r.get::<String, _>(8), "2023-11-14 22:13:20.123456");
    assert_eq!(r.get::<i64, _>(9), ts);
    assert_eq!(r.get::<String, _>(10), "2023-11-14");
    assert_eq!(r.get::<String, _>(11), "héllo 'quoted' \\ \"x\" 你好 🚀");
    assert_eq!(r.get::<String, _>(12), "-12345678901234567890.0123456789");
    assert_eq!(r.get::<String, _>(13), r#"{"a": [1, 2]}"#);
    let n = &rows[0];
    for i in 1..14 {
        assert!(
            n.try_get_raw(i)
                .map(|v| sqlx::ValueRef::is_null(&v))
                .unwrap(),
            "column {i}"
        );
    }
}

#[tokio::test]
async fn timestamp_unit_scales_into_timestamp_columns() {
    let pool = admin().await;
    recreate(
        &pool,
        "pg_units",
        "id bigint PRIMARY KEY, ts timestamp(3), raw bigint",
    )
    .await;
    let cols = columns(&[
        ("id", FieldType::Bigint),
        ("ts", FieldType::Timestamp),
        ("raw", FieldType::Timestamp),
    ]);
    let mut cfg = config("pg_units");
    cfg["TimestampUnit"] = json!("MILLISECOND");
    let mut sink = open(cfg, cols).await.unwrap();
    sink.write(&records(vec![vec![
        Value::Int(1),
        Value::Int(1_700_000_000_123),
        Value::Int(1_700_000_000_123),
    ]]))
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let row = sqlx::query("SELECT ts::text, raw FROM pg_units")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "2023-11-14 22:13:20.123");
    assert_eq!(row.get::<i64, _>(1), 1_700_000_000_123);
}

#[tokio::test]
async fn upsert_overwrites_and_ignore_mode_keeps_the_first() {
    let pool = admin().await;
    for (table, mode) in [
        ("pg_upsert", "INSERT_OR_UPDATE"),
        ("pg_ignore", "INSERT_OR_IGNORE"),
    ] {
        recreate(&pool, table, "id bigint PRIMARY KEY, v text NOT NULL").await;
        let mut cfg = config(table);
        cfg["WriteMode"] = json!(mode);
        let mut sink = open(cfg, kv_columns()).await.unwrap();
        sink.write(&records(vec![
            vec![Value::Int(1), s("first")],
            vec![Value::Int(2), s("two")],
        ]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
        // A later flush, and the same key twice inside one flush.
        sink.write(&records(vec![
            vec![Value::Int(1), s("second")],
            vec![Value::Int(3), s("a")],
            vec![Value::Int(3), s("b")],
        ]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
        let expect: Vec<(i64, String)> = if mode == "INSERT_OR_IGNORE" {
            vec![(1, "first".into()), (2, "two".into()), (3, "a".into())]
        } else {
            vec![(1, "second".into()), (2, "two".into()), (3, "b".into())]
        };
        assert_eq!(kv_rows(&pool, table).await, expect, "{mode}");
    }
    // Upsert is the default (pydatahub sends no WriteMode); a composite key works too.
    recreate(
        &pool,
        "pg_composite",
        "a bigint, b text, v text, PRIMARY KEY (a, b)",
    )
    .await;
    let cols = columns(&[
        ("a", FieldType::Bigint),
        ("b", FieldType::String),
        ("v", FieldType::String),
    ]);
    let mut sink = open(config("pg_composite"), cols).await.unwrap();
    for v in ["x", "y"] {
        sink.write(&records(vec![
            vec![Value::Int(1), s("k"), s(v)],
            vec![Value::Int(1), s("l"), s(v)],
        ]))
        .await
        .unwrap();
        sink.flush().await.unwrap();
    }
    let got: Vec<String> = sqlx::query_scalar("SELECT v FROM pg_composite ORDER BY b")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(got, vec!["y", "y"]);
}

#[tokio::test]
async fn many_rows_are_chunked_into_one_transaction() {
    let pool = admin().await;
    recreate(&pool, "pg_bulk", "id bigint PRIMARY KEY, v text NOT NULL").await;
    let mut sink = open(config("pg_bulk"), kv_columns()).await.unwrap();
    let big = "x".repeat(1500);
    let rows: Vec<Vec<Value>> = (0..12_000).map(|i| vec![Value::Int(i), s(&big)]).collect();
    sink.write(&records(rows)).await.unwrap();
    sink.flush().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_bulk")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 12_000);
}

#[tokio::test]
async fn bad_records_are_bad_and_the_rest_still_writes() {
    let pool = admin().await;
    recreate(
        &pool,
        "pg_bad",
        "id bigint PRIMARY KEY, v varchar(5) NOT NULL, n integer CHECK (n < 100), \
         dec numeric(5,2)",
    )
    .await;
    let cols = columns(&[
        ("id", FieldType::Bigint),
        ("v", FieldType::String),
        ("n", FieldType::Integer),
        ("dec", FieldType::Decimal),
    ]);
    let mut sink = open(config("pg_bad"), cols).await.unwrap();
    let bad_rows = [
        vec![Value::Int(10), Value::Null, Value::Int(1), Value::Null],
        vec![Value::Int(11), s("too long!"), Value::Int(1), Value::Null],
        vec![Value::Int(12), s("ok"), Value::Int(1000), Value::Null],
        vec![
            Value::Int(13),
            s("ok"),
            Value::Int(1),
            Value::Decimal("123456.5".into()),
        ],
        vec![Value::Int(14), s("ok"), Value::Int(i64::MAX), Value::Null],
    ];
    let good = || vec![Value::Int(1), s("fine"), Value::Int(1), Value::Null];
    for bad in bad_rows {
        sink.write(&records(vec![good(), bad.clone()]))
            .await
            .unwrap();
        match sink.flush().await {
            Err(SinkError {
                kind: ErrorKind::BadRecord,
                message: msg,
                ..
            }) => assert!(msg.contains("pg_bad"), "{msg}"),
            other => panic!("{bad:?}: expected BadRecord, got {other:?}"),
        }
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_bad")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    sink.write(&records(vec![vec![
        Value::Int(2),
        s("good"),
        Value::Int(5),
        Value::Decimal("1.25".into()),
    ]]))
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let got: Vec<i64> = sqlx::query_scalar("SELECT id FROM pg_bad")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(got, vec![2]);
}

#[tokio::test]
async fn configuration_problems_are_config_errors() {
    let pool = admin().await;
    let expect_config = |r: Result<Box<dyn Sink>, SinkError>, needle: &str| match r {
        Err(SinkError {
            kind: ErrorKind::Config,
            message: msg,
            ..
        }) => assert!(msg.contains(needle), "{msg}"),
        Err(e) => panic!("expected Config, got {e:?}"),
        Ok(_) => panic!("expected Config, got a sink"),
    };
    expect_config(
        open(config("pg_no_such_table"), kv_columns()).await,
        "does not exist",
    );
    recreate(&pool, "pg_cols", "id bigint PRIMARY KEY").await;
    expect_config(open(config("pg_cols"), kv_columns()).await, "no column v");
    let mut cfg = config("pg_cols");
    cfg["Project"] = json!("no_such_database");
    expect_config(open(cfg, kv_columns()).await, "no_such_database");
    let mut cfg = config("pg_cols");
    cfg["AccessId"] = json!("no_such_user");
    expect_config(open(cfg, kv_columns()).await, "no_such_user");

    recreate(&pool, "pg_dropped", "id bigint PRIMARY KEY, v text").await;
    let mut sink = open(config("pg_dropped"), kv_columns()).await.unwrap();
    sqlx::query("DROP TABLE pg_dropped")
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
        }) => assert!(msg.contains("42P01"), "{msg}"),
        other => panic!("expected Config, got {other:?}"),
    }
}

#[tokio::test]
async fn existing_keys_go_through_the_upsert_in_any_order_of_flushes() {
    // A flush whose keys are all new is COPYed straight into the table; one that meets an
    // existing key falls back to the staging table and ON CONFLICT, and the flushes after it
    // skip the straight COPY for a while. Every path must give the same rows.
    let pool = admin().await;
    recreate(&pool, "pg_paths", "id bigint PRIMARY KEY, v text NOT NULL").await;
    let mut sink = open(config("pg_paths"), kv_columns()).await.unwrap();
    let flushes: [&[(i64, &str)]; 6] = [
        &[(1, "a"), (2, "a")],
        &[(2, "b"), (3, "b"), (3, "b2")],
        &[(4, "c")],
        &[(5, "d"), (5, "d2")],
        &[(6, "e")],
        &[(1, "f"), (7, "g")],
    ];
    for rows in flushes {
        let rows = rows
            .iter()
            .map(|(k, v)| vec![Value::Int(*k), s(v)])
            .collect();
        sink.write(&records(rows)).await.unwrap();
        sink.flush().await.unwrap();
    }
    let expect: Vec<(i64, String)> = [
        (1, "f"),
        (2, "b"),
        (3, "b2"),
        (4, "c"),
        (5, "d2"),
        (6, "e"),
        (7, "g"),
    ]
    .iter()
    .map(|(k, v)| (*k, v.to_string()))
    .collect();
    assert_eq!(kv_rows(&pool, "pg_paths").await, expect);

    // A unique index other than the primary key refuses a row on either path.
    sqlx::query("CREATE UNIQUE INDEX pg_paths_v ON pg_paths (v)")
        .execute(&pool)
        .await
        .unwrap();
    for rows in [vec![(8, "c")], vec![(1, "g"), (9, "e")]] {
        let rows = rows
            .iter()
            .map(|(k, v)| vec![Value::Int(*k), s(v)])
            .collect();
        sink.write(&records(rows)).await.unwrap();
        match sink.flush().await {
            Err(SinkError {
                kind: ErrorKind::BadRecord,
                message: msg,
                ..
            }) => assert!(msg.contains("23505"), "{msg}"),
            other => panic!("expected BadRecord, got {other:?}"),
        }
    }
    assert_eq!(kv_rows(&pool, "pg_paths").await, expect);
}

#[tokio::test]
async fn timestamps_before_year_one_are_bad_records() {
    let pool = admin().await;
    recreate(&pool, "pg_early", "id bigint PRIMARY KEY, ts timestamptz").await;
    let cols = columns(&[("id", FieldType::Bigint), ("ts", FieldType::Timestamp)]);
    let mut sink = open(config("pg_early"), cols).await.unwrap();
    sink.write(&records(vec![
        vec![Value::Int(1), Value::Int(-62_135_596_800_000_000)],
        vec![Value::Int(2), Value::Int(-62_135_596_800_000_001)],
    ]))
    .await
    .unwrap();
    match sink.flush().await {
        Err(SinkError {
            kind: ErrorKind::BadRecord,
            message: msg,
            ..
        }) => assert!(msg.contains("sequence 1"), "{msg}"),
        other => panic!("expected BadRecord, got {other:?}"),
    }
    sink.write(&records(vec![vec![
        Value::Int(1),
        Value::Int(-62_135_596_800_000_000),
    ]]))
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let got: String = sqlx::query_scalar("SELECT (ts AT TIME ZONE 'UTC')::text FROM pg_early")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(got, "0001-01-01 00:00:00");
}
