//! Cluster mode (issue 14): a connector's runtime runs on the one node holding its
//! `conn:<topic_uid>:<connector_id>` lease (`cluster/ownership.rs`). This file starts and stops
//! one connector when its lease is gained or lost, and keeps every node's registry in step
//! with the meta store (connectors created, changed or deleted through other nodes).
//!
//! A gained connector is started from its row and checkpoints as the meta store has them now,
//! and its checkpoints are saved under the lease ([`sluice_meta::LeaseGuard`]), so a node that
//! lost it can never move a checkpoint, backwards or forwards.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_meta::{ConnectorRow, LeaseGuard};

use super::catalog::{Catalog, Topic};
use super::connector_registry::Slot;
use super::connectors::{stored_config, RUNNING};
use super::error::{Error, Result};

impl Catalog {
    fn topic_by_uid(&self, uid: i64) -> Option<Arc<Topic>> {
        self.all_topics().into_iter().find(|t| t.uid == uid)
    }

    /// The registry key of a connector named in a request path (an id, or a type naming the
    /// topic's single connector of that type).
    pub fn connector_key(&self, project: &str, topic: &str, id: &str) -> Result<(i64, String)> {
        let topic = self.topic(project, topic)?;
        Ok(self.resolve(&topic, id)?.0)
    }

    /// Whether the connector's runtime runs on this node now.
    pub fn connector_runs_here(&self, uid: i64, id: &str) -> bool {
        let slot = self
            .connectors
            .slots
            .lock()
            .get(&(uid, id.to_string()))
            .cloned();
        slot.is_some_and(|s| s.snapshot().runtime.is_some())
    }

    /// This node now holds the connector's lease: (re)loads its row and checkpoints from the
    /// meta store and starts its runtime if it is RUNNING, saving checkpoints under `guard`.
    pub async fn take_connector(&self, uid: i64, id: &str, guard: LeaseGuard) -> Result<()> {
        let key = (uid, id.to_string());
        let row = self
            .meta
            .load_connectors()
            .await?
            .into_iter()
            .find(|r| r.topic_uid == uid && r.connector_id == id)
            .ok_or_else(|| Error::NoSuchConnector(id.to_string()))?;
        let topic = self
            .topic_by_uid(uid)
            .ok_or_else(|| Error::NoSuchTopic(format!("(uid {uid})")))?;
        let config = stored_config(&row)?;
        let slot = {
            let mut slots = self.connectors.slots.lock();
            slots
                .entry(key.clone())
                .or_insert_with(|| Slot::new(row.clone(), config.clone(), None))
                .clone()
        };
        let _op = slot.op.lock().await;
        if let Some(rt) = slot.take_runtime() {
            rt.stop().await;
        }
        self.connectors.set_guard(key.clone(), Some(guard.clone()));
        let runtime = if row.state == RUNNING {
            let cps = self.load_checkpoints(&topic, id).await?;
            Some(self.start_runtime(&topic, &row, &config, cps, Some(guard))?)
        } else {
            None
        };
        self.set_connector_running(uid, id, row.state == RUNNING)
            .await;
        slot.set(row, config, runtime);
        Ok(())
    }

    /// This node no longer holds the connector's lease: stops its runtime (a write in progress
    /// finishes within `connector_stop_grace_ms`; a checkpoint it would then save is fenced).
    pub async fn drop_connector(&self, uid: i64, id: &str) {
        let key = (uid, id.to_string());
        self.connectors.set_guard(key.clone(), None);
        let slot = self.connectors.slots.lock().get(&key).cloned();
        if let Some(slot) = slot {
            let _op = slot.op.lock().await;
            if let Some(rt) = slot.take_runtime() {
                rt.stop().await;
            }
        }
    }

    /// Brings the registry in step with the meta store: adds connectors created through other
    /// nodes, forgets deleted ones, and takes the rows of connectors another node runs. A
    /// connector this node runs is changed only through this node (requests are forwarded to
    /// it), so its slot is left alone.
    pub async fn refresh_connectors(&self) -> Result<()> {
        let rows: BTreeMap<(i64, String), ConnectorRow> = self
            .meta
            .load_connectors()
            .await?
            .into_iter()
            .map(|r| ((r.topic_uid, r.connector_id.clone()), r))
            .collect();
        let gone: Vec<(i64, String)> = self
            .connectors
            .slots
            .lock()
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .cloned()
            .collect();
        for (uid, id) in gone {
            self.drop_connector(uid, &id).await;
            self.connectors.slots.lock().remove(&(uid, id.clone()));
            self.forget_connector_subscription(uid, &id);
        }
        for (key, row) in rows {
            if self.topic_by_uid(key.0).is_none() {
                continue;
            }
            if self.connectors.runs_here(&key) != super::connector_registry::RunsHere::No {
                continue;
            }
            let config = match stored_config(&row) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(connector = %key.1, error = %e, "skipping a connector");
                    continue;
                }
            };
            self.set_connector_running(key.0, &key.1, row.state == RUNNING)
                .await;
            let slot = self.connectors.slots.lock().get(&key).cloned();
            match slot {
                Some(slot) if slot.snapshot().row != row => slot.set(row, config, None),
                Some(_) => {}
                None => {
                    self.connectors
                        .slots
                        .lock()
                        .insert(key, Slot::new(row, config, None));
                }
            }
        }
        Ok(())
    }
}
