//! DESIGN invariant 4: for the same raw rows, `serving predict`, `POST .../infer` (JSON and
//! binary) and `POST ...:predict` return exactly the predictions `trainer evaluate` computed,
//! bit for bit, for both bundled models on their test splits.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use serving::{AppState, DEFAULT_INLINE_MAX_BYTES, Limits, Registry};
use shared_inference::{Cell, ColumnKind, Predictions};

use crate::support::{binary, repository, shipped_serving, test_split_csv};

/// Reads a predictions CSV (as both binaries write it) into its header and rows of cells.
fn read_predictions(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("predictions CSV");
    let header = reader.headers().expect("header").iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.expect("row").iter().map(str::to_string).collect()).collect();
    (header, rows)
}

/// Every CSV cell of the test split as a JSON value: numbers for numeric columns, text for
/// categorical ones, null for missing.
fn test_rows(path: &std::path::Path, predictor: &shared_inference::Predictor) -> Vec<serde_json::Map<String, Value>> {
    let mut reader = csv::Reader::from_path(path).expect("test split");
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    let schema = predictor.schema();
    reader
        .records()
        .map(|record| {
            let record = record.expect("row");
            schema
                .features
                .iter()
                .map(|spec| {
                    let text = &record[header.iter().position(|h| *h == spec.name).expect("feature column")];
                    let value = match (spec.kind, text) {
                        (_, "NA" | "") => Value::Null,
                        (shared_inference::ColumnKind::Numeric, t) => {
                            json!(t.parse::<f64>().expect("number"))
                        }
                        (shared_inference::ColumnKind::Categorical, t) => json!(t),
                    };
                    (spec.name.clone(), value)
                })
                .collect()
        })
        .collect()
}

fn v2_request(rows: &[serde_json::Map<String, Value>], predictor: &shared_inference::Predictor) -> Value {
    let inputs: Vec<Value> = predictor
        .schema()
        .features
        .iter()
        .map(|spec| {
            let data: Vec<Value> = rows.iter().map(|r| r[&spec.name].clone()).collect();
            let datatype = match spec.kind {
                shared_inference::ColumnKind::Numeric => "FP64",
                shared_inference::ColumnKind::Categorical => "BYTES",
            };
            json!({ "name": spec.name, "datatype": datatype, "shape": [rows.len()], "data": data })
        })
        .collect();
    json!({ "inputs": inputs })
}

async fn post(
    app: axum::Router,
    path: &str,
    body: Vec<u8>,
) -> (axum::http::StatusCode, axum::http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::post(path).body(axum::body::Body::from(body)).expect("request");
    let response = app.oneshot(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.expect("body").to_bytes().to_vec())
}

/// The prediction cells of one row as both binaries write them: `prediction`, or `label` and
/// one probability per class. Floats in their shortest round-trip text, so equal text is equal bits.
fn cells_from_floats(label: Option<&str>, floats: &[f32]) -> Vec<String> {
    label.map(str::to_string).into_iter().chain(floats.iter().map(f32::to_string)).collect()
}

