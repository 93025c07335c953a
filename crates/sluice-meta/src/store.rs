//! [`MetaStore`]: the metadata tables in an embedded SQLite file, and [`MetaStore::write`], the
//! one way a change reaches them.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool};

use crate::rows::{ProjectRow, SchemaRow, ShardRow, Snapshot, TopicRow};

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata store holds an unreadable value: {0}")]
    Decode(String),
    #[error("metadata schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the data dir was written by a newer Sluice: its metadata schema is version {found}, \
         this Sluice knows versions up to {known}; run that newer Sluice (or a later one)"
    )]
    TooNew { found: i64, known: i64 },
}

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) pool: SqlitePool,
}

/// The future of a write's body (see [`MetaStore::write`]).
pub(crate) type WriteFuture<'c, T, E = MetaError> =
    Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// The connection of one write transaction, lent to the body of [`MetaStore::write`]; it
/// dereferences to the SQLite connection. `'a` bounds what the body borrows from its caller.
///
/// Dropped without a successful COMMIT (a failed statement, a failed COMMIT, a cancelled
/// request), the connection is closed instead of going back to the pool: closing rolls back
/// whatever SQLite still holds open, and the next write starts on a fresh connection. So a
/// failure can never leave a transaction open that would swallow later changes.
pub(crate) struct Tx<'a> {
    conn: PoolConnection<Sqlite>,
    committed: bool,
    _borrows: PhantomData<&'a ()>,
}

impl Deref for Tx<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.committed {
            tracing::warn!("a metadata write failed; its connection is discarded");
            self.conn.close_on_drop();
        }
    }
}

fn parents_text(parents: &[u32]) -> String {
    serde_json::to_string(parents).expect("list of numbers serializes")
}

impl MetaStore {
    /// Opens (creating if missing) the SQLite file at `path` and brings its schema to this
    /// binary's version (see [`crate::migrate`]); refuses a store written by a newer Sluice.
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
        crate::migrate::migrate(&pool).await?;
        Ok(MetaStore { pool })
    }

    /// Runs `body` in one write transaction (BEGIN IMMEDIATE ... COMMIT) and returns its value
    /// only once the COMMIT succeeded, that is once the change is on disk. Every change to the
    /// store goes through here. On any failure the connection is discarded (see [`Tx`]) and
    /// the error returned, so the caller reports the failure and changes nothing in memory.
    pub(crate) async fn write<'a, T, E, F>(&self, body: F) -> Result<T, E>
    where
        E: From<MetaError>,
        F: for<'c> FnOnce(&'c mut Tx<'a>) -> WriteFuture<'c, T, E>,
    {
        let mut tx = Tx {
            conn: self.pool.acquire().await.map_err(MetaError::from)?,
            committed: false,
            _borrows: PhantomData,
        };
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *tx)
            .await
            .map_err(MetaError::from)?;
        let value = body(&mut tx).await?;
        sqlx::query("COMMIT")
            .execute(&mut *tx)
            .await
            .map_err(MetaError::from)?;
        tx.committed = true;
        Ok(value)
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
        self.write(|tx| {
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

    pub async fn update_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        self.write(|tx| {
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

    pub async fn delete_project(&self, name: &str) -> Result<(), MetaError> {
        self.write(|tx| {
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
    pub async fn insert_topic<R, E, P>(
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
        self.write(|tx| {
            Box::pin(async move {
                let uid = insert_topic_rows(tx, topic, shards, schema).await?;
                let prepared = prepare(uid)?;
                Ok((uid, prepared))
            })
        })
        .await
    }

    pub async fn update_topic(&self, t: &TopicRow) -> Result<(), MetaError> {
        self.write(|tx| {
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
    pub async fn delete_topic(&self, uid: i64) -> Result<(), MetaError> {
        self.write(|tx| {
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

    pub async fn insert_schema(&self, s: &SchemaRow) -> Result<(), MetaError> {
        self.write(|tx| Box::pin(insert_schema(tx, s.topic_uid, s)))
            .await
    }

    pub async fn delete_schema(&self, topic_uid: i64, version_id: i32) -> Result<(), MetaError> {
        self.write(|tx| {
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
    pub async fn change_shards<R, E, P>(
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
        self.write(|tx| {
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
            .insert_topic(&t, std::slice::from_ref(&shard), Some(&schema), |_| {
                Ok::<_, MetaError>(())
            })
            .await
            .unwrap()
            .0;
        let child = ShardRow {
            shard_id: 1,
            parents: vec![0],
            ..shard.clone()
        };
        store
            .change_shards(uid, &[0], 99, &[child], &[], || Ok::<_, MetaError>(()))
            .await
            .unwrap();
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

    /// A COMMIT that fails leaves SQLite's transaction open (here a deferred foreign key; in
    /// the field a full disk). The write must fail, and the next write must still commit:
    /// before the fix, later writes ran inside the dead transaction and were never committed.
    #[tokio::test]
    async fn a_failed_commit_does_not_swallow_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::open(&path).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
             PRAGMA foreign_keys = ON;",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let failed: Result<(), MetaError> = store
            .write(|tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO child (pid) VALUES (7)")
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                })
            })
            .await;
        assert!(failed.is_err(), "the COMMIT violates a foreign key");
        let p = ProjectRow {
            name: "after".into(),
            comment: "c".into(),
            create_time: 1,
            last_modify_time: 1,
        };
        store.insert_project(&p).await.unwrap();
        drop(store);
        let store = MetaStore::open(&path).await.unwrap();
        assert_eq!(store.load().await.unwrap().projects, vec![p]);
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM child")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(children, 0, "the failed write left nothing behind");
    }

    /// A failed statement inside a write (here SQLITE_FULL from a page limit on the
    /// connection) fails the write, commits none of it, and the connection is replaced.
    #[tokio::test]
    async fn a_full_store_fails_the_write_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = MetaStore::open(&path).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&store.pool)
            .await
            .unwrap();
        let big = ProjectRow {
            name: "big".into(),
            comment: "x".repeat(64 * 1024),
            create_time: 1,
            last_modify_time: 1,
        };
        let err = store.insert_project(&big).await.unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        let small = ProjectRow {
            name: "small".into(),
            ..big.clone()
        };
        store.insert_project(&small).await.unwrap();
        drop(store);
        let store = MetaStore::open(&path).await.unwrap();
        let names: Vec<String> = store
            .load()
            .await
            .unwrap()
            .projects
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["small".to_string()]);
    }
}
