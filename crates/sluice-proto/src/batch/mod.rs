//! The batch binary format (protocol doc §5.3–§5.5): pydatahub's "version 0" layout, and the
//! Go SDK v1.x's "version 1" (Avro records, [`v1`]) that is accepted on put and served to Go
//! v1.x readers, while batches are always stored as version 0.
//!
//! A batch is a 26-byte little-endian header (`"DHUB"`, version, length, raw size, CRC-32C of the
//! stored payload, attributes with the compression code in bits 0–1, record count) followed by the
//! payload: the records back to back, optionally compressed as a whole (raw LZ4 block, zlib, or a
//! zstd frame recognized by its magic under code 0 or 3, as the Go SDK writes it).
//!
//! [`encode_batch`] writes what pydatahub writes (attributes `0x08 | code`, version 0), padding
//! long byte fields to the next multiple of 8 like the real service. [`decode_batch`] and
//! [`validate_batch`] accept exactly the same inputs; both check every length, offset and value
//! and never panic or allocate more than the input justifies; [`visit_records`] does the same
//! walk handing out borrowed [`crate::record::RecordRef`]s (the read paths). Both also take version-1
//! batches; [`storable_batch`] turns one into version 0 for storage, and [`avro_parts`] turns
//! a stored batch into version-1 batches for a Go v1.x reader ([`reads_avro_batches`]).

use std::collections::{BTreeMap, HashMap};

use crate::schema::RecordSchema;
use crate::value::ValueError;

mod avro;
mod decode;
mod encode;
#[cfg(test)]
mod tests;
pub mod v1;

pub use avro::AvroError;
pub use decode::{decode_batch, validate_batch, validate_batch_sizes, visit_records, BatchSizes};
pub use encode::{encode_batch, portable_batch, storable_batch};
pub use v1::{avro_parts, encode_avro_batch, reads_avro_batches, AvroPart, VERSION_AVRO};

/// Size of the batch header.
pub const HEADER_SIZE: usize = 26;

/// The version pydatahub writes and reads, and the one batches are stored in.
pub const VERSION: i32 = 0;

/// Bit 3 of the header attributes, always set by pydatahub.
pub const ATTRIBUTES_BASE: u16 = 0x08;

/// Largest uncompressed payload a batch may declare (`raw_size`). pydatahub producers send at
/// most ~4 MB per request; this leaves ample room while bounding decompression.
pub const MAX_RAW_SIZE: usize = 64 << 20;

/// Bytes of a record before its null bitmap: encode_type, schema_version, total_size,
/// attr_offset (the 16-byte record header) and field_count. The Go SDK v0.2.x never writes
/// field_count (it stays 0); decoding then takes the count from the schema version, as the
/// service does.
pub(crate) const RECORD_PREFIX: usize = 20;

/// Long byte-field offsets are counted from the end of the 16-byte record header.
pub(crate) const RECORD_HEADER: usize = 16;

const MAGIC: &[u8; 4] = b"DHUB";

