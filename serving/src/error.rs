//! Every way a request can fail, as one enum, and the one place serving maps a failure to HTTP
//! ([`ServeError::status`], used by its `IntoResponse`): every error body is
//! `{"error": "<message>"}` with the status the Open Inference Protocol reference gives (400
//! invalid, 404 not found, 413 too large, 503 unavailable, 500 internal, without internals in the
//! message).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared_inference::InputError;

use crate::registry::LookupError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The values do not fit the model: the shared core's own error, with where it happened.
    #[error("model '{model}'{}: {source}", row.map(|r| format!(", row {r}")).unwrap_or_default())]
    Input { model: String, row: Option<usize>, source: InputError },

    #[error(transparent)]
    Lookup(#[from] LookupError),

    #[error(transparent)]
    Control(#[from] crate::repository::ControlError),

    #[error("no such endpoint: {0}; see the Open Inference Protocol v2 and KServe v1 paths")]
    UnknownEndpoint(String),

    /// The request does not follow the protocol (JSON, shapes, datatypes, binary sections).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),

    #[error("request body is larger than the limit of {limit_bytes} bytes (see --max-body-bytes)")]
    PayloadTooLarge { limit_bytes: usize },

    #[error("could not read the request body: {0}")]
    Body(String),

    #[error("server is at its concurrency limit ({limit} requests in flight); retry later")]
    Saturated { limit: usize },

    #[error("request timed out after {millis} ms")]
    Timeout { millis: u128 },

    #[error("{}", match model { Some(m) => format!("model '{m}' is not ready: the server is shutting down"), None => "server is shutting down".to_string() })]
    ShuttingDown { model: Option<String> },

    /// A bug or a lost worker: `detail` goes to the log, the client reads only the message.
    #[error("internal error while predicting")]
    Internal { detail: String },

    #[error("{0}")]
    Denied(#[from] crate::auth::Denied),

    #[error("request target is {length} bytes long; the limit is {limit}")]
    UriTooLong { length: usize, limit: usize },

    #[error("request head has {what}; the limit is {limit}")]
    HeadersTooLarge { what: String, limit: usize },

    #[error("header '{name}' is given {count} times with different values; send it once")]
    ConflictingHeader { name: String, count: usize },

    #[error("Content-Encoding '{encoding}' is not supported: send the body uncompressed")]
    UnsupportedEncoding { encoding: String },

    #[error("{method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed { method: String, path: String, allowed: String },

    #[error("the request body did not arrive within {seconds} s (see --body-timeout-seconds)")]
    BodyTimeout { seconds: u64 },

    #[error(
        "server holds its limit of {limit_bytes} bytes of request bodies being received (see \
         --max-buffered-body-bytes); retry later"
    )]
    BodiesSaturated { limit_bytes: usize },
}

impl ServeError {
    /// An input error, located at the row the core named, if it named one.
    pub fn input(model: &str, source: InputError) -> Self {
        Self::Input { model: model.to_string(), row: source.row(), source }
    }

