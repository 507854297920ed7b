//! The HTTP front end: the router over Open Inference Protocol v2 and KServe v1 endpoints,
//! health, metadata and metrics; bounded concurrency (503 when saturated), a body cap (413),
//! a per-request timeout, request ids. Small requests are answered on the I/O thread that read
//! them; larger ones run on the inference threads ([`crate::pool`]), so that the async executor
//! never spends long on one request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::auth::{self, Tokens};
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::oip;
use crate::pool::InferencePool;
use crate::registry::{LoadedModel, Registry, Target};
use crate::repository::Repository;
use crate::v1;
use shared_inference::{Predictions, output};

/// Operational limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Inference requests processed at once; more get 503 instead of queueing without bound.
    pub max_concurrency: usize,
    /// Time limit of a request handed to the inference threads (see `inline_max_bytes`).
    pub timeout: Duration,
    /// Threads that run forward passes; 0 means one per CPU available to the process.
    pub inference_threads: usize,
    /// Requests whose body is at most this many bytes are parsed, predicted and answered on the
    /// I/O thread that read them (tens of microseconds of work), skipping the hand-off to an
    /// inference thread and back, which costs two context switches, more than such a request's
    /// work on a busy core. Larger requests go to the inference threads and are subject to
    /// `timeout`. 0 sends every request to the inference threads.
    pub inline_max_bytes: usize,
    /// Time a request body may take to arrive once its head has (408 after it).
    pub body_timeout: Duration,
    /// Bytes of request bodies held by the server while they arrive, across all connections;
    /// a body that would go past it gets 503, so slow senders cannot fill the memory.
    pub max_buffered_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_concurrency: 64,
            timeout: Duration::from_secs(30),
            inference_threads: 0,
            inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
            body_timeout: Duration::from_secs(30),
            max_buffered_body_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Longest request target accepted (414 beyond).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields and header bytes accepted in one request (431 beyond).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The default of [`Limits::inline_max_bytes`] (`--inline-max-bytes`): a single record, or a
/// few dozen, fits well within it.
pub const DEFAULT_INLINE_MAX_BYTES: usize = 16 * 1024;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub repository: Arc<Repository>,
    pub metrics: Metrics,
    pub limits: Limits,
    permits: Arc<Semaphore>,
    pool: InferencePool,
    /// One thread for loads and unloads through the API: they are serialized anyway, and a
    /// fixed thread (rather than tokio's blocking pool, which starts new ones) keeps the memory
    /// of repeated loads flat.
    control: InferencePool,
    ready: AtomicBool,
    next_request_id: AtomicU64,
    /// Bytes of request bodies currently held while they arrive.
    buffered_body_bytes: AtomicUsize,
    shadow_in_flight: AtomicUsize,
    pub access: Access,
}

/// Who may call what: the tokens, and whether `/metrics` needs one.
#[derive(Debug, Default)]
pub struct Access {
    pub tokens: Tokens,
    pub protect_metrics: bool,
}

impl AppState {
    /// Fails only when the inference threads cannot be started.
    pub fn new(registry: Registry, limits: Limits) -> std::io::Result<Arc<Self>> {
        Self::with_access(registry, limits, Access::default())
    }

    /// As [`AppState::new`], with access control.
    pub fn with_access(registry: Registry, limits: Limits, access: Access) -> std::io::Result<Arc<Self>> {
        Self::with_repository(Arc::new(Repository::fixed(registry)), limits, access)
    }

