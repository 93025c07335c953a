//! JSON record bodies (protocol doc §4.6, §4.7, §5.1): the put request, read lazily enough to
//! report a bad record as a per-record failure, and the get response.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{self, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use sluice_proto::cursor::Cursor;
use sluice_proto::{Record, RecordData, RecordSchema, Value};

use crate::service::records::{ReadRecord, Route, RoutedRecord};
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

/// The records of a JSON read, serialized straight from what the log decoded: no per-record
/// copies, cursors rendered on the stack, values as text through one reused buffer.
pub struct OutRecords<'a>(pub &'a [ReadRecord]);

impl Serialize for OutRecords<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&OutRecord(r))?;
        }
        seq.end()
    }
}

/// One record read back: `SystemTime`, `Sequence`, `Cursor`, `NextCursor`, `Data` and, when it
/// has any, `Attributes` (sorted by key).
struct OutRecord<'a>(&'a ReadRecord);

impl Serialize for OutRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("OutRecord", 6)?;
        st.serialize_field("SystemTime", &r.system_time)?;
        st.serialize_field("Sequence", &(r.seq as i64))?;
        st.serialize_field("Cursor", Cursor::encode_str(&r.cursor.encode_array()))?;
        st.serialize_field(
            "NextCursor",
            Cursor::encode_str(&r.next_cursor.encode_array()),
        )?;
        match &r.record.data {
            RecordData::Tuple(values) => st.serialize_field("Data", &OutTuple(values))?,
            RecordData::Blob(bytes) => st.serialize_field(
                "Data",
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            )?,
        }
        if r.record.attributes.is_empty() {
            st.skip_field("Attributes")?;
        } else {
            let sorted: BTreeMap<&str, &str> = r
                .record
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            st.serialize_field("Attributes", &sorted)?;
        }
        st.end()
    }
}

/// A tuple's values as text cells (`null` for NULL).
struct OutTuple<'a>(&'a [Value]);

impl Serialize for OutTuple<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        let mut text = Vec::new();
        for v in self.0 {
            match v {
                Value::Null => seq.serialize_element(&None::<&str>)?,
                Value::Str(t) | Value::Decimal(t) => seq.serialize_element(t.as_str())?,
                other => {
                    text.clear();
                    other.write_text(&mut text);
                    let t = std::str::from_utf8(&text).map_err(ser::Error::custom)?;
                    seq.serialize_element(t)?;
                }
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOut<'a> {
    pub next_cursor: String,
    pub record_count: usize,
    pub start_seq: i64,
    pub latest_seq: i64,
    pub latest_time: i64,
    pub records: OutRecords<'a>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;
    use serde::Serialize;
    use sluice_proto::cursor::Cursor;
    use sluice_proto::{Record, RecordData, Value};

    use super::{GetRecordsOut, OutRecords};
    use crate::service::records::ReadRecord;

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
            RecordData::Tuple(vec![]),
            RecordData::Blob(vec![0, 255, 10, 13]),
            RecordData::Blob(vec![]),
        ];
        let attrs = [
            vec![],
            vec![("b".into(), "2".into()), ("a".into(), "\"1\"".into())],
            vec![("k".into(), "first".into()), ("k".into(), "last".into())],
        ];
        let mut items = Vec::new();
        for (i, data) in datas.iter().enumerate() {
            for (j, attributes) in attrs.iter().enumerate() {
                let n = (i * 3 + j) as u32;
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
            let new = GetRecordsOut {
                next_cursor: "c".into(),
                record_count: n,
                start_seq: 100,
                latest_seq: 111,
                latest_time: -1,
                records: OutRecords(items),
            };
            let old = OldOut {
                next_cursor: "c".into(),
                record_count: n,
                start_seq: 100,
                latest_seq: 111,
                latest_time: -1,
                records: items.iter().map(old_record).collect(),
            };
            assert_eq!(
                String::from_utf8(serde_json::to_vec(&new).unwrap()).unwrap(),
                String::from_utf8(serde_json::to_vec(&old).unwrap()).unwrap()
            );
        }
    }
}
