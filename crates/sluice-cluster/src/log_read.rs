//! Reads by SEQUENCE and lookups by SYSTEM_TIME from `log_entry`.
//!
//! A read first reads the shard head: its `next_seq` bounds what the read returns (rows of later
//! commits are left for the next read), and its `start_seq` is the oldest sequence it may
//! return. Rows must then continue without a gap from the requested sequence; a gap (retention
//! dropped the rows in between) is [`StoreError::OutOfRange`](sluice_log::store::StoreError),
//! never a silent skip.

use bytes::Bytes;
use sluice_log::Entry;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::log::{to_i64, to_u64, PgLogError};

/// A shard head's sequences.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    pub start_seq: u64,
    pub next_seq: u64,
}

/// Rows per statement of a read.
const ROWS_PER_STATEMENT: i64 = 256;

/// The rows holding sequences `>= $2`: from the last row starting at or before `$2`.
const ROWS_SQL: &str = "\
SELECT base_seq, count, system_time_ms, bytes FROM log_entry
 WHERE shard_key = $1
   AND base_seq >= COALESCE((SELECT max(base_seq) FROM log_entry
                              WHERE shard_key = $1 AND base_seq <= $2), $2)
 ORDER BY base_seq
 LIMIT $3";

pub(crate) async fn head(pool: &PgPool, key: &str) -> Result<Option<Head>, PgLogError> {
    let row = sqlx::query("SELECT start_seq, next_seq FROM shard_head WHERE shard_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| Head {
        start_seq: to_u64(r.get(0)),
        next_seq: to_u64(r.get(1)),
    }))
}

/// See [`sluice_log::store::ShardStore::read`]; also returns the head the read was bounded by.
pub(crate) async fn read(
    pool: &PgPool,
    key: &str,
    from_seq: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Result<(Vec<Entry>, Head), sluice_log::store::StoreError> {
    use sluice_log::store::StoreError;
    let head = head(pool, key).await?.ok_or(StoreError::NotFound)?;
    let first = head.start_seq.min(head.next_seq);
    if from_seq < first {
        return Err(StoreError::OutOfRange {
            requested: from_seq,
            first,
        });
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut next = from_seq;
    while next < head.next_seq && out.len() < max_entries {
        let rows = sqlx::query(ROWS_SQL)
            .bind(key)
            .bind(to_i64(next))
            .bind(ROWS_PER_STATEMENT)
            .fetch_all(pool)
            .await
            .map_err(PgLogError::from)?;
        let got = rows.len();
        for row in &rows {
            let (base, time, payloads) = decode_row(key, row)?;
            if base > next {
                // The rows from `next` on were dropped since the head was read.
                let first = head_start_after_gap(pool, key, base).await?;
                return Err(StoreError::OutOfRange {
                    requested: next,
                    first,
                });
            }
            for (seq, payload) in (base..).zip(payloads) {
                if seq < next {
                    continue;
                }
                if seq >= head.next_seq {
                    return Ok((out, head));
                }
                let bytes_full = bytes >= max_bytes || bytes + payload.len() > max_bytes;
                if out.len() >= max_entries || (!out.is_empty() && bytes_full) {
                    return Ok((out, head));
                }
                bytes += payload.len();
                out.push(Entry {
                    seq,
                    system_time: time,
                    payload,
                });
                next = seq + 1;
            }
        }
        if (got as i64) < ROWS_PER_STATEMENT {
            break;
        }
    }
    if out.is_empty() && max_entries > 0 && from_seq < head.next_seq {
        // Every row from `from_seq` on was dropped since the head was read.
        let first = head_start_after_gap(pool, key, from_seq).await?;
        return Err(StoreError::OutOfRange {
            requested: from_seq,
            first,
        });
    }
    Ok((out, head))
}

/// The oldest retained sequence after a read found a gap before `found`.
async fn head_start_after_gap(pool: &PgPool, key: &str, found: u64) -> Result<u64, PgLogError> {
    Ok(head(pool, key).await?.map_or(found, |h| h.start_seq))
}

/// One row's first sequence, time and payloads (zero-copy slices of its bytes).
pub(crate) fn decode_row(key: &str, row: &PgRow) -> Result<(u64, i64, Vec<Bytes>), PgLogError> {
    let base = to_u64(row.try_get(0)?);
    let count: i32 = row.try_get(1)?;
    let time: i64 = row.try_get(2)?;
    let bytes = Bytes::from(row.try_get::<Vec<u8>, _>(3)?);
    let corrupt = |reason: String| PgLogError::Corrupt {
        shard_key: key.to_string(),
        base_seq: base,
        reason,
    };
    let mut payloads = Vec::with_capacity(count.max(0) as usize);
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(len) = bytes.get(pos..pos + 4) else {
            return Err(corrupt("payload length cut short".into()));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let end = pos + 4 + len;
        if end > bytes.len() {
            return Err(corrupt("payload longer than the row".into()));
        }
        payloads.push(bytes.slice(pos + 4..end));
        pos = end;
    }
    if payloads.len() != count as usize {
        return Err(corrupt(format!(
            "{} payloads where count is {count}",
            payloads.len()
        )));
    }
    Ok((base, time, payloads))
}

/// See [`sluice_log::store::ShardStore::seq_at_or_after_time`].
pub(crate) async fn seq_at_or_after_time(
    pool: &PgPool,
    key: &str,
    t_ms: i64,
) -> Result<Option<u64>, sluice_log::store::StoreError> {
    let row = sqlx::query(
        "SELECT h.start_seq, h.next_seq,
                (SELECT GREATEST(e.base_seq, h.start_seq) FROM log_entry e
                  WHERE e.shard_key = $1 AND e.system_time_ms >= $2
                    AND e.base_seq + e.count > h.start_seq AND e.base_seq < h.next_seq
                  ORDER BY e.system_time_ms, e.base_seq LIMIT 1)
           FROM shard_head h WHERE h.shard_key = $1",
    )
    .bind(key)
    .bind(t_ms)
    .fetch_optional(pool)
    .await
    .map_err(PgLogError::from)?;
    let row = row.ok_or(sluice_log::store::StoreError::NotFound)?;
    let seq: Option<i64> = row.try_get(2).map_err(PgLogError::from)?;
    Ok(seq.map(to_u64))
}
