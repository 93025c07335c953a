//! Avro binary encoding of one DataHub record, as the Go SDK v1.x writes and reads it in batch
//! version 1 (aliyun-datahub-sdk-go HEAD `datahub/avro_helper.go`, `datahub/data_serializer.go`).
//!
//! The Avro schema is derived from the topic's schema version, field by field in order:
//! BOOLEAN → `boolean`; TINYINT, SMALLINT, INTEGER → `int`; BIGINT, TIMESTAMP → `long`; FLOAT →
//! `float`; DOUBLE → `double`; STRING, DECIMAL (and the SDK's JSON) → `string`; a field that may
//! be null (`notnull` false) is the union `["null", T]`. A BLOB record has one field `data` of
//! type `bytes` (never null). Every record ends with `__dh_attribute__`, the union
//! `["null", {"type": "map", "values": "string"}]`. Only what these shapes need is here: zigzag
//! varints, length-prefixed strings and bytes, little-endian floats and doubles, union indexes,
//! and map blocks (a negative block count is followed by the block's byte size, as hamba/avro
//! writes it).

use crate::record::{Record, RecordData};
use crate::schema::{Field, FieldType};
use crate::value::Value;

/// Why an Avro record did not decode. Positions are byte offsets in the (decompressed) payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvroError {
    #[error("payload ends at offset {at} inside {what}")]
    Truncated { at: usize, what: &'static str },
    #[error("varint at offset {at} is longer than {max} bytes")]
    LongVarint { at: usize, max: usize },
    #[error("int at offset {at} is {value}, outside 32 bits")]
    IntRange { at: usize, value: i64 },
    #[error("{what} at offset {at} has negative length {len}")]
    NegativeLength {
        at: usize,
        what: &'static str,
        len: i64,
    },
    #[error("union index {index} at offset {at} is neither 0 (null) nor 1")]
    BadUnion { at: usize, index: i64 },
    #[error("boolean byte at offset {at} is {byte:#04x}, not 0 or 1")]
    BadBoolean { at: usize, byte: u8 },
    #[error("{what} at offset {at} is not valid UTF-8")]
    BadUtf8 { at: usize, what: &'static str },
    #[error("field {field:?} is not null in the schema but the record has no value for it")]
    NullInNotNull { field: String },
}

/// Reads Avro primitives from a payload, tracking the offset.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AvroError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(AvroError::Truncated { at: self.pos, what })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes (Avro `long`).
    fn long(&mut self) -> Result<i64, AvroError> {
        let start = self.pos;
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(AvroError::Truncated {
                at: self.pos,
                what: "a varint",
            })?;
            self.pos += 1;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(AvroError::LongVarint { at: start, max: 10 })
    }

    /// An Avro `int`: a zigzag varint whose value fits 32 bits.
    fn int(&mut self) -> Result<i64, AvroError> {
        let at = self.pos;
        let v = self.long()?;
        if v < i64::from(i32::MIN) || v > i64::from(i32::MAX) {
            return Err(AvroError::IntRange { at, value: v });
        }
        Ok(v)
    }

    fn len(&mut self, what: &'static str) -> Result<usize, AvroError> {
        let at = self.pos;
        let len = self.long()?;
        usize::try_from(len).map_err(|_| AvroError::NegativeLength { at, what, len })
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], AvroError> {
        let n = self.len(what)?;
        self.take(n, what)
    }

    fn string(&mut self, what: &'static str) -> Result<&'a str, AvroError> {
        let at = self.pos;
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| AvroError::BadUtf8 { at, what })
    }

    /// The index of a two-branch union: false for branch 0 (null), true for branch 1.
    fn union(&mut self) -> Result<bool, AvroError> {
        let at = self.pos;
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            index => Err(AvroError::BadUnion { at, index }),
        }
    }

    fn value(&mut self, t: FieldType) -> Result<Value, AvroError> {
        Ok(match t {
            FieldType::Boolean => {
                let at = self.pos;
                match self.take(1, "a boolean")?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    byte => return Err(AvroError::BadBoolean { at, byte }),
                }
            }
            FieldType::Tinyint | FieldType::Smallint | FieldType::Integer => {
                Value::Int(self.int()?)
            }
            FieldType::Bigint | FieldType::Timestamp => Value::Int(self.long()?),
            FieldType::Float => {
                let b = self.take(4, "a float")?;
                Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            FieldType::Double => {
                let b = self.take(8, "a double")?;
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                Value::Double(f64::from_le_bytes(w))
            }
            FieldType::String => Value::Str(self.string("a string")?.to_string()),
            FieldType::Decimal => Value::Decimal(self.string("a decimal")?.to_string()),
        })
    }

    /// `__dh_attribute__`: null, or a map of string to string in blocks.
    fn attributes(&mut self) -> Result<Vec<(String, String)>, AvroError> {
        let mut out = Vec::new();
        if !self.union()? {
            return Ok(out);
        }
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                // The block's size in bytes follows a negative count; the entries say as much.
                self.len("a map block size")?;
            }
            for _ in 0..count.unsigned_abs() {
                let key = self.string("an attribute key")?.to_string();
                let value = self.string("an attribute value")?.to_string();
                out.push((key, value));
            }
        }
    }
}

