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

use std::fmt::Write;

use serde::ser::{Serialize, SerializeMap, Serializer};
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

/// A value as document JSON (the table in the module docs), serialized straight into the
/// request body (no intermediate `serde_json::Value`).
pub(super) struct DocValue<'a>(pub &'a Value);

impl Serialize for DocValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => finite(f64::from(*f), s),
            Value::Double(d) => finite(*d, s),
            Value::Str(t) | Value::Decimal(t) => s.serialize_str(t),
        }
    }
}

/// NaN and ±infinity have no JSON form: `null`.
fn finite<S: Serializer>(d: f64, s: S) -> Result<S::Ok, S::Error> {
    if d.is_finite() {
        s.serialize_f64(d)
    } else {
        s.serialize_unit()
    }
}

/// The document: the connector's columns by name.
struct Doc<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Serialize for Doc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.names.len().min(self.values.len())))?;
        for (name, v) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, &DocValue(v))?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct Action<'a> {
    index: Meta<'a>,
}

#[derive(serde::Serialize)]
struct Meta<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
    #[serde(rename = "_type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'a str>,
}

/// Appends a value's text inside an `_id` or `_type` to `out`; `None` for null.
fn push_key_text(out: &mut String, v: &Value) -> Option<()> {
    match v {
        Value::Null => return None,
        Value::Bool(b) => write!(out, "{b}"),
        Value::Int(i) => write!(out, "{i}"),
        Value::Float(f) => write!(out, "{f}"),
        Value::Double(d) => write!(out, "{d}"),
        Value::Str(s) | Value::Decimal(s) => {
            out.push_str(s);
            Ok(())
        }
    }
    .ok()
}

fn joined(
    values: &[Value],
    positions: &[usize],
    names: &[String],
    what: &str,
) -> Result<String, SinkError> {
    let mut out = String::new();
    for (k, &i) in positions.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        if values
            .get(i)
            .and_then(|v| push_key_text(&mut out, v))
            .is_none()
        {
            return Err(SinkError::bad_record(format!(
                "{what} field {} is null",
                names[i]
            )));
        }
    }
    Ok(out)
}

/// Appends one `_bulk` index item to `out`: the action line and the document line, each
/// ending in `\n`. On an error `out` is left as it was.
pub(super) fn write_item(
    layout: &Layout,
    index: &str,
    r: &SinkRecord,
    out: &mut Vec<u8>,
) -> Result<(), SinkError> {
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
    let type_ = if layout.type_.is_empty() {
        None
    } else {
        Some(joined(values, &layout.type_, &layout.names, "TypeFields")?)
    };
    let action = Action {
        index: Meta {
            index,
            id: &id,
            type_: type_.as_deref(),
        },
    };
    // Serializing into a Vec fails only on a map key that is not a string, which cannot happen.
    serde_json::to_writer(&mut *out, &action).expect("bulk action serializes");
    out.push(b'\n');
    let doc = Doc {
        names: &layout.names,
        values,
    };
    serde_json::to_writer(&mut *out, &doc).expect("document serializes");
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;
    use sluice_proto::FieldType;

    /// The item's action and document, parsed back.
    fn bulk_item(layout: &Layout, index: &str, r: &SinkRecord) -> Result<(Json, Json), SinkError> {
        let mut out = b"earlier item\n".to_vec();
        write_item(layout, index, r, &mut out)?;
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "earlier item");
        Ok((
            serde_json::from_str(lines[1]).unwrap(),
            serde_json::from_str(lines[2]).unwrap(),
        ))
    }

    fn to_json(v: &Value) -> Json {
        serde_json::to_value(DocValue(v)).unwrap()
    }

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
        assert_eq!(
            action,
            serde_json::json!({"index": {"_index": "idx", "_id": "7,a\"b"}})
        );
        assert_eq!(
            doc,
            serde_json::json!({"id": 7, "note": "a\"b", "price": "1.50", "ok": true,
                               "ts": 1_700_000_000_000_000_i64})
        );
        assert_eq!(to_json(&Value::Double(f64::NAN)), Json::Null);
        assert_eq!(to_json(&Value::Double(f64::NEG_INFINITY)), Json::Null);
        assert_eq!(to_json(&Value::Float(0.5)), serde_json::json!(0.5));
        assert_eq!(to_json(&Value::Null), Json::Null);
    }

    #[test]
    fn without_id_fields_the_id_is_the_records_position() {
        let layout = Layout::new(&columns(), &[], &["ok".into()]).unwrap();
        let (action, _) = bulk_item(&layout, "idx", &record(row())).unwrap();
        assert_eq!(action["index"]["_id"], "3_17_2");
        assert_eq!(action["index"]["_type"], "true");
    }

    #[test]
    fn null_ids_are_bad_records_and_unknown_fields_are_named() {
        let layout = Layout::new(&columns(), &["note".into()], &[]).unwrap();
        let mut values = row();
        values[1] = Value::Null;
        let mut out = b"kept\n".to_vec();
        let e = write_item(&layout, "idx", &record(values), &mut out).unwrap_err();
        assert_eq!(out, b"kept\n", "a bad record leaves the body as it was");
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
