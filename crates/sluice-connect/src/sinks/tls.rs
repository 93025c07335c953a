//! TLS to every connector target (rustls with ring; never OpenSSL): the policy and how each
//! client applies it.
//!
//! The policy comes from two server config keys and is process-wide: the server [`install`]s
//! it once at start, before any connector runs, and every sink reads it ([`current`]) when it
//! opens. Until then (unit tests, tools) the default applies: prefer, system roots only.
//!
//! | key | values | effect |
//! |-----|--------|--------|
//! | `connector_tls` | `"prefer"` (default), `"require"` | database targets (below) |
//! | `connector_tls_ca_file` | PEM file of CA certificates | trusted next to the system roots, by every target |
//!
//! Database targets (MySQL/ADS over the MySQL protocol, PostgreSQL/Hologres), see [`connect`]:
//! - **prefer**: TLS whenever the server offers it, without checking its certificate (what
//!   libpq's `sslmode=prefer` does). A server that offers no TLS, or whose handshake fails, is
//!   used in plaintext; that is logged as a WARN once per target (`host:port`) and process,
//!   never again on a reconnect or sink restart.
//! - **require**: TLS or nothing, and the certificate is verified (chain to a trusted CA and
//!   host name) against the CA file plus the system roots. A server without TLS or with an
//!   untrusted certificate is a configuration error: the task hangs with the reason.
//!
//! HTTP targets (the DataHub sink, later HTTP sinks), see [`http_client_builder`]: the URL's
//! scheme decides; `https://` verifies against the system roots plus the CA file. A TLS or
//! certificate failure is a configuration error ([`tls_failure`]), never retried as transient.
//!
//! The policy never holds a secret; the CA file is public material.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::Deserialize;
#[cfg(feature = "sink-mysql")]
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
#[cfg(feature = "sink-hologres")]
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::sink::SinkError;

/// `connector_tls`: how database targets are secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS when the server offers it, else plaintext with a warning (once per target).
    #[default]
    Prefer,
    /// TLS required, certificate and host name verified.
    Require,
}

/// The connectors' TLS policy: the mode and the extra trusted CAs.
#[derive(Debug, Clone, Default)]
pub struct ConnectorTls {
    mode: TlsMode,
    /// The CA file and its certificates (PEM, validated), if configured.
    ca: Option<(PathBuf, Arc<Vec<u8>>)>,
}

impl ConnectorTls {
    /// Builds the policy; reads and checks the CA file (readable, holds at least one
    /// certificate, each one parses). The error says what is wrong with the file.
    pub fn new(mode: TlsMode, ca_file: Option<&Path>) -> Result<ConnectorTls, String> {
        let ca = match ca_file {
            None => None,
            Some(path) => Some((path.to_path_buf(), Arc::new(read_ca_file(path)?))),
        };
        Ok(ConnectorTls { mode, ca })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|(p, _)| p.as_path())
    }

    /// What a verifying client trusts, for messages.
    fn trusted(&self) -> String {
        match self.ca_file() {
            Some(p) => format!("the system roots and connector_tls_ca_file {}", p.display()),
            None => "the system roots (connector_tls_ca_file is not set)".to_string(),
        }
    }
}

/// Reads a PEM CA file: every `CERTIFICATE` block must be a certificate rustls accepts as a
/// trust anchor, and there must be at least one.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
        store
            .add(cert)
            .map_err(|e| format!("{} holds a bad certificate: {e}", path.display()))?;
    }
    if store.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (BEGIN CERTIFICATE)",
            path.display()
        ));
    }
    Ok(pem)
}

static POLICY: RwLock<Option<Arc<ConnectorTls>>> = RwLock::new(None);

/// Sets the process-wide policy (the server does this once at start).
pub fn install(policy: ConnectorTls) {
    *POLICY.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(policy));
}

