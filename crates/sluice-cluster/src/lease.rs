//! Leases with fencing epochs, and node liveness, in PostgreSQL.
//!
//! # Tables
//!
//! | table   | columns                                             | key         |
//! |---------|-----------------------------------------------------|-------------|
//! | `lease` | `kind, key, owner, epoch bigint, expires_at timestamptz` | `(kind, key)` |
//! | `node`  | `id, address, heartbeat_at timestamptz`             | `id`        |
//!
//! # Invariants
//!
//! * Expiry is judged by PostgreSQL's clock (`now()`) only, never by a node's clock: a lease is
//!   held while `expires_at > now()`, and every acquire or renewal sets `expires_at = now() + ttl`.
//! * A lease row is never deleted, so its epoch never goes backwards: [`LeaseStore::release`]
//!   only expires it. The epoch grows by one whenever the lease is taken by a different owner or
//!   retaken after it expired; renewing a held lease keeps it.
//! * Two contenders for one lease are serialized by the row lock of the one `INSERT .. ON
//!   CONFLICT DO UPDATE .. WHERE` statement: at most one of them holds it at any time.
//! * A protected write carries a [`Fence`] and checks it in the same statement
//!   ([`Fence::execute`]): the lease row must still have the fence's owner and epoch and be
//!   unexpired. The check locks the lease row (`FOR SHARE`), so a takeover waits for a write in
//!   flight to commit and a write that starts after a takeover sees the new epoch. Zero rows
//!   changed is [`LeaseError::Fenced`].
//! * A node's liveness is its `node` row: a heartbeat sets `heartbeat_at = now()`; a node is live
//!   while its heartbeat is younger than the lease ttl.

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{Executor, Postgres, Row};

/// What went wrong with a lease or a fenced write.
#[derive(thiserror::Error, Debug)]
pub enum LeaseError {
    /// The fence no longer holds: the lease expired or another owner (a newer epoch) took it.
    #[error("fenced: lease {kind}/{key} epoch {epoch} of {owner} is no longer held")]
    Fenced {
        kind: String,
        key: String,
        owner: String,
        epoch: i64,
    },
    /// A renewal did not finish in time (PostgreSQL slow or unreachable).
    #[error("lease renewal timed out after {0:?}")]
    Timeout(Duration),
    /// An invalid lease configuration (the field is named).
    #[error("invalid lease config: {0}")]
    Config(String),
    /// PostgreSQL failed or could not be reached.
    #[error("lease store: {0}")]
    Db(#[from] sqlx::Error),
}

/// Lease timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A lease not renewed for this long expires (and a node without a heartbeat for this long
    /// is no longer live).
    pub ttl: Duration,
    /// How often a holder renews its leases and heartbeats its node row.
    pub renew_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
        }
    }
}

impl LeaseConfig {
    /// Checks that a lease survives at least two missed renewals.
    pub fn validate(&self) -> Result<(), LeaseError> {
        if self.renew_every.is_zero() {
            return Err(LeaseError::Config("renew_every must be above 0".into()));
        }
        if self.ttl < self.renew_every * 2 {
            return Err(LeaseError::Config(format!(
                "ttl ({:?}) must be at least twice renew_every ({:?})",
                self.ttl, self.renew_every
            )));
        }
        Ok(())
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Proof of holding lease `(kind, key)` as `owner` at `epoch`; protected writes check it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub kind: String,
    pub key: String,
    pub owner: String,
    pub epoch: i64,
}

impl Fence {
    /// The SQL condition that holds while this fence is valid, with its four parameters
    /// numbered `$first ..= $first+3` (bind them with [`Fence::bind`]). Put it in the `WHERE`
    /// of the protected statement itself, e.g.
    /// `UPDATE checkpoint SET seq = $1 WHERE task = $2 AND {condition}`, or
    /// `INSERT INTO t (a) SELECT $1 WHERE {condition}`.
    pub fn condition(first: usize) -> String {
        format!(
            "EXISTS (SELECT 1 FROM lease WHERE kind = ${} AND key = ${} AND owner = ${} \
             AND epoch = ${} AND expires_at > now() FOR SHARE)",
            first,
            first + 1,
            first + 2,
            first + 3
        )
    }

