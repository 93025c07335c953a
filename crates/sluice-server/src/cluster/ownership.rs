//! Who runs which piece of work in a cluster (issue 14, "Work spread by leases").
//!
//! Work comes in keys: `sub:<topic_uid>:<sub_id>` (a subscription: its offsets' sessions and
//! its consumer group), `conn:<topic_uid>:<connector_id>` (a connector's control: its row,
//! changes and status requests) and `task:<topic_uid>:<connector_id>:<shard>` (the task that
//! copies one shard of a RUNNING connector). Each node runs the single-node code for the keys
//! it owns and forwards requests for the others (`http/forward.rs`).
//!
//! * Liveness: every node heartbeats its `node` row and renews its leases through one
//!   [`LeaseKeeper`] (every `renew_every`, ~1 s; a lease expires after `ttl`, ~5 s, judged by
//!   PostgreSQL's clock). The live-node list is re-read every `renew_every`.
//! * Placement: rendezvous hashing of each key over the live nodes
//!   ([`sluice_cluster::placement::rebalance`]); only the keys a joining node wins move.
//! * Leases: a node acquires the keys placement gives it once the previous owner's lease
//!   expired or was released, and releases the keys it no longer wins. [`Ownership::shutdown`]
//!   (SIGTERM) stops the node's work and releases everything at once.
//! * Hooks ([`WorkHooks`]): a gained key's work starts (its state reloaded from the meta store)
//!   *before* the node serves it; a lost or released key's work stops first. Gains and losses
//!   run one at a time (`transitions`).
//! * Routing ([`Ownership::route`]): held here and confirmed by a recent renewal
//!   ([`sluice_cluster::lease_keeper::Confirmed`]) → serve; held here but not confirmed lately
//!   (this node was frozen or cut off) → serve only if the lease store still names this node
//!   under the same epoch, else treat it as another node's; held by another live node → forward to
//!   its advertise address; held by nobody → acquired on demand if this node is the placement
//!   winner (a key created a moment ago is served at once), else forwarded to the winner; no
//!   live owner or winner → [`Route::Unavailable`] (a retriable error, never a wrong answer).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::RwLock;
use sluice_cluster::lease::{Fence, LeaseConfig, LeaseError, LeaseState, LeaseStore, NodeInfo};
use sluice_cluster::lease_keeper::{Confirmed, LeaseKeeper};
use sluice_cluster::placement;
use sluice_meta::LeaseGuard;
use sqlx::PgPool;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// Lease kind of a subscription's work.
pub const SUB: &str = "sub";
/// Lease kind of a connector's control (its row, changes and status requests).
pub const CONN: &str = "conn";
/// Lease kind of one shard's task of a running connector.
pub const TASK: &str = "task";

/// A piece of work: lease kind (`sub`, `conn`, `task`) and key (`<topic_uid>:<id>`, for a
/// task `<topic_uid>:<connector_id>:<shard>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkKey {
    pub kind: &'static str,
    pub key: String,
}

impl WorkKey {
    pub fn sub(topic_uid: i64, sub_id: &str) -> WorkKey {
        WorkKey {
            kind: SUB,
            key: format!("{topic_uid}:{sub_id}"),
        }
    }

    pub fn conn(topic_uid: i64, connector_id: &str) -> WorkKey {
        WorkKey {
            kind: CONN,
            key: format!("{topic_uid}:{connector_id}"),
        }
    }

    pub fn task(topic_uid: i64, connector_id: &str, shard: u32) -> WorkKey {
        WorkKey {
            kind: TASK,
            key: format!("{topic_uid}:{connector_id}:{shard}"),
        }
    }

    /// The lease key prefix of every task of a connector.
    pub fn task_prefix(topic_uid: i64, connector_id: &str) -> String {
        format!("{topic_uid}:{connector_id}:")
    }

    /// The topic uid, connector id and shard of a task key.
    pub fn task_parts(&self) -> Option<(i64, &str, u32)> {
        let (uid, id) = self.parts()?;
        let (id, shard) = id.rsplit_once(':')?;
        Some((uid, id, shard.parse().ok()?))
    }

    /// The key placement hashes: `<kind>:<topic_uid>:<id>`.
    pub fn placement_key(&self) -> String {
        format!("{}:{}", self.kind, self.key)
    }

