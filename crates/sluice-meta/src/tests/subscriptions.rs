//! Subscriptions and offsets, on both backends.

use crate::{ConsumerGroupRow, OffsetRow, StoredSubscription, SubscriptionRow};
on_both_backends! {
    async fn subscriptions_and_offsets_survive_reopen(backend) {
        let store = backend.open().await;
        let sub = SubscriptionRow {
            sub_id: "17000000000001".into(),
            topic_uid: 3,
            comment: "c".into(),
            state: 1,
            create_time: 1,
            last_modify_time: 1,
            connector_id: None,
        };
        store.insert_subscription(&sub).await.unwrap();
        let other = SubscriptionRow {
            sub_id: "17000000000002".into(),
            ..sub.clone()
        };
        store.insert_subscription(&other).await.unwrap();
        let off = OffsetRow {
            sub_id: sub.sub_id.clone(),
            shard_id: 1,
            sequence: 7,
            timestamp: 99,
            batch_index: 0,
            version: 2,
            session_id: 4,
            read_end: true,
        };
        store
            .put_offsets(&[
                off.clone(),
                OffsetRow {
                    sub_id: other.sub_id.clone(),
                    ..off.clone()
                },
            ])
            .await
            .unwrap();
        let updated = SubscriptionRow {
            state: 0,
            comment: "d".into(),
            ..sub.clone()
        };
        store.update_subscription(&updated).await.unwrap();
        drop(store);

        let store = backend.open().await;
        let (subs, offsets) = store.load_subscriptions().await.unwrap();
        assert_eq!(subs, vec![updated, other.clone()]);
        assert_eq!(offsets.len(), 2);
        assert_eq!(offsets[0], off);
        store
            .delete_subscriptions(std::slice::from_ref(&sub.sub_id))
            .await
            .unwrap();
        let (subs, offsets) = store.load_subscriptions().await.unwrap();
        assert_eq!(subs, vec![other]);
        assert_eq!(offsets.len(), 1);
    }

    async fn one_subscription_loads_with_its_own_offsets_and_group_only(backend) {
        let store = backend.open().await;
        let sub = |id: &str| SubscriptionRow {
            sub_id: id.into(),
            topic_uid: 5,
            comment: id.into(),
            state: 1,
            create_time: 1,
            last_modify_time: 1,
            connector_id: None,
        };
        let off = |id: &str, shard_id: u32, sequence: i64| OffsetRow {
            sub_id: id.into(),
            shard_id,
            sequence,
            timestamp: 10 + sequence,
            batch_index: 0,
            version: 1,
            session_id: 3,
            read_end: false,
        };
        let group = |id: &str| ConsumerGroupRow {
            sub_id: id.into(),
            generation: 4,
            state: format!("group of {id}"),
        };
        for id in ["a", "b"] {
            store.insert_subscription(&sub(id)).await.unwrap();
        }
        store
            .put_offsets(&[off("a", 1, 7), off("b", 0, 70), off("a", 0, 5), off("b", 1, 71)])
            .await
            .unwrap();
        store.save_consumer_group(&group("b")).await.unwrap();

        assert_eq!(
            store.load_subscription("a").await.unwrap(),
            Some(StoredSubscription {
                row: sub("a"),
                offsets: vec![off("a", 0, 5), off("a", 1, 7)],
                group: None,
            })
        );
        assert_eq!(
            store.load_subscription("b").await.unwrap(),
            Some(StoredSubscription {
                row: sub("b"),
                offsets: vec![off("b", 0, 70), off("b", 1, 71)],
                group: Some(group("b")),
            })
        );
        assert_eq!(store.load_subscription("c").await.unwrap(), None);
    }
}
