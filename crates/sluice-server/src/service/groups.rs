//! Consumer groups (protocol doc §4.12): the group of a subscription shares the topic's
//! readable shards among its live members.
//!
//! The state lives in memory and every change of it (a join, a leave, a timeout, a new
//! assignment or hand-over) is written to the metadata store before the request that caused it is
//! answered (`Catalog::change_group`, `stored.rs`), so consumers that keep running through a
//! restart of the server keep their ids and shards; if that write fails, the request fails and
//! the group is put back as it was, so memory never holds a state the store does not. The assignment is recomputed on every heartbeat and is
//! - balanced: every member gets ⌊k/n⌋ or ⌈k/n⌉ of the k readable shards;
//! - sticky: a member keeps what it was assigned as long as that fits its quota, so a join or a
//!   leave moves as few shards as possible;
//! - safe: a shard is handed to its new member only once the previous holder let it go (dropped
//!   it from its `HoldShardList`, listed it in `ReleaseShardList`, left or timed out), so the
//!   old holder's final offset commit is not refused for a changed session.
//!
//! Readable shards are ACTIVE or CLOSED shards the subscription has not read to the end whose
//! parents (after a split or merge) all have been read to the end, so order per key is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

mod stored;

use sluice_meta::ConsumerGroupRow;

use super::catalog::{Catalog, Topic};
use super::error::{Error, Result};
use super::subscriptions::{parse_shard_ids, Subscription};

/// One consumer of a group.
#[derive(Debug, Clone)]
struct Member {
    version: i64,
    timeout: Duration,
    last_seen: Instant,
    /// The shards this member should own (it may not hold all of them yet).
    target: BTreeSet<u32>,
    /// The offsets were reset: its next heartbeat answers `OffsetReseted`.
    reset_pending: bool,
}

/// The group state of one subscription.
#[derive(Debug, Default, Clone)]
pub struct Group {
    members: BTreeMap<String, Member>,
    joins: i64,
    plan_version: i64,
    /// Which member holds each shard, as far as the server knows.
    owner: BTreeMap<u32, String>,
    /// The last generation handed out for a save, the last one known to be on disk, and the
    /// state saved with it (see `stored.rs`).
    generation: i64,
    saved_generation: i64,
    saved_state: String,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub consumer_id: String,
    pub version_id: i64,
    pub session_timeout_ms: i64,
}

impl Group {
    /// Adds a member; `prefix` makes its id unique across server restarts.
    pub fn join(&mut self, prefix: &str, timeout_ms: i64, now: Instant) -> Joined {
        self.evict(now);
        self.joins += 1;
        let consumer_id = format!("{prefix}-{}", self.joins);
        self.members.insert(
            consumer_id.clone(),
            Member {
                version: self.joins,
                timeout: Duration::from_millis(timeout_ms.max(0) as u64),
                last_seen: now,
                target: BTreeSet::new(),
                reset_pending: false,
            },
        );
        self.plan_version += 1;
        Joined {
            consumer_id,
            version_id: self.joins,
            session_timeout_ms: timeout_ms,
        }
    }

    /// A heartbeat: records what the member holds, rebalances, and answers the plan version
    /// and the complete list of shards the member should own now.
    pub fn heartbeat(
        &mut self,
        id: &str,
        version: i64,
        hold: &[u32],
        readable: &BTreeSet<u32>,
        now: Instant,
    ) -> Result<(i64, Vec<u32>)> {
        self.evict(now);
        let member = self.member(id, version)?;
        member.last_seen = now;
        if member.reset_pending {
            member.reset_pending = false;
            return Err(Error::OffsetReseted(
                "The subscription's offsets were reset; rejoin to read from the new offsets."
                    .to_string(),
            ));
        }
        self.owner
            .retain(|shard, owner| owner != id || hold.contains(shard));
        for shard in hold {
            self.owner.entry(*shard).or_insert_with(|| id.to_string());
        }
        self.rebalance(readable);
        let target = self.members[id].target.clone();
        let mut granted = Vec::new();
        for shard in target {
            let owner = self.owner.entry(shard).or_insert_with(|| id.to_string());
            if owner == id {
                granted.push(shard);
            }
        }
        Ok((self.plan_version, granted))
    }

