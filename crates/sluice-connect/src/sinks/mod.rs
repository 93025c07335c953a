//! One module per target system.
pub mod mysql;
pub mod postgres;
mod sql_util;
