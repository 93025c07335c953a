//! The offsets of subscriptions (protocol doc §4.11): open (init-and-get: a new session per
//! shard), get, commit (checked against the session and the reset version), reset, and the
//! read-end marks of closed shards. Every change is written to the meta store before it is
//! applied in memory; in the cluster mode only under the subscription's lease, except the
//! commits and gets any node serves from the store (`offsets_anywhere.rs`).

use sluice_meta::OffsetRow;

use super::catalog::{Catalog, ShardState, Topic};
use super::connector_subscription::overlay;
use super::error::{Error, Result};
use super::groups::Group;
use super::subscriptions::{Offset, OffsetUpdate, Subscription};

// issue 14: leases
/// Which columns of offset rows a write sets.
#[derive(Clone, Copy)]
enum OffsetWrite {
    Positions,
    Sessions,
    ReadEnds,
}

impl Catalog {
    // issue 14: leases
    /// Writes offset rows; in the cluster mode only under the subscription's lease (fenced),
    /// and not at all on a node that does not serve it.
    async fn write_offsets(
        &self,
        sub: &Subscription,
        rows: &[OffsetRow],
        which: OffsetWrite,
    ) -> Result<()> {
        let lease = sub.lease.lock().clone();
        let meta = &self.meta;
        match (lease, self.cluster.is_some(), which) {
            (None, false, OffsetWrite::Positions) => meta.put_offsets(rows).await?,
            (None, false, OffsetWrite::Sessions) => meta.put_sessions(rows).await?,
            (None, false, OffsetWrite::ReadEnds) => meta.put_read_ends(rows).await?,
            (Some(g), _, OffsetWrite::Positions) => meta.put_offsets_fenced(rows, &g).await?,
            (Some(g), _, OffsetWrite::Sessions) => meta.put_sessions_fenced(rows, &g).await?,
            (Some(g), _, OffsetWrite::ReadEnds) => meta.put_read_ends_fenced(rows, &g).await?,
            (None, true, _) => {
                return Err(Error::Unavailable(format!(
                    "this node does not serve subscription {} now",
                    sub.sub_id
                )))
            }
        }
        Ok(())
    }

    fn shard_ids(topic: &Topic, ids: &[String]) -> Result<Vec<u32>> {
        ids.iter()
            .map(|id| topic.shard_by_text(id).map(|s| s.id))
            .collect()
    }

