//! SINK_FC: invokes a Function Compute 3.0 function with each delivery as a JSON payload.
//!
//! - `config.rs`: [`FcConfig`] (always built);
//! - `payload.rs`: the JSON body (fields by name, sequence, system time, shard, attributes);
//! - `sign.rs`: the `ACS3-HMAC-SHA256` request signature of the FC 3.0 API;
//! - `writer.rs`: the invocation and how each response is classified.
//!
//! The writer and its crypto dependencies are behind the cargo feature `sink-fc` (on by
//! default). `AuthMode` `sts` (the default when none is sent) is accepted and stored, but its
//! tasks hang saying STS is not available self-hosted; `ak` signs with AccessId/AccessKey.

mod config;
#[cfg(feature = "sink-fc")]
mod payload;
#[cfg(feature = "sink-fc")]
mod sign;
#[cfg(feature = "sink-fc")]
mod writer;

use crate::sink::{BatchDefaults, SharedColumns, Sink, SinkError};
use crate::sinks::wire::AuthMode;

pub use config::FcConfig;
#[cfg(feature = "sink-fc")]
pub use writer::{function_name, FcSink, FUNCTION_ATTEMPTS};

/// The server's global `connector_batch_*` keys for the record count and age; at most 4 MiB of
/// records per invocation (a synchronous invocation's body is limited to 32 MB, and the JSON
/// payload is larger than the records).
pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults {
    records: None,
    bytes: Some(4 << 20),
    age: None,
};

/// What a task with `AuthMode` `sts` reports.
pub const STS_MESSAGE: &str = "SINK_FC: AuthMode sts is accepted and stored, but STS is not \
     available self-hosted; set AuthMode ak with AccessId and AccessKey to invoke the function";

/// Opens a SINK_FC task's sink.
pub async fn open(cfg: FcConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    if cfg.auth.mode == AuthMode::Sts {
        return Err(SinkError::config(STS_MESSAGE.into()));
    }
    #[cfg(feature = "sink-fc")]
    return writer::open(cfg, columns).await;
    #[cfg(not(feature = "sink-fc"))]
    {
        let _ = columns;
        Err(SinkError::config(super::built_without("sink-fc")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Columns, ErrorKind};

    fn cfg(wire: serde_json::Value) -> FcConfig {
        FcConfig::from_wire(&wire).unwrap()
    }

    #[tokio::test]
    async fn sts_is_stored_and_its_tasks_hang_with_the_reason() {
        let c = cfg(
            serde_json::json!({"Endpoint": "http://127.0.0.1:1", "Service": "s",
            "Function": "f"}),
        );
        assert_eq!(c.auth.mode, AuthMode::Sts);
        assert_eq!(c.to_wire()["AuthMode"], "sts");
        let columns = std::sync::Arc::new(Columns {
            names: vec![],
            types: vec![],
        });
        match open(c, columns).await {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Config);
                assert!(
                    e.message.contains("STS is not available self-hosted"),
                    "{e}"
                );
            }
            Ok(_) => panic!("an sts connector opened"),
        }
    }

    #[cfg(feature = "sink-fc")]
    #[tokio::test]
    async fn ak_opens_and_names_the_function_service_dollar_function() {
        let c = cfg(
            serde_json::json!({"Endpoint": "http://127.0.0.1:1", "Service": "svc",
            "Function": "fn", "AuthMode": "ak", "AccessId": "id", "AccessKey": "key"}),
        );
        assert_eq!(function_name(&c), "svc$fn");
        let columns = std::sync::Arc::new(Columns {
            names: vec![],
            types: vec![],
        });
        assert!(open(c.clone(), columns.clone()).await.is_ok());
        let mut no_key = c;
        no_key.auth.access_id.clear();
        no_key.auth.access_key = crate::sinks::Secret::default();
        let e = open(no_key, columns)
            .await
            .err()
            .expect("opened without a key");
        assert_eq!(e.kind, ErrorKind::Config);
    }
}
