//! The write buffer of the PostgreSQL sink: rows encoded as they arrive, in PostgreSQL's binary
//! `COPY` format, ready to stream into the sink's staging table.
//!
//! Each connector column has a [`Bind`]: the type of its staging column (`int8`, `float4`,
//! `float8`, `bool` or `text`). The staging types are the same ones the values had when they were
//! bound as arrays, so the final `INSERT INTO t SELECT ... FROM staging` converts them with the
//! same casts and checks (range, length, constraints) as a direct insert would.
//!
//! Binary format (PostgreSQL docs, "COPY", "Binary Format"): an 11-byte signature, a 4-byte flags
//! word and a 4-byte header-extension length; then per tuple an int16 field count and per field
//! an int32 length (-1 for NULL) and the value in the type's binary send format; then an int16
//! -1 trailer. All integers are big-endian.

use std::borrow::Cow;
use std::collections::HashMap;

use sluice_proto::Value;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const HEADER_LEN: usize = 19;

/// How one connector column's values are encoded: the binary format of the column they go into
/// (the target column when its type matches, otherwise the staging column, which the final
/// INSERT casts into the target column's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind {
    Int8,
    /// Into `integer`: values outside its range are refused here, as the cast would refuse them.
    Int4,
    /// Into `smallint`, likewise.
    Int2,
    F32,
    F64,
    Bool,
    Text,
    /// TIMESTAMP into `timestamp` / `timestamptz`: microseconds since 2000-01-01 UTC.
    Timestamp,
    /// TIMESTAMP into `date`: days since 2000-01-01 (UTC).
    Date,
}

impl Bind {
    /// The plain column type this encoding belongs to.
    pub(crate) fn base_type(self) -> &'static str {
        match self {
            Bind::Int8 => "int8",
            Bind::Int4 => "int4",
            Bind::Int2 => "int2",
            Bind::F32 => "float4",
            Bind::F64 => "float8",
            Bind::Bool => "bool",
            Bind::Text => "text",
            Bind::Timestamp => "timestamp",
            Bind::Date => "date",
        }
    }
}

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// 0001-01-01 00:00:00 UTC in microseconds since 1970: the earliest instant the sink writes
/// (PostgreSQL's own range reaches further back, into years BC, which a topic never means).
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rows in binary COPY format: the header, then one tuple per row.
pub(crate) struct CopyBuffer {
    binds: Vec<Bind>,
    /// Microseconds per unit of TIMESTAMP values (1, 1,000 or 1,000,000).
    unit: i64,
    /// Header and tuples (no trailer); empty while there are no rows.
    buf: Vec<u8>,
    /// Where each row's tuple starts in `buf`.
    starts: Vec<usize>,
}

impl CopyBuffer {
    pub(crate) fn new(binds: Vec<Bind>, unit: i64) -> Self {
        CopyBuffer {
            binds,
            unit,
            buf: Vec::new(),
            starts: Vec::new(),
        }
    }

    pub(crate) fn columns(&self) -> usize {
        self.binds.len()
    }

