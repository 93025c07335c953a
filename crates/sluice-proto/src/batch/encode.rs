//! Writing batches in pydatahub's version-0 layout.

use super::decode::{effective_compression, is_avro, payload};
use super::{
    parse_header, BatchCompression, BatchError, BatchHeader, TopicKind, ATTRIBUTES_BASE,
    HEADER_SIZE, RECORD_HEADER, RECORD_PREFIX, VERSION,
};
use crate::compress::{self, Compression};
use crate::record::{Record, RecordData};
use crate::schema::RecordSchema;
use crate::value::Value;

/// Encodes records as one pydatahub version-0 batch (attributes 0x08 | compression code), payload
/// compressed with `compression` only when strictly smaller (else stored uncompressed with code
/// 0). TUPLE records use `schema_version` and `schema` to pick slot encodings; BLOB records
/// (schema None) use -1.
///
/// A TUPLE record gets one slot per schema field (per value when `schema` is None); missing
/// values are written as NULL and extra values are dropped. Slots are written according to each
/// value's kind, so records should already pass [`Value::check`] against `schema`, otherwise the
/// batch will not decode. `Deflate` never compresses (pydatahub's deflate is a no-op), so it
/// yields code 0 like pydatahub. `Zstd` writes a zstd frame under code 0, as the Go SDK v0.2.x
/// does (for tests and tools: pydatahub cannot read it).
pub fn encode_batch(
    records: &[Record],
    schema: Option<&RecordSchema>,
    schema_version: i32,
    compression: BatchCompression,
) -> Vec<u8> {
    let mut payload = Vec::new();
    for record in records {
        encode_record(&mut payload, record, schema, schema_version);
    }
    let compressed = match compression {
        BatchCompression::None | BatchCompression::Deflate => None,
        BatchCompression::Lz4 => {
            compress::compress(Compression::Lz4, &payload).map(|c| (BatchCompression::Lz4, c))
        }
        BatchCompression::Zlib => {
            compress::compress(Compression::Zlib, &payload).map(|c| (BatchCompression::Zlib, c))
        }
        BatchCompression::Zstd => {
            compress::compress(Compression::Zstd, &payload).map(|c| (BatchCompression::Zstd, c))
        }
    };
    let raw_size = payload.len();
    let (used, stored) = match compressed {
        Some((used, c)) if c.len() < raw_size => (used, c),
        _ => (BatchCompression::None, payload),
    };
    let header = BatchHeader {
        version: VERSION,
        length: (HEADER_SIZE + stored.len()) as u32,
        raw_size: raw_size as u32,
        crc: crc32c::crc32c(&stored),
        attributes: ATTRIBUTES_BASE | used.code(),
        record_count: records.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + stored.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&stored);
    out
}

/// A valid batch that not every SDK can read back, re-encoded so that every one can; None when
/// it already is (or does not decode). Batches are stored and served byte for byte, so what a
/// writer sent is what batch readers get: a zstd payload (Go) is unreadable to pydatahub and to
/// Go v0.2.x readers, and a zlib stream under code 1 (Go's DEFLATE) to pydatahub, whose code 1
/// is a no-op; raw records under code 2 (the Go SDK's LZ4 compressor can return its input
/// unchanged) are unreadable to every LZ4 reader. Those become one LZ4 block (code 2) when
/// smaller, else stored bytes (code 0); the records themselves are kept byte for byte, and the
/// other attribute bits with them.
/// Version-1 batches are left to [`storable_batch`].
pub fn portable_batch(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = parse_header(bytes).ok()?;
    if header.version != VERSION {
        return None;
    }
    let stored = bytes.get(HEADER_SIZE..)?;
    let needs = match effective_compression(&header, stored) {
        BatchCompression::Zstd => true,
        BatchCompression::Deflate => stored.first() == Some(&0x78),
        BatchCompression::Lz4 => compress::lz4_stored_unchanged(stored, header.raw_size as usize),
        BatchCompression::None | BatchCompression::Zlib => false,
    };
    if !needs {
        return None;
    }
    let (header, raw) = payload(bytes).ok()?;
    let (code, stored) = match compress::compress(Compression::Lz4, &raw) {
        Some(c) => (BatchCompression::Lz4, c),
        None => (BatchCompression::None, raw.into_owned()),
    };
    let header = BatchHeader {
        length: (HEADER_SIZE + stored.len()) as u32,
        crc: crc32c::crc32c(&stored),
        attributes: (header.attributes & !0x03) | code.code(),
        ..header
    };
    Some([&header.to_bytes()[..], &stored].concat())
}