/// The policy in force: the installed one, else the default (prefer, system roots).
pub fn current() -> Arc<ConnectorTls> {
    POLICY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// How one database connection attempt is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS without certificate checks (prefer mode's first try).
    Encrypted,
    /// TLS with the chain and host name verified against the trusted CAs (require mode).
    Verified,
    /// No TLS (prefer mode's fallback).
    Plain,
}

/// Connect options of a database driver that [`connect`] can secure.
pub trait DbOptions: Clone + Send {
    fn with_transport(self, transport: Transport, tls: &ConnectorTls) -> Self;
}

#[cfg(feature = "sink-mysql")]
impl DbOptions for MySqlConnectOptions {
    fn with_transport(self, transport: Transport, tls: &ConnectorTls) -> Self {
        match transport {
            Transport::Plain => self.ssl_mode(MySqlSslMode::Disabled),
            Transport::Encrypted => self.ssl_mode(MySqlSslMode::Required),
            Transport::Verified => {
                let o = self.ssl_mode(MySqlSslMode::VerifyIdentity);
                match &tls.ca {
                    Some((_, pem)) => o.ssl_ca_from_pem(pem.to_vec()),
                    None => o,
                }
            }
        }
    }
}

#[cfg(feature = "sink-hologres")]
impl DbOptions for PgConnectOptions {
    fn with_transport(self, transport: Transport, tls: &ConnectorTls) -> Self {
        match transport {
            Transport::Plain => self.ssl_mode(PgSslMode::Disable),
            Transport::Encrypted => self.ssl_mode(PgSslMode::Require),
            Transport::Verified => {
                let o = self.ssl_mode(PgSslMode::VerifyFull);
                match &tls.ca {
                    Some((_, pem)) => o.ssl_root_cert_from_pem(pem.to_vec()),
                    None => o,
                }
            }
        }
    }
}

/// Targets already warned about falling back to plaintext (`host:port`).
static WARNED_PLAINTEXT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Logs the plaintext fallback for `target` (`host:port`) once per process; true if it did.
pub fn warn_plaintext_once(target: &str, reason: &str) -> bool {
    let mut warned = WARNED_PLAINTEXT.lock().unwrap_or_else(|e| e.into_inner());
    if !warned
        .get_or_insert_with(HashSet::new)
        .insert(target.to_string())
    {
        return false;
    }
    tracing::warn!(
        target_address = target,
        "connector target {target} is used WITHOUT TLS (connector_tls = \"prefer\"): {reason}; \
         set connector_tls = \"require\" to refuse plaintext"
    );
    true
}

/// Opens a database connection (or pool) to `host_port` under the policy: `attempt` connects
/// with the options it is given; `context` starts error messages. Returns what it opened and the options that worked, for later connections.
///
/// Prefer: first with TLS ([`Transport::Encrypted`]); if the server offers no TLS or the
/// handshake fails, again in plaintext, warning once per `host:port`. Require: once, verified;
/// a TLS failure becomes [`SinkError::Config`] naming the CAs trusted. Other errors go through
/// the sink's `classify`.
pub async fn connect<O, T, F, Fut>(
    tls: &ConnectorTls,
    context: &str,
    host_port: &str,
    options: O,
    attempt: F,
    classify: impl Fn(sqlx::Error) -> SinkError,
) -> Result<(T, O), SinkError>
where
    O: DbOptions,
    F: Fn(O) -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match tls.mode {
        TlsMode::Require => {
            let o = options.with_transport(Transport::Verified, tls);
            match attempt(o.clone()).await {
                Ok(t) => Ok((t, o)),
                Err(e) => match tls_failure(&e) {
                    Some(reason) => Err(SinkError::config(format!(
                        "{context}: TLS is required (connector_tls = \"require\") but failed: \
                         {reason} (trusted: {})",
                        tls.trusted()
                    ))),
                    None => Err(classify(e)),
                },
            }
        }
        TlsMode::Prefer => {
            let o = options.clone().with_transport(Transport::Encrypted, tls);
            match attempt(o.clone()).await {
                Ok(t) => Ok((t, o)),
                Err(e) => match tls_failure(&e) {
                    Some(reason) => {
                        let o = options.with_transport(Transport::Plain, tls);
                        let t = attempt(o.clone()).await.map_err(classify)?;
                        warn_plaintext_once(host_port, &reason);
                        Ok((t, o))
                    }
                    None => Err(classify(e)),
                },
            }
        }
    }
}

