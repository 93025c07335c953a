//! Appends: the sequencer statement and the per-shard coalescer (see `log.rs` for why a
//! statement is never cancelled).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_log::store::{BackendError, StoreError};
use sluice_log::AppendInfo;
use sqlx::Row;
use tokio::sync::{oneshot, watch};

use crate::log::{to_u64, Inner, ShardState};

/// Largest put (its encoded bytes), as the local log's frame limit.
pub const MAX_PUT_BYTES: usize = sluice_log::MAX_FRAME_BYTES as usize;

/// The sequencer: moves the head and inserts one row per put, in one autocommit statement.
/// `$1` shard key, `$2` entries in all, `$3` each put's offset from the statement's first
/// sequence, `$4` each put's entry count, `$5` each put's bytes.
const APPEND_SQL: &str = "\
WITH head AS (
    UPDATE shard_head
       SET next_seq = next_seq + $2,
           last_time_ms = GREATEST(last_time_ms,
               (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
     WHERE shard_key = $1 AND state = 'ACTIVE'
 RETURNING next_seq - $2 AS base_seq, last_time_ms
), rows AS (
    INSERT INTO log_entry (shard_key, base_seq, count, system_time_ms, bytes)
    SELECT $1, head.base_seq + p.off, p.cnt, head.last_time_ms, p.bytes
      FROM head, unnest($3::bigint[], $4::int[], $5::bytea[]) AS p(off, cnt, bytes)
)
SELECT base_seq, last_time_ms FROM head";

/// One put waiting for its statement.
struct Pending {
    count: u32,
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<AppendInfo, StoreError>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    in_flight: bool,
    closed: bool,
}

/// At most one append statement in flight per shard on this node; the puts arriving meanwhile
/// go into the next one.
pub(crate) struct Coalescer {
    queue: Mutex<Queue>,
    /// `true` while a statement task runs.
    busy: watch::Sender<bool>,
    /// Statements run so far (each carries one or more puts).
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
    /// Append statements this node has run for the shard.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Refuses new puts and waits (no deadline) until the statement task has finished.
    pub async fn close_and_drain(&self) {
        self.queue.lock().closed = true;
        let mut rx = self.busy.subscribe();
        // The sender lives as long as `self`, so this only returns once idle.
        let _ = rx.wait_for(|busy| !busy).await;
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

/// Queues one put for the shard's next statement and waits for its sequences.
pub(crate) async fn append(
    log: &std::sync::Arc<Inner>,
    shard: &std::sync::Arc<ShardState>,
    payloads: Vec<Bytes>,
) -> Result<AppendInfo, StoreError> {
    if payloads.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let bytes = encode(&payloads)?;
    let (reply, rx) = oneshot::channel();
    let start = {
        let mut q = shard.coalescer.queue.lock();
        if q.closed {
            return Err(StoreError::Closed);
        }
        q.pending.push_back(Pending {
            count: payloads.len() as u32,
            bytes,
            reply,
        });
        !std::mem::replace(&mut q.in_flight, true)
    };
    if start {
        shard.coalescer.busy.send_replace(true);
        // The statements run in a task of their own: dropping this future cannot cancel one.
        tokio::spawn(run_statements(log.clone(), shard.clone()));
    }
    match rx.await {
        Ok(r) => r,
        // The task ended without answering (it panicked): the put may have been committed.
        Err(_) => Err(StoreError::OutcomeUnknown("append task ended".into())),
    }
}

/// Clears the shard's in-flight mark if the statement task ends early (a panic): the callers
/// waiting on it hear `OutcomeUnknown` (their reply channel closes) and the next put starts a
/// new task, instead of every later put of the shard waiting forever.
/// Disarmed (`None`) when the task ends normally.
struct InFlight(Option<std::sync::Arc<ShardState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(shard) = self.0.take() else { return };
        let mut q = shard.coalescer.queue.lock();
        if q.in_flight {
            q.pending.clear();
            q.in_flight = false;
            shard.coalescer.busy.send_replace(false);
        }
    }
}

/// Runs statements until the queue is empty.
async fn run_statements(log: std::sync::Arc<Inner>, shard: std::sync::Arc<ShardState>) {
    let mut guard = InFlight(Some(shard.clone()));
    loop {
        let batch = {
            let mut q = shard.coalescer.queue.lock();
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(p) = q.pending.front() {
                if !batch.is_empty() && bytes + p.bytes.len() > log.opts.max_statement_bytes {
                    break;
                }
                bytes += p.bytes.len();
                batch.extend(q.pending.pop_front());
            }
            if batch.is_empty() {
                q.in_flight = false;
                shard.coalescer.busy.send_replace(false);
                guard.0 = None;
                return;
            }
            batch
        };
        shard.coalescer.statements.fetch_add(1, Ordering::Relaxed);
        let result = execute(&log, &shard.key, &batch).await;
        match result {
            Ok((base, time)) => {
                // Watchers first, so that a caller sees its append in the watch on return.
                let total: u64 = batch.iter().map(|p| u64::from(p.count)).sum();
                shard.publish(base + total);
                let mut off = 0u64;
                for p in batch {
                    let first_seq = base + off;
                    off += u64::from(p.count);
                    let _ = p.reply.send(Ok(AppendInfo {
                        first_seq,
                        last_seq: first_seq + u64::from(p.count) - 1,
                        system_time: time,
                    }));
                }
            }
            Err(e) => {
                let kind = ErrorKind::of(&e);
                tracing::warn!(shard = %shard.key, error = %e, "cluster log append failed");
                for p in batch {
                    let _ = p.reply.send(Err(kind.to_store_error(&e)));
                }
            }
        }
    }
}

/// How a failed statement ends for its callers.
#[derive(Clone, Copy)]
enum ErrorKind {
    Closed,
    NotFound,
    /// Failed before or without committing.
    NotDone,
    /// The connection broke after the statement was sent.
    Unknown,
}

/// Errors of one statement.
#[derive(thiserror::Error, Debug)]
enum AppendFailure {
    #[error("shard is closed")]
    Closed,
    #[error("shard does not exist")]
    NotFound,
    #[error("could not get a connection: {0}")]
    Acquire(#[source] sqlx::Error),
    #[error("append statement failed: {0}")]
    Statement(#[source] sqlx::Error),
    #[error("looking up why no shard head was updated failed: {0}")]
    Lookup(#[source] sqlx::Error),
}

impl ErrorKind {
    fn of(e: &AppendFailure) -> ErrorKind {
        match e {
            AppendFailure::Closed => ErrorKind::Closed,
            AppendFailure::NotFound => ErrorKind::NotFound,
            AppendFailure::Acquire(_) | AppendFailure::Lookup(_) => ErrorKind::NotDone,
            // The server answered with an error: the autocommit statement rolled back.
            AppendFailure::Statement(sqlx::Error::Database(_)) => ErrorKind::NotDone,
            AppendFailure::Statement(_) => ErrorKind::Unknown,
        }
    }

    fn to_store_error(self, e: &AppendFailure) -> StoreError {
        let boxed = || -> BackendError { e.to_string().into() };
        match self {
            ErrorKind::Closed => StoreError::Closed,
            ErrorKind::NotFound => StoreError::NotFound,
            ErrorKind::NotDone => StoreError::Backend(boxed()),
            ErrorKind::Unknown => StoreError::OutcomeUnknown(boxed()),
        }
    }
}

/// One statement for the batch; returns its first sequence and system time.
async fn execute(log: &Inner, key: &str, batch: &[Pending]) -> Result<(u64, i64), AppendFailure> {
    let mut offs = Vec::with_capacity(batch.len());
    let mut counts = Vec::with_capacity(batch.len());
    let mut bytes = Vec::with_capacity(batch.len());
    let mut total = 0i64;
    for p in batch {
        offs.push(total);
        counts.push(p.count as i32);
        bytes.push(p.bytes.as_slice());
        total += i64::from(p.count);
    }
    // Acquired first, so that a pool timeout is told apart from a statement that was sent.
    let mut conn = log.pool.acquire().await.map_err(AppendFailure::Acquire)?;
    let row = sqlx::query(APPEND_SQL)
        .bind(key)
        .bind(total)
        .bind(&offs)
        .bind(&counts)
        .bind(&bytes)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| {
            // A server that is gone, shutting down or now a standby fails every later
            // statement on this connection too: close it instead of pooling it.
            if sluice_meta::pg_pool::server_is_spent(&e) {
                conn.close_on_drop();
            }
            AppendFailure::Statement(e)
        })?;
    match row {
        Some(row) => {
            let base: i64 = row.try_get(0).map_err(AppendFailure::Statement)?;
            let time: i64 = row.try_get(1).map_err(AppendFailure::Statement)?;
            Ok((to_u64(base), time))
        }
        None => {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM shard_head WHERE shard_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(AppendFailure::Lookup)?;
            match state {
                Some(_) => Err(AppendFailure::Closed),
                None => Err(AppendFailure::NotFound),
            }
        }
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
        assert_eq!(to_u64(-1), 0);
    }
}