    /// A sync: the member no longer holds `release`.
    pub fn sync(&mut self, id: &str, version: i64, release: &[u32], now: Instant) -> Result<()> {
        self.evict(now);
        self.member(id, version)?.last_seen = now;
        self.owner
            .retain(|shard, owner| owner != id || !release.contains(shard));
        Ok(())
    }

    /// A member leaves; everything it held is free.
    pub fn leave(&mut self, id: &str, version: i64) -> Result<()> {
        self.member(id, version)?;
        self.remove(id);
        Ok(())
    }

    /// After an offset reset: every member's next heartbeat answers `OffsetReseted`.
    pub fn offsets_reset(&mut self) {
        for m in self.members.values_mut() {
            m.reset_pending = true;
        }
    }

    /// Whether one member's assignment holds all of `shards` (or the group has no members).
    /// pydatahub's consumers open every shard they newly see in ListShard, even inside a
    /// group (its `ShardCoordinator.on_shard_meta_change`); the subscription refuses such
    /// opens of split or merge children, which would otherwise let two members read the same
    /// child and invalidate each other's sessions.
    pub fn assigns_together(&self, shards: &[u32]) -> bool {
        self.members.is_empty()
            || self
                .members
                .values()
                .any(|m| shards.iter().all(|s| m.target.contains(s)))
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    // issue 13: metrics
    /// How often the shard assignment changed (joins, leaves, evictions, releases).
    pub fn rebalances(&self) -> i64 {
        self.plan_version
    }

    fn member(&mut self, id: &str, version: i64) -> Result<&mut Member> {
        match self.members.get_mut(id) {
            Some(m) if m.version == version => Ok(m),
            _ => Err(Error::NoSuchConsumer(format!(
                "consumer {id:?} (version {version}) is not in the group: it left or timed out"
            ))),
        }
    }

    fn remove(&mut self, id: &str) {
        if self.members.remove(id).is_some() {
            self.owner.retain(|_, owner| owner != id);
            self.plan_version += 1;
        }
    }

    /// Removes members whose session timed out.
    fn evict(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > m.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(consumer = %id, "consumer session timed out");
            self.remove(&id);
        }
    }

    /// Sticky, balanced assignment of `readable` over the members.
    fn rebalance(&mut self, readable: &BTreeSet<u32>) {
        let n = self.members.len();
        if n == 0 {
            return;
        }
        let before: Vec<BTreeSet<u32>> = self.members.values().map(|m| m.target.clone()).collect();
        let mut taken = BTreeSet::new();
        for m in self.members.values_mut() {
            m.target
                .retain(|s| readable.contains(s) && taken.insert(*s));
        }
        let (base, extra) = (readable.len() / n, readable.len() % n);
        // Members that already own more keep the larger quotas, so fewer shards move.
        let mut order: Vec<(usize, String)> = self
            .members
            .iter()
            .map(|(id, m)| (m.target.len(), id.clone()))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let quota: BTreeMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(rank, (_, id))| (id.clone(), base + usize::from(rank < extra)))
            .collect();
        for (id, m) in self.members.iter_mut() {
            while m.target.len() > quota[id] {
                let last = *m.target.iter().next_back().expect("non-empty");
                m.target.remove(&last);
                taken.remove(&last);
            }
        }
        let mut free = readable.difference(&taken).copied();
        order.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, id) in &order {
            let m = self.members.get_mut(id).expect("member");
            while m.target.len() < quota[id] {
                match free.next() {
                    Some(s) => m.target.insert(s),
                    None => break,
                };
            }
        }
        let after: Vec<BTreeSet<u32>> = self.members.values().map(|m| m.target.clone()).collect();
        if before != after {
            self.plan_version += 1;
        }
    }
}