    pub(crate) fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Appends one row (as many values as columns). On error the buffer is unchanged and the
    /// message names the column and the value.
    pub(crate) fn push_row(&mut self, values: &[Value], names: &[String]) -> Result<(), String> {
        debug_assert_eq!(values.len(), self.binds.len());
        if self.buf.is_empty() {
            self.buf.extend_from_slice(SIGNATURE);
            self.buf.extend_from_slice(&[0; 8]);
        }
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(self.binds.len() as i16).to_be_bytes());
        for (i, (value, bind)) in values.iter().zip(&self.binds).enumerate() {
            if let Err(why) = encode(&mut self.buf, *bind, self.unit, value) {
                self.buf.truncate(start);
                if self.starts.is_empty() {
                    self.buf.clear();
                }
                let name = names.get(i).map_or("?", String::as_str);
                return Err(format!("column {name}: {why}"));
            }
        }
        self.starts.push(start);
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.starts.clear();
    }

    fn tuple(&self, row: usize) -> &[u8] {
        let end = self.starts.get(row + 1).copied().unwrap_or(self.buf.len());
        &self.buf[self.starts[row]..end]
    }

    /// The encoded key of a row: its key fields with their length words (so composite keys
    /// cannot run into each other, and NULL differs from every value).
    fn key(&self, row: usize, key: &[usize]) -> Cow<'_, [u8]> {
        let tuple = self.tuple(row);
        if let [k] = key {
            return Cow::Borrowed(field_span(tuple, *k));
        }
        let mut out = Vec::new();
        for &k in key {
            out.extend_from_slice(field_span(tuple, k));
        }
        Cow::Owned(out)
    }

    /// Keeps one row per key (columns `key`): the last one when `last`, else the first, in the
    /// order of the rows kept. Keys compare by their encoded values: equal integers, equal
    /// texts, floats by their bits.
    pub(crate) fn keep_one_per_key(&mut self, key: &[usize], last: bool) {
        let n = self.starts.len();
        let keep = {
            // foldhash: this runs on every flush of an upserting sink, and SipHash was ~5 % of
            // the server's CPU in a connector run; the keys are short and the seed is random
            let mut chosen: HashMap<Cow<'_, [u8]>, usize, foldhash::fast::RandomState> =
                HashMap::with_capacity_and_hasher(n, Default::default());
            for row in 0..n {
                let k = self.key(row, key);
                if last {
                    chosen.insert(k, row);
                } else {
                    chosen.entry(k).or_insert(row);
                }
            }
            let last = chosen;
            if last.len() == n {
                return;
            }
            let mut keep = vec![false; n];
            for &row in last.values() {
                keep[row] = true;
            }
            keep
        };
        let mut buf = Vec::with_capacity(self.buf.len());
        buf.extend_from_slice(&self.buf[..HEADER_LEN]);
        let mut starts = Vec::with_capacity(n);
        for (row, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            starts.push(buf.len());
            buf.extend_from_slice(self.tuple(row));
        }
        self.buf = buf;
        self.starts = starts;
    }

    /// Gives back what [`CopyBuffer::take_data`] returned once it has been sent, so that the
    /// next rows reuse its allocation instead of growing a new one flush after flush.
    pub(crate) fn recycle(&mut self, mut data: Vec<u8>) {
        if self.buf.is_empty() && data.capacity() > self.buf.capacity() {
            data.clear();
            self.buf = data;
        }
    }

    /// The complete COPY data (header, tuples, trailer); the buffer is empty afterwards.
    pub(crate) fn take_data(&mut self) -> Vec<u8> {
        self.starts.clear();
        let mut data = std::mem::take(&mut self.buf);
        if !data.is_empty() {
            data.extend_from_slice(&(-1i16).to_be_bytes());
        }
        data
    }
}

/// Field `index` of one tuple, with its length word (no allocation: this runs per row and
/// key column on every upserting flush).
fn field_span(tuple: &[u8], index: usize) -> &[u8] {
    let mut at = 2;
    for _ in 0..index {
        let len = i32::from_be_bytes(tuple[at..at + 4].try_into().expect("4 bytes"));
        at += 4 + usize::try_from(len).unwrap_or(0);
    }
    let len = i32::from_be_bytes(tuple[at..at + 4].try_into().expect("4 bytes"));
    &tuple[at..at + 4 + usize::try_from(len).unwrap_or(0)]
}

/// Each field of one tuple, with its length word.
#[cfg(test)]
fn field_spans(tuple: &[u8]) -> Vec<&[u8]> {
    let count = i16::from_be_bytes([tuple[0], tuple[1]]) as usize;
    let mut spans = Vec::with_capacity(count);
    let mut at = 2;
    for _ in 0..count {
        let len = i32::from_be_bytes(tuple[at..at + 4].try_into().expect("4 bytes"));
        let end = at + 4 + usize::try_from(len).unwrap_or(0);
        spans.push(&tuple[at..end]);
        at = end;
    }
    spans
}

fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| format!("a value of {} bytes is too large", bytes.len()))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    Ok(())
}