/// Why a batch was rejected. Record indexes are 0-based positions in the batch; "payload offset"
/// is a position in the (decompressed) payload, "record offset" a position inside one record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the 26-byte batch header")]
    TooShort { len: usize },
    #[error("batch does not start with the DHUB magic (found {found:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error("batch version {version} is not supported (only version 0, pydatahub's layout, and 1, the Go SDK v1.x's)")]
    UnsupportedVersion { version: i32 },
    #[error("batch header declares a length of {declared} bytes but the batch has {actual}")]
    BadLength { declared: u32, actual: usize },
    #[error(
        "batch payload CRC mismatch: header says {expected:#010x}, payload has {actual:#010x}"
    )]
    BadCrc { expected: u32, actual: u32 },
    #[error("batch declares raw_size {raw_size}, more than the limit of {limit} bytes{why}")]
    RawSizeTooLarge {
        raw_size: u32,
        limit: usize,
        why: &'static str,
    },
    #[error("batch payload is {actual} bytes after decompression but raw_size says {declared}")]
    RawSizeMismatch { declared: u32, actual: usize },
    #[error("batch payload ({compression:?}-compressed) cannot be decompressed: {message}")]
    Decompress {
        compression: BatchCompression,
        message: String,
    },
    #[error("batch declares {declared} records but the payload ends after {found}")]
    MissingRecords { declared: u32, found: u32 },
    #[error("record {record} at payload offset {offset}: only {available} bytes remain, fewer than the 20-byte record prefix")]
    RecordTruncated {
        record: u32,
        offset: usize,
        available: usize,
    },
    #[error("record {record} at payload offset {offset}: total_size {total_size} is outside 24..={available} (bytes left in the payload)")]
    BadTotalSize {
        record: u32,
        offset: usize,
        total_size: u32,
        available: usize,
    },
    #[error("record {record}: a BLOB record must have schema_version -1, found {version}")]
    BlobSchemaVersion { record: u32, version: i32 },
    #[error(
        "record {record}: schema_version {version} is not a known schema version of this topic"
    )]
    UnknownSchemaVersion { record: u32, version: i32 },
    #[error("record {record}: field_count {field_count} does not match the {expected} fields of its schema")]
    FieldCountMismatch {
        record: u32,
        field_count: i32,
        expected: usize,
    },
    #[error("record {record}: attr_offset {attr_offset} is outside {min}..={max} (fields end at {min}, total_size {total_size})")]
    BadAttrOffset {
        record: u32,
        attr_offset: u32,
        total_size: u32,
        min: usize,
        max: usize,
    },
    #[error("record {record}: the BLOB data field is marked null")]
    NullBlob { record: u32 },
    #[error("record {record} field #{field} ({name:?}): {length} bytes at record offset 16+{offset} do not lie inside the variable area {area_start}..{area_end}")]
    ByteFieldOutOfBounds {
        record: u32,
        field: usize,
        name: String,
        length: i32,
        offset: i32,
        area_start: usize,
        area_end: usize,
    },
    #[error("record {record} field #{field} ({name:?}): text is not valid UTF-8")]
    BadUtf8 {
        record: u32,
        field: usize,
        name: String,
    },
    #[error("record {record} field #{field} ({name:?}): boolean byte is {byte:#04x}, not 0 or 1")]
    BadBoolean {
        record: u32,
        field: usize,
        name: String,
        byte: u8,
    },
    #[error("record {record} field #{field} ({name:?}): {text:?} is not a decimal number")]
    BadDecimal {
        record: u32,
        field: usize,
        name: String,
        text: String,
    },
    #[error("record {record} field #{field}: {source}")]
    Value {
        record: u32,
        field: usize,
        source: ValueError,
    },
    #[error("record {record}: attribute count {count} is negative")]
    BadAttributeCount { record: u32, count: i32 },
    #[error("record {record} attribute #{attribute}: length or bytes at record offset {offset} run past total_size {total_size}")]
    AttributeOutOfBounds {
        record: u32,
        attribute: usize,
        offset: usize,
        total_size: u32,
    },
    #[error("record {record} attribute #{attribute}: {part} is not valid UTF-8")]
    AttributeUtf8 {
        record: u32,
        attribute: usize,
        part: &'static str,
    },
    #[error(
        "record {record}: attributes end at record offset {end} but total_size is {total_size}"
    )]
    AttributesSize {
        record: u32,
        end: usize,
        total_size: u32,
    },
    #[error("batch has {trailing} bytes after its {records} records (payload offset {offset})")]
    TrailingBytes {
        records: u32,
        offset: usize,
        trailing: usize,
    },
    #[error(
        "version-1 batch has data offset {data_offset}, outside 36..={len} (the batch's length)"
    )]
    BadDataOffset { data_offset: u32, len: usize },
    #[error("version-1 batch has data type {data_type}; only 2 (Avro) exists")]
    UnsupportedDataType { data_type: u16 },
    #[error(
        "version-1 batch declares {columns} columns but its schema version has {fields} fields"
    )]
    ColumnCount { columns: u32, fields: usize },
    #[error("record {record}: {source}")]
    Avro { record: u32, source: AvroError },
}

