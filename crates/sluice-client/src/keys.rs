//! Key management calls (Sluice only, root or `admin:*/*`; docs/accounts.md): create, list,
//! disable, enable, rotate, retire and delete access keys, and page through the audit log.
//! These back `sluice key create|list|disable|delete`.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::client::{Client, ClientError};

/// A new key's (or a rotated key's) credentials: the only time the secret is shown. Its Debug
/// output hides the secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct NewKey {
    #[serde(rename = "AccessId")]
    pub access_id: String,
    #[serde(rename = "AccessKey")]
    pub access_key: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("access_id", &self.access_id)
            .finish_non_exhaustive()
    }
}

/// A key as listed (never a secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    pub name: String,
    pub access_id: String,
    pub allow: Vec<String>,
    pub enabled: bool,
    pub create_time: i64,
    pub last_used_time: i64,
    pub expire_time: Option<i64>,
    pub rotating: bool,
    pub old_secret_expire_time: Option<i64>,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditEntry {
    pub seq: i64,
    pub time: i64,
    pub who: String,
    pub what: String,
    pub resource: String,
    pub request_id: String,
    pub detail: String,
}

fn decode<T: serde::de::DeserializeOwned>(v: Json) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

impl Client {
    /// Creates a key with grants `ACTION:PROJECT/TOPIC`, expiring after `expires_in_secs`.
    pub async fn create_key(
        &self,
        name: &str,
        allow: &[String],
        expires_in_secs: Option<u64>,
    ) -> Result<NewKey, ClientError> {
        let mut body = json!({ "Name": name, "Allow": allow });
        if let Some(secs) = expires_in_secs {
            body["ExpiresInSecs"] = json!(secs);
        }
        decode(
            self.json(Method::POST, "/accounts/keys", None, Some(body))
                .await?,
        )
    }

    /// Every key, without secrets.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, ClientError> {
        let v = self.json(Method::GET, "/accounts/keys", None, None).await?;
        decode(v["Keys"].clone())
    }

    async fn key_action(&self, name: &str, body: Json) -> Result<Json, ClientError> {
        self.json(
            Method::POST,
            &format!("/accounts/keys/{name}"),
            None,
            Some(body),
        )
        .await
    }

    pub async fn disable_key(&self, name: &str) -> Result<(), ClientError> {
        self.key_action(name, json!({"Action": "disable"})).await?;
        Ok(())
    }

    pub async fn enable_key(&self, name: &str) -> Result<(), ClientError> {
        self.key_action(name, json!({"Action": "enable"})).await?;
        Ok(())
    }

    /// A new secret; the old one stays valid until [`Client::retire_key`] or the expiry.
    pub async fn rotate_key(
        &self,
        name: &str,
        old_expires_in_secs: Option<u64>,
    ) -> Result<NewKey, ClientError> {
        let mut body = json!({"Action": "rotate"});
        if let Some(secs) = old_expires_in_secs {
            body["OldExpiresInSecs"] = json!(secs);
        }
        decode(self.key_action(name, body).await?)
    }

    pub async fn retire_key(&self, name: &str) -> Result<(), ClientError> {
        self.key_action(name, json!({"Action": "retire"})).await?;
        Ok(())
    }

    pub async fn delete_key(&self, name: &str) -> Result<(), ClientError> {
        self.json(
            Method::DELETE,
            &format!("/accounts/keys/{name}"),
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// Up to `limit` audit entries after `after`, and the `after` of the next page.
    pub async fn audit_log(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, i64), ClientError> {
        let query = format!("after={after}&limit={limit}");
        let v = self
            .json(Method::GET, "/accounts/audit", Some(&query), None)
            .await?;
        let next = v["NextAfter"].as_i64().unwrap_or(after);
        Ok((decode(v["Entries"].clone())?, next))
    }
}
