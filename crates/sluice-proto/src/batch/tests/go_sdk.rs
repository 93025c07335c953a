//! Batches as the Go SDK v0.2.1 writes them (datahub/batchrecord.go, datahub/binaryrecord.go at
//! tag v0.2.1), built by hand from its serializer: record encode_type 1, no field count (the 4
//! bytes after the record header stay 0), header attributes without pydatahub's 0x08 bit, and
//! ZSTD written under compression code 0 (`toValue() & 3` with ZSTD = 4).

use super::*;
use crate::compress;

/// BLOB "hello" with attribute k=v. binaryrecord.go: newBinaryRecordForSerialize(-1, nil) makes
/// 36 bytes (16 header + 4 unwritten field count + 8 bitmap + 8 slot); writeStr inlines the 5
/// bytes with 0x85 in the slot's last byte; getRecordSize = 4 + attrLen(10) + 36 = 50.
const GO_BLOB_PAYLOAD: &str = "01000000 ffffffff 32000000 24000000 00000000 0100000000000000
    68656c6c6f000085 01000000 01000000 6b 01000000 76";

/// TUPLE (id BIGINT, name STRING) = (-2, "datahub-rs"), schema version 0, no attributes. The
/// 10-byte string goes after the 44 fixed bytes: slot = (44 - 16) << 32 | 10, then 6 pad bytes.
const GO_TUPLE_PAYLOAD: &str = "01000000 00000000 40000000 3c000000 00000000 0300000000000000
    feffffffffffffff 0a0000001c000000 646174616875622d7273000000000000 00000000";

/// batchrecord.go serializeBatchRecord: attributes = cType.toValue() & 3, no other bits.
fn go_batch(payload: &[u8], stored: &[u8], attributes: u16, count: u32) -> Vec<u8> {
    let header = BatchHeader {
        version: 0,
        length: (HEADER_SIZE + stored.len()) as u32,
        raw_size: payload.len() as u32,
        crc: crc32c::crc32c(stored),
        attributes,
        record_count: count,
    };
    [&header.to_bytes()[..], stored].concat()
}

fn go_schema() -> RecordSchema {
    schema(&[
        ("id", FieldType::Bigint, false),
        ("name", FieldType::String, false),
    ])
}

#[test]
fn go_blob_record_without_field_count_decodes() {
    let payload = hex(GO_BLOB_PAYLOAD);
    assert_eq!(payload.len(), 50);
    let batch = go_batch(&payload, &payload, 0, 1);
    assert_eq!(
        check(&batch, TopicKind::Blob).unwrap(),
        vec![(-1, blob(b"hello", &[("k", "v")]))]
    );
    // Sluice's own encoding differs only in encode_type, field count and the 0x08 bit.
    let ours = encode_batch(
        &[blob(b"hello", &[("k", "v")])],
        None,
        -1,
        BatchCompression::None,
    );
    let mut theirs = ours[HEADER_SIZE..].to_vec();
    theirs[0] = 1;
    theirs[16] = 0;
    assert_eq!(theirs, payload);
}

#[test]
fn go_tuple_record_without_field_count_decodes() {
    let payload = hex(GO_TUPLE_PAYLOAD);
    assert_eq!(payload.len(), 64);
    let lookup = (0, go_schema());
    let want = vec![(
        0,
        tuple(vec![Value::Int(-2), Value::Str("datahub-rs".into())], &[]),
    )];
    let batch = go_batch(&payload, &payload, 0, 1);
    assert_eq!(check(&batch, TopicKind::Tuple(&lookup)).unwrap(), want);
    assert_eq!(
        validate_batch_sizes(&batch, TopicKind::Tuple(&lookup)).unwrap(),
        BatchSizes {
            records: 1,
            raw_bytes: HEADER_SIZE + 64,
            largest_record: 64
        }
    );
    // A count that is neither 0 nor the schema's is still refused.
    let mut three = payload.clone();
    three[16] = 3;
    assert_eq!(
        check(&go_batch(&three, &three, 0, 1), TopicKind::Tuple(&lookup)),
        Err(BatchError::FieldCountMismatch {
            record: 0,
            field_count: 3,
            expected: 2
        })
    );
    // Go's DEFLATE (code 1) and ZLIB (code 3) both write a zlib stream; LZ4 a raw block.
    let zlib = compress::compress(compress::Compression::Zlib, &payload).unwrap();
    for code in [1, 3] {
        let b = go_batch(&payload, &zlib, code, 1);
        assert_eq!(check(&b, TopicKind::Tuple(&lookup)).unwrap(), want);
    }
    let lz4 = lz4_flex::block::compress(&payload);
    let b = go_batch(&payload, &lz4, 2, 1);
    assert_eq!(check(&b, TopicKind::Tuple(&lookup)).unwrap(), want);
}

