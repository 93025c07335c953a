//! Catalog refresh (cluster mode): other nodes change the shared metadata, and this node's
//! in-memory catalog follows.
//!
//! Every catalog change bumps `catalog_version` in the same transaction
//! (`MetaStore::catalog_version`). A node reloads the metadata when that number moved:
//! - in the background, every `catalog_poll` (~100 ms: [`run`]);
//! - before serving any request, record reads included (the HTTP layer calls
//!   [`Catalog::refresh_if_changed`]: one cheap query), so that a client behind a load balancer
//!   reads its own metadata writes whichever node answers; a put by shard skips the query and
//!   has its append check the version instead (`cluster::checked_put`);
//! - when a topic lookup misses ([`Catalog::refresh_on_miss`]), so a put to a topic just
//!   created elsewhere does not fail with NoSuchTopic.
//!
//! A reload runs under the catalog's change lock (no local change is half applied) and keeps
//! the objects that readers and waiters hold: a topic that still exists keeps its `Arc<Topic>`
//! and its shards their `Arc<Shard>`, updated in place (description, schemas, shard states and
//! ranges); new topics and shards are added, deleted topics dropped (their shards marked
//! closed). Subscriptions are added, removed and their descriptions updated; offsets, sessions
//! and consumer groups held in memory are left alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sluice_meta::{Snapshot, TopicRow};
use tokio_util::sync::CancellationToken;

use super::catalog::{
    build_topic, key, open_shard_storage, schema_version_from_row, shard_meta_from_row, Catalog,
    Project, Shard, Topic,
};
use super::error::Result;

/// How long a lookup that missed waits for the change lock (see [`Catalog::refresh_on_miss`]).
const MISS_LOCK_WAIT: Duration = Duration::from_secs(2);

impl Catalog {
    /// Reloads the metadata if another node changed it since this node last looked. Does
    /// nothing in the embedded mode. Returns whether it reloaded.
    pub async fn refresh_if_changed(&self) -> Result<bool> {
        if self.cluster.is_none() {
            return Ok(false);
        }
        let version = self.meta.catalog_version().await?;
        if version == self.seen_version.load(Ordering::Acquire) {
            return Ok(false);
        }
        let _guard = self.change_lock.lock().await;
        // Another reload may have caught up while this one waited for the lock.
        let version = self.meta.catalog_version().await?;
        if version == self.seen_version.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload_locked(version).await?;
        Ok(true)
    }

