//! Retention: a background task that deletes sealed segments older than each topic's lifecycle
//! (local logs), and in the cluster mode drops the shared log's daily partitions older than the
//! longest lifecycle of any topic ([`enforce_shared`]: the shared log's partitions hold all
//! shards, so no record leaves before its topic's lifecycle; a topic with a shorter one keeps
//! its records up to the longest).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Runs one retention pass over every shard, at the time of the catalog's clock; returns the
/// number of segments removed.
///
/// A segment goes once its newest record is older than the topic's lifecycle. Appends seal the
/// active segment once it is `segment_max_age_secs` old, and this pass seals an idle shard's
/// active segment once all of it has expired, so a record leaves within the lifecycle plus that
/// age (plus one check interval).
pub fn enforce_once(catalog: &Catalog) -> usize {
    let now = catalog.config.clock.now_ms();
    let mut removed = 0;
    for topic in catalog.all_topics() {
        let cutoff = now - topic.meta.read().lifecycle_days * DAY_MS;
        for shard in topic.shards.read().iter() {
            // A shard on a shared store: retention is the store's own job.
            let Some(log) = shard.log.local() else {
                continue;
            };
            // An idle shard's active segment expires too: seal it once all of it is old.
            if log.last_time().is_some_and(|t| t < cutoff) {
                if let Err(e) = log.roll() {
                    tracing::warn!(topic = %topic.name, shard = shard.id, error = %e, "sealing an expired segment failed");
                }
            }
            match log.enforce_retention(cutoff) {
                Ok(n) => removed += n,
                Err(e) => {
                    tracing::warn!(topic = %topic.name, shard = shard.id, error = %e, "retention failed")
                }
            }
        }
    }
    removed
}

/// The cluster mode's retention pass (see the module docs); returns the partitions dropped.
pub async fn enforce_shared(catalog: &Catalog) -> usize {
    let Some(cluster) = &catalog.cluster else {
        return 0;
    };
    let topics = catalog.all_topics();
    let Some(longest) = topics.iter().map(|t| t.meta.read().lifecycle_days).max() else {
        return 0;
    };
    let cutoff = catalog.config.clock.now_ms() - longest * DAY_MS;
    match cluster.log.drop_partitions_before(cutoff).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "shared log retention failed");
            0
        }
    }
}

/// Flushes logs in the relaxed fsync mode every `interval` until `stop` is cancelled.
pub async fn run_flusher(catalog: Arc<Catalog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let c = catalog.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for topic in c.all_topics() {
                // A shared store is durable at each append: only local logs flush here.
                for shard in topic.shards.read().iter() {
                    let Some(log) = shard.log.local() else {
                        continue;
                    };
                    if let Err(e) = log.sync_if_due() {
                        tracing::warn!(shard = shard.id, error = %e, "interval flush failed");
                    }
                }
            }
        })
        .await;
    }
}

/// Runs retention every `interval` until `stop` is cancelled.
pub async fn run(catalog: Arc<Catalog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if catalog.cluster.is_some() {
            let n = enforce_shared(&catalog).await;
            if n > 0 {
                tracing::info!(partitions = n, "retention dropped expired log partitions");
            }
            continue;
        }
        let c = catalog.clone();
        match tokio::task::spawn_blocking(move || enforce_once(&c)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "retention removed expired segments"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}
