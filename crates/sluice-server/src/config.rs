//! Server configuration: limits, durability and housekeeping. Parsed from the `--config` TOML
//! file by the binary and validated here, at the door: an invalid value is an error that names
//! its field, never a silent default.

use std::time::Duration;

use serde::Deserialize;
use sluice_connect::sink::BatchDefaults;
use sluice_connect::ConnectorKind;

/// The largest `max_request_bytes`: half of the log's frame limit.
pub const MAX_REQUEST_BYTES: usize = (sluice_log::MAX_FRAME_BYTES / 2) as usize;

// issue 13: metrics
/// Where `/metrics` listens when `metrics_listen` is not set.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// When an acknowledged put reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before the ack (group-committed). The default.
    Always,
    /// Ack after the write; a background flush every `fsync_interval_ms`. Loses the last
    /// interval on power failure, never on a process crash.
    Interval,
}

/// Everything tunable about a running server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Largest request body, after decompression, in bytes.
    pub max_request_bytes: usize,
    /// Most records in one put.
    pub max_records_per_put: usize,
    /// Largest single record (its encoded size) in bytes.
    pub max_record_bytes: usize,
    /// Most records returned by one get (also the meaning of Limit ≤ 0).
    pub max_read_records: usize,
    /// Most payload bytes returned by one get.
    pub max_read_bytes: usize,
    /// Most shards a topic may have.
    pub max_shards_per_topic: u32,
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// Size at which a shard's active segment is sealed and a new one started.
    pub segment_bytes: u64,
    /// fsync "always": zeros written ahead of each active segment's data (0: off).
    pub segment_zero_ahead_bytes: u64,
    /// How often expired segments are looked for.
    pub retention_check_interval_secs: u64,
    /// Largest accepted difference between a request's Date header and the server clock.
    pub max_clock_skew_secs: u64,
    /// Shortest consumer-group session timeout granted on join (a shorter request is raised
    /// to it): pydatahub's consumer heartbeats only every 5 s while it owns no shard.
    pub min_session_timeout_ms: i64,
    /// Longest consumer-group session timeout granted on join.
    pub max_session_timeout_ms: i64,
    /// A connector task writes to its sink once it has buffered this many records ...
    pub connector_batch_records: usize,
    /// ... or this many bytes ...
    pub connector_batch_bytes: usize,
    /// ... or once its oldest buffered record has waited this long.
    pub connector_batch_age_ms: u64,
    // issue 7: log
    /// Most segment files kept open at once, process-wide (an LRU shared by all shards).
    pub max_open_segment_files: usize,
    /// A shard's active segment is sealed once its first record is this old, so that retention
    /// removes records within the topic's lifecycle plus this margin.
    pub segment_max_age_secs: u64,
    /// Source of "now" for record system times and retention (a test seam; not a config key).
    #[serde(skip)]
    pub clock: crate::clock::Clock,
    // issue 7: edge (timeouts, connection limit, memory of in-flight requests)
    /// A request's head (request line and headers) must arrive within this time of its first byte.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this time of its head.
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout_ms: u64,
    /// On SIGTERM, connections still open this long after the server stopped accepting are closed.
    pub shutdown_deadline_ms: u64,
    /// Most client connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Memory budget, in bytes, of the request bodies being decoded at once (bodies and their
    /// decoded records); a put that does not fit waits for others to finish.
    pub max_inflight_bytes: usize,
    // issue 8: tls
    /// PEM certificate chain served over HTTPS (with `tls_key`; both or neither).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// A TLS client must finish its handshake within this time of connecting.
    pub tls_handshake_timeout_ms: u64,
    // issue 9: typed (per-type connector batches)
    /// `[connector_batch.<type>]` `records` / `bytes` / `age_ms`: one connector type's batch
    /// limits, over the sink's own defaults and the global `connector_batch_*` keys.
    pub connector_batch: ConnectorBatchByType,
    // issue 9: tls (connector targets; policy in sluice_connect::sinks::tls)
    /// How connectors secure database targets: `"prefer"` (default; plaintext fallback warned
    /// once per target) or `"require"` (TLS with the certificate verified).
    pub connector_tls: sluice_connect::sinks::tls::TlsMode,
    /// PEM CA certificates connectors trust next to the system roots (databases in require
    /// mode, https endpoints); read and checked at start.
    pub connector_tls_ca_file: Option<std::path::PathBuf>,
    // issue 9: isolation
    /// How long stopping, reloading or deleting a connector (and server shutdown) lets a sink
    /// write in progress finish; after that the half-written batch is dropped and delivered
    /// again from the unchanged checkpoint.
    pub connector_stop_grace_ms: u64,
    // issue 10: lake (SINK_ODPS)
    /// IANA time zone of SINK_ODPS partition values (default `"UTC"`).
    pub connector_odps_time_zone: String,
    /// How long one minute of a SINK_ODPS `TimeRange` lasts, in ms (default 60000). Only tests
    /// shorten it, to see several windows in seconds.
    pub connector_odps_minute_ms: u64,
    // issue 13: metrics
    /// Address of the unsigned Prometheus `/metrics` listener; empty turns metrics off,
    /// recording included. Unset: [`DEFAULT_METRICS_LISTEN`], where a port already taken
    /// (another server on this machine) only costs a warning; a given address must be free.
    pub metrics_listen: Option<String>,
    /// Most labelled series (per topic, connector shard, subscription shard...) `/metrics`
    /// holds; past it new ones are not created and a counter of dropped series says so.
    pub metrics_max_series: usize,
    /// The EVENT_TIME lateness allowance of SINK_ODPS `_SUCCESS` markers, in ms: a partition is
    /// marked once the done time passes its end plus this. Unset: one `TimeRange` window.
    pub connector_odps_lateness_ms: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: 8 << 20,
            max_records_per_put: 10_000,
            max_record_bytes: (1 << 20) + 4096,
            max_read_records: 1000,
            max_read_bytes: 8 << 20,
            max_shards_per_topic: 256,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 200,
            segment_bytes: 64 << 20,
            segment_zero_ahead_bytes: sluice_log::DEFAULT_ZERO_AHEAD_BYTES,
            retention_check_interval_secs: 60,
            max_clock_skew_secs: 900,
            min_session_timeout_ms: 10_000,
            max_session_timeout_ms: 1_800_000,
            connector_batch_records: 5000,
            connector_batch_bytes: 4 << 20,
            connector_batch_age_ms: 500,
            // issue 7: log
            max_open_segment_files: sluice_log::DEFAULT_MAX_OPEN_FILES,
            segment_max_age_secs: 3600,
            clock: crate::clock::Clock::default(),
            // issue 7: edge
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            shutdown_deadline_ms: 10_000,
            max_connections: 4096,
            max_inflight_bytes: 192 << 20,
            // issue 8: tls
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout_ms: 10_000,
            // issue 9: typed (per-type connector batches)
            connector_batch: ConnectorBatchByType::default(),
            // issue 9: tls
            connector_tls: sluice_connect::sinks::tls::TlsMode::Prefer,
            connector_tls_ca_file: None,
            // issue 9: isolation
            connector_stop_grace_ms: 5_000,
            // issue 10: lake (SINK_ODPS)
            connector_odps_time_zone: "UTC".to_string(),
            connector_odps_minute_ms: 60_000,
            // issue 13: metrics
            metrics_listen: None,
            metrics_max_series: 10_000,
            connector_odps_lateness_ms: None,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

