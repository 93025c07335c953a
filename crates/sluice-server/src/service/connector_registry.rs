//! The registry of connectors and its locks: a short-held map from (topic uid, connector id)
//! to each connector's [`Slot`], which holds the connector's own operation lock and the
//! [`Snapshot`] readers copy. `connectors.rs` says which operation takes which lock.
//! In cluster mode (issue 14) it also records which connectors this node controls, under
//! which lease ([`RunsHere`]), and which of their shards' tasks it runs ([`TaskGuards`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_connect::runtime::ConnectorRuntime;
use sluice_connect::sinks::ConnectorConfig;
use sluice_meta::{ConnectorRow, LeaseGuard};

/// A connector as readers see it: its row, its typed config and, while it runs, its runtime.
#[derive(Clone)]
pub(super) struct Snapshot {
    pub row: ConnectorRow,
    /// `row.config`, parsed (at the door, or when loaded from the meta store).
    pub config: Arc<ConnectorConfig>,
    pub runtime: Option<Arc<ConnectorRuntime>>,
}

/// One connector's place in the registry.
pub(super) struct Slot {
    /// The connector type (never changes; resolving by type reads it without locking).
    pub kind: String,
    /// Serializes the operations that change this connector; true once it is deleted (an
    /// operation that waited for a delete then finds no connector).
    pub op: Arc<tokio::sync::Mutex<bool>>,
    /// Held only to copy or replace the snapshot.
    snap: Mutex<Snapshot>,
}

impl Slot {
    pub fn new(
        row: ConnectorRow,
        config: Arc<ConnectorConfig>,
        runtime: Option<ConnectorRuntime>,
    ) -> Arc<Slot> {
        Arc::new(Slot {
            kind: row.kind.clone(),
            op: Arc::new(tokio::sync::Mutex::new(false)),
            snap: Mutex::new(Snapshot {
                row,
                config,
                runtime: runtime.map(Arc::new),
            }),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snap.lock().clone()
    }

    pub fn set(
        &self,
        row: ConnectorRow,
        config: Arc<ConnectorConfig>,
        runtime: Option<ConnectorRuntime>,
    ) {
        *self.snap.lock() = Snapshot {
            row,
            config,
            runtime: runtime.map(Arc::new),
        };
    }

    /// Takes the runtime out of the snapshot (readers then see the saved checkpoints).
    pub fn take_runtime(&self) -> Option<Arc<ConnectorRuntime>> {
        self.snap.lock().runtime.take()
    }
}

/// Stops the runtimes of the given connectors all at once (marking them deleted if asked),
/// each after the operation in progress on it.
pub(super) async fn stop_slots(slots: Vec<Arc<Slot>>, delete: bool) {
    let mut stops = tokio::task::JoinSet::new();
    for slot in slots {
        stops.spawn(async move {
            let mut deleted = slot.op.lock().await;
            if delete {
                *deleted = true;
            }
            let runtime = slot.snapshot().runtime;
            if let Some(rt) = runtime {
                rt.stop().await;
            }
            slot.take_runtime();
        });
    }
    while let Some(done) = stops.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "stopping a connector failed");
        }
    }
}

/// The task leases this node holds for one connector's shards (cluster mode): a task saves its
/// checkpoint only under its own shard's lease.
#[derive(Default)]
pub struct TaskGuards(Mutex<BTreeMap<u32, LeaseGuard>>);

impl TaskGuards {
    pub fn get(&self, shard: u32) -> Option<LeaseGuard> {
        self.0.lock().get(&shard).cloned()
    }

    pub fn insert(&self, shard: u32, guard: LeaseGuard) {
        self.0.lock().insert(shard, guard);
    }

    pub fn remove(&self, shard: u32) {
        self.0.lock().remove(&shard);
    }

    /// The shards whose task lease this node holds.
    pub fn shards(&self) -> BTreeSet<u32> {
        self.0.lock().keys().copied().collect()
    }
}

/// Every connector of the server, keyed by (topic uid, connector id).
pub struct ConnectorRegistry {
    /// Held only to look up, insert or remove a slot; never across an await.
    pub(super) slots: Mutex<BTreeMap<(i64, String), Arc<Slot>>>,
    worker: Mutex<String>,
    // issue 14: leases
    /// Cluster mode: a connector is controlled by the node holding its `conn:` lease, and each
    /// shard's task runs on the node holding its `task:` lease. Off (embedded): everything
    /// runs here.
    clustered: AtomicBool,
    /// The control leases of the connectors this node controls (cluster mode).
    guards: Mutex<HashMap<(i64, String), LeaseGuard>>,
    /// The task leases this node holds, by connector (cluster mode).
    tasks: Mutex<HashMap<(i64, String), Arc<TaskGuards>>>,
}

/// Whether (and under which lease) a connector is controlled by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RunsHere {
    /// Embedded mode: everything runs here, unfenced.
    Always,
    /// Cluster mode, this node holds the connector's control lease.
    Leased(LeaseGuard),
    /// Cluster mode, another node controls it (or nobody yet).
    No,
}

impl ConnectorRegistry {
    /// The worker address shown in shard status (`WorkerAddress`) and `ClusterAddress`.
    pub fn worker(&self) -> String {
        self.worker.lock().clone()
    }

    // issue 14: leases
    /// Switches to cluster mode: runtimes run only under a lease (see [`RunsHere`]), and the
    /// worker address shown is this node's advertise address.
    pub fn set_clustered(&self, advertise: &str) {
        self.clustered.store(true, Ordering::SeqCst);
        *self.worker.lock() = advertise.to_string();
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered.load(Ordering::SeqCst)
    }

    pub(super) fn runs_here(&self, key: &(i64, String)) -> RunsHere {
        if !self.is_clustered() {
            return RunsHere::Always;
        }
        match self.guards.lock().get(key) {
            Some(g) => RunsHere::Leased(g.clone()),
            None => RunsHere::No,
        }
    }

    pub(super) fn set_guard(&self, key: (i64, String), guard: Option<LeaseGuard>) {
        let mut guards = self.guards.lock();
        match guard {
            Some(g) => guards.insert(key, g),
            None => guards.remove(&key),
        };
    }

    /// The task leases this node holds for a connector (an empty set at first).
    pub(super) fn task_guards(&self, key: &(i64, String)) -> Arc<TaskGuards> {
        self.tasks.lock().entry(key.clone()).or_default().clone()
    }

    /// Forgets a deleted connector's task leases.
    pub(super) fn forget_tasks(&self, key: &(i64, String)) {
        self.tasks.lock().remove(key);
    }
}

impl Default for ConnectorRegistry {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        ConnectorRegistry {
            slots: Mutex::new(BTreeMap::new()),
            worker: Mutex::new(format!("{host}/sluice-{}", std::process::id())),
            clustered: AtomicBool::new(false),
            guards: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
        }
    }
}
