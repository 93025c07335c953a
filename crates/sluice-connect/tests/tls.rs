//! TLS to the database targets (issue 9 item 2), against servers that REFUSE plaintext:
//! the TLS-only MariaDB (`require_secure_transport=ON`) and PostgreSQL (only `hostssl` lines)
//! that scripts/services.sh starts with a certificate signed by its test CA
//! (SLUICE_TEST_TLS_CA; SLUICE_TEST_TLS_OTHER_CA signed nothing).
//!
//! - prefer (the default): MySQL and Hologres sinks deliver to the TLS-only servers; against
//!   the plaintext servers they fall back and warn once per target, not per reconnect;
//! - require: verified against the CA file, rows arrive; with a CA that did not sign the
//!   server, or against a plaintext server, opening is a configuration error (the task hangs
//!   with that message) that says why.
//!
//! The TLS policy is process-wide, so the tests here take turns ([`SERIAL`]).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{columns, env, records, s};
use serde_json::json;
use sluice_connect::sink::{SharedColumns, Sink, SinkError};
use sluice_connect::sinks::tls::{self, ConnectorTls, TlsMode};
use sluice_connect::sinks::{mysql, postgres};
use sluice_proto::{FieldType, Value};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const LIMIT: Duration = Duration::from_secs(60);

fn policy(mode: TlsMode, ca_var: Option<&str>) -> ConnectorTls {
    let ca = ca_var.map(|v| std::path::PathBuf::from(env(v)));
    ConnectorTls::new(mode, ca.as_deref()).unwrap()
}

fn kv() -> SharedColumns {
    columns(&[("id", FieldType::Bigint), ("v", FieldType::String)])
}

fn rows(n: i64, tag: &str) -> Vec<sluice_connect::sink::SinkRecord> {
    records(
        (0..n)
            .map(|i| vec![Value::Int(i), s(&format!("{tag}-{i}"))])
            .collect(),
    )
}

