//! KServe v1 records: `{"instances": [{"column": value, ...}, ...]}` in, `{"predictions": [...]}`
//! out, in the same order. The friendly form a web app sends; values may be numbers, text or null.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use shared_inference::input::RowBuilder;
use shared_inference::{Cell, ColumnBatch, Predictions};

use crate::error::ApiError;
use crate::json::{Scalar, ScalarSink, Text};
use crate::registry::LoadedModel;

/// The request, parsed straight into records whose keys and text borrow from the body: no
/// intermediate JSON tree, no map per instance.
#[derive(Debug)]
pub struct V1Request<'a> {
    pub instances: Vec<Instance<'a>>,
}

/// One element of `instances`: a record, or a description of what came instead.
#[derive(Debug)]
pub enum Instance<'a> {
    /// Column names and their values, in the order sent.
    Record {
        keys: Vec<Cow<'a, str>>,
        values: Vec<Scalar<'a>>,
    },
    NotAnObject(String),
}

pub fn parse_request(body: &[u8]) -> Result<V1Request<'_>, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to parse the request JSON buffer: {e}")))
}

pub fn decode_instances<'a>(model: &LoadedModel, request: &'a V1Request<'_>) -> Result<ColumnBatch<'a>, ApiError> {
    let schema = model.predictor.schema();
    let mut builder = RowBuilder::new(schema, request.instances.len());
    let mut cells = Vec::with_capacity(schema.features.len());
    for (row, instance) in request.instances.iter().enumerate() {
        let (keys, values) = match instance {
            Instance::Record { keys, values } => (keys, values),
            Instance::NotAnObject(got) => {
                return Err(ApiError::bad_request(format!(
                    "model '{}', instance {row}: each instance must be an object of column -> value, got {got}",
                    model.name
                )));
            }
        };
        cells.clear();
        for (column, value) in keys.iter().zip(values) {
            let cell = match value {
                Scalar::Number(n) => Cell::Number(*n),
                Scalar::Text(text) => Cell::Text(text.as_ref()),
                Scalar::Null => Cell::Missing,
                Scalar::Invalid(got) => {
                    return Err(ApiError::bad_request(format!(
                        "model '{}', instance {row}, column '{column}': expected a number, text or null, got {got}",
                        model.name
                    )));
                }
            };
            cells.push((column.as_ref(), cell));
        }
        builder
            .push_row(row, cells.drain(..))
            .map_err(|e| ApiError::bad_request(format!("model '{}', instance {row}: {e}", model.name)))?;
    }
    builder.finish().map_err(|e| ApiError::bad_request(format!("model '{}': {e}", model.name)))
}

impl<'de> Deserialize<'de> for V1Request<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequestVisitor;
        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = V1Request<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with \"instances\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut instances = None;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key == "instances" {
                        if instances.is_some() {
                            return Err(de::Error::duplicate_field("instances"));
                        }
                        instances = Some(map.next_value::<Vec<Instance<'de>>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                let instances = instances.ok_or_else(|| de::Error::missing_field("instances"))?;
                Ok(V1Request { instances })
            }
        }
        deserializer.deserialize_map(RequestVisitor)
    }
}

impl<'de> Deserialize<'de> for Instance<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InstanceVisitor;
        impl<'de> Visitor<'de> for InstanceVisitor {
            type Value = Instance<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of column -> value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    keys.push(key);
                    map.next_value_seed(ScalarSink { out: &mut values, flatten_arrays: false })?;
                }
                Ok(Instance::Record { keys, values })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Instance::NotAnObject("an array".into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject(format!("{v:?}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Instance::NotAnObject("null".into()))
            }
        }
        deserializer.deserialize_any(InstanceVisitor)
    }
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
