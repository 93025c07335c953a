//! Sluice's cluster mode: several stateless `sluice serve` nodes on PostgreSQL and object storage.
//!
//! * [`lease`]: leases with fencing epochs judged by PostgreSQL's clock, and node liveness.
//! * [`placement`]: rendezvous hashing of work keys over the live nodes.
//! * [`archive`]: a shard's older entries as objects (frames plus a footer index) in object
//!   storage, committed by fenced segment rows, read by byte ranges, orphans collected after a
//!   grace period; [`archive_url`] parses its location (`s3://bucket/prefix?endpoint=...`).

pub mod archive;
pub mod archive_format;
pub mod archive_gc;
pub mod archive_url;
pub mod lease;
pub mod lease_keeper;
pub mod placement;
