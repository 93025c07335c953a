//! [`MetaStore`], the door: one API over two backends, the embedded SQLite file
//! ([`crate::sqlite`], the default) and a shared PostgreSQL database ([`crate::postgres`]).
//! Every method forwards to the backend the store was opened on; the SQL lives in the
//! backends' own files.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::postgres::PgStore;
use crate::rows::{
    AccessKeyRow, AuditRow, CheckedCommit, CheckpointRow, CommitConflict, ConnectorRow,
    ConsumerGroupRow, LeaseGuard, OffsetRow, ProjectRow, SchemaRow, ShardRow, Snapshot,
    StoredSubscription, SubscriptionRow, TopicRow,
};
use crate::sqlite::SqliteStore;

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata store holds an unreadable value: {0}")]
    Decode(String),
    #[error("metadata schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    // issue 14: leases
    /// A write guarded by a lease ([`LeaseGuard`]) found the lease lost: expired, or taken by
    /// another owner at a newer epoch. Nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A call that only the PostgreSQL backend (cluster mode) answers reached the embedded one.
    #[error("{0} need the PostgreSQL backend (cluster mode)")]
    ClusterOnly(String),
    #[error(
        "the data dir was written by a newer Sluice: its metadata schema is version {found}, \
         this Sluice knows versions up to {known}; run that newer Sluice (or a later one)"
    )]
    TooNew { found: i64, known: i64 },
}

// issue 14: leases
fn no_leases() -> MetaError {
    MetaError::Fenced("fenced writes need the PostgreSQL backend (cluster mode)".into())
}

fn cluster_only(what: &str) -> MetaError {
    MetaError::ClusterOnly(what.to_string())
}

/// The future of a write's body (see the backends' `write`).
pub(crate) type WriteFuture<'c, T, E = MetaError> =
    Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Forwards a method call to the store's backend.
