//! The domain errors of the service layer. They say what went wrong in the user's terms; the
//! HTTP edge (`http/error.rs`) maps each to a DataHub error code in one exhaustive match.

/// A failed service operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("The specified project {0:?} does not exist.")]
    NoSuchProject(String),
    #[error("The specified topic {0:?} does not exist.")]
    NoSuchTopic(String),
    #[error("ShardId Not Exist. Invalid shard id: {0}")]
    NoSuchShard(String),
    /// A shard id that is not a number (a put_records entry's ShardId).
    #[error("Invalid shard id: {0:?} is not a shard id")]
    InvalidShardId(String),
    #[error("The specified project {0:?} already exists.")]
    ProjectExists(String),
    #[error("The specified topic {0:?} already exists.")]
    TopicExists(String),
    #[error("The specified connector {0:?} does not exist.")]
    NoSuchConnector(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("invalid record schema: {0}")]
    InvalidSchema(String),
    #[error("The record is not well-formed: {0}")]
    MalformedRecord(String),
    #[error("The cursor is invalid: {0}")]
    InvalidCursor(String),
    #[error("The specified shard {0} is not active.")]
    ShardNotActive(u32),
    #[error("Shard {0} is closed and has been read to its end.")]
    ShardReadEnd(u32),
    #[error("{0}")]
    SeekOutOfRange(String),
    #[error("The specified subscription {0:?} does not exist.")]
    NoSuchSubscription(String),
    #[error("The subscription {0:?} is offline.")]
    SubscriptionOffline(String),
    #[error("{0}")]
    OffsetReseted(String),
    #[error("{0}")]
    OffsetSessionChanged(String),
    #[error("{0}")]
    OffsetSessionClosed(String),
    #[error("{0}")]
    NoSuchConsumer(String),
    #[error("{0}")]
    InvalidOperation(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("unknown request: {0}")]
    UnknownRequest(String),
    #[error("storage error: {0}")]
    Storage(#[from] sluice_log::LogError),
    #[error("{0}")]
    Meta(#[from] sluice_meta::MetaError),
    #[error("internal error: {0}")]
    Internal(String),
    // issue 7: edge
    /// The client did not send its request in time.
    #[error("{0}")]
    RequestTimeout(String),
    // issue 15: accounts
    /// The signing key lacks a permission; the message names the action and resource.
    #[error("{0}")]
    NoPermission(String),
    // issue 14: ownership
    /// The node that serves this subscription or connector is unknown or unreachable right
    /// now (a hand-over between nodes): retry.
    #[error("service temporarily unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
