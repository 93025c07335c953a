//! One (connector, shard) task: read from the checkpoint, batch, write, flush, checkpoint.
//!
//! Delivery is at-least-once: the checkpoint moves only after `Sink::flush` succeeded, so a
//! crash or stop re-delivers at most the batch in flight. A batch ends on an entry boundary,
//! so a checkpoint is always a plain sequence.
//!
//! Reading is pipelined: while a full batch is delivered, the next one is already read and
//! decoded from where the batch ends ([`Task::deliver_reading_ahead`]), so the source's work
//! overlaps the sink's. Reads ask for about as many bytes as the records still missing from a
//! batch need (learned from what was read), so a batch is `max_batch_records` records rather
//! than `max_batch_bytes` of stored data, and the buffer's allocation is reused batch after
//! batch. Delivered records go back to the source with the next read
//! ([`ShardSource::read_reusing`](super::ShardSource::read_reusing)), which refills them: in the
//! steady state a task allocates and frees no record, value vector or string.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::{Record, RecordData, RecordSchema, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::status::{expired_message, now_ms, Checkpoint, ContextState};
use super::{Backoff, Shared, SourceBatch, SourceError, SourceErrorKind};
use crate::sink::{Columns, ErrorKind, Sink, SinkData, SinkError, SinkRecord};

/// The task was cancelled (stop, reload, delete, shutdown).
struct Cancelled;

/// What a read of the source returned.
type ReadResult = Result<SourceBatch, SourceError>;

/// The most records a task's buffer allocates room for up front.
const MAX_PRESIZED_RECORDS: usize = 1 << 16;

/// Records read but not yet delivered.
#[derive(Default)]
struct Buffer {
    records: Vec<SinkRecord>,
    bytes: usize,
    first_at: Option<Instant>,
    /// Checkpoint position once the buffer is delivered.
    next_seq: u64,
    last_time: i64,
    last_seq: Option<u64>,
}

struct Task {
    shared: Arc<Shared>,
    shard: u32,
    cp: Checkpoint,
    cancel: CancellationToken,
    sink: Option<Box<dyn Sink>>,
    backoff: Backoff,
    /// Stored bytes per record in what was read last (None before the first read), to size
    /// the next read's byte budget.
    bytes_per_record: Option<usize>,
    /// Delivered records, handed to the next read to be refilled (at most a batch's worth).
    spare: Vec<Record>,
}

/// Runs until cancelled or, for a closed shard, until delivered to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    shard: u32,
    cp: Checkpoint,
    cancel: CancellationToken,
) {
    let cfg = &shared.spec.config;
    let backoff = Backoff::new(cfg.retry_base, cfg.retry_max);
    let mut task = Task {
        shared: shared.clone(),
        shard,
        cp,
        cancel,
        sink: None,
        backoff,
        bytes_per_record: None,
        spare: Vec::new(),
    };
    shared.set_status(shard, ContextState::Executing, None);
    tracing::debug!(connector = %shared.spec.name, shard, next_seq = cp.next_seq, "task started");
    let _ = task.main_loop().await;
}

/// Where each of the connector's columns sits in the records of one schema, worked out once per
/// read instead of once per value.
struct Projection {
    /// Field index of each column (None: the schema has no such field, the column gets NULL).
    positions: Vec<Option<usize>>,
    /// The columns are exactly the schema's fields in order: values move over untouched.
    identity: bool,
}

impl Projection {
    fn new(columns: &Columns, schema: Option<&RecordSchema>) -> Option<Projection> {
        let schema = schema?;
        let positions: Vec<Option<usize>> =
            columns.names.iter().map(|n| schema.index_of(n)).collect();
        let identity = positions.len() == schema.len()
            && positions.iter().enumerate().all(|(i, p)| *p == Some(i));
        Some(Projection {
            positions,
            identity,
        })
    }
}

/// Projects a record onto the connector's columns (by field name).
fn project(projection: Option<&Projection>, data: RecordData) -> SinkData {
    match (data, projection) {
        (RecordData::Tuple(values), Some(p)) if p.identity && values.len() == p.positions.len() => {
            SinkData::Tuple(values)
        }
        (RecordData::Tuple(values), Some(p)) => SinkData::Tuple(
            p.positions
                .iter()
                .map(|pos| {
                    pos.and_then(|i| values.get(i).cloned())
                        .unwrap_or(Value::Null)
                })
                .collect(),
        ),
        (RecordData::Tuple(values), None) => SinkData::Tuple(values),
        (RecordData::Blob(b), _) => SinkData::Blob(b),
    }
}

