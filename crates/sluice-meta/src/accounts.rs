//! Access keys (other than the root, which is never stored) and the append-only audit log.
//!
//! A key's secrets arrive here already sealed by the server (the store never sees a secret in
//! clear); grants are stored as the server renders them. The audit log is only appended to and
//! read in pages by its sequence number.

use sqlx::Row;

use crate::store::{MetaError, MetaStore};

/// One stored access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    pub name: String,
    pub access_id: String,
    /// The current secret, sealed.
    pub secret: String,
    /// The previous secret during a rotation, sealed.
    pub old_secret: Option<String>,
    /// When the previous secret stops working (ms); None: when it is retired.
    pub old_secret_expire_time: Option<i64>,
    /// JSON list of "action:project/topic".
    pub grants: String,
    pub enabled: bool,
    pub create_time: i64,
    pub last_used_time: i64,
    /// When the key stops working (ms); None: never.
    pub expire_time: Option<i64>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Assigned by the store on append (the value given to `append_audit` is ignored).
    pub seq: i64,
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub request_id: String,
    pub detail: String,
}

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

impl MetaStore {
    /// Every stored access key, by name.
    pub async fn load_access_keys(&self) -> Result<Vec<AccessKeyRow>, MetaError> {
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
    pub async fn save_access_key(&self, row: &AccessKeyRow) -> Result<(), MetaError> {
        self.write(|tx| {
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
    pub async fn delete_access_key(&self, name: &str) -> Result<bool, MetaError> {
        self.write(|tx| {
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
    pub async fn touch_access_key(&self, name: &str, time: i64) -> Result<(), MetaError> {
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
    pub async fn append_audit(&self, row: &AuditRow) -> Result<i64, MetaError> {
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
    pub async fn list_audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, MetaError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AccessKeyRow {
        AccessKeyRow {
            name: name.into(),
            access_id: format!("id-{name}"),
            secret: "sealed".into(),
            old_secret: None,
            old_secret_expire_time: None,
            grants: "[\"read:p/t\"]".into(),
            enabled: true,
            create_time: 1,
            last_used_time: 0,
            expire_time: Some(9),
        }
    }

    #[tokio::test]
    async fn keys_and_audit_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = MetaStore::open(&path).await.unwrap();
            store.save_access_key(&key("a")).await.unwrap();
            store.save_access_key(&key("b")).await.unwrap();
            let mut b = key("b");
            b.enabled = false;
            store.save_access_key(&b).await.unwrap();
            store.touch_access_key("a", 50).await.unwrap();
            store.touch_access_key("a", 40).await.unwrap();
            assert!(store.delete_access_key("b").await.unwrap());
            assert!(!store.delete_access_key("b").await.unwrap());
            for i in 0..3 {
                let row = AuditRow {
                    seq: 0,
                    time: i,
                    actor: "root".into(),
                    action: "CreateKey".into(),
                    resource: format!("key/{i}"),
                    request_id: "r".into(),
                    detail: String::new(),
                };
                store.append_audit(&row).await.unwrap();
            }
        }
        let store = MetaStore::open(&path).await.unwrap();
        let keys = store.load_access_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].last_used_time, 50);
        assert_eq!(keys[0].expire_time, Some(9));
        let page = store.list_audit(0, 2).await.unwrap();
        assert_eq!(page.len(), 2);
        let rest = store.list_audit(page[1].seq, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].resource, "key/2");
    }
}
