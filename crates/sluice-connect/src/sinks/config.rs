//! Connector configurations, validated at the door and normalized into the shapes `get`
//! returns (protocol doc §4.9, "Resp" column): what pydatahub parses back without error.
//!
//! Every error message names the offending key, e.g. `Config.Port must be a port number`.

use serde_json::{Map, Value as Json};

use crate::kind::ConnectorKind;

/// Reads keys from the request's `Config` object and writes the normalized object.
struct Cfg<'a> {
    input: &'a Map<String, Json>,
    out: Map<String, Json>,
}

impl<'a> Cfg<'a> {
    fn text(&self, key: &str) -> Result<Option<String>, String> {
        match self.input.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("Config.{key} must be a string")),
        }
    }

    /// A required, non-empty string.
    fn req(&mut self, key: &str) -> Result<String, String> {
        let v = self.text(key)?.unwrap_or_default();
        if v.trim().is_empty() {
            return Err(format!("Config.{key} is missing or empty"));
        }
        self.out.insert(key.into(), Json::String(v.clone()));
        Ok(v)
    }

    /// An optional string, stored as given (absent → `default`).
    fn opt(&mut self, key: &str, default: &str) -> Result<String, String> {
        let v = self.text(key)?.unwrap_or_else(|| default.to_string());
        self.out.insert(key.into(), Json::String(v.clone()));
        Ok(v)
    }

    fn one_of(
        &mut self,
        key: &str,
        default: Option<&str>,
        allowed: &[&str],
        case_insensitive: bool,
    ) -> Result<String, String> {
        let raw = match (self.text(key)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(format!("Config.{key} is missing (one of {allowed:?})")),
        };
        let found = allowed.iter().find(|a| {
            if case_insensitive {
                a.eq_ignore_ascii_case(raw.trim())
            } else {
                **a == raw.trim()
            }
        });
        let v =
            found.ok_or_else(|| format!("Config.{key} is {raw:?}; expected one of {allowed:?}"))?;
        self.out.insert(key.into(), Json::String(v.to_string()));
        Ok(v.to_string())
    }

    fn positive_int(&mut self, key: &str, required: bool) -> Result<Option<i64>, String> {
        let n = match self.input.get(key) {
            None | Some(Json::Null) if !required => return Ok(None),
            None | Some(Json::Null) => return Err(format!("Config.{key} is missing")),
            Some(Json::Number(n)) => n.as_i64(),
            Some(Json::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) if n > 0 => {
                self.out.insert(key.into(), Json::from(n));
                Ok(Some(n))
            }
            _ => Err(format!("Config.{key} must be a positive integer")),
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> Result<bool, String> {
        let b = match self.input.get(key) {
            None | Some(Json::Null) => default,
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("Config.{key} must be \"true\" or \"false\"")),
            },
            Some(_) => return Err(format!("Config.{key} must be \"true\" or \"false\"")),
        };
        self.out.insert(key.into(), Json::String(b.to_string()));
        Ok(b)
    }

    /// A list of names: a JSON array of strings, or a string holding one. Stored as a string
    /// holding a JSON array (what pydatahub parses back).
    fn name_list(&mut self, key: &str) -> Result<Vec<String>, String> {
        let parsed = match self.input.get(key) {
            None | Some(Json::Null) => Json::Array(vec![]),
            Some(Json::String(s)) if s.trim().is_empty() => Json::Array(vec![]),
            Some(Json::String(s)) => serde_json::from_str(s)
                .map_err(|_| format!("Config.{key} must be a JSON array of field names"))?,
            Some(v) => v.clone(),
        };
        let list = parsed
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| format!("Config.{key} must be a JSON array of field names"))?;
        self.out.insert(
            key.into(),
            Json::String(Json::from(list.clone()).to_string()),
        );
        Ok(list)
    }

    /// `AuthMode` (default `default`) and, in `ak` mode, the key pair.
    fn auth(&mut self, default: &str) -> Result<(), String> {
        let mode = self.one_of("AuthMode", Some(default), &["ak", "sts"], true)?;
        let id = self.text("AccessId")?.unwrap_or_default();
        let key = self.text("AccessKey")?.unwrap_or_default();
        if mode == "ak" && (id.is_empty() || key.is_empty()) && !(id.is_empty() && key.is_empty()) {
            return Err("Config.AccessId and Config.AccessKey must be given together".into());
        }
        if !id.is_empty() {
            self.out.insert("AccessId".into(), Json::String(id));
        }
        if !key.is_empty() {
            self.out.insert("AccessKey".into(), Json::String(key));
        }
        Ok(())
    }
}

