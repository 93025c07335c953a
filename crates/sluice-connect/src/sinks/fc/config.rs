//! `FcConnectorConfig`: `Endpoint`, `Service`, `Function` (required) and the auth fields
//! (`AuthMode` default `sts`).

use serde_json::Value as Json;

use crate::sinks::wire::{Auth, AuthMode, Fields, Out, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcConfig {
    pub endpoint: String,
    pub service: String,
    pub function: String,
    pub auth: Auth,
}

impl FcConfig {
    pub fn from_wire(config: &Json) -> Result<FcConfig> {
        let f = Fields::of(config)?;
        Ok(FcConfig {
            endpoint: f.required("Endpoint")?,
            service: f.required("Service")?,
            function: f.required("Function")?,
            auth: Auth::from_wire(&f, AuthMode::Sts)?,
        })
    }

    pub fn to_wire(&self) -> Json {
        let out = Out::default()
            .str("Endpoint", &self.endpoint)
            .str("Service", &self.service)
            .str("Function", &self.function);
        self.auth.to_wire(out).done()
    }
}
