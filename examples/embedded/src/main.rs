//! An example web application with the model inside: it loads one artifact at start and predicts
//! in its own `POST /predict` handler, with no second process and no training crate. It shows the
//! pattern and nothing more (no limits, access control or metrics); `serving` is the hardened server.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use serde_json::{Map, Value, json};
use shared_inference::{Cell, Predictions, Predictor};

/// A web application that embeds one model: `POST /predict` takes a JSON array of records
/// (objects of column -> number, text or null) and answers one prediction per record.
#[derive(Debug, Parser)]
#[command(name = "embedded-model", about, long_about = None)]
struct Args {
    /// The model's version directory, for example artifacts/penguins/1.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Address to listen on; port 0 takes any free port. The first line on stdout names it.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Read, checked (format version, checksums) and loaded once; every request shares it.
    let predictor =
        Predictor::load(&args.model).with_context(|| format!("loading the model in {}", args.model.display()))?;
    let app = Router::new().route("/predict", post(predict)).with_state(Arc::new(predictor));
    let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await.context("serving")
}

/// `POST /predict`: records in, answers out in the same order; a bad request is a 400 with
/// `{"error": "..."}` that names the column and what was expected (and the row, where one is at fault).
async fn predict(State(predictor): State<Arc<Predictor>>, body: Bytes) -> Response {
    // A forward pass takes microseconds per row, so it runs here on the async worker; a service
    // that takes very large batches would hand it to `tokio::task::spawn_blocking`.
    match answer(&predictor, &body) {
        Ok(answers) => Json(answers).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

/// A request body -> one answer per record, or what is wrong with the body.
fn answer<'p>(predictor: &'p Predictor, body: &[u8]) -> Result<Vec<Answer<'p>>, String> {
    let objects: Vec<Map<String, Value>> = serde_json::from_slice(body)
        .map_err(|e| format!("expected a JSON array of records (objects of column -> value): {e}"))?;
    // Each record as `(column, Cell::Number | Cell::Text | Cell::Missing)`, borrowed from the body.
    let records = objects.iter().enumerate().map(|(row, object)| cells(row, object)).collect::<Result<Vec<_>, _>>()?;
    let predictions = predictor.predict_records(&records).map_err(|e| match e.row() {
        Some(row) => format!("row {row}: {e}"),
        None => e.to_string(),
    })?;
    Ok(answers(&predictions, predictor.labels()))
}

/// One record as the `(column, value)` pairs the predictor reads, borrowed from the parsed body.
/// Text in a numeric column is read as a number; `null`, `""` and `"NA"` are missing values.
fn cells(row: usize, object: &Map<String, Value>) -> Result<Vec<(&str, Cell<'_>)>, String> {
    object
        .iter()
        .map(|(column, value)| {
            let cell = match value {
                Value::Null => Cell::Missing,
                Value::Number(number) => number.as_f64().map_or(Cell::Missing, Cell::Number),
                Value::String(text) => Cell::Text(text),
                other => {
                    return Err(format!("row {row}, column '{column}': expected a number, text or null, got {other}"));
                }
            };
            Ok((column.as_str(), cell))
        })
        .collect()
}

/// One record's answer, with what `serving predict` writes for it: the `prediction`, or the
/// `label` and each class's probability. The floats are serialized as the `f32`s the predictor
/// gives, in their shortest text that reads back to the same bits.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer<'p> {
    Regression { prediction: f32 },
    Classification { label: &'p str, probabilities: BTreeMap<&'p str, f32> },
}

/// Predictions `[n_rows]` or `[n_rows, n_classes]` -> one answer per row.
fn answers<'p>(predictions: &Predictions, classes: &'p [String]) -> Vec<Answer<'p>> {
    match predictions {
        Predictions::Regression { values } => {
            values.iter().map(|&prediction| Answer::Regression { prediction }).collect()
        }
        Predictions::Classification { probabilities, labels, n_classes } => labels
            .iter()
            .zip(probabilities.chunks(*n_classes))
            .map(|(&label, row)| Answer::Classification {
                // An argmax over the model's outputs, each of which the artifact names.
                label: classes[label].as_str(),
                probabilities: classes.iter().map(String::as_str).zip(row.iter().copied()).collect(),
            })
            .collect(),
    }
}
