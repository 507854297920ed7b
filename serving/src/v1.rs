//! KServe v1 records: `{"instances": [{"column": value, ...}, ...]}` in, `{"predictions": [...]}`
//! out, in the same order. The friendly form a web app sends; values may be numbers, text or null.

use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use shared_inference::input::RowBuilder;
use shared_inference::{Cell, ColumnBatch, Predictions};

use crate::error::ApiError;
use crate::registry::LoadedModel;

#[derive(Debug, Deserialize)]
pub struct V1Request {
    pub instances: Vec<Value>,
}

pub fn parse_request(body: &[u8]) -> Result<V1Request, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to parse the request JSON buffer: {e}")))
}

/// One instance's value as a raw cell.
fn cell<'a>(model: &str, row: usize, column: &str, value: &'a Value) -> Result<Cell<'a>, ApiError> {
    match value {
        Value::Number(n) => Ok(Cell::Number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => Ok(Cell::Text(s)),
        Value::Null => Ok(Cell::Missing),
        other => Err(ApiError::bad_request(format!(
            "model '{model}', instance {row}, column '{column}': expected a number, text or null, got {other}"
        ))),
    }
}

pub fn decode_instances<'a>(model: &LoadedModel, request: &'a V1Request) -> Result<ColumnBatch<'a>, ApiError> {
    let schema = model.predictor.schema();
    let mut builder = RowBuilder::new(schema, request.instances.len());
    let mut cells = Vec::with_capacity(schema.features.len());
    for (row, instance) in request.instances.iter().enumerate() {
        let Value::Object(fields) = instance else {
            return Err(ApiError::bad_request(format!(
                "model '{}', instance {row}: each instance must be an object of column -> value, got {instance}",
                model.name
            )));
        };
        cells.clear();
        for (column, value) in fields {
            cells.push((column.as_str(), cell(&model.name, row, column, value)?));
        }
        builder
            .push_row(row, cells.drain(..))
            .map_err(|e| ApiError::bad_request(format!("model '{}', instance {row}: {e}", model.name)))?;
    }
    builder.finish().map_err(|e| ApiError::bad_request(format!("model '{}': {e}", model.name)))
}

/// Class probabilities as a JSON object in class order.
struct ClassProbabilities<'a> {
    classes: &'a [String],
    values: &'a [f32],
}

impl Serialize for ClassProbabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.classes.len()))?;
        for (class, value) in self.classes.iter().zip(self.values) {
            map.serialize_entry(class, value)?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Prediction<'a> {
    Value(f32),
    Class { label: &'a str, probabilities: ClassProbabilities<'a> },
}

#[derive(serde::Serialize)]
struct V1Response<'a> {
    predictions: Vec<Prediction<'a>>,
}

pub fn encode_response(model: &LoadedModel, predictions: &Predictions) -> Vec<u8> {
    let classes = model.predictor.labels();
    let predictions = match predictions {
        Predictions::Regression { values } => values.iter().map(|&v| Prediction::Value(v)).collect(),
        Predictions::Classification { probabilities, labels, n_classes } => labels
            .iter()
            .enumerate()
            .map(|(row, &label)| Prediction::Class {
                label: classes.get(label).map_or("", String::as_str),
                probabilities: ClassProbabilities {
                    classes,
                    values: &probabilities[row * n_classes..(row + 1) * n_classes],
                },
            })
            .collect(),
    };
    serde_json::to_vec(&V1Response { predictions }).unwrap_or_default()
}
