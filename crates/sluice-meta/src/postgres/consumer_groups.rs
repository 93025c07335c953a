//! PostgreSQL: the consumer group of each subscription: its members, their assignments and who
//! holds which shard, stored as one opaque document per subscription (the server owns its shape) so
//! that a group outlives a restart of the server and running consumers keep their ids and shards.
//!
//! Every save carries a generation; a save never replaces a newer generation, so concurrent
//! writers that finish out of order leave the latest state behind.

use sqlx::Row;

use super::fenced::check_guard;
use super::PgStore;
use crate::rows::{ConsumerGroupRow, LeaseGuard};
use crate::MetaError;

impl PgStore {
    /// Every stored consumer group.
    pub(crate) async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRow>, MetaError> {
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
    /// is gone (a heartbeat racing with a delete leaves nothing behind: the save reads the
    /// subscription's row `FOR SHARE` first, and a delete removes that row before the group's).
    /// Not a catalog change: only the subscription's owner serves its group, and a node taking it
    /// over loads the stored document, so other nodes have nothing to reload.
    pub(crate) async fn save_consumer_group(
        &self,
        row: &ConsumerGroupRow,
        guard: Option<&LeaseGuard>,
    ) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                check_guard(tx, guard).await?;
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM subscriptions WHERE sub_id = $1 FOR SHARE")
                        .bind(&row.sub_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                if exists.is_none() {
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO consumer_groups (sub_id, generation, state) SELECT $1, $2, $3 \
             WHERE EXISTS (SELECT 1 FROM subscriptions WHERE sub_id = $4) \
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
