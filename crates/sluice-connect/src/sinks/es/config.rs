//! `EsConnectorConfig`: `Index`, `Endpoint` (required), `User`, `Password`, `IDFields`,
//! `TypeFields` (lists of field names; returned as strings holding JSON arrays, what pydatahub
//! parses back) and `ProxyMode`.

use serde_json::Value as Json;

use crate::sinks::secret::Secret;
use crate::sinks::wire::{Fields, Out, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsConfig {
    pub index: String,
    pub endpoint: String,
    pub user: String,
    pub password: Secret,
    pub id_fields: Vec<String>,
    pub type_fields: Vec<String>,
    pub proxy_mode: bool,
}

impl EsConfig {
    pub fn from_wire(config: &Json) -> Result<EsConfig> {
        let f = Fields::of(config)?;
        Ok(EsConfig {
            index: f.required("Index")?,
            endpoint: f.required("Endpoint")?,
            user: f.optional("User")?,
            password: f.secret("Password")?,
            id_fields: f.name_list("IDFields")?,
            type_fields: f.name_list("TypeFields")?,
            proxy_mode: f.boolean("ProxyMode", false)?,
        })
    }

    pub fn to_wire(&self) -> Json {
        Out::default()
            .str("Index", &self.index)
            .str("Endpoint", &self.endpoint)
            .str("User", &self.user)
            .str("Password", self.password.expose())
            .name_list("IDFields", &self.id_fields)
            .name_list("TypeFields", &self.type_fields)
            .boolean("ProxyMode", self.proxy_mode)
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_become_strings_holding_arrays() {
        let cfg = json!({"Index": "i", "Endpoint": "e", "IDFields": ["a"], "TypeFields": [], "ProxyMode": "true"});
        let out = EsConfig::from_wire(&cfg).unwrap().to_wire();
        assert_eq!(out["IDFields"], json!("[\"a\"]"));
        assert_eq!(out["TypeFields"], json!("[]"));
        assert_eq!(out["ProxyMode"], json!("true"));
        assert_eq!(EsConfig::from_wire(&out).unwrap().to_wire(), out);
    }

    #[test]
    fn the_password_never_prints() {
        let cfg = json!({"Index": "i", "Endpoint": "e", "User": "elastic", "Password": "pw-s3cret",
                         "IDFields": [], "TypeFields": [], "ProxyMode": "false"});
        let cfg = EsConfig::from_wire(&cfg).unwrap();
        assert!(!format!("{cfg:?}").contains("pw-s3cret"));
        assert_eq!(cfg.password.expose(), "pw-s3cret");
    }
}
