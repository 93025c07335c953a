//! The shard log on PostgreSQL.
//!
//! # Schema (created by [`PgLog::connect`], see `log_schema.rs`)
//!
//! * `shard_head(shard_key PK, state, next_seq, start_seq, archived_seq, last_time_ms)`: one
//!   row per shard. `state` is `ACTIVE` or `CLOSED`; `next_seq` is one past the last appended
//!   sequence; `start_seq` the oldest retained one (raised by retention); `archived_seq` one
//!   past the last sequence the archiver moved to the archive (its rows are deleted from
//!   `log_entry`: [`PgShardStore`] alone cannot read them, [`crate::archiver_read`]'s store
//!   can); `last_time_ms` the system time of the last append.
//! * `log_entry(shard_key, base_seq, count, system_time_ms, bytes)`: one row per put (a
//!   "frame"): `count` entries with sequences `base_seq ..= base_seq + count - 1` and one system
//!   time. `bytes` is the put's payloads as they came, each preceded by its length as a
//!   little-endian u32 (the body of the local log's frame). The table is range-partitioned by
//!   `system_time_ms` into UTC days (`log_entry_pYYYYMMDD`), created a few days ahead; retention
//!   drops whole partitions after raising the `start_seq` of the shards they held.
//!
//! # Appends: the sequencer
//!
//! An append is ONE autocommit statement (`log_append_sql.rs`): it locks the heads of the
//! shards it appends to in key order (`FOR UPDATE`), moves each (`next_seq = next_seq + n`,
//! `last_time_ms = GREATEST(last_time_ms, <primary's clock_timestamp() in ms>)` where `state =
//! 'ACTIVE'`) and inserts the puts' `log_entry` rows. The row locks are held through commit (and
//! the synchronous standby's flush), so sequences are dense and become visible in order; the
//! time is the primary's clock, clamped so it never goes backwards. A shard whose head was not
//! updated is closed ([`StoreError::Closed`]) or gone ([`StoreError::NotFound`]); the statement's
//! other shards are appended all the same.
//!
//! # Coalescing, and why an append is never cancelled
//!
//! Puts queue per shard; a node runs at most [`PgLogOptions::appends_in_flight`] statements at
//! a time, each taking the waiting puts of every shard not already in one (one `log_entry` row
//! per put, each caller getting its own sequences back), so one commit carries many shards'
//! puts when the node is busy. Statements run in tasks of their own; the caller only awaits a
//! channel. So dropping the caller's future (a client that went away, a request timeout, a
//! shutdown deadline) never cancels a statement, and the connections have
//! `statement_timeout = 0`: with synchronous replication, a commit whose wait for the standby
//! is cancelled stays committed on the primary without being replicated, and a failover would
//! lose an acknowledged-looking write. Shutdown calls [`PgLog::shutdown`], which refuses new
//! appends and waits, with no deadline, for those in flight.
//!
//! # Watching
//!
//! Appends through this node wake the shard's watchers at once. For other nodes' appends, one
//! poll per node every [`PgLogOptions::poll_interval`] reads `shard_head.next_seq` of the shards
//! somebody watches. No LISTEN/NOTIFY: NOTIFY takes a global lock at commit.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::{AppendInfo, Entry};
use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::sync::watch;

use crate::log_append::{Coalescer, Dispatcher};