    /// [`Catalog::refresh_if_changed`] from synchronous code that found no such topic or
    /// project (cluster mode only; waits on this thread, which the server's multi-threaded
    /// runtime allows). When the version did not move, the miss is real and nothing is waited
    /// for; when it moved, the change lock is waited for at most [`MISS_LOCK_WAIT`] (the caller
    /// may be a change holding it). Returns whether the lookup is worth retrying.
    pub fn refresh_on_miss(&self) -> bool {
        if self.cluster.is_none() {
            return false;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            return false;
        }
        let reload = async {
            if self.meta.catalog_version().await? == self.seen_version.load(Ordering::Acquire) {
                return Ok(false);
            }
            let Ok(_guard) = tokio::time::timeout(MISS_LOCK_WAIT, self.change_lock.lock()).await
            else {
                return Ok(false);
            };
            let version = self.meta.catalog_version().await?;
            if version != self.seen_version.load(Ordering::Acquire) {
                self.reload_locked(version).await?;
            }
            Ok(true)
        };
        let done: Result<bool> = tokio::task::block_in_place(|| handle.block_on(reload));
        done.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "refreshing the catalog failed");
            false
        })
    }

    /// Reloads everything from the meta store; the caller holds the change lock and read
    /// `version` before calling.
    async fn reload_locked(&self, version: i64) -> Result<()> {
        let snapshot = self.meta.load().await?;
        let existing: HashMap<i64, Arc<Topic>> =
            self.all_topics().into_iter().map(|t| (t.uid, t)).collect();
        let mut topics: Vec<(TopicRow, Arc<Topic>)> = Vec::new();
        for row in &snapshot.topics {
            let topic = match existing.get(&row.uid) {
                Some(topic) => {
                    self.update_topic_in_place(topic, row, &snapshot).await?;
                    topic.clone()
                }
                None => Arc::new(
                    build_topic(
                        row,
                        &snapshot,
                        &self.config,
                        &self.data_dir,
                        self.cluster.as_deref(),
                    )
                    .await?,
                ),
            };
            topics.push((row.clone(), topic));
        }
        let kept: std::collections::HashSet<i64> = topics.iter().map(|(r, _)| r.uid).collect();
        let mut projects: BTreeMap<String, Project> = snapshot
            .projects
            .iter()
            .map(|row| {
                (
                    key(&row.name),
                    Project {
                        row: row.clone(),
                        topics: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for (row, topic) in topics {
            if let Some(p) = projects.get_mut(&key(&row.project)) {
                p.topics.insert(key(&row.name), topic);
            }
        }
        off_worker(|| *self.projects.write() = projects);
        for (uid, topic) in existing {
            if !kept.contains(&uid) {
                let shards = topic.shards.read().clone();
                for shard in shards {
                    shard.set_meta(|m| m.state = super::catalog::ShardState::Closed);
                }
            }
        }
        // issue 14: cluster — subscriptions added, removed or re-described elsewhere.
        let (subs, offsets) = self.meta.load_subscriptions().await?;
        let running = self
            .meta
            .load_connectors()
            .await?
            .into_iter()
            .filter(|c| c.state == super::connectors::RUNNING)
            .map(|c| (c.topic_uid, c.connector_id))
            .collect();
        self.subs.sync_rows(subs, offsets, &running);
        self.seen_version.store(version, Ordering::Release);
        Ok(())
    }

    /// Brings a topic that still exists to its rows, keeping its objects.
    async fn update_topic_in_place(
        &self,
        topic: &Arc<Topic>,
        row: &TopicRow,
        snapshot: &Snapshot,
    ) -> Result<()> {
        let schemas = snapshot
            .schemas
            .iter()
            .filter(|s| s.topic_uid == row.uid)
            .map(schema_version_from_row)
            .collect::<Result<Vec<_>>>()?;
        off_worker(|| {
            let mut meta = topic.meta.write();
            meta.lifecycle_days = row.lifecycle_days;
            meta.comment = row.comment.clone();
            meta.last_modify_time = row.last_modify_time;
            meta.schemas = schemas;
            meta.current_version = row.schema_version;
        });
        let rows: Vec<_> = snapshot
            .shards
            .iter()
            .filter(|s| s.topic_uid == row.uid)
            .collect();
        let mut added = Vec::new();
        for r in &rows {
            if topic.shard(r.shard_id).is_none() {
                let storage = open_shard_storage(
                    &topic.dir,
                    row.uid,
                    r,
                    &self.config,
                    self.cluster.as_deref(),
                )
                .await?;
                added.push(Arc::new(Shard {
                    id: r.shard_id,
                    meta: RwLock::new(shard_meta_from_row(r)?),
                    log: storage,
                }));
            }
        }
        let mut updates = Vec::new();
        for r in &rows {
            if let Some(s) = topic.shard(r.shard_id) {
                let new = shard_meta_from_row(r)?;
                let differs = {
                    let m = s.meta.read();
                    (m.state == super::catalog::ShardState::Active)
                        != (new.state == super::catalog::ShardState::Active)
                        || m.closed_time != new.closed_time
                        || (m.begin_key, m.end_key) != (new.begin_key, new.end_key)
                        || m.parents != new.parents
                };
                if differs {
                    updates.push((s, new));
                }
            }
        }
        let changed = !added.is_empty() || !updates.is_empty();
        // Routed puts see the shards before or after the change, never half of it.
        let _switch = if changed {
            Some(topic.topology.write().await)
        } else {
            None
        };
        for (s, new) in updates {
            s.set_meta(|m| *m = new);
        }
        // (cl-bed) also off the worker: the connector supervisor reads the shard list across a
        // store round trip (connector_source::shard_infos -> first_seq).
        off_worker(|| topic.shards.write().extend(added));
        Ok(())
    }
}

/// Polls the catalog version every `interval` and reloads when it moved, until `stop`.
pub async fn run(catalog: Arc<Catalog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = catalog.refresh_if_changed().await {
            tracing::warn!(error = %e, "refreshing the catalog failed");
        }
    }
}

/// issue 14 (part C, cl-bed): runs a catalog write-guard section with `block_in_place`, like
/// `Shard::set_meta`: readers may hold their read guard across a shared store's blocking call,
/// which needs a free worker to finish (the refresh runs in the cluster mode only, on the
/// server's multi-threaded runtime).
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
