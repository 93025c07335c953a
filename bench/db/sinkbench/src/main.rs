//! Sink throughput against a hand-written bulk baseline, into the same table in the same run.
//!
//! usage: sinkbench mysql|postgres [ROWS] [SHARDS] [BATCH] [overwrite]
//!
//! Reads the SLUICE_TEST_MYSQL_* / SLUICE_TEST_PG_* variables that scripts/services.sh exports.
//! Rows are ~100 bytes: (id BIGINT, ts TIMESTAMP → DATETIME(6)/timestamp, s ~80 chars).
//! - baseline: SHARDS connections, each writing its share with the best bulk method the bench
//!   knows (MySQL: 2,000-row multi-row INSERT literals, 50,000 rows per transaction;
//!   PostgreSQL: COPY FROM STDIN);
//! - sink: SHARDS sink instances (one per shard, as the connector runtime runs them), each
//!   called with `write(BATCH rows)` then `flush()`.
//!
//! With `overwrite`, the sink rounds start from a table that already holds every key (filled,
//! untimed, by the baseline method), so every row the sink writes replaces an existing one: the
//! re-delivery / update case. The baseline rounds still start empty.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_connect::sink::{Columns, SinkData, SinkRecord};
use sluice_connect::sinks::{mysql, postgres};
use sluice_proto::{FieldType, Value};

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (start scripts/services.sh)"))
}

const TS0: i64 = 1_700_000_000_000_000;

fn text_of(i: i64) -> String {
    format!("row-{i:012}-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789")
}

fn datetime(us: i64) -> String {
    // Good enough for the bench's 2023 timestamps (UTC).
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn shard_ids(rows: i64, shards: i64, shard: i64) -> impl Iterator<Item = i64> {
    (0..rows).filter(move |i| i % shards == shard)
}

/// Runs a future on its own thread and current-thread runtime (no `Send` bound needed).
fn on_thread<M, F>(make: M) -> tokio::task::JoinHandle<Result<()>>
where
    M: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<()>>,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(make())
    })
}

