//! The archive's location, `s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]`, and the object
//! store client made from it.
//!
//! `endpoint` points at an S3-compatible service (s3s-fs, MinIO, Ceph, OSS in S3 mode); without
//! it the client talks to AWS. Plain `http://` is allowed only when the endpoint says so.
//! Unknown query keys are refused, naming the key. The access keys come separately (never in the
//! URL, so they cannot end up in a log line that prints the URL) and are redacted in `Debug`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::archive::ArchiveError;

/// Where the archive lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveLocation {
    pub bucket: String,
    /// Objects go below this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
}

/// S3 access keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchiveCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for ArchiveCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

fn bad(msg: String) -> ArchiveError {
    ArchiveError::Config(format!("archive: {msg}"))
}

impl ArchiveLocation {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]`.
    pub fn parse(s: &str) -> Result<ArchiveLocation, ArchiveError> {
        let url = Url::parse(s).map_err(|e| bad(format!("not a URL ({e})")))?;
        if url.scheme() != "s3" {
            return Err(bad(format!("scheme {:?} is not s3", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials do not belong in the URL".into()));
        }
        let bucket = url.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(bad("the bucket (s3://BUCKET/...) is missing".into()));
        }
        let prefix = url.path().trim_matches('/').to_string();
        let mut endpoint = None;
        let mut region = "us-east-1".to_string();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    let e = Url::parse(&v).map_err(|e| bad(format!("endpoint: {e}")))?;
                    if !matches!(e.scheme(), "http" | "https") {
                        return Err(bad(format!(
                            "endpoint: scheme {:?} is not http(s)",
                            e.scheme()
                        )));
                    }
                    endpoint = Some(v.trim_end_matches('/').to_string());
                }
                "region" if !v.is_empty() => region = v.into_owned(),
                "region" => return Err(bad("region: empty".into())),
                other => return Err(bad(format!("unknown query key {other:?}"))),
            }
        }
        Ok(ArchiveLocation {
            bucket,
            prefix,
            endpoint,
            region,
        })
    }

    /// The S3 client for this location.
    pub fn open_store(
        &self,
        credentials: &ArchiveCredentials,
    ) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
        let client = ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(5))
            .with_allow_http(
                self.endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        Ok(Arc::new(b.build()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_mistakes_name_the_field() {
        let l =
            ArchiveLocation::parse("s3://hub/arch/ive/?endpoint=http://127.0.0.1:9000/&region=eu")
                .unwrap();
        assert_eq!(
            l,
            ArchiveLocation {
                bucket: "hub".into(),
                prefix: "arch/ive".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "eu".into(),
            }
        );
        let l = ArchiveLocation::parse("s3://b").unwrap();
        assert_eq!(
            (l.prefix.as_str(), l.endpoint, l.region.as_str()),
            ("", None, "us-east-1")
        );
        for (url, says) in [
            ("gs://b/p", "scheme"),
            ("s3:///p", "bucket"),
            ("s3://b/p?endpoint=ftp://x", "endpoint"),
            ("s3://b/p?bogus=1", "bogus"),
            ("s3://ak:sk@b/p", "credentials"),
            ("s3://b/p?region=", "region"),
        ] {
            let err = ArchiveLocation::parse(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn the_secret_key_is_redacted() {
        let c = ArchiveCredentials {
            access_key_id: "ak".into(),
            secret_access_key: "very-secret".into(),
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
