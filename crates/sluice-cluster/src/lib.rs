//! The cluster storage mode: several stateless `sluice serve` nodes on PostgreSQL (made highly
//! available by Patroni, reached through haproxy) and S3-compatible object storage. There is no
//! home-made consensus or replication: PostgreSQL orders and keeps everything acknowledged.
//!
//! Modules:
//! * [`log`]: the shard log on PostgreSQL — [`log::PgLog`] (one per node: the pool, the shards'
//!   append coalescers, the poll-based watch) and [`log::PgShardStore`], one shard's
//!   [`sluice_log::store::ShardStore`]. Its helpers: `log_schema` (tables, daily partitions,
//!   retention by dropping partitions), `log_append` (the sequencer statement and coalescing),
//!   `log_read` (reads by sequence and system time), `log_watch` (the poll).
//!
//! Keep this file a list of `pub mod` lines.

pub mod log;
mod log_append;
mod log_read;
mod log_schema;
mod log_watch;
