//! `OssConnectorConfig`: `Endpoint`, `Bucket`, `Prefix`, `TimeFormat`, `TimeRange` (minutes,
//! required; also the done time's window) and the auth fields (`AuthMode` default `sts`).

use serde_json::Value as Json;

use crate::sinks::wire::{Auth, AuthMode, ConfigError, Fields, Out, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssConfig {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub time_format: String,
    /// Minutes.
    pub time_range: i64,
    pub auth: Auth,
}

impl OssConfig {
    pub fn from_wire(config: &Json) -> Result<OssConfig> {
        let f = Fields::of(config)?;
        Ok(OssConfig {
            endpoint: f.required("Endpoint")?,
            bucket: f.required("Bucket")?,
            prefix: f.optional("Prefix")?,
            time_format: f.required("TimeFormat")?,
            time_range: f
                .positive_int("TimeRange")?
                .ok_or_else(|| ConfigError::new("TimeRange", "is missing"))?,
            auth: Auth::from_wire(&f, AuthMode::Sts)?,
        })
    }

    pub fn to_wire(&self) -> Json {
        let out = Out::default()
            .str("Endpoint", &self.endpoint)
            .str("Bucket", &self.bucket)
            .str("Prefix", &self.prefix)
            .str("TimeFormat", &self.time_format)
            .int("TimeRange", Some(self.time_range));
        self.auth.to_wire(out).done()
    }
}
