//! Reading and validating batches. One walker does every check; [`decode_batch`] materializes
//! what it visits and [`validate_batch`] only counts, so both accept exactly the same inputs.

use std::borrow::Cow;
use std::ops::ControlFlow;

use smallvec::SmallVec;

use super::{
    parse_header, BatchCompression, BatchError, BatchHeader, TopicKind, HEADER_SIZE, MAX_RAW_SIZE,
    RECORD_HEADER, RECORD_PREFIX, VERSION,
};
use crate::compress::{self, Compression};
use crate::record::{DataRef, Record, RecordData, RecordRef};
use crate::schema::{FieldType, RecordSchema};
use crate::value::{ValueError, ValueRef};

/// The zstd frame magic. The Go SDK writes zstd payloads under code 0 (v0.2.x) or 3 (v1.x).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// LZ4 blocks expand at most ~255x (one 0xFF length byte per 255 output bytes).
const LZ4_MAX_RATIO: usize = 255;

/// Smallest possible record: prefix, attribute count.
const MIN_RECORD: usize = RECORD_PREFIX + 4;

/// Fully decodes and validates a batch: header (magic, version, length, CRC-32C of the stored
/// payload), decompression, record count, every record's sizes and offsets, schema version
/// (known for TUPLE, -1 for BLOB), field count (the schema's, or 0 as the Go SDK v0.2.x writes
/// it), each value against its field ([`Value::check`]),
/// UTF-8 of text and attributes. Never panics; allocations are bounded by the input.
pub fn decode_batch(bytes: &[u8], kind: TopicKind) -> Result<Vec<(i32, Record)>, BatchError> {
    if is_avro(bytes) {
        let (header, records) = super::v1::decode_avro(bytes, kind)?;
        let version = header.schema_version;
        return Ok(records.into_iter().map(|r| (version, r)).collect());
    }
    let (header, payload) = payload(bytes)?;
    let capacity = (header.record_count as usize).min(payload.len() / MIN_RECORD);
    let mut out = Vec::with_capacity(capacity);
    walk(&payload, header.record_count, kind, |view, _| {
        let data = match kind {
            TopicKind::Blob => RecordData::Blob(view.blob.to_vec()),
            TopicKind::Tuple(_) => {
                RecordData::Tuple(view.fields.iter().map(|v| v.to_value()).collect())
            }
        };
        let attributes = view
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push((view.schema_version, Record { data, attributes }));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Decodes a batch like [`decode_batch`] (the same checks, record by record) without owning
/// anything: `each` sees every record as a [`RecordRef`] borrowing the batch, in order, and may
/// stop the walk early (the records after it are then neither decoded nor checked). Returns the
/// number of records visited. The read paths write responses and refill recycled records from
/// these views, so a read allocates nothing per record.
pub fn visit_records(
    bytes: &[u8],
    kind: TopicKind,
    mut each: impl FnMut(&RecordRef<'_, '_>) -> ControlFlow<()>,
) -> Result<u32, BatchError> {
    if is_avro(bytes) {
        let mut visited = 0;
        for (version, record) in decode_batch(bytes, kind)? {
            visited += 1;
            let parts = record.parts();
            if each(&parts.as_record_ref(version)).is_break() {
                break;
            }
        }
        return Ok(visited);
    }
    let (header, payload) = payload(bytes)?;
    let mut visited = 0;
    walk(&payload, header.record_count, kind, |view, _| {
        visited += 1;
        each(&RecordRef {
            schema_version: view.schema_version,
            data: match kind {
                TopicKind::Blob => DataRef::Blob(view.blob),
                TopicKind::Tuple(_) => DataRef::Tuple(&view.fields),
            },
            attributes: &view.attributes,
        })
    })?;
    Ok(visited)
}

/// Same validation as [`decode_batch`] without materializing values (the put fast path);
/// returns the record count.
pub fn validate_batch(bytes: &[u8], kind: TopicKind) -> Result<u32, BatchError> {
    validate_batch_sizes(bytes, kind).map(|s| s.records)
}

/// What a valid batch holds once decompressed, from [`validate_batch_sizes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSizes {
    /// Number of records.
    pub records: u32,
    /// The batch's size uncompressed: header plus raw payload.
    pub raw_bytes: usize,
    /// Encoded size of the largest record (its `total_size`).
    pub largest_record: usize,
}

/// [`validate_batch`], also reporting the uncompressed sizes (for limits that must hold on
/// what a batch expands to, not on its compressed form).
pub fn validate_batch_sizes(bytes: &[u8], kind: TopicKind) -> Result<BatchSizes, BatchError> {
    if is_avro(bytes) {
        // Sized as what it is stored as: its version-0 form.
        return validate_batch_sizes(&super::encode::avro_as_v0(bytes, kind, false)?, kind);
    }
    let (header, payload) = payload(bytes)?;
    let mut largest_record = 0;
    walk(&payload, header.record_count, kind, |_, size| {
        largest_record = largest_record.max(size);
        ControlFlow::Continue(())
    })?;
    Ok(BatchSizes {
        records: header.record_count,
        raw_bytes: HEADER_SIZE + payload.len(),
        largest_record,
    })
}

/// Whether a batch declares version 1 (the Go SDK v1.x's Avro layout).
pub(super) fn is_avro(bytes: &[u8]) -> bool {
    parse_header(bytes).is_ok_and(|h| h.version == super::VERSION_AVRO)
}

/// Checks the header and returns the uncompressed payload.
pub(super) fn payload(bytes: &[u8]) -> Result<(BatchHeader, Cow<'_, [u8]>), BatchError> {
    let header = parse_header(bytes)?;
    if header.version != VERSION {
        return Err(BatchError::UnsupportedVersion {
            version: header.version,
        });
    }
    if header.length as usize != bytes.len() {
        return Err(BatchError::BadLength {
            declared: header.length,
            actual: bytes.len(),
        });
    }
    let stored = &bytes[HEADER_SIZE..];
    let crc = crc32c::crc32c(stored);
    if crc != header.crc {
        return Err(BatchError::BadCrc {
            expected: header.crc,
            actual: crc,
        });
    }
    let raw = header.raw_size as usize;
    let too_large = |limit: usize, why: &'static str| BatchError::RawSizeTooLarge {
        raw_size: header.raw_size,
        limit,
        why,
    };
    if raw > MAX_RAW_SIZE {
        return Err(too_large(MAX_RAW_SIZE, ""));
    }
    let compression = effective_compression(&header, stored);
    let corrupt = |e: compress::CompressError| BatchError::Decompress {
        compression,
        message: e.to_string(),
    };
    let payload = match compression {
        BatchCompression::None => Cow::Borrowed(stored),
        BatchCompression::Lz4 => {
            let limit = stored
                .len()
                .saturating_mul(LZ4_MAX_RATIO)
                .saturating_add(64);
            if raw > limit {
                return Err(too_large(
                    limit,
                    " (an LZ4 block of this size cannot expand further)",
                ));
            }
            Cow::Owned(
                compress::decompress(Compression::Lz4, stored, Some(raw), raw).map_err(corrupt)?,
            )
        }
        BatchCompression::Zlib => Cow::Owned(
            compress::decompress(Compression::Zlib, stored, Some(raw), raw).map_err(corrupt)?,
        ),
        BatchCompression::Deflate if stored.first() == Some(&0x78) => Cow::Owned(
            compress::decompress(Compression::Zlib, stored, Some(raw), raw).map_err(corrupt)?,
        ),
        BatchCompression::Deflate => Cow::Borrowed(stored),
        BatchCompression::Zstd => Cow::Owned(
            compress::decompress(Compression::Zstd, stored, Some(raw), raw).map_err(corrupt)?,
        ),
    };
    if payload.len() != raw {
        return Err(BatchError::RawSizeMismatch {
            declared: header.raw_size,
            actual: payload.len(),
        });
    }
    Ok((header, payload))
}

/// The payload compression as decoding sees it: the header's code, or `Zstd` when a code 0 or 3
/// payload starts with the zstd frame magic.
pub(super) fn effective_compression(header: &BatchHeader, stored: &[u8]) -> BatchCompression {
    match header.compression() {
        BatchCompression::None | BatchCompression::Zlib if stored.starts_with(&ZSTD_MAGIC) => {
            BatchCompression::Zstd
        }
        code => code,
    }
}

/// Values a record view holds without a heap allocation. A walk is one stored entry, and an
/// entry of a protobuf or JSON put is a single record, so a heap vector here would cost an
/// allocation per record on every read path.
const INLINE_FIELDS: usize = 16;
/// Attributes a record view holds without a heap allocation.
const INLINE_ATTRIBUTES: usize = 4;
/// A record view's attributes (key, value), borrowed from the batch.
type ViewAttributes<'a> = SmallVec<[(&'a str, &'a str); INLINE_ATTRIBUTES]>;

/// One validated record, handed to the walker's callback. Buffers are reused across records.
struct RecordView<'a> {
    schema_version: i32,
    /// A TUPLE record's values.
    fields: SmallVec<[ValueRef<'a>; INLINE_FIELDS]>,
    /// A BLOB record's bytes.
    blob: &'a [u8],
    attributes: ViewAttributes<'a>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

/// Visits every record of the payload, checking everything; `each` sees only valid records, with
/// their encoded size, and may stop the walk (the rest is then left unchecked).
fn walk<'a>(
    payload: &'a [u8],
    record_count: u32,
    kind: TopicKind,
    mut each: impl FnMut(&RecordView<'a>, usize) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let mut view = RecordView {
        schema_version: 0,
        fields: SmallVec::new(),
        blob: &[],
        attributes: SmallVec::new(),
    };
    let mut pos = 0usize;
    for index in 0..record_count {
        if pos >= payload.len() {
            return Err(BatchError::MissingRecords {
                declared: record_count,
                found: index,
            });
        }
        let size = read_record(&payload[pos..], pos, index, kind, &mut view)?;
        if each(&view, size).is_break() {
            return Ok(());
        }
        pos += size;
    }
    if pos != payload.len() {
        return Err(BatchError::TrailingBytes {
            records: record_count,
            offset: pos,
            trailing: payload.len() - pos,
        });
    }
    Ok(())
}

/// Parses the record at the start of `rest` (payload offset `offset`) into `view`; returns its
/// total size.
fn read_record<'a>(
    rest: &'a [u8],
    offset: usize,
    record: u32,
    kind: TopicKind,
    view: &mut RecordView<'a>,
) -> Result<usize, BatchError> {
    let prefix = |at| i32_at(rest, at).unwrap_or_default();
    if rest.len() < RECORD_PREFIX {
        return Err(BatchError::RecordTruncated {
            record,
            offset,
            available: rest.len(),
        });
    }
    let schema_version = prefix(4);
    let total_size = prefix(8) as u32;
    let attr_offset = prefix(12) as u32;
    let field_count = prefix(16);
    let total = total_size as usize;
    if total < MIN_RECORD || total > rest.len() {
        return Err(BatchError::BadTotalSize {
            record,
            offset,
            total_size,
            available: rest.len(),
        });
    }
    let rec = &rest[..total];
    let schema: Option<&RecordSchema> = match kind {
        TopicKind::Blob if schema_version != -1 => {
            return Err(BatchError::BlobSchemaVersion {
                record,
                version: schema_version,
            })
        }
        TopicKind::Blob => None,
        TopicKind::Tuple(lookup) => Some(lookup.schema(schema_version).ok_or(
            BatchError::UnknownSchemaVersion {
                record,
                version: schema_version,
            },
        )?),
    };
    let n = schema.map_or(1, RecordSchema::len);
    // 0 is what the Go SDK v0.2.x leaves there (it never writes the count): the schema decides.
    if field_count != 0 && usize::try_from(field_count).ok() != Some(n) {
        return Err(BatchError::FieldCountMismatch {
            record,
            field_count,
            expected: n,
        });
    }
    let slots_at = RECORD_PREFIX + n.div_ceil(64) * 8;
    let area_start = slots_at + 8 * n;
    let attr_at = attr_offset as usize;
    if attr_at < area_start || attr_at > total - 4 {
        return Err(BatchError::BadAttrOffset {
            record,
            attr_offset,
            total_size,
            min: area_start,
            max: total - 4,
        });
    }
    view.schema_version = schema_version;
    view.fields.clear();
    view.blob = &[];
    view.attributes.clear();
    for i in 0..n {
        let field = schema.map(|s| &s.fields[i]);
        let name = || field.map_or_else(|| "<blob>".to_string(), |f| f.name.clone());
        let present = rec[RECORD_PREFIX + i / 8] >> (i % 8) & 1 == 1;
        let slot = &rec[slots_at + 8 * i..slots_at + 8 * i + 8];
        let word = u64::from_le_bytes([
            slot[0], slot[1], slot[2], slot[3], slot[4], slot[5], slot[6], slot[7],
        ]);
        let value = if !present {
            if field.is_none() {
                return Err(BatchError::NullBlob { record });
            }
            ValueRef::Null
        } else {
            let bytes = || -> Result<&'a [u8], BatchError> {
                if word >> 63 == 1 {
                    return Ok(&slot[..((word >> 56) & 0x07) as usize]);
                }
                let length = word as u32 as i32;
                let off = (word >> 32) as u32 as i32;
                let start = RECORD_HEADER.saturating_add(off.max(0) as usize);
                let end = start.saturating_add(length.max(0) as usize);
                if length < 0 || off < 0 || start < area_start || end > attr_at {
                    return Err(BatchError::ByteFieldOutOfBounds {
                        record,
                        field: i,
                        name: name(),
                        length,
                        offset: off,
                        area_start,
                        area_end: attr_at,
                    });
                }
                Ok(&rec[start..end])
            };
            let text = || -> Result<&'a str, BatchError> {
                std::str::from_utf8(bytes()?).map_err(|_| BatchError::BadUtf8 {
                    record,
                    field: i,
                    name: name(),
                })
            };
            match field.map(|f| f.field_type) {
                None => {
                    view.blob = bytes()?;
                    continue;
                }
                Some(FieldType::Boolean) => match slot[0] {
                    0 => ValueRef::Bool(false),
                    1 => ValueRef::Bool(true),
                    byte => {
                        return Err(BatchError::BadBoolean {
                            record,
                            field: i,
                            name: name(),
                            byte,
                        })
                    }
                },
                Some(FieldType::Tinyint) => ValueRef::Int(narrow(word, 1)),
                Some(FieldType::Smallint) => ValueRef::Int(narrow(word, 2)),
                Some(FieldType::Integer) => ValueRef::Int(narrow(word, 4)),
                Some(FieldType::Bigint | FieldType::Timestamp) => ValueRef::Int(word as i64),
                Some(FieldType::Float) => {
                    ValueRef::Float(f32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]))
                }
                Some(FieldType::Double) => ValueRef::Double(f64::from_bits(word)),
                Some(FieldType::String) => ValueRef::Str(text()?),
                Some(FieldType::Decimal) => ValueRef::Decimal(text()?),
            }
        };
        if let Some(field) = field {
            value
                .check(field)
                .map_err(|source| match (&value, source) {
                    (ValueRef::Decimal(text), ValueError::WrongKind { .. }) => {
                        BatchError::BadDecimal {
                            record,
                            field: i,
                            name: name(),
                            text: text.chars().take(64).collect(),
                        }
                    }
                    (_, source) => BatchError::Value {
                        record,
                        field: i,
                        source,
                    },
                })?;
        }
        view.fields.push(value);
    }
    read_attributes(rec, attr_at, record, total_size, &mut view.attributes)?;
    Ok(total)
}

