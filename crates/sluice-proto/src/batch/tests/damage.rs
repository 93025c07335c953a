//! Every kind of damage yields its own precise error, and validate_batch agrees.

use super::*;

#[test]
fn payload_damage_is_reported() {
    for code in [0, 3] {
        let zstd = frame(&hex("28b52ffd 0000 0000"), code, 40, 1);
        assert!(matches!(
            check(&zstd, TopicKind::Blob),
            Err(BatchError::Decompress {
                compression: BatchCompression::Zstd,
                ..
            })
        ));
    }
    assert!(matches!(
        check(&frame(b"\xff\xff\xff\xff", 2, 100, 1), TopicKind::Blob),
        Err(BatchError::Decompress {
            compression: BatchCompression::Lz4,
            ..
        })
    ));
    assert!(matches!(
        check(&frame(b"\x78\x9cgarbage", 3, 100, 1), TopicKind::Blob),
        Err(BatchError::Decompress {
            compression: BatchCompression::Zlib,
            ..
        })
    ));
    let lz4 = frame(b"\x10a", 2, 1 << 20, 1);
    assert!(matches!(
        check(&lz4, TopicKind::Blob),
        Err(BatchError::RawSizeTooLarge { limit: 574, .. })
    ));
    let huge = frame(&[0; 8], 3, u32::MAX, 1);
    assert!(matches!(
        check(&huge, TopicKind::Blob),
        Err(BatchError::RawSizeTooLarge {
            limit: MAX_RAW_SIZE,
            ..
        })
    ));
    // A valid LZ4 block whose raw_size overstates its content.
    let plain = encode_batch(&[blob(&[7; 300], &[])], None, -1, BatchCompression::None);
    let payload = &plain[HEADER_SIZE..];
    let block = lz4_flex::block::compress(payload);
    assert!(check(
        &frame(&block, 2, payload.len() as u32 + 1, 1),
        TopicKind::Blob
    )
    .is_err());
    assert!(check(&frame(&block, 2, payload.len() as u32, 1), TopicKind::Blob).is_ok());
    let err = check(
        &frame(payload, 0, payload.len() as u32 - 1, 1),
        TopicKind::Blob,
    );
    assert_eq!(
        err,
        Err(BatchError::RawSizeMismatch {
            declared: payload.len() as u32 - 1,
            actual: payload.len()
        })
    );
}

#[test]
fn header_damage_is_reported() {
    let vector = hex(BLOB_VECTOR);
    assert_eq!(
        check(&vector[..10], TopicKind::Blob),
        Err(BatchError::TooShort { len: 10 })
    );
    let mut bad = vector.clone();
    bad[0] = b'X';
    assert_eq!(
        check(&bad, TopicKind::Blob),
        Err(BatchError::BadMagic { found: *b"XHUB" })
    );
    let mut bad = vector.clone();
    bad[4] = 2;
    assert_eq!(
        check(&bad, TopicKind::Blob),
        Err(BatchError::UnsupportedVersion { version: 2 })
    );
    // Version 1 is the Go SDK v1.x's layout: a version-0 body under it is not one.
    bad[4] = 1;
    assert!(matches!(
        check(&bad, TopicKind::Blob),
        Err(BatchError::BadDataOffset { .. })
    ));
    assert_eq!(
        check(&vector[..75], TopicKind::Blob),
        Err(BatchError::BadLength {
            declared: 76,
            actual: 75
        })
    );
    let mut bad = vector.clone();
    bad[8] = 77;
    assert_eq!(
        check(&bad, TopicKind::Blob),
        Err(BatchError::BadLength {
            declared: 77,
            actual: 76
        })
    );
    let mut bad = vector.clone();
    bad[60] ^= 1;
    assert!(matches!(
        check(&bad, TopicKind::Blob),
        Err(BatchError::BadCrc {
            expected: 0x6b478e2a,
            ..
        })
    ));
}

