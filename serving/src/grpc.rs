//! The Open Inference Protocol over gRPC (`serving serve --grpc-addr`): the service
//! `inference.GRPCInferenceService` of `serving/proto/grpc_service.proto`, answered from the same
//! registry, through the same request reader, validation, error texts, limits, access control
//! and metrics as HTTP v2.
//!
//! A `ModelInferRequest` becomes the v2 request HTTP parses (`oip::InferRequest`): typed
//! `contents` become its elements, and `raw_input_contents` its binary tensor section, each
//! input's bytes with their `binary_data_size`, exactly as the binary extension sends them. So
//! every check (`oip::decode_inputs`, `oip::plan_outputs`) and every error text is HTTP's. Outputs
//! travel in `raw_output_contents` (little-endian f32; BYTES with their 4-byte length prefixes),
//! which is what `tritonclient.grpc`'s `InferResult.as_numpy` reads.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use crate::auth::{self, Scope};
use crate::error::{ProtocolError, ServeError};
use crate::http::AppState;
use crate::json::Scalar;
use crate::oip::{self, Elements, InferRequest, InputTensor, RequestedOutput};
use crate::registry::{LoadedModel, Target};

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
#[rustfmt::skip]
pub mod inference;

use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use inference::model_infer_request::InferInputTensor;
use inference::model_infer_response::InferOutputTensor;
use inference::model_metadata_response::TensorMetadata;
use inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, RepositoryIndexRequest, RepositoryIndexResponse, RepositoryModelLoadRequest,
    RepositoryModelLoadResponse, RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};

/// The path prefix of every RPC of the service, as HTTP/2 carries it.
pub const SERVICE_PATH: &str = "/inference.GRPCInferenceService/";

/// The gRPC service over the server's state, with the message-size cap set to the HTTP body cap
/// (tonic's own default, 4 MiB, is not it). [`GrpcApp`] checks the cap first, with HTTP's
/// error; tonic's check (OUT_OF_RANGE) stays as a backstop.
pub fn service(state: Arc<AppState>) -> GrpcInferenceServiceServer<Grpc> {
    let cap = state.limits.max_body_bytes;
    GrpcInferenceServiceServer::new(Grpc::new(state))
        .max_decoding_message_size(cap)
        .max_encoding_message_size(usize::MAX)
}

/// What the connection layer (`server.rs`) serves over HTTP/2: the service, with every request
/// body read under HTTP's body rules (see [`RequestBody`]).
#[derive(Clone)]
pub struct GrpcApp {
    service: GrpcInferenceServiceServer<Grpc>,
    state: Arc<AppState>,
}

impl GrpcApp {
    /// The service over the server's state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { service: service(state.clone()), state }
    }

    /// Answers one HTTP/2 request (a gRPC call).
    pub fn call(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Result<hyper::Response<tonic::body::Body>, std::convert::Infallible>> + Send + use<> {
        use tower::ServiceExt;
        let mut request = request.map(|body| RequestBody::new(body, &self.state));
        // A call that arrives before shutdown is answered, also if its body ends after it.
        request.extensions_mut().insert(Arrived { ready: self.state.is_ready() });
        self.service.clone().oneshot(request)
    }
}

/// Whether the server was ready when a call's head arrived (set by [`GrpcApp::call`]).
#[derive(Debug, Clone, Copy)]
struct Arrived {
    ready: bool,
}

/// A call's request body, read under the rules HTTP bodies follow: a message larger than
/// `--max-body-bytes` is refused as soon as its 5-byte gRPC prefix declares it (or its bytes go
/// past it), with HTTP's 413 text and RESOURCE_EXHAUSTED; the bytes count against
/// `--max-buffered-body-bytes` while they arrive (RESOURCE_EXHAUSTED past it); the body must
/// arrive within `--body-timeout-seconds` (DEADLINE_EXCEEDED). Errors are `Status`es, which tonic
/// passes on to the client unchanged.
pub struct RequestBody {
    inner: hyper::body::Incoming,
    state: Arc<AppState>,
    started: Instant,
    hold: crate::http::BodyHold,
    /// The first message's prefix (compression flag, big-endian length), as it arrives.
    prefix: [u8; 5],
    prefix_len: usize,
    received: usize,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    failed: bool,
}

