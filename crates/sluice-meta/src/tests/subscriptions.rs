//! Subscriptions and offsets, on both backends.

use crate::{OffsetRow, SubscriptionRow};
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


}