/// Errors of the PostgreSQL shard log's own calls (connect, schema, shard administration).
/// Calls through [`ShardStore`] report [`StoreError`]s.
#[derive(thiserror::Error, Debug)]
pub enum PgLogError {
    /// The PostgreSQL URL or an option is invalid; the message names it.
    #[error("invalid cluster log configuration: {0}")]
    Config(String),
    /// A PostgreSQL error.
    #[error("PostgreSQL error: {0}")]
    Db(#[from] sqlx::Error),
    /// A `log_entry` row whose bytes do not hold its `count` entries.
    #[error("corrupt log_entry row of shard {shard_key:?} at sequence {base_seq}: {reason}")]
    Corrupt {
        shard_key: String,
        base_seq: u64,
        reason: String,
    },
    /// No `shard_head` row with this key.
    #[error("shard {0:?} does not exist")]
    NotFound(String),
    /// [`PgLog::shutdown`] was called.
    #[error("the cluster log is shut down")]
    ShutDown,
}

impl From<PgLogError> for StoreError {
    fn from(e: PgLogError) -> Self {
        match e {
            PgLogError::NotFound(_) => StoreError::NotFound,
            PgLogError::ShutDown => StoreError::Closed,
            other => StoreError::Backend(Box::new(other)),
        }
    }
}

/// Options of [`PgLog::connect`].
#[derive(Clone, Debug)]
pub struct PgLogOptions {
    /// Connections in the pool (the append statements in flight, reads, the poll, leases).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before an append or read fails (before any
    /// statement is sent, so no append is ever cut off by it).
    pub acquire_timeout: Duration,
    /// How often other nodes' appends are looked for, for the shards somebody watches.
    pub poll_interval: Duration,
    /// Most payload bytes packed into one append statement (one put is never split).
    pub max_statement_bytes: usize,
    /// Append statements this node runs at a time. Each takes the waiting puts of every shard
    /// not already in one, so fewer statements in flight means more puts per commit.
    pub appends_in_flight: usize,
    /// Daily partitions created ahead of today (UTC, by the primary's clock).
    pub partition_days_ahead: u32,
}

impl Default for PgLogOptions {
    fn default() -> Self {
        PgLogOptions {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            max_statement_bytes: 8 << 20,
            appends_in_flight: 1,
            partition_days_ahead: 2,
        }
    }
}

impl PgLogOptions {
    fn validate(&self) -> Result<(), PgLogError> {
        let bad = |m: &str| Err(PgLogError::Config(m.to_string()));
        if self.max_connections < 2 {
            return bad("max_connections must be at least 2");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval must be above zero");
        }
        if self.max_statement_bytes == 0 {
            return bad("max_statement_bytes must be above zero");
        }
        if self.appends_in_flight == 0 || self.appends_in_flight >= self.max_connections as usize {
            return bad("appends_in_flight must be at least 1 and below max_connections");
        }
        if self.partition_days_ahead == 0 {
            return bad("partition_days_ahead must be at least 1");
        }
        Ok(())
    }
}

/// The node's handle on the shard log in PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PgLog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: PgPool,
    pub opts: PgLogOptions,
    /// The shards this node has opened, so that each has one coalescer and one watch.
    pub shards: Mutex<HashMap<String, Weak<ShardState>>>,
    /// The ready shards and the append statements in flight.
    pub dispatcher: Dispatcher,
    /// Set by [`PgLog::shutdown`].
    pub shut_down: std::sync::atomic::AtomicBool,
}

/// One shard's state on this node.
pub(crate) struct ShardState {
    pub key: String,
    pub coalescer: Coalescer,
    /// The visible `next_seq`, as far as this node knows.
    pub watch_tx: watch::Sender<u64>,
}

impl ShardState {
    /// Raises the watched `next_seq` (never lowers it).
    pub fn publish(&self, next_seq: u64) {
        self.watch_tx.send_if_modified(|v| {
            let raise = next_seq > *v;
            if raise {
                *v = next_seq;
            }
            raise
        });
    }
}

