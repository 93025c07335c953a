//! Subscriptions (protocol doc §4.10) and their offsets (§4.11).
//!
//! The registry is loaded from the meta store at start-up and mirrors it; every change is
//! written to the meta store before it is applied here and acknowledged. Offsets per
//! (subscription, shard) carry a session id (bumped by each `open`: only the latest opener may
//! commit) and a version (bumped by each `reset`: commits made before it are refused). Each
//! subscription also remembers which closed shards it has read to the end, so that children
//! of a split or merge are read only after their parents (order per key survives).
//!
//! A subscription may back a connector ([`Subscription::connector`]); its offsets are then the
//! connector's checkpoints. The rules for those (positions shown as the connector has them,
//! changes refused while it runs, no direct delete) live in `connector_subscription.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_meta::{MetaStore, OffsetRow, SubscriptionRow};

use super::catalog::{now_ms, now_secs, Catalog, Topic};
use super::connector_subscription::ConnectorLink;
use super::error::{Error, Result};
use super::groups::Group;
use super::projects::check_comment;

/// Subscription state: offline.
pub const INACTIVE: i32 = 0;
/// Subscription state: online.
pub const ACTIVE: i32 = 1;

/// One shard's offset of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    pub sequence: i64,
    pub timestamp: i64,
    pub batch_index: i64,
    pub version: i64,
    /// -1 until the first open.
    pub session_id: i64,
    pub read_end: bool,
}

impl Default for Offset {
    fn default() -> Self {
        Offset {
            sequence: -1,
            timestamp: -1,
            batch_index: 0,
            version: 0,
            session_id: -1,
            read_end: false,
        }
    }
}

/// An offset as a commit or reset request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetUpdate {
    pub sequence: i64,
    pub timestamp: i64,
    pub batch_index: i64,
    pub version: Option<i64>,
    pub session_id: Option<i64>,
}

/// The mutable description of a subscription.
#[derive(Debug, Clone)]
pub struct SubMeta {
    pub comment: String,
    pub state: i32,
    pub create_time: i64,
    pub last_modify_time: i64,
}

/// A subscription with its offsets and consumer group.
pub struct Subscription {
    pub sub_id: String,
    pub topic_uid: i64,
    pub meta: Mutex<SubMeta>,
    /// Serializes offset changes (check, write to the meta store, apply).
    pub(super) offsets: tokio::sync::Mutex<BTreeMap<u32, Offset>>,
    /// Mirror of the `read_end` flags, readable without waiting.
    pub(super) read_end: RwLock<BTreeSet<u32>>,
    pub group: Mutex<Group>,
    /// Held while the group is changed and saved (`Catalog::change_group`).
    pub group_save: tokio::sync::Mutex<()>,
    /// The connector this subscription backs, if any (changed under the `offsets` lock).
    pub(super) connector: Mutex<Option<ConnectorLink>>,
    // issue 14: leases
    /// Cluster mode: the `sub:` lease under which this node serves the subscription; its
    /// group document is saved only while that lease holds (`subscription_leases.rs`).
    pub(super) lease: Mutex<Option<sluice_meta::LeaseGuard>>,
}

impl Subscription {
    /// A subscription as loaded or created, with its offsets.
    pub(super) fn new(
        row: SubscriptionRow,
        offsets: BTreeMap<u32, Offset>,
        group: Group,
        connector: Option<ConnectorLink>,
    ) -> Subscription {
        let read_end = offsets
            .iter()
            .filter(|(_, o)| o.read_end)
            .map(|(s, _)| *s)
            .collect();
        Subscription {
            sub_id: row.sub_id,
            topic_uid: row.topic_uid,
            meta: Mutex::new(SubMeta {
                comment: row.comment,
                state: row.state,
                create_time: row.create_time,
                last_modify_time: row.last_modify_time,
            }),
            offsets: tokio::sync::Mutex::new(offsets),
            read_end: RwLock::new(read_end),
            group: Mutex::new(group),
            group_save: tokio::sync::Mutex::new(()),
            connector: Mutex::new(connector),
            lease: Mutex::new(None),
        }
    }

    // issue 14: leases
    /// Replaces the offsets and the group with the meta store's (a node taking the
    /// subscription over), under the offsets and group locks.
    pub(super) async fn replace_state(&self, offsets: BTreeMap<u32, Offset>, group: Group) {
        let _saving = self.group_save.lock().await;
        let mut held = self.offsets.lock().await;
        *self.read_end.write() = offsets
            .iter()
            .filter(|(_, o)| o.read_end)
            .map(|(s, _)| *s)
            .collect();
        *held = offsets;
        *self.group.lock() = group;
    }

