//! Test support: an in-memory [`ShardSource`] for driving the runtime (and any sink behind it)
//! without a server.
//!
//! [`MemSource`] holds a topic's shards in memory: records with system times, split / merge
//! parents, closing, retention (records before a shard's first sequence are expired), a tail
//! watch per shard, and the checkpoints the runtime saves. A test may install a checkpoint hook
//! ([`MemSource::on_checkpoint`]) to assert an invariant at the moment a checkpoint is saved,
//! e.g. "every record before it has been flushed".
//!
//! The live-server compliance suite every sink passes is `compat/test_sink_compliance.py`;
//! this module is for in-process tests of the runtime and of single sinks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_proto::{Field, FieldType, Record, RecordData, RecordSchema, Value};
use tokio::sync::watch;

use crate::runtime::{
    BoxFuture, Checkpoint, ShardInfo, ShardSource, SourceBatch, SourceEntry, SourceError,
};
use crate::sink::{Columns, SharedColumns};

/// Encoded size given to each entry when the test does not choose one (for batching by bytes).
pub const DEFAULT_ENTRY_BYTES: usize = 100;

/// Called with every checkpoint the runtime saves, before it is recorded.
pub type CheckpointHook = Box<dyn Fn(&Checkpoint) + Send + Sync>;

/// One entry of a [`MemShard`]: a sequence and its records.
#[derive(Clone)]
struct MemEntry {
    seq: u64,
    system_time: i64,
    records: Vec<Record>,
    bytes: usize,
}

struct MemShard {
    parents: Vec<u32>,
    closed: bool,
    /// Entries before this sequence are expired (retention).
    first_seq: u64,
    entries: Vec<MemEntry>,
    tx: watch::Sender<u64>,
}

/// An in-memory topic: shards, their records and the checkpoints saved against it.
pub struct MemSource {
    schema: Option<Arc<RecordSchema>>,
    shards: Mutex<BTreeMap<u32, MemShard>>,
    saved: Mutex<Vec<Checkpoint>>,
    hook: Mutex<Option<CheckpointHook>>,
    /// System time given to the next record put without one (ms), then incremented.
    clock: Mutex<i64>,
    /// How many spare records each `read_reusing` was handed, in order.
    spare: Mutex<Vec<usize>>,
}

impl MemSource {
    /// A topic with the given schema (None: a BLOB topic) and no shards.
    pub fn new(schema: Option<Arc<RecordSchema>>) -> Arc<MemSource> {
        Arc::new(MemSource {
            schema,
            shards: Mutex::new(BTreeMap::new()),
            saved: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            clock: Mutex::new(1_000),
            spare: Mutex::new(Vec::new()),
        })
    }

    /// How many delivered records the runtime handed back with each read, in order (see
    /// `ShardSource::read_reusing`; this source reads like `read` and drops them).
    pub fn spare_handed_back(&self) -> Vec<usize> {
        self.spare.lock().expect("spare lock").clone()
    }

    /// The topic's schema.
    pub fn schema(&self) -> Option<Arc<RecordSchema>> {
        self.schema.clone()
    }

    /// Adds an open, empty shard (`parents`: the shards it was split or merged from).
    pub fn add_shard(&self, id: u32, parents: Vec<u32>) {
        let (tx, _) = watch::channel(0);
        let shard = MemShard {
            parents,
            closed: false,
            first_seq: 0,
            entries: Vec::new(),
            tx,
        };
        let old = self.lock_shards().insert(id, shard);
        assert!(old.is_none(), "shard {id} already exists");
    }

    /// Splits `parent` into two new shards `children`: closes the parent and adds them.
    pub fn split(&self, parent: u32, children: [u32; 2]) {
        self.close(parent);
        for c in children {
            self.add_shard(c, vec![parent]);
        }
    }

    /// Merges `parents` into the new shard `child`: closes the parents and adds it.
    pub fn merge(&self, parents: [u32; 2], child: u32) {
        for p in parents {
            self.close(p);
        }
        self.add_shard(child, parents.to_vec());
    }

