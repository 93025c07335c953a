//! Reading records by cursor: JSON and protobuf readers get decoded records, batch readers the
//! stored batches. Records are decoded as borrowed views of the stored batches
//! ([`visit_entry`]) and written into the response as they are visited ([`RecordWriter`]), so a
//! read owns no value of any record. Every read is bounded by `max_read_records` and by `max_read_bytes` of what
//! it decodes to (records as they appear in a response, batches uncompressed), never only by
//! the stored, possibly compressed, bytes; a cursor continues where a bounded read stopped, also
//! inside a stored batch.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use sluice_log::Entry;
use sluice_proto::batch::{self, BatchCompression, SchemaLookup, TopicKind};
use sluice_proto::cursor::Cursor;
use sluice_proto::pb_read::ReadItem;
use sluice_proto::{DataRef, Record, RecordRef, RecordSchema, ValueRef};

use super::catalog::{Catalog, RecordType, Shard, ShardState, Topic};
use super::error::{Error, Result};
use super::records::{join_error, ReadEntry, ReadRecord, ReadResult, Versions};

/// Where a JSON or protobuf read's records go, one by one, as they are decoded: the response
/// encoder, fed records that borrow the stored batch.
pub trait RecordWriter: Send + 'static {
    fn push(&mut self, item: &ReadItem<'_>);
}

impl RecordWriter for sluice_proto::pb_read::GetRecordsWriter {
    fn push(&mut self, item: &ReadItem<'_>) {
        sluice_proto::pb_read::GetRecordsWriter::push(self, item)
    }
}

/// Collects owned records (see [`Catalog::read_records`]).
impl RecordWriter for Vec<ReadRecord> {
    fn push(&mut self, item: &ReadItem<'_>) {
        self.push(ReadRecord {
            seq: item.sequence as u64,
            system_time: item.system_time,
            record: Record::from_ref(&item.record),
            cursor: item.cursor,
            next_cursor: item.next_cursor,
        });
    }
}

/// A JSON or protobuf read, done: the writer holding the records, and the response's head.
pub struct RecordsRead<W> {
    pub writer: W,
    pub count: usize,
    pub start_seq: u64,
    pub next_cursor: Cursor,
    pub latest_seq: i64,
    pub latest_time: i64,
}

impl Catalog {
    /// The records a read of `limit` may return (`max_read_records` for 0 or less).
    pub(crate) fn read_limit(&self, limit: i64) -> usize {
        if limit <= 0 {
            self.config.max_read_records
        } else {
            (limit as usize).min(self.config.max_read_records)
        }
    }

    /// Reads records from a cursor as owned records.
    pub async fn read_records(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        cursor: &str,
        limit: i64,
    ) -> Result<ReadResult<ReadRecord>> {
        let read = self
            .read_records_into(topic, shard, cursor, limit, Vec::new())
            .await?;
        Ok(ReadResult {
            items: read.writer,
            start_seq: read.start_seq,
            next_cursor: read.next_cursor,
            latest_seq: read.latest_seq,
            latest_time: read.latest_time,
        })
    }