/// If `e` (or an error it wraps) is a TLS failure — no TLS offered, a failed handshake, an
/// untrusted or mismatched certificate — its description; else `None`.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(sqlx::Error::Tls(inner)) = err.downcast_ref::<sqlx::Error>() {
            return Some(format!("TLS: {inner}"));
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe_rustls(r));
        }
        // io::Error::source skips the error it wraps (itself often an io::Error): descend
        // into it explicitly.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => err.source(),
            },
            None => err.source(),
        };
    }
    None
}

fn describe_rustls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(_) => format!(
            "the server's certificate is not trusted ({e}); put the CA that signed it in \
             connector_tls_ca_file"
        ),
        _ => format!("TLS handshake failed ({e})"),
    }
}

/// The HTTP client builder every HTTP sink starts from: rustls, the system roots, plus the
/// policy's CA file.
pub fn http_client_builder(tls: &ConnectorTls) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some((_, pem)) = &tls.ca {
        // read_ca_file checked every certificate already.
        if let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem) {
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
    }
    b
}

/// An HTTP failure that is a TLS problem, as a configuration error with the trusted CAs named.
pub fn http_config_error(
    tls: &ConnectorTls,
    what: &str,
    e: &(dyn std::error::Error + 'static),
) -> Option<SinkError> {
    tls_failure(e)
        .map(|reason| SinkError::config(format!("{what}: {reason} (trusted: {})", tls.trusted())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_is_checked_at_the_door() {
        let dir = std::env::temp_dir().join(format!("sluice-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = ConnectorTls::new(TlsMode::Require, Some(&missing)).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = ConnectorTls::new(TlsMode::Prefer, Some(&empty)).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let bad = dir.join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = ConnectorTls::new(TlsMode::Prefer, Some(&bad)).unwrap_err();
        assert!(err.contains("bad certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        let default = ConnectorTls::new(TlsMode::default(), None).unwrap();
        assert_eq!(default.mode(), TlsMode::Prefer);
        assert!(default.ca_file().is_none());
    }

    #[test]
    fn nothing_in_the_build_uses_openssl_or_native_tls() {
        let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
        let lock = std::fs::read_to_string(lock).unwrap();
        assert!(
            lock.contains("name = \"rustls\""),
            "rustls is missing from Cargo.lock"
        );
        for name in [
            "openssl",
            "openssl-sys",
            "native-tls",
            "hyper-tls",
            "tokio-native-tls",
        ] {
            assert!(
                !lock.contains(&format!("name = \"{name}\"\n")),
                "Cargo.lock holds {name}: TLS must go through rustls"
            );
        }
    }

    #[test]
    fn plaintext_warning_is_once_per_target() {
        assert!(warn_plaintext_once("unit-host:1", "no TLS"));
        assert!(!warn_plaintext_once("unit-host:1", "no TLS"));
        assert!(warn_plaintext_once("unit-host:2", "no TLS"));
    }

    #[test]
    fn tls_failures_are_recognised_through_wrappers() {
        let no_tls = sqlx::Error::Tls("server does not support TLS".into());
        assert!(tls_failure(&no_tls)
            .unwrap()
            .contains("does not support TLS"));
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        // As hyper-rustls hands it on: an io::Error around tokio-rustls' io::Error.
        let io = std::io::Error::other(io);
        let wrapped = sqlx::Error::Io(io);
        let msg = tls_failure(&wrapped).unwrap();
        assert!(msg.contains("connector_tls_ca_file"), "{msg}");
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(tls_failure(&refused).is_none());
    }
}
