//! Retention: a background task that deletes sealed segments older than each topic's lifecycle.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::catalog::{now_ms, Catalog};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Runs one retention pass over every shard; returns the number of segments removed.
pub fn enforce_once(catalog: &Catalog) -> usize {
    let now = now_ms();
    let mut removed = 0;
    for topic in catalog.all_topics() {
        let cutoff = now - topic.meta.read().lifecycle_days * DAY_MS;
        for shard in topic.shards.read().iter() {
            match shard.log.enforce_retention(cutoff) {
                Ok(n) => removed += n,
                Err(e) => {
                    tracing::warn!(topic = %topic.name, shard = shard.id, error = %e, "retention failed")
                }
            }
        }
    }
    removed
}

/// Runs retention every `interval` until `stop` is cancelled.
pub async fn run(catalog: Arc<Catalog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let c = catalog.clone();
        match tokio::task::spawn_blocking(move || enforce_once(&c)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "retention removed expired segments"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}