/// Decodes one record. `fields` are the columns the writer used (a TUPLE schema version, or its
/// first `schemaColumnNum` fields), `None` for BLOB. Values are not checked against the fields
/// here beyond their Avro type (the caller runs [`Value::check`]).
pub(crate) fn read_record(r: &mut Reader, fields: Option<&[Field]>) -> Result<Record, AvroError> {
    let data = match fields {
        None => RecordData::Blob(r.bytes("the BLOB data")?.to_vec()),
        Some(fields) => {
            let mut values = Vec::with_capacity(fields.len());
            for f in fields {
                let present = f.not_null || r.union()?;
                values.push(if present {
                    r.value(f.field_type)?
                } else {
                    Value::Null
                });
            }
            RecordData::Tuple(values)
        }
    };
    let attributes = r.attributes()?;
    Ok(Record { data, attributes })
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Writes a non-null value as its field's Avro type. A value of another kind (which a valid
/// stored record never has) is written as that type's zero, so the output always decodes.
fn put_value(out: &mut Vec<u8>, t: FieldType, v: &Value) {
    match t {
        FieldType::Boolean => out.push(u8::from(matches!(v, Value::Bool(true)))),
        FieldType::Tinyint
        | FieldType::Smallint
        | FieldType::Integer
        | FieldType::Bigint
        | FieldType::Timestamp => put_long(out, if let Value::Int(i) = v { *i } else { 0 }),
        FieldType::Float => {
            let f = if let Value::Float(f) = v { *f } else { 0.0 };
            out.extend_from_slice(&f.to_le_bytes());
        }
        FieldType::Double => {
            let d = if let Value::Double(d) = v { *d } else { 0.0 };
            out.extend_from_slice(&d.to_le_bytes());
        }
        FieldType::String | FieldType::Decimal => {
            let s = match v {
                Value::Str(s) | Value::Decimal(s) => s.as_str(),
                _ => "",
            };
            put_bytes(out, s.as_bytes());
        }
    }
}

/// Encodes one record for the Avro schema of `fields` (`None`: BLOB). Values beyond the fields
/// are dropped and missing ones are null. A null in a not-null field is refused.
pub(crate) fn write_record(
    out: &mut Vec<u8>,
    record: &Record,
    fields: Option<&[Field]>,
) -> Result<(), AvroError> {
    match (&record.data, fields) {
        (RecordData::Blob(b), _) => put_bytes(out, b),
        (RecordData::Tuple(values), Some(fields)) => {
            for (i, f) in fields.iter().enumerate() {
                match values.get(i).unwrap_or(&Value::Null) {
                    Value::Null if f.not_null => {
                        return Err(AvroError::NullInNotNull {
                            field: f.name.clone(),
                        })
                    }
                    Value::Null => put_long(out, 0),
                    v => {
                        if !f.not_null {
                            put_long(out, 1);
                        }
                        put_value(out, f.field_type, v);
                    }
                }
            }
        }
        // A TUPLE record without a schema has nothing to write but its attributes.
        (RecordData::Tuple(_), None) => {}
    }
    if record.attributes.is_empty() {
        put_long(out, 0);
    } else {
        put_long(out, 1);
        put_long(out, record.attributes.len() as i64);
        for (k, v) in &record.attributes {
            put_bytes(out, k.as_bytes());
            put_bytes(out, v.as_bytes());
        }
        put_long(out, 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_long(&mut out, v);
        out
    }

    #[test]
    fn zigzag_varints_match_the_avro_spec() {
        // Avro spec "Binary Encoding": 0 → 00, -1 → 01, 1 → 02, -2 → 03, 2 → 04, -64 → 7f, 64 → 80 01.
        for (v, want) in [
            (0i64, vec![0x00u8]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            assert_eq!(varint(v), want, "{v}");
            assert_eq!(Reader::new(&want).long().unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, 1 << 40, -(1 << 40)] {
            let b = varint(v);
            assert!(b.len() <= 10);
            assert_eq!(Reader::new(&b).long().unwrap(), v);
        }
    }

    #[test]
    fn bad_primitives_are_refused() {
        assert_eq!(
            Reader::new(&[0xff; 11]).long(),
            Err(AvroError::LongVarint { at: 0, max: 10 })
        );
        assert_eq!(
            Reader::new(&[0x80]).long(),
            Err(AvroError::Truncated {
                at: 1,
                what: "a varint"
            })
        );
        // 2^31 as an int.
        let big = varint(1 << 31);
        assert!(matches!(
            Reader::new(&big).int(),
            Err(AvroError::IntRange { .. })
        ));
        // A string of length -1, and one longer than the payload.
        assert!(matches!(
            Reader::new(&[0x01]).string("s"),
            Err(AvroError::NegativeLength { len: -1, .. })
        ));
        assert!(matches!(
            Reader::new(&[0x08, b'a']).string("s"),
            Err(AvroError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x02, 0xff]).string("s"),
            Err(AvroError::BadUtf8 { .. })
        ));
        assert_eq!(
            Reader::new(&[0x04]).union(),
            Err(AvroError::BadUnion { at: 0, index: 2 })
        );
    }

    #[test]
    fn map_blocks_with_sizes_and_several_blocks_read() {
        // union 1, block of -1 entries with byte size 4, "k" → "v", block of 1 entry "a" → "b", end.
        let bytes = [
            0x02, 0x01, 0x08, 0x02, b'k', 0x02, b'v', 0x02, 0x02, b'a', 0x02, b'b', 0x00,
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.attributes().unwrap(),
            vec![("k".into(), "v".into()), ("a".into(), "b".into())]
        );
        assert!(r.at_end());
    }
}