    /// The offsets lock, for `connector_subscription.rs` (which changes `connector` under it).
    pub(super) async fn lock_offsets(&self) -> tokio::sync::MutexGuard<'_, BTreeMap<u32, Offset>> {
        self.offsets.lock().await
    }

    pub fn check_online(&self) -> Result<()> {
        if self.meta.lock().state == INACTIVE {
            return Err(Error::SubscriptionOffline(self.sub_id.clone()));
        }
        Ok(())
    }

    pub fn read_end_set(&self) -> BTreeSet<u32> {
        self.read_end.read().clone()
    }

    fn row(&self) -> SubscriptionRow {
        let m = self.meta.lock();
        SubscriptionRow {
            sub_id: self.sub_id.clone(),
            topic_uid: self.topic_uid,
            comment: m.comment.clone(),
            state: m.state,
            create_time: m.create_time,
            last_modify_time: m.last_modify_time,
            connector_id: self
                .connector
                .lock()
                .as_ref()
                .map(|c| c.connector_id.clone()),
        }
    }

    pub(super) fn offset_row(&self, shard: u32, o: &Offset) -> OffsetRow {
        OffsetRow {
            sub_id: self.sub_id.clone(),
            shard_id: shard,
            sequence: o.sequence,
            timestamp: o.timestamp,
            batch_index: o.batch_index,
            version: o.version,
            session_id: o.session_id,
            read_end: o.read_end,
        }
    }
}

/// Every subscription, by id.
pub struct Subscriptions {
    map: RwLock<BTreeMap<String, Arc<Subscription>>>,
    /// This server run's start time (ms); part of consumer ids, so that ids handed out before
    /// a restart are never mistaken for new ones.
    pub epoch: i64,
}

/// A subscription as list and get show it.
pub struct SubView {
    pub sub_id: String,
    pub topic_name: String,
    pub meta: SubMeta,
}

impl Subscriptions {
    pub async fn load(meta: &MetaStore) -> Result<Subscriptions> {
        let (subs, offsets) = meta.load_subscriptions().await?;
        let running: BTreeSet<(i64, String)> = meta
            .load_connectors()
            .await?
            .into_iter()
            .filter(|c| c.state == super::connectors::RUNNING)
            .map(|c| (c.topic_uid, c.connector_id))
            .collect();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let now = std::time::Instant::now();
        for row in meta.load_consumer_groups().await? {
            match Group::restore(row.generation, &row.state, now) {
                Ok(group) => {
                    groups.insert(row.sub_id, group);
                }
                Err(e) => tracing::warn!(
                    sub = %row.sub_id,
                    error = %e,
                    "the stored consumer group is unreadable; its consumers will rejoin"
                ),
            }
        }
        let mut by_sub = offsets_by_sub(offsets);
        let map = subs
            .into_iter()
            .map(|row| {
                let offsets = by_sub.remove(&row.sub_id).unwrap_or_default();
                let group = groups.remove(&row.sub_id).unwrap_or_default();
                let link = row.connector_id.clone().map(|id| ConnectorLink {
                    running: running.contains(&(row.topic_uid, id.clone())),
                    connector_id: id,
                });
                let id = row.sub_id.clone();
                (id, Arc::new(Subscription::new(row, offsets, group, link)))
            })
            .collect();
        Ok(Subscriptions {
            map: RwLock::new(map),
            epoch: now_ms(),
        })
    }

    // issue 14: leases
    /// Every subscription, as (topic uid, sub id).
    pub fn keys(&self) -> Vec<(i64, String)> {
        self.map
            .read()
            .values()
            .map(|s| (s.topic_uid, s.sub_id.clone()))
            .collect()
    }

    /// Adds a subscription just written to the meta store.
    pub(super) fn insert(&self, sub: Subscription) {
        self.map.write().insert(sub.sub_id.clone(), Arc::new(sub));
    }

    /// The subscription `sub_id`, of any topic.
    pub(super) fn of_id(&self, sub_id: &str) -> Option<Arc<Subscription>> {
        self.map.read().get(sub_id).cloned()
    }

    /// Forgets a subscription just deleted from the meta store.
    pub(super) fn remove(&self, sub_id: &str) {
        self.map.write().remove(sub_id);
    }

    /// The subscription backing a connector, if any.
    pub(super) fn of_connector(
        &self,
        topic_uid: i64,
        connector_id: &str,
    ) -> Option<Arc<Subscription>> {
        self.map
            .read()
            .values()
            .find(|s| {
                s.topic_uid == topic_uid
                    && s.connector
                        .lock()
                        .as_ref()
                        .is_some_and(|c| c.connector_id == connector_id)
            })
            .cloned()
    }