    /// The status code of each kind of failure: the only place one is chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Input { .. } | Self::Protocol(_) | Self::Body(_) | Self::ConflictingHeader { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Denied(denied) if denied.is_forbidden() => StatusCode::FORBIDDEN,
            Self::Denied(_) => StatusCode::UNAUTHORIZED,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BodiesSaturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Lookup(LookupError::NotServed { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Lookup(_) | Self::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
            Self::Control(
                crate::repository::ControlError::UnknownModel(_) | crate::repository::ControlError::NotLoaded(_),
            ) => StatusCode::NOT_FOUND,
            Self::Control(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Saturated { .. } | Self::Timeout { .. } | Self::ShuttingDown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code for this error: the HTTP status's meaning in gRPC's terms.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ServeError::Timeout { .. } | ServeError::BodyTimeout { .. } => tonic::Code::DeadlineExceeded,
            ServeError::Saturated { .. } | ServeError::BodiesSaturated { .. } | ServeError::PayloadTooLarge { .. } => {
                tonic::Code::ResourceExhausted
            }
            ServeError::Denied(denied) if denied.is_forbidden() => tonic::Code::PermissionDenied,
            ServeError::Denied(_) => tonic::Code::Unauthenticated,
            other => match other.status().as_u16() {
                400 | 408 | 414 | 415 | 431 => tonic::Code::InvalidArgument,
                401 => tonic::Code::Unauthenticated,
                403 => tonic::Code::PermissionDenied,
                404 => tonic::Code::NotFound,
                405 => tonic::Code::Unimplemented,
                413 => tonic::Code::ResourceExhausted,
                503 => tonic::Code::Unavailable,
                _ => tonic::Code::Internal,
            },
        }
    }

    /// The outcome label used in metrics.
    pub fn outcome(&self) -> &'static str {
        match self.status().as_u16() {
            400..=499 => "client_error",
            503 => "unavailable",
            _ => "server_error",
        }
    }
}

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        use axum::http::{HeaderValue, header};
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string())
                .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        match &self {
            // The body was not read (or not all of it): the connection cannot carry another request.
            Self::PayloadTooLarge { .. } | Self::BodyTimeout { .. } | Self::BodiesSaturated { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::Denied(denied) => {
                if let Ok(challenge) = HeaderValue::from_str(&denied.challenge()) {
                    headers.insert(header::WWW_AUTHENTICATE, challenge);
                }
            }
            Self::MethodNotAllowed { allowed, .. } => {
                if let Ok(allow) = HeaderValue::from_str(allowed) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            _ => {}
        }
        response
    }
}

