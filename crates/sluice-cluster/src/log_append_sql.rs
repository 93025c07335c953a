//! The sequencer statement: one autocommit statement appends the puts of a batch that may span
//! several shards (see `log.rs` for why it is never cancelled).
//!
//! The shard heads are locked in key order before any is updated (`ORDER BY shard_key FOR
//! UPDATE`: PostgreSQL locks the rows as the sort hands them out), so two nodes' statements over
//! overlapping shards wait for each other instead of deadlocking. A transaction elsewhere that
//! locks several heads in another order could still meet an append in a deadlock; PostgreSQL
//! then rolls one of them back, and an append rolled back that way is simply run again.

use std::collections::HashMap;

use sluice_log::store::{BackendError, StoreError};
use sqlx::Row;

use crate::log::{to_u64, Inner};

/// The statement, from its `want` and `locked` parts (below). `$1` the shards' keys and `$2` the
/// entries each takes in all; `$3`..`$6` one element per put: its shard's key, its offset from
/// the shard's first sequence in this statement, its entry count, its bytes. Returns one row per
/// shard that was appended: its first sequence in this statement and its system time.
macro_rules! append_statement {
    ($want:literal, $locked:literal) => {
        concat!(
            "WITH want AS (",
            $want,
            "), locked AS (",
            $locked,
            "), head AS (
    UPDATE shard_head h
       SET next_seq = h.next_seq + w.n,
           last_time_ms = GREATEST(h.last_time_ms,
               (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
      FROM want w, locked l
     WHERE h.shard_key = w.shard_key AND l.shard_key = w.shard_key AND h.state = 'ACTIVE'
 RETURNING h.shard_key, h.next_seq - w.n AS base_seq, h.last_time_ms
), rows AS (
    INSERT INTO log_entry (shard_key, base_seq, count, system_time_ms, bytes)
    SELECT p.shard_key, head.base_seq + p.off, p.cnt, head.last_time_ms, p.bytes
      FROM head
      JOIN unnest($3::text[], $4::bigint[], $5::int[], $6::bytea[]) AS p(shard_key, off, cnt, bytes)
        ON p.shard_key = head.shard_key
)
SELECT shard_key, base_seq, last_time_ms FROM head"
        )
    };
}

/// Appends to every ACTIVE shard of the statement.
const APPEND_SQL: &str = append_statement!(
    "SELECT w.shard_key, w.n FROM unnest($1::text[], $2::bigint[]) AS w(shard_key, n)",
    "SELECT h.shard_key FROM shard_head h
     WHERE h.shard_key = ANY($1::text[]) AND h.state = 'ACTIVE'
     ORDER BY h.shard_key
       FOR UPDATE"
);

/// Appends to every ACTIVE shard of the statement whose puts were checked against the catalog
/// version the shared catalog still has (`$7`, one element per shard; NULL: not checked). The
/// version is the `catalog_version` row of the metadata (sluice-meta's PostgreSQL migrations,
/// in the same database), read in the statement's own snapshot: a catalog change committed
/// before the statement began refuses the puts checked against the older version, and one
/// that commits while the statement waits for a head's lock is ordered after the append (a
/// split or delete it waited for still refuses it: the head is no longer ACTIVE).
const APPEND_CHECKED_SQL: &str = append_statement!(
    "SELECT w.shard_key, w.n, w.catalog_seen
       FROM unnest($1::text[], $2::bigint[], $7::bigint[]) AS w(shard_key, n, catalog_seen)",
    "SELECT h.shard_key FROM shard_head h JOIN want w ON w.shard_key = h.shard_key
     WHERE h.state = 'ACTIVE'
       AND (w.catalog_seen IS NULL
            OR w.catalog_seen >= (SELECT version FROM catalog_version))
     ORDER BY h.shard_key
       FOR UPDATE OF h"
);

/// How many times a statement that PostgreSQL rolled back as a deadlock victim (or for a
/// serialization failure) is run again before its puts fail.
const DEADLOCK_RETRIES: u32 = 5;

/// One put of a statement: its shard (an index into the statement's shards), entries, bytes.
pub(crate) struct PutRef<'a> {
    pub shard: usize,
    pub count: u32,
    pub bytes: &'a [u8],
}

/// How one shard's part of a statement ended.
pub(crate) enum ShardOutcome {
    /// Committed: the shard's first sequence in the statement, and its system time.
    Appended { base_seq: u64, system_time: i64 },
    /// Not appended: the shard is closed.
    Closed,
    /// Not appended: no such shard.
    NotFound,
    /// Not appended: the shard's puts were checked against catalog version `seen`, and the
    /// shared catalog has moved past it.
    CatalogMoved { seen: i64 },
    /// Not appended, and looking up why failed (the message says how).
    Unexplained(String),
}

