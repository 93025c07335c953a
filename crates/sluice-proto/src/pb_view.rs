//! A protobuf `GetRecordsResponse` read in place: the reader's side of [`crate::pb_read`].
//!
//! Decoding the answer into prost structs costs a `String` per cursor and a `Vec` per value of
//! every record, which a reader then turns into its own values and throws away. [`RecordsView`]
//! walks the message bytes instead: each record is a [`RecordView`] whose cursors, cells and
//! attributes borrow from the response, and [`RecordView::values`] parses the cells into
//! [`ValueRef`]s for a schema. Fields are accepted in any order and unknown fields are skipped,
//! as prost does; the answers equal prost's decoding of the same bytes (see the tests).

use prost::encoding::decode_varint;

use crate::schema::RecordSchema;
use crate::value::{ValueError, ValueRef};

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("protobuf message truncated in {0}")]
    Truncated(&'static str),
    #[error("bad varint in {0}")]
    Varint(&'static str),
    #[error("unsupported wire type {wire_type} for field {tag} in {message}")]
    WireType {
        message: &'static str,
        tag: u32,
        wire_type: u8,
    },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("required field {0} missing")]
    Missing(&'static str),
    #[error("record has {got} values for a schema of {want} fields")]
    FieldCount { got: usize, want: usize },
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// One field of a message: its tag and its payload.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width field (wire type 1 or 5), skipped.
    Fixed(u8),
}

/// Reads the next field of `buf` (of `message`, for errors), or None at its end.
fn next_field<'a>(
    buf: &mut &'a [u8],
    message: &'static str,
) -> Result<Option<(u32, Wire<'a>)>, ViewError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let key = decode_varint(buf).map_err(|_| ViewError::Varint(message))?;
    let (tag, wire_type) = ((key >> 3) as u32, (key & 7) as u8);
    let wire = match wire_type {
        0 => Wire::Varint(decode_varint(buf).map_err(|_| ViewError::Varint(message))?),
        2 => {
            let len = decode_varint(buf).map_err(|_| ViewError::Varint(message))?;
            let len = usize::try_from(len).map_err(|_| ViewError::Truncated(message))?;
            if len > buf.len() {
                return Err(ViewError::Truncated(message));
            }
            let (field, rest) = buf.split_at(len);
            *buf = rest;
            Wire::Bytes(field)
        }
        1 | 5 => {
            let len = if wire_type == 1 { 8 } else { 4 };
            if len > buf.len() {
                return Err(ViewError::Truncated(message));
            }
            *buf = &buf[len..];
            Wire::Fixed(wire_type)
        }
        _ => {
            return Err(ViewError::WireType {
                message,
                tag,
                wire_type,
            })
        }
    };
    Ok(Some((tag, wire)))
}

fn text<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, ViewError> {
    std::str::from_utf8(bytes).map_err(|_| ViewError::NotUtf8(field))
}

/// A wrong wire type for a known field.
fn wire_type_error(message: &'static str, tag: u32, wire: &Wire<'_>) -> ViewError {
    ViewError::WireType {
        message,
        tag,
        wire_type: match wire {
            Wire::Varint(_) => 0,
            Wire::Bytes(_) => 2,
            Wire::Fixed(wire_type) => *wire_type,
        },
    }
}

/// A `GetRecordsResponse` (the message inside the `DHUB` frame), borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordsView<'a> {
    message: &'a [u8],
    pub next_cursor: &'a str,
    pub record_count: i32,
    pub start_sequence: Option<i64>,
    pub latest_sequence: Option<i64>,
    pub latest_time: Option<i64>,
}

