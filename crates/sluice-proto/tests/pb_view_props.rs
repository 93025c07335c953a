//! Property tests of the in-place reader of `GetRecordsResponse` (`sluice_proto::pb_view`):
//! on every message prost encodes it reads what prost decodes, its values are what
//! `Value::parse` makes of the same texts, and no input makes it panic.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message;

use sluice_proto::pb_view::{RecordView, RecordsView, ViewError};
use sluice_proto::{pb, Field, FieldType, RecordSchema, Value};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn text() -> impl Strategy<Value = Option<String>> {
    option::of("[a-zA-Z0-9=+/ ]{0,12}")
}

fn entry() -> impl Strategy<Value = pb::RecordEntry> {
    (
        (text(), text(), text(), text(), text()),
        (option::of(any::<i64>()), option::of(any::<i64>())),
        option::of(vec(("[a-z]{0,6}", "[a-z0-9]{0,6}"), 0..3)),
        vec(option::of(vec(any::<u8>(), 0..20)), 0..6),
    )
        .prop_map(
            |(
                (shard_id, hash_key, partition_key, cursor, next_cursor),
                (seq, time),
                attrs,
                cells,
            )| {
                pb::RecordEntry {
                    shard_id,
                    hash_key,
                    partition_key,
                    cursor,
                    next_cursor,
                    sequence: seq,
                    system_time: time,
                    attributes: attrs.map(|pairs| pb::RecordAttributes {
                        attributes: pairs
                            .into_iter()
                            .map(|(key, value)| pb::StringPair { key, value })
                            .collect(),
                    }),
                    data: pb::RecordData {
                        data: cells
                            .into_iter()
                            .map(|value| pb::FieldData { value })
                            .collect(),
                    },
                }
            },
        )
}

fn response() -> impl Strategy<Value = pb::GetRecordsResponse> {
    (
        "[a-zA-Z0-9]{0,30}",
        any::<i32>(),
        (
            option::of(any::<i64>()),
            option::of(any::<i64>()),
            option::of(any::<i64>()),
        ),
        vec(entry(), 0..8),
    )
        .prop_map(
            |(next_cursor, record_count, (start, latest, time), records)| pb::GetRecordsResponse {
                next_cursor,
                record_count,
                start_sequence: start,
                records,
                latest_sequence: latest,
                latest_time: time,
            },
        )
}

