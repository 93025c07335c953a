//! DataHub error codes (protocol doc §3.2) and the HTTP status Sluice answers with.

/// An error code the SDKs map to exceptions; rendered exactly as DataHub spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidUriSpec,
    InvalidParameter,
    InvalidSchema,
    InvalidCursor,
    MalformedRecord,
    NoSuchProject,
    NoSuchTopic,
    NoSuchShard,
    NoSuchConnector,
    NoSuchSubscription,
    NoSuchConsumer,
    SubscriptionOffline,
    OffsetReseted,
    OffsetSessionChanged,
    OffsetSessionClosed,
    ProjectAlreadyExist,
    TopicAlreadyExist,
    InvalidShardOperation,
    SeekOutOfRange,
    InvalidOperation,
    LimitExceeded,
    InternalServerError,
    Unauthorized,
    NoPermission,
    /// What the service and the Go and Java SDKs call an operation refused in the current state
    /// (Go error.go `OperatorDenied`; Java AbstractDatahubClient maps it to NoPermissionException;
    /// pydatahub to InvalidOperationException).
    OperationDenied,
    /// A put_records entry whose ShardId is not a shard id at all (Java e2e PutGetRecordsTest).
    InvalidShardId,
}

impl ErrorCode {
    /// The code as the SDKs expect it in `ErrorCode`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidUriSpec => "InvalidUriSpec",
            ErrorCode::InvalidParameter => "InvalidParameter",
            ErrorCode::InvalidSchema => "InvalidSchema",
            ErrorCode::InvalidCursor => "InvalidCursor",
            ErrorCode::MalformedRecord => "MalformedRecord",
            ErrorCode::NoSuchProject => "NoSuchProject",
            ErrorCode::NoSuchTopic => "NoSuchTopic",
            ErrorCode::NoSuchShard => "NoSuchShard",
            ErrorCode::NoSuchConnector => "NoSuchConnector",
            ErrorCode::NoSuchSubscription => "NoSuchSubscription",
            ErrorCode::NoSuchConsumer => "NoSuchConsumer",
            ErrorCode::SubscriptionOffline => "SubscriptionOffline",
            ErrorCode::OffsetReseted => "OffsetReseted",
            ErrorCode::OffsetSessionChanged => "OffsetSessionChanged",
            ErrorCode::OffsetSessionClosed => "OffsetSessionClosed",
            ErrorCode::ProjectAlreadyExist => "ProjectAlreadyExist",
            ErrorCode::TopicAlreadyExist => "TopicAlreadyExist",
            ErrorCode::InvalidShardOperation => "InvalidShardOperation",
            ErrorCode::SeekOutOfRange => "SeekOutOfRange",
            ErrorCode::InvalidOperation => "InvalidOperation",
            ErrorCode::LimitExceeded => "LimitExceeded",
            ErrorCode::InternalServerError => "InternalServerError",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::NoPermission => "NoPermission",
            ErrorCode::OperationDenied => "OperationDenied",
            ErrorCode::InvalidShardId => "InvalidShardId",
        }
    }

    /// The HTTP status answered with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NoSuchProject
            | ErrorCode::NoSuchTopic
            | ErrorCode::NoSuchShard
            | ErrorCode::NoSuchConnector
            | ErrorCode::NoSuchSubscription => 404,
            ErrorCode::ProjectAlreadyExist | ErrorCode::TopicAlreadyExist => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NoPermission => 403,
            ErrorCode::LimitExceeded => 429,
            ErrorCode::InternalServerError => 500,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