    /// Over a live repository.
    pub fn with_repository(repository: Arc<Repository>, limits: Limits, access: Access) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            repository,
            metrics: Metrics::default(),
            limits,
            permits: Arc::new(Semaphore::new(limits.max_concurrency)),
            pool: InferencePool::new(limits.inference_threads)?,
            control: InferencePool::named(1, "repository-control")?,
            ready: AtomicBool::new(true),
            next_request_id: AtomicU64::new(1),
            buffered_body_bytes: AtomicUsize::new(0),
            shadow_in_flight: AtomicUsize::new(0),
            access,
        }))
    }

    /// How many threads run forward passes.
    pub fn inference_threads(&self) -> usize {
        self.pool.threads()
    }

    /// Readiness turns off when shutdown begins, so load balancers stop sending traffic.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The snapshot of the repository to answer from.
    pub fn registry(&self) -> Arc<Registry> {
        self.repository.registry()
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v2/health/live", get(|| async { json_response(StatusCode::OK, &json!({ "live": true })) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models", get(model_index))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_version))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_version))
        .route("/v2/models/{model}/labels/{label}/infer", post(infer_label))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route("/v2/repository/models/{model}/unload", post(repository_unload))
        .route("/v1/models/{target}", get(v1_model).post(v1_predict))
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move { ServeError::UnknownEndpoint(uri.path().to_string()) })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// The checks every request passes before its handler, in this order: the size of its head,
/// headers given twice with different values, access control, shutdown (new inference gets
/// 503), the body's encoding and declared length. Once shutdown has begun, every response
/// closes its connection.
async fn gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Err(error) = admit(&state, &request) {
        let mut response = error.into_response();
        if !state.is_ready() {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    }
    let draining = !state.is_ready();
    let mut response = next.run(request).await;
    if draining {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Headers that must not be given twice with different values.
const SINGLE_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::AUTHORIZATION,
    header::HeaderName::from_static(oip::INFERENCE_HEADER),
    header::HeaderName::from_static("x-request-id"),
];

fn admit(state: &AppState, request: &Request) -> Result<(), ServeError> {
    let uri_length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_length > MAX_URI_BYTES {
        return Err(ServeError::UriTooLong { length: uri_length, limit: MAX_URI_BYTES });
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ServeError::HeadersTooLarge {
            what: format!("{} header fields", headers.len()),
            limit: MAX_HEADERS,
        });
    }
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ServeError::HeadersTooLarge {
            what: format!("{header_bytes} bytes of headers"),
            limit: MAX_HEADER_BYTES,
        });
    }
    for name in &SINGLE_HEADERS {
        let mut values = headers.get_all(name).iter();
        if let Some(first) = values.next() {
            let rest: Vec<_> = values.collect();
            if rest.iter().any(|v| *v != first) {
                return Err(ServeError::ConflictingHeader { name: name.to_string(), count: rest.len() + 1 });
            }
        }
    }
    let path = request.uri().path();
    let scope = auth::required_scope(request.method(), path, state.access.protect_metrics);
    state.access.tokens.check(headers, scope)?;
    // Once draining, new work is refused; health, readiness and metadata still answer (with
    // `Connection: close`), so probes see the server going rather than a dead socket.
    if !state.is_ready() && matches!(scope, Some(auth::Scope::Inference | auth::Scope::Admin)) {
        return Err(ServeError::ShuttingDown { model: None });
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
        return Err(ServeError::UnsupportedEncoding { encoding });
    }
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        // hyper has checked that it is one valid number.
        let declared = length.to_str().ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        if declared > state.limits.max_body_bytes as u64 {
            return Err(ServeError::PayloadTooLarge { limit_bytes: state.limits.max_body_bytes });
        }
    }
    Ok(())
}

async fn method_not_allowed(request: Request) -> ServeError {
    let path = request.uri().path().to_string();
    let allowed = if path == "/v2/repository/index"
        || path.ends_with("/infer")
        || path.ends_with(":predict")
        || path.contains("/repository/models/")
    {
        "POST"
    } else if path.starts_with("/v1/models/") {
        "GET, POST"
    } else {
        "GET"
    };
    ServeError::MethodNotAllowed { method: request.method().to_string(), path, allowed: allowed.to_string() }
}

