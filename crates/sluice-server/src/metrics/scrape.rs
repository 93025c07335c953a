//! A scrape: the recorded metrics, plus what is computed now from the catalog (storage bytes
//! per topic, connector lag and done-time lag, subscription lag, consumer groups) and the
//! process, encoded as OpenMetrics text by `prometheus-client`.
//!
//! Computed series count against `metrics_max_series` too: past what the recorded series left,
//! they are left out of the scrape and `sluice_metrics_scrape_dropped_series` says how many.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ConnectorShardLabels, Metrics, TopicLabels};
use crate::service::catalog::{now_ms, Catalog, Topic};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    project: String,
    topic: String,
    connector: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    project: String,
    topic: String,
    subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionShardLabels {
    project: String,
    topic: String,
    subscription: String,
    shard: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The series computed at scrape time, under what is left of the cap.
struct Computed {
    left: usize,
    dropped: i64,
    storage_bytes: Family<TopicLabels, Gauge>,
    connector_lag_records: Family<ConnectorShardLabels, Gauge>,
    connector_lag_seconds: Family<ConnectorShardLabels, FloatGauge>,
    connector_discarded: Family<ConnectorShardLabels, Counter>,
    connector_done_lag: Family<ConnectorLabels, FloatGauge>,
    subscription_lag: Family<SubscriptionShardLabels, Gauge>,
    group_members: Family<SubscriptionLabels, Gauge>,
    group_rebalances: Family<SubscriptionLabels, Counter>,
}

impl Computed {
    /// Whether one more series fits (counting it as dropped if not).
    fn fits(&mut self) -> bool {
        if self.left == 0 {
            self.dropped += 1;
            return false;
        }
        self.left -= 1;
        true
    }

    fn topic(&mut self, c: &Catalog, t: &Topic) {
        let labels = TopicLabels {
            project: t.project.clone(),
            topic: t.name.clone(),
        };
        if self.fits() {
            let bytes: u64 = t.shards.read().iter().map(|s| s.log.size_bytes()).sum();
            self.storage_bytes.get_or_create(&labels).set(bytes as i64);
        }
        for sub in c.subscriptions_of(t) {
            let sl = SubscriptionLabels {
                project: t.project.clone(),
                topic: t.name.clone(),
                subscription: sub.sub_id.clone(),
            };
            let (members, rebalances) = {
                let g = sub.group.lock();
                (g.member_count(), g.rebalances())
            };
            if self.fits() {
                self.group_members.get_or_create(&sl).set(members as i64);
            }
            if self.fits() {
                self.group_rebalances
                    .get_or_create(&sl)
                    .inc_by(rebalances.max(0) as u64);
            }
        }
    }

    async fn subscriptions(&mut self, c: &Catalog, t: &Topic) {
        for sub in c.subscriptions_of(t) {
            let Ok(offsets) = c.get_offsets(&t.project, &t.name, &sub.sub_id, None).await else {
                continue;
            };
            for (shard, offset) in offsets {
                let Some(s) = t.shard(shard) else { continue };
                let next = s.log.next_seq() as i64;
                let consumed = if offset.sequence >= 0 {
                    offset.sequence + 1
                } else {
                    s.log.first_seq() as i64
                };
                if self.fits() {
                    self.subscription_lag
                        .get_or_create(&SubscriptionShardLabels {
                            project: t.project.clone(),
                            topic: t.name.clone(),
                            subscription: sub.sub_id.clone(),
                            shard: shard.to_string(),
                        })
                        .set((next - consumed).max(0));
                }
            }
        }
    }

    async fn connector(&mut self, c: &Catalog, t: &Topic, id: &str) {
        let (project, topic) = (&t.project, &t.name);
        let Ok(reports) = c
            .connector_shard_status_in(project, topic, id, None, true)
            .await
        else {
            return;
        };
        let now = now_ms();
        for r in reports {
            let labels = ConnectorShardLabels {
                project: project.clone(),
                topic: topic.clone(),
                connector: id.to_string(),
                shard: r.shard_id.to_string(),
            };
            let end = t.shard(r.shard_id).map_or(0, |s| s.log.next_seq() as i64);
            let lag = r.lag_records(end);
            if self.fits() {
                self.connector_lag_records.get_or_create(&labels).set(lag);
            }
            if self.fits() {
                // The age of the oldest undelivered record: the shard's done time is that
                // record's time (or now, caught up).
                let seconds = if lag == 0 {
                    0.0
                } else {
                    (now - r.done_time).max(0) as f64 / 1000.0
                };
                self.connector_lag_seconds
                    .get_or_create(&labels)
                    .set(seconds);
            }
            if self.fits() {
                self.connector_discarded
                    .get_or_create(&labels)
                    .inc_by(r.discard_count);
            }
        }
        if let Ok(done) = c.connector_done_time(project, topic, id).await {
            if self.fits() {
                self.connector_done_lag
                    .get_or_create(&ConnectorLabels {
                        project: project.clone(),
                        topic: topic.clone(),
                        connector: id.to_string(),
                    })
                    .set(((now_ms() - done.done_time).max(0)) as f64 / 1000.0);
            }
        }
    }

    fn register(self, registry: &mut Registry) {
        registry.register(
            "topic_storage_bytes",
            "Bytes of the topic's shard logs on disk",
            self.storage_bytes,
        );
        registry.register(
            "connector_lag_records",
            "Records of the shard not yet delivered by the connector",
            self.connector_lag_records,
        );
        registry.register(
            "connector_lag_seconds",
            "Age of the oldest record of the shard the connector has not delivered (0 when caught up)",
            self.connector_lag_seconds,
        );
        registry.register(
            "connector_discarded_records",
            "Records the connector discarded as bad (the target refused them)",
            self.connector_discarded,
        );
        registry.register(
            "connector_done_time_lag_seconds",
            "How far the connector's done time is behind now",
            self.connector_done_lag,
        );
        registry.register(
            "subscription_lag_records",
            "Records of the shard after the subscription's committed offset",
            self.subscription_lag,
        );
        registry.register(
            "consumer_group_members",
            "Members of the subscription's consumer group",
            self.group_members,
        );
        registry.register(
            "consumer_group_rebalances",
            "Changes of the consumer group's shard assignment since the server started",
            self.group_rebalances,
        );
        let dropped = Gauge::<i64>::default();
        dropped.set(self.dropped);
        registry.register(
            "metrics_scrape_dropped_series",
            "Series computed at scrape time but left out because metrics_max_series was reached",
            dropped,
        );
    }
}

/// The whole `/metrics` answer.
pub async fn render(catalog: &Catalog) -> String {
    let metrics: &Metrics = &catalog.metrics;
    let mut computed = Computed {
        left: metrics.series_left(),
        dropped: 0,
        storage_bytes: Family::default(),
        connector_lag_records: Family::default(),
        connector_lag_seconds: Family::default(),
        connector_discarded: Family::default(),
        connector_done_lag: Family::default(),
        subscription_lag: Family::default(),
        group_members: Family::default(),
        group_rebalances: Family::default(),
    };
    let topics = catalog.all_topics();
    let connectors = catalog.connector_keys();
    for t in &topics {
        computed.topic(catalog, t);
        computed.subscriptions(catalog, t).await;
        for (uid, id) in &connectors {
            if *uid == t.uid {
                computed.connector(catalog, t, id).await;
            }
        }
    }
    let mut now = Registry::with_prefix("sluice");
    computed.register(&mut now);
    let mut process = Registry::default();
    super::process::register(&mut process, metrics);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &metrics.registry);
    let _ = encode_registry(&mut out, &now);
    let _ = encode_registry(&mut out, &process);
    let _ = encode_eof(&mut out);
    out
}
