//! Typed field values and their text forms.
//!
//! JSON and protobuf records carry every value as text (protocol doc §5.4); the batch format
//! carries them binary. A [`Value`] is the one in-memory form; [`Value::parse`] reads the text
//! form for a field and [`Value::to_text`] writes the canonical text pydatahub parses back.

use crate::schema::{Field, FieldType};

/// One column value of a tuple record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// BIGINT, INTEGER, SMALLINT, TINYINT and TIMESTAMP.
    Int(i64),
    Float(f32),
    Double(f64),
    /// STRING.
    Str(String),
    /// DECIMAL, kept as the exact text the writer sent (validated as a decimal number).
    Decimal(String),
}

/// Why a value does not fit its field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("field {field:?} is not null but got null")]
    NullInNotNull { field: String },
    #[error("field {field:?} of type {field_type} cannot take the value {text:?}")]
    BadText {
        field: String,
        field_type: &'static str,
        text: String,
    },
    #[error("field {field:?} of type {field_type} got a value out of range: {value}")]
    OutOfRange {
        field: String,
        field_type: &'static str,
        value: i64,
    },
    #[error("field {field:?} of type {field_type} got a value of the wrong kind")]
    WrongKind {
        field: String,
        field_type: &'static str,
    },
}

/// Smallest and largest TIMESTAMP the SDKs accept (µs, years 1..9999).
pub const TIMESTAMP_MIN: i64 = -62_135_798_400_000_000;
pub const TIMESTAMP_MAX: i64 = 253_402_271_999_000_000;

fn int_range(t: FieldType) -> (i64, i64) {
    match t {
        FieldType::Tinyint => (i8::MIN as i64, i8::MAX as i64),
        FieldType::Smallint => (i16::MIN as i64, i16::MAX as i64),
        FieldType::Integer => (i32::MIN as i64, i32::MAX as i64),
        FieldType::Timestamp => (TIMESTAMP_MIN, TIMESTAMP_MAX),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Whether `text` is a decimal number as Python's `Decimal` prints it (`-1.25`, `1E+2`, `.5`).
fn is_decimal_text(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next().unwrap_or("");
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty() || !digits(int_part) || !digits(frac_part) {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e) && e.len() <= 9
        }
    }
}

impl Value {
    /// Reads the text form of a value for `field`; `None` is NULL.
    pub fn parse(field: &Field, text: Option<&str>) -> Result<Value, ValueError> {
        ValueRef::parse(field, text).map(ValueRef::to_value)
    }

    /// Checks that a value (from any codec) fits `field`: kind, range and nullability.
    pub fn check(&self, field: &Field) -> Result<(), ValueError> {
        self.as_value_ref().check(field)
    }

    /// The value borrowing its text.
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Int(v) => ValueRef::Int(*v),
            Value::Float(v) => ValueRef::Float(*v),
            Value::Double(v) => ValueRef::Double(*v),
            Value::Str(s) => ValueRef::Str(s),
            Value::Decimal(s) => ValueRef::Decimal(s),
        }
    }

    /// Makes this value equal to `v`, keeping this value's text allocation when both are text
    /// (a read path refilling recycled records allocates nothing for them).
    pub fn assign(&mut self, v: ValueRef<'_>) {
        match (&mut *self, v) {
            (Value::Str(s), ValueRef::Str(t)) | (Value::Decimal(s), ValueRef::Decimal(t)) => {
                s.clear();
                s.push_str(t);
            }
            _ => *self = v.to_value(),
        }
    }

    /// The canonical text form pydatahub parses back exactly; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Float(v) => float_text(*v as f64, format!("{v:?}")),
            Value::Double(v) => float_text(*v, format!("{v:?}")),
            Value::Str(s) => s.clone(),
            Value::Decimal(s) => s.clone(),
        })
    }

    /// Appends [`Value::to_text`] to `out` without an allocation of its own; `false` (and
    /// nothing written) for NULL. The read paths render every value this way.
    pub fn write_text(&self, out: &mut Vec<u8>) -> bool {
        self.as_value_ref().write_text(out)
    }
}

