//! Connection pools for a cluster's PostgreSQL, shared by the metadata store and the cluster's
//! shard log (`sluice-cluster`).
//!
//! In a cluster the URL names a balancer (haproxy with Patroni's REST check) that routes to the
//! current primary. During a switchover or after the primary was killed, the balancer can still
//! send a new connection to the old primary, which came back as a read-only standby; such a
//! connection would fail every write it carries for as long as it stays pooled. So:
//! - a new connection is refused when its server is in recovery (a standby), and the pool
//!   tries again on its next acquire;
//! - a connection whose statement failed because its server is gone, shutting down or read-only
//!   is closed by its user ([`server_is_spent`]), never handed out again;
//! - a connection idle for longer than [`PING_AFTER_IDLE`] is checked with one round trip
//!   before it is lent out. sqlx's own check (`test_before_acquire`) would cost that round trip
//!   on every acquire, which is every append statement.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::Connection;

/// A pooled connection idle for longer than this is pinged before use.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool options for a cluster's PostgreSQL primary: at most `max_connections`, standbys refused
/// at connect, idle connections pinged before use (see the module docs).
pub fn primary_pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut *conn)
                    .await?;
                if standby {
                    return Err(sqlx::Error::Protocol(
                        "the server is a standby (in recovery), not the primary".into(),
                    ));
                }
                Ok(())
            })
        })
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Whether a statement's error means its connection's server is gone or can no longer take
/// writes: the connection is then closed rather than pooled. Covers I/O and protocol failures,
/// SQLSTATE class 08 (connection exception), 57P01–57P03 (administrator or crash shutdown,
/// cannot connect now) and 25006 (read-only transaction: the server became a standby).
pub fn server_is_spent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            code.starts_with("08") || code.starts_with("57P") || code == "25006"
        }
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_spend_the_connection_and_row_errors_do_not() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(server_is_spent(&io));
        assert!(!server_is_spent(&sqlx::Error::RowNotFound));
        assert!(!server_is_spent(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
