//! Connectors backed by subscriptions (issue 8 item 7; docs/sdk-wire.md "Connectors backed by
//! subscriptions").
//!
//! Every connector owns one subscription on its topic, created with it in one meta-store
//! transaction (comment `connector <id>`) and deleted with it (or with its topic). GetConnector
//! names it in `ExtraInfo.SubscriptionId`, as the service does.
//!
//! One source of truth: the connector's per-shard checkpoints are stored as that
//! subscription's offset rows (`sluice-meta`, migration 2), holding the checkpoint's `next_seq`
//! (where the connector resumes). Through the API, the offset `Sequence` is the connector's
//! CurrentSequence: the last record delivered (-1: none yet), the same convention as any
//! subscription's (the last record consumed) and as the service's shard status (Java SDK e2e
//! `SinkMysqlTest`: the sum of CurrSequence + 1 over the shards is the number of records
//! written). `Timestamp` = CurrentTimestamp; a shard the connector finished is read to its
//! end. Committing Sequence N to a connector's subscription makes the connector resume at
//! N + 1; a commit with only a Timestamp resumes at the first record at or after it. (The old
//! SDK's tests, `oldsdk/SinkOdpsTest.java:383-387`, saw the older executor report the next
//! record instead; docs/sdk-wire.md.)
//!
//! Reads of the offsets (get, open) show the positions the connector API shows (live ones
//! while it runs). Commits and resets are refused with InvalidOperation while the connector
//! is RUNNING; made while it is STOPPED, they are what it resumes from. Deleting the
//! subscription directly is refused.
//!
//! Locking: whether the connector runs ([`ConnectorLink::running`]) is changed under the
//! subscription's offsets lock, which commits and resets hold while they check it and write;
//! the connector side sets it before it loads its checkpoints to start, so a commit either
//! lands before the start (and is resumed from) or is refused. The subscription side never
//! waits for the connector registry while holding the offsets lock.

use std::collections::BTreeMap;

use sluice_meta::{ConnectorRow, SubscriptionRow};

use super::catalog::{now_secs, Catalog, Topic};
use super::connectors::RUNNING;
use super::error::{Error, Result};
use super::groups::Group;
use super::subscriptions::{next_subscription_id, Offset, OffsetUpdate, Subscription, ACTIVE};
use sluice_connect::runtime::status::ContextState;

/// The connector a subscription backs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorLink {
    pub connector_id: String,
    /// The connector's state is CONNECTOR_RUNNING: its offsets may not change.
    pub running: bool,
}

/// Where a connector stands on one shard, as its subscription's offset shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The connector's CurrentSequence (the last record delivered; -1: none yet).
    pub sequence: i64,
    /// The connector's CurrentTimestamp.
    pub timestamp: i64,
    /// The shard is closed and delivered to its end.
    pub finished: bool,
}

/// Replaces the positions of offsets by the connector's, where it has one.
pub(super) fn overlay(
    offsets: Vec<(u32, Offset)>,
    positions: Option<&BTreeMap<u32, Position>>,
) -> Vec<(u32, Offset)> {
    let Some(positions) = positions else {
        return offsets;
    };
    offsets
        .into_iter()
        .map(|(shard, o)| match positions.get(&shard) {
            Some(p) => (
                shard,
                Offset {
                    sequence: p.sequence,
                    timestamp: p.timestamp,
                    read_end: p.finished,
                    ..o
                },
            ),
            None => (shard, o),
        })
        .collect()
}

