//! The consumer group of each subscription: its members, their assignments and who holds which
//! shard, stored as one opaque document per subscription (the server owns its shape) so that a
//! group outlives a restart of the server and running consumers keep their ids and shards.
//!
//! Every save carries a generation; a save never replaces a newer generation, so concurrent
//! writers that finish out of order leave the latest state behind.

use sqlx::Row;

use crate::store::{MetaError, MetaStore};

/// The stored state of one subscription's consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupRow {
    pub sub_id: String,
    /// Increases with every change of the group.
    pub generation: i64,
    /// The group as the server serialized it.
    pub state: String,
}

impl MetaStore {
    /// Every stored consumer group.
    pub async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRow>, MetaError> {
        Ok(
            sqlx::query("SELECT sub_id, generation, state FROM consumer_groups ORDER BY sub_id")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| ConsumerGroupRow {
                    sub_id: r.get(0),
                    generation: r.get(1),
                    state: r.get(2),
                })
                .collect(),
        )
    }

    /// Stores a group's state unless a newer generation is already stored or the subscription
    /// is gone (a heartbeat racing with a delete leaves nothing behind).
    pub async fn save_consumer_group(&self, row: &ConsumerGroupRow) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO consumer_groups (sub_id, generation, state) SELECT ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM subscriptions WHERE sub_id = ?) \
             ON CONFLICT (sub_id) DO UPDATE SET generation = excluded.generation, \
             state = excluded.state WHERE excluded.generation > consumer_groups.generation",
                )
                .bind(&row.sub_id)
                .bind(row.generation)
                .bind(&row.state)
                .bind(&row.sub_id)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubscriptionRow;

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

    #[tokio::test]
    async fn newest_generation_wins_survives_reopen_and_dies_with_its_subscription() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::open(&path).await.unwrap();
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

        let store = MetaStore::open(&path).await.unwrap();
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
