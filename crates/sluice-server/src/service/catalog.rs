//! The in-memory catalog: projects, topics, schema versions and shards with their storage (an
//! open local log, or a shared store: [`super::storage`]).
//!
//! It also holds the subscriptions registry ([`super::subscriptions`]).
//! Built from the meta store at start-up; every change is written to the meta store first and
//! then applied here under the catalog's change lock, so readers never wait on SQLite.
//!
//! In the cluster mode (`Catalog::cluster`), shards are on the shared log (created, closed and
//! deleted through `cluster::runtime::ClusterRuntime`), and other nodes' changes are followed
//! by [`super::catalog_refresh`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use sluice_log::ShardLog;
use sluice_meta::{MetaStore, ProjectRow, SchemaRow, ShardRow, TopicRow};
use sluice_proto::hashkey;
use sluice_proto::RecordSchema;

use super::error::{Error, Result};
use super::storage::ShardStorage;
use crate::config::ServerConfig;

/// Whether a topic holds typed rows or opaque bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    Tuple,
    Blob,
}

impl RecordType {
    pub fn parse(s: &str) -> Option<RecordType> {
        match s.to_ascii_uppercase().as_str() {
            "TUPLE" => Some(RecordType::Tuple),
            "BLOB" => Some(RecordType::Blob),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Tuple => "TUPLE",
            RecordType::Blob => "BLOB",
        }
    }
}

/// Open or closed for writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    Active,
    /// Being closed by a split or merge: no new writes, not yet read-end.
    Closing,
    Closed,
}

impl ShardState {
    pub fn name(self) -> &'static str {
        match self {
            ShardState::Active => "ACTIVE",
            ShardState::Closing => "CLOSING",
            ShardState::Closed => "CLOSED",
        }
    }
}

/// The mutable part of a shard.
#[derive(Debug, Clone)]
pub struct ShardMeta {
    pub state: ShardState,
    pub begin_key: u128,
    pub end_key: u128,
    pub parents: Vec<u32>,
    pub create_time: i64,
    pub closed_time: i64,
}

/// A shard: its metadata and its log. Appends hold `meta` for reading while they write, so a
/// split or merge (which takes it for writing) closes the shard between two appends.
pub struct Shard {
    pub id: u32,
    pub meta: RwLock<ShardMeta>,
    /// The shard's log: the local one, or a store behind the `ShardStore` trait.
    pub log: ShardStorage,
}

impl Shard {
    /// Changes the shard's metadata from async code. An append holds `meta` for reading while
    /// it writes; on a shared store that write waits for a task of the runtime, so a worker
    /// thread blocked here could hold up the very task the append waits for: for such a shard
    /// the wait is moved off the worker ([`tokio::task::block_in_place`]).
    pub fn set_meta(&self, change: impl FnOnce(&mut ShardMeta)) {
        if self.log.local().is_some() {
            change(&mut self.meta.write());
        } else {
            tokio::task::block_in_place(|| change(&mut self.meta.write()));
        }
    }
}

/// One registered schema version.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub version_id: i32,
    pub schema: Arc<RecordSchema>,
    pub create_time: i64,
    pub creator: String,
}

/// The mutable part of a topic.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub lifecycle_days: i64,
    pub comment: String,
    pub last_modify_time: i64,
    /// All registered versions, ascending.
    pub schemas: Vec<SchemaVersion>,
    /// The version JSON/protobuf writes use and `get_topic` shows.
    pub current_version: i32,
}

impl TopicMeta {
    pub fn schema_version(&self, version_id: i32) -> Option<&SchemaVersion> {
        self.schemas.iter().find(|s| s.version_id == version_id)
    }
    pub fn current_schema(&self) -> Option<Arc<RecordSchema>> {
        self.schema_version(self.current_version)
            .map(|s| s.schema.clone())
    }
}

