//! Sluice's metadata store: everything but records (projects, topics, schema versions, shards,
//! connectors and their checkpoints, subscriptions and their per-shard offsets, consumer
//! groups, access keys and the audit log).
//!
//! One type, [`MetaStore`] (`store.rs`), is the door: callers see one API, plain row structs
//! ([`rows`]) and typed errors ([`MetaError`]), whichever backend holds the rows:
//! - `sqlite/` (the default, [`MetaStore::open`]): an embedded SQLite file (WAL journal,
//!   `synchronous=FULL`, so a committed change survives a crash), one connection;
//! - `postgres/` ([`MetaStore::open_postgres`]): a PostgreSQL database that several Sluice
//!   nodes share (issue 14).
//!
//! [`MetaStore::connect`] picks the backend from its argument (a `postgres://` URL or a path).
//! The server keeps an in-memory catalog built from [`MetaStore::load`] and writes every change
//! here first, applying it in memory only once the store returned Ok.
//!
//! Writes: each backend has one helper through which every change goes (`write`, and
//! `write_catalog` for catalog changes), which runs its statements in one transaction on one
//! connection and succeeds only when the COMMIT did. Any failure (a statement, the COMMIT, a
//! dropped request) discards that connection, which rolls back whatever the database still had
//! open, and the next write gets a fresh one: a failed write can never leave a transaction
//! open that would silently swallow later changes. Creates that also make files (a topic's
//! shard logs, the children of a split) make them inside the transaction, before the COMMIT.
//!
//! Catalog version: every catalog change (projects, topics, schemas, shards, subscriptions,
//! connectors, access keys; not consumer groups, which only a subscription's owner serves)
//! bumps one row, `catalog_version`, as the first
//! statement of its transaction, so another node notices any change by reading one number
//! ([`MetaStore::catalog_version`]). On PostgreSQL that row's lock also serializes catalog
//! changes across nodes, as SQLite's `BEGIN IMMEDIATE` does on one.
//!
//! Schema: versioned migrations (`migrate.rs`; SQL in `migrations/sqlite/` and
//! `migrations/postgres/`, the same versions on both), applied at open by sqlx's migrator,
//! which records them in `_sqlx_migrations`. A store from a newer Sluice is refused
//! ([`MetaError::TooNew`]).
//!
//! Layout: `store.rs` (the door and the error), `rows.rs` (row structs), `migrate.rs` (what
//! the backends' migrations share), and per backend `mod.rs` (connection and write helper),
//! `catalog.rs` (projects, topics, schemas, shards), `connectors.rs` (connector definitions;
//! each connector owns a subscription, and its checkpoints are that subscription's offsets),
//! `subscriptions.rs` (subscriptions and their offsets; an offset is committed in one
//! transaction per request, so it is durable before the commit is acknowledged),
//! `consumer_groups.rs` (each subscription's consumer group, so that it outlives a restart),
//! `accounts.rs` (access keys with sealed secrets, and the append-only audit log),
//! `migrate.rs` (that backend's migration list). `pg_pool.rs` builds the PostgreSQL pools of a
//! cluster (primary only; this store's and the cluster shard log's).

mod migrate;
pub mod pg_pool;
mod postgres;
mod rows;
mod sqlite;
mod store;
#[cfg(test)]
mod tests;

pub use migrate::SCHEMA_VERSION;
pub use rows::{
    AccessKeyRow, AuditRow, CheckedCommit, CheckpointRow, CommitConflict, ConnectorRow,
    ConsumerGroupRow, LeaseGuard, OffsetRow, ProjectRow, SchemaRow, ShardRow, Snapshot,
    StoredSubscription, SubscriptionRow, TopicRow,
};
pub use store::{MetaError, MetaStore};
