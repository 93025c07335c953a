//! The cluster storage mode: several stateless `sluice serve` nodes on PostgreSQL (made highly
//! available by Patroni, reached through haproxy) and S3-compatible object storage. There is no
//! home-made consensus or replication: PostgreSQL orders and keeps everything acknowledged.
//!
//! Modules:
//! * [`log`]: the shard log on PostgreSQL — [`log::PgLog`] (one per node: the pool, the shards'
//!   append coalescers, the poll-based watch) and [`log::PgShardStore`], one shard's
//!   [`sluice_log::store::ShardStore`]. Its helpers: `log_schema` (tables, daily partitions,
//!   retention by dropping partitions), `log_append` (per-shard queues, the node's statement runners), `log_append_sql` (the
//!   sequencer statement),
//!   `log_read` (reads by sequence and system time), `log_watch` (the poll).
//! * [`lease`]: leases with fencing epochs judged by PostgreSQL's clock, and node liveness;
//!   [`lease_keeper`] renews them.
//! * [`placement`]: rendezvous hashing of work keys over the live nodes.
//! * [`archive`]: a shard's older entries as objects (frames plus a footer index) in object
//!   storage, committed by fenced segment rows, read by byte ranges, orphans collected after a
//!   grace period; [`archive_url`] parses its location (`s3://bucket/prefix?endpoint=...`).
//! * [`archiver`]: moves a shard's older log rows into archive objects under its lease (segment
//!   row, `archived_seq` and the rows' delete in one fenced transaction);
//!   [`archiver_read::TieredShardStore`] reads one shard across the archive and PostgreSQL.
//!
//! `sluice serve --cluster` builds its storage from these parts (sluice-server's `cluster/`
//! module and `Server::open_cluster`).
//!
//! Keep this file a list of `pub mod` lines.

pub mod archive;
pub mod archive_format;
pub mod archive_gc;
pub mod archive_url;
pub mod archiver;
pub mod archiver_read;
pub mod lease;
pub mod lease_keeper;
pub mod log;
mod log_append;
mod log_append_sql;
mod log_read;
mod log_schema;
mod log_watch;
pub mod placement;