/// A topic with its shards.
pub struct Topic {
    pub uid: i64,
    pub project: String,
    pub name: String,
    pub record_type: RecordType,
    pub expand_mode: String,
    pub create_time: i64,
    pub dir: PathBuf,
    pub meta: RwLock<TopicMeta>,
    pub shards: RwLock<Vec<Arc<Shard>>>,
    /// Held for reading by a routed put from routing to append, and for writing by a split,
    /// merge or extend while it switches shards, so routing sees the shards before or after a
    /// switch, never parents closing with their children not there yet.
    pub topology: tokio::sync::RwLock<()>,
}

impl Topic {
    pub fn shard(&self, id: u32) -> Option<Arc<Shard>> {
        self.shards.read().iter().find(|s| s.id == id).cloned()
    }
    pub fn shard_by_text(&self, id: &str) -> Result<Arc<Shard>> {
        id.trim()
            .parse::<u32>()
            .ok()
            .and_then(|n| self.shard(n))
            .ok_or_else(|| Error::NoSuchShard(id.to_string()))
    }
    pub fn shard_dir(&self, id: u32) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Puts shard `id` on another storage, keeping its metadata, and returns the shard it
    /// replaces (whose storage the caller closes once done with it), or `None` if there is no
    /// such shard. The seam through which a node puts a shard on a shared store
    /// ([`ShardStorage::shared`]).
    pub fn replace_shard_storage(&self, id: u32, storage: ShardStorage) -> Option<Arc<Shard>> {
        let mut shards = self.shards.write();
        let slot = shards.iter_mut().find(|s| s.id == id)?;
        let meta = RwLock::new(slot.meta.read().clone());
        let new = Arc::new(Shard {
            id,
            meta,
            log: storage,
        });
        Some(std::mem::replace(slot, new))
    }
}

/// A project and its topics (keyed by lower-case name: names are case-insensitively unique).
pub struct Project {
    pub row: ProjectRow,
    pub topics: BTreeMap<String, Arc<Topic>>,
}

/// The catalog.
pub struct Catalog {
    pub meta: MetaStore,
    pub config: ServerConfig,
    pub data_dir: PathBuf,
    pub projects: RwLock<BTreeMap<String, Project>>,
    /// Serializes metadata changes (create, delete, split...) so SQLite and memory agree.
    pub change_lock: tokio::sync::Mutex<()>,
    /// Connectors and their runtimes (`service/connectors.rs`).
    pub connectors: super::connectors::ConnectorRegistry,
    /// Subscriptions, their offsets and consumer groups.
    pub subs: super::subscriptions::Subscriptions,
    // issue 7: log
    /// Whether record writes are failing (for `/health` and episode logging).
    pub write_health: super::health::WriteHealth,
    // issue 13: metrics
    /// What `/metrics` serves (recording is off when `metrics_listen` is empty).
    pub metrics: Arc<crate::metrics::Metrics>,
    // issue 14: cluster
    /// The cluster mode's state (`None` in the embedded mode): every shard is on its shared
    /// log, and other nodes' changes are picked up by `catalog_refresh`.
    pub cluster: Option<Arc<crate::cluster::runtime::ClusterRuntime>>,
    /// The catalog version this node's memory reflects (cluster mode; `catalog_refresh`).
    pub(crate) seen_version: std::sync::atomic::AtomicI64,
}

pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

