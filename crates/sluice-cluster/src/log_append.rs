//! Appends: the per-shard queues and the node's statement runners (see `log.rs` for why a
//! statement is never cancelled; the statement itself is in `log_append_sql.rs`).
//!
//! A put joins its shard's queue. A shard with puts waiting and none in a statement is *ready*.
//! The node runs at most [`PgLogOptions::appends_in_flight`](crate::log::PgLogOptions) statements
//! at a time; each takes the waiting puts of every ready shard (up to `max_statement_bytes`), so
//! one commit (one WAL flush, one synchronous-standby round trip) carries the puts of many shards
//! when the node is busy. A shard is in at most one statement of the node at a time: its later
//! puts wait for the next one.
//!
//! A put may carry the catalog version its caller checked it against; the statement appends a
//! shard's puts only if the shared catalog is still at that version. A statement takes a shard's
//! puts up to the first whose version differs, so each shard's part of a statement has one
//! version to check and the check's refusal reaches exactly the puts it concerns.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_log::store::StoreError;
use sluice_log::AppendInfo;
use tokio::sync::{oneshot, watch};

use crate::log::{Inner, ShardState};
use crate::log_append_sql::{execute, PutRef, ShardOutcome};

/// Largest put (its encoded bytes), as the local log's frame limit.
pub const MAX_PUT_BYTES: usize = sluice_log::MAX_FRAME_BYTES as usize;

/// One put waiting for its statement.
struct Pending {
    count: u32,
    bytes: Vec<u8>,
    /// The catalog version the put was checked against, if the caller asks for the check
    /// (`ShardStore::append_checked`).
    catalog_seen: Option<i64>,
    reply: oneshot::Sender<Result<AppendInfo, StoreError>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Some of the shard's puts are in a statement now.
    in_flight: bool,
    /// The shard is in the node's ready list.
    listed: bool,
    closed: bool,
}

/// One shard's queue of puts on this node.
pub(crate) struct Coalescer {
    queue: Mutex<Queue>,
    /// `true` while the shard has puts waiting or in a statement.
    busy: watch::Sender<bool>,
    /// Statements so far that carried some of the shard's puts.
    statements: AtomicU64,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            queue: Mutex::new(Queue::default()),
            busy: watch::Sender::new(false),
            statements: AtomicU64::new(0),
        }
    }
}

impl Coalescer {
    /// Append statements this node has run with some of the shard's puts.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Refuses new puts and waits (no deadline) until the shard's puts have all been through a
    /// statement.
    pub async fn close_and_drain(&self) {
        self.queue.lock().closed = true;
        let mut rx = self.busy.subscribe();
        // The sender lives as long as `self`, so this only returns once idle.
        let _ = rx.wait_for(|busy| !busy).await;
    }
}

/// The node's ready shards and statement runners.
#[derive(Default)]
pub(crate) struct Dispatcher {
    state: Mutex<DispatchState>,
    /// Statements run so far by this node.
    statements: AtomicU64,
    /// Statements PostgreSQL rolled back as deadlock victims or serialization failures, and
    /// that were run again.
    pub(crate) conflicts: AtomicU64,
}

#[derive(Default)]
struct DispatchState {
    ready: VecDeque<Arc<ShardState>>,
    runners: usize,
}

impl Dispatcher {
    /// Append statements this node has run (each carries one or more puts of one or more
    /// shards).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Statements run again after PostgreSQL rolled them back for a conflict.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Lists a shard as ready, and starts a runner if fewer than the limit run.
    fn make_ready(&self, log: &Arc<Inner>, shard: Arc<ShardState>) {
        let start = {
            let mut d = self.state.lock();
            d.ready.push_back(shard);
            let start = d.runners < log.opts.appends_in_flight;
            if start {
                d.runners += 1;
            }
            start
        };
        if start {
            // The statements run in a task of their own: dropping a caller cannot cancel one.
            tokio::spawn(run_statements(log.clone()));
        }
    }
}

