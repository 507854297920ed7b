//! KServe v1 records: `{"instances": [{"column": value, ...}, ...]}` in, `{"predictions": [...]}`
//! out, in the same order. The friendly form a web app sends; values may be numbers, text or null.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use shared_inference::input::RowBuilder;
use shared_inference::output;
use shared_inference::{Cell, ColumnBatch, Predictions};

use crate::error::{ProtocolError, ServeError};
use crate::json::{Scalar, ScalarSink, Text};
use crate::registry::LoadedModel;

/// The request, parsed straight into records whose keys and text borrow from the body: no
/// intermediate JSON tree, and every record's keys and values in two shared vectors rather than
/// two vectors per record.
#[derive(Debug, Default, PartialEq)]
pub struct V1Request<'a> {
    /// Every record's column names, record after record, in the order sent.
    keys: Vec<Cow<'a, str>>,
    /// The value of each entry of `keys`.
    values: Vec<Scalar<'a>>,
    /// One per element of `instances`.
    instances: Vec<Instance>,
}

/// One element of `instances`: a record (its entries end at this index of the request's keys
/// and values), or a description of what came instead.
#[derive(Debug, PartialEq)]
enum Instance {
    Record { end: usize },
    NotAnObject(String),
}

impl<'a> V1Request<'a> {
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Each instance as its `(column, value)` entries, or what came instead of an object.
    fn records(&self) -> impl Iterator<Item = Result<(&[Cow<'a, str>], &[Scalar<'a>]), &str>> {
        let mut start = 0;
        self.instances.iter().map(move |instance| match instance {
            Instance::Record { end } => {
                let entries = (&self.keys[start..*end], &self.values[start..*end]);
                start = *end;
                Ok(entries)
            }
            Instance::NotAnObject(got) => Err(got.as_str()),
        })
    }
}

/// Parses a body with serde_json, straight into borrowed records.
pub fn parse_request(body: &[u8]) -> Result<V1Request<'_>, ProtocolError> {
    Ok(serde_json::from_slice(body)?)
}

pub fn decode_instances<'a>(model: &LoadedModel, request: &'a V1Request<'_>) -> Result<ColumnBatch<'a>, ServeError> {
    let schema = model.predictor.schema();
    let mut builder = RowBuilder::new(schema, request.len());
    for (row, record) in request.records().enumerate() {
        let (keys, values) = record.map_err(|got| ProtocolError::NotAnObject {
            model: model.name.clone(),
            row,
            got: got.to_string(),
        })?;
        if let Some((column, Scalar::Invalid(got))) =
            keys.iter().zip(values).find(|(_, value)| matches!(value, Scalar::Invalid(_)))
        {
            return Err(ProtocolError::InvalidValue {
                model: model.name.clone(),
                row,
                column: column.to_string(),
                got: got.clone(),
            }
            .into());
        }
        let cells = keys.iter().zip(values).map(|(column, value)| {
            let cell = match value {
                Scalar::Number(n) => Cell::Number(*n),
                Scalar::Integer(n) => Cell::Number(*n as f64),
                Scalar::Text(text) => Cell::Text(text.as_ref()),
                Scalar::Null | Scalar::Invalid(_) => Cell::Missing,
            };
            (column.as_ref(), cell)
        });
        builder.push_row(row, cells).map_err(|source| ServeError::Input {
            model: model.name.clone(),
            row: Some(row),
            source,
        })?;
    }
    builder.finish().map_err(|e| ServeError::input(&model.name, e))
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
                let mut request = None;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key == "instances" {
                        if request.is_some() {
                            return Err(de::Error::duplicate_field("instances"));
                        }
                        let mut instances = V1Request::default();
                        map.next_value_seed(Instances(&mut instances))?;
                        request = Some(instances);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                request.ok_or_else(|| de::Error::missing_field("instances"))
            }
        }
        deserializer.deserialize_map(RequestVisitor)
    }
}

/// Reads the `instances` array into a [`V1Request`].
struct Instances<'r, 'a>(&'r mut V1Request<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for Instances<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Instances<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of instances")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(instance) = seq.next_element_seed(InstanceSink(&mut *self.0))? {
            self.0.instances.push(instance);
        }
        Ok(())
    }
}

/// Reads one element of `instances`, appending a record's entries to the request's keys and
/// values.
struct InstanceSink<'r, 'a>(&'r mut V1Request<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for InstanceSink<'_, 'a> {
    type Value = Instance;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Instance, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for InstanceSink<'_, 'a> {
    type Value = Instance;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of column -> value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Instance, A::Error> {
        let request = self.0;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            request.keys.push(key);
            map.next_value_seed(ScalarSink { out: &mut request.values, flatten_arrays: false })?;
        }
        Ok(Instance::Record { end: request.keys.len() })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Instance, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Instance::NotAnObject("an array".into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Instance, E> {
        Ok(Instance::NotAnObject(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Instance, E> {
        Ok(Instance::NotAnObject(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Instance, E> {
        Ok(Instance::NotAnObject(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Instance, E> {
        Ok(Instance::NotAnObject(format!("{v:?}")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Instance, E> {
        Ok(Instance::NotAnObject(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Instance, E> {
        Ok(Instance::NotAnObject("null".into()))
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

/// One instance's prediction: the value, or `{"label": ..., "probabilities": {...}}` under the
/// shared output names.
enum Prediction<'a> {
    Value(f32),
    Class { label: &'a str, probabilities: ClassProbabilities<'a> },
}

impl Serialize for Prediction<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Prediction::Value(value) => serializer.serialize_f32(*value),
            Prediction::Class { label, probabilities } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry(output::LABEL, label)?;
                map.serialize_entry(output::PROBABILITIES, probabilities)?;
                map.end()
            }
        }
    }
}

#[derive(serde::Serialize)]
struct V1Response<'a> {
    predictions: Vec<Prediction<'a>>,
}

pub fn encode_response(model: &LoadedModel, predictions: &Predictions) -> Result<Vec<u8>, ServeError> {
    let classes = model.predictor.labels();
    let predictions = match predictions {
        Predictions::Regression { values } => values.iter().map(|&v| Prediction::Value(v)).collect(),
        Predictions::Classification { probabilities, labels, n_classes } => model
            .label_names(labels)?
            .into_iter()
            .enumerate()
            .map(|(row, label)| Prediction::Class {
                label,
                probabilities: ClassProbabilities {
                    classes,
                    values: &probabilities[row * n_classes..(row + 1) * n_classes],
                },
            })
            .collect(),
    };
    serde_json::to_vec(&V1Response { predictions })
        .map_err(|e| ServeError::Internal { detail: format!("encoding a v1 response: {e}") })
}
