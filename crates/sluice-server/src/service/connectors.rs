//! Connector management (protocol doc §4.9): create, list, get, update, delete, shard status,
//! reload, append field, state, offsets and done time, for all nine connector types.
//!
//! Definitions and checkpoints live in the meta store; a RUNNING connector also has a
//! [`ConnectorRuntime`] (from `sluice-connect`) reading the topic through [`TopicSource`].
//! Changing a connector (config, columns, state, offsets) stops its runtime, writes the meta
//! store, and starts a new runtime from the saved checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use sluice_connect::runtime::status::{self, Checkpoint, LogView, ShardReport};
use sluice_connect::runtime::{ConnectorRuntime, ConnectorSpec, RuntimeConfig, SinkOpener};
use sluice_connect::sink::Columns;
use sluice_connect::{sinks, ConnectorKind};
use sluice_meta::ConnectorRow;

use super::catalog::{now_ms, now_secs, Catalog, RecordType, Topic};
use super::connector_source::{checkpoint_of, checkpoint_row, shard_infos, TopicSource};
use super::error::{Error, Result};

pub const RUNNING: &str = "CONNECTOR_RUNNING";
pub const STOPPED: &str = "CONNECTOR_STOPPED";

/// A connector and, while it runs, its runtime.
struct Entry {
    row: ConnectorRow,
    runtime: Option<ConnectorRuntime>,
}

/// Every connector of the server, keyed by (topic uid, connector id).
pub struct ConnectorRegistry {
    entries: tokio::sync::Mutex<BTreeMap<(i64, String), Entry>>,
    worker: String,
}

impl Default for ConnectorRegistry {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        ConnectorRegistry {
            entries: tokio::sync::Mutex::new(BTreeMap::new()),
            worker: format!("{host}/sluice-{}", std::process::id()),
        }
    }
}

/// A create request, decoded.
pub struct NewConnector {
    pub kind: String,
    pub column_fields: Vec<String>,
    pub config: Json,
    pub start_time: i64,
    pub creator: String,
}

/// A connector as `get` shows it.
pub struct ConnectorView {
    pub row: ConnectorRow,
    pub worker: String,
    /// (shard, first retained seq, end seq or -1, checkpoint seq)
    pub shard_contexts: Vec<(u32, i64, i64, i64)>,
}

/// `get_connector_done_time`.
pub struct DoneTime {
    pub done_time: i64,
    pub time_zone: String,
    pub time_window: i64,
}

fn kind_of(row: &ConnectorRow) -> Result<ConnectorKind> {
    ConnectorKind::parse(&row.kind)
        .ok_or_else(|| Error::Internal(format!("stored connector type {:?} is unknown", row.kind)))
}

fn new_connector_id(kind: ConnectorKind) -> String {
    format!(
        "{}_{}{:04x}",
        kind.as_str(),
        now_ms(),
        rand::random::<u16>()
    )
}

/// Checks column names against a topic: each in the schema, none twice.
fn check_columns(topic: &Topic, columns: &[String]) -> Result<Columns> {
    let schema = topic.meta.read().current_schema();
    let mut out = Columns {
        names: Vec::new(),
        types: Vec::new(),
    };
    for name in columns {
        let field = match (&schema, topic.record_type) {
            (Some(s), RecordType::Tuple) => s.index_of(name).map(|i| s.fields[i].clone()),
            _ => None,
        };
        let field = field.ok_or_else(|| {
            Error::InvalidParameter(format!(
                "ColumnFields: field {name:?} is not in the schema of topic {}",
                topic.name
            ))
        })?;
        if out.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(Error::InvalidParameter(format!(
                "ColumnFields: field {name:?} is listed twice"
            )));
        }
        out.names.push(field.name.clone());
        out.types.push(field.field_type);
    }
    Ok(out)
}

impl Catalog {
    fn runtime_config(&self, worker: &str) -> RuntimeConfig {
        RuntimeConfig {
            max_batch_records: self.config.connector_batch_records,
            max_batch_bytes: self.config.connector_batch_bytes,
            max_batch_age: Duration::from_millis(self.config.connector_batch_age_ms),
            worker_address: worker.to_string(),
            ..RuntimeConfig::default()
        }
    }

