//! Protobuf reads kept as received: [`RecordsPage`] holds one `GetRecords` answer and lends out
//! its records ([`sluice_proto::pb_view`]) without copying a value, for readers that look at each
//! record once (a consumer that counts, filters or forwards). [`Client::get_records_pb`] builds
//! its owned records from the same page.

use bytes::Bytes;
use sluice_proto::pb_view::{RecordView, Records, RecordsView, ViewError};
use sluice_proto::{envelope, Record, RecordData, RecordSchema};

use crate::client::{Client, ClientError};
use crate::records::{decode_error, ReadRecord};

/// One protobuf read's answer.
pub struct RecordsPage {
    /// The `GetRecordsResponse` message (the frame's payload), as received.
    message: Bytes,
    next_cursor_at: (usize, usize),
    record_count: i32,
    latest_sequence: Option<i64>,
}

impl RecordsPage {
    /// Reads the frame and the response's own fields; the records are read when iterated.
    pub fn new(framed: Bytes) -> Result<Self, ClientError> {
        let payload = envelope::unwrap(&framed).map_err(decode_error)?;
        let start = payload.as_ptr() as usize - framed.as_ptr() as usize;
        let message = framed.slice(start..start + payload.len());
        let view = RecordsView::parse(&message).map_err(decode_error)?;
        let cursor_start = view.next_cursor.as_ptr() as usize - message.as_ptr() as usize;
        Ok(RecordsPage {
            next_cursor_at: (cursor_start, cursor_start + view.next_cursor.len()),
            record_count: view.record_count,
            latest_sequence: view.latest_sequence,
            message,
        })
    }

    /// Where the next read starts.
    pub fn next_cursor(&self) -> &str {
        let (start, end) = self.next_cursor_at;
        // Checked as UTF-8 by `RecordsView::parse` in `new`.
        std::str::from_utf8(&self.message[start..end]).unwrap_or_default()
    }

    /// The record count the server stated.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// The shard's latest sequence when the server answered, if it said.
    pub fn latest_sequence(&self) -> Option<i64> {
        self.latest_sequence
    }

    /// The records, borrowed from the page.
    pub fn records(&self) -> Records<'_> {
        Records::of(&self.message)
    }
}

/// A borrowed record made owned: tuple values parsed with `schema`, BLOB bytes otherwise.
pub(crate) fn owned_record(
    view: &RecordView<'_>,
    schema: Option<&RecordSchema>,
) -> Result<ReadRecord, ViewError> {
    let data = match schema {
        Some(schema) => RecordData::Tuple(
            view.values(schema)
                .map(|v| v.map(|v| v.to_value()))
                .collect::<Result<_, _>>()?,
        ),
        None => RecordData::Blob(view.blob()?.map(<[u8]>::to_vec).unwrap_or_default()),
    };
    let attributes = view
        .attributes()
        .map(|pair| pair.map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(ReadRecord {
        sequence: view.sequence.unwrap_or(-1),
        system_time: view.system_time.unwrap_or(0),
        record: Record { data, attributes },
    })
}

impl Client {
    /// Protobuf get, answered as a [`RecordsPage`] whose records are read in place.
    pub async fn get_records_page(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        cursor: &str,
        limit: i32,
    ) -> Result<RecordsPage, ClientError> {
        let framed = self
            .get_framed(
                project,
                topic,
                shard,
                cursor,
                limit,
                "application/x-protobuf",
            )
            .await?;
        RecordsPage::new(framed)
    }
}
