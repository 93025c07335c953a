//! The background renewal of one node's leases and heartbeat.
//!
//! A [`LeaseKeeper`] owns the set of leases its node holds. Every `renew_every` it heartbeats
//! the node row and renews all of the node's leases in one statement ([`LeaseStore::renew_all`]);
//! a held lease missing from the answer was lost (it expired or was taken over) and is reported
//! once on the `lost` channel, so the work it protects can stop. If renewals fail (PostgreSQL
//! unreachable) for a whole ttl, counted from the start of the last renewal that succeeded, every
//! lease is reported lost (one renewal period early): by then PostgreSQL may have handed them to others.
//! [`LeaseKeeper::shutdown`] stops the loop and releases everything at once (for SIGTERM).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::lease::{Fence, LeaseError, LeaseStore};

type Held = Arc<Mutex<HashMap<(String, String), Fence>>>;

/// Keeps one node's leases and heartbeat alive; see the module docs.
pub struct LeaseKeeper {
    store: LeaseStore,
    held: Held,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts the renewal loop for `store`'s node, heartbeating `address`. Lost leases arrive
    /// on the returned channel.
    pub fn spawn(
        store: LeaseStore,
        address: String,
    ) -> (LeaseKeeper, mpsc::UnboundedReceiver<Fence>) {
        let held: Held = Arc::default();
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(renew_loop(
            store.clone(),
            address,
            held.clone(),
            lost_tx,
            stop_rx,
        ));
        let keeper = LeaseKeeper {
            store,
            held,
            stop,
            task,
        };
        (keeper, lost_rx)
    }

    /// Takes lease `(kind, key)` if free (see [`LeaseStore::try_acquire`]) and keeps renewing it.
    pub async fn acquire(&self, kind: &str, key: &str) -> Result<Option<Fence>, LeaseError> {
        // Under the lock, so a renewal cannot run between the acquire and the bookkeeping and
        // take the new lease for a lost one.
        let mut held = self.held.lock().await;
        let fence = self.store.try_acquire(kind, key).await?;
        if let Some(f) = &fence {
            held.insert((f.kind.clone(), f.key.clone()), f.clone());
        }
        Ok(fence)
    }

    /// Stops renewing a lease and gives it up at once.
    pub async fn release(&self, fence: &Fence) -> Result<bool, LeaseError> {
        let mut held = self.held.lock().await;
        held.remove(&(fence.kind.clone(), fence.key.clone()));
        self.store.release(fence).await
    }

    /// The leases currently held.
    pub async fn held(&self) -> Vec<Fence> {
        self.held.lock().await.values().cloned().collect()
    }

    /// Stops the loop without releasing anything, as a crashed or frozen node would: the
    /// leases and the node row expire after the ttl. For fault tests and emergencies.
    pub async fn halt(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.held.lock().await.clear();
    }

    /// Stops the loop and releases all of the node's leases and its node row at once (call it
    /// on SIGTERM). Returns the number of leases released.
    pub async fn shutdown(self) -> Result<u64, LeaseError> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.held.lock().await.clear();
        self.store.release_all().await
    }
}

async fn renew_loop(
    store: LeaseStore,
    address: String,
    held: Held,
    lost: mpsc::UnboundedSender<Fence>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = *store.config();
    let mut tick = tokio::time::interval(cfg.renew_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let mut held = held.lock().await;
        // Bounded, so a hung connection cannot keep the loss check below from running in time
        // (cancelling a renewal is harmless: at worst a lease is given up that was extended).
        let renewal = async {
            store.heartbeat(&address).await?;
            store.renew_all().await
        };
        let limit = cfg.ttl.saturating_sub(cfg.renew_every);
        let renewed = tokio::time::timeout(limit, renewal)
            .await
            .unwrap_or(Err(LeaseError::Timeout(limit)));
        match renewed {
            Ok(alive) => {
                last_ok = started;
                let alive: HashMap<_, _> = alive
                    .into_iter()
                    .map(|f| ((f.kind, f.key), f.epoch))
                    .collect();
                held.retain(|k, fence| {
                    let keep = alive.get(k) == Some(&fence.epoch);
                    if !keep {
                        tracing::warn!(kind = %fence.kind, key = %fence.key, epoch = fence.epoch, "lease lost");
                        let _ = lost.send(fence.clone());
                    }
                    keep
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                // Give up one renewal period early: the next tick would come too late.
                if last_ok.elapsed() + cfg.renew_every >= cfg.ttl {
                    for (_, fence) in held.drain() {
                        let _ = lost.send(fence);
                    }
                }
            }
        }
    }
}
