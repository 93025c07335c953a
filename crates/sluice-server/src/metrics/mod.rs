//! Prometheus metrics (issue 13): what the hub and its connectors are doing, served as
//! OpenMetrics text on an unsigned listener of its own (`metrics_listen`), never on the signed
//! API port.
//!
//! - `mod.rs` (this file): [`Metrics`], the recorders the request path, the shard logs and the
//!   connector runtime call. Recording is atomics on handles cached per topic (one shared-lock
//!   lookup per request, nothing per record); with `metrics_listen = ""` nothing is recorded.
//!   Labelled series are capped by `metrics_max_series`: past it no new per-topic or
//!   per-connector-shard series is created and `sluice_metrics_dropped_series_total` counts the
//!   refusals;
//! - `hooks.rs`: the fsync observer of `sluice-log` and the task observer of the connector
//!   runtime (neither crate knows Prometheus);
//! - `scrape.rs`: what is computed at scrape time from the catalog (storage per topic, connector
//!   and subscription lag, consumer groups) and the encoding of everything;
//! - `process.rs`: process metrics from `/proc`;
//! - `serve.rs`: the `/metrics` listener.
//!
//! Labels name projects, topics, shards, connectors and subscriptions, never keys or values.

mod hooks;
mod process;
mod scrape;
mod serve;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use hooks::{install_log_observer, ConnectorObserver};
pub use serve::{bind, router, serve, CONTENT_TYPE_OPENMETRICS};

use crate::config::ServerConfig;
use crate::service::catalog::Topic;

