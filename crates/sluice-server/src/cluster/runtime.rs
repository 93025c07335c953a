//! [`ClusterRuntime`]: what one node of the cluster holds while it runs: the shard log on
//! PostgreSQL ([`PgLog`], whose pool the leases and the archive share), the lease store acting
//! as this node, the archive (with `--archive`), and the node's id and advertised address.
//! The catalog reaches it as `Catalog::cluster`; the ownership of subscriptions and connectors
//! (issue 14, part B) hangs its own state next to it.
//!
//! Shard keys in the shared log are `<topic uid>/<shard id>`: both are stable for a shard's
//! life and the topic uid is never reused (a PostgreSQL sequence).

use std::sync::Arc;

use sluice_cluster::archive::{Archive, ArchiveConfig};
use sluice_cluster::archive_url::ArchiveLocation;
use sluice_cluster::archiver::{Archiver, ArchiverConfig};
use sluice_cluster::archiver_read::TieredShardStore;
use sluice_cluster::lease::{LeaseConfig, LeaseStore};
use sluice_cluster::log::{PgLog, PgLogError, PgLogOptions};
use sluice_log::store::ShardStore;

use super::error::ClusterError;
use super::ClusterOptions;
use crate::service::storage::ShardStorage;

/// One node's cluster state. See the module docs.
pub struct ClusterRuntime {
    pub node_id: String,
    pub advertise: String,
    pub options: ClusterOptions,
    pub log: PgLog,
    pub leases: LeaseStore,
    pub archive: Option<Archive>,
    pub archiver: Option<Archiver>,
    /// The catalog version the access keys in memory reflect (`http_refresh`).
    pub(crate) keys_version: std::sync::atomic::AtomicI64,
    /// The catalog version the connector registry in memory reflects (`http_refresh`).
    pub(crate) connectors_version: std::sync::atomic::AtomicI64,
    // issue 14: part B — who runs which subscription and connector (`ownership.rs`).
    pub ownership: std::sync::OnceLock<Arc<super::ownership::Ownership>>,
}

impl std::fmt::Debug for ClusterRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuntime")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ClusterRuntime {
    /// Connects to the shared PostgreSQL (creating the log, lease and archive tables if
    /// missing) and opens the archive. `options` must have been validated.
    pub async fn connect(options: &ClusterOptions) -> Result<Arc<ClusterRuntime>, ClusterError> {
        let log = PgLog::connect(&options.url, PgLogOptions::default()).await?;
        let leases = LeaseStore::open(
            log.pool().clone(),
            options.node_id.clone(),
            LeaseConfig::default(),
        )
        .await?;
        let (archive, archiver) = match &options.archive {
            None => (None, None),
            Some(text) => {
                let location = ArchiveLocation::parse(text)?;
                let keys = options
                    .archive_keys
                    .as_ref()
                    .ok_or_else(|| ClusterError::Config("--archive needs the S3 keys".into()))?;
                let store = location.open_store(keys)?;
                let archive = Archive::open(
                    log.pool().clone(),
                    store,
                    ArchiveConfig {
                        prefix: location.prefix.clone(),
                        ..ArchiveConfig::default()
                    },
                )
                .await?;
                let archiver = Archiver::new(
                    &log,
                    archive.clone(),
                    leases.clone(),
                    ArchiverConfig::default(),
                )?;
                (Some(archive), Some(archiver))
            }
        };
        Ok(Arc::new(ClusterRuntime {
            node_id: options.node_id.clone(),
            advertise: options.advertise.clone(),
            options: options.clone(),
            log,
            leases,
            archive,
            archiver,
            keys_version: std::sync::atomic::AtomicI64::new(i64::MIN),
            connectors_version: std::sync::atomic::AtomicI64::new(i64::MIN),
            ownership: std::sync::OnceLock::new(),
        }))
    }

    /// The shared log's key of a shard.
    pub fn shard_key(topic_uid: i64, shard_id: u32) -> String {
        format!("{topic_uid}/{shard_id}")
    }

    /// This node's storage of an existing shard (over the archive too, when there is one).
    pub async fn open_shard(&self, key: &str) -> Result<ShardStorage, PgLogError> {
        let pg = self.log.shard(key).await?;
        let store: Arc<dyn ShardStore> = match &self.archive {
            Some(archive) => TieredShardStore::new(pg, archive.clone()),
            None => pg,
        };
        Ok(ShardStorage::shared(store))
    }

    /// Creates a new shard's head (removing a leftover of a change that never committed: the
    /// caller holds the catalog's lock and has inserted the shard's row, so no committed shard
    /// has this key) and opens it.
    pub async fn create_shard(&self, key: &str) -> Result<ShardStorage, PgLogError> {
        if !self.log.create_shard(key, 0).await? {
            tracing::warn!(shard_key = key, "replacing a shard head no topic owns");
            self.log.delete_shard(key).await?;
            self.log.create_shard(key, 0).await?;
        }
        self.open_shard(key).await
    }

    /// Opens a shard the catalog lists, creating its head if a node stopped between the
    /// metadata commit and the head's creation (closed again if the shard is closed).
    pub async fn open_or_repair(
        &self,
        key: &str,
        closed: bool,
    ) -> Result<ShardStorage, PgLogError> {
        match self.open_shard(key).await {
            Err(PgLogError::NotFound(_)) => {
                tracing::warn!(shard_key = key, "a listed shard had no head: creating it");
                self.log.create_shard(key, 0).await?;
                if closed {
                    self.log.close_shard(key).await?;
                }
                self.open_shard(key).await
            }
            other => other,
        }
    }
}
