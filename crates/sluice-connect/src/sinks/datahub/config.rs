//! `DataHubConnectorConfig`: `Endpoint` (an `http://` or `https://` URL of the target DataHub),
//! `Project`, `Topic` (the target topic) and the auth fields (`AuthMode` default `sts`;
//! `AccessId` / `AccessKey` sign the puts).

use serde_json::Value as Json;

use crate::sinks::secret::Secret;
use crate::sinks::wire::{Auth, AuthMode, ConfigError, Fields, Out, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatahubConfig {
    pub endpoint: String,
    pub project: String,
    pub topic: String,
    pub auth_mode: AuthMode,
    pub access_id: String,
    pub access_key: Secret,
}

impl DatahubConfig {
    pub fn from_wire(config: &Json) -> Result<DatahubConfig> {
        let f = Fields::of(config)?;
        let endpoint = f.required("Endpoint")?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError::new(
                "Endpoint",
                format!("must be an http:// or https:// URL, got {endpoint:?}"),
            ));
        }
        let auth = Auth::from_wire(&f, AuthMode::Sts)?;
        Ok(DatahubConfig {
            endpoint,
            project: f.required("Project")?,
            topic: f.required("Topic")?,
            auth_mode: auth.mode,
            access_id: auth.access_id,
            access_key: auth.access_key,
        })
    }

    pub fn to_wire(&self) -> Json {
        let out = Out::default()
            .str("Endpoint", &self.endpoint)
            .str("Project", &self.project)
            .str("Topic", &self.topic);
        Auth {
            mode: self.auth_mode,
            access_id: self.access_id.clone(),
            access_key: self.access_key.clone(),
        }
        .to_wire(out)
        .done()
    }
}