    /// Appends one entry per record (system times from the source's clock); returns the
    /// sequence of the first.
    pub fn put(&self, shard: u32, records: Vec<Record>) -> u64 {
        let mut shards = self.lock_shards();
        let s = shards
            .get_mut(&shard)
            .unwrap_or_else(|| panic!("no shard {shard}"));
        assert!(!s.closed, "shard {shard} is closed");
        let first = s.entries.len() as u64;
        let mut clock = self.clock.lock().expect("clock lock");
        for record in records {
            let seq = s.entries.len() as u64;
            s.entries.push(MemEntry {
                seq,
                system_time: *clock,
                records: vec![record],
                bytes: DEFAULT_ENTRY_BYTES,
            });
            *clock += 1;
        }
        s.tx.send_replace(s.entries.len() as u64);
        first
    }

    /// Appends one entry holding all of `records` (like one batch-protocol put), `bytes` its
    /// encoded size; returns its sequence.
    pub fn put_entry(&self, shard: u32, records: Vec<Record>, bytes: usize) -> u64 {
        let mut shards = self.lock_shards();
        let s = shards
            .get_mut(&shard)
            .unwrap_or_else(|| panic!("no shard {shard}"));
        assert!(!s.closed, "shard {shard} is closed");
        let seq = s.entries.len() as u64;
        let mut clock = self.clock.lock().expect("clock lock");
        s.entries.push(MemEntry {
            seq,
            system_time: *clock,
            records,
            bytes,
        });
        *clock += 1;
        s.tx.send_replace(s.entries.len() as u64);
        seq
    }

    /// Appends tuple records with the given values and no attributes.
    pub fn put_rows(&self, shard: u32, rows: Vec<Vec<Value>>) -> u64 {
        self.put(
            shard,
            rows.into_iter()
                .map(|values| Record {
                    data: RecordData::Tuple(values),
                    attributes: Vec::new(),
                })
                .collect(),
        )
    }

    /// Sets the system time (ms) the next record gets.
    pub fn set_clock(&self, t_ms: i64) {
        *self.clock.lock().expect("clock lock") = t_ms;
    }

    /// Closes a shard: no more records; the runtime finishes it once delivered.
    pub fn close(&self, shard: u32) {
        self.lock_shards()
            .get_mut(&shard)
            .unwrap_or_else(|| panic!("no shard {shard}"))
            .closed = true;
    }

    /// Expires the records of `shard` before `first_seq` (retention).
    pub fn expire_before(&self, shard: u32, first_seq: u64) {
        self.lock_shards()
            .get_mut(&shard)
            .unwrap_or_else(|| panic!("no shard {shard}"))
            .first_seq = first_seq;
    }

    /// Every checkpoint saved so far, in order.
    pub fn saved(&self) -> Vec<Checkpoint> {
        self.saved.lock().expect("saved lock").clone()
    }

    /// Installs a hook called with each checkpoint as it is saved (a panic in it fails the
    /// task that saved it, which the runtime test then sees as a missing delivery).
    pub fn on_checkpoint(&self, hook: impl Fn(&Checkpoint) + Send + Sync + 'static) {
        *self.hook.lock().expect("hook lock") = Some(Box::new(hook));
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, MemShard>> {
        self.shards.lock().expect("shards lock")
    }
}

impl ShardSource for MemSource {
    fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        Ok(self
            .lock_shards()
            .iter()
            .map(|(id, s)| ShardInfo {
                id: *id,
                parents: s.parents.clone(),
                closed: s.closed,
                first_seq: s.first_seq,
                next_seq: s.entries.len() as u64,
            })
            .collect())
    }

    fn read(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        // Like the shard log: at most `max_entries`, stopping before `max_bytes` (but at least one).
        let result = match self.lock_shards().get(&shard) {
            None => Err(SourceError::gone(format!("no shard {shard}"))),
            Some(s) if from_seq < s.first_seq => Err(SourceError::expired(from_seq, s.first_seq)),
            Some(s) => {
                let mut entries: Vec<SourceEntry> = Vec::new();
                let mut records = Vec::new();
                let mut bytes = 0;
                for e in s.entries.iter().skip(from_seq as usize).take(max_entries) {
                    if !entries.is_empty() && bytes + e.bytes > max_bytes {
                        break;
                    }
                    bytes += e.bytes;
                    entries.push(SourceEntry {
                        seq: e.seq,
                        system_time: e.system_time,
                        record_count: e.records.len(),
                        bytes: e.bytes,
                    });
                    records.extend(e.records.iter().cloned());
                }
                Ok(SourceBatch {
                    schema: self.schema.clone(),
                    entries,
                    records,
                    spare: Vec::new(),
                })
            }
        };
        Box::pin(async move { result })
    }

