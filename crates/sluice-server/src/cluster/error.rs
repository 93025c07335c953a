//! [`ClusterError`]: what can stop a node from joining the cluster.

/// A failure to set up the cluster mode. Messages never hold the PostgreSQL password.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A flag is invalid; the message names it.
    #[error("{0}")]
    Config(String),
    /// The shard log on PostgreSQL could not be opened.
    #[error("cluster shard log: {0}")]
    Log(#[from] sluice_cluster::log::PgLogError),
    /// The lease tables could not be opened.
    #[error("cluster leases: {0}")]
    Lease(#[from] sluice_cluster::lease::LeaseError),
    /// The archive could not be opened.
    #[error("cluster archive: {0}")]
    Archive(#[from] sluice_cluster::archive::ArchiveError),
    /// The archiver could not be set up.
    #[error("cluster archiver: {0}")]
    Archiver(#[from] sluice_cluster::archiver::ArchiverError),
}

impl From<ClusterError> for crate::service::Error {
    fn from(e: ClusterError) -> Self {
        crate::service::Error::Internal(e.to_string())
    }
}
