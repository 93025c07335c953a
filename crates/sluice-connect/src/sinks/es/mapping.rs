//! How a record becomes a `_bulk` item: the document (column values as JSON, by the type
//! mapping below), its `_id` and, for clusters that still have mapping types, its `_type`.
//!
//! | DataHub type                         | JSON in the document                                 |
//! |--------------------------------------|------------------------------------------------------|
//! | BIGINT, INTEGER, SMALLINT, TINYINT   | number (integer)                                     |
//! | TIMESTAMP                            | number: microseconds since the Unix epoch, as stored |
//! | DOUBLE, FLOAT                        | number; NaN and ±infinity (no JSON form) → `null`    |
//! | BOOLEAN                              | `true` / `false`                                     |
//! | STRING                               | string                                               |
//! | DECIMAL                              | string holding the exact decimal text                |
//! | null                                 | `null`                                               |
//!
//! `_id`: the values of `IDFields` as text, joined with `,` (deterministic, so a re-delivered
//! record overwrites its document); a null id value makes the record a bad record. Without
//! `IDFields`: `<shard>_<sequence>_<index in the batch-protocol entry>`, unique per record and
//! the same on every re-delivery. `_type` (only with `TypeFields`): their values joined the
//! same way.

use serde_json::{Map, Value as Json};
use sluice_proto::Value;

use crate::sink::{Columns, SinkData, SinkError, SinkRecord};

/// Column positions of the id and type fields, resolved once when the sink opens.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub names: Vec<String>,
    pub id: Vec<usize>,
    pub type_: Vec<usize>,
}

impl Layout {
    /// Finds `IDFields` and `TypeFields` among the connector's columns (case-insensitively).
    pub fn new(
        columns: &Columns,
        id_fields: &[String],
        type_fields: &[String],
    ) -> Result<Layout, SinkError> {
        let find = |list: &[String], key: &str| -> Result<Vec<usize>, SinkError> {
            list.iter()
                .map(|f| {
                    columns
                        .names
                        .iter()
                        .position(|c| c.eq_ignore_ascii_case(f))
                        .ok_or_else(|| {
                            SinkError::config(format!(
                                "{key}: {f:?} is not one of the connector's columns ({})",
                                columns.names.join(", ")
                            ))
                        })
                })
                .collect()
        };
        Ok(Layout {
            names: columns.names.clone(),
            id: find(id_fields, "IDFields")?,
            type_: find(type_fields, "TypeFields")?,
        })
    }
}

/// A value as document JSON (the table in the module docs).
pub(super) fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::Str(s) | Value::Decimal(s) => Json::String(s.clone()),
    }
}

/// A value as text inside an `_id` or `_type`; `None` for null.
fn key_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Str(s) | Value::Decimal(s) => s.clone(),
    })
}

fn joined(
    values: &[Value],
    positions: &[usize],
    names: &[String],
    what: &str,
) -> Result<String, SinkError> {
    let mut parts = Vec::with_capacity(positions.len());
    for &i in positions {
        match values.get(i).and_then(key_text) {
            Some(t) => parts.push(t),
            None => {
                return Err(SinkError::bad_record(format!(
                    "{what} field {} is null",
                    names[i]
                )))
            }
        }
    }
    Ok(parts.join(","))
}

/// One `_bulk` index item: the action line and the document line, both without newline.
pub(super) fn bulk_item(
    layout: &Layout,
    index: &str,
    r: &SinkRecord,
) -> Result<(String, String), SinkError> {
    let values = match &r.data {
        SinkData::Tuple(v) => v,
        SinkData::Blob(_) => {
            return Err(SinkError::config(
                "SINK_ES writes TUPLE topics only (a BLOB record has no fields)".into(),
            ))
        }
    };
    let id = if layout.id.is_empty() {
        format!("{}_{}_{}", r.shard_id, r.sequence, r.batch_index)
    } else {
        joined(values, &layout.id, &layout.names, "IDFields")?
    };
    let mut meta = Map::new();
    meta.insert("_index".into(), Json::String(index.to_string()));
    meta.insert("_id".into(), Json::String(id));
    if !layout.type_.is_empty() {
        let t = joined(values, &layout.type_, &layout.names, "TypeFields")?;
        meta.insert("_type".into(), Json::String(t));
    }
    let mut doc = Map::with_capacity(layout.names.len());
    for (name, v) in layout.names.iter().zip(values) {
        doc.insert(name.clone(), to_json(v));
    }
    let mut action = Map::new();
    action.insert("index".into(), Json::Object(meta));
    Ok((
        Json::Object(action).to_string(),
        Json::Object(doc).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::FieldType;

    fn columns() -> Columns {
        Columns {
            names: vec![
                "id".into(),
                "note".into(),
                "price".into(),
                "ok".into(),
                "ts".into(),
            ],
            types: vec![
                FieldType::Bigint,
                FieldType::String,
                FieldType::Decimal,
                FieldType::Boolean,
                FieldType::Timestamp,
            ],
        }
    }

    fn record(values: Vec<Value>) -> SinkRecord {
        SinkRecord {
            shard_id: 3,
            sequence: 17,
            batch_index: 2,
            system_time: 0,
            data: SinkData::Tuple(values),
            attributes: vec![],
        }
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Int(7),
            Value::Str("a\"b".into()),
            Value::Decimal("1.50".into()),
            Value::Bool(true),
            Value::Int(1_700_000_000_000_000),
        ]
    }

    #[test]
    fn documents_follow_the_type_table_and_ids_come_from_id_fields() {
        let layout = Layout::new(&columns(), &["ID".into(), "note".into()], &[]).unwrap();
        let (action, doc) = bulk_item(&layout, "idx", &record(row())).unwrap();
        let action: Json = serde_json::from_str(&action).unwrap();
        assert_eq!(
            action,
            serde_json::json!({"index": {"_index": "idx", "_id": "7,a\"b"}})
        );
        let doc: Json = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"id": 7, "note": "a\"b", "price": "1.50", "ok": true,
                               "ts": 1_700_000_000_000_000_i64})
        );
        assert_eq!(to_json(&Value::Double(f64::NAN)), Json::Null);
        assert_eq!(to_json(&Value::Float(0.5)), serde_json::json!(0.5));
    }

    #[test]
    fn without_id_fields_the_id_is_the_records_position() {
        let layout = Layout::new(&columns(), &[], &["ok".into()]).unwrap();
        let (action, _) = bulk_item(&layout, "idx", &record(row())).unwrap();
        let action: Json = serde_json::from_str(&action).unwrap();
        assert_eq!(action["index"]["_id"], "3_17_2");
        assert_eq!(action["index"]["_type"], "true");
    }

    #[test]
    fn null_ids_are_bad_records_and_unknown_fields_are_named() {
        let layout = Layout::new(&columns(), &["note".into()], &[]).unwrap();
        let mut values = row();
        values[1] = Value::Null;
        let e = bulk_item(&layout, "idx", &record(values)).unwrap_err();
        assert_eq!(e.kind, crate::sink::ErrorKind::BadRecord);
        assert!(e.message.contains("note"), "{e}");
        let e = Layout::new(&columns(), &["nope".into()], &[]).unwrap_err();
        assert!(
            e.message.contains("IDFields") && e.message.contains("nope"),
            "{e}"
        );
        let e = Layout::new(&columns(), &[], &["gone".into()]).unwrap_err();
        assert!(e.message.contains("TypeFields"), "{e}");
    }
}