/// A [`Value`] whose text is borrowed: what the batch decoder reads straight out of a stored
/// batch ([`crate::batch::visit_records`]), so that a read path can write records without
/// owning their values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f32),
    Double(f64),
    Str(&'a str),
    Decimal(&'a str),
}

impl<'a> ValueRef<'a> {
    /// [`Value::parse`] without owning the text: strings and decimals borrow from `text`.
    pub fn parse(field: &Field, text: Option<&'a str>) -> Result<ValueRef<'a>, ValueError> {
        let Some(text) = text else {
            return if field.not_null {
                Err(ValueError::NullInNotNull {
                    field: field.name.clone(),
                })
            } else {
                Ok(ValueRef::Null)
            };
        };
        let bad = || ValueError::BadText {
            field: field.name.clone(),
            field_type: field.field_type.name(),
            text: text.chars().take(64).collect(),
        };
        let value = match field.field_type {
            FieldType::String => ValueRef::Str(text),
            FieldType::Decimal => {
                let t = text.trim();
                if !is_decimal_text(t) {
                    return Err(bad());
                }
                ValueRef::Decimal(t)
            }
            FieldType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => ValueRef::Bool(true),
                "false" | "0" => ValueRef::Bool(false),
                _ => return Err(bad()),
            },
            FieldType::Double => ValueRef::Double(text.trim().parse::<f64>().map_err(|_| bad())?),
            FieldType::Float => ValueRef::Float(text.trim().parse::<f32>().map_err(|_| bad())?),
            FieldType::Bigint
            | FieldType::Integer
            | FieldType::Smallint
            | FieldType::Tinyint
            | FieldType::Timestamp => ValueRef::Int(text.trim().parse::<i64>().map_err(|_| bad())?),
        };
        value.check(field)?;
        Ok(value)
    }

    /// The owned value.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(v) => Value::Int(v),
            ValueRef::Float(v) => Value::Float(v),
            ValueRef::Double(v) => Value::Double(v),
            ValueRef::Str(s) => Value::Str(s.to_string()),
            ValueRef::Decimal(s) => Value::Decimal(s.to_string()),
        }
    }

    /// [`Value::check`].
    pub fn check(self, field: &Field) -> Result<(), ValueError> {
        let wrong = || ValueError::WrongKind {
            field: field.name.clone(),
            field_type: field.field_type.name(),
        };
        match (self, field.field_type) {
            (ValueRef::Null, _) if field.not_null => Err(ValueError::NullInNotNull {
                field: field.name.clone(),
            }),
            (ValueRef::Null, _) => Ok(()),
            (
                ValueRef::Int(v),
                t @ (FieldType::Bigint
                | FieldType::Integer
                | FieldType::Smallint
                | FieldType::Tinyint
                | FieldType::Timestamp),
            ) => {
                let (lo, hi) = int_range(t);
                if v < lo || v > hi {
                    Err(ValueError::OutOfRange {
                        field: field.name.clone(),
                        field_type: t.name(),
                        value: v,
                    })
                } else {
                    Ok(())
                }
            }
            (ValueRef::Bool(_), FieldType::Boolean)
            | (ValueRef::Float(_), FieldType::Float)
            | (ValueRef::Double(_), FieldType::Double)
            | (ValueRef::Str(_), FieldType::String) => Ok(()),
            (ValueRef::Decimal(t), FieldType::Decimal) if is_decimal_text(t) => Ok(()),
            _ => Err(wrong()),
        }
    }

    /// [`Value::write_text`].
    pub fn write_text(self, out: &mut Vec<u8>) -> bool {
        use std::io::Write;
        match self {
            ValueRef::Null => return false,
            ValueRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            ValueRef::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            // Not `ryu` (faster): where two shortest spellings round-trip, it does not always
            // pick `{:?}`'s (233115890514796.12 vs .13; f32 406091.12 vs .13).
            ValueRef::Float(v) => match special_float(v as f64) {
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => write!(out, "{v:?}").expect("writing to a Vec"),
            },
            ValueRef::Double(v) => match special_float(v) {
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => write!(out, "{v:?}").expect("writing to a Vec"),
            },
            ValueRef::Str(s) | ValueRef::Decimal(s) => out.extend_from_slice(s.as_bytes()),
        }
        true
    }
}

