//! Property tests of every decoder that reads untrusted bytes: batch, envelope, body
//! compression and the protobuf request messages. None may panic; the batch decoder and its
//! validate-only twin must agree on every input; encoders must round-trip.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message;

use sluice_proto::batch::{self, BatchCompression, BatchError, TopicKind, HEADER_SIZE};
use sluice_proto::compress::{self, Compression};
use sluice_proto::value::{TIMESTAMP_MAX, TIMESTAMP_MIN};
use sluice_proto::{envelope, pb, Field, FieldType, Record, RecordData, RecordSchema, Value};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const TYPES: [FieldType; 10] = FieldType::ALL;

fn schema_of(fields: &[(FieldType, bool)]) -> RecordSchema {
    RecordSchema {
        fields: fields
            .iter()
            .enumerate()
            .map(|(i, (t, not_null))| Field {
                name: format!("f{i}"),
                field_type: *t,
                comment: String::new(),
                not_null: *not_null,
            })
            .collect(),
    }
}

/// One nullable field of every type: the fixed schema the fuzzers decode against.
fn every_type() -> RecordSchema {
    schema_of(&TYPES.map(|t| (t, false)))
}

fn schema_strategy() -> impl Strategy<Value = RecordSchema> {
    vec((prop::sample::select(&TYPES[..]), any::<bool>()), 1..12).prop_map(|f| schema_of(&f))
}

fn value_strategy(field: &Field) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match field.field_type {
        FieldType::Bigint => any::<i64>().prop_map(Value::Int).boxed(),
        FieldType::Integer => any::<i32>().prop_map(|v| Value::Int(v.into())).boxed(),
        FieldType::Smallint => any::<i16>().prop_map(|v| Value::Int(v.into())).boxed(),
        FieldType::Tinyint => any::<i8>().prop_map(|v| Value::Int(v.into())).boxed(),
        FieldType::Timestamp => (TIMESTAMP_MIN..=TIMESTAMP_MAX).prop_map(Value::Int).boxed(),
        FieldType::Double => any::<u64>()
            .prop_map(|b| Value::Double(f64::from_bits(b)))
            .boxed(),
        FieldType::Float => any::<u32>()
            .prop_map(|b| Value::Float(f32::from_bits(b)))
            .boxed(),
        FieldType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        FieldType::String => prop_oneof![
            "\\PC{0,12}",
            "\\PC{0,200}",
            Just("0123456789abcdef".to_string())
        ]
        .prop_map(Value::Str)
        .boxed(),
        FieldType::Decimal => "[-+]?[0-9]{1,20}(\\.[0-9]{0,8})?([eE][-+]?[0-9]{1,4})?"
            .prop_map(Value::Decimal)
            .boxed(),
    };
    if field.not_null {
        typed
    } else {
        prop_oneof![1 => Just(Value::Null), 4 => typed].boxed()
    }
}

fn attributes() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(("\\PC{0,10}", "\\PC{0,10}"), 0..3)
}

fn tuple_records(schema: &RecordSchema) -> impl Strategy<Value = Vec<Record>> {
    let row: Vec<_> = schema.fields.iter().map(value_strategy).collect();
    let record = (row, attributes()).prop_map(|(values, attributes)| Record {
        data: RecordData::Tuple(values),
        attributes,
    });
    vec(record, 0..6)
}

fn blob_records() -> impl Strategy<Value = Vec<Record>> {
    let record = (vec(any::<u8>(), 1..120), attributes()).prop_map(|(bytes, attributes)| Record {
        data: RecordData::Blob(bytes),
        attributes,
    });
    vec(record, 0..6)
}

fn compression() -> impl Strategy<Value = BatchCompression> {
    prop::sample::select(vec![
        BatchCompression::None,
        BatchCompression::Deflate,
        BatchCompression::Lz4,
        BatchCompression::Zlib,
        BatchCompression::Zstd,
    ])
}

/// A schema, records for it, a schema version and a compression.
fn tuple_batch() -> impl Strategy<Value = (RecordSchema, Vec<Record>, i32, BatchCompression)> {
    schema_strategy().prop_flat_map(|schema| {
        let records = tuple_records(&schema);
        (Just(schema), records, 0..5i32, compression())
    })
}

/// Runs both batch decoders; they must agree exactly. Returns the decode result.
fn agree(bytes: &[u8], kind: TopicKind) -> Result<Vec<(i32, Record)>, BatchError> {
    let decoded = batch::decode_batch(bytes, kind);
    let validated = batch::validate_batch(bytes, kind);
    match (&decoded, &validated) {
        (Ok(records), Ok(count)) => assert_eq!(records.len(), *count as usize),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("decode_batch {decoded:?} but validate_batch {validated:?}"),
    }
    // A batch rewritten for every SDK's readers holds the same records.
    if let Some(portable) = batch::portable_batch(bytes) {
        let again = batch::decode_batch(&portable, kind);
        assert_eq!(again.is_ok(), decoded.is_ok(), "{again:?} vs {decoded:?}");
        if let (Ok(a), Ok(b)) = (&again, &decoded) {
            let keys =
                |v: &[(i32, Record)]| v.iter().map(|(s, r)| (*s, key(r))).collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b));
        }
    }
    decoded
}

