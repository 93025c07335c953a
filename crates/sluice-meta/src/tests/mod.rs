//! The store's tests, each run against both backends (`on_both_backends!` makes a `sqlite`
//! and a `postgres` test of every body), plus what only a shared database can show
//! (`shared.rs`). PostgreSQL comes from `scripts/services.sh` (`SLUICE_TEST_PG_URL`); a test
//! that needs it and does not find it fails. Each PostgreSQL test works in a fresh schema of
//! its own, so tests run in parallel on one database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::postgres::PgStore;
use crate::MetaStore;

/// Makes, for each `async fn name(backend) { .. }`, a module `name` with the tests `sqlite` and
/// `postgres`, each running the body (bounded in time) with `backend: &TestBackend`.
macro_rules! on_both_backends {
    ($($(#[$attr:meta])* async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            $(#[$attr])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($backend: &$crate::tests::TestBackend) $body

                #[tokio::test]
                async fn sqlite() {
                    $crate::tests::bounded(async {
                        run(&$crate::tests::TestBackend::sqlite()).await
                    })
                    .await
                }

                #[tokio::test]
                async fn postgres() {
                    $crate::tests::bounded(async {
                        run(&$crate::tests::TestBackend::postgres().await).await
                    })
                    .await
                }
            }
        )*
    };
}

mod accounts;
mod catalog;
mod catalog_version;
mod connectors;
mod consumer_groups;
// issue 14: leases
mod fenced;
mod races;
mod shared;
mod subscriptions;
mod tls;

/// Where a test's store lives; [`TestBackend::open`] opens it (again).
pub(crate) enum TestBackend {
    Sqlite(tempfile::TempDir),
    Postgres(Box<PgConnectOptions>),
}

/// Runs a test body, failing it if it takes more than a minute.
pub(crate) async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("the test finishes within a minute");
}

/// The PostgreSQL the tests use; panics (fails the test) when it is not configured.
pub(crate) fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: these tests need PostgreSQL \
         (`source scripts/services.sh; services_start`, as scripts/test.sh does)",
    )
}

/// Connect options for a fresh, empty schema of the test database.
pub(crate) async fn fresh_pg_schema() -> PgConnectOptions {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = pg_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!(
        "meta_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL at SLUICE_TEST_PG_URL answers");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    options.options([("search_path", schema.as_str())])
}

impl TestBackend {
    pub(crate) fn sqlite() -> TestBackend {
        TestBackend::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) async fn postgres() -> TestBackend {
        TestBackend::Postgres(Box::new(fresh_pg_schema().await))
    }

    /// Opens the store (a second call opens the same store again, as a restart would).
    pub(crate) async fn open(&self) -> MetaStore {
        match self {
            TestBackend::Sqlite(dir) => MetaStore::open(&dir.path().join("meta.db")).await.unwrap(),
            TestBackend::Postgres(options) => {
                MetaStore::from_postgres(PgStore::open((**options).clone()).await.unwrap())
            }
        }
    }
}
