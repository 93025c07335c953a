//! The connector runtime: one supervisor per running connector and one task per shard.
//!
//! The runtime knows nothing of HTTP or of how the server stores things. What it needs from
//! the server is the [`ShardSource`] trait: the topic's shard topology, reading decoded
//! records from a sequence, a tail watch per shard, and checkpoint persistence. The server
//! implements it over its shard logs and meta store; the tests implement it in memory.
//!
//! - `mod.rs` (this file): the trait, the typed [`SourceError`], [`RuntimeConfig`], and
//!   [`ConnectorRuntime`], the handle its owner starts, reads and stops;
//! - `supervisor.rs`: starts a task for every shard that may run (a child of a split or merge
//!   only after all its parents are FINISHED), restarts tasks on reload, catches a panicking
//!   task (logged, shown as CONTEXT_HANG with its message, restarted with backoff), and stops
//!   all tasks at once;
//! - `task.rs`: the per-shard loop: read from the checkpoint, batch by count / bytes / age,
//!   `Sink::write` + `Sink::flush`, then save the checkpoint, with the next batch read (and
//!   decoded by the source) while a full one is delivered; retries with backoff; isolates
//!   bad records; finishes closed shards. On stop, reload or delete a flush in progress gets
//!   [`RuntimeConfig::stop_grace`] to finish; after that the half-written batch is dropped
//!   (its checkpoint never moved, so the next start delivers it again);
//! - `backoff.rs`: jittered exponential backoff;
//! - `status.rs`: checkpoints, task states, shard reports and done time.
//!
//! A [`TaskObserver`] given to [`ConnectorRuntime::start_observed`] hears of every sink write
//! (its latency) and every error by kind: the server's metrics, without a metrics library here.
//!
//! A runtime runs every shard of its topic, or, started with [`ConnectorRuntime::start_on`],
//! only the shards it is allowed: a cluster node runs the shards whose task leases it holds
//! and is given ([`ConnectorRuntime::allow`]) or relieved of ([`ConnectorRuntime::stop_shard`])
//! one shard at a time while it runs. A child of a split or merge whose parent runs elsewhere
//! waits for the parent's *stored* checkpoint to say FINISHED ([`ShardSource::stored_checkpoint`]).

mod backoff;
pub mod status;
mod supervisor;
mod task;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::{Record, RecordSchema};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use status::{Checkpoint, ContextState, LogView, ShardReport, TaskStatus};

use crate::sink::{ErrorSource, SharedColumns, Sink, SinkError};

/// A shard of the source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: u32,
    pub parents: Vec<u32>,
    /// Closed by a split or merge: no more records will arrive.
    pub closed: bool,
    pub first_seq: u64,
    pub next_seq: u64,
}

/// One stored entry (one sequence; several records for batch-protocol writes). Its records,
/// decoded and shaped like the topic's current schema, are the next `record_count` of
/// [`SourceBatch::records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceEntry {
    pub seq: u64,
    pub system_time: i64,
    pub record_count: usize,
    /// Encoded size, for batching by bytes.
    pub bytes: usize,
}

/// The result of a read.
///
/// The records of all entries sit in one vector, in entry order, rather than one vector per
/// entry: an entry of a protobuf or JSON put holds one record, so a vector per entry would be an
/// allocation (and a free on the task's thread) per record.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The topic's current schema (None for BLOB topics).
    pub schema: Option<Arc<RecordSchema>>,
    pub entries: Vec<SourceEntry>,
    /// The entries' records, in order (see [`SourceEntry::record_count`]).
    pub records: Vec<Record>,
    /// The spare records [`ShardSource::read_reusing`] was given and did not refill, handed
    /// back for the next read (empty otherwise).
    pub spare: Vec<Record>,
}

/// What kind of failure a [`SourceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The records from `requested` on were removed by retention; the oldest left is `first`.
    Expired { requested: u64, first: u64 },
    /// The shard or topic no longer exists: the task ends.
    Gone,
    /// Anything else (I/O, a record that does not decode): retried with backoff.
    Transient,
}

/// Why a read failed: its kind, a message for the task's status, and the underlying error
/// when there is one.
#[derive(Clone)]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
    pub source: Option<ErrorSource>,
}

