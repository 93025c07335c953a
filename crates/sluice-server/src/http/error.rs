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
        Error::NoSuchConnector(_) => ErrorCode::NoSuchConnector,
        Error::ProjectExists(_) => ErrorCode::ProjectAlreadyExist,
        Error::TopicExists(_) => ErrorCode::TopicAlreadyExist,
        Error::InvalidParameter(_) => ErrorCode::InvalidParameter,
        Error::InvalidSchema(_) => ErrorCode::InvalidSchema,
        Error::MalformedRecord(_) => ErrorCode::MalformedRecord,
        Error::InvalidCursor(_) => ErrorCode::InvalidCursor,
        Error::ShardNotActive(_) | Error::ShardReadEnd(_) => ErrorCode::InvalidShardOperation,
        Error::SeekOutOfRange(_) => ErrorCode::SeekOutOfRange,
        Error::InvalidOperation(_) => ErrorCode::InvalidOperation,
        Error::LimitExceeded(_) => ErrorCode::LimitExceeded,
        Error::Unauthorized(_) => ErrorCode::Unauthorized,
        Error::UnknownRequest(_) => ErrorCode::InvalidUriSpec,
        Error::Storage(LogError::OutOfRange { .. }) => ErrorCode::InvalidCursor,
        Error::Storage(_) | Error::Meta(_) | Error::Internal(_) => ErrorCode::InternalServerError,
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
        if code == ErrorCode::InternalServerError {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = error_body(code, &self.to_string()).into_response();
        *response.status_mut() =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
