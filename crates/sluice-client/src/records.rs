//! Record calls: cursors, puts and gets in the protobuf and batch protocols, and JSON puts.

use base64::Engine;
use bytes::Bytes;
use prost::Message;
use reqwest::Method;
use serde_json::json;
use sluice_proto::batch::{self, BatchCompression, TopicKind};
use sluice_proto::{envelope, pb, Record, RecordData, RecordSchema, Value};

use crate::client::{Client, ClientError};
use crate::read_page::owned_record;

/// Where a cursor points.
#[derive(Debug, Clone, Copy)]
pub enum CursorType {
    Oldest,
    Latest,
    Sequence(i64),
    SystemTime(i64),
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub sequence: i64,
    pub system_time: i64,
    pub record: Record,
}

/// One stored batch read back (batch protocol).
#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub sequence: i64,
    pub system_time: i64,
    pub data: Bytes,
}

fn shard_path(project: &str, topic: &str, shard: &str) -> String {
    format!("/projects/{project}/topics/{topic}/shards/{shard}")
}

pub(crate) fn decode_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Decode(e.to_string())
}

/// The protobuf message inside a framed response.
fn unframe<M: Message + Default>(bytes: &[u8]) -> Result<M, ClientError> {
    M::decode(envelope::unwrap(bytes).map_err(decode_error)?).map_err(decode_error)
}