#[test]
fn record_structure_damage_is_reported() {
    use BatchError::*;
    let vector = hex(BLOB_VECTOR);
    let blob_kind = TopicKind::Blob;
    let with = |edit: &dyn Fn(&mut Vec<u8>)| check(&patch(&vector, edit), blob_kind);
    let count = |n: u32| {
        let mut b = vector.clone();
        b[22..26].copy_from_slice(&n.to_le_bytes());
        check(&b, blob_kind)
    };
    assert_eq!(
        count(2),
        Err(MissingRecords {
            declared: 2,
            found: 1
        })
    );
    assert_eq!(
        count(0),
        Err(TrailingBytes {
            records: 0,
            offset: 0,
            trailing: 50
        })
    );
    let mut two = patch(&vector, |p| p.extend_from_slice(&[0; 10]));
    two[22] = 2;
    assert_eq!(
        check(&two, blob_kind),
        Err(RecordTruncated {
            record: 1,
            offset: 50,
            available: 10
        })
    );
    assert_eq!(
        with(&|p| p[8] = 51),
        Err(BadTotalSize {
            record: 0,
            offset: 0,
            total_size: 51,
            available: 50
        })
    );
    assert_eq!(
        with(&|p| p[8] = 20),
        Err(BadTotalSize {
            record: 0,
            offset: 0,
            total_size: 20,
            available: 50
        })
    );
    assert_eq!(
        with(&|p| p[12] = 47),
        Err(BadAttrOffset {
            record: 0,
            attr_offset: 47,
            total_size: 50,
            min: 36,
            max: 46
        })
    );
    assert_eq!(
        with(&|p| p[4] = 0),
        Err(BlobSchemaVersion {
            record: 0,
            version: -256
        })
    );
    assert_eq!(
        with(&|p| p[16] = 2),
        Err(FieldCountMismatch {
            record: 0,
            field_count: 2,
            expected: 1
        })
    );
    assert_eq!(with(&|p| p[20] = 0), Err(NullBlob { record: 0 }));
    assert_eq!(
        with(&|p| p[36..40].copy_from_slice(&[0xff; 4])),
        Err(BadAttributeCount {
            record: 0,
            count: -1
        })
    );
    assert_eq!(
        with(&|p| p[40] = 9),
        Err(AttributeOutOfBounds {
            record: 0,
            attribute: 0,
            offset: 40,
            total_size: 50
        })
    );
    assert_eq!(
        with(&|p| p[36] = 0),
        Err(AttributesSize {
            record: 0,
            end: 40,
            total_size: 50
        })
    );
    assert_eq!(
        with(&|p| p[44] = 0xff),
        Err(AttributeUtf8 {
            record: 0,
            attribute: 0,
            part: "key"
        })
    );
    // pydatahub's non-ASCII attribute bug: lengths counted in characters.
    let mut bug = hex("00000000 ffffffff 32000000 24000000 01000000 0100000000000000 68656c6c6f000085 01000000 01000000");
    bug.extend_from_slice("é".as_bytes());
    bug.extend_from_slice(&hex("01000000 76"));
    assert!(check(&frame(&bug, 0, bug.len() as u32, 1), blob_kind).is_err());
    // A long blob whose offset or length points outside the variable area.
    let long = encode_batch(
        &[blob(b"0123456789", &[])],
        None,
        -1,
        BatchCompression::None,
    );
    assert_eq!(
        check(&long, blob_kind).unwrap()[0].1.data,
        RecordData::Blob(b"0123456789".to_vec())
    );
    for (slot, offset, length) in [
        ("0a00000000000000", 0, 10),
        ("0a0000001e000000", 30, 10),
        ("ffffffff14000000", 20, -1),
    ] {
        let err = check(
            &patch(&long, |p| p[28..36].copy_from_slice(&hex(slot))),
            blob_kind,
        );
        let want = ByteFieldOutOfBounds {
            record: 0,
            field: 0,
            name: "<blob>".into(),
            length,
            offset,
            area_start: 36,
            area_end: 52,
        };
        assert_eq!(err, Err(want));
    }
}

