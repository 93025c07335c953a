//! Appends checked against the catalog version (`ShardStore::append_checked`), against a real
//! PostgreSQL: a put checked against an older version than the shared catalog's is refused
//! with nothing stored, and inside a statement shared by many puts only those puts are.
//!
//! Each test has a database of its own with the metadata's tables (sluice-meta's migrations:
//! the `catalog_version` row), where a catalog change elsewhere is its bump.

mod log_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use log_support::{assert_dense, bounded, connect_to, new_shard, payloads, pg_url, read_all};
use sluice_cluster::log::PgShardStore;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::AppendInfo;

/// A database of its own, with the metadata's tables; returns its URL.
async fn catalog_database() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let name = format!(
        "sluice_cc_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.set_path(&name);
    let url = url.to_string();
    sluice_meta::MetaStore::open_postgres(&url)
        .await
        .expect("the metadata's migrations");
    url
}

/// The shared catalog's version now.
async fn version(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT version FROM catalog_version")
        .fetch_one(db)
        .await
        .unwrap()
}

/// What another node's catalog change does to the version.
async fn bump(db: &sqlx::PgPool) {
    sqlx::query("UPDATE catalog_version SET version = version + 1")
        .execute(db)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_checked_against_an_older_catalog_is_refused_and_stores_nothing() {
    bounded(async {
        let url = catalog_database().await;
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        let log = connect_to(&url, 1).await;
        let shard = new_shard(&log, "checked").await;
        let seen = version(&db).await;
        let first = payloads(0, 2);
        let a = shard
            .clone()
            .append_checked(first.clone(), 0, Some(seen))
            .await
            .expect("checked against the current version");
        bump(&db).await;
        match shard
            .clone()
            .append_checked(payloads(1, 3), 0, Some(seen))
            .await
        {
            Err(StoreError::CatalogMoved { seen: s }) => assert_eq!(s, seen),
            other => panic!("a put checked against an older catalog: {other:?}"),
        }
        assert_eq!(
            shard.clone().next_seq().await.unwrap(),
            2,
            "the refused put took sequences"
        );
        let third = payloads(2, 1);
        let c = shard
            .clone()
            .append_checked(third.clone(), 0, Some(seen + 1))
            .await
            .expect("checked against the new version");
        let fourth = payloads(3, 1);
        let d = shard.clone().append(fourth.clone(), 0).await.unwrap();
        let infos = vec![(first, a), (third, c), (fourth, d)];
        let by_seq = assert_dense(&infos);
        let expected: Vec<Bytes> = by_seq.values().flat_map(|(p, _)| p.clone()).collect();
        let got: Vec<Bytes> = read_all(&shard, 100)
            .await
            .into_iter()
            .map(|e| e.payload)
            .collect();
        assert_eq!(got, expected, "only the accepted puts are stored");
    })
    .await;
}

/// What one put of the mixed test asked for, and got.
type Outcome = (Option<i64>, Vec<Bytes>, Result<AppendInfo, StoreError>);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_shared_statement_only_the_puts_checked_against_an_older_catalog_fail() {
    bounded(async {
        let url = catalog_database().await;
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        let log = connect_to(&url, 1).await;
        let mut shards: Vec<Arc<PgShardStore>> = Vec::new();
        for _ in 0..8 {
            shards.push(new_shard(&log, "checked-mixed").await);
        }
        let stale = version(&db).await;
        bump(&db).await;
        let current = stale + 1;
        // On every shard at once: puts checked against the current version, against the older
        // one, and not checked, interleaved (so a shard's queue holds all three kinds).
        let tasks: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(s, shard)| {
                let shard = shard.clone();
                tokio::spawn(async move {
                    let puts: Vec<_> = (0..30)
                        .map(|r| {
                            let seen = [Some(current), Some(stale), None][(r + s) % 3];
                            let p = payloads(s * 100 + r, 1 + r % 3);
                            let shard = shard.clone();
                            tokio::spawn(async move {
                                let got = shard.append_checked(p.clone(), 0, seen).await;
                                (seen, p, got)
                            })
                        })
                        .collect();
                    let mut out = Vec::new();
                    for put in puts {
                        out.push(put.await.unwrap());
                    }
                    out
                })
            })
            .collect();
        let before = log.append_statements();
        let mut results: Vec<Vec<Outcome>> = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let statements = log.append_statements() - before;
        for (s, outcomes) in results.into_iter().enumerate() {
            let mut stored = Vec::new();
            for (seen, p, got) in outcomes {
                match (seen, got) {
                    (Some(v), Err(StoreError::CatalogMoved { seen })) if v == stale => {
                        assert_eq!(seen, stale)
                    }
                    (Some(v), other) if v == stale => {
                        panic!("shard {s}: a put checked against the older catalog: {other:?}")
                    }
                    (_, Ok(info)) => stored.push((p, info)),
                    (seen, Err(e)) => panic!("shard {s}: a put checked against {seen:?}: {e}"),
                }
            }
            assert_eq!(stored.len(), 20, "shard {s}");
            let by_seq = assert_dense(&stored);
            let expected: Vec<Bytes> = by_seq.values().flat_map(|(p, _)| p.clone()).collect();
            let got: Vec<Bytes> = read_all(&shards[s], 1000)
                .await
                .into_iter()
                .map(|e| e.payload)
                .collect();
            assert_eq!(
                got, expected,
                "shard {s}: exactly the accepted puts are stored"
            );
        }
        assert!(
            statements < 240,
            "{statements} statements for 240 puts: the puts were not shared"
        );
    })
    .await;
}