// issue 10: lake (SINK_ODPS)
/// The longest EVENT_TIME lateness allowance `connector_odps_lateness_ms` accepts (7 days).
pub const MAX_ODPS_LATENESS_MS: u64 = 7 * 24 * 3_600_000;

fn check(ok: bool, field: &'static str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            problem: problem.to_string(),
        })
    }
}

impl ServerConfig {
    /// Parses a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        let config: ServerConfig = toml::from_str(text).map_err(|e| ConfigError {
            field: "config file",
            problem: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // A put is one frame of the shard's log: half the frame limit leaves room for the
        // per-record framing of the largest put (issue 9).
        check(
            (1024..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes),
            "max_request_bytes",
            "must be between 1 KiB and 128 MiB (half the log's frame limit)",
        )?;
        check(
            (1..=100_000).contains(&self.max_records_per_put),
            "max_records_per_put",
            "must be between 1 and 100000",
        )?;
        check(
            self.max_record_bytes >= 64 && self.max_record_bytes <= self.max_request_bytes,
            "max_record_bytes",
            "must be at least 64 and at most max_request_bytes",
        )?;
        check(
            (1..=100_000).contains(&self.max_read_records),
            "max_read_records",
            "must be between 1 and 100000",
        )?;
        check(
            self.max_read_bytes >= 1024,
            "max_read_bytes",
            "must be at least 1024",
        )?;
        check(
            (1..=4096).contains(&self.max_shards_per_topic),
            "max_shards_per_topic",
            "must be between 1 and 4096",
        )?;
        check(
            self.fsync_interval_ms >= 1,
            "fsync_interval_ms",
            "must be at least 1",
        )?;
        check(
            self.segment_bytes >= 4096,
            "segment_bytes",
            "must be at least 4096",
        )?;
        check(
            matches!(self.segment_zero_ahead_bytes, 0 | 65536..=268435456),
            "segment_zero_ahead_bytes",
            "must be 0 (off) or between 65536 and 268435456",
        )?;
        check(
            self.retention_check_interval_secs >= 1,
            "retention_check_interval_secs",
            "must be at least 1",
        )?;
        check(
            self.min_session_timeout_ms >= 6_000,
            "min_session_timeout_ms",
            "must be at least 6000 (the consumer heartbeats every 5 s while idle)",
        )?;
        check(
            self.max_session_timeout_ms >= self.min_session_timeout_ms,
            "max_session_timeout_ms",
            "must be at least min_session_timeout_ms",
        )?;
        check(
            (1..=100_000).contains(&self.connector_batch_records),
            "connector_batch_records",
            "must be between 1 and 100000",
        )?;
        check(
            (1024..=1 << 30).contains(&self.connector_batch_bytes),
            "connector_batch_bytes",
            "must be between 1 KiB and 1 GiB",
        )?;
        check(
            (1..=600_000).contains(&self.connector_batch_age_ms),
            "connector_batch_age_ms",
            "must be between 1 and 600000",
        )?;
        // issue 7: log
        check(
            (16..=1 << 20).contains(&self.max_open_segment_files),
            "max_open_segment_files",
            "must be between 16 and 1048576",
        )?;
        check(
            (60..=7 * 24 * 3600).contains(&self.segment_max_age_secs),
            "segment_max_age_secs",
            "must be between 60 and 604800 (7 days)",
        )?;
        // issue 7: edge
        for (value, field) in [
            (self.header_read_timeout_ms, "header_read_timeout_ms"),
            (self.body_read_timeout_ms, "body_read_timeout_ms"),
            (self.idle_timeout_ms, "idle_timeout_ms"),
        ] {
            check(
                (100..=3_600_000).contains(&value),
                field,
                "must be between 100 and 3600000",
            )?;
        }
        check(
            self.shutdown_deadline_ms <= 3_600_000,
            "shutdown_deadline_ms",
            "must be at most 3600000",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 1000000",
        )?;
        check(
            self.max_inflight_bytes >= 2 * self.max_request_bytes,
            "max_inflight_bytes",
            "must be at least twice max_request_bytes",
        )?;
        // issue 8: tls
        check(
            self.tls_cert.is_some() || self.tls_key.is_none(),
            "tls_cert",
            "must be given with tls_key (both or neither)",
        )?;
        check(
            self.tls_key.is_some() || self.tls_cert.is_none(),
            "tls_key",
            "must be given with tls_cert (both or neither)",
        )?;
        check(
            (100..=600_000).contains(&self.tls_handshake_timeout_ms),
            "tls_handshake_timeout_ms",
            "must be between 100 and 600000",
        )?;
        // issue 9: typed (per-type connector batches)
        for kind in ConnectorKind::ALL {
            let (keys, [records, bytes, age_ms]) = self.connector_batch.of(kind);
            let Some(keys) = keys else { continue };
            check(
                keys.records.is_none_or(|n| (1..=10_000_000).contains(&n)),
                records,
                "must be between 1 and 10000000",
            )?;
            check(
                keys.bytes.is_none_or(|n| (1024..=1 << 30).contains(&n)),
                bytes,
                "must be between 1 KiB and 1 GiB",
            )?;
            check(
                keys.age_ms.is_none_or(|n| (1..=3_600_000).contains(&n)),
                age_ms,
                "must be between 1 and 3600000",
            )?;
        }
        // issue 9: tls
        self.connector_tls_policy()?;
        // issue 9: isolation
        check(
            self.connector_stop_grace_ms <= 600_000,
            "connector_stop_grace_ms",
            "must be between 0 and 600000",
        )?;
        // issue 10: lake (SINK_ODPS)
        check(
            (1..=60_000).contains(&self.connector_odps_minute_ms),
            "connector_odps_minute_ms",
            "must be between 1 and 60000",
        )?;
        #[cfg(feature = "sink-odps")]
        if let Err(problem) =
            sluice_connect::sinks::odps::parse_zone(&self.connector_odps_time_zone)
        {
            return Err(ConfigError {
                field: "connector_odps_time_zone",
                problem,
            });
        }
        // issue 13: metrics
        let listen = self.metrics_listen.as_deref().unwrap_or("").trim();
        check(
            listen.is_empty() || listen.parse::<std::net::SocketAddr>().is_ok(),
            "metrics_listen",
            "must be an IP address and port such as \"127.0.0.1:9464\", or empty to turn metrics off",
        )?;
        check(
            (1..=1_000_000).contains(&self.metrics_max_series),
            "metrics_max_series",
            "must be between 1 and 1000000",
        )?;
        // issue 10: lake
        check(
            self.connector_odps_lateness_ms
                .is_none_or(|ms| ms <= MAX_ODPS_LATENESS_MS),
            "connector_odps_lateness_ms",
            "must be between 0 and 604800000 (7 days), or unset for one TimeRange window",
        )?;
        Ok(())
    }

    // issue 10: lake (SINK_ODPS)
    /// The lake writer's server-wide settings (validated by [`ServerConfig::validate`]).
    #[cfg(feature = "sink-odps")]
    pub fn lake_settings(&self) -> sluice_connect::sinks::odps::LakeSettings {
        use sluice_connect::sinks::odps::{parse_zone, LakeSettings};
        LakeSettings {
            zone: parse_zone(&self.connector_odps_time_zone)
                .unwrap_or(LakeSettings::default().zone),
            minute_ms: self.connector_odps_minute_ms as i64,
        }
    }

    /// The EVENT_TIME lateness allowance of `_SUCCESS` markers in ms (None: one window).
    pub fn lake_lateness_ms(&self) -> Option<i64> {
        self.connector_odps_lateness_ms.map(|ms| ms as i64)
    }

    // issue 9: tls
    /// The connectors' TLS policy; reads and checks `connector_tls_ca_file`.
    pub fn connector_tls_policy(
        &self,
    ) -> Result<sluice_connect::sinks::tls::ConnectorTls, ConfigError> {
        sluice_connect::sinks::tls::ConnectorTls::new(
            self.connector_tls,
            self.connector_tls_ca_file.as_deref(),
        )
        .map_err(|problem| ConfigError {
            field: "connector_tls_ca_file",
            problem,
        })
    }

    // issue 13: metrics
    /// Whether metrics are recorded and served (`metrics_listen` is not empty).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_listen
            .as_deref()
            .is_none_or(|a| !a.trim().is_empty())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.shutdown_deadline_ms)
    }

    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    // issue 9: typed (per-type connector batches)
    /// The batch limits (records, bytes, age) of a connector type's tasks: the type's
    /// `[connector_batch.<type>]` keys, else the sink's own `defaults`, else the global
    /// `connector_batch_*` keys.
    pub fn connector_batch_for(
        &self,
        kind: ConnectorKind,
        defaults: BatchDefaults,
    ) -> (usize, usize, Duration) {
        let keys = self.connector_batch.of(kind).0.copied().unwrap_or_default();
        (
            keys.records
                .or(defaults.records)
                .unwrap_or(self.connector_batch_records),
            keys.bytes
                .or(defaults.bytes)
                .unwrap_or(self.connector_batch_bytes),
            keys.age_ms
                .map(Duration::from_millis)
                .or(defaults.age)
                .unwrap_or(Duration::from_millis(self.connector_batch_age_ms)),
        )
    }

    pub fn log_config(&self) -> sluice_log::LogConfig {
        sluice_log::LogConfig {
            segment_bytes: self.segment_bytes,
            zero_ahead_bytes: self.segment_zero_ahead_bytes,
            // issue 7: log (segment files open at once, segment age)
            segment_max_age: Some(Duration::from_secs(self.segment_max_age_secs)),
            files: {
                let files = sluice_log::FileCache::global();
                files.set_capacity(self.max_open_segment_files);
                files
            },
            fsync: match self.fsync {
                FsyncPolicy::Always => sluice_log::FsyncMode::Always,
                FsyncPolicy::Interval => {
                    sluice_log::FsyncMode::Interval(Duration::from_millis(self.fsync_interval_ms))
                }
            },
        }
    }
}