/// Reads a request body within the body limit, the body timeout and the server-wide budget of
/// bytes held by bodies being received. The budget is taken as bytes arrive, so a slow sender
/// holds only what it has sent, and given back when the request is done.
async fn read_body(state: &Arc<AppState>, body: axum::body::Body) -> Result<(Bytes, BodyHold), ServeError> {
    use http_body_util::BodyExt;
    let limits = &state.limits;
    let mut hold = BodyHold::new(state.clone());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut body = body;
    let receive = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ServeError::Body(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else { continue };
            if hold.bytes + chunk.len() > limits.max_body_bytes {
                return Err(ServeError::PayloadTooLarge { limit_bytes: limits.max_body_bytes });
            }
            hold.take(chunk.len())?;
            chunks.push(chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(limits.body_timeout, receive).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(ServeError::BodyTimeout { seconds: limits.body_timeout.as_secs() }),
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut joined = Vec::with_capacity(hold.bytes);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            Bytes::from(joined)
        }
    };
    Ok((bytes, hold))
}

/// Bytes of the server-wide body budget held by one request.
pub(crate) struct BodyHold {
    state: Arc<AppState>,
    bytes: usize,
}

impl BodyHold {
    /// Holds nothing yet.
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { state, bytes: 0 }
    }

    /// Takes `bytes` more of the budget, or says it is spent.
    pub(crate) fn take(&mut self, bytes: usize) -> Result<(), ServeError> {
        let limit = self.state.limits.max_buffered_body_bytes;
        let held = &self.state.buffered_body_bytes;
        let mut current = held.load(Ordering::Relaxed);
        loop {
            if current + bytes > limit {
                return Err(ServeError::BodiesSaturated { limit_bytes: limit });
            }
            match held.compare_exchange_weak(current, current + bytes, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.state.buffered_body_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// Ready when not shutting down and every model in the repository has a version loaded; a
/// model whose every version failed makes the server not ready, with the models named.
async fn server_ready(State(state): State<Arc<AppState>>) -> Response {
    if !state.is_ready() {
        return ServeError::ShuttingDown { model: None }.into_response();
    }
    let registry = state.registry();
    let missing = registry.missing_models();
    if missing.is_empty() {
        json_response(StatusCode::OK, &json!({ "ready": true }))
    } else {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "error": format!("no version of {missing:?} loaded; see GET /v2/models") }),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::error::RETRY_AFTER_SECONDS));
        response
    }
}

/// The server's name in its metadata, over HTTP and gRPC.
pub const SERVER_NAME: &str = "serving";
/// The protocol extensions the server's metadata lists.
pub const SERVER_EXTENSIONS: &[&str] = &["binary_tensor_data", "model_configuration"];
/// A model's `platform` in its metadata.
pub const PLATFORM: &str = "burn-mlp";

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "name": SERVER_NAME,
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": SERVER_EXTENSIONS,
        }),
    )
}

async fn model_index(State(state): State<Arc<AppState>>) -> Response {
    let registry = state.registry();
    let models: Vec<_> = registry
        .names()
        .map(|name| json!({ "name": name, "versions": registry.versions(name).iter().map(u64::to_string).collect::<Vec<_>>() }))
        .collect();
    let unavailable: Vec<_> = registry
        .failures()
        .iter()
        .map(|f| json!({ "name": f.model, "version": f.version.to_string(), "state": "UNAVAILABLE", "reason": f.reason }))
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models, "unavailable": unavailable }))
}

fn metadata(registry: &Registry, model: &LoadedModel) -> serde_json::Value {
    let manifest = model.predictor.manifest();
    let inputs: Vec<_> = manifest
        .schema
        .features
        .iter()
        .map(|c| json!({ "name": c.name, "datatype": oip::advertised_datatype(c.kind), "shape": [-1] }))
        .collect();
    let outputs: Vec<_> = output::outputs(manifest.schema.task)
        .iter()
        .map(|o| json!({ "name": o.name, "datatype": o.datatype.oip_datatype(), "shape": o.shape(-1, manifest.labels.len()) }))
        .collect();
    json!({
        "name": model.name,
        "versions": registry.versions(&model.name).iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "version": model.version.to_string(),
            "task": manifest.schema.task.as_str(),
            "classes": manifest.labels,
            "categories": manifest.preprocessing.columns.iter().filter_map(|c| match c {
                shared_inference::FittedColumn::Categorical { name, categories, .. } => Some((name.clone(), json!(categories))),
                shared_inference::FittedColumn::Numeric { .. } => None,
            }).collect::<serde_json::Map<_, _>>(),
            "metrics": manifest.metrics,
        },
    })
}

