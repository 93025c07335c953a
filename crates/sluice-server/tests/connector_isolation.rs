//! Isolation between connectors (issue 9 item 3), against the real MariaDB started by
//! `scripts/services.sh`: a SINK_MYSQL connector whose flush hangs, because the test holds
//! `LOCK TABLES ... WRITE` from another connection, never makes the API wait for it.
//!
//! - reads (list, get, shard status, done time) of a connector on ANOTHER topic answer within
//!   100 ms while the stuck connectors are being deleted and stopped, and so do reads of the
//!   stuck connector itself;
//! - the delete completes within the stop grace (`connector_stop_grace_ms`);
//! - a connector stopped mid-flush and restarted after the unlock loses nothing;
//! - shutdown stops N stuck connectors in about one grace, not N.
//!
//! A missing MariaDB is a failure, not a skip.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{Record, RecordData, Value};
use sluice_server::service::connectors::NewConnector;
use sluice_server::service::topics::NewTopic;
use sluice_server::{Accounts, Server, ServerConfig};
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::Connection;

const GRACE_MS: u64 = 1_000;
/// What an API read may take while other connectors are stuck.
const READ_BUDGET: Duration = Duration::from_millis(100);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the real MariaDB. Run it through scripts/test.sh, \
             or `source scripts/services.sh && services_start` first."
        )
    })
}

async fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        connector_stop_grace_ms: GRACE_MS,
        connector_batch_age_ms: 20,
        ..ServerConfig::default()
    };
    let server = Server::open(dir.path(), config, Accounts::with_root("id", "key"))
        .await
        .unwrap();
    (dir, server)
}

