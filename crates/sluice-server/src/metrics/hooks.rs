//! What the shard logs and the connector runtime tell the metrics: fsyncs (latency and group
//! size) and connector task writes and errors. Both are called once per fsync or sink write,
//! never per record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use sluice_connect::runtime::TaskObserver;
use sluice_log::CommitObserver;

use super::{ConnectorErrorLabels, ConnectorShardLabels, Metrics};

/// Installs the fsync observer of every shard log of this process (when recording is on).
pub fn install_log_observer(metrics: &Arc<Metrics>) {
    if metrics.enabled() {
        sluice_log::set_commit_observer(Some(Arc::new(LogObserver {
            fsync_seconds: metrics.fsync_seconds.clone(),
            group_entries: metrics.fsync_group_entries.clone(),
        })));
    }
}

struct LogObserver {
    fsync_seconds: Histogram,
    group_entries: Histogram,
}

impl CommitObserver for LogObserver {
    fn fsync_done(&self, duration: Duration, entries: u64) {
        self.fsync_seconds.observe(duration.as_secs_f64());
        self.group_entries.observe(entries as f64);
    }
}

/// The handles of one connector shard (None: refused by the series cap).
#[derive(Clone)]
struct ShardHandles {
    write_seconds: Histogram,
    delivered: Counter,
}

/// Hears one connector's tasks: sink write latency, delivered records, errors by kind.
pub struct ConnectorObserver {
    metrics: Arc<Metrics>,
    project: String,
    topic: String,
    connector: String,
    shards: Mutex<HashMap<u32, Option<ShardHandles>>>,
}

impl ConnectorObserver {
    pub(super) fn new(
        metrics: Arc<Metrics>,
        project: &str,
        topic: &str,
        connector: &str,
    ) -> Arc<ConnectorObserver> {
        Arc::new(ConnectorObserver {
            metrics,
            project: project.to_string(),
            topic: topic.to_string(),
            connector: connector.to_string(),
            shards: Mutex::new(HashMap::new()),
        })
    }

    fn labels(&self, shard: u32) -> ConnectorShardLabels {
        ConnectorShardLabels {
            project: self.project.clone(),
            topic: self.topic.clone(),
            connector: self.connector.clone(),
            shard: shard.to_string(),
        }
    }

    fn handles(&self, shard: u32) -> Option<ShardHandles> {
        let mut map = self.shards.lock();
        if let Some(h) = map.get(&shard) {
            return h.clone();
        }
        let labels = self.labels(shard);
        let made = self
            .metrics
            .connector_shard_allowed(&labels)
            .then(|| ShardHandles {
                write_seconds: self.metrics.sink_write_seconds.get_or_create_owned(&labels),
                delivered: self
                    .metrics
                    .connector_delivered
                    .get_or_create_owned(&labels),
            });
        map.insert(shard, made.clone());
        made
    }
}

impl TaskObserver for ConnectorObserver {
    fn sink_write(&self, shard: u32, records: usize, elapsed: Duration, ok: bool) {
        if let Some(h) = self.handles(shard) {
            h.write_seconds.observe(elapsed.as_secs_f64());
            if ok {
                h.delivered.inc_by(records as u64);
            }
        }
    }

    fn error(&self, shard: u32, kind: &'static str) {
        if self.handles(shard).is_none() {
            return;
        }
        let labels = self.labels(shard);
        self.metrics
            .connector_errors
            .get_or_create(&ConnectorErrorLabels {
                project: labels.project,
                topic: labels.topic,
                connector: labels.connector,
                shard: labels.shard,
                kind,
            })
            .inc();
    }
}
