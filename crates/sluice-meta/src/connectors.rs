//! Connector definitions and their per-shard checkpoints (tables in `migrations/`).
//!
//! A checkpoint says where a connector's task for one shard resumes: `next_seq` is the first
//! sequence not yet written and flushed to the sink; it is saved only after a flush.

use sqlx::Row;

use crate::store::{MetaError, MetaStore};

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

    /// Inserts a new connector or replaces the stored definition of an existing one.
    pub async fn upsert_connector(&self, c: &ConnectorRow) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
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
            })
        })
        .await
    }

    /// Removes a connector and its checkpoints in one transaction.
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
                sqlx::query(
                    "DELETE FROM connector_checkpoints WHERE topic_uid = ? AND connector_id = ?",
                )
                .bind(topic_uid)
                .bind(connector_id)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Removes every connector of a topic and their checkpoints.
    pub async fn delete_topic_connectors(&self, topic_uid: i64) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                for table in ["connectors", "connector_checkpoints"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE topic_uid = ?"))
                        .bind(topic_uid)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
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
            "SELECT shard_id, next_seq, last_time, discard_count, finished, update_time \
             FROM connector_checkpoints WHERE topic_uid = ? AND connector_id = ? ORDER BY shard_id",
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
            })
            .collect())
    }

    /// Saves (inserts or replaces) checkpoints of one connector in one transaction.
    pub async fn save_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
        checkpoints: &[CheckpointRow],
    ) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                for c in checkpoints {
                    sqlx::query(
                "INSERT OR REPLACE INTO connector_checkpoints (topic_uid, connector_id, shard_id, \
                 next_seq, last_time, discard_count, finished, update_time) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(topic_uid)
            .bind(connector_id)
            .bind(i64::from(c.shard_id))
            .bind(c.next_seq as i64)
            .bind(c.last_time)
            .bind(c.discard_count as i64)
            .bind(i64::from(c.finished))
            .bind(c.update_time)
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
        store.upsert_connector(&row).await.unwrap();
        assert_eq!(store.load_connectors().await.unwrap(), vec![row.clone()]);
        let cp = CheckpointRow {
            shard_id: 3,
            next_seq: 10,
            last_time: 99,
            discard_count: 1,
            finished: true,
            update_time: 5,
        };
        store.save_checkpoints(7, "c1", &[cp]).await.unwrap();
        assert_eq!(store.load_checkpoints(7, "c1").await.unwrap(), vec![cp]);
        store.delete_connector(7, "c1").await.unwrap();
        assert!(store.load_connectors().await.unwrap().is_empty());
        assert!(store.load_checkpoints(7, "c1").await.unwrap().is_empty());
    }
}