    /// Reads records from a cursor for JSON and protobuf readers into `writer`.
    pub async fn read_records_into<W: RecordWriter>(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        cursor: &str,
        limit: i64,
        mut writer: W,
    ) -> Result<RecordsRead<W>> {
        let shard = topic.shard_by_text(shard)?;
        let start = check_cursor(&shard, cursor)?;
        let limit = self.read_limit(limit);
        let max_bytes = self.config.max_read_bytes;
        let topic = topic.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let entries = read_entries(&shard, start.seq, limit + start.index as usize, max_bytes)?;
            let versions = topic.versions();
            let mut shape = Reshape::new(&topic, &versions);
            let mut count = 0usize;
            let mut next = start;
            // Approximate bytes of the response so far (see `response_bytes`).
            let mut used = 0usize;
            for entry in &entries {
                let skip = if entry.seq == start.seq {
                    start.index
                } else {
                    0
                };
                let total = entry_record_count(&entry.payload) as u32;
                let mut index = 0u32;
                let mut full = false;
                visit_entry(&mut shape, entry, |record| {
                    let i = index;
                    index += 1;
                    if i < skip {
                        return ControlFlow::Continue(());
                    }
                    let size = response_bytes(record);
                    if count > 0 && used + size > max_bytes {
                        // `next` already points at this record.
                        full = true;
                        return ControlFlow::Break(());
                    }
                    used += size;
                    let here = Cursor::new(shard.id, entry.seq, i);
                    next = if i + 1 < total {
                        Cursor::new(shard.id, entry.seq, i + 1)
                    } else {
                        Cursor::new(shard.id, entry.seq + 1, 0)
                    };
                    writer.push(&ReadItem {
                        cursor: here,
                        next_cursor: next,
                        sequence: entry.seq as i64,
                        system_time: entry.system_time,
                        record: *record,
                    });
                    count += 1;
                    if count >= limit {
                        full = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
                if full {
                    break;
                }
                if index <= skip {
                    next = Cursor::new(shard.id, entry.seq + 1, 0);
                }
            }
            // issue 13: metrics
            metrics.note_get(&topic, count, used);
            let done = finish(&shard, start, Vec::<()>::new(), next);
            Ok(RecordsRead {
                writer,
                count,
                start_seq: done.start_seq,
                next_cursor: done.next_cursor,
                latest_seq: done.latest_seq,
                latest_time: done.latest_time,
            })
        })
        .await
        .map_err(join_error)?
    }

    /// Reads stored batches from a cursor for batch readers; `limit` counts records.
    pub async fn read_batches(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        cursor: &str,
        limit: i64,
    ) -> Result<ReadResult<ReadEntry>> {
        let shard = topic.shard_by_text(shard)?;
        let start = check_cursor(&shard, cursor)?;
        let limit = self.read_limit(limit);
        let max_bytes = self.config.max_read_bytes;
        let topic = topic.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let entries = read_entries(&shard, start.seq, limit + start.index as usize, max_bytes)?;
            let mut items = Vec::new();
            let mut records = 0usize;
            let mut next = start;
            // Uncompressed bytes of the batches so far: what the reader decodes.
            let mut used = 0usize;
            for entry in entries {
                let from = if entry.seq == start.seq {
                    start.index
                } else {
                    0
                };
                let raw = entry_raw_bytes(&entry.payload);
                let (data, count, first, end) = if from == 0 && used + raw <= max_bytes {
                    let count = entry_record_count(&entry.payload);
                    used += raw;
                    (entry.payload.clone(), count, 0, None)
                } else if items.is_empty() {
                    // Resuming inside a batch, or a stored batch larger than a whole response:
                    // serve the part that fits, re-encoded.
                    let budget = max_bytes - used;
                    let part = slice_of_entry(&topic, &entry, from, budget, limit.max(1))?;
                    used += part.data.len();
                    (part.data, part.count, from, part.end)
                } else {
                    break;
                };
                next = match end {
                    Some(index) => Cursor::new(shard.id, entry.seq, index),
                    None => Cursor::new(shard.id, entry.seq + 1, 0),
                };
                if count > 0 {
                    items.push(ReadEntry {
                        seq: entry.seq,
                        system_time: entry.system_time,
                        data,
                        cursor: Cursor::new(shard.id, entry.seq, first),
                        next_cursor: next,
                    });
                }
                records += count;
                if records >= limit || end.is_some() || used >= max_bytes {
                    break;
                }
            }
            // issue 13: metrics
            metrics.note_get(&topic, records, used);
            Ok(finish(&shard, start, items, next))
        })
        .await
        .map_err(join_error)?
    }
}

/// Reads the entries that hold the next `records` records from `from`, within `max_bytes` of
/// uncompressed batches (stopping after the entry that reaches it).
///
/// An entry holds one record (JSON/protobuf writes) or a whole batch (often 1000 records), so
/// the log is asked for a few entries first and then for as many as the records per entry seen
/// so far suggest: a batch reader never pulls megabytes it will not return.
fn read_entries(shard: &Shard, from: u64, records: usize, max_bytes: usize) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let (mut seq, mut got, mut bytes) = (from, 0usize, 0usize);
    let mut ask = records.clamp(1, 8);
    while got < records && bytes < max_bytes {
        let entries = shard.log.read(seq, ask, max_bytes - bytes)?;
        if entries.is_empty() {
            break;
        }
        for e in entries {
            got += entry_record_count(&e.payload);
            // Count what the entry decodes to: a compressed batch may expand a hundredfold.
            bytes += entry_raw_bytes(&e.payload);
            seq = e.seq + 1;
            out.push(e);
            if got >= records || bytes >= max_bytes {
                break;
            }
        }
        let per_entry = (got / out.len()).max(1);
        ask = (records.saturating_sub(got).div_ceil(per_entry)).clamp(1, records.max(1));
    }
    Ok(out)
}