/// Parses an ODPS `PartitionConfig`: an object (ordered as received), a string holding the
/// response form `[{"key": .., "value": ..}]`, or that array itself.
fn partition_pairs(v: &Json) -> Result<Vec<(String, String)>, String> {
    let bad = || "Config.PartitionConfig must map partition columns to formats".to_string();
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

/// Validates `config` for `kind` and returns its normalized form. An ODPS `PartitionConfig`
/// object must already have been turned into its ordered string form by the caller if key
/// order matters (serde_json objects are sorted).
pub fn normalize(kind: ConnectorKind, config: &Json) -> Result<Json, String> {
    let input = config
        .as_object()
        .ok_or_else(|| "Config must be a JSON object".to_string())?;
    let mut c = Cfg {
        input,
        out: Map::new(),
    };
    match kind {
        ConnectorKind::Odps => {
            for k in ["Project", "Table", "OdpsEndpoint", "TunnelEndpoint"] {
                c.req(k)?;
            }
            for k in ["AccessId", "AccessKey"] {
                if let Some(v) = c.text(k)?.filter(|v| !v.is_empty()) {
                    c.out.insert(k.into(), Json::String(v));
                }
            }
            c.one_of(
                "PartitionMode",
                None,
                &["USER_DEFINE", "SYSTEM_TIME", "EVENT_TIME"],
                true,
            )?;
            c.positive_int("TimeRange", false)?;
            let pairs = partition_pairs(input.get("PartitionConfig").unwrap_or(&Json::Null))?;
            if pairs.iter().any(|(k, _)| k.trim().is_empty()) {
                return Err("Config.PartitionConfig has an empty partition column name".into());
            }
            c.out.insert(
                "PartitionConfig".into(),
                Json::String(partition_config_text(&pairs)),
            );
        }
        ConnectorKind::Ads | ConnectorKind::Mysql => {
            c.req("Host")?;
            let port = c.req("Port")?;
            match port.trim().parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => {
                    return Err(format!(
                        "Config.Port {port:?} must be a port number (1-65535)"
                    ))
                }
            }
            c.boolean("Ignore", false)?;
            c.req("Database")?;
            c.req("User")?;
            c.opt("Password", "")?;
            c.req("Table")?;
        }
        ConnectorKind::Es => {
            c.req("Index")?;
            c.req("Endpoint")?;
            c.opt("User", "")?;
            c.opt("Password", "")?;
            c.name_list("IDFields")?;
            c.name_list("TypeFields")?;
            c.boolean("ProxyMode", false)?;
        }
        ConnectorKind::Fc => {
            c.req("Endpoint")?;
            c.req("Service")?;
            c.req("Function")?;
            c.auth("sts")?;
        }
        ConnectorKind::Oss => {
            c.req("Endpoint")?;
            c.req("Bucket")?;
            c.opt("Prefix", "")?;
            c.req("TimeFormat")?;
            c.positive_int("TimeRange", true)?;
            c.auth("sts")?;
        }
        ConnectorKind::Ots => {
            c.req("Endpoint")?;
            c.req("InstanceName")?;
            c.req("TableName")?;
            c.auth("sts")?;
            c.one_of("WriteMode", Some("PUT"), &["PUT", "UPDATE"], true)?;
        }
        ConnectorKind::Hologres => {
            c.req("Endpoint")?;
            c.req("Project")?;
            c.req("Topic")?;
            c.req("InstanceId")?;
            c.auth("ak")?;
            c.one_of(
                "TimestampUnit",
                Some("MICROSECOND"),
                &["MICROSECOND", "MILLISECOND", "SECOND"],
                true,
            )?;
        }
        ConnectorKind::Datahub => {
            let endpoint = c.req("Endpoint")?;
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "Config.Endpoint {endpoint:?} must be an http:// or https:// URL"
                ));
            }
            c.req("Project")?;
            c.req("Topic")?;
            c.auth("sts")?;
        }
    }
    Ok(Json::Object(c.out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn odps_partition_config_becomes_an_ordered_string() {
        let cfg = json!({"Project": "p", "Table": "t", "OdpsEndpoint": "e", "TunnelEndpoint": "u",
            "PartitionMode": "SYSTEM_TIME", "TimeRange": 15,
            "PartitionConfig": "[{\"key\":\"ds\",\"value\":\"%Y%m%d\"},{\"key\":\"hh\",\"value\":\"%H\"}]"});
        let out = normalize(ConnectorKind::Odps, &cfg).unwrap();
        let text = out["PartitionConfig"].as_str().unwrap();
        assert!(text.find("ds").unwrap() < text.find("hh").unwrap());
        assert_eq!(out["TimeRange"], json!(15));
    }

    #[test]
    fn errors_name_the_field() {
        let cfg = json!({"Host": "h", "Port": "99999", "Database": "d", "User": "u", "Table": "t"});
        let e = normalize(ConnectorKind::Mysql, &cfg).unwrap_err();
        assert!(e.contains("Config.Port"), "{e}");
        let e = normalize(ConnectorKind::Datahub, &json!({"Endpoint": "x"})).unwrap_err();
        assert!(e.contains("Config.Endpoint"), "{e}");
        let e = normalize(
            ConnectorKind::Ots,
            &json!({"Endpoint": "e", "InstanceName": "i",
            "TableName": "t", "WriteMode": "MERGE"}),
        )
        .unwrap_err();
        assert!(e.contains("Config.WriteMode"), "{e}");
    }

    #[test]
    fn es_lists_become_strings_holding_arrays() {
        let cfg = json!({"Index": "i", "Endpoint": "e", "IDFields": ["a"], "TypeFields": [], "ProxyMode": "true"});
        let out = normalize(ConnectorKind::Es, &cfg).unwrap();
        assert_eq!(out["IDFields"], json!("[\"a\"]"));
        assert_eq!(out["TypeFields"], json!("[]"));
        assert_eq!(out["ProxyMode"], json!("true"));
    }
}
