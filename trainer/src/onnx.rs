//! ONNX export of a whole artifact: raw columns in, the fitted preprocessing, the network and the
//! postprocessing inside the graph, predictions out, so any ONNX runtime serves what `serving`
//! serves without re-implementing anything.
//!
//! The graph, for each raw column in the manifest's order:
//! - numeric (input `float [N, 1]`, NaN for missing): `Imputer` (training median), then
//!   `(x - mean) / std` in double precision, as the shared transform computes it;
//! - categorical (input `string [N, 1]`, empty string for missing): `LabelEncoder` to the
//!   category's index (missing -> the most frequent category), then `OneHotEncoder`. An unseen
//!   category gives a zero vector under `unknown_category = "zero_vector"`; under `"error"` the
//!   runtime fails the call, as serving rejects the row.
//!
//! Then `Concat`, the MLP (`MatMul`, `Add`, activation), and postprocessing in double precision:
//! regression undoes the target transform into `prediction float [N]`; classification gives
//! `probabilities float [N, n_classes]` (softmax, classes in the manifest's order) and
//! `label string [N]` (argmax, first on ties).
//!
//! Versions: IR 8, default opset 17, `ai.onnx.ml` opset 3 (ONNX 1.12 and later; onnxruntime
//! 1.12 and later).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use shared_inference::artifact::ONNX_FILE;
use shared_inference::input::is_missing_text;
use shared_inference::output::{self, OutputType};
use shared_inference::{
    ActivationKind, Artifact, CpuBackend, FittedColumn, Manifest, TargetTransform, Task, UnknownCategoryPolicy,
};

pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;
pub const ML_OPSET: i64 = 3;
const ML: &str = "ai.onnx.ml";

/// Output names of the graph: the ones every front end uses.
pub use shared_inference::output::{LABEL, PREDICTION, PROBABILITIES};

/// How finely a float32 input must resolve a numeric column, in units of the column's training
/// standard deviation, around its training values (mean ± 4 std, and the median).
const MAX_INPUT_STEP_IN_STD: f64 = 1e-3;

