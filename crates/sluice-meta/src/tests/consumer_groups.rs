//! Consumer groups, on both backends.

use crate::{ConsumerGroupRow, SubscriptionRow};
fn row(sub_id: &str, generation: i64, state: &str) -> ConsumerGroupRow {
    ConsumerGroupRow {
        sub_id: sub_id.into(),
        generation,
        state: state.into(),
    }
}

fn sub(sub_id: &str) -> SubscriptionRow {
    SubscriptionRow {
        sub_id: sub_id.into(),
        topic_uid: 1,
        comment: String::new(),
        state: 1,
        create_time: 1,
        last_modify_time: 1,
        connector_id: None,
    }
}

on_both_backends! {
    async fn newest_generation_wins_survives_reopen_and_dies_with_its_subscription(backend) {
        let store = backend.open().await;
        store.insert_subscription(&sub("s1")).await.unwrap();
        store.insert_subscription(&sub("s2")).await.unwrap();
        for saved in [
            row("s1", 2, "two"),
            row("s1", 1, "one"),
            row("s2", 5, "five"),
            row("s2", 6, "six"),
            row("nobody", 1, "no such subscription"),
        ] {
            store.save_consumer_group(&saved).await.unwrap();
        }
        drop(store);

        let store = backend.open().await;
        let groups = store.load_consumer_groups().await.unwrap();
        assert_eq!(groups, vec![row("s1", 2, "two"), row("s2", 6, "six")]);

        store
            .delete_subscriptions(&["s1".to_string()])
            .await
            .unwrap();
        // a heartbeat that lost the race with the delete writes nothing back
        store
            .save_consumer_group(&row("s1", 3, "late"))
            .await
            .unwrap();
        let groups = store.load_consumer_groups().await.unwrap();
        assert_eq!(groups, vec![row("s2", 6, "six")]);
    }
}
