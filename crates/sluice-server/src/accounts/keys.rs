//! The stored access keys: their rows in the meta store (secrets sealed with the server key)
//! and an in-memory copy with the secrets opened, which request verification reads. Every
//! change writes the store first and then replaces the in-memory copy, so a disabled, deleted
//! or retired key is refused from the next request on.
//!
//! A key's last-used time is written at most once a minute per key, not per request.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use sluice_meta::{AccessKeyRow, MetaStore};

use super::policy::Grant;
use super::sealing::ServerKey;
use crate::service::catalog::now_ms;
use crate::service::Error;

/// How often a key's last-used time is written at most.
pub const LAST_USED_EVERY_MS: i64 = 60_000;

/// A key as verification sees it.
#[derive(Clone)]
pub struct LiveKey {
    pub name: String,
    /// The secrets accepted now, with their expiry (ms; None: none of its own).
    pub secrets: Vec<(String, Option<i64>)>,
    pub grants: Vec<Grant>,
    pub enabled: bool,
    pub expire_time: Option<i64>,
}

impl std::fmt::Debug for LiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKey")
            .field("name", &self.name)
            .field("secrets", &self.secrets.len())
            .field("grants", &self.grants)
            .field("enabled", &self.enabled)
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

impl LiveKey {
    /// The secrets that sign validly at `now` (none if the key is disabled or expired).
    pub fn valid_secrets(&self, now: i64) -> Vec<&str> {
        if !self.enabled || self.expire_time.is_some_and(|e| e <= now) {
            return Vec::new();
        }
        self.secrets
            .iter()
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(s, _)| s.as_str())
            .collect()
    }
}

/// What the list call shows of a key: never a secret.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    pub name: String,
    pub access_id: String,
    pub allow: Vec<String>,
    pub enabled: bool,
    pub create_time: i64,
    pub last_used_time: i64,
    pub expire_time: Option<i64>,
    /// Whether an old secret is still valid (a rotation in progress), and until when.
    pub rotating: bool,
    pub old_secret_expire_time: Option<i64>,
}

/// A new key's or a rotated key's credentials, shown once.
#[derive(Clone, serde::Serialize)]
pub struct NewCredentials {
    #[serde(rename = "AccessId")]
    pub access_id: String,
    #[serde(rename = "AccessKey")]
    pub access_key: String,
}

/// The stored keys and their in-memory copy.
pub struct KeyRegistry {
    meta: MetaStore,
    sealer: ServerKey,
    rows: Mutex<HashMap<String, AccessKeyRow>>,
    by_id: RwLock<Arc<HashMap<String, LiveKey>>>,
    /// When each key's last-used time was last written (ms).
    touched: Mutex<HashMap<String, i64>>,
    /// Serializes changes, so the store and the memory agree.
    change: tokio::sync::Mutex<()>,
}

fn parse_grants(json: &str, name: &str) -> Result<Vec<Grant>, Error> {
    let list: Vec<String> = serde_json::from_str(json)
        .map_err(|e| Error::Internal(format!("key {name:?}: unreadable grants: {e}")))?;
    list.iter()
        .map(|g| Grant::parse(g).map_err(|e| Error::Internal(format!("key {name:?}: {e}"))))
        .collect()
}

impl KeyRegistry {
    /// Loads the stored keys, opening their secrets with the server key.
    pub async fn load(meta: MetaStore, sealer: ServerKey) -> Result<KeyRegistry, Error> {
        let stored = meta.load_access_keys().await?;
        let registry = KeyRegistry {
            meta,
            sealer,
            rows: Mutex::new(stored.into_iter().map(|r| (r.name.clone(), r)).collect()),
            by_id: RwLock::new(Arc::new(HashMap::new())),
            touched: Mutex::new(HashMap::new()),
            change: tokio::sync::Mutex::new(()),
        };
        registry.rebuild()?;
        Ok(registry)
    }

    fn live(&self, row: &AccessKeyRow) -> Result<LiveKey, Error> {
        let mut secrets = vec![(self.sealer.open(&row.secret, &row.name)?, None)];
        if let Some(old) = &row.old_secret {
            secrets.push((
                self.sealer.open(old, &row.name)?,
                row.old_secret_expire_time,
            ));
        }
        Ok(LiveKey {
            name: row.name.clone(),
            secrets,
            grants: parse_grants(&row.grants, &row.name)?,
            enabled: row.enabled,
            expire_time: row.expire_time,
        })
    }

    // issue 14: cluster
    /// Reloads the stored keys after another node changed them.
    pub async fn reload(&self) -> Result<(), Error> {
        let _change = self.change.lock().await;
        let stored = self.meta.load_access_keys().await?;
        *self.rows.lock() = stored.into_iter().map(|r| (r.name.clone(), r)).collect();
        self.rebuild()
    }

    /// Rebuilds the in-memory copy from the rows.
    fn rebuild(&self) -> Result<(), Error> {
        let rows = self.rows.lock();
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in rows.values() {
            by_id.insert(row.access_id.clone(), self.live(row)?);
        }
        *self.by_id.write() = Arc::new(by_id);
        Ok(())
    }