    fn start_runtime(
        &self,
        topic: &Arc<Topic>,
        row: &ConnectorRow,
        checkpoints: Vec<Checkpoint>,
        worker: &str,
    ) -> Result<ConnectorRuntime> {
        let kind = kind_of(row)?;
        let columns = Arc::new(check_columns(topic, &row.column_fields)?);
        let config: Json = serde_json::from_str(&row.config)
            .map_err(|e| Error::Internal(format!("stored connector config is unreadable: {e}")))?;
        let config = Arc::new(config);
        let open_sink: SinkOpener = Arc::new(move |cols| {
            let config = config.clone();
            Box::pin(async move { sinks::open(kind, &config, cols).await })
        });
        let spec = ConnectorSpec {
            name: format!("{}/{}/{}", topic.project, topic.name, row.connector_id),
            columns,
            open_sink,
            start_time: row.start_time,
            config: self.runtime_config(worker),
        };
        let source = Arc::new(TopicSource {
            topic: topic.clone(),
            meta: self.meta.clone(),
            connector_id: row.connector_id.clone(),
        });
        Ok(ConnectorRuntime::start(spec, source, checkpoints))
    }

    async fn load_checkpoints(&self, topic: &Topic, id: &str) -> Result<Vec<Checkpoint>> {
        Ok(self
            .meta
            .load_checkpoints(topic.uid, id)
            .await?
            .iter()
            .map(checkpoint_of)
            .collect())
    }

    /// Starts the runtimes of every RUNNING connector (server start); forgets connectors of
    /// topics that no longer exist.
    pub async fn start_connectors(&self) -> Result<()> {
        let topics: HashMap<i64, Arc<Topic>> =
            self.all_topics().into_iter().map(|t| (t.uid, t)).collect();
        let mut entries = self.connectors.entries.lock().await;
        for row in self.meta.load_connectors().await? {
            let Some(topic) = topics.get(&row.topic_uid) else {
                self.meta.delete_topic_connectors(row.topic_uid).await?;
                continue;
            };
            let runtime = if row.state == RUNNING {
                let cps = self.load_checkpoints(topic, &row.connector_id).await?;
                Some(self.start_runtime(topic, &row, cps, &self.connectors.worker)?)
            } else {
                None
            };
            entries.insert(
                (row.topic_uid, row.connector_id.clone()),
                Entry { row, runtime },
            );
        }
        Ok(())
    }

    /// Stops every runtime (server shutdown); checkpoints are already saved.
    pub async fn stop_connectors(&self) {
        let mut entries = self.connectors.entries.lock().await;
        for entry in entries.values_mut() {
            if let Some(rt) = entry.runtime.take() {
                rt.stop().await;
            }
        }
    }

    /// Stops and forgets the connectors of a deleted topic.
    pub async fn drop_topic_connectors(&self, topic_uid: i64) -> Result<()> {
        let mut entries = self.connectors.entries.lock().await;
        let keys: Vec<_> = entries
            .keys()
            .filter(|(uid, _)| *uid == topic_uid)
            .cloned()
            .collect();
        for key in keys {
            if let Some(rt) = entries.remove(&key).and_then(|e| e.runtime) {
                rt.stop().await;
            }
        }
        self.meta.delete_topic_connectors(topic_uid).await?;
        Ok(())
    }

    /// Resolves a path segment: a connector id, or a type string naming the topic's single
    /// connector of that type.
    fn resolve(
        entries: &BTreeMap<(i64, String), Entry>,
        topic: &Topic,
        id: &str,
    ) -> Result<(i64, String)> {
        let key = (topic.uid, id.to_string());
        if entries.contains_key(&key) {
            return Ok(key);
        }
        if let Some(kind) = ConnectorKind::parse(id) {
            let of_kind: Vec<&String> = entries
                .iter()
                .filter(|((uid, _), e)| *uid == topic.uid && e.row.kind == kind.as_str())
                .map(|((_, cid), _)| cid)
                .collect();
            match of_kind.as_slice() {
                [one] => return Ok((topic.uid, (*one).clone())),
                [] => {}
                many => {
                    return Err(Error::InvalidParameter(format!(
                        "topic {} has {} connectors of type {}; address one by id: {many:?}",
                        topic.name,
                        many.len(),
                        kind.display_name()
                    )))
                }
            }
        }
        Err(Error::NoSuchConnector(id.to_string()))
    }