async fn model_metadata(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    let registry = state.registry();
    match registry.get(&model, None) {
        Ok(m) => json_response(StatusCode::OK, &metadata(&registry, m)),
        Err(e) => ServeError::from(e).into_response(),
    }
}

async fn model_metadata_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    let registry = state.registry();
    match registry.get(&model, Some(&version)) {
        Ok(m) => json_response(StatusCode::OK, &metadata(&registry, m)),
        Err(e) => ServeError::from(e).into_response(),
    }
}

fn ready_response(state: &AppState, model: &str, version: Option<&str>) -> Response {
    match state.registry().get(model, version) {
        Ok(m) if state.ready.load(Ordering::SeqCst) => {
            json_response(StatusCode::OK, &json!({ "name": m.name, "version": m.version.to_string(), "ready": true }))
        }
        Ok(m) => ServeError::ShuttingDown { model: Some(m.name.clone()) }.into_response(),
        Err(e) => ServeError::from(e).into_response(),
    }
}

async fn model_ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    ready_response(&state, &model, None)
}

async fn model_ready_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    ready_response(&state, &model, Some(&version))
}

/// Triton's name for an OIP datatype in a model configuration.
fn triton_type(datatype: &str) -> String {
    format!("TYPE_{}", if datatype == "BYTES" { "STRING" } else { datatype })
}

/// Triton's model-configuration extension, which `perf_analyzer` reads.
async fn model_config(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    let registry = state.registry();
    let m = match registry.get(&model, None) {
        Ok(m) => m,
        Err(e) => return ServeError::from(e).into_response(),
    };
    let manifest = m.predictor.manifest();
    let input: Vec<_> = manifest
        .schema
        .features
        .iter()
        .map(|c| json!({ "name": c.name, "data_type": triton_type(oip::advertised_datatype(c.kind)), "dims": [-1] }))
        .collect();
    let output: Vec<_> = output::outputs(manifest.schema.task)
        .iter()
        .map(|o| json!({ "name": o.name, "data_type": triton_type(o.datatype.oip_datatype()), "dims": o.shape(-1, manifest.labels.len()) }))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "name": m.name, "platform": PLATFORM, "backend": "serving", "max_batch_size": 0, "input": input, "output": output }),
    )
}

/// Triton's repository index: `[{"name", "version", "state", "reason"}]`; a body of
/// `{"ready": true}` keeps only the ready versions.
async fn repository_index(State(state): State<Arc<AppState>>, request: Request) -> Response {
    #[derive(serde::Deserialize)]
    struct IndexRequest {
        #[serde(default)]
        ready: bool,
    }
    // Through the same reader as inference bodies: the same time limit and byte budget.
    let body = match read_body(&state, request.into_body()).await {
        Ok((body, _hold)) => body,
        Err(error) => return error.into_response(),
    };
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<IndexRequest>(&body) {
            Ok(request) => request.ready,
            Err(e) => return ServeError::Protocol(e.into()).into_response(),
        }
    };
    let index: Vec<_> = state
        .repository
        .index()
        .into_iter()
        .filter(|entry| !ready_only || entry.state == crate::repository::READY)
        .collect();
    json_response(StatusCode::OK, &json!(index))
}

async fn repository_load(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    repository_control(&state, model, "loaded", Repository::load).await
}

async fn repository_unload(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    repository_control(&state, model, "unloaded", Repository::unload).await
}

/// Runs a load or unload on the control thread (it reads files and runs a warm-up prediction,
/// so not on the I/O threads) and answers `{}` or the error.
async fn repository_control(
    state: &AppState,
    model: String,
    done: &'static str,
    action: fn(&Repository, &str) -> Result<(), crate::repository::ControlError>,
) -> Response {
    match control(state, model, done, action).await {
        Ok(()) => json_response(StatusCode::OK, &json!({})),
        Err(error) => error.into_response(),
    }
}