#[test]
fn value_damage_is_reported() {
    let s = schema(&[
        ("t", FieldType::Tinyint, true),
        ("i", FieldType::Integer, false),
        ("b", FieldType::Boolean, false),
        ("s", FieldType::String, false),
        ("d", FieldType::Decimal, false),
        ("ts", FieldType::Timestamp, false),
    ]);
    let lookup = (0, s.clone());
    let kind = TopicKind::Tuple(&lookup);
    let good = vec![
        Value::Int(1),
        Value::Int(-1),
        Value::Bool(true),
        Value::Str("s".into()),
        Value::Decimal("1.5".into()),
        Value::Int(0),
    ];
    let encode = |values: Vec<Value>| {
        encode_batch(&[tuple(values, &[])], Some(&s), 0, BatchCompression::None)
    };
    let with = |i: usize, v: Value| {
        let mut values = good.clone();
        values[i] = v;
        check(&encode(values), kind)
    };
    let value_err = |field: usize, source: ValueError| {
        Err(BatchError::Value {
            record: 0,
            field,
            source,
        })
    };
    assert_eq!(
        with(0, Value::Null),
        value_err(0, ValueError::NullInNotNull { field: "t".into() })
    );
    assert_eq!(
        with(0, Value::Int(300)),
        value_err(
            0,
            ValueError::OutOfRange {
                field: "t".into(),
                field_type: "tinyint",
                value: 300
            }
        )
    );
    assert_eq!(
        with(5, Value::Int(i64::MAX)),
        value_err(
            5,
            ValueError::OutOfRange {
                field: "ts".into(),
                field_type: "timestamp",
                value: i64::MAX
            }
        )
    );
    assert_eq!(
        with(4, Value::Decimal("1.2.3".into())),
        Err(BatchError::BadDecimal {
            record: 0,
            field: 4,
            name: "d".into(),
            text: "1.2.3".into()
        })
    );
    assert_eq!(
        with(1, Value::Str("x".into())),
        value_err(
            1,
            ValueError::OutOfRange {
                field: "i".into(),
                field_type: "integer",
                value: 0x8100_0000_0000_0078u64 as i64
            }
        )
    );
    let bytes = encode(good.clone());
    let edit = |i: usize, word: &str| {
        check(
            &patch(&bytes, |p| {
                p[28 + 8 * i..36 + 8 * i].copy_from_slice(&hex(word))
            }),
            kind,
        )
    };
    assert_eq!(
        edit(2, "0200000000000000"),
        Err(BatchError::BadBoolean {
            record: 0,
            field: 2,
            name: "b".into(),
            byte: 2
        })
    );
    assert_eq!(
        edit(3, "c328000000000082"),
        Err(BatchError::BadUtf8 {
            record: 0,
            field: 3,
            name: "s".into()
        })
    );
    // Narrow integers: the low bytes count; upper bytes may be zero or the sign extension.
    let value_at = |r: Result<Vec<(i32, Record)>, BatchError>, i: usize| match &r.unwrap()[0].1.data
    {
        RecordData::Tuple(v) => v[i].clone(),
        RecordData::Blob(_) => panic!("not a tuple"),
    };
    assert_eq!(value_at(edit(1, "ffffffff00000000"), 1), Value::Int(-1));
    assert_eq!(value_at(edit(0, "ff00000000000000"), 0), Value::Int(-1));
    assert_eq!(value_at(edit(0, "80ffffffffffffff"), 0), Value::Int(-128));
    assert_eq!(
        edit(1, "ffffffff01000000"),
        value_err(
            1,
            ValueError::OutOfRange {
                field: "i".into(),
                field_type: "integer",
                value: 0x1_ffff_ffff
            }
        )
    );
    let short = encode_batch(
        &[tuple(vec![Value::Int(1)], &[])],
        None,
        0,
        BatchCompression::None,
    );
    assert_eq!(
        check(&short, kind),
        Err(BatchError::FieldCountMismatch {
            record: 0,
            field_count: 1,
            expected: 6
        })
    );
}

#[test]
fn messages_name_the_place() {
    let e = BatchError::Value {
        record: 3,
        field: 2,
        source: ValueError::NullInNotNull {
            field: "name".into(),
        },
    };
    assert_eq!(
        e.to_string(),
        "record 3 field #2: field \"name\" is not null but got null"
    );
    let e = BatchError::ByteFieldOutOfBounds {
        record: 1,
        field: 0,
        name: "s".into(),
        length: 10,
        offset: 99,
        area_start: 36,
        area_end: 52,
    };
    assert_eq!(
        e.to_string(),
        "record 1 field #0 (\"s\"): 10 bytes at record offset 16+99 do not lie inside the variable area 36..52"
    );
    assert!(BatchError::BadMagic { found: *b"XHUB" }
        .to_string()
        .contains("[58, 48, 55, 42]"));
}
