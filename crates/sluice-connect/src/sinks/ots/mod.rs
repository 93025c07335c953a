//! SINK_OTS: rows into a Tablestore (OTS) table through its wire protocol.
//!
//! - `config.rs`: [`OtsConfig`] (always built);
//! - `plainbuffer.rs`: the PlainBuffer row format with its CRC-8 checksums;
//! - `proto.rs`: the protobuf messages (Error, DescribeTable, BatchWriteRow);
//! - `client.rs`: signed `POST /DescribeTable` and `/BatchWriteRow`, response checks and how
//!   failures are classified;
//! - `mapping.rs`: primary key columns from the topic fields of the same name, and the type
//!   mapping;
//! - `writer.rs`: the sink (one row per key per delivery, PUT or UPDATE, per-row errors);
//! - `vectors.rs` (tests): Sluice's codec against bytes the official package made.
//!
//! Everything but the config is behind the cargo feature `sink-ots` (on by default).
//! `AuthMode` `sts` (the default when none is sent) is accepted and stored, but its tasks hang
//! saying STS is not available self-hosted; `ak` signs with AccessId/AccessKey. The codec is
//! checked against the official `tablestore` Python package (`testdata/vectors.json`, made by
//! compat/ots_vectors.py) and the sink runs against compat/ots_server.py, a test server built
//! on that package: it has not been run against the Tablestore cloud service.

#[cfg(feature = "sink-ots")]
mod client;
mod config;
#[cfg(feature = "sink-ots")]
mod mapping;
#[cfg(feature = "sink-ots")]
pub mod plainbuffer;
#[cfg(feature = "sink-ots")]
pub mod proto;
#[cfg(all(test, feature = "sink-ots"))]
mod vectors;
#[cfg(feature = "sink-ots")]
mod writer;

use crate::sink::{BatchDefaults, SharedColumns, Sink, SinkError};
use crate::sinks::wire::AuthMode;

pub use config::{OtsConfig, OtsWriteMode};
#[cfg(feature = "sink-ots")]
pub use writer::{MAX_BYTES, MAX_ROWS, ROW_RETRIES};

/// Up to 1,000 records per delivery (sent as BatchWriteRow requests of at most 200 rows and
/// 4 MB each); the server's global `connector_batch_age_ms`.
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: Some(1000),
    bytes: Some(16 << 20),
    age: None,
};

/// What a task with `AuthMode` `sts` reports.
pub const STS_MESSAGE: &str = "SINK_OTS: AuthMode sts is accepted and stored, but STS is not \
     available self-hosted; set AuthMode ak with AccessId and AccessKey to write to the table";

/// Opens a SINK_OTS task's sink.
pub async fn open(cfg: OtsConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    if cfg.auth.mode == AuthMode::Sts {
        return Err(SinkError::config(STS_MESSAGE.into()));
    }
    #[cfg(feature = "sink-ots")]
    return writer::open(cfg, columns).await;
    #[cfg(not(feature = "sink-ots"))]
    {
        let _ = columns;
        Err(SinkError::config(super::built_without("sink-ots")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Columns, ErrorKind};

    #[tokio::test]
    async fn sts_is_stored_and_its_tasks_hang_with_the_reason() {
        let c = OtsConfig::from_wire(&serde_json::json!({"Endpoint": "http://127.0.0.1:1",
            "InstanceName": "i", "TableName": "t"}))
        .unwrap();
        assert_eq!(c.auth.mode, AuthMode::Sts);
        assert_eq!(c.to_wire()["AuthMode"], "sts");
        let columns = std::sync::Arc::new(Columns {
            names: vec![],
            types: vec![],
        });
        match open(c, columns).await {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Config);
                assert!(
                    e.message.contains("STS is not available self-hosted"),
                    "{e}"
                );
            }
            Ok(_) => panic!("an sts connector opened"),
        }
    }
}
