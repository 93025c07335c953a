//! PostgreSQL's migrations (`migrations/postgres/NNNN_name.sql`, listed in [`MIGRATIONS`]): the
//! same versions as SQLite's, in PostgreSQL's types. The whole run is one transaction holding a
//! transaction-scoped advisory lock ([`MIGRATION_LOCK`]): nodes that start together migrate one
//! after the other, the later ones find the work done, and a node that dies mid-way leaves neither
//! a half-migrated schema nor a lock behind.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;
use sqlx::PgPool;

use crate::migrate::{refuse_newer, Embedded, Step};
use crate::store::MetaError;

/// Every PostgreSQL migration this binary knows, in version order.
const MIGRATIONS: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "connector subscriptions",
        include_str!("../../migrations/postgres/0002_connector_subscriptions.sql"),
    ),
    (
        3,
        "connector late count",
        include_str!("../../migrations/postgres/0003_connector_late_count.sql"),
    ),
    (
        4,
        "accounts",
        include_str!("../../migrations/postgres/0004_accounts.sql"),
    ),
    (
        5,
        "catalog version",
        include_str!("../../migrations/postgres/0005_catalog_version.sql"),
    ),
];

/// The advisory lock key held while migrating ("sluicemt" in ASCII).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_6d74;

/// The highest migration version recorded in the database (0 when none is).
async fn stored_version(conn: &mut PgConnection) -> Result<i64, MetaError> {
    let table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !table {
        return Ok(0);
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut *conn)
        .await?;
    Ok(version.unwrap_or(0))
}

/// Brings the schema to [`crate::SCHEMA_VERSION`] under the migration lock, refusing a
/// database from a newer Sluice.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    refuse_newer(stored_version(&mut tx).await?)?;
    let mut migrator = Migrator::new(Embedded(MIGRATIONS)).await?;
    // our lock covers the run; sqlx's own is session-scoped and would outlive a failed run
    migrator.set_locking(false);
    migrator.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
