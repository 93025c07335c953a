//! What a connector reports about its shards (protocol doc §4.9): the shard status (state,
//! position, last error, worker) and the done time. In cluster mode the shards run on several
//! nodes: this node reports from the stored checkpoints and what runs here, and the HTTP layer
//! asks the other nodes for their live entries (`http/task_fanout.rs`).

use std::collections::{BTreeMap, BTreeSet};

use sluice_connect::runtime::status::{self, Checkpoint, LogView, ShardReport};
use sluice_connect::sinks::ConnectorConfig;

use super::catalog::{now_ms, Catalog, Topic};
use super::connectors::{DoneTime, STOPPED};
use super::error::Result;

impl Catalog {
    pub(super) fn log_view(topic: &Topic, cp: &Checkpoint) -> LogView {
        match topic.shard(cp.shard_id) {
            Some(s) => LogView {
                first_seq: s.log.first_seq(),
                next_seq: s.log.next_seq(),
                time_at_checkpoint: s.log.time_of(cp.next_seq),
            },
            None => LogView {
                first_seq: cp.next_seq,
                next_seq: cp.next_seq,
                time_at_checkpoint: None,
            },
        }
    }

    /// Status of one shard (or all). In cluster mode a shard whose task runs on another node
    /// is reported from its stored checkpoint with that node's address (the HTTP layer asks
    /// that node for the live state, `http/task_fanout.rs`); with `here_only` (cluster mode),
    /// only the shards whose task runs on this node are reported.
    pub async fn connector_shard_status(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        shard: Option<&str>,
    ) -> Result<Vec<ShardReport>> {
        self.connector_shard_status_in(project, topic, id, shard, false)
            .await
    }

    /// [`Catalog::connector_shard_status`], of the shards whose task runs on this node only
    /// when `here_only` (cluster mode; the embedded mode runs every shard here).
    pub async fn connector_shard_status_in(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        shard: Option<&str>,
        here_only: bool,
    ) -> Result<Vec<ShardReport>> {
        let topic = self.topic(project, topic)?;
        let (key, slot) = self.resolve(&topic, id)?;
        let entry = slot.snapshot();
        let only = match shard.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(topic.shard_by_text(s)?.id),
            None => None,
        };
        let cps = self.checkpoints_of(&topic, &entry).await?;
        let live = entry
            .runtime
            .as_ref()
            .map(|rt| rt.task_status())
            .unwrap_or_default();
        let stopped = entry.row.state == STOPPED;
        let now = now_ms();
        let worker = self.connectors.worker();
        let clustered = self.connectors.is_clustered();
        let mut here: BTreeSet<u32> = match &entry.runtime {
            Some(rt) => rt
                .allowed()
                .unwrap_or_else(|| cps.keys().copied().collect()),
            None => BTreeSet::new(),
        };
        let elsewhere = if clustered && !here_only {
            self.task_holders(key.0, &key.1).await?
        } else {
            BTreeMap::new()
        };
        if clustered && !here_only {
            // A shard counts as run here only while the lease store says so (a node just back
            // from a freeze may not have stopped the tasks it lost yet).
            let me = self.cluster.as_ref().map(|c| c.node_id.as_str());
            here.retain(|s| {
                elsewhere
                    .get(s)
                    .is_some_and(|h| Some(h.node.as_str()) == me)
            });
        }
        Ok(cps
            .values()
            .filter(|cp| only.is_none_or(|s| s == cp.shard_id))
            .filter(|cp| !(clustered && here_only) || here.contains(&cp.shard_id))
            .map(|cp| {
                let view = Self::log_view(&topic, cp);
                let worker = match elsewhere.get(&cp.shard_id) {
                    _ if !clustered || here.contains(&cp.shard_id) => worker.as_str(),
                    Some(holder) => holder.address.as_str(),
                    None => "",
                };
                let live = live
                    .get(&cp.shard_id)
                    .filter(|_| here.contains(&cp.shard_id));
                status::report(cp, &view, live, stopped, worker, now)
            })
            .collect())
    }

    pub async fn connector_done_time(
        &self,
        project: &str,
        topic: &str,
        id: &str,
    ) -> Result<DoneTime> {
        let topic = self.topic(project, topic)?;
        let (_, slot) = self.resolve(&topic, id)?;
        let entry = slot.snapshot();
        let cps = self.checkpoints_of(&topic, &entry).await?;
        let shards: Vec<(Checkpoint, LogView)> = cps
            .values()
            .map(|cp| (*cp, Self::log_view(&topic, cp)))
            .collect();
        let window_minutes = entry.config.time_range_minutes().unwrap_or(0);
        Ok(DoneTime {
            done_time: status::connector_done_time(&shards, now_ms()),
            // issue 10: lake — SINK_ODPS partitions follow connector_odps_time_zone.
            time_zone: match &*entry.config {
                ConnectorConfig::Odps(_) => self.config.connector_odps_time_zone.clone(),
                _ => "UTC".into(),
            },
            time_window: window_minutes * 60,
        })
    }
}
