//! Batch version 1 as the Go SDK v1.x writes it, built by hand from its serializer
//! (aliyun-datahub-sdk-go HEAD 543cc08): the 40-byte header of batch_serializer.go:75-89 with
//! the values of :136-148, and Avro records whose schema avro_helper.go:29-130 derives from the
//! topic schema (nullable field = union [null, T]; `__dh_attribute__` = union [null,
//! map<string>]) and whose values data_serializer.go:115-143 converts (TINYINT/SMALLINT/INTEGER
//! as int, BIGINT/TIMESTAMP as long, DECIMAL as its text). hamba/avro v2.28.0 (the SDK's
//! go.mod) writes a union index as a zigzag long, a map block as a negative count followed by
//! the block's byte size (writer.go:161-168), and a record without attributes as
//! `{"map": nil}`, i.e. branch 1 with an empty map: `02 00`.

use super::*;
use crate::batch::v1::{parse_avro_header, AVRO_HEADER_SIZE, AVRO_MIN_HEADER_SIZE};

/// id BIGINT not null, name STRING, f FLOAT, d DOUBLE not null, b BOOLEAN, t TINYINT,
/// dec DECIMAL, ts TIMESTAMP not null.
fn go_schema() -> RecordSchema {
    schema(&[
        ("id", FieldType::Bigint, true),
        ("name", FieldType::String, false),
        ("f", FieldType::Float, false),
        ("d", FieldType::Double, true),
        ("b", FieldType::Boolean, false),
        ("t", FieldType::Tinyint, false),
        ("dec", FieldType::Decimal, false),
        ("ts", FieldType::Timestamp, true),
    ])
}

/// Record 1: (-2, "dh", 1.5, 0.5, true, NULL, "1.25", 1000), no attributes.
/// Record 2: (64, NULL, NULL, -1.0, false, -128, NULL, 0), attributes k=v.
const GO_TUPLE_PAYLOAD: &str = "
    03  02 04 6468  02 0000c03f  000000000000e03f  02 01  00  02 08 312e3235  d00f  02 00
    8001  00  00  000000000000f0bf  02 00  02 ff01  00  00  02 01 08 026b 0276 00";

/// BLOB "hello" with no attributes, then BLOB "" with attributes k=v.
const GO_BLOB_PAYLOAD: &str = "0a 68656c6c6f 02 00   00 02 01 08 026b 0276 00";

fn go_records() -> Vec<Record> {
    vec![
        tuple(
            vec![
                Value::Int(-2),
                Value::Str("dh".into()),
                Value::Float(1.5),
                Value::Double(0.5),
                Value::Bool(true),
                Value::Null,
                Value::Decimal("1.25".into()),
                Value::Int(1000),
            ],
            &[],
        ),
        tuple(
            vec![
                Value::Int(64),
                Value::Null,
                Value::Null,
                Value::Double(-1.0),
                Value::Bool(false),
                Value::Int(-128),
                Value::Null,
                Value::Int(0),
            ],
            &[("k", "v")],
        ),
    ]
}

