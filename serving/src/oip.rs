//! Open Inference Protocol v2 inference: decoding a request (JSON, with or without the binary
//! tensor extension) into the model's raw columns, and encoding the predictions as the
//! response. Pure functions over bytes; the HTTP handlers live in `http.rs`.

use serde::Deserialize;
use serde_json::{Map, Value};
use shared_inference::output::{self, OutputType};
use shared_inference::{ColumnBatch, ColumnKind, ColumnValues, Predictions};

use crate::error::{ProtocolError, ServeError};
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
pub fn split_body<'a>(body: &'a [u8], header_length: Option<&str>) -> Result<(&'a [u8], &'a [u8]), ProtocolError> {
    match header_length {
        None => Ok((body, &[])),
        Some(text) => {
            let declared: usize =
                text.trim().parse().map_err(|_| ProtocolError::HeaderLengthNotACount { got: text.to_string() })?;
            if declared > body.len() {
                return Err(ProtocolError::HeaderLengthPastBody { declared, body: body.len() });
            }
            Ok(body.split_at(declared))
        }
    }
}

/// Parses the JSON part of a request with serde_json, straight into borrowed values.
pub fn parse_request(json: &[u8]) -> Result<InferRequest<'_>, ProtocolError> {
    Ok(serde_json::from_slice(json)?)
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
    const ALL: [Self; 14] = [
        Self::Bool,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F16,
        Self::Bf16,
        Self::F32,
        Self::F64,
        Self::Bytes,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == text)
    }

    fn is_number(self) -> bool {
        !matches!(self, Self::Bool | Self::Bytes | Self::F16 | Self::Bf16)
    }

    /// The inclusive range an integer datatype can hold, `None` for floating point.
    fn integer_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::U8 => (0, u8::MAX.into()),
            Self::U16 => (0, u16::MAX.into()),
            Self::U32 => (0, u32::MAX.into()),
            Self::U64 => (0, u64::MAX.into()),
            Self::I8 => (i8::MIN.into(), i8::MAX.into()),
            Self::I16 => (i16::MIN.into(), i16::MAX.into()),
            Self::I32 => (i32::MIN.into(), i32::MAX.into()),
            Self::I64 => (i64::MIN.into(), i64::MAX.into()),
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

    fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F16 => "FP16",
            Self::Bf16 => "BF16",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::Bytes => "BYTES",
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
) -> Result<ColumnBatch<'a>, ServeError> {
    let schema = model.predictor.schema();
    let name = &model.name;
    let mut columns: Vec<Option<ColumnValues<'a>>> = vec![None; schema.features.len()];
    let mut rows: Option<(usize, &str)> = None;
    let mut cursor = 0usize;
    for input in &request.inputs {
        let Some(index) = schema.position(&input.name) else {
            return Err(ProtocolError::UnexpectedInput {
                model: name.clone(),
                input: input.name.clone(),
                expected: schema.feature_names(),
            }
            .into());
        };
        if columns[index].is_some() {
            return Err(ProtocolError::DuplicateInput { model: name.clone(), input: input.name.clone() }.into());
        }
        let kind = schema.features[index].kind;
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| ProtocolError::UnknownDatatype {
            input: input.name.clone(),
            datatype: input.datatype.clone(),
        })?;
        let (kind_ok, expected) = match kind {
            ColumnKind::Numeric => (datatype.is_number(), NUMERIC_TYPES),
            ColumnKind::Categorical => (datatype == DataType::Bytes, "BYTES"),
        };
        if !kind_ok {
            return Err(ProtocolError::WrongDatatype {
                model: name.clone(),
                input: input.name.clone(),
                datatype: input.datatype.clone(),
                expected,
            }
            .into());
        }
        let n = rows_of_shape(&input.shape).ok_or_else(|| ProtocolError::WrongShape {
            model: name.clone(),
            input: input.name.clone(),
            shape: input.shape.clone(),
        })?;
        match rows {
            Some((first_rows, first)) if n != first_rows => {
                return Err(ProtocolError::RowCountMismatch {
                    model: name.clone(),
                    input: input.name.clone(),
                    rows: n,
                    first: first.to_string(),
                    first_rows,
                }
                .into());
            }
            Some(_) => {}
            None => rows = Some((n, &input.name)),
        }
        let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let values = match (binary_size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(ProtocolError::DataAndBinary { input: input.name.clone() }.into());
            }
            (Some(size), None) => {
                let declared = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| ProtocolError::BinarySizeNotACount { input: input.name.clone() })?;
                let end = cursor.checked_add(declared).filter(|&e| e <= binary.len()).ok_or_else(|| {
                    ProtocolError::BinaryPastEnd {
                        input: input.name.clone(),
                        declared,
                        remaining: binary.len() - cursor.min(binary.len()),
                    }
                })?;
                let bytes = &binary[cursor..end];
                cursor = end;
                decode_binary(&input.name, datatype, bytes, n)?
            }
            (None, Some(data)) => decode_json(name, input, datatype, data, n)?,
            (None, None) => return Err(ProtocolError::NoData { input: input.name.clone() }.into()),
        };
        columns[index] = Some(values);
    }
    if cursor != binary.len() {
        return Err(ProtocolError::BinaryUnclaimed { carried: binary.len(), declared: cursor }.into());
    }
    let missing: Vec<String> =
        schema.features.iter().zip(&columns).filter(|(_, c)| c.is_none()).map(|(s, _)| s.name.clone()).collect();
    if !missing.is_empty() {
        return Err(ProtocolError::MissingInputs {
            model: name.clone(),
            expected: schema.features.len(),
            got: request.inputs.len(),
            missing,
        }
        .into());
    }
    let columns = columns.into_iter().flatten().collect();
    ColumnBatch::new(schema, columns).map_err(|e| ServeError::input(name, e))
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
) -> Result<ColumnValues<'a>, ProtocolError> {
    let input = || tensor.name.clone();
    let flat = &data.0;
    if flat.len() != n {
        return Err(ProtocolError::ElementCount {
            model: model.to_string(),
            input: input(),
            shape: tensor.shape.clone(),
            rows: n,
            got: flat.len(),
        });
    }
    if datatype == DataType::Bytes {
        let values = flat
            .iter()
            .enumerate()
            .map(|(element, v)| match v {
                Scalar::Text(s) => Ok(Some(s.as_ref())),
                Scalar::Null => Ok(None),
                other => Err(ProtocolError::NotAString { input: input(), element, got: other.describe() }),
            })
            .collect::<Result<_, _>>()?;
        return Ok(ColumnValues::Categorical(values));
    }
    let values = flat
        .iter()
        .enumerate()
        .map(|(element, v)| match v {
            &Scalar::Number(value) => {
                if let Some((low, high)) = datatype.integer_range() {
                    let is_i64 = datatype == DataType::I64;
                    let datatype = tensor.datatype.clone();
                    if value.fract() != 0.0 {
                        return Err(ProtocolError::NotAnInteger { input: input(), element, value, datatype });
                    }
                    // Integers written as integers arrive as `Scalar::Integer`, exactly; this is a
                    // number written with a fraction or exponent, or an integer too long for
                    // 64 bits. high + 1 is a power of two, exact in f64 (`value > high as f64`
                    // would let 2^63 through for INT64, as i64::MAX rounds up to it); likewise
                    // -2^63 - 1 rounds to -2^63, so for INT64 that end is exclusive here too.
                    let below = if is_i64 { value <= low as f64 } else { value < low as f64 };
                    if below || value >= (high + 1) as f64 {
                        let value = value.to_string();
                        return Err(ProtocolError::IntegerOutOfRange { input: input(), element, value, datatype });
                    }
                }
                // An FP32 tensor carries f32 values, whichever way it travels.
                Ok(if datatype == DataType::F32 { f64::from(value as f32) } else { value })
            }
            &Scalar::Integer(value) => {
                if let Some((low, high)) = datatype.integer_range()
                    && (value < low || value > high)
                {
                    let (value, datatype) = (value.to_string(), tensor.datatype.clone());
                    return Err(ProtocolError::IntegerOutOfRange { input: input(), element, value, datatype });
                }
                let value = value as f64;
                Ok(if datatype == DataType::F32 { f64::from(value as f32) } else { value })
            }
            Scalar::Null => Ok(f64::NAN),
            other => Err(ProtocolError::NotANumber { input: input(), element, got: other.describe() }),
        })
        .collect::<Result<_, _>>()?;
    Ok(ColumnValues::Numeric(values))
}