/// Encodes the payloads as a frame body: each one's length (u32, little-endian), then it.
pub(crate) fn encode(payloads: &[Bytes]) -> Result<Vec<u8>, StoreError> {
    let size: usize = payloads.iter().map(|p| 4 + p.len()).sum();
    if size > MAX_PUT_BYTES || payloads.len() > u32::MAX as usize {
        return Err(StoreError::TooLarge {
            size: size as u64,
            max: MAX_PUT_BYTES as u64,
        });
    }
    let mut out = Vec::with_capacity(size);
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Queues one put for a statement and waits for its sequences.
pub(crate) async fn append(
    log: &Arc<Inner>,
    shard: &Arc<ShardState>,
    payloads: Vec<Bytes>,
    catalog_seen: Option<i64>,
) -> Result<AppendInfo, StoreError> {
    if payloads.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let bytes = encode(&payloads)?;
    let (reply, rx) = oneshot::channel();
    let list = {
        let mut q = shard.coalescer.queue.lock();
        if q.closed {
            return Err(StoreError::Closed);
        }
        q.pending.push_back(Pending {
            count: payloads.len() as u32,
            bytes,
            catalog_seen,
            reply,
        });
        let list = !q.in_flight && !q.listed;
        if list {
            q.listed = true;
            shard.coalescer.busy.send_replace(true);
        }
        list
    };
    if list {
        log.dispatcher.make_ready(log, shard.clone());
    }
    match rx.await {
        Ok(r) => r,
        // The runner ended without answering (it panicked): the put may have been committed.
        Err(_) => Err(StoreError::OutcomeUnknown("append task ended".into())),
    }
}

/// One statement's puts, per shard.
type Batch = Vec<(Arc<ShardState>, Vec<Pending>)>;

/// Takes the waiting puts of the ready shards, up to `max_statement_bytes` (at least one put),
/// and of each shard only puts checked against one catalog version (see the module docs). The
/// shards taken are marked in flight.
fn take_batch(log: &Inner) -> Batch {
    let mut d = log.dispatcher.state.lock();
    let mut batch: Batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(shard) = d.ready.pop_front() {
        let mut puts = Vec::new();
        let full = {
            let mut q = shard.coalescer.queue.lock();
            while let Some(p) = q.pending.front() {
                if puts
                    .first()
                    .is_some_and(|first: &Pending| first.catalog_seen != p.catalog_seen)
                {
                    break;
                }
                let fits = bytes + p.bytes.len() <= log.opts.max_statement_bytes;
                if !fits && (!batch.is_empty() || !puts.is_empty()) {
                    break;
                }
                bytes += p.bytes.len();
                puts.extend(q.pending.pop_front());
            }
            let full = puts.is_empty() && !q.pending.is_empty();
            if !full {
                q.listed = false;
            }
            if !puts.is_empty() {
                q.in_flight = true;
            } else if !full {
                // Nothing waits after all (not expected): the shard is idle.
                shard.coalescer.busy.send_replace(false);
            }
            full
        };
        if full {
            // The statement is full: the shard waits, still listed, for the next one.
            d.ready.push_front(shard);
            break;
        }
        if !puts.is_empty() {
            batch.push((shard, puts));
        }
    }
    batch
}

/// Marks the batch's shards out of flight; those with puts waiting are listed again.
fn release(log: &Inner, shards: impl Iterator<Item = Arc<ShardState>>) {
    let mut relist = Vec::new();
    for shard in shards {
        let again = {
            let mut q = shard.coalescer.queue.lock();
            q.in_flight = false;
            let again = !q.pending.is_empty();
            if again {
                q.listed = true;
            } else {
                shard.coalescer.busy.send_replace(false);
            }
            again
        };
        if again {
            relist.push(shard);
        }
    }
    if !relist.is_empty() {
        log.dispatcher.state.lock().ready.extend(relist);
    }
}

/// Keeps the node's runner count and the shards' flight marks right if a runner ends early (a
/// panic): the callers of the statement it ran hear `OutcomeUnknown` (their reply channels
/// close), its shards' later puts go on, and a new runner takes over the ready shards.
struct Runner {
    log: Arc<Inner>,
    /// The shards of the statement in progress.
    in_statement: Vec<Arc<ShardState>>,
    /// Disarmed when the runner ends normally.
    armed: bool,
}

impl Drop for Runner {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        release(&self.log, self.in_statement.drain(..));
        let restart = {
            let mut d = self.log.dispatcher.state.lock();
            d.runners -= 1;
            !d.ready.is_empty()
        };
        if restart && tokio::runtime::Handle::try_current().is_ok() {
            self.log.dispatcher.state.lock().runners += 1;
            tokio::spawn(run_statements(self.log.clone()));
        }
    }
}

