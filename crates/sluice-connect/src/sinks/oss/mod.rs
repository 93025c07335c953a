//! SINK_OSS: records into objects of an S3-compatible bucket (Alibaba OSS, MinIO, s3s-fs,
//! AWS S3). [`OssConfig`] in `config.rs` is always built; the object format (`format.rs`) and
//! the writer (`writer.rs`, over `sinks/objstore.rs`) come with the cargo feature `sink-oss`.

mod config;
#[cfg(feature = "sink-oss")]
mod format;
#[cfg(feature = "sink-oss")]
mod writer;

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-oss"))]
use crate::sink::{SharedColumns, Sink, SinkError};

pub use config::OssConfig;
#[cfg(feature = "sink-oss")]
pub use writer::{open, OssSink, ROTATE_BYTES, STS_MESSAGE};

/// A lake file wants minutes and tens of MB: one object per shard and window every five
/// minutes or 64 MB (the test suite shortens them through `[connector_batch.sink_oss]`).
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(1_000_000),
    bytes: Some(64 << 20),
    age: Some(std::time::Duration::from_secs(300)),
};

/// Built without `sink-oss`: the task hangs with the reason.
#[cfg(not(feature = "sink-oss"))]
pub async fn open(_config: OssConfig, _columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-oss")))
}
