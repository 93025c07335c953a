//! Protobuf messages of the record calls (protocol doc §5.2), as prost structs (proto2).

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct StringPair {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// One column; an absent value is NULL.
#[derive(Clone, PartialEq, Message)]
pub struct FieldData {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RecordAttributes {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<StringPair>,
}

/// One FieldData per column; BLOB records carry exactly one.
#[derive(Clone, PartialEq, Message)]
pub struct RecordData {
    #[prost(message, repeated, tag = "1")]
    pub data: Vec<FieldData>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FailedRecord {
    #[prost(int32, required, tag = "1")]
    pub index: i32,
    #[prost(string, optional, tag = "2")]
    pub error_code: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub error_message: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RecordEntry {
    #[prost(string, optional, tag = "1")]
    pub shard_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub hash_key: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub partition_key: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub cursor: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub next_cursor: Option<String>,
    #[prost(int64, optional, tag = "6")]
    pub sequence: Option<i64>,
    #[prost(int64, optional, tag = "7")]
    pub system_time: Option<i64>,
    #[prost(message, optional, tag = "8")]
    pub attributes: Option<RecordAttributes>,
    #[prost(message, required, tag = "9")]
    pub data: RecordData,
}

#[derive(Clone, PartialEq, Message)]
pub struct PutRecordsRequest {
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<RecordEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PutRecordsResponse {
    #[prost(int32, optional, tag = "1")]
    pub failed_count: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub failed_records: Vec<FailedRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetRecordsRequest {
    #[prost(string, required, tag = "1")]
    pub cursor: String,
    #[prost(int32, optional, tag = "2")]
    pub limit: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetRecordsResponse {
    #[prost(string, required, tag = "1")]
    pub next_cursor: String,
    #[prost(int32, required, tag = "2")]
    pub record_count: i32,
    #[prost(int64, optional, tag = "3")]
    pub start_sequence: Option<i64>,
    #[prost(message, repeated, tag = "4")]
    pub records: Vec<RecordEntry>,
    #[prost(int64, optional, tag = "5")]
    pub latest_sequence: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub latest_time: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BinaryRecordEntry {
    #[prost(string, optional, tag = "1")]
    pub cursor: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub next_cursor: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub sequence: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub system_time: Option<i64>,
    #[prost(uint32, optional, tag = "5")]
    pub serial: Option<u32>,
    #[prost(bytes = "bytes", optional, tag = "6")]
    pub data: Option<bytes::Bytes>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PutBinaryRecordsRequest {
    #[prost(message, repeated, tag = "1")]
    pub records: Vec<BinaryRecordEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetBinaryRecordsResponse {
    #[prost(string, required, tag = "1")]
    pub next_cursor: String,
    #[prost(int32, required, tag = "2")]
    pub record_count: i32,
    #[prost(int64, optional, tag = "3")]
    pub start_sequence: Option<i64>,
    #[prost(message, repeated, tag = "4")]
    pub records: Vec<BinaryRecordEntry>,
    #[prost(int64, optional, tag = "5")]
    pub latest_sequence: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub latest_time: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sdk_put_vector() {
        // One BLOB record b"hello" with attribute k=v, as pydatahub's PB client sends it (§8).
        let bytes = [
            0x0a, 0x15, 0x42, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x4a, 0x09,
            0x0a, 0x07, 0x0a, 0x05, b'h', b'e', b'l', b'l', b'o',
        ];
        let req = PutRecordsRequest::decode(&bytes[..]).unwrap();
        let rec = &req.records[0];
        assert_eq!(rec.data.data[0].value.as_deref(), Some(&b"hello"[..]));
        let attrs = rec.attributes.as_ref().unwrap();
        assert_eq!(attrs.attributes[0].key, "k");
        assert_eq!(attrs.attributes[0].value, "v");
        assert_eq!(req.encode_to_vec(), bytes);
    }

    #[test]
    fn zero_failed_count_is_encoded() {
        let resp = PutRecordsResponse {
            failed_count: Some(0),
            failed_records: vec![],
        };
        assert_eq!(resp.encode_to_vec(), vec![0x08, 0x00]);
    }
}
