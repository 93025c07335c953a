//! [`ShardStore`]: what the server needs from one shard's log, whatever keeps it.
//!
//! Two implementations: the local [`ShardLog`] (segment files on this machine, the embedded
//! mode) and the cluster store of `sluice-cluster` (PostgreSQL, shared by stateless nodes).
//! Both give the same answers for the same appends: dense sequences from the shard's start,
//! one non-decreasing system time per append, reads by sequence with the same limits, the
//! first sequence at or after a system time, and a watch of the visible `next_seq`.
//!
//! The methods that may block or wait on a network take `self: Arc<Self>`, so that an
//! implementation can move the work off the async runtime (the local log runs its file I/O and
//! fsync wait in `spawn_blocking`; the cluster store in a task of its own, see there) and so
//! that dropping the returned future never cancels an append half-way.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::{AppendInfo, Entry, LogError, ShardLog};

/// A boxed error of a storage backend (database driver, I/O), kept as the source.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of a [`ShardStore`], the same for every backend.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The shard refuses appends: closed by a split or merge, or its store was closed.
    #[error("shard is closed")]
    Closed,
    /// The shard does not exist (deleted, or never created in this store).
    #[error("shard does not exist")]
    NotFound,
    /// The requested sequence is older than the oldest retained one.
    #[error("sequence {requested} is out of range: the oldest retained sequence is {first}")]
    OutOfRange { requested: u64, first: u64 },
    /// An append with no payloads.
    #[error("append with no entries")]
    EmptyAppend,
    /// The append is larger than one append may be.
    #[error("append of {size} encoded bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// The connection failed after an append was sent: it may or may not have been committed.
    /// The caller must not report success; a retry may store the records twice (at least once).
    #[error("append outcome unknown: {0}")]
    OutcomeUnknown(#[source] BackendError),
    /// The put was checked against an older version of the catalog the store shares with other
    /// nodes than the one the store has now (another node changed a topic, shard or key since):
    /// nothing was appended. The caller catches up with the catalog and checks the put again.
    #[error("the shared catalog moved past version {seen}, which the put was checked against")]
    CatalogMoved { seen: i64 },
    /// The backend failed (nothing was appended, for an append).
    #[error("storage backend error: {0}")]
    Backend(#[source] BackendError),
    /// Any other error of the local log (I/O, corruption, poisoned after a failed fsync).
    #[error(transparent)]
    Log(LogError),
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Closed => StoreError::Closed,
            LogError::OutOfRange { requested, first } => {
                StoreError::OutOfRange { requested, first }
            }
            LogError::EmptyAppend => StoreError::EmptyAppend,
            LogError::EntryTooLarge { size, max } => StoreError::TooLarge { size, max },
            LogError::CatalogMoved { seen } => StoreError::CatalogMoved { seen },
            other => StoreError::Log(other),
        }
    }
}

/// One shard's log, as the server uses it. See the module docs.
#[async_trait]
pub trait ShardStore: Send + Sync + 'static {
    /// Appends the payloads with consecutive sequences and one system time, and returns once
    /// they are durable and visible. `system_time_ms` is the caller's clock; a store shared by
    /// several nodes may use one clock of its own instead (the cluster store uses the database
    /// primary's). Either way the stored time never goes below the previous append's.
    async fn append(
        self: Arc<Self>,
        payloads: Vec<Bytes>,
        system_time_ms: i64,
    ) -> Result<AppendInfo, StoreError> {
        self.append_checked(payloads, system_time_ms, None).await
    }

    /// [`ShardStore::append`] of a put that was checked (its shard, schema and caller) against
    /// version `catalog_seen` of the metadata. A store whose catalog is shared with other nodes
    /// (the cluster store) appends only if that catalog is still at that version, in the same
    /// statement as the append, and refuses otherwise with [`StoreError::CatalogMoved`],
    /// nothing stored. `None`, and a store without a shared catalog, append unchecked.
    async fn append_checked(
        self: Arc<Self>,
        payloads: Vec<Bytes>,
        system_time_ms: i64,
        catalog_seen: Option<i64>,
    ) -> Result<AppendInfo, StoreError>;

    /// Entries with `seq >= from_seq`, in order: at most `max_entries`, stopping once the
    /// payload total reaches `max_bytes` or before an entry that would take it past
    /// `max_bytes`, but at least one entry if any exists and `max_entries > 0`.
    /// `from_seq < first_seq` is [`StoreError::OutOfRange`]; `from_seq >= next_seq` is empty.
    async fn read(
        self: Arc<Self>,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Oldest retained sequence (equal to `next_seq` when nothing is retained).
    async fn first_seq(self: Arc<Self>) -> Result<u64, StoreError>;

    /// One past the last visible sequence.
    async fn next_seq(self: Arc<Self>) -> Result<u64, StoreError>;

    /// First retained, visible sequence whose system time is `>= t_ms`; `None` if there is none.
    async fn seq_at_or_after_time(self: Arc<Self>, t_ms: i64) -> Result<Option<u64>, StoreError>;

    /// A receiver of the visible `next_seq`. Appends through this store object wake it at
    /// once; a store shared by several nodes sees other nodes' appends by polling.
    fn watch(&self) -> watch::Receiver<u64>;

    /// Refuses further appends (the shard was closed by a split or merge, or the store shuts
    /// down) after the appends in flight have finished. What reads do afterwards is the
    /// backend's: [`ShardLog`] ends them too (it syncs and lets go of its files), the cluster
    /// store keeps serving them (a closed DataHub shard stays readable).
    async fn close(self: Arc<Self>) -> Result<(), StoreError>;
}

/// Runs a blocking call of the local log off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Backend(Box::new(e))),
    }
}

/// The local log: each call is the [`ShardLog`] method of the same name, run in
/// `spawn_blocking`; its behaviour is unchanged.
#[async_trait]
impl ShardStore for ShardLog {
    /// The embedded mode's catalog belongs to this node alone: `catalog_seen` is not needed.
    async fn append_checked(
        self: Arc<Self>,
        payloads: Vec<Bytes>,
        system_time_ms: i64,
        _catalog_seen: Option<i64>,
    ) -> Result<AppendInfo, StoreError> {
        blocking(move || {
            let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_ref()).collect();
            ShardLog::append(&self, &slices, system_time_ms)
        })
        .await
    }

    async fn read(
        self: Arc<Self>,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        blocking(move || ShardLog::read(&self, from_seq, max_entries, max_bytes)).await
    }

    async fn first_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        blocking(move || Ok(ShardLog::first_seq(&self))).await
    }

    async fn next_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        blocking(move || Ok(ShardLog::next_seq(&self))).await
    }

    async fn seq_at_or_after_time(self: Arc<Self>, t_ms: i64) -> Result<Option<u64>, StoreError> {
        blocking(move || self.try_seq_at_or_after_time(t_ms)).await
    }

    fn watch(&self) -> watch::Receiver<u64> {
        ShardLog::watch(self)
    }

    async fn close(self: Arc<Self>) -> Result<(), StoreError> {
        blocking(move || ShardLog::close(&self)).await
    }
}
