//! A framed protobuf `GetRecordsResponse` written straight into one buffer.
//!
//! The read path's answer is the largest message the server writes; building it as prost
//! structs costs a `String` per cursor, a `Vec` per value and an `encoded_len` walk per nesting
//! level. [`GetRecordsWriter`] (and [`encode_get_records`] on top of it) writes the same bytes
//! (tag order and presence exactly as prost encodes [`crate::pb::GetRecordsResponse`]) from the
//! records themselves, borrowed ([`RecordRef`]) straight from the stored batches, inside the
//! `DHUB` frame ([`crate::envelope`]), with a few scratch buffers reused across records.

use prost::encoding::{encode_varint, encoded_len_varint};

use crate::cursor::Cursor;
use crate::record::{DataRef, RecordRef};
use crate::value::ValueRef;

/// The response fields around the records.
#[derive(Debug, Clone, Copy)]
pub struct ReadHead<'a> {
    pub next_cursor: &'a str,
    pub start_sequence: i64,
    pub latest_sequence: i64,
    pub latest_time: i64,
}

/// One record read back, with its position.
#[derive(Debug, Clone, Copy)]
pub struct ReadItem<'a> {
    pub cursor: Cursor,
    pub next_cursor: Cursor,
    pub sequence: i64,
    pub system_time: i64,
    pub record: RecordRef<'a, 'a>,
}

/// Reused buffers of one response.
#[derive(Default)]
struct Scratch {
    entry: Vec<u8>,
    data: Vec<u8>,
    text: Vec<u8>,
    /// The last record's next cursor, encoded: usually the next record's cursor.
    cursors: CursorTexts,
}

/// Encodes a read's cursors, each record's own cursor mostly taken from the record before
/// (whose next cursor it is): one encoding per record instead of two.
#[derive(Default)]
pub struct CursorTexts {
    last_next: Option<(Cursor, [u8; 32])>,
}

impl CursorTexts {
    /// The texts of `cursor` and `next`, in that order.
    pub fn encode(&mut self, cursor: Cursor, next: Cursor) -> ([u8; 32], [u8; 32]) {
        let here = match self.last_next {
            Some((c, text)) if c == cursor => text,
            _ => cursor.encode_array(),
        };
        let next_text = next.encode_array();
        self.last_next = Some((next, next_text));
        (here, next_text)
    }
}

/// Key of a field: tag and wire type.
const fn key(tag: u8, wire_type: u8) -> u8 {
    (tag << 3) | wire_type
}
const VARINT: u8 = 0;
const LEN: u8 = 2;

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(key(tag, LEN));
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_int64(out: &mut Vec<u8>, tag: u8, value: i64) {
    out.push(key(tag, VARINT));
    encode_varint(value as u64, out);
}

/// The framed response (`DHUB` header, then the message), byte for byte what
/// `envelope::wrap(&GetRecordsResponse { .. }.encode_to_vec())` gives for the same records
/// (`record_count` is the number of items, `start_sequence`, `latest_sequence` and
/// `latest_time` present).
pub fn encode_get_records<'a>(
    head: &ReadHead<'_>,
    items: impl ExactSizeIterator<Item = ReadItem<'a>>,
) -> Vec<u8> {
    let mut writer = GetRecordsWriter::with_capacity(items.len());
    for item in items {
        writer.push(&item);
    }
    writer.finish(head)
}

/// A get-records response written record by record, as a read decodes them (the head, which
/// names where the read stopped, comes last): [`GetRecordsWriter::push`] each record, then
/// [`GetRecordsWriter::finish`] gives what [`encode_get_records`] gives for the same records.
#[derive(Default)]
pub struct GetRecordsWriter {
    /// The encoded `RecordEntry` fields (tag 4) so far.
    records: Vec<u8>,
    count: usize,
    scratch: Scratch,
}

impl GetRecordsWriter {
    /// A writer with room for about `records` small tuple records.
    pub fn with_capacity(records: usize) -> GetRecordsWriter {
        GetRecordsWriter {
            // About what a small tuple record takes; the buffer grows if records are larger.
            records: Vec::with_capacity(records.min(100_000) * 160),
            ..GetRecordsWriter::default()
        }
    }

