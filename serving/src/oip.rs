//! Open Inference Protocol v2 inference: decoding a request (JSON, with or without the binary
//! tensor extension) into the model's raw columns, and encoding the predictions as the
//! response. Pure functions over bytes; the HTTP handlers live in `http.rs`.

use serde::Deserialize;
use serde_json::{Map, Value};
use shared_inference::{ColumnBatch, ColumnKind, ColumnValues, Predictions};

use crate::error::ApiError;
use crate::json::{Scalar, ScalarSink};
use crate::registry::LoadedModel;

/// The header that splits a binary-extension body into its JSON part and its tensor bytes.
pub const INFERENCE_HEADER: &str = "inference-header-content-length";

#[derive(Debug, PartialEq, Deserialize)]
pub struct InferRequest<'a> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    pub inputs: Vec<InputTensor<'a>>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub struct InputTensor<'a> {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Nested or flat, read straight into row-major elements (no JSON tree).
    #[serde(default, borrow)]
    pub data: Option<Elements<'a>>,
}

/// A tensor's `data` (nested or flat), flattened in row-major order.
#[derive(Debug, Default, PartialEq)]
pub struct Elements<'a>(pub Vec<Scalar<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Elements<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        serde::de::DeserializeSeed::deserialize(ScalarSink { out: &mut out, flatten_arrays: true }, deserializer)?;
        Ok(Elements(out))
    }
}

#[derive(Debug, PartialEq, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

/// Splits a body into its JSON header and binary tensor section.
pub fn split_body<'a>(body: &'a [u8], header_length: Option<&str>) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    match header_length {
        None => Ok((body, &[])),
        Some(text) => {
            let n: usize = text.trim().parse().map_err(|_| {
                ApiError::bad_request(format!("Inference-Header-Content-Length must be a byte count, got '{text}'"))
            })?;
            if n > body.len() {
                return Err(ApiError::bad_request(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
            Ok(body.split_at(n))
        }
    }
}

pub fn parse_request(json: &[u8]) -> Result<InferRequest<'_>, ApiError> {
    match plain::parse(json) {
        Some(request) => Ok(request),
        None => parse_with_serde(json),
    }
}

/// The general parser: any valid JSON, with serde_json's error messages for invalid JSON.
fn parse_with_serde(json: &[u8]) -> Result<InferRequest<'_>, ApiError> {
    serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("failed to parse the request JSON buffer: {e}")))
}

/// A parser for the plain shape nearly every JSON inference request has: `{"inputs": [...]}`
/// (and perhaps an `id`) whose tensors have only a name, a datatype, a shape of integers and
/// flat data of the plain values [`crate::json::PlainReader`] reads. It gives up (`None`) on
/// anything else (parameters, requested outputs, nested data, escapes, booleans, long numbers,
/// repeated or missing keys, invalid JSON), which the general parser then reads or rejects; on
/// what it accepts it gives exactly what the general parser gives (the tests compare both bit
/// for bit).
mod plain {
    use super::{Elements, InferRequest, InputTensor};
    use crate::json::PlainReader;

    pub fn parse(json: &[u8]) -> Option<InferRequest<'_>> {
        let mut p = PlainReader::new(json)?;
        let (mut id, mut inputs) = (None, None);
        p.expect(b'{')?;
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            match key {
                "inputs" if inputs.is_none() => inputs = Some(list(&mut p, tensor)?),
                "id" if id.is_none() => id = Some(p.string()?.to_string()),
                _ => return None,
            }
            if p.eat(b'}') {
                break;
            }
            p.expect(b',')?;
        }
        p.at_end().then_some(())?;
        Some(InferRequest { id, parameters: None, inputs: inputs?, outputs: None })
    }

    fn tensor<'a>(p: &mut PlainReader<'a>) -> Option<InputTensor<'a>> {
        let (mut name, mut datatype, mut shape, mut data) = (None, None, None::<Vec<i64>>, None);
        p.expect(b'{')?;
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            match key {
                "name" if name.is_none() => name = Some(p.string()?.to_string()),
                "datatype" if datatype.is_none() => datatype = Some(p.string()?.to_string()),
                "shape" if shape.is_none() => shape = Some(list(p, PlainReader::integer)?),
                "data" if data.is_none() => data = Some(Elements(list(p, PlainReader::value)?)),
                _ => return None,
            }
            if p.eat(b'}') {
                break;
            }
            p.expect(b',')?;
        }
        Some(InputTensor { name: name?, shape: shape?, datatype: datatype?, parameters: None, data })
    }

    /// `[item, item, ...]`.
    fn list<'a, T>(p: &mut PlainReader<'a>, item: impl Fn(&mut PlainReader<'a>) -> Option<T>) -> Option<Vec<T>> {
        let mut out = Vec::new();
        p.expect(b'[')?;
        if p.eat(b']') {
            return Some(out);
        }
        loop {
            out.push(item(p)?);
            if p.eat(b']') {
                return Some(out);
            }
            p.expect(b',')?;
        }
    }
}

