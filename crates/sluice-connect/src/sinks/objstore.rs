//! The one place that builds an [`ObjectStore`] (crate `object_store`, S3 over reqwest with
//! rustls; never OpenSSL) for the sinks that write objects (SINK_OSS, SINK_ODPS's lake files),
//! and that classifies its errors into [`SinkError`] kinds.
//!
//! Where objects go ([`StoreSpec`]):
//! - `file:///dir[/prefix]`: a local directory ([`LocalFileSystem`]; a put writes a temporary
//!   file and renames it, so an object appears complete or not at all);
//! - `s3://bucket/prefix` (AWS's endpoints) or an endpoint URL plus a bucket (OSS, MinIO,
//!   s3s-fs): path-style requests (`endpoint/bucket/key`), signed with the access key when one
//!   is given (anonymous otherwise; never the instance metadata service).
//!
//! Plain http only when the endpoint says `http://`, or names a loopback host without a
//! scheme; anything else is https, verified against the system roots plus the connector TLS
//! policy's CA file ([`tls::current`], `connector_tls_ca_file`).
//!
//! Errors ([`classify`]): unreachable, timeouts, 5xx, 408 and 429 are transient; 401/403, a
//! missing bucket (404) and other 4xx are configuration errors; local I/O is transient except
//! permission denied. object_store retries a request only briefly (the runtime owns the
//! backoff), so an outage reaches the task's status within seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};

use crate::sink::SinkError;
use crate::sinks::tls::{self, ConnectorTls};
use crate::sinks::Secret;

/// Objects larger than this go up as a multipart upload (completed at the end, so still
/// visible all at once); smaller ones as one PUT.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
const PART_SIZE: usize = 16 << 20;
/// The default region for signing (s3s-fs, MinIO and most gateways accept any).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where a store's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (`file:///dir`).
    Local(PathBuf),
    /// A bucket; `endpoint` is a full URL (`None`: AWS's own endpoints).
    S3 {
        endpoint: Option<String>,
        bucket: String,
    },
}

/// Everything needed to open a store: location, key prefix, credentials. `Debug` never shows
/// the secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub location: Location,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub region: String,
}

impl StoreSpec {
    /// Parses `file:///dir` or `s3://bucket/prefix`.
    pub fn from_uri(uri: &str) -> Result<StoreSpec, String> {
        if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{uri:?}: a file URI needs an absolute path (file:///dir)"
                ));
            }
            return Ok(StoreSpec::new(Location::Local(PathBuf::from(path)), ""));
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket)?;
            let location = Location::S3 {
                endpoint: None,
                bucket: bucket.to_string(),
            };
            return Ok(StoreSpec::new(location, prefix));
        }
        Err(format!(
            "{uri:?}: unsupported object store URI (use file:///dir or s3://bucket/prefix)"
        ))
    }

    /// A bucket behind an S3-compatible endpoint (`http://host:port`, `https://host`, or a
    /// bare host: https, except loopback hosts, which get http).
    pub fn s3(endpoint: &str, bucket: &str, prefix: &str) -> Result<StoreSpec, String> {
        check_bucket(bucket)?;
        let location = Location::S3 {
            endpoint: Some(endpoint_url(endpoint)?),
            bucket: bucket.to_string(),
        };
        Ok(StoreSpec::new(location, prefix))
    }

    fn new(location: Location, prefix: &str) -> StoreSpec {
        StoreSpec {
            location,
            prefix: prefix.trim_matches('/').to_string(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            region: DEFAULT_REGION.to_string(),
        }
    }

    pub fn with_credentials(mut self, access_key_id: &str, secret: &Secret) -> StoreSpec {
        self.access_key_id = access_key_id.to_string();
        self.secret_access_key = secret.clone();
        self
    }

    /// How the store is named in messages (no credentials).
    pub fn describe(&self) -> String {
        let base = match &self.location {
            Location::Local(dir) => format!("file://{}", dir.display()),
            Location::S3 {
                endpoint: Some(e),
                bucket,
            } => format!("{}/{bucket}", e.trim_end_matches('/')),
            Location::S3 {
                endpoint: None,
                bucket,
            } => format!("s3://{bucket}"),
        };
        if self.prefix.is_empty() {
            base
        } else {
            format!("{base}/{}", self.prefix)
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(format!("{bucket:?} is not a bucket name"));
    }
    Ok(())
}

/// The endpoint as a URL: the given scheme, or https (http for a loopback host).
pub fn endpoint_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err("the endpoint is empty".to_string());
    }
    if e.starts_with("http://") || e.starts_with("https://") {
        return Ok(e.to_string());
    }
    if e.contains("://") {
        return Err(format!(
            "{endpoint:?}: the endpoint must be http:// or https://"
        ));
    }
    let host = host_of(e);
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(format!("{}://{e}", if loopback { "http" } else { "https" }))
}

