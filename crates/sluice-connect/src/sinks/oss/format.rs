//! What SINK_OSS writes into an object, as DataHub's OSS connector does: a TUPLE topic's
//! records as CSV (RFC 4180: `,` between columns in `ColumnFields` order, `\n` after each
//! record, a field quoted with `"` when it holds `,` `"` CR or LF or is an empty string, `"`
//! doubled inside), NULL as an empty unquoted field; a BLOB topic's payloads appended as they
//! are (no separator: the writer chooses its own delimiters).
//!
//! Values: BOOLEAN `true`/`false`, integers and TIMESTAMP (µs since the epoch) in decimal,
//! FLOAT/DOUBLE in Rust's shortest round-trip form, DECIMAL as the text the writer sent.

use sluice_proto::Value;

use crate::sink::SinkData;

/// Appends one record to `out`.
pub fn encode(data: &SinkData, out: &mut Vec<u8>) {
    match data {
        SinkData::Blob(bytes) => out.extend_from_slice(bytes),
        SinkData::Tuple(values) => {
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                field(v, out);
            }
            out.push(b'\n');
        }
    }
}

fn field(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(f.to_string().as_bytes()),
        Value::Double(d) => out.extend_from_slice(d.to_string().as_bytes()),
        Value::Decimal(t) => out.extend_from_slice(t.as_bytes()),
        Value::Str(s) => quoted(s, out),
    }
}

fn quoted(s: &str, out: &mut Vec<u8>) {
    let needs = s.is_empty() || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(values: Vec<Value>) -> String {
        let mut out = Vec::new();
        encode(&SinkData::Tuple(values), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_follows_rfc4180() {
        assert_eq!(
            line(vec![
                Value::Int(-7),
                Value::Str("plain".into()),
                Value::Null,
                Value::Str(String::new()),
                Value::Str("a,\"b\"\nc".into()),
                Value::Bool(true),
                Value::Double(0.5),
                Value::Decimal("12.30".into()),
            ]),
            "-7,plain,,\"\",\"a,\"\"b\"\"\nc\",true,0.5,12.30\n"
        );
        let mut out = b"x".to_vec();
        encode(&SinkData::Blob(b"\x00raw".to_vec()), &mut out);
        assert_eq!(out, b"x\x00raw");
    }
}