macro_rules! forward {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            Backend::Sqlite(store) => store.$method($($arg),*).await,
            Backend::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl MetaStore {
    /// Opens (creating if missing) the SQLite file at `path` and brings its schema to this
    /// binary's version (see [`crate::migrate`]); refuses a store written by a newer Sluice.
    pub async fn open(path: &Path) -> Result<MetaStore, MetaError> {
        Ok(MetaStore {
            backend: Backend::Sqlite(SqliteStore::open(path).await?),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`)
    /// and brings its schema to this binary's version, holding a transaction-scoped advisory
    /// lock while it migrates, so that nodes starting together migrate once. TLS is set in the
    /// URL as for libpq: `sslmode` (`disable`, `prefer` (the default), `require`, `verify-ca`,
    /// `verify-full`) and `sslrootcert=<PEM file>`.
    pub async fn open_postgres(url: &str) -> Result<MetaStore, MetaError> {
        Ok(MetaStore {
            backend: Backend::Postgres(PgStore::open(url.parse()?).await?),
        })
    }

    /// Opens the store `target` names: a `postgres://` or `postgresql://` URL
    /// ([`Self::open_postgres`]), anything else a SQLite file path ([`Self::open`]).
    pub async fn connect(target: &str) -> Result<MetaStore, MetaError> {
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            MetaStore::open_postgres(target).await
        } else {
            MetaStore::open(Path::new(target)).await
        }
    }

    #[cfg(test)]
    pub(crate) fn from_postgres(store: PgStore) -> MetaStore {
        MetaStore {
            backend: Backend::Postgres(store),
        }
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The catalog version: a number bumped in the same transaction as every catalog change
    /// (projects, topics, schema versions, shards, subscriptions, connectors, consumer groups,
    /// access keys), so a node that read it before loading sees any later change as a
    /// different number. Offsets, checkpoints, a key's last use and the audit log are not
    /// catalog changes and leave it alone.
    pub async fn catalog_version(&self) -> Result<i64, MetaError> {
        forward!(self.catalog_version())
    }

    /// Reads every row, for the server's in-memory catalog.
    pub async fn load(&self) -> Result<Snapshot, MetaError> {
        forward!(self.load())
    }

    pub async fn insert_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        forward!(self.insert_project(p))
    }

    pub async fn update_project(&self, p: &ProjectRow) -> Result<(), MetaError> {
        forward!(self.update_project(p))
    }

    pub async fn delete_project(&self, name: &str) -> Result<(), MetaError> {
        forward!(self.delete_project(name))
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
        forward!(self.insert_topic(topic, shards, schema, prepare))
    }

    pub async fn update_topic(&self, t: &TopicRow) -> Result<(), MetaError> {
        forward!(self.update_topic(t))
    }

    /// Removes a topic with its schemas and shards.
    pub async fn delete_topic(&self, uid: i64) -> Result<(), MetaError> {
        forward!(self.delete_topic(uid))
    }

    pub async fn insert_schema(&self, s: &SchemaRow) -> Result<(), MetaError> {
        forward!(self.insert_schema(s))
    }

    pub async fn delete_schema(&self, topic_uid: i64, version_id: i32) -> Result<(), MetaError> {
        forward!(self.delete_schema(topic_uid, version_id))
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
        forward!(self.change_shards(topic_uid, closed, closed_time, created, ranges, prepare))
    }

    /// Every connector, ordered by topic and id.
    pub async fn load_connectors(&self) -> Result<Vec<ConnectorRow>, MetaError> {
        forward!(self.load_connectors())
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
        forward!(self.insert_connector_with_subscription(c, sub))
    }

    /// Inserts a new connector or replaces the stored definition of an existing one.
    pub async fn upsert_connector(&self, c: &ConnectorRow) -> Result<(), MetaError> {
        forward!(self.upsert_connector(c))
    }

    /// Removes a connector and its subscription (offsets = checkpoints) in one transaction.
    pub async fn delete_connector(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<(), MetaError> {
        forward!(self.delete_connector(topic_uid, connector_id))
    }

    /// Removes every connector of a topic and their subscriptions.
    pub async fn delete_topic_connectors(&self, topic_uid: i64) -> Result<(), MetaError> {
        forward!(self.delete_topic_connectors(topic_uid))
    }

    /// The checkpoints of one connector, by shard.
    pub async fn load_checkpoints(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Result<Vec<CheckpointRow>, MetaError> {
        forward!(self.load_checkpoints(topic_uid, connector_id))
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
        match &self.backend {
            Backend::Sqlite(store) => {
                store
                    .save_checkpoints(topic_uid, connector_id, checkpoints)
                    .await
            }
            Backend::Postgres(store) => {
                store
                    .save_checkpoints(topic_uid, connector_id, checkpoints, None)
                    .await
            }
        }
    }

    // issue 14: leases
    /// [`Self::save_checkpoints`] only while `guard`'s lease is held (checked in the same
    /// transaction, see [`LeaseGuard`]); [`MetaError::Fenced`] otherwise. PostgreSQL only: on
    /// SQLite (one node, no leases) it is refused.
    pub async fn save_checkpoints_fenced(
        &self,
        topic_uid: i64,
        connector_id: &str,
        checkpoints: &[CheckpointRow],
        guard: &LeaseGuard,
    ) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => {
                store
                    .save_checkpoints(topic_uid, connector_id, checkpoints, Some(guard))
                    .await
            }
        }
    }

    /// Every subscription and offset, for the server's in-memory registry.
    pub async fn load_subscriptions(
        &self,
    ) -> Result<(Vec<SubscriptionRow>, Vec<OffsetRow>), MetaError> {
        forward!(self.load_subscriptions())
    }

    /// One subscription with its offsets and stored consumer group (`None`: no such
    /// subscription), read from one snapshot: what a cluster node loads when it takes a
    /// subscription over.
    pub async fn load_subscription(
        &self,
        sub_id: &str,
    ) -> Result<Option<StoredSubscription>, MetaError> {
        match &self.backend {
            Backend::Postgres(store) => store.load_subscription(sub_id).await,
            // The embedded mode has no takeovers; answered from the full loads.
            Backend::Sqlite(store) => {
                let (rows, offsets) = store.load_subscriptions().await?;
                let Some(row) = rows.into_iter().find(|r| r.sub_id == sub_id) else {
                    return Ok(None);
                };
                let offsets = offsets.into_iter().filter(|o| o.sub_id == sub_id).collect();
                let group = store
                    .load_consumer_groups()
                    .await?
                    .into_iter()
                    .find(|g| g.sub_id == sub_id);
                Ok(Some(StoredSubscription {
                    row,
                    offsets,
                    group,
                }))
            }
        }
    }

    pub async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), MetaError> {
        forward!(self.insert_subscription(s))
    }

    /// Writes a subscription's comment, state and modification time.
    pub async fn update_subscription(&self, s: &SubscriptionRow) -> Result<(), MetaError> {
        forward!(self.update_subscription(s))
    }

    /// Removes subscriptions with their offsets and consumer groups, in one transaction.
    pub async fn delete_subscriptions(&self, sub_ids: &[String]) -> Result<(), MetaError> {
        forward!(self.delete_subscriptions(sub_ids))
    }

    /// Writes offsets (insert, or update the subscription API's columns of an existing row;
    /// a connector's discard count and update time are kept), all in one transaction: when
    /// this returns, they are durable.
    pub async fn put_offsets(&self, rows: &[OffsetRow]) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(store) => store.put_offsets(rows).await,
            Backend::Postgres(store) => store.put_offsets(rows, None).await,
        }
    }

    // issue 14: leases
    /// [`Self::put_offsets`] only while `guard`'s lease is held (see [`LeaseGuard`]);
    /// [`MetaError::Fenced`] otherwise. PostgreSQL only.
    pub async fn put_offsets_fenced(
        &self,
        rows: &[OffsetRow],
        guard: &LeaseGuard,
    ) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => store.put_offsets(rows, Some(guard)).await,
        }
    }

    /// Writes the session ids of offsets (a row that does not exist yet is inserted whole);
    /// the position of an existing row is left as it is, so an open never moves a connector
    /// that is writing its checkpoints at the same time.
    pub async fn put_sessions(&self, rows: &[OffsetRow]) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(store) => store.put_sessions(rows).await,
            Backend::Postgres(store) => store.put_sessions(rows, None).await,
        }
    }

    // issue 14: leases
    /// [`Self::put_sessions`] only while `guard`'s lease is held (see [`LeaseGuard`]);
    /// [`MetaError::Fenced`] otherwise. PostgreSQL only.
    pub async fn put_sessions_fenced(
        &self,
        rows: &[OffsetRow],
        guard: &LeaseGuard,
    ) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => store.put_sessions(rows, Some(guard)).await,
        }
    }

    // issue 14: offsets served at any node
    /// Commits positions of several shards of `sub_id` in one transaction, each checked against
    /// the stored session and version (see `postgres/offsets_anywhere.rs`): `Ok(Some(_))` says
    /// which check failed, and then nothing was written. PostgreSQL only (cluster mode; the
    /// embedded mode checks in memory).
    pub async fn commit_offsets_checked(
        &self,
        sub_id: &str,
        commits: &[CheckedCommit],
    ) -> Result<Option<CommitConflict>, MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(cluster_only("checked offset commits")),
            Backend::Postgres(store) => store.commit_offsets_checked(sub_id, commits).await,
        }
    }

    /// Opens a new session on each of `shards` of `sub_id` while `guard`'s lease holds and
    /// returns the rows as stored after the bump, in `shards`' order ([`MetaError::Fenced`]
    /// when the lease was lost). PostgreSQL only.
    pub async fn open_sessions(
        &self,
        sub_id: &str,
        shards: &[u32],
        guard: &LeaseGuard,
    ) -> Result<Vec<OffsetRow>, MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => store.open_sessions(sub_id, shards, guard).await,
        }
    }

    /// The stored offsets of `shards` of `sub_id` (a shard never opened has no row).
    /// PostgreSQL only.
    pub async fn load_offsets(
        &self,
        sub_id: &str,
        shards: &[u32],
    ) -> Result<Vec<OffsetRow>, MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(cluster_only("reading offsets from the store")),
            Backend::Postgres(store) => store.load_offsets(sub_id, shards).await,
        }
    }

    /// Writes the read-end flags of offsets (a missing row is inserted whole), leaving the
    /// position of an existing row as it is.
    pub async fn put_read_ends(&self, rows: &[OffsetRow]) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(store) => store.put_read_ends(rows).await,
            Backend::Postgres(store) => store.put_read_ends(rows, None).await,
        }
    }

    // issue 14: leases
    /// [`Self::put_read_ends`] only while `guard`'s lease is held (see [`LeaseGuard`]);
    /// [`MetaError::Fenced`] otherwise. PostgreSQL only.
    pub async fn put_read_ends_fenced(
        &self,
        rows: &[OffsetRow],
        guard: &LeaseGuard,
    ) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => store.put_read_ends(rows, Some(guard)).await,
        }
    }

    /// Every stored consumer group.
    pub async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRow>, MetaError> {
        forward!(self.load_consumer_groups())
    }

    /// Stores a group's state unless a newer generation is already stored or the subscription
    /// is gone (a heartbeat racing with a delete leaves nothing behind).
    pub async fn save_consumer_group(&self, row: &ConsumerGroupRow) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(store) => store.save_consumer_group(row).await,
            Backend::Postgres(store) => store.save_consumer_group(row, None).await,
        }
    }

    // issue 14: leases
    /// [`Self::save_consumer_group`] only while `guard`'s lease is held (checked in the same
    /// transaction, see [`LeaseGuard`]); [`MetaError::Fenced`] otherwise. PostgreSQL only.
    pub async fn save_consumer_group_fenced(
        &self,
        row: &ConsumerGroupRow,
        guard: &LeaseGuard,
    ) -> Result<(), MetaError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(no_leases()),
            Backend::Postgres(store) => store.save_consumer_group(row, Some(guard)).await,
        }
    }

    /// Every stored access key, by name.
    pub async fn load_access_keys(&self) -> Result<Vec<AccessKeyRow>, MetaError> {
        forward!(self.load_access_keys())
    }

    /// Inserts a key, or replaces the stored key of the same name.
    pub async fn save_access_key(&self, row: &AccessKeyRow) -> Result<(), MetaError> {
        forward!(self.save_access_key(row))
    }

    /// Deletes a key; returns whether it existed.
    pub async fn delete_access_key(&self, name: &str) -> Result<bool, MetaError> {
        forward!(self.delete_access_key(name))
    }

    /// Records when a key was last used (never moves the time backwards).
    pub async fn touch_access_key(&self, name: &str, time: i64) -> Result<(), MetaError> {
        forward!(self.touch_access_key(name, time))
    }

    /// Appends an entry to the audit log and returns its sequence number.
    pub async fn append_audit(&self, row: &AuditRow) -> Result<i64, MetaError> {
        forward!(self.append_audit(row))
    }

    /// Up to `limit` audit entries with a sequence number above `after`, oldest first.
    pub async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, MetaError> {
        forward!(self.list_audit(after, limit))
    }
}
