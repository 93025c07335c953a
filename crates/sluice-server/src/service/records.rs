//! Records: routing and appending puts, reading by cursor, cursors and metering.
//!
//! Every log entry is one batch in the batch binary format: a batch-protocol put is stored
//! byte for byte as one entry (one sequence, protocol doc §4.7), and each JSON or protobuf
//! record becomes its own one-record batch (one sequence per record). Batch reads therefore
//! serve stored bytes; JSON and protobuf reads decode them.

use std::sync::Arc;

use bytes::Bytes;
use sluice_log::{Entry, LogError};
use sluice_proto::batch::{self, BatchCompression, SchemaLookup, TopicKind};
use sluice_proto::cursor::Cursor;
use sluice_proto::{hashkey, Record, RecordData, RecordSchema, Value};

use super::catalog::{now_ms, Catalog, RecordType, SchemaVersion, Shard, ShardState, Topic};
use super::error::{Error, Result};
use super::health::WriteHealth;

/// Where a routed record goes (protocol doc §6.2, in priority order).
#[derive(Debug, Clone)]
pub enum Route {
    Shard(String),
    HashKey(String),
    PartitionKey(String),
    Any,
}

/// A record of a routed put, already decoded from its wire form.
pub struct RoutedRecord {
    pub record: Record,
    pub route: Route,
}

/// The schema versions of a topic, as a batch-codec lookup.
pub struct Versions(pub Vec<SchemaVersion>);

impl SchemaLookup for Versions {
    fn schema(&self, version: i32) -> Option<&RecordSchema> {
        self.0
            .iter()
            .find(|v| v.version_id == version)
            .map(|v| &*v.schema)
    }
}

/// A record read back, with its position.
pub struct ReadRecord {
    pub seq: u64,
    pub system_time: i64,
    pub record: Record,
    pub cursor: Cursor,
    pub next_cursor: Cursor,
}

/// A stored batch read back, with its position.
pub struct ReadEntry {
    pub seq: u64,
    pub system_time: i64,
    pub data: Bytes,
    pub cursor: Cursor,
    pub next_cursor: Cursor,
}

/// The result of a read: items, where to continue, and the shard's tail.
pub struct ReadResult<T> {
    pub items: Vec<T>,
    pub start_seq: u64,
    pub next_cursor: Cursor,
    pub latest_seq: i64,
    pub latest_time: i64,
}

/// The kinds of get-cursor requests.
pub enum CursorKind {
    Oldest,
    Latest,
    Sequence(i64),
    SystemTime(i64),
}

/// A cursor and the record it points at.
pub struct CursorAnswer {
    pub cursor: Cursor,
    pub record_time: i64,
    pub sequence: i64,
}

/// The records of one put bound for one shard: their request indexes and encodings.
type ShardGroup = (Arc<Shard>, Vec<usize>, Vec<Vec<u8>>);

/// A blocking join error is an internal error.
fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("background task failed: {e}"))
}

/// Encodes records of one put for the log, with the topic's schema taken once.
pub struct RecordEncoder {
    name: String,
    record_type: RecordType,
    version: i32,
    schema: Option<Arc<RecordSchema>>,
}

impl Topic {
    /// An encoder for the topic's current schema.
    pub fn encoder(&self) -> RecordEncoder {
        let meta = self.meta.read();
        RecordEncoder {
            name: self.name.clone(),
            record_type: self.record_type,
            version: meta.current_version,
            schema: meta.current_schema(),
        }
    }
}