/// Runs statements until no shard is ready.
async fn run_statements(log: Arc<Inner>) {
    let mut runner = Runner {
        log: log.clone(),
        in_statement: Vec::new(),
        armed: true,
    };
    loop {
        let batch = take_batch(&log);
        if batch.is_empty() {
            let mut d = log.dispatcher.state.lock();
            if d.ready.is_empty() {
                d.runners -= 1;
                runner.armed = false;
                return;
            }
            continue;
        }
        runner.in_statement = batch.iter().map(|(s, _)| s.clone()).collect();
        run_one(&log, batch).await;
        release(&log, runner.in_statement.drain(..));
    }
}

/// Runs one statement and answers its callers.
async fn run_one(log: &Inner, batch: Batch) {
    log.dispatcher.statements.fetch_add(1, Ordering::Relaxed);
    let keys: Vec<&str> = batch.iter().map(|(s, _)| s.key.as_str()).collect();
    // One version per shard: take_batch takes no two puts of a shard checked against different
    // versions.
    let fences: Vec<Option<i64>> = batch
        .iter()
        .map(|(_, puts)| puts.first().and_then(|p| p.catalog_seen))
        .collect();
    let puts: Vec<PutRef<'_>> = batch
        .iter()
        .enumerate()
        .flat_map(|(i, (_, puts))| {
            puts.iter().map(move |p| PutRef {
                shard: i,
                count: p.count,
                bytes: &p.bytes,
            })
        })
        .collect();
    for (shard, _) in &batch {
        shard.coalescer.statements.fetch_add(1, Ordering::Relaxed);
    }
    let result = execute(log, &keys, &fences, &puts).await;
    drop(puts);
    match result {
        Ok(outcomes) => {
            for ((shard, puts), outcome) in batch.into_iter().zip(outcomes) {
                answer(&shard, puts, outcome);
            }
        }
        Err(e) => {
            tracing::warn!(shards = keys.len(), error = %e, "cluster log append failed");
            for (_, puts) in batch {
                for p in puts {
                    let _ = p.reply.send(Err(e.to_store_error()));
                }
            }
        }
    }
}

/// Answers one shard's callers.
fn answer(shard: &ShardState, puts: Vec<Pending>, outcome: ShardOutcome) {
    let (base, time) = match outcome {
        ShardOutcome::Appended {
            base_seq,
            system_time,
        } => (base_seq, system_time),
        other => {
            for p in puts {
                let _ = p.reply.send(Err(match &other {
                    ShardOutcome::Closed => StoreError::Closed,
                    ShardOutcome::NotFound => StoreError::NotFound,
                    ShardOutcome::CatalogMoved { seen } => StoreError::CatalogMoved { seen: *seen },
                    ShardOutcome::Unexplained(m) => StoreError::Backend(m.clone().into()),
                    ShardOutcome::Appended { .. } => unreachable!("matched above"),
                }));
            }
            return;
        }
    };
    // Watchers first, so that a caller sees its append in the watch on return.
    let total: u64 = puts.iter().map(|p| u64::from(p.count)).sum();
    shard.publish(base + total);
    let mut off = 0u64;
    for p in puts {
        let first_seq = base + off;
        off += u64::from(p.count);
        let _ = p.reply.send(Ok(AppendInfo {
            first_seq,
            last_seq: first_seq + u64::from(p.count) - 1,
            system_time: time,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_prefixes_each_payload_with_its_length() {
        let out = encode(&[Bytes::from_static(b"ab"), Bytes::new()]).unwrap();
        assert_eq!(out, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
    }

    #[test]
    fn sequences_saturate_in_bigint() {
        assert_eq!(crate::log::to_i64(u64::MAX), i64::MAX);
        assert_eq!(crate::log::to_u64(-1), 0);
    }
}
