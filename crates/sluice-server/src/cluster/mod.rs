//! The cluster mode of `sluice serve --cluster` (issue 14): several stateless nodes share one
//! PostgreSQL database (metadata through `MetaStore`'s PostgreSQL backend, every shard on
//! sluice-cluster's `PgLog`) and, optionally, an S3 archive.
//!
//! - [`ClusterOptions`] (here): the settings, validated at the door;
//! - [`runtime`] holds [`runtime::ClusterRuntime`], what a node holds while it runs (the shard
//!   log, the lease store, the archive), reachable from the catalog (`Catalog::cluster`);
//! - [`archiving`] runs the background archiver loop (one shard lease per shard);
//! - [`http_refresh`] is the HTTP layer that brings the catalog and the access keys up to date
//!   before a request is served, and [`checked_put`] runs a put by shard that skipped it;
//! - [`error`], with [`error::ClusterError`];
//! - [`ownership`]: who runs which piece of work (subscriptions, connectors): leases with
//!   epochs, rendezvous placement over the live nodes, routing of a request to its owner;
//! - [`work`]: [`ownership::WorkHooks`] over the catalog (what gaining or losing a key does).
//!
//! Keep this file a list of `pub mod` lines and the options struct.

pub mod archiving;
pub mod checked_put;
pub mod error;
pub mod http_refresh;
pub mod ownership;
pub mod runtime;
pub mod work;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use error::ClusterError;
pub use sluice_cluster::archive_url::ArchiveCredentials;

/// The settings of the cluster mode (flags of `sluice serve`).
#[derive(Clone)]
pub struct ClusterOptions {
    /// `postgres://user:password@host:port/db[?sslmode=...]` (holds a password: never logged).
    pub url: String,
    /// `s3://bucket/prefix?endpoint=...`: the archive, if any.
    pub archive: Option<String>,
    /// The archive's S3 keys (`sluice serve` takes them from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`); required with `archive`. Debug output hides the secret.
    pub archive_keys: Option<ArchiveCredentials>,
    /// This node's id (the owner written into its leases).
    pub node_id: String,
    /// `host:port` where other nodes reach this one.
    pub advertise: String,
    /// The server key every node shares (it seals the stored access keys).
    pub server_key_file: PathBuf,
    /// How often the catalog version is polled for other nodes' changes.
    pub catalog_poll: Duration,
    /// How often the archiver looks at the shards (with `archive`).
    pub archive_every: Duration,
    // issue 14: part B
    /// The leases of subscriptions and connectors: expiry and renewal (`ownership.rs`).
    pub work_leases: sluice_cluster::lease::LeaseConfig,
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &redacted_url(&self.url))
            .field("archive", &self.archive)
            .field("archive_keys", &self.archive_keys)
            .field("node_id", &self.node_id)
            .field("advertise", &self.advertise)
            .field("server_key_file", &self.server_key_file)
            .field("catalog_poll", &self.catalog_poll)
            .field("archive_every", &self.archive_every)
            .field("work_leases", &self.work_leases)
            .finish()
    }
}

/// `url` with its password replaced, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

impl ClusterOptions {
    /// Options with the defaults for the intervals.
    pub fn new(
        url: impl Into<String>,
        node_id: impl Into<String>,
        advertise: impl Into<String>,
        server_key_file: impl Into<PathBuf>,
    ) -> ClusterOptions {
        ClusterOptions {
            url: url.into(),
            archive: None,
            archive_keys: None,
            node_id: node_id.into(),
            advertise: advertise.into(),
            server_key_file: server_key_file.into(),
            catalog_poll: Duration::from_millis(100),
            archive_every: Duration::from_secs(1),
            // issue 14: part B
            work_leases: Default::default(),
        }
    }

    /// Checks every field; the error names the flag. Returns whether the URL leaves TLS to
    /// libpq's default (no `sslmode`) while reaching a host other than loopback, which the
    /// caller warns about.
    pub fn validate(&self) -> Result<bool, ClusterError> {
        let bad = |m: String| Err(ClusterError::Config(m));
        let url = match url::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => return bad(format!("--cluster is not a URL ({e})")),
        };
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return bad(format!(
                "--cluster must be a postgres:// URL, not {}://",
                url.scheme()
            ));
        }
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return bad("--cluster has no host".into());
        }
        if url.path().trim_matches('/').is_empty() {
            return bad("--cluster names no database (postgres://host:port/DB)".into());
        }
        if let Some(a) = &self.archive {
            sluice_cluster::archive_url::ArchiveLocation::parse(a)
                .map_err(|e| ClusterError::Config(format!("--archive: {e}")))?;
            if self.archive_keys.as_ref().is_none_or(|k| {
                k.access_key_id.trim().is_empty() || k.secret_access_key.trim().is_empty()
            }) {
                return bad(
                    "--archive needs the S3 keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                        .into(),
                );
            }
        }
        let id = self.node_id.trim();
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return bad(format!(
                "--node-id {:?} is invalid: 1 to 128 of A-Z a-z 0-9 - _ . :",
                self.node_id
            ));
        }
        match self.advertise.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return bad(format!("--advertise {:?} is not host:port", self.advertise)),
        }
        if self.catalog_poll.is_zero() || self.archive_every.is_zero() {
            return bad("the catalog poll and archive intervals must be above zero".into());
        }
        // issue 14: part B
        self.work_leases
            .validate()
            .map_err(|e| ClusterError::Config(format!("work leases: {e}")))?;
        let has_sslmode = url.query_pairs().any(|(k, _)| k == "sslmode");
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Ok(!has_sslmode && !loopback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClusterOptions {
        ClusterOptions::new(
            "postgres://u:secretpw@127.0.0.1:5432/hub",
            "node-1",
            "127.0.0.1:8090",
            "/etc/sluice/server.key",
        )
    }

    #[test]
    fn mistakes_are_refused_naming_the_flag() {
        assert!(!options().validate().unwrap());
        type Case = (&'static str, fn(&mut ClusterOptions));
        let cases: [Case; 6] = [
            ("--cluster", |o| o.url = "mysql://h/db".into()),
            ("--cluster", |o| o.url = "postgres://h:5432/".into()),
            ("--node-id", |o| o.node_id = "a b".into()),
            ("--advertise", |o| o.advertise = "nohost".into()),
            ("--archive", |o| o.archive = Some("http://bucket".into())),
            ("--archive", |o| o.archive = Some("s3://bucket/p".into())),
        ];
        for (flag, change) in cases {
            let mut o = options();
            change(&mut o);
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{e:?} should name {flag}");
            assert!(!e.contains("secretpw"), "{e}");
        }
    }

    #[test]
    fn an_unencrypted_url_to_another_host_is_flagged_and_the_password_never_shown() {
        let mut o = options();
        o.url = "postgres://u:secretpw@db.example:5432/hub".into();
        assert!(o.validate().unwrap(), "no sslmode, not loopback");
        o.url.push_str("?sslmode=verify-full");
        assert!(!o.validate().unwrap());
        o.archive = Some("s3://b/p".into());
        o.archive_keys = Some(ArchiveCredentials {
            access_key_id: "AK".into(),
            secret_access_key: "archivesecret".into(),
        });
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("secretpw") && !shown.contains("archivesecret"),
            "{shown}"
        );
        assert!(shown.contains("db.example"), "{shown}");
    }
}