impl Catalog {
    /// The connector's positions per shard if `sub` backs a connector (None otherwise).
    pub(super) async fn connector_positions(
        &self,
        topic: &Topic,
        sub: &Subscription,
    ) -> Result<Option<BTreeMap<u32, Position>>> {
        let Some(link) = sub.connector.lock().clone() else {
            return Ok(None);
        };
        let reports = match self
            .connector_shard_status(&topic.project, &topic.name, &link.connector_id, None)
            .await
        {
            Ok(r) => r,
            // deleted meanwhile: its subscription goes with it
            Err(Error::NoSuchConnector(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            reports
                .into_iter()
                .map(|r| {
                    (
                        r.shard_id,
                        Position {
                            sequence: r.current_sequence,
                            timestamp: r.current_timestamp,
                            finished: r.state == ContextState::Finished,
                        },
                    )
                })
                .collect(),
        ))
    }

    /// Refuses an action on a connector's subscription (`what`: "deleted", ...).
    pub(super) fn refuse_if_connector_owned(sub: &Subscription, what: &str) -> Result<()> {
        match sub.connector.lock().as_ref() {
            Some(link) => Err(Error::InvalidOperation(format!(
                "subscription {} backs connector {} and cannot be {what} directly; delete the \
                 connector instead",
                sub.sub_id, link.connector_id
            ))),
            None => Ok(()),
        }
    }

    /// Refuses an offset change on the subscription of a running connector. Call with the
    /// subscription's offsets lock held.
    pub(super) fn refuse_if_connector_running(sub: &Subscription) -> Result<()> {
        match sub.connector.lock().as_ref() {
            Some(link) if link.running => Err(Error::InvalidOperation(format!(
                "subscription {} backs connector {}, which is running; stop it \
                 (CONNECTOR_STOPPED) before changing its offsets",
                sub.sub_id, link.connector_id
            ))),
            _ => Ok(()),
        }
    }

    /// The Sequence to store for an offset update: as given for an ordinary subscription; for
    /// a connector's, the record the connector resumes at: the one after the given Sequence,
    /// or the first at or after the Timestamp when only that is given.
    pub(super) fn connector_sequence(
        topic: &Topic,
        sub: &Subscription,
        shard: u32,
        u: &OffsetUpdate,
    ) -> Result<i64> {
        let Some(link) = sub.connector.lock().clone() else {
            return Ok(u.sequence);
        };
        if u.sequence >= 0 {
            // The last record delivered, as for any subscription: the connector resumes after it.
            return Ok(u.sequence + 1);
        }
        if u.timestamp < 0 {
            return Err(Error::InvalidParameter(format!(
                "the offset of shard {shard} of connector {}'s subscription needs a Sequence \
                 or a Timestamp",
                link.connector_id
            )));
        }
        let s = topic.shard(shard).ok_or_else(|| {
            Error::InvalidParameter(format!("shard {shard} is not a shard of {}", topic.name))
        })?;
        Ok(s.log
            .seq_at_or_after_time(u.timestamp)
            .unwrap_or_else(|| s.log.next_seq()) as i64)
    }

    /// Stores a new connector with the subscription that backs it (one transaction: both or
    /// neither) and registers the subscription.
    pub(super) async fn create_connector_subscription(
        &self,
        topic: &Topic,
        row: &ConnectorRow,
    ) -> Result<String> {
        let now = now_secs();
        let sub_id = loop {
            let id = next_subscription_id().to_string();
            if self.subs.of_id(&id).is_none() {
                break id;
            }
        };
        let sub = SubscriptionRow {
            sub_id: sub_id.clone(),
            topic_uid: topic.uid,
            comment: format!("connector {}", row.connector_id),
            state: ACTIVE,
            create_time: now,
            last_modify_time: now,
            connector_id: Some(row.connector_id.clone()),
        };
        self.meta
            .insert_connector_with_subscription(row, &sub)
            .await?;
        let link = ConnectorLink {
            connector_id: row.connector_id.clone(),
            running: row.state == RUNNING,
        };
        self.subs.insert(Subscription::new(
            sub,
            BTreeMap::new(),
            Group::default(),
            Some(link),
        ));
        Ok(sub_id)
    }

    /// Forgets the subscription of a connector just deleted from the meta store.
    pub(super) fn forget_connector_subscription(&self, topic_uid: i64, connector_id: &str) {
        if let Some(sub) = self.subs.of_connector(topic_uid, connector_id) {
            self.subs.remove(&sub.sub_id);
        }
    }

    /// Records whether the connector runs (call before a start loads its checkpoints, and
    /// after a stop).
    pub(super) async fn set_connector_running(
        &self,
        topic_uid: i64,
        connector_id: &str,
        running: bool,
    ) {
        if let Some(sub) = self.subs.of_connector(topic_uid, connector_id) {
            let _offsets = sub.lock_offsets().await;
            if let Some(link) = sub.connector.lock().as_mut() {
                link.running = running;
            }
        }
    }

    /// The id of the subscription backing a connector (`ExtraInfo.SubscriptionId`).
    pub fn connector_subscription_id(
        &self,
        project: &str,
        topic: &str,
        connector_id: &str,
    ) -> Result<Option<String>> {
        let topic = self.topic(project, topic)?;
        Ok(self
            .subs
            .of_connector(topic.uid, connector_id)
            .map(|s| s.sub_id.clone()))
    }
}
