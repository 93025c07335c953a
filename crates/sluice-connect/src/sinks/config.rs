//! [`ConnectorConfig`]: the typed configuration of every connector type, parsed and validated
//! once at the API door ([`ConnectorConfig::from_wire`]) and given back in pydatahub's field
//! names ([`ConnectorConfig::to_wire`]: what GetConnector returns and what the meta store
//! keeps, so a stored config loads back through `from_wire`).
//!
//! Each sink's folder owns its config type; this enum only dispatches, with exhaustive
//! matches (a new type fails to compile until every arm exists).

use serde_json::Value as Json;

use super::datahub::DatahubConfig;
use super::es::EsConfig;
use super::fc::FcConfig;
use super::mysql::MysqlConfig;
use super::odps::OdpsConfig;
use super::oss::OssConfig;
use super::ots::OtsConfig;
use super::postgres::PostgresConfig;
use super::wire::ConfigError;
use crate::kind::ConnectorKind;

/// A connector's configuration, one variant per [`ConnectorKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorConfig {
    Odps(OdpsConfig),
    Ads(MysqlConfig),
    Es(EsConfig),
    Fc(FcConfig),
    Mysql(MysqlConfig),
    Oss(OssConfig),
    Ots(OtsConfig),
    Hologres(PostgresConfig),
    Datahub(DatahubConfig),
}

impl ConnectorConfig {
    /// Parses and validates a `Config` object for `kind`; the error names the field.
    pub fn from_wire(kind: ConnectorKind, config: &Json) -> Result<ConnectorConfig, ConfigError> {
        Ok(match kind {
            ConnectorKind::Odps => ConnectorConfig::Odps(OdpsConfig::from_wire(config)?),
            ConnectorKind::Ads => ConnectorConfig::Ads(MysqlConfig::from_wire(config)?),
            ConnectorKind::Es => ConnectorConfig::Es(EsConfig::from_wire(config)?),
            ConnectorKind::Fc => ConnectorConfig::Fc(FcConfig::from_wire(config)?),
            ConnectorKind::Mysql => ConnectorConfig::Mysql(MysqlConfig::from_wire(config)?),
            ConnectorKind::Oss => ConnectorConfig::Oss(OssConfig::from_wire(config)?),
            ConnectorKind::Ots => ConnectorConfig::Ots(OtsConfig::from_wire(config)?),
            ConnectorKind::Hologres => {
                ConnectorConfig::Hologres(PostgresConfig::from_wire(config)?)
            }
            ConnectorKind::Datahub => ConnectorConfig::Datahub(DatahubConfig::from_wire(config)?),
        })
    }

