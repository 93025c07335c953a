//! Batch **version 1**, the Go SDK v1.x layout (aliyun-datahub-sdk-go HEAD
//! `datahub/batch_serializer.go`): a 40-byte little-endian header and Avro records
//! ([`super::avro`]).
//!
//! | offset | size | field | Go HEAD writes (batch_serializer.go:136-148) |
//! |---|---|---|---|
//! | 0 | 4 | magic `DHUB` | |
//! | 4 | 4 | version | 1 |
//! | 8 | 4 | length | header + stored payload |
//! | 12 | 4 | raw size | payload before compression |
//! | 16 | 4 | CRC-32C of the stored payload | 0 means "not checked" to its reader (:306) |
//! | 20 | 2 | attributes, compression in bits 0–1 | 0 none, 1 DEFLATE (zlib), 2 LZ4, 3 ZSTD (compress.go:69-82); ZLIB has no code and is written as 0 |
//! | 22 | 2 | data type | 2 (Avro) |
//! | 24 | 4 | schema version of every record | -1 for BLOB |
//! | 28 | 4 | data offset | 40 (v1.0.x: 36, without the next field) |
//! | 32 | 4 | record count | |
//! | 36 | 4 | column count | fields of the writer's schema (0 for BLOB); the records carry only the first N fields of the version |
//!
//! Sluice stores every batch in version 0 (what pydatahub and Go v0.x read), so a version-1 put
//! is decoded, checked like any batch, and re-encoded ([`super::portable_batch`]); Go v1.x
//! readers, which parse only Avro batches, get their reads converted back ([`avro_parts`]).

use std::borrow::Cow;

use super::avro::{self, Reader};
use super::{parse_header, BatchCompression, BatchError, TopicKind, MAX_RAW_SIZE};
use crate::compress::{self, Compression};
use crate::record::{Record, RecordData};
use crate::schema::{Field, RecordSchema};

/// The version the Go SDK v1.x writes and reads.
pub const VERSION_AVRO: i32 = 1;

/// The header Go HEAD writes (with the column count).
pub const AVRO_HEADER_SIZE: usize = 40;

/// The shortest version-1 header (Go v1.0.x, no column count).
pub const AVRO_MIN_HEADER_SIZE: usize = 36;

/// The header's data type for Avro records, the only one any SDK writes.
pub const AVRO_DATA_TYPE: u16 = 2;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// LZ4 blocks expand at most ~255x.
const LZ4_MAX_RATIO: usize = 255;

/// The version-1 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvroHeader {
    pub length: u32,
    pub raw_size: u32,
    pub crc: u32,
    pub attributes: u16,
    pub data_type: u16,
    pub schema_version: i32,
    pub data_offset: u32,
    pub record_count: u32,
    /// 0 when absent (a 36-byte header) or written as 0 (BLOB).
    pub column_count: u32,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads and checks a version-1 header: size, version, length, data offset, data type.
pub fn parse_avro_header(bytes: &[u8]) -> Result<AvroHeader, BatchError> {
    let base = parse_header(bytes)?;
    if base.version != VERSION_AVRO {
        return Err(BatchError::UnsupportedVersion {
            version: base.version,
        });
    }
    if bytes.len() < AVRO_MIN_HEADER_SIZE {
        return Err(BatchError::TooShort { len: bytes.len() });
    }
    let data_offset = le_u32(bytes, 28);
    let header = AvroHeader {
        length: base.length,
        raw_size: base.raw_size,
        crc: base.crc,
        attributes: base.attributes,
        data_type: u16::from_le_bytes([bytes[22], bytes[23]]),
        schema_version: le_u32(bytes, 24) as i32,
        data_offset,
        record_count: le_u32(bytes, 32),
        column_count: if data_offset as usize >= AVRO_HEADER_SIZE && bytes.len() >= 40 {
            le_u32(bytes, 36)
        } else {
            0
        },
    };
    if header.length as usize != bytes.len() {
        return Err(BatchError::BadLength {
            declared: header.length,
            actual: bytes.len(),
        });
    }
    if (data_offset as usize) < AVRO_MIN_HEADER_SIZE || data_offset as usize > bytes.len() {
        return Err(BatchError::BadDataOffset {
            data_offset,
            len: bytes.len(),
        });
    }
    if header.data_type != AVRO_DATA_TYPE {
        return Err(BatchError::UnsupportedDataType {
            data_type: header.data_type,
        });
    }
    Ok(header)
}

