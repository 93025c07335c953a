//! PostgreSQL: what a node reads when it takes over one subscription (cluster mode): that
//! subscription's row, offsets and stored consumer group, from one snapshot, by key. Taking
//! over must not cost a load of every subscription in the hub.

use sqlx::Row;

use super::subscriptions::{
    offset_columns, offset_from_row, subscription_columns, subscription_from_row,
};
use super::PgStore;
use crate::rows::{ConsumerGroupRow, StoredSubscription};
use crate::MetaError;

impl PgStore {
    /// The subscription `sub_id` with its offsets and group, or `None` if it does not exist.
    pub(crate) async fn load_subscription(
        &self,
        sub_id: &str,
    ) -> Result<Option<StoredSubscription>, MetaError> {
        let mut tx = self.snapshot().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions WHERE sub_id = $1"
        ))
        .bind(sub_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let offsets = sqlx::query(concat!(
            "SELECT ",
            offset_columns!(),
            " FROM sub_offsets WHERE sub_id = $1 ORDER BY shard_id"
        ))
        .bind(sub_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(offset_from_row)
        .collect();
        let group =
            sqlx::query("SELECT sub_id, generation, state FROM consumer_groups WHERE sub_id = $1")
                .bind(sub_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| ConsumerGroupRow {
                    sub_id: r.get(0),
                    generation: r.get(1),
                    state: r.get(2),
                });
        tx.commit().await?;
        Ok(Some(StoredSubscription {
            row: subscription_from_row(&row),
            offsets,
            group,
        }))
    }
}
