//! Cluster mode (issue 14): offsets served from the shared store, so that a commit or a get
//! is answered by whichever node it reaches, without a hop to the subscription's owner.
//!
//! The stored offset rows are the truth (`sluice_meta`'s `postgres/offsets_anywhere.rs`):
//! - **commit** (any node): one transaction locks the shards' rows, checks each against its
//!   stored session and version, and writes them all or none; the refusals are the embedded
//!   mode's (OffsetSessionClosed, OffsetReseted, OffsetSessionChanged);
//! - **get** (any node): the stored rows;
//! - **open** (the owner, which also runs the consumer group): the session bump is one fenced
//!   upsert per shard that returns the row as stored, so the answer carries the position of the
//!   last commit wherever it was made, and a commit with the old session fails from then on;
//! - **reset** (the owner) and read ends stay as they were (the owner writes them, fenced); a
//!   read end writes only its flag, never a position from the owner's memory.
//!
//! The owner's in-memory offsets keep the sessions and versions (only the owner changes those)
//! and are refreshed by every open; their positions may lag commits made elsewhere, so nothing
//! answers positions from memory in this mode.
//!
//! A commit to a connector's subscription is refused while this node sees the connector
//! RUNNING (as in the embedded mode); the connector's state reaches other nodes with the
//! catalog version, so a commit racing a start made elsewhere may land just before the
//! connector loads its checkpoints, or be overwritten by its next checkpoint.

use std::collections::BTreeMap;

use sluice_meta::{CheckedCommit, CommitConflict, OffsetRow};

use super::catalog::{Catalog, Topic};
use super::connector_subscription::overlay;
use super::error::{Error, Result};
use super::subscriptions::{Offset, OffsetUpdate, Subscription};

fn offset_of(row: &OffsetRow) -> Offset {
    Offset {
        sequence: row.sequence,
        timestamp: row.timestamp,
        batch_index: row.batch_index,
        version: row.version,
        session_id: row.session_id,
        read_end: row.read_end,
    }
}

impl Catalog {
    /// Cluster mode: commits `updates` in the shared store, checked there (see the module docs).
    pub(super) async fn commit_offsets_in_store(
        &self,
        topic: &Topic,
        sub: &Subscription,
        updates: &[(String, OffsetUpdate)],
    ) -> Result<()> {
        Self::refuse_if_connector_running(sub)?;
        let mut commits = Vec::with_capacity(updates.len());
        for (id, u) in updates {
            let shard = topic.shard_by_text(id)?.id;
            if u.sequence < -1 {
                return Err(Error::InvalidParameter(format!(
                    "Sequence {} of shard {shard} is invalid",
                    u.sequence
                )));
            }
            commits.push(CheckedCommit {
                shard_id: shard,
                sequence: Self::connector_sequence(topic, sub, shard, u)?,
                timestamp: u.timestamp,
                batch_index: u.batch_index,
                version: u.version,
                session_id: u.session_id,
            });
        }
        let asked = |shard: u32, f: fn(&OffsetUpdate) -> Option<i64>| {
            updates
                .iter()
                .zip(&commits)
                .find(|(_, c)| c.shard_id == shard)
                .and_then(|((_, u), _)| f(u))
                .unwrap_or_default()
        };
        match self
            .meta
            .commit_offsets_checked(&sub.sub_id, &commits)
            .await?
        {
            None => Ok(()),
            Some(CommitConflict::NoSession { shard_id }) => Err(Error::OffsetSessionClosed(format!(
                "no session is open on shard {shard_id}: call open (init offset) first"
            ))),
            Some(CommitConflict::VersionChanged { shard_id, current }) => {
                Err(Error::OffsetReseted(format!(
                    "the offset of shard {shard_id} was reset: version {current} is current, not {}",
                    asked(shard_id, |u| u.version)
                )))
            }
            Some(CommitConflict::SessionChanged { shard_id, current }) => {
                Err(Error::OffsetSessionChanged(format!(
                    "the session of shard {shard_id} changed: session {current} is current, not {}",
                    asked(shard_id, |u| u.session_id)
                )))
            }
        }
    }

    /// Cluster mode: the stored offsets of `shards` (a shard never opened shows the defaults),
    /// with a connector's positions laid over them.
    pub(super) async fn offsets_from_store(
        &self,
        topic: &Topic,
        sub: &Subscription,
        shards: Vec<u32>,
    ) -> Result<Vec<(u32, Offset)>> {
        let positions = self.connector_positions(topic, sub).await?;
        let stored: BTreeMap<u32, Offset> = self
            .meta
            .load_offsets(&sub.sub_id, &shards)
            .await?
            .iter()
            .map(|r| (r.shard_id, offset_of(r)))
            .collect();
        let out = shards
            .into_iter()
            .map(|s| (s, stored.get(&s).copied().unwrap_or_default()))
            .collect();
        Ok(overlay(out, positions.as_ref()))
    }

    /// Cluster mode, on the owner: a new session on each of `shards`, bumped in the store under
    /// the subscription's lease; returns the rows as stored after the bump.
    pub(super) async fn open_sessions_in_store(
        &self,
        sub: &Subscription,
        shards: &[u32],
    ) -> Result<Vec<(u32, Offset)>> {
        let Some(guard) = sub.lease.lock().clone() else {
            return Err(Error::Unavailable(format!(
                "this node does not serve subscription {} now",
                sub.sub_id
            )));
        };
        let rows = self.meta.open_sessions(&sub.sub_id, shards, &guard).await?;
        Ok(rows.iter().map(|r| (r.shard_id, offset_of(r))).collect())
    }
}