/// Element types of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "BOOL" => Self::Bool,
            "UINT8" => Self::U8,
            "UINT16" => Self::U16,
            "UINT32" => Self::U32,
            "UINT64" => Self::U64,
            "INT8" => Self::I8,
            "INT16" => Self::I16,
            "INT32" => Self::I32,
            "INT64" => Self::I64,
            "FP16" => Self::F16,
            "BF16" => Self::Bf16,
            "FP32" => Self::F32,
            "FP64" => Self::F64,
            "BYTES" => Self::Bytes,
            _ => return None,
        })
    }

    fn is_number(self) -> bool {
        !matches!(self, Self::Bool | Self::Bytes | Self::F16 | Self::Bf16)
    }

    /// The inclusive range an integer datatype can hold, `None` for floating point.
    fn integer_range(self) -> Option<(f64, f64)> {
        Some(match self {
            Self::U8 => (0.0, f64::from(u8::MAX)),
            Self::U16 => (0.0, f64::from(u16::MAX)),
            Self::U32 => (0.0, f64::from(u32::MAX)),
            Self::U64 => (0.0, u64::MAX as f64),
            Self::I8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
            Self::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            Self::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Self::I64 => (i64::MIN as f64, i64::MAX as f64),
            _ => return None,
        })
    }

    fn width(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            Self::Bytes => 0,
        }
    }
}

/// The datatype a column is advertised with in metadata.
pub fn advertised_datatype(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Numeric => "FP32",
        ColumnKind::Categorical => "BYTES",
    }
}

const NUMERIC_TYPES: &str = "FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32 or UINT64";

/// Decodes a request's inputs into the model's columns. `binary` is the tensor section that
/// follows the JSON header (empty without the binary extension).
pub fn decode_inputs<'a>(
    model: &LoadedModel,
    request: &'a InferRequest<'_>,
    binary: &'a [u8],
) -> Result<ColumnBatch<'a>, ApiError> {
    let schema = model.predictor.schema();
    let name = &model.name;
    let mut columns: Vec<Option<ColumnValues<'a>>> = vec![None; schema.features.len()];
    let mut rows: Option<(usize, &str)> = None;
    let mut cursor = 0usize;
    for input in &request.inputs {
        let Some(index) = schema.position(&input.name) else {
            return Err(ApiError::bad_request(format!(
                "unexpected inference input '{}' for model '{name}'; the model's inputs are {:?}",
                input.name,
                schema.feature_names()
            )));
        };
        if columns[index].is_some() {
            return Err(ApiError::bad_request(format!(
                "input '{}' appears twice in the request for model '{name}'",
                input.name
            )));
        }
        let kind = schema.features[index].kind;
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            ApiError::bad_request(format!("input '{}' has unknown datatype '{}'", input.name, input.datatype))
        })?;
        let kind_ok = match kind {
            ColumnKind::Numeric => datatype.is_number(),
            ColumnKind::Categorical => datatype == DataType::Bytes,
        };
        if !kind_ok {
            let expected = match kind {
                ColumnKind::Numeric => NUMERIC_TYPES,
                ColumnKind::Categorical => "BYTES",
            };
            return Err(ApiError::bad_request(format!(
                "inference input '{}' data-type is '{}', but model '{name}' expects '{expected}'",
                input.name, input.datatype
            )));
        }
        let n = rows_of_shape(&input.shape).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unexpected shape for input '{}' for model '{name}'. Expected [-1] or [-1,1], got {:?}",
                input.name, input.shape
            ))
        })?;
        if let Some((expected, first)) = rows {
            if n != expected {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has {n} rows but input '{first}' has {expected} for model '{name}'; every input needs one value per row",
                    input.name
                )));
            }
        } else {
            rows = Some((n, &input.name));
        }
        let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let values = match (binary_size, &input.data) {
            (Some(size), _) => {
                let size = size.as_u64().ok_or_else(|| {
                    ApiError::bad_request(format!("input '{}': binary_data_size must be a byte count", input.name))
                })? as usize;
                let end = cursor.checked_add(size).filter(|&e| e <= binary.len()).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "input '{}' declares {size} bytes of binary data but only {} remain after the JSON header",
                        input.name,
                        binary.len() - cursor.min(binary.len())
                    ))
                })?;
                let bytes = &binary[cursor..end];
                cursor = end;
                decode_binary(&input.name, datatype, bytes, n)?
            }
            (None, Some(data)) => decode_json(name, input, datatype, data, n)?,
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input '{}' has neither 'data' nor a 'binary_data_size' parameter",
                    input.name
                )));
            }
        };
        columns[index] = Some(values);
    }
    if cursor != binary.len() {
        return Err(ApiError::bad_request(format!(
            "the request carries {} bytes of binary data but its inputs declare {cursor}",
            binary.len()
        )));
    }
    let missing: Vec<&str> =
        schema.features.iter().zip(&columns).filter(|(_, c)| c.is_none()).map(|(s, _)| s.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "expected {} inputs but got {} inputs for model '{name}'. Missing required input(s) {missing:?}",
            schema.features.len(),
            request.inputs.len()
        )));
    }
    let columns = columns.into_iter().flatten().collect();
    ColumnBatch::new(schema, columns).map_err(|e| ApiError::bad_request(format!("model '{name}': {e}")))
}

