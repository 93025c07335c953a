//! Cluster mode (issue 14): a connector's work is spread by leases (`cluster/ownership.rs`).
//!
//! - The node holding `conn:<topic_uid>:<connector_id>` *controls* the connector: requests
//!   about it are forwarded there, and its changes (config, columns, state, offsets, delete)
//!   are made there.
//! - The node holding `task:<topic_uid>:<connector_id>:<shard>` runs that shard's task: each
//!   node runs one runtime per connector over the shards it holds, and each task saves its
//!   checkpoints under its own lease ([`sluice_meta::LeaseGuard`]), so a node that lost a shard
//!   can never move its checkpoint, backwards or forwards. A gained shard starts from the
//!   checkpoint stored now; a lost one is stopped before its lease is released.
//! - Every node keeps its registry in step with the meta store: connectors created, changed or
//!   deleted through other nodes ([`Catalog::refresh_connectors`]); a changed connector's
//!   runtime restarts with the new definition, a STOPPED one stops, and the task keys of a
//!   connector exist only while it is RUNNING, so its leases are released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_meta::{ConnectorRow, LeaseGuard};

use super::catalog::{Catalog, Topic};
use super::connector_registry::Slot;
use super::connector_source::checkpoint_of;
use super::connectors::{stored_config, RUNNING};
use super::error::{Error, Result};
use crate::cluster::ownership::{WorkKey, TASK};

/// The node running one shard's task of a connector (cluster mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskHolder {
    pub node: String,
    /// Its advertise address (`host:port`), shown as `WorkerAddress`.
    pub address: String,
}

impl Catalog {
    fn topic_by_uid(&self, uid: i64) -> Option<Arc<Topic>> {
        self.all_topics().into_iter().find(|t| t.uid == uid)
    }

    /// The registry key of a connector named in a request path (an id, or a type naming the
    /// topic's single connector of that type).
    pub fn connector_key(&self, project: &str, topic: &str, id: &str) -> Result<(i64, String)> {
        let topic = self.topic(project, topic)?;
        Ok(self.resolve(&topic, id)?.0)
    }

    /// Whether some of the connector's tasks run on this node now.
    pub fn connector_runs_here(&self, uid: i64, id: &str) -> bool {
        self.connector_shards_here(uid, id)
            .is_some_and(|s| !s.is_empty())
    }

    /// The shards whose task runs on this node now (None: the connector does not run here;
    /// in the embedded mode a running connector runs every shard).
    pub fn connector_shards_here(&self, uid: i64, id: &str) -> Option<BTreeSet<u32>> {
        let slot = self
            .connectors
            .slots
            .lock()
            .get(&(uid, id.to_string()))
            .cloned()?;
        let rt = slot.snapshot().runtime?;
        Some(rt.allowed().unwrap_or_else(|| {
            self.topic_by_uid(uid)
                .map(|t| t.shards.read().iter().map(|s| s.id).collect())
                .unwrap_or_default()
        }))
    }

    /// Every task key that exists now: one per shard of each RUNNING connector.
    pub fn connector_task_keys(&self) -> Vec<(i64, String, u32)> {
        let slots: Vec<((i64, String), Arc<Slot>)> = self
            .connectors
            .slots
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut keys = Vec::new();
        for ((uid, id), slot) in slots {
            if slot.snapshot().row.state != RUNNING {
                continue;
            }
            let Some(topic) = self.topic_by_uid(uid) else {
                continue;
            };
            for shard in topic.shards.read().iter() {
                keys.push((uid, id.clone(), shard.id));
            }
        }
        keys
    }

    /// The row of a connector as stored now, with its topic and parsed config.
    async fn stored_connector(
        &self,
        uid: i64,
        id: &str,
    ) -> Result<(
        Arc<Topic>,
        ConnectorRow,
        Arc<sluice_connect::sinks::ConnectorConfig>,
    )> {
        let row = self
            .meta
            .load_connectors()
            .await?
            .into_iter()
            .find(|r| r.topic_uid == uid && r.connector_id == id)
            .ok_or_else(|| Error::NoSuchConnector(id.to_string()))?;
        let topic = self
            .topic_by_uid(uid)
            .ok_or_else(|| Error::NoSuchTopic(format!("(uid {uid})")))?;
        let config = stored_config(&row)?;
        Ok((topic, row, config))
    }