fn decode_binary<'a>(
    input: &str,
    datatype: DataType,
    bytes: &'a [u8],
    n: usize,
) -> Result<ColumnValues<'a>, ProtocolError> {
    let input = || input.to_string();
    if datatype == DataType::Bytes {
        // Each element takes at least its 4-byte length prefix, which bounds a believable count.
        let mut values = Vec::with_capacity(n.min(bytes.len() / 4));
        let mut rest = bytes;
        for element in 0..n {
            let truncated = || ProtocolError::BytesTruncated { input: input(), element };
            let (length, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
            let length = u32::from_le_bytes(*length) as usize;
            let (text, tail) = tail.split_at_checked(length).ok_or_else(truncated)?;
            let text = std::str::from_utf8(text).map_err(|_| ProtocolError::NotUtf8 { input: input(), element })?;
            values.push(Some(text));
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(ProtocolError::BytesLeftOver { input: input(), left: rest.len(), elements: n });
        }
        return Ok(ColumnValues::Categorical(values));
    }
    if matches!(datatype, DataType::F16 | DataType::Bf16) {
        return Err(ProtocolError::HalfPrecision { input: input(), datatype: datatype.name() });
    }
    let width = datatype.width();
    if n.checked_mul(width) != Some(bytes.len()) {
        return Err(ProtocolError::BinaryLength {
            input: input(),
            elements: n,
            datatype: datatype.name(),
            need: n.saturating_mul(width),
            got: bytes.len(),
        });
    }
    let values = match datatype {
        DataType::U8 => bytes.iter().map(|&b| f64::from(b)).collect(),
        DataType::I8 => bytes.iter().map(|&b| f64::from(b as i8)).collect(),
        DataType::U16 => little_endian(bytes, |b: [u8; 2]| f64::from(u16::from_le_bytes(b))),
        DataType::I16 => little_endian(bytes, |b: [u8; 2]| f64::from(i16::from_le_bytes(b))),
        DataType::U32 => little_endian(bytes, |b: [u8; 4]| f64::from(u32::from_le_bytes(b))),
        DataType::I32 => little_endian(bytes, |b: [u8; 4]| f64::from(i32::from_le_bytes(b))),
        DataType::F32 => little_endian(bytes, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
        DataType::U64 => little_endian(bytes, |b: [u8; 8]| u64::from_le_bytes(b) as f64),
        DataType::I64 => little_endian(bytes, |b: [u8; 8]| i64::from_le_bytes(b) as f64),
        DataType::F64 => little_endian(bytes, f64::from_le_bytes),
        // Refused above: no number travels as BOOL, BYTES or half precision.
        DataType::Bool | DataType::Bytes | DataType::F16 | DataType::Bf16 => {
            unreachable!("{} is not a numeric datatype the model takes", datatype.name())
        }
    };
    Ok(ColumnValues::Numeric(values))
}

/// Each `W`-byte element of `bytes` (a multiple of `W` long), read by `read`.
fn little_endian<const W: usize>(bytes: &[u8], read: impl Fn([u8; W]) -> f64) -> Vec<f64> {
    bytes.chunks_exact(W).map(|chunk| read(chunk.try_into().expect("chunks of W bytes"))).collect()
}

/// Which outputs to return and whether each travels as binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    pub outputs: Vec<(String, bool)>,
}