/// Builds `model.onnx` for an artifact, or explains why the artifact cannot be exported
/// faithfully.
pub fn export(artifact: &Artifact) -> anyhow::Result<Vec<u8>> {
    let manifest = &artifact.manifest;
    check_representable(manifest)?;
    let model = artifact.model::<CpuBackend>(&Default::default())?;
    // The same weights the serving kernel reads: `[inputs, outputs]` row-major (`y = x W + b`).
    let layers = model.kernel_layers()?;

    let mut g = GraphBuilder::default();
    let mut inputs = Vec::new();
    let mut pieces = Vec::new();
    for column in &manifest.preprocessing.columns {
        match column {
            FittedColumn::Numeric { name, median, mean, std, clip } => {
                inputs.push(value_info(name, DataType::FLOAT, &[Dim::Rows, Dim::Fixed(1)]));
                let imputed = g.node(
                    "Imputer",
                    ML,
                    &[name],
                    vec![floats("imputed_value_floats", &[*median as f32]), float("replaced_value_float", f32::NAN)],
                );
                let wide = g.node("Cast", "", &[&imputed], vec![int("to", DataType::DOUBLE as i64)]);
                let mean = g.constant_f64(&[1], &[*mean]);
                let std = g.constant_f64(&[1], &[*std]);
                let centred = g.node("Sub", "", &[&wide, &mean], vec![]);
                let mut scaled = g.node("Div", "", &[&centred, &std], vec![]);
                if let Some(clip) = clip {
                    scaled = smooth_clip(&mut g, &scaled, *clip);
                }
                pieces.push(g.node("Cast", "", &[&scaled], vec![int("to", DataType::FLOAT as i64)]));
            }
            FittedColumn::Categorical { name, categories, most_frequent, unknown } => {
                inputs.push(value_info(name, DataType::STRING, &[Dim::Rows, Dim::Fixed(1)]));
                let k = categories.len() as i64;
                let most_frequent_index =
                    categories.iter().position(|c| c == most_frequent).context("checked: most frequent is known")?;
                // The spellings of a missing category (`is_missing_text`) map to the most frequent.
                let mut keys: Vec<Vec<u8>> = categories.iter().map(|c| c.as_bytes().to_vec()).collect();
                keys.extend([Vec::new(), b"NA".to_vec()]);
                let mut values: Vec<i64> = (0..k).collect();
                values.extend([most_frequent_index as i64; 2]);
                let index = g.node(
                    "LabelEncoder",
                    ML,
                    &[name],
                    vec![strings("keys_strings", keys), ints("values_int64s", &values), int("default_int64", -1)],
                );
                let axes = g.constant_i64(&[1], &[1]);
                let flat = g.node("Squeeze", "", &[&index, &axes], vec![]);
                let zeros = i64::from(*unknown == UnknownCategoryPolicy::ZeroVector);
                let cats: Vec<i64> = (0..k).collect();
                pieces.push(g.node(
                    "OneHotEncoder",
                    ML,
                    &[&flat],
                    vec![ints("cats_int64s", &cats), int("zeros", zeros)],
                ));
            }
        }
    }
    let piece_refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let mut x =
        if piece_refs.len() == 1 { pieces[0].clone() } else { g.node("Concat", "", &piece_refs, vec![int("axis", 1)]) };

    let last = layers.len() - 1;
    for (i, layer) in layers.iter().enumerate() {
        let weight = g.constant_f32(&[layer.inputs as i64, layer.outputs as i64], &layer.weights);
        x = g.node("MatMul", "", &[&x, &weight], vec![]);
        let bias = g.constant_f32(&[layer.outputs as i64], &layer.bias);
        x = g.node("Add", "", &[&x, &bias], vec![]);
        if i < last {
            x = activation(&mut g, model.activation, &x);
        }
    }

    let n_outputs = manifest.network.n_outputs as i64;
    match manifest.schema.task {
        Task::Regression => {
            let wide = g.node("Cast", "", &[&x], vec![int("to", DataType::DOUBLE as i64)]);
            let original = match manifest.target_transform {
                TargetTransform::Standardize { mean, std } => affine(&mut g, &wide, std, mean),
                TargetTransform::LogStandardize { mean, std } => {
                    let log = affine(&mut g, &wide, std, mean);
                    g.node("Exp", "", &[&log], vec![])
                }
                TargetTransform::Log1pStandardize { mean, std } => {
                    let log = affine(&mut g, &wide, std, mean);
                    let grown = g.node("Exp", "", &[&log], vec![]);
                    let one = g.constant_f64(&[1], &[1.0]);
                    let shifted = g.node("Sub", "", &[&grown, &one], vec![]);
                    let zero = g.constant_f64(&[1], &[0.0]);
                    g.node("Max", "", &[&shifted, &zero], vec![])
                }
                TargetTransform::None => wide,
            };
            let original = match manifest.prediction_range {
                Some([low, high]) => {
                    let (low, high) = (g.constant_f64(&[], &[low]), g.constant_f64(&[], &[high]));
                    g.node("Clip", "", &[&original, &low, &high], vec![])
                }
                None => original,
            };
            let narrow = g.node("Cast", "", &[&original], vec![int("to", DataType::FLOAT as i64)]);
            let shape = g.constant_i64(&[1], &[-1]);
            g.node_named("Reshape", "", &[&narrow, &shape], vec![], PREDICTION);
        }
        Task::BinaryClassification | Task::MulticlassClassification => {
            let wide = g.node("Cast", "", &[&x], vec![int("to", DataType::DOUBLE as i64)]);
            let softmax = g.node("Softmax", "", &[&wide], vec![int("axis", 1)]);
            g.node_named("Cast", "", &[&softmax], vec![int("to", DataType::FLOAT as i64)], PROBABILITIES);
            let index = g.node("ArgMax", "", &[&x], vec![int("axis", 1), int("keepdims", 0)]);
            let keys: Vec<i64> = (0..n_outputs).collect();
            let labels: Vec<Vec<u8>> = manifest.labels.iter().map(|l| l.as_bytes().to_vec()).collect();
            g.node_named(
                "LabelEncoder",
                ML,
                &[&index],
                vec![ints("keys_int64s", &keys), strings("values_strings", labels), string("default_string", "")],
                LABEL,
            );
        }
    }
    // The graph answers what every front end answers: the same names, element types and shapes.
    let outputs: Vec<ValueInfoProto> = output::outputs(manifest.schema.task)
        .iter()
        .map(|spec| {
            let datatype = match spec.datatype {
                OutputType::Float32 => DataType::FLOAT,
                OutputType::Text => DataType::STRING,
            };
            let dims = if spec.per_class { vec![Dim::Rows, Dim::Fixed(n_outputs)] } else { vec![Dim::Rows] };
            value_info(spec.name, datatype, &dims)
        })
        .collect();

    let graph = GraphProto {
        name: manifest.name.clone(),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: outputs,
        doc_string: format!("{}: raw columns in, predictions out", manifest.name),
        ..Default::default()
    };
    let classes = serde_json::to_string(&manifest.labels)?;
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![opset("", OPSET), opset(ML, ML_OPSET)],
        producer_name: "tabular-ml trainer".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        doc_string: format!("{} ({:?}), exported from its artifact", manifest.name, manifest.schema.task),
        graph: Some(graph).into(),
        metadata_props: vec![
            entry("name", &manifest.name),
            entry("task", manifest.schema.task.as_str()),
            entry("classes", &classes),
            entry("weights_sha256", &manifest.weights.sha256),
        ],
        ..Default::default()
    };
    Ok(model.write_to_bytes()?)
}

