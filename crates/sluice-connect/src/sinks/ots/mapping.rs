//! From a DataHub record to a Tablestore row: which topic field feeds each primary key column
//! (the field of the same name; a missing one is a configuration error when the task opens),
//! and the type mapping of every value.
//!
//! | DataHub type | primary key column | attribute column |
//! |---|---|---|
//! | BIGINT, INTEGER, SMALLINT, TINYINT, TIMESTAMP (µs) | INTEGER | INTEGER |
//! | DOUBLE | – | DOUBLE |
//! | FLOAT | – | DOUBLE (its shortest decimal text, so 1.1 stays 1.1) |
//! | BOOLEAN | BOOLEAN | BOOLEAN |
//! | STRING | STRING, or BINARY (its UTF-8 bytes) | STRING |
//! | DECIMAL | STRING, or BINARY (its exact text) | STRING (its exact text) |
//!
//! A null attribute is left out of the row: with PUT the row is replaced, so the column is gone;
//! with UPDATE the column keeps what it held (null never deletes). A null primary key value is
//! a bad record. Every field of ColumnFields that is not a primary key column is an attribute
//! column of the same name.

use sluice_proto::{FieldType, Value};

use super::plainbuffer::Cell;
use super::proto::{PrimaryKeyOption, PrimaryKeySchema, PrimaryKeyType};
use crate::sink::{Columns, SinkError};

/// Where each column of a row comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// (column name, index in ColumnFields, type), in the table's key order.
    primary_key: Vec<(String, usize, PrimaryKeyType)>,
    /// (column name, index in ColumnFields).
    attributes: Vec<(String, usize)>,
}

/// A record as a Tablestore row: key cells in key order, attribute cells (nulls left out).
#[derive(Debug, Clone, PartialEq)]
pub struct RowCells {
    pub primary_key: Vec<Cell>,
    pub attributes: Vec<(usize, Cell)>,
}

fn key_type_fits(key: PrimaryKeyType, field: FieldType) -> bool {
    use FieldType as F;
    match key {
        PrimaryKeyType::Integer => matches!(
            field,
            F::Bigint | F::Integer | F::Smallint | F::Tinyint | F::Timestamp
        ),
        PrimaryKeyType::String | PrimaryKeyType::Binary => {
            matches!(field, F::String | F::Decimal)
        }
        PrimaryKeyType::PkBoolean => field == F::Boolean,
    }
}

impl Layout {
    /// Checks the table's primary key against the connector's columns.
    pub fn new(
        table: &str,
        columns: &Columns,
        key: &[PrimaryKeySchema],
    ) -> Result<Layout, SinkError> {
        if key.is_empty() {
            return Err(SinkError::config(format!(
                "SINK_OTS: DescribeTable of {table:?} returned no primary key"
            )));
        }
        let mut primary_key = Vec::new();
        for k in key {
            let ty = PrimaryKeyType::try_from(k.r#type).map_err(|_| {
                SinkError::config(format!(
                    "SINK_OTS: primary key column {:?} of {table:?} has an unknown type {}",
                    k.name, k.r#type
                ))
            })?;
            if k.option == Some(PrimaryKeyOption::AutoIncrement as i32) {
                return Err(SinkError::config(format!(
                    "SINK_OTS: primary key column {:?} of {table:?} is AUTO_INCREMENT, which \
                     this connector does not fill; use a table whose key comes from topic fields",
                    k.name
                )));
            }
            let Some(i) = columns.names.iter().position(|n| n == &k.name) else {
                return Err(SinkError::config(format!(
                    "SINK_OTS: table {table:?} has the primary key column {:?}, but ColumnFields \
                     ({}) has no field of that name",
                    k.name,
                    columns.names.join(", ")
                )));
            };
            if !key_type_fits(ty, columns.types[i]) {
                return Err(SinkError::config(format!(
                    "SINK_OTS: primary key column {:?} of {table:?} is {ty:?}, which the topic \
                     field's type {:?} cannot fill",
                    k.name, columns.types[i]
                )));
            }
            primary_key.push((k.name.clone(), i, ty));
        }
        let attributes = columns
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| !key.iter().any(|k| &k.name == *n))
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(Layout {
            primary_key,
            attributes,
        })
    }

    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.primary_key.iter().map(|(n, _, _)| n.as_str())
    }

    pub fn attribute_name(&self, attribute: usize) -> &str {
        &self.attributes[attribute].0
    }

    /// The row of one record's values, or why the record cannot be a row.
    pub fn row(&self, values: &[Value]) -> Result<RowCells, String> {
        let mut primary_key = Vec::with_capacity(self.primary_key.len());
        for (name, i, ty) in &self.primary_key {
            let cell = match (&values[*i], ty) {
                (Value::Null, _) => {
                    return Err(format!("primary key column {name:?} is null"));
                }
                (Value::Int(v), PrimaryKeyType::Integer) => Cell::Int(*v),
                (Value::Bool(v), PrimaryKeyType::PkBoolean) => Cell::Bool(*v),
                (Value::Str(s) | Value::Decimal(s), PrimaryKeyType::String) => Cell::Str(s.clone()),
                (Value::Str(s) | Value::Decimal(s), PrimaryKeyType::Binary) => {
                    Cell::Blob(s.as_bytes().to_vec())
                }
                (other, _) => {
                    return Err(format!(
                        "primary key column {name:?} ({ty:?}) cannot take {other:?}"
                    ))
                }
            };
            primary_key.push(cell);
        }
        let attributes = self
            .attributes
            .iter()
            .enumerate()
            .filter_map(|(a, (_, i))| attribute(&values[*i]).map(|c| (a, c)))
            .collect();
        Ok(RowCells {
            primary_key,
            attributes,
        })
    }
}

