//! Domain logic over the catalog and the shard logs, free of HTTP.

pub mod catalog;
// issue 14: cluster
pub mod catalog_refresh;
mod connector_registry;
// issue 14: leases — per-connector start/stop on the node holding its lease
pub mod connector_leases;
mod connector_source;
mod connector_status;
mod connector_subscription;
pub mod connectors;
pub mod error;
pub mod groups;
pub mod health;
// issue 10: lake
#[cfg(feature = "sink-odps")]
pub mod lake_markers;
// issue 14: offsets served at any node
mod offsets_anywhere;
pub mod projects;
pub mod reads;
pub mod records;
pub mod retention;
pub mod shards;
pub mod storage;
pub mod subscriptions;
// issue 14: leases — one subscription taken over by the node holding its lease
mod subscription_leases;
mod subscription_offsets;
pub mod topics;

pub use catalog::Catalog;
pub use error::{Error, Result};
