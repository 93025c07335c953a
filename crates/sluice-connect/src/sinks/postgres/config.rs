//! `HologresConnectorConfig` of SINK_HOLOGRES, with its self-hosted meaning (see
//! docs/connectors.md):
//! - `Endpoint` = `host:port` of the server; a URL (`http(s)://host:port/`, what the Hologres
//!   console shows) is normalized to `host:port` (no port given: `host`, and 5432 is used);
//! - `Project` = database; `Topic` = table (an SQL name); `InstanceId` kept, not used;
//! - `AuthMode` `ak` (default): user `AccessId` (or `postgres` when empty) with password
//!   `AccessKey`; `sts`: user `postgres` without a password;
//! - `TimestampUnit` and `WriteMode` ([`WriteMode`]).

use serde_json::Value as Json;

use crate::sinks::secret::Secret;
use crate::sinks::wire::{Auth, AuthMode, Choice, ConfigError, Fields, Out, Result};

/// The unit of the topic's TIMESTAMP values when they go into timestamp / date columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    Microsecond,
    Millisecond,
    Second,
}

impl TimestampUnit {
    pub fn micros(self) -> i64 {
        match self {
            TimestampUnit::Microsecond => 1,
            TimestampUnit::Millisecond => 1_000,
            TimestampUnit::Second => 1_000_000,
        }
    }
}

impl Choice for TimestampUnit {
    const ALL: &'static [TimestampUnit] = &[
        TimestampUnit::Microsecond,
        TimestampUnit::Millisecond,
        TimestampUnit::Second,
    ];
    fn wire(self) -> &'static str {
        match self {
            TimestampUnit::Microsecond => "MICROSECOND",
            TimestampUnit::Millisecond => "MILLISECOND",
            TimestampUnit::Second => "SECOND",
        }
    }
}

/// What a record whose primary key already exists does (Hologres' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Update the connector's columns of the existing row (the default).
    InsertOrUpdate,
    /// Keep the existing row.
    InsertOrIgnore,
    /// Replace the whole row: the connector's columns, and every other column back to its
    /// default.
    InsertOrReplace,
}

impl Choice for WriteMode {
    const ALL: &'static [WriteMode] = &[
        WriteMode::InsertOrUpdate,
        WriteMode::InsertOrIgnore,
        WriteMode::InsertOrReplace,
    ];
    fn wire(self) -> &'static str {
        match self {
            WriteMode::InsertOrUpdate => "INSERT_OR_UPDATE",
            WriteMode::InsertOrIgnore => "INSERT_OR_IGNORE",
            WriteMode::InsertOrReplace => "INSERT_OR_REPLACE",
        }
    }
}

/// Connection and mode of a PostgreSQL-protocol sink, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `Endpoint` normalized: `host`, `host:port` or `[v6]:port`, without scheme or slash.
    pub endpoint: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The table as an SQL name (optionally schema-qualified, optionally quoted).
    pub table: String,
    /// The login: from `AccessId` in `ak` mode, else `postgres`.
    pub user: String,
    /// `AccessKey` in `ak` mode, when given.
    pub password: Option<Secret>,
    pub timestamp_unit: TimestampUnit,
    pub write_mode: WriteMode,
    pub instance_id: String,
    pub auth: Auth,
}

impl PostgresConfig {
    pub fn from_wire(config: &Json) -> Result<PostgresConfig> {
        let f = Fields::of(config)?;
        let (endpoint, host, port) = endpoint(&f.required("Endpoint")?)?;
        let auth = Auth::from_wire(&f, AuthMode::Ak)?;
        let (user, password) = match auth.mode {
            AuthMode::Ak if !auth.access_id.is_empty() => (
                auth.access_id.clone(),
                Some(auth.access_key.clone()).filter(|k| !k.is_empty()),
            ),
            AuthMode::Ak | AuthMode::Sts => ("postgres".to_string(), None),
        };
        Ok(PostgresConfig {
            endpoint,
            host,
            port,
            database: f.required("Project")?,
            table: f.required("Topic")?,
            user,
            password,
            timestamp_unit: f.choice("TimestampUnit", Some(TimestampUnit::Microsecond))?,
            write_mode: f.choice("WriteMode", Some(WriteMode::InsertOrUpdate))?,
            instance_id: f.required("InstanceId")?,
            auth,
        })
    }