/// Writes `model.onnx` into an existing artifact's version directory (temporary file, then
/// rename) after checking the artifact, and returns the file's path.
pub fn export_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let artifact = Artifact::read_dir(dir)?;
    let bytes = export(&artifact).with_context(|| format!("cannot export {} to ONNX", dir.display()))?;
    let path = dir.join(ONNX_FILE);
    let temporary = dir.join(format!(".{ONNX_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&temporary, &bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(path)
}

/// Refuses what the graph above would not reproduce faithfully.
pub fn check_representable(manifest: &Manifest) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for column in &manifest.preprocessing.columns {
        let name = column.name();
        if name.is_empty() {
            bail!("a column has an empty name, which ONNX cannot use as an input name");
        }
        if [PREDICTION, PROBABILITIES, LABEL].contains(&name) || name.starts_with('/') {
            bail!(
                "column '{name}' would clash with the graph's own names (outputs '{PREDICTION}', \
                 '{PROBABILITIES}', '{LABEL}' and internal names starting with '/'); rename the column and retrain"
            );
        }
        if !seen.insert(name) {
            bail!("column '{name}' appears twice");
        }
        match column {
            FittedColumn::Numeric { median, mean, std, .. } => {
                if !(median.is_finite() && mean.is_finite() && std.is_finite() && *std > 0.0) {
                    bail!(
                        "numeric column '{name}' has non-finite fitted state (median {median}, mean {mean}, std {std})"
                    );
                }
                let reach = (mean.abs() + 4.0 * std).max(median.abs());
                let step = float32_step(reach);
                if step / std > MAX_INPUT_STEP_IN_STD {
                    bail!(
                        "numeric column '{name}' cannot be passed faithfully as a float32 input: near its values \
                         (up to {reach:e}) float32 steps by {step:e}, which is {:.1e} of its standard deviation \
                         {std:e} (at most {MAX_INPUT_STEP_IN_STD:e} is allowed); centre or rescale the column \
                         before training",
                        step / std
                    );
                }
            }
            FittedColumn::Categorical { categories, most_frequent, .. } => {
                if categories.is_empty() {
                    bail!("categorical column '{name}' has no categories");
                }
                if let Some(category) = categories.iter().find(|c| is_missing_text(c)) {
                    bail!(
                        "categorical column '{name}' has the category {category:?}, but every path reads that text \
                         as a missing value"
                    );
                }
                if !categories.contains(most_frequent) {
                    bail!("categorical column '{name}': its most frequent value '{most_frequent}' is not a category");
                }
            }
        }
    }
    let n_outputs = manifest.network.n_outputs;
    match manifest.schema.task {
        Task::Regression if n_outputs != 1 => bail!("a regression network must have one output, not {n_outputs}"),
        Task::BinaryClassification | Task::MulticlassClassification if manifest.labels.len() != n_outputs => {
            bail!("the network has {n_outputs} outputs but the manifest names {} classes", manifest.labels.len())
        }
        _ => Ok(()),
    }
}

/// The distance between adjacent float32 values at magnitude `x`.
fn float32_step(x: f64) -> f64 {
    let x = (x as f32).abs();
    if !x.is_finite() {
        return f64::INFINITY;
    }
    f64::from(f32::from_bits(x.to_bits() + 1) - x)
}

fn activation(g: &mut GraphBuilder, kind: ActivationKind, x: &str) -> String {
    match kind {
        ActivationKind::Relu => g.node("Relu", "", &[x], vec![]),
        ActivationKind::Tanh => g.node("Tanh", "", &[x], vec![]),
        ActivationKind::Silu => {
            let sigmoid = g.node("Sigmoid", "", &[x], vec![]);
            g.node("Mul", "", &[x, &sigmoid], vec![])
        }
        ActivationKind::Gelu => {
            // x * (1 + erf(x / sqrt 2)) / 2, in the order burn computes it.
            let sqrt2 = g.constant_f32(&[], &[std::f32::consts::SQRT_2]);
            let one = g.constant_f32(&[], &[1.0]);
            let two = g.constant_f32(&[], &[2.0]);
            let scaled = g.node("Div", "", &[x, &sqrt2], vec![]);
            let erf = g.node("Erf", "", &[&scaled], vec![]);
            let shifted = g.node("Add", "", &[&erf, &one], vec![]);
            let product = g.node("Mul", "", &[x, &shifted], vec![]);
            g.node("Div", "", &[&product, &two], vec![])
        }
    }
}