    /// Appends this fence's parameters (kind, key, owner, epoch) to `query`.
    pub fn bind<'q>(
        &self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(self.kind.clone())
            .bind(self.key.clone())
            .bind(self.owner.clone())
            .bind(self.epoch)
    }

    /// Runs a protected write whose SQL contains [`Fence::condition`] numbered after the
    /// query's own parameters; binds the fence and returns the rows changed, or
    /// [`LeaseError::Fenced`] when none were (the fence no longer holds).
    pub async fn execute<'q, 'c, E>(
        &self,
        executor: E,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Result<u64, LeaseError>
    where
        E: Executor<'c, Database = Postgres>,
    {
        let rows = self.bind(query).execute(executor).await?.rows_affected();
        if rows == 0 {
            return Err(self.fenced());
        }
        Ok(rows)
    }

    /// The [`LeaseError::Fenced`] error for this fence.
    pub fn fenced(&self) -> LeaseError {
        LeaseError::Fenced {
            kind: self.kind.clone(),
            key: self.key.clone(),
            owner: self.owner.clone(),
            epoch: self.epoch,
        }
    }
}

/// Who holds a lease, as seen by PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    pub owner: String,
    pub epoch: i64,
    /// Whether `expires_at > now()`.
    pub live: bool,
}

/// A live node's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lease (
    kind text NOT NULL,
    key text NOT NULL,
    owner text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS lease_owner ON lease (owner);