    /// `Endpoint` in its normalized `host:port` form.
    pub fn to_wire(&self) -> Json {
        let out = Out::default()
            .str("Endpoint", &self.endpoint)
            .str("Project", &self.database)
            .str("Topic", &self.table)
            .str("InstanceId", &self.instance_id);
        self.auth
            .to_wire(out)
            .str("TimestampUnit", self.timestamp_unit.wire())
            .str("WriteMode", self.write_mode.wire())
            .done()
    }
}

/// [`PostgresConfig::from_wire`].
pub fn parse_config(config: &Json) -> Result<PostgresConfig> {
    PostgresConfig::from_wire(config)
}

/// `host[:port]`, `[v6]:port`, or a URL `scheme://host[:port][/]` → (normalized, host, port).
fn endpoint(given: &str) -> Result<(String, String, u16)> {
    let bad = || ConfigError::new("Endpoint", format!("must be host:port, got {given:?}"));
    let hostport = given.split_once("://").map_or(given, |(_, rest)| rest);
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (hostport, 5432),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((hostport.to_string(), host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Json {
        json!({"Endpoint": "db.local:6432", "Project": "warehouse", "Topic": "public.events",
               "InstanceId": "hgpostcn-x", "AuthMode": "ak", "TimestampUnit": "MILLISECOND",
               "AccessId": "u", "AccessKey": "p"})
    }

    #[test]
    fn parses_hologres_config() {
        let c = parse_config(&good()).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("db.local", 6432));
        assert_eq!(c.database, "warehouse");
        assert_eq!(c.table, "public.events");
        assert_eq!(c.user, "u");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("p"));
        assert_eq!(c.timestamp_unit.micros(), 1000);
        assert_eq!(c.write_mode, WriteMode::InsertOrUpdate);
        let mut back = good();
        back["WriteMode"] = json!("INSERT_OR_UPDATE");
        assert_eq!(c.to_wire(), back);
        let mut j = good();
        j["Endpoint"] = json!("http://db.local");
        j["WriteMode"] = json!("insert_or_ignore");
        j.as_object_mut().unwrap().remove("AccessId");
        j.as_object_mut().unwrap().remove("AccessKey");
        j.as_object_mut().unwrap().remove("TimestampUnit");
        let c = parse_config(&j).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("db.local", 5432, "postgres")
        );
        assert_eq!(c.timestamp_unit, TimestampUnit::Microsecond);
        assert_eq!(c.write_mode, WriteMode::InsertOrIgnore);
        assert_eq!(c.to_wire()["WriteMode"], json!("INSERT_OR_IGNORE"));
        assert_eq!(parse_config(&c.to_wire()).unwrap(), c);
    }

    #[test]
    fn url_endpoints_are_normalized() {
        for (given, want) in [
            (
                "https://hgpost-cn.example.com:80/",
                "hgpost-cn.example.com:80",
            ),
            ("http://db.local:6432", "db.local:6432"),
            ("db.local", "db.local"),
            ("https://db.local/", "db.local"),
            ("[::1]:7000", "[::1]:7000"),
        ] {
            let mut j = good();
            j["Endpoint"] = json!(given);
            let c = parse_config(&j).unwrap();
            assert_eq!(c.to_wire()["Endpoint"], json!(want), "{given}");
        }
    }

    #[test]
    fn sts_mode_logs_in_as_postgres_without_a_password() {
        let mut j = good();
        j["AuthMode"] = json!("sts");
        let c = parse_config(&j).unwrap();
        assert_eq!((c.user.as_str(), c.password.is_none()), ("postgres", true));
    }

    #[test]
    fn secrets_are_absent_from_debug() {
        let c = parse_config(&good()).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("\"p\""), "{dump}");
        assert!(dump.contains("***"), "{dump}");
    }

    #[test]
    fn errors_name_the_field() {
        for (key, value) in [
            ("Endpoint", json!("h:notaport")),
            ("Endpoint", json!("")),
            ("Endpoint", json!("http://h:1/x")),
            ("TimestampUnit", json!("HOUR")),
            ("Project", json!(" ")),
            ("Topic", json!([3])),
            ("WriteMode", json!("MERGE")),
        ] {
            let mut j = good();
            j[key] = value;
            let e = parse_config(&j).unwrap_err().to_string();
            assert!(e.starts_with(&format!("Config.{key} ")), "{e}");
        }
        for key in ["Endpoint", "Project", "Topic", "InstanceId"] {
            let mut j = good();
            j.as_object_mut().unwrap().remove(key);
            let e = parse_config(&j).unwrap_err().to_string();
            assert_eq!(e, format!("Config.{key} is missing or empty"));
        }
    }
}