async fn mysql_baseline(url: &str, rows: i64, shards: i64) -> Result<()> {
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let url = url.to_string();
        tasks.push(on_thread(move || async move {
            let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url).await?;
            let ids: Vec<i64> = shard_ids(rows, shards, shard).collect();
            for tx_rows in ids.chunks(50_000) {
                let mut tx = sqlx::Connection::begin(&mut conn).await?;
                for stmt in tx_rows.chunks(2_000) {
                    let mut sql = String::with_capacity(stmt.len() * 130);
                    sql.push_str("INSERT INTO bench_rows (id, ts, s) VALUES ");
                    for (k, i) in stmt.iter().enumerate() {
                        if k > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("({i},'{}','{}')", datetime(TS0 + i), text_of(*i)));
                    }
                    sqlx::raw_sql(&sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn pg_baseline(url: &str, rows: i64, shards: i64) -> Result<()> {
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let url = url.to_string();
        tasks.push(on_thread(move || async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
            let ids: Vec<i64> = shard_ids(rows, shards, shard).collect();
            for part in ids.chunks(50_000) {
                let mut copy = conn
                    .copy_in_raw("COPY bench_rows (id, ts, s) FROM STDIN")
                    .await?;
                let mut buf = String::with_capacity(part.len() * 120);
                for i in part {
                    buf.push_str(&format!("{i}\t{}\t{}\n", datetime(TS0 + i), text_of(*i)));
                }
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn via_sink(kind: &str, rows: i64, shards: i64, batch: usize) -> Result<()> {
    let columns = Arc::new(Columns {
        names: vec!["id".into(), "ts".into(), "s".into()],
        types: vec![FieldType::Bigint, FieldType::Timestamp, FieldType::String],
    });
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let columns = columns.clone();
        let kind = kind.to_string();
        tasks.push(tokio::spawn(async move {
            let mut sink = if kind == "mysql" {
                let cfg = json!({"Host": env("SLUICE_TEST_MYSQL_HOST")?,
                    "Port": env("SLUICE_TEST_MYSQL_PORT")?, "Database": env("SLUICE_TEST_MYSQL_DATABASE")?,
                    "User": env("SLUICE_TEST_MYSQL_USER")?, "Password": env("SLUICE_TEST_MYSQL_PASSWORD")?,
                    "Table": "bench_rows", "Ignore": "false"});
                mysql::open(mysql::parse_config(&cfg).map_err(anyhow::Error::msg)?, columns).await?
            } else {
                let cfg = json!({"Endpoint": format!("{}:{}", env("SLUICE_TEST_PG_HOST")?, env("SLUICE_TEST_PG_PORT")?),
                    "Project": env("SLUICE_TEST_PG_DATABASE")?, "Topic": "bench_rows", "InstanceId": "local",
                    "AuthMode": "ak", "TimestampUnit": "MICROSECOND",
                    "AccessId": env("SLUICE_TEST_PG_USER")?, "AccessKey": env("SLUICE_TEST_PG_PASSWORD")?});
                postgres::open(postgres::parse_config(&cfg).map_err(anyhow::Error::msg)?, columns).await?
            };
            let ids: Vec<i64> = shard_ids(rows, shards, shard).collect();
            for part in ids.chunks(batch) {
                let records: Vec<SinkRecord> = part
                    .iter()
                    .map(|&i| SinkRecord {
                        shard_id: shard as u32,
                        sequence: i as u64,
                        batch_index: 0,
                        system_time: 0,
                        data: SinkData::Tuple(vec![
                            Value::Int(i),
                            Value::Int(TS0 + i),
                            Value::Str(text_of(i)),
                        ]),
                        attributes: Vec::new(),
                    })
                    .collect();
                sink.write(&records).await?;
                sink.flush().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn reset_table(kind: &str, url: &str) -> Result<()> {
    if kind == "mysql" {
        let pool = sqlx::MySqlPool::connect(url).await?;
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, \
             ts DATETIME(6) NOT NULL, s VARCHAR(100) NOT NULL) ENGINE=InnoDB",
        )
        .execute(&pool)
        .await?;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id bigint PRIMARY KEY, \
             ts timestamp(6) NOT NULL, s varchar(100) NOT NULL); CHECKPOINT",
        )
        .execute(&pool)
        .await?;
    }
    Ok(())
}

async fn count(kind: &str, url: &str) -> Result<i64> {
    Ok(if kind == "mysql" {
        let pool = sqlx::MySqlPool::connect(url).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM bench_rows").fetch_one(&pool).await?
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM bench_rows").fetch_one(&pool).await?
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("");
    if kind != "mysql" && kind != "postgres" {
        bail!("usage: sinkbench mysql|postgres [ROWS] [SHARDS] [BATCH] [overwrite]");
    }
    let rows: i64 = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let shards: i64 = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let batch: usize = args.get(4).map_or(Ok(5_000), |s| s.parse())?;
    let overwrite = args.get(5).map(String::as_str) == Some("overwrite");
    let url = env(if kind == "mysql" { "SLUICE_TEST_MYSQL_URL" } else { "SLUICE_TEST_PG_URL" })?;
    let mut results = Vec::new();
    // Alternate so neither side always runs on a warmer server.
    for (round, method) in ["baseline", "sink", "baseline", "sink"].iter().enumerate() {
        reset_table(kind, &url).await?;
        if overwrite && *method == "sink" {
            if kind == "mysql" {
                mysql_baseline(&url, rows, shards).await?;
            } else {
                pg_baseline(&url, rows, shards).await?;
            }
        }
        let started = Instant::now();
        match *method {
            "baseline" if kind == "mysql" => mysql_baseline(&url, rows, shards).await?,
            "baseline" => pg_baseline(&url, rows, shards).await?,
            _ => via_sink(kind, rows, shards, batch).await?,
        }
        let secs = started.elapsed().as_secs_f64();
        let n = count(kind, &url).await?;
        if n != rows {
            bail!("{method}: {n} rows in the table, expected {rows}");
        }
        let rate = rows as f64 / secs;
        let what = if overwrite && *method == "sink" { "sink (overwrite)" } else { method };
        println!("{kind} round {round} {what:16} {rows} rows {shards} shards: {secs:.2} s, {rate:.0} rows/s");
        results.push((*method, rate));
    }
    let best = |m: &str| {
        results
            .iter()
            .filter(|(k, _)| *k == m)
            .map(|(_, r)| *r)
            .fold(0.0, f64::max)
    };
    let (b, s) = (best("baseline"), best("sink"));
    println!(
        "{kind} best: baseline {b:.0} rows/s, sink {s:.0} rows/s, sink/baseline {:.0}%",
        100.0 * s / b
    );
    Ok(())
}
