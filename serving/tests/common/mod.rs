//! Fixtures for the router tests: a small model repository written by hand (no trainer), the
//! application state over it, and helpers that drive `serving::app` with `oneshot` requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use serving::{AppState, DEFAULT_INLINE_MAX_BYTES, Limits, Registry};
use shared_inference::artifact::{Provenance, WeightsInfo, record_weights, sha256_hex};
use shared_inference::{
    ActivationKind, Cell, ColumnKind, ColumnSpec, CpuBackend, FORMAT_VERSION, FittedColumn, MANIFEST_FILE, Manifest,
    MlpConfig, Predictions, Predictor, Preprocessor, Schema, TargetTransform, Task, UnknownCategoryPolicy,
    WEIGHTS_FILE,
};
use tower::ServiceExt;

/// Generous limits: nothing in an ordinary test comes near them.
pub fn default_limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_concurrency: 8,
        timeout: Duration::from_secs(30),
        inference_threads: 2,
        inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
        ..Limits::default()
    }
}

fn numeric(name: &str, median: f64, mean: f64, std: f64) -> (ColumnSpec, FittedColumn) {
    (
        ColumnSpec { name: name.into(), kind: ColumnKind::Numeric },
        FittedColumn::Numeric { name: name.into(), median, mean, std, clip: None },
    )
}

fn categorical(name: &str, categories: &[&str], most_frequent: &str) -> (ColumnSpec, FittedColumn) {
    (
        ColumnSpec { name: name.into(), kind: ColumnKind::Categorical },
        FittedColumn::Categorical {
            name: name.into(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            most_frequent: most_frequent.into(),
            unknown: UnknownCategoryPolicy::Error,
        },
    )
}

/// What differs between the fixture's models.
struct ModelSpec<'a> {
    name: &'a str,
    version: u64,
    columns: Vec<(ColumnSpec, FittedColumn)>,
    target: &'a str,
    task: Task,
    labels: &'a [&'a str],
    target_transform: TargetTransform,
    /// Added to the output layer's bias, so that two versions surely predict differently.
    output_shift: f32,
}

/// Writes `<root>/<name>/<version>/manifest.json` and `weights.mpk` for one model.
fn write_model(root: &Path, spec: ModelSpec<'_>) {
    let (features, fitted): (Vec<_>, Vec<_>) = spec.columns.into_iter().unzip();
    let preprocessing = Preprocessor { columns: fitted };
    let n_outputs = if spec.task.is_classification() { spec.labels.len() } else { 1 };
    let network = MlpConfig {
        n_features: preprocessing.n_features(),
        hidden_layers: vec![8, 6],
        n_outputs,
        activation: ActivationKind::Relu,
        dropout: 0.0,
    };
    // Seeded: the router tests compare against these exact weights' predictions, and one of
    // them needs a network whose output moves with its input (not every draw gives one).
    let device = Default::default();
    <CpuBackend as burn_core::tensor::backend::Backend>::seed(&device, 7);
    let mut model = network.init::<CpuBackend>(&device);
    let shift = spec.output_shift;
    model.output.bias = model.output.bias.map(|bias| bias.map(|tensor| tensor.add_scalar(shift)));
    let weights = record_weights(model).expect("the freshly initialized network serializes");
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: spec.name.into(),
        version: spec.version,
        schema: Schema { features, target: spec.target.into(), task: spec.task },
        preprocessing,
        network,
        labels: spec.labels.iter().map(|l| l.to_string()).collect(),
        target_transform: spec.target_transform,
        prediction_range: None,
        metrics: BTreeMap::new(),
        provenance: Provenance::default(),
        weights: WeightsInfo {
            file: WEIGHTS_FILE.into(),
            sha256: sha256_hex(&weights),
            recorder: "burn NamedMpkBytesRecorder<FullPrecisionSettings>".into(),
        },
        manifest_sha256: String::new(),
    };
    let dir = root.join(spec.name).join(spec.version.to_string());
    std::fs::create_dir_all(&dir).expect("create the version directory");
    let json = manifest.to_json().expect("the manifest serializes");
    std::fs::write(dir.join(MANIFEST_FILE), json).expect("write manifest.json");
    std::fs::write(dir.join(WEIGHTS_FILE), weights).expect("write weights.mpk");
}

