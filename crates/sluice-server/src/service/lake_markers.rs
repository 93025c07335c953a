//! issue 10: `_SUCCESS` markers of SINK_ODPS tables. A background pass (every
//! `LAKE_MARKER_INTERVAL`) computes each running SINK_ODPS connector's done time, exactly as
//! `get_connector_done_time` does, and lets `sluice_connect::sinks::odps::markers` mark the
//! partitions it completes (EVENT_TIME: with the allowance `connector_odps_lateness_ms`, one
//! window when unset). A stopped connector's done time stands still: it is skipped.

use std::sync::Arc;
use std::time::Duration;

use sluice_connect::runtime::status;
use sluice_connect::sinks::odps::markers;
use sluice_connect::sinks::ConnectorConfig;
use sluice_connect::ConnectorKind;
use tokio_util::sync::CancellationToken;

use super::catalog::{now_ms, Catalog};
use super::connectors::{check_columns, RUNNING};

/// How often the markers are brought up to date.
pub const LAKE_MARKER_INTERVAL: Duration = Duration::from_millis(500);

impl Catalog {
    /// One pass over every running SINK_ODPS connector; returns the partitions marked.
    pub async fn mark_lake_partitions(&self) -> usize {
        let slots: Vec<_> = self
            .connectors
            .slots
            .lock()
            .iter()
            .filter(|(_, s)| s.kind == ConnectorKind::Odps.as_str())
            .map(|(k, s)| (k.0, s.clone()))
            .collect();
        let topics = self.all_topics();
        let mut marked = 0;
        for (uid, slot) in slots {
            let entry = slot.snapshot();
            if entry.runtime.is_none() || entry.row.state != RUNNING {
                continue;
            }
            let ConnectorConfig::Odps(cfg) = &*entry.config else {
                continue;
            };
            let Some(topic) = topics.iter().find(|t| t.uid == uid) else {
                continue;
            };
            let Ok(cps) = self.checkpoints_of(topic, &entry).await else {
                continue;
            };
            let shards: Vec<_> = cps
                .values()
                .map(|cp| (*cp, Self::log_view(topic, cp)))
                .collect();
            let done = status::connector_done_time(&shards, now_ms());
            let Ok(columns) = check_columns(topic, &entry.row.column_fields) else {
                continue;
            };
            let cfg = cfg.clone();
            let settings = self.config.lake_settings();
            let lateness = self.config.lake_lateness_ms();
            let name = entry.row.connector_id.clone();
            match tokio::task::spawn_blocking(move || {
                markers::mark(&cfg, &columns, done, settings, lateness)
            })
            .await
            {
                Ok(Ok(parts)) => {
                    for p in &parts {
                        tracing::info!(connector = %name, partition = %p, "lake partition complete: _SUCCESS written");
                    }
                    marked += parts.len();
                }
                Ok(Err(e)) => {
                    tracing::warn!(connector = %name, error = %e, "writing _SUCCESS markers failed")
                }
                Err(e) => tracing::warn!(connector = %name, error = %e, "marker pass failed"),
            }
        }
        marked
    }
}

/// Runs the marker pass until `stop`.
pub async fn run(catalog: Arc<Catalog>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LAKE_MARKER_INTERVAL) => {}
        }
        catalog.mark_lake_partitions().await;
    }
}