    fn of_topic(&self, uid: i64) -> Vec<Arc<Subscription>> {
        let mut subs: Vec<_> = self
            .map
            .read()
            .values()
            .filter(|s| s.topic_uid == uid)
            .cloned()
            .collect();
        subs.sort_by(|a, b| {
            let (ta, tb) = (a.meta.lock().create_time, b.meta.lock().create_time);
            ta.cmp(&tb).then_with(|| a.sub_id.cmp(&b.sub_id))
        });
        subs
    }
}

/// Stored offset rows by subscription and shard.
pub(super) fn offsets_by_sub(offsets: Vec<OffsetRow>) -> BTreeMap<String, BTreeMap<u32, Offset>> {
    let mut by_sub: BTreeMap<String, BTreeMap<u32, Offset>> = BTreeMap::new();
    for o in offsets {
        by_sub.entry(o.sub_id.clone()).or_default().insert(
            o.shard_id,
            Offset {
                sequence: o.sequence,
                timestamp: o.timestamp,
                batch_index: o.batch_index,
                version: o.version,
                session_id: o.session_id,
                read_end: o.read_end,
            },
        );
    }
    by_sub
}

/// A new subscription id: the creation time in milliseconds followed by five digits, strictly
/// increasing within a process so that ids (and listings, which order by creation) follow the
/// order in which subscriptions were created even when several are created in one millisecond.
pub(super) fn next_subscription_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = (now_ms().max(0) as u64) * 100_000;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = floor.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Shard ids as sent on the wire; ids that are not numbers name no shard and are skipped.
pub fn parse_shard_ids(ids: &[String]) -> Vec<u32> {
    ids.iter().filter_map(|s| s.trim().parse().ok()).collect()
}

impl Catalog {
    /// The subscription `sub_id` of a topic.
    pub fn subscription(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
    ) -> Result<(Arc<Topic>, Arc<Subscription>)> {
        let t = self.topic(project, topic)?;
        let sub = self.subscription_of(&t, sub_id)?;
        Ok((t, sub))
    }

    pub fn subscription_of(&self, topic: &Topic, sub_id: &str) -> Result<Arc<Subscription>> {
        self.subs
            .map
            .read()
            .get(sub_id)
            .filter(|s| s.topic_uid == topic.uid)
            .cloned()
            .ok_or_else(|| Error::NoSuchSubscription(sub_id.to_string()))
    }

    pub async fn create_subscription(
        &self,
        project: &str,
        topic: &str,
        comment: &str,
    ) -> Result<String> {
        check_comment(comment)?;
        let t = self.topic(project, topic)?;
        let now = now_secs();
        let sub_id = loop {
            let id = next_subscription_id().to_string();
            if !self.subs.map.read().contains_key(&id) {
                break id;
            }
        };
        let row = SubscriptionRow {
            sub_id: sub_id.clone(),
            topic_uid: t.uid,
            comment: comment.to_string(),
            state: ACTIVE,
            create_time: now,
            last_modify_time: now,
            connector_id: None,
        };
        self.meta.insert_subscription(&row).await?;
        self.subs.insert(Subscription::new(
            row,
            BTreeMap::new(),
            Group::default(),
            None,
        ));
        Ok(sub_id)
    }