/// An attribute cell, or None for a null.
fn attribute(value: &Value) -> Option<Cell> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Int(v) => Cell::Int(*v),
        Value::Float(f) => Cell::Double(f.to_string().parse().unwrap_or(f64::from(*f))),
        Value::Double(d) => Cell::Double(*d),
        Value::Str(s) | Value::Decimal(s) => Cell::Str(s.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, ty: PrimaryKeyType) -> PrimaryKeySchema {
        PrimaryKeySchema {
            name: name.into(),
            r#type: ty as i32,
            option: None,
        }
    }

    fn columns() -> Columns {
        Columns {
            names: vec!["note".into(), "id".into(), "f".into(), "dec".into()],
            types: vec![
                FieldType::String,
                FieldType::Bigint,
                FieldType::Float,
                FieldType::Decimal,
            ],
        }
    }

    #[test]
    fn key_columns_come_from_fields_of_the_same_name() {
        let l = Layout::new("t", &columns(), &[key("id", PrimaryKeyType::Integer)]).unwrap();
        assert_eq!(l.key_names().collect::<Vec<_>>(), ["id"]);
        let row = l
            .row(&[
                Value::Null,
                Value::Int(4),
                Value::Float(1.1),
                Value::Decimal("1.50".into()),
            ])
            .unwrap();
        assert_eq!(row.primary_key, [Cell::Int(4)]);
        // note is null: left out; f is 1.1 exactly, dec its text.
        assert_eq!(
            row.attributes,
            [(1, Cell::Double(1.1)), (2, Cell::Str("1.50".into()))]
        );
        assert_eq!(l.attribute_name(1), "f");
        let null_key = l.row(&[Value::Null, Value::Null, Value::Null, Value::Null]);
        assert!(null_key.unwrap_err().contains("null"));
    }

    #[test]
    fn a_missing_or_unfit_key_field_is_a_configuration_error() {
        let missing = Layout::new("t", &columns(), &[key("uid", PrimaryKeyType::Integer)]);
        assert!(missing.unwrap_err().message.contains("\"uid\""));
        let unfit = Layout::new("t", &columns(), &[key("f", PrimaryKeyType::Integer)]);
        assert!(unfit.unwrap_err().message.contains("cannot fill"));
        let binary = Layout::new("t", &columns(), &[key("note", PrimaryKeyType::Binary)]).unwrap();
        let row = binary
            .row(&[
                Value::Str("ab".into()),
                Value::Null,
                Value::Null,
                Value::Null,
            ])
            .unwrap();
        assert_eq!(row.primary_key, [Cell::Blob(b"ab".to_vec())]);
        let mut auto = key("id", PrimaryKeyType::Integer);
        auto.option = Some(PrimaryKeyOption::AutoIncrement as i32);
        assert!(Layout::new("t", &columns(), &[auto]).is_err());
    }
}