    /// The slot of a connector, created from `row` if this node has none yet.
    fn slot_for(
        &self,
        row: &ConnectorRow,
        config: &Arc<sluice_connect::sinks::ConnectorConfig>,
    ) -> Arc<Slot> {
        self.connectors
            .slots
            .lock()
            .entry((row.topic_uid, row.connector_id.clone()))
            .or_insert_with(|| Slot::new(row.clone(), config.clone(), None))
            .clone()
    }

    /// This node now holds the connector's control lease: (re)loads its row from the meta
    /// store. Its tasks run wherever their own leases are.
    pub async fn take_connector(&self, uid: i64, id: &str, guard: LeaseGuard) -> Result<()> {
        let (topic, row, config) = self.stored_connector(uid, id).await?;
        let slot = self.slot_for(&row, &config);
        self.connectors
            .set_guard((uid, id.to_string()), Some(guard));
        self.sync_slot(&topic, &slot, row, config).await
    }

    /// This node no longer holds the connector's control lease.
    pub fn drop_connector(&self, uid: i64, id: &str) {
        self.connectors.set_guard((uid, id.to_string()), None);
    }

    /// This node now holds the task lease of one shard of a connector: the shard starts here
    /// (if the connector is RUNNING) from its stored checkpoint, saving under `guard`.
    pub async fn take_task(&self, uid: i64, id: &str, shard: u32, guard: LeaseGuard) -> Result<()> {
        let key = (uid, id.to_string());
        let existing = self.connectors.slots.lock().get(&key).cloned();
        let slot = match existing {
            Some(slot) => slot,
            None => {
                let (_, row, config) = self.stored_connector(uid, id).await?;
                self.slot_for(&row, &config)
            }
        };
        let op = slot.op.lock().await;
        if *op {
            return Err(Error::NoSuchConnector(id.to_string()));
        }
        let tasks = self.connectors.task_guards(&key);
        tasks.insert(shard, guard);
        let entry = slot.snapshot();
        if entry.row.state != RUNNING {
            return Ok(());
        }
        let topic = self
            .topic_by_uid(uid)
            .ok_or_else(|| Error::NoSuchTopic(format!("(uid {uid})")))?;
        match &entry.runtime {
            Some(rt) => {
                let stored = self
                    .meta
                    .load_checkpoints(uid, id)
                    .await?
                    .iter()
                    .find(|r| r.shard_id == shard)
                    .map(checkpoint_of);
                rt.allow(shard, stored);
            }
            None => {
                let runtime = self.runtime_here(&topic, &entry.row, &entry.config).await?;
                slot.set(entry.row, entry.config, runtime);
            }
        }
        Ok(())
    }

    /// This node no longer holds the task lease of one shard: stops its task (a write in
    /// progress finishes within `connector_stop_grace_ms`; a checkpoint saved after the lease
    /// is gone is fenced), and the connector's runtime once it has no shard left.
    pub async fn drop_task(&self, uid: i64, id: &str, shard: u32) {
        let key = (uid, id.to_string());
        let slot = self.connectors.slots.lock().get(&key).cloned();
        if let Some(slot) = slot {
            let _op = slot.op.lock().await;
            if let Some(rt) = slot.snapshot().runtime {
                if rt.stop_shard(shard).await == Some(0) {
                    rt.stop().await;
                    slot.take_runtime();
                }
            }
        }
        self.connectors.task_guards(&key).remove(shard);
    }

