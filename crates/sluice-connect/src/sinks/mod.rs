//! One module per target system.
pub mod mysql;
mod pg_copy;
pub mod postgres;
mod sql_util;