/// Errors of one statement as a whole.
#[derive(thiserror::Error, Debug)]
pub(crate) enum AppendFailure {
    #[error("could not get a connection: {0}")]
    Acquire(#[source] sqlx::Error),
    #[error("append statement failed: {0}")]
    Statement(#[source] sqlx::Error),
}

impl AppendFailure {
    /// The error each put of the failed statement gets.
    pub(crate) fn to_store_error(&self) -> StoreError {
        let boxed = || -> BackendError { self.to_string().into() };
        match self {
            AppendFailure::Acquire(_) => StoreError::Backend(boxed()),
            // The server answered with an error: the autocommit statement rolled back.
            AppendFailure::Statement(sqlx::Error::Database(_)) => StoreError::Backend(boxed()),
            // The connection broke after the statement was sent: it may have committed.
            AppendFailure::Statement(_) => StoreError::OutcomeUnknown(boxed()),
        }
    }
}

/// Whether PostgreSQL rolled the statement back to break a deadlock or a serialization conflict
/// (nothing of it is stored; running it again is safe).
fn rolled_back_for_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

/// Runs one statement for `shards` (distinct keys; `catalog_seen`, per shard, the catalog
/// version its puts were checked against, if any) and `puts` (each put's shard is an index into
/// `shards`; a shard's puts in the order they get their sequences). Returns each shard's outcome,
/// in the order of `shards`.
pub(crate) async fn execute(
    log: &Inner,
    shards: &[&str],
    catalog_seen: &[Option<i64>],
    puts: &[PutRef<'_>],
) -> Result<Vec<ShardOutcome>, AppendFailure> {
    let mut totals = vec![0i64; shards.len()];
    let mut put_keys = Vec::with_capacity(puts.len());
    let mut offs = Vec::with_capacity(puts.len());
    let mut counts = Vec::with_capacity(puts.len());
    let mut bytes = Vec::with_capacity(puts.len());
    for p in puts {
        put_keys.push(shards[p.shard]);
        offs.push(totals[p.shard]);
        counts.push(p.count as i32);
        bytes.push(p.bytes);
        totals[p.shard] += i64::from(p.count);
    }
    // Acquired first, so that a pool timeout is told apart from a statement that was sent.
    let mut conn = log.pool.acquire().await.map_err(AppendFailure::Acquire)?;
    let mut attempt = 0;
    let checked = catalog_seen.iter().any(Option::is_some);
    let sql = if checked {
        APPEND_CHECKED_SQL
    } else {
        APPEND_SQL
    };
    let rows = loop {
        let mut query = sqlx::query(sql)
            .bind(shards)
            .bind(&totals)
            .bind(&put_keys)
            .bind(&offs)
            .bind(&counts)
            .bind(&bytes);
        if checked {
            query = query.bind(catalog_seen);
        }
        let result = query.fetch_all(&mut *conn).await;
        match result {
            Ok(rows) => break rows,
            Err(e) if rolled_back_for_conflict(&e) && attempt < DEADLOCK_RETRIES => {
                attempt += 1;
                log.dispatcher
                    .conflicts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(error = %e, attempt, "append rolled back by a conflict; again");
            }
            Err(e) => {
                // A server that is gone, shutting down or now a standby fails every later
                // statement on this connection too: close it instead of pooling it.
                if sluice_meta::pg_pool::server_is_spent(&e) {
                    conn.close_on_drop();
                }
                return Err(AppendFailure::Statement(e));
            }
        }
    };
    let mut appended: HashMap<String, (u64, i64)> = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: String = row.try_get(0).map_err(AppendFailure::Statement)?;
        let base: i64 = row.try_get(1).map_err(AppendFailure::Statement)?;
        let time: i64 = row.try_get(2).map_err(AppendFailure::Statement)?;
        appended.insert(key, (to_u64(base), time));
    }
    let missing: Vec<&str> = shards
        .iter()
        .copied()
        .filter(|k| !appended.contains_key(*k))
        .collect();
    // The committed shards' outcome stands whatever this lookup does. A head still ACTIVE
    // was passed over only by the catalog check (a closed head never opens again).
    let existing: Result<Vec<(String, String)>, sqlx::Error> = if missing.is_empty() {
        Ok(Vec::new())
    } else {
        sqlx::query_as("SELECT shard_key, state FROM shard_head WHERE shard_key = ANY($1)")
            .bind(&missing)
            .fetch_all(&mut *conn)
            .await
    };
    Ok(shards
        .iter()
        .zip(catalog_seen)
        .map(|(k, seen)| match (appended.get(*k), &existing) {
            (Some(&(base_seq, system_time)), _) => ShardOutcome::Appended {
                base_seq,
                system_time,
            },
            (None, Ok(existing)) => match (existing.iter().find(|(e, _)| e == k), seen) {
                (Some((_, state)), Some(seen)) if state == "ACTIVE" => {
                    ShardOutcome::CatalogMoved { seen: *seen }
                }
                (Some(_), _) => ShardOutcome::Closed,
                (None, _) => ShardOutcome::NotFound,
            },
            (None, Err(e)) => ShardOutcome::Unexplained(format!(
                "no shard head was updated, and looking up why failed: {e}"
            )),
        })
        .collect())
}