/// The wire protocol of a put or get (label `protocol`: `json`, `protobuf`, `batch`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Protocol {
    /// JSON bodies (`application/json`).
    Json,
    /// Protobuf bodies (`application/x-protobuf`).
    Protobuf,
    /// The batch binary protocol (`application/x-binary`).
    Batch,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::Json, Protocol::Protobuf, Protocol::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
            Protocol::Batch => "batch",
        }
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: Protocol,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabels {
    pub project: String,
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectorShardLabels {
    pub project: String,
    pub topic: String,
    pub connector: String,
    pub shard: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectorErrorLabels {
    pub project: String,
    pub topic: String,
    pub connector: String,
    pub shard: String,
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 100 µs to about 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Log entries covered by one fsync: 1 to 32768.
fn group_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// The counters of one topic, shared by every request on it.
pub(crate) struct TopicCounters {
    records_in: Counter,
    bytes_in: Counter,
    records_out: Counter,
    bytes_out: Counter,
}

/// Series a [`TopicCounters`] stands for.
const TOPIC_SERIES: usize = 4;

/// Every metric recorded as things happen, plus the cap on labelled series.
pub struct Metrics {
    enabled: bool,
    max_series: usize,
    /// Labelled series created so far (per topic, per connector shard).
    series: AtomicUsize,
    dropped_series: Counter,
    registry: Registry,
    records_in: Family<TopicLabels, Counter>,
    bytes_in: Family<TopicLabels, Counter>,
    records_out: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    /// Handles by topic uid; `None`: refused by the series cap (counted once).
    topics: RwLock<HashMap<i64, Option<Arc<TopicCounters>>>>,
    /// The put and get latency histograms of each protocol, in [`Protocol`] order (looked up
    /// once, at start).
    put_seconds: [Histogram; 3],
    get_seconds: [Histogram; 3],
    fsync_seconds: Histogram,
    fsync_group_entries: Histogram,
    sink_write_seconds: HistogramFamily<ConnectorShardLabels>,
    connector_errors: Family<ConnectorErrorLabels, Counter>,
    connector_delivered: Family<ConnectorShardLabels, Counter>,
    /// Connector-shard label sets already counted against the cap (`false`: refused).
    connector_series: Mutex<HashMap<ConnectorShardLabels, bool>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics as configured: recording is on when `metrics_listen` is not empty.
    pub fn new(config: &ServerConfig) -> Arc<Metrics> {
        Arc::new(Self::build(
            config.metrics_enabled(),
            config.metrics_max_series,
        ))
    }

    fn build(enabled: bool, max_series: usize) -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let records_in = Family::<TopicLabels, Counter>::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let records_out = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let put_seconds = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let get_seconds = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let fsync_seconds = latency_histogram();
        let fsync_group_entries = group_histogram();
        let sink_write_seconds =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let connector_errors = Family::<ConnectorErrorLabels, Counter>::default();
        let connector_delivered = Family::<ConnectorShardLabels, Counter>::default();
        let dropped_series = Counter::default();
        registry.register(
            "topic_records_in",
            "Records written to the topic by puts",
            records_in.clone(),
        );
        registry.register(
            "topic_in_bytes",
            "Bytes written to the topic's shard logs by puts (as stored)",
            bytes_in.clone(),
        );
        registry.register(
            "topic_records_out",
            "Records returned by gets",
            records_out.clone(),
        );
        registry.register(
            "topic_out_bytes",
            "Bytes returned by gets (records as decoded, batches uncompressed)",
            bytes_out.clone(),
        );
        registry.register(
            "put_duration_seconds",
            "Time to answer a put, by wire protocol",
            put_seconds.clone(),
        );
        registry.register(
            "get_duration_seconds",
            "Time to answer a get, by wire protocol",
            get_seconds.clone(),
        );
        registry.register(
            "log_fsync_duration_seconds",
            "Time of one shard-log fdatasync (group commit)",
            fsync_seconds.clone(),
        );
        registry.register(
            "log_fsync_group_entries",
            "Log entries made durable by one fsync (group commit size; an entry is one JSON or protobuf record, or one whole batch)",
            fsync_group_entries.clone(),
        );
        registry.register(
            "connector_sink_write_duration_seconds",
            "Time of one sink write + flush of a connector shard task",
            sink_write_seconds.clone(),
        );
        registry.register(
            "connector_errors",
            "Connector shard task errors, by kind",
            connector_errors.clone(),
        );
        registry.register(
            "connector_delivered_records",
            "Records a connector shard task delivered to its sink",
            connector_delivered.clone(),
        );
        registry.register(
            "metrics_dropped_series",
            "Labelled series not created because metrics_max_series was reached",
            dropped_series.clone(),
        );
        Metrics {
            enabled,
            max_series,
            series: AtomicUsize::new(0),
            dropped_series,
            registry,
            records_in,
            bytes_in,
            records_out,
            bytes_out,
            topics: RwLock::new(HashMap::new()),
            put_seconds: Protocol::ALL
                .map(|protocol| put_seconds.get_or_create_owned(&ProtocolLabels { protocol })),
            get_seconds: Protocol::ALL
                .map(|protocol| get_seconds.get_or_create_owned(&ProtocolLabels { protocol })),
            fsync_seconds,
            fsync_group_entries,
            sink_write_seconds,
            connector_errors,
            connector_delivered,
            connector_series: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anything is recorded (`metrics_listen` is set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Takes `n` series from the cap; false (and one dropped series counted) past it.
    fn take_series(&self, n: usize) -> bool {
        let taken = self
            .series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.max_series).then_some(used + n)
            })
            .is_ok();
        if !taken {
            self.dropped_series.inc();
        }
        taken
    }

    /// Labelled series left under the cap (for what the scrape computes).
    pub(crate) fn series_left(&self) -> usize {
        self.max_series
            .saturating_sub(self.series.load(Ordering::Acquire))
    }

    /// The counters of a topic, created on its first use if the cap allows.
    fn topic_counters(&self, topic: &Topic) -> Option<Arc<TopicCounters>> {
        if let Some(found) = self.topics.read().get(&topic.uid) {
            return found.clone();
        }
        let mut map = self.topics.write();
        if let Some(found) = map.get(&topic.uid) {
            return found.clone();
        }
        let made = self.take_series(TOPIC_SERIES).then(|| {
            let labels = TopicLabels {
                project: topic.project.clone(),
                topic: topic.name.clone(),
            };
            Arc::new(TopicCounters {
                records_in: self.records_in.get_or_create_owned(&labels),
                bytes_in: self.bytes_in.get_or_create_owned(&labels),
                records_out: self.records_out.get_or_create_owned(&labels),
                bytes_out: self.bytes_out.get_or_create_owned(&labels),
            })
        });
        map.insert(topic.uid, made.clone());
        made
    }

    /// `records` records of `bytes` bytes were appended to `topic`.
    pub fn note_put(&self, topic: &Topic, records: usize, bytes: usize) {
        if !self.enabled {
            return;
        }
        if let Some(c) = self.topic_counters(topic) {
            c.records_in.inc_by(records as u64);
            c.bytes_in.inc_by(bytes as u64);
        }
    }

    /// A get returned `records` records of `bytes` bytes from `topic`.
    pub fn note_get(&self, topic: &Topic, records: usize, bytes: usize) {
        if !self.enabled {
            return;
        }
        if let Some(c) = self.topic_counters(topic) {
            c.records_out.inc_by(records as u64);
            c.bytes_out.inc_by(bytes as u64);
        }
    }

    /// A timer for one record request: tell it what the request was ([`RequestTimer::put`],
    /// [`RequestTimer::get`]); it records the latency when dropped.
    pub fn timer(self: &Arc<Self>) -> RequestTimer {
        RequestTimer {
            metrics: self.enabled.then(|| self.clone()),
            started: Instant::now(),
            what: None,
        }
    }

    /// The observer of one connector's tasks (None when recording is off).
    pub fn connector_observer(
        self: &Arc<Self>,
        project: &str,
        topic: &str,
        connector: &str,
    ) -> Option<Arc<ConnectorObserver>> {
        self.enabled
            .then(|| ConnectorObserver::new(self.clone(), project, topic, connector))
    }

    /// Whether a connector shard may have series (taking them from the cap the first time).
    fn connector_shard_allowed(&self, labels: &ConnectorShardLabels) -> bool {
        let mut seen = self.connector_series.lock();
        if let Some(ok) = seen.get(labels) {
            return *ok;
        }
        // Write latency, delivered records, and errors of up to six kinds.
        let ok = self.take_series(8);
        seen.insert(labels.clone(), ok);
        ok
    }
}

/// Times a put or get; see [`Metrics::timer`].
pub struct RequestTimer {
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    what: Option<(bool, Protocol)>,
}

impl RequestTimer {
    /// The request is a put in `protocol`.
    pub fn put(&mut self, protocol: Protocol) {
        self.what = Some((true, protocol));
    }

    /// The request is a get in `protocol`.
    pub fn get(&mut self, protocol: Protocol) {
        self.what = Some((false, protocol));
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let (Some(m), Some((put, protocol))) = (&self.metrics, self.what) else {
            return;
        };
        let by_protocol = if put { &m.put_seconds } else { &m.get_seconds };
        by_protocol[protocol as usize].observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