fn houses(version: u64, output_shift: f32) -> ModelSpec<'static> {
    ModelSpec {
        name: "houses",
        version,
        columns: vec![
            numeric("area", 80.0, 85.0, 30.0),
            numeric("rooms", 3.0, 3.2, 1.1),
            categorical("city", &["Oslo", "Rome"], "Rome"),
        ],
        target: "price",
        task: Task::Regression,
        labels: &[],
        target_transform: TargetTransform::Standardize { mean: 250.0, std: 40.0 },
        output_shift,
    }
}

fn flowers() -> ModelSpec<'static> {
    ModelSpec {
        name: "flowers",
        version: 1,
        columns: vec![numeric("petal", 4.0, 4.5, 1.5), categorical("color", &["blue", "red"], "red")],
        target: "species",
        task: Task::MulticlassClassification,
        labels: &["iris", "rose", "tulip"],
        target_transform: TargetTransform::None,
        output_shift: 0.0,
    }
}

/// One numeric input far from zero with a tiny spread, so that rounding an input to f32 moves its
/// standardized feature a lot: the model that tells FP64 inputs from FP32 ones.
fn barometer() -> ModelSpec<'static> {
    ModelSpec {
        name: "barometer",
        version: 1,
        columns: vec![numeric("pressure", 101_325.0, 101_325.0, 0.05)],
        target: "altitude",
        task: Task::Regression,
        labels: &[],
        target_transform: TargetTransform::Standardize { mean: 120.0, std: 15.0 },
        output_shift: 0.0,
    }
}

/// A repository on disk, the state serving built over it, and request helpers.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: Arc<AppState>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_limits(default_limits())
    }

    /// "houses" versions 1 and 2 (regression), "flowers" version 1 (three classes) and
    /// "barometer" version 1 (regression on one numeric input).
    pub fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary model repository");
        let root = dir.path().to_path_buf();
        write_model(&root, houses(1, 0.0));
        write_model(&root, houses(2, 0.75));
        write_model(&root, flowers());
        write_model(&root, barometer());
        // A trainer's work in progress must be skipped, not loaded.
        std::fs::create_dir_all(root.join("houses").join(".tmp-3")).expect("create a work-in-progress directory");
        let registry = Registry::load_repository(&root, true).expect("the fixture repository loads");
        let state = AppState::new(registry, limits).expect("inference threads start");
        Self { _dir: dir, root, state }
    }

    /// The model as `shared_inference` loads it, independently of serving.
    pub fn predictor(&self, name: &str, version: u64) -> Predictor {
        Predictor::load(&self.root.join(name).join(version.to_string())).expect("the fixture artifact loads")
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = serving::app(self.state.clone()).oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("read the response body").to_bytes();
        Reply { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        let request = Request::get(uri).body(Body::empty()).expect("a valid GET request");
        self.send(request).await
    }

    /// POSTs JSON with `Content-Type: application/json`.
    pub async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid POST request");
        self.send(request).await
    }

    /// POSTs raw bytes with exactly the given headers (none by default, as tritonclient sends).
    pub async fn post_raw(&self, uri: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::post(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Body::from(body.into())).expect("a valid POST request");
        self.send(request).await
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("the body is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("the header is ASCII"))
    }

    /// Asserts the status and that the body is exactly `{"error": "<message>"}`; returns the message.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"), "error bodies are JSON");
        let body = self.json();
        let object = body.as_object().expect("the error body is an object");
        assert_eq!(object.len(), 1, "the error body holds only 'error': {body}");
        object.get("error").and_then(Value::as_str).expect("'error' is a string").to_string()
    }

    /// Asserts 200 and returns the JSON body.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "unexpected status; body: {}", self.text());
        self.json()
    }
}

