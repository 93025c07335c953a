//! Tuple record schemas (protocol doc §5.7): field types, parsing the SDK's JSON, rendering it back.

use serde::{Deserialize, Serialize};

/// A DataHub field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Bigint,
    Integer,
    Smallint,
    Tinyint,
    Double,
    Float,
    Boolean,
    Timestamp,
    String,
    Decimal,
}

impl FieldType {
    /// Every type, in declaration order.
    pub const ALL: [FieldType; 10] = [
        FieldType::Bigint,
        FieldType::Integer,
        FieldType::Smallint,
        FieldType::Tinyint,
        FieldType::Double,
        FieldType::Float,
        FieldType::Boolean,
        FieldType::Timestamp,
        FieldType::String,
        FieldType::Decimal,
    ];

    /// Parses a type name, case-insensitively (`bigint`, `BIGINT`, ...).
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bigint" => FieldType::Bigint,
            "integer" => FieldType::Integer,
            "smallint" => FieldType::Smallint,
            "tinyint" => FieldType::Tinyint,
            "double" => FieldType::Double,
            "float" => FieldType::Float,
            "boolean" => FieldType::Boolean,
            "timestamp" => FieldType::Timestamp,
            "string" => FieldType::String,
            "decimal" => FieldType::Decimal,
            _ => return None,
        })
    }

    /// The upper-case name the service and the Go and Java SDKs put in schema JSON (the Go SDK
    /// v0.2.x panics on any other spelling; pydatahub lower-cases what it reads).
    pub fn wire_name(self) -> &'static str {
        match self {
            FieldType::Bigint => "BIGINT",
            FieldType::Integer => "INTEGER",
            FieldType::Smallint => "SMALLINT",
            FieldType::Tinyint => "TINYINT",
            FieldType::Double => "DOUBLE",
            FieldType::Float => "FLOAT",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Timestamp => "TIMESTAMP",
            FieldType::String => "STRING",
            FieldType::Decimal => "DECIMAL",
        }
    }

    /// The lower-case name pydatahub uses (in messages).
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Bigint => "bigint",
            FieldType::Integer => "integer",
            FieldType::Smallint => "smallint",
            FieldType::Tinyint => "tinyint",
            FieldType::Double => "double",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
            FieldType::String => "string",
            FieldType::Decimal => "decimal",
        }
    }

    /// Whether values of this type travel as a variable-length byte field in the batch format.
    pub fn is_bytes(self) -> bool {
        matches!(self, FieldType::String | FieldType::Decimal)
    }
}

/// One column of a tuple topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
    pub comment: String,
    pub not_null: bool,
}

/// The ordered columns of a tuple topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RecordSchema {
    pub fields: Vec<Field>,
}

/// Why a schema text was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("record schema is not valid JSON of the form {{\"fields\": [...]}}: {0}")]
    Json(String),
    #[error("record schema has no fields")]
    Empty,
    #[error("field #{index} has an invalid name {name:?}")]
    BadName { index: usize, name: String },
    #[error("field {name:?} has an unknown type {field_type:?}")]
    UnknownType { name: String, field_type: String },
    #[error("field name {0:?} appears more than once")]
    Duplicate(String),
    #[error("field {0:?} has a comment longer than 1024 characters")]
    CommentTooLong(String),
}

#[derive(Deserialize, Serialize)]
struct SchemaJson {
    fields: Vec<FieldJson>,
}

#[derive(Deserialize, Serialize)]
struct FieldJson {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notnull: Option<bool>,
}