/// A record as protobuf: text values for tuples, one value for blobs.
fn pb_entry(record: &Record, shard_id: Option<&str>) -> pb::RecordEntry {
    let data = match &record.data {
        RecordData::Tuple(values) => values
            .iter()
            .map(|v| pb::FieldData {
                value: v.to_text().map(String::into_bytes),
            })
            .collect(),
        RecordData::Blob(b) => vec![pb::FieldData {
            value: Some(b.clone()),
        }],
    };
    pb::RecordEntry {
        shard_id: shard_id.map(str::to_string),
        hash_key: None,
        partition_key: None,
        cursor: None,
        next_cursor: None,
        sequence: None,
        system_time: None,
        attributes: (!record.attributes.is_empty()).then(|| pb::RecordAttributes {
            attributes: record
                .attributes
                .iter()
                .map(|(k, v)| pb::StringPair {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        }),
        data: pb::RecordData { data },
    }
}

impl Client {
    /// A get (`sub`) in the protobuf or batch protocol (`content_type`): the framed answer.
    pub(crate) async fn get_framed(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        cursor: &str,
        limit: i32,
        content_type: &str,
    ) -> Result<Bytes, ClientError> {
        let req = pb::GetRecordsRequest {
            cursor: cursor.to_string(),
            limit: Some(limit),
        };
        self.framed(
            &shard_path(project, topic, shard),
            content_type,
            "sub",
            &req,
        )
        .await
    }

    /// A framed protobuf or batch record call (`action` is `pub` or `sub`).
    async fn framed<M: Message>(
        &self,
        path: &str,
        content_type: &str,
        action: &str,
        message: &M,
    ) -> Result<Bytes, ClientError> {
        self.send(
            Method::POST,
            path,
            None,
            content_type,
            &[("x-datahub-request-action", action.to_string())],
            envelope::wrap(&message.encode_to_vec()),
        )
        .await
    }

    pub async fn get_cursor(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        kind: CursorType,
    ) -> Result<String, ClientError> {
        let body = match kind {
            CursorType::Oldest => json!({"Action": "cursor", "Type": "OLDEST"}),
            CursorType::Latest => json!({"Action": "cursor", "Type": "LATEST"}),
            CursorType::Sequence(s) => {
                json!({"Action": "cursor", "Type": "SEQUENCE", "Sequence": s})
            }
            CursorType::SystemTime(t) => {
                json!({"Action": "cursor", "Type": "SYSTEM_TIME", "SystemTime": t})
            }
        };
        let v = self
            .json(
                Method::POST,
                &shard_path(project, topic, shard),
                None,
                Some(body),
            )
            .await?;
        v["Cursor"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| decode_error("no Cursor in the response"))
    }

    /// Routed protobuf put to `/shards`; returns the failed (index, code) pairs.
    pub async fn put_records_pb(
        &self,
        project: &str,
        topic: &str,
        records: &[(Record, String)],
    ) -> Result<Vec<(i32, String)>, ClientError> {
        let req = pb::PutRecordsRequest {
            records: records
                .iter()
                .map(|(r, shard)| pb_entry(r, Some(shard)))
                .collect(),
        };
        let bytes = self
            .framed(
                &format!("/projects/{project}/topics/{topic}/shards"),
                "application/x-protobuf",
                "pub",
                &req,
            )
            .await?;
        let resp = unframe::<pb::PutRecordsResponse>(&bytes)?;
        Ok(resp
            .failed_records
            .into_iter()
            .map(|f| (f.index, f.error_code.unwrap_or_default()))
            .collect())
    }

    /// Protobuf put into one shard (all or nothing).
    pub async fn put_pb_to_shard(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        records: &[Record],
    ) -> Result<(), ClientError> {
        let req = pb::PutRecordsRequest {
            records: records.iter().map(|r| pb_entry(r, None)).collect(),
        };
        self.framed(
            &shard_path(project, topic, shard),
            "application/x-protobuf",
            "pub",
            &req,
        )
        .await?;
        Ok(())
    }

    /// Batch-protocol put of records encoded with `schema` version `version` (BLOB: None, -1).
    pub async fn put_batch_to_shard(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        records: &[Record],
        schema: Option<&RecordSchema>,
        version: i32,
    ) -> Result<(), ClientError> {
        let data = batch::encode_batch(records, schema, version, BatchCompression::None);
        self.put_raw_batch(project, topic, shard, data).await
    }

    /// Batch-protocol put of one already-encoded batch.
    pub async fn put_raw_batch(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        data: Vec<u8>,
    ) -> Result<(), ClientError> {
        let req = pb::PutBinaryRecordsRequest {
            records: vec![pb::BinaryRecordEntry {
                cursor: None,
                next_cursor: None,
                sequence: None,
                system_time: None,
                serial: None,
                data: Some(Bytes::from(data)),
            }],
        };
        self.framed(
            &shard_path(project, topic, shard),
            "application/x-binary",
            "pub",
            &req,
        )
        .await?;
        Ok(())
    }

    /// JSON put routed by shard id; returns the number of failed records.
    pub async fn put_records_json(
        &self,
        project: &str,
        topic: &str,
        records: &[(Record, String)],
    ) -> Result<usize, ClientError> {
        let list: Vec<_> = records
            .iter()
            .map(|(r, shard)| {
                let data = match &r.data {
                    RecordData::Tuple(values) => {
                        json!(values.iter().map(Value::to_text).collect::<Vec<_>>())
                    }
                    RecordData::Blob(b) => {
                        json!(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                };
                let attrs: serde_json::Map<String, serde_json::Value> = r
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({"Data": data, "ShardId": shard, "Attributes": attrs})
            })
            .collect();
        let v = self
            .json(
                Method::POST,
                &format!("/projects/{project}/topics/{topic}/shards"),
                None,
                Some(json!({"Action": "pub", "Records": list})),
            )
            .await?;
        Ok(v["FailedRecordCount"].as_u64().unwrap_or(0) as usize)
    }

    /// Protobuf get; tuple values are parsed with `schema` (None for BLOB topics).
    pub async fn get_records_pb(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        cursor: &str,
        limit: i32,
        schema: Option<&RecordSchema>,
    ) -> Result<(Vec<ReadRecord>, String), ClientError> {
        let page = self
            .get_records_page(project, topic, shard, cursor, limit)
            .await?;
        let records = page
            .records()
            .map(|r| {
                r.and_then(|r| owned_record(&r, schema))
                    .map_err(decode_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, page.next_cursor().to_string()))
    }

    /// Batch-protocol get: stored batches as they are.
    pub async fn get_batches(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        cursor: &str,
        limit: i32,
    ) -> Result<(Vec<ReadBatch>, String), ClientError> {
        let bytes = self
            .get_framed(project, topic, shard, cursor, limit, "application/x-binary")
            .await?;
        let resp = unframe::<pb::GetBinaryRecordsResponse>(&bytes)?;
        let batches = resp
            .records
            .into_iter()
            .map(|e| ReadBatch {
                sequence: e.sequence.unwrap_or(-1),
                system_time: e.system_time.unwrap_or(0),
                data: e.data.unwrap_or_default(),
            })
            .collect();
        Ok((batches, resp.next_cursor))
    }

    /// Decodes the records of a batch read back.
    pub fn decode_batch(
        data: &[u8],
        schema: Option<(i32, &RecordSchema)>,
    ) -> Result<Vec<Record>, ClientError> {
        let owned = schema.map(|(v, s)| (v, s.clone()));
        let kind = match &owned {
            Some(lookup) => TopicKind::Tuple(lookup),
            None => TopicKind::Blob,
        };
        Ok(batch::decode_batch(data, kind)
            .map_err(decode_error)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }
}