/// What a valid batch is stored as, when not byte for byte (None): [`portable_batch`] for
/// version 0, and for a version-1 batch (Go SDK v1.x, Avro records, which only Go v1.x reads)
/// the same records in version 0 ([`encode_batch`], LZ4 when smaller), its schema version
/// resolved through `kind`.
pub fn storable_batch(bytes: &[u8], kind: TopicKind) -> Option<Vec<u8>> {
    if is_avro(bytes) {
        avro_as_v0(bytes, kind, true).ok()
    } else {
        portable_batch(bytes)
    }
}

/// Decodes a version-1 batch and encodes its records as version 0, LZ4-compressed when `lz4`
/// and smaller.
pub(super) fn avro_as_v0(bytes: &[u8], kind: TopicKind, lz4: bool) -> Result<Vec<u8>, BatchError> {
    let (header, records) = super::v1::decode_avro(bytes, kind)?;
    let schema = match kind {
        TopicKind::Blob => None,
        TopicKind::Tuple(lookup) => lookup.schema(header.schema_version),
    };
    let compression = if lz4 {
        BatchCompression::Lz4
    } else {
        BatchCompression::None
    };
    Ok(encode_batch(
        &records,
        schema,
        header.schema_version,
        compression,
    ))
}

/// One slot's worth of data.
enum Slot<'a> {
    Null,
    Fixed([u8; 8]),
    Bytes(&'a [u8]),
}

fn slot_of(value: &Value) -> Slot<'_> {
    let mut w = [0u8; 8];
    match value {
        Value::Null => return Slot::Null,
        Value::Bool(b) => w[0] = u8::from(*b),
        Value::Int(v) => w = v.to_le_bytes(),
        Value::Float(v) => w[..4].copy_from_slice(&v.to_le_bytes()),
        Value::Double(v) => w = v.to_le_bytes(),
        Value::Str(s) | Value::Decimal(s) => return Slot::Bytes(s.as_bytes()),
    }
    Slot::Fixed(w)
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    schema: Option<&RecordSchema>,
    schema_version: i32,
) {
    let start = out.len();
    let (version, n) = match &record.data {
        RecordData::Blob(_) => (-1, 1),
        RecordData::Tuple(values) => (schema_version, schema.map_or(values.len(), |s| s.len())),
    };
    let nb = n.div_ceil(64) * 8;
    out.extend_from_slice(&0i32.to_le_bytes()); // encode_type
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]); // total_size, attr_offset: patched below
    out.extend_from_slice(&(n as i32).to_le_bytes());
    let bitmap_at = out.len();
    let slots_at = bitmap_at + nb;
    out.resize(slots_at + 8 * n, 0);
    debug_assert_eq!(slots_at - start, RECORD_PREFIX + nb);
    for i in 0..n {
        let slot = match &record.data {
            RecordData::Blob(bytes) => Slot::Bytes(bytes),
            RecordData::Tuple(values) => values.get(i).map_or(Slot::Null, slot_of),
        };
        let word = match slot {
            Slot::Null => continue,
            Slot::Fixed(w) => w,
            Slot::Bytes(b) if b.len() <= 7 => {
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(b);
                w[7] = 0x80 | b.len() as u8;
                w
            }
            Slot::Bytes(b) => {
                let offset = out.len() - start - RECORD_HEADER;
                out.extend_from_slice(b);
                out.resize(out.len() + (8 - b.len() % 8) % 8, 0);
                let mut w = [0u8; 8];
                w[..4].copy_from_slice(&(b.len() as u32).to_le_bytes());
                w[4..].copy_from_slice(&(offset as u32).to_le_bytes());
                w
            }
        };
        out[bitmap_at + i / 8] |= 1 << (i % 8);
        out[slots_at + 8 * i..slots_at + 8 * i + 8].copy_from_slice(&word);
    }
    let attr_offset = out.len() - start;
    out.extend_from_slice(&(record.attributes.len() as u32).to_le_bytes());
    for (key, value) in &record.attributes {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    let total = out.len() - start;
    put_u32(out, start + 8, total as u32);
    put_u32(out, start + 12, attr_offset as u32);
}
