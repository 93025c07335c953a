//! PostgreSQL: connector definitions and their per-shard checkpoints (tables in
//! `migrations/postgres/`).
//!
//! A checkpoint says where a connector's task for one shard resumes: `next_seq` is the first
//! sequence not yet written and flushed to the sink; it is saved only after a flush.
//!
//! Every connector owns one subscription on its topic (`subscriptions.connector_id`), made in
//! the same transaction as the connector and deleted with it. The checkpoints ARE that
//! subscription's offset rows (`sub_offsets`, migration 2): `next_seq` is the offset's
//! `sequence` (as on the service, where a connector's CurrentSequence equals its
//! subscription's offset Sequence), `last_time` its `timestamp`, `finished` its `read_end`,
//! and `discard_count`/`update_time`/`late_count` columns only checkpoints write. A row whose
//! `sequence` is negative (a subscription session opened, nothing committed) is no
//! checkpoint.

use sqlx::Row;

use super::fenced::check_guard;
use super::subscriptions::insert_subscription_in;
use super::{PgStore, Tx};
use crate::rows::{CheckpointRow, ConnectorRow, LeaseGuard, SubscriptionRow};
use crate::MetaError;

fn columns_text(c: &[String]) -> String {
    serde_json::to_string(c).expect("list of strings serializes")
}

impl PgStore {
    /// Every connector, ordered by topic and id.
    pub(crate) async fn load_connectors(&self) -> Result<Vec<ConnectorRow>, MetaError> {
        let rows = sqlx::query(
            "SELECT topic_uid, connector_id, kind, state, column_fields, config, creator, \
             start_time, create_time, last_modify_time FROM connectors \
             ORDER BY topic_uid, connector_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let cols: String = r.get(4);
                Ok(ConnectorRow {
                    topic_uid: r.get(0),
                    connector_id: r.get(1),
                    kind: r.get(2),
                    state: r.get(3),
                    column_fields: serde_json::from_str(&cols).map_err(|e| {
                        MetaError::Decode(format!("connector column fields {cols:?}: {e}"))
                    })?,
                    config: r.get(5),
                    creator: r.get(6),
                    start_time: r.get(7),
                    create_time: r.get(8),
                    last_modify_time: r.get(9),
                })
            })
            .collect()
    }

    /// Inserts a new connector and the subscription that backs it, in one transaction (the
    /// door checked that they belong together).
    pub(crate) async fn insert_connector_with_subscription(
        &self,
        c: &ConnectorRow,
        sub: &SubscriptionRow,
    ) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                upsert_connector_in(tx, c).await?;
                insert_subscription_in(tx, sub).await
            })
        })
        .await
    }

    /// Inserts a new connector or replaces the stored definition of an existing one.
    pub(crate) async fn upsert_connector(&self, c: &ConnectorRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| Box::pin(async move { upsert_connector_in(tx, c).await }))
            .await
    }
}

