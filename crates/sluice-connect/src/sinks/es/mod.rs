//! SINK_ES: managed fully but does not write yet; its tasks hang with
//! [`super::not_yet_message`]. The writer lands in this folder.

mod config;

use crate::sink::BatchDefaults;

pub use config::EsConfig;

/// Not chosen yet (the writer will): the server's global `connector_batch_*` keys.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: None,
    bytes: None,
    age: None,
};