    /// Brings a slot to `row` (a change made through another node): unless it already shows
    /// it, its runtime stops and, if RUNNING, restarts with the new definition over the
    /// shards this node holds.
    async fn sync_slot(
        &self,
        topic: &Arc<Topic>,
        slot: &Slot,
        row: ConnectorRow,
        config: Arc<sluice_connect::sinks::ConnectorConfig>,
    ) -> Result<()> {
        let op = slot.op.lock().await;
        if *op || slot.snapshot().row == row {
            return Ok(());
        }
        self.set_connector_running(row.topic_uid, &row.connector_id, row.state == RUNNING)
            .await;
        if let Some(rt) = slot.take_runtime() {
            rt.stop().await;
        }
        let runtime = self.runtime_here(topic, &row, &config).await;
        let (runtime, started) = match runtime {
            Ok(rt) => (rt, Ok(())),
            Err(e) => (None, Err(e)),
        };
        slot.set(row, config, runtime);
        drop(op);
        started
    }

    /// Brings the registry in step with the meta store: adds connectors created through other
    /// nodes, forgets deleted ones (stopping their tasks here), and applies changes made
    /// through other nodes.
    pub async fn refresh_connectors(&self) -> Result<()> {
        let rows: BTreeMap<(i64, String), ConnectorRow> = self
            .meta
            .load_connectors()
            .await?
            .into_iter()
            .map(|r| ((r.topic_uid, r.connector_id.clone()), r))
            .collect();
        let gone: Vec<(i64, String)> = self
            .connectors
            .slots
            .lock()
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.drop_connector(key.0, &key.1);
            let slot = self.connectors.slots.lock().remove(&key);
            if let Some(slot) = slot {
                let mut op = slot.op.lock().await;
                *op = true;
                if let Some(rt) = slot.take_runtime() {
                    rt.stop().await;
                }
            }
            self.connectors.forget_tasks(&key);
            self.forget_connector_subscription(key.0, &key.1);
        }
        for (key, row) in rows {
            let Some(topic) = self.topic_by_uid(key.0) else {
                continue;
            };
            let config = match stored_config(&row) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(connector = %key.1, error = %e, "skipping a connector");
                    continue;
                }
            };
            let existing = self.connectors.slots.lock().get(&key).cloned();
            match existing {
                Some(slot) => {
                    if let Err(e) = self.sync_slot(&topic, &slot, row, config).await {
                        tracing::warn!(connector = %key.1, error = %e, "restarting a changed connector failed");
                    }
                }
                None => {
                    self.set_connector_running(key.0, &key.1, row.state == RUNNING)
                        .await;
                    self.connectors
                        .slots
                        .lock()
                        .insert(key, Slot::new(row, config, None));
                }
            }
        }
        Ok(())
    }

    /// The nodes running the connector's shards now, by shard (cluster mode; empty in the
    /// embedded mode).
    pub async fn task_holders(&self, uid: i64, id: &str) -> Result<BTreeMap<u32, TaskHolder>> {
        let Some(cluster) = &self.cluster else {
            return Ok(BTreeMap::new());
        };
        let prefix = WorkKey::task_prefix(uid, id);
        let live = cluster
            .leases
            .live_with_prefix(TASK, &prefix)
            .await
            .map_err(|e| Error::Unavailable(format!("the lease store failed: {e}")))?;
        Ok(live
            .into_iter()
            .filter_map(|(key, node, address)| {
                let shard = key.strip_prefix(&prefix)?.parse().ok()?;
                Some((shard, TaskHolder { node, address }))
            })
            .collect())
    }

    /// Waits until no node holds a task lease of the connector any more (it was stopped or
    /// deleted: every node stops its tasks at its next refresh and releases their leases; a
    /// frozen node's leases expire), at most about a lease ttl plus a stop's grace.
    pub(super) async fn wait_tasks_released(&self, uid: i64, id: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let bound = cluster.options.work_leases.ttl
            + Duration::from_millis(self.config.connector_stop_grace_ms)
            + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match self.task_holders(uid, id).await {
                Ok(h) if h.is_empty() => return,
                Ok(h) if tokio::time::Instant::now() >= deadline => {
                    let nodes: BTreeSet<&str> = h.values().map(|t| t.node.as_str()).collect();
                    tracing::warn!(connector = id, ?nodes, "tasks still leased after the connector stopped; their late writes are fenced once the leases expire");
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(connector = id, error = %e, "cannot tell whether the connector's tasks stopped");
                    return;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
