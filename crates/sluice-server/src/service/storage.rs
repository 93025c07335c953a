//! [`ShardStorage`]: what keeps one shard's records, as the server's call sites use it.
//!
//! Two arms:
//! - [`ShardStorage::Local`]: the local [`ShardLog`] of the embedded mode. Every method is the
//!   `ShardLog` method of the same name, called synchronously where the caller is (the hot put
//!   and read paths already run in `spawn_blocking`): no extra hop, no extra copy.
//! - [`ShardStorage::Shared`]: any [`ShardStore`] (the cluster store, or a test's). Its methods
//!   are async; here they are driven to completion on the calling thread with
//!   [`tokio::task::block_in_place`] and the runtime's `block_on`, so the synchronous call sites
//!   stay as they are. This needs the multi-threaded runtime (the server's); on a
//!   current-thread runtime it panics.
//!
//! What only the local log has (rolling segments, retention by segments, interval fsync, lazy
//! recovery) is reached through [`ShardStorage::local`]: for a shard on a shared store those are
//! the store's own job, and its size on disk is unknown here (0). The visible `next_seq` comes from the store's watch, without a round trip.
//! Errors keep the local log's type ([`LogError`]) so the call sites map them as before; a
//! store's backend failure (or an append whose outcome is unknown) becomes [`LogError::Io`],
//! which the put path already treats as a storage failure.

use std::sync::Arc;

use bytes::Bytes;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::{AppendInfo, Entry, LogError, ShardLog};
use tokio::sync::watch;

/// The storage of one shard. See the module docs.
pub enum ShardStorage {
    /// The local segment log (embedded mode).
    Local(Arc<ShardLog>),
    /// A store behind the [`ShardStore`] trait, with its watch of the visible `next_seq`.
    Shared(SharedStore),
}

/// A [`ShardStore`] and a receiver of its visible `next_seq`, kept to answer `next_seq`
/// without a round trip.
pub struct SharedStore {
    store: Arc<dyn ShardStore>,
    next: watch::Receiver<u64>,
    /// The last `first_seq` answer and when it was fetched (see [`FIRST_SEQ_TTL`]).
    first: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a shared store's `first_seq` answer is reused. The oldest sequence only moves when
/// retention drops old entries, while metrics, the console and cursor checks ask for it per
/// shard per call: this keeps them from costing a round trip each.
pub const FIRST_SEQ_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl ShardStorage {
    /// Wraps a store that is reached through the [`ShardStore`] trait.
    pub fn shared(store: Arc<dyn ShardStore>) -> ShardStorage {
        let next = store.watch();
        ShardStorage::Shared(SharedStore {
            store,
            next,
            first: parking_lot::Mutex::new(None),
        })
    }

    /// The local log, if this shard has one.
    pub fn local(&self) -> Option<&Arc<ShardLog>> {
        match self {
            ShardStorage::Local(log) => Some(log),
            ShardStorage::Shared(_) => None,
        }
    }

    pub fn append(&self, payloads: &[&[u8]], system_time_ms: i64) -> Result<AppendInfo, LogError> {
        self.append_checked(payloads, system_time_ms, None)
    }

    /// [`ShardStorage::append`] of a put checked against catalog version `catalog_seen`: a
    /// shared store refuses it with [`LogError::CatalogMoved`] if its catalog moved since
    /// (`ShardStore::append_checked`). The local log has no catalog but this node's.
    pub fn append_checked(
        &self,
        payloads: &[&[u8]],
        system_time_ms: i64,
        catalog_seen: Option<i64>,
    ) -> Result<AppendInfo, LogError> {
        match self {
            ShardStorage::Local(log) => ShardLog::append(log, payloads, system_time_ms),
            ShardStorage::Shared(s) => {
                let owned = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
                s.wait(|st| st.append_checked(owned, system_time_ms, catalog_seen))
            }
        }
    }

    pub fn read(
        &self,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, LogError> {
        match self {
            ShardStorage::Local(log) => ShardLog::read(log, from_seq, max_entries, max_bytes),
            ShardStorage::Shared(s) => s.wait(|st| st.read(from_seq, max_entries, max_bytes)),
        }
    }

    /// Oldest retained sequence. A shared store that cannot answer reports `next_seq` (as if
    /// nothing were retained); the failure is logged.
    pub fn first_seq(&self) -> u64 {
        match self {
            ShardStorage::Local(log) => ShardLog::first_seq(log),
            ShardStorage::Shared(s) => s.first_seq(),
        }
    }

    /// The next sequence as the store has it now: a round trip for a shared store (whose
    /// [`ShardStorage::next_seq`] may lag other nodes' appends by one watch poll).
    pub fn next_seq_fresh(&self) -> u64 {
        match self {
            ShardStorage::Local(log) => ShardLog::next_seq(log),
            ShardStorage::Shared(s) => s.wait(|st| st.next_seq()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "shard store: next_seq failed");
                s.visible_next()
            }),
        }
    }

