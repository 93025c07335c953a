//! Sluice's metadata store: everything but records (projects, topics, schema versions, shards,
//! connectors and their checkpoints, subscriptions and their per-shard offsets).
//!
//! One type, [`MetaStore`], owns the storage; callers see plain row structs ([`rows`]) and typed
//! errors ([`MetaError`]). The default backend is an embedded SQLite file reached through `sqlx`
//! (WAL journal, `synchronous=FULL`, so a committed change survives a crash). The server keeps
//! an in-memory catalog built from [`MetaStore::load`] and writes every change here first; a
//! shared backend (PostgreSQL) for several nodes can later replace the SQLite pool without
//! touching callers.
//!
//! Layout: `store.rs` (the type and its queries), `rows.rs` (row structs), `schema.sql` (tables),
//! `connectors.rs` + `connectors.sql` (connector definitions and per-shard checkpoints).
//! `subscriptions.rs` + `subscriptions.sql` (subscriptions and their offsets; an offset is
//! committed in one transaction per request, so it is durable before the commit is acknowledged);
//! `consumer_groups.rs` (each subscription's consumer group, so that it outlives a restart).

mod connectors;
mod consumer_groups;
mod rows;
mod store;
mod subscriptions;

pub use connectors::{CheckpointRow, ConnectorRow};
pub use consumer_groups::ConsumerGroupRow;
pub use rows::{ProjectRow, SchemaRow, ShardRow, Snapshot, TopicRow};
pub use store::{MetaError, MetaStore};
pub use subscriptions::{OffsetRow, SubscriptionRow};
