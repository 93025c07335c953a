//! SINK_ODPS: a Hive-partitioned Parquet table under a warehouse URI (self-hosted meaning of
//! the ODPS connector; see docs/connectors.md).
//!
//! - `config.rs`: [`OdpsConfig`], always built;
//! - `layout.rs`: warehouse URI, table folder, partition paths (SYSTEM_TIME, EVENT_TIME,
//!   USER_DEFINE), file names carrying shard and positions;
//! - `mapping.rs`: DataHub types → Parquet, rows → a Parquet file;
//! - `writer.rs`: the [`Sink`](crate::sink::Sink), atomic visible files (renamed files in a
//!   `file://` warehouse, objects in an `s3://` one), recovery from file / object names;
//! - `markers.rs`: `_SUCCESS` markers from the connector's done time.
//!
//! Everything but the config is behind the cargo feature `sink-odps` (arrow + parquet, and
//! object_store through `sinks/objstore.rs`).

mod config;
#[cfg(feature = "sink-odps")]
pub mod layout;
#[cfg(feature = "sink-odps")]
mod mapping;
#[cfg(feature = "sink-odps")]
pub mod markers;
#[cfg(feature = "sink-odps")]
mod writer;

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-odps"))]
use crate::sink::{SharedColumns, Sink, SinkError};

pub use config::{partition_config_text, OdpsConfig, PartitionMode};
#[cfg(feature = "sink-odps")]
pub use writer::{open, open_with};

/// Server-wide settings of the lake writer (server config `connector_odps_time_zone` and
/// `connector_odps_minute_ms`), set once at startup with [`configure`].
#[cfg(feature = "sink-odps")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LakeSettings {
    /// The time zone of partition values (UTC by default).
    pub zone: chrono_tz::Tz,
    /// How long one minute of `TimeRange` lasts, in ms: 60,000, except in tests, which shorten
    /// windows to see several of them (and their markers) in seconds.
    pub minute_ms: i64,
}

#[cfg(feature = "sink-odps")]
impl Default for LakeSettings {
    fn default() -> LakeSettings {
        LakeSettings {
            zone: chrono_tz::Tz::UTC,
            minute_ms: 60_000,
        }
    }
}

#[cfg(feature = "sink-odps")]
static SETTINGS: std::sync::RwLock<Option<LakeSettings>> = std::sync::RwLock::new(None);

/// Sets the server-wide lake settings (the server calls it once, from its config).
#[cfg(feature = "sink-odps")]
pub fn configure(settings: LakeSettings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = Some(settings);
}

#[cfg(feature = "sink-odps")]
fn settings() -> LakeSettings {
    SETTINGS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default()
}

/// Parses an IANA time zone name (`Asia/Shanghai`), for the server config's validation.
#[cfg(feature = "sink-odps")]
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone name (e.g. UTC, Asia/Shanghai)"))
}

/// A lake file wants tens of MB; a file closes at the latest after 60 s (the batch age), so
/// the done time and `_SUCCESS` lag the wall clock by about that much.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(1_000_000),
    bytes: Some(64 << 20),
    age: Some(std::time::Duration::from_secs(60)),
};

/// Built without `sink-odps`: the task hangs with the reason.
#[cfg(not(feature = "sink-odps"))]
pub async fn open(
    _config: OdpsConfig,
    _columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-odps")))
}
