//! JSON record bodies (protocol doc §4.6, §4.7, §5.1): the put request, read lazily enough to
//! report a bad record as a per-record failure, and the get response.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use sluice_proto::pb_read::{CursorTexts, ReadItem};
use sluice_proto::{DataRef, Record, RecordData, RecordSchema, Value, ValueRef};

use crate::service::reads::RecordWriter;
use crate::service::records::{Route, RoutedRecord};
use crate::service::{Error, Result};

/// One cell of a tuple record's `Data` array: text, or a JSON scalar other clients may send.
#[derive(Debug)]
pub struct Cell(pub Option<String>);

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell(Some(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell, E> {
                Ok(Cell(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A record's `Data`: an array of cells (TUPLE) or base64 text (BLOB).
#[derive(Debug)]
pub enum JsonData {
    Tuple(Vec<Cell>),
    Blob(String),
}

impl<'de> Deserialize<'de> for JsonData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonData, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonData;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of field values or a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonData, E> {
                Ok(JsonData::Blob(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonData, A::Error> {
                let mut cells = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(c) = seq.next_element::<Cell>()? {
                    cells.push(c);
                }
                Ok(JsonData::Tuple(cells))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JsonPutRecord {
    pub data: JsonData,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub shard_id: Option<Cell>,
    #[serde(default)]
    pub hash_key: Option<String>,
    #[serde(default)]
    pub partition_key: Option<String>,
}

/// Everything a POST on `/shards` may carry: a JSON put or a topology action.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardsPost {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub records: Option<PutRecords>,
    #[serde(default)]
    pub shard_id: Option<Cell>,
    #[serde(default)]
    pub split_key: Option<String>,
    #[serde(default)]
    pub adjacent_shard_id: Option<Cell>,
    #[serde(default)]
    pub shard_number: Option<i64>,
}

thread_local! {
    /// The record limit of the `ShardsPost` being parsed on this thread (serde's derive has no
    /// way to hand it to a field's visitor).
    static MAX_RECORDS: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// A put's `Records`, counted while they are decoded: past the limit, the rest are only
/// counted, never built, so an oversized put costs no memory before it is refused.
#[derive(Default)]
pub struct PutRecords {
    pub list: Vec<JsonPutRecord>,
    pub count: usize,
}

impl<'de> Deserialize<'de> for PutRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PutRecords, D::Error> {
        struct V(usize);
        impl<'de> Visitor<'de> for V {
            type Value = PutRecords;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PutRecords, A::Error> {
                let mut out = PutRecords::default();
                while out.count < self.0 {
                    match seq.next_element::<JsonPutRecord>()? {
                        Some(r) => out.list.push(r),
                        None => return Ok(out),
                    }
                    out.count += 1;
                }
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    out.count += 1;
                }
                out.list = Vec::new();
                Ok(out)
            }
        }
        d.deserialize_seq(V(MAX_RECORDS.with(|m| m.get())))
    }
}

impl ShardsPost {
    /// Parses a POST on `/shards`, refusing a put of more than `max_records` records.
    pub fn parse(raw: &[u8], max_records: usize) -> Result<ShardsPost> {
        MAX_RECORDS.with(|m| m.set(max_records));
        let parsed = serde_json::from_slice::<ShardsPost>(raw);
        MAX_RECORDS.with(|m| m.set(usize::MAX));
        let post = parsed
            .map_err(|e| Error::InvalidParameter(format!("the request body is not valid: {e}")))?;
        match &post.records {
            Some(r) if r.count > max_records => {
                Err(super::body::too_many_records(r.count, max_records))
            }
            _ => Ok(post),
        }
    }
}

/// Turns one text cell row into typed values for `schema`.
pub fn tuple_from_text(schema: &RecordSchema, cells: &[Option<&str>]) -> Result<Vec<Value>> {
    if cells.len() != schema.len() {
        return Err(Error::MalformedRecord(format!(
            "the record has {} fields but the topic has {}",
            cells.len(),
            schema.len()
        )));
    }
    schema
        .fields
        .iter()
        .zip(cells)
        .map(|(f, c)| Value::parse(f, *c).map_err(|e| Error::MalformedRecord(e.to_string())))
        .collect()
}

impl JsonPutRecord {
    /// Decodes the record for a topic; `schema` is None for BLOB topics.
    pub fn into_routed(self, schema: Option<&RecordSchema>) -> Result<RoutedRecord> {
        let data = match (self.data, schema) {
            (JsonData::Tuple(cells), Some(schema)) => {
                let texts: Vec<Option<&str>> = cells.iter().map(|c| c.0.as_deref()).collect();
                RecordData::Tuple(tuple_from_text(schema, &texts)?)
            }
            (JsonData::Blob(text), None) => RecordData::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| Error::MalformedRecord(format!("BLOB Data is not base64: {e}")))?,
            ),
            (JsonData::Tuple(_), None) => {
                return Err(Error::MalformedRecord(
                    "the topic is a BLOB topic but Data is an array".into(),
                ))
            }
            (JsonData::Blob(_), Some(_)) => {
                return Err(Error::MalformedRecord(
                    "the topic is a TUPLE topic but Data is a string".into(),
                ))
            }
        };
        let route = if let Some(id) = self.shard_id.and_then(|c| c.0) {
            Route::Shard(id)
        } else if let Some(k) = self.hash_key {
            Route::HashKey(k)
        } else if let Some(k) = self.partition_key {
            Route::PartitionKey(k)
        } else {
            Route::Any
        };
        Ok(RoutedRecord {
            record: Record {
                data,
                attributes: self.attributes.unwrap_or_default().into_iter().collect(),
            },
            route,
        })
    }
}

/// A JSON get-records response (protocol doc §4.7), rendered by hand record by record as the
/// read decodes them (borrowed from the stored batches): cursors on the stack, numbers through
/// `itoa`, and strings with nothing to escape copied as they are (serde_json escapes the
/// others). The bytes are those serde_json writes for the same response (see the tests).
#[derive(Default)]
pub struct JsonRecordsWriter {
    /// The records so far, comma-separated.
    records: Vec<u8>,
    count: usize,
    cursors: CursorTexts,
}

/// The fields of a JSON get-records response around its records.
pub struct JsonReadHead {
    pub next_cursor: String,
    pub start_seq: i64,
    pub latest_seq: i64,
    pub latest_time: i64,
}

impl JsonRecordsWriter {
    /// A writer with room for about `records` small tuple records.
    pub fn with_capacity(records: usize) -> JsonRecordsWriter {
        JsonRecordsWriter {
            records: Vec::with_capacity(records.min(100_000) * 200),
            ..JsonRecordsWriter::default()
        }
    }

    /// The response body.
    pub fn finish(self, head: &JsonReadHead) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + head.next_cursor.len() + self.records.len());
        out.extend_from_slice(b"{\"NextCursor\":");
        write_str(&mut out, &head.next_cursor);
        out.extend_from_slice(b",\"RecordCount\":");
        write_int(&mut out, self.count);
        out.extend_from_slice(b",\"StartSeq\":");
        write_int(&mut out, head.start_seq);
        out.extend_from_slice(b",\"LatestSeq\":");
        write_int(&mut out, head.latest_seq);
        out.extend_from_slice(b",\"LatestTime\":");
        write_int(&mut out, head.latest_time);
        out.extend_from_slice(b",\"Records\":[");
        out.extend_from_slice(&self.records);
        out.extend_from_slice(b"]}");
        out
    }
}

impl RecordWriter for JsonRecordsWriter {
    fn push(&mut self, item: &ReadItem<'_>) {
        if self.count > 0 {
            self.records.push(b',');
        }
        let cursors = self.cursors.encode(item.cursor, item.next_cursor);
        write_record(&mut self.records, item, cursors);
        self.count += 1;
    }
}

/// One record read back: `SystemTime`, `Sequence`, `Cursor`, `NextCursor`, `Data` and, when it
/// has any, `Attributes` (sorted by key; the last of a repeated key wins).
fn write_record(out: &mut Vec<u8>, r: &ReadItem<'_>, (cursor, next_cursor): ([u8; 32], [u8; 32])) {
    out.extend_from_slice(b"{\"SystemTime\":");
    write_int(out, r.system_time);
    out.extend_from_slice(b",\"Sequence\":");
    write_int(out, r.sequence);
    out.extend_from_slice(b",\"Cursor\":\"");
    out.extend_from_slice(&cursor);
    out.extend_from_slice(b"\",\"NextCursor\":\"");
    out.extend_from_slice(&next_cursor);
    out.extend_from_slice(b"\",\"Data\":");
    match r.record.data {
        DataRef::Tuple(values) => {
            out.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_cell(out, *v);
            }
            out.push(b']');
        }
        DataRef::Blob(bytes) => {
            // base64 text never needs escaping
            let engine = &base64::engine::general_purpose::STANDARD;
            let start = out.len() + 1;
            let len = base64::encoded_len(bytes.len(), true).expect("a stored blob fits in memory");
            out.resize(start + len + 1, b'"');
            engine
                .encode_slice(bytes, &mut out[start..start + len])
                .expect("the buffer has the encoded length");
        }
    }
    if !r.record.attributes.is_empty() {
        let sorted: BTreeMap<&str, &str> = r.record.attributes.iter().copied().collect();
        out.extend_from_slice(b",\"Attributes\":{");
        for (i, (k, v)) in sorted.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// A tuple value as a text cell (`null` for NULL).
fn write_cell(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Str(t) | ValueRef::Decimal(t) => write_str(out, t),
        ValueRef::Int(n) => {
            out.push(b'"');
            write_int(out, n);
            out.push(b'"');
        }
        // numbers, booleans, `inf`/`nan`: ASCII with nothing to escape
        other => {
            out.push(b'"');
            other.write_text(out);
            out.push(b'"');
        }
    }
}

fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: copied as it is when nothing in it needs escaping, else through serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
    }
}

/// True when serde_json would write `bytes` unchanged: no quote, backslash or control
/// character. Checked 16 bytes at a time without early exit, which the compiler vectorizes.
fn needs_no_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | special(b)) {
            return false;
        }
    }
    !chunks.remainder().iter().any(|&b| special(b))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;
    use serde::Serialize;
    use sluice_proto::cursor::Cursor;
    use sluice_proto::{Record, RecordData, Value};

    use super::{JsonReadHead, JsonRecordsWriter};
    use crate::service::reads::RecordWriter;

    /// A record read back, owned (what the read path handed the renderer before).
    struct ReadRecord {
        seq: u64,
        system_time: i64,
        record: Record,
        cursor: Cursor,
        next_cursor: Cursor,
    }

    fn render(head: &JsonReadHead, records: &[ReadRecord]) -> Vec<u8> {
        let mut writer = JsonRecordsWriter::default();
        for r in records {
            let parts = r.record.parts();
            writer.push(&sluice_proto::pb_read::ReadItem {
                cursor: r.cursor,
                next_cursor: r.next_cursor,
                sequence: r.seq as i64,
                system_time: r.system_time,
                record: parts.as_record_ref(0),
            });
        }
        writer.finish(head)
    }

    /// The response as the server built it before: owned structs, then serde.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum OldData {
        Tuple(Vec<Option<String>>),
        Blob(String),
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct OldRecord {
        system_time: i64,
        sequence: i64,
        cursor: String,
        next_cursor: String,
        data: OldData,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct OldOut {
        next_cursor: String,
        record_count: usize,
        start_seq: i64,
        latest_seq: i64,
        latest_time: i64,
        records: Vec<OldRecord>,
    }

    fn old_record(r: &ReadRecord) -> OldRecord {
        OldRecord {
            system_time: r.system_time,
            sequence: r.seq as i64,
            cursor: r.cursor.encode(),
            next_cursor: r.next_cursor.encode(),
            data: match &r.record.data {
                RecordData::Tuple(v) => OldData::Tuple(v.iter().map(Value::to_text).collect()),
                RecordData::Blob(b) => {
                    OldData::Blob(base64::engine::general_purpose::STANDARD.encode(b))
                }
            },
            attributes: r.record.attributes.iter().cloned().collect(),
        }
    }

    #[test]
    fn json_read_bytes_match_the_owned_structs() {
        let datas = [
            RecordData::Tuple(vec![
                Value::Int(-7),
                Value::Str("quote \" backslash \\ tab \t ünï 😀".into()),
                Value::Double(0.1),
                Value::Null,
                Value::Bool(false),
                Value::Float(f32::INFINITY),
                Value::Decimal("1E+2".into()),
            ]),
            // strings on both sides of the 16-byte chunks, escapes at their edges
            RecordData::Tuple(vec![
                Value::Str(String::new()),
                Value::Str("plain text that is longer than sixteen bytes, ünï".into()),
                Value::Str("0123456789abcde\"".into()),
                Value::Str("0123456789abcdef\\".into()),
                Value::Str("0123456789abcdef0123456789abcde\u{1f}".into()),
                Value::Str("\u{7f} del, \u{0} nul, \n\r\u{8}\u{c} and / slash".into()),
                Value::Int(i64::MIN),
                Value::Int(i64::MAX),
                Value::Double(-2.5e-300),
                Value::Float(f32::NAN),
                Value::Bool(true),
            ]),
            RecordData::Tuple(vec![]),
            RecordData::Blob(vec![0, 255, 10, 13]),
            RecordData::Blob(vec![]),
        ];
        let attrs = [
            vec![],
            vec![("b".into(), "2".into()), ("a".into(), "\"1\"".into())],
            vec![("k".into(), "first".into()), ("k".into(), "last".into())],
            vec![("ke\ty".into(), "a long value with a \u{1} inside it".into())],
        ];
        let mut items = Vec::new();
        for (i, data) in datas.iter().enumerate() {
            for (j, attributes) in attrs.iter().enumerate() {
                let n = (i * attrs.len() + j) as u32;
                items.push(ReadRecord {
                    seq: 100 + u64::from(n),
                    system_time: 1_764_000_000_000 + i64::from(n),
                    record: Record {
                        data: data.clone(),
                        attributes: attributes.clone(),
                    },
                    cursor: Cursor::new(2, 100, n),
                    next_cursor: Cursor::new(2, 100, n + 1),
                });
            }
        }
        for n in [0, 1, items.len()] {
            let items = &items[..n];
            let new = render(
                &JsonReadHead {
                    next_cursor: "c\"".into(),
                    start_seq: 100,
                    latest_seq: 111,
                    latest_time: -1,
                },
                items,
            );
            let old = OldOut {
                next_cursor: "c\"".into(),
                record_count: n,
                start_seq: 100,
                latest_seq: 111,
                latest_time: -1,
                records: items.iter().map(old_record).collect(),
            };
            assert_eq!(
                String::from_utf8(new).unwrap(),
                String::from_utf8(serde_json::to_vec(&old).unwrap()).unwrap()
            );
        }
    }

    #[test]
    fn strings_are_copied_only_when_serde_json_would_not_escape_them() {
        for b in 0..=255u8 {
            for at in [0, 15, 16, 17, 40] {
                let mut bytes = vec![b'x'; 41];
                bytes[at] = b;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                let escaped = serde_json::to_string(&text).unwrap();
                let unchanged = escaped == format!("\"{text}\"");
                assert_eq!(
                    super::needs_no_escape(text.as_bytes()),
                    unchanged,
                    "{b:#x} at {at}"
                );
                let mut out = Vec::new();
                super::write_str(&mut out, &text);
                assert_eq!(String::from_utf8(out).unwrap(), escaped);
            }
        }
    }
}