/// An admin pool on the MySQL server at `port` (TLS when `tls`).
async fn mysql_admin(port: &str, tls: bool) -> sqlx::MySqlPool {
    let mode = if tls { "required" } else { "disabled" };
    let url = format!(
        "mysql://{}:{}@127.0.0.1:{port}/{}?ssl-mode={mode}",
        env("SLUICE_TEST_MYSQL_USER"),
        env("SLUICE_TEST_MYSQL_PASSWORD"),
        env("SLUICE_TEST_MYSQL_DATABASE")
    );
    sqlx::MySqlPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn pg_admin(port: &str, tls: bool) -> sqlx::PgPool {
    let mode = if tls { "require" } else { "disable" };
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{port}/{}?sslmode={mode}",
        env("SLUICE_TEST_PG_USER"),
        env("SLUICE_TEST_PG_PASSWORD"),
        env("SLUICE_TEST_PG_DATABASE")
    );
    sqlx::PgPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn mysql_table(port: &str, tls: bool, table: &str) -> sqlx::MySqlPool {
    let pool = mysql_admin(port, tls).await;
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, v VARCHAR(100))"
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn pg_table(port: &str, tls: bool, table: &str) -> sqlx::PgPool {
    let pool = pg_admin(port, tls).await;
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn open_mysql(port: &str, table: &str) -> Result<Box<dyn Sink>, SinkError> {
    let cfg = json!({
        "Host": "127.0.0.1",
        "Port": port,
        "Database": env("SLUICE_TEST_MYSQL_DATABASE"),
        "User": env("SLUICE_TEST_MYSQL_USER"),
        "Password": env("SLUICE_TEST_MYSQL_PASSWORD"),
        "Table": table,
        "Ignore": "false",
    });
    mysql::open(mysql::parse_config(&cfg).unwrap(), kv()).await
}

async fn open_pg(port: &str, table: &str) -> Result<Box<dyn Sink>, SinkError> {
    let cfg = json!({
        "Endpoint": format!("127.0.0.1:{port}"),
        "Project": env("SLUICE_TEST_PG_DATABASE"),
        "Topic": table,
        "InstanceId": "ignored",
        "AuthMode": "ak",
        "AccessId": env("SLUICE_TEST_PG_USER"),
        "AccessKey": env("SLUICE_TEST_PG_PASSWORD"),
    });
    postgres::open(postgres::parse_config(&cfg).unwrap(), kv()).await
}

async fn deliver(mut sink: Box<dyn Sink>, n: i64, tag: &str) {
    sink.write(&rows(n, tag)).await.unwrap();
    sink.flush().await.unwrap();
}

async fn mysql_count(pool: &sqlx::MySqlPool, table: &str, tag: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE v LIKE ?"))
        .bind(format!("{tag}-%"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn pg_count(pool: &sqlx::PgPool, table: &str, tag: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE v LIKE $1"))
        .bind(format!("{tag}-%"))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn config_message(r: Result<Box<dyn Sink>, SinkError>) -> String {
    match r {
        Err(e) if e.kind == sluice_connect::sink::ErrorKind::Config => e.message,
        Err(other) => panic!("want a configuration error, got {other:?}"),
        Ok(_) => panic!("want a configuration error, the sink opened"),
    }
}

#[tokio::test]
async fn the_tls_only_servers_refuse_plaintext() {
    // What the other tests rely on: these servers really refuse a plaintext client.
    let _turn = SERIAL.lock().await;
    let my = format!(
        "mysql://{}:{}@127.0.0.1:{}/{}?ssl-mode=disabled",
        env("SLUICE_TEST_MYSQL_USER"),
        env("SLUICE_TEST_MYSQL_PASSWORD"),
        env("SLUICE_TEST_MYSQL_TLS_PORT"),
        env("SLUICE_TEST_MYSQL_DATABASE")
    );
    use sqlx::Connection;
    let r = tokio::time::timeout(LIMIT, sqlx::MySqlConnection::connect(&my)).await;
    assert!(
        r.unwrap().is_err(),
        "the TLS-only MariaDB took a plaintext client"
    );
    let pg = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
        env("SLUICE_TEST_PG_USER"),
        env("SLUICE_TEST_PG_PASSWORD"),
        env("SLUICE_TEST_PG_TLS_PORT"),
        env("SLUICE_TEST_PG_DATABASE")
    );
    let r = tokio::time::timeout(LIMIT, sqlx::PgConnection::connect(&pg)).await;
    assert!(
        r.unwrap().is_err(),
        "the TLS-only PostgreSQL took a plaintext client"
    );
}

#[tokio::test]
async fn prefer_mode_delivers_to_servers_that_require_tls() {
    let _turn = SERIAL.lock().await;
    tls::install(policy(TlsMode::Prefer, None));
    tokio::time::timeout(LIMIT, async {
        let port = env("SLUICE_TEST_MYSQL_TLS_PORT");
        let admin = mysql_table(&port, true, "tls_prefer_my").await;
        deliver(open_mysql(&port, "tls_prefer_my").await.unwrap(), 50, "p").await;
        assert_eq!(mysql_count(&admin, "tls_prefer_my", "p").await, 50);

        let port = env("SLUICE_TEST_PG_TLS_PORT");
        let admin = pg_table(&port, true, "tls_prefer_pg").await;
        deliver(open_pg(&port, "tls_prefer_pg").await.unwrap(), 50, "p").await;
        assert_eq!(pg_count(&admin, "tls_prefer_pg", "p").await, 50);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn require_mode_verifies_against_the_ca_file() {
    let _turn = SERIAL.lock().await;
    tokio::time::timeout(LIMIT, async {
        let my_port = env("SLUICE_TEST_MYSQL_TLS_PORT");
        let pg_port = env("SLUICE_TEST_PG_TLS_PORT");
        let my_admin = mysql_table(&my_port, true, "tls_require_my").await;
        let pg_admin = pg_table(&pg_port, true, "tls_require_pg").await;

        // The CA that signed the servers: rows arrive.
        tls::install(policy(TlsMode::Require, Some("SLUICE_TEST_TLS_CA")));
        deliver(
            open_mysql(&my_port, "tls_require_my").await.unwrap(),
            20,
            "r",
        )
        .await;
        assert_eq!(mysql_count(&my_admin, "tls_require_my", "r").await, 20);
        deliver(open_pg(&pg_port, "tls_require_pg").await.unwrap(), 20, "r").await;
        assert_eq!(pg_count(&pg_admin, "tls_require_pg", "r").await, 20);

        // A CA that did not sign them: a configuration error naming the cause and the CA file.
        tls::install(policy(TlsMode::Require, Some("SLUICE_TEST_TLS_OTHER_CA")));
        let other = env("SLUICE_TEST_TLS_OTHER_CA");
        for msg in [
            config_message(open_mysql(&my_port, "tls_require_my").await),
            config_message(open_pg(&pg_port, "tls_require_pg").await),
        ] {
            assert!(msg.contains("TLS is required"), "{msg}");
            assert!(msg.contains("not trusted"), "{msg}");
            assert!(msg.contains(&other), "{msg}");
        }

        // A server without TLS: refused, never plaintext.
        tls::install(policy(TlsMode::Require, Some("SLUICE_TEST_TLS_CA")));
        let my_plain = env("SLUICE_TEST_MYSQL_PORT");
        let pg_plain = env("SLUICE_TEST_PG_PORT");
        mysql_table(&my_plain, false, "tls_require_plain").await;
        pg_table(&pg_plain, false, "tls_require_plain").await;
        for msg in [
            config_message(open_mysql(&my_plain, "tls_require_plain").await),
            config_message(open_pg(&pg_plain, "tls_require_plain").await),
        ] {
            assert!(msg.contains("TLS is required"), "{msg}");
            assert!(msg.contains("does not support TLS"), "{msg}");
        }
        // Without a CA file, the system roots do not hold the test CA either.
        tls::install(policy(TlsMode::Require, None));
        let msg = config_message(open_mysql(&my_port, "tls_require_my").await);
        assert!(msg.contains("connector_tls_ca_file is not set"), "{msg}");
    })
    .await
    .expect("timed out");
    tls::install(ConnectorTls::default());
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn plaintext_fallback_is_warned_once_per_target() {
    let _turn = SERIAL.lock().await;
    tls::install(policy(TlsMode::Prefer, None));
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread runtime: the subscriber sees everything the sinks do here.
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::time::timeout(LIMIT, async {
        let my_port = env("SLUICE_TEST_MYSQL_PORT");
        let pg_port = env("SLUICE_TEST_PG_PORT");
        let my_admin = mysql_table(&my_port, false, "tls_fallback").await;
        let pg_admin = pg_table(&pg_port, false, "tls_fallback").await;
        // Three opens (a sink restart reconnects), rows every time.
        for round in 0..3 {
            let tag = format!("f{round}");
            deliver(
                open_mysql(&my_port, "tls_fallback").await.unwrap(),
                10,
                &tag,
            )
            .await;
            assert_eq!(mysql_count(&my_admin, "tls_fallback", &tag).await, 10);
            deliver(open_pg(&pg_port, "tls_fallback").await.unwrap(), 10, &tag).await;
            assert_eq!(pg_count(&pg_admin, "tls_fallback", &tag).await, 10);
        }
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        for port in [&my_port, &pg_port] {
            let target = format!("connector target 127.0.0.1:{port} is used WITHOUT TLS");
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(&target)).collect();
            assert_eq!(lines.len(), 1, "want one warning for {port}, got:\n{text}");
            assert!(lines[0].contains("WARN"), "{}", lines[0]);
        }
    })
    .await
    .expect("timed out");
}