/// Inserts or replaces a connector inside an open write transaction.
async fn upsert_connector_in(tx: &mut Tx<'_>, c: &ConnectorRow) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO connectors (topic_uid, connector_id, kind, state, \
         column_fields, config, creator, start_time, create_time, last_modify_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (topic_uid, connector_id) DO UPDATE SET kind = excluded.kind, \
         state = excluded.state, column_fields = excluded.column_fields, \
         config = excluded.config, creator = excluded.creator, \
         start_time = excluded.start_time, create_time = excluded.create_time, \
         last_modify_time = excluded.last_modify_time",
    )
    .bind(c.topic_uid)
    .bind(&c.connector_id)
    .bind(&c.kind)
    .bind(&c.state)
    .bind(columns_text(&c.column_fields))
    .bind(&c.config)
    .bind(&c.creator)
    .bind(c.start_time)
    .bind(c.create_time)
    .bind(c.last_modify_time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes the subscriptions (with offsets and consumer groups) of the connectors selected by
/// `filter` (a condition on `subscriptions` binding the topic uid, then the connector id if
/// given), inside an open transaction. The subscription rows go first: that waits for any
/// checkpoint save holding them (`FOR SHARE`), whose offsets are then deleted too.
async fn delete_connector_subscriptions_in(
    tx: &mut Tx<'_>,
    filter: &str,
    topic_uid: i64,
    connector_id: Option<&str>,
) -> Result<(), MetaError> {
    let sql = format!(
        "DELETE FROM subscriptions WHERE connector_id IS NOT NULL AND {filter} RETURNING sub_id"
    );
    let mut q = sqlx::query_scalar(&sql).bind(topic_uid);
    if let Some(id) = connector_id {
        q = q.bind(id);
    }
    let ids: Vec<String> = q.fetch_all(&mut **tx).await?;
    for table in ["sub_offsets", "consumer_groups"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE sub_id = ANY($1)"))
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl PgStore {
    /// Removes a connector and its subscription (offsets = checkpoints) in one transaction.
    pub(crate) async fn delete_connector(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM connectors WHERE topic_uid = $1 AND connector_id = $2")
                    .bind(topic_uid)
                    .bind(connector_id)
                    .execute(&mut **tx)
                    .await?;
                delete_connector_subscriptions_in(
                    tx,
                    "topic_uid = $1 AND connector_id = $2",
                    topic_uid,
                    Some(connector_id),
                )
                .await
            })
        })
        .await
    }

    /// Removes every connector of a topic and their subscriptions.
    pub(crate) async fn delete_topic_connectors(&self, topic_uid: i64) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM connectors WHERE topic_uid = $1")
                    .bind(topic_uid)
                    .execute(&mut **tx)
                    .await?;
                delete_connector_subscriptions_in(tx, "topic_uid = $1", topic_uid, None).await
            })
        })
        .await
    }

    /// The checkpoints of one connector, by shard.
    pub(crate) async fn load_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<Vec<CheckpointRow>, MetaError> {
        let rows = sqlx::query(
            "SELECT o.shard_id, o.sequence, o.timestamp, o.discard_count, o.read_end, \
             o.update_time, o.late_count FROM sub_offsets o JOIN subscriptions s ON s.sub_id = o.sub_id \
             WHERE s.topic_uid = $1 AND s.connector_id = $2 AND o.sequence >= 0 \
             ORDER BY o.shard_id",
        )
        .bind(topic_uid)
        .bind(connector_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| CheckpointRow {
                shard_id: r.get::<i64, _>(0) as u32,
                next_seq: r.get::<i64, _>(1) as u64,
                last_time: r.get(2),
                discard_count: r.get::<i64, _>(3) as u64,
                finished: r.get(4),
                update_time: r.get(5),
                late_count: r.get::<i64, _>(6) as u64,
            })
            .collect())
    }

    /// Saves checkpoints of one connector, as its subscription's offsets, in one transaction.
    /// The subscription API's own columns (batch index, version, session) are kept. Fails
    /// with [`MetaError::Decode`] when the connector has no subscription.
    pub(crate) async fn save_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
        checkpoints: &[CheckpointRow],
        guard: Option<&LeaseGuard>,
    ) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                check_guard(tx, guard).await?;
                let sub_id: Option<String> = sqlx::query_scalar(
                    "SELECT sub_id FROM subscriptions WHERE topic_uid = $1 AND connector_id = $2 \
                     FOR SHARE",
                )
                .bind(topic_uid)
                .bind(connector_id)
                .fetch_optional(&mut **tx)
                .await?;
                let sub_id = sub_id.ok_or_else(|| {
                    MetaError::Decode(format!("connector {connector_id} has no subscription"))
                })?;
                for c in checkpoints {
                    sqlx::query(
                "INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, read_end, \
                 discard_count, update_time, batch_index, version, session_id, late_count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, -1, $8) \
                 ON CONFLICT (sub_id, shard_id) DO UPDATE SET sequence = excluded.sequence, \
                 timestamp = excluded.timestamp, read_end = excluded.read_end, \
                 discard_count = excluded.discard_count, update_time = excluded.update_time, \
                 late_count = excluded.late_count",
            )
            .bind(&sub_id)
            .bind(i64::from(c.shard_id))
            .bind(c.next_seq as i64)
            .bind(c.last_time)
            .bind(c.finished)
            .bind(c.discard_count as i64)
            .bind(c.update_time)
            .bind(c.late_count as i64)
            .execute(&mut **tx)
            .await?;
                }
                Ok(())
            })
        })
        .await
    }
}