impl SourceError {
    pub fn expired(requested: u64, first: u64) -> SourceError {
        SourceError {
            kind: SourceErrorKind::Expired { requested, first },
            message: format!("sequence {requested} expired; the oldest retained is {first}"),
            source: None,
        }
    }
    pub fn gone(message: impl Into<String>) -> SourceError {
        SourceError {
            kind: SourceErrorKind::Gone,
            message: message.into(),
            source: None,
        }
    }
    pub fn transient(message: impl Into<String>) -> SourceError {
        SourceError {
            kind: SourceErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }
    /// Attaches the error that caused this one.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SourceError {
        self.source = Some(Arc::new(source));
        self
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Debug for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SourceError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", &format_args!("{s}"));
        }
        d.finish()
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for SourceError {
    fn eq(&self, other: &SourceError) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for SourceError {}

/// A boxed future, for the trait objects below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the runtime needs from the server for one connector.
pub trait ShardSource: Send + Sync + 'static {
    /// Every shard of the topic (open and closed).
    fn shards(&self) -> Result<Vec<ShardInfo>, SourceError>;
    /// Up to `max_entries` entries from `from_seq` on, stopping near `max_bytes`.
    fn read(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>>;
    /// [`ShardSource::read`], decoding into the `spare` records (ones a task delivered, handed
    /// back) instead of new ones where it can: refilling a record keeps its value vector and
    /// text buffers, so a connector in the steady state allocates and frees nothing per record.
    /// The default ignores `spare`.
    fn read_reusing(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
        spare: Vec<Record>,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        drop(spare);
        self.read(shard, from_seq, max_entries, max_bytes)
    }
    /// A receiver of the shard's next sequence, changed after each append.
    fn watch(&self, shard: u32) -> Option<watch::Receiver<u64>>;
    /// First sequence whose system time is `>= t_ms` (None: no such record yet).
    fn seq_at_or_after_time(&self, shard: u32, t_ms: i64) -> Option<u64>;
    /// Persists a checkpoint.
    fn save_checkpoint(&self, cp: Checkpoint) -> BoxFuture<'_, Result<(), String>>;
    /// The checkpoint of `shard` as stored now (a shard another node runs). Asked only by a
    /// runtime limited to some shards, for the parents of its shards; the default: none.
    fn stored_checkpoint(&self, shard: u32) -> BoxFuture<'_, Result<Option<Checkpoint>, String>> {
        let _ = shard;
        Box::pin(async { Ok(None) })
    }
}

/// Told what the tasks of one connector do (the server's metrics), so that this crate needs no
/// metrics library. Called once per sink write or error, never per record.
pub trait TaskObserver: Send + Sync + 'static {
    /// A sink write + flush of `records` records on `shard` took `elapsed`; `ok` if it worked.
    fn sink_write(&self, shard: u32, records: usize, elapsed: Duration, ok: bool);
    /// A task of `shard` hit an error of `kind`: `sink_transient`, `sink_bad_record`,
    /// `sink_config`, `source_expired`, `source_read` or `checkpoint`.
    fn error(&self, shard: u32, kind: &'static str);
}

/// Opens a sink for a task (one sink per task).
pub type SinkOpener = Arc<
    dyn Fn(SharedColumns) -> BoxFuture<'static, Result<Box<dyn Sink>, SinkError>> + Send + Sync,
>;

/// Batching and retry tunables.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Flush once this many records are buffered.
    pub max_batch_records: usize,
    /// Flush once this many bytes are buffered.
    pub max_batch_bytes: usize,
    /// Flush once the oldest buffered record has waited this long.
    pub max_batch_age: Duration,
    /// Once caught up with the log, wait this long for more records before flushing: zero
    /// gives the lowest latency; at high rates batches fill before it matters.
    pub linger: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often the supervisor re-reads the shard topology.
    pub topology_interval: Duration,
    /// Shown as `WorkerAddress`.
    pub worker_address: String,
    /// How long a stop, reload or delete lets a write or flush in progress finish before it
    /// drops the batch (to be delivered again from the unchanged checkpoint).
    pub stop_grace: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_batch_records: 5000,
            max_batch_bytes: 4 << 20,
            max_batch_age: Duration::from_millis(500),
            linger: Duration::from_millis(5),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            topology_interval: Duration::from_millis(500),
            worker_address: String::new(),
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// What one running connector is made of.
pub struct ConnectorSpec {
    /// For logs, e.g. `project/topic/connector_id`.
    pub name: String,
    pub columns: SharedColumns,
    pub open_sink: SinkOpener,
    /// Where shards without a checkpoint start: the first record at or after this time (ms);
    /// negative = the oldest retained record.
    pub start_time: i64,
    pub config: RuntimeConfig,
}

/// State shared by the supervisor, the tasks and the owner.
pub(crate) struct Shared {
    pub spec: ConnectorSpec,
    pub source: Arc<dyn ShardSource>,
    pub checkpoints: Mutex<HashMap<u32, Checkpoint>>,
    pub status: Mutex<HashMap<u32, TaskStatus>>,
    /// Shards whose task should restart from its checkpoint.
    pub reload: Mutex<Vec<u32>>,
    pub wake: Notify,
    /// Told about writes and errors (metrics), if anyone listens.
    pub observer: Option<Arc<dyn TaskObserver>>,
    /// The shards this runtime may run (None: all of them).
    pub allowed: Mutex<Option<BTreeSet<u32>>>,
    /// The shards whose task runs now, published by the supervisor after each pass.
    pub running: watch::Sender<BTreeSet<u32>>,
}

impl Shared {
    pub fn set_status(&self, shard: u32, state: ContextState, error: Option<String>) {
        let mut map = self.status.lock().expect("status lock");
        let entry = map.entry(shard).or_insert_with(|| TaskStatus::new(state));
        entry.state = state;
        if let Some(e) = error {
            entry.last_error = e;
        }
        entry.update_time = status::now_ms();
    }

