//! The protocol-neutral record: what every codec (JSON, protobuf, batch) converts to and from.

use crate::value::Value;

/// The payload of a record: a row of typed values (TUPLE topics) or opaque bytes (BLOB topics).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordData {
    Tuple(Vec<Value>),
    Blob(Vec<u8>),
}

/// One record with its user attributes (order kept as received).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub data: RecordData,
    pub attributes: Vec<(String, String)>,
}