/// Uncompressed size of a stored batch (header plus raw payload), from its header.
fn entry_raw_bytes(payload: &[u8]) -> usize {
    batch::parse_header(payload).map_or(payload.len(), |h| batch::HEADER_SIZE + h.raw_size as usize)
}

/// About how many bytes a record takes in a read response: its values as text (BLOB bytes as
/// base64, the way JSON carries them), its attributes, and an allowance for the cursors,
/// sequence and time around it. Reads stop before this sum passes `max_read_bytes`.
fn response_bytes(record: &RecordRef<'_, '_>) -> usize {
    const PER_RECORD: usize = 192;
    const PER_VALUE: usize = 4;
    let data = match record.data {
        DataRef::Blob(b) => b.len().div_ceil(3) * 4,
        DataRef::Tuple(values) => values
            .iter()
            .map(|v| {
                PER_VALUE
                    + match v {
                        ValueRef::Null | ValueRef::Bool(_) => 5,
                        ValueRef::Int(_) | ValueRef::Float(_) | ValueRef::Double(_) => 24,
                        ValueRef::Str(s) | ValueRef::Decimal(s) => s.len(),
                    }
            })
            .sum(),
    };
    let attributes: usize = record
        .attributes
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2 * PER_VALUE)
        .sum();
    PER_RECORD + data + attributes
}

/// Records in a stored batch, from its header.
fn entry_record_count(payload: &[u8]) -> usize {
    batch::parse_header(payload)
        .map(|h| h.record_count as usize)
        .unwrap_or(1)
}

/// Validates a cursor against the shard: its own, not expired, not past the end; and at the
/// end of a closed shard, the read-end error consumers wait for.
fn check_cursor(shard: &Shard, text: &str) -> Result<Cursor> {
    let cursor = Cursor::decode(text, shard.id).map_err(|e| Error::InvalidCursor(e.to_string()))?;
    let (first, mut next) = (shard.log.first_seq(), shard.log.next_seq());
    // issue 14: cluster — a shared store's watched end may lag another node's appends.
    if cursor.seq > next {
        next = shard.log.next_seq_fresh();
    }
    if cursor.seq < first {
        return Err(Error::InvalidCursor(format!(
            "it points at sequence {}, which has expired (oldest is {first})",
            cursor.seq
        )));
    }
    if cursor.seq > next {
        return Err(Error::InvalidCursor(format!(
            "it points at sequence {}, past the shard's end {next}",
            cursor.seq
        )));
    }
    if cursor.seq == next && shard.meta.read().state == ShardState::Closed {
        return Err(Error::ShardReadEnd(shard.id));
    }
    Ok(cursor)
}

fn finish<T>(shard: &Shard, start: Cursor, items: Vec<T>, next: Cursor) -> ReadResult<T> {
    let next_seq = shard.log.next_seq();
    ReadResult {
        items,
        start_seq: start.seq,
        next_cursor: next,
        latest_seq: next_seq as i64 - 1,
        latest_time: shard.log.last_time().unwrap_or(0),
    }
}

/// How records of each schema version map onto the topic's current schema, worked out once
/// per version and read (see [`visit_entry`]).
pub(crate) struct Reshape<'t> {
    kind: TopicKind<'t>,
    versions: &'t Versions,
    current: Option<Arc<RecordSchema>>,
    current_version: i32,
    /// Per older version: where each current field sits in it (None: the version lacks it);
    /// no entry when its schema is the current one.
    maps: Vec<(i32, Option<Vec<Option<usize>>>)>,
}