fn flag(parameters: &Option<Map<String, Value>>, key: &str) -> bool {
    parameters.as_ref().and_then(|p| p.get(key)).and_then(Value::as_bool).unwrap_or(false)
}

pub fn plan_outputs(model: &LoadedModel, request: &InferRequest<'_>) -> Result<OutputPlan, ProtocolError> {
    let all_binary = flag(&request.parameters, "binary_data_output");
    let known = output::output_names(model.predictor.schema().task);
    let outputs = match &request.outputs {
        None => known.iter().map(|n| (n.to_string(), all_binary)).collect(),
        Some(requested) => requested
            .iter()
            .enumerate()
            .map(|(index, o)| {
                // Each output at most once: a response can never be larger than one copy of
                // every output for the request's rows.
                if requested[..index].iter().any(|earlier| earlier.name == o.name) {
                    Err(ProtocolError::DuplicateOutput { model: model.name.clone(), output: o.name.clone() })
                } else if known.contains(&o.name.as_str()) {
                    Ok((o.name.clone(), all_binary || flag(&o.parameters, "binary_data")))
                } else {
                    Err(ProtocolError::UnknownOutput {
                        model: model.name.clone(),
                        output: o.name.clone(),
                        known: known.clone(),
                    })
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

/// One output tensor of a response, before it is written in a protocol's form.
#[derive(serde::Serialize)]
pub(crate) struct OutputTensor<'a> {
    pub(crate) name: &'a str,
    pub(crate) datatype: &'static str,
    pub(crate) shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<OutputData<'a>>,
}

/// Tensor data serialized without a detour through `Value`, so f32 values are written in their
/// shortest f32 form (and read back to the same bits).
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum OutputData<'a> {
    Floats(&'a [f32]),
    Texts(Vec<&'a str>),
}

impl OutputData<'_> {
    /// Appends the values as raw tensor bytes: little-endian f32, or each text with its 4-byte
    /// little-endian length before it (the binary extension's and gRPC's raw contents).
    pub(crate) fn write_raw(&self, out: &mut Vec<u8>) {
        match self {
            OutputData::Floats(values) => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            OutputData::Texts(texts) => texts.iter().for_each(|t| {
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }),
        }
    }
}

#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

/// The planned outputs of `predictions`, in the plan's order, each with its data (parameters
/// unset): what every protocol's response holds.
pub(crate) fn output_tensors<'a>(
    model: &'a LoadedModel,
    plan: &'a OutputPlan,
    predictions: &'a Predictions,
) -> Result<Vec<OutputTensor<'a>>, ServeError> {
    let n = predictions.n_rows();
    let specs = output::outputs(model.predictor.schema().task);
    let n_classes = model.predictor.labels().len();
    plan.outputs
        .iter()
        .map(|(name, _)| {
            // `plan_outputs` admitted only this task's output names.
            let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| ServeError::Internal {
                detail: format!("output '{name}' was planned but model '{}' has no such output", model.name),
            })?;
            let data = match (spec.name, predictions) {
                (output::PREDICTION, Predictions::Regression { values }) => OutputData::Floats(values),
                (output::PROBABILITIES, Predictions::Classification { probabilities, .. }) => {
                    OutputData::Floats(probabilities)
                }
                (output::LABEL, Predictions::Classification { labels, .. }) => {
                    OutputData::Texts(model.label_names(labels)?)
                }
                _ => {
                    return Err(ServeError::Internal {
                        detail: format!("output '{name}' does not fit the predictions of model '{}'", model.name),
                    });
                }
            };
            debug_assert_eq!(matches!(data, OutputData::Texts(_)), spec.datatype == OutputType::Text);
            let shape: Vec<usize> = spec.shape(n as i64, n_classes).into_iter().map(|d| d as usize).collect();
            Ok(OutputTensor { name, datatype: spec.datatype.oip_datatype(), shape, parameters: None, data: Some(data) })
        })
        .collect()
}

pub fn encode_response(
    model: &LoadedModel,
    id: Option<&str>,
    plan: &OutputPlan,
    predictions: &Predictions,
) -> Result<EncodedResponse, ServeError> {
    let mut binary = Vec::new();
    let mut outputs = output_tensors(model, plan, predictions)?;
    for (output, (_, as_binary)) in outputs.iter_mut().zip(&plan.outputs) {
        if *as_binary && let Some(data) = output.data.take() {
            let start = binary.len();
            data.write_raw(&mut binary);
            output.parameters = Some(serde_json::json!({ "binary_data_size": binary.len() - start }));
        }
    }
    let response = InferResponse { model_name: &model.name, model_version: model.version.to_string(), id, outputs };
    let json = serde_json::to_vec(&response)
        .map_err(|e| ServeError::Internal { detail: format!("encoding a v2 response: {e}") })?;
    Ok(EncodedResponse { json, binary })
}
