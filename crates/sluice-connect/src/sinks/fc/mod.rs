//! SINK_FC: managed fully but does not write yet; its tasks hang with
//! [`super::not_yet_message`]. The writer lands in this folder.

mod config;

pub use config::FcConfig;