/// batch_serializer.go:75-89 (`serializeBatchHeader`), with `header` = 40 (HEAD) or 36 (v1.0.x,
/// no column count); length = header + stored, CRC-32C (utils.go:16-19) of the stored bytes.
#[allow(clippy::too_many_arguments)]
fn go_v1(
    payload: &[u8],
    stored: &[u8],
    attribute: u16,
    version: i32,
    count: u32,
    columns: u32,
    header: usize,
) -> Vec<u8> {
    let mut out = b"DHUB".to_vec();
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&((header + stored.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(stored).to_le_bytes());
    out.extend_from_slice(&attribute.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(header as u32).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    if header == 40 {
        out.extend_from_slice(&columns.to_le_bytes());
    }
    out.extend_from_slice(stored);
    out
}

fn tuple_batch(payload: &[u8]) -> Vec<u8> {
    go_v1(payload, payload, 0, 0, 2, 8, 40)
}

#[test]
fn go_v1_tuple_batch_decodes_every_field_type() {
    let payload = hex(GO_TUPLE_PAYLOAD);
    let lookup = (0, go_schema());
    let batch = tuple_batch(&payload);
    let want: Vec<(i32, Record)> = go_records().into_iter().map(|r| (0, r)).collect();
    assert_same(&check(&batch, TopicKind::Tuple(&lookup)).unwrap(), &want);
    // Sized as it is stored: its version-0 form.
    let v0 = encode_batch(&go_records(), Some(&go_schema()), 0, BatchCompression::None);
    let sizes = validate_batch_sizes(&batch, TopicKind::Tuple(&lookup)).unwrap();
    assert_eq!(sizes.records, 2);
    assert_eq!(sizes.raw_bytes, v0.len());
}

#[test]
fn go_v1_blob_batch_decodes() {
    let payload = hex(GO_BLOB_PAYLOAD);
    let batch = go_v1(&payload, &payload, 0, -1, 2, 0, 40);
    assert_eq!(
        check(&batch, TopicKind::Blob).unwrap(),
        vec![(-1, blob(b"hello", &[])), (-1, blob(b"", &[("k", "v")]))]
    );
    // A BLOB batch must say schema version -1, a TUPLE batch a known version.
    let wrong = go_v1(&payload, &payload, 0, 0, 2, 0, 40);
    assert!(matches!(
        check(&wrong, TopicKind::Blob),
        Err(BatchError::BlobSchemaVersion { version: 0, .. })
    ));
    let lookup = (0, go_schema());
    let tuple = tuple_batch(&hex(GO_TUPLE_PAYLOAD));
    let unknown = [&tuple[..24], &7i32.to_le_bytes(), &tuple[28..]].concat();
    assert!(matches!(
        check(&unknown, TopicKind::Tuple(&lookup)),
        Err(BatchError::UnknownSchemaVersion { version: 7, .. })
    ));
}

#[test]
fn go_v1_compression_codes_decode() {
    let payload = hex(GO_TUPLE_PAYLOAD);
    let lookup = (0, go_schema());
    let want = check(&tuple_batch(&payload), TopicKind::Tuple(&lookup)).unwrap();
    // Go's compressors keep their output even when it is larger.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &payload).unwrap();
    let zlib = z.finish().unwrap();
    let zstd = zstd::bulk::compress(&payload, 1).unwrap();
    let lz4 = lz4_flex::block::compress(&payload);
    // compress.go:69-82: 1 DEFLATE (a zlib stream, :125-135), 2 LZ4 block, 3 ZSTD; ZLIB has no
    // value and is written under 0 (also a zlib stream, :150-160). LZ4 that cannot shrink the
    // input returns it unchanged under code 2 (:105-107).
    for (stored, code) in [
        (&zlib, 1u16),
        (&lz4, 2),
        (&zstd, 3),
        (&zlib, 0),
        (&payload, 2),
    ] {
        let batch = go_v1(&payload, stored, code, 0, 2, 8, 40);
        assert_same(&check(&batch, TopicKind::Tuple(&lookup)).unwrap(), &want);
    }
    // A corrupt LZ4 block is refused.
    let mut bad = lz4.clone();
    bad.truncate(lz4.len() / 2);
    let batch = go_v1(&payload, &bad, 2, 0, 2, 8, 40);
    assert!(matches!(
        check(&batch, TopicKind::Tuple(&lookup)),
        Err(BatchError::Decompress { .. })
    ));
}

#[test]
fn go_v1_0_header_without_column_count_decodes() {
    // v1.0.0 batch_serializer.go: batchRecordHeaderSize = 36, dataOffset 36.
    let payload = hex(GO_TUPLE_PAYLOAD);
    let lookup = (0, go_schema());
    let batch = go_v1(&payload, &payload, 0, 0, 2, 0, 36);
    assert_eq!(parse_avro_header(&batch).unwrap().column_count, 0);
    assert_eq!(check(&batch, TopicKind::Tuple(&lookup)).unwrap().len(), 2);
}

#[test]
fn column_count_below_the_schema_reads_missing_fields_as_null() {
    // A writer still holding the schema from before an AppendField (data_serializer.go:182-207
    // reads such a batch with the first schemaColumnNum fields).
    let two = hex("03 02 04 6468 02 00");
    let mut full = go_schema().fields[..2].to_vec();
    full.push(field("extra", FieldType::Bigint, false));
    let lookup = (3, RecordSchema { fields: full });
    let batch = go_v1(&two, &two, 0, 3, 1, 2, 40);
    assert_eq!(
        check(&batch, TopicKind::Tuple(&lookup)).unwrap(),
        vec![(
            3,
            tuple(
                vec![Value::Int(-2), Value::Str("dh".into()), Value::Null],
                &[]
            )
        )]
    );
    // More columns than the version has, or a missing not-null column, are refused.
    let batch = go_v1(&two, &two, 0, 3, 1, 4, 40);
    assert_eq!(
        check(&batch, TopicKind::Tuple(&lookup)),
        Err(BatchError::ColumnCount {
            columns: 4,
            fields: 3
        })
    );
    let one = hex("03 02 00");
    let batch = go_v1(&one, &one, 0, 3, 1, 1, 40);
    assert_eq!(
        check(&batch, TopicKind::Tuple(&lookup)).unwrap()[0].1,
        tuple(vec![Value::Int(-2), Value::Null, Value::Null], &[])
    );
    let lookup = (0, go_schema());
    let batch = go_v1(&one, &one, 0, 0, 1, 1, 40);
    assert!(matches!(
        check(&batch, TopicKind::Tuple(&lookup)),
        Err(BatchError::Value {
            field: 3,
            source: ValueError::NullInNotNull { .. },
            ..
        })
    ));
}

#[test]
fn damaged_v1_batches_are_refused() {
    let payload = hex(GO_TUPLE_PAYLOAD);
    let lookup = (0, go_schema());
    let kind = TopicKind::Tuple(&lookup);
    let good = tuple_batch(&payload);
    let set = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    // CRC: a wrong one is refused, 0 is not checked (batch_serializer.go:306-311).
    assert!(matches!(
        check(&set(16, &[1, 2, 3, 4]), kind),
        Err(BatchError::BadCrc { .. })
    ));
    assert_eq!(check(&set(16, &[0; 4]), kind).unwrap().len(), 2);
    // Data type other than Avro (:313-315), data offset outside the batch, wrong length.
    assert_eq!(
        check(&set(22, &[1, 0]), kind),
        Err(BatchError::UnsupportedDataType { data_type: 1 })
    );
    assert!(matches!(
        check(&set(28, &[0xff, 0, 0, 0]), kind),
        Err(BatchError::BadDataOffset { .. })
    ));
    assert!(matches!(
        check(&set(28, &[8, 0, 0, 0]), kind),
        Err(BatchError::BadDataOffset { .. })
    ));
    assert!(matches!(
        check(&good[..good.len() - 1], kind),
        Err(BatchError::BadLength { .. })
    ));
    // Too few and too many records for the payload.
    assert!(matches!(
        check(&set(32, &[3, 0, 0, 0]), kind),
        Err(BatchError::MissingRecords {
            declared: 3,
            found: 2
        })
    ));
    assert!(matches!(
        check(&set(32, &[1, 0, 0, 0]), kind),
        Err(BatchError::TrailingBytes { records: 1, .. })
    ));
    // Payload-level damage: union index 2 for "name", boolean 7, TINYINT 300, bad UTF-8.
    for (edit_at, byte, want) in [(1usize, 0x04u8, "union"), (19, 0x07, "boolean")] {
        let mut p = payload.clone();
        p[edit_at] = byte;
        let err = check(&tuple_batch(&p), kind).unwrap_err();
        assert!(matches!(err, BatchError::Avro { record: 0, .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    let mut p = payload.clone();
    let t_at = p.len() - 13; // record 2's TINYINT: 02 ff01 → 02 d804 (300)
    assert_eq!(&p[t_at..t_at + 3], &[0x02, 0xff, 0x01]);
    p[t_at + 1] = 0xd8;
    p[t_at + 2] = 0x04;
    assert!(matches!(
        check(&tuple_batch(&p), kind),
        Err(BatchError::Value {
            record: 1,
            field: 5,
            source: ValueError::OutOfRange { value: 300, .. }
        })
    ));
    let mut p = payload.clone();
    p[3] = 0xff; // "dh" → 0xff 'h'
    assert!(matches!(
        check(&tuple_batch(&p), kind),
        Err(BatchError::Avro {
            record: 0,
            source: AvroError::BadUtf8 { .. }
        })
    ));
    // Every truncation fails cleanly.
    for cut in 0..payload.len() {
        let p = &payload[..cut];
        assert!(check(&tuple_batch(p), kind).is_err(), "cut at {cut}");
    }
}

#[test]
fn storable_batch_turns_v1_into_version_0_with_the_same_records() {
    let payload = hex(GO_TUPLE_PAYLOAD);
    let lookup = (0, go_schema());
    let kind = TopicKind::Tuple(&lookup);
    let zstd = zstd::bulk::compress(&payload, 1).unwrap();
    for sent in [
        tuple_batch(&payload),
        go_v1(&payload, &zstd, 3, 0, 2, 8, 40),
    ] {
        let kept = storable_batch(&sent, kind).unwrap();
        assert_eq!(parse_header(&kept).unwrap().version, 0);
        assert_same(&check(&kept, kind).unwrap(), &check(&sent, kind).unwrap());
        // Version 0 is what pydatahub reads: the uncompressed form is encode_batch's.
        let (_, raw) = decode::payload(&kept).unwrap();
        let ours = encode_batch(&go_records(), Some(&go_schema()), 0, BatchCompression::None);
        assert_eq!(&raw[..], &ours[HEADER_SIZE..]);
    }
    let blobs = hex(GO_BLOB_PAYLOAD);
    let kept = storable_batch(&go_v1(&blobs, &blobs, 0, -1, 2, 0, 40), TopicKind::Blob).unwrap();
    assert_eq!(
        check(&kept, TopicKind::Blob).unwrap(),
        vec![(-1, blob(b"hello", &[])), (-1, blob(b"", &[("k", "v")]))]
    );
    // A version-0 batch is left to portable_batch; a bad v1 batch is left to validation.
    let v0 = encode_batch(&go_records(), Some(&go_schema()), 0, BatchCompression::Lz4);
    assert_eq!(storable_batch(&v0, kind), None);
    assert_eq!(storable_batch(&tuple_batch(&payload[1..]), kind), None);
}

#[test]
fn stored_batches_are_served_to_go_v1_readers_as_avro() {
    let lookup: BTreeMap<i32, RecordSchema> = [
        (0, go_schema()),
        (1, schema(&[("id", FieldType::Bigint, true)])),
    ]
    .into_iter()
    .collect();
    let kind = TopicKind::Tuple(&lookup);
    // A stored batch whose records change schema version after the second one.
    let mut v0 = Vec::new();
    let records = go_records();
    for (version, r, schema) in [
        (0, &records[0], go_schema()),
        (0, &records[1], go_schema()),
        (
            1,
            &tuple(vec![Value::Int(7)], &[("a", "b")]),
            lookup[&1].clone(),
        ),
    ] {
        let one = encode_batch(
            std::slice::from_ref(r),
            Some(&schema),
            version,
            BatchCompression::None,
        );
        v0.extend_from_slice(&one[HEADER_SIZE..]);
    }
    let stored = frame(&v0, 0, v0.len() as u32, 3);
    let parts = avro_parts(&stored, kind).unwrap();
    assert_eq!(
        parts.iter().map(|p| (p.first, p.count)).collect::<Vec<_>>(),
        vec![(0, 2), (2, 1)]
    );
    let mut got = Vec::new();
    for part in &parts {
        // What Go's parseBatchHeader needs (batch_serializer.go:273-317, and v1.0.0's, which
        // decompresses and checks the CRC from byte 36): a 36-byte header, data type 2.
        let h = parse_avro_header(&part.data).unwrap();
        assert_eq!(h.data_offset as usize, AVRO_MIN_HEADER_SIZE);
        assert_eq!(h.data_type, 2);
        assert_eq!(h.length as usize, part.data.len());
        assert_eq!(h.crc, crc32c::crc32c(&part.data[AVRO_MIN_HEADER_SIZE..]));
        assert_eq!(h.record_count, part.count);
        got.extend(check(&part.data, kind).unwrap());
    }
    assert_same(&got, &check(&stored, kind).unwrap());
    // Byte for byte what Go writes for record 1 (no attributes: ours is the null branch).
    let first = &parts[0].data;
    let first_payload = if parse_avro_header(first).unwrap().attributes & 3 == 2 {
        lz4_flex::block::decompress(
            &first[36..],
            parse_avro_header(first).unwrap().raw_size as usize,
        )
        .unwrap()
    } else {
        first[36..].to_vec()
    };
    let go = hex(GO_TUPLE_PAYLOAD);
    let rec1 = &go[..go.iter().position(|&b| b == 0xd0).unwrap() + 2];
    assert_eq!(&first_payload[..rec1.len()], rec1);
    assert_eq!(first_payload[rec1.len()], 0x00);
    // A BLOB topic's batch.
    let blobs = encode_batch(&[blob(b"hello", &[])], None, -1, BatchCompression::None);
    let parts = avro_parts(&blobs, TopicKind::Blob).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parse_avro_header(&parts[0].data).unwrap().schema_version,
        -1
    );
    assert_eq!(&parts[0].data[36..], &hex("0a 68656c6c6f 00")[..]);
}

#[test]
fn encode_avro_batch_writes_go_heads_header() {
    let records = go_records();
    let bytes = encode_avro_batch(&records, Some(&go_schema()), 0, BatchCompression::None).unwrap();
    let h = parse_avro_header(&bytes).unwrap();
    assert_eq!(
        (h.data_offset as usize, h.column_count, h.record_count),
        (AVRO_HEADER_SIZE, 8, 2)
    );
    let lookup = (0, go_schema());
    let want: Vec<(i32, Record)> = records.into_iter().map(|r| (0, r)).collect();
    assert_same(&check(&bytes, TopicKind::Tuple(&lookup)).unwrap(), &want);
    // zstd under code 3, DEFLATE (zlib) under 1, when smaller.
    let many: Vec<Record> = vec![want[0].1.clone(); 50];
    for (c, code) in [(BatchCompression::Zstd, 3), (BatchCompression::Zlib, 1)] {
        let b = encode_avro_batch(&many, Some(&go_schema()), 0, c).unwrap();
        assert_eq!(parse_avro_header(&b).unwrap().attributes, code);
        assert_eq!(check(&b, TopicKind::Tuple(&lookup)).unwrap().len(), 50);
    }
    // A NULL in a not-null field cannot be written.
    let bad = tuple(vec![Value::Null], &[]);
    assert!(matches!(
        encode_avro_batch(&[bad], Some(&go_schema()), 0, BatchCompression::None),
        Err(BatchError::Avro {
            record: 0,
            source: AvroError::NullInNotNull { .. }
        })
    ));
}

#[test]
fn go_v1_readers_are_told_apart_by_user_agent() {
    // config.go DefaultUserAgent / defaultClientAgent at HEAD, v1.0.0 and v0.2.1.
    for ua in [
        "godatahub/v1.2.0-beta go1.22.1@linux#10.0.0.1#4242",
        "godatahub/v1.2.0-beta go1.22.1@linux#10.0.0.1#4242 godatahub/v1.2.0-beta go1.22.1@linux#10.0.0.1#4242 myapp",
        "goclient/v1.2.0-beta go1.22.1@linux#10.0.0.1#4242 myapp",
        "godatahub/1.0.0 go1.20@darwin#192.168.1.2#77",
        "godatahub/1.1.5 go1.21@linux##1",
    ] {
        assert!(reads_avro_batches(ua), "{ua}");
    }
    for ua in [
        "godatahub/0.2.1 golang/go1.20 linux",
        "godatahub/0.1.9 golang/go1.18 linux",
        "pyodps/2.29.0 CPython/3.11",
        "okhttp/3.14.9",
        "godatahub/",
        "",
    ] {
        assert!(!reads_avro_batches(ua), "{ua}");
    }
}
