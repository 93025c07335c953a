//! What a node does when it gains or loses a piece of work ([`WorkHooks`] over the catalog):
//! a `sub:` key reloads that subscription's offsets and group from the meta store
//! (`service/subscription_leases.rs`), a `conn:` key makes this node the connector's
//! controller, a `task:` key starts or stops one shard's task of a running connector
//! (`service/connector_leases.rs`). The list of work is the catalog's subscriptions,
//! connectors and running connectors' shards, brought in step with the meta store whenever
//! its catalog version moved.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};

use sluice_meta::LeaseGuard;

use sluice_cluster::lease::LeaseConfig;

use super::ownership::{BoxFuture, Ownership, WorkHooks, WorkKey, CONN, SUB, TASK};
use crate::service::{Catalog, Error, Result};

/// Starts this node's ownership of work (cluster mode; nothing in the embedded mode) and
/// takes its share at once, before the node serves.
pub async fn start(catalog: &Arc<Catalog>, leases: LeaseConfig) -> Result<()> {
    let Some(cluster) = &catalog.cluster else {
        return Ok(());
    };
    let ownership = Ownership::start(
        cluster.log.pool().clone(),
        &cluster.node_id,
        &cluster.advertise,
        leases,
        CatalogWork::new(catalog),
    )
    .await
    .map_err(|e| Error::Internal(format!("cluster work leases: {e}")))?;
    let _ = cluster.ownership.set(ownership.clone());
    if let Err(e) = ownership.rebalance().await {
        tracing::warn!(error = %e, "the first work rebalance failed; the next one retries");
    }
    Ok(())
}

/// [`WorkHooks`] over one node's catalog.
pub struct CatalogWork {
    catalog: Weak<Catalog>,
    /// The catalog version the work list was last refreshed at.
    seen_version: AtomicI64,
}

impl CatalogWork {
    pub fn new(catalog: &Arc<Catalog>) -> Arc<CatalogWork> {
        Arc::new(CatalogWork {
            catalog: Arc::downgrade(catalog),
            seen_version: AtomicI64::new(i64::MIN),
        })
    }

    async fn refresh(&self, catalog: &Catalog) {
        let version = match catalog.meta.catalog_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reading the catalog version failed");
                return;
            }
        };
        if version == self.seen_version.load(Ordering::SeqCst) {
            return;
        }
        let subs = catalog.refresh_subscriptions().await;
        let conns = catalog.refresh_connectors().await;
        match subs.and(conns) {
            Ok(()) => self.seen_version.store(version, Ordering::SeqCst),
            Err(e) => tracing::warn!(error = %e, "refreshing the work list failed"),
        }
    }
}

impl WorkHooks for CatalogWork {
    fn keys(&self) -> BoxFuture<'_, Vec<WorkKey>> {
        Box::pin(async move {
            let Some(catalog) = self.catalog.upgrade() else {
                return Vec::new();
            };
            self.refresh(&catalog).await;
            let mut keys: Vec<WorkKey> = catalog
                .subscription_keys()
                .iter()
                .map(|(uid, id)| WorkKey::sub(*uid, id))
                .collect();
            keys.extend(
                catalog
                    .connector_keys()
                    .iter()
                    .map(|(uid, id)| WorkKey::conn(*uid, id)),
            );
            keys.extend(
                catalog
                    .connector_task_keys()
                    .iter()
                    .map(|(uid, id, shard)| WorkKey::task(*uid, id, *shard)),
            );
            keys
        })
    }

    fn gained(&self, key: WorkKey, guard: LeaseGuard) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let catalog = self
                .catalog
                .upgrade()
                .ok_or("the server is shutting down")?;
            let (uid, id) = key.parts().ok_or("a malformed work key")?;
            let done = match key.kind {
                SUB => catalog.take_subscription(uid, id, guard).await,
                CONN => catalog.take_connector(uid, id, guard).await,
                TASK => {
                    let (uid, id, shard) = key.task_parts().ok_or("a malformed task key")?;
                    catalog.take_task(uid, id, shard, guard).await
                }
                _ => return Err(format!("unknown work kind {}", key.kind)),
            };
            done.map_err(|e| e.to_string())
        })
    }

    fn lost(&self, key: WorkKey) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(catalog) = self.catalog.upgrade() else {
                return;
            };
            let Some((uid, id)) = key.parts() else {
                return;
            };
            match key.kind {
                SUB => catalog.drop_subscription(id),
                CONN => catalog.drop_connector(uid, id),
                TASK => {
                    if let Some((uid, id, shard)) = key.task_parts() {
                        catalog.drop_task(uid, id, shard).await;
                    }
                }
                _ => {}
            }
        })
    }
}
