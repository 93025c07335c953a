//! PostgreSQL: subscriptions and their per-shard offsets.
//!
//! A subscription belongs to a topic (by uid). Each (subscription, shard) pair that was ever
//! opened, committed, reset or read to its end has one offset row: the last consumed record
//! (`sequence`, `timestamp`, `batch_index`; -1/-1 when nothing was consumed), the offset
//! `version` (bumped by a reset), the `session_id` of the latest opener (-1: never opened) and
//! whether the subscription has read the (closed) shard to its end.
//!
//! A connector's subscription (`connector_id` set) holds the connector's checkpoints in the
//! same rows (`connectors.rs`: next_seq = `sequence`, last_time = `timestamp`, finished =
//! `read_end`, plus `discard_count` and `update_time`). Each writer updates only its own
//! columns, so an offset commit keeps the discard count and an open keeps the position.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::fenced::check_guard;
use super::PgStore;
use crate::rows::{LeaseGuard, OffsetRow, SubscriptionRow};
use crate::MetaError;

/// The columns [`subscription_from_row`] reads, in its order.
macro_rules! subscription_columns {
    () => {
        "sub_id, topic_uid, comment, state, create_time, last_modify_time, connector_id"
    };
}
pub(crate) use subscription_columns;

/// The columns [`offset_from_row`] reads, in its order.
macro_rules! offset_columns {
    () => {
        "sub_id, shard_id, sequence, timestamp, batch_index, version, session_id, read_end"
    };
}
pub(crate) use offset_columns;

/// A subscription from a row of `subscription_columns!()`.
pub(crate) fn subscription_from_row(r: &PgRow) -> SubscriptionRow {
    SubscriptionRow {
        sub_id: r.get(0),
        topic_uid: r.get(1),
        comment: r.get(2),
        state: r.get(3),
        create_time: r.get(4),
        last_modify_time: r.get(5),
        connector_id: r.get(6),
    }
}

/// An offset from a row of `offset_columns!()`.
pub(crate) fn offset_from_row(r: &PgRow) -> OffsetRow {
    let shard: i64 = r.get(1);
    OffsetRow {
        sub_id: r.get(0),
        shard_id: shard as u32,
        sequence: r.get(2),
        timestamp: r.get(3),
        batch_index: r.get(4),
        version: r.get(5),
        session_id: r.get(6),
        read_end: r.get(7),
    }
}

/// Inserts a subscription inside an open write transaction.
pub(crate) async fn insert_subscription_in(
    tx: &mut super::Tx<'_>,
    s: &SubscriptionRow,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO subscriptions (sub_id, topic_uid, comment, state, create_time, \
         last_modify_time, connector_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&s.sub_id)
    .bind(s.topic_uid)
    .bind(&s.comment)
    .bind(s.state)
    .bind(s.create_time)
    .bind(s.last_modify_time)
    .bind(&s.connector_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PgStore {
    /// Every subscription and offset, for the server's in-memory registry.
    pub(crate) async fn load_subscriptions(
        &self,
    ) -> Result<(Vec<SubscriptionRow>, Vec<OffsetRow>), MetaError> {
        let mut tx = self.snapshot().await?;
        let subs = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions ORDER BY create_time, sub_id"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(subscription_from_row)
        .collect();
        let offsets = sqlx::query(concat!(
            "SELECT ",
            offset_columns!(),
            " FROM sub_offsets ORDER BY sub_id, shard_id"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(offset_from_row)
        .collect();
        tx.commit().await?;
        Ok((subs, offsets))
    }

    pub(crate) async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| Box::pin(async move { insert_subscription_in(tx, s).await }))
            .await
    }

    /// Writes a subscription's comment, state and modification time.
    pub(crate) async fn update_subscription(&self, s: &SubscriptionRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| Box::pin(async move {
sqlx::query(
            "UPDATE subscriptions SET comment = $1, state = $2, last_modify_time = $3 WHERE sub_id = $4",
        )
        .bind(&s.comment)
        .bind(s.state)
        .bind(s.last_modify_time)
        .bind(&s.sub_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
})).await
    }

    /// Removes subscriptions with their offsets and consumer groups, in one transaction.
    pub(crate) async fn delete_subscriptions(&self, sub_ids: &[String]) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                for id in sub_ids {
                    for sql in [
                        "DELETE FROM subscriptions WHERE sub_id = $1",
                        "DELETE FROM sub_offsets WHERE sub_id = $1",
                        "DELETE FROM consumer_groups WHERE sub_id = $1",
                    ] {
                        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// Writes offsets (insert, or update the subscription API's columns of an existing row;
    /// a connector's discard count and update time are kept), all in one transaction: when
    /// this returns, they are committed (durable as the server is configured).
    pub(crate) async fn put_offsets(
        &self,
        rows: &[OffsetRow],
        guard: Option<&LeaseGuard>,
    ) -> Result<(), MetaError> {
        self.put_offset_rows(
            rows,
            guard,
            "sequence = excluded.sequence, timestamp = excluded.timestamp, \
             batch_index = excluded.batch_index, version = excluded.version, \
             session_id = excluded.session_id, read_end = excluded.read_end",
        )
        .await
    }

    /// Writes the session ids of offsets (a row that does not exist yet is inserted whole);
    /// the position of an existing row is left as it is, so an open never moves a connector
    /// that is writing its checkpoints at the same time.
    pub(crate) async fn put_sessions(
        &self,
        rows: &[OffsetRow],
        guard: Option<&LeaseGuard>,
    ) -> Result<(), MetaError> {
        self.put_offset_rows(rows, guard, "session_id = excluded.session_id")
            .await
    }

    /// Writes the read-end flags of offsets (a missing row is inserted whole), leaving the
    /// position of an existing row as it is.
    pub(crate) async fn put_read_ends(
        &self,
        rows: &[OffsetRow],
        guard: Option<&LeaseGuard>,
    ) -> Result<(), MetaError> {
        self.put_offset_rows(rows, guard, "read_end = excluded.read_end")
            .await
    }

    /// Inserts rows, or on an existing row sets the columns `on_conflict` names.
    async fn put_offset_rows(
        &self,
        rows: &[OffsetRow],
        guard: Option<&LeaseGuard>,
        on_conflict: &str,
    ) -> Result<(), MetaError> {
        let sql = format!(
            "INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, batch_index, \
             version, session_id, read_end) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (sub_id, shard_id) DO UPDATE SET {on_conflict}"
        );
        let sql = &sql;
        self.write(|tx| {
            Box::pin(async move {
                check_guard(tx, guard).await?;
                for o in rows {
                    sqlx::query(sql)
                        .bind(&o.sub_id)
                        .bind(o.shard_id as i64)
                        .bind(o.sequence)
                        .bind(o.timestamp)
                        .bind(o.batch_index)
                        .bind(o.version)
                        .bind(o.session_id)
                        .bind(o.read_end)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }
}
