//! Races between nodes on the shared backend: a connector's checkpoint save and the delete of
//! that connector, each held open mid-transaction by a raw connection standing for another node.

use std::time::Duration;

use sqlx::Connection;

use super::{bounded, fresh_pg_schema};
use crate::postgres::PgStore;
use crate::{CheckpointRow, ConnectorRow, MetaStore, SubscriptionRow};

const CHECKPOINT: CheckpointRow = CheckpointRow {
    shard_id: 0,
    next_seq: 10,
    last_time: 11,
    discard_count: 0,
    finished: false,
    update_time: 12,
    late_count: 0,
};

/// A store with connector `c1` on topic 7 (subscription `s1`), and a raw connection to the
/// same schema.
async fn setup() -> (MetaStore, PgStore, sqlx::PgConnection) {
    let options = fresh_pg_schema().await;
    let node = PgStore::open(options.clone()).await.unwrap();
    let store = MetaStore::from_postgres(node.clone());
    let connector = ConnectorRow {
        topic_uid: 7,
        connector_id: "c1".into(),
        kind: "sink_datahub".into(),
        state: "CONNECTOR_RUNNING".into(),
        column_fields: vec![],
        config: "{}".into(),
        creator: "me".into(),
        start_time: -1,
        create_time: 1,
        last_modify_time: 1,
    };
    let sub = SubscriptionRow {
        sub_id: "s1".into(),
        topic_uid: 7,
        comment: String::new(),
        state: 1,
        create_time: 1,
        last_modify_time: 1,
        connector_id: Some("c1".into()),
    };
    store
        .insert_connector_with_subscription(&connector, &sub)
        .await
        .unwrap();
    let raw = sqlx::PgConnection::connect_with(&options).await.unwrap();
    (store, node, raw)
}

async fn offset_rows(node: &PgStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sub_offsets")
        .fetch_one(&node.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_checkpoint_save_in_flight_is_deleted_with_its_connector() {
    bounded(async {
        let (store, node, mut other) = setup().await;
        // another node's save_checkpoints, between its statements
        sqlx::raw_sql(
            "BEGIN; SELECT sub_id FROM subscriptions WHERE sub_id = 's1' FOR SHARE; \
             INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, batch_index, \
             version, session_id, read_end) VALUES ('s1', 0, 10, 11, 0, 0, -1, FALSE);",
        )
        .execute(&mut other)
        .await
        .unwrap();
        let deleting = tokio::spawn({
            let store = store.clone();
            async move { store.delete_connector(7, "c1").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!deleting.is_finished(), "the delete waits for the save");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        deleting.await.unwrap().unwrap();
        assert_eq!(
            offset_rows(&node).await,
            0,
            "no checkpoint outlives its connector"
        );
        let (subs, offsets) = store.load_subscriptions().await.unwrap();
        assert!(
            subs.is_empty() && offsets.is_empty(),
            "{subs:?} {offsets:?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_checkpoint_save_racing_a_delete_in_flight_fails_and_leaves_nothing() {
    bounded(async {
        let (store, node, mut other) = setup().await;
        // another node's delete_connector, between its statements
        sqlx::raw_sql("BEGIN; DELETE FROM subscriptions WHERE sub_id = 's1';")
            .execute(&mut other)
            .await
            .unwrap();
        let saving = tokio::spawn({
            let store = store.clone();
            async move { store.save_checkpoints(7, "c1", &[CHECKPOINT]).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!saving.is_finished(), "the save waits for the delete");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let saved = saving.await.unwrap();
        assert!(saved.is_err(), "the connector is gone: {saved:?}");
        assert_eq!(offset_rows(&node).await, 0, "no orphan checkpoint");
    })
    .await
}