/// Asserts that `message` contains every one of `parts`.
pub fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message {message:?} should mention {part:?}");
    }
}

/// Rows for the "houses" model: `(area, rooms, city)`.
pub type House = (Option<f64>, Option<f64>, Option<&'static str>);

/// A few houses whose areas are exact in f32, so every numeric datatype carries them unchanged.
pub const HOUSES: [House; 3] = [
    (Some(72.5), Some(3.0), Some("Oslo")),
    (Some(120.25), Some(5.0), Some("Rome")),
    (Some(48.0), Some(1.0), Some("Rome")),
];

fn cell(value: Option<f64>) -> Cell<'static> {
    value.map_or(Cell::Missing, Cell::Number)
}

fn text(value: Option<&'static str>) -> Cell<'static> {
    value.map_or(Cell::Missing, Cell::Text)
}

/// What `shared_inference` itself predicts for these houses with this version.
pub fn expected_houses(fixture: &Fixture, version: u64, rows: &[House]) -> Vec<f32> {
    let records: Vec<Vec<(&str, Cell<'_>)>> = rows
        .iter()
        .map(|&(area, rooms, city)| vec![("area", cell(area)), ("rooms", cell(rooms)), ("city", text(city))])
        .collect();
    match fixture.predictor("houses", version).predict_records(&records).expect("the records are valid") {
        Predictions::Regression { values } => values,
        other => panic!("houses is a regression model, got {other:?}"),
    }
}

/// What `shared_inference` predicts for these pressures with the "barometer" model.
pub fn expected_barometer(fixture: &Fixture, pressures: &[f64]) -> Vec<f32> {
    let records: Vec<Vec<(&str, Cell<'_>)>> = pressures.iter().map(|&p| vec![("pressure", Cell::Number(p))]).collect();
    match fixture.predictor("barometer", 1).predict_records(&records).expect("the records are valid") {
        Predictions::Regression { values } => values,
        other => panic!("barometer is a regression model, got {other:?}"),
    }
}

/// Rows for the "flowers" model: `(petal, color)`.
pub type Flower = (Option<f64>, Option<&'static str>);

pub const FLOWERS: [Flower; 4] =
    [(Some(1.5), Some("blue")), (Some(6.25), Some("red")), (Some(4.0), Some("red")), (Some(9.5), Some("blue"))];

/// What `shared_inference` predicts for these flowers: labels (as names) and probabilities.
pub fn expected_flowers(fixture: &Fixture, rows: &[Flower]) -> (Vec<String>, Vec<f32>) {
    let predictor = fixture.predictor("flowers", 1);
    let records: Vec<Vec<(&str, Cell<'_>)>> =
        rows.iter().map(|&(petal, color)| vec![("petal", cell(petal)), ("color", text(color))]).collect();
    match predictor.predict_records(&records).expect("the records are valid") {
        Predictions::Classification { probabilities, labels, n_classes } => {
            assert_eq!(n_classes, 3, "flowers has three classes");
            let names = labels.iter().map(|&i| predictor.labels()[i].clone()).collect();
            (names, probabilities)
        }
        other => panic!("flowers is a classification model, got {other:?}"),
    }
}

/// Every number of a (possibly nested) JSON array, as the f32 it encodes.
pub fn f32s(value: &Value) -> Vec<f32> {
    fn walk(value: &Value, out: &mut Vec<f32>) {
        match value {
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            other => out.push(other.as_f64().unwrap_or_else(|| panic!("expected a number, got {other}")) as f32),
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out
}

pub fn strings(value: &Value) -> Vec<String> {
    value.as_array().expect("an array of strings").iter().map(|v| v.as_str().expect("a string").to_string()).collect()
}

/// Bit patterns, so float comparisons are exact and NaN-safe.
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The output of a v2 response with this name.
pub fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"]
        .as_array()
        .expect("'outputs' is an array")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output '{name}' in {response}"))
}