fn check_model(name: &str) {
    let repository = repository();
    let model_dir = repository.version_dir(name);
    let dir = tempfile::tempdir().expect("temporary directory");
    let test_csv = test_split_csv(name, dir.path());

    // 1. The trainer's evaluation, through its binary; 2. offline scoring, through the serving
    //    binary: the one built with the workspace and the one built alone as it ships (features
    //    unify differently; the numbers must not change).
    let (_, expected) = check_files_agree(&model_dir, &test_csv, dir.path());
    assert!(expected.len() > 50, "{name}: test split has {} rows", expected.len());

    // 3. HTTP, through the router: v2 JSON, v2 binary outputs, v1 records.
    let mut registry = Registry::default();
    let model = registry.load_version(&model_dir).expect("model loads");
    let predictor = &model.predictor;
    let rows = test_rows(&test_csv, predictor);
    let state = AppState::new(
        registry,
        Limits {
            max_body_bytes: 64 << 20,
            max_concurrency: 4,
            timeout: Duration::from_secs(30),
            inference_threads: 2,
            inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
            ..Limits::default()
        },
    )
    .expect("inference threads start");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let classification = predictor.schema().task.is_classification();
    let n_outputs = predictor.manifest().network.n_outputs;
    runtime.block_on(async {
        let app = serving::app(Arc::clone(&state));
        let request = v2_request(&rows, predictor);
        let (status, _, body) =
            post(app.clone(), &format!("/v2/models/{name}/infer"), request.to_string().into_bytes()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let response: Value = serde_json::from_slice(&body).expect("JSON");
        let output =
            |n: &str| response["outputs"].as_array().expect("outputs").iter().find(|o| o["name"] == n).cloned();
        let floats_of = |v: &Value| -> Vec<f32> {
            v["data"].as_array().expect("data").iter().map(|x| x.as_f64().expect("number") as f32).collect()
        };
        let json_cells: Vec<Vec<String>> = if classification {
            let labels = output("label").expect("label output");
            let probabilities = floats_of(&output("probabilities").expect("probabilities output"));
            (0..rows.len())
                .map(|r| {
                    cells_from_floats(labels["data"][r].as_str(), &probabilities[r * n_outputs..(r + 1) * n_outputs])
                })
                .collect()
        } else {
            floats_of(&output("prediction").expect("prediction output"))
                .iter()
                .map(|p| cells_from_floats(None, &[*p]))
                .collect()
        };
        assert_eq!(json_cells, expected, "{name}: v2 JSON differs from trainer evaluate");

        // Binary outputs carry the raw f32 bits.
        let mut binary_request = request.clone();
        binary_request["parameters"] = json!({ "binary_data_output": true });
        let (status, headers, body) =
            post(app.clone(), &format!("/v2/models/{name}/infer"), binary_request.to_string().into_bytes()).await;
        assert_eq!(status, 200);
        let json_length: usize =
            headers["inference-header-content-length"].to_str().expect("ascii").parse().expect("length");
        let header: Value = serde_json::from_slice(&body[..json_length]).expect("JSON header");
        let mut tensors = &body[json_length..];
        let mut floats = Vec::new();
        let mut labels = Vec::new();
        for output in header["outputs"].as_array().expect("outputs") {
            let size = output["parameters"]["binary_data_size"].as_u64().expect("binary size") as usize;
            let (bytes, rest) = tensors.split_at(size);
            tensors = rest;
            if output["datatype"] == "FP32" {
                floats = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            } else {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    labels.push(String::from_utf8(rest[4..4 + n].to_vec()).expect("utf-8"));
                    rest = &rest[4 + n..];
                }
            }
        }
        let width = if classification { n_outputs } else { 1 };
        let binary_cells: Vec<Vec<String>> = (0..rows.len())
            .map(|r| cells_from_floats(labels.get(r).map(String::as_str), &floats[r * width..(r + 1) * width]))
            .collect();
        assert_eq!(binary_cells, expected, "{name}: v2 binary differs from trainer evaluate");

        // KServe v1 records.
        let instances: Vec<Value> = rows.iter().cloned().map(Value::Object).collect();
        let body = json!({ "instances": instances }).to_string().into_bytes();
        let (status, _, body) = post(app.clone(), &format!("/v1/models/{name}:predict"), body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let response: Value = serde_json::from_slice(&body).expect("JSON");
        let v1_cells: Vec<Vec<String>> = response["predictions"]
            .as_array()
            .expect("predictions")
            .iter()
            .map(|p| match p {
                Value::Number(n) => cells_from_floats(None, &[n.as_f64().expect("number") as f32]),
                object => {
                    let probabilities: Vec<f32> = predictor
                        .labels()
                        .iter()
                        .map(|class| object["probabilities"][class].as_f64().expect("probability") as f32)
                        .collect();
                    cells_from_floats(object["label"].as_str(), &probabilities)
                }
            })
            .collect();
        assert_eq!(v1_cells, expected, "{name}: v1 differs from trainer evaluate");
    });

    // 4. In process: `Predictor::predict_records`.
    fn cell(value: &Value) -> Cell<'_> {
        match value {
            Value::Null => Cell::Missing,
            Value::Number(n) => Cell::Number(n.as_f64().expect("number")),
            Value::String(text) => Cell::Text(text.as_str()),
            other => panic!("unexpected cell {other}"),
        }
    }
    let mut records: Vec<Vec<(&str, Cell<'_>)>> =
        rows.iter().map(|row| row.iter().map(|(column, value)| (column.as_str(), cell(value))).collect()).collect();
    let in_process: Vec<Vec<String>> = match predictor.predict_records(&records).expect("valid records") {
        Predictions::Regression { values } => values.iter().map(|v| cells_from_floats(None, &[*v])).collect(),
        Predictions::Classification { probabilities, labels, n_classes } => labels
            .iter()
            .zip(probabilities.chunks(n_classes))
            .map(|(&label, p)| cells_from_floats(Some(&predictor.labels()[label]), p))
            .collect(),
    };
    assert_eq!(in_process, expected, "{name}: predict_records differs from trainer evaluate");
    // A bad record deep in a long list is reported at its own row.
    let bad_row = records.len() - 3;
    let numeric = predictor.schema().features.iter().position(|c| c.kind == ColumnKind::Numeric).expect("a number");
    let column = records[bad_row].iter().position(|(c, _)| *c == predictor.schema().features[numeric].name);
    records[bad_row][column.expect("every record names every column")].1 = Cell::Text("heavy");
    let error = predictor.predict_records(&records).expect_err("a word where a number belongs");
    assert_eq!(error.row(), Some(bad_row), "{name}: {error}");
}

#[test]
fn every_serving_path_matches_trainer_evaluate_on_penguins() {
    check_model("penguins");
}

#[test]
fn every_serving_path_matches_trainer_evaluate_on_diamonds() {
    check_model("diamonds");
}

/// `trainer evaluate --predictions` and `serving predict` (both builds) on `rows`: the same
/// cells. Returns the trainer's header and rows.
fn check_files_agree(
    model_dir: &std::path::Path,
    rows: &std::path::Path,
    out: &std::path::Path,
) -> (Vec<String>, Vec<Vec<String>>) {
    let trainer_out = out.join("trainer.csv");
    let status = Command::new(binary("trainer"))
        .args(["evaluate", "--model"])
        .arg(model_dir)
        .arg("--data")
        .arg(rows)
        .arg("--predictions")
        .arg(&trainer_out)
        .status()
        .expect("trainer runs");
    assert!(status.success(), "trainer evaluate failed");
    let (header, expected) = read_predictions(&trainer_out);
    for serving in [binary("serving"), shipped_serving()] {
        let serving_out = out.join("serving.csv");
        let output = Command::new(&serving)
            .args(["predict", "--quiet", "--model"])
            .arg(model_dir)
            .arg("--input")
            .arg(rows)
            .arg("--output")
            .arg(&serving_out)
            .output()
            .expect("serving runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let (serving_header, scored) = read_predictions(&serving_out);
        assert_eq!(&serving_header[..header.len()], &header[..]);
        let scored: Vec<Vec<String>> = scored.into_iter().map(|r| r[..header.len()].to_vec()).collect();
        assert_eq!(scored, expected, "{}: {} differs from trainer evaluate", model_dir.display(), serving.display());
    }
    (header, expected)
}

/// Models trained without a recipe (four members folded into one network) and with robust
/// scaling and `ln(1 + y)` predict in serving exactly what the trainer evaluated.
#[test]
fn models_from_the_defaults_and_the_new_transforms_match_trainer_evaluate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let synthetic = dir.path().join("customers.csv");
    crate::onnx::synthetic_csv(&synthetic, 800, 21, false);
    let recipe = dir.path().join("robust.toml");
    std::fs::write(
        &recipe,
        "[preprocessing]\nnumeric_scaling = \"robust_clip\"\ntarget_transform = \"log1p_standardize\"\n",
    )
    .expect("write the recipe");
    let penguins = crate::support::workspace().join("data/penguins.csv");
    let models = dir.path().join("models");
    for (data, target, config) in [(&penguins, "species", None), (&synthetic, "spend", Some(&recipe))] {
        let mut command = Command::new(binary("trainer"));
        command.args(["train", "--quiet", "--device", "cpu", "--epochs", "12", "--target", target, "--data"]);
        command.arg(data).arg("--out").arg(&models);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let output = command.output().expect("trainer runs");
        assert!(output.status.success(), "training failed: {}", String::from_utf8_lossy(&output.stderr));
        let name = data.file_stem().expect("a file name").to_string_lossy().into_owned();
        let model_dir = models.join(&name).join("1");
        let manifest = shared_inference::Artifact::read_dir(&model_dir).expect("reads").manifest;
        assert_eq!(manifest.network.hidden_layers, [128, 128], "{name}: four members of 32");
        check_files_agree(&model_dir, data, dir.path());
    }
}
