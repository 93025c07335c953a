use std::collections::BTreeMap;
use std::io::Write;

use super::*;
use crate::record::{Record, RecordData};
use crate::schema::{Field, FieldType};
use crate::value::{Value, ValueError};

mod damage;
mod go_sdk;
mod go_v1;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const BLOB_VECTOR: &str = "44485542 00000000 4c000000 32000000 2a8e476b 0800 01000000
    00000000 ffffffff 32000000 24000000 01000000 0100000000000000 68656c6c6f000085
    01000000 01000000 6b 01000000 76";

const TUPLE_VECTOR: &str = "44485542 00000000 72000000 58000000 b43f7cf9 0800 01000000
    00000000 00000000 58000000 54000000 05000000 1f00000000000000 feffffffffffffff
    0a00000034000000 000000000000e03f 0100000000000000 00401e18240a0600
    646174616875622d7273000000000000 00000000";

fn field(name: &str, field_type: FieldType, not_null: bool) -> Field {
    Field {
        name: name.into(),
        field_type,
        comment: String::new(),
        not_null,
    }
}

fn schema(fields: &[(&str, FieldType, bool)]) -> RecordSchema {
    RecordSchema {
        fields: fields.iter().map(|(n, t, nn)| field(n, *t, *nn)).collect(),
    }
}

fn vector_schema() -> RecordSchema {
    schema(&[
        ("id", FieldType::Bigint, false),
        ("name", FieldType::String, false),
        ("score", FieldType::Double, false),
        ("ok", FieldType::Boolean, false),
        ("ts", FieldType::Timestamp, false),
    ])
}

fn all_types(not_null: bool) -> RecordSchema {
    use FieldType::*;
    let types = [
        Bigint, Integer, Smallint, Tinyint, Double, Float, Boolean, Timestamp, String, Decimal,
    ];
    RecordSchema {
        fields: types
            .iter()
            .map(|t| field(&format!("f_{}", t.name()), *t, not_null))
            .collect(),
    }
}

