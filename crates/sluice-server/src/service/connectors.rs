//! Connector management (protocol doc §4.9): create, list, get, update, delete, shard status,
//! reload, append field, state, offsets and done time, for all nine connector types.
//!
//! Definitions and checkpoints live in the meta store; a RUNNING connector also has a
//! [`ConnectorRuntime`] (from `sluice-connect`) reading the topic through [`TopicSource`].
//! Changing a connector (config, columns, state, offsets) stops its runtime, writes the meta
//! store, and starts a new runtime from the saved checkpoints.
//!
//! Locking (one connector never waits for another):
//! - the registry's map is held only to look up, insert or remove a connector's `Slot`,
//!   never across an await;
//! - each slot has its own operation lock, held by change/delete/offset/reload for the whole
//!   operation, including a runtime's stop (at most `connector_stop_grace_ms`);
//! - readers (list, get, shard status, done time) take neither: they copy the slot's
//!   `Snapshot` (row + runtime handle) and read the runtime's live status from it, so they
//!   answer at once even while their own connector is being stopped;
//! - shutdown and topic deletion stop all their runtimes at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;

use sluice_connect::runtime::status::Checkpoint;
use sluice_connect::runtime::{ConnectorRuntime, ConnectorSpec, RuntimeConfig, SinkOpener};
use sluice_connect::sink::Columns;
use sluice_connect::sinks::{self, ConnectorConfig};
use sluice_connect::ConnectorKind;
use sluice_meta::ConnectorRow;

use super::catalog::{now_ms, now_secs, Catalog, RecordType, Topic};
pub use super::connector_registry::ConnectorRegistry;
use super::connector_registry::{stop_slots, RunsHere, Slot, Snapshot, TaskGuards};
use super::connector_source::{checkpoint_of, checkpoint_row, shard_infos, TopicSource};
use super::error::{Error, Result};

pub const RUNNING: &str = "CONNECTOR_RUNNING";
pub const STOPPED: &str = "CONNECTOR_STOPPED";

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
    /// The config in pydatahub's field names.
    pub config: Json,
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

