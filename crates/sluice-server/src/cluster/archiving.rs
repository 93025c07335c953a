//! The archiver loop of a node started with `--archive`: every `archive_every`, one pass over
//! the catalog's shards; for each, sluice-cluster's [`Archiver::run_shard`] takes (or renews)
//! the shard's archive lease and, if this node holds it, moves what is due into the archive
//! (a closed shard's rest at once). Another node holding the lease skips the shard; a shard
//! deleted meanwhile is skipped. The leases are released at shutdown (`Server::shutdown`).
//!
//! Every [`MAINTAIN_EVERY`] the loop also keeps the archive to its retention
//! ([`maintain_once`]): under each shard's archive lease it retires the segments older than
//! the topic's lifecycle, it retires the segments of deleted topics' shards, and it deletes
//! the objects orphaned longer than the grace period (any node may; they skip each other's).

use std::sync::Arc;
use std::time::Duration;

use sluice_cluster::archiver::Archiver;
use tokio_util::sync::CancellationToken;

use super::runtime::ClusterRuntime;
use crate::service::Catalog;

/// How often the archive's retention and orphan collection run.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One retention pass over the archive (see the module docs); returns (segments retired,
/// objects deleted).
pub async fn maintain_once(catalog: &Catalog, archiver: &Archiver) -> (u64, usize) {
    let now = catalog.config.clock.now_ms();
    let mut retired = 0;
    for topic in catalog.all_topics() {
        let cutoff = now - topic.meta.read().lifecycle_days * DAY_MS;
        let ids: Vec<u32> = topic.shards.read().iter().map(|s| s.id).collect();
        for id in ids {
            let key = ClusterRuntime::shard_key(topic.uid, id);
            match archiver.retire_expired(&key, cutoff).await {
                Ok(n) => retired += n.unwrap_or(0),
                Err(e) => tracing::warn!(shard_key = %key, error = %e, "archive retention failed"),
            }
        }
    }
    match archiver.archive().retire_deleted_shards().await {
        Ok(n) => retired += n,
        Err(e) => tracing::warn!(error = %e, "retiring deleted shards' segments failed"),
    }
    let deleted = match archiver.archive().collect_orphans().await {
        Ok(keys) => keys.len(),
        Err(e) => {
            tracing::warn!(error = %e, "collecting orphaned archive objects failed");
            0
        }
    };
    (retired, deleted)
}

/// One pass: returns the segments this node committed.
pub async fn archive_once(catalog: &Catalog, archiver: &Archiver) -> usize {
    let mut committed = 0;
    for topic in catalog.all_topics() {
        let ids: Vec<u32> = topic.shards.read().iter().map(|s| s.id).collect();
        for id in ids {
            let key = ClusterRuntime::shard_key(topic.uid, id);
            match archiver.run_shard(&key).await {
                Ok(Some(done)) => committed += done.len(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(shard_key = %key, error = %e, "archiving a shard failed")
                }
            }
        }
    }
    committed
}

/// Runs [`archive_once`] every `every` until `stop` is cancelled.
pub async fn run(
    catalog: Arc<Catalog>,
    archiver: Archiver,
    every: Duration,
    stop: CancellationToken,
) {
    let mut last_maintained = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = archive_once(&catalog, &archiver) => n,
        };
        if n > 0 {
            tracing::info!(segments = n, "archived shard segments");
        }
        if last_maintained.elapsed() >= MAINTAIN_EVERY {
            last_maintained = tokio::time::Instant::now();
            let (retired, deleted) = tokio::select! {
                _ = stop.cancelled() => return,
                done = maintain_once(&catalog, &archiver) => done,
            };
            if retired > 0 || deleted > 0 {
                tracing::info!(retired, deleted, "archive retention");
            }
        }
    }
}