impl RequestBody {
    fn new(inner: hyper::body::Incoming, state: &Arc<AppState>) -> Self {
        Self {
            inner,
            state: state.clone(),
            started: Instant::now(),
            hold: crate::http::BodyHold::new(state.clone()),
            prefix: [0; 5],
            prefix_len: 0,
            received: 0,
            deadline: Box::pin(tokio::time::sleep(state.limits.body_timeout)),
            failed: false,
        }
    }

    /// The error for the client, counted in the metrics like HTTP's rejections of a body (the
    /// model is not known yet).
    fn fail(&mut self, error: &ServeError) -> Status {
        self.failed = true;
        tracing::info!(code = ?error.grpc_code(), error = %error, "grpc request rejected");
        self.state.metrics.record("_unknown", 0, None, "grpc", error.outcome(), self.started.elapsed(), 0);
        status(error)
    }

    /// Accounts for one data frame: the prefix, the cap, the budget.
    fn admit(&mut self, data: &[u8]) -> Result<(), ServeError> {
        // The largest message accepted: the HTTP body cap.
        let cap = self.state.limits.max_body_bytes;
        let too_large = ServeError::PayloadTooLarge { limit_bytes: cap };
        let mut rest = data;
        while self.prefix_len < self.prefix.len() && !rest.is_empty() {
            self.prefix[self.prefix_len] = rest[0];
            self.prefix_len += 1;
            rest = &rest[1..];
            if self.prefix_len == self.prefix.len() {
                let declared = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                if declared as usize > cap {
                    return Err(too_large);
                }
            }
        }
        self.received += data.len();
        // Every RPC here is unary: one message and its prefix.
        if self.received > cap.saturating_add(self.prefix.len()) {
            return Err(too_large);
        }
        self.hold.take(data.len())
    }
}