    pub async fn create_connector(
        &self,
        project: &str,
        topic: &str,
        new: NewConnector,
    ) -> Result<String> {
        let topic = self.topic(project, topic)?;
        let kind = ConnectorKind::parse(&new.kind).ok_or_else(|| {
            Error::InvalidParameter(format!("connector type {:?} is not one of sink_odps, sink_ads, sink_es, sink_fc, sink_mysql, sink_oss, sink_ots, sink_hologres, sink_datahub", new.kind))
        })?;
        let columns = check_columns(&topic, &new.column_fields)?;
        let config = sinks::accept(kind, &new.config).map_err(Error::InvalidParameter)?;
        if new.start_time < -1 {
            return Err(Error::InvalidParameter(format!(
                "SinkStartTime {} must be a time in milliseconds, or -1 for the oldest record",
                new.start_time
            )));
        }
        let now = now_secs();
        let row = ConnectorRow {
            topic_uid: topic.uid,
            connector_id: new_connector_id(kind),
            kind: kind.as_str().to_string(),
            state: RUNNING.to_string(),
            column_fields: columns.names,
            config: config.to_string(),
            creator: new.creator,
            start_time: new.start_time,
            create_time: now,
            last_modify_time: now,
        };
        let mut entries = self.connectors.entries.lock().await;
        self.create_connector_subscription(&topic, &row).await?;
        let runtime = self.start_runtime(&topic, &row, Vec::new(), &self.connectors.worker)?;
        let id = row.connector_id.clone();
        entries.insert(
            (topic.uid, id.clone()),
            Entry {
                row,
                runtime: Some(runtime),
            },
        );
        Ok(id)
    }

