//! SINK_OSS: managed fully but does not write yet; its tasks hang with
//! [`super::not_yet_message`]. The writer lands in this folder.

mod config;

use crate::sink::BatchDefaults;

pub use config::OssConfig;

/// A lake file wants minutes and tens of MB.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(1_000_000),
    bytes: Some(64 << 20),
    age: Some(std::time::Duration::from_secs(300)),
};
