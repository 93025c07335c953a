//! SINK_ODPS: managed fully (create, status, offsets, done time) but does not write yet; its
//! tasks hang with [`super::not_yet_message`]. The writer lands in this folder.

mod config;

pub use config::{partition_config_text, OdpsConfig, PartitionMode};