impl RecordEncoder {
    /// Checks a decoded record against the schema and encodes it as a one-record batch.
    pub fn encode(&self, record: &Record, max_bytes: usize) -> Result<Vec<u8>> {
        let bytes = match (&record.data, self.record_type) {
            (RecordData::Tuple(values), RecordType::Tuple) => {
                let version = self.version;
                let schema = self
                    .schema
                    .as_deref()
                    .ok_or_else(|| Error::Internal("topic has no schema".into()))?;
                if values.len() != schema.len() {
                    return Err(Error::MalformedRecord(format!(
                        "the record has {} fields but topic {} has {}",
                        values.len(),
                        self.name,
                        schema.len()
                    )));
                }
                for (v, f) in values.iter().zip(&schema.fields) {
                    v.check(f)
                        .map_err(|e| Error::MalformedRecord(e.to_string()))?;
                }
                batch::encode_batch(
                    std::slice::from_ref(record),
                    Some(schema),
                    version,
                    BatchCompression::None,
                )
            }
            (RecordData::Blob(bytes), RecordType::Blob) => {
                if bytes.is_empty() {
                    return Err(Error::MalformedRecord(
                        "a BLOB record cannot be empty".into(),
                    ));
                }
                batch::encode_batch(
                    std::slice::from_ref(record),
                    None,
                    -1,
                    BatchCompression::None,
                )
            }
            (RecordData::Tuple(_), RecordType::Blob) => {
                return Err(Error::MalformedRecord(format!(
                    "topic {} is a BLOB topic but the record is a tuple",
                    self.name
                )))
            }
            (RecordData::Blob(_), RecordType::Tuple) => {
                return Err(Error::MalformedRecord(format!(
                    "topic {} is a TUPLE topic but the record is a blob",
                    self.name
                )))
            }
        };
        if bytes.len() > max_bytes {
            return Err(Error::MalformedRecord(format!(
                "the record is {} bytes, more than the limit of {max_bytes}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

impl Topic {
    /// The schema versions, for the batch codec.
    pub fn versions(&self) -> Versions {
        Versions(self.meta.read().schemas.clone())
    }

    /// Finds the shard a routed record goes to.
    fn route(&self, route: &Route, active: &[Arc<Shard>], turn: usize) -> Result<Arc<Shard>> {
        let by_key = |key: u128| {
            active
                .iter()
                .find(|s| {
                    let m = s.meta.read();
                    m.begin_key <= key && (key < m.end_key || m.end_key == hashkey::MAX_KEY)
                })
                .cloned()
                .ok_or_else(|| {
                    Error::Internal(format!("no active shard covers hash key {key:032X}"))
                })
        };
        match route {
            Route::Shard(id) => {
                let shard = self.shard_by_text(id)?;
                if shard.meta.read().state != ShardState::Active {
                    return Err(Error::ShardNotActive(shard.id));
                }
                Ok(shard)
            }
            Route::HashKey(k) => by_key(hashkey::parse_key(k).ok_or_else(|| {
                Error::InvalidParameter(format!("HashKey {k:?} is not 32 hex digits"))
            })?),
            Route::PartitionKey(k) => by_key(hashkey::partition_key_hash(k)),
            Route::Any => active
                .get(turn % active.len().max(1))
                .cloned()
                .ok_or_else(|| Error::InvalidOperation("the topic has no active shard".into())),
        }
    }
}

/// Appends encoded records to one shard if it is still active, at system time `now` (ms).
fn append_to_shard<P: AsRef<[u8]>>(shard: &Shard, payloads: &[P], now: i64) -> Result<()> {
    let meta = shard.meta.read();
    if meta.state != ShardState::Active {
        return Err(Error::ShardNotActive(shard.id));
    }
    let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_ref()).collect();
    shard.log.append(&slices, now)?;
    drop(meta);
    Ok(())
}

/// Notes an append's outcome in `health`: a storage failure starts (or continues) a failure
/// episode, a success ends one.
fn note_append(health: &WriteHealth, result: &Result<()>) {
    match result {
        Ok(()) => health.succeeded(),
        Err(Error::Storage(
            e @ (LogError::Io(_) | LogError::Poisoned(_) | LogError::Corrupt { .. }),
        )) => health.failed(&e.to_string()),
        Err(_) => {}
    }
}

impl Catalog {
    /// Routed put (JSON and protobuf `put_records`): per-record failures, by request index.
    pub async fn put_routed(
        &self,
        topic: &Arc<Topic>,
        records: Vec<Result<RoutedRecord>>,
    ) -> Result<Vec<(usize, Error)>> {
        self.check_put_count(records.len())?;
        let active: Vec<Arc<Shard>> = topic
            .shards
            .read()
            .iter()
            .filter(|s| s.meta.read().state == ShardState::Active)
            .cloned()
            .collect();
        let max_record_bytes = self.config.max_record_bytes;
        let topic = topic.clone();
        // Encoding is CPU work: keep it off the async workers so other requests keep flowing.
        let (mut failed, groups) = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            let mut groups: Vec<ShardGroup> = Vec::new();
            let turn = rand::random::<usize>();
            let encoder = topic.encoder();
            for (index, item) in records.into_iter().enumerate() {
                let placed = item.and_then(|r| {
                    let bytes = encoder.encode(&r.record, max_record_bytes)?;
                    let shard = topic.route(&r.route, &active, turn.wrapping_add(index))?;
                    Ok((shard, bytes))
                });
                match placed {
                    Ok((shard, bytes)) => match groups.iter_mut().find(|g| g.0.id == shard.id) {
                        Some(g) => {
                            g.1.push(index);
                            g.2.push(bytes);
                        }
                        None => groups.push((shard, vec![index], vec![bytes])),
                    },
                    Err(e) => failed.push((index, e)),
                }
            }
            (failed, groups)
        })
        .await
        .map_err(join_error)?;
        let mut tasks = tokio::task::JoinSet::new();
        let now = self.config.clock.now_ms();
        for (shard, indexes, payloads) in groups {
            tasks.spawn_blocking(move || (indexes, append_to_shard(&shard, &payloads, now)));
        }
        while let Some(done) = tasks.join_next().await {
            let (indexes, result) = done.map_err(join_error)?;
            note_append(&self.write_health, &result);
            if let Err(e) = result {
                let message = e.to_string();
                for i in indexes {
                    failed.push((i, clone_for_record(&e, &message)));
                }
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        Ok(failed)
    }

    fn check_put_count(&self, n: usize) -> Result<()> {
        if n > self.config.max_records_per_put {
            return Err(Error::LimitExceeded(format!(
                "the put has {n} records, more than the limit of {}",
                self.config.max_records_per_put
            )));
        }
        Ok(())
    }

    /// Put by shard (protobuf): all records or none.
    pub async fn put_to_shard(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        records: Vec<Record>,
    ) -> Result<()> {
        self.check_put_count(records.len())?;
        let shard = topic.shard_by_text(shard)?;
        if records.is_empty() {
            return Ok(());
        }
        let encoder = topic.encoder();
        let max_record_bytes = self.config.max_record_bytes;
        let now = self.config.clock.now_ms();
        let result = tokio::task::spawn_blocking(move || {
            let payloads = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    encoder
                        .encode(r, max_record_bytes)
                        .map_err(|e| Error::MalformedRecord(format!("record {i}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            append_to_shard(&shard, &payloads, now)
        })
        .await
        .map_err(join_error)?;
        note_append(&self.write_health, &result);
        result
    }

    /// Put by shard (batch protocol): each batch is validated and stored byte for byte.
    pub async fn put_batches(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        batches: Vec<Bytes>,
    ) -> Result<()> {
        let shard = topic.shard_by_text(shard)?;
        let versions = topic.versions();
        let kind = match topic.record_type {
            RecordType::Tuple => TopicKind::Tuple(&versions),
            RecordType::Blob => TopicKind::Blob,
        };
        // The limits hold on what the batches expand to: their record blocks are compressed.
        // Declared sizes are checked first, so an oversized batch is not even decompressed.
        let (max_request, max_record) =
            (self.config.max_request_bytes, self.config.max_record_bytes);
        let too_large = |size: usize| {
            Error::InvalidParameter(format!(
                "the batches of the put are {size} bytes uncompressed, more than max_request_bytes ({max_request})"
            ))
        };
        let declared: usize = batches
            .iter()
            .map(|b| batch::parse_header(b).map_or(0, |h| h.raw_size as usize + batch::HEADER_SIZE))
            .sum();
        if declared > max_request {
            return Err(too_large(declared));
        }
        let (mut total, mut raw) = (0usize, 0usize);
        for (i, b) in batches.iter().enumerate() {
            let sizes = batch::validate_batch_sizes(b, kind)
                .map_err(|e| Error::MalformedRecord(format!("batch {i}: {e}")))?;
            if sizes.largest_record > max_record {
                return Err(Error::InvalidParameter(format!(
                    "batch {i} holds a record of {} bytes uncompressed, more than max_record_bytes ({max_record})",
                    sizes.largest_record
                )));
            }
            total += sizes.records as usize;
            raw += sizes.raw_bytes;
        }
        if raw > max_request {
            return Err(too_large(raw));
        }
        self.check_put_count(total)?;
        if batches.is_empty() {
            return Ok(());
        }
        let now = self.config.clock.now_ms();
        let result = tokio::task::spawn_blocking(move || append_to_shard(&shard, &batches, now))
            .await
            .map_err(join_error)?;
        note_append(&self.write_health, &result);
        result
    }

    fn read_limit(&self, limit: i64) -> usize {
        if limit <= 0 {
            self.config.max_read_records
        } else {
            (limit as usize).min(self.config.max_read_records)
        }
    }

    /// Reads records from a cursor for JSON and protobuf readers.
    pub async fn read_records(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        cursor: &str,
        limit: i64,
    ) -> Result<ReadResult<ReadRecord>> {
        let shard = topic.shard_by_text(shard)?;
        let start = check_cursor(&shard, cursor)?;
        let limit = self.read_limit(limit);
        let max_bytes = self.config.max_read_bytes;
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let entries = read_entries(&shard, start.seq, limit + start.index as usize, max_bytes)?;
            let versions = topic.versions();
            let (current, current_version) = {
                let meta = topic.meta.read();
                (meta.current_schema(), meta.current_version)
            };
            let mut items = Vec::new();
            let mut next = start;
            // Approximate bytes of the response so far (see `response_bytes`).
            let mut used = 0usize;
            'entries: for entry in entries {
                let decoded = decode_entry(
                    &topic,
                    &versions,
                    current.as_deref(),
                    current_version,
                    &entry,
                )?;
                let count = decoded.len() as u32;
                let skip = if entry.seq == start.seq {
                    start.index
                } else {
                    0
                };
                for (i, record) in decoded.into_iter().enumerate().skip(skip as usize) {
                    let i = i as u32;
                    let size = response_bytes(&record);
                    if !items.is_empty() && used + size > max_bytes {
                        // `next` already points at this record.
                        break 'entries;
                    }
                    used += size;
                    let here = Cursor::new(shard.id, entry.seq, i);
                    next = if i + 1 < count {
                        Cursor::new(shard.id, entry.seq, i + 1)
                    } else {
                        Cursor::new(shard.id, entry.seq + 1, 0)
                    };
                    items.push(ReadRecord {
                        seq: entry.seq,
                        system_time: entry.system_time,
                        record,
                        cursor: here,
                        next_cursor: next,
                    });
                    if items.len() >= limit {
                        break 'entries;
                    }
                }
                if count <= skip {
                    next = Cursor::new(shard.id, entry.seq + 1, 0);
                }
            }
            Ok(finish(&shard, start, items, next))
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
            Ok(finish(&shard, start, items, next))
        })
        .await
        .map_err(join_error)?
    }

    /// Get-cursor (protocol doc §4.5, §6.3).
    pub fn get_cursor(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        kind: CursorKind,
    ) -> Result<CursorAnswer> {
        let shard = topic.shard_by_text(shard)?;
        let log = &shard.log;
        let (first, next) = (log.first_seq(), log.next_seq());
        let answer = |seq: u64| CursorAnswer {
            cursor: Cursor::new(shard.id, seq, 0),
            record_time: log.time_of(seq).unwrap_or(0),
            sequence: seq as i64,
        };
        match kind {
            CursorKind::Oldest => Ok(answer(first)),
            CursorKind::Latest => Ok(answer(if next > first { next - 1 } else { next })),
            CursorKind::Sequence(s) => {
                if s < 0 || (s as u64) < first || (s as u64) > next {
                    return Err(Error::SeekOutOfRange(format!(
                        "sequence {s} is out of range: shard {} holds [{first}, {next})",
                        shard.id
                    )));
                }
                Ok(answer(s as u64))
            }
            CursorKind::SystemTime(t) => {
                if t < 0 {
                    return Err(Error::InvalidParameter(format!("Invalid time value: {t}")));
                }
                Ok(answer(log.seq_at_or_after_time(t).unwrap_or(next)))
            }
        }
    }

    /// Metering: seconds the shard has been open and bytes it stores.
    pub fn metering(&self, topic: &Arc<Topic>, shard: &str) -> Result<(i64, u64)> {
        let shard = topic.shard_by_text(shard)?;
        let meta = shard.meta.read().clone();
        let end = if meta.state == ShardState::Active {
            now_ms() / 1000
        } else {
            meta.closed_time / 1000
        };
        Ok(((end - meta.create_time).max(0), shard.log.size_bytes()))
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
fn response_bytes(record: &Record) -> usize {
    const PER_RECORD: usize = 192;
    const PER_VALUE: usize = 4;
    let data = match &record.data {
        RecordData::Blob(b) => b.len().div_ceil(3) * 4,
        RecordData::Tuple(values) => values
            .iter()
            .map(|v| {
                PER_VALUE
                    + match v {
                        Value::Null | Value::Bool(_) => 5,
                        Value::Int(_) | Value::Float(_) | Value::Double(_) => 24,
                        Value::Str(s) | Value::Decimal(s) => s.len(),
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

/// The same failure for each record of a failed shard append.
fn clone_for_record(e: &Error, message: &str) -> Error {
    match e {
        Error::ShardNotActive(id) => Error::ShardNotActive(*id),
        _ => Error::Internal(message.to_string()),
    }
}

/// Validates a cursor against the shard: its own, not expired, not past the end; and at the
/// end of a closed shard, the read-end error consumers wait for.
fn check_cursor(shard: &Shard, text: &str) -> Result<Cursor> {
    let cursor = Cursor::decode(text, shard.id).map_err(|e| Error::InvalidCursor(e.to_string()))?;
    let (first, next) = (shard.log.first_seq(), shard.log.next_seq());
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

/// Decodes a stored batch into records shaped like the topic's current schema.
pub(crate) fn decode_entry(
    topic: &Topic,
    versions: &Versions,
    current: Option<&RecordSchema>,
    current_version: i32,
    entry: &Entry,
) -> Result<Vec<Record>> {
    let kind = match topic.record_type {
        RecordType::Tuple => TopicKind::Tuple(versions),
        RecordType::Blob => TopicKind::Blob,
    };
    let decoded = batch::decode_batch(&entry.payload, kind).map_err(|e| {
        Error::Internal(format!(
            "stored batch at sequence {} is unreadable: {e}",
            entry.seq
        ))
    })?;
    Ok(decoded
        .into_iter()
        .map(|(version, record)| {
            if version == current_version || topic.record_type == RecordType::Blob {
                record
            } else {
                reshape(record, versions.schema(version), current)
            }
        })
        .collect())
}

/// Maps a record written under an older schema version onto the current one, by field name;
/// fields the old version lacks read as NULL.
fn reshape(record: Record, from: Option<&RecordSchema>, to: Option<&RecordSchema>) -> Record {
    let (Some(from), Some(to), RecordData::Tuple(values)) = (from, to, &record.data) else {
        return record;
    };
    if from == to {
        return record;
    }
    let values = to
        .fields
        .iter()
        .map(|f| {
            from.index_of(&f.name)
                .and_then(|i| values.get(i).cloned())
                .unwrap_or(Value::Null)
        })
        .collect();
    Record {
        data: RecordData::Tuple(values),
        attributes: record.attributes,
    }
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
        let size = response_bytes(&record);
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
