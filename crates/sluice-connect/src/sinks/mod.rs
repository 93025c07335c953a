//! Configuration checks for all nine connector types and the dispatch that opens a sink.
//!
//! - `config.rs`: validation and normalization of every type's `Config` (§4.9 shapes);
//! - `datahub.rs`: SINK_DATAHUB, into a topic on another DataHub endpoint;
//! - `mysql.rs`: SINK_MYSQL and SINK_ADS (MySQL protocol); `postgres.rs`: SINK_HOLOGRES
//!   (PostgreSQL protocol); `sql_util.rs`: what the two share.
//!
//! SINK_ODPS, SINK_OSS, SINK_ES, SINK_FC and SINK_OTS are managed fully but do not write yet:
//! their tasks hang with [`not_yet_message`].

mod config;
pub mod datahub;
pub mod mysql;
mod pg_copy;
pub mod postgres;
mod sql_util;

use serde_json::Value as Json;

pub use config::{normalize, partition_config_text};

use crate::kind::ConnectorKind;
use crate::sink::{SharedColumns, Sink, SinkError};

/// Validates a connector configuration; the message names the bad field.
pub fn validate(kind: ConnectorKind, config: &Json) -> Result<(), String> {
    accept(kind, config).map(|_| ())
}

/// Validates a configuration at the door and returns the normalized form to store: the
/// shapes of §4.9, also checked by the sink's own parser where the sink exists.
pub fn accept(kind: ConnectorKind, config: &Json) -> Result<Json, String> {
    let normalized = normalize(kind, config)?;
    match kind {
        ConnectorKind::Mysql | ConnectorKind::Ads => {
            mysql::parse_config(&normalized).map(|_| ())?
        }
        ConnectorKind::Hologres => postgres::parse_config(&normalized).map(|_| ())?,
        ConnectorKind::Datahub => datahub::DatahubConfig::parse(&normalized).map(|_| ())?,
        _ => {}
    }
    Ok(normalized)
}

/// What the tasks of a connector whose sink is not built yet report.
pub fn not_yet_message(kind: ConnectorKind) -> String {
    format!(
        "{} writes arrive in a later release; this connector is managed but does not write yet",
        kind.display_name()
    )
}

/// Opens the sink of a task. `config` is the normalized configuration.
pub async fn open(
    kind: ConnectorKind,
    config: &Json,
    columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    match kind {
        ConnectorKind::Datahub => {
            let cfg = datahub::DatahubConfig::parse(config).map_err(SinkError::config)?;
            Ok(Box::new(datahub::DatahubSink::open(cfg, columns).await?))
        }
        ConnectorKind::Mysql | ConnectorKind::Ads | ConnectorKind::Hologres => {
            open_database_sink(kind, config, columns).await
        }
        ConnectorKind::Odps
        | ConnectorKind::Oss
        | ConnectorKind::Es
        | ConnectorKind::Fc
        | ConnectorKind::Ots => Err(SinkError::config(not_yet_message(kind))),
    }
}

/// The database sinks: MySQL protocol for SINK_MYSQL / SINK_ADS, PostgreSQL protocol for
/// SINK_HOLOGRES.
async fn open_database_sink(
    kind: ConnectorKind,
    config: &Json,
    columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    match kind {
        ConnectorKind::Hologres => {
            let cfg = postgres::parse_config(config).map_err(SinkError::config)?;
            postgres::open(cfg, columns).await
        }
        _ => {
            let cfg = mysql::parse_config(config).map_err(SinkError::config)?;
            mysql::open(cfg, columns).await
        }
    }
}