/// `host` of `host[:port][/path]` (IPv6 in brackets kept whole).
fn host_of(authority: &str) -> &str {
    let a = authority.split('/').next().unwrap_or(authority);
    if a.starts_with('[') {
        return a.split_inclusive(']').next().unwrap_or(a);
    }
    a.split(':').next().unwrap_or(a)
}

/// An opened store plus the key prefix every object goes under.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    describe: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("at", &self.describe).finish()
    }
}

impl Store {
    /// Opens the store (no request is made yet). A bad spec, an unusable local directory or
    /// a client that cannot be built is a configuration error.
    pub fn open(spec: &StoreSpec, tls: &ConnectorTls) -> Result<Store, SinkError> {
        let describe = spec.describe();
        let inner: Arc<dyn ObjectStore> = match &spec.location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    SinkError::config(format!("cannot create {}: {e}", dir.display()))
                        .with_source(e)
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| classify(e, &format!("opening {describe}")))?;
                Arc::new(fs)
            }
            Location::S3 { endpoint, bucket } => Arc::new(
                s3_builder(spec, endpoint.as_deref(), bucket, tls)?
                    .build()
                    .map_err(|e| {
                        SinkError::config(format!("object store {describe}: {e}")).with_source(e)
                    })?,
            ),
        };
        Ok(Store {
            inner,
            prefix: spec.prefix.clone(),
            describe,
        })
    }

    /// The object store itself (for listing and reading, e.g. in tests).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Where the store is, for messages (`http://host/bucket/prefix`).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The full path of `key` (below the prefix).
    pub fn path(&self, key: &str) -> Path {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Checks that the bucket answers and the credentials may list it (one list request
    /// below the prefix): an unreachable store is transient, a missing bucket or a refused
    /// key pair a configuration error, so a task hangs with the reason before any record.
    pub async fn check(&self) -> Result<(), SinkError> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        self.inner
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &format!("checking {}", self.describe)))
    }

    /// The names of the objects directly below `dir` (a key prefix ending at a `/`).
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>, SinkError> {
        let path = self.path(dir.trim_end_matches('/'));
        let listing = self
            .inner
            .list_with_delimiter(Some(&path))
            .await
            .map_err(|e| classify(e, &format!("listing {}/{dir}", self.describe)))?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect())
    }

    /// Deletes one object (a missing one is fine).
    pub async fn delete(&self, key: &str) -> Result<(), SinkError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e, &format!("deleting {}/{key}", self.describe))),
        }
    }

    /// Writes one object so that it becomes visible complete or not at all: one PUT, or a
    /// multipart upload completed at the end (aborted on failure). Overwrites an object of
    /// the same name.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), SinkError> {
        let path = self.path(key);
        let what = format!("writing {}/{key}", self.describe);
        if data.len() <= MULTIPART_THRESHOLD {
            self.inner
                .put(&path, PutPayload::from_bytes(data))
                .await
                .map_err(|e| classify(e, &what))?;
            return Ok(());
        }
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| classify(e, &what))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        w.put(data);
        w.finish().await.map_err(|e| classify(e, &what))?;
        Ok(())
    }
}

fn s3_builder(
    spec: &StoreSpec,
    endpoint: Option<&str>,
    bucket: &str,
    tls: &ConnectorTls,
) -> Result<AmazonS3Builder, SinkError> {
    let mut client = ClientOptions::new()
        .with_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(5))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")));
    if let Some(file) = tls.ca_file() {
        let pem = tls::read_ca_file(file).map_err(SinkError::config)?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| SinkError::config(format!("connector_tls_ca_file: {e}")).with_source(e))?;
        for c in certs {
            client = client.with_root_certificate(c);
        }
    }
    // Brief retries inside a request only: the runtime retries the batch with its backoff
    // and shows the error meanwhile.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    };
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&spec.region)
        .with_virtual_hosted_style_request(false)
        .with_client_options(client)
        .with_retry(retry);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    b = if spec.access_key_id.is_empty() {
        b.with_skip_signature(true)
    } else {
        b.with_access_key_id(&spec.access_key_id)
            .with_secret_access_key(spec.secret_access_key.expose())
    };
    Ok(b)
}

/// Classifies an object_store error (see the module docs); `what` says what was being done.
pub fn classify(e: object_store::Error, what: &str) -> SinkError {
    use object_store::Error as E;
    let kind_config = match &e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Some(true),
        // On a put, 404 is the bucket (NoSuchBucket).
        E::NotFound { .. } => Some(true),
        E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented => Some(true),
        E::UnknownConfigurationKey { .. } => Some(true),
        _ => None,
    };
    let config = kind_config.unwrap_or_else(|| chain_says_config(&e));
    let message = format!("{what}: {e}");
    let err = if config {
        SinkError::config(message)
    } else {
        SinkError::transient(message)
    };
    err.with_source(e)
}