#[test]
fn zstd_payloads_decode_under_code_zero_and_three() {
    let payload = [hex(GO_TUPLE_PAYLOAD), hex(GO_TUPLE_PAYLOAD)].concat();
    let lookup = (0, go_schema());
    let stored = zstd::bulk::compress(&payload, 1).unwrap();
    // Code 0: Go v0.2.x (ZSTD = 4, masked to 0). Code 3: Go v1.x's ZSTD.
    for code in [0, 3] {
        let b = go_batch(&payload, &stored, code, 2);
        let got = check(&b, TopicKind::Tuple(&lookup)).unwrap();
        assert_eq!(got.len(), 2);
        let sizes = validate_batch_sizes(&b, TopicKind::Tuple(&lookup)).unwrap();
        assert_eq!(sizes.raw_bytes, HEADER_SIZE + payload.len());
    }
    // encode_batch(Zstd) writes what Go v0.2.x writes, and decodes.
    let records = vec![tuple(vec![Value::Int(7), Value::Str("x".repeat(300))], &[]); 20];
    let b = encode_batch(&records, Some(&go_schema()), 0, BatchCompression::Zstd);
    assert_eq!(parse_header(&b).unwrap().attributes, ATTRIBUTES_BASE);
    assert!(b[HEADER_SIZE..].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    assert_eq!(check(&b, TopicKind::Tuple(&lookup)).unwrap().len(), 20);
}

#[test]
fn zstd_bomb_in_a_batch_is_refused() {
    // 16 MiB of zeros compress to a few hundred bytes; raw_size claims 64 bytes. Decoding stops
    // just past raw_size instead of inflating the whole frame.
    let stored = zstd::bulk::compress(&vec![0u8; 16 << 20], 19).unwrap();
    let header = BatchHeader {
        version: 0,
        length: (HEADER_SIZE + stored.len()) as u32,
        raw_size: 64,
        crc: crc32c::crc32c(&stored),
        attributes: 0,
        record_count: 1,
    };
    let b = [&header.to_bytes()[..], &stored].concat();
    let lookup = (0, go_schema());
    match check(&b, TopicKind::Tuple(&lookup)) {
        Err(BatchError::Decompress {
            compression: BatchCompression::Zstd,
            message,
        }) => assert!(message.contains("more than 64 bytes"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A raw_size over MAX_RAW_SIZE is refused before decoding, as for the other codes.
    let huge = BatchHeader {
        raw_size: u32::MAX,
        ..header
    };
    let b = [&huge.to_bytes()[..], &stored].concat();
    assert!(matches!(
        check(&b, TopicKind::Tuple(&lookup)),
        Err(BatchError::RawSizeTooLarge { .. })
    ));
}

#[test]
fn portable_batch_rewrites_what_some_sdk_cannot_read() {
    let payload = [hex(GO_TUPLE_PAYLOAD), hex(GO_TUPLE_PAYLOAD)].concat();
    let lookup = (0, go_schema());
    let kind = TopicKind::Tuple(&lookup);
    let zlib = compress::compress(compress::Compression::Zlib, &payload).unwrap();
    let zstd = zstd::bulk::compress(&payload, 1).unwrap();
    let lz4 = lz4_flex::block::compress(&payload);
    // Readable by pydatahub and Go alike: kept as sent.
    for (stored, code) in [(&payload, 0), (&lz4, 2), (&zlib, 3)] {
        assert_eq!(portable_batch(&go_batch(&payload, stored, code, 2)), None);
    }
    // zstd under code 0 or 3, and a zlib stream under code 1: rewritten as LZ4, same records.
    for (stored, code) in [(&zstd, 0), (&zstd, 3), (&zlib, 1)] {
        let sent = go_batch(&payload, stored, code, 2);
        let kept = portable_batch(&sent).unwrap();
        let header = parse_header(&kept).unwrap();
        assert_eq!(header.compression(), BatchCompression::Lz4);
        assert_eq!(header.raw_size as usize, payload.len());
        assert_eq!(
            lz4_flex::block::decompress(&kept[HEADER_SIZE..], payload.len()).unwrap(),
            payload
        );
        assert_eq!(check(&kept, kind), check(&sent, kind));
    }
    // Records LZ4 cannot shrink would be stored as they are (code 0); other bits are kept.
    let blob = encode_batch(
        &[blob(&(0..=255).collect::<Vec<u8>>(), &[])],
        None,
        -1,
        BatchCompression::None,
    )[HEADER_SIZE..]
        .to_vec();
    let tiny = zstd::bulk::compress(&blob, 1).unwrap();
    let kept = portable_batch(&go_batch(&blob, &tiny, 0x08, 1)).unwrap();
    let attributes = parse_header(&kept).unwrap().attributes;
    assert_eq!(attributes & !0x03, 0x08);
    if attributes & 0x03 == 0 {
        assert_eq!(&kept[HEADER_SIZE..], &blob[..]);
    } else {
        assert_eq!(attributes & 0x03, 2);
        assert!(kept.len() < HEADER_SIZE + blob.len());
    }
    assert_eq!(check(&kept, TopicKind::Blob).unwrap().len(), 1);
    // Garbage is left to validation.
    assert_eq!(portable_batch(b"DHUB"), None);
}

/// Go SDK v0.2.1 batchrecord.go:130 sets code 2 for LZ4 and :143-156 stores whatever the
/// compressor returned, which is the payload itself when compress.go:92-94 sees a 0 from
/// lz4.CompressBlock (HEAD: batch_serializer.go:208-221, compress.go:105-107).
#[test]
fn lz4_payload_stored_unchanged_decodes_and_is_rewritten_as_code_zero() {
    let payload = [hex(GO_TUPLE_PAYLOAD), hex(GO_TUPLE_PAYLOAD)].concat();
    let lookup = (0, go_schema());
    let kind = TopicKind::Tuple(&lookup);
    let sent = go_batch(&payload, &payload, 2, 2);
    let plain = go_batch(&payload, &payload, 0, 2);
    let records = check(&sent, kind).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(Ok(records), check(&plain, kind));
    // Rewritten as a real LZ4 block (these two equal records shrink), same records: readable
    // by every SDK's batch reader, and left alone from then on.
    let kept = portable_batch(&sent).unwrap();
    let header = parse_header(&kept).unwrap();
    assert_eq!(header.compression(), BatchCompression::Lz4);
    assert_eq!(
        lz4_flex::block::decompress(&kept[HEADER_SIZE..], payload.len()).unwrap(),
        payload
    );
    assert_eq!(check(&kept, kind), check(&plain, kind));
    assert_eq!(portable_batch(&kept), None);
    // Records LZ4 cannot shrink become code 0 with the same bytes.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let blob = encode_batch(&[blob(&noise, &[])], None, -1, BatchCompression::None)[HEADER_SIZE..]
        .to_vec();
    let kept = portable_batch(&go_batch(&blob, &blob, 2, 1)).unwrap();
    assert_eq!(kept, go_batch(&blob, &blob, 0, 1));
    assert_eq!(check(&kept, TopicKind::Blob).unwrap().len(), 1);
    // What the released SDK sends when pierrec/lz4 v2.6.1 (given a full-bound buffer) finds no
    // match: a literal-only block (token 0xF0, length 15 + 255s + rest, the bytes), larger than
    // the records; a valid block, kept as sent.
    let mut block = vec![0xF0u8];
    let mut rest = blob.len() - 15;
    while rest >= 255 {
        block.push(255);
        rest -= 255;
    }
    block.push(rest as u8);
    block.extend_from_slice(&blob);
    assert!(block.len() > blob.len());
    let sent = go_batch(&blob, &block, 2, 1);
    assert_eq!(check(&sent, TopicKind::Blob), check(&kept, TopicKind::Blob));
    assert_eq!(portable_batch(&sent), None);
}