/// Whether a zlib stream could start here (CMF/FLG check, RFC 1950).
fn zlib_header(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

/// Checks the CRC and returns the uncompressed Avro payload.
fn avro_payload(bytes: &[u8]) -> Result<(AvroHeader, Cow<'_, [u8]>), BatchError> {
    let header = parse_avro_header(bytes)?;
    let stored = &bytes[header.data_offset as usize..];
    if header.crc != 0 {
        let crc = crc32c::crc32c(stored);
        if crc != header.crc {
            return Err(BatchError::BadCrc {
                expected: header.crc,
                actual: crc,
            });
        }
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
    let plain = stored.len() == raw;
    let compression = match header.attributes & 0x03 {
        // Go HEAD writes ZLIB under code 0 (its toValue has no case for it).
        0 if plain => BatchCompression::None,
        0 | 3 if stored.starts_with(&ZSTD_MAGIC) => BatchCompression::Zstd,
        0 if zlib_header(stored) => BatchCompression::Zlib,
        0 => BatchCompression::None,
        1 => BatchCompression::Deflate,
        2 => BatchCompression::Lz4,
        _ => BatchCompression::Zstd,
    };
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
            match compress::decompress(Compression::Lz4, stored, Some(raw), raw) {
                Ok(p) => Cow::Owned(p),
                // Go's LZ4 compressor returns incompressible input unchanged under code 2
                // (compress.go:105-107).
                Err(_) if plain => Cow::Borrowed(stored),
                Err(e) => return Err(corrupt(e)),
            }
        }
        BatchCompression::Deflate | BatchCompression::Zlib => Cow::Owned(
            compress::decompress(Compression::Zlib, stored, Some(raw), raw).map_err(corrupt)?,
        ),
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

/// The columns the batch's records carry: `None` for BLOB, else the first `column_count` fields
/// of the schema version (all of them when the count is 0), and the full schema.
fn columns<'k>(
    header: &AvroHeader,
    kind: TopicKind<'k>,
) -> Result<Option<(&'k [Field], &'k RecordSchema)>, BatchError> {
    match kind {
        TopicKind::Blob if header.schema_version == -1 => Ok(None),
        TopicKind::Blob => Err(BatchError::BlobSchemaVersion {
            record: 0,
            version: header.schema_version,
        }),
        TopicKind::Tuple(lookup) => {
            let schema =
                lookup
                    .schema(header.schema_version)
                    .ok_or(BatchError::UnknownSchemaVersion {
                        record: 0,
                        version: header.schema_version,
                    })?;
            let n = match header.column_count as usize {
                0 => schema.fields.len(),
                n if n <= schema.fields.len() => n,
                n => {
                    return Err(BatchError::ColumnCount {
                        columns: n as u32,
                        fields: schema.fields.len(),
                    })
                }
            };
            Ok(Some((&schema.fields[..n], schema)))
        }
    }
}

/// Decodes and validates a version-1 batch: header, CRC (unless 0), decompression, every Avro
/// record against the schema version, each value against its field ([`crate::Value::check`]),
/// no bytes after the last record. TUPLE records come back with one value per field of the
/// version (fields past the column count are NULL).
pub(super) fn decode_avro(
    bytes: &[u8],
    kind: TopicKind,
) -> Result<(AvroHeader, Vec<Record>), BatchError> {
    let (header, payload) = avro_payload(bytes)?;
    let cols = columns(&header, kind)?;
    let mut reader = Reader::new(&payload);
    let capacity = (header.record_count as usize).min(payload.len());
    let mut out = Vec::with_capacity(capacity);
    for index in 0..header.record_count {
        if reader.at_end() {
            return Err(BatchError::MissingRecords {
                declared: header.record_count,
                found: index,
            });
        }
        let mut record =
            avro::read_record(&mut reader, cols.map(|(f, _)| f)).map_err(|source| {
                BatchError::Avro {
                    record: index,
                    source,
                }
            })?;
        if let (Some((_, schema)), RecordData::Tuple(values)) = (cols, &mut record.data) {
            values.resize(schema.fields.len(), crate::Value::Null);
            for (field, (value, f)) in values.iter().zip(&schema.fields).enumerate() {
                value.check(f).map_err(|source| BatchError::Value {
                    record: index,
                    field,
                    source,
                })?;
            }
        }
        out.push(record);
    }
    if !reader.at_end() {
        return Err(BatchError::TrailingBytes {
            records: header.record_count,
            offset: reader.pos,
            trailing: payload.len() - reader.pos,
        });
    }
    Ok((header, out))
}

/// The Go SDK v1.x compression code (compress.go:69-82): DEFLATE and ZLIB are both a zlib
/// stream under code 1 here.
fn avro_code(c: BatchCompression) -> u16 {
    match c {
        BatchCompression::None => 0,
        BatchCompression::Deflate | BatchCompression::Zlib => 1,
        BatchCompression::Lz4 => 2,
        BatchCompression::Zstd => 3,
    }
}

/// Encodes records of one schema version as a version-1 batch with the 40-byte header, the way
/// Go HEAD writes it: column count = the schema's fields (0 for BLOB, `schema` None, version -1),
/// CRC-32C of the stored payload, compressed with `compression` only when strictly smaller.
pub fn encode_avro_batch(
    records: &[Record],
    schema: Option<&RecordSchema>,
    schema_version: i32,
    compression: BatchCompression,
) -> Result<Vec<u8>, BatchError> {
    encode_avro(
        records,
        schema,
        schema_version,
        compression,
        AVRO_HEADER_SIZE,
    )
}

/// [`encode_avro_batch`] with a 40-byte header (with the column count) or a 36-byte one.
fn encode_avro(
    records: &[Record],
    schema: Option<&RecordSchema>,
    schema_version: i32,
    compression: BatchCompression,
    header_size: usize,
) -> Result<Vec<u8>, BatchError> {
    let fields = schema.map(|s| s.fields.as_slice());
    let mut payload = Vec::new();
    for (index, record) in records.iter().enumerate() {
        avro::write_record(&mut payload, record, fields).map_err(|source| BatchError::Avro {
            record: index as u32,
            source,
        })?;
    }
    let kind = match compression {
        BatchCompression::None => None,
        BatchCompression::Deflate | BatchCompression::Zlib => Some(Compression::Zlib),
        BatchCompression::Lz4 => Some(Compression::Lz4),
        BatchCompression::Zstd => Some(Compression::Zstd),
    };
    let (code, stored) = match kind.and_then(|k| compress::compress(k, &payload)) {
        Some(c) if c.len() < payload.len() => (avro_code(compression), c),
        _ => (0, payload.clone()),
    };
    let mut out = Vec::with_capacity(header_size + stored.len());
    out.extend_from_slice(b"DHUB");
    out.extend_from_slice(&VERSION_AVRO.to_le_bytes());
    out.extend_from_slice(&((header_size + stored.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&stored).to_le_bytes());
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&AVRO_DATA_TYPE.to_le_bytes());
    out.extend_from_slice(&schema_version.to_le_bytes());
    out.extend_from_slice(&(header_size as u32).to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    if header_size >= AVRO_HEADER_SIZE {
        out.extend_from_slice(&(fields.map_or(0, <[Field]>::len) as u32).to_le_bytes());
    }
    out.extend_from_slice(&stored);
    Ok(out)
}

/// A version-1 batch cut from a stored batch: records `first..first + count` of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroPart {
    pub first: u32,
    pub count: u32,
    pub data: Vec<u8>,
}

/// Converts a stored batch (either version) into version-1 batches for a Go SDK v1.x reader:
/// one per run of records with the same schema version (a version-1 batch has one), each
/// record in its own version's shape, LZ4-compressed when that is smaller.
///
/// The parts carry the 36-byte header (data offset 36, no column count): Go HEAD reads it
/// (batch_serializer.go:290-296; no column count means the version's full schema), and Go
/// v1.0.x, which always decompresses and checks the CRC from byte 36 (v1.0.0
/// batch_serializer.go `deserialize`, `parseBatchHeader`), reads only this one.
pub fn avro_parts(bytes: &[u8], kind: TopicKind) -> Result<Vec<AvroPart>, BatchError> {
    let decoded = super::decode_batch(bytes, kind)?;
    let mut parts = Vec::new();
    let mut rest = decoded.into_iter().peekable();
    let mut first = 0u32;
    while let Some(&(version, _)) = rest.peek() {
        let mut run = Vec::new();
        while let Some((_, record)) = rest.next_if(|(v, _)| *v == version) {
            run.push(record);
        }
        let schema = match kind {
            TopicKind::Blob => None,
            TopicKind::Tuple(lookup) => Some(lookup.schema(version).ok_or(
                BatchError::UnknownSchemaVersion {
                    record: first,
                    version,
                },
            )?),
        };
        let data = encode_avro(
            &run,
            schema,
            version,
            BatchCompression::Lz4,
            AVRO_MIN_HEADER_SIZE,
        )?;
        let count = run.len() as u32;
        parts.push(AvroPart { first, count, data });
        first += count;
    }
    Ok(parts)
}

/// Whether a reader is a Go SDK v1.x client, which parses only version-1 batches
/// (batch_serializer.go:313 refuses any other data type). Its `User-Agent` starts with
/// `godatahub/<version>` (config.go `DefaultUserAgent`, also prefixed to a user's own agent by
/// datahub.go `NewClientWithConfig`) or `goclient/<version>` (producers and consumers,
/// config.go `defaultClientAgent`); the version is `1.0.0`…`1.1.5` or `v1.2.0-beta` at HEAD.
/// Go v0.x (`godatahub/0.2.1`) reads version 0.
pub fn reads_avro_batches(user_agent: &str) -> bool {
    let Some(version) = user_agent
        .trim_start()
        .strip_prefix("godatahub/")
        .or_else(|| user_agent.trim_start().strip_prefix("goclient/"))
    else {
        return false;
    };
    let version = version.strip_prefix(['v', 'V']).unwrap_or(version);
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 1)
}