/// A request that does not follow its protocol (Open Inference Protocol v2 or KServe v1). The
/// texts follow the reference's examples: they name the model, the input and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("failed to parse the request JSON buffer: {0}")]
    Json(#[from] serde_json::Error),

    #[error("raw_input_contents holds {raw} entries but the request has {inputs} inputs; it needs one per input")]
    RawContentsCount { inputs: usize, raw: usize },

    #[error("input '{input}' has both contents and raw_input_contents; send its values in one of them")]
    ContentsAndRaw { input: String },

    #[error("input '{input}' of datatype {datatype} must hold its values in contents.{field}")]
    WrongContents { input: String, datatype: String, field: &'static str },

    #[error("Inference-Header-Content-Length must be a byte count, got '{got}'")]
    HeaderLengthNotACount { got: String },

    #[error("Inference-Header-Content-Length is {declared} but the body has only {body} bytes")]
    HeaderLengthPastBody { declared: usize, body: usize },

    #[error("unexpected inference input '{input}' for model '{model}'; the model's inputs are {expected:?}")]
    UnexpectedInput { model: String, input: String, expected: Vec<String> },

    #[error("input '{input}' appears twice in the request for model '{model}'")]
    DuplicateInput { model: String, input: String },

    #[error("input '{input}' has unknown datatype '{datatype}'")]
    UnknownDatatype { input: String, datatype: String },

    #[error("inference input '{input}' data-type is '{datatype}', but model '{model}' expects '{expected}'")]
    WrongDatatype { model: String, input: String, datatype: String, expected: &'static str },

    #[error("unexpected shape for input '{input}' for model '{model}'. Expected [-1] or [-1,1], got {shape:?}")]
    WrongShape { model: String, input: String, shape: Vec<i64> },

    #[error(
        "input '{input}' has {rows} rows but input '{first}' has {first_rows} for model '{model}'; every input needs \
         one value per row"
    )]
    RowCountMismatch { model: String, input: String, rows: usize, first: String, first_rows: usize },

    #[error("input '{input}': binary_data_size must be a byte count")]
    BinarySizeNotACount { input: String },

    #[error(
        "input '{input}' declares {declared} bytes of binary data but only {remaining} remain after the JSON header"
    )]
    BinaryPastEnd { input: String, declared: usize, remaining: usize },

    #[error("input '{input}' has both 'data' and a 'binary_data_size' parameter; send one of them")]
    DataAndBinary { input: String },

    #[error("input '{input}' has neither 'data' nor a 'binary_data_size' parameter")]
    NoData { input: String },

    #[error("the request carries {carried} bytes of binary data but its inputs declare {declared}")]
    BinaryUnclaimed { carried: usize, declared: usize },

    #[error(
        "expected {expected} inputs but got {got} inputs for model '{model}'. Missing required input(s) {missing:?}"
    )]
    MissingInputs { model: String, expected: usize, got: usize, missing: Vec<String> },

    #[error(
        "input '{input}' for model '{model}' has shape {shape:?} ({rows} elements) but its data holds {got} elements"
    )]
    ElementCount { model: String, input: String, shape: Vec<i64>, rows: usize, got: usize },

    #[error("input '{input}', element {element}: BYTES elements must be strings (or null for missing), got {got}")]
    NotAString { input: String, element: usize, got: String },

    #[error("input '{input}', element {element}: expected a number (or null for missing), got {got}")]
    NotANumber { input: String, element: usize, got: String },

    #[error("input '{input}', element {element}: {value} is not an integer but the datatype is {datatype}")]
    NotAnInteger { input: String, element: usize, value: f64, datatype: String },

    #[error("input '{input}', element {element}: {value} is out of range for {datatype}")]
    IntegerOutOfRange { input: String, element: usize, value: String, datatype: String },

    #[error("input '{input}': binary BYTES data ends inside element {element}")]
    BytesTruncated { input: String, element: usize },

    #[error("input '{input}', element {element}: BYTES element is not valid UTF-8")]
    NotUtf8 { input: String, element: usize },

    #[error("input '{input}': {left} bytes of binary data are left after {elements} BYTES elements")]
    BytesLeftOver { input: String, left: usize, elements: usize },

    #[error("input '{input}': {datatype} is not supported; send FP32")]
    HalfPrecision { input: String, datatype: &'static str },

    #[error("input '{input}': {elements} elements of {datatype} need {need} bytes, got {got}")]
    BinaryLength { input: String, elements: usize, datatype: &'static str, need: usize, got: usize },

    #[error("unexpected inference output '{output}' for model '{model}'; the model's outputs are {known:?}")]
    UnknownOutput { model: String, output: String, known: Vec<&'static str> },

    #[error("output '{output}' is requested twice for model '{model}'; name each output once")]
    DuplicateOutput { model: String, output: String },

    #[error("model '{model}', row {row}: each instance must be an object of column -> value, got {got}")]
    NotAnObject { model: String, row: usize, got: String },

    #[error("model '{model}', row {row}, column '{column}': expected a number, text or null, got {got}")]
    InvalidValue { model: String, row: usize, column: String, got: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_status_and_internals_stay_in_the_log() {
        let input =
            ServeError::input("houses", InputError::NotANumber { column: "area".into(), row: 3, got: "'big'".into() });
        assert_eq!(input.status(), StatusCode::BAD_REQUEST);
        assert_eq!(input.to_string(), "model 'houses', row 3: column 'area': expected a number, got 'big'");
        let lookup = ServeError::from(LookupError::UnknownModel("cars".into()));
        assert_eq!(lookup.status(), StatusCode::NOT_FOUND);
        assert_eq!(ServeError::PayloadTooLarge { limit_bytes: 1 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ServeError::Saturated { limit: 2 }.outcome(), "unavailable");
        let internal = ServeError::Internal { detail: "label index 7 of 3 classes".into() };
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.to_string().contains("label index"), "{internal}");
        let json = serde_json::from_str::<i32>("x").expect_err("not JSON");
        assert!(
            ServeError::from(ProtocolError::from(json))
                .to_string()
                .starts_with("failed to parse the request JSON buffer: ")
        );
    }
}