// issue 9: typed (per-type connector batches)
/// `[connector_batch.<type>]` tables, one per connector type string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorBatchByType {
    pub sink_odps: Option<BatchKeys>,
    pub sink_ads: Option<BatchKeys>,
    pub sink_es: Option<BatchKeys>,
    pub sink_fc: Option<BatchKeys>,
    pub sink_mysql: Option<BatchKeys>,
    pub sink_oss: Option<BatchKeys>,
    pub sink_ots: Option<BatchKeys>,
    pub sink_hologres: Option<BatchKeys>,
    pub sink_datahub: Option<BatchKeys>,
}

/// One connector type's batch limits; absent keys fall back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchKeys {
    pub records: Option<usize>,
    pub bytes: Option<usize>,
    pub age_ms: Option<u64>,
}

macro_rules! batch_fields {
    ($t:literal) => {
        [
            concat!("connector_batch.", $t, ".records"),
            concat!("connector_batch.", $t, ".bytes"),
            concat!("connector_batch.", $t, ".age_ms"),
        ]
    };
}

impl ConnectorBatchByType {
    /// A type's keys and their full names (for messages).
    fn of(&self, kind: ConnectorKind) -> (Option<&BatchKeys>, [&'static str; 3]) {
        match kind {
            ConnectorKind::Odps => (self.sink_odps.as_ref(), batch_fields!("sink_odps")),
            ConnectorKind::Ads => (self.sink_ads.as_ref(), batch_fields!("sink_ads")),
            ConnectorKind::Es => (self.sink_es.as_ref(), batch_fields!("sink_es")),
            ConnectorKind::Fc => (self.sink_fc.as_ref(), batch_fields!("sink_fc")),
            ConnectorKind::Mysql => (self.sink_mysql.as_ref(), batch_fields!("sink_mysql")),
            ConnectorKind::Oss => (self.sink_oss.as_ref(), batch_fields!("sink_oss")),
            ConnectorKind::Ots => (self.sink_ots.as_ref(), batch_fields!("sink_ots")),
            ConnectorKind::Hologres => {
                (self.sink_hologres.as_ref(), batch_fields!("sink_hologres"))
            }
            ConnectorKind::Datahub => (self.sink_datahub.as_ref(), batch_fields!("sink_datahub")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values_by_name() {
        let err = ServerConfig::from_toml("max_records_per_put = 0").unwrap_err();
        assert_eq!(err.field, "max_records_per_put");
        let err = ServerConfig::from_toml("fsync = \"sometimes\"").unwrap_err();
        assert!(err.problem.contains("fsync"), "{err}");
        let err = ServerConfig::from_toml("no_such_field = 1").unwrap_err();
        assert!(err.problem.contains("no_such_field"), "{err}");
        let ok = ServerConfig::from_toml("fsync = \"interval\"\nsegment_bytes = 8192").unwrap();
        assert_eq!(ok.fsync, FsyncPolicy::Interval);
        assert_eq!(ok.segment_bytes, 8192);
        let e = ServerConfig::from_toml("segment_zero_ahead_bytes = 9").unwrap_err();
        assert_eq!(e.field, "segment_zero_ahead_bytes");
    }

    #[test]
    fn max_request_bytes_stays_under_the_log_frame_limit() {
        let err = ServerConfig::from_toml(&format!(
            "max_request_bytes = {}\nmax_inflight_bytes = {}",
            MAX_REQUEST_BYTES + 1,
            4 * MAX_REQUEST_BYTES
        ))
        .unwrap_err();
        assert_eq!(err.field, "max_request_bytes");
        assert!(MAX_REQUEST_BYTES as u64 * 2 <= sluice_log::MAX_FRAME_BYTES);
        let ok = ServerConfig::from_toml(&format!(
            "max_request_bytes = {MAX_REQUEST_BYTES}\nmax_inflight_bytes = {}",
            4 * MAX_REQUEST_BYTES
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn connector_batch_per_type_overrides_sink_defaults_and_globals() {
        let c = ServerConfig::from_toml(
            "connector_batch_records = 20\nconnector_batch_age_ms = 50\n\
             [connector_batch.sink_mysql]\nrecords = 7\n\
             [connector_batch.sink_oss]\nage_ms = 1000",
        )
        .unwrap();
        let sink = BatchDefaults {
            records: Some(3000),
            bytes: Some(1 << 20),
            age: None,
        };
        // per-type key > the sink's default > the global key
        assert_eq!(
            c.connector_batch_for(ConnectorKind::Mysql, sink),
            (7, 1 << 20, Duration::from_millis(50))
        );
        assert_eq!(
            c.connector_batch_for(ConnectorKind::Oss, sink),
            (3000, 1 << 20, Duration::from_secs(1))
        );
        assert_eq!(
            c.connector_batch_for(ConnectorKind::Ads, BatchDefaults::default()),
            (20, 4 << 20, Duration::from_millis(50))
        );
        for (text, field) in [
            (
                "[connector_batch.sink_mysql]\nrecords = 0",
                "connector_batch.sink_mysql.records",
            ),
            (
                "[connector_batch.sink_datahub]\nbytes = 10",
                "connector_batch.sink_datahub.bytes",
            ),
            (
                "[connector_batch.sink_oss]\nage_ms = 3600001",
                "connector_batch.sink_oss.age_ms",
            ),
        ] {
            assert_eq!(ServerConfig::from_toml(text).unwrap_err().field, field);
        }
        let e = ServerConfig::from_toml("[connector_batch.sink_kafka]\nrecords = 1").unwrap_err();
        assert!(e.problem.contains("sink_kafka"), "{e}");
        let e = ServerConfig::from_toml("[connector_batch.sink_mysql]\nrows = 1").unwrap_err();
        assert!(e.problem.contains("rows"), "{e}");
    }

    #[test]
    fn connector_batching_is_configurable_and_checked() {
        let ok = ServerConfig::from_toml(
            "connector_batch_records = 20\nconnector_batch_bytes = 65536\nconnector_batch_age_ms = 50",
        )
        .unwrap();
        assert_eq!(ok.connector_batch_records, 20);
        assert_eq!(ok.connector_batch_bytes, 65536);
        assert_eq!(ok.connector_batch_age_ms, 50);
        for (text, field) in [
            ("connector_batch_records = 0", "connector_batch_records"),
            ("connector_batch_bytes = 10", "connector_batch_bytes"),
            ("connector_batch_age_ms = 0", "connector_batch_age_ms"),
        ] {
            assert_eq!(ServerConfig::from_toml(text).unwrap_err().field, field);
        }
    }

    #[test]
    fn edge_limits_are_configurable_and_checked() {
        let ok = ServerConfig::from_toml(
            "header_read_timeout_ms = 500\nbody_read_timeout_ms = 700\nidle_timeout_ms = 900\n\
             shutdown_deadline_ms = 0\nmax_connections = 8\nmax_inflight_bytes = 16777216",
        )
        .unwrap();
        assert_eq!(ok.header_read_timeout(), Duration::from_millis(500));
        assert_eq!(ok.body_read_timeout(), Duration::from_millis(700));
        assert_eq!(ok.idle_timeout(), Duration::from_millis(900));
        assert_eq!(ok.shutdown_deadline(), Duration::ZERO);
        assert_eq!((ok.max_connections, ok.max_inflight_bytes), (8, 16 << 20));
        for (text, field) in [
            ("header_read_timeout_ms = 0", "header_read_timeout_ms"),
            ("body_read_timeout_ms = 99", "body_read_timeout_ms"),
            ("idle_timeout_ms = 3600001", "idle_timeout_ms"),
            ("shutdown_deadline_ms = 3600001", "shutdown_deadline_ms"),
            ("max_connections = 0", "max_connections"),
            ("max_inflight_bytes = 1048576", "max_inflight_bytes"),
        ] {
            assert_eq!(ServerConfig::from_toml(text).unwrap_err().field, field);
        }
    }

    #[test]
    fn tls_keys_come_in_pairs_and_the_handshake_timeout_is_checked() {
        let ok = ServerConfig::from_toml(
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_handshake_timeout_ms = 500",
        )
        .unwrap();
        assert_eq!(ok.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(ok.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        assert_eq!(ok.tls_handshake_timeout(), Duration::from_millis(500));
        assert!(ServerConfig::default().tls_cert.is_none());
        for (text, field) in [
            ("tls_cert = \"c.pem\"", "tls_key"),
            ("tls_key = \"k.pem\"", "tls_cert"),
            ("tls_handshake_timeout_ms = 99", "tls_handshake_timeout_ms"),
            (
                "tls_handshake_timeout_ms = 600001",
                "tls_handshake_timeout_ms",
            ),
        ] {
            assert_eq!(ServerConfig::from_toml(text).unwrap_err().field, field);
        }
    }

    // issue 9: tls
    #[test]
    fn connector_tls_keys_are_checked_at_the_door() {
        use sluice_connect::sinks::tls::TlsMode;
        assert_eq!(ServerConfig::default().connector_tls, TlsMode::Prefer);
        let ok = ServerConfig::from_toml("connector_tls = \"require\"").unwrap();
        assert_eq!(ok.connector_tls, TlsMode::Require);
        let err = ServerConfig::from_toml("connector_tls = \"always\"").unwrap_err();
        assert!(err.problem.contains("connector_tls"), "{err}");
        let err =
            ServerConfig::from_toml("connector_tls_ca_file = \"/nonexistent/ca.pem\"").unwrap_err();
        assert_eq!(err.field, "connector_tls_ca_file");
        assert!(err.problem.contains("cannot read"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err =
            ServerConfig::from_toml(&format!("connector_tls_ca_file = {:?}", junk)).unwrap_err();
        assert_eq!(err.field, "connector_tls_ca_file");
        assert!(err.problem.contains("no PEM certificate"), "{err}");
    }

    // issue 9: isolation
    #[test]
    fn connector_stop_grace_is_configurable_and_checked() {
        assert_eq!(ServerConfig::default().connector_stop_grace_ms, 5_000);
        let ok = ServerConfig::from_toml("connector_stop_grace_ms = 250").unwrap();
        assert_eq!(ok.connector_stop_grace_ms, 250);
        let err = ServerConfig::from_toml("connector_stop_grace_ms = 600001").unwrap_err();
        assert_eq!(err.field, "connector_stop_grace_ms");
    }

    // issue 10: lake (SINK_ODPS)
    #[cfg(feature = "sink-odps")]
    #[test]
    fn lake_zone_and_minute_are_configurable_and_checked() {
        let d = ServerConfig::default().lake_settings();
        assert_eq!((d.zone.name(), d.minute_ms), ("UTC", 60_000));
        let ok = ServerConfig::from_toml(
            "connector_odps_time_zone = \"Asia/Shanghai\"\nconnector_odps_minute_ms = 100",
        )
        .unwrap();
        let s = ok.lake_settings();
        assert_eq!((s.zone.name(), s.minute_ms), ("Asia/Shanghai", 100));
        let err =
            ServerConfig::from_toml("connector_odps_time_zone = \"Mars/Olympus\"").unwrap_err();
        assert_eq!(err.field, "connector_odps_time_zone");
        assert!(err.problem.contains("IANA"), "{err}");
        let err = ServerConfig::from_toml("connector_odps_minute_ms = 0").unwrap_err();
        assert_eq!(err.field, "connector_odps_minute_ms");
        // the EVENT_TIME lateness allowance: unset = one window, else checked
        assert_eq!(ServerConfig::default().lake_lateness_ms(), None);
        let ok = ServerConfig::from_toml("connector_odps_lateness_ms = 2500").unwrap();
        assert_eq!(ok.lake_lateness_ms(), Some(2500));
        let err = ServerConfig::from_toml("connector_odps_lateness_ms = 604800001").unwrap_err();
        assert_eq!(err.field, "connector_odps_lateness_ms");
    }

    // issue 13: metrics
    #[test]
    fn metrics_keys_are_checked_at_the_door() {
        let d = ServerConfig::default();
        assert!(d.metrics_listen.is_none() && d.metrics_enabled());
        assert_eq!(d.metrics_max_series, 10_000);
        let off = ServerConfig::from_toml("metrics_listen = \"\"").unwrap();
        assert!(!off.metrics_enabled());
        let on =
            ServerConfig::from_toml("metrics_listen = \"0.0.0.0:9100\"\nmetrics_max_series = 50")
                .unwrap();
        assert!(on.metrics_enabled());
        assert_eq!(on.metrics_max_series, 50);
        let err = ServerConfig::from_toml("metrics_listen = \"localhost-9464\"").unwrap_err();
        assert_eq!(err.field, "metrics_listen");
        let err = ServerConfig::from_toml("metrics_max_series = 0").unwrap_err();
        assert_eq!(err.field, "metrics_max_series");
    }
}