pub fn now_secs() -> i64 {
    now_ms() / 1000
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn shard_meta_from_row(row: &ShardRow) -> Result<ShardMeta> {
    let bad = |what: &str| Error::Internal(format!("shard {} has a bad {what}", row.shard_id));
    Ok(ShardMeta {
        state: match row.state.as_str() {
            "ACTIVE" => ShardState::Active,
            _ => ShardState::Closed,
        },
        begin_key: hashkey::parse_key(&row.begin_key).ok_or_else(|| bad("begin key"))?,
        end_key: hashkey::parse_key(&row.end_key).ok_or_else(|| bad("end key"))?,
        parents: row.parents.clone(),
        create_time: row.create_time,
        closed_time: row.closed_time,
    })
}

impl Catalog {
    /// Loads the catalog from the meta store and opens every shard's log lazily.
    pub async fn load(meta: MetaStore, config: ServerConfig, data_dir: &Path) -> Result<Catalog> {
        Catalog::load_with(meta, config, data_dir, None).await
    }

    /// [`Catalog::load`], with every shard on the cluster's shared log when `cluster` is given.
    pub async fn load_with(
        meta: MetaStore,
        config: ServerConfig,
        data_dir: &Path,
        cluster: Option<Arc<crate::cluster::runtime::ClusterRuntime>>,
    ) -> Result<Catalog> {
        let version = match &cluster {
            Some(_) => meta.catalog_version().await?,
            None => 0,
        };
        let snapshot = meta.load().await?;
        let mut projects: BTreeMap<String, Project> = snapshot
            .projects
            .iter()
            .cloned()
            .map(|row| {
                (
                    key(&row.name),
                    Project {
                        row,
                        topics: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for t in &snapshot.topics {
            let topic = build_topic(t, &snapshot, &config, data_dir, cluster.as_deref()).await?;
            if let Some(p) = projects.get_mut(&key(&t.project)) {
                p.topics.insert(key(&t.name), Arc::new(topic));
            }
        }
        let subs = super::subscriptions::Subscriptions::load(&meta).await?;
        Ok(Catalog {
            subs,
            meta,
            data_dir: data_dir.to_path_buf(),
            projects: RwLock::new(projects),
            change_lock: tokio::sync::Mutex::new(()),
            connectors: Default::default(),
            // issue 7: log
            write_health: Default::default(),
            // issue 13: metrics
            metrics: crate::metrics::Metrics::new(&config),
            config,
            // issue 14: cluster
            cluster,
            seen_version: std::sync::atomic::AtomicI64::new(version),
        })
    }

    /// Creates the log of a shard that is being added (topic create, split, merge, extend), in
    /// the caller's metadata transaction, before its COMMIT. A directory already there is a
    /// leftover of a change that never committed (its id is free in the store): it is removed
    /// first, so a new shard never starts with someone else's records.
    ///
    /// In the cluster mode the shard's head is created in the shared log instead (this runs
    /// inside the metadata transaction's synchronous `prepare`, so it waits for PostgreSQL on
    /// this thread: the server's multi-threaded runtime allows that).
    pub(crate) fn create_shard_log(
        &self,
        topic_uid: i64,
        topic_dir: &Path,
        row: &ShardRow,
    ) -> Result<Arc<Shard>> {
        if let Some(cluster) = &self.cluster {
            let key = crate::cluster::runtime::ClusterRuntime::shard_key(topic_uid, row.shard_id);
            let handle = tokio::runtime::Handle::current();
            let storage =
                tokio::task::block_in_place(|| handle.block_on(cluster.create_shard(&key)))
                    .map_err(|e| Error::Internal(format!("cannot create shard {key}: {e}")))?;
            return Ok(Arc::new(Shard {
                id: row.shard_id,
                meta: RwLock::new(shard_meta_from_row(row)?),
                log: storage,
            }));
        }
        let dir = topic_dir.join(row.shard_id.to_string());
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing a shard directory no topic owns");
            sluice_log::remove_log(&dir)?;
        }
        let log = ShardLog::open(&dir, self.config.log_config())?;
        Ok(Arc::new(Shard {
            id: row.shard_id,
            meta: RwLock::new(shard_meta_from_row(row)?),
            log: ShardStorage::Local(Arc::new(log)),
        }))
    }

    /// Looks a topic up by project and topic name (in the cluster mode, a miss first checks
    /// whether another node just created it: `catalog_refresh`).
    pub fn topic(&self, project: &str, topic: &str) -> Result<Arc<Topic>> {
        match self.find_topic(project, topic) {
            Err(e) if self.refresh_on_miss() => self.find_topic(project, topic).map_err(|_| e),
            found => found,
        }
    }

    fn find_topic(&self, project: &str, topic: &str) -> Result<Arc<Topic>> {
        let projects = self.projects.read();
        let p = projects
            .get(&key(project))
            .ok_or_else(|| Error::NoSuchProject(project.to_string()))?;
        p.topics
            .get(&key(topic))
            .cloned()
            .ok_or_else(|| Error::NoSuchTopic(topic.to_string()))
    }

    /// Every topic, for housekeeping.
    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.projects
            .read()
            .values()
            .flat_map(|p| p.topics.values().cloned())
            .collect()
    }

    pub fn topic_row(topic: &Topic) -> TopicRow {
        let meta = topic.meta.read();
        TopicRow {
            uid: topic.uid,
            project: topic.project.clone(),
            name: topic.name.clone(),
            record_type: topic.record_type.name().to_string(),
            lifecycle_days: meta.lifecycle_days,
            comment: meta.comment.clone(),
            expand_mode: topic.expand_mode.clone(),
            create_time: topic.create_time,
            last_modify_time: meta.last_modify_time,
            schema_version: meta.current_version,
        }
    }
}

/// Builds a topic of the catalog from its rows: shards on local logs opened lazily, or on the
/// cluster's shared log.
pub(crate) async fn build_topic(
    t: &TopicRow,
    snapshot: &sluice_meta::Snapshot,
    config: &ServerConfig,
    data_dir: &Path,
    cluster: Option<&crate::cluster::runtime::ClusterRuntime>,
) -> Result<Topic> {
    let schemas: Vec<SchemaVersion> = snapshot
        .schemas
        .iter()
        .filter(|s| s.topic_uid == t.uid)
        .map(schema_version_from_row)
        .collect::<Result<_>>()?;
    let topic_dir = topic_dir(data_dir, t.uid);
    let mut shards = Vec::new();
    for row in snapshot.shards.iter().filter(|s| s.topic_uid == t.uid) {
        shards.push(Arc::new(Shard {
            id: row.shard_id,
            meta: RwLock::new(shard_meta_from_row(row)?),
            log: open_shard_storage(&topic_dir, t.uid, row, config, cluster).await?,
        }));
    }
    Ok(Topic {
        uid: t.uid,
        project: t.project.clone(),
        name: t.name.clone(),
        record_type: RecordType::parse(&t.record_type).ok_or_else(|| {
            Error::Internal(format!(
                "topic {} has record type {}",
                t.name, t.record_type
            ))
        })?,
        expand_mode: t.expand_mode.clone(),
        create_time: t.create_time,
        dir: topic_dir,
        meta: RwLock::new(TopicMeta {
            lifecycle_days: t.lifecycle_days,
            comment: t.comment.clone(),
            last_modify_time: t.last_modify_time,
            schemas,
            current_version: t.schema_version,
        }),
        shards: RwLock::new(shards),
        topology: tokio::sync::RwLock::new(()),
    })
}

/// The storage of a listed shard: its local log (recovered on first use, sluice-log
/// `open_lazy`, so that start-up does not wait for every shard and a request waits only for its
/// own), or its head in the cluster's shared log.
pub(crate) async fn open_shard_storage(
    topic_dir: &Path,
    topic_uid: i64,
    row: &ShardRow,
    config: &ServerConfig,
    cluster: Option<&crate::cluster::runtime::ClusterRuntime>,
) -> Result<ShardStorage> {
    match cluster {
        None => {
            let dir = topic_dir.join(row.shard_id.to_string());
            Ok(ShardStorage::Local(Arc::new(ShardLog::open_lazy(
                &dir,
                config.log_config(),
            ))))
        }
        Some(c) => {
            let key = crate::cluster::runtime::ClusterRuntime::shard_key(topic_uid, row.shard_id);
            c.open_or_repair(&key, row.state != "ACTIVE")
                .await
                .map_err(|e| Error::Internal(format!("cannot open shard {key}: {e}")))
        }
    }
}

pub fn topic_dir(data_dir: &Path, uid: i64) -> PathBuf {
    data_dir.join("topics").join(uid.to_string())
}

pub fn schema_version_from_row(row: &SchemaRow) -> Result<SchemaVersion> {
    let schema = RecordSchema::parse(&row.schema_json).map_err(|e| {
        Error::Internal(format!(
            "stored schema version {} is unreadable: {e}",
            row.version_id
        ))
    })?;
    Ok(SchemaVersion {
        version_id: row.version_id,
        schema: Arc::new(schema),
        create_time: row.create_time,
        creator: row.creator.clone(),
    })
}
