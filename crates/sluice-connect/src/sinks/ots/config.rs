//! `OtsConnectorConfig`: `Endpoint`, `InstanceName`, `TableName` (required), the auth fields
//! (`AuthMode` default `sts`) and `WriteMode` (`PUT` default, or `UPDATE`).

use serde_json::Value as Json;

use crate::sinks::wire::{Auth, AuthMode, Choice, Fields, Out, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtsWriteMode {
    Put,
    Update,
}

impl Choice for OtsWriteMode {
    const ALL: &'static [OtsWriteMode] = &[OtsWriteMode::Put, OtsWriteMode::Update];
    fn wire(self) -> &'static str {
        match self {
            OtsWriteMode::Put => "PUT",
            OtsWriteMode::Update => "UPDATE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtsConfig {
    pub endpoint: String,
    pub instance_name: String,
    pub table_name: String,
    pub auth: Auth,
    pub write_mode: OtsWriteMode,
}

impl OtsConfig {
    pub fn from_wire(config: &Json) -> Result<OtsConfig> {
        let f = Fields::of(config)?;
        Ok(OtsConfig {
            endpoint: f.required("Endpoint")?,
            instance_name: f.required("InstanceName")?,
            table_name: f.required("TableName")?,
            auth: Auth::from_wire(&f, AuthMode::Sts)?,
            write_mode: f.choice("WriteMode", Some(OtsWriteMode::Put))?,
        })
    }

    pub fn to_wire(&self) -> Json {
        let out = Out::default()
            .str("Endpoint", &self.endpoint)
            .str("InstanceName", &self.instance_name)
            .str("TableName", &self.table_name);
        self.auth
            .to_wire(out)
            .str("WriteMode", self.write_mode.wire())
            .done()
    }
}
