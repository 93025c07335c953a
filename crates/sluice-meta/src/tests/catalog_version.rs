//! The catalog version: every catalog change bumps it by one in its own transaction, a failed
//! change does not, and position writes (offsets, checkpoints, a key's last use, the audit log)
//! leave it alone.

use crate::{
    AccessKeyRow, AuditRow, CheckpointRow, ConnectorRow, ConsumerGroupRow, MetaError, OffsetRow,
    ProjectRow, SchemaRow, ShardRow, SubscriptionRow, TopicRow,
};

fn project(name: &str) -> ProjectRow {
    ProjectRow {
        name: name.into(),
        comment: "c".into(),
        create_time: 1,
        last_modify_time: 1,
    }
}

fn topic() -> TopicRow {
    TopicRow {
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
    }
}

fn shard(shard_id: u32) -> ShardRow {
    ShardRow {
        topic_uid: 0,
        shard_id,
        state: "ACTIVE".into(),
        begin_key: "0".repeat(32),
        end_key: "F".repeat(32),
        parents: vec![],
        create_time: 1,
        closed_time: 0,
    }
}

fn subscription(sub_id: &str, topic_uid: i64, connector_id: Option<&str>) -> SubscriptionRow {
    SubscriptionRow {
        sub_id: sub_id.into(),
        topic_uid,
        comment: String::new(),
        state: 1,
        create_time: 1,
        last_modify_time: 1,
        connector_id: connector_id.map(String::from),
    }
}

fn connector(topic_uid: i64, id: &str) -> ConnectorRow {
    ConnectorRow {
        topic_uid,
        connector_id: id.into(),
        kind: "sink_datahub".into(),
        state: "CONNECTOR_RUNNING".into(),
        column_fields: vec![],
        config: "{}".into(),
        creator: "me".into(),
        start_time: -1,
        create_time: 1,
        last_modify_time: 1,
    }
}

fn key(name: &str) -> AccessKeyRow {
    AccessKeyRow {
        name: name.into(),
        access_id: format!("id-{name}"),
        secret: "sealed".into(),
        old_secret: None,
        old_secret_expire_time: None,
        grants: "[]".into(),
        enabled: true,
        create_time: 1,
        last_used_time: 0,
        expire_time: None,
    }
}

fn offset(sub_id: &str) -> OffsetRow {
    OffsetRow {
        sub_id: sub_id.into(),
        shard_id: 0,
        sequence: 5,
        timestamp: 6,
        batch_index: 0,
        version: 1,
        session_id: 1,
        read_end: false,
    }
}

on_both_backends! {
    async fn every_catalog_change_bumps_the_version_once_and_nothing_else_does(backend) {
        let store = backend.open().await;
        let mut seen = store.catalog_version().await.unwrap();
        assert_eq!(seen, 0, "a new store starts at 0");
        // runs one call and checks how far it moved the version
        macro_rules! step {
            ($delta:expr, $call:expr) => {{
                let out = $call.await.unwrap();
                let now = store.catalog_version().await.unwrap();
                assert_eq!(now - seen, $delta, "{}", stringify!($call));
                seen = now;
                out
            }};
        }
        step!(1, store.insert_project(&project("p")));
        step!(1, store.update_project(&project("p")));
        let (uid, ()) = step!(
            1,
            store.insert_topic(&topic(), &[shard(0)], None, |_| Ok::<_, MetaError>(()))
        );
        step!(1, store.update_topic(&TopicRow { uid, ..topic() }));
        let schema = SchemaRow {
            topic_uid: uid,
            version_id: 0,
            schema_json: "{}".into(),
            create_time: 1,
            creator: "me".into(),
        };
        step!(1, store.insert_schema(&schema));
        step!(1, store.delete_schema(uid, 0));
        step!(
            1,
            store.change_shards(uid, &[0], 9, &[shard(1)], &[], || Ok::<_, MetaError>(()))
        );
        step!(1, store.insert_subscription(&subscription("s1", uid, None)));
        step!(1, store.update_subscription(&subscription("s1", uid, None)));
        step!(
            1,
            store.insert_connector_with_subscription(
                &connector(uid, "c1"),
                &subscription("s2", uid, Some("c1")),
            )
        );
        step!(1, store.upsert_connector(&connector(uid, "c1")));
        step!(1, store.save_access_key(&key("k")));

        // positions, consumer groups and logs are not catalog changes
        step!(
            0,
            store.save_consumer_group(&ConsumerGroupRow {
                sub_id: "s1".into(),
                generation: 1,
                state: "{}".into(),
            })
        );
        step!(0, store.put_offsets(&[offset("s1")]));
        step!(0, store.put_sessions(&[offset("s1")]));
        step!(0, store.put_read_ends(&[offset("s1")]));
        let checkpoint = CheckpointRow {
            shard_id: 0,
            next_seq: 3,
            last_time: 4,
            discard_count: 0,
            finished: false,
            update_time: 5,
            late_count: 0,
        };
        step!(0, store.save_checkpoints(uid, "c1", &[checkpoint]));
        step!(0, store.touch_access_key("k", 77));
        step!(
            0,
            store.append_audit(&AuditRow {
                seq: 0,
                time: 1,
                actor: "root".into(),
                action: "CreateKey".into(),
                resource: "key/k".into(),
                request_id: "r".into(),
                detail: String::new(),
            })
        );

        // a change that fails is rolled back with its bump
        assert!(store.insert_project(&project("P")).await.is_err());
        assert_eq!(store.catalog_version().await.unwrap(), seen);

        step!(1, store.delete_access_key("k"));
        step!(1, store.delete_connector(uid, "c1"));
        step!(1, store.delete_topic_connectors(uid));
        step!(1, store.delete_subscriptions(&["s1".to_string()]));
        step!(1, store.delete_topic(uid));
        step!(1, store.delete_project("p"));
        drop(store);
        let store = backend.open().await;
        assert_eq!(store.catalog_version().await.unwrap(), seen, "the version is durable");
        assert_eq!(seen, 18);
    }
}
