//! The connector runtime: one supervisor per running connector and one task per shard.
//!
//! The runtime knows nothing of HTTP or of how the server stores things. What it needs from
//! the server is the [`ShardSource`] trait: the topic's shard topology, reading decoded
//! records from a sequence, a tail watch per shard, and checkpoint persistence. The server
//! implements it over its shard logs and meta store; the tests implement it in memory.
//!
//! - `mod.rs` (this file): the trait, [`RuntimeConfig`], and [`ConnectorRuntime`], whose
//!   supervisor starts a task for every shard that may run (a child of a split or merge only
//!   after all its parents are FINISHED) and restarts tasks on reload;
//! - `task.rs`: the per-shard loop: read from the checkpoint, batch by count / bytes / age,
//!   `Sink::write` + `Sink::flush`, then save the checkpoint; retries with backoff; isolates
//!   bad records; finishes closed shards;
//! - `backoff.rs`: jittered exponential backoff;
//! - `status.rs`: checkpoints, task states, shard reports and done time.

mod backoff;
pub mod status;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::{Record, RecordSchema};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use status::{Checkpoint, ContextState, LogView, ShardReport, TaskStatus};

use crate::sink::{SharedColumns, Sink, SinkError};

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

/// One stored entry (one sequence; several records for batch-protocol writes), decoded and
/// shaped like the topic's current schema.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub seq: u64,
    pub system_time: i64,
    pub records: Vec<Record>,
    /// Encoded size, for batching by bytes.
    pub bytes: usize,
}

/// The result of a read.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The topic's current schema (None for BLOB topics).
    pub schema: Option<Arc<RecordSchema>>,
    pub entries: Vec<SourceEntry>,
}

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The records from `requested` on were removed by retention; the oldest left is `first`.
    #[error("sequence {requested} expired; the oldest retained is {first}")]
    Expired { requested: u64, first: u64 },
    /// The shard or topic no longer exists.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Other(String),
}

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
    /// A receiver of the shard's next sequence, changed after each append.
    fn watch(&self, shard: u32) -> Option<watch::Receiver<u64>>;
    /// First sequence whose system time is `>= t_ms` (None: no such record yet).
    fn seq_at_or_after_time(&self, shard: u32, t_ms: i64) -> Option<u64>;
    /// Persists a checkpoint.
    fn save_checkpoint(&self, cp: Checkpoint) -> BoxFuture<'_, Result<(), String>>;
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
}

/// A running connector. Dropping it does not stop the tasks; call [`ConnectorRuntime::stop`].
pub struct ConnectorRuntime {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectorRuntime {
    /// Starts the connector from the given checkpoints (shards without one start at
    /// `spec.start_time`).
    pub fn start(
        spec: ConnectorSpec,
        source: Arc<dyn ShardSource>,
        checkpoints: Vec<Checkpoint>,
    ) -> ConnectorRuntime {
        let shared = Arc::new(Shared {
            spec,
            source,
            checkpoints: Mutex::new(checkpoints.into_iter().map(|c| (c.shard_id, c)).collect()),
            status: Mutex::new(HashMap::new()),
            reload: Mutex::new(Vec::new()),
            wake: Notify::new(),
        });
        let cancel = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(shared.clone(), cancel.clone()));
        ConnectorRuntime {
            shared,
            cancel,
            supervisor: Some(supervisor),
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

    /// Stops every task and waits for them; buffered, unflushed records are read again by
    /// the next start (their checkpoint was never advanced).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.supervisor.take() {
            let _ = h.await;
        }
    }
}

impl Drop for ConnectorRuntime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Where a shard without a checkpoint starts.
fn initial_checkpoint(shared: &Shared, shard: &ShardInfo) -> Checkpoint {
    let start = shared.spec.start_time;
    let seq = if start < 0 {
        shard.first_seq
    } else {
        shared
            .source
            .seq_at_or_after_time(shard.id, start)
            .unwrap_or(shard.next_seq)
            .max(shard.first_seq)
    };
    Checkpoint::at(shard.id, seq)
}

/// Starts tasks for shards that may run, restarts reloaded ones, and stops all on cancel.
async fn supervise(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tasks: HashMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        tasks.retain(|_, (_, h)| !h.is_finished());
        let reloads: Vec<u32> = std::mem::take(&mut *shared.reload.lock().expect("reload lock"));
        for shard in reloads {
            if let Some((token, handle)) = tasks.remove(&shard) {
                token.cancel();
                let _ = handle.await;
                tracing::info!(connector = %shared.spec.name, shard, "task reloaded from its checkpoint");
            }
        }
        match shared.source.shards() {
            Ok(shards) => {
                let known: Vec<u32> = shards.iter().map(|s| s.id).collect();
                for shard in &shards {
                    if tasks.contains_key(&shard.id) {
                        continue;
                    }
                    let cp = match shared.checkpoint(shard.id) {
                        Some(cp) => cp,
                        None => {
                            let cp = initial_checkpoint(&shared, shard);
                            shared.set_checkpoint(cp);
                            cp
                        }
                    };
                    if cp.finished {
                        shared.set_status(shard.id, ContextState::Finished, None);
                        continue;
                    }
                    let waiting: Vec<u32> = shard
                        .parents
                        .iter()
                        .copied()
                        .filter(|p| {
                            known.contains(p) && !shared.checkpoint(*p).is_some_and(|c| c.finished)
                        })
                        .collect();
                    if !waiting.is_empty() {
                        shared.set_status(shard.id, ContextState::Planned, None);
                        continue;
                    }
                    let token = cancel.child_token();
                    let handle =
                        tokio::spawn(task::run(shared.clone(), shard.id, cp, token.clone()));
                    tasks.insert(shard.id, (token, handle));
                }
            }
            Err(e) => {
                tracing::warn!(connector = %shared.spec.name, error = %e, "cannot list the topic's shards");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(shared.spec.config.topology_interval) => {}
        }
    }
    for (_, (token, handle)) in tasks {
        token.cancel();
        let _ = handle.await;
    }
}