async fn make_tables(pool: &MySqlPool, tables: &[String]) {
    for t in tables {
        sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, v TEXT)"))
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn count(pool: &MySqlPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Statements (other than the asking one) that mention `table` and are still running.
async fn running_statements(pool: &MySqlPool, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND INFO LIKE CONCAT('%', ?, '%')",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Hub {
    _dir: tempfile::TempDir,
    server: Server,
    project: String,
}

impl Hub {
    async fn new(project: &str) -> Hub {
        let (dir, server) = server().await;
        server
            .state
            .catalog
            .create_project(project, "isolation")
            .await
            .unwrap();
        Hub {
            _dir: dir,
            server,
            project: project.to_string(),
        }
    }

    fn catalog(&self) -> &sluice_server::service::Catalog {
        &self.server.state.catalog
    }

    async fn topic(&self, name: &str) {
        let schema = r#"{"fields":[{"name":"id","type":"BIGINT"},{"name":"v","type":"STRING"}]}"#;
        self.catalog()
            .create_topic(
                &self.project,
                name,
                NewTopic {
                    shard_count: 1,
                    lifecycle_days: 1,
                    record_type: "TUPLE".into(),
                    schema: Some(schema.into()),
                    comment: "isolation".into(),
                    expand_mode: None,
                },
            )
            .await
            .unwrap();
    }

    async fn mysql_connector(&self, topic: &str, table: &str) -> String {
        let config = json!({
            "Host": env("SLUICE_TEST_MYSQL_HOST"), "Port": env("SLUICE_TEST_MYSQL_PORT"),
            "Database": env("SLUICE_TEST_MYSQL_DATABASE"), "User": env("SLUICE_TEST_MYSQL_USER"),
            "Password": env("SLUICE_TEST_MYSQL_PASSWORD"), "Table": table, "Ignore": "false",
        });
        self.catalog()
            .create_connector(
                &self.project,
                topic,
                NewConnector {
                    kind: "sink_mysql".into(),
                    column_fields: vec!["id".into(), "v".into()],
                    config,
                    start_time: -1,
                    creator: "test".into(),
                },
            )
            .await
            .unwrap()
    }

    async fn put(&self, topic: &str, ids: std::ops::Range<i64>) {
        let records = ids
            .map(|i| Record {
                data: RecordData::Tuple(vec![Value::Int(i), Value::Str(format!("row {i}"))]),
                attributes: Vec::new(),
            })
            .collect();
        let topic = self.catalog().topic(&self.project, topic).unwrap();
        self.catalog()
            .put_to_shard(&topic, "0", records)
            .await
            .unwrap();
    }

    /// Every read the API offers on one connector, each within [`READ_BUDGET`].
    async fn reads_are_quick(&self, topic: &str, id: &str) {
        let c = self.catalog();
        let p = self.project.as_str();
        let began = Instant::now();
        let ids = c.list_connectors(p, topic).await.unwrap();
        assert!(ids.iter().any(|i| i == id), "{ids:?}");
        quick("list", began);
        let began = Instant::now();
        c.get_connector(p, topic, id).await.unwrap();
        quick("get", began);
        let began = Instant::now();
        let status = c.connector_shard_status(p, topic, id, None).await.unwrap();
        assert_eq!(status.len(), 1);
        quick("shard status", began);
        let began = Instant::now();
        c.connector_done_time(p, topic, id).await.unwrap();
        quick("done time", began);
    }
}

/// The slowest read seen, in microseconds (reported by the test).
static SLOWEST_READ_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn quick(what: &str, began: Instant) {
    let took = began.elapsed();
    SLOWEST_READ_US.fetch_max(
        took.as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    assert!(
        took < READ_BUDGET,
        "{what} took {took:?} while other connectors were stuck"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_connector_never_stalls_the_api() {
    let pool = MySqlPool::connect(&env("SLUICE_TEST_MYSQL_URL"))
        .await
        .unwrap();
    let (deleted_t, stopped_t, free_t) = ("iso_deleted", "iso_stopped", "iso_free");
    make_tables(&pool, &[deleted_t.into(), stopped_t.into(), free_t.into()]).await;
    let hub = Hub::new("isolation").await;
    hub.topic("stuck").await;
    hub.topic("other").await;
    let deleted = hub.mysql_connector("stuck", deleted_t).await;
    let stopped = hub.mysql_connector("stuck", stopped_t).await;
    let free = hub.mysql_connector("other", free_t).await;

    // Both stuck connectors work before the lock (their sinks are open).
    hub.put("stuck", 0..1).await;
    wait_until(
        "the first row in both tables",
        Duration::from_secs(20),
        || async { count(&pool, deleted_t).await == 1 && count(&pool, stopped_t).await == 1 },
    )
    .await;

    // Lock both tables from another connection: their next flushes wait for it.
    let mut lock = MySqlConnection::connect(&env("SLUICE_TEST_MYSQL_URL"))
        .await
        .unwrap();
    sqlx::query(&format!("LOCK TABLES {deleted_t} WRITE, {stopped_t} WRITE"))
        .execute(&mut lock)
        .await
        .unwrap();
    hub.put("stuck", 1..100).await;
    wait_until(
        "both flushes waiting for the lock",
        Duration::from_secs(20),
        || async {
            running_statements(&pool, deleted_t).await >= 1
                && running_statements(&pool, stopped_t).await >= 1
        },
    )
    .await;

    // The other topic's connector keeps delivering, and its reads are quick.
    hub.put("other", 0..10).await;
    wait_until(
        "the other topic's rows",
        Duration::from_secs(20),
        || async { count(&pool, free_t).await == 10 },
    )
    .await;
    hub.reads_are_quick("other", &free).await;

    // Delete one stuck connector and stop the other, both mid-flush, while reading.
    let hub = Arc::new(hub);
    let began = Instant::now();
    let deleting = {
        let hub = hub.clone();
        let id = deleted.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            hub.catalog()
                .delete_connector(&hub.project, "stuck", &id)
                .await
                .unwrap();
            began.elapsed()
        })
    };
    let stopping = {
        let hub = hub.clone();
        let id = stopped.clone();
        tokio::spawn(async move {
            hub.catalog()
                .update_connector_state(&hub.project, "stuck", &id, "CONNECTOR_STOPPED")
                .await
                .unwrap();
        })
    };
    let mut rounds = 0;
    while !(deleting.is_finished() && stopping.is_finished()) {
        assert!(
            began.elapsed() < Duration::from_millis(GRACE_MS * 5),
            "delete and stop did not end"
        );
        hub.reads_are_quick("other", &free).await;
        // The stopping connector's own reads do not wait for its stop either.
        hub.reads_are_quick("stuck", &stopped).await;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delete_took = deleting.await.unwrap();
    stopping.await.unwrap();
    eprintln!(
        "delete of a stuck connector: {delete_took:?}; {rounds} rounds of reads meanwhile, the \
         slowest {} us",
        SLOWEST_READ_US.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        rounds >= 10,
        "only {rounds} rounds of reads during the stops"
    );
    assert!(
        delete_took < Duration::from_millis(GRACE_MS + 500),
        "delete took {delete_took:?} with a grace of {GRACE_MS} ms"
    );
    let ids = hub
        .catalog()
        .list_connectors(&hub.project, "stuck")
        .await
        .unwrap();
    assert_eq!(ids, vec![stopped.clone()]);
    // The stopped connector's checkpoint did not move past the dropped batch.
    let status = hub
        .catalog()
        .connector_shard_status(&hub.project, "stuck", &stopped, None)
        .await
        .unwrap();
    // record 0 delivered, record 1 (the dropped batch) not
    assert_eq!(status[0].current_sequence, 0, "{status:?}");

    // Unlock; restarted, the stopped connector delivers everything, nothing lost.
    sqlx::query("UNLOCK TABLES")
        .execute(&mut lock)
        .await
        .unwrap();
    hub.catalog()
        .update_connector_state(&hub.project, "stuck", &stopped, "CONNECTOR_RUNNING")
        .await
        .unwrap();
    wait_until(
        "all 100 rows after the restart",
        Duration::from_secs(30),
        || async { count(&pool, stopped_t).await == 100 },
    )
    .await;
    let ids: Vec<i64> = sqlx::query_scalar(&format!("SELECT id FROM {stopped_t} ORDER BY id"))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    wait_until(
        "the last delivered at 99",
        Duration::from_secs(10),
        || async {
            hub.catalog()
                .connector_shard_status(&hub.project, "stuck", &stopped, None)
                .await
                .unwrap()[0]
                .current_sequence
                == 99
        },
    )
    .await;
    lock.close().await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_stuck_connectors_in_parallel() {
    const N: usize = 4;
    let pool = MySqlPool::connect(&env("SLUICE_TEST_MYSQL_URL"))
        .await
        .unwrap();
    let tables: Vec<String> = (0..N).map(|i| format!("iso_shutdown_{i}")).collect();
    make_tables(&pool, &tables).await;
    let hub = Hub::new("isoshutdown").await;
    for (i, table) in tables.iter().enumerate() {
        let topic = format!("t{i}");
        hub.topic(&topic).await;
        hub.mysql_connector(&topic, table).await;
        hub.put(&topic, 0..1).await;
    }
    wait_until(
        "the first row in every table",
        Duration::from_secs(20),
        || async {
            for t in &tables {
                if count(&pool, t).await != 1 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let mut lock = MySqlConnection::connect(&env("SLUICE_TEST_MYSQL_URL"))
        .await
        .unwrap();
    let list: Vec<String> = tables.iter().map(|t| format!("{t} WRITE")).collect();
    sqlx::query(&format!("LOCK TABLES {}", list.join(", ")))
        .execute(&mut lock)
        .await
        .unwrap();
    for i in 0..N {
        hub.put(&format!("t{i}"), 1..20).await;
    }
    wait_until(
        "every flush waiting for the lock",
        Duration::from_secs(20),
        || async {
            for t in &tables {
                if running_statements(&pool, t).await < 1 {
                    return false;
                }
            }
            true
        },
    )
    .await;

    let began = Instant::now();
    tokio::time::timeout(
        Duration::from_millis(GRACE_MS * N as u64),
        hub.server.shutdown(),
    )
    .await
    .expect("shutdown took N graces or more");
    let took = began.elapsed();
    eprintln!("shutdown of {N} stuck connectors: {took:?}");
    assert!(
        took >= Duration::from_millis(GRACE_MS - 100) && took < Duration::from_millis(GRACE_MS * 2),
        "{N} stuck connectors shut down in {took:?} with a grace of {GRACE_MS} ms"
    );
    sqlx::query("UNLOCK TABLES")
        .execute(&mut lock)
        .await
        .unwrap();
    lock.close().await.unwrap();
    pool.close().await;
}
