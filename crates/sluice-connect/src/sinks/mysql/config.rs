//! `DatabaseConnectorConfig` of SINK_MYSQL and SINK_ADS: `Host`, `Port` (string or number),
//! `Database`, `User`, `Password`, `Table` (required but `Password`) and `Ignore` (`"true"` /
//! `"false"`, default false).

use serde_json::Value as Json;

use crate::sinks::secret::Secret;
use crate::sinks::wire::{Fields, Out, Result};

/// Connection and mode of a MySQL-protocol sink, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub table: String,
    /// true → skip records whose key exists; false → replace them.
    pub ignore: bool,
}

impl MysqlConfig {
    pub fn from_wire(config: &Json) -> Result<MysqlConfig> {
        let f = Fields::of(config)?;
        Ok(MysqlConfig {
            host: f.required("Host")?,
            port: f.port("Port")?,
            database: f.required("Database")?,
            user: f.required("User")?,
            password: f.secret("Password")?,
            table: f.required("Table")?,
            ignore: f.boolean("Ignore", false)?,
        })
    }

    /// `Port` as a string and `Ignore` as `"true"`/`"false"`: what pydatahub sends and parses.
    pub fn to_wire(&self) -> Json {
        Out::default()
            .str("Host", &self.host)
            .str("Port", &self.port.to_string())
            .boolean("Ignore", self.ignore)
            .str("Database", &self.database)
            .str("User", &self.user)
            .str("Password", self.password.expose())
            .str("Table", &self.table)
            .done()
    }
}

/// [`MysqlConfig::from_wire`].
pub fn parse_config(config: &Json) -> Result<MysqlConfig> {
    MysqlConfig::from_wire(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Json {
        json!({"Host": "db", "Port": "3306", "Database": "d", "User": "u", "Password": "pw",
               "Table": "t", "Ignore": "false"})
    }

    #[test]
    fn parses_pydatahub_config() {
        let c = parse_config(&good()).unwrap();
        assert_eq!(c.port, 3306);
        assert!(!c.ignore);
        assert_eq!(c.to_wire(), good());
        let mut j = good();
        j["Ignore"] = json!("TRUE");
        j["Port"] = json!(3307);
        let c = parse_config(&j).unwrap();
        assert!(c.ignore);
        assert_eq!(c.port, 3307);
        assert!(!format!("{c:?}").contains("pw"), "{c:?}");
    }

    #[test]
    fn errors_name_the_field() {
        for (key, value) in [
            ("Port", json!("abc")),
            ("Port", json!("99999")),
            ("Ignore", json!("yes")),
            ("Host", json!("")),
            ("Table", json!([5])),
        ] {
            let mut j = good();
            j[key] = value;
            let e = parse_config(&j).unwrap_err().to_string();
            assert!(e.starts_with(&format!("Config.{key} ")), "{e}");
        }
        for key in ["Host", "Port", "Database", "User", "Table"] {
            let mut j = good();
            j.as_object_mut().unwrap().remove(key);
            let e = parse_config(&j).unwrap_err().to_string();
            assert_eq!(e, format!("Config.{key} is missing or empty"));
        }
    }
}
