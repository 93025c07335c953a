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
use serde_json::{json, Map, Number, Value as Json};
use sluice_proto::Value;

use crate::sink::{SinkData, SinkRecord};

/// One record as the payload carries it.
pub fn record(names: &[String], r: &SinkRecord) -> Json {
    let mut out = Map::new();
    out.insert("shardId".into(), Json::String(r.shard_id.to_string()));
    out.insert("sequence".into(), json!(r.sequence));
    out.insert("batchIndex".into(), json!(r.batch_index));
    out.insert("systemTime".into(), json!(r.system_time));
    match &r.data {
        SinkData::Tuple(values) => {
            let fields: Map<String, Json> = names
                .iter()
                .zip(values)
                .map(|(n, v)| (n.clone(), value(v)))
                .collect();
            out.insert("fields".into(), Json::Object(fields));
        }
        SinkData::Blob(b) => {
            let text = base64::engine::general_purpose::STANDARD.encode(b);
            out.insert("data".into(), Json::String(text));
        }
    }
    let attrs: Map<String, Json> = r
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    out.insert("attributes".into(), Json::Object(attrs));
    Json::Object(out)
}

/// The body of one invocation.
pub fn body(records: &[Json]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 128);
    out.extend_from_slice(b"{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing a serde_json::Value into a Vec cannot fail.
        serde_json::to_writer(&mut out, r).expect("JSON values serialize");
    }
    out.extend_from_slice(b"]}");
    out
}

fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Float(f) => float(f64::from(*f)),
        Value::Double(d) => float(*d),
        Value::Str(s) | Value::Decimal(s) => Json::String(s.clone()),
    }
}

fn float(d: f64) -> Json {
    match Number::from_f64(d) {
        Some(n) => Json::Number(n),
        None if d.is_nan() => Json::String("NaN".into()),
        None if d > 0.0 => Json::String("inf".into()),
        None => Json::String("-inf".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let got: Json = serde_json::from_slice(&body(&[record(&names, &r)])).unwrap();
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
        let got = record(&names, &blob);
        assert_eq!(got["data"], "AGhp");
        assert_eq!(got["attributes"], json!({}));
        assert!(got.get("fields").is_none());
    }
}
