//! DataHub field types → Parquet (through Arrow), and rows → one Parquet file.
//!
//! | DataHub   | Arrow / Parquet                          |
//! |-----------|------------------------------------------|
//! | BIGINT    | Int64 / INT64                            |
//! | INTEGER   | Int32 / INT32                            |
//! | SMALLINT  | Int16 / INT32 (INTEGER(16, signed))      |
//! | TINYINT   | Int8 / INT32 (INTEGER(8, signed))        |
//! | DOUBLE    | Float64 / DOUBLE                         |
//! | FLOAT     | Float32 / FLOAT                          |
//! | BOOLEAN   | Boolean / BOOLEAN                        |
//! | TIMESTAMP | Timestamp(µs, UTC) / INT64 TIMESTAMP(MICROS, adjusted to UTC) |
//! | STRING    | Utf8 / BYTE_ARRAY STRING                 |
//! | DECIMAL   | Decimal128(38, 18) / FIXED_LEN_BYTE_ARRAY DECIMAL(38, 18) |
//!
//! Every column is nullable. A DECIMAL that does not fit (38, 18) exactly (more than 20
//! integer digits, or a non-zero digit past the 18th decimal) is a bad record.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sluice_proto::{FieldType, Value};

pub const DECIMAL_PRECISION: u8 = 38;
pub const DECIMAL_SCALE: i8 = 18;

/// The Arrow type of a DataHub field type.
pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Bigint => DataType::Int64,
        FieldType::Integer => DataType::Int32,
        FieldType::Smallint => DataType::Int16,
        FieldType::Tinyint => DataType::Int8,
        FieldType::Double => DataType::Float64,
        FieldType::Float => DataType::Float32,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::String => DataType::Utf8,
        FieldType::Decimal => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
    }
}

/// The file schema of the given (name, type) columns.
pub fn schema(columns: &[(String, FieldType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t)| Field::new(n, arrow_type(*t), true))
            .collect::<Vec<_>>(),
    ))
}

