//! SQLite's migrations (`migrations/sqlite/NNNN_name.sql`, listed in [`MIGRATIONS`]), run at open
//! (see [`crate::migrate`]). Migration 1 is the schema of the Sluice that had no migrations,
//! written with `IF NOT EXISTS`, so such a store is adopted as it is.

use sqlx::migrate::Migrator;
use sqlx::SqlitePool;

use crate::migrate::{refuse_newer, Embedded, Step};
use crate::store::MetaError;

/// Every SQLite migration this binary knows, in version order.
const MIGRATIONS: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "connector subscriptions",
        include_str!("../../migrations/sqlite/0002_connector_subscriptions.sql"),
    ),
    // issue 10: lake
    (
        3,
        "connector late count",
        include_str!("../../migrations/sqlite/0003_connector_late_count.sql"),
    ),
    // issue 15: accounts
    (
        4,
        "accounts",
        include_str!("../../migrations/sqlite/0004_accounts.sql"),
    ),
    // issue 14: the catalog version
    (
        5,
        "catalog version",
        include_str!("../../migrations/sqlite/0005_catalog_version.sql"),
    ),
];

/// The highest migration version recorded in the store (0 when none is, as in a new store or
/// one written before migrations existed).
async fn stored_version(pool: &SqlitePool) -> Result<i64, MetaError> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if table.is_none() {
        return Ok(0);
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await?;
    Ok(version.unwrap_or(0))
}

/// Brings the store's schema to [`SCHEMA_VERSION`], refusing a store from a newer Sluice.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), MetaError> {
    refuse_newer(stored_version(pool).await?)?;
    let migrator = Migrator::new(Embedded(MIGRATIONS)).await?;
    migrator.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sqlite::SqliteStore as MetaStore;
    use crate::{MetaError, ProjectRow, SCHEMA_VERSION};

    fn project(name: &str) -> ProjectRow {
        ProjectRow {
            name: name.into(),
            comment: "c".into(),
            create_time: 1,
            last_modify_time: 1,
        }
    }

    #[tokio::test]
    async fn a_store_from_before_migrations_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            // what a Sluice without migrations left: its tables and rows, no _sqlx_migrations
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_initial.sql"))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO projects VALUES ('old', 'kept', 1, 2)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = MetaStore::open(&path).await.unwrap();
        let snap = store.load().await.unwrap();
        assert_eq!(snap.projects.len(), 1);
        assert_eq!(snap.projects[0].comment, "kept");
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        store.insert_project(&project("new")).await.unwrap();
        drop(store);
        let store = MetaStore::open(&path).await.unwrap();
        assert_eq!(store.load().await.unwrap().projects.len(), 2);
    }

    #[tokio::test]
    async fn migration_2_backs_each_connector_by_a_subscription_holding_its_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            // a version-1 store with two connectors, one of them with checkpoints
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_initial.sql"))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(
                "INSERT INTO connectors VALUES (5, 'sink_a', 'sink_datahub', 'CONNECTOR_STOPPED', \
                 '[]', '{}', 'me', -1, 1700000000, 1700000001); \
                 INSERT INTO connectors VALUES (5, 'sink_b', 'sink_datahub', 'CONNECTOR_RUNNING', \
                 '[]', '{}', 'me', -1, 1700000000, 1700000001); \
                 INSERT INTO connector_checkpoints VALUES (5, 'sink_a', 0, 42, 1234, 3, 0, 77); \
                 INSERT INTO connector_checkpoints VALUES (5, 'sink_a', 1, 9, 55, 0, 1, 78); \
                 INSERT INTO subscriptions VALUES ('1', 5, 'ordinary', 1, 1, 1);",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = MetaStore::open(&path).await.unwrap();
        let (subs, offsets) = store.load_subscriptions().await.unwrap();
        let owners: Vec<Option<&str>> = subs.iter().map(|s| s.connector_id.as_deref()).collect();
        assert_eq!(owners.len(), 3, "{subs:?}");
        assert!(
            owners.contains(&None)
                && owners.contains(&Some("sink_a"))
                && owners.contains(&Some("sink_b"))
        );
        let a = subs
            .iter()
            .find(|s| s.connector_id.as_deref() == Some("sink_a"))
            .unwrap();
        assert_eq!(
            (a.topic_uid, a.comment.as_str(), a.state),
            (5, "connector sink_a", 1)
        );
        assert_ne!(
            a.sub_id,
            subs.iter()
                .find(|s| s.connector_id.as_deref() == Some("sink_b"))
                .unwrap()
                .sub_id
        );
        assert_eq!(offsets.len(), 2);
        assert!(offsets.iter().all(|o| o.sub_id == a.sub_id));
        assert_eq!((offsets[0].sequence, offsets[0].timestamp), (42, 1234));
        let cps = store.load_checkpoints(5, "sink_a").await.unwrap();
        assert_eq!(
            cps.iter()
                .map(|c| (
                    c.shard_id,
                    c.next_seq,
                    c.last_time,
                    c.discard_count,
                    c.finished,
                    c.update_time
                ))
                .collect::<Vec<_>>(),
            vec![(0, 42, 1234, 3, false, 77), (1, 9, 55, 0, true, 78)]
        );
        assert!(store
            .load_checkpoints(5, "sink_b")
            .await
            .unwrap()
            .is_empty());
        let old: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE name = 'connector_checkpoints'",
        )
        .fetch_optional(&store.pool)
        .await
        .unwrap();
        assert_eq!(old, None, "the checkpoints live in sub_offsets only");
    }

    #[tokio::test]
    async fn a_store_from_a_newer_sluice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::open(&path).await.unwrap();
        store.insert_project(&project("p")).await.unwrap();
        let future = SCHEMA_VERSION + 41;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?, 'from the future', TRUE, x'00', 1)",
        )
        .bind(future)
        .execute(&store.pool)
        .await
        .unwrap();
        drop(store);
        let err = match MetaStore::open(&path).await {
            Ok(_) => panic!("a store from a newer Sluice was opened"),
            Err(e) => e,
        };
        assert!(
            matches!(err, MetaError::TooNew { found, known } if found == future && known == SCHEMA_VERSION),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&future.to_string())
                && message.contains(&SCHEMA_VERSION.to_string())
                && message.contains("newer Sluice"),
            "{message}"
        );
    }
}