/// The payload compression of a batch (header attributes bits 0–1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchCompression {
    None,
    /// Code 1. pydatahub never writes it (its deflate is a no-op); read as a zlib stream when
    /// the payload starts with a zlib header, else as stored bytes.
    Deflate,
    /// Code 2: one raw LZ4 block, sized by `raw_size`.
    Lz4,
    /// Code 3: a zlib stream (pydatahub, Go v0.2.x's ZLIB).
    Zlib,
    /// A zstd frame, which has no code of its own: Go v0.2.x writes it under code 0 (its ZSTD
    /// value 4 masked with 3), Go v1.x under code 3. Decoding recognizes it by the frame magic
    /// under either code; [`encode_batch`] writes it under code 0 like Go v0.2.x (pydatahub cannot
    /// read it, so the server never writes it).
    Zstd,
}

impl BatchCompression {
    /// The code in the header attributes.
    pub fn code(self) -> u16 {
        match self {
            BatchCompression::None => 0,
            BatchCompression::Deflate => 1,
            BatchCompression::Lz4 => 2,
            BatchCompression::Zlib => 3,
            BatchCompression::Zstd => 0,
        }
    }

    /// Reads the code from header attributes (only bits 0–1 count); never yields `Zstd`, which
    /// decoding recognizes from the payload.
    pub fn from_attributes(attributes: u16) -> BatchCompression {
        match attributes & 0x03 {
            0 => BatchCompression::None,
            1 => BatchCompression::Deflate,
            2 => BatchCompression::Lz4,
            _ => BatchCompression::Zlib,
        }
    }
}

/// The 26-byte batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub version: i32,
    /// Header plus stored payload, in bytes.
    pub length: u32,
    /// Uncompressed payload length.
    pub raw_size: u32,
    /// CRC-32C of the payload as stored (after compression).
    pub crc: u32,
    pub attributes: u16,
    pub record_count: u32,
}

impl BatchHeader {
    pub fn compression(&self) -> BatchCompression {
        BatchCompression::from_attributes(self.attributes)
    }

    /// The header's 26 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(MAGIC);
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..16].copy_from_slice(&self.raw_size.to_le_bytes());
        out[16..20].copy_from_slice(&self.crc.to_le_bytes());
        out[20..22].copy_from_slice(&self.attributes.to_le_bytes());
        out[22..26].copy_from_slice(&self.record_count.to_le_bytes());
        out
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Reads the header fields after checking the size and the magic only (no length, CRC or
/// version checks; [`decode_batch`] does those).
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_SIZE {
        return Err(BatchError::TooShort { len: bytes.len() });
    }
    if &bytes[0..4] != MAGIC {
        let mut found = [0u8; 4];
        found.copy_from_slice(&bytes[0..4]);
        return Err(BatchError::BadMagic { found });
    }
    Ok(BatchHeader {
        version: le_u32(bytes, 4) as i32,
        length: le_u32(bytes, 8),
        raw_size: le_u32(bytes, 12),
        crc: le_u32(bytes, 16),
        attributes: u16::from_le_bytes([bytes[20], bytes[21]]),
        record_count: le_u32(bytes, 22),
    })
}

/// Resolves a TUPLE record's schema_version to the schema. For BLOB topics pass a lookup that
/// returns None for everything; BLOB records use schema_version -1.
pub trait SchemaLookup {
    fn schema(&self, version: i32) -> Option<&RecordSchema>;
}

impl SchemaLookup for HashMap<i32, RecordSchema> {
    fn schema(&self, version: i32) -> Option<&RecordSchema> {
        self.get(&version)
    }
}

impl SchemaLookup for BTreeMap<i32, RecordSchema> {
    fn schema(&self, version: i32) -> Option<&RecordSchema> {
        self.get(&version)
    }
}

/// A topic with a single known schema version.
impl SchemaLookup for (i32, RecordSchema) {
    fn schema(&self, version: i32) -> Option<&RecordSchema> {
        (version == self.0).then_some(&self.1)
    }
}

/// What the records of a batch must look like.
#[derive(Clone, Copy)]
pub enum TopicKind<'a> {
    /// One byte field per record, schema_version -1.
    Blob,
    /// Typed rows; each record's schema_version must resolve through the lookup.
    Tuple(&'a dyn SchemaLookup),
}
