//! The sinks, one folder per target system, and the dispatch over all nine connector types.
//!
//! - `config.rs`: [`ConnectorConfig`], the typed config of every type (each sink's folder
//!   owns its own config type); `wire.rs`: reading/writing pydatahub's field names and
//!   [`ConfigError`]; `secret.rs`: [`Secret`], which never prints;
//! - `datahub/`: SINK_DATAHUB, into a topic on another DataHub endpoint;
//! - `mysql/`: SINK_MYSQL and SINK_ADS (MySQL protocol); `postgres/`: SINK_HOLOGRES
//!   (PostgreSQL protocol);
//! - `fc/`: SINK_FC, a Function Compute 3.0 function invoked with each batch;
//! - `objstore.rs` (feature `object-store`): the one builder of object stores (S3-compatible
//!   endpoints, local directories) and their error classification;
//! - `tls.rs`: the TLS policy for every target (`connector_tls`, `connector_tls_ca_file`);
//! - `es/`: SINK_ES, Elasticsearch / OpenSearch through `_bulk`;
//! - `oss/`: SINK_OSS, objects in an S3-compatible bucket;
//! - `odps/`: SINK_ODPS, a Hive-partitioned Parquet table (`file://` warehouses);
//! - `ots/`: SINK_OTS, rows into a Tablestore table (BatchWriteRow, PlainBuffer rows).
//!
//! Each folder holds `config.rs` (always built: a server without the writer still accepts,
//! validates and stores the type's configs) and its writer behind a cargo feature, on by
//! default (`sink-mysql`, `sink-hologres`, `sink-datahub`, `sink-es`, `sink-fc`, `sink-oss`,
//! `sink-odps`, `sink-ots`); a task of a type built without its feature hangs with a message naming the
//! feature.

mod config;
pub mod datahub;
pub mod es;
pub mod fc;
pub mod mysql;
// issue 10: the shared object-store builder (SINK_OSS, SINK_ODPS lake files).
#[cfg(feature = "object-store")]
pub mod objstore;
pub mod odps;
pub mod oss;
pub mod ots;
pub mod postgres;
mod secret;
pub mod tls;
pub mod wire;

pub use config::ConnectorConfig;
pub use odps::partition_config_text;
pub use secret::Secret;
pub use wire::ConfigError;

use crate::kind::ConnectorKind;
use crate::sink::{BatchDefaults, SharedColumns, Sink, SinkError};

/// What a task of a sink type left out of the build reports.
#[cfg_attr(
    all(
        feature = "sink-mysql",
        feature = "sink-hologres",
        feature = "sink-datahub",
        feature = "sink-es",
        feature = "sink-fc",
        feature = "sink-oss",
        feature = "sink-odps",
        feature = "sink-ots"
    ),
    allow(dead_code)
)]
fn built_without(feature: &str) -> String {
    format!(
        "this server was built without the cargo feature {feature}, so this connector type \
         cannot write; rebuild with --features {feature} (it is on by default)"
    )
}

/// The batch limits each sink type chooses (see [`BatchDefaults`]).
pub fn batch_defaults(kind: ConnectorKind) -> BatchDefaults {
    match kind {
        ConnectorKind::Odps => odps::BATCH_DEFAULTS,
        ConnectorKind::Ads | ConnectorKind::Mysql => mysql::BATCH_DEFAULTS,
        ConnectorKind::Es => es::BATCH_DEFAULTS,
        ConnectorKind::Fc => fc::BATCH_DEFAULTS,
        ConnectorKind::Oss => oss::BATCH_DEFAULTS,
        ConnectorKind::Ots => ots::BATCH_DEFAULTS,
        ConnectorKind::Hologres => postgres::BATCH_DEFAULTS,
        ConnectorKind::Datahub => datahub::BATCH_DEFAULTS,
    }
}

/// Opens the sink of a task.
pub async fn open(
    config: &ConnectorConfig,
    columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    match config {
        ConnectorConfig::Datahub(c) => datahub::open(c.clone(), columns).await,
        ConnectorConfig::Mysql(c) | ConnectorConfig::Ads(c) => {
            mysql::open(c.clone(), columns).await
        }
        ConnectorConfig::Hologres(c) => postgres::open(c.clone(), columns).await,
        ConnectorConfig::Es(c) => es::open(c.clone(), columns).await,
        ConnectorConfig::Fc(c) => fc::open(c.clone(), columns).await,
        ConnectorConfig::Oss(c) => oss::open(c.clone(), columns).await,
        ConnectorConfig::Odps(c) => odps::open(c.clone(), columns).await,
        ConnectorConfig::Ots(c) => ots::open(c.clone(), columns).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_sink_type_chooses_its_batch() {
        let mysql = batch_defaults(ConnectorKind::Mysql);
        assert_eq!(mysql.records, Some(5000));
        assert_eq!(batch_defaults(ConnectorKind::Ads), mysql);
        for lake in [ConnectorKind::Odps, ConnectorKind::Oss] {
            let d = batch_defaults(lake);
            assert!(d.age >= Some(Duration::from_secs(60)), "{lake:?}");
            assert!(d.bytes >= Some(10 << 20), "{lake:?}");
        }
        // DataHub follows the server's global keys (compat tests tune them).
        assert_eq!(
            batch_defaults(ConnectorKind::Datahub),
            BatchDefaults::default()
        );
    }

    #[cfg(not(feature = "sink-mysql"))]
    #[tokio::test]
    async fn a_type_built_without_its_feature_validates_and_hangs_with_the_reason() {
        use crate::sink::Columns;
        let wire = serde_json::json!({"Host": "h", "Port": "3306", "Database": "d",
            "User": "u", "Table": "t"});
        let config = ConnectorConfig::from_wire(ConnectorKind::Mysql, &wire).unwrap();
        assert!(ConnectorConfig::from_wire(ConnectorKind::Mysql, &serde_json::json!({})).is_err());
        let columns = std::sync::Arc::new(Columns {
            names: vec![],
            types: vec![],
        });
        match open(&config, columns).await {
            Err(e) if e.kind == crate::sink::ErrorKind::Config => {
                assert!(e.message.contains("feature sink-mysql"), "{e}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("opened without the writer"),
        }
    }
}
