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

/// What a put request holds, counted by walking its protobuf tags without decoding it, so a
/// request's size in memory is known (and can be refused or budgeted) before prost allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutScan {
    /// Entries of the top-level repeated field 1 (records, or batches for the batch protocol).
    pub records: usize,
    /// `FieldData` values inside the records (`PutRecordsRequest` only).
    pub fields: usize,
    /// Attribute pairs inside the records (`PutRecordsRequest` only).
    pub attributes: usize,
}

/// A put request whose protobuf framing is broken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the protobuf message is malformed: {0}")]
pub struct ScanError(&'static str);

impl PutScan {
    /// Bytes the decoded request takes at most: its structs plus its payload, counting one
    /// allocation's overhead (16 bytes) per value and growth slack of the vectors (2x).
    pub fn decoded_bytes(&self, encoded_len: usize) -> usize {
        let structs = self.records * std::mem::size_of::<RecordEntry>()
            + self.fields * std::mem::size_of::<FieldData>()
            + self.attributes * std::mem::size_of::<StringPair>();
        2 * structs + 16 * (self.fields + 2 * self.attributes) + encoded_len
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, ScanError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(ScanError("truncated varint"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ScanError("varint longer than 10 bytes"))
}

/// Calls `on_field(tag, payload)` for each length-delimited field of `buf` and skips the rest.
fn walk(
    mut buf: &[u8],
    mut on_field: impl FnMut(u64, &[u8]) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                buf = buf
                    .get(n..)
                    .ok_or(ScanError("truncated fixed-width field"))?;
            }
            2 => {
                let len = varint(&mut buf)?;
                let len = usize::try_from(len).map_err(|_| ScanError("length out of range"))?;
                if len > buf.len() {
                    return Err(ScanError("a length runs past the end"));
                }
                let (payload, rest) = buf.split_at(len);
                buf = rest;
                on_field(key >> 3, payload)?;
            }
            _ => return Err(ScanError("unsupported wire type")),
        }
    }
    Ok(())
}

/// Counts a `PutRecordsRequest`'s records, their values and attributes, refusing more than
/// `max_records` records before looking further.
pub fn scan_put_records(buf: &[u8], max_records: usize) -> Result<PutScan, ScanError> {
    let mut scan = PutScan::default();
    walk(buf, |tag, _| {
        if tag == 1 {
            scan.records += 1;
        }
        Ok(())
    })?;
    if scan.records > max_records {
        return Ok(scan);
    }
    walk(buf, |tag, entry| {
        if tag != 1 {
            return Ok(());
        }
        walk(entry, |tag, inner| {
            match tag {
                8 => walk(inner, |t, _| {
                    scan.attributes += usize::from(t == 1);
                    Ok(())
                })?,
                9 => walk(inner, |t, _| {
                    scan.fields += usize::from(t == 1);
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })
    })?;
    Ok(scan)
}

/// Counts the entries (batches) of a `PutBinaryRecordsRequest`.
pub fn scan_put_binary_records(buf: &[u8]) -> Result<PutScan, ScanError> {
    let mut scan = PutScan::default();
    walk(buf, |tag, _| {
        scan.records += usize::from(tag == 1);
        Ok(())
    })?;
    Ok(scan)
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

    #[test]
    fn scan_counts_without_decoding() {
        let bytes = [
            0x0a, 0x15, 0x42, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x4a, 0x09,
            0x0a, 0x07, 0x0a, 0x05, b'h', b'e', b'l', b'l', b'o',
        ];
        let one = scan_put_records(&bytes, 10).unwrap();
        assert_eq!((one.records, one.fields, one.attributes), (1, 1, 1));
        // A million empty records (2 bytes each) are counted and refused by count alone.
        let empty: Vec<u8> = [0x0a, 0x00].repeat(1_000_000);
        let many = scan_put_records(&empty, 10_000).unwrap();
        assert_eq!(many.records, 1_000_000);
        // Values are counted inside each record.
        let mut wide = PutRecordsRequest::default();
        wide.records.push(RecordEntry {
            data: RecordData {
                data: vec![FieldData { value: None }; 500],
            },
            ..Default::default()
        });
        let wide = wide.encode_to_vec();
        let scan = scan_put_records(&wide, 10).unwrap();
        assert_eq!((scan.records, scan.fields), (1, 500));
        assert!(scan.decoded_bytes(wide.len()) >= 500 * std::mem::size_of::<FieldData>());
        // Broken framing is an error, not a panic.
        assert!(scan_put_records(&[0x0a, 0x05, 0x00], 10).is_err());
        assert!(scan_put_records(&[0x0f], 10).is_err());
        assert_eq!(scan_put_binary_records(&empty[..20]).unwrap().records, 10);
    }
}
