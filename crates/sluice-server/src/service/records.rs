//! Records: routing and appending puts, cursors and metering (reading is in `reads.rs`).
//!
//! Every log entry is one batch in the batch binary format: a batch-protocol put is stored
//! byte for byte as one entry (one sequence, protocol doc §4.7), and each JSON or protobuf
//! record becomes its own one-record batch (one sequence per record). Batch reads therefore
//! serve stored bytes; JSON and protobuf reads decode them.

use std::sync::Arc;

use bytes::Bytes;
use sluice_log::LogError;
use sluice_proto::batch::{self, BatchCompression, SchemaLookup, TopicKind};
use sluice_proto::cursor::Cursor;
use sluice_proto::{hashkey, Record, RecordData, RecordSchema};

use super::catalog::{now_ms, Catalog, RecordType, SchemaVersion, Shard, ShardState, Topic};
use super::error::{Error, Result};
use super::health::WriteHealth;
pub(crate) use super::reads::{visit_entry, Reshape};

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

/// A record read back, owned, with its position (the console's sample reads; the HTTP read
/// paths write records straight into the response, see `reads::RecordWriter`).
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
pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
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
            // An empty BLOB is a record like any other: the service stores and returns it
            // (Java SDK oldsdk/BlobTopicTest.java:108-124), and batch puts always took it.
            (RecordData::Blob(_), RecordType::Blob) => batch::encode_batch(
                std::slice::from_ref(record),
                None,
                -1,
                BatchCompression::None,
            ),
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
                // Not a number: InvalidShardId; a number but no such shard: NoSuchShard
                // (Java SDK e2e PutGetRecordsTest).
                if id.trim().parse::<u32>().is_err() {
                    return Err(Error::InvalidShardId(id.clone()));
                }
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
/// `catalog_seen`: the catalog version the put was checked against, for a shared store to
/// check in its append (cluster mode); a put refused because another node changed the catalog
/// since is `Unavailable`, nothing stored (the record handlers catch up and retry it).
fn append_to_shard<P: AsRef<[u8]>>(
    shard: &Shard,
    payloads: &[P],
    now: i64,
    catalog_seen: Option<i64>,
) -> Result<()> {
    let meta = shard.meta.read();
    if meta.state != ShardState::Active {
        return Err(Error::ShardNotActive(shard.id));
    }
    // issue 14 (fix by part C, cl-bed): a shared store refuses an append to a closed shard in
    // its own statement, and its append blocks on the runtime; holding the state's read guard
    // across it deadlocked with the catalog refresh, which takes the write guard on a worker.
    let meta = if shard.log.local().is_some() {
        Some(meta)
    } else {
        drop(meta);
        None
    };
    let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_ref()).collect();
    shard
        .log
        .append_checked(&slices, now, catalog_seen)
        .map_err(|e| match e {
            // issue 14: cluster — another node closed (split, merge) or deleted the shard and this
            // node's catalog has not caught up yet: the shared log refused the append.
            LogError::Closed if shard.log.local().is_none() => Error::ShardNotActive(shard.id),
            LogError::CatalogMoved { seen } => Error::Unavailable(format!(
                "the topic's metadata changed on another node (past version {seen}) while the put \
             was being stored; nothing was stored"
            )),
            e => append_error(e),
        })?;
    drop(meta);
    Ok(())
}

// issue 13: metrics
/// Bytes of the payloads of one append (what the log stores, framing aside).
fn payload_bytes<P: AsRef<[u8]>>(payloads: &[P]) -> usize {
    payloads.iter().map(|p| p.as_ref().len()).sum()
}

/// Refuses a put of more than `max` records.
fn check_put_count(n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(Error::LimitExceeded(format!(
            "the put has {n} records, more than the limit of {max}"
        )));
    }
    Ok(())
}