/// `x * scale + offset` on a double tensor.
/// `shared_inference::kernel::smooth_clip` in the same f64 operations: `r = z / clip`, `r`
/// held within ±1e150, then `r / √(1 + r²) · clip`.
fn smooth_clip(g: &mut GraphBuilder, z: &str, clip: f64) -> String {
    let width = g.constant_f64(&[], &[clip]);
    let r = g.node("Div", "", &[z, &width], vec![]);
    let (low, high) = (g.constant_f64(&[], &[-1e150]), g.constant_f64(&[], &[1e150]));
    let r = g.node("Clip", "", &[&r, &low, &high], vec![]);
    let squared = g.node("Mul", "", &[&r, &r], vec![]);
    let one = g.constant_f64(&[], &[1.0]);
    let grown = g.node("Add", "", &[&squared, &one], vec![]);
    let root = g.node("Sqrt", "", &[&grown], vec![]);
    let unit = g.node("Div", "", &[&r, &root], vec![]);
    g.node("Mul", "", &[&unit, &width], vec![])
}

fn affine(g: &mut GraphBuilder, x: &str, scale: f64, offset: f64) -> String {
    let scale = g.constant_f64(&[1], &[scale]);
    let offset = g.constant_f64(&[1], &[offset]);
    let scaled = g.node("Mul", "", &[x, &scale], vec![]);
    g.node("Add", "", &[&scaled, &offset], vec![])
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("/{hint}_{}", self.counter)
    }

    fn node(&mut self, op: &str, domain: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node_named(op, domain, inputs, attributes, &output);
        output
    }

    fn node_named(&mut self, op: &str, domain: &str, inputs: &[&str], attribute: Vec<AttributeProto>, output: &str) {
        let name = format!("{output}/{op}");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name,
            op_type: op.to_string(),
            domain: domain.to_string(),
            attribute,
            ..Default::default()
        });
    }

    fn constant_f32(&mut self, dims: &[i64], values: &[f32]) -> String {
        self.constant(dims, DataType::FLOAT, |t| t.float_data = values.to_vec())
    }

    fn constant_f64(&mut self, dims: &[i64], values: &[f64]) -> String {
        self.constant(dims, DataType::DOUBLE, |t| t.double_data = values.to_vec())
    }

    fn constant_i64(&mut self, dims: &[i64], values: &[i64]) -> String {
        self.constant(dims, DataType::INT64, |t| t.int64_data = values.to_vec())
    }

    /// A fresh initializer of `data_type`; `fill` sets its values.
    fn constant(&mut self, dims: &[i64], data_type: DataType, fill: impl FnOnce(&mut TensorProto)) -> String {
        let name = self.fresh("const");
        let mut tensor =
            TensorProto { name: name.clone(), dims: dims.to_vec(), data_type: data_type as i32, ..Default::default() };
        fill(&mut tensor);
        self.initializers.push(tensor);
        name
    }
}

enum Dim {
    Rows,
    Fixed(i64),
}

fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Rows => dimension::Value::DimParam("N".to_string()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: elem_type as i32,
        shape: Some(TensorShapeProto { dim, ..Default::default() }).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: Some(TypeProto { value: Some(TypeValue::TensorType(tensor)), ..Default::default() }).into(),
        ..Default::default()
    }
}

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto { domain: domain.to_string(), version, ..Default::default() }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: key.to_string(), value: value.to_string(), ..Default::default() }
}

fn attribute(name: &str, type_: AttributeType) -> AttributeProto {
    AttributeProto { name: name.to_string(), type_: type_.into(), ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { i: value, ..attribute(name, AttributeType::INT) }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { ints: values.to_vec(), ..attribute(name, AttributeType::INTS) }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { f: value, ..attribute(name, AttributeType::FLOAT) }
}

fn floats(name: &str, values: &[f32]) -> AttributeProto {
    AttributeProto { floats: values.to_vec(), ..attribute(name, AttributeType::FLOATS) }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto { s: value.as_bytes().to_vec(), ..attribute(name, AttributeType::STRING) }
}

fn strings(name: &str, values: Vec<Vec<u8>>) -> AttributeProto {
    AttributeProto { strings: values, ..attribute(name, AttributeType::STRINGS) }
}
