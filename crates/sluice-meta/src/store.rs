//! [`MetaStore`]: the metadata tables in an embedded SQLite file.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::rows::{ProjectRow, SchemaRow, ShardRow, Snapshot, TopicRow};

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata store holds an unreadable value: {0}")]
    Decode(String),
}

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) pool: SqlitePool,
}

const SCHEMA: &str = include_str!("schema.sql");

fn parents_text(parents: &[u32]) -> String {
    serde_json::to_string(parents).expect("list of numbers serializes")
}

impl MetaStore {
    /// Opens (creating if missing) the SQLite file at `path` and its tables.
    pub async fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let statements = SCHEMA
            .split(';')
            .chain(crate::connectors::CONNECTOR_SCHEMA.split(';'));
        for statement in statements.filter(|s| !s.trim().is_empty()) {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(MetaStore { pool })
    }

    /// Reads every row, for the server's in-memory catalog.
    pub async fn load(&self) -> Result<Snapshot, MetaError> {
        let projects = sqlx::query(
            "SELECT name, comment, create_time, last_modify_time FROM projects ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| ProjectRow {
            name: r.get(0),
            comment: r.get(1),
            create_time: r.get(2),
            last_modify_time: r.get(3),
        })
        .collect();
        let topics = sqlx::query(
            "SELECT uid, project, name, record_type, lifecycle_days, comment, expand_mode, \
             create_time, last_modify_time, schema_version FROM topics ORDER BY uid",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| TopicRow {
            uid: r.get(0),
            project: r.get(1),
            name: r.get(2),
            record_type: r.get(3),
            lifecycle_days: r.get(4),
            comment: r.get(5),
            expand_mode: r.get(6),
            create_time: r.get(7),
            last_modify_time: r.get(8),
            schema_version: r.get(9),
        })
        .collect();
        let schemas = sqlx::query(
            "SELECT topic_uid, version_id, schema_json, create_time, creator FROM schemas \
             ORDER BY topic_uid, version_id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| SchemaRow {
            topic_uid: r.get(0),
            version_id: r.get(1),
            schema_json: r.get(2),
            create_time: r.get(3),
            creator: r.get(4),
        })
        .collect();
        let mut shards = Vec::new();
        for r in sqlx::query(
            "SELECT topic_uid, shard_id, state, begin_key, end_key, parents, create_time, \
             closed_time FROM shards ORDER BY topic_uid, shard_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let parents: String = r.get(5);
            let shard_id: i64 = r.get(1);
            shards.push(ShardRow {
                topic_uid: r.get(0),
                shard_id: shard_id as u32,
                state: r.get(2),
                begin_key: r.get(3),
                end_key: r.get(4),
                parents: serde_json::from_str(&parents)
                    .map_err(|e| MetaError::Decode(format!("shard parents {parents:?}: {e}")))?,
                create_time: r.get(6),
                closed_time: r.get(7),
            });
        }
        Ok(Snapshot {
            projects,
            topics,
            schemas,
            shards,
        })
    }

    pub async fn insert_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO projects (name, comment, create_time, last_modify_time) VALUES (?, ?, ?, ?)",
        )
        .bind(&p.name)
        .bind(&p.comment)
        .bind(p.create_time)
        .bind(p.last_modify_time)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        sqlx::query("UPDATE projects SET comment = ?, last_modify_time = ? WHERE name = ?")
            .bind(&p.comment)
            .bind(p.last_modify_time)
            .bind(&p.name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_project(&self, name: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM projects WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Creates a topic with its shards and first schema version in one transaction; returns
    /// the topic's new uid (the `uid` field of `topic` and `topic_uid` of the others are ignored).
    pub async fn insert_topic(
        &self,
        topic: &TopicRow,
        shards: &[ShardRow],
        schema: Option<&SchemaRow>,
    ) -> Result<i64, MetaError> {
        let mut tx = self.pool.begin().await?;
        let uid: i64 = sqlx::query(
            "INSERT INTO topics (project, name, record_type, lifecycle_days, comment, expand_mode, \
             create_time, last_modify_time, schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING uid",
        )
        .bind(&topic.project)
        .bind(&topic.name)
        .bind(&topic.record_type)
        .bind(topic.lifecycle_days)
        .bind(&topic.comment)
        .bind(&topic.expand_mode)
        .bind(topic.create_time)
        .bind(topic.last_modify_time)
        .bind(topic.schema_version)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        for s in shards {
            insert_shard(&mut tx, uid, s).await?;
        }
        if let Some(s) = schema {
            insert_schema(&mut tx, uid, s).await?;
        }
        tx.commit().await?;
        Ok(uid)
    }

    pub async fn update_topic(&self, t: &TopicRow) -> Result<(), MetaError> {
        sqlx::query(
            "UPDATE topics SET lifecycle_days = ?, comment = ?, last_modify_time = ?, \
             schema_version = ? WHERE uid = ?",
        )
        .bind(t.lifecycle_days)
        .bind(&t.comment)
        .bind(t.last_modify_time)
        .bind(t.schema_version)
        .bind(t.uid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a topic with its schemas and shards.
    pub async fn delete_topic(&self, uid: i64) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        for table in ["schemas", "shards"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE topic_uid = ?"))
                .bind(uid)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM topics WHERE uid = ?")
            .bind(uid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_schema(&self, s: &SchemaRow) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        insert_schema(&mut tx, s.topic_uid, s).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_schema(&self, topic_uid: i64, version_id: i32) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM schemas WHERE topic_uid = ? AND version_id = ?")
            .bind(topic_uid)
            .bind(version_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies a topology change (split, merge, extend) atomically: closes `closed` shards at
    /// `closed_time` and adds `created`.
    pub async fn change_shards(
        &self,
        topic_uid: i64,
        closed: &[u32],
        closed_time: i64,
        created: &[ShardRow],
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        for id in closed {
            sqlx::query(
                "UPDATE shards SET state = 'CLOSED', closed_time = ? WHERE topic_uid = ? AND shard_id = ?",
            )
            .bind(closed_time)
            .bind(topic_uid)
            .bind(*id as i64)
            .execute(&mut *tx)
            .await?;
        }
        for s in created {
            insert_shard(&mut tx, topic_uid, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets the hash ranges of shards `0..ranges.len()` (after an extend re-divides the space).
    pub async fn rerange_shards(
        &self,
        topic_uid: i64,
        ranges: &[(String, String)],
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        for (id, (begin, end)) in ranges.iter().enumerate() {
            sqlx::query(
                "UPDATE shards SET begin_key = ?, end_key = ? WHERE topic_uid = ? AND shard_id = ?",
            )
            .bind(begin)
            .bind(end)
            .bind(topic_uid)
            .bind(id as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_shard(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    uid: i64,
    s: &ShardRow,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO shards (topic_uid, shard_id, state, begin_key, end_key, parents, create_time, \
         closed_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(uid)
    .bind(s.shard_id as i64)
    .bind(&s.state)
    .bind(&s.begin_key)
    .bind(&s.end_key)
    .bind(parents_text(&s.parents))
    .bind(s.create_time)
    .bind(s.closed_time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_schema(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    uid: i64,
    s: &SchemaRow,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO schemas (topic_uid, version_id, schema_json, create_time, creator) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(uid)
    .bind(s.version_id)
    .bind(&s.schema_json)
    .bind(s.create_time)
    .bind(&s.creator)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::open(&path).await.unwrap();
        let p = ProjectRow {
            name: "proj".into(),
            comment: "c".into(),
            create_time: 1,
            last_modify_time: 2,
        };
        store.insert_project(&p).await.unwrap();
        let dup = ProjectRow {
            name: "PROJ".into(),
            ..p.clone()
        };
        assert!(
            store.insert_project(&dup).await.is_err(),
            "names are case-insensitive"
        );
        let t = TopicRow {
            uid: 0,
            project: "proj".into(),
            name: "t".into(),
            record_type: "TUPLE".into(),
            lifecycle_days: 3,
            comment: "".into(),
            expand_mode: "split".into(),
            create_time: 1,
            last_modify_time: 1,
            schema_version: 0,
        };
        let shard = ShardRow {
            topic_uid: 0,
            shard_id: 0,
            state: "ACTIVE".into(),
            begin_key: "0".repeat(32),
            end_key: "F".repeat(32),
            parents: vec![],
            create_time: 1,
            closed_time: 0,
        };
        let schema = SchemaRow {
            topic_uid: 0,
            version_id: 0,
            schema_json: "{}".into(),
            create_time: 1,
            creator: "root".into(),
        };
        let uid = store
            .insert_topic(&t, std::slice::from_ref(&shard), Some(&schema))
            .await
            .unwrap();
        let child = ShardRow {
            shard_id: 1,
            parents: vec![0],
            ..shard.clone()
        };
        store.change_shards(uid, &[0], 99, &[child]).await.unwrap();
        drop(store);

        let store = MetaStore::open(&path).await.unwrap();
        let snap = store.load().await.unwrap();
        assert_eq!(snap.projects, vec![p]);
        assert_eq!(snap.topics.len(), 1);
        assert_eq!(snap.topics[0].uid, uid);
        assert_eq!(snap.topics[0].schema_version, 0);
        assert_eq!(snap.schemas[0].topic_uid, uid);
        assert_eq!(snap.shards.len(), 2);
        assert_eq!(snap.shards[0].state, "CLOSED");
        assert_eq!(snap.shards[0].closed_time, 99);
        assert_eq!(snap.shards[1].parents, vec![0]);
        store.delete_topic(uid).await.unwrap();
        let snap = store.load().await.unwrap();
        assert!(snap.topics.is_empty() && snap.shards.is_empty() && snap.schemas.is_empty());
    }
}