    /// The key of an access id.
    pub fn get(&self, access_id: &str) -> Option<LiveKey> {
        self.by_id.read().get(access_id).cloned()
    }

    /// Notes that a key signed a request; writes the time at most once a minute per key.
    pub fn used(&self, name: &str) {
        let now = now_ms();
        {
            let mut touched = self.touched.lock();
            let last = touched.get(name).copied().unwrap_or(0);
            if now - last < LAST_USED_EVERY_MS {
                return;
            }
            touched.insert(name.to_string(), now);
        }
        if let Some(row) = self.rows.lock().get_mut(name) {
            row.last_used_time = now;
        }
        let meta = self.meta.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = meta.touch_access_key(&name, now).await {
                tracing::warn!(key = %name, error = %e, "cannot record a key's last use");
            }
        });
    }

    /// Every key, without secrets.
    pub fn list(&self) -> Vec<KeyInfo> {
        let now = now_ms();
        let mut list: Vec<KeyInfo> = self
            .rows
            .lock()
            .values()
            .map(|r| KeyInfo {
                name: r.name.clone(),
                access_id: r.access_id.clone(),
                allow: serde_json::from_str(&r.grants).unwrap_or_default(),
                enabled: r.enabled,
                create_time: r.create_time,
                last_used_time: r.last_used_time,
                expire_time: r.expire_time,
                rotating: r.old_secret.is_some()
                    && r.old_secret_expire_time.is_none_or(|e| e > now),
                old_secret_expire_time: r.old_secret_expire_time,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn new_secret(&self) -> Result<String, Error> {
        Ok(B64.encode(self.sealer.random(30)?))
    }

    /// Stores a changed row, then makes it live.
    async fn store(&self, row: AccessKeyRow) -> Result<(), Error> {
        self.live(&row)?;
        self.meta.save_access_key(&row).await?;
        self.rows.lock().insert(row.name.clone(), row);
        self.rebuild()
    }

    fn row(&self, name: &str) -> Result<AccessKeyRow, Error> {
        self.rows.lock().get(name).cloned().ok_or_else(|| {
            Error::InvalidParameter(format!("there is no access key named {name:?}"))
        })
    }

    /// Creates a key; `root_id` is refused as an access id. Returns its credentials, once.
    pub async fn create(
        &self,
        name: &str,
        grants: &[Grant],
        expire_time: Option<i64>,
        root_id: &str,
    ) -> Result<NewCredentials, Error> {
        let _change = self.change.lock().await;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !name_ok {
            return Err(Error::InvalidParameter(format!(
                "Name {name:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
            )));
        }
        if name == root_id || self.rows.lock().contains_key(name) {
            return Err(Error::InvalidParameter(format!(
                "an access key named {name:?} already exists"
            )));
        }
        let access_id = format!("SL{}", B64.encode(self.sealer.random(12)?));
        let secret = self.new_secret()?;
        let now = now_ms();
        let grants: Vec<String> = grants.iter().map(Grant::to_string).collect();
        self.store(AccessKeyRow {
            name: name.to_string(),
            access_id: access_id.clone(),
            secret: self.sealer.seal(&secret, name)?,
            old_secret: None,
            old_secret_expire_time: None,
            grants: serde_json::to_string(&grants).expect("strings serialize"),
            enabled: true,
            create_time: now,
            last_used_time: 0,
            expire_time,
        })
        .await?;
        Ok(NewCredentials {
            access_id,
            access_key: secret,
        })
    }

    /// Enables or disables a key.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Error> {
        let _change = self.change.lock().await;
        let mut row = self.row(name)?;
        row.enabled = enabled;
        self.store(row).await
    }

    /// Gives a key a new secret; the current one stays valid until retired or `old_expires`.
    pub async fn rotate(
        &self,
        name: &str,
        old_expires: Option<i64>,
    ) -> Result<NewCredentials, Error> {
        let _change = self.change.lock().await;
        let mut row = self.row(name)?;
        let secret = self.new_secret()?;
        row.old_secret = Some(row.secret.clone());
        row.old_secret_expire_time = old_expires;
        row.secret = self.sealer.seal(&secret, name)?;
        let access_id = row.access_id.clone();
        self.store(row).await?;
        Ok(NewCredentials {
            access_id,
            access_key: secret,
        })
    }

    /// Ends a rotation: the old secret stops working.
    pub async fn retire(&self, name: &str) -> Result<(), Error> {
        let _change = self.change.lock().await;
        let mut row = self.row(name)?;
        row.old_secret = None;
        row.old_secret_expire_time = None;
        self.store(row).await
    }

    /// Deletes a key.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let _change = self.change.lock().await;
        self.row(name)?;
        self.meta.delete_access_key(name).await?;
        self.rows.lock().remove(name);
        self.touched.lock().remove(name);
        self.rebuild()
    }
}