    /// Loads a config the meta store kept (the text of [`ConnectorConfig::to_wire`], or the
    /// normalized JSON earlier versions stored).
    pub fn from_stored(kind: ConnectorKind, text: &str) -> Result<ConnectorConfig, ConfigError> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| ConfigError::new("", format!("is not JSON: {e}")))?;
        ConnectorConfig::from_wire(kind, &json)
    }

    /// The config in pydatahub's field names, secrets included (GetConnector returns them,
    /// as the cloud service does).
    pub fn to_wire(&self) -> Json {
        match self {
            ConnectorConfig::Odps(c) => c.to_wire(),
            ConnectorConfig::Ads(c) | ConnectorConfig::Mysql(c) => c.to_wire(),
            ConnectorConfig::Es(c) => c.to_wire(),
            ConnectorConfig::Fc(c) => c.to_wire(),
            ConnectorConfig::Oss(c) => c.to_wire(),
            ConnectorConfig::Ots(c) => c.to_wire(),
            ConnectorConfig::Hologres(c) => c.to_wire(),
            ConnectorConfig::Datahub(c) => c.to_wire(),
        }
    }

    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorConfig::Odps(_) => ConnectorKind::Odps,
            ConnectorConfig::Ads(_) => ConnectorKind::Ads,
            ConnectorConfig::Es(_) => ConnectorKind::Es,
            ConnectorConfig::Fc(_) => ConnectorKind::Fc,
            ConnectorConfig::Mysql(_) => ConnectorKind::Mysql,
            ConnectorConfig::Oss(_) => ConnectorKind::Oss,
            ConnectorConfig::Ots(_) => ConnectorKind::Ots,
            ConnectorConfig::Hologres(_) => ConnectorKind::Hologres,
            ConnectorConfig::Datahub(_) => ConnectorKind::Datahub,
        }
    }

    /// The time window in minutes of the types that write time-partitioned output
    /// (`TimeRange` of ODPS and OSS), for the done time.
    pub fn time_range_minutes(&self) -> Option<i64> {
        match self {
            ConnectorConfig::Odps(c) => c.time_range,
            ConnectorConfig::Oss(c) => Some(c.time_range),
            ConnectorConfig::Ads(_)
            | ConnectorConfig::Es(_)
            | ConnectorConfig::Fc(_)
            | ConnectorConfig::Mysql(_)
            | ConnectorConfig::Ots(_)
            | ConnectorConfig::Hologres(_)
            | ConnectorConfig::Datahub(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One valid config per type, with secrets.
    fn samples() -> Vec<(ConnectorKind, Json)> {
        let db = json!({"Host": "h", "Port": 3306, "Database": "d", "User": "u",
            "Password": "s3cret-pw", "Table": "t", "Ignore": true});
        vec![
            (
                ConnectorKind::Odps,
                json!({"Project": "p", "Table": "t", "OdpsEndpoint": "e",
                "TunnelEndpoint": "u", "AccessId": "id", "AccessKey": "s3cret-ak",
                "PartitionMode": "system_time", "TimeRange": "15",
                "PartitionConfig": "[{\"key\":\"ds\",\"value\":\"%Y%m%d\"}]"}),
            ),
            (ConnectorKind::Ads, db.clone()),
            (
                ConnectorKind::Es,
                json!({"Index": "i", "Endpoint": "e", "User": "u",
                "Password": "s3cret-pw", "IDFields": ["a"], "TypeFields": "[\"b\"]",
                "ProxyMode": "TRUE"}),
            ),
            (
                ConnectorKind::Fc,
                json!({"Endpoint": "e", "Service": "s", "Function": "f",
                "AuthMode": "AK", "AccessId": "id", "AccessKey": "s3cret-ak"}),
            ),
            (ConnectorKind::Mysql, db),
            (
                ConnectorKind::Oss,
                json!({"Endpoint": "e", "Bucket": "b", "Prefix": "x/",
                "TimeFormat": "%Y", "TimeRange": 30, "AuthMode": "ak", "AccessId": "id",
                "AccessKey": "s3cret-ak"}),
            ),
            (
                ConnectorKind::Ots,
                json!({"Endpoint": "e", "InstanceName": "i", "TableName": "t",
                "AuthMode": "ak", "AccessId": "id", "AccessKey": "s3cret-ak",
                "WriteMode": "update"}),
            ),
            (
                ConnectorKind::Hologres,
                json!({"Endpoint": "https://h:80/", "Project": "p",
                "Topic": "t", "InstanceId": "i", "AuthMode": "ak", "AccessId": "id",
                "AccessKey": "s3cret-ak", "WriteMode": "INSERT_OR_REPLACE"}),
            ),
            (
                ConnectorKind::Datahub,
                json!({"Endpoint": "https://dh", "Project": "p",
                "Topic": "t", "AuthMode": "ak", "AccessId": "id", "AccessKey": "s3cret-ak"}),
            ),
        ]
    }

    #[test]
    fn every_type_round_trips_through_the_wire_form() {
        for (kind, wire) in samples() {
            let c = ConnectorConfig::from_wire(kind, &wire).unwrap();
            assert_eq!(c.kind(), kind);
            let back = c.to_wire();
            let stored = back.to_string();
            assert_eq!(
                ConnectorConfig::from_stored(kind, &stored).unwrap(),
                c,
                "{kind:?}"
            );
            assert_eq!(
                ConnectorConfig::from_wire(kind, &back).unwrap().to_wire(),
                back
            );
            // GetConnector returns the secrets, as the service does; Debug never shows them.
            assert!(stored.contains("s3cret"), "{kind:?}: {stored}");
            let dump = format!("{c:?} {c:#?}");
            assert!(!dump.contains("s3cret"), "{kind:?}: {dump}");
        }
    }

    #[test]
    fn enum_fields_are_normalized() {
        let by_kind: std::collections::HashMap<_, _> = samples().into_iter().collect();
        let wire = |k| {
            ConnectorConfig::from_wire(k, &by_kind[&k])
                .unwrap()
                .to_wire()
        };
        assert_eq!(wire(ConnectorKind::Odps)["PartitionMode"], "SYSTEM_TIME");
        assert_eq!(wire(ConnectorKind::Odps)["TimeRange"], 15);
        assert_eq!(wire(ConnectorKind::Fc)["AuthMode"], "ak");
        assert_eq!(wire(ConnectorKind::Ots)["WriteMode"], "UPDATE");
        assert_eq!(wire(ConnectorKind::Es)["ProxyMode"], "true");
        assert_eq!(wire(ConnectorKind::Mysql)["Port"], "3306");
        assert_eq!(wire(ConnectorKind::Hologres)["Endpoint"], "h:80");
        assert_eq!(
            wire(ConnectorKind::Hologres)["WriteMode"],
            "INSERT_OR_REPLACE"
        );
    }

    #[test]
    fn errors_name_the_field_in_one_style() {
        for (kind, config, want) in [
            (
                ConnectorKind::Mysql,
                json!({"Host": "h", "Port": "99999", "Database": "d",
                "User": "u", "Table": "t"}),
                "Config.Port must be a port number (1-65535), got \"99999\"",
            ),
            (
                ConnectorKind::Datahub,
                json!({"Endpoint": "x"}),
                "Config.Endpoint must be an http:// or https:// URL, got \"x\"",
            ),
            (
                ConnectorKind::Ots,
                json!({"Endpoint": "e", "InstanceName": "i", "TableName": "t",
                "WriteMode": "MERGE"}),
                "Config.WriteMode must be one of [\"PUT\", \"UPDATE\"], got \"MERGE\"",
            ),
            (
                ConnectorKind::Oss,
                json!({"Endpoint": "e", "Bucket": "b", "TimeFormat": "%Y",
                "TimeRange": -5}),
                "Config.TimeRange must be a positive integer",
            ),
            (
                ConnectorKind::Fc,
                json!({"Endpoint": "e", "Service": "s", "Function": "f",
                "AuthMode": "ak", "AccessId": "x"}),
                "Config.AccessId and Config.AccessKey must be given together",
            ),
            (ConnectorKind::Es, json!([]), "Config must be a JSON object"),
        ] {
            let e = ConnectorConfig::from_wire(kind, &config).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn time_range_feeds_the_done_time() {
        let by_kind: std::collections::HashMap<_, _> = samples().into_iter().collect();
        let range = |k| {
            ConnectorConfig::from_wire(k, &by_kind[&k])
                .unwrap()
                .time_range_minutes()
        };
        assert_eq!(range(ConnectorKind::Odps), Some(15));
        assert_eq!(range(ConnectorKind::Oss), Some(30));
        assert_eq!(range(ConnectorKind::Mysql), None);
    }
}