/// The spelling of infinities and NaN (see [`float_text`]); `None` for finite numbers.
fn special_float(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v.is_infinite() {
        Some(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        None
    }
}

/// Infinities and NaN in the spelling Python's `float()` accepts.
fn float_text(v: f64, shortest: String) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        shortest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(t: FieldType, not_null: bool) -> Field {
        Field {
            name: "f".into(),
            field_type: t,
            comment: String::new(),
            not_null,
        }
    }

    #[test]
    fn parses_sdk_text_forms() {
        let d = field(FieldType::Double, false);
        assert_eq!(Value::parse(&d, Some("1.e+00")), Ok(Value::Double(1.0)));
        assert_eq!(
            Value::parse(&d, Some("1.0000000000000001e-01")),
            Ok(Value::Double(0.1))
        );
        assert_eq!(
            Value::parse(&d, Some("inf")),
            Ok(Value::Double(f64::INFINITY))
        );
        assert_eq!(Value::parse(&d, None), Ok(Value::Null));
        let b = field(FieldType::Boolean, true);
        assert_eq!(Value::parse(&b, Some("True")), Ok(Value::Bool(true)));
        assert!(Value::parse(&b, None).is_err());
        let t = field(FieldType::Tinyint, false);
        assert!(Value::parse(&t, Some("128")).is_err());
        assert_eq!(Value::parse(&t, Some("-128")), Ok(Value::Int(-128)));
        let big = field(FieldType::Bigint, false);
        assert_eq!(
            Value::parse(&big, Some("-9223372036854775808")),
            Ok(Value::Int(i64::MIN))
        );
        assert!(Value::parse(&big, Some("x")).is_err());
        let dec = field(FieldType::Decimal, false);
        for ok in ["1.25", "1E+2", "-0.5", ".5", "10"] {
            assert!(Value::parse(&dec, Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["", "1.2.3", "abc", "1e", "--1"] {
            assert!(Value::parse(&dec, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_round_trips() {
        for v in [0.1f64, 1.0, -2.5e-300, 1e300, f64::MAX] {
            let text = Value::Double(v).to_text().unwrap();
            assert_eq!(text.parse::<f64>().unwrap(), v);
        }
        assert_eq!(Value::Float(1.5).to_text().unwrap(), "1.5");
        assert_eq!(Value::Bool(false).to_text().unwrap(), "false");
        assert_eq!(Value::Null.to_text(), None);
    }

    #[test]
    fn write_text_matches_to_text() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(1.5),
            Value::Float(-0.1),
            Value::Float(f32::NAN),
            Value::Float(f32::NEG_INFINITY),
            Value::Double(0.1),
            Value::Double(-2.5e-300),
            Value::Double(1e300),
            Value::Double(f64::INFINITY),
            Value::Double(f64::NAN),
            Value::Str(String::new()),
            Value::Str("naïve \"quoted\"\n".into()),
            Value::Decimal("-1.25".into()),
        ];
        let mut out = b"prefix".to_vec();
        for v in &values {
            out.truncate(6);
            let some = v.write_text(&mut out);
            match v.to_text() {
                None => assert!(!some && out == b"prefix", "{v:?}"),
                Some(text) => assert_eq!(&out[6..], text.as_bytes(), "{v:?}"),
            }
        }
    }

    /// Floats are written as `{:?}` writes them: at its notation switches, and for many random
    /// bit patterns and random plain decimals (a faster formatter must pass this).
    #[test]
    fn floats_are_written_like_debug() {
        let check = |v: Value| {
            let mut out = Vec::new();
            v.write_text(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_text().unwrap());
        };
        let edges = [
            0.0,
            -0.0,
            1e-4,
            9.999999999999999e-5,
            f64::from_bits(1e-4f64.to_bits() + 1),
            1e-5,
            9.99e-6,
            1e16,
            9999999999999998.0,
            f64::from_bits(1e16f64.to_bits() + 1),
            1e15,
            0.1,
            1.0,
            -123456.789,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
        ];
        for d in edges {
            check(Value::Double(d));
            check(Value::Double(-d));
            check(Value::Float(d as f32));
        }
        // xorshift: deterministic, no dependency
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let bits = next();
            check(Value::Double(f64::from_bits(bits)));
            check(Value::Float(f32::from_bits(bits as u32)));
            // plain decimals around the switches and in everyday ranges
            let exp = (next() % 26) as i32 - 7;
            let d = (next() % 1_000_000_007) as f64 / 1e6 * 10f64.powi(exp);
            check(Value::Double(d));
            check(Value::Float(d as f32));
        }
    }
}
