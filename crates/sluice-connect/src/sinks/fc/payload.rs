//! The JSON body an SINK_FC invocation carries: one object per delivery (documented in
//! docs/connectors.md, "SINK_FC").
//!
//! ```json
//! {"records": [
//!   {"shardId": "0", "sequence": 12, "batchIndex": 0, "systemTime": 1700000000000,
//!    "fields": {"id": 1, "note": "n1"}, "attributes": {"k": "v"}}
//! ]}
//! ```
//!
//! - `fields`: the connector's columns by name (TUPLE topics). BIGINT/INTEGER/SMALLINT/TINYINT
//!   and TIMESTAMP (µs since the epoch) are JSON integers, FLOAT/DOUBLE numbers (NaN and ±inf
//!   as the strings "NaN", "inf", "-inf"), BOOLEAN true/false, STRING strings, DECIMAL its
//!   exact text as a string, NULL null. A BLOB topic's record has `data` (standard base64)
//!   instead of `fields`.
//! - `sequence` with `batchIndex` identifies a record within its shard (records of one
//!   batch-protocol put share a sequence); `systemTime` is ms since the epoch.
//! - `attributes`: the record's attributes, `{}` when it has none.

use base64::Engine;
use serde::ser::{Serialize, SerializeMap, Serializer};
use sluice_proto::Value;

use crate::sink::{SinkData, SinkRecord};

/// What a body starts with; [`push`] appends the records, [`close`] ends it.
pub const OPEN: &[u8] = b"{\"records\":[";

/// Appends one record to a body that starts with [`OPEN`] and holds `before` records so far.
/// Records are serialized straight into the body (no intermediate `serde_json::Value`).
pub fn push(out: &mut Vec<u8>, before: usize, names: &[String], r: &SinkRecord) {
    if before > 0 {
        out.push(b',');
    }
    // Serializing into a Vec fails only on a map key that is not a string, which cannot happen.
    serde_json::to_writer(&mut *out, &RecordJson { names, r }).expect("records serialize");
}

/// Ends a body.
pub fn close(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

/// One record as the payload carries it.
struct RecordJson<'a> {
    names: &'a [String],
    r: &'a SinkRecord,
}

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("shardId", &ShardId(r.shard_id))?;
        map.serialize_entry("sequence", &r.sequence)?;
        map.serialize_entry("batchIndex", &r.batch_index)?;
        map.serialize_entry("systemTime", &r.system_time)?;
        match &r.data {
            SinkData::Tuple(values) => map.serialize_entry(
                "fields",
                &Fields {
                    names: self.names,
                    values,
                },
            )?,
            SinkData::Blob(b) => {
                map.serialize_entry("data", &base64::engine::general_purpose::STANDARD.encode(b))?
            }
        }
        map.serialize_entry("attributes", &Attributes(&r.attributes))?;
        map.end()
    }
}

/// The shard id as a string, as DataHub writes it.
struct ShardId(u32);

impl Serialize for ShardId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct Fields<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.names.len().min(self.values.len())))?;
        for (name, v) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, &FieldValue(v))?;
        }
        map.end()
    }
}

struct Attributes<'a>(&'a [(String, String)]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct FieldValue<'a>(&'a Value);

impl Serialize for FieldValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => float(f64::from(*f), s),
            Value::Double(d) => float(*d, s),
            Value::Str(t) | Value::Decimal(t) => s.serialize_str(t),
        }
    }
}

/// NaN and ±infinity as the strings "NaN", "inf", "-inf" (JSON has no form for them).
fn float<S: Serializer>(d: f64, s: S) -> Result<S::Ok, S::Error> {
    if d.is_finite() {
        s.serialize_f64(d)
    } else if d.is_nan() {
        s.serialize_str("NaN")
    } else if d > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as Json};

    fn body(names: &[String], records: &[SinkRecord]) -> Json {
        let mut out = OPEN.to_vec();
        for (i, r) in records.iter().enumerate() {
            push(&mut out, i, names, r);
        }
        close(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_record_carries_fields_by_name_and_its_origin() {
        let names = vec!["id".to_string(), "note".into(), "d".into(), "x".into()];
        let r = SinkRecord {
            shard_id: 3,
            sequence: 12,
            batch_index: 1,
            system_time: 1_700_000_000_000,
            data: SinkData::Tuple(vec![
                Value::Int(i64::MAX),
                Value::Str("n1".into()),
                Value::Decimal("1.50".into()),
                Value::Double(f64::NAN),
            ]),
            attributes: vec![("k".into(), "v".into())],
        };
        let got = body(&names, std::slice::from_ref(&r));
        assert_eq!(
            got,
            json!({"records": [{"shardId": "3", "sequence": 12, "batchIndex": 1,
                "systemTime": 1_700_000_000_000_i64,
                "fields": {"id": i64::MAX, "note": "n1", "d": "1.50", "x": "NaN"},
                "attributes": {"k": "v"}}]})
        );
        let blob = SinkRecord {
            data: SinkData::Blob(b"\x00hi".to_vec()),
            attributes: vec![],
            ..r
        };
        let two = body(&names, &[blob.clone(), blob]);
        assert_eq!(two["records"].as_array().unwrap().len(), 2);
        let got = &two["records"][0];
        assert_eq!(got["data"], "AGhp");
        assert_eq!(got["attributes"], json!({}));
        assert!(got.get("fields").is_none());
    }
}
