//! SINK_DATAHUB: copies records into a topic on another DataHub endpoint (another Sluice or
//! the cloud service) with signed protobuf puts, attributes included.
//!
//! Tuple values go to the target field of the same name (target fields without a column get
//! NULL); BLOB payloads go as they are. Records of source shard N go to target shard N when
//! that shard is ACTIVE, else to an ACTIVE shard chosen by N, so the order per source shard
//! is kept. Errors: unreachable / throttled / 5xx → transient; a record the target rejects
//! (`MalformedRecord`, `InvalidParameter`) → bad record; unknown project or topic, bad
//! credentials, an incompatible target or a TLS failure (an https endpoint whose certificate
//! is not trusted: see `tls.rs`) → configuration.

use sluice_client::{Client, ClientError};
use sluice_proto::{Record, RecordData, RecordSchema, Value};

use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};

use super::DatahubConfig;

/// Records per put request.
const PUT_CHUNK: usize = 1000;

/// Opens a SINK_DATAHUB task's sink.
pub async fn open(cfg: DatahubConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(DatahubSink::open(cfg, columns).await?))
}

/// How source columns map onto the target topic.
enum Target {
    /// For each target field, the column index feeding it.
    Tuple(Vec<Option<usize>>),
    Blob,
}

pub struct DatahubSink {
    client: Client,
    cfg: DatahubConfig,
    target: Target,
    /// Target shard ids that are ACTIVE, ascending.
    active: Vec<u32>,
    pending: Vec<(u32, Record)>,
}

fn classify(e: ClientError, what: &str) -> SinkError {
    // An untrusted certificate or failed handshake does not heal by retrying.
    if let ClientError::Transport(t) = &e {
        if let Some(config) =
            crate::sinks::tls::http_config_error(&crate::sinks::tls::current(), what, t)
        {
            return config;
        }
    }
    let message = format!("{what}: {e}");
    let error = match e.code() {
        None => SinkError::transient(message),
        Some("MalformedRecord" | "InvalidParameter" | "InvalidSchema") => {
            SinkError::bad_record(message)
        }
        Some(
            "NoSuchProject" | "NoSuchTopic" | "Unauthorized" | "NoPermission" | "InvalidUriSpec",
        ) => SinkError::config(message),
        Some(_) => SinkError::transient(message),
    };
    error.with_source(e)
}

impl DatahubSink {
    /// Connects: reads the target topic's type, schema and shards.
    pub async fn open(
        cfg: DatahubConfig,
        columns: SharedColumns,
    ) -> Result<DatahubSink, SinkError> {
        // https: the system roots plus connector_tls_ca_file (sinks/tls.rs).
        let http = crate::sinks::tls::http_client_builder(&crate::sinks::tls::current());
        let client =
            Client::with_http(&cfg.endpoint, &cfg.access_id, cfg.access_key.expose(), http)
                .map_err(|e| {
                    SinkError::config(format!("DataHub endpoint {}: {e}", cfg.endpoint))
                })?;
        let where_ = format!(
            "target topic {}/{} at {}",
            cfg.project, cfg.topic, cfg.endpoint
        );
        let info = client
            .get_topic(&cfg.project, &cfg.topic)
            .await
            .map_err(|e| classify(e, &where_))?;
        let target = match info.schema {
            Some(schema) => Target::Tuple(map_fields(&schema, &columns.names, &where_)?),
            None if info.record_type.eq_ignore_ascii_case("BLOB") => Target::Blob,
            None => return Err(SinkError::config(format!("{where_} has no schema"))),
        };
        let mut sink = DatahubSink {
            client,
            cfg,
            target,
            active: Vec::new(),
            pending: Vec::new(),
        };
        sink.refresh_shards().await?;
        Ok(sink)
    }

    async fn refresh_shards(&mut self) -> Result<(), SinkError> {
        let shards = self
            .client
            .list_shards(&self.cfg.project, &self.cfg.topic)
            .await
            .map_err(|e| classify(e, "listing the target topic's shards"))?;
        let mut active: Vec<u32> = shards
            .iter()
            .filter(|s| s.state == "ACTIVE")
            .filter_map(|s| s.shard_id.parse().ok())
            .collect();
        active.sort_unstable();
        if active.is_empty() {
            return Err(SinkError::transient(format!(
                "target topic {}/{} has no ACTIVE shard",
                self.cfg.project, self.cfg.topic
            )));
        }
        self.active = active;
        Ok(())
    }

    fn target_shard(&self, source_shard: u32) -> u32 {
        if self.active.contains(&source_shard) {
            source_shard
        } else {
            self.active[source_shard as usize % self.active.len()]
        }
    }

    fn convert(&self, r: &SinkRecord) -> Result<Record, SinkError> {
        let data = match (&self.target, &r.data) {
            (Target::Tuple(map), SinkData::Tuple(values)) => RecordData::Tuple(
                map.iter()
                    .map(|c| {
                        c.and_then(|i| values.get(i).cloned())
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
            ),
            (Target::Blob, SinkData::Blob(b)) => RecordData::Blob(b.clone()),
            (Target::Blob, SinkData::Tuple(_)) => {
                return Err(SinkError::config(
                    "the target topic is BLOB but the source is TUPLE".into(),
                ))
            }
            (Target::Tuple(_), SinkData::Blob(_)) => {
                return Err(SinkError::config(
                    "the target topic is TUPLE but the source is BLOB".into(),
                ))
            }
        };
        Ok(Record {
            data,
            attributes: r.attributes.clone(),
        })
    }
}

/// For each target field, the column with the same name; a target field without one must be
/// nullable.
fn map_fields(
    schema: &RecordSchema,
    columns: &[String],
    where_: &str,
) -> Result<Vec<Option<usize>>, SinkError> {
    schema
        .fields
        .iter()
        .map(|f| {
            let found = columns.iter().position(|c| c.eq_ignore_ascii_case(&f.name));
            if found.is_none() && f.not_null {
                return Err(SinkError::config(format!(
                    "{where_}: field {} is NOT NULL but the connector has no such column",
                    f.name
                )));
            }
            Ok(found)
        })
        .collect()
}

#[async_trait::async_trait]
impl Sink for DatahubSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        for r in records {
            let rec = self.convert(r)?;
            let shard = self.target_shard(r.shard_id);
            self.pending.push((shard, rec));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        while start < pending.len() {
            let shard = pending[start].0;
            let mut end = start;
            while end < pending.len() && pending[end].0 == shard && end - start < PUT_CHUNK {
                end += 1;
            }
            let records: Vec<Record> = pending[start..end].iter().map(|(_, r)| r.clone()).collect();
            let result = self
                .client
                .put_pb_to_shard(
                    &self.cfg.project,
                    &self.cfg.topic,
                    &shard.to_string(),
                    &records,
                )
                .await;
            if let Err(e) = result {
                if e.code() == Some("InvalidShardOperation") || e.code() == Some("NoSuchShard") {
                    // The target was split or merged: route again next time.
                    let _ = self.refresh_shards().await;
                }
                return Err(classify(e, &format!("put into target shard {shard}")));
            }
            start = end;
        }
        Ok(())
    }
}