impl Task {
    fn name(&self) -> &str {
        &self.shared.spec.name
    }

    async fn sleep(&mut self, d: Duration) -> Result<(), Cancelled> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(Cancelled),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    fn hang(&self, message: String) {
        self.hang_because(message, None, None);
    }

    /// A sink error's hang: the log line also names its kind and its source.
    fn hang_on(&self, e: &SinkError) {
        let source = e.source.as_ref().map(|s| s.to_string());
        self.hang_because(e.message.clone(), Some(e.kind.as_str()), source);
    }

    fn hang_because(&self, message: String, kind: Option<&str>, source: Option<String>) {
        let repeated = self
            .shared
            .status
            .lock()
            .expect("status lock")
            .get(&self.shard)
            .is_some_and(|s| s.state == ContextState::Hang && s.last_error == message);
        if repeated {
            tracing::debug!(connector = %self.name(), shard = self.shard, error = %message, kind, "task still hangs");
        } else {
            tracing::warn!(connector = %self.name(), shard = self.shard, error = %message, kind, source,
                "task hangs; retrying");
        }
        self.shared
            .set_status(self.shard, ContextState::Hang, Some(message));
    }

    async fn main_loop(&mut self) -> Result<(), Cancelled> {
        let cfg = self.shared.spec.config.clone();
        // Open the sink first, so that a target that does not work shows up even on a shard
        // with nothing to deliver.
        self.open_sink().await?;
        self.shared
            .set_status(self.shard, ContextState::Executing, None);
        let mut watch = self.shared.source.watch(self.shard);
        let mut buf = Buffer {
            records: Vec::with_capacity(cfg.max_batch_records.min(MAX_PRESIZED_RECORDS)),
            next_seq: self.cp.next_seq,
            last_time: self.cp.last_time,
            ..Buffer::default()
        };
        // The next batch, read while the previous one was delivered.
        let mut read_ahead: Option<(ReadResult, usize)> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let room = cfg
                .max_batch_records
                .saturating_sub(buf.records.len())
                .max(1);
            let (read, byte_room) = match read_ahead.take() {
                // The read ahead marked the watch as seen before it started.
                Some(ahead) => ahead,
                None => {
                    if let Some(w) = watch.as_mut() {
                        w.borrow_and_update();
                    }
                    let byte_room = self.byte_room(&buf, room);
                    let spare = std::mem::take(&mut self.spare);
                    let read = self
                        .shared
                        .source
                        .read_reusing(self.shard, buf.next_seq, room, byte_room, spare)
                        .await;
                    (read, byte_room)
                }
            };
            let (got, got_bytes, last_bytes) = match read {
                Ok(batch) => self.add(&mut buf, batch),
                Err(e) => match e.kind {
                    SourceErrorKind::Expired { requested, first } => {
                        self.observe_error("source_expired");
                        if !buf.records.is_empty() {
                            self.deliver(&mut buf).await?;
                        }
                        self.hang(expired_message(self.shard, requested, first));
                        self.sleep(cfg.retry_max).await?;
                        continue;
                    }
                    SourceErrorKind::Gone => {
                        tracing::info!(connector = %self.name(), shard = self.shard, reason = %e, "source gone; task ends");
                        return Ok(());
                    }
                    SourceErrorKind::Transient => {
                        self.observe_error("source_read");
                        self.hang(format!("cannot read shard {}: {e}", self.shard));
                        let d = self.backoff.next_delay();
                        self.sleep(d).await?;
                        continue;
                    }
                },
            };
            let full =
                buf.records.len() >= cfg.max_batch_records || buf.bytes >= cfg.max_batch_bytes;
            let aged = buf
                .first_at
                .is_some_and(|t| t.elapsed() >= cfg.max_batch_age);
            if full {
                read_ahead = Some(self.deliver_reading_ahead(&mut buf, &mut watch).await?);
                continue;
            }
            if aged {
                self.deliver(&mut buf).await?;
                continue;
            }
            // Stopped by the count, or by the bytes before an entry like the last one: more may
            // be waiting right behind.
            if got >= room || (got > 0 && got_bytes + last_bytes > byte_room) {
                continue;
            }
            // Caught up with the log.
            if let Some(first_at) = buf.first_at {
                let deadline = (Instant::now() + cfg.linger).min(first_at + cfg.max_batch_age);
                if !self.wait_for_data(&mut watch, deadline).await? {
                    self.deliver(&mut buf).await?;
                }
                continue;
            }
            if self.finish_if_closed(buf.next_seq).await? {
                return Ok(());
            }
            let idle_until = Instant::now() + Duration::from_secs(1);
            self.wait_for_data(&mut watch, idle_until).await?;
        }
    }

    /// Waits until the shard grows or `deadline`; returns whether it grew.
    async fn wait_for_data(
        &mut self,
        watch: &mut Option<tokio::sync::watch::Receiver<u64>>,
        deadline: Instant,
    ) -> Result<bool, Cancelled> {
        let Some(w) = watch.as_mut() else {
            self.sleep(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            )
            .await?;
            return Ok(true);
        };
        tokio::select! {
            _ = self.cancel.cancelled() => Err(Cancelled),
            r = w.changed() => {
                if r.is_err() {
                    // The log went away (topic deleted); poll slowly until cancelled.
                    self.sleep(Duration::from_millis(200)).await?;
                }
                Ok(true)
            }
            _ = tokio::time::sleep_until(deadline) => Ok(false),
        }
    }

    /// The byte budget of a read that should bring about `room` more records: what that many
    /// records took in the last read, with a quarter to spare, within what the batch has left
    /// of `max_batch_bytes`. The log returns at least one entry whatever the budget, so the
    /// task's first read (nothing learned yet) asks for one byte: one entry, to learn from.
    fn byte_room(&self, buf: &Buffer, room: usize) -> usize {
        let left = self
            .shared
            .spec
            .config
            .max_batch_bytes
            .saturating_sub(buf.bytes)
            .max(1);
        match self.bytes_per_record {
            Some(per) => left.min(room.saturating_mul(per.max(1)).saturating_mul(5) / 4),
            None => 1,
        }
        .max(1)
    }

    /// Delivers a full buffer while the next batch is read (and decoded, by the source) from
    /// where the buffer ends; returns that read and its byte budget for the main loop to add.
    /// Delivery never moves `buf.next_seq`, so the read starts where a read after the delivery
    /// would have; if the task is cancelled the read is dropped with it.
    async fn deliver_reading_ahead(
        &mut self,
        buf: &mut Buffer,
        watch: &mut Option<tokio::sync::watch::Receiver<u64>>,
    ) -> Result<(ReadResult, usize), Cancelled> {
        if let Some(w) = watch.as_mut() {
            w.borrow_and_update();
        }
        let room = self.shared.spec.config.max_batch_records.max(1);
        let byte_room = self.byte_room(&Buffer::default(), room);
        let shared = self.shared.clone();
        let spare = std::mem::take(&mut self.spare);
        let next = shared
            .source
            .read_reusing(self.shard, buf.next_seq, room, byte_room, spare);
        let (delivered, read) = tokio::join!(self.deliver(buf), next);
        delivered?;
        Ok((read, byte_room))
    }

    /// Adds a read's records to the buffer; returns the number of entries read, their stored
    /// bytes, and the stored bytes of the last one.
    fn add(&mut self, buf: &mut Buffer, mut batch: SourceBatch) -> (usize, usize, usize) {
        if self.spare.is_empty() {
            self.spare = std::mem::take(&mut batch.spare);
        } else {
            let room = self.spare_cap().saturating_sub(self.spare.len());
            let keep = room.min(batch.spare.len());
            self.spare.extend(batch.spare.drain(..keep));
        }
        let projection = Projection::new(&self.shared.spec.columns, batch.schema.as_deref());
        let n = batch.entries.len();
        let (mut bytes, mut records, mut last_bytes) = (0usize, 0usize, 0usize);
        let mut decoded = batch.records.into_iter();
        buf.records.reserve(decoded.len());
        for entry in batch.entries {
            bytes += entry.bytes;
            records += entry.record_count;
            last_bytes = entry.bytes;
            for (i, record) in decoded.by_ref().take(entry.record_count).enumerate() {
                buf.records.push(SinkRecord {
                    shard_id: self.shard,
                    sequence: entry.seq,
                    batch_index: i as u32,
                    system_time: entry.system_time,
                    data: project(projection.as_ref(), record.data),
                    attributes: record.attributes,
                });
            }
            buf.bytes += entry.bytes;
            buf.next_seq = entry.seq + 1;
            buf.last_time = entry.system_time;
            buf.last_seq = Some(entry.seq);
            buf.first_at.get_or_insert_with(Instant::now);
        }
        if records > 0 {
            self.bytes_per_record = Some(bytes.div_ceil(records));
        }
        (n, bytes, last_bytes)
    }

    /// For a closed shard read to its end: saves a finished checkpoint and returns true.
    async fn finish_if_closed(&mut self, next_seq: u64) -> Result<bool, Cancelled> {
        let Ok(shards) = self.shared.source.shards() else {
            return Ok(false);
        };
        let Some(info) = shards.iter().find(|s| s.id == self.shard) else {
            return Ok(false);
        };
        if !info.closed || next_seq < info.next_seq {
            return Ok(false);
        }
        let mut cp = self.cp;
        cp.next_seq = next_seq;
        cp.finished = true;
        cp.update_time = now_ms();
        self.commit(cp).await?;
        self.shared
            .set_status(self.shard, ContextState::Finished, None);
        self.shared.wake.notify_one();
        tracing::info!(connector = %self.name(), shard = self.shard, "closed shard delivered to its end");
        Ok(true)
    }

    async fn open_sink(&mut self) -> Result<(), Cancelled> {
        while self.sink.is_none() {
            let opening = (self.shared.spec.open_sink)(self.shared.spec.columns.clone());
            // A target that hangs on connect must not hold up stop, reload or delete.
            let opened = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Cancelled),
                r = opening => r,
            };
            match opened {
                Ok(sink) => self.sink = Some(sink),
                Err(e) => {
                    self.hang_on(&e);
                    let d = self.error_delay(&e);
                    self.sleep(d).await?;
                }
            }
        }
        Ok(())
    }

    fn error_delay(&mut self, e: &SinkError) -> Duration {
        let d = self.backoff.next_delay();
        match e.kind {
            // A configuration problem is not fixed by hammering the target.
            ErrorKind::Config => d.max(self.shared.spec.config.retry_max / 2),
            ErrorKind::Transient | ErrorKind::BadRecord => d,
        }
    }

    async fn write_flush(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let started = std::time::Instant::now();
        let sink = self.sink.as_mut().expect("sink is open");
        let result = match sink.write(records).await {
            Ok(()) => sink.flush().await,
            Err(e) => Err(e),
        };
        if let Some(o) = &self.shared.observer {
            o.sink_write(self.shard, records.len(), started.elapsed(), result.is_ok());
            if let Err(e) = &result {
                o.error(
                    self.shard,
                    match e.kind {
                        ErrorKind::Transient => "sink_transient",
                        ErrorKind::BadRecord => "sink_bad_record",
                        ErrorKind::Config => "sink_config",
                    },
                );
            }
        }
        result
    }

    /// Tells the observer, if any, about an error of `kind` (see `TaskObserver::error`).
    fn observe_error(&self, kind: &'static str) {
        if let Some(o) = &self.shared.observer {
            o.error(self.shard, kind);
        }
    }

    /// [`Task::write_flush`], given at most the stop grace once the task is cancelled: None when
    /// the grace ran out. The half-written batch is then dropped with the sink (the target
    /// sees its transaction or request abandoned); the checkpoint has not moved, so the next
    /// start delivers the batch again.
    async fn write_flush_within_grace(
        &mut self,
        records: &[SinkRecord],
    ) -> Option<Result<(), SinkError>> {
        let cancel = self.cancel.clone();
        let grace = self.shared.spec.config.stop_grace;
        let outcome = tokio::select! {
            r = self.write_flush(records) => Some(r),
            _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => None,
        };
        if outcome.is_none() {
            tracing::warn!(connector = %self.name(), shard = self.shard, records = records.len(),
                grace_ms = grace.as_millis() as u64,
                "stopping: the flush did not finish within the grace; the batch is dropped and will be delivered again");
            self.sink = None;
        }
        outcome
    }

    /// Delivers the buffer (retrying transient failures, discarding bad records) and then
    /// commits the checkpoint.
    async fn deliver(&mut self, buf: &mut Buffer) -> Result<(), Cancelled> {
        let records = std::mem::take(&mut buf.records);
        // Ranges of `records` still to deliver, the next one last (a stack).
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..records.len());
        let mut discarded = 0u64;
        let mut late = 0u64;
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            loop {
                // Once stopping, start no new write: only one already running gets the grace.
                if self.cancel.is_cancelled() {
                    return Err(Cancelled);
                }
                self.open_sink().await?;
                let Some(outcome) = self.write_flush_within_grace(&records[range.clone()]).await
                else {
                    return Err(Cancelled);
                };
                match outcome {
                    Ok(()) => {
                        self.backoff.reset();
                        late += self.sink.as_mut().map_or(0, |s| s.take_late_rows());
                        break;
                    }
                    Err(e) if e.kind == ErrorKind::BadRecord && range.len() == 1 => {
                        let m = e.message;
                        let r = &records[range.start];
                        tracing::warn!(connector = %self.name(), shard = self.shard, sequence = r.sequence,
                            batch_index = r.batch_index, error = %m, "bad record discarded");
                        discarded += 1;
                        self.shared.set_status(
                            self.shard,
                            ContextState::Executing,
                            Some(format!(
                                "shard {} sequence {} discarded: {m}",
                                self.shard, r.sequence
                            )),
                        );
                        break;
                    }
                    Err(e) if e.kind == ErrorKind::BadRecord => {
                        // Narrow down: deliver each half on its own (first half first).
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                        break;
                    }
                    Err(e) => {
                        self.hang_on(&e);
                        if e.kind == ErrorKind::Config {
                            self.sink = None; // reopen with a fresh connection
                        }
                        let d = self.error_delay(&e);
                        self.sleep(d).await?;
                    }
                }
            }
        }
        let mut cp = self.cp;
        cp.next_seq = buf.next_seq;
        cp.last_time = buf.last_time;
        cp.discard_count += discarded;
        cp.late_count += late;
        cp.update_time = now_ms();
        self.commit(cp).await?;
        // The next batch reuses the allocation, the next read the records themselves.
        let mut records = records;
        self.recycle(&mut records);
        buf.records = records;
        buf.bytes = 0;
        buf.first_at = None;
        self.shared
            .set_status(self.shard, ContextState::Executing, None);
        Ok(())
    }

    /// Moves delivered records into `spare` (as many as a batch holds; the rest are dropped),
    /// leaving `records` empty.
    fn recycle(&mut self, records: &mut Vec<SinkRecord>) {
        let take = self
            .spare_cap()
            .saturating_sub(self.spare.len())
            .min(records.len());
        self.spare.extend(records.drain(..take).map(|r| Record {
            data: match r.data {
                SinkData::Tuple(values) => RecordData::Tuple(values),
                SinkData::Blob(bytes) => RecordData::Blob(bytes),
            },
            attributes: r.attributes,
        }));
        records.clear();
    }

    /// The most spare records a task keeps: a batch's worth.
    fn spare_cap(&self) -> usize {
        self.shared
            .spec
            .config
            .max_batch_records
            .min(MAX_PRESIZED_RECORDS)
    }

    /// Saves a checkpoint, retrying until it sticks.
    async fn commit(&mut self, cp: Checkpoint) -> Result<(), Cancelled> {
        loop {
            match self.shared.source.save_checkpoint(cp).await {
                Ok(()) => break,
                Err(e) => {
                    self.observe_error("checkpoint");
                    self.hang(format!("cannot save the checkpoint: {e}"));
                    let d = self.backoff.next_delay();
                    self.sleep(d).await?;
                }
            }
        }
        self.cp = cp;
        self.shared.set_checkpoint(cp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::FieldType;

    fn schema(names: &[&str]) -> RecordSchema {
        let fields: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"name":"{n}","type":"STRING"}}"#))
            .collect();
        RecordSchema::parse(&format!(r#"{{"fields":[{}]}}"#, fields.join(","))).unwrap()
    }

    fn columns(names: &[&str]) -> Columns {
        Columns {
            names: names.iter().map(|n| n.to_string()).collect(),
            types: vec![FieldType::String; names.len()],
        }
    }

    fn row(values: &[&str]) -> RecordData {
        RecordData::Tuple(values.iter().map(|v| Value::Str(v.to_string())).collect())
    }

    fn tuple(values: &[Option<&str>]) -> SinkData {
        SinkData::Tuple(
            values
                .iter()
                .map(|v| v.map_or(Value::Null, |s| Value::Str(s.to_string())))
                .collect(),
        )
    }

    #[test]
    fn projection_maps_columns_by_name() {
        let s = schema(&["a", "b", "c"]);
        let same = Projection::new(&columns(&["a", "b", "c"]), Some(&s)).unwrap();
        assert!(same.identity);
        assert_eq!(
            project(Some(&same), row(&["1", "2", "3"])),
            tuple(&[Some("1"), Some("2"), Some("3")])
        );
        let picked = Projection::new(&columns(&["c", "a", "gone"]), Some(&s)).unwrap();
        assert!(!picked.identity);
        assert_eq!(
            project(Some(&picked), row(&["1", "2", "3"])),
            tuple(&[Some("3"), Some("1"), None])
        );
        let prefix = Projection::new(&columns(&["a", "b"]), Some(&s)).unwrap();
        assert!(
            !prefix.identity,
            "a prefix of the fields is not the identity"
        );
        assert_eq!(
            project(Some(&prefix), row(&["1", "2", "3"])),
            tuple(&[Some("1"), Some("2")])
        );
        assert!(Projection::new(&columns(&["a"]), None).is_none());
        assert_eq!(project(None, row(&["x"])), tuple(&[Some("x")]));
    }
}
