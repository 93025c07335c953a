//! What only the shared backend can show: several stores (nodes) on one PostgreSQL database,
//! migrating together, seeing each other's writes and catalog version, and PostgreSQL's side
//! of the failure handling the SQLite tests cover.

use sqlx::postgres::PgConnectOptions;

use super::{bounded, fresh_pg_schema, pg_url};
use crate::postgres::PgStore;
use crate::SCHEMA_VERSION;
use crate::{MetaError, MetaStore, OffsetRow, ProjectRow, ShardRow, SubscriptionRow, TopicRow};

fn project(name: &str) -> ProjectRow {
    ProjectRow {
        name: name.into(),
        comment: "c".into(),
        create_time: 1,
        last_modify_time: 1,
    }
}

async fn node(options: &PgConnectOptions) -> PgStore {
    PgStore::open(options.clone()).await.unwrap()
}

#[tokio::test]
async fn two_stores_on_one_database_see_each_others_writes_and_the_version_bump() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let a = MetaStore::from_postgres(node(&options).await);
        let b = MetaStore::from_postgres(node(&options).await);
        assert_eq!(b.catalog_version().await.unwrap(), 0);
        a.insert_project(&project("p")).await.unwrap();
        assert_eq!(b.catalog_version().await.unwrap(), 1, "b sees a's change");
        assert_eq!(b.load().await.unwrap().projects, vec![project("p")]);
        let topic = TopicRow {
            uid: 0,
            project: "p".into(),
            name: "t".into(),
            record_type: "BLOB".into(),
            lifecycle_days: 1,
            comment: String::new(),
            expand_mode: "split".into(),
            schema_version: -1,
            create_time: 1,
            last_modify_time: 1,
        };
        let shard = ShardRow {
            topic_uid: 0,
            shard_id: 0,
            state: "ACTIVE".into(),
            begin_key: "0".repeat(32),
            end_key: "F".repeat(32),
            parents: vec![],
            create_time: 1,
            closed_time: 0,
        };
        let (uid, ()) = b
            .insert_topic(&topic, &[shard], None, |_| Ok::<_, MetaError>(()))
            .await
            .unwrap();
        assert_eq!(a.catalog_version().await.unwrap(), 2, "a sees b's change");
        let seen = a.load().await.unwrap();
        assert_eq!((seen.topics.len(), seen.topics[0].uid), (1, uid));
        assert_eq!(seen.shards.len(), 1);
        // a name taken on one node is taken on the other, case-insensitively
        assert!(b.insert_project(&project("P")).await.is_err());
        // offsets committed on one node are read on the other
        let sub = SubscriptionRow {
            sub_id: "s".into(),
            topic_uid: uid,
            comment: String::new(),
            state: 1,
            create_time: 1,
            last_modify_time: 1,
            connector_id: None,
        };
        a.insert_subscription(&sub).await.unwrap();
        let offset = OffsetRow {
            sub_id: "s".into(),
            shard_id: 0,
            sequence: 41,
            timestamp: 42,
            batch_index: 0,
            version: 1,
            session_id: 3,
            read_end: true,
        };
        a.put_offsets(std::slice::from_ref(&offset)).await.unwrap();
        assert_eq!(
            b.load_subscriptions().await.unwrap(),
            (vec![sub], vec![offset])
        );
        assert_eq!(b.catalog_version().await.unwrap(), 3);
    })
    .await
}

#[tokio::test]
async fn catalog_changes_from_many_nodes_at_once_lose_no_bump() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let nodes = [node(&options).await, node(&options).await];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = MetaStore::from_postgres(nodes[i % 2].clone());
            tasks.push(tokio::spawn(async move {
                store.insert_project(&project(&format!("p{i}"))).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let store = MetaStore::from_postgres(nodes[0].clone());
        assert_eq!(store.catalog_version().await.unwrap(), 20);
        assert_eq!(store.load().await.unwrap().projects.len(), 20);
    })
    .await
}

#[tokio::test]
async fn nodes_that_start_together_migrate_once() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let mut opens = Vec::new();
        for _ in 0..4 {
            let options = options.clone();
            opens.push(tokio::spawn(async move { PgStore::open(options).await }));
        }
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every node opens"));
        }
        let pool = &stores[0].pool;
        let versions: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM catalog_version")
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![0], "one catalog version row");
        for store in stores {
            let store = MetaStore::from_postgres(store);
            store.catalog_version().await.unwrap();
        }
        // a later start finds nothing to do
        node(&options).await;
    })
    .await
}

#[tokio::test]
async fn a_database_from_a_newer_sluice_is_refused() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let store = node(&options).await;
        let future = SCHEMA_VERSION + 41;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ($1, 'from the future', TRUE, '\\x00', 1)",
        )
        .bind(future)
        .execute(&store.pool)
        .await
        .unwrap();
        let err = match PgStore::open(options).await {
            Ok(_) => panic!("a database from a newer Sluice was opened"),
            Err(e) => e,
        };
        assert!(
            matches!(err, MetaError::TooNew { found, known } if found == future && known == SCHEMA_VERSION),
            "{err:?}"
        );
    })
    .await
}

/// A COMMIT that fails (a deferred foreign key) fails the write, and the next write commits.
#[tokio::test]
async fn a_failed_commit_does_not_swallow_later_writes() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let store = node(&options).await;
        sqlx::raw_sql(
            "CREATE TABLE parent (id BIGINT PRIMARY KEY); \
             CREATE TABLE child (pid BIGINT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let failed: Result<(), MetaError> = store
            .write(|tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO child (pid) VALUES (7)")
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                })
            })
            .await;
        assert!(failed.is_err(), "the COMMIT violates a foreign key");
        store.insert_project(&project("after")).await.unwrap();
        let store = node(&options).await;
        assert_eq!(store.load().await.unwrap().projects, vec![project("after")]);
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM child")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(children, 0, "the failed write left nothing behind");
    })
    .await
}

/// `connect` picks the backend from its argument; PostgreSQL settings come in the URL.
#[tokio::test]
async fn connect_takes_a_postgres_url_or_a_path() {
    bounded(async {
        let options = fresh_pg_schema().await;
        let schema = options.get_options().unwrap().to_string();
        let schema = schema.trim_start_matches("-c search_path=").to_string();
        let url = format!("{}?options=-c%20search_path%3D{schema}", pg_url());
        let store = MetaStore::connect(&url).await.unwrap();
        assert_eq!(store.backend_name(), "postgres");
        store.insert_project(&project("via-url")).await.unwrap();
        let other = MetaStore::from_postgres(node(&options).await);
        assert_eq!(
            other.load().await.unwrap().projects,
            vec![project("via-url")]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::connect(path.to_str().unwrap()).await.unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        assert!(path.exists());
    })
    .await
}