    /// Init-and-get: starts a new session on each shard and answers the offsets.
    pub async fn open_offsets(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        ids: &[String],
    ) -> Result<Vec<(u32, Offset)>> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        sub.check_online()?;
        if ids.is_empty() {
            return Err(Error::InvalidParameter("ShardIds must not be empty".into()));
        }
        let shards = Self::shard_ids(&t, ids)?;
        for s in &shards {
            if self.parents_pending(&t, &sub, *s) {
                return Err(Error::InvalidOperation(format!(
                    "shard {s} cannot be opened yet: subscription {sub_id} has not read its parent shards to the end"
                )));
            }
        }
        let children: Vec<u32> = shards
            .iter()
            .copied()
            .filter(|s| {
                t.shard(*s)
                    .is_some_and(|sh| !sh.meta.read().parents.is_empty())
            })
            .collect();
        if !children.is_empty() && !sub.group.lock().assigns_together(&children) {
            return Err(Error::InvalidOperation(format!(
                "shards {children:?} are split or merge children that the consumer group of subscription {sub_id} has not assigned to one consumer: a group member opens only the shards its heartbeat granted"
            )));
        }
        let positions = self.connector_positions(&t, &sub).await?;
        let mut offsets = sub.offsets.lock().await;
        if self.cluster.is_some() {
            // issue 14: the stored rows are the truth (`offsets_anywhere.rs`).
            let out = self.open_sessions_in_store(&sub, &shards).await?;
            offsets.extend(out.iter().copied());
            drop(offsets);
            return Ok(overlay(out, positions.as_ref()));
        }
        let mut out = Vec::new();
        for s in shards {
            let mut o = offsets.get(&s).copied().unwrap_or_default();
            // The first session is 1 (Java SDK e2e SubscriptionTest), each open the next.
            o.session_id = o.session_id.max(0) + 1;
            out.push((s, o));
        }
        tracing::debug!(sub = %sub.sub_id, sessions = ?out.iter().map(|(s, o)| (s, o.session_id)).collect::<Vec<_>>(), "offsets opened");
        let rows: Vec<OffsetRow> = out.iter().map(|(s, o)| sub.offset_row(*s, o)).collect();
        // Only the sessions are written: a connector may be moving the positions meanwhile.
        self.write_offsets(&sub, &rows, OffsetWrite::Sessions)
            .await?;
        offsets.extend(out.iter().copied());
        drop(offsets);
        Ok(overlay(out, positions.as_ref()))
    }

    /// The offsets of `ids`, or of every shard of the topic.
    pub async fn get_offsets(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        ids: Option<&[String]>,
    ) -> Result<Vec<(u32, Offset)>> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        let shards = match ids {
            Some(ids) if !ids.is_empty() => Self::shard_ids(&t, ids)?,
            _ => t.shards.read().iter().map(|s| s.id).collect(),
        };
        if self.cluster.is_some() {
            return self.offsets_from_store(&t, &sub, shards).await;
        }
        let positions = self.connector_positions(&t, &sub).await?;
        let offsets = sub.offsets.lock().await;
        let out = shards
            .into_iter()
            .map(|s| (s, offsets.get(&s).copied().unwrap_or_default()))
            .collect();
        Ok(overlay(out, positions.as_ref()))
    }

    /// Commits offsets of several shards at once: all are checked (session, version) before
    /// any is written, and all are on disk before this returns.
    pub async fn commit_offsets(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        updates: &[(String, OffsetUpdate)],
    ) -> Result<()> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        sub.check_online()?;
        tracing::debug!(sub = %sub.sub_id, ?updates, "offsets committed");
        let mut offsets = sub.offsets.lock().await;
        if self.cluster.is_some() {
            // issue 14: checked in the shared store, at any node (`offsets_anywhere.rs`).
            return self.commit_offsets_in_store(&t, &sub, updates).await;
        }
        Self::refuse_if_connector_running(&sub)?;
        let mut next = Vec::with_capacity(updates.len());
        for (id, u) in updates {
            let shard = t.shard_by_text(id)?.id;
            let cur = match offsets.get(&shard) {
                Some(o) if o.session_id >= 0 => *o,
                _ => {
                    return Err(Error::OffsetSessionClosed(format!(
                        "no session is open on shard {shard}: call open (init offset) first"
                    )))
                }
            };
            if u.version.is_some_and(|v| v != cur.version) {
                return Err(Error::OffsetReseted(format!(
                    "the offset of shard {shard} was reset: version {} is current, not {}",
                    cur.version,
                    u.version.unwrap_or_default()
                )));
            }
            if u.session_id.is_some_and(|s| s != cur.session_id) {
                return Err(Error::OffsetSessionChanged(format!(
                    "the session of shard {shard} changed: session {} is current, not {}",
                    cur.session_id,
                    u.session_id.unwrap_or_default()
                )));
            }
            if u.sequence < -1 {
                return Err(Error::InvalidParameter(format!(
                    "Sequence {} of shard {shard} is invalid",
                    u.sequence
                )));
            }
            let sequence = Self::connector_sequence(&t, &sub, shard, u)?;
            next.push((
                shard,
                Offset {
                    sequence,
                    timestamp: u.timestamp,
                    batch_index: u.batch_index,
                    ..cur
                },
            ));
        }
        let rows: Vec<OffsetRow> = next.iter().map(|(s, o)| sub.offset_row(*s, o)).collect();
        self.write_offsets(&sub, &rows, OffsetWrite::Positions)
            .await?;
        offsets.extend(next);
        Ok(())
    }

    /// Resets offsets: new position, new version (commits made before are refused), and every
    /// group member is told to reread from the new offsets.
    pub async fn reset_offsets(
        &self,
        project: &str,
        topic: &str,
        sub_id: &str,
        updates: &[(String, OffsetUpdate)],
    ) -> Result<()> {
        let (t, sub) = self.subscription(project, topic, sub_id)?;
        let mut offsets = sub.offsets.lock().await;
        Self::refuse_if_connector_running(&sub)?;
        let mut next = Vec::with_capacity(updates.len());
        for (id, u) in updates {
            let shard = t.shard_by_text(id)?.id;
            if u.sequence < -1 || (u.sequence < 0 && u.timestamp < 0) {
                return Err(Error::InvalidParameter(format!(
                    "a reset of shard {shard} needs a Sequence or a Timestamp"
                )));
            }
            let cur = offsets.get(&shard).copied().unwrap_or_default();
            let sequence = Self::connector_sequence(&t, &sub, shard, u)?;
            next.push((
                shard,
                Offset {
                    sequence,
                    timestamp: u.timestamp,
                    batch_index: u.batch_index,
                    version: cur.version + 1,
                    read_end: false,
                    ..cur
                },
            ));
        }
        let rows: Vec<OffsetRow> = next.iter().map(|(s, o)| sub.offset_row(*s, o)).collect();
        self.write_offsets(&sub, &rows, OffsetWrite::Positions)
            .await?;
        {
            let mut read_end = sub.read_end.write();
            for (s, _) in &next {
                read_end.remove(s);
            }
        }
        offsets.extend(next);
        self.change_group(&sub, Group::offsets_reset).await?;
        Ok(())
    }

    /// Records that the subscription has read these closed shards to their end (claims about
    /// shards that are still open are ignored).
    pub async fn mark_read_end(
        &self,
        topic: &Topic,
        sub: &Subscription,
        shards: &[u32],
    ) -> Result<()> {
        let new: Vec<u32> = {
            let known = sub.read_end.read();
            shards
                .iter()
                .copied()
                .filter(|s| !known.contains(s))
                .filter(|s| {
                    topic
                        .shard(*s)
                        .is_some_and(|sh| sh.meta.read().state == ShardState::Closed)
                })
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        let mut offsets = sub.offsets.lock().await;
        let next: Vec<(u32, Offset)> = new
            .iter()
            .map(|s| {
                let o = offsets.get(s).copied().unwrap_or_default();
                (
                    *s,
                    Offset {
                        read_end: true,
                        ..o
                    },
                )
            })
            .collect();
        let rows: Vec<OffsetRow> = next.iter().map(|(s, o)| sub.offset_row(*s, o)).collect();
        if sub.connector.lock().is_some() || self.cluster.is_some() {
            // the position is the connector's, or (cluster mode) the store's, where commits
            // made at other nodes land: only a read end is recorded
            self.write_offsets(sub, &rows, OffsetWrite::ReadEnds)
                .await?;
        } else {
            self.write_offsets(sub, &rows, OffsetWrite::Positions)
                .await?;
        }
        offsets.extend(next);
        sub.read_end.write().extend(new);
        Ok(())
    }
}