/// `[N]` or `[N, 1]` -> N.
fn rows_of_shape(shape: &[i64]) -> Option<usize> {
    match shape {
        [n] | [n, 1] if *n >= 0 => Some(*n as usize),
        _ => None,
    }
}

fn decode_json<'a>(
    model: &str,
    tensor: &InputTensor<'_>,
    datatype: DataType,
    data: &'a Elements<'_>,
    n: usize,
) -> Result<ColumnValues<'a>, ApiError> {
    let input = tensor.name.as_str();
    let flat = &data.0;
    if flat.len() != n {
        return Err(ApiError::bad_request(format!(
            "input '{input}' for model '{model}' has shape {:?} ({n} elements) but its data holds {} elements",
            tensor.shape,
            flat.len()
        )));
    }
    if datatype == DataType::Bytes {
        let values = flat
            .iter()
            .enumerate()
            .map(|(row, v)| match v {
                Scalar::Text(s) => Ok(Some(s.as_ref())),
                Scalar::Null => Ok(None),
                other => Err(ApiError::bad_request(format!(
                    "input '{input}', element {row}: BYTES elements must be strings (or null for missing), got {}",
                    other.describe()
                ))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(ColumnValues::Categorical(values));
    }
    let values = flat
        .iter()
        .enumerate()
        .map(|(row, v)| match v {
            &Scalar::Number(x) => {
                if let Some((low, high)) = datatype.integer_range() {
                    if x.fract() != 0.0 {
                        return Err(ApiError::bad_request(format!(
                            "input '{input}', element {row}: {x} is not an integer but the datatype is {}",
                            tensor.datatype
                        )));
                    }
                    if x < low || x > high {
                        return Err(ApiError::bad_request(format!(
                            "input '{input}', element {row}: {x} is out of range for {}",
                            tensor.datatype
                        )));
                    }
                }
                // An FP32 tensor carries f32 values, whichever way it travels.
                Ok(if datatype == DataType::F32 { f64::from(x as f32) } else { x })
            }
            Scalar::Null => Ok(f64::NAN),
            other => Err(ApiError::bad_request(format!(
                "input '{input}', element {row}: expected a number (or null for missing), got {}",
                other.describe()
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(ColumnValues::Numeric(values))
}

fn decode_binary<'a>(input: &str, datatype: DataType, bytes: &'a [u8], n: usize) -> Result<ColumnValues<'a>, ApiError> {
    if datatype == DataType::Bytes {
        // Each element takes at least its 4-byte length prefix, which bounds a believable count.
        let mut values = Vec::with_capacity(n.min(bytes.len() / 4));
        let mut rest = bytes;
        for row in 0..n {
            let bad = || ApiError::bad_request(format!("input '{input}': binary BYTES data ends inside element {row}"));
            let (length, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
            let length = u32::from_le_bytes(*length) as usize;
            let (text, tail) = tail.split_at_checked(length).ok_or_else(bad)?;
            let text = std::str::from_utf8(text).map_err(|_| {
                ApiError::bad_request(format!("input '{input}', element {row}: BYTES element is not valid UTF-8"))
            })?;
            values.push(Some(text));
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(ApiError::bad_request(format!(
                "input '{input}': {} bytes of binary data are left after {n} BYTES elements",
                rest.len()
            )));
        }
        return Ok(ColumnValues::Categorical(values));
    }
    if matches!(datatype, DataType::F16 | DataType::Bf16) {
        return Err(ApiError::bad_request(format!("input '{input}': {datatype:?} is not supported; send FP32")));
    }
    let width = datatype.width();
    if n.checked_mul(width) != Some(bytes.len()) {
        return Err(ApiError::bad_request(format!(
            "input '{input}': {n} elements of {datatype:?} need {} bytes, got {}",
            n.saturating_mul(width),
            bytes.len()
        )));
    }
    let values = bytes
        .chunks_exact(width)
        .map(|b| match datatype {
            DataType::U8 => f64::from(b[0]),
            DataType::I8 => f64::from(b[0] as i8),
            DataType::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            DataType::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            DataType::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DataType::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DataType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DataType::U64 => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
            DataType::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
            DataType::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            DataType::Bool | DataType::Bytes | DataType::F16 | DataType::Bf16 => f64::NAN,
        })
        .collect();
    Ok(ColumnValues::Numeric(values))
}

/// Which outputs to return and whether each travels as binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    pub outputs: Vec<(String, bool)>,
}

/// Output names a model produces.
pub fn output_names(model: &LoadedModel) -> &'static [&'static str] {
    if model.predictor.schema().task.is_classification() { &["label", "probabilities"] } else { &["prediction"] }
}

fn flag(parameters: &Option<Map<String, Value>>, key: &str) -> bool {
    parameters.as_ref().and_then(|p| p.get(key)).and_then(Value::as_bool).unwrap_or(false)
}

pub fn plan_outputs(model: &LoadedModel, request: &InferRequest<'_>) -> Result<OutputPlan, ApiError> {
    let all_binary = flag(&request.parameters, "binary_data_output");
    let known = output_names(model);
    let outputs = match &request.outputs {
        None => known.iter().map(|n| (n.to_string(), all_binary)).collect(),
        Some(requested) => requested
            .iter()
            .map(|o| {
                if known.contains(&o.name.as_str()) {
                    Ok((o.name.clone(), all_binary || flag(&o.parameters, "binary_data")))
                } else {
                    Err(ApiError::bad_request(format!(
                        "unexpected inference output '{}' for model '{}'; the model's outputs are {known:?}",
                        o.name, model.name
                    )))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(OutputPlan { outputs })
}

/// An encoded response: the JSON header and, when any output is binary, the tensor bytes
/// that follow it (the caller sets `Inference-Header-Content-Length` to `json.len()`).
#[derive(Debug)]
pub struct EncodedResponse {
    pub json: Vec<u8>,
    pub binary: Vec<u8>,
}

#[derive(serde::Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData<'a>>,
}

/// Tensor data serialized without a detour through `Value`, so f32 values are written in their
/// shortest f32 form (and read back to the same bits).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum OutputData<'a> {
    Floats(&'a [f32]),
    Texts(Vec<&'a str>),
}

#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

pub fn encode_response(
    model: &LoadedModel,
    id: Option<&str>,
    plan: &OutputPlan,
    predictions: &Predictions,
) -> EncodedResponse {
    let n = predictions.n_rows();
    let mut outputs = Vec::with_capacity(plan.outputs.len());
    let mut binary = Vec::new();
    for (name, as_binary) in &plan.outputs {
        let (datatype, shape, data) = match (name.as_str(), predictions) {
            ("prediction", Predictions::Regression { values }) => ("FP32", vec![n], OutputData::Floats(values)),
            ("probabilities", Predictions::Classification { probabilities, n_classes, .. }) => {
                ("FP32", vec![n, *n_classes], OutputData::Floats(probabilities))
            }
            ("label", Predictions::Classification { labels, .. }) => {
                let classes = model.predictor.labels();
                let names = labels.iter().map(|&i| classes.get(i).map_or("", String::as_str)).collect();
                ("BYTES", vec![n], OutputData::Texts(names))
            }
            _ => continue,
        };
        let (parameters, data) = if *as_binary {
            let start = binary.len();
            match &data {
                OutputData::Floats(values) => values.iter().for_each(|v| binary.extend_from_slice(&v.to_le_bytes())),
                OutputData::Texts(texts) => texts.iter().for_each(|t| {
                    binary.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    binary.extend_from_slice(t.as_bytes());
                }),
            }
            (Some(serde_json::json!({ "binary_data_size": binary.len() - start })), None)
        } else {
            (None, Some(data))
        };
        outputs.push(OutputTensor { name, datatype, shape, parameters, data });
    }
    let response = InferResponse { model_name: &model.name, model_version: model.version.to_string(), id, outputs };
    EncodedResponse { json: serde_json::to_vec(&response).unwrap_or_default(), binary }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parsers on `body`: the plain one must accept it and read it as the general one does,
    /// bit for bit.
    fn agree(body: &str) {
        let (fast, general) = crate::json::tests::read_alike(body, plain::parse, parse_with_serde);
        for (a, b) in fast.inputs.iter().zip(&general.inputs) {
            let (a, b) = (a.data.as_ref().map_or(&[][..], |d| &d.0), b.data.as_ref().map_or(&[][..], |d| &d.0));
            crate::json::tests::assert_same_bits(body, a, b);
        }
    }

    #[test]
    fn the_plain_parser_agrees_with_serde_json_on_plain_bodies() {
        agree(r#"{"inputs": []}"#);
        agree(r#"{"id": "r-1", "inputs": [{"name": "a", "datatype": "FP64", "shape": [0], "data": []}]}"#);
        agree(
            " {\n\t\"inputs\" : [ { \"shape\" : [ 2 , 1 ] , \"data\" : [ 0.23 , null ] , \"name\" : \"carat\" ,\r\n \
             \"datatype\":\"FP32\"}, {\"name\": \"cut\", \"datatype\": \"BYTES\", \"shape\": [-1], \
             \"data\": [\"Très bien\", \"\"]} ] , \"id\": \"\" } \n",
        );
        agree(
            r#"{"inputs": [{"name": "t", "datatype": "INT64", "shape": [4], "data": [-0, -0.0, 0, 999999999999999]}]}"#,
        );
        agree(r#"{"inputs": [{"name": "no data", "datatype": "FP64", "shape": [1]}]}"#);
        let decimals = crate::json::tests::plain_decimals(2000);
        agree(&format!(
            r#"{{"inputs": [{{"name": "v", "datatype": "FP64", "shape": [{}], "data": [{}]}}]}}"#,
            decimals.len(),
            decimals.join(", ")
        ));
    }

    #[test]
    fn the_plain_parser_leaves_everything_else_to_serde_json() {
        let tensor = |extra: &str| {
            format!(r#"{{"inputs": [{{"name": "a", "datatype": "FP64", "shape": [1], "data": [1]{extra}}}]}}"#)
        };
        let mut bodies: Vec<String> = [
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [[1]]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "BOOL", "shape": [1], "data": [true]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [1e3]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1.0], "data": [1]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "shape": [-0], "data": [1]}]}"#,
            r#"{"inputs": [{"name": "a\"b", "datatype": "FP64", "shape": [1], "data": [1]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": null}]}"#,
            r#"{"inputs": [{}]}"#,
            r#"{"inputs": []} trailing"#,
            r#"{"inputs": [], "inputs": []}"#,
            r#"{"id": "x"}"#,
            r#"{}"#,
        ]
        .map(String::from)
        .to_vec();
        bodies.push(tensor(r#", "parameters": {"binary_data_size": 8}"#));
        bodies.push(tensor(r#", "name": "b""#));
        bodies.push(format!("{}, \"outputs\": []}}", tensor("").trim_end_matches('}')));
        for body in &bodies {
            assert!(plain::parse(body.as_bytes()).is_none(), "{body}");
        }
        // What the general parser then does: reads what is valid, rejects what is not.
        let request = parse_request(bodies[0].as_bytes()).expect("nested data is valid");
        assert_eq!(request.inputs[0].data, Some(Elements(vec![Scalar::Number(1.0)])));
        let request = parse_request(bodies[bodies.len() - 3].as_bytes()).expect("parameters are valid");
        assert!(request.inputs[0].parameters.is_some());
        for invalid in [&bodies[4], &bodies[6], &bodies[10]] {
            let error = parse_request(invalid.as_bytes()).expect_err("invalid");
            assert!(error.message.contains("failed to parse the request JSON"), "{invalid}: {}", error.message);
        }
    }
}