    fn parse(placement_key: &str) -> Option<WorkKey> {
        let (kind, key) = placement_key.split_once(':')?;
        let kind = match kind {
            SUB => SUB,
            CONN => CONN,
            TASK => TASK,
            _ => return None,
        };
        Some(WorkKey {
            kind,
            key: key.to_string(),
        })
    }

    /// The topic uid and the id inside the key.
    pub fn parts(&self) -> Option<(i64, &str)> {
        let (uid, id) = self.key.split_once(':')?;
        Some((uid.parse().ok()?, id))
    }
}

/// The order in which a rebalance hands keys over: subscriptions (consumers wait on them), then
/// connectors' control, then shard tasks.
fn urgency(kind: &str) -> u8 {
    match kind {
        SUB => 0,
        CONN => 1,
        _ => 2,
    }
}

fn guard_of(fence: &Fence) -> LeaseGuard {
    LeaseGuard {
        kind: fence.kind.clone(),
        key: fence.key.clone(),
        owner: fence.owner.clone(),
        epoch: fence.epoch,
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a node does with its work; implemented over the catalog (`cluster/work.rs`).
pub trait WorkHooks: Send + Sync {
    /// Every piece of work that exists now.
    fn keys(&self) -> BoxFuture<'_, Vec<WorkKey>>;
    /// This node now holds `key` under `guard`: load its state and start it. An error gives
    /// the lease back.
    fn gained(&self, key: WorkKey, guard: LeaseGuard) -> BoxFuture<'_, Result<(), String>>;
    /// This node no longer holds `key` (released, lost or shutting down): stop its work.
    fn lost(&self, key: WorkKey) -> BoxFuture<'_, ()>;
}

/// Where a request for a piece of work is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here, under this lease.
    Local(LeaseGuard),
    /// At another node's advertise address (`host:port`).
    Remote { node: String, address: String },
    /// Nowhere right now (no live owner, or the lease store failed): retry later.
    Unavailable(String),
}

/// One node's ownership of work; see the module docs.
pub struct Ownership {
    store: LeaseStore,
    address: String,
    keeper: Mutex<Option<LeaseKeeper>>,
    confirmed: Confirmed,
    live: RwLock<Vec<NodeInfo>>,
    held: RwLock<HashMap<WorkKey, Fence>>,
    /// Serializes gains and losses (and on-demand acquires).
    transitions: Mutex<()>,
    hooks: Arc<dyn WorkHooks>,
    stop: CancellationToken,
}

impl Ownership {
    /// Opens the lease tables on `pool`, heartbeats this node (`node` at `address`), and
    /// starts the rebalancing loop.
    pub async fn start(
        pool: PgPool,
        node: &str,
        address: &str,
        config: LeaseConfig,
        hooks: Arc<dyn WorkHooks>,
    ) -> Result<Arc<Ownership>, LeaseError> {
        let store = LeaseStore::open(pool, node, config).await?;
        store.heartbeat(address).await?;
        let (keeper, lost) = LeaseKeeper::spawn(store.clone(), address.to_string());
        let me = Arc::new(Ownership {
            confirmed: keeper.confirmed(),
            live: RwLock::new(store.live_nodes().await?),
            store,
            address: address.to_string(),
            keeper: Mutex::new(Some(keeper)),
            held: RwLock::new(HashMap::new()),
            transitions: Mutex::new(()),
            hooks,
            stop: CancellationToken::new(),
        });
        tokio::spawn(Self::run(Arc::downgrade(&me), lost, me.stop.clone()));
        Ok(me)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        self.store.node()
    }

    /// This node's advertise address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The keys this node serves now.
    pub fn held(&self) -> Vec<WorkKey> {
        let mut keys: Vec<WorkKey> = self.held.read().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The lease under which this node serves `key`, if it does.
    pub fn guard(&self, key: &WorkKey) -> Option<LeaseGuard> {
        self.held.read().get(key).map(guard_of)
    }

    /// The live nodes as last read.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        self.live.read().clone()
    }

    async fn run(
        me: std::sync::Weak<Ownership>,
        mut lost: mpsc::UnboundedReceiver<Fence>,
        stop: CancellationToken,
    ) {
        let every = match me.upgrade() {
            Some(m) => m.store.config().renew_every,
            None => return,
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let Some(me) = me.upgrade() else { return };
                    if let Err(e) = me.rebalance().await {
                        tracing::warn!(error = %e, "work rebalance failed");
                    }
                }
                Some(fence) = lost.recv() => {
                    let Some(me) = me.upgrade() else { return };
                    me.on_lost(fence).await;
                }
            }
        }
    }

    async fn on_lost(&self, fence: Fence) {
        let _t = self.transitions.lock().await;
        let key = self
            .held
            .read()
            .iter()
            .find(|(_, f)| **f == fence)
            .map(|(k, _)| k.clone());
        if let Some(key) = key {
            tracing::warn!(kind = key.kind, key = %key.key, "lease lost; stopping its work");
            self.held.write().remove(&key);
            self.hooks.lost(key).await;
        }
    }

    /// One pass: re-reads the live nodes, releases what this node no longer wins and
    /// acquires what it wins (see the module docs). Each key is handed over under its own hold
    /// of `transitions`, so a request waiting to take a key on demand waits for one key, not a
    /// whole pass; subscriptions come first (consumers wait on them), then connectors, then
    /// tasks.
    pub async fn rebalance(&self) -> Result<(), LeaseError> {
        let live = self.store.live_nodes().await?;
        *self.live.write() = live.clone();
        let ids: Vec<String> = live.into_iter().map(|n| n.id).collect();
        let keys: Vec<String> = self
            .hooks
            .keys()
            .await
            .iter()
            .map(WorkKey::placement_key)
            .collect();
        let held: Vec<String> = self
            .held
            .read()
            .keys()
            .map(WorkKey::placement_key)
            .collect();
        let plan = placement::rebalance(self.node(), &ids, &keys, &held);
        let mut release: Vec<WorkKey> = plan
            .release
            .iter()
            .filter_map(|k| WorkKey::parse(k))
            .collect();
        let mut acquire: Vec<WorkKey> = plan
            .acquire
            .iter()
            .filter_map(|k| WorkKey::parse(k))
            .collect();
        release.sort_by_key(|k| urgency(k.kind));
        acquire.sort_by_key(|k| urgency(k.kind));
        for k in &release {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            let _t = self.transitions.lock().await;
            self.give_up(k).await;
        }
        for k in &acquire {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            let _t = self.transitions.lock().await;
            self.take(k).await?;
        }
        Ok(())
    }

    /// Stops the work of a held key, then releases its lease (under `transitions`).
    async fn give_up(&self, key: &WorkKey) {
        let Some(fence) = self.held.write().remove(key) else {
            return;
        };
        tracing::info!(kind = key.kind, key = %key.key, "handing work over");
        self.hooks.lost(key.clone()).await;
        if let Some(keeper) = self.keeper.lock().await.as_ref() {
            if let Err(e) = keeper.release(&fence).await {
                tracing::warn!(error = %e, "releasing a lease failed; it expires by itself");
            }
        }
    }

    /// Acquires a key's lease if it is free and starts its work (under `transitions`);
    /// returns its guard, or `None` when another node holds it.
    async fn take(&self, key: &WorkKey) -> Result<Option<LeaseGuard>, LeaseError> {
        if let Some(f) = self.held.read().get(key) {
            return Ok(Some(guard_of(f)));
        }
        let fence = {
            let keeper = self.keeper.lock().await;
            let Some(keeper) = keeper.as_ref() else {
                return Ok(None); // shutting down
            };
            match keeper.acquire(key.kind, &key.key).await? {
                Some(f) => f,
                None => return Ok(None),
            }
        };
        let guard = guard_of(&fence);
        match self.hooks.gained(key.clone(), guard.clone()).await {
            Ok(()) => {
                tracing::info!(kind = key.kind, key = %key.key, epoch = fence.epoch, "work taken over");
                self.held.write().insert(key.clone(), fence);
                Ok(Some(guard))
            }
            Err(e) => {
                tracing::warn!(kind = key.kind, key = %key.key, error = %e, "starting work failed; lease given back");
                if let Some(keeper) = self.keeper.lock().await.as_ref() {
                    let _ = keeper.release(&fence).await;
                }
                Ok(None)
            }
        }
    }

    fn address_of(&self, node: &str) -> Option<String> {
        self.live
            .read()
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.address.clone())
    }

    /// The route to `s.owner`, another node holding `key`'s live lease (the live nodes are
    /// read again when it is not among those last read: it may have joined since).
    async fn to_owner(&self, key: &WorkKey, s: &LeaseState, forwarded: bool) -> Route {
        if forwarded {
            return Route::Unavailable(format!(
                "{} {} moved to node {} meanwhile",
                key.kind, key.key, s.owner
            ));
        }
        if self.address_of(&s.owner).is_none() {
            if let Ok(live) = self.store.live_nodes().await {
                *self.live.write() = live;
            }
        }
        match self.address_of(&s.owner) {
            Some(address) => Route::Remote {
                node: s.owner.clone(),
                address,
            },
            None => Route::Unavailable(format!(
                "node {} holds {} {} but is not live",
                s.owner, key.kind, key.key
            )),
        }
    }

    /// Where a request for `key` is served (see the module docs). `forwarded`: the request
    /// was forwarded here by another node, so it is served here or nowhere.
    pub async fn route(&self, key: &WorkKey, forwarded: bool) -> Route {
        let held = self.held.read().get(key).cloned();
        if let Some(fence) = &held {
            if self.confirmed.holds(fence) {
                return Route::Local(guard_of(fence));
            }
        }
        let state = match self.store.state(key.kind, &key.key).await {
            Ok(s) => s,
            Err(e) => return Route::Unavailable(format!("the lease store failed: {e}")),
        };
        if let Some(fence) = held {
            // Held here, but no renewal confirmed it lately: the store decides.
            return match &state {
                Some(s) if s.live && s.owner == self.node() && s.epoch == fence.epoch => {
                    Route::Local(guard_of(&fence))
                }
                Some(s) if s.live && s.owner != self.node() => {
                    self.to_owner(key, s, forwarded).await
                }
                _ => Route::Unavailable(format!(
                    "the lease of {} {} on this node expired and is being handed over",
                    key.kind, key.key
                )),
            };
        }
        if let Some(s) = state.filter(|s| s.live && s.owner != self.node()) {
            return self.to_owner(key, &s, forwarded).await;
        }
        let ids: Vec<String> = self.live.read().iter().map(|n| n.id.clone()).collect();
        let winner = placement::owner(&key.placement_key(), &ids).map(str::to_string);
        match winner {
            Some(w) if w != self.node() && !forwarded => match self.address_of(&w) {
                Some(address) => Route::Remote { node: w, address },
                None => Route::Unavailable(format!("no address for node {w}")),
            },
            // This node wins it (or was sent it): take it now.
            _ => {
                let _t = self.transitions.lock().await;
                match self.take(key).await {
                    Ok(Some(guard)) => Route::Local(guard),
                    Ok(None) => Route::Unavailable(format!(
                        "{} {} is being handed over between nodes",
                        key.kind, key.key
                    )),
                    Err(e) => Route::Unavailable(format!("the lease store failed: {e}")),
                }
            }
        }
    }

    /// Stops renewing and rebalancing without releasing anything or stopping the work, as a
    /// frozen node would: its leases expire after the ttl and other nodes take its work over,
    /// while its own late writes are fenced. For fault tests.
    pub async fn halt(&self) {
        self.stop.cancel();
        if let Some(keeper) = self.keeper.lock().await.take() {
            keeper.halt().await;
        }
    }

    /// Stops this node's work and releases all its leases and its node row at once (SIGTERM),
    /// so the survivors take over without waiting for the leases to expire.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let _t = self.transitions.lock().await;
        let keys: Vec<WorkKey> = self.held.write().drain().map(|(k, _)| k).collect();
        for k in keys {
            self.hooks.lost(k).await;
        }
        if let Some(keeper) = self.keeper.lock().await.take() {
            match keeper.shutdown().await {
                Ok(n) => tracing::info!(released = n, "leases released"),
                Err(e) => {
                    tracing::warn!(error = %e, "releasing leases failed; they expire by themselves")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_round_trip_through_placement_keys() {
        let key = WorkKey::task(7, "sink_mysql_a:b", 12);
        assert_eq!(key.placement_key(), "task:7:sink_mysql_a:b:12");
        let parsed = WorkKey::parse(&key.placement_key()).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.task_parts(), Some((7, "sink_mysql_a:b", 12)));
        assert!(key
            .key
            .starts_with(&WorkKey::task_prefix(7, "sink_mysql_a:b")));
        assert_eq!(WorkKey::conn(7, "c").task_parts(), None);
        assert_eq!(WorkKey::parse("other:7:c"), None);
    }
}