impl fmt::Debug for PgLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PgLog")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl PgLog {
    /// Connects to PostgreSQL at `url` (`postgres://user:password@host:port/db`; in a cluster
    /// the haproxy address of the current primary), creates the schema and the partitions it
    /// lacks, and starts the node's watch poll and daily partition upkeep (both end when the
    /// last clone of the `PgLog` is dropped). Must be called inside a tokio runtime.
    pub async fn connect(url: &str, opts: PgLogOptions) -> Result<PgLog, PgLogError> {
        opts.validate()?;
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| PgLogError::Config(format!("cluster URL: {e}")))?
            // Never a server-side timeout on an append: see the module docs.
            .options([("statement_timeout", "0")]);
        let pool = sluice_meta::pg_pool::primary_pool_options(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await?;
        crate::log_schema::migrate(&pool).await?;
        crate::log_schema::ensure_partitions(&pool, opts.partition_days_ahead).await?;
        let inner = Arc::new(Inner {
            pool,
            opts,
            shards: Mutex::new(HashMap::new()),
            dispatcher: Dispatcher::default(),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        });
        crate::log_watch::spawn_poller(Arc::downgrade(&inner));
        crate::log_schema::spawn_partition_upkeep(Arc::downgrade(&inner));
        Ok(PgLog { inner })
    }

    /// Append statements this node has run, for all shards; below the number of puts when
    /// statements carried several (for tests and metrics).
    pub fn append_statements(&self) -> u64 {
        self.inner.dispatcher.statements()
    }

    /// Append statements this node ran again after PostgreSQL rolled them back as deadlock
    /// victims or for a serialization failure (for tests and metrics).
    pub fn append_conflicts(&self) -> u64 {
        self.inner.dispatcher.conflicts()
    }

    /// The connection pool (for tests and the other cluster modules).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Creates the shard's head row (ACTIVE, sequences starting at `start_seq`) if it does not
    /// exist. Returns whether it was created.
    pub async fn create_shard(&self, key: &str, start_seq: u64) -> Result<bool, PgLogError> {
        let done = sqlx::query(
            "INSERT INTO shard_head (shard_key, state, next_seq, start_seq, archived_seq, \
             last_time_ms) VALUES ($1, 'ACTIVE', $2, $2, $2, 0) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(to_i64(start_seq))
        .execute(&self.inner.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes the shard (split or merge) for every node: later appends fail with
    /// [`StoreError::Closed`]; reads go on. Appends already committed keep their sequences.
    pub async fn close_shard(&self, key: &str) -> Result<(), PgLogError> {
        let done = sqlx::query("UPDATE shard_head SET state = 'CLOSED' WHERE shard_key = $1")
            .bind(key)
            .execute(&self.inner.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(PgLogError::NotFound(key.to_string()));
        }
        Ok(())
    }

    /// Deletes the shard's head and entries (topic deleted).
    pub async fn delete_shard(&self, key: &str) -> Result<(), PgLogError> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("DELETE FROM shard_head WHERE shard_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM log_entry WHERE shard_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This node's store of one existing shard. All handles of one key share one coalescer
    /// and one watch.
    pub async fn shard(&self, key: &str) -> Result<Arc<PgShardStore>, PgLogError> {
        if self
            .inner
            .shut_down
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(PgLogError::ShutDown);
        }
        let head = crate::log_read::head(&self.inner.pool, key)
            .await?
            .ok_or_else(|| PgLogError::NotFound(key.to_string()))?;
        let state = {
            let mut shards = self.inner.shards.lock();
            shards.retain(|_, w| w.strong_count() > 0);
            match shards.get(key).and_then(Weak::upgrade) {
                Some(s) => s,
                None => {
                    let s = Arc::new(ShardState {
                        key: key.to_string(),
                        coalescer: Coalescer::default(),
                        watch_tx: watch::Sender::new(head.next_seq),
                    });
                    shards.insert(key.to_string(), Arc::downgrade(&s));
                    s
                }
            }
        };
        state.publish(head.next_seq);
        Ok(Arc::new(PgShardStore {
            log: self.inner.clone(),
            state,
        }))
    }

    /// Drops the daily partitions that end at or before `cutoff_ms`, first raising each
    /// shard's `start_seq` past the entries they held. Returns how many were dropped.
    pub async fn drop_partitions_before(&self, cutoff_ms: i64) -> Result<usize, PgLogError> {
        crate::log_schema::drop_partitions_before(&self.inner.pool, cutoff_ms).await
    }

    /// Refuses new appends on every shard of this node and waits, with no deadline, until the
    /// appends in flight have finished (see the module docs: they are never cancelled).
    pub async fn shutdown(&self) {
        self.inner
            .shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        let shards: Vec<Arc<ShardState>> = {
            let shards = self.inner.shards.lock();
            shards.values().filter_map(Weak::upgrade).collect()
        };
        for s in shards {
            s.coalescer.close_and_drain().await;
        }
    }
}

/// One shard of the PostgreSQL log, as seen from this node.
pub struct PgShardStore {
    pub(crate) log: Arc<Inner>,
    pub(crate) state: Arc<ShardState>,
}

impl PgShardStore {
    /// The shard's key.
    pub fn key(&self) -> &str {
        &self.state.key
    }

    /// Append statements this node has run for the shard; below the number of puts when
    /// coalescing packed several puts into one (for tests and metrics).
    pub fn append_statements(&self) -> u64 {
        self.state.coalescer.statements()
    }
}

#[async_trait]
impl ShardStore for PgShardStore {
    /// `system_time_ms` is not used: the time is the PostgreSQL primary's clock, the same for
    /// every node (clamped never to go backwards). `catalog_seen` is checked against the
    /// `catalog_version` row of the metadata in the same database, in the append statement.
    async fn append_checked(
        self: Arc<Self>,
        payloads: Vec<Bytes>,
        _system_time_ms: i64,
        catalog_seen: Option<i64>,
    ) -> Result<AppendInfo, StoreError> {
        if self
            .log
            .shut_down
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(StoreError::Closed);
        }
        crate::log_append::append(&self.log, &self.state, payloads, catalog_seen).await
    }

    async fn read(
        self: Arc<Self>,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let (entries, head) = crate::log_read::read(
            &self.log.pool,
            &self.state.key,
            from_seq,
            max_entries,
            max_bytes,
        )
        .await?;
        self.state.publish(head.next_seq);
        Ok(entries)
    }

    async fn first_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        let head = self.head().await?;
        Ok(head.start_seq.min(head.next_seq))
    }

    async fn next_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        Ok(self.head().await?.next_seq)
    }

    async fn seq_at_or_after_time(self: Arc<Self>, t_ms: i64) -> Result<Option<u64>, StoreError> {
        Ok(crate::log_read::seq_at_or_after_time(&self.log.pool, &self.state.key, t_ms).await?)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.state.watch_tx.subscribe()
    }

    /// Closes the shard for every node (split or merge), after this node's appends in flight.
    async fn close(self: Arc<Self>) -> Result<(), StoreError> {
        self.state.coalescer.close_and_drain().await;
        PgLog {
            inner: self.log.clone(),
        }
        .close_shard(&self.state.key)
        .await?;
        Ok(())
    }
}

impl PgShardStore {
    async fn head(&self) -> Result<crate::log_read::Head, StoreError> {
        let head = crate::log_read::head(&self.log.pool, &self.state.key)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.state.publish(head.next_seq);
        Ok(head)
    }
}

/// A sequence as PostgreSQL's `bigint` (sequences stay far below 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` read back as a sequence (never negative in this schema).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
