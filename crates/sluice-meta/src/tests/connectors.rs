//! Connectors and their checkpoints, on both backends.

use crate::{CheckpointRow, ConnectorRow, OffsetRow, SubscriptionRow};
on_both_backends! {
    async fn connectors_and_checkpoints_round_trip(backend) {
            let store = backend.open().await;
        let row = ConnectorRow {
            topic_uid: 7,
            connector_id: "c1".into(),
            kind: "sink_datahub".into(),
            state: "CONNECTOR_RUNNING".into(),
            column_fields: vec!["a".into(), "b".into()],
            config: "{}".into(),
            creator: "me".into(),
            start_time: -1,
            create_time: 1,
            last_modify_time: 2,
        };
        let sub = SubscriptionRow {
            sub_id: "1700000000000000".into(),
            topic_uid: 7,
            comment: "connector c1".into(),
            state: 1,
            create_time: 1,
            last_modify_time: 1,
            connector_id: Some("c1".into()),
        };
        let wrong = SubscriptionRow {
            connector_id: Some("c2".into()),
            ..sub.clone()
        };
        assert!(store
            .insert_connector_with_subscription(&row, &wrong)
            .await
            .is_err());
        assert!(store.load_connectors().await.unwrap().is_empty());
        store
            .insert_connector_with_subscription(&row, &sub)
            .await
            .unwrap();
        assert_eq!(store.load_connectors().await.unwrap(), vec![row.clone()]);
        assert_eq!(
            store.load_subscriptions().await.unwrap().0,
            vec![sub.clone()]
        );
        let cp = CheckpointRow {
            shard_id: 3,
            next_seq: 10,
            last_time: 99,
            discard_count: 1,
            finished: true,
            update_time: 5,
            late_count: 4,
        };
        store.save_checkpoints(7, "c1", &[cp]).await.unwrap();
        assert_eq!(store.load_checkpoints(7, "c1").await.unwrap(), vec![cp]);
        // the checkpoint is the subscription's offset: next_seq = sequence
        let offsets = store.load_subscriptions().await.unwrap().1;
        assert_eq!(
            (
                offsets[0].sequence,
                offsets[0].timestamp,
                offsets[0].read_end
            ),
            (10, 99, true)
        );
        // an offset commit moves the checkpoint and keeps the discard and late counts
        let commit = OffsetRow {
            sequence: 20,
            timestamp: 123,
            read_end: false,
            session_id: 1,
            ..offsets[0].clone()
        };
        store
            .put_offsets(std::slice::from_ref(&commit))
            .await
            .unwrap();
        let moved = CheckpointRow {
            next_seq: 20,
            last_time: 123,
            finished: false,
            ..cp
        };
        assert_eq!(store.load_checkpoints(7, "c1").await.unwrap(), vec![moved]);
        // an open changes the session only, never the position
        store
            .put_sessions(&[OffsetRow {
                sequence: 1,
                session_id: 2,
                ..commit
            }])
            .await
            .unwrap();
        assert_eq!(store.load_checkpoints(7, "c1").await.unwrap(), vec![moved]);
        assert!(store.save_checkpoints(7, "nobody", &[cp]).await.is_err());
        store.delete_connector(7, "c1").await.unwrap();
        assert!(store.load_connectors().await.unwrap().is_empty());
        assert!(store.load_checkpoints(7, "c1").await.unwrap().is_empty());
        let (subs, offsets) = store.load_subscriptions().await.unwrap();
        assert!(
            subs.is_empty() && offsets.is_empty(),
            "{subs:?} {offsets:?}"
        );
    }


}
