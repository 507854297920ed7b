//! The HTTP front end: the router over Open Inference Protocol v2 and KServe v1 endpoints,
//! health, metadata and metrics; bounded concurrency (503 when saturated), a body cap (413),
//! a per-request timeout, request ids. Small requests are answered on the I/O thread that read
//! them; larger ones run on the inference threads ([`crate::pool`]), so that the async executor
//! never spends long on one request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::oip;
use crate::pool::InferencePool;
use crate::registry::{LoadedModel, Registry};
use crate::v1;
use shared_inference::output;

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
}

/// The default of [`Limits::inline_max_bytes`] (`--inline-max-bytes`): a single record, or a
/// few dozen, fits well within it.
pub const DEFAULT_INLINE_MAX_BYTES: usize = 16 * 1024;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Metrics,
    pub limits: Limits,
    permits: Arc<Semaphore>,
    pool: InferencePool,
    ready: AtomicBool,
    next_request_id: AtomicU64,
}

impl AppState {
    /// Fails only when the inference threads cannot be started.
    pub fn new(registry: Registry, limits: Limits) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            registry,
            metrics: Metrics::default(),
            limits,
            permits: Arc::new(Semaphore::new(limits.max_concurrency)),
            pool: InferencePool::new(limits.inference_threads)?,
            ready: AtomicBool::new(true),
            next_request_id: AtomicU64::new(1),
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
        .route("/v1/models/{target}", get(v1_model).post(v1_predict))
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move { ServeError::UnknownEndpoint(uri.path().to_string()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn server_ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        json_response(StatusCode::OK, &json!({ "ready": true }))
    } else {
        ServeError::ShuttingDown { model: None }.into_response()
    }
}

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "serving",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data", "model_configuration"],
        }),
    )
}

async fn model_index(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<_> = state
        .registry
        .names()
        .map(|name| json!({ "name": name, "versions": state.registry.versions(name).iter().map(u64::to_string).collect::<Vec<_>>() }))
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

fn metadata(state: &AppState, model: &LoadedModel) -> serde_json::Value {
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
        "versions": state.registry.versions(&model.name).iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": "burn-mlp",
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
    match state.registry.get(&model, None) {
        Ok(m) => json_response(StatusCode::OK, &metadata(&state, m)),
        Err(e) => ServeError::from(e).into_response(),
    }
}

async fn model_metadata_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match state.registry.get(&model, Some(&version)) {
        Ok(m) => json_response(StatusCode::OK, &metadata(&state, m)),
        Err(e) => ServeError::from(e).into_response(),
    }
}

fn ready_response(state: &AppState, model: &str, version: Option<&str>) -> Response {
    match state.registry.get(model, version) {
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
    let m = match state.registry.get(&model, None) {
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
        &json!({ "name": m.name, "platform": "burn-mlp", "backend": "serving", "max_batch_size": 0, "input": input, "output": output }),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

// Inference handlers take the whole request rather than a `HeaderMap`, which axum would clone:
// the few headers they read are read in place, then the body is taken with the body limit.

async fn infer(State(state): State<Arc<AppState>>, Path(model): Path<String>, request: Request) -> Response {
    run_inference(state, Protocol::V2, model, None, request).await
}

async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    run_inference(state, Protocol::V2, model, Some(version), request).await
}

async fn v1_model(State(state): State<Arc<AppState>>, Path(target): Path<String>) -> Response {
    match state.registry.get(&target, None) {
        Ok(m) => json_response(StatusCode::OK, &json!({ "name": m.name, "ready": state.ready.load(Ordering::SeqCst) })),
        Err(e) => ServeError::from(e).into_response(),
    }
}

async fn v1_predict(State(state): State<Arc<AppState>>, Path(mut target): Path<String>, request: Request) -> Response {
    match target.strip_suffix(":predict").map(str::len) {
        Some(len) => {
            target.truncate(len);
            run_inference(state, Protocol::V1, target, None, request).await
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

/// A successful inference: the response and the rows it predicted.
struct Answer {
    response: Response,
    rows: usize,
}

async fn run_inference(
    state: Arc<AppState>,
    protocol: Protocol,
    model_name: String,
    version: Option<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.start();
    let headers = request.headers();
    let request_id = match headers.get("x-request-id") {
        Some(given) => given.clone(),
        None => HeaderValue::from(state.next_request_id.fetch_add(1, Ordering::Relaxed)),
    };
    let header_length = headers.get(oip::INFERENCE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let model = state.registry.get(&model_name, version.as_deref()).cloned();
    let served = model.as_ref().ok().cloned();
    let outcome = async {
        let model = model?;
        let body = Bytes::from_request(request, &()).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ServeError::PayloadTooLarge { limit_bytes: state.limits.max_body_bytes },
            _ => ServeError::Body(rejection.to_string()),
        })?;
        let permit = state
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServeError::Saturated { limit: state.limits.max_concurrency })?;
        let inline = body.len() <= state.limits.inline_max_bytes;
        let work = move || {
            let _permit = permit;
            match protocol {
                Protocol::V2 => predict_v2(&model, &body, header_length.as_deref()),
                Protocol::V1 => predict_v1(&model, &body),
            }
        };
        let done = if inline {
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
    let metrics_name = served.as_ref().map_or("_unknown", |m| m.name.as_str());
    state.metrics.record(metrics_name, protocol.label(), label, elapsed, rows);
    response.headers_mut().insert("x-request-id", request_id);
    response
}

fn predict_v2(model: &LoadedModel, body: &[u8], header_length: Option<&str>) -> Result<Answer, ServeError> {
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
    Ok(Answer { response, rows })
}

fn predict_v1(model: &LoadedModel, body: &[u8]) -> Result<Answer, ServeError> {
    let request = v1::parse_request(body)?;
    let batch = v1::decode_instances(model, &request)?;
    let predictions = model.predictor.predict(&batch).map_err(|e| ServeError::input(&model.name, e))?;
    let body = v1::encode_response(model, &predictions)?;
    Ok(Answer {
        response: ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        rows: predictions.n_rows(),
    })
}