/// Field names follow the same rule as DataHub names, but may start with `_` too.
fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    name.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RecordSchema {
    /// Parses and validates the SDK's schema JSON text.
    pub fn parse(text: &str) -> Result<RecordSchema, SchemaError> {
        let parsed: SchemaJson =
            serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        if parsed.fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        let mut fields: Vec<Field> = Vec::with_capacity(parsed.fields.len());
        for (index, f) in parsed.fields.into_iter().enumerate() {
            if !valid_field_name(&f.name) {
                return Err(SchemaError::BadName {
                    index,
                    name: f.name,
                });
            }
            let field_type =
                FieldType::parse(&f.field_type).ok_or_else(|| SchemaError::UnknownType {
                    name: f.name.clone(),
                    field_type: f.field_type.clone(),
                })?;
            if fields.iter().any(|x| x.name.eq_ignore_ascii_case(&f.name)) {
                return Err(SchemaError::Duplicate(f.name));
            }
            let comment = f.comment.unwrap_or_default();
            if comment.chars().count() > 1024 {
                return Err(SchemaError::CommentTooLong(f.name));
            }
            fields.push(Field {
                name: f.name,
                field_type,
                comment,
                not_null: f.notnull.unwrap_or(false),
            });
        }
        Ok(RecordSchema { fields })
    }

    /// Renders the schema as the service does: upper-case types ([`FieldType::wire_name`]),
    /// comment always present, `notnull` only when true. pydatahub re-serializes what it reads
    /// (lower-casing the types) before its registry lookups, so they match either way.
    pub fn to_json(&self) -> String {
        let json = SchemaJson {
            fields: self
                .fields
                .iter()
                .map(|f| FieldJson {
                    name: f.name.clone(),
                    field_type: f.field_type.wire_name().to_string(),
                    comment: Some(f.comment.clone()),
                    notnull: f.not_null.then_some(true),
                })
                .collect(),
        };
        serde_json::to_string(&json).expect("schema serializes")
    }

    /// Whether `other` has the same columns: names equal ignoring case, same types, in order;
    /// comments and `notnull` may differ. The Go SDK looks schema versions up by a schema it
    /// re-serializes with `notnull` inverted (its `Field.AllowNull` carries the `notnull` JSON
    /// tag; v0.2.1 datahub/topic.go:11, 68) and, since v1.0, with lower-cased names.
    pub fn same_columns(&self, other: &RecordSchema) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.field_type == b.field_type && a.name.eq_ignore_ascii_case(&b.name))
    }

    /// Index of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_schema_and_renders_canonically() {
        let text = r#"{"fields": [{"name": "a", "type": "BIGINT", "comment": "ca", "notnull": true}, {"name": "b", "type": "string"}]}"#;
        let s = RecordSchema::parse(text).unwrap();
        assert_eq!(s.fields[0].field_type, FieldType::Bigint);
        assert!(s.fields[0].not_null);
        assert_eq!(s.fields[1].comment, "");
        assert_eq!(
            s.to_json(),
            r#"{"fields":[{"name":"a","type":"BIGINT","comment":"ca","notnull":true},{"name":"b","type":"STRING","comment":""}]}"#
        );
        assert_eq!(RecordSchema::parse(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn every_type_renders_upper_case_and_parses_in_any_case() {
        for t in FieldType::ALL {
            assert_eq!(t.wire_name(), t.name().to_ascii_uppercase());
            for spelling in [t.wire_name().to_string(), t.name().to_string()] {
                assert_eq!(FieldType::parse(&spelling), Some(t));
            }
            let mixed: String = t
                .name()
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(FieldType::parse(&mixed), Some(t));
            let s = RecordSchema {
                fields: vec![Field {
                    name: "f".into(),
                    field_type: t,
                    comment: String::new(),
                    not_null: false,
                }],
            };
            assert!(s
                .to_json()
                .contains(&format!(r#""type":"{}""#, t.wire_name())));
        }
    }

    #[test]
    fn same_columns_ignores_case_of_names_notnull_and_comments() {
        let ours = RecordSchema::parse(
            r#"{"fields":[{"name":"Id","type":"BIGINT","comment":"c"},{"name":"s","type":"STRING","notnull":true}]}"#,
        )
        .unwrap();
        let go = RecordSchema::parse(
            r#"{"fields":[{"name":"id","type":"BIGINT","notnull":true},{"name":"s","type":"STRING"}]}"#,
        )
        .unwrap();
        assert_ne!(ours, go);
        assert!(ours.same_columns(&go));
        let other_type = RecordSchema::parse(
            r#"{"fields":[{"name":"id","type":"BIGINT"},{"name":"s","type":"DOUBLE"}]}"#,
        )
        .unwrap();
        assert!(!ours.same_columns(&other_type));
        let shorter = RecordSchema::parse(r#"{"fields":[{"name":"id","type":"BIGINT"}]}"#).unwrap();
        assert!(!ours.same_columns(&shorter));
    }

    #[test]
    fn rejects_bad_schemas() {
        assert!(matches!(
            RecordSchema::parse(r#"{"fields":[{"name":"a","type":"blob"}]}"#),
            Err(SchemaError::UnknownType { .. })
        ));
        assert!(matches!(
            RecordSchema::parse(
                r#"{"fields":[{"name":"a","type":"bigint"},{"name":"A","type":"string"}]}"#
            ),
            Err(SchemaError::Duplicate(_))
        ));
        assert_eq!(
            RecordSchema::parse(r#"{"fields":[]}"#),
            Err(SchemaError::Empty)
        );
        assert!(matches!(
            RecordSchema::parse("nope"),
            Err(SchemaError::Json(_))
        ));
        assert!(matches!(
            RecordSchema::parse(r#"{"fields":[{"name":"1a","type":"bigint"}]}"#),
            Err(SchemaError::BadName { .. })
        ));
    }
}
