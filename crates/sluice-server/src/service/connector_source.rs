//! The connector runtime's view of a topic: [`TopicSource`] implements
//! `sluice_connect::runtime::ShardSource` over the topic's shard logs and the meta store.

use std::ops::ControlFlow;
use std::sync::Arc;

use sluice_connect::runtime::{
    BoxFuture, Checkpoint, ShardInfo, ShardSource, SourceBatch, SourceEntry, SourceError,
};
use sluice_log::LogError;
use sluice_meta::{CheckpointRow, MetaStore};
use sluice_proto::batch;
use sluice_proto::Record;
use tokio::sync::watch;

use super::catalog::{ShardState, Topic};
use super::connector_registry::TaskGuards;
use super::records::{visit_entry, Reshape};

/// One connector's access to its topic.
pub struct TopicSource {
    pub topic: Arc<Topic>,
    pub meta: MetaStore,
    pub connector_id: String,
    // issue 14: leases
    /// Cluster mode: the task leases this node holds for the connector's shards; a shard's
    /// checkpoint is saved only under its own task lease, so a node that lost a shard (frozen,
    /// cut off) can never move its checkpoint.
    pub tasks: Option<Arc<TaskGuards>>,
}

pub fn checkpoint_row(cp: &Checkpoint) -> CheckpointRow {
    CheckpointRow {
        shard_id: cp.shard_id,
        next_seq: cp.next_seq,
        last_time: cp.last_time,
        discard_count: cp.discard_count,
        finished: cp.finished,
        update_time: cp.update_time,
        late_count: cp.late_count,
    }
}

pub fn checkpoint_of(row: &CheckpointRow) -> Checkpoint {
    Checkpoint {
        shard_id: row.shard_id,
        next_seq: row.next_seq,
        last_time: row.last_time,
        discard_count: row.discard_count,
        finished: row.finished,
        update_time: row.update_time,
        late_count: row.late_count,
    }
}

/// Records in a stored batch, from its header (1 if it has none; never more than its bytes
/// could hold).
fn record_count(payload: &[u8]) -> usize {
    batch::parse_header(payload)
        .map_or(1, |h| (h.record_count as usize).min(payload.len() / 24 + 1))
}

/// The shards of a topic as the runtime sees them.
pub fn shard_infos(topic: &Topic) -> Vec<ShardInfo> {
    topic
        .shards
        .read()
        .iter()
        .map(|s| {
            let meta = s.meta.read();
            ShardInfo {
                id: s.id,
                parents: meta.parents.clone(),
                closed: meta.state == ShardState::Closed,
                first_seq: s.log.first_seq(),
                next_seq: s.log.next_seq(),
            }
        })
        .collect()
}

impl ShardSource for TopicSource {
    fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        Ok(shard_infos(&self.topic))
    }

    fn read(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        self.read_reusing(shard, from_seq, max_entries, max_bytes, Vec::new())
    }

    fn read_reusing(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
        mut spare: Vec<Record>,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        let topic = self.topic.clone();
        Box::pin(async move {
            let shard = topic
                .shard(shard)
                .ok_or_else(|| SourceError::gone(format!("shard {shard} no longer exists")))?;
            tokio::task::spawn_blocking(move || {
                let entries =
                    shard
                        .log
                        .read(from_seq, max_entries, max_bytes)
                        .map_err(|e| match e {
                            LogError::OutOfRange { requested, first } => {
                                SourceError::expired(requested, first)
                            }
                            LogError::Closed => {
                                SourceError::gone(format!("shard {} was deleted", shard.id))
                            }
                            other => SourceError::transient(other.to_string()).with_source(other),
                        })?;
                let versions = topic.versions();
                let mut shape = Reshape::new(&topic, &versions);
                let mut out = Vec::with_capacity(entries.len());
                let count: usize = entries.iter().map(|e| record_count(&e.payload)).sum();
                let mut records = Vec::with_capacity(count);
                for entry in entries {
                    let before = records.len();
                    visit_entry(&mut shape, &entry, |record| {
                        records.push(match spare.pop() {
                            Some(mut reused) => {
                                reused.assign_from(record);
                                reused
                            }
                            None => Record::from_ref(record),
                        });
                        ControlFlow::Continue(())
                    })
                    .map_err(|e| SourceError::transient(e.to_string()).with_source(e))?;
                    out.push(SourceEntry {
                        seq: entry.seq,
                        system_time: entry.system_time,
                        record_count: records.len() - before,
                        bytes: entry.payload.len(),
                    });
                }
                Ok(SourceBatch {
                    schema: shape.current().cloned(),
                    entries: out,
                    records,
                    spare,
                })
            })
            .await
            .map_err(|e| SourceError::transient(format!("read task failed: {e}")).with_source(e))?
        })
    }

    fn watch(&self, shard: u32) -> Option<watch::Receiver<u64>> {
        self.topic.shard(shard).map(|s| s.log.watch())
    }

    fn seq_at_or_after_time(&self, shard: u32, t_ms: i64) -> Option<u64> {
        self.topic.shard(shard)?.log.seq_at_or_after_time(t_ms)
    }

    fn save_checkpoint(&self, cp: Checkpoint) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let rows = [checkpoint_row(&cp)];
            let (uid, id) = (self.topic.uid, &self.connector_id);
            match &self.tasks {
                None => self.meta.save_checkpoints(uid, id, &rows).await,
                Some(tasks) => match tasks.get(cp.shard_id) {
                    Some(g) => self.meta.save_checkpoints_fenced(uid, id, &rows, &g).await,
                    None => {
                        return Err(format!(
                            "this node no longer holds the task lease of shard {}",
                            cp.shard_id
                        ))
                    }
                },
            }
            .map_err(|e| e.to_string())
        })
    }

    fn stored_checkpoint(&self, shard: u32) -> BoxFuture<'_, Result<Option<Checkpoint>, String>> {
        Box::pin(async move {
            let rows = self
                .meta
                .load_checkpoints(self.topic.uid, &self.connector_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(rows.iter().find(|r| r.shard_id == shard).map(checkpoint_of))
        })
    }
}
