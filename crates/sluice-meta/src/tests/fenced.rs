//! Writes fenced by a lease (issue 14, cluster mode): a checkpoint or group save under a
//! [`LeaseGuard`] lands only while that lease (owner, epoch, unexpired) holds.

use sqlx::postgres::PgPool;

use super::{bounded, TestBackend};
use crate::{
    CheckpointRow, ConnectorRow, ConsumerGroupRow, LeaseGuard, MetaError, SubscriptionRow,
};

fn checkpoint(seq: u64) -> CheckpointRow {
    CheckpointRow {
        shard_id: 0,
        next_seq: seq,
        last_time: 1,
        discard_count: 0,
        finished: false,
        update_time: 1,
        late_count: 0,
    }
}

fn guard(kind: &str, key: &str, epoch: i64) -> LeaseGuard {
    LeaseGuard {
        kind: kind.into(),
        key: key.into(),
        owner: "node-a".into(),
        epoch,
    }
}

fn fenced<T: std::fmt::Debug>(r: Result<T, MetaError>) -> bool {
    matches!(r, Err(MetaError::Fenced(_)))
}

#[tokio::test]
async fn a_stale_or_expired_lease_refuses_checkpoints_and_group_saves() {
    bounded(async {
        let backend = TestBackend::postgres().await;
        let TestBackend::Postgres(options) = &backend else {
            unreachable!()
        };
        let store = backend.open().await;
        let pool = PgPool::connect_with((**options).clone()).await.unwrap();
        // The lease table as sluice-cluster's LeaseStore makes it; node-a holds both leases
        // at epoch 2.
        sqlx::raw_sql(
            "CREATE TABLE lease (kind text, key text, owner text, epoch bigint,
                 expires_at timestamptz, PRIMARY KEY (kind, key));
             INSERT INTO lease VALUES ('conn', '7:c1', 'node-a', 2, now() + interval '1 hour'),
                                      ('sub', '7:s1', 'node-a', 2, now() + interval '1 hour');",
        )
        .execute(&pool)
        .await
        .unwrap();
        let conn = ConnectorRow {
            topic_uid: 7,
            connector_id: "c1".into(),
            kind: "sink_mysql".into(),
            state: "CONNECTOR_RUNNING".into(),
            column_fields: vec![],
            config: "{}".into(),
            creator: "me".into(),
            start_time: -1,
            create_time: 1,
            last_modify_time: 1,
        };
        let sub = |id: &str, connector: Option<&str>| SubscriptionRow {
            sub_id: id.into(),
            topic_uid: 7,
            comment: String::new(),
            state: 1,
            create_time: 1,
            last_modify_time: 1,
            connector_id: connector.map(String::from),
        };
        store
            .insert_connector_with_subscription(&conn, &sub("c1-sub", Some("c1")))
            .await
            .unwrap();
        store.insert_subscription(&sub("s1", None)).await.unwrap();

        // The holder's writes land.
        let held = guard("conn", "7:c1", 2);
        store
            .save_checkpoints_fenced(7, "c1", &[checkpoint(10)], &held)
            .await
            .unwrap();
        let group = |generation: i64, state: &str| ConsumerGroupRow {
            sub_id: "s1".into(),
            generation,
            state: state.into(),
        };
        store
            .save_consumer_group_fenced(&group(1, "mine"), &guard("sub", "7:s1", 2))
            .await
            .unwrap();

        // An older epoch (a former owner), another owner, or the wrong key: refused.
        assert!(fenced(
            store
                .save_checkpoints_fenced(7, "c1", &[checkpoint(3)], &guard("conn", "7:c1", 1))
                .await
        ));
        let other = LeaseGuard {
            owner: "node-b".into(),
            ..held.clone()
        };
        assert!(fenced(
            store
                .save_checkpoints_fenced(7, "c1", &[checkpoint(3)], &other)
                .await
        ));
        assert!(fenced(
            store
                .save_consumer_group_fenced(&group(2, "late"), &guard("sub", "7:s1", 1))
                .await
        ));
        // Once expired, even the right epoch is refused.
        sqlx::query("UPDATE lease SET expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        assert!(fenced(
            store
                .save_checkpoints_fenced(7, "c1", &[checkpoint(3)], &held)
                .await
        ));
        assert_eq!(
            store.load_checkpoints(7, "c1").await.unwrap(),
            vec![checkpoint(10)],
            "no refused checkpoint moved it"
        );
        assert_eq!(
            store.load_consumer_groups().await.unwrap(),
            vec![group(1, "mine")]
        );
    })
    .await;
}

#[tokio::test]
async fn the_embedded_store_has_no_leases_and_refuses_fenced_writes() {
    bounded(async {
        let store = TestBackend::sqlite().open().await;
        let r = store
            .save_checkpoints_fenced(7, "c1", &[checkpoint(1)], &guard("conn", "7:c1", 1))
            .await;
        assert!(fenced(r));
    })
    .await;
}