impl hyper::body::Body for RequestBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let error = ServeError::BodyTimeout { seconds: this.state.limits.body_timeout.as_secs() };
                    return Poll::Ready(Some(Err(this.fail(&error))));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => return Poll::Ready(None),
            // tonic reads h2's errors (a cancelled call among them) from the source.
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(Status::from_error(Box::new(error))))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref()
            && let Err(error) = this.admit(data)
        {
            return Poll::Ready(Some(Err(this.fail(&error))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The gRPC status for a serving error: the same decision as its HTTP status, in gRPC's codes,
/// with the same text.
pub fn status(error: &ServeError) -> Status {
    Status::new(error.grpc_code(), error.to_string())
}

/// Answers `inference.GRPCInferenceService`.
pub struct Grpc {
    state: Arc<AppState>,
}

impl Grpc {
    /// The service's handlers over the server's state (without tonic's server around them).
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Access control and draining, by the same rules as HTTP: the scope `auth::required_scope`
    /// gives the RPC's path, checked by `Tokens::check` against the `authorization` metadata.
    fn admit<T>(&self, request: &Request<T>, rpc: &str) -> Result<(), Status> {
        let path = format!("{SERVICE_PATH}{rpc}");
        let scope = auth::required_scope(&Method::POST, &path, false);
        let headers: &axum::http::HeaderMap = request.metadata().as_ref();
        self.state.access.tokens.check(headers, scope).map_err(|denied| status(&ServeError::Denied(denied)))?;
        // Readiness when the call arrived: its body (and so this check) may come after SIGTERM.
        let ready = request.extensions().get::<Arrived>().map_or_else(|| self.state.is_ready(), |a| a.ready);
        if matches!(scope, Some(Scope::Inference | Scope::Admin)) && !ready {
            return Err(status(&ServeError::ShuttingDown { model: None }));
        }
        Ok(())
    }

    fn model(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, Status> {
        let registry = self.state.registry();
        let version = (!version.is_empty()).then_some(version);
        registry.get(name, version).cloned().map_err(|e| status(&ServeError::Lookup(e)))
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(&self, request: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.admit(&request, "ServerLive")?;
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        self.admit(&request, "ServerReady")?;
        let ready = self.state.is_ready() && self.state.registry().missing_models().is_empty();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        self.admit(&request, "ModelReady")?;
        let request = request.get_ref();
        let ready = self.state.is_ready() && self.model(&request.name, &request.version).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.admit(&request, "ServerMetadata")?;
        Ok(Response::new(ServerMetadataResponse {
            name: crate::http::SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: crate::http::SERVER_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.admit(&request, "ModelMetadata")?;
        let model = self.model(&request.get_ref().name, &request.get_ref().version)?;
        let schema = model.predictor.schema();
        let n_classes = model.predictor.labels().len();
        let inputs = schema
            .features
            .iter()
            .map(|f| TensorMetadata {
                name: f.name.clone(),
                datatype: oip::advertised_datatype(f.kind).to_string(),
                shape: vec![-1],
            })
            .collect();
        let outputs = shared_inference::output::outputs(schema.task)
            .iter()
            .map(|o| TensorMetadata {
                name: o.name.to_string(),
                datatype: o.datatype.oip_datatype().to_string(),
                shape: o.shape(-1, n_classes),
            })
            .collect();
        Ok(Response::new(ModelMetadataResponse {
            name: model.name.clone(),
            versions: self.state.registry().versions(&model.name).iter().map(u64::to_string).collect(),
            platform: crate::http::PLATFORM.to_string(),
            inputs,
            outputs,
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        self.admit(&request, "ModelInfer")?;
        let started = Instant::now();
        let _in_flight = self.state.metrics.start();
        let request = request.into_inner();
        let size = prost::Message::encoded_len(&request);
        let routed = {
            let registry = self.state.registry();
            let target = if request.model_version.is_empty() {
                Target::Default { sticky: None, draw: crate::http::next_draw(&self.state) }
            } else {
                Target::Version(&request.model_version)
            };
            registry.route(&request.model_name, target).map(|(m, label)| (m.clone(), label.map(str::to_string)))
        };
        let name = request.model_name.clone();
        let outcome = async {
            let (model, label) = routed.map_err(ServeError::Lookup)?;
            let work_model = model.clone();
            let answer = crate::http::dispatch(&self.state, size, move || infer(&work_model, &request)).await?;
            Ok::<_, ServeError>((model, label, answer))
        }
        .await;
        let elapsed = started.elapsed();
        match outcome {
            Ok((model, label, (response, rows))) => {
                self.state.metrics.record(&model.name, model.version, label.as_deref(), "grpc", "ok", elapsed, rows);
                Ok(Response::new(response))
            }
            Err(error) => {
                tracing::info!(model = name, code = ?error.grpc_code(), error = %error, "grpc request rejected");
                let served = self.model(&name, "").ok();
                let (model, version) = served.as_ref().map_or(("_unknown", 0), |m| (m.name.as_str(), m.version));
                self.state.metrics.record(model, version, None, "grpc", error.outcome(), elapsed, 0);
                Err(status(&error))
            }
        }
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.admit(&request, "RepositoryIndex")?;
        let ready_only = request.get_ref().ready;
        let models = self
            .state
            .repository
            .index()
            .into_iter()
            .filter(|entry| !ready_only || entry.state == crate::repository::READY)
            .map(|entry| inference::repository_index_response::ModelIndex {
                name: entry.name,
                version: entry.version,
                state: entry.state.to_string(),
                reason: entry.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.admit(&request, "RepositoryModelLoad")?;
        let model = request.into_inner().model_name;
        crate::http::control(&self.state, model, "loaded", crate::repository::Repository::load)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.admit(&request, "RepositoryModelUnload")?;
        let model = request.into_inner().model_name;
        crate::http::control(&self.state, model, "unloaded", crate::repository::Repository::unload)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}

/// One `ModelInfer`: the request read as HTTP v2 reads its own, predicted, answered in raw
/// output contents. Returns the response and the rows predicted.
fn infer(model: &LoadedModel, request: &ModelInferRequest) -> Result<(ModelInferResponse, usize), ServeError> {
    let (v2, binary) = as_v2(request)?;
    let plan = oip::plan_outputs(model, &v2)?;
    let batch = oip::decode_inputs(model, &v2, &binary)?;
    let predictions = model.predictor.predict(&batch).map_err(|e| ServeError::input(&model.name, e))?;
    let mut outputs = Vec::with_capacity(plan.outputs.len());
    let mut raw_output_contents = Vec::with_capacity(plan.outputs.len());
    for output in oip::output_tensors(model, &plan, &predictions)? {
        let mut bytes = Vec::new();
        if let Some(data) = &output.data {
            data.write_raw(&mut bytes);
        }
        outputs.push(InferOutputTensor {
            name: output.name.to_string(),
            datatype: output.datatype.to_string(),
            shape: output.shape.iter().map(|&d| d as i64).collect(),
            ..InferOutputTensor::default()
        });
        raw_output_contents.push(bytes);
    }
    let response = ModelInferResponse {
        model_name: model.name.clone(),
        model_version: model.version.to_string(),
        id: request.id.clone(),
        outputs,
        raw_output_contents,
        ..ModelInferResponse::default()
    };
    Ok((response, predictions.n_rows()))
}

/// The request as the v2 request HTTP parses, and its binary section. `raw_input_contents`
/// holds one entry per input, in order, and then no input has `contents`.
fn as_v2(request: &ModelInferRequest) -> Result<(InferRequest<'_>, Vec<u8>), ServeError> {
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ProtocolError::RawContentsCount { inputs: request.inputs.len(), raw: raw.len() }.into());
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (index, input) in request.inputs.iter().enumerate() {
        let (parameters, data) = match raw.get(index) {
            Some(bytes) => {
                if input.contents.as_ref().is_some_and(|c| count(c) > 0) {
                    return Err(ProtocolError::ContentsAndRaw { input: input.name.clone() }.into());
                }
                let mut parameters = Map::new();
                parameters.insert("binary_data_size".to_string(), Value::from(bytes.len()));
                (Some(parameters), None)
            }
            None => (None, Some(elements(input)?)),
        };
        inputs.push(InputTensor {
            name: input.name.clone(),
            shape: input.shape.clone(),
            datatype: input.datatype.clone(),
            parameters,
            data,
        });
    }
    // Every output travels as raw contents; the plan only names which.
    let outputs = (!request.outputs.is_empty())
        .then(|| request.outputs.iter().map(|o| RequestedOutput { name: o.name.clone(), parameters: None }).collect());
    let binary = raw.concat();
    Ok((InferRequest { id: None, parameters: None, inputs, outputs }, binary))
}

/// Elements in every typed field of a tensor's contents.
fn count(contents: &InferTensorContents) -> usize {
    contents.bool_contents.len()
        + contents.int_contents.len()
        + contents.int64_contents.len()
        + contents.uint_contents.len()
        + contents.uint64_contents.len()
        + contents.fp32_contents.len()
        + contents.fp64_contents.len()
        + contents.bytes_contents.len()
}

/// A tensor's typed contents as the row-major elements of a v2 JSON `data`, read from the field
/// its datatype names; values in another field are an error that names the right one.
fn elements(input: &InferInputTensor) -> Result<Elements<'_>, ServeError> {
    // No contents: no values (`decode_inputs` says whether the shape wanted some).
    let Some(contents) = input.contents.as_ref() else { return Ok(Elements(Vec::new())) };
    let (field, values): (&'static str, Vec<Scalar<'_>>) = match input.datatype.as_str() {
        "FP32" => ("fp32_contents", contents.fp32_contents.iter().map(|&v| Scalar::Number(f64::from(v))).collect()),
        "FP64" => ("fp64_contents", contents.fp64_contents.iter().map(|&v| Scalar::Number(v)).collect()),
        "INT8" | "INT16" | "INT32" => {
            ("int_contents", contents.int_contents.iter().map(|&v| Scalar::Integer(i128::from(v))).collect())
        }
        "INT64" => {
            ("int64_contents", contents.int64_contents.iter().map(|&v| Scalar::Integer(i128::from(v))).collect())
        }
        "UINT8" | "UINT16" | "UINT32" => {
            ("uint_contents", contents.uint_contents.iter().map(|&v| Scalar::Integer(i128::from(v))).collect())
        }
        "UINT64" => {
            ("uint64_contents", contents.uint64_contents.iter().map(|&v| Scalar::Integer(i128::from(v))).collect())
        }
        "BOOL" => ("bool_contents", contents.bool_contents.iter().map(|&v| Scalar::Integer(i128::from(v))).collect()),
        "BYTES" => (
            "bytes_contents",
            contents
                .bytes_contents
                .iter()
                .map(|bytes| match std::str::from_utf8(bytes) {
                    Ok(text) => Scalar::Text(Cow::Borrowed(text)),
                    Err(_) => Scalar::Invalid(format!("{} bytes that are not UTF-8 text", bytes.len())),
                })
                .collect(),
        ),
        // An unknown datatype: `decode_inputs` names it before it reads any value.
        _ => return Ok(Elements(Vec::new())),
    };
    if values.len() != count(contents) {
        return Err(ProtocolError::WrongContents {
            input: input.name.clone(),
            datatype: input.datatype.clone(),
            field,
        }
        .into());
    }
    Ok(Elements(values))
}
