//! The one place serving maps failures to HTTP: every error body is `{"error": "<message>"}`
//! with the status the Open Inference Protocol reference gives (400 invalid, 404 not found,
//! 413 too large, 503 unavailable, 500 internal, without internals in the message).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::registry::LookupError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body is larger than the limit of {limit_bytes} bytes (see --max-body-bytes)"),
        }
    }

    /// An internal failure: the details go to the log, not to the client.
    pub fn internal() -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error while predicting".into() }
    }

    /// The outcome label used in metrics.
    pub fn outcome(&self) -> &'static str {
        match self.status.as_u16() {
            400..=499 => "client_error",
            503 => "unavailable",
            _ => "server_error",
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(error: LookupError) -> Self {
        ApiError::not_found(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}
