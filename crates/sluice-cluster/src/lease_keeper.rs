//! The background renewal of one node's leases and heartbeat.
//!
//! A [`LeaseKeeper`] owns the set of leases its node holds. Every `renew_every` it heartbeats
//! the node row and renews all of the node's leases in one statement ([`LeaseStore::renew_all`]);
//! a held lease missing from the answer was lost (it expired or was taken over) and is reported
//! once on the `lost` channel, so the work it protects can stop. If renewals fail (PostgreSQL
//! unreachable) for a whole ttl, counted from the start of the last renewal that succeeded, every
//! lease is reported lost (one renewal period early): by then PostgreSQL may have handed them to others.
//! [`LeaseKeeper::shutdown`] stops the loop and releases everything at once (for SIGTERM).
//!
//! [`Confirmed`] answers, without waiting for a renewal in progress, whether a lease is
//! still known held: the last renewal that succeeded included it and started less than
//! `ttl - renew_every` ago on this node's monotonic clock. A node that was frozen (SIGSTOP,
//! a long pause) sees at once on waking that its leases are unconfirmed, before its renewal
//! loop has run, so it does not serve work another node may have taken over meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::lease::{Fence, LeaseError, LeaseStore};

type Held = Arc<Mutex<HashMap<(String, String), Fence>>>;

/// Which leases the keeper last confirmed, and when; see the module docs.
#[derive(Clone)]
pub struct Confirmed {
    inner: Arc<parking_lot::Mutex<ConfirmedState>>,
    /// How long a renewal's confirmation counts: `ttl - renew_every`.
    good_for: Duration,
}

struct ConfirmedState {
    /// When the last renewal that succeeded started.
    at: Instant,
    fences: HashSet<(String, String, i64)>,
}

fn id_of(f: &Fence) -> (String, String, i64) {
    (f.kind.clone(), f.key.clone(), f.epoch)
}

impl Confirmed {
    fn new(good_for: Duration) -> Confirmed {
        Confirmed {
            inner: Arc::new(parking_lot::Mutex::new(ConfirmedState {
                at: Instant::now(),
                fences: HashSet::new(),
            })),
            good_for,
        }
    }

    /// Whether `fence` is still known held (see the module docs).
    pub fn holds(&self, fence: &Fence) -> bool {
        let st = self.inner.lock();
        st.at.elapsed() < self.good_for && st.fences.contains(&id_of(fence))
    }

    fn insert(&self, fence: &Fence) {
        self.inner.lock().fences.insert(id_of(fence));
    }

    fn remove(&self, fence: &Fence) {
        self.inner.lock().fences.remove(&id_of(fence));
    }

    fn renewed(&self, started: Instant, held: &HashMap<(String, String), Fence>) {
        let mut st = self.inner.lock();
        st.at = started;
        st.fences = held.values().map(id_of).collect();
    }

    fn clear(&self) {
        self.inner.lock().fences.clear();
    }
}

/// Keeps one node's leases and heartbeat alive; see the module docs.
pub struct LeaseKeeper {
    store: LeaseStore,
    held: Held,
    confirmed: Confirmed,
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
        let cfg = *store.config();
        let confirmed = Confirmed::new(cfg.ttl.saturating_sub(cfg.renew_every));
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(renew_loop(
            store.clone(),
            address,
            held.clone(),
            confirmed.clone(),
            lost_tx,
            stop_rx,
        ));
        let keeper = LeaseKeeper {
            store,
            held,
            confirmed,
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
            self.confirmed.insert(f);
        }
        Ok(fence)
    }

    /// The view of the confirmed leases, for checks that must not wait for a renewal.
    pub fn confirmed(&self) -> Confirmed {
        self.confirmed.clone()
    }

    /// Stops renewing a lease and gives it up at once.
    pub async fn release(&self, fence: &Fence) -> Result<bool, LeaseError> {
        let mut held = self.held.lock().await;
        held.remove(&(fence.kind.clone(), fence.key.clone()));
        self.confirmed.remove(fence);
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
        self.confirmed.clear();
    }

    /// Stops the loop and releases all of the node's leases and its node row at once (call it
    /// on SIGTERM). Returns the number of leases released.
    pub async fn shutdown(self) -> Result<u64, LeaseError> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.held.lock().await.clear();
        self.confirmed.clear();
        self.store.release_all().await
    }
}

async fn renew_loop(
    store: LeaseStore,
    address: String,
    held: Held,
    confirmed: Confirmed,
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
                confirmed.renewed(started, &held);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                // Give up one renewal period early: the next tick would come too late.
                if last_ok.elapsed() + cfg.renew_every >= cfg.ttl {
                    confirmed.clear();
                    for (_, fence) in held.drain() {
                        let _ = lost.send(fence);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(key: &str, epoch: i64) -> Fence {
        Fence {
            kind: "sub".into(),
            key: key.into(),
            owner: "n1".into(),
            epoch,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_unconfirmed_once_the_last_renewal_is_older_than_ttl_minus_one_period() {
        let confirmed = Confirmed::new(Duration::from_secs(4));
        let a = fence("a", 1);
        confirmed.insert(&a);
        assert!(confirmed.holds(&a));
        assert!(
            !confirmed.holds(&fence("a", 2)),
            "another epoch is not held"
        );
        // The node sleeps through its renewals (SIGSTOP): on waking the lease is unconfirmed
        // before any renewal ran.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!confirmed.holds(&a));
        // A renewal that succeeded and still names it confirms it again; one that dropped it
        // does not.
        let mut held = HashMap::new();
        held.insert(("sub".to_string(), "a".to_string()), a.clone());
        confirmed.renewed(Instant::now(), &held);
        assert!(confirmed.holds(&a));
        confirmed.renewed(Instant::now(), &HashMap::new());
        assert!(!confirmed.holds(&a));
    }
}