/// A failed append: a put too large for one log frame is refused like an oversized body
/// (InvalidParameter, not retried), never an internal error.
fn append_error(e: LogError) -> Error {
    match e {
        LogError::EntryTooLarge { size, max } => Error::InvalidParameter(format!(
            "the put is {size} bytes in the shard's log, more than its frame limit ({max} bytes)"
        )),
        e => Error::Storage(e),
    }
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
    /// Routed put (JSON and protobuf `put_records`) of the records `decode` gives: per-record
    /// failures, by request index. Decoding, encoding and the append
    /// to the first shard run in one blocking task (a put bound for one shard hands off
    /// between the async workers and the blocking pool once, not three times: each hand-off
    /// waits for a thread to be scheduled, which on a loaded machine made the put tail; issue
    /// 12); the appends to further shards run in their own blocking tasks meanwhile.
    pub async fn put_routed_decoded<F>(
        &self,
        topic: &Arc<Topic>,
        decode: F,
    ) -> Result<Vec<(usize, Error)>>
    where
        F: FnOnce() -> Result<Vec<Result<RoutedRecord>>> + Send + 'static,
    {
        // Routing and appending see one topology: a split or merge waits for this put, and
        // this put for it (see `Topic::topology`).
        let _topology = topic.topology.read().await;
        let active: Vec<Arc<Shard>> = topic
            .shards
            .read()
            .iter()
            .filter(|s| s.meta.read().state == ShardState::Active)
            .cloned()
            .collect();
        let max_record_bytes = self.config.max_record_bytes;
        let max_records = self.config.max_records_per_put;
        let now = self.config.clock.now_ms();
        let topic_for_metrics = topic.clone();
        let topic = topic.clone();
        let runtime = tokio::runtime::Handle::current();
        let (mut failed, first, others) = tokio::task::spawn_blocking(move || {
            let records = decode()?;
            check_put_count(records.len(), max_records)?;
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
            let append = move |(shard, indexes, payloads): ShardGroup| {
                let bytes = payload_bytes(&payloads);
                (
                    indexes,
                    bytes,
                    append_to_shard(&shard, &payloads, now, None),
                )
            };
            let mut groups = groups.into_iter();
            let first = groups.next();
            let others: Vec<_> = groups
                .map(|group| runtime.spawn_blocking(move || append(group)))
                .collect();
            Ok::<_, Error>((failed, first.map(append), others))
        })
        .await
        .map_err(join_error)??;
        let mut done = Vec::with_capacity(1 + others.len());
        done.extend(first);
        for task in others {
            done.push(task.await.map_err(join_error)?);
        }
        for (indexes, bytes, result) in done {
            note_append(&self.write_health, &result);
            // issue 13: metrics
            if result.is_ok() {
                self.metrics
                    .note_put(&topic_for_metrics, indexes.len(), bytes);
            }
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

    /// Put by shard (protobuf): all records or none.
    pub async fn put_to_shard(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        records: Vec<Record>,
    ) -> Result<()> {
        self.put_to_shard_decoded(topic, shard, None, move || Ok(records))
            .await
    }

    /// [`Catalog::put_to_shard`] of the records `decode` gives: decoding, encoding and the
    /// append (with its wait for the fsync) in one blocking task, one hand-off per put (see
    /// [`Catalog::put_routed_decoded`]). `catalog_seen` as for `append_to_shard`.
    pub async fn put_to_shard_decoded<F>(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        catalog_seen: Option<i64>,
        decode: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Result<Vec<Record>> + Send + 'static,
    {
        let max_record_bytes = self.config.max_record_bytes;
        let max_records = self.config.max_records_per_put;
        let now = self.config.clock.now_ms();
        let (topic_in, shard_text) = (topic.clone(), shard.to_string());
        let result = tokio::task::spawn_blocking(move || -> Result<_> {
            let records = decode()?;
            check_put_count(records.len(), max_records)?;
            let shard = topic_in.shard_by_text(&shard_text)?;
            if records.is_empty() {
                return Ok(None);
            }
            let encoder = topic_in.encoder();
            let payloads = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    encoder
                        .encode(r, max_record_bytes)
                        .map_err(|e| Error::MalformedRecord(format!("record {i}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            // Only the append's outcome counts for the write health.
            Ok(Some((
                records.len(),
                append_to_shard(&shard, &payloads, now, catalog_seen)
                    .map(|()| payload_bytes(&payloads)),
            )))
        })
        .await
        .map_err(join_error)??;
        let Some((count, result)) = result else {
            return Ok(());
        };
        let result = result.map(|bytes| {
            // issue 13: metrics
            self.metrics.note_put(topic, count, bytes);
        });
        note_append(&self.write_health, &result);
        result
    }

    /// Put by shard (batch protocol): each batch is validated and stored byte for byte, unless some
    /// SDK could not read it back ([`batch::portable_batch`]). `catalog_seen` as for
    /// `append_to_shard`.
    pub async fn put_batches(
        &self,
        topic: &Arc<Topic>,
        shard: &str,
        batches: Vec<Bytes>,
        catalog_seen: Option<i64>,
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
        check_put_count(total, self.config.max_records_per_put)?;
        if batches.is_empty() {
            return Ok(());
        }
        let now = self.config.clock.now_ms();
        let blob = topic.record_type == RecordType::Blob;
        let result = tokio::task::spawn_blocking(move || {
            // issue 8: zstd and Go-DEFLATE payloads, and Go v1.x's version-1 (Avro) batches,
            // are re-encoded so that every SDK reads them.
            let kind = if blob {
                TopicKind::Blob
            } else {
                TopicKind::Tuple(&versions)
            };
            let batches: Vec<Bytes> = batches
                .into_iter()
                .map(|b| batch::storable_batch(&b, kind).map_or(b, Bytes::from))
                .collect();
            append_to_shard(&shard, &batches, now, catalog_seen).map(|()| payload_bytes(&batches))
        })
        .await
        .map_err(join_error)?;
        let result = result.map(|bytes| {
            // issue 13: metrics
            self.metrics.note_put(topic, total, bytes);
        });
        note_append(&self.write_health, &result);
        result
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
        // issue 14: cluster — fresh, so a cursor on one node sees another node's appends.
        let (first, next) = (log.first_seq(), log.next_seq_fresh());
        let answer = |seq: u64| CursorAnswer {
            cursor: Cursor::new(shard.id, seq, 0),
            record_time: log.time_of(seq).unwrap_or(0),
            sequence: seq as i64,
        };
        match kind {
            CursorKind::Oldest => Ok(answer(first)),
            CursorKind::Latest => Ok(answer(if next > first { next - 1 } else { next })),
            CursorKind::Sequence(s) => {
                // The service (Java SDK e2e GetCursorTest) calls a negative sequence invalid and
                // one outside the shard out of range.
                if s < 0 {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid sequence value: {s}"
                    )));
                }
                if (s as u64) < first || (s as u64) > next {
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
                // No record at or after `t`: a past time points at the next record to be
                // written (Java SDK oldsdk GetCursorTest T3, and an empty shard's T1-T3); a future
                // time is SeekOutOfRange (e2e GetCursorTest, oldsdk GetCursorTest T4).
                let now = self.config.clock.now_ms();
                let seq = match log.seq_at_or_after_time(t) {
                    Some(seq) => seq,
                    None if t <= now => next,
                    None => {
                        return Err(Error::SeekOutOfRange(format!(
                        "SystemTime {t} is in the future: shard {} has no record at or after it",
                        shard.id
                    )))
                    }
                };
                Ok(answer(seq))
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

/// The same failure for each record of a failed shard append.
fn clone_for_record(e: &Error, message: &str) -> Error {
    match e {
        Error::ShardNotActive(id) => Error::ShardNotActive(*id),
        _ => Error::Internal(message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_over_the_frame_limit_is_refused_not_internal() {
        let e = append_error(LogError::EntryTooLarge {
            size: 300 << 20,
            max: sluice_log::MAX_FRAME_BYTES,
        });
        assert!(
            matches!(&e, Error::InvalidParameter(m) if m.contains("frame limit")),
            "{e:?}"
        );
        assert!(matches!(append_error(LogError::Closed), Error::Storage(_)));
    }
}
