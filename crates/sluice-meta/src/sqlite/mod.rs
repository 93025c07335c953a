//! The embedded backend: the metadata tables in one SQLite file (WAL journal, `synchronous=FULL`),
//! reached through one pooled connection, and [`SqliteStore::write`], the one way a change reaches
//! them.
//!
//! Files: `catalog.rs` (projects, topics, schemas, shards), `connectors.rs`,
//! `subscriptions.rs`, `consumer_groups.rs`, `accounts.rs`, `migrate.rs` (+ `migrations/sqlite/`).

mod accounts;
mod catalog;
mod connectors;
mod consumer_groups;
pub(crate) mod migrate;
mod subscriptions;

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use crate::store::{MetaError, WriteFuture};

/// The SQLite backend of [`MetaStore`](crate::MetaStore).
#[derive(Clone)]
pub(crate) struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

/// The connection of one write transaction, lent to the body of [`SqliteStore::write`]; it
/// dereferences to the SQLite connection. `'a` bounds what the body borrows from its caller.
///
/// Dropped without a successful COMMIT (a failed statement, a failed COMMIT, a cancelled
/// request), the connection is closed instead of going back to the pool: closing rolls back
/// whatever SQLite still holds open, and the next write starts on a fresh connection. So a
/// failure can never leave a transaction open that would swallow later changes.
pub(crate) struct Tx<'a> {
    conn: PoolConnection<Sqlite>,
    committed: bool,
    _borrows: PhantomData<&'a ()>,
}

impl Deref for Tx<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
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

impl SqliteStore {
    /// Opens (creating if missing) the SQLite file at `path` and brings its schema to this
    /// binary's version (see [`migrate`]); refuses a store written by a newer Sluice.
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, MetaError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        migrate::migrate(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// Runs `body` in one write transaction (BEGIN IMMEDIATE ... COMMIT) and returns its value
    /// only once the COMMIT succeeded, that is once the change is on disk. On any failure the
    /// connection is discarded (see [`Tx`]) and the error returned, so the caller reports the
    /// failure and changes nothing in memory. For changes that are not catalog changes
    /// (offsets, checkpoints, a key's last use, the audit log); see [`Self::write_catalog`].
    pub(crate) async fn write<'a, T, E, F>(&self, body: F) -> Result<T, E>
    where
        E: From<MetaError>,
        F: for<'c> FnOnce(&'c mut Tx<'a>) -> WriteFuture<'c, T, E>,
    {
        self.write_in(false, body).await
    }

    /// [`Self::write`] for a catalog change: the same transaction also bumps the catalog
    /// version (see [`MetaStore::catalog_version`](crate::MetaStore::catalog_version)).
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
        sqlx::query("BEGIN IMMEDIATE")
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

    /// The catalog version: bumped by every catalog change.
    pub(crate) async fn catalog_version(&self) -> Result<i64, MetaError> {
        Ok(sqlx::query_scalar("SELECT version FROM catalog_version")
            .fetch_one(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectRow;

    /// A COMMIT that fails leaves SQLite's transaction open (here a deferred foreign key; in
    /// the field a full disk). The write must fail, and the next write must still commit:
    /// before the fix, later writes ran inside the dead transaction and were never committed.
    #[tokio::test]
    async fn a_failed_commit_does_not_swallow_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
             PRAGMA foreign_keys = ON;",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let failed: Result<(), MetaError> = store
            .write(|tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO child (pid) VALUES (7)")
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                })
            })
            .await;
        assert!(failed.is_err(), "the COMMIT violates a foreign key");
        let p = ProjectRow {
            name: "after".into(),
            comment: "c".into(),
            create_time: 1,
            last_modify_time: 1,
        };
        store.insert_project(&p).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.load().await.unwrap().projects, vec![p]);
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM child")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(children, 0, "the failed write left nothing behind");
    }

    /// A failed statement inside a write (here SQLITE_FULL from a page limit on the
    /// connection) fails the write, commits none of it, and the connection is replaced.
    #[tokio::test]
    async fn a_full_store_fails_the_write_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&store.pool)
            .await
            .unwrap();
        let big = ProjectRow {
            name: "big".into(),
            comment: "x".repeat(64 * 1024),
            create_time: 1,
            last_modify_time: 1,
        };
        let err = store.insert_project(&big).await.unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        let small = ProjectRow {
            name: "small".into(),
            ..big.clone()
        };
        store.insert_project(&small).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        let names: Vec<String> = store
            .load()
            .await
            .unwrap()
            .projects
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["small".to_string()]);
    }
}
