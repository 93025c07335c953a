//! Cluster mode (issue 14): a subscription's offsets' sessions and its consumer group are
//! served by the one node holding its `sub:<topic_uid>:<sub_id>` lease (`cluster/ownership.rs`;
//! other nodes forward to it). When a node gains the lease it reloads that subscription's
//! offsets and stored group document from the meta store before serving it; the restored
//! members count as seen at that moment, so each gets one whole session timeout of grace to
//! send its next heartbeat to the new owner. The group document is then saved only while the
//! lease holds (`Catalog::change_group`), so a frozen former owner's late save is refused.

use std::collections::BTreeSet;
use std::time::Instant;

use sluice_meta::LeaseGuard;

use super::catalog::Catalog;
use super::connector_subscription::ConnectorLink;
use super::error::Result;
use super::groups::Group;
use super::subscriptions::{offsets_by_sub, Subscription};

impl Catalog {
    /// This node now holds the subscription's lease: reloads its offsets and group from the
    /// meta store (adding the subscription if this node has not seen it yet) and serves it
    /// under `guard`. A subscription deleted meanwhile is forgotten.
    pub async fn take_subscription(&self, uid: i64, sub_id: &str, guard: LeaseGuard) -> Result<()> {
        let stored = match self.meta.load_subscription(sub_id).await? {
            Some(stored) if stored.row.topic_uid == uid => stored,
            _ => {
                self.subs.remove(sub_id);
                return Ok(());
            }
        };
        let row = stored.row;
        let offsets = offsets_by_sub(stored.offsets)
            .remove(sub_id)
            .unwrap_or_default();
        let group = match stored.group {
            Some(g) => Group::restore(g.generation, &g.state, Instant::now()).unwrap_or_else(|e| {
                tracing::warn!(sub = %sub_id, error = %e, "the stored consumer group is unreadable; its consumers will rejoin");
                Group::default()
            }),
            None => Group::default(),
        };
        let sub = match self.subs.of_id(sub_id) {
            Some(sub) => sub,
            None => {
                let running = match &row.connector_id {
                    Some(id) => self
                        .connectors
                        .slots
                        .lock()
                        .get(&(uid, id.clone()))
                        .is_some_and(|s| s.snapshot().row.state == super::connectors::RUNNING),
                    None => false,
                };
                let link = row.connector_id.clone().map(|id| ConnectorLink {
                    running,
                    connector_id: id,
                });
                let sub = Subscription::new(row, Default::default(), Group::default(), link);
                self.subs.insert(sub);
                self.subs.of_id(sub_id).expect("just inserted")
            }
        };
        sub.replace_state(offsets, group).await;
        *sub.lease.lock() = Some(guard);
        Ok(())
    }

    /// This node no longer holds the subscription's lease: it stops saving its group.
    pub fn drop_subscription(&self, sub_id: &str) {
        if let Some(sub) = self.subs.of_id(sub_id) {
            *sub.lease.lock() = None;
        }
    }

    /// Brings the subscriptions in step with the meta store: adds those created through other
    /// nodes (their state is loaded when this node takes one over) and forgets deleted ones.
    pub async fn refresh_subscriptions(&self) -> Result<()> {
        let (rows, _) = self.meta.load_subscriptions().await?;
        let stored: BTreeSet<String> = rows.iter().map(|r| r.sub_id.clone()).collect();
        for (_, id) in self.subs.keys() {
            if !stored.contains(&id) {
                self.subs.remove(&id);
            }
        }
        let known: BTreeSet<String> = self.subs.keys().into_iter().map(|(_, id)| id).collect();
        for row in rows.into_iter().filter(|r| !known.contains(&r.sub_id)) {
            let link = row.connector_id.clone().map(|id| ConnectorLink {
                running: false,
                connector_id: id,
            });
            self.subs.insert(Subscription::new(
                row,
                Default::default(),
                Group::default(),
                link,
            ));
        }
        Ok(())
    }

    /// The subscriptions, for the work keys.
    pub fn subscription_keys(&self) -> Vec<(i64, String)> {
        self.subs.keys()
    }
}
