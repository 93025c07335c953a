//! SINK_HOLOGRES (PostgreSQL protocol): [`PostgresConfig`] in `config.rs`, always built; the
//! column mapping (`mapping.rs`), the binary COPY encoder (`pg_copy.rs`) and the writer
//! (`writer.rs`, with sqlx) behind the cargo feature `sink-hologres`.

mod config;
#[cfg(feature = "sink-hologres")]
mod mapping;
#[cfg(feature = "sink-hologres")]
mod pg_copy;
#[cfg(feature = "sink-hologres")]
mod writer;

pub use config::{parse_config, PostgresConfig, TimestampUnit, WriteMode};
#[cfg(feature = "sink-hologres")]
pub use writer::open;

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-hologres"))]
use crate::sink::{SharedColumns, Sink, SinkError};

/// COPY pays per flush, not per row: larger batches than MySQL's statements.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(10_000),
    bytes: Some(8 << 20),
    age: None,
};

/// Built without `sink-hologres`: the task hangs with the reason.
#[cfg(not(feature = "sink-hologres"))]
pub async fn open(
    _config: PostgresConfig,
    _columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-hologres")))
}
