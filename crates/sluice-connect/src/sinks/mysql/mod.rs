//! SINK_MYSQL and SINK_ADS (MySQL protocol): [`MysqlConfig`] in `config.rs`, always built; the
//! value mapping (`mapping.rs`) and the writer (`writer.rs`, with sqlx) behind the cargo feature
//! `sink-mysql`.

mod config;
#[cfg(feature = "sink-mysql")]
mod mapping;
#[cfg(feature = "sink-mysql")]
mod writer;

pub use config::{parse_config, MysqlConfig};
#[cfg(feature = "sink-mysql")]
pub use writer::open;

use crate::sink::BatchDefaults;
#[cfg(not(feature = "sink-mysql"))]
use crate::sink::{SharedColumns, Sink, SinkError};

/// Thousands of rows per flush: one transaction of a few multi-row statements.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(5000),
    bytes: None,
    age: None,
};

/// Built without `sink-mysql`: the task hangs with the reason.
#[cfg(not(feature = "sink-mysql"))]
pub async fn open(
    _config: MysqlConfig,
    _columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::config(super::built_without("sink-mysql")))
}