/// The shards a group may read now (see the module docs).
pub fn readable_shards(topic: &Topic, read_end: &BTreeSet<u32>) -> BTreeSet<u32> {
    let shards = topic.shards.read();
    let exists = |id: &u32| shards.iter().any(|s| s.id == *id);
    shards
        .iter()
        .filter(|s| !read_end.contains(&s.id))
        .filter(|s| {
            s.meta
                .read()
                .parents
                .iter()
                .all(|p| read_end.contains(p) || !exists(p))
        })
        .map(|s| s.id)
        .collect()
}

impl Catalog {
    fn group_member_prefix(&self, sub: &Subscription) -> String {
        format!("{}-{}", sub.sub_id, self.subs.epoch)
    }

    /// Applies `change` to the subscription's group and writes the result to the metadata
    /// store before returning. If the write fails, the group is put back as it was and the
    /// error returned, so memory never holds a group state the store does not (changes of one
    /// group are serialized by `group_save`).
    pub(crate) async fn change_group<T>(
        &self,
        sub: &Subscription,
        change: impl FnOnce(&mut Group) -> T,
    ) -> Result<T> {
        let _saving = sub.group_save.lock().await;
        let (before, out, pending) = {
            let mut group = sub.group.lock();
            let before = group.clone();
            let out = change(&mut group);
            (before, out, group.take_changes())
        };
        if let Some((generation, state)) = pending {
            let row = ConsumerGroupRow {
                sub_id: sub.sub_id.clone(),
                generation,
                state,
            };
            // issue 14: leases — in cluster mode only the lease holder's save lands, and a node
            // that does not hold the subscription (any more) saves nothing.
            let lease = sub.lease.lock().clone();
            let saved: Result<()> = match (&lease, self.cluster.is_some()) {
                // (no `?` here: a failed save must reach the restore below)
                (Some(g), _) => self
                    .meta
                    .save_consumer_group_fenced(&row, g)
                    .await
                    .map_err(Error::from),
                (None, false) => self
                    .meta
                    .save_consumer_group(&row)
                    .await
                    .map_err(Error::from),
                (None, true) => Err(Error::Unavailable(format!(
                    "this node does not serve subscription {} now",
                    sub.sub_id
                ))),
            };
            if let Err(e) = saved {
                let mut group = sub.group.lock();
                // keep the generation counter moving: a later save must outrank this one
                let generation = group.generation;
                *group = before;
                group.generation = generation;
                return Err(e);
            }
            sub.group.lock().saved(row.generation, row.state);
        }
        Ok(out)
    }

    pub async fn join_group(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        timeout_ms: i64,
    ) -> Result<Joined> {
        let (_, sub) = self.subscription(project, topic, sub_id)?;
        sub.check_online()?;
        let timeout = timeout_ms.clamp(
            self.config.min_session_timeout_ms,
            self.config.max_session_timeout_ms,
        );
        let prefix = self.group_member_prefix(&sub);
        let joined = self
            .change_group(&sub, |g| g.join(&prefix, timeout, Instant::now()))
            .await?;
        tracing::info!(sub = %sub.sub_id, consumer = %joined.consumer_id, timeout, "consumer joined");
        Ok(joined)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn heartbeat(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        consumer_id: &str,
        version: i64,
        hold: &[String],
        read_end: &[String],
    ) -> Result<(i64, Vec<String>)> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        self.mark_read_end(&t, &sub, &parse_shard_ids(read_end))
            .await?;
        let hold = parse_shard_ids(hold);
        let (plan, shards) = self
            .change_group(&sub, |g| {
                // Taken under the group's lock, so each rebalance sees every read end recorded
                // before it. A readable set computed before another member's read end but
                // applied after it would take a just-granted child shard back and hand it to
                // the other member, whose commits then fail for a changed session.
                let readable = readable_shards(&t, &sub.read_end_set());
                g.heartbeat(consumer_id, version, &hold, &readable, Instant::now())
            })
            .await??;
        tracing::debug!(sub = %sub.sub_id, consumer = %consumer_id, ?hold, plan, granted = ?shards, "heartbeat");
        Ok((plan, shards.iter().map(u32::to_string).collect()))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync_group(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        consumer_id: &str,
        version: i64,
        release: &[String],
        read_end: &[String],
    ) -> Result<()> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        let read_end = parse_shard_ids(read_end);
        self.mark_read_end(&t, &sub, &read_end).await?;
        let mut release = parse_shard_ids(release);
        release.extend(read_end);
        self.change_group(&sub, |g| {
            g.sync(consumer_id, version, &release, Instant::now())
        })
        .await?
    }

