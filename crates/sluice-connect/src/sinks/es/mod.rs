//! SINK_ES: [`EsConfig`] in `config.rs`, always built; the writer (`writer.rs`, the `_bulk`
//! client) and the document mapping (`mapping.rs`) behind the cargo feature `sink-es`.

mod config;
#[cfg(feature = "sink-es")]
mod mapping;
#[cfg(feature = "sink-es")]
mod writer;

pub use config::EsConfig;
#[cfg(feature = "sink-es")]
pub use writer::{open, EsSink};

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-es"))]
use crate::sink::{SharedColumns, Sink, SinkError};

/// The server's global `connector_batch_*` keys; a flush is cut into `_bulk` requests of at
/// most 1000 documents / 5 MiB anyway.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: None,
    bytes: None,
    age: None,
};

/// Built without `sink-es`: the task hangs with the reason.
#[cfg(not(feature = "sink-es"))]
pub async fn open(_config: EsConfig, _columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-es")))
}
