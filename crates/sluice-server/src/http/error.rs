//! The one place where errors become DataHub error responses: JSON body with `ErrorCode`,
//! `ErrorMessage` and `RequestId`, in every protocol (protocol doc §3).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_log::LogError;
use sluice_proto::ErrorCode;

use crate::service::Error;

tokio::task_local! {
    /// The id of the request being served, for error bodies.
    pub static REQUEST_ID: String;
}

/// The DataHub error code for each domain error.
pub fn error_code(err: &Error) -> ErrorCode {
    match err {
        Error::NoSuchProject(_) => ErrorCode::NoSuchProject,
        Error::NoSuchTopic(_) => ErrorCode::NoSuchTopic,
        Error::NoSuchShard(_) => ErrorCode::NoSuchShard,
        Error::InvalidShardId(_) => ErrorCode::InvalidShardId,
        Error::NoSuchConnector(_) => ErrorCode::NoSuchConnector,
        Error::ProjectExists(_) => ErrorCode::ProjectAlreadyExist,
        Error::TopicExists(_) => ErrorCode::TopicAlreadyExist,
        Error::InvalidParameter(_) => ErrorCode::InvalidParameter,
        // The Go and Java SDKs do not know InvalidSchema (Go would retry it); all three SDKs map
        // InvalidParameter to their invalid-parameter error.
        Error::InvalidSchema(_) => ErrorCode::InvalidParameter,
        Error::MalformedRecord(_) => ErrorCode::MalformedRecord,
        Error::InvalidCursor(_) => ErrorCode::InvalidCursor,
        Error::ShardNotActive(_) | Error::ShardReadEnd(_) => ErrorCode::InvalidShardOperation,
        Error::SeekOutOfRange(_) => ErrorCode::SeekOutOfRange,
        Error::NoSuchSubscription(_) => ErrorCode::NoSuchSubscription,
        Error::SubscriptionOffline(_) => ErrorCode::SubscriptionOffline,
        Error::OffsetReseted(_) => ErrorCode::OffsetReseted,
        Error::OffsetSessionChanged(_) => ErrorCode::OffsetSessionChanged,
        Error::OffsetSessionClosed(_) => ErrorCode::OffsetSessionClosed,
        Error::NoSuchConsumer(_) => ErrorCode::NoSuchConsumer,
        // The Go SDK knows only OperationDenied (error.go); pydatahub maps both the same way.
        Error::InvalidOperation(_) => ErrorCode::OperationDenied,
        Error::LimitExceeded(_) => ErrorCode::LimitExceeded,
        Error::Unauthorized(_) => ErrorCode::Unauthorized,
        Error::UnknownRequest(_) => ErrorCode::InvalidUriSpec,
        Error::Storage(LogError::OutOfRange { .. }) => ErrorCode::InvalidCursor,
        Error::Storage(_) | Error::Meta(_) | Error::Internal(_) => ErrorCode::InternalServerError,
        Error::RequestTimeout(_) => ErrorCode::InvalidParameter,
        // issue 15: accounts
        Error::NoPermission(_) => ErrorCode::NoPermission,
        // issue 14: ownership — a code every SDK retries (pydatahub's producer, Go's
        // IsRetryableError); the status says what HTTP says.
        Error::Unavailable(_) => ErrorCode::InternalServerError,
    }
}

/// The HTTP status for each domain error: its code's, except where HTTP has a better word.
fn status(err: &Error, code: ErrorCode) -> StatusCode {
    match err {
        Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        // issue 14: ownership
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

/// Requests refused at the HTTP edge, before any handler: their status says what HTTP says.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("the request URI is {len} bytes long, more than the limit of {limit}")]
    UriTooLong { len: usize, limit: usize },
    #[error(
        "the request headers are too large: {count} fields in {bytes} bytes \
         (limits: {max_count} fields, {max_bytes} bytes)"
    )]
    HeadersTooLarge {
        count: usize,
        bytes: usize,
        max_count: usize,
        max_bytes: usize,
    },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// A plain-text refusal from the framework (a path that is not UTF-8, a bad query, ...).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
}

impl EdgeError {
    fn code_and_status(&self) -> (ErrorCode, StatusCode) {
        match self {
            EdgeError::UriTooLong { .. } => (ErrorCode::InvalidUriSpec, StatusCode::URI_TOO_LONG),
            EdgeError::HeadersTooLarge { .. } => (
                ErrorCode::InvalidParameter,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            EdgeError::MethodNotAllowed { .. } => {
                (ErrorCode::InvalidUriSpec, StatusCode::METHOD_NOT_ALLOWED)
            }
            EdgeError::Rejected { status, .. } => {
                let code = match status.as_u16() {
                    401 => ErrorCode::Unauthorized,
                    403 => ErrorCode::NoPermission,
                    404 | 405 | 414 => ErrorCode::InvalidUriSpec,
                    500.. => ErrorCode::InternalServerError,
                    _ => ErrorCode::InvalidParameter,
                };
                (code, *status)
            }
        }
    }
}

fn json_error(code: ErrorCode, status: StatusCode, message: &str) -> Response {
    let mut response = error_body(code, message).into_response();
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        json_error(code, status, &self.to_string())
    }
}

/// The error body.
pub fn error_body(code: ErrorCode, message: &str) -> String {
    let request_id = REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default();
    serde_json::json!({
        "RequestId": request_id,
        "ErrorCode": code.as_str(),
        "ErrorMessage": message,
        "ErrorDetail": "",
    })
    .to_string()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = error_code(&self);
        if code == ErrorCode::InternalServerError && !matches!(self, Error::Unavailable(_)) {
            tracing::error!(error = %self, "request failed");
        }
        json_error(code, status(&self, code), &self.to_string())
    }
}
