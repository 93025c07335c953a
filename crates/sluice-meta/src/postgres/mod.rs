//! The shared backend (issue 14): the metadata tables in a PostgreSQL database that several Sluice
//! nodes use at once, through a pool of connections, and [`PgStore::write`], the one way a change
//! reaches them.
//!
//! Loads that read several tables ([`PgStore::load`], `load_subscriptions`) read one snapshot
//! (REPEATABLE READ, read only). Writes run at PostgreSQL's default isolation (READ COMMITTED). A
//! catalog change takes the `catalog_version` row's lock with its first statement (the bump), so
//! catalog changes from all nodes are serialized as SQLite's `BEGIN IMMEDIATE` serializes them on
//! one node, and each sees the changes committed before it. Offsets and checkpoints do not take it:
//! each is one upsert per row, safe under concurrency on its own. A checkpoint save reads its
//! subscription's row `FOR SHARE`, and deletes remove the subscription row before its offsets, so a
//! save racing with the delete of its connector lands before the delete (and goes with it) or finds
//! no subscription; it never leaves offsets behind.
//!
//! Files: `catalog.rs` (projects, topics, schemas, shards), `connectors.rs`,
//! `subscriptions.rs`, `consumer_groups.rs`, `accounts.rs`, `migrate.rs`, `version_probe.rs`,
//! `takeover.rs` (one subscription's state, for a node taking it over), `offsets_anywhere.rs`
//! (checked commits, session opens and offset reads that any cluster node serves)
//! (+ `migrations/postgres/`).

mod accounts;
mod catalog;
mod connectors;
mod consumer_groups;
// issue 14: leases — writes fenced by a lease's epoch
mod fenced;
// issue 14: offsets served at any node
pub(crate) mod migrate;
mod offsets_anywhere;
mod subscriptions;
mod takeover;
mod version_probe;

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::Postgres;

use crate::store::{MetaError, WriteFuture};

/// The PostgreSQL backend of [`MetaStore`](crate::MetaStore).
#[derive(Clone)]
pub(crate) struct PgStore {
    pub(crate) pool: PgPool,
    /// Shares catalog-version reads between concurrent requests (`version_probe.rs`).
    version_probe: std::sync::Arc<version_probe::VersionProbe>,
}

/// The connection of one write transaction, lent to the body of [`PgStore::write`]; it
/// dereferences to the PostgreSQL connection. `'a` bounds what the body borrows from its caller.
///
/// Dropped without a successful COMMIT (a failed statement, a failed COMMIT, a cancelled
/// request), the connection is closed instead of going back to the pool: the server rolls
/// back the open transaction when its session ends, and no later write can run inside it.
pub(crate) struct Tx<'a> {
    conn: PoolConnection<Postgres>,
    committed: bool,
    _borrows: PhantomData<&'a ()>,
}

impl Deref for Tx<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.committed {
            tracing::warn!("a metadata write failed; its connection is discarded");
            self.conn.close_on_drop();
        }
    }
}

impl PgStore {
    /// Connects with `options` and brings the database's schema to this binary's version (see
    /// [`migrate`]); refuses a database written by a newer Sluice.
    pub(crate) async fn open(options: PgConnectOptions) -> Result<PgStore, MetaError> {
        let pool = crate::pg_pool::primary_pool_options(8)
            .connect_with(options)
            .await?;
        migrate::migrate(&pool).await?;
        Ok(PgStore {
            pool,
            version_probe: Default::default(),
        })
    }

    /// Runs `body` in one transaction (BEGIN ... COMMIT) and returns its value only once the
    /// COMMIT succeeded. On any failure the connection is discarded (see [`Tx`]) and the error
    /// returned. For changes that are not catalog changes; see [`Self::write_catalog`].
    pub(crate) async fn write<'a, T, E, F>(&self, body: F) -> Result<T, E>
    where
        E: From<MetaError>,
        F: for<'c> FnOnce(&'c mut Tx<'a>) -> WriteFuture<'c, T, E>,
    {
        self.write_in(false, body).await
    }

    /// [`Self::write`] for a catalog change: its first statement bumps the catalog version,
    /// which also serializes it with every other node's catalog changes.
    pub(crate) async fn write_catalog<'a, T, E, F>(&self, body: F) -> Result<T, E>
    where
        E: From<MetaError>,
        F: for<'c> FnOnce(&'c mut Tx<'a>) -> WriteFuture<'c, T, E>,
    {
        self.write_in(true, body).await
    }

    async fn write_in<'a, T, E, F>(&self, bump: bool, body: F) -> Result<T, E>
    where
        E: From<MetaError>,
        F: for<'c> FnOnce(&'c mut Tx<'a>) -> WriteFuture<'c, T, E>,
    {
        let mut tx = Tx {
            conn: self.pool.acquire().await.map_err(MetaError::from)?,
            committed: false,
            _borrows: PhantomData,
        };
        sqlx::query("BEGIN")
            .execute(&mut *tx)
            .await
            .map_err(MetaError::from)?;
        if bump {
            sqlx::query("UPDATE catalog_version SET version = version + 1")
                .execute(&mut *tx)
                .await
                .map_err(MetaError::from)?;
        }
        let value = body(&mut tx).await?;
        sqlx::query("COMMIT")
            .execute(&mut *tx)
            .await
            .map_err(MetaError::from)?;
        tx.committed = true;
        Ok(value)
    }

    /// A read-only transaction that sees one snapshot of the database, for loads that read
    /// several tables: another node's change is seen whole or not at all.
    pub(crate) async fn snapshot(&self) -> Result<sqlx::Transaction<'static, Postgres>, MetaError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The catalog version (bumped by every catalog change) as of some moment after this call
    /// began; concurrent callers share one query (`version_probe.rs`).
    pub(crate) async fn catalog_version(&self) -> Result<i64, MetaError> {
        self.version_probe.read(&self.pool).await
    }
}
