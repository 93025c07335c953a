//! The archiver loop of a node started with `--archive`: every `archive_every`, one pass over
//! the catalog's shards; for each, sluice-cluster's [`Archiver::run_shard`] takes (or renews)
//! the shard's archive lease and, if this node holds it, moves what is due into the archive
//! (a closed shard's rest at once). Another node holding the lease skips the shard; a shard
//! deleted meanwhile is skipped. The leases are released at shutdown (`Server::shutdown`).

use std::sync::Arc;
use std::time::Duration;

use sluice_cluster::archiver::Archiver;
use tokio_util::sync::CancellationToken;

use super::runtime::ClusterRuntime;
use crate::service::Catalog;

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
    }
}
