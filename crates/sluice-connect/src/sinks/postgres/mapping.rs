//! How a connector column goes into a PostgreSQL table column: the table's [`Col`]umns as the
//! catalog describes them, and [`bind_for`], the binary encoding of each (see `pg_copy.rs`).

use sluice_proto::FieldType;

use super::pg_copy::Bind;

/// A column of the target table.
pub(super) struct Col {
    pub(super) name: String,
    /// `format_type`: the type with its modifier, e.g. `character varying(100)`.
    pub(super) type_name: String,
    pub(super) typname: String,
    pub(super) category: String,
    pub(super) key: bool,
}

/// How a connector column of topic type `ty` goes into table column `c`: the encoding, and
/// whether the encoding is the column's own binary format (else it is the staging column's,
/// cast by the INSERT).
pub(super) fn bind_for(ty: FieldType, c: &Col) -> (Bind, bool) {
    let t = c.typname.as_str();
    match ty {
        FieldType::Bigint | FieldType::Integer | FieldType::Smallint | FieldType::Tinyint => {
            match t {
                "int4" => (Bind::Int4, true),
                "int2" => (Bind::Int2, true),
                _ => (Bind::Int8, t == "int8"),
            }
        }
        FieldType::Timestamp => match t {
            "timestamp" | "timestamptz" => (Bind::Timestamp, true),
            "date" => (Bind::Date, true),
            "int4" => (Bind::Int4, true),
            "int2" => (Bind::Int2, true),
            _ => (Bind::Int8, t == "int8"),
        },
        FieldType::Double => (Bind::F64, t == "float8"),
        FieldType::Float => (Bind::F32, t == "float4"),
        FieldType::Boolean => (Bind::Bool, t == "bool"),
        FieldType::String | FieldType::Decimal => {
            (Bind::Text, matches!(t, "text" | "varchar" | "bpchar"))
        }
    }
}