impl<'t> Reshape<'t> {
    pub(crate) fn new(topic: &Topic, versions: &'t Versions) -> Reshape<'t> {
        let (current, current_version) = match topic.record_type {
            RecordType::Tuple => {
                let meta = topic.meta.read();
                (meta.current_schema(), meta.current_version)
            }
            RecordType::Blob => (None, -1),
        };
        Reshape {
            kind: match topic.record_type {
                RecordType::Tuple => TopicKind::Tuple(versions),
                RecordType::Blob => TopicKind::Blob,
            },
            versions,
            current,
            current_version,
            maps: Vec::new(),
        }
    }

    /// The topic's current schema (None for BLOB topics).
    pub(crate) fn current(&self) -> Option<&Arc<RecordSchema>> {
        self.current.as_ref()
    }

    /// The field map of records of `version`; None when they need none.
    fn map(&mut self, version: i32) -> Option<&[Option<usize>]> {
        if version == self.current_version || matches!(self.kind, TopicKind::Blob) {
            return None;
        }
        let at = match self.maps.iter().position(|(v, _)| *v == version) {
            Some(at) => at,
            None => {
                let map = match (self.versions.schema(version), self.current.as_deref()) {
                    (Some(from), Some(to)) if from != to => Some(
                        to.fields
                            .iter()
                            .map(|f| from.index_of(&f.name))
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                };
                self.maps.push((version, map));
                self.maps.len() - 1
            }
        };
        self.maps[at].1.as_deref()
    }
}

/// Visits the records of a stored batch shaped like the topic's current schema (a record
/// written under an older version gets the current fields by name, NULL for those it lacks),
/// borrowing the batch; `each` may stop the visit.
pub(crate) fn visit_entry(
    shape: &mut Reshape<'_>,
    entry: &Entry,
    mut each: impl FnMut(&RecordRef<'_, '_>) -> ControlFlow<()>,
) -> Result<()> {
    let kind = shape.kind;
    batch::visit_records(&entry.payload, kind, |record| {
        let (Some(map), DataRef::Tuple(values)) = (shape.map(record.schema_version), record.data)
        else {
            return each(record);
        };
        // Older schema version: rare, so a vector per record is fine here.
        let reshaped: Vec<ValueRef<'_>> = map
            .iter()
            .map(|at| {
                at.and_then(|i| values.get(i).copied())
                    .unwrap_or(ValueRef::Null)
            })
            .collect();
        each(&RecordRef {
            data: DataRef::Tuple(&reshaped),
            ..*record
        })
    })
    .map_err(|e| {
        Error::Internal(format!(
            "stored batch at sequence {} is unreadable: {e}",
            entry.seq
        ))
    })?;
    Ok(())
}

/// Part of a stored batch, re-encoded (see [`slice_of_entry`]).
struct EntrySlice {
    data: Bytes,
    count: usize,
    /// Index of the first record left out, if any was.
    end: Option<u32>,
}

/// Re-encodes the records of an entry from `index` on, as many as fit in `budget` bytes (by
/// [`response_bytes`], at least one) and at most `max_records`: a batch reader resuming
/// mid-entry, or reading a stored batch larger than one response.
fn slice_of_entry(
    topic: &Topic,
    entry: &Entry,
    index: u32,
    budget: usize,
    max_records: usize,
) -> Result<EntrySlice> {
    let versions = topic.versions();
    let kind = match topic.record_type {
        RecordType::Tuple => TopicKind::Tuple(&versions),
        RecordType::Blob => TopicKind::Blob,
    };
    let decoded = batch::decode_batch(&entry.payload, kind).map_err(|e| {
        Error::Internal(format!(
            "stored batch at sequence {} is unreadable: {e}",
            entry.seq
        ))
    })?;
    let total = decoded.len();
    let mut rest = decoded.into_iter().skip(index as usize).peekable();
    let Some(version) = rest.peek().map(|(v, _)| *v) else {
        return Ok(EntrySlice {
            data: Bytes::new(),
            count: 0,
            end: None,
        });
    };
    let mut records: Vec<Record> = Vec::new();
    let mut used = 0usize;
    // One batch carries one schema version: stop where it changes.
    while let Some((v, record)) = rest.next_if(|(v, _)| *v == version) {
        let size = response_bytes(&record.parts().as_record_ref(v));
        if !records.is_empty() && (used + size > budget || records.len() >= max_records) {
            break;
        }
        debug_assert_eq!(v, version);
        used += size;
        records.push(record);
    }
    let end_index = index as usize + records.len();
    let schema = versions.schema(version).cloned();
    let bytes = batch::encode_batch(&records, schema.as_ref(), version, BatchCompression::None);
    Ok(EntrySlice {
        data: Bytes::from(bytes),
        count: records.len(),
        end: (end_index < total).then_some(end_index as u32),
    })
}
