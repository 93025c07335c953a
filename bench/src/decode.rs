//! How the readers of every phase decode an answer: every record's every value parsed to its
//! type (TUPLE) or its bytes checked present (BLOB), strings borrowed from the answer rather
//! than copied, as a consumer that looks at each record once would read them. Protobuf answers
//! are walked in place (`sluice_proto::pb_view`, what `sluice_client::RecordsPage` lends out);
//! JSON answers are deserialized into typed, borrowing structs (`serde`), not a `Value` tree.

use std::borrow::Cow;

use anyhow::Context;
use serde::Deserialize;
use sluice_proto::pb_view::RecordsView;
use sluice_proto::{RecordSchema, ValueRef};

/// A protobuf `GetRecordsResponse` (the frame's payload): its next cursor and record count.
pub fn protobuf_read(
    message: &[u8],
    schema: Option<&RecordSchema>,
) -> anyhow::Result<(String, u64)> {
    let view = RecordsView::parse(message)?;
    let mut n = 0u64;
    for record in view.records() {
        let record = record?;
        match schema {
            Some(schema) => {
                for value in record.values(schema) {
                    value?;
                }
            }
            None => anyhow::ensure!(record.blob()?.is_some(), "a BLOB record without data"),
        }
        n += 1;
    }
    Ok((view.next_cursor.to_string(), n))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonRead<'a> {
    #[serde(borrow)]
    next_cursor: Cow<'a, str>,
    record_count: u64,
    #[serde(borrow)]
    records: Vec<JsonRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonRecord<'a> {
    #[allow(dead_code)]
    sequence: i64,
    #[allow(dead_code)]
    system_time: i64,
    #[serde(borrow)]
    data: Vec<Option<Cow<'a, str>>>,
}

/// A JSON read answer of a TUPLE topic: its next cursor and record count.
pub fn json_read(body: &[u8], schema: &RecordSchema) -> anyhow::Result<(String, u64)> {
    let read: JsonRead<'_> = serde_json::from_slice(body).context("a JSON read answer")?;
    anyhow::ensure!(
        read.records.len() as u64 == read.record_count,
        "RecordCount {} but {} records",
        read.record_count,
        read.records.len()
    );
    for record in &read.records {
        anyhow::ensure!(
            record.data.len() == schema.fields.len(),
            "a record of {} values",
            record.data.len()
        );
        for (field, cell) in schema.fields.iter().zip(&record.data) {
            ValueRef::parse(field, cell.as_deref())?;
        }
    }
    Ok((read.next_cursor.into_owned(), read.record_count))
}