    pub fn checkpoint(&self, shard: u32) -> Option<Checkpoint> {
        self.checkpoints
            .lock()
            .expect("checkpoint lock")
            .get(&shard)
            .copied()
    }

    pub fn set_checkpoint(&self, cp: Checkpoint) {
        self.checkpoints
            .lock()
            .expect("checkpoint lock")
            .insert(cp.shard_id, cp);
    }

    /// Whether this runtime may run `shard`.
    pub fn may_run(&self, shard: u32) -> bool {
        self.allowed
            .lock()
            .expect("allowed lock")
            .as_ref()
            .is_none_or(|a| a.contains(&shard))
    }

    /// Forgets what this runtime knew of `shard` (it runs elsewhere now).
    pub fn forget(&self, shard: u32) {
        self.checkpoints
            .lock()
            .expect("checkpoint lock")
            .remove(&shard);
        self.status.lock().expect("status lock").remove(&shard);
    }
}

/// A running connector. Dropping it does not stop the tasks; call [`ConnectorRuntime::stop`].
pub struct ConnectorRuntime {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// Taken by the first [`ConnectorRuntime::stop`]; a concurrent stop waits for it.
    supervisor: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ConnectorRuntime {
    /// Starts the connector from the given checkpoints (shards without one start at
    /// `spec.start_time`).
    pub fn start(
        spec: ConnectorSpec,
        source: Arc<dyn ShardSource>,
        checkpoints: Vec<Checkpoint>,
    ) -> ConnectorRuntime {
        Self::start_observed(spec, source, checkpoints, None)
    }

    /// [`ConnectorRuntime::start`], telling `observer` about sink writes and errors.
    pub fn start_observed(
        spec: ConnectorSpec,
        source: Arc<dyn ShardSource>,
        checkpoints: Vec<Checkpoint>,
        observer: Option<Arc<dyn TaskObserver>>,
    ) -> ConnectorRuntime {
        Self::start_on(spec, source, checkpoints, observer, None)
    }

    /// [`ConnectorRuntime::start_observed`], running only the `allowed` shards (None: all).
    /// Checkpoints of other shards are ignored.
    pub fn start_on(
        spec: ConnectorSpec,
        source: Arc<dyn ShardSource>,
        checkpoints: Vec<Checkpoint>,
        observer: Option<Arc<dyn TaskObserver>>,
        allowed: Option<BTreeSet<u32>>,
    ) -> ConnectorRuntime {
        let checkpoints = checkpoints
            .into_iter()
            .filter(|c| allowed.as_ref().is_none_or(|a| a.contains(&c.shard_id)))
            .map(|c| (c.shard_id, c))
            .collect();
        let shared = Arc::new(Shared {
            spec,
            source,
            checkpoints: Mutex::new(checkpoints),
            status: Mutex::new(HashMap::new()),
            reload: Mutex::new(Vec::new()),
            wake: Notify::new(),
            observer,
            allowed: Mutex::new(allowed),
            running: watch::channel(BTreeSet::new()).0,
        });
        let cancel = CancellationToken::new();
        let supervisor = tokio::spawn(supervisor::supervise(shared.clone(), cancel.clone()));
        ConnectorRuntime {
            shared,
            cancel,
            supervisor: tokio::sync::Mutex::new(Some(supervisor)),
        }
    }

    /// The committed checkpoints, by shard.
    pub fn checkpoints(&self) -> BTreeMap<u32, Checkpoint> {
        self.shared
            .checkpoints
            .lock()
            .expect("checkpoint lock")
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The live task states, by shard.
    pub fn task_status(&self) -> BTreeMap<u32, TaskStatus> {
        self.shared
            .status
            .lock()
            .expect("status lock")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// The shards this runtime may run (None: all).
    pub fn allowed(&self) -> Option<BTreeSet<u32>> {
        self.shared.allowed.lock().expect("allowed lock").clone()
    }

    /// Lets a runtime started with [`ConnectorRuntime::start_on`] run `shard` too, from
    /// `checkpoint` (as stored now; None: where a shard without one starts). No effect on a
    /// runtime that runs every shard.
    pub fn allow(&self, shard: u32, checkpoint: Option<Checkpoint>) {
        {
            let mut allowed = self.shared.allowed.lock().expect("allowed lock");
            let Some(set) = allowed.as_mut() else {
                return;
            };
            self.shared.forget(shard);
            if let Some(cp) = checkpoint {
                self.shared.set_checkpoint(cp);
            }
            set.insert(shard);
        }
        self.shared.wake.notify_one();
    }

    /// Stops running `shard` here and waits until its task has ended (a flush in progress gets
    /// [`RuntimeConfig::stop_grace`]); its checkpoint and status are forgotten. Returns how many
    /// shards the runtime may still run (None: all).
    pub async fn stop_shard(&self, shard: u32) -> Option<usize> {
        let left = {
            let mut allowed = self.shared.allowed.lock().expect("allowed lock");
            let set = allowed.as_mut()?;
            set.remove(&shard);
            set.len()
        };
        let mut running = self.shared.running.subscribe();
        self.shared.wake.notify_one();
        loop {
            if !running.borrow_and_update().contains(&shard) {
                break;
            }
            if running.changed().await.is_err() {
                break; // the supervisor has ended: nothing runs
            }
        }
        if !self.shared.may_run(shard) {
            self.shared.forget(shard);
        }
        Some(left)
    }

    /// Restarts the task of `shard` (all shards if None) from its last checkpoint.
    pub fn reload(&self, shard: Option<u32>) {
        let shards: Vec<u32> = match shard {
            Some(s) => vec![s],
            None => self.task_status().keys().copied().collect(),
        };
        self.shared
            .reload
            .lock()
            .expect("reload lock")
            .extend(shards);
        self.shared.wake.notify_one();
    }

    /// Stops every task and waits for them, at most about [`RuntimeConfig::stop_grace`]: a
    /// write or flush still running then is dropped. Buffered, unflushed records are read again
    /// by the next start (their checkpoint was never advanced). Takes `&self` so that readers
    /// holding the runtime keep seeing its status while it stops.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let mut supervisor = self.supervisor.lock().await;
        if let Some(h) = supervisor.take() {
            if let Err(e) = h.await {
                tracing::error!(connector = %self.shared.spec.name, error = %e, "connector supervisor failed");
            }
        }
    }
}

impl Drop for ConnectorRuntime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