/// Parses a stored config (written by this or an earlier version).
pub(super) fn stored_config(row: &ConnectorRow) -> Result<Arc<ConnectorConfig>> {
    ConnectorConfig::from_stored(kind_of(row)?, &row.config)
        .map(Arc::new)
        .map_err(|e| {
            Error::Internal(format!(
                "stored config of connector {} is unreadable: {e}",
                row.connector_id
            ))
        })
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
pub(super) fn check_columns(topic: &Topic, columns: &[String]) -> Result<Columns> {
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
    fn runtime_config(&self, worker: &str, kind: ConnectorKind) -> RuntimeConfig {
        let (records, bytes, age) = self
            .config
            .connector_batch_for(kind, sinks::batch_defaults(kind));
        // issue 10: lake. A lake file (an OSS object) closes on size or age, not each time the
        // shard catches up: at a steady trickle that would write a tiny file per put.
        let linger = match kind {
            ConnectorKind::Odps | ConnectorKind::Oss => age,
            _ => RuntimeConfig::default().linger,
        };
        RuntimeConfig {
            max_batch_records: records,
            max_batch_bytes: bytes,
            max_batch_age: age,
            linger,
            worker_address: worker.to_string(),
            // issue 9: isolation
            stop_grace: std::time::Duration::from_millis(self.config.connector_stop_grace_ms),
            ..RuntimeConfig::default()
        }
    }

    /// Starts a connector's runtime from `checkpoints`: over every shard (embedded mode), or,
    /// with `tasks` (cluster mode), over the shards whose task leases this node holds, each
    /// saving its checkpoints under its own lease.
    pub(super) fn start_runtime(
        &self,
        topic: &Arc<Topic>,
        row: &ConnectorRow,
        config: &Arc<ConnectorConfig>,
        checkpoints: Vec<Checkpoint>,
        tasks: Option<Arc<TaskGuards>>,
    ) -> Result<ConnectorRuntime> {
        let worker = self.connectors.worker();
        let columns = Arc::new(check_columns(topic, &row.column_fields)?);
        let kind = config.kind();
        let config = config.clone();
        let open_sink: SinkOpener = Arc::new(move |cols| {
            let config = config.clone();
            Box::pin(async move { sinks::open(&config, cols).await })
        });
        let spec = ConnectorSpec {
            name: format!("{}/{}/{}", topic.project, topic.name, row.connector_id),
            columns,
            open_sink,
            start_time: row.start_time,
            config: self.runtime_config(&worker, kind),
        };
        let allowed = tasks.as_ref().map(|t| t.shards());
        let source = Arc::new(TopicSource {
            topic: topic.clone(),
            meta: self.meta.clone(),
            connector_id: row.connector_id.clone(),
            tasks,
        });
        // issue 13: metrics — sink write latency and errors by kind.
        let observer = self
            .metrics
            .connector_observer(&topic.project, &topic.name, &row.connector_id)
            .map(|o| o as Arc<dyn sluice_connect::runtime::TaskObserver>);
        Ok(ConnectorRuntime::start_on(
            spec,
            source,
            checkpoints,
            observer,
            allowed,
        ))
    }

    /// The runtime a connector should have on this node now: none unless RUNNING; over every
    /// shard in the embedded mode; in cluster mode over the shards whose task leases this node
    /// holds (none if it holds none), from the stored checkpoints.
    pub(super) async fn runtime_here(
        &self,
        topic: &Arc<Topic>,
        row: &ConnectorRow,
        config: &Arc<ConnectorConfig>,
    ) -> Result<Option<ConnectorRuntime>> {
        if row.state != RUNNING {
            return Ok(None);
        }
        let tasks = if self.connectors.is_clustered() {
            let tasks = self
                .connectors
                .task_guards(&(row.topic_uid, row.connector_id.clone()));
            if tasks.shards().is_empty() {
                return Ok(None);
            }
            Some(tasks)
        } else {
            None
        };
        let cps = self.load_checkpoints(topic, &row.connector_id).await?;
        self.start_runtime(topic, row, config, cps, tasks).map(Some)
    }

    pub(super) async fn load_checkpoints(
        &self,
        topic: &Topic,
        id: &str,
    ) -> Result<Vec<Checkpoint>> {
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
        for row in self.meta.load_connectors().await? {
            let Some(topic) = topics.get(&row.topic_uid) else {
                self.meta.delete_topic_connectors(row.topic_uid).await?;
                continue;
            };
            let config = stored_config(&row)?;
            let runtime = self.runtime_here(topic, &row, &config).await?;
            self.connectors.slots.lock().insert(
                (row.topic_uid, row.connector_id.clone()),
                Slot::new(row, config, runtime),
            );
        }
        Ok(())
    }

    /// Stops every runtime, all at once (server shutdown); checkpoints are already saved.
    pub async fn stop_connectors(&self) {
        let slots: Vec<Arc<Slot>> = self.connectors.slots.lock().values().cloned().collect();
        stop_slots(slots, false).await;
    }

    /// Stops (all at once) and forgets the connectors of a deleted topic.
    pub async fn drop_topic_connectors(&self, topic_uid: i64) -> Result<()> {
        let slots: Vec<Arc<Slot>> = {
            let mut map = self.connectors.slots.lock();
            let keys: Vec<_> = map
                .keys()
                .filter(|(uid, _)| *uid == topic_uid)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        stop_slots(slots, true).await;
        self.meta.delete_topic_connectors(topic_uid).await?;
        Ok(())
    }

    /// Resolves a path segment: a connector id, or a type string naming the topic's single
    /// connector of that type. Holds the registry's map only while looking.
    pub(super) fn resolve(&self, topic: &Topic, id: &str) -> Result<((i64, String), Arc<Slot>)> {
        let map = self.connectors.slots.lock();
        let key = (topic.uid, id.to_string());
        if let Some(slot) = map.get(&key) {
            return Ok((key, slot.clone()));
        }
        if let Some(kind) = ConnectorKind::parse(id) {
            let of_kind: Vec<(&(i64, String), &Arc<Slot>)> = map
                .iter()
                .filter(|((uid, _), slot)| *uid == topic.uid && slot.kind == kind.as_str())
                .collect();
            match of_kind.as_slice() {
                [(key, slot)] => return Ok(((*key).clone(), (*slot).clone())),
                [] => {}
                many => {
                    let ids: Vec<&String> = many.iter().map(|((_, cid), _)| cid).collect();
                    return Err(Error::InvalidParameter(format!(
                        "topic {} has {} connectors of type {}; address one by id: {ids:?}",
                        topic.name,
                        many.len(),
                        kind.display_name()
                    )));
                }
            }
        }
        Err(Error::NoSuchConnector(id.to_string()))
    }

    /// Resolves a connector and takes its operation lock (waiting for the operation in
    /// progress on it, never for another connector's).
    async fn lock_connector(
        &self,
        topic: &Topic,
        id: &str,
    ) -> Result<((i64, String), Arc<Slot>, tokio::sync::OwnedMutexGuard<bool>)> {
        let (key, slot) = self.resolve(topic, id)?;
        let op = slot.op.clone().lock_owned().await;
        if *op {
            return Err(Error::NoSuchConnector(id.to_string()));
        }
        Ok((key, slot, op))
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
        let config = ConnectorConfig::from_wire(kind, &new.config)
            .map_err(|e| Error::InvalidParameter(e.to_string()))?;
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
            config: config.to_wire().to_string(),
            creator: new.creator,
            start_time: new.start_time,
            create_time: now,
            last_modify_time: now,
        };
        self.create_connector_subscription(&topic, &row).await?;
        let config = Arc::new(config);
        let id = row.connector_id.clone();
        // issue 14: in cluster mode the nodes that win its shards' task leases start them.
        let runtime = self.runtime_here(&topic, &row, &config).await?;
        self.connectors
            .slots
            .lock()
            .insert((topic.uid, id.clone()), Slot::new(row, config, runtime));
        Ok(id)
    }

    pub async fn list_connectors(&self, project: &str, topic: &str) -> Result<Vec<String>> {
        let topic = self.topic(project, topic)?;
        let map = self.connectors.slots.lock();
        Ok(map
            .keys()
            .filter(|(uid, _)| *uid == topic.uid)
            .map(|(_, id)| id.clone())
            .collect())
    }

    /// Checkpoints of a connector: live ones while it runs here over every shard (embedded
    /// mode), else saved ones. In cluster mode the saved ones are never behind a runtime's
    /// (a task records a checkpoint in memory only after saving it, and saves are fenced), while
    /// a node that was frozen may still hold an old one in memory for a shard another node has
    /// moved on since: so memory is not read there. Shards without one get where they would
    /// start.
    pub(super) async fn checkpoints_of(
        &self,
        topic: &Topic,
        entry: &Snapshot,
    ) -> Result<BTreeMap<u32, Checkpoint>> {
        let live = entry
            .runtime
            .as_ref()
            .filter(|rt| rt.allowed().is_none())
            .map(|rt| rt.checkpoints());
        let mut cps: BTreeMap<u32, Checkpoint> = match live {
            Some(cps) => cps,
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
        let (_, slot) = self.resolve(&topic, id)?;
        let entry = slot.snapshot();
        let cps = self.checkpoints_of(&topic, &entry).await?;
        let shard_contexts = shard_infos(&topic)
            .iter()
            .map(|s| {
                let end = if s.closed { s.next_seq as i64 - 1 } else { -1 };
                // CurrentSequence is the last record delivered (-1: none yet).
                let cur = cps.get(&s.id).map_or(-1, |c| c.next_seq as i64 - 1);
                (s.id, s.first_seq as i64, end, cur)
            })
            .collect();
        Ok(ConnectorView {
            config: entry.config.to_wire(),
            row: entry.row,
            worker: self.connectors.worker(),
            shard_contexts,
        })
    }

    /// Applies a change to a connector's row (and its config, when `f` returns a new one):
    /// stops its runtime, saves, restarts if RUNNING.
    async fn change<F>(&self, project: &str, topic: &str, id: &str, f: F) -> Result<()>
    where
        F: FnOnce(&Topic, &mut ConnectorRow) -> Result<Option<ConnectorConfig>>,
    {
        let topic = self.topic(project, topic)?;
        let (key, slot, op) = self.lock_connector(&topic, id).await?;
        let entry = slot.snapshot();
        let mut row = entry.row.clone();
        let new_config = f(&topic, &mut row)?.map(Arc::new);
        if let Some(c) = &new_config {
            row.config = c.to_wire().to_string();
        }
        row.last_modify_time = now_secs();
        if let Some(rt) = &entry.runtime {
            rt.stop().await;
        }
        let saved = self.meta.upsert_connector(&row).await;
        let (row, config) = if saved.is_ok() {
            (row, new_config.unwrap_or(entry.config))
        } else {
            (entry.row, entry.config)
        };
        self.set_connector_running(topic.uid, &row.connector_id, row.state == RUNNING)
            .await;
        let started = self.runtime_here(&topic, &row, &config).await;
        let (runtime, started) = match started {
            Ok(rt) => (rt, Ok(())),
            Err(e) => (None, Err(e)),
        };
        let stopped = row.state != RUNNING;
        slot.set(row, config, runtime);
        drop(op);
        saved?;
        if stopped {
            // issue 14: once STOPPED, no task anywhere may still move a checkpoint.
            self.wait_tasks_released(key.0, &key.1).await;
        }
        started
    }

    pub async fn update_connector_config(
        &self,
        project: &str,
        topic: &str,
        id: &str,
        config: &Json,
    ) -> Result<()> {
        self.change(project, topic, id, |_, row| {
            ConnectorConfig::from_wire(kind_of(row)?, config)
                .map(Some)
                .map_err(|e| Error::InvalidParameter(e.to_string()))
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
            Ok(None)
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
            Ok(None)
        })
        .await
    }

    pub async fn delete_connector(&self, project: &str, topic: &str, id: &str) -> Result<()> {
        let topic = self.topic(project, topic)?;
        let (key, slot, mut op) = self.lock_connector(&topic, id).await?;
        let runtime = slot.snapshot().runtime;
        if let Some(rt) = runtime {
            rt.stop().await;
        }
        slot.take_runtime();
        self.meta.delete_connector(key.0, &key.1).await?;
        *op = true;
        self.forget_connector_subscription(key.0, &key.1);
        self.connectors.slots.lock().remove(&key);
        drop(op);
        self.wait_tasks_released(key.0, &key.1).await;
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
        let (key, slot, _op) = self.lock_connector(&topic, id).await?;
        let entry = slot.snapshot();
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
        let mut cps = self.checkpoints_of(&topic, &entry).await?;
        let mut changed = Vec::new();
        for s in shards {
            let (first, next) = (s.log.first_seq(), s.log.next_seq());
            let seq = match sequence {
                // CurrentSequence is the last record delivered: the task resumes after it.
                Some(q) => {
                    let resume = q as u64 + 1;
                    // Past the end is allowed: the task waits for that sequence.
                    if resume < first {
                        return Err(Error::InvalidParameter(format!(
                            "CurrentSequence {q} has expired: shard {}'s oldest record is {first}",
                            s.id
                        )));
                    }
                    resume
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
                late_count: old.late_count,
            });
        }
        let rows: Vec<_> = changed.iter().map(checkpoint_row).collect();
        match self.connectors.runs_here(&key) {
            RunsHere::Leased(g) => {
                self.meta
                    .save_checkpoints_fenced(topic.uid, &key.1, &rows, &g)
                    .await?
            }
            _ => self.meta.save_checkpoints(topic.uid, &key.1, &rows).await?,
        }
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
        let (_, slot, _op) = self.lock_connector(&topic, id).await?;
        let shard = match shard.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(topic.shard_by_text(s)?.id),
            None => None,
        };
        if let Some(rt) = &slot.snapshot().runtime {
            rt.reload(shard);
        }
        Ok(())
    }
}

// issue 13: metrics
impl Catalog {
    /// Every connector, as (topic uid, connector id), for the metrics scrape.
    pub fn connector_keys(&self) -> Vec<(i64, String)> {
        self.connectors.slots.lock().keys().cloned().collect()
    }
}