    pub async fn list_connectors(&self, project: &str, topic: &str) -> Result<Vec<String>> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        Ok(entries
            .keys()
            .filter(|(uid, _)| *uid == topic.uid)
            .map(|(_, id)| id.clone())
            .collect())
    }

    /// Checkpoints of a connector: live ones while it runs, else saved ones; shards without
    /// one get where they would start.
    async fn checkpoints_of(
        &self,
        topic: &Topic,
        entry: &Entry,
    ) -> Result<BTreeMap<u32, Checkpoint>> {
        let mut cps: BTreeMap<u32, Checkpoint> = match &entry.runtime {
            Some(rt) => rt.checkpoints(),
            None => self
                .load_checkpoints(topic, &entry.row.connector_id)
                .await?
                .into_iter()
                .map(|c| (c.shard_id, c))
                .collect(),
        };
        for shard in shard_infos(topic) {
            cps.entry(shard.id).or_insert_with(|| {
                let seq = if entry.row.start_time < 0 {
                    shard.first_seq
                } else {
                    topic
                        .shard(shard.id)
                        .and_then(|s| s.log.seq_at_or_after_time(entry.row.start_time))
                        .unwrap_or(shard.next_seq)
                };
                Checkpoint::at(shard.id, seq)
            });
        }
        Ok(cps)
    }

    pub async fn get_connector(
        &self,
        project: &str,
        topic: &str,
        id: &str,
    ) -> Result<ConnectorView> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let entry = &entries[&key];
        let cps = self.checkpoints_of(&topic, entry).await?;
        let shard_contexts = shard_infos(&topic)
            .iter()
            .map(|s| {
                let end = if s.closed { s.next_seq as i64 - 1 } else { -1 };
                let cur = cps.get(&s.id).map(|c| c.next_seq as i64).unwrap_or(-1);
                (s.id, s.first_seq as i64, end, cur)
            })
            .collect();
        Ok(ConnectorView {
            row: entry.row.clone(),
            worker: self.connectors.worker.clone(),
            shard_contexts,
        })
    }

    /// Applies a change to a connector's row: stops its runtime, saves, restarts if RUNNING.
    async fn change<F>(&self, project: &str, topic: &str, id: &str, f: F) -> Result<()>
    where
        F: FnOnce(&Topic, &mut ConnectorRow) -> Result<()>,
    {
        let topic = self.topic(project, topic)?;
        let mut entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let entry = entries.get_mut(&key).expect("resolved");
        let mut row = entry.row.clone();
        f(&topic, &mut row)?;
        row.last_modify_time = now_secs();
        if let Some(rt) = entry.runtime.take() {
            rt.stop().await;
        }
        let saved = self.meta.upsert_connector(&row).await;
        if saved.is_ok() {
            entry.row = row;
        }
        self.set_connector_running(
            topic.uid,
            &entry.row.connector_id,
            entry.row.state == RUNNING,
        )
        .await;
        if entry.row.state == RUNNING {
            let cps = self
                .load_checkpoints(&topic, &entry.row.connector_id)
                .await?;
            entry.runtime =
                Some(self.start_runtime(&topic, &entry.row, cps, &self.connectors.worker)?);
        }
        saved?;
        Ok(())
    }

    pub async fn update_connector_config(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        config: &Json,
    ) -> Result<()> {
        self.change(project, topic, id, |_, row| {
            let kind = kind_of(row)?;
            row.config = sinks::accept(kind, config)
                .map_err(Error::InvalidParameter)?
                .to_string();
            Ok(())
        })
        .await
    }

    pub async fn append_connector_field(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        field: &str,
    ) -> Result<()> {
        self.change(project, topic, id, |topic, row| {
            if row
                .column_fields
                .iter()
                .any(|c| c.eq_ignore_ascii_case(field))
            {
                return Err(Error::InvalidParameter(format!(
                    "FieldName {field:?} is already a column of this connector"
                )));
            }
            let mut cols = row.column_fields.clone();
            cols.push(field.to_string());
            let checked = check_columns(topic, &cols).map_err(|_| {
                Error::InvalidParameter(format!(
                    "FieldName {field:?} is not in the schema of topic {}",
                    topic.name
                ))
            })?;
            row.column_fields = checked.names;
            Ok(())
        })
        .await
    }

    pub async fn update_connector_state(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        state: &str,
    ) -> Result<()> {
        let state = match state.trim().to_ascii_uppercase().as_str() {
            RUNNING => RUNNING,
            STOPPED => STOPPED,
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "State {state:?} must be CONNECTOR_RUNNING or CONNECTOR_STOPPED"
                )))
            }
        };
        self.change(project, topic, id, |_, row| {
            row.state = state.to_string();
            Ok(())
        })
        .await
    }

    pub async fn delete_connector(&self, project: &str, topic: &str, id: &str) -> Result<()> {
        let topic = self.topic(project, topic)?;
        let mut entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        if let Some(rt) = entries.get_mut(&key).and_then(|e| e.runtime.take()) {
            rt.stop().await;
        }
        self.meta.delete_connector(key.0, &key.1).await?;
        self.forget_connector_subscription(key.0, &key.1);
        entries.remove(&key);
        Ok(())
    }

    /// Moves the checkpoint of one shard (or all) to a sequence, or to the first record at
    /// or after a time. Only while STOPPED.
    pub async fn update_connector_offset(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        shard: Option<&str>,
        sequence: Option<i64>,
        time: Option<i64>,
    ) -> Result<()> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let entry = &entries[&key];
        if entry.row.state != STOPPED {
            return Err(Error::InvalidOperation(format!(
                "connector {} is running; stop it (CONNECTOR_STOPPED) before updating its offset",
                entry.row.connector_id
            )));
        }
        let sequence = sequence.filter(|s| *s >= 0);
        let time = time.filter(|t| *t >= 0);
        if sequence.is_none() && time.is_none() {
            return Err(Error::InvalidParameter(
                "UpdateShardContext needs CurrentSequence or CurrentTime".into(),
            ));
        }
        let shards = match shard.filter(|s| !s.trim().is_empty()) {
            Some(s) => vec![topic.shard_by_text(s)?],
            None => topic.shards.read().clone(),
        };
        let mut cps = self.checkpoints_of(&topic, entry).await?;
        let mut changed = Vec::new();
        for s in shards {
            let (first, next) = (s.log.first_seq(), s.log.next_seq());
            let seq = match sequence {
                Some(q) => {
                    let q = q as u64;
                    // Past the end is allowed: the task waits for that sequence.
                    if q < first {
                        return Err(Error::InvalidParameter(format!(
                            "CurrentSequence {q} has expired: shard {}'s oldest record is {first}",
                            s.id
                        )));
                    }
                    q
                }
                None => s
                    .log
                    .seq_at_or_after_time(time.unwrap_or(0))
                    .unwrap_or(next),
            };
            let old = cps
                .remove(&s.id)
                .unwrap_or_else(|| Checkpoint::at(s.id, seq));
            // A given CurrentTime is kept as given and reported back as CurrentTimestamp, as the
            // service does (Java SDK e2e SinkDatahubTest); otherwise the last delivered record's.
            let last_time = time.unwrap_or_else(|| {
                seq.checked_sub(1)
                    .and_then(|p| s.log.time_of(p))
                    .unwrap_or(-1)
            });
            changed.push(Checkpoint {
                shard_id: s.id,
                next_seq: seq,
                last_time,
                discard_count: old.discard_count,
                finished: false,
                update_time: now_ms(),
            });
        }
        let rows: Vec<_> = changed.iter().map(checkpoint_row).collect();
        self.meta.save_checkpoints(topic.uid, &key.1, &rows).await?;
        Ok(())
    }

    /// Restarts the task of a shard (or all) from its checkpoint.
    pub async fn reload_connector(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        shard: Option<&str>,
    ) -> Result<()> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let shard = match shard.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(topic.shard_by_text(s)?.id),
            None => None,
        };
        if let Some(rt) = &entries[&key].runtime {
            rt.reload(shard);
        }
        Ok(())
    }

    fn log_view(topic: &Topic, cp: &Checkpoint) -> LogView {
        match topic.shard(cp.shard_id) {
            Some(s) => LogView {
                first_seq: s.log.first_seq(),
                next_seq: s.log.next_seq(),
                time_at_checkpoint: s.log.time_of(cp.next_seq),
            },
            None => LogView {
                first_seq: cp.next_seq,
                next_seq: cp.next_seq,
                time_at_checkpoint: None,
            },
        }
    }

    /// Status of one shard (or all).
    pub async fn connector_shard_status(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        shard: Option<&str>,
    ) -> Result<Vec<ShardReport>> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let entry = &entries[&key];
        let only = match shard.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(topic.shard_by_text(s)?.id),
            None => None,
        };
        let cps = self.checkpoints_of(&topic, entry).await?;
        let live = entry
            .runtime
            .as_ref()
            .map(|rt| rt.task_status())
            .unwrap_or_default();
        let stopped = entry.row.state == STOPPED;
        let now = now_ms();
        Ok(cps
            .values()
            .filter(|cp| only.is_none_or(|s| s == cp.shard_id))
            .map(|cp| {
                let view = Self::log_view(&topic, cp);
                status::report(
                    cp,
                    &view,
                    live.get(&cp.shard_id),
                    stopped,
                    &self.connectors.worker,
                    now,
                )
            })
            .collect())
    }

    pub async fn connector_done_time(
        &self,
        project: &str,
        topic: &str,
        id: &str,
    ) -> Result<DoneTime> {
        let topic = self.topic(project, topic)?;
        let entries = self.connectors.entries.lock().await;
        let key = Self::resolve(&entries, &topic, id)?;
        let entry = &entries[&key];
        let cps = self.checkpoints_of(&topic, entry).await?;
        let shards: Vec<(Checkpoint, LogView)> = cps
            .values()
            .map(|cp| (*cp, Self::log_view(&topic, cp)))
            .collect();
        let config: Json = serde_json::from_str(&entry.row.config).unwrap_or(Json::Null);
        let window_minutes = config.get("TimeRange").and_then(Json::as_i64).unwrap_or(0);
        Ok(DoneTime {
            done_time: status::connector_done_time(&shards, now_ms()),
            time_zone: "UTC".into(),
            time_window: window_minutes * 60,
        })
    }
}