impl<'a> RecordsView<'a> {
    /// Reads the response's own fields and checks the framing of every record (not their
    /// contents: [`RecordsView::records`] reads those).
    pub fn parse(message: &'a [u8]) -> Result<Self, ViewError> {
        const M: &str = "GetRecordsResponse";
        let mut view = RecordsView {
            message,
            next_cursor: "",
            record_count: 0,
            start_sequence: None,
            latest_sequence: None,
            latest_time: None,
        };
        let (mut has_cursor, mut has_count) = (false, false);
        let mut buf = message;
        while let Some((tag, wire)) = next_field(&mut buf, M)? {
            match (tag, wire) {
                (1, Wire::Bytes(b)) => {
                    view.next_cursor = text(b, "NextCursor")?;
                    has_cursor = true;
                }
                (2, Wire::Varint(v)) => {
                    view.record_count = v as i32;
                    has_count = true;
                }
                (3, Wire::Varint(v)) => view.start_sequence = Some(v as i64),
                (4, Wire::Bytes(_)) => {}
                (5, Wire::Varint(v)) => view.latest_sequence = Some(v as i64),
                (6, Wire::Varint(v)) => view.latest_time = Some(v as i64),
                (1..=6, wire) => return Err(wire_type_error(M, tag, &wire)),
                _ => {}
            }
        }
        if !has_cursor {
            return Err(ViewError::Missing("NextCursor"));
        }
        if !has_count {
            return Err(ViewError::Missing("RecordCount"));
        }
        Ok(view)
    }

    /// The records, in order.
    pub fn records(&self) -> Records<'a> {
        Records { rest: self.message }
    }
}

/// The records of a [`RecordsView`].
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// The records of a message that [`RecordsView::parse`] accepted (kept by a caller that
    /// holds the bytes, not the view).
    pub fn of(message: &'a [u8]) -> Self {
        Records { rest: message }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, ViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match next_field(&mut self.rest, "GetRecordsResponse") {
                Ok(Some((4, Wire::Bytes(entry)))) => return Some(RecordView::parse(entry)),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => {
                    self.rest = &[];
                    return Some(Err(e));
                }
            }
        }
    }
}

/// One `RecordEntry` of a read, borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordView<'a> {
    pub shard_id: Option<&'a str>,
    pub hash_key: Option<&'a str>,
    pub partition_key: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub next_cursor: Option<&'a str>,
    pub sequence: Option<i64>,
    pub system_time: Option<i64>,
    /// The `RecordAttributes` message, if present.
    attributes: Option<&'a [u8]>,
    /// The `RecordData` message.
    data: &'a [u8],
}

impl<'a> RecordView<'a> {
    fn parse(entry: &'a [u8]) -> Result<Self, ViewError> {
        const M: &str = "RecordEntry";
        let mut view = RecordView::default();
        let mut has_data = false;
        let mut buf = entry;
        while let Some((tag, wire)) = next_field(&mut buf, M)? {
            match (tag, wire) {
                (1, Wire::Bytes(b)) => view.shard_id = Some(text(b, "ShardId")?),
                (2, Wire::Bytes(b)) => view.hash_key = Some(text(b, "HashKey")?),
                (3, Wire::Bytes(b)) => view.partition_key = Some(text(b, "PartitionKey")?),
                (4, Wire::Bytes(b)) => view.cursor = Some(text(b, "Cursor")?),
                (5, Wire::Bytes(b)) => view.next_cursor = Some(text(b, "NextCursor")?),
                (6, Wire::Varint(v)) => view.sequence = Some(v as i64),
                (7, Wire::Varint(v)) => view.system_time = Some(v as i64),
                (8, Wire::Bytes(b)) => view.attributes = Some(b),
                (9, Wire::Bytes(b)) => {
                    view.data = b;
                    has_data = true;
                }
                (1..=9, wire) => return Err(wire_type_error(M, tag, &wire)),
                _ => {}
            }
        }
        if !has_data {
            return Err(ViewError::Missing("Data"));
        }
        Ok(view)
    }

