//! Connector definitions and their per-shard checkpoints (tables in `migrations/`).
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

use crate::store::{MetaError, MetaStore, Tx};
use crate::subscriptions::{insert_subscription_in, SubscriptionRow};

/// A connector as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRow {
    pub topic_uid: i64,
    pub connector_id: String,
    /// The type string, e.g. `sink_datahub`.
    pub kind: String,
    /// `CONNECTOR_RUNNING` or `CONNECTOR_STOPPED`.
    pub state: String,
    pub column_fields: Vec<String>,
    /// The normalized configuration, a JSON object.
    pub config: String,
    pub creator: String,
    /// Milliseconds; -1 = from the oldest record.
    pub start_time: i64,
    /// Seconds since the epoch.
    pub create_time: i64,
    pub last_modify_time: i64,
}

/// Where one (connector, shard) task resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRow {
    pub shard_id: u32,
    /// First sequence not yet delivered.
    pub next_seq: u64,
    /// System time (ms) of the last delivered record, -1 if none.
    pub last_time: i64,
    pub discard_count: u64,
    /// The shard is closed and was delivered to its end.
    pub finished: bool,
    /// Milliseconds.
    pub update_time: i64,
    /// Rows the sink wrote late (SINK_ODPS: into a partition that already had `_SUCCESS`).
    pub late_count: u64,
}

fn columns_text(c: &[String]) -> String {
    serde_json::to_string(c).expect("list of strings serializes")
}

impl MetaStore {
    /// Every connector, ordered by topic and id.
    pub async fn load_connectors(&self) -> Result<Vec<ConnectorRow>, MetaError> {
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

    /// Inserts a new connector and the subscription that backs it, in one transaction: both
    /// or neither. `sub.connector_id` must name the connector.
    pub async fn insert_connector_with_subscription(
        &self,
        c: &ConnectorRow,
        sub: &SubscriptionRow,
    ) -> Result<(), MetaError> {
        if sub.connector_id.as_deref() != Some(c.connector_id.as_str())
            || sub.topic_uid != c.topic_uid
        {
            return Err(MetaError::Decode(format!(
                "subscription {} does not belong to connector {}",
                sub.sub_id, c.connector_id
            )));
        }
        self.write(|tx| {
            Box::pin(async move {
                upsert_connector_in(tx, c).await?;
                insert_subscription_in(tx, sub).await
            })
        })
        .await
    }

    /// Inserts a new connector or replaces the stored definition of an existing one.
    pub async fn upsert_connector(&self, c: &ConnectorRow) -> Result<(), MetaError> {
        self.write(|tx| Box::pin(async move { upsert_connector_in(tx, c).await }))
            .await
    }
}

/// Inserts or replaces a connector inside an open write transaction.
async fn upsert_connector_in(tx: &mut Tx<'_>, c: &ConnectorRow) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT OR REPLACE INTO connectors (topic_uid, connector_id, kind, state, \
         column_fields, config, creator, start_time, create_time, last_modify_time) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
/// given), inside an open transaction.
async fn delete_connector_subscriptions_in(
    tx: &mut Tx<'_>,
    filter: &str,
    topic_uid: i64,
    connector_id: Option<&str>,
) -> Result<(), MetaError> {
    let ids =
        format!("SELECT sub_id FROM subscriptions WHERE connector_id IS NOT NULL AND {filter}");
    for table in ["sub_offsets", "consumer_groups", "subscriptions"] {
        let sql = format!("DELETE FROM {table} WHERE sub_id IN ({ids})");
        let mut q = sqlx::query(&sql).bind(topic_uid);
        if let Some(id) = connector_id {
            q = q.bind(id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl MetaStore {
    /// Removes a connector and its subscription (offsets = checkpoints) in one transaction.
    pub async fn delete_connector(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM connectors WHERE topic_uid = ? AND connector_id = ?")
                    .bind(topic_uid)
                    .bind(connector_id)
                    .execute(&mut **tx)
                    .await?;
                delete_connector_subscriptions_in(
                    tx,
                    "topic_uid = ? AND connector_id = ?",
                    topic_uid,
                    Some(connector_id),
                )
                .await
            })
        })
        .await
    }

    /// Removes every connector of a topic and their subscriptions.
    pub async fn delete_topic_connectors(&self, topic_uid: i64) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM connectors WHERE topic_uid = ?")
                    .bind(topic_uid)
                    .execute(&mut **tx)
                    .await?;
                delete_connector_subscriptions_in(tx, "topic_uid = ?", topic_uid, None).await
            })
        })
        .await
    }

    /// The checkpoints of one connector, by shard.
    pub async fn load_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<Vec<CheckpointRow>, MetaError> {
        let rows = sqlx::query(
            "SELECT o.shard_id, o.sequence, o.timestamp, o.discard_count, o.read_end, \
             o.update_time, o.late_count FROM sub_offsets o JOIN subscriptions s ON s.sub_id = o.sub_id \
             WHERE s.topic_uid = ? AND s.connector_id = ? AND o.sequence >= 0 \
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
                finished: r.get::<i64, _>(4) != 0,
                update_time: r.get(5),
                late_count: r.get::<i64, _>(6) as u64,
            })
            .collect())
    }

    /// Saves checkpoints of one connector, as its subscription's offsets, in one transaction.
    /// The subscription API's own columns (batch index, version, session) are kept. Fails
    /// with [`MetaError::Decode`] when the connector has no subscription.
    pub async fn save_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
        checkpoints: &[CheckpointRow],
    ) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                let sub_id: Option<String> = sqlx::query_scalar(
                    "SELECT sub_id FROM subscriptions WHERE topic_uid = ? AND connector_id = ?",
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, -1, ?) \
                 ON CONFLICT (sub_id, shard_id) DO UPDATE SET sequence = excluded.sequence, \
                 timestamp = excluded.timestamp, read_end = excluded.read_end, \
                 discard_count = excluded.discard_count, update_time = excluded.update_time, \
                 late_count = excluded.late_count",
            )
            .bind(&sub_id)
            .bind(i64::from(c.shard_id))
            .bind(c.next_seq as i64)
            .bind(c.last_time)
            .bind(i64::from(c.finished))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OffsetRow;

    #[tokio::test]
    async fn connectors_and_checkpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("meta.db")).await.unwrap();
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
