//! The sinks, one folder per target system, and the dispatch over all nine connector types.
//!
//! - `config.rs`: [`ConnectorConfig`], the typed config of every type (each sink's folder
//!   owns its own config type); `wire.rs`: reading/writing pydatahub's field names and
//!   [`ConfigError`]; `secret.rs`: [`Secret`], which never prints;
//! - `datahub/`: SINK_DATAHUB, into a topic on another DataHub endpoint;
//! - `mysql/`: SINK_MYSQL and SINK_ADS (MySQL protocol); `postgres/`: SINK_HOLOGRES
//!   (PostgreSQL protocol); `sql_util.rs`: what the two share;
//! - `odps/`, `oss/`, `es/`, `fc/`, `ots/`: configs only so far.
//!
//! SINK_ODPS, SINK_OSS, SINK_ES, SINK_FC and SINK_OTS are managed fully but do not write yet:
//! their tasks hang with [`not_yet_message`].

mod config;
pub mod datahub;
pub mod es;
pub mod fc;
pub mod mysql;
pub mod odps;
pub mod oss;
pub mod ots;
pub mod postgres;
mod secret;
mod sql_util;
pub mod wire;

pub use config::ConnectorConfig;
pub use odps::partition_config_text;
pub use secret::Secret;
pub use wire::ConfigError;

use crate::kind::ConnectorKind;
use crate::sink::{SharedColumns, Sink, SinkError};

/// What the tasks of a connector whose sink is not built yet report.
pub fn not_yet_message(kind: ConnectorKind) -> String {
    format!(
        "{} writes arrive in a later release; this connector is managed but does not write yet",
        kind.display_name()
    )
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
        ConnectorConfig::Odps(_)
        | ConnectorConfig::Oss(_)
        | ConnectorConfig::Es(_)
        | ConnectorConfig::Fc(_)
        | ConnectorConfig::Ots(_) => Err(SinkError::Config(not_yet_message(config.kind()))),
    }
}
