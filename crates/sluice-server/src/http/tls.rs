//! HTTPS: the server's certificate and key, loaded once at start into a rustls acceptor.
//!
//! - The certificate file holds the chain in PEM, leaf first; the key file one private key in
//!   PEM (PKCS#8, PKCS#1 or SEC1). Every problem (unreadable file, no PEM section of the right
//!   kind, a section that does not parse, a key that does not belong to the certificate) is a
//!   [`TlsError`] naming the file, reported at start, never at the first connection.
//! - The crypto provider is `ring` (lighter to build than `aws-lc-rs`, which wants cmake); TLS 1.2
//!   and 1.3 with rustls' safe defaults; ALPN offers only `http/1.1`, the one protocol served.
//! - The handshake itself runs in the connection's task, under `tls_handshake_timeout_ms`
//!   (`listen.rs`), holding a connection slot only that long.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

/// Why the certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a PEM certificate file: {problem}")]
    BadCertificate { path: PathBuf, problem: String },
    #[error("{path} is not a PEM private key file: {problem}")]
    BadKey { path: PathBuf, problem: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot serve the certificate {cert} with the key {key}: {problem}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn pem_problem(e: pem::Error, wanted: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!("no {wanted} section"),
        other => other.to_string(),
    }
}

/// Loads the certificate chain and its key and builds the acceptor, checking that they match.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let bad_cert = |problem: String| TlsError::BadCertificate {
        path: cert.to_path_buf(),
        problem,
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(pem_problem(e, "CERTIFICATE")))?;
    if chain.is_empty() {
        return Err(bad_cert("no CERTIFICATE section".into()));
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        problem: pem_problem(e, "PRIVATE KEY"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            problem: e.to_string(),
        })?
        .with_no_client_auth();
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                bad_cert(e.to_string())
            }
            rustls::Error::General(problem) => TlsError::BadKey {
                path: key.to_path_buf(),
                problem,
            },
            other => TlsError::Rejected {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                problem: other.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