    /// Appends one record.
    pub fn push(&mut self, item: &ReadItem<'_>) {
        write_entry(&mut self.scratch, item);
        put_bytes(&mut self.records, 4, &self.scratch.entry);
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The framed response.
    pub fn finish(self, head: &ReadHead<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 64 + self.records.len() + 24);
        out.extend_from_slice(&[0u8; 12]);
        put_bytes(&mut out, 1, head.next_cursor.as_bytes());
        put_int64(&mut out, 2, self.count as i32 as i64);
        put_int64(&mut out, 3, head.start_sequence);
        out.extend_from_slice(&self.records);
        put_int64(&mut out, 5, head.latest_sequence);
        put_int64(&mut out, 6, head.latest_time);
        let message_len = out.len() - 12;
        let crc = crc32c::crc32c(&out[12..]);
        out[0..4].copy_from_slice(b"DHUB");
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out[8..12].copy_from_slice(&(message_len as u32).to_be_bytes());
        out
    }
}

/// One `RecordEntry` (fields 4 to 9) into `scratch.entry`.
fn write_entry(scratch: &mut Scratch, item: &ReadItem<'_>) {
    let entry = &mut scratch.entry;
    entry.clear();
    let (cursor, next_cursor) = scratch.cursors.encode(item.cursor, item.next_cursor);
    put_bytes(entry, 4, &cursor);
    put_bytes(entry, 5, &next_cursor);
    put_int64(entry, 6, item.sequence);
    put_int64(entry, 7, item.system_time);
    // RecordAttributes: repeated StringPair (key 1, value 2).
    let pair_len = |k: &str, v: &str| {
        2 + encoded_len_varint(k.len() as u64)
            + k.len()
            + encoded_len_varint(v.len() as u64)
            + v.len()
    };
    let attrs_len: usize = item
        .record
        .attributes
        .iter()
        .map(|(k, v)| {
            let n = pair_len(k, v);
            1 + encoded_len_varint(n as u64) + n
        })
        .sum();
    entry.push(key(8, LEN));
    encode_varint(attrs_len as u64, entry);
    for (k, v) in item.record.attributes {
        entry.push(key(1, LEN));
        encode_varint(pair_len(k, v) as u64, entry);
        put_bytes(entry, 1, k.as_bytes());
        put_bytes(entry, 2, v.as_bytes());
    }
    // RecordData: repeated FieldData, each an optional bytes value (absent: NULL).
    let data = &mut scratch.data;
    data.clear();
    let field = |value: Option<&[u8]>, data: &mut Vec<u8>| match value {
        None => data.extend_from_slice(&[key(1, LEN), 0]),
        Some(bytes) => {
            let n = 1 + encoded_len_varint(bytes.len() as u64) + bytes.len();
            data.push(key(1, LEN));
            encode_varint(n as u64, data);
            put_bytes(data, 1, bytes);
        }
    };
    match item.record.data {
        DataRef::Tuple(values) => {
            for v in values {
                match v {
                    ValueRef::Null => field(None, data),
                    // text is written as it is: no copy through the scratch buffer
                    ValueRef::Str(s) | ValueRef::Decimal(s) => field(Some(s.as_bytes()), data),
                    other => {
                        scratch.text.clear();
                        other.write_text(&mut scratch.text);
                        field(Some(&scratch.text[..]), data);
                    }
                }
            }
        }
        DataRef::Blob(bytes) => field(Some(bytes), data),
    }
    put_bytes(entry, 9, data);
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb;
    use crate::record::{Record, RecordData};
    use crate::value::Value;

    /// What the server sent before: prost structs, encoded and framed.
    fn reference(head: &ReadHead<'_>, items: &[(ReadItem<'_>, &Record)]) -> Vec<u8> {
        let records = items
            .iter()
            .map(|(r, record)| pb::RecordEntry {
                shard_id: None,
                hash_key: None,
                partition_key: None,
                cursor: Some(r.cursor.encode()),
                next_cursor: Some(r.next_cursor.encode()),
                sequence: Some(r.sequence),
                system_time: Some(r.system_time),
                attributes: Some(pb::RecordAttributes {
                    attributes: record
                        .attributes
                        .iter()
                        .map(|(key, value)| pb::StringPair {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                }),
                data: pb::RecordData {
                    data: match &record.data {
                        RecordData::Tuple(values) => values
                            .iter()
                            .map(|v| pb::FieldData {
                                value: v.to_text().map(String::into_bytes),
                            })
                            .collect(),
                        RecordData::Blob(b) => vec![pb::FieldData {
                            value: Some(b.clone()),
                        }],
                    },
                },
            })
            .collect::<Vec<_>>();
        let message = pb::GetRecordsResponse {
            next_cursor: head.next_cursor.to_string(),
            record_count: records.len() as i32,
            start_sequence: Some(head.start_sequence),
            records,
            latest_sequence: Some(head.latest_sequence),
            latest_time: Some(head.latest_time),
        };
        crate::envelope::wrap(&message.encode_to_vec())
    }

    fn records() -> Vec<Record> {
        let long = "x".repeat(300);
        let mut out = vec![
            Record {
                data: RecordData::Tuple(vec![
                    Value::Int(7),
                    Value::Str("payload".into()),
                    Value::Double(0.25),
                ]),
                attributes: vec![],
            },
            Record {
                data: RecordData::Tuple(vec![
                    Value::Null,
                    Value::Bool(true),
                    Value::Float(f32::NAN),
                    Value::Int(i64::MIN),
                    Value::Decimal("-1.50".into()),
                    Value::Str(long.clone()),
                    Value::Str(String::new()),
                    Value::Null,
                ]),
                attributes: vec![("k".into(), "v".into()), ("ünï".into(), long.clone())],
            },
            Record {
                data: RecordData::Tuple(vec![]),
                attributes: vec![("a".into(), String::new())],
            },
            Record {
                data: RecordData::Blob(vec![0, 1, 2, 255]),
                attributes: vec![],
            },
            Record {
                data: RecordData::Blob(vec![]),
                attributes: vec![("x".into(), "y".into())],
            },
            Record {
                data: RecordData::Blob(vec![9; 70_000]),
                attributes: vec![],
            },
        ];
        // Many values: lengths past one-byte varints at every level.
        out.push(Record {
            data: RecordData::Tuple((0..200).map(|i| Value::Str(i.to_string())).collect()),
            attributes: vec![],
        });
        out
    }

    #[test]
    fn same_bytes_as_prost() {
        let records = records();
        let parts: Vec<_> = records.iter().map(Record::parts).collect();
        let items: Vec<(ReadItem<'_>, &Record)> = parts
            .iter()
            .zip(&records)
            .enumerate()
            .map(|(i, (parts, record))| {
                let item = ReadItem {
                    cursor: Cursor::new(3, 1 << 33, i as u32),
                    next_cursor: Cursor::new(3, 1 << 33, i as u32 + 1),
                    sequence: (1 << 33) + i as i64,
                    system_time: 1_764_000_000_000 + i as i64,
                    record: parts.as_record_ref(0),
                };
                (item, record)
            })
            .collect();
        let head = ReadHead {
            next_cursor: "5000000300000002000000000000000a",
            start_sequence: 1 << 33,
            latest_sequence: -1,
            latest_time: 0,
        };
        for n in 0..=items.len() {
            let fast = encode_get_records(&head, items[..n].iter().map(|(item, _)| *item));
            assert_eq!(fast, reference(&head, &items[..n]), "first {n} records");
        }
        // Cursors that do not follow on from the record before (the cached text is not used).
        let reversed: Vec<_> = items.iter().rev().copied().collect();
        assert_eq!(
            encode_get_records(&head, reversed.iter().map(|(item, _)| *item)),
            reference(&head, &reversed)
        );
        // Every record alone, too.
        for item in &items {
            let one = std::slice::from_ref(item);
            assert_eq!(
                encode_get_records(&head, one.iter().map(|(item, _)| *item)),
                reference(&head, one)
            );
        }
    }
}