fn tuple(values: Vec<Value>, attrs: &[(&str, &str)]) -> Record {
    Record {
        data: RecordData::Tuple(values),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn blob(bytes: &[u8], attrs: &[(&str, &str)]) -> Record {
    Record {
        data: RecordData::Blob(bytes.to_vec()),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Builds a batch around a payload with a correct length and CRC.
fn frame(payload: &[u8], code: u16, raw_size: u32, count: u32) -> Vec<u8> {
    let header = BatchHeader {
        version: 0,
        length: (HEADER_SIZE + payload.len()) as u32,
        raw_size,
        crc: crc32c::crc32c(payload),
        attributes: ATTRIBUTES_BASE | code,
        record_count: count,
    };
    [&header.to_bytes()[..], payload].concat()
}

/// Edits the payload of an uncompressed batch and fixes up the header.
fn patch(batch: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let header = parse_header(batch).unwrap();
    let mut payload = batch[HEADER_SIZE..].to_vec();
    edit(&mut payload);
    frame(&payload, 0, payload.len() as u32, header.record_count)
}

/// Decodes, and checks that validate_batch and visit_records agree.
fn check(bytes: &[u8], kind: TopicKind) -> Result<Vec<(i32, Record)>, BatchError> {
    let decoded = decode_batch(bytes, kind);
    match (&decoded, validate_batch(bytes, kind)) {
        (Ok(records), Ok(count)) => assert_eq!(records.len(), count as usize),
        (Err(a), Err(b)) => assert_eq!(a, &b),
        (a, b) => panic!("decode {a:?} but validate {b:?}"),
    }
    let mut visited = Vec::new();
    let count = visit_records(bytes, kind, |r| {
        visited.push((r.schema_version, Record::from_ref(r)));
        std::ops::ControlFlow::Continue(())
    });
    match (&decoded, count) {
        (Ok(records), Ok(count)) => {
            assert_eq!(count as usize, records.len());
            assert_same(&visited, records);
        }
        (Err(a), Err(b)) => assert_eq!(a, &b),
        (a, b) => panic!("decode {a:?} but visit {b:?}"),
    }
    decoded
}

#[test]
fn visiting_stops_where_asked_and_checks_nothing_after() {
    let s = schema(&[
        ("a", FieldType::Bigint, false),
        ("b", FieldType::String, true),
    ]);
    let records: Vec<Record> = (0..5)
        .map(|i| {
            tuple(
                vec![Value::Int(i), Value::Str(format!("r{i}"))],
                &[("k", "v")],
            )
        })
        .collect();
    let lookup = (0, s.clone());
    let bytes = round_trip(&records, &s, 0, BatchCompression::None);
    let mut seen = Vec::new();
    let visited = visit_records(&bytes, TopicKind::Tuple(&lookup), |r| {
        seen.push(Record::from_ref(r));
        if seen.len() == 2 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    assert_eq!(visited, Ok(2));
    assert_eq!(seen, records[..2]);
    // A damaged last record: decoding fails, a visit that stops before it does not.
    let damaged = patch(&bytes, |p| {
        let n = p.len();
        p[n - 1] = 0xff;
    });
    assert!(decode_batch(&damaged, TopicKind::Tuple(&lookup)).is_err());
    let stop_early = visit_records(&damaged, TopicKind::Tuple(&lookup), |_| {
        std::ops::ControlFlow::Break(())
    });
    assert_eq!(stop_early, Ok(1));
}

fn key(v: &Value) -> String {
    match v {
        Value::Float(f) => format!("float {:08x}", f.to_bits()),
        Value::Double(d) => format!("double {:016x}", d.to_bits()),
        other => format!("{other:?}"),
    }
}

/// Equality with floats compared bitwise (NaN-safe).
fn assert_same(got: &[(i32, Record)], want: &[(i32, Record)]) {
    assert_eq!(got.len(), want.len());
    for ((gv, g), (wv, w)) in got.iter().zip(want) {
        assert_eq!(gv, wv);
        assert_eq!(g.attributes, w.attributes);
        match (&g.data, &w.data) {
            (RecordData::Tuple(a), RecordData::Tuple(b)) => {
                assert_eq!(
                    a.iter().map(key).collect::<Vec<_>>(),
                    b.iter().map(key).collect::<Vec<_>>()
                )
            }
            (a, b) => assert_eq!(a, b),
        }
    }
}

fn round_trip(records: &[Record], s: &RecordSchema, version: i32, c: BatchCompression) -> Vec<u8> {
    let bytes = encode_batch(records, Some(s), version, c);
    let lookup = (version, s.clone());
    let got = check(&bytes, TopicKind::Tuple(&lookup)).unwrap();
    let want: Vec<_> = records.iter().map(|r| (version, r.clone())).collect();
    assert_same(&got, &want);
    bytes
}

#[test]
fn blob_vector_is_exact() {
    let vector = hex(BLOB_VECTOR);
    let record = blob(b"hello", &[("k", "v")]);
    assert_eq!(
        encode_batch(
            std::slice::from_ref(&record),
            None,
            0,
            BatchCompression::None
        ),
        vector
    );
    assert_eq!(check(&vector, TopicKind::Blob).unwrap(), vec![(-1, record)]);
    let header = parse_header(&vector).unwrap();
    assert_eq!(
        header,
        BatchHeader {
            version: 0,
            length: 76,
            raw_size: 50,
            crc: 0x6b478e2a,
            attributes: 8,
            record_count: 1
        }
    );
    assert_eq!(header.compression(), BatchCompression::None);
}

#[test]
fn tuple_vector_is_exact_and_decodes() {
    let vector = hex(TUPLE_VECTOR);
    let s = vector_schema();
    let values = vec![
        Value::Int(-2),
        Value::Str("datahub-rs".into()),
        Value::Double(0.5),
        Value::Bool(true),
        Value::Int(1_700_000_000_000_000),
    ];
    let lookup = (0, s.clone());
    assert_eq!(
        check(&vector, TopicKind::Tuple(&lookup)).unwrap(),
        vec![(0, tuple(values.clone(), &[]))]
    );
    // A 10-byte string gets 6 pad bytes from both pydatahub and the real service.
    assert_eq!(
        encode_batch(&[tuple(values, &[])], Some(&s), 0, BatchCompression::None),
        vector
    );
}

#[test]
fn follows_stored_offsets_whatever_the_padding() {
    // pydatahub pads an 8-byte value with 8 more zero bytes; the real service does not pad it.
    let s = schema(&[("s", FieldType::String, false)]);
    let lookup = (0, s.clone());
    let mut payload =
        hex("00000000 00000000 38000000 34000000 01000000 0100000000000000 0800000014000000");
    payload.extend_from_slice(b"abcdefgh\0\0\0\0\0\0\0\0");
    payload.extend_from_slice(&[0; 4]);
    let pydatahub = frame(&payload, 0, payload.len() as u32, 1);
    let want = vec![(0, tuple(vec![Value::Str("abcdefgh".into())], &[]))];
    assert_eq!(check(&pydatahub, TopicKind::Tuple(&lookup)).unwrap(), want);
    let ours = round_trip(&[want[0].1.clone()], &s, 0, BatchCompression::None);
    assert_eq!(
        &ours[HEADER_SIZE + 8..HEADER_SIZE + 16],
        &hex("30000000 2c000000")[..]
    );
}

#[test]
fn byte_fields_inline_up_to_seven_bytes() {
    let s = schema(&[
        ("a", FieldType::String, false),
        ("b", FieldType::String, false),
        ("c", FieldType::String, false),
    ]);
    let record = tuple(
        vec![
            Value::Str(String::new()),
            Value::Str("abcdefg".into()),
            Value::Str("abcdefgh".into()),
        ],
        &[],
    );
    let bytes = round_trip(&[record], &s, 3, BatchCompression::None);
    let slots = &bytes[HEADER_SIZE + 28..HEADER_SIZE + 52];
    assert_eq!(
        slots,
        &hex("0000000000000080 6162636465666787 0800000024000000")[..]
    );
    assert_eq!(&bytes[HEADER_SIZE + 52..HEADER_SIZE + 60], b"abcdefgh");
}

#[test]
fn every_type_round_trips() {
    let s = all_types(false);
    let long = "x".repeat(1000);
    let rows = vec![
        vec![
            Value::Int(i64::MIN),
            Value::Int(i32::MIN as i64),
            Value::Int(i16::MIN as i64),
            Value::Int(-128),
            Value::Double(f64::MIN),
            Value::Float(f32::MIN),
            Value::Bool(false),
            Value::Int(crate::value::TIMESTAMP_MIN),
            Value::Str(String::new()),
            Value::Decimal("-0.5".into()),
        ],
        vec![
            Value::Int(i64::MAX),
            Value::Int(i32::MAX as i64),
            Value::Int(i16::MAX as i64),
            Value::Int(127),
            Value::Double(f64::NAN),
            Value::Float(f32::NAN),
            Value::Bool(true),
            Value::Int(crate::value::TIMESTAMP_MAX),
            Value::Str("héllo wörld 日本語 🎉".into()),
            Value::Decimal("1E+2".into()),
        ],
        vec![
            Value::Int(0),
            Value::Int(-1),
            Value::Int(-1),
            Value::Int(-1),
            Value::Double(-0.0),
            Value::Float(f32::INFINITY),
            Value::Bool(true),
            Value::Int(0),
            Value::Str(long.clone()),
            Value::Decimal(format!("{long}.5").replace('x', "9")),
        ],
        vec![Value::Null; 10],
    ];
    let records: Vec<_> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            tuple(
                row,
                &[("ключ", "значение"), ("", ""), ("i", &i.to_string())],
            )
        })
        .collect();
    for c in [
        BatchCompression::None,
        BatchCompression::Lz4,
        BatchCompression::Zlib,
        BatchCompression::Deflate,
    ] {
        round_trip(&records, &s, 7, c);
    }
    let blobs = [
        blob(&[0, 1, 2, 255], &[]),
        blob(long.as_bytes(), &[("a", "b")]),
        blob(b"1234567", &[]),
    ];
    let bytes = encode_batch(&blobs, None, 0, BatchCompression::None);
    let got = check(&bytes, TopicKind::Blob).unwrap();
    assert_eq!(
        got,
        blobs.iter().map(|b| (-1, b.clone())).collect::<Vec<_>>()
    );
}

#[test]
fn more_than_64_fields_use_a_wider_bitmap() {
    let fields: Vec<_> = (0..70)
        .map(|i| field(&format!("f{i}"), FieldType::Bigint, false))
        .collect();
    let s = RecordSchema { fields };
    let values = (0..70)
        .map(|i| {
            if i % 3 == 0 {
                Value::Null
            } else {
                Value::Int(i)
            }
        })
        .collect();
    let bytes = round_trip(&[tuple(values, &[])], &s, 0, BatchCompression::None);
    assert_eq!(
        &bytes[HEADER_SIZE + 16..HEADER_SIZE + 20],
        &70i32.to_le_bytes()
    );
    assert_eq!(
        &bytes[HEADER_SIZE + 20..HEADER_SIZE + 36],
        &hex("b66ddbb66ddbb66d 1b00000000000000")[..]
    );
}

#[test]
fn records_may_carry_different_schema_versions() {
    let s0 = schema(&[("a", FieldType::Bigint, false)]);
    let s1 = schema(&[
        ("a", FieldType::Bigint, false),
        ("b", FieldType::String, false),
    ]);
    let r0 = tuple(vec![Value::Int(1)], &[]);
    let r1 = tuple(vec![Value::Int(2), Value::Str("two".into())], &[]);
    let b0 = encode_batch(
        std::slice::from_ref(&r0),
        Some(&s0),
        0,
        BatchCompression::None,
    );
    let b1 = encode_batch(
        std::slice::from_ref(&r1),
        Some(&s1),
        1,
        BatchCompression::None,
    );
    let payload = [&b0[HEADER_SIZE..], &b1[HEADER_SIZE..]].concat();
    let bytes = frame(&payload, 0, payload.len() as u32, 2);
    let lookup: BTreeMap<i32, RecordSchema> = [(0, s0.clone()), (1, s1)].into();
    assert_eq!(
        check(&bytes, TopicKind::Tuple(&lookup)).unwrap(),
        vec![(0, r0), (1, r1)]
    );
    let only0 = (0, s0);
    assert_eq!(
        check(&bytes, TopicKind::Tuple(&only0)),
        Err(BatchError::UnknownSchemaVersion {
            record: 1,
            version: 1
        })
    );
}

#[test]
fn compression_is_kept_only_when_smaller() {
    let s = vector_schema();
    let records: Vec<_> = (0..50)
        .map(|i| {
            let values = vec![
                Value::Int(i),
                Value::Str("a fairly repetitive string value".into()),
                Value::Double(0.25),
                Value::Bool(i % 2 == 0),
                Value::Int(1_700_000_000_000_000 + i),
            ];
            tuple(values, &[("source", "unit-test")])
        })
        .collect();
    let plain = round_trip(&records, &s, 0, BatchCompression::None);
    for (c, attrs) in [
        (BatchCompression::Lz4, 0x0a),
        (BatchCompression::Zlib, 0x0b),
        (BatchCompression::Deflate, 0x08),
    ] {
        let bytes = round_trip(&records, &s, 0, c);
        let header = parse_header(&bytes).unwrap();
        assert_eq!(header.attributes, attrs, "{c:?}");
        assert_eq!(header.raw_size as usize, plain.len() - HEADER_SIZE);
        assert_eq!(header.length as usize, bytes.len());
        if c != BatchCompression::Deflate {
            assert!(bytes.len() < plain.len());
        }
    }
    // Nothing to gain: stored uncompressed with code 0.
    for c in [BatchCompression::Lz4, BatchCompression::Zlib] {
        let empty = encode_batch(&[], None, -1, c);
        assert_eq!(
            empty,
            hex("44485542 00000000 1a000000 00000000 00000000 0800 00000000")
        );
        assert_eq!(check(&empty, TopicKind::Blob), Ok(vec![]));
    }
    let mut seed = 0x2545f491u32;
    let noise: Vec<u8> = (0..200)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 24) as u8
        })
        .collect();
    let bytes = encode_batch(&[blob(&noise, &[])], None, -1, BatchCompression::Zlib);
    assert_eq!(parse_header(&bytes).unwrap().attributes, 0x08);
}

#[test]
fn compression_code_one_reads_zlib_or_stored_bytes() {
    let plain = encode_batch(&[blob(&[7; 300], &[])], None, -1, BatchCompression::None);
    let payload = &plain[HEADER_SIZE..];
    let stored = frame(payload, 1, payload.len() as u32, 1);
    assert_eq!(
        check(&stored, TopicKind::Blob).unwrap()[0].1.data,
        RecordData::Blob(vec![7; 300])
    );
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(payload).unwrap();
    let zlib = frame(&z.finish().unwrap(), 1, payload.len() as u32, 1);
    assert_eq!(
        check(&zlib, TopicKind::Blob).unwrap()[0].1.data,
        RecordData::Blob(vec![7; 300])
    );
}

#[test]
fn sizes_are_those_of_the_uncompressed_batch() {
    let blob = |n: usize| Record {
        data: RecordData::Blob(vec![b'z'; n]),
        attributes: vec![],
    };
    let records = [blob(10), blob(300_000), blob(20)];
    let plain = encode_batch(&records, None, -1, BatchCompression::None);
    let zipped = encode_batch(&records, None, -1, BatchCompression::Zlib);
    assert!(zipped.len() < plain.len() / 10);
    let largest =
        encode_batch(&records[1..2], None, -1, BatchCompression::None).len() - HEADER_SIZE;
    for bytes in [&plain, &zipped] {
        let sizes = validate_batch_sizes(bytes, TopicKind::Blob).unwrap();
        assert_eq!(
            sizes,
            BatchSizes {
                records: 3,
                raw_bytes: plain.len(),
                largest_record: largest,
            }
        );
    }
}
