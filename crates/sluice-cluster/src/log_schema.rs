//! The log's tables, its daily partitions, and retention by dropping partitions.
//!
//! Partition `log_entry_pYYYYMMDD` holds the rows whose `system_time_ms` falls in that UTC day.
//! They are created `partition_days_ahead` days ahead of the primary's clock (and one day back,
//! for a clock that was ahead), at connect and then every hour; an append whose time has no
//! partition fails as a whole and nothing of it is stored. Schema changes take an advisory
//! lock, so nodes starting together do not race.

use std::sync::Weak;
use std::time::Duration;

use sqlx::PgPool;

use crate::log::{Inner, PgLogError};

const DAY_MS: i64 = 86_400_000;
/// Advisory lock key of schema changes ("sluice-log" folded into an i64).
const SCHEMA_LOCK: i64 = 0x736c_7569_6365_6c6f;
const PARTITION_PREFIX: &str = "log_entry_p";

const TABLES_SQL: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS shard_head (
        shard_key    text PRIMARY KEY,
        state        text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'CLOSED')),
        next_seq     bigint NOT NULL DEFAULT 0,
        start_seq    bigint NOT NULL DEFAULT 0,
        archived_seq bigint NOT NULL DEFAULT 0,
        last_time_ms bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS log_entry (
        shard_key      text NOT NULL,
        base_seq       bigint NOT NULL,
        count          integer NOT NULL CHECK (count > 0),
        system_time_ms bigint NOT NULL,
        bytes          bytea NOT NULL) PARTITION BY RANGE (system_time_ms)",
    "CREATE INDEX IF NOT EXISTS log_entry_by_seq ON log_entry (shard_key, base_seq)",
    "CREATE INDEX IF NOT EXISTS log_entry_by_time ON log_entry (shard_key, system_time_ms, base_seq)",
];

/// Creates the tables and indexes that are missing.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), PgLogError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for sql in TABLES_SQL {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    compress_bytes_with_lz4(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Stored batches are TOASTed (a put's bytes are kilobytes); PostgreSQL compresses them with
/// pglz by default, which costs the primary CPU on every append and the archiver on every read
/// (a benchmark put of 13.6 KB became 10.1 KB). lz4 does the same job at a fraction of the CPU.
/// New partitions take the parent's setting; existing ones are set too (their stored values
/// stay as they are). A server without lz4 (built without it, or before PostgreSQL 14) keeps
/// pglz: the statements run under a savepoint that is rolled back on any error.
async fn compress_bytes_with_lz4(tx: &mut sqlx::PgConnection) -> Result<(), PgLogError> {
    sqlx::query("SAVEPOINT log_entry_lz4")
        .execute(&mut *tx)
        .await?;
    let set = async {
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'log_entry'::regclass AND c.relname LIKE $1",
        )
        .bind(format!("{PARTITION_PREFIX}%"))
        .fetch_all(&mut *tx)
        .await?;
        for table in std::iter::once("log_entry".to_string()).chain(partitions) {
            let sql = format!("ALTER TABLE {table} ALTER COLUMN bytes SET COMPRESSION lz4");
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match set {
        Ok(()) => sqlx::query("RELEASE SAVEPOINT log_entry_lz4"),
        Err(e) => {
            tracing::info!(error = %e, "log_entry.bytes keeps PostgreSQL's default compression");
            sqlx::query("ROLLBACK TO SAVEPOINT log_entry_lz4")
        }
    }
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The partition name of the UTC day starting at `day_start_ms`.
fn partition_name(day_start_ms: i64) -> String {
    let days = day_start_ms.div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    format!("{PARTITION_PREFIX}{y:04}{m:02}{d:02}")
}

/// The start (ms) of the UTC day a partition name stands for.
fn partition_day_start(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PARTITION_PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[0..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..8].parse().ok()?;
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The log's partitions: (name, first ms of its day).
async fn partitions(pool: &PgPool) -> Result<Vec<(String, i64)>, PgLogError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'log_entry'::regclass",
    )
    .fetch_all(pool)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|n| partition_day_start(&n).map(|s| (n, s)))
        .collect())
}

/// Creates the daily partitions from yesterday to `days_ahead` days after today (by the
/// primary's clock) that do not exist yet. Returns how many it created.
pub(crate) async fn ensure_partitions(pool: &PgPool, days_ahead: u32) -> Result<usize, PgLogError> {
    let now: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            .fetch_one(pool)
            .await?;
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let existing = partitions(pool).await?;
    let wanted: Vec<i64> = (-1..=i64::from(days_ahead))
        .map(|d| today + d * DAY_MS)
        .filter(|s| !existing.iter().any(|(_, e)| e == s))
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for start in &wanted {
        // Names and bounds are made here from integers, never from input.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF log_entry FOR VALUES FROM ({start}) TO ({})",
            partition_name(*start),
            start + DAY_MS
        );
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(wanted.len())
}

/// Re-creates partitions ahead every hour while the log lives.
pub(crate) fn spawn_partition_upkeep(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = ensure_partitions(&inner.pool, inner.opts.partition_days_ahead).await {
                tracing::warn!(error = %e, "creating cluster log partitions failed");
            }
        }
    });
}

/// Drops the partitions whose day ends at or before `cutoff_ms`; before each drop, in the same
/// transaction, raises `start_seq` of every shard with rows in it past its last row there
/// (times, hence partitions, follow sequence order within a shard).
pub(crate) async fn drop_partitions_before(
    pool: &PgPool,
    cutoff_ms: i64,
) -> Result<usize, PgLogError> {
    let mut old: Vec<(String, i64)> = partitions(pool)
        .await?
        .into_iter()
        .filter(|(_, start)| start + DAY_MS <= cutoff_ms)
        .collect();
    old.sort_by_key(|(_, start)| *start);
    for (name, _) in &old {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        let raised = sqlx::query(&format!(
            "UPDATE shard_head h SET start_seq = GREATEST(h.start_seq, p.end_seq)
               FROM (SELECT shard_key, max(base_seq + count) AS end_seq FROM {name}
                      GROUP BY shard_key) p
              WHERE h.shard_key = p.shard_key"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(partition = %name, shards = raised.rows_affected(), "dropped log partition");
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        for days in [-1000i64, 0, 1, 59, 365, 20_422, 30_000] {
            let start = days * DAY_MS;
            let name = partition_name(start);
            assert_eq!(partition_day_start(&name), Some(start), "{name}");
        }
        assert_eq!(partition_name(0), "log_entry_p19700101");
        assert_eq!(partition_name(20_422 * DAY_MS), "log_entry_p20251130");
        assert_eq!(partition_day_start("log_entry_p2025113"), None);
        assert_eq!(partition_day_start("other"), None);
    }
}
