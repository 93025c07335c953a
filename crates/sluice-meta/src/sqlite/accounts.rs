//! SQLite: access keys (other than the root, which is never stored) and the append-only audit log.
//!
//! A key's secrets arrive here already sealed by the server (the store never sees a secret in
//! clear); grants are stored as the server renders them. The audit log is only appended to and
//! read in pages by its sequence number.

use sqlx::Row;

use super::SqliteStore;
use crate::rows::{AccessKeyRow, AuditRow};
use crate::MetaError;

const KEY_COLUMNS: &str = "name, access_id, secret, old_secret, old_secret_expire_time, grants, \
     enabled, create_time, last_used_time, expire_time";

fn key_row(r: sqlx::sqlite::SqliteRow) -> AccessKeyRow {
    AccessKeyRow {
        name: r.get(0),
        access_id: r.get(1),
        secret: r.get(2),
        old_secret: r.get(3),
        old_secret_expire_time: r.get(4),
        grants: r.get(5),
        enabled: r.get::<i64, _>(6) != 0,
        create_time: r.get(7),
        last_used_time: r.get(8),
        expire_time: r.get(9),
    }
}

impl SqliteStore {
    /// Every stored access key, by name.
    pub(crate) async fn load_access_keys(&self) -> Result<Vec<AccessKeyRow>, MetaError> {
        Ok(sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM access_keys ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(key_row)
        .collect())
    }

    /// Inserts a key, or replaces the stored key of the same name.
    pub(crate) async fn save_access_key(&self, row: &AccessKeyRow) -> Result<(), MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                sqlx::query(&format!(
                    "INSERT OR REPLACE INTO access_keys ({KEY_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(&row.name)
                .bind(&row.access_id)
                .bind(&row.secret)
                .bind(&row.old_secret)
                .bind(row.old_secret_expire_time)
                .bind(&row.grants)
                .bind(row.enabled as i64)
                .bind(row.create_time)
                .bind(row.last_used_time)
                .bind(row.expire_time)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes a key; returns whether it existed.
    pub(crate) async fn delete_access_key(&self, name: &str) -> Result<bool, MetaError> {
        self.write_catalog(|tx| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM access_keys WHERE name = ?")
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    /// Records when a key was last used (never moves the time backwards).
    pub(crate) async fn touch_access_key(&self, name: &str, time: i64) -> Result<(), MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE access_keys SET last_used_time = ? \
                     WHERE name = ? AND last_used_time < ?",
                )
                .bind(time)
                .bind(name)
                .bind(time)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Appends an entry to the audit log and returns its sequence number.
    pub(crate) async fn append_audit(&self, row: &AuditRow) -> Result<i64, MetaError> {
        self.write(|tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO audit_log (time, actor, action, resource, request_id, detail) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(row.time)
                .bind(&row.actor)
                .bind(&row.action)
                .bind(&row.resource)
                .bind(&row.request_id)
                .bind(&row.detail)
                .execute(&mut **tx)
                .await?;
                Ok(done.last_insert_rowid())
            })
        })
        .await
    }

    /// Up to `limit` audit entries with a sequence number above `after`, oldest first.
    pub(crate) async fn list_audit(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, MetaError> {
        Ok(sqlx::query(
            "SELECT seq, time, actor, action, resource, request_id, detail FROM audit_log \
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| AuditRow {
            seq: r.get(0),
            time: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            resource: r.get(4),
            request_id: r.get(5),
            detail: r.get(6),
        })
        .collect())
    }
}