/// Parses a decimal text (`-1.25`, `1E+2`, `.5`) into its (38, 18) unscaled value, or `None`
/// when it does not fit exactly.
pub fn decimal_38_18(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits * 10^(exp - frac_len); unscaled = value * 10^18.
    let shift = i64::from(exp) - frac_part.len() as i64 + i64::from(DECIMAL_SCALE);
    let digits = digits.trim_start_matches('0');
    let (kept, dropped) = if shift >= 0 {
        (digits.to_string() + &"0".repeat(shift.min(64) as usize), "")
    } else {
        let cut = digits.len().saturating_sub((-shift) as usize);
        (digits[..cut].to_string(), &digits[cut..])
    };
    if dropped.bytes().any(|b| b != b'0') || kept.len() > usize::from(DECIMAL_PRECISION) {
        return None;
    }
    let v: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Checks a row before it is buffered: what would make the file refuse it.
pub fn check_row(types: &[FieldType], values: &[&Value]) -> Result<(), String> {
    for (t, v) in types.iter().zip(values) {
        if let (FieldType::Decimal, Value::Decimal(s) | Value::Str(s)) = (t, v) {
            if decimal_38_18(s).is_none() {
                return Err(format!("DECIMAL {s:?} does not fit decimal(38, 18)"));
            }
        }
    }
    Ok(())
}

static NULL: Value = Value::Null;

/// Builds the columns of `rows` (already checked) against `schema`.
pub fn record_batch<'a>(
    schema: &SchemaRef,
    types: &[FieldType],
    rows: &'a [Vec<Value>],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(types.len());
    for (c, t) in types.iter().enumerate() {
        // by reference: no cell is copied (strings would be allocated again)
        let cell = |r: &'a Vec<Value>| r.get(c).unwrap_or(&NULL);
        macro_rules! ints {
            ($b:ty, $ty:ty) => {{
                let mut b = <$b>::with_capacity(n);
                for r in rows {
                    match cell(r) {
                        Value::Int(i) => b.append_option(<$ty>::try_from(*i).ok()),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        let array: ArrayRef = match t {
            FieldType::Bigint => ints!(Int64Builder, i64),
            FieldType::Integer => ints!(Int32Builder, i32),
            FieldType::Smallint => ints!(Int16Builder, i16),
            FieldType::Tinyint => ints!(Int8Builder, i8),
            FieldType::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
                for r in rows {
                    match cell(r) {
                        Value::Int(i) => b.append_value(*i),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::Double => {
                let mut b = Float64Builder::with_capacity(n);
                for r in rows {
                    match cell(r) {
                        Value::Double(d) => b.append_value(*d),
                        Value::Float(f) => b.append_value(f64::from(*f)),
                        Value::Int(i) => b.append_value(*i as f64),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::Float => {
                let mut b = Float32Builder::with_capacity(n);
                for r in rows {
                    match cell(r) {
                        Value::Float(f) => b.append_value(*f),
                        Value::Double(d) => b.append_value(*d as f32),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for r in rows {
                    match cell(r) {
                        Value::Bool(v) => b.append_value(*v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::String => {
                let mut b = StringBuilder::with_capacity(n, n * 16);
                for r in rows {
                    match cell(r) {
                        Value::Str(s) | Value::Decimal(s) => b.append_value(s),
                        Value::Null => b.append_null(),
                        other => b.append_value(format!("{other:?}")),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::Decimal => {
                let mut b = Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)?;
                for r in rows {
                    match cell(r) {
                        Value::Decimal(s) | Value::Str(s) => b.append_option(decimal_38_18(s)),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays)
}

/// Encodes one batch as a whole Parquet file (zstd).
pub fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("sluice".into())
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    w.write(batch)?;
    w.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_fit_38_18_or_are_refused() {
        let e18 = 1_000_000_000_000_000_000i128;
        assert_eq!(decimal_38_18("1.5"), Some(e18 + e18 / 2));
        assert_eq!(decimal_38_18("-0.25"), Some(-e18 / 4));
        assert_eq!(decimal_38_18("1E+2"), Some(100 * e18));
        assert_eq!(decimal_38_18(".5"), Some(e18 / 2));
        assert_eq!(decimal_38_18("0.000000000000000001"), Some(1));
        assert_eq!(decimal_38_18("1.0000000000000000000"), Some(e18));
        assert_eq!(decimal_38_18("0.0000000000000000001"), None);
        assert_eq!(
            decimal_38_18(&"9".repeat(20)),
            Some(99_999_999_999_999_999_999 * e18)
        );
        assert_eq!(decimal_38_18(&"9".repeat(21)), None);
        assert_eq!(decimal_38_18("abc"), None);
    }

    #[test]
    fn a_batch_round_trips_through_parquet() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let cols = vec![
            ("id".to_string(), FieldType::Bigint),
            ("ts".to_string(), FieldType::Timestamp),
            ("d".to_string(), FieldType::Decimal),
            ("s".to_string(), FieldType::String),
        ];
        let types: Vec<_> = cols.iter().map(|c| c.1).collect();
        let s = schema(&cols);
        let rows = vec![
            vec![
                Value::Int(1),
                Value::Int(5),
                Value::Decimal("2.5".into()),
                Value::Str("x".into()),
            ],
            vec![Value::Null, Value::Null, Value::Null, Value::Null],
        ];
        let bytes = parquet_bytes(&record_batch(&s, &types, &rows).unwrap()).unwrap();
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let back = reader.next().unwrap().unwrap();
        assert_eq!(back.num_rows(), 2);
        assert_eq!(
            back.schema().field(1).data_type(),
            &arrow_type(FieldType::Timestamp)
        );
        assert_eq!(
            back.schema().field(2).data_type(),
            &DataType::Decimal128(38, 18)
        );
        assert_eq!(back.column(0).null_count(), 1);
    }
}
