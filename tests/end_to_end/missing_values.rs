//! One contract for missing values: JSON `null`, and the text `""` or `NA` in any text cell or
//! BYTES element, mean "missing" on every path (CSV and JSON Lines files, KServe v1, OIP v2 in
//! JSON and in binary, the exported ONNX graph). A missing category is imputed with the training
//! data's most frequent one, so each path must score it exactly as it scores that category.

use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use serving::{AppState, Limits, Registry};
use shared_inference::FittedColumn;

use crate::support::{binary, repository};

/// One penguins record, its `sex` given as `sex` (a JSON value).
fn record(sex: Value) -> Value {
    json!({"island": "Biscoe", "bill_length_mm": 45.2, "bill_depth_mm": 14.8, "flipper_length_mm": 212,
           "body_mass_g": 5200, "sex": sex, "year": 2008})
}

fn most_frequent_sex(predictor: &shared_inference::Predictor) -> String {
    predictor
        .manifest()
        .preprocessing
        .columns
        .iter()
        .find_map(|c| match c {
            FittedColumn::Categorical { name, most_frequent, .. } if name == "sex" => Some(most_frequent.clone()),
            _ => None,
        })
        .expect("penguins has a categorical 'sex' column")
}

/// Every entry equals the first.
fn all_alike<T: PartialEq + std::fmt::Debug>(path: &str, values: &[T]) {
    assert!(values.len() > 1, "{path}: nothing to compare");
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value, &values[0], "{path}: variant {i} scores differently from the most frequent category");
    }
}

#[test]
fn empty_text_na_and_null_are_missing_on_every_path() {
    let model_dir = repository().version_dir("penguins");
    let predictor = shared_inference::Predictor::load(&model_dir).expect("penguins loads");
    let usual = most_frequent_sex(&predictor);
    let dir = tempfile::tempdir().expect("temporary directory");

    // Files: CSV (empty cell and NA) and JSON Lines (also null).
    let header = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year";
    let csv_rows: Vec<String> =
        [usual.as_str(), "", "NA"].iter().map(|sex| format!("Biscoe,45.2,14.8,212,5200,{sex},2008")).collect();
    let csv_path = dir.path().join("rows.csv");
    std::fs::write(&csv_path, format!("{header}\n{}\n", csv_rows.join("\n"))).expect("rows written");
    let variants = [json!(usual), json!(""), json!("NA"), Value::Null];
    let jsonl_path = dir.path().join("rows.jsonl");
    let lines: Vec<String> = variants.iter().map(|v| record(v.clone()).to_string()).collect();
    std::fs::write(&jsonl_path, lines.join("\n") + "\n").expect("rows written");
    for (path, format) in [(&csv_path, "csv"), (&jsonl_path, "jsonl")] {
        let output = Command::new(binary("serving"))
            .args(["predict", "--quiet", "--format", format, "--output", "-", "--model"])
            .arg(&model_dir)
            .arg("--input")
            .arg(path)
            .output()
            .expect("serving runs");
        assert!(output.status.success(), "{format}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).expect("UTF-8 output");
        let rows: Vec<&str> = text.lines().skip(usize::from(format == "csv")).collect();
        assert_eq!(rows.len(), if format == "csv" { 3 } else { 4 }, "{format}: {text}");
        assert!(!text.contains("error\":\"c") && !rows.iter().any(|r| r.contains("unknown")), "{format}: {text}");
        all_alike(format, &rows);
    }

    // HTTP: v1, v2 JSON and v2 binary.
    let mut registry = Registry::default();
    registry.load_version(&model_dir).expect("penguins loads");
    let state = AppState::new(registry, Limits { inference_threads: 1, ..serving_limits() }).expect("state");
    let app = serving::app(Arc::clone(&state));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let body = json!({ "instances": variants.iter().map(|v| record(v.clone())).collect::<Vec<_>>() });
        let (status, reply) = post(app.clone(), "/v1/models/penguins:predict", body.to_string()).await;
        let reply: Value = serde_json::from_slice(&reply).expect("JSON reply");
        assert_eq!(status, 200, "v1: {reply}");
        all_alike("v1", reply["predictions"].as_array().expect("predictions"));

        let tensors = |sex: Value| -> Vec<Value> {
            let r = record(Value::Null);
            predictor
                .schema()
                .features
                .iter()
                .map(|spec| {
                    let (datatype, data) = if spec.name == "sex" {
                        ("BYTES", sex.clone())
                    } else if spec.name == "island" {
                        ("BYTES", Value::Array(vec![r["island"].clone(); 4]))
                    } else {
                        ("FP64", Value::Array(vec![r[&spec.name].clone(); 4]))
                    };
                    json!({"name": spec.name, "datatype": datatype, "shape": [4], "data": data})
                })
                .collect()
        };
        let body = json!({ "inputs": tensors(json!(variants)) });
        let (status, reply) = post(app.clone(), "/v2/models/penguins/infer", body.to_string()).await;
        let reply: Value = serde_json::from_slice(&reply).expect("JSON reply");
        assert_eq!(status, 200, "v2 JSON: {reply}");
        let probabilities = output_values(&reply, "probabilities");
        all_alike("v2 JSON", &probabilities.chunks(3).collect::<Vec<_>>());

        // Binary BYTES cannot carry null: the most frequent category, "", "NA", "".
        let mut sex_bytes = Vec::new();
        for text in [usual.as_str(), "", "NA", ""] {
            sex_bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
            sex_bytes.extend_from_slice(text.as_bytes());
        }
        let mut inputs = tensors(Value::Null);
        for input in &mut inputs {
            if input["name"] == "sex" {
                input.as_object_mut().expect("object").remove("data");
                input["parameters"] = json!({"binary_data_size": sex_bytes.len()});
            }
        }
        let header = json!({ "inputs": inputs }).to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&sex_bytes);
        let request = axum::http::Request::post("/v2/models/penguins/infer")
            .header("inference-header-content-length", header.len().to_string())
            .body(axum::body::Body::from(body))
            .expect("request");
        let (status, reply) = send(app.clone(), request).await;
        let reply: Value = serde_json::from_slice(&reply).expect("JSON reply");
        assert_eq!(status, 200, "v2 binary: {reply}");
        let probabilities = output_values(&reply, "probabilities");
        all_alike("v2 binary", &probabilities.chunks(3).collect::<Vec<_>>());
    });

    // ONNX: the graph gets "" and "NA" as they are and must score them as serving does.
    let report = crate::onnx::compare(&model_dir, &csv_path, None);
    assert_eq!(report["missing_cells"], 2, "{report}");
}

async fn send(app: axum::Router, request: axum::http::Request<axum::body::Body>) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = app.oneshot(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    (parts.status.as_u16(), body.collect().await.expect("body").to_bytes().to_vec())
}

async fn post(app: axum::Router, path: &str, body: String) -> (u16, Vec<u8>) {
    send(app, axum::http::Request::post(path).body(axum::body::Body::from(body)).expect("request")).await
}

/// The values of output `name` of a v2 JSON response.
fn output_values(reply: &Value, name: &str) -> Vec<f64> {
    let outputs = reply["outputs"].as_array().expect("outputs");
    let output = outputs.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no output '{name}': {reply}"));
    output["data"].as_array().expect("data").iter().map(|v| v.as_f64().expect("a number")).collect()
}

fn serving_limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_concurrency: 4,
        timeout: std::time::Duration::from_secs(10),
        inference_threads: 1,
        inline_max_bytes: serving::DEFAULT_INLINE_MAX_BYTES,
        ..Limits::default()
    }
}
