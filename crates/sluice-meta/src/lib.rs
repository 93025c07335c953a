//! Sluice's metadata store: everything but records (projects, topics, schema versions, shards,
//! connectors and their checkpoints, subscriptions and their per-shard offsets).
//!
//! One type, [`MetaStore`], owns the storage; callers see plain row structs ([`rows`]) and typed
//! errors ([`MetaError`]). The default backend is an embedded SQLite file reached through `sqlx`
//! (WAL journal, `synchronous=FULL`, so a committed change survives a crash). The server keeps
//! an in-memory catalog built from [`MetaStore::load`] and writes every change here first,
//! applying it in memory only once the store returned Ok; a shared backend (PostgreSQL) for
//! several nodes can later replace the SQLite pool without touching callers.
//!
//! Writes: every change goes through one helper, `MetaStore::write` (`store.rs`), which runs
//! its statements in one `BEGIN IMMEDIATE` ... `COMMIT` on the store's single connection and
//! succeeds only when the COMMIT did. Any failure (a statement, the COMMIT, a dropped request)
//! discards that connection, which rolls back whatever SQLite still had open, and the next write
//! gets a fresh one: a failed write (a full disk, say) can never leave a transaction open that
//! would silently swallow later changes. Creates that also make files (a topic's shard logs, the
//! children of a split) make them inside the transaction, before the COMMIT.
//!
//! Schema: versioned migrations (`migrate.rs`, SQL in `migrations/`), applied at open by sqlx's
//! migrator, which records them in `_sqlx_migrations`. Migration 1 adopts a store written before
//! migrations existed; a store from a newer Sluice is refused ([`MetaError::TooNew`]).
//!
//! Layout: `store.rs` (the type, the write helper, project/topic/schema/shard queries),
//! `rows.rs` (row structs), `migrate.rs` + `migrations/` (the schema),
//! `connectors.rs` (connector definitions and per-shard checkpoints; each connector owns a
//! subscription, and its checkpoints are stored as that subscription's offsets),
//! `subscriptions.rs` (subscriptions and their offsets; an offset is committed in one
//! transaction per request, so it is durable before the commit is acknowledged),
//! `consumer_groups.rs` (each subscription's consumer group, so that it outlives a restart),
//! `accounts.rs` (access keys with sealed secrets, and the append-only audit log).

mod accounts;
mod connectors;
mod consumer_groups;
mod migrate;
mod rows;
mod store;
mod subscriptions;

pub use accounts::{AccessKeyRow, AuditRow};
pub use connectors::{CheckpointRow, ConnectorRow};
pub use consumer_groups::ConsumerGroupRow;
pub use migrate::SCHEMA_VERSION;
pub use rows::{ProjectRow, SchemaRow, ShardRow, Snapshot, TopicRow};
pub use store::{MetaError, MetaStore};
pub use subscriptions::{OffsetRow, SubscriptionRow};
