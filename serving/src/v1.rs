//! KServe v1 records: `{"instances": [{"column": value, ...}, ...]}` in, `{"predictions": [...]}`
//! out, in the same order. The friendly form a web app sends; values may be numbers, text or null.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use shared_inference::input::RowBuilder;
use shared_inference::{Cell, ColumnBatch, Predictions};

use crate::error::ApiError;
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

pub fn parse_request(body: &[u8]) -> Result<V1Request<'_>, ApiError> {
    match plain::parse(body) {
        Some(request) => Ok(request),
        None => parse_with_serde(body),
    }
}

/// The general parser: any valid JSON, with serde_json's error messages for invalid JSON.
fn parse_with_serde(body: &[u8]) -> Result<V1Request<'_>, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to parse the request JSON buffer: {e}")))
}

/// A parser for the plain shape nearly every v1 body has: `{"instances": [...]}` whose records
/// are objects of the plain values [`crate::json::PlainReader`] reads. It gives up (`None`) on
/// anything else (other keys, escapes, booleans, nested values, long numbers, invalid JSON),
/// which the general parser then reads or rejects; on what it accepts it gives exactly what the
/// general parser gives (the tests compare both bit for bit).
mod plain {
    use std::borrow::Cow;

    use super::{Instance, V1Request};
    use crate::json::PlainReader;

    pub fn parse(body: &[u8]) -> Option<V1Request<'_>> {
        let mut p = PlainReader::new(body)?;
        let mut request = V1Request::default();
        p.expect(b'{')?;
        if p.string()? != "instances" {
            return None;
        }
        p.expect(b':')?;
        p.expect(b'[')?;
        if !p.eat(b']') {
            loop {
                p.expect(b'{')?;
                if !p.eat(b'}') {
                    loop {
                        request.keys.push(Cow::Borrowed(p.string()?));
                        p.expect(b':')?;
                        request.values.push(p.value()?);
                        if p.eat(b'}') {
                            break;
                        }
                        p.expect(b',')?;
                    }
                }
                request.instances.push(Instance::Record { end: request.keys.len() });
                if p.eat(b']') {
                    break;
                }
                p.expect(b',')?;
            }
        }
        p.expect(b'}')?;
        p.at_end().then_some(request)
    }
}

pub fn decode_instances<'a>(model: &LoadedModel, request: &'a V1Request<'_>) -> Result<ColumnBatch<'a>, ApiError> {
    let schema = model.predictor.schema();
    let mut builder = RowBuilder::new(schema, request.len());
    for (row, record) in request.records().enumerate() {
        let (keys, values) = record.map_err(|got| {
            ApiError::bad_request(format!(
                "model '{}', instance {row}: each instance must be an object of column -> value, got {got}",
                model.name
            ))
        })?;
        if let Some((column, Scalar::Invalid(got))) =
            keys.iter().zip(values).find(|(_, value)| matches!(value, Scalar::Invalid(_)))
        {
            return Err(ApiError::bad_request(format!(
                "model '{}', instance {row}, column '{column}': expected a number, text or null, got {got}",
                model.name
            )));
        }
        let cells = keys.iter().zip(values).map(|(column, value)| {
            let cell = match value {
                Scalar::Number(n) => Cell::Number(*n),
                Scalar::Text(text) => Cell::Text(text.as_ref()),
                Scalar::Null | Scalar::Invalid(_) => Cell::Missing,
            };
            (column.as_ref(), cell)
        });
        builder
            .push_row(row, cells)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parsers on `body`: the plain one must accept it and read it as the general one does,
    /// bit for bit.
    fn agree(body: &str) {
        let (fast, general) = crate::json::tests::read_alike(body, plain::parse, parse_with_serde);
        crate::json::tests::assert_same_bits(body, &fast.values, &general.values);
    }

    #[test]
    fn the_plain_parser_agrees_with_serde_json_on_plain_bodies() {
        agree(r#"{"instances": []}"#);
        agree(r#"{"instances":[{}]}"#);
        agree(
            " {\n\t\"instances\" : [ { \"carat\" : 0.23 , \"cut\" : \"Ideal\" , \"x\" : null } ,\r\n {\"carat\":1} ] } \n",
        );
        agree(r#"{"instances": [{"a": -0, "b": -0.0, "c": 0, "d": 999999999999999, "e": -123456789012345}]}"#);
        agree(r#"{"instances": [{"ünïcödé": "Très bien", "empty": ""}]}"#);
        let records: Vec<String> = crate::json::tests::plain_decimals(2000)
            .iter()
            .enumerate()
            .map(|(i, number)| format!(r#"{{"v": {number}, "s": "row {i}"}}"#))
            .collect();
        agree(&format!(r#"{{"instances": [{}]}}"#, records.join(",")));
    }

    #[test]
    fn the_plain_parser_leaves_everything_else_to_serde_json() {
        for body in [
            r#"{"instances": [{"a": "tab\tescaped"}]}"#,
            r#"{"instances": [{"a": "quote\"d"}]}"#,
            r#"{"instances": [{"a": true}]}"#,
            r#"{"instances": [{"a": [1, 2]}]}"#,
            r#"{"instances": [{"a": {"b": 1}}]}"#,
            r#"{"instances": [[1, 2]]}"#,
            r#"{"instances": [1]}"#,
            r#"{"instances": [{"a": 1e3}]}"#,
            r#"{"instances": [{"a": 0.1234567890123456}]}"#,
            r#"{"instances": [{"a": 01}]}"#,
            r#"{"instances": [{"a": 1.}]}"#,
            r#"{"instances": [{"a": .5}]}"#,
            r#"{"instances": [{"a": 1}], "extra": 1}"#,
            r#"{"signature_name": "x", "instances": [{"a": 1}]}"#,
            r#"{"instances": [{"a": 1},]}"#,
            r#"{"instances": [{"a": 1}]} trailing"#,
            r#"{"instances": [{"a": nul}]}"#,
            "{\"instances\": [{\"a\": \"\u{1}\"}]}",
        ] {
            assert!(plain::parse(body.as_bytes()).is_none(), "{body}");
        }
        // What the general parser then does: reads what is valid, rejects what is not.
        let request = parse_request(br#"{"instances": [{"a": "quote\"d", "b": 1e3}], "extra": 1}"#).expect("valid");
        assert_eq!(request.values, vec![Scalar::Text("quote\"d".into()), Scalar::Number(1000.0)]);
        let error = parse_request(br#"{"instances": [{"a": 01}]}"#).expect_err("invalid JSON");
        assert!(error.message.contains("failed to parse the request JSON"), "{}", error.message);
    }
}