    /// Closes a shared store's shard for every node (split or merge in the cluster mode), after
    /// this node's appends in flight; a local log is left as it is (its shard's state refuses
    /// writes).
    pub async fn close_shared(&self) -> Result<(), LogError> {
        match self {
            ShardStorage::Local(_) => Ok(()),
            ShardStorage::Shared(s) => s.store.clone().close().await.map_err(log_error),
        }
    }

    pub fn next_seq(&self) -> u64 {
        match self {
            ShardStorage::Local(log) => ShardLog::next_seq(log),
            ShardStorage::Shared(s) => s.visible_next(),
        }
    }

    /// System time of the entry at `seq`, if it is retained and visible.
    pub fn time_of(&self, seq: u64) -> Option<i64> {
        match self {
            ShardStorage::Local(log) => log.time_of(seq),
            ShardStorage::Shared(s) => s.time_of(seq),
        }
    }

    /// System time of the last visible entry.
    pub fn last_time(&self) -> Option<i64> {
        match self {
            ShardStorage::Local(log) => log.last_time(),
            ShardStorage::Shared(s) => s.visible_next().checked_sub(1).and_then(|p| s.time_of(p)),
        }
    }

    pub fn seq_at_or_after_time(&self, t_ms: i64) -> Option<u64> {
        match self {
            ShardStorage::Local(log) => ShardLog::seq_at_or_after_time(log, t_ms),
            ShardStorage::Shared(s) => {
                s.wait(|st| st.seq_at_or_after_time(t_ms))
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "shard store: seq_at_or_after_time failed");
                        None
                    })
            }
        }
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        match self {
            ShardStorage::Local(log) => log.watch(),
            ShardStorage::Shared(s) => s.next.clone(),
        }
    }

    pub fn close(&self) -> Result<(), LogError> {
        match self {
            ShardStorage::Local(log) => ShardLog::close(log),
            ShardStorage::Shared(s) => s.wait(|st| st.close()),
        }
    }

    /// Bytes on local disk; 0 for a shared store (not known here).
    pub fn size_bytes(&self) -> u64 {
        self.local().map_or(0, |log| log.size_bytes())
    }
}

impl SharedStore {
    fn visible_next(&self) -> u64 {
        *self.next.borrow()
    }

    /// `first_seq`, reused for [`FIRST_SEQ_TTL`]. A store that cannot answer reports
    /// `next_seq` (as if nothing were retained); the failure is logged.
    fn first_seq(&self) -> u64 {
        let now = std::time::Instant::now();
        if let Some((at, first)) = *self.first.lock() {
            if now.duration_since(at) < FIRST_SEQ_TTL {
                return first;
            }
        }
        match self.wait(|st| st.first_seq()) {
            Ok(first) => {
                *self.first.lock() = Some((now, first));
                first
            }
            Err(e) => {
                tracing::warn!(error = %e, "shard store: first_seq failed");
                self.visible_next()
            }
        }
    }

    fn time_of(&self, seq: u64) -> Option<i64> {
        match self.wait(|st| st.read(seq, 1, 1)) {
            Ok(entries) => entries
                .first()
                .filter(|e| e.seq == seq)
                .map(|e| e.system_time),
            Err(LogError::OutOfRange { .. }) => None,
            Err(e) => {
                tracing::warn!(error = %e, "shard store: time_of failed");
                None
            }
        }
    }

    /// Runs one call of the store to completion on this thread (see the module docs).
    fn wait<T, F>(&self, call: impl FnOnce(Arc<dyn ShardStore>) -> F) -> Result<T, LogError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        let future = call(self.store.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(future)).map_err(log_error)
    }
}

/// A store's error as the local log's, so the call sites map it as before.
fn log_error(e: StoreError) -> LogError {
    match e {
        StoreError::Closed | StoreError::NotFound => LogError::Closed,
        StoreError::OutOfRange { requested, first } => LogError::OutOfRange { requested, first },
        StoreError::EmptyAppend => LogError::EmptyAppend,
        StoreError::TooLarge { size, max } => LogError::EntryTooLarge { size, max },
        StoreError::Log(e) => e,
        StoreError::CatalogMoved { seen } => LogError::CatalogMoved { seen },
        e @ (StoreError::OutcomeUnknown(_) | StoreError::Backend(_)) => {
            LogError::Io(std::io::Error::other(e))
        }
    }
}