CREATE TABLE IF NOT EXISTS node (
    id text PRIMARY KEY,
    address text NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
";

/// Key of the advisory lock that serializes this crate's schema set-up across nodes.
pub(crate) const SCHEMA_LOCK: i64 = 0x51_1CE0_0014;

/// Runs `ddl` under a transaction-scoped advisory lock, so nodes starting together do not race
/// on `CREATE .. IF NOT EXISTS`.
pub(crate) async fn create_schema(pool: &PgPool, ddl: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(ddl).execute(&mut *tx).await?;
    tx.commit().await
}

/// One node's view of the lease and node tables.
#[derive(Clone, Debug)]
pub struct LeaseStore {
    pool: PgPool,
    node: String,
    config: LeaseConfig,
}

impl LeaseStore {
    /// Creates the tables if missing and returns the store acting as node `node`.
    pub async fn open(
        pool: PgPool,
        node: impl Into<String>,
        config: LeaseConfig,
    ) -> Result<LeaseStore, LeaseError> {
        config.validate()?;
        create_schema(&pool, SCHEMA).await?;
        Ok(LeaseStore {
            pool,
            node: node.into(),
            config,
        })
    }

    #[cfg(test)]
    pub(crate) fn for_tests(pool: PgPool) -> LeaseStore {
        LeaseStore {
            pool,
            node: "n".into(),
            config: LeaseConfig::default(),
        }
    }

    /// This node's id (the owner written into its leases).
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes lease `(kind, key)` if it is free, expired, or already ours; `None` if another
    /// owner holds it. Returns the fence of the (possibly new) epoch.
    pub async fn try_acquire(&self, kind: &str, key: &str) -> Result<Option<Fence>, LeaseError> {
        let row = sqlx::query(
            "INSERT INTO lease AS l (kind, key, owner, epoch, expires_at)
             VALUES ($1, $2, $3, 1, now() + $4 * interval '1 millisecond')
             ON CONFLICT (kind, key) DO UPDATE SET
                 owner = EXCLUDED.owner,
                 epoch = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > now()
                              THEN l.epoch ELSE l.epoch + 1 END,
                 expires_at = EXCLUDED.expires_at
             WHERE l.owner = EXCLUDED.owner OR l.expires_at <= now()
             RETURNING epoch",
        )
        .bind(kind)
        .bind(key)
        .bind(&self.node)
        .bind(self.config.ttl_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Fence {
            kind: kind.to_string(),
            key: key.to_string(),
            owner: self.node.clone(),
            epoch: r.get(0),
        }))
    }

    /// Extends a held lease by the ttl; [`LeaseError::Fenced`] if it was lost meanwhile.
    pub async fn renew(&self, fence: &Fence) -> Result<(), LeaseError> {
        let q = sqlx::query(
            "UPDATE lease SET expires_at = now() + $1 * interval '1 millisecond'
             WHERE kind = $2 AND key = $3 AND owner = $4 AND epoch = $5 AND expires_at > now()",
        )
        .bind(self.config.ttl_ms())
        .bind(&fence.kind)
        .bind(&fence.key)
        .bind(&fence.owner)
        .bind(fence.epoch);
        if q.execute(&self.pool).await?.rows_affected() == 0 {
            return Err(fence.fenced());
        }
        Ok(())
    }

    /// Extends every unexpired lease this node holds, in one statement; returns the fences
    /// still held (a lease missing from the answer was lost).
    pub async fn renew_all(&self) -> Result<Vec<Fence>, LeaseError> {
        let rows = sqlx::query(
            "UPDATE lease SET expires_at = now() + $1 * interval '1 millisecond'
             WHERE owner = $2 AND expires_at > now()
             RETURNING kind, key, epoch",
        )
        .bind(self.config.ttl_ms())
        .bind(&self.node)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Fence {
                kind: r.get(0),
                key: r.get(1),
                owner: self.node.clone(),
                epoch: r.get(2),
            })
            .collect())
    }

    /// Gives a lease up at once (it expires now; the row and its epoch stay). Returns whether
    /// the fence still held it.
    pub async fn release(&self, fence: &Fence) -> Result<bool, LeaseError> {
        let rows = sqlx::query(
            "UPDATE lease SET expires_at = now() - interval '1 millisecond'
             WHERE kind = $1 AND key = $2 AND owner = $3 AND epoch = $4 AND expires_at > now()",
        )
        .bind(&fence.kind)
        .bind(&fence.key)
        .bind(&fence.owner)
        .bind(fence.epoch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(rows > 0)
    }

    /// Gives up every lease this node holds and removes its node row (for shutdown, e.g. on
    /// SIGTERM), so others take the work over at once instead of after the ttl. Returns the
    /// number of leases released.
    pub async fn release_all(&self) -> Result<u64, LeaseError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE lease SET expires_at = now() - interval '1 millisecond'
             WHERE owner = $1 AND expires_at > now()",
        )
        .bind(&self.node)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM node WHERE id = $1")
            .bind(&self.node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The current holder of a lease, if it was ever taken.
    pub async fn state(&self, kind: &str, key: &str) -> Result<Option<LeaseState>, LeaseError> {
        let row = sqlx::query(
            "SELECT owner, epoch, expires_at > now() FROM lease WHERE kind = $1 AND key = $2",
        )
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| LeaseState {
            owner: r.get(0),
            epoch: r.get(1),
            live: r.get(2),
        }))
    }

    /// The live leases of `kind` whose key starts with `key_prefix`, with their holders'
    /// addresses: (key, owner, address), by key.
    pub async fn live_with_prefix(
        &self,
        kind: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, String, String)>, LeaseError> {
        let rows = sqlx::query(
            "SELECT l.key, l.owner, n.address FROM lease l JOIN node n ON n.id = l.owner
             WHERE l.kind = $1 AND left(l.key, length($2)) = $2 AND l.expires_at > now()
             ORDER BY l.key",
        )
        .bind(kind)
        .bind(key_prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Records that this node is alive and reachable at `address`.
    pub async fn heartbeat(&self, address: &str) -> Result<(), LeaseError> {
        sqlx::query(
            "INSERT INTO node (id, address, heartbeat_at) VALUES ($1, $2, now())
             ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = now()",
        )
        .bind(&self.node)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The nodes whose heartbeat is younger than the ttl, by id.
    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, LeaseError> {
        let rows = sqlx::query(
            "SELECT id, address FROM node
             WHERE heartbeat_at > now() - $1 * interval '1 millisecond' ORDER BY id",
        )
        .bind(self.config.ttl_ms())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NodeInfo {
                id: r.get(0),
                address: r.get(1),
            })
            .collect())
    }
}