/// A record view as prost's struct, for comparison.
fn to_entry(view: &RecordView<'_>) -> Result<pb::RecordEntry, ViewError> {
    let cells = view.cells().collect::<Result<Vec<_>, _>>()?;
    let pairs = view.attributes().collect::<Result<Vec<_>, _>>()?;
    let owned = |s: Option<&str>| s.map(str::to_string);
    Ok(pb::RecordEntry {
        shard_id: owned(view.shard_id),
        hash_key: owned(view.hash_key),
        partition_key: owned(view.partition_key),
        cursor: owned(view.cursor),
        next_cursor: owned(view.next_cursor),
        sequence: view.sequence,
        system_time: view.system_time,
        attributes: view.has_attributes().then(|| pb::RecordAttributes {
            attributes: pairs
                .into_iter()
                .map(|(k, v)| pb::StringPair {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }),
        data: pb::RecordData {
            data: cells
                .into_iter()
                .map(|c| pb::FieldData {
                    value: c.map(<[u8]>::to_vec),
                })
                .collect(),
        },
    })
}

fn read_all(message: &[u8]) -> Result<pb::GetRecordsResponse, ViewError> {
    let view = RecordsView::parse(message)?;
    let records = view
        .records()
        .map(|r| r.and_then(|r| to_entry(&r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pb::GetRecordsResponse {
        next_cursor: view.next_cursor.to_string(),
        record_count: view.record_count,
        start_sequence: view.start_sequence,
        records,
        latest_sequence: view.latest_sequence,
        latest_time: view.latest_time,
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever prost writes, the view reads back field for field.
    #[test]
    fn reads_what_prost_encodes(resp in response()) {
        let bytes = resp.encode_to_vec();
        prop_assert_eq!(read_all(&bytes).unwrap(), resp);
    }

    /// Cut anywhere, a message is refused or read as prost reads it; it never panics.
    #[test]
    fn truncated_messages_are_refused_or_agree(resp in response(), cut in any::<prop::sample::Index>()) {
        let bytes = resp.encode_to_vec();
        let cut = &bytes[..cut.index(bytes.len() + 1)];
        if let Ok(ours) = read_all(cut) {
            prop_assert_eq!(Some(ours), pb::GetRecordsResponse::decode(cut).ok());
        }
    }

    /// Random bytes never panic the reader.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = read_all(&bytes);
    }

    /// `values` is `Value::parse` of every cell's text, in schema order, errors included.
    #[test]
    fn values_parse_like_value_parse(cells in vec(option::of(prop::sample::select(TEXTS)), TYPES.len())) {
        let schema = every_type();
        let entry = pb::RecordEntry {
            data: pb::RecordData {
                data: cells.iter().map(|c| pb::FieldData { value: c.map(|t| t.as_bytes().to_vec()) }).collect(),
            },
            ..Default::default()
        };
        let resp = pb::GetRecordsResponse { records: vec![entry], ..Default::default() };
        let bytes = resp.encode_to_vec();
        let view = RecordsView::parse(&bytes).unwrap();
        let record = view.records().next().unwrap().unwrap();
        let ours: Vec<_> = record.values(&schema).map(|v| v.map(|v| v.to_value()).ok()).collect();
        let want: Vec<Option<Value>> = schema.fields.iter().zip(&cells).map(|(f, c)| Value::parse(f, *c).ok()).collect();
        prop_assert_eq!(ours, want);
    }
}

const TYPES: [FieldType; 10] = FieldType::ALL;

/// Texts that some types accept and others refuse.
const TEXTS: &[&str] = &[
    "",
    "0",
    "1",
    "-7",
    "300",
    "40000",
    "1.5",
    " 2.25 ",
    "true",
    "FALSE",
    "abc",
    "1e3",
    "12.340",
    "9223372036854775807",
    "-1.0E-7",
];

fn every_type() -> RecordSchema {
    RecordSchema {
        fields: TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| Field {
                name: format!("f{i}"),
                field_type: *t,
                comment: String::new(),
                not_null: i % 3 == 0,
            })
            .collect(),
    }
}

/// A record with fewer cells than fields (written before fields were appended) reads the
/// missing ones as NULL; one with more is refused once, after its values.
#[test]
fn short_records_pad_with_null_and_long_ones_are_refused() {
    let schema = every_type();
    for count in [0, 3, TYPES.len(), TYPES.len() + 2] {
        let entry = pb::RecordEntry {
            data: pb::RecordData {
                data: vec![
                    pb::FieldData {
                        value: Some(b"1".to_vec())
                    };
                    count
                ],
            },
            ..Default::default()
        };
        let bytes = pb::GetRecordsResponse {
            records: vec![entry],
            ..Default::default()
        }
        .encode_to_vec();
        let view = RecordsView::parse(&bytes).unwrap();
        let record = view.records().next().unwrap().unwrap();
        let got: Vec<_> = record.values(&schema).collect();
        let extra = count.saturating_sub(TYPES.len());
        assert_eq!(
            got.len(),
            TYPES.len() + usize::from(extra > 0),
            "{count} cells"
        );
        for (i, (field, value)) in schema.fields.iter().zip(&got).enumerate() {
            let text = (i < count).then_some("1");
            match Value::parse(field, text) {
                Ok(want) => assert_eq!(
                    value.as_ref().unwrap().to_value(),
                    want,
                    "{count} cells, field {i}"
                ),
                Err(_) => assert!(value.is_err(), "{count} cells, field {i}"),
            }
        }
        if extra > 0 {
            let last = got.last().unwrap();
            assert!(
                matches!(last, Err(ViewError::FieldCount { got, want }) if *got == count && *want == TYPES.len()),
                "{last:?}"
            );
        }
    }
}

/// A response without its required fields is refused by name.
#[test]
fn missing_required_fields_are_named() {
    let err = RecordsView::parse(&[]).unwrap_err();
    assert!(matches!(err, ViewError::Missing("NextCursor")), "{err}");
    // NextCursor = "x", no RecordCount.
    let err = RecordsView::parse(&[0x0a, 1, b'x']).unwrap_err();
    assert!(matches!(err, ViewError::Missing("RecordCount")), "{err}");
}