    pub async fn leave_group(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        consumer_id: &str,
        version: i64,
    ) -> Result<()> {
        let (_, sub) = self.subscription(project, topic, sub_id)?;
        self.change_group(&sub, |g| g.leave(consumer_id, version))
            .await??;
        tracing::info!(sub = %sub.sub_id, consumer = %consumer_id, "consumer left");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    /// Heartbeats every member once (holding what it was granted) until nothing changes.
    fn settle(
        g: &mut Group,
        ids: &[(String, i64)],
        readable: &BTreeSet<u32>,
        now: Instant,
    ) -> Vec<Vec<u32>> {
        let mut held: Vec<Vec<u32>> = vec![vec![]; ids.len()];
        for _ in 0..4 {
            for (i, (id, v)) in ids.iter().enumerate() {
                let (_, got) = g.heartbeat(id, *v, &held[i], readable, now).unwrap();
                held[i] = got;
            }
        }
        held
    }

    #[test]
    fn balanced_sticky_and_safe() {
        let t0 = Instant::now();
        let mut g = Group::default();
        let readable = set(&[0, 1, 2, 3]);
        let a = g.join("s", 10_000, t0);
        let ids = vec![(a.consumer_id.clone(), a.version_id)];
        assert_eq!(settle(&mut g, &ids, &readable, t0), vec![vec![0, 1, 2, 3]]);

        let b = g.join("s", 10_000, t0);
        // A still holds everything: B gets nothing until A lets go.
        let (_, got_b) = g
            .heartbeat(&b.consumer_id, b.version_id, &[], &readable, t0)
            .unwrap();
        assert!(got_b.is_empty());
        let (_, got_a) = g
            .heartbeat(&a.consumer_id, a.version_id, &[0, 1, 2, 3], &readable, t0)
            .unwrap();
        assert_eq!(got_a, vec![0, 1], "A keeps the first half");
        let (_, got_b) = g
            .heartbeat(&b.consumer_id, b.version_id, &[], &readable, t0)
            .unwrap();
        assert!(got_b.is_empty(), "A has not released 2 and 3 yet");
        g.sync(&a.consumer_id, a.version_id, &[2, 3], t0).unwrap();
        let (_, got_b) = g
            .heartbeat(&b.consumer_id, b.version_id, &[], &readable, t0)
            .unwrap();
        assert_eq!(got_b, vec![2, 3]);

        // A third member takes exactly one shard; the others keep the rest.
        let c = g.join("s", 10_000, t0);
        let ids = vec![
            (a.consumer_id.clone(), a.version_id),
            (b.consumer_id.clone(), b.version_id),
            (c.consumer_id.clone(), c.version_id),
        ];
        let held = settle(&mut g, &ids, &readable, t0);
        let sizes: Vec<usize> = held.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 4);
        assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{held:?}");
        assert!(held[0].iter().all(|s| [0, 1].contains(s)));
        assert!(held[1].iter().all(|s| [2, 3].contains(s)));

        // C times out: its shard goes back to the others.
        let later = t0 + Duration::from_millis(10_001);
        let ids2 = vec![ids[0].clone(), ids[1].clone()];
        for (id, _) in &ids2 {
            g.members.get_mut(id).unwrap().last_seen = later;
        }
        let held = settle(&mut g, &ids2, &readable, later);
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 4);
        let err = g.heartbeat(&c.consumer_id, c.version_id, &[], &readable, later);
        assert!(matches!(err, Err(Error::NoSuchConsumer(_))));
    }

    #[test]
    fn reset_answers_once_and_leave_frees() {
        let t0 = Instant::now();
        let mut g = Group::default();
        let readable = set(&[0, 1]);
        let a = g.join("s", 10_000, t0);
        g.offsets_reset();
        let first = g.heartbeat(&a.consumer_id, a.version_id, &[], &readable, t0);
        assert!(matches!(first, Err(Error::OffsetReseted(_))));
        let (_, got) = g
            .heartbeat(&a.consumer_id, a.version_id, &[], &readable, t0)
            .unwrap();
        assert_eq!(got, vec![0, 1]);
        let b = g.join("s", 10_000, t0);
        g.leave(&a.consumer_id, a.version_id).unwrap();
        let (_, got) = g
            .heartbeat(&b.consumer_id, b.version_id, &[], &readable, t0)
            .unwrap();
        assert_eq!(got, vec![0, 1]);
        assert!(g.leave(&a.consumer_id, a.version_id).is_err());
        assert_eq!(g.member_count(), 1);
    }

    /// The property `Catalog::heartbeat` relies on: while the readable set only moves forward
    /// (a split's parent read to its end makes its children readable), random interleavings of
    /// heartbeats and syncs from two consumers never grant a shard to both and never move a
    /// child shard from the member that got it first.
    #[test]
    fn a_forward_moving_readable_set_never_moves_or_doubles_a_shard() {
        let mut seed: u64 = 7;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (parent, children) = (set(&[0, 1]), set(&[1, 2, 3]));
        for round in 0..5_000 {
            let t0 = Instant::now();
            let mut g = Group::default();
            let ids: Vec<(String, i64)> = (0..2)
                .map(|_| g.join("s", 10_000, t0))
                .map(|j| (j.consumer_id, j.version_id))
                .collect();
            let mut held = settle(&mut g, &ids, &parent, t0);
            let mut dropped: [Vec<u32>; 2] = [vec![], vec![]];
            let mut first_holder: BTreeMap<u32, usize> = BTreeMap::new();
            let read_end_at = rnd(6);
            let mut log = Vec::new();
            for step in 0..24 {
                let who = rnd(2) as usize;
                let (id, version) = (&ids[who].0, ids[who].1);
                let readable = if step < read_end_at {
                    &parent
                } else {
                    &children
                };
                if rnd(5) == 0 {
                    let mut release = std::mem::take(&mut dropped[who]);
                    if step >= read_end_at && held[who].contains(&0) {
                        release.push(0);
                    }
                    g.sync(id, version, &release, t0).unwrap();
                    log.push(format!("{who} sync {release:?}"));
                    continue;
                }
                let (_, got) = g.heartbeat(id, version, &held[who], readable, t0).unwrap();
                log.push(format!(
                    "{who} hold {:?} readable {readable:?} -> {got:?}",
                    held[who]
                ));
                for s in &got {
                    let trace = log.join("\n");
                    assert!(
                        !held[1 - who].contains(s),
                        "round {round}: {s} granted twice\n{trace}"
                    );
                    if *s >= 2 {
                        let first = *first_holder.entry(*s).or_insert(who);
                        assert_eq!(first, who, "round {round}: {s} moved\n{trace}");
                    }
                }
                dropped[who].extend(held[who].iter().filter(|s| !got.contains(s)));
                held[who] = got;
            }
        }
    }
}