    /// The record's cells in order: each the bytes of one value, None for NULL (a BLOB record
    /// has one cell, its bytes).
    pub fn cells(&self) -> Cells<'a> {
        Cells { rest: self.data }
    }

    /// The first cell: a BLOB record's bytes.
    pub fn blob(&self) -> Result<Option<&'a [u8]>, ViewError> {
        self.cells().next().transpose().map(Option::flatten)
    }

    /// The cells parsed as `schema`'s fields ([`ValueRef::parse`]), checked against it. A
    /// record written before fields were appended to the topic has fewer cells: the missing
    /// trailing fields read as NULL. More cells than fields (a schema older than the record) is
    /// one [`ViewError::FieldCount`] error, after the fields' values.
    pub fn values<'s>(
        &self,
        schema: &'s RecordSchema,
    ) -> impl Iterator<Item = Result<ValueRef<'a>, ViewError>> + 's
    where
        'a: 's,
    {
        let mut cells = self.cells();
        let mut fields = schema.fields.iter();
        let want = schema.fields.len();
        std::iter::from_fn(move || match fields.next() {
            Some(field) => {
                let cell = cells.next().transpose().map(Option::flatten);
                Some(cell.and_then(|cell| {
                    let text = cell.map(|c| text(c, "a field value")).transpose()?;
                    Ok(ValueRef::parse(field, text)?)
                }))
            }
            None => {
                let extra = cells.by_ref().count();
                (extra > 0).then_some(Err(ViewError::FieldCount {
                    got: want + extra,
                    want,
                }))
            }
        })
    }

    /// Whether the record carries an attributes message (possibly empty).
    pub fn has_attributes(&self) -> bool {
        self.attributes.is_some()
    }

    /// The attributes as (key, value) pairs.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.attributes.unwrap_or_default(),
        }
    }
}

/// The cells of a [`RecordView`].
pub struct Cells<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Cells<'a> {
    type Item = Result<Option<&'a [u8]>, ViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (tag, wire) = match next_field(&mut self.rest, "RecordData") {
                Ok(Some(field)) => field,
                Ok(None) => return None,
                Err(e) => return Some(self.fail(e)),
            };
            match (tag, wire) {
                (1, Wire::Bytes(field_data)) => return Some(cell_value(field_data)),
                (1, wire) => return Some(self.fail(wire_type_error("RecordData", 1, &wire))),
                _ => continue,
            }
        }
    }
}

impl Cells<'_> {
    fn fail<T>(&mut self, e: ViewError) -> Result<T, ViewError> {
        self.rest = &[];
        Err(e)
    }
}

/// The value of one `FieldData` message: None when absent (NULL).
fn cell_value(mut field_data: &[u8]) -> Result<Option<&[u8]>, ViewError> {
    let mut value = None;
    while let Some((tag, wire)) = next_field(&mut field_data, "FieldData")? {
        match (tag, wire) {
            (1, Wire::Bytes(b)) => value = Some(b),
            (1, wire) => return Err(wire_type_error("FieldData", 1, &wire)),
            _ => {}
        }
    }
    Ok(value)
}

/// The attributes of a [`RecordView`].
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(&'a str, &'a str), ViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match next_field(&mut self.rest, "RecordAttributes") {
                Ok(Some((1, Wire::Bytes(pair)))) => return Some(string_pair(pair)),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => {
                    self.rest = &[];
                    return Some(Err(e));
                }
            }
        }
    }
}

fn string_pair(mut pair: &[u8]) -> Result<(&str, &str), ViewError> {
    let (mut key, mut value) = (None, None);
    while let Some((tag, wire)) = next_field(&mut pair, "StringPair")? {
        match (tag, wire) {
            (1, Wire::Bytes(b)) => key = Some(text(b, "attribute key")?),
            (2, Wire::Bytes(b)) => value = Some(text(b, "attribute value")?),
            (1 | 2, wire) => return Err(wire_type_error("StringPair", tag, &wire)),
            _ => {}
        }
    }
    Ok((
        key.ok_or(ViewError::Missing("StringPair.Key"))?,
        value.ok_or(ViewError::Missing("StringPair.Value"))?,
    ))
}