    fn read_reusing(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
        spare: Vec<Record>,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        self.spare.lock().expect("spare lock").push(spare.len());
        self.read(shard, from_seq, max_entries, max_bytes)
    }

    fn watch(&self, shard: u32) -> Option<watch::Receiver<u64>> {
        self.lock_shards().get(&shard).map(|s| s.tx.subscribe())
    }

    fn seq_at_or_after_time(&self, shard: u32, t_ms: i64) -> Option<u64> {
        let shards = self.lock_shards();
        let s = shards.get(&shard)?;
        s.entries
            .iter()
            .skip(s.first_seq as usize)
            .find(|e| e.system_time >= t_ms)
            .map(|e| e.seq)
    }

    fn save_checkpoint(&self, cp: Checkpoint) -> BoxFuture<'_, Result<(), String>> {
        if let Some(hook) = self.hook.lock().expect("hook lock").as_ref() {
            hook(&cp);
        }
        self.saved.lock().expect("saved lock").push(cp);
        Box::pin(async { Ok(()) })
    }

    fn stored_checkpoint(&self, shard: u32) -> BoxFuture<'_, Result<Option<Checkpoint>, String>> {
        let last = self
            .saved
            .lock()
            .expect("saved lock")
            .iter()
            .rev()
            .find(|c| c.shard_id == shard)
            .copied();
        Box::pin(async move { Ok(last) })
    }
}

/// A schema of nullable fields.
pub fn schema(fields: &[(&str, FieldType)]) -> Arc<RecordSchema> {
    Arc::new(RecordSchema {
        fields: fields
            .iter()
            .map(|(name, t)| Field {
                name: name.to_string(),
                field_type: *t,
                comment: String::new(),
                not_null: false,
            })
            .collect(),
    })
}

/// Connector columns for all fields of `schema`.
pub fn columns_of(schema: &RecordSchema) -> SharedColumns {
    Arc::new(Columns {
        names: schema.fields.iter().map(|f| f.name.clone()).collect(),
        types: schema.fields.iter().map(|f| f.field_type).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SourceErrorKind;

    fn source() -> Arc<MemSource> {
        let src = MemSource::new(Some(schema(&[("v", FieldType::Bigint)])));
        src.add_shard(0, vec![]);
        src
    }

    fn block_on<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn reads_by_count_and_bytes_from_a_sequence() {
        let src = source();
        assert_eq!(
            src.put_rows(0, (0..5).map(|i| vec![Value::Int(i)]).collect()),
            0
        );
        let batch = block_on(src.read(0, 1, 10, 2 * DEFAULT_ENTRY_BYTES)).unwrap();
        let seqs: Vec<u64> = batch.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        let batch = block_on(src.read(0, 3, 1, usize::MAX)).unwrap();
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(*src.watch(0).unwrap().borrow(), 5);
    }

    #[test]
    fn topology_time_lookup_and_retention() {
        let src = source();
        src.set_clock(5_000);
        src.put_rows(0, vec![vec![Value::Int(1)], vec![Value::Int(2)]]);
        assert_eq!(src.seq_at_or_after_time(0, 5_001), Some(1));
        assert_eq!(src.seq_at_or_after_time(0, 9_999), None);
        src.split(0, [1, 2]);
        src.merge([1, 2], 3);
        let shards = src.shards().unwrap();
        let view: Vec<(u32, Vec<u32>, bool)> = shards
            .iter()
            .map(|s| (s.id, s.parents.clone(), s.closed))
            .collect();
        assert_eq!(
            view,
            vec![
                (0, vec![], true),
                (1, vec![0], true),
                (2, vec![0], true),
                (3, vec![1, 2], false)
            ]
        );
        src.expire_before(0, 1);
        assert_eq!(
            block_on(src.read(0, 0, 10, usize::MAX)).unwrap_err().kind,
            SourceErrorKind::Expired {
                requested: 0,
                first: 1
            }
        );
        assert!(matches!(
            block_on(src.read(9, 0, 10, usize::MAX)),
            Err(SourceError {
                kind: SourceErrorKind::Gone,
                ..
            })
        ));
    }

    #[test]
    fn checkpoints_are_recorded_after_the_hook() {
        let src = source();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        src.on_checkpoint(move |cp| seen2.lock().unwrap().push(cp.next_seq));
        block_on(src.save_checkpoint(Checkpoint::at(0, 7))).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![7]);
        assert_eq!(src.saved()[0].next_seq, 7);
    }
}
