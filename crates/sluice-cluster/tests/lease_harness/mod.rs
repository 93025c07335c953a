//! Shared set-up of the lease and archive tests: a private PostgreSQL schema per test and an
//! s3s-fs bucket, from the variables scripts/services.sh exports (missing ones fail the test).

#![allow(dead_code)]

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use sluice_cluster::archive_url::{ArchiveCredentials, ArchiveLocation};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services (scripts/services.sh: services_start)")
    })
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A pool on a fresh schema of the test database (its own `lease`, `node`, ... tables).
pub async fn pg_pool() -> PgPool {
    let url = env("SLUICE_TEST_PG_URL");
    let schema = unique("t");
    let admin = PgPool::connect(&url).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .expect("connect to PostgreSQL")
}

/// An S3 client on a fresh bucket of the s3s-fs service, made from an archive URL.
pub fn s3_store() -> Arc<dyn ObjectStore> {
    let bucket = unique("archive-");
    std::fs::create_dir_all(std::path::Path::new(&env("SLUICE_TEST_S3_DIR")).join(&bucket))
        .unwrap(); // s3s-fs: a bucket is a directory
    let url = format!("s3://{bucket}?endpoint={}", env("SLUICE_TEST_S3_ENDPOINT"));
    let credentials = ArchiveCredentials {
        access_key_id: env("SLUICE_TEST_S3_ACCESS_KEY"),
        secret_access_key: env("SLUICE_TEST_S3_SECRET_KEY"),
    };
    ArchiveLocation::parse(&url)
        .unwrap()
        .open_store(&credentials)
        .unwrap()
}

/// Runs a test body with a time bound, so nothing hangs.
pub async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test timed out");
}
