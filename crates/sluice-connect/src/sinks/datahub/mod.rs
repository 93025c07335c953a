//! SINK_DATAHUB: [`DatahubConfig`] in `config.rs`, always built; the writer (`writer.rs`, with
//! sluice-client) behind the cargo feature `sink-datahub`.

mod config;
#[cfg(feature = "sink-datahub")]
mod writer;

pub use config::DatahubConfig;
#[cfg(feature = "sink-datahub")]
pub use writer::{open, DatahubSink};

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-datahub"))]
use crate::sink::{SharedColumns, Sink, SinkError};

/// The server's global `connector_batch_*` keys (puts go out in chunks of 1000 anyway).
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: None,
    bytes: None,
    age: None,
};

/// Built without `sink-datahub`: the task hangs with the reason.
#[cfg(not(feature = "sink-datahub"))]
pub async fn open(
    _config: DatahubConfig,
    _columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-datahub")))
}