    pub fn get_subscription(&self, project: &str, topic: &str, sub_id: &str) -> Result<SubView> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        let meta = sub.meta.lock().clone();
        Ok(SubView {
            sub_id: sub.sub_id.clone(),
            topic_name: t.name.clone(),
            meta,
        })
    }

    /// One page (1-based) of a topic's subscriptions whose id or comment contains `search`
    /// (case-insensitively), and the number of matches.
    pub fn list_subscriptions(
        &self,
        project: &str,
        topic: &str,
        search: &str,
        page_index: i64,
        page_size: i64,
    ) -> Result<(usize, Vec<SubView>)> {
        if page_index < 1 || page_size < 0 {
            return Err(Error::InvalidParameter(format!(
                "PageIndex {page_index} must be at least 1 and PageSize {page_size} at least 0"
            )));
        }
        let t = self.topic(project, topic)?;
        let needle = search.to_lowercase();
        let matching: Vec<SubView> = self
            .subs
            .of_topic(t.uid)
            .into_iter()
            .map(|s| SubView {
                sub_id: s.sub_id.clone(),
                topic_name: t.name.clone(),
                meta: s.meta.lock().clone(),
            })
            .filter(|v| {
                needle.is_empty()
                    || v.sub_id.to_lowercase().contains(&needle)
                    || v.meta.comment.to_lowercase().contains(&needle)
            })
            .collect();
        let total = matching.len();
        let skip = ((page_index - 1) as usize).saturating_mul(page_size as usize);
        Ok((
            total,
            matching
                .into_iter()
                .skip(skip)
                .take(page_size as usize)
                .collect(),
        ))
    }

    /// Changes the comment and/or the state (0 offline, 1 online).
    pub async fn update_subscription(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        comment: Option<String>,
        state: Option<i64>,
    ) -> Result<()> {
        if let Some(c) = &comment {
            check_comment(c)?;
        }
        if let Some(s) = state {
            if s != INACTIVE as i64 && s != ACTIVE as i64 {
                return Err(Error::InvalidParameter(format!(
                    "State {s} is invalid: it must be 0 (INACTIVE) or 1 (ACTIVE)"
                )));
            }
        }
        let (_, sub) = self.subscription(project, topic, sub_id)?;
        let _guard = sub.offsets.lock().await;
        let mut row = sub.row();
        if let Some(c) = comment {
            row.comment = c;
        }
        if let Some(s) = state {
            row.state = s as i32;
        }
        row.last_modify_time = now_secs();
        self.meta.update_subscription(&row).await?;
        let mut m = sub.meta.lock();
        m.comment = row.comment;
        m.state = row.state;
        m.last_modify_time = row.last_modify_time;
        Ok(())
    }

    pub async fn delete_subscription(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
    ) -> Result<()> {
        let (_, sub) = self.subscription(project, topic, sub_id)?;
        let _guard = sub.offsets.lock().await;
        Self::refuse_if_connector_owned(&sub, "deleted")?;
        self.meta
            .delete_subscriptions(std::slice::from_ref(&sub.sub_id))
            .await?;
        self.subs.map.write().remove(&sub.sub_id);
        Ok(())
    }

    /// Removes every subscription of a topic being deleted, with its offsets.
    pub async fn delete_topic_subscriptions(&self, topic_uid: i64) -> Result<()> {
        let ids: Vec<String> = self
            .subs
            .of_topic(topic_uid)
            .iter()
            .map(|s| s.sub_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.meta.delete_subscriptions(&ids).await?;
        let mut map = self.subs.map.write();
        for id in ids {
            map.remove(&id);
        }
        Ok(())
    }

    /// Whether some parent of `shard` has not been read to the end by the subscription.
    pub fn parents_pending(&self, topic: &Topic, sub: &Subscription, shard: u32) -> bool {
        let Some(s) = topic.shard(shard) else {
            return false;
        };
        let parents = s.meta.read().parents.clone();
        let read_end = sub.read_end.read();
        parents
            .iter()
            .any(|p| !read_end.contains(p) && topic.shard(*p).is_some())
    }
}

// issue 13: metrics
impl Catalog {
    /// The subscriptions of a topic, for the metrics scrape.
    pub fn subscriptions_of(&self, topic: &Topic) -> Vec<Arc<Subscription>> {
        self.subs.of_topic(topic.uid)
    }
}

// issue 14: cluster — the catalog refresh hook (service/catalog_refresh.rs).
impl Subscriptions {
    /// Follows the stored subscriptions after another node changed them: adds the new ones
    /// (with their stored offsets), forgets the deleted ones and updates the descriptions and
    /// states of the others, leaving their offsets, sessions and groups in memory alone.
    /// `running` lists the `(topic uid, connector id)` of the running connectors.
    pub(super) fn sync_rows(
        &self,
        rows: Vec<SubscriptionRow>,
        offsets: Vec<OffsetRow>,
        running: &BTreeSet<(i64, String)>,
    ) {
        let mut map = self.map.write();
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.sub_id.as_str()).collect();
        map.retain(|id, _| ids.contains(id.as_str()));
        for row in rows {
            if let Some(sub) = map.get(&row.sub_id) {
                let mut meta = sub.meta.lock();
                meta.comment = row.comment;
                meta.state = row.state;
                meta.last_modify_time = row.last_modify_time;
                continue;
            }
            let mine = offsets
                .iter()
                .filter(|o| o.sub_id == row.sub_id)
                .map(|o| {
                    (
                        o.shard_id,
                        Offset {
                            sequence: o.sequence,
                            timestamp: o.timestamp,
                            batch_index: o.batch_index,
                            version: o.version,
                            session_id: o.session_id,
                            read_end: o.read_end,
                        },
                    )
                })
                .collect();
            let link = row.connector_id.clone().map(|id| ConnectorLink {
                running: running.contains(&(row.topic_uid, id.clone())),
                connector_id: id,
            });
            let id = row.sub_id.clone();
            map.insert(
                id,
                Arc::new(Subscription::new(row, mine, Group::default(), link)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_follow_creation_order_within_a_millisecond() {
        let ids: Vec<u64> = (0..10_000).map(|_| next_subscription_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not increasing");
        let ms = ids[0] / 100_000;
        assert!(
            (now_ms() as u64).abs_diff(ms) < 60_000,
            "id does not carry the time"
        );
        assert_eq!(ids[0].to_string().len(), 18);
    }
}