/// Appends one field: `value` converted as `bind` says, or an error for a value of the wrong
/// kind or out of the column's range.
fn encode(buf: &mut Vec<u8>, bind: Bind, unit: i64, value: &Value) -> Result<(), String> {
    let micros = |n: &i64| {
        n.checked_mul(unit)
            .filter(|us| *us >= MIN_MICROS)
            .ok_or_else(|| format!("{n} is out of range for a {} column", bind.base_type()))
    };
    match (bind, value) {
        (_, Value::Null) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        (Bind::Int8, Value::Int(n)) => put_field(buf, &n.to_be_bytes())?,
        (Bind::Int4, Value::Int(n)) => match i32::try_from(*n) {
            Ok(n) => put_field(buf, &n.to_be_bytes())?,
            Err(_) => return Err(format!("{n} is out of range for type integer")),
        },
        (Bind::Int2, Value::Int(n)) => match i16::try_from(*n) {
            Ok(n) => put_field(buf, &n.to_be_bytes())?,
            Err(_) => return Err(format!("{n} is out of range for type smallint")),
        },
        (Bind::F32, Value::Float(f)) => put_field(buf, &f.to_bits().to_be_bytes())?,
        (Bind::F64, Value::Double(d)) => put_field(buf, &d.to_bits().to_be_bytes())?,
        (Bind::Bool, Value::Bool(b)) => put_field(buf, &[u8::from(*b)])?,
        (Bind::Text, Value::Str(s) | Value::Decimal(s)) => put_field(buf, s.as_bytes())?,
        (Bind::Timestamp, Value::Int(n)) => {
            let us = micros(n)? - PG_EPOCH_MICROS;
            put_field(buf, &us.to_be_bytes())?
        }
        (Bind::Date, Value::Int(n)) => {
            let days = micros(n)?.div_euclid(MICROS_PER_DAY) - PG_EPOCH_MICROS / MICROS_PER_DAY;
            // Always fits: i64 microseconds span fewer than 2^31 days.
            put_field(buf, &(days as i32).to_be_bytes())?
        }
        _ => {
            return Err(format!(
                "value {value:?} does not fit a {} column",
                bind.base_type()
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn encodes_the_binary_copy_format() {
        let mut b = CopyBuffer::new(vec![Bind::Int8, Bind::Text, Bind::Bool], 1);
        b.push_row(
            &[Value::Int(258), Value::Str("hé".into()), Value::Null],
            &names(3),
        )
        .unwrap();
        let data = b.take_data();
        let mut expect = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expect.extend_from_slice(&[0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
        expect.extend_from_slice(&[0, 0, 0, 3, b'h', 0xc3, 0xa9]);
        expect.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(data, expect);
        assert_eq!(b.rows(), 0);
        assert!(b.take_data().is_empty());
    }

    #[test]
    fn timestamps_are_scaled_microseconds_since_2000() {
        let mut b = CopyBuffer::new(vec![Bind::Timestamp, Bind::Date], 1000);
        b.push_row(
            &[Value::Int(1_700_000_000_123), Value::Int(1_700_000_000_123)],
            &names(2),
        )
        .unwrap();
        let data = b.take_data();
        // 2023-11-14 22:13:20.123 UTC: 753315200123000 µs and 8718 days after 2000-01-01.
        let mut expect = vec![0, 2, 0, 0, 0, 8];
        expect.extend_from_slice(&753_315_200_123_000i64.to_be_bytes());
        expect.extend_from_slice(&[0, 0, 0, 4]);
        expect.extend_from_slice(&8718i32.to_be_bytes());
        assert_eq!(&data[19..data.len() - 2], &expect[..]);
        for early in [i64::MIN / 1000, -62_135_596_800_001] {
            let err = b
                .push_row(&[Value::Null, Value::Int(early)], &names(2))
                .unwrap_err();
            assert!(err.contains("column c1") && err.contains("range"), "{err}");
        }
        b.push_row(
            &[Value::Int(-62_135_596_800_000), Value::Int(-1)],
            &names(2),
        )
        .unwrap();
        let data = b.take_data();
        assert_eq!(
            &data[data.len() - 6..data.len() - 2],
            &(-10_958i32).to_be_bytes()
        );
        let err = b
            .push_row(&[Value::Int(i64::MAX), Value::Null], &names(2))
            .unwrap_err();
        assert!(err.contains("column c0"), "{err}");
    }

    #[test]
    fn a_bad_value_leaves_the_buffer_as_it_was() {
        let mut b = CopyBuffer::new(vec![Bind::Int8, Bind::F64], 1);
        b.push_row(&[Value::Int(1), Value::Double(0.5)], &names(2))
            .unwrap();
        let before = b.buf.clone();
        let err = b
            .push_row(&[Value::Int(2), Value::Str("x".into())], &names(2))
            .unwrap_err();
        assert!(err.contains("column c1"), "{err}");
        assert_eq!(b.buf, before);
        assert_eq!(b.rows(), 1);
        b.clear();
        assert!(b.take_data().is_empty());
    }

    #[test]
    fn field_span_finds_each_field_and_null() {
        let mut b = CopyBuffer::new(vec![Bind::Int8, Bind::Text, Bind::Text], 1);
        b.push_row(
            &[Value::Int(7), Value::Null, Value::Str("xyz".into())],
            &names(3),
        )
        .unwrap();
        let tuple = b.tuple(0);
        let spans = field_spans(tuple);
        for (i, span) in spans.iter().enumerate() {
            assert_eq!(field_span(tuple, i), *span, "field {i}");
        }
        assert_eq!(field_span(tuple, 1), &[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(field_span(tuple, 2), &b"\0\0\0\x03xyz"[..]);
    }

    #[test]
    fn a_recycled_buffer_is_reused_and_encodes_the_same() {
        let mut b = CopyBuffer::new(vec![Bind::Int8, Bind::Text], 1);
        let row = [Value::Int(1), Value::Str("a".repeat(100))];
        for _ in 0..100 {
            b.push_row(&row, &names(2)).unwrap();
        }
        let first = b.take_data();
        let (ptr, cap) = (first.as_ptr(), first.capacity());
        b.recycle(first.clone());
        assert_eq!(b.rows(), 0);
        let mut b2 = CopyBuffer::new(vec![Bind::Int8, Bind::Text], 1);
        b2.recycle(first);
        assert!(
            b2.buf.capacity() >= cap && b2.buf.as_ptr() == ptr,
            "allocation not reused"
        );
        for _ in 0..100 {
            b2.push_row(&row, &names(2)).unwrap();
        }
        let again = b2.take_data();
        assert_eq!(again.as_ptr(), ptr, "the rows grew a new allocation");
        b.recycle(again.clone());
        for _ in 0..100 {
            b.push_row(&row, &names(2)).unwrap();
        }
        assert_eq!(b.take_data(), again);
    }

    #[test]
    fn keeps_the_last_row_per_key_in_order() {
        let mut b = CopyBuffer::new(vec![Bind::Int8, Bind::Text, Bind::Text], 1);
        let rows = [
            (1, "a", "first"),
            (2, "a", "two"),
            (1, "a", "second"),
            (1, "b", "other"),
            (3, "a", "three"),
        ];
        for (k, l, v) in rows {
            b.push_row(
                &[Value::Int(k), Value::Str(l.into()), Value::Str(v.into())],
                &names(3),
            )
            .unwrap();
        }
        let mut single = CopyBuffer::new(b.binds.clone(), 1);
        single.buf = b.buf.clone();
        single.starts = b.starts.clone();
        let mut first = CopyBuffer::new(b.binds.clone(), 1);
        first.buf = b.buf.clone();
        first.starts = b.starts.clone();
        first.keep_one_per_key(&[0], false);
        let kept: Vec<&[u8]> = (0..first.rows())
            .map(|r| field_spans(first.tuple(r))[2])
            .collect();
        assert_eq!(
            kept,
            [
                &b"\0\0\0\x05first"[..],
                b"\0\0\0\x03two",
                b"\0\0\0\x05three"
            ]
        );
        b.keep_one_per_key(&[0, 1], true);
        let kept: Vec<&[u8]> = (0..b.rows()).map(|r| field_spans(b.tuple(r))[2]).collect();
        assert_eq!(
            kept,
            [
                &b"\0\0\0\x03two"[..],
                b"\0\0\0\x06second",
                b"\0\0\0\x05other",
                b"\0\0\0\x05three"
            ]
        );
        single.keep_one_per_key(&[0], true);
        let kept: Vec<&[u8]> = (0..single.rows())
            .map(|r| field_spans(single.tuple(r))[2])
            .collect();
        assert_eq!(
            kept,
            [
                &b"\0\0\0\x03two"[..],
                b"\0\0\0\x05other",
                b"\0\0\0\x05three"
            ]
        );
        // No duplicates: nothing changes.
        let before = single.buf.clone();
        single.keep_one_per_key(&[0], true);
        assert_eq!(single.buf, before);
    }
}
