//! PostgreSQL, cluster mode: offsets that any node serves (issue 14, "offset commits go to any
//! node, as one checked UPDATE").
//!
//! The stored row is the truth. A subscription's owner (the node holding its `sub:` lease) still
//! opens sessions and resets offsets, but a commit is one conditional UPDATE per shard at
//! whichever node it reaches, checked against the stored session and version, and a get reads
//! the stored rows. So the owner's memory never has to see a commit:
//! - [`PgStore::commit_offsets_checked`]: all of a request's shards in one transaction that
//!   locks their rows (in shard order, so two commits never deadlock), checks every one and
//!   only then writes them all; the first shard whose session is closed or whose session or
//!   version moved stops the commit before anything is written, and says why;
//! - [`PgStore::open_sessions`]: the owner's session bump, fenced by its lease, returns each
//!   row as stored after the bump, so an open answers the position the last commit left
//!   (wherever it was made), and a commit still carrying the old session fails from then on;
//! - [`PgStore::load_offsets`]: the stored rows of some shards.

use std::collections::HashMap;

use sqlx::Row;

use super::fenced::check_guard;
use super::subscriptions::{offset_columns, offset_from_row};
use super::PgStore;
use crate::rows::{CheckedCommit, CommitConflict, LeaseGuard, OffsetRow};
use crate::MetaError;

/// Locks the stored rows of the request's shards (in shard order, so two commits never
/// deadlock) and reads their session and version as last committed.
const LOCK_SQL: &str = "\
SELECT shard_id, session_id, version FROM sub_offsets
 WHERE sub_id = $1 AND shard_id = ANY($2) ORDER BY shard_id FOR UPDATE";

/// Sets the positions of the request's shards.
const COMMIT_SQL: &str = "\
UPDATE sub_offsets o SET sequence = r.sequence, timestamp = r.timestamp, batch_index = r.batch_index
  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
       AS r(shard_id, sequence, timestamp, batch_index)
 WHERE o.sub_id = $1 AND o.shard_id = r.shard_id";

/// Bumps a shard's session (the first is 1), inserting a fresh row if there is none, and
/// returns the row as stored after the bump.
const OPEN_SQL: &str = concat!(
    "INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, batch_index, version, \
     session_id, read_end) VALUES ($1, $2, -1, -1, 0, 0, 1, false) \
     ON CONFLICT (sub_id, shard_id) DO UPDATE \
     SET session_id = GREATEST(sub_offsets.session_id, 0) + 1 RETURNING ",
    offset_columns!()
);

impl PgStore {
    /// Commits positions of several shards of `sub_id` at once, each checked against the stored
    /// session and version; `Ok(Some(conflict))` when one did not hold (nothing was written).
    pub(crate) async fn commit_offsets_checked(
        &self,
        sub_id: &str,
        commits: &[CheckedCommit],
    ) -> Result<Option<CommitConflict>, MetaError> {
        let shard_ids: Vec<i64> = commits.iter().map(|c| i64::from(c.shard_id)).collect();
        let shard_ids = &shard_ids;
        self.write(|tx| {
            Box::pin(async move {
                let stored: HashMap<i64, (i64, i64)> = sqlx::query(LOCK_SQL)
                    .bind(sub_id)
                    .bind(shard_ids)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect();
                for c in commits {
                    let found = stored.get(&i64::from(c.shard_id)).copied();
                    if let Some(conflict) = conflict_of(c, found) {
                        // Nothing written: the transaction commits no change.
                        return Ok(Some(conflict));
                    }
                }
                let column =
                    |f: fn(&CheckedCommit) -> i64| -> Vec<i64> { commits.iter().map(f).collect() };
                sqlx::query(COMMIT_SQL)
                    .bind(sub_id)
                    .bind(shard_ids)
                    .bind(column(|c| c.sequence))
                    .bind(column(|c| c.timestamp))
                    .bind(column(|c| c.batch_index))
                    .execute(&mut **tx)
                    .await?;
                Ok(None)
            })
        })
        .await
    }

    /// Opens a new session on each of `shards` of `sub_id` while `guard`'s lease holds; returns
    /// the rows as stored after the bump, in `shards`' order.
    pub(crate) async fn open_sessions(
        &self,
        sub_id: &str,
        shards: &[u32],
        guard: &LeaseGuard,
    ) -> Result<Vec<OffsetRow>, MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                check_guard(tx, Some(guard)).await?;
                let mut out = Vec::with_capacity(shards.len());
                for shard in shards {
                    let row = sqlx::query(OPEN_SQL)
                        .bind(sub_id)
                        .bind(i64::from(*shard))
                        .fetch_one(&mut **tx)
                        .await?;
                    out.push(offset_from_row(&row));
                }
                Ok(out)
            })
        })
        .await
    }

    /// The stored offsets of `shards` of `sub_id` (a shard never opened has no row).
    pub(crate) async fn load_offsets(
        &self,
        sub_id: &str,
        shards: &[u32],
    ) -> Result<Vec<OffsetRow>, MetaError> {
        let ids: Vec<i64> = shards.iter().map(|s| i64::from(*s)).collect();
        Ok(sqlx::query(concat!(
            "SELECT ",
            offset_columns!(),
            " FROM sub_offsets WHERE sub_id = $1 AND shard_id = ANY($2) ORDER BY shard_id"
        ))
        .bind(sub_id)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(offset_from_row)
        .collect())
    }
}

/// Whether a commit holds against the stored (session, version) of its shard, and if not why:
/// no open session first, then a reset (the version), then another opener (the session), as the
/// embedded mode checks them.
fn conflict_of(c: &CheckedCommit, stored: Option<(i64, i64)>) -> Option<CommitConflict> {
    let shard_id = c.shard_id;
    let (session, version) = match stored {
        Some((session, version)) if session >= 0 => (session, version),
        _ => return Some(CommitConflict::NoSession { shard_id }),
    };
    if c.version.is_some_and(|v| v != version) {
        return Some(CommitConflict::VersionChanged {
            shard_id,
            current: version,
        });
    }
    if c.session_id.is_some_and(|s| s != session) {
        return Some(CommitConflict::SessionChanged {
            shard_id,
            current: session,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(version: Option<i64>, session_id: Option<i64>) -> CheckedCommit {
        CheckedCommit {
            shard_id: 2,
            sequence: 9,
            timestamp: 9,
            batch_index: 0,
            version,
            session_id,
        }
    }

    #[test]
    fn a_conflict_names_the_first_check_that_failed() {
        let c = commit(Some(1), Some(3));
        assert_eq!(
            conflict_of(&c, None),
            Some(CommitConflict::NoSession { shard_id: 2 })
        );
        assert_eq!(
            conflict_of(&c, Some((-1, 1))),
            Some(CommitConflict::NoSession { shard_id: 2 })
        );
        assert_eq!(
            conflict_of(&c, Some((4, 2))),
            Some(CommitConflict::VersionChanged {
                shard_id: 2,
                current: 2
            })
        );
        assert_eq!(
            conflict_of(&c, Some((4, 1))),
            Some(CommitConflict::SessionChanged {
                shard_id: 2,
                current: 4
            })
        );
        assert_eq!(conflict_of(&c, Some((3, 1))), None);
        assert_eq!(conflict_of(&commit(None, None), Some((7, 5))), None);
    }
}