/// Reads a TINYINT/SMALLINT/INTEGER slot: the first `bytes` bytes as a signed integer, like
/// pydatahub. The upper bytes must be that value's sign extension (what pydatahub writes) or
/// zero; anything else yields the full i64 so that the range check rejects it.
fn narrow(word: u64, bytes: u32) -> i64 {
    let shift = 64 - 8 * bytes;
    let low = ((word << shift) as i64) >> shift;
    if low == word as i64 || word >> (8 * bytes) == 0 {
        low
    } else {
        word as i64
    }
}

fn read_attributes<'a>(
    rec: &'a [u8],
    attr_at: usize,
    record: u32,
    total_size: u32,
    out: &mut ViewAttributes<'a>,
) -> Result<(), BatchError> {
    let count = i32_at(rec, attr_at).unwrap_or_default();
    if count < 0 {
        return Err(BatchError::BadAttributeCount { record, count });
    }
    let mut at = attr_at + 4;
    for attribute in 0..count as usize {
        let mut part = |name: &'static str| -> Result<&'a str, BatchError> {
            let bytes = i32_at(rec, at)
                .and_then(|len| usize::try_from(len).ok())
                .and_then(|len| rec.get(at + 4..(at + 4).checked_add(len)?))
                .ok_or(BatchError::AttributeOutOfBounds {
                    record,
                    attribute,
                    offset: at,
                    total_size,
                })?;
            at += 4 + bytes.len();
            std::str::from_utf8(bytes).map_err(|_| BatchError::AttributeUtf8 {
                record,
                attribute,
                part: name,
            })
        };
        let key = part("key")?;
        let value = part("value")?;
        out.push((key, value));
    }
    if at != rec.len() {
        return Err(BatchError::AttributesSize {
            record,
            end: at,
            total_size,
        });
    }
    Ok(())
}