/// Walks the error chain: a connection/timeout error is transient, an HTTP status decides by
/// its class, local permission denied is configuration; anything else transient.
fn chain_says_config(e: &(dyn std::error::Error + 'static)) -> bool {
    if tls::tls_failure(e).is_some() {
        // An untrusted certificate does not heal by retrying.
        return true;
    }
    let mut next = Some(e);
    while let Some(err) = next {
        if err
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return false;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::PermissionDenied;
        }
        if let Some(status) = status_in(&err.to_string()) {
            return (400..500).contains(&status) && status != 408 && status != 429;
        }
        next = err.source();
    }
    false
}

/// The status of object_store's "Server returned non-2xx status code: 503 ..." message.
fn status_in(message: &str) -> Option<u16> {
    const MARK: &str = "status code: ";
    let at = message.find(MARK)? + MARK.len();
    message.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ErrorKind;

    #[test]
    fn uris_and_endpoints_parse() {
        let s = StoreSpec::from_uri("s3://lake/warehouse/t1/").unwrap();
        assert_eq!(
            s.location,
            Location::S3 {
                endpoint: None,
                bucket: "lake".into()
            }
        );
        assert_eq!(s.prefix, "warehouse/t1");
        let f = StoreSpec::from_uri("file:///tmp/x").unwrap();
        assert_eq!(f.location, Location::Local("/tmp/x".into()));
        assert!(StoreSpec::from_uri("file://rel/x").is_err());
        assert!(StoreSpec::from_uri("gs://b").is_err());
        assert!(StoreSpec::from_uri("s3:///x").is_err());

        assert_eq!(
            endpoint_url("127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(endpoint_url("localhost").unwrap(), "http://localhost");
        assert_eq!(endpoint_url("[::1]:9000").unwrap(), "http://[::1]:9000");
        assert_eq!(
            endpoint_url("oss-cn-hangzhou.aliyuncs.com").unwrap(),
            "https://oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            endpoint_url("http://10.0.0.5:80/").unwrap(),
            "http://10.0.0.5:80"
        );
        assert!(endpoint_url("ftp://x").is_err());
        assert!(endpoint_url(" ").is_err());
    }

    #[test]
    fn describe_and_debug_never_show_the_secret() {
        let s = StoreSpec::s3("http://127.0.0.1:1", "b", "p/q")
            .unwrap()
            .with_credentials("AK", &Secret::new("very-secret-sk"));
        assert_eq!(s.describe(), "http://127.0.0.1:1/b/p/q");
        assert!(!format!("{s:?}").contains("very-secret-sk"));
        let store = Store::open(&s, &ConnectorTls::default()).unwrap();
        assert!(!format!("{store:?}").contains("very-secret-sk"));
        assert_eq!(store.path("/a/b.csv").as_ref(), "p/q/a/b.csv");
    }

    #[test]
    fn errors_are_classified() {
        let boxed = |m: &str| -> Box<dyn std::error::Error + Send + Sync> { m.to_string().into() };
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: boxed("403"),
        };
        assert_eq!(classify(denied, "w").kind(), ErrorKind::Config);
        let nobucket = object_store::Error::NotFound {
            path: "k".into(),
            source: boxed("NoSuchBucket"),
        };
        assert_eq!(classify(nobucket, "w").kind(), ErrorKind::Config);
        let s503 = object_store::Error::Generic {
            store: "S3",
            source: boxed("Error performing PUT - Server returned non-2xx status code: 503 Service Unavailable"),
        };
        let e = classify(s503, "writing x");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message().starts_with("writing x: "), "{e}");
        let s400 = object_store::Error::Generic {
            store: "S3",
            source: boxed(
                "Server returned non-2xx status code: 400 Bad Request: InvalidBucketName",
            ),
        };
        assert_eq!(classify(s400, "w").kind(), ErrorKind::Config);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = object_store::Error::Generic {
            store: "S3",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Connect,
                io,
            )),
        };
        assert_eq!(classify(connect, "w").kind(), ErrorKind::Transient);
        let perm = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert_eq!(classify(perm, "w").kind(), ErrorKind::Config);
    }

    #[tokio::test]
    async fn local_directory_puts_whole_objects() {
        let dir = std::env::temp_dir().join(format!("sluice-objstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = StoreSpec::from_uri(&format!("file://{}/pre", dir.display())).unwrap();
        let store = Store::open(&spec, &ConnectorTls::default()).unwrap();
        store
            .put("a/b.csv", Bytes::from_static(b"1,2\n"))
            .await
            .unwrap();
        store
            .put("a/b.csv", Bytes::from_static(b"3,4\n"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.join("pre/a/b.csv")).unwrap(), b"3,4\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
