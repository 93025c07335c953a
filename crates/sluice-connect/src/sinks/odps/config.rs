//! `OdpsConnectorConfig`: `Project`, `Table`, `OdpsEndpoint`, `TunnelEndpoint` (required),
//! `AccessId` / `AccessKey`, `PartitionMode`, `TimeRange` (minutes, also the done time's
//! window) and `PartitionConfig` (partition column → time format, in order).

use serde_json::Value as Json;

use crate::sinks::secret::Secret;
use crate::sinks::wire::{Choice, ConfigError, Fields, Out, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionMode {
    UserDefine,
    SystemTime,
    EventTime,
}

impl Choice for PartitionMode {
    const ALL: &'static [PartitionMode] = &[
        PartitionMode::UserDefine,
        PartitionMode::SystemTime,
        PartitionMode::EventTime,
    ];
    fn wire(self) -> &'static str {
        match self {
            PartitionMode::UserDefine => "USER_DEFINE",
            PartitionMode::SystemTime => "SYSTEM_TIME",
            PartitionMode::EventTime => "EVENT_TIME",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdpsConfig {
    pub project: String,
    pub table: String,
    pub odps_endpoint: String,
    pub tunnel_endpoint: String,
    pub access_id: String,
    pub access_key: Secret,
    pub partition_mode: PartitionMode,
    /// Minutes.
    pub time_range: Option<i64>,
    /// (partition column, time format), in the order given.
    pub partition_config: Vec<(String, String)>,
}

impl OdpsConfig {
    /// An ODPS `PartitionConfig` object must already be in its ordered string form (the HTTP
    /// layer does that: serde_json objects are sorted).
    pub fn from_wire(config: &Json) -> Result<OdpsConfig> {
        let f = Fields::of(config)?;
        let partition_config = partition_pairs(f.get("PartitionConfig").unwrap_or(&Json::Null))?;
        if partition_config.iter().any(|(k, _)| k.trim().is_empty()) {
            return Err(ConfigError::new(
                "PartitionConfig",
                "has an empty partition column name",
            ));
        }
        Ok(OdpsConfig {
            project: f.required("Project")?,
            table: f.required("Table")?,
            odps_endpoint: f.required("OdpsEndpoint")?,
            tunnel_endpoint: f.required("TunnelEndpoint")?,
            access_id: f.optional("AccessId")?,
            access_key: f.secret("AccessKey")?,
            partition_mode: f.choice("PartitionMode", None)?,
            time_range: f.positive_int("TimeRange")?,
            partition_config,
        })
    }

    pub fn to_wire(&self) -> Json {
        Out::default()
            .str("Project", &self.project)
            .str("Table", &self.table)
            .str("OdpsEndpoint", &self.odps_endpoint)
            .str("TunnelEndpoint", &self.tunnel_endpoint)
            .str_if("AccessId", &self.access_id)
            .str_if("AccessKey", self.access_key.expose())
            .str("PartitionMode", self.partition_mode.wire())
            .int("TimeRange", self.time_range)
            .str(
                "PartitionConfig",
                &partition_config_text(&self.partition_config),
            )
            .done()
    }
}

/// Parses an ODPS `PartitionConfig`: an object (ordered as received), a string holding the
/// response form `[{"key": .., "value": ..}]`, or that array itself.
fn partition_pairs(v: &Json) -> Result<Vec<(String, String)>> {
    let bad = || ConfigError::new("PartitionConfig", "must map partition columns to formats");
    match v {
        Json::Null => Ok(vec![]),
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(bad)
            })
            .collect(),
        Json::String(s) if s.trim().is_empty() => Ok(vec![]),
        Json::String(s) => partition_pairs(&serde_json::from_str::<Json>(s).map_err(|_| bad())?),
        Json::Array(items) => items
            .iter()
            .map(|item| {
                match (
                    item.get("key").and_then(Json::as_str),
                    item.get("value").and_then(Json::as_str),
                ) {
                    (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                    _ => Err(bad()),
                }
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// The response form of partition pairs: a string holding a JSON array.
pub fn partition_config_text(pairs: &[(String, String)]) -> String {
    let items: Vec<Json> = pairs
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    Json::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partition_config_becomes_an_ordered_string() {
        let cfg = json!({"Project": "p", "Table": "t", "OdpsEndpoint": "e", "TunnelEndpoint": "u",
            "PartitionMode": "SYSTEM_TIME", "TimeRange": 15,
            "PartitionConfig": "[{\"key\":\"ds\",\"value\":\"%Y%m%d\"},{\"key\":\"hh\",\"value\":\"%H\"}]"});
        let out = OdpsConfig::from_wire(&cfg).unwrap().to_wire();
        let text = out["PartitionConfig"].as_str().unwrap();
        assert!(text.find("ds").unwrap() < text.find("hh").unwrap());
        assert_eq!(out["TimeRange"], json!(15));
        assert_eq!(OdpsConfig::from_wire(&out).unwrap().to_wire(), out);
    }
}
