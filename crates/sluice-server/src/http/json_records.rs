//! JSON record bodies (protocol doc §4.6, §4.7, §5.1): the put request, read lazily enough to
//! report a bad record as a per-record failure, and the get response.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
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

/// `Data` of a record read back.
#[derive(Serialize)]
#[serde(untagged)]
pub enum OutData {
    Tuple(Vec<Option<String>>),
    Blob(String),
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutRecord {
    pub system_time: i64,
    pub sequence: i64,
    pub cursor: String,
    pub next_cursor: String,
    pub data: OutData,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOut {
    pub next_cursor: String,
    pub record_count: usize,
    pub start_seq: i64,
    pub latest_seq: i64,
    pub latest_time: i64,
    pub records: Vec<OutRecord>,
}

pub fn out_record(r: ReadRecord) -> OutRecord {
    let data = match r.record.data {
        RecordData::Tuple(values) => OutData::Tuple(values.iter().map(Value::to_text).collect()),
        RecordData::Blob(bytes) => {
            OutData::Blob(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    };
    OutRecord {
        system_time: r.system_time,
        sequence: r.seq as i64,
        cursor: r.cursor.encode(),
        next_cursor: r.next_cursor.encode(),
        data,
        attributes: r.record.attributes.into_iter().collect(),
    }
}