/// Record equality with floats compared bitwise, so NaN payloads must survive too.
fn key(record: &Record) -> String {
    let data = match &record.data {
        RecordData::Blob(b) => format!("blob {b:?}"),
        RecordData::Tuple(values) => values
            .iter()
            .map(|v| match v {
                Value::Float(f) => format!("float {:08x}", f.to_bits()),
                Value::Double(d) => format!("double {:016x}", d.to_bits()),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{data} | {:?}", record.attributes)
}

/// Rebuilds a batch around `payload` with a correct length and CRC.
fn frame(payload: &[u8], code: u16, raw_size: u32, count: u32) -> Vec<u8> {
    let header = batch::BatchHeader {
        version: 0,
        length: (HEADER_SIZE + payload.len()) as u32,
        raw_size,
        crc: crc32c::crc32c(payload),
        attributes: batch::ATTRIBUTES_BASE | code,
        record_count: count,
    };
    [&header.to_bytes()[..], payload].concat()
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn batch_decoders_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..400)) {
        let lookup = (0, every_type());
        agree(&bytes, TopicKind::Blob).ok();
        agree(&bytes, TopicKind::Tuple(&lookup)).ok();
        let mut magic = b"DHUB\0\0\0\0".to_vec();
        magic.extend_from_slice(&bytes);
        agree(&magic, TopicKind::Blob).ok();
    }

    #[test]
    fn batch_decoders_survive_arbitrary_payloads(
        payload in vec(any::<u8>(), 0..400),
        code in 0u16..4,
        raw_size in prop_oneof![Just(None), (0u32..100_000).prop_map(Some), any::<u32>().prop_map(Some)],
        count in 0u32..6,
    ) {
        let raw = raw_size.unwrap_or(payload.len() as u32);
        let bytes = frame(&payload, code, raw, count);
        let lookup = (0, every_type());
        agree(&bytes, TopicKind::Blob).ok();
        agree(&bytes, TopicKind::Tuple(&lookup)).ok();
    }

    #[test]
    fn compress_decompress_survives_arbitrary_bodies(
        body in vec(any::<u8>(), 0..300),
        prefix in 0u8..3,
        raw_size in prop::option::of(0usize..5000),
        limit in 0usize..4096,
    ) {
        let mut body = body;
        match prefix {
            1 => drop(body.splice(0..0, [0x78, 0x9c])),
            2 => drop(body.splice(0..0, [0x28, 0xb5, 0x2f, 0xfd])),
            _ => {}
        }
        for kind in [Compression::Lz4, Compression::Zlib, Compression::Deflate, Compression::Zstd] {
            let passthrough = kind == Compression::Deflate && body.first() != Some(&0x78);
            if let Ok(out) = compress::decompress(kind, &body, raw_size, limit) {
                if passthrough {
                    prop_assert_eq!(&out, &body);
                } else {
                    prop_assert!(out.len() <= limit, "{:?}: {} > {}", kind, out.len(), limit);
                }
            }
        }
    }

    #[test]
    fn envelope_unwrap_survives_and_round_trips(
        message in vec(any::<u8>(), 0..200),
        junk in vec(any::<u8>(), 0..40),
    ) {
        envelope::unwrap(&junk).ok();
        let framed = envelope::wrap(&message);
        prop_assert_eq!(envelope::unwrap(&framed), Ok(&message[..]));
        let mut damaged = framed.clone();
        damaged.extend_from_slice(&junk);
        prop_assert_eq!(envelope::unwrap(&damaged).is_ok(), junk.is_empty());
    }

    #[test]
    fn protobuf_requests_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..300)) {
        pb::PutRecordsRequest::decode(&bytes[..]).ok();
        pb::GetRecordsRequest::decode(&bytes[..]).ok();
        pb::PutBinaryRecordsRequest::decode(&bytes[..]).ok();
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn tuple_batches_round_trip((schema, records, version, c) in tuple_batch()) {
        let bytes = batch::encode_batch(&records, Some(&schema), version, c);
        let lookup = (version, schema.clone());
        let decoded = agree(&bytes, TopicKind::Tuple(&lookup)).expect("own encoding decodes");
        prop_assert_eq!(decoded.len(), records.len());
        for ((v, got), want) in decoded.iter().zip(&records) {
            prop_assert_eq!(*v, version);
            prop_assert_eq!(key(got), key(want));
        }
        // A TUPLE batch is never a valid BLOB batch and vice versa (unless empty).
        prop_assert_eq!(agree(&bytes, TopicKind::Blob).is_ok(), records.is_empty());
    }

    #[test]
    fn blob_batches_round_trip(records in blob_records(), c in compression()) {
        let bytes = batch::encode_batch(&records, None, 0, c);
        let decoded = agree(&bytes, TopicKind::Blob).expect("own encoding decodes");
        let want: Vec<_> = records.into_iter().map(|r| (-1, r)).collect();
        prop_assert_eq!(decoded, want);
    }

    #[test]
    fn mutated_batches_never_panic_and_agree(
        (schema, records, version, c) in tuple_batch(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        refresh_crc in any::<bool>(),
    ) {
        let lookup = (version, schema.clone());
        let kind = TopicKind::Tuple(&lookup);
        let bytes = batch::encode_batch(&records, Some(&schema), version, c);
        let header = batch::parse_header(&bytes).expect("own header");
        // Damage the stored payload; optionally fix the CRC so the damage reaches the records.
        let mut payload = bytes[HEADER_SIZE..].to_vec();
        if !payload.is_empty() {
            for (at, byte) in &edits {
                let i = at.index(payload.len());
                payload[i] = *byte;
            }
        }
        let mutated = if refresh_crc {
            frame(&payload, header.attributes & 3, header.raw_size, header.record_count)
        } else {
            [&bytes[..HEADER_SIZE], &payload[..]].concat()
        };
        agree(&mutated, kind).ok();
        agree(&mutated[..cut.index(mutated.len() + 1)], kind).ok();
        // Damage anywhere, header included.
        let mut anywhere = bytes.clone();
        for (at, byte) in &edits {
            let i = at.index(anywhere.len());
            anywhere[i] = *byte;
        }
        agree(&anywhere, kind).ok();
    }

    #[test]
    fn compress_round_trips(body in vec(any::<u8>(), 0..2000), small in any::<bool>()) {
        let body: Vec<u8> = if small { body.iter().map(|b| b % 4).collect() } else { body };
        for kind in [Compression::Lz4, Compression::Zlib, Compression::Zstd] {
            if let Some(c) = compress::compress(kind, &body) {
                prop_assert!(c.len() < body.len());
                let out = compress::decompress(kind, &c, Some(body.len()), body.len());
                prop_assert_eq!(out, Ok(body.clone()));
            }
        }
    }
}

/// A version-1 (Go SDK v1.x) batch around a payload, as batch_serializer.go frames it: 40-byte
/// header, CRC-32C of the stored bytes, data type 2.
fn avro_frame(payload: &[u8], code: u16, version: i32, count: u32, columns: u32) -> Vec<u8> {
    let mut out = b"DHUB".to_vec();
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&((40 + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&columns.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a version-1 batch is stored as holds the same records.
fn stored_agrees(bytes: &[u8], kind: TopicKind, decoded: &Result<Vec<(i32, Record)>, BatchError>) {
    let stored = batch::storable_batch(bytes, kind);
    assert_eq!(stored.is_some(), decoded.is_ok(), "{decoded:?}");
    if let (Some(stored), Ok(want)) = (stored, decoded) {
        assert_eq!(batch::parse_header(&stored).unwrap().version, 0);
        let got = agree(&stored, kind).expect("stored form decodes");
        let keys = |v: &[(i32, Record)]| v.iter().map(|(s, r)| (*s, key(r))).collect::<Vec<_>>();
        assert_eq!(keys(&got), keys(want));
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn avro_batches_survive_arbitrary_payloads(
        payload in vec(any::<u8>(), 0..300),
        code in 0u16..4,
        count in 0u32..6,
        columns in 0u32..12,
        blob in any::<bool>(),
    ) {
        let lookup = (0, every_type());
        let (kind, version) = if blob { (TopicKind::Blob, -1) } else { (TopicKind::Tuple(&lookup), 0) };
        let bytes = avro_frame(&payload, code, version, count, columns);
        let decoded = agree(&bytes, kind);
        stored_agrees(&bytes, kind, &decoded);
    }

    #[test]
    fn avro_batches_round_trip((schema, records, version, c) in tuple_batch()) {
        let lookup = (version, schema.clone());
        let kind = TopicKind::Tuple(&lookup);
        let bytes = batch::encode_avro_batch(&records, Some(&schema), version, c).expect("valid records");
        let decoded = agree(&bytes, kind);
        let want: Vec<_> = records.iter().map(|r| (version, key(r))).collect();
        let got: Vec<_> = decoded.as_ref().expect("own encoding decodes").iter().map(|(v, r)| (*v, key(r))).collect();
        prop_assert_eq!(&got, &want);
        stored_agrees(&bytes, kind, &decoded);
        // Served back to a Go v1.x reader: the same records again.
        let stored = batch::storable_batch(&bytes, kind).unwrap();
        let mut served = Vec::new();
        for part in batch::avro_parts(&stored, kind).expect("stored batch converts") {
            served.extend(agree(&part.data, kind).expect("part decodes"));
        }
        prop_assert_eq!(served.iter().map(|(v, r)| (*v, key(r))).collect::<Vec<_>>(), want);
    }
}
