//! SQLite: projects, topics, schema versions and shards (the catalog the server loads at start).

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::SqliteStore;
use crate::rows::{ProjectRow, SchemaRow, ShardRow, Snapshot, TopicRow};
use crate::MetaError;

fn parents_text(parents: &[u32]) -> String {
    serde_json::to_string(parents).expect("list of numbers serializes")
}

impl SqliteStore {
    /// Reads every row, for the server's in-memory catalog.
    pub(crate) async fn load(&self) -> Result<Snapshot, MetaError> {
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

    pub(crate) async fn insert_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO projects (name, comment, create_time, last_modify_time) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&p.name)
                .bind(&p.comment)
                .bind(p.create_time)
                .bind(p.last_modify_time)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn update_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query("UPDATE projects SET comment = ?, last_modify_time = ? WHERE name = ?")
                    .bind(&p.comment)
                    .bind(p.last_modify_time)
                    .bind(&p.name)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn delete_project(&self, name: &str) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM projects WHERE name = ?")
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Creates a topic with its shards and first schema version in one transaction; returns
    /// the topic's new uid (the `uid` field of `topic` and `topic_uid` of the others are ignored).
    /// `prepare` runs inside the transaction with the new uid, before the COMMIT (the server
    /// creates the shard logs there): if it fails, nothing is committed.
    pub(crate) async fn insert_topic<R, E, P>(
        &self,
        topic: &TopicRow,
        shards: &[ShardRow],
        schema: Option<&SchemaRow>,
        prepare: P,
    ) -> Result<(i64, R), E>
    where
        R: Send,
        E: From<MetaError> + Send,
        P: FnOnce(i64) -> Result<R, E> + Send,
    {
        self.write_catalog(|tx| {
            Box::pin(async move {
                let uid = insert_topic_rows(tx, topic, shards, schema).await?;
                let prepared = prepare(uid)?;
                Ok((uid, prepared))
            })
        })
        .await
    }

    pub(crate) async fn update_topic(&self, t: &TopicRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE topics SET lifecycle_days = ?, comment = ?, last_modify_time = ?, \
                     schema_version = ? WHERE uid = ?",
                )
                .bind(t.lifecycle_days)
                .bind(&t.comment)
                .bind(t.last_modify_time)
                .bind(t.schema_version)
                .bind(t.uid)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Removes a topic with its schemas and shards.
    pub(crate) async fn delete_topic(&self, uid: i64) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                for table in ["schemas", "shards"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE topic_uid = ?"))
                        .bind(uid)
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query("DELETE FROM topics WHERE uid = ?")
                    .bind(uid)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn insert_schema(&self, s: &SchemaRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| Box::pin(insert_schema(tx, s.topic_uid, s)))
            .await
    }

    pub(crate) async fn delete_schema(
        &self,
        topic_uid: i64,
        version_id: i32,
    ) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM schemas WHERE topic_uid = ? AND version_id = ?")
                    .bind(topic_uid)
                    .bind(version_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Applies a topology change (split, merge, extend) atomically: closes `closed` shards at
    /// `closed_time`, adds `created`, and sets the hash ranges of shards `0..ranges.len()`
    /// (an extend re-divides the space; empty otherwise). `prepare` runs before the COMMIT
    /// (the server opens the new shards' logs there): if it fails, nothing is committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn change_shards<R, E, P>(
        &self,
        topic_uid: i64,
        closed: &[u32],
        closed_time: i64,
        created: &[ShardRow],
        ranges: &[(String, String)],
        prepare: P,
    ) -> Result<R, E>
    where
        R: Send,
        E: From<MetaError> + Send,
        P: FnOnce() -> Result<R, E> + Send,
    {
        self.write_catalog(|tx| {
            Box::pin(async move {
                change_shard_rows(tx, topic_uid, closed, closed_time, created, ranges).await?;
                prepare()
            })
        })
        .await
    }
}

async fn insert_topic_rows(
    conn: &mut SqliteConnection,
    topic: &TopicRow,
    shards: &[ShardRow],
    schema: Option<&SchemaRow>,
) -> Result<i64, MetaError> {
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
    .fetch_one(&mut *conn)
    .await?
    .get(0);
    for s in shards {
        insert_shard(conn, uid, s).await?;
    }
    if let Some(s) = schema {
        insert_schema(conn, uid, s).await?;
    }
    Ok(uid)
}

async fn change_shard_rows(
    conn: &mut SqliteConnection,
    topic_uid: i64,
    closed: &[u32],
    closed_time: i64,
    created: &[ShardRow],
    ranges: &[(String, String)],
) -> Result<(), MetaError> {
    for id in closed {
        sqlx::query(
            "UPDATE shards SET state = 'CLOSED', closed_time = ? \
             WHERE topic_uid = ? AND shard_id = ?",
        )
        .bind(closed_time)
        .bind(topic_uid)
        .bind(*id as i64)
        .execute(&mut *conn)
        .await?;
    }
    for s in created {
        insert_shard(conn, topic_uid, s).await?;
    }
    for (id, (begin, end)) in ranges.iter().enumerate() {
        sqlx::query(
            "UPDATE shards SET begin_key = ?, end_key = ? \
             WHERE topic_uid = ? AND shard_id = ?",
        )
        .bind(begin)
        .bind(end)
        .bind(topic_uid)
        .bind(id as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_shard(
    conn: &mut SqliteConnection,
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
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_schema(
    conn: &mut SqliteConnection,
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
    .execute(conn)
    .await?;
    Ok(())
}