/// A load or unload on the control thread, for HTTP and gRPC alike.
pub(crate) async fn control(
    state: &AppState,
    model: String,
    done: &'static str,
    action: fn(&Repository, &str) -> Result<(), crate::repository::ControlError>,
) -> Result<(), ServeError> {
    let repository = state.repository.clone();
    let name = model.clone();
    match state.control.run(move || action(&repository, &name)).await {
        Ok(Ok(())) => {
            tracing::info!(model, "model {done} through the repository API");
            Ok(())
        }
        Ok(Err(error)) => Err(ServeError::from(error)),
        Err(_) => Err(ServeError::Internal { detail: format!("the repository task for '{model}' panicked") }),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write as _;
    let mut text = state.metrics.render();
    text.push_str("# HELP serving_model_load_failures Model versions that are failed to load now, by model.\n");
    text.push_str("# TYPE serving_model_load_failures gauge\n");
    let registry = state.registry();
    for (model, count) in registry.failure_counts() {
        let _ = writeln!(text, "serving_model_load_failures{{model=\"{model}\"}} {count}");
    }
    text.push_str("# HELP serving_model_load_failures_total Loads of a model version that failed since start.\n");
    text.push_str("# TYPE serving_model_load_failures_total counter\n");
    for (model, count) in registry.load_failures_total() {
        let _ = writeln!(text, "serving_model_load_failures_total{{model=\"{model}\"}} {count}");
    }
    text.push_str("# HELP serving_config_valid Whether the serving.toml on disk is the one in force.\n");
    text.push_str("# TYPE serving_config_valid gauge\n");
    let _ = writeln!(text, "serving_config_valid {}", u8::from(registry.config_error().is_none()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// Inference handlers take the whole request rather than a `HeaderMap`, which axum would clone:
// the few headers they read are read in place, then the body is taken with the body limit.

async fn infer(State(state): State<Arc<AppState>>, Path(model): Path<String>, request: Request) -> Response {
    run_inference(state, Protocol::V2, model, Wanted::Default, request).await
}

async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    run_inference(state, Protocol::V2, model, Wanted::Version(version), request).await
}

async fn infer_label(
    State(state): State<Arc<AppState>>,
    Path((model, label)): Path<(String, String)>,
    request: Request,
) -> Response {
    run_inference(state, Protocol::V2, model, Wanted::Label(label), request).await
}

async fn v1_model(State(state): State<Arc<AppState>>, Path(target): Path<String>) -> Response {
    match state.registry().get(&target, None) {
        Ok(m) => json_response(StatusCode::OK, &json!({ "name": m.name, "ready": state.ready.load(Ordering::SeqCst) })),
        Err(e) => ServeError::from(e).into_response(),
    }
}

async fn v1_predict(State(state): State<Arc<AppState>>, Path(mut target): Path<String>, request: Request) -> Response {
    match target.strip_suffix(":predict").map(str::len) {
        Some(len) => {
            target.truncate(len);
            run_inference(state, Protocol::V1, target, Wanted::Default, request).await
        }
        None => ServeError::UnknownEndpoint(format!(
            "POST /v1/models/{target} (the KServe v1 path is /v1/models/<name>:predict)"
        ))
        .into_response(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V1,
    V2,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }
}

/// A successful inference: the response, the rows it predicted, and the predictions when a
/// shadow version must be compared with them.
struct Answer {
    response: Response,
    rows: usize,
    predictions: Option<Predictions>,
}

/// How the request named its version.
enum Wanted {
    Default,
    Version(String),
    Label(String),
}

async fn run_inference(
    state: Arc<AppState>,
    protocol: Protocol,
    model_name: String,
    wanted: Wanted,
    request: Request,
) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.start();
    // One number per request: the request id when the client sends none, and the draw of a
    // split or a shadow share.
    let sequence = state.next_request_id.fetch_add(1, Ordering::Relaxed);
    let headers = request.headers();
    let request_id = match headers.get("x-request-id") {
        Some(given) => given.clone(),
        None => HeaderValue::from(sequence),
    };
    let header_length = headers.get(oip::INFERENCE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let registry = state.registry();
    let draw = splitmix(sequence);
    let target = match &wanted {
        Wanted::Default => {
            let sticky = registry
                .routes()
                .get(&model_name)
                .and_then(|r| r.sticky_header.as_ref())
                .and_then(|name| headers.get(name))
                .map(HeaderValue::as_bytes);
            Target::Default { sticky, draw }
        }
        Wanted::Version(v) => Target::Version(v),
        Wanted::Label(l) => Target::Label(l),
    };
    let routed = registry.route(&model_name, target).map(|(m, label)| (m.clone(), label.map(str::to_string)));
    let (served, via_label) = match &routed {
        Ok((model, label)) => (Some(model.clone()), label.clone()),
        Err(_) => (None, None),
    };
    let shadow = match (&served, &wanted) {
        (Some(_), Wanted::Default) => registry.shadow(&model_name, splitmix(draw)).cloned(),
        _ => None,
    }
    .filter(|s| served.as_ref().is_some_and(|m| m.version != s.version));
    drop(registry);
    let outcome = async {
        let model = routed?.0;
        let (body, hold) = read_body(&state, request.into_body()).await?;
        let keep = shadow.is_some();
        let shadow_body = shadow.as_ref().map(|_| body.clone());
        let shadow_header = header_length.clone();
        let size = body.len();
        let work = move || {
            let _hold = hold;
            match protocol {
                Protocol::V2 => predict_v2(&model, &body, header_length.as_deref(), keep),
                Protocol::V1 => predict_v1(&model, &body, keep),
            }
        };
        let answer = dispatch(&state, size, work).await;
        if let (Ok(answer), Some(shadow), Some(body)) = (&answer, shadow, shadow_body)
            && let Some(primary) = &answer.predictions
        {
            run_shadow(&state, protocol, shadow, body, shadow_header, primary.clone());
        }
        answer
    }
    .await;
    let elapsed = started.elapsed();
    let id = request_id.to_str().unwrap_or("<not text>");
    let (mut response, label, rows) = match outcome {
        Ok(answer) => (answer.response, "ok", answer.rows),
        Err(error) => {
            let label = error.outcome();
            let status = error.status().as_u16();
            match &error {
                ServeError::Internal { detail } => {
                    tracing::error!(request_id = id, model = model_name, status, detail, "request failed")
                }
                _ if error.status().is_server_error() => {
                    tracing::warn!(request_id = id, model = model_name, status, error = %error, "request failed")
                }
                _ => tracing::info!(request_id = id, model = model_name, status, error = %error, "request rejected"),
            }
            (error.into_response(), label, 0)
        }
    };
    tracing::debug!(
        request_id = id,
        model = model_name,
        protocol = protocol.label(),
        rows,
        micros = elapsed.as_micros() as u64,
        "inference"
    );
    match &served {
        Some(m) => {
            state.metrics.record(&m.name, m.version, via_label.as_deref(), protocol.label(), label, elapsed, rows)
        }
        None => state.metrics.record("_unknown", 0, None, protocol.label(), label, elapsed, rows),
    }
    response.headers_mut().insert("x-request-id", request_id);
    // KServe v1 bodies have no place for the version: every answer says it in a header.
    if let Some(m) = &served {
        response.headers_mut().insert("x-model-version", HeaderValue::from(m.version));
    }
    response
}

/// Runs one prediction under the server's bounds, for every protocol: a concurrency permit (or
/// `Saturated`), then inline on the I/O thread for a request of at most `--inline-max-bytes`,
/// else on the inference threads within `--timeout-millis`.
pub(crate) async fn dispatch<T, F>(state: &AppState, size: usize, work: F) -> Result<T, ServeError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServeError> + Send + 'static,
{
    let permit = state
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ServeError::Saturated { limit: state.limits.max_concurrency })?;
    let work = move || {
        let _permit = permit;
        work()
    };
    let done = if size <= state.limits.inline_max_bytes {
        Ok(crate::pool::run_here(work))
    } else {
        tokio::time::timeout(state.limits.timeout, state.pool.run(work)).await
    };
    match done {
        Ok(Ok(answer)) => answer,
        Ok(Err(_lost)) => Err(ServeError::Internal { detail: "the prediction panicked".into() }),
        Err(_) => Err(ServeError::Timeout { millis: state.limits.timeout.as_millis() }),
    }
}

/// The draw of a split for one request (a counter, well mixed), for protocols that carry no
/// sticky header of their own.
pub(crate) fn next_draw(state: &AppState) -> u64 {
    splitmix(state.next_request_id.fetch_add(1, Ordering::Relaxed))
}

/// A well-mixed number from a counter (splitmix64), for splits and shadow shares.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Predicts the same request with the shadow version on an inference thread, after the answer
/// has gone, and records how far the two differ. Shadow work beyond one per inference thread
/// is dropped (and counted), so it can never queue up behind or ahead of real requests.
fn run_shadow(
    state: &Arc<AppState>,
    protocol: Protocol,
    shadow: Arc<LoadedModel>,
    body: Bytes,
    header_length: Option<String>,
    primary: Predictions,
) {
    let limit = state.pool.threads();
    if state.shadow_in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
        state.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
        state.metrics.record_shadow(&shadow.name, shadow.version, crate::metrics::ShadowOutcome::Dropped);
        return;
    }
    let state = state.clone();
    let job = state.pool.run({
        let state = state.clone();
        move || {
            let predicted = match protocol {
                Protocol::V2 => predict_v2(&shadow, &body, header_length.as_deref(), true),
                Protocol::V1 => predict_v1(&shadow, &body, true),
            };
            let outcome = match predicted.map(|a| a.predictions) {
                Ok(Some(predictions)) => crate::metrics::compare(&primary, &predictions),
                _ => crate::metrics::ShadowOutcome::Failed,
            };
            state.metrics.record_shadow(&shadow.name, shadow.version, outcome);
            state.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    });
    tokio::spawn(async move {
        if job.await.is_err() {
            state.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

fn predict_v2(model: &LoadedModel, body: &[u8], header_length: Option<&str>, keep: bool) -> Result<Answer, ServeError> {
    let (json_part, binary) = oip::split_body(body, header_length)?;
    let request = oip::parse_request(json_part)?;
    let plan = oip::plan_outputs(model, &request)?;
    let batch = oip::decode_inputs(model, &request, binary)?;
    let predictions = model.predictor.predict(&batch).map_err(|e| ServeError::input(&model.name, e))?;
    let encoded = oip::encode_response(model, request.id.as_deref(), &plan, &predictions)?;
    let rows = predictions.n_rows();
    let response = if encoded.binary.is_empty() {
        ([(header::CONTENT_TYPE, "application/json")], encoded.json).into_response()
    } else {
        let json_length = encoded.json.len().to_string();
        let mut body = encoded.json;
        body.extend_from_slice(&encoded.binary);
        (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::HeaderName::from_static(oip::INFERENCE_HEADER), json_length.as_str()),
            ],
            body,
        )
            .into_response()
    };
    Ok(Answer { response, rows, predictions: keep.then_some(predictions) })
}

fn predict_v1(model: &LoadedModel, body: &[u8], keep: bool) -> Result<Answer, ServeError> {
    let request = v1::parse_request(body)?;
    let batch = v1::decode_instances(model, &request)?;
    let predictions = model.predictor.predict(&batch).map_err(|e| ServeError::input(&model.name, e))?;
    let body = v1::encode_response(model, &predictions)?;
    Ok(Answer {
        response: ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        rows: predictions.n_rows(),
        predictions: keep.then_some(predictions),
    })
}
