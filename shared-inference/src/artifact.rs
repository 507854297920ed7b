//! The model artifact: `manifest.json` plus burn-recorded weights in one version directory
//! (`<repository>/<name>/<version>/`). This module defines the manifest and reads and checks an
//! artifact; writing one (atomically) is the trainer's job.

use std::collections::BTreeMap;
use std::path::Path;

use burn_core::module::Module;
use burn_core::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn_core::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ArtifactError;
use crate::model::{Mlp, MlpConfig};
use crate::postprocess::TargetTransform;
use crate::preprocess::{FittedColumn, Preprocessor};
use crate::schema::{ColumnKind, Schema, Task};

/// The manifest format this build writes. Version 2 added `manifest_sha256`; version 3 added
/// the smooth clipping of numeric columns and the `log1p_standardize` target transform, which a
/// reader of version 2 would ignore or refuse, so it must not be given them.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest manifest format this build still reads (every later one is a superset).
pub const OLDEST_FORMAT_VERSION: u32 = 2;

/// The widest layer a manifest may describe (inputs and outputs included). This and the two
/// limits below are far beyond any tabular model, and small enough that building the network
/// cannot exhaust memory or overflow a size computation.
pub const MAX_LAYER_WIDTH: usize = 1 << 16;
/// The most hidden layers a manifest may describe.
pub const MAX_HIDDEN_LAYERS: usize = 64;
/// The most parameters (weights and biases) a manifest may describe.
pub const MAX_PARAMETERS: usize = 1 << 28;
/// The manifest's file name in a version directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The weights' file name the trainer writes; a manifest names its own in [`WeightsInfo::file`].
pub const WEIGHTS_FILE: &str = "weights.mpk";
/// The file name of the ONNX export the trainer writes next to the manifest; this crate does not
/// read it.
pub const ONNX_FILE: &str = "model.onnx";

/// The recorder the weights are saved with: named MessagePack at full (f32) precision.
pub type WeightsRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Where the weights are and how to check them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsInfo {
    /// The weights' file name, in the manifest's directory; a plain name, without separators.
    pub file: String,
    /// The SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// The recorder that wrote them, in words; informational.
    pub recorder: String,
}

/// Everything known about how the model was made; informational, not needed to predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// The recipe as it was applied, overrides included.
    pub config: serde_json::Value,
    /// The training data's path, as the trainer was given it.
    pub data_file: String,
    /// The SHA-256 of the training data file, lower-case hex.
    pub data_sha256: String,
    /// Rows per split: `total`, `train`, `validation`, `test`.
    pub rows: BTreeMap<String, usize>,
    /// The training run's random seed.
    pub seed: u64,
    /// The device the model was trained on, in words.
    pub device: String,
    /// How many epochs ran (early stopping may end before the recipe's number).
    pub epochs_run: usize,
    /// The 1-based epoch whose weights were kept: the lowest validation loss.
    pub best_epoch: usize,
    /// The versions of the crates that made the model, by crate name.
    pub crate_versions: BTreeMap<String, String>,
    /// Seconds since the Unix epoch when training finished.
    pub created_unix_seconds: u64,
    /// Where the recipe's values came from, lowest layer first (the trainer's defaults for the
    /// data's task and size, a recipe file, the command line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipe_sources: Vec<String>,
    /// Decisions the trainer took from the data, in words: an automatic target transform, a
    /// dropped column, a capped vocabulary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The learning curves, one entry per epoch run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<EpochRecord>,
    /// Where the training run's wall-clock time went, in seconds: `load` (reading the file),
    /// `preprocess` (split, fit and transform), `train` (every epoch), `evaluate` (the test
    /// split and the ONNX export).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, f64>,
    /// The training process's peak resident memory, in bytes, where the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// One training epoch as the trainer measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// The mean loss over the training split's rows.
    pub train_loss: f64,
    /// The loss on the validation split after the epoch.
    pub validation_loss: f64,
    /// Accuracy for classification, RMSE in the target's units for regression.
    pub validation_metric: f64,
    /// The epoch's wall-clock time.
    pub seconds: f64,
}

/// `manifest.json`: what serving needs to rebuild and check the model, and what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format, [`OLDEST_FORMAT_VERSION`] to [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The model's name in the repository.
    pub name: String,
    /// The model's version in the repository.
    pub version: u64,
    /// The raw columns the model reads and what it predicts.
    pub schema: Schema,
    /// The fitted preprocessing, one column per schema feature.
    pub preprocessing: Preprocessor,
    /// The network's shape.
    pub network: MlpConfig,
    /// Class names in output order; empty for regression.
    pub labels: Vec<String>,
    /// How regression outputs map back to the target's units.
    pub target_transform: TargetTransform,
    /// Regression: predictions are held within `[low, high]`, the training targets' range in
    /// their own units, so that an input far beyond anything seen in training cannot come out as
    /// an absurd amount (under a log transform, growing exponentially with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_range: Option<[f64; 2]>,
    /// Test-split metrics computed by the trainer's evaluation.
    pub metrics: BTreeMap<String, f64>,
    /// How the model was made.
    pub provenance: Provenance,
    /// The weights file and its checksum.
    pub weights: WeightsInfo,
    /// SHA-256 of this manifest's content ([`Manifest::content_sha256`]), so that an edited
    /// number is caught at load time like a changed weight. [`Manifest::to_json`] fills it in.
    pub manifest_sha256: String,
}

impl Manifest {
    /// Parses a manifest and checks it: its version, its own checksum, that its parts agree with
    /// each other (schema, preprocessing, network and labels), and that its numbers can be served
    /// (finite, positive spreads, sizes within [`MAX_LAYER_WIDTH`], [`MAX_HIDDEN_LAYERS`] and
    /// [`MAX_PARAMETERS`]).
    ///
    /// # Errors
    /// [`ArtifactError::UnsupportedFormat`] for a `format_version` this build does not read,
    /// [`ArtifactError::ManifestChecksumMismatch`] for content that does not hash to
    /// `manifest_sha256`, and [`ArtifactError::Manifest`] for JSON that is not a manifest or parts
    /// that are not valid.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        // Read the version first so that a future format gets a precise error, not a parse error.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| ArtifactError::Manifest(format!("{e} (is this a manifest.json?)")))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version.format_version) {
            return Err(ArtifactError::UnsupportedFormat { found: version.format_version, supported: FORMAT_VERSION });
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| ArtifactError::Manifest(e.to_string()))?;
        let actual = manifest.content_sha256()?;
        if actual != manifest.manifest_sha256 {
            return Err(ArtifactError::ManifestChecksumMismatch { expected: manifest.manifest_sha256.clone(), actual });
        }
        manifest.validate()?;
        Ok(manifest)
    }

    /// SHA-256 of the manifest's content: its compact JSON with `manifest_sha256` left empty.
    /// Serialization is deterministic (fields in declaration order, maps sorted, floats in their
    /// shortest round-trip form), so the checksum survives reformatting but not an edited value.
    /// Lower-case hex.
    ///
    /// # Errors
    /// [`ArtifactError::Manifest`] if the manifest cannot be serialized.
    pub fn content_sha256(&self) -> Result<String, ArtifactError> {
        let mut content = self.clone();
        content.manifest_sha256.clear();
        let json = serde_json::to_vec(&content).map_err(|e| ArtifactError::Manifest(e.to_string()))?;
        Ok(sha256_hex(&json))
    }

    /// The manifest as written to `manifest.json`: pretty JSON with its checksum filled in.
    ///
    /// # Errors
    /// [`ArtifactError::Manifest`] for a metric that is not finite (JSON has no such number, and
    /// the manifest would not read back), or if the manifest cannot be serialized.
    pub fn to_json(&self) -> Result<Vec<u8>, ArtifactError> {
        if let Some((name, value)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ArtifactError::Manifest(format!("metric '{name}' is {value}, which JSON cannot hold")));
        }
        let mut sealed = self.clone();
        sealed.manifest_sha256 = self.content_sha256()?;
        serde_json::to_vec_pretty(&sealed).map_err(|e| ArtifactError::Manifest(e.to_string()))
    }

    fn validate(&self) -> Result<(), ArtifactError> {
        let bad = |m: String| Err(ArtifactError::Manifest(m));
        self.validate_numbers()?;
        if self.schema.features.len() != self.preprocessing.columns.len() {
            return bad(format!(
                "schema has {} features but preprocessing has {} columns",
                self.schema.features.len(),
                self.preprocessing.columns.len()
            ));
        }
        for (spec, fitted) in self.schema.features.iter().zip(&self.preprocessing.columns) {
            let same_kind = matches!(
                (spec.kind, fitted),
                (ColumnKind::Numeric, FittedColumn::Numeric { .. })
                    | (ColumnKind::Categorical, FittedColumn::Categorical { .. })
            );
            if spec.name != fitted.name() || !same_kind {
                return bad(format!(
                    "schema column '{}' does not match preprocessing column '{}'",
                    spec.name,
                    fitted.name()
                ));
            }
            if let FittedColumn::Categorical { categories, .. } = fitted
                && categories.is_empty()
            {
                return bad(format!("categorical column '{}' has no categories", spec.name));
            }
        }
        if self.preprocessing.n_features() != self.network.n_features {
            return bad(format!(
                "preprocessing yields {} features but the network expects {}",
                self.preprocessing.n_features(),
                self.network.n_features
            ));
        }
        let expected_outputs = match self.schema.task {
            Task::Regression => 1,
            _ => self.labels.len(),
        };
        if self.network.n_outputs != expected_outputs || (self.schema.task.is_classification() && expected_outputs < 2)
        {
            return bad(format!(
                "task {} with {} labels does not fit a network with {} outputs",
                self.schema.task.as_str(),
                self.labels.len(),
                self.network.n_outputs
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// Numbers that no model can be served with: they are refused here, at load time, rather
    /// than by a panic while building the network or by blaming every request later.
    fn validate_numbers(&self) -> Result<(), ArtifactError> {
        let bad = |m: String| Err(ArtifactError::Manifest(m));
        for column in &self.preprocessing.columns {
            if let FittedColumn::Numeric { name, median, mean, std, clip } = column {
                if let Some(clip) = clip
                    && !(clip.is_finite() && *clip > 0.0)
                {
                    return bad(format!("preprocessing column '{name}': clip {clip} must be finite and positive"));
                }
                if !(median.is_finite() && mean.is_finite()) {
                    return bad(format!(
                        "preprocessing column '{name}': median {median} and mean {mean} must be finite"
                    ));
                }
                if !(std.is_finite() && *std > 0.0) {
                    return bad(format!("preprocessing column '{name}': std {std} must be finite and positive"));
                }
            }
        }
        if let Some((mean, std)) = self.target_transform.moments()
            && !(mean.is_finite() && std.is_finite() && std > 0.0)
        {
            return bad(format!("target_transform: mean {mean} must be finite and std {std} finite and positive"));
        }
        if let Some([low, high]) = self.prediction_range
            && !(low.is_finite() && high.is_finite() && low <= high)
        {
            return bad(format!("prediction_range [{low}, {high}] must be finite and in order"));
        }
        let network = &self.network;
        if network.hidden_layers.len() > MAX_HIDDEN_LAYERS {
            return bad(format!(
                "network has {} hidden layers; at most {MAX_HIDDEN_LAYERS}",
                network.hidden_layers.len()
            ));
        }
        let widths = std::iter::once(("n_features", network.n_features))
            .chain(network.hidden_layers.iter().map(|&w| ("hidden_layers", w)))
            .chain(std::iter::once(("n_outputs", network.n_outputs)));
        let mut parameters = 0usize;
        let mut previous: Option<usize> = None;
        for (what, width) in widths {
            if width == 0 || width > MAX_LAYER_WIDTH {
                return bad(format!("network {what} has a width of {width}; it must be 1 to {MAX_LAYER_WIDTH}"));
            }
            if let Some(previous) = previous {
                parameters = parameters.saturating_add(previous.saturating_mul(width).saturating_add(width));
            }
            previous = Some(width);
        }
        if parameters > MAX_PARAMETERS {
            return bad(format!("network has {parameters} parameters; at most {MAX_PARAMETERS}"));
        }
        if !(0.0..1.0).contains(&network.dropout) {
            return bad(format!("network dropout {} must be in [0, 1)", network.dropout));
        }
        Ok(())
    }
}

/// A checked artifact: its manifest and the weights' bytes, verified against the checksum.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The checked manifest.
    pub manifest: Manifest,
    weights: Vec<u8>,
}

impl Artifact {
    /// Checks the manifest and the weights' checksum; reads nothing from disk.
    ///
    /// # Errors
    /// The errors of [`Manifest::from_json`], and [`ArtifactError::ChecksumMismatch`] for
    /// weights that do not hash to `manifest.weights.sha256`.
    pub fn from_parts(manifest_json: &[u8], weights: Vec<u8>) -> Result<Self, ArtifactError> {
        let manifest = Manifest::from_json(manifest_json)?;
        let actual = sha256_hex(&weights);
        if actual != manifest.weights.sha256 {
            return Err(ArtifactError::ChecksumMismatch { expected: manifest.weights.sha256.clone(), actual });
        }
        Ok(Self { manifest, weights })
    }

    /// Reads `manifest.json` and the weights file it names from a version directory, and checks
    /// them as [`Self::from_parts`] does.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] for a file that cannot be read, [`ArtifactError::Manifest`] for a
    /// weights file name with a path separator, and the errors of [`Self::from_parts`].
    pub fn read_dir(dir: &Path) -> Result<Self, ArtifactError> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| ArtifactError::Io { path: path.to_path_buf(), source });
        let manifest_json = read(&dir.join(MANIFEST_FILE))?;
        let manifest = Manifest::from_json(&manifest_json)?;
        if manifest.weights.file.contains(['/', '\\']) {
            return Err(ArtifactError::Manifest(format!(
                "weights file '{}' must be a plain file name",
                manifest.weights.file
            )));
        }
        let weights = read(&dir.join(&manifest.weights.file))?;
        Self::from_parts(&manifest_json, weights)
    }

    /// Rebuilds the network from the manifest and loads the weights into it, on `device`.
    ///
    /// # Errors
    /// [`ArtifactError::Weights`] for weights that cannot be decoded, or whose layers are not
    /// the number or the shapes the manifest describes.
    pub fn model<B: Backend>(&self, device: &B::Device) -> Result<Mlp<B>, ArtifactError> {
        let record: crate::model::MlpRecord<B> = WeightsRecorder::default()
            .load(self.weights.clone(), device)
            .map_err(|e| ArtifactError::Weights(e.to_string()))?;
        // burn's `load_record` panics on a different number of layers: say it instead.
        let described = self.manifest.network.hidden_layers.len();
        if record.hidden.len() != described {
            return Err(ArtifactError::Weights(format!(
                "the weights hold {} hidden layers, the manifest describes {described}",
                record.hidden.len()
            )));
        }
        let model = self.manifest.network.init::<B>(device).load_record(record);
        check_shapes(&model, &self.manifest.network)?;
        Ok(model)
    }
}

/// Serializes a model's weights the way [`Artifact::model`] reads them (with
/// [`WeightsRecorder`]).
///
/// # Errors
/// [`ArtifactError::Weights`] if the recorder fails.
pub fn record_weights<B: Backend>(model: Mlp<B>) -> Result<Vec<u8>, ArtifactError> {
    WeightsRecorder::default().record(model.into_record(), ()).map_err(|e| ArtifactError::Weights(e.to_string()))
}

fn check_shapes<B: Backend>(model: &Mlp<B>, config: &MlpConfig) -> Result<(), ArtifactError> {
    let mut d_input = config.n_features;
    let layers = model.hidden.iter().chain(std::iter::once(&model.output));
    let widths = config.hidden_layers.iter().chain(std::iter::once(&config.n_outputs));
    for (index, (layer, &d_output)) in layers.zip(widths).enumerate() {
        let got = layer.weight.val().dims();
        if got != [d_input, d_output] {
            return Err(ArtifactError::Weights(format!(
                "layer {index} has weights {got:?}, the manifest implies [{d_input}, {d_output}]"
            )));
        }
        d_input = d_output;
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActivationKind;
    use crate::schema::ColumnSpec;

    fn manifest() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: "m".into(),
            version: 1,
            schema: Schema {
                features: vec![ColumnSpec { name: "x".into(), kind: ColumnKind::Numeric }],
                target: "y".into(),
                task: Task::Regression,
            },
            preprocessing: Preprocessor {
                columns: vec![FittedColumn::Numeric {
                    name: "x".into(),
                    median: 1.0,
                    mean: 1.5,
                    std: 0.25,
                    clip: None,
                }],
            },
            network: MlpConfig {
                n_features: 1,
                hidden_layers: vec![4],
                n_outputs: 1,
                activation: ActivationKind::Relu,
                dropout: 0.1,
            },
            labels: vec![],
            target_transform: TargetTransform::Standardize { mean: 10.0, std: 2.0 },
            prediction_range: None,
            metrics: BTreeMap::from([("rmse".to_string(), 0.125)]),
            provenance: Provenance { config: serde_json::json!({ "lr": 1e-3, "b": [1, 2] }), ..Provenance::default() },
            weights: WeightsInfo { file: WEIGHTS_FILE.into(), sha256: "00".into(), recorder: "r".into() },
            manifest_sha256: String::new(),
        }
    }

    #[test]
    fn the_manifest_checksum_survives_reformatting_and_catches_an_edited_number() {
        let sealed = manifest().to_json().expect("seals");
        let read = Manifest::from_json(&sealed).expect("a sealed manifest reads back");
        assert_eq!(read.manifest_sha256, manifest().content_sha256().expect("hash"));
        // Whitespace and field order do not change the content.
        let value: serde_json::Value = serde_json::from_slice(&sealed).expect("JSON");
        Manifest::from_json(&serde_json::to_vec(&value).expect("compact")).expect("compact form reads");
        // One number edited by hand: refused, naming the checksum.
        let text = String::from_utf8(sealed).expect("utf-8");
        for (from, to) in [
            ("\"std\": 0.25", "\"std\": 0.26"),
            ("\"rmse\": 0.125", "\"rmse\": 0.5"),
            ("\"lr\": 0.001", "\"lr\": 0.01"),
        ] {
            assert!(text.contains(from), "{from} not in {text}");
            let edited = text.replacen(from, to, 1);
            let error = Manifest::from_json(edited.as_bytes()).expect_err("an edited manifest is refused");
            assert!(matches!(error, ArtifactError::ManifestChecksumMismatch { .. }), "{error:?}");
            assert!(error.to_string().contains("was the manifest edited?"), "{error}");
        }
        let mut nan = manifest();
        nan.metrics.insert("r2".into(), f64::NAN);
        assert!(nan.to_json().expect_err("NaN cannot be written").to_string().contains("metric 'r2' is NaN"));
        // An unsealed manifest (no checksum) is refused too.
        let mut unsealed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        unsealed["manifest_sha256"] = "".into();
        assert!(matches!(
            Manifest::from_json(&serde_json::to_vec(&unsealed).expect("bytes")),
            Err(ArtifactError::ManifestChecksumMismatch { .. })
        ));
    }

    #[test]
    fn numbers_that_cannot_be_served_are_refused_at_load_with_the_reason() {
        type Edit = fn(&mut Manifest);
        let cases: [(Edit, &str); 11] = [
            (
                |m| {
                    m.preprocessing.columns[0] =
                        FittedColumn::Numeric { name: "x".into(), median: 1.0, mean: 1.5, std: 1.0, clip: Some(0.0) }
                },
                "column 'x': clip 0 must be finite and positive",
            ),
            (|m| m.target_transform = TargetTransform::Log1pStandardize { mean: 0.0, std: 0.0 }, "target_transform"),
            (|m| m.prediction_range = Some([5.0, 1.0]), "prediction_range [5, 1] must be finite and in order"),
            (
                |m| {
                    m.preprocessing.columns[0] =
                        FittedColumn::Numeric { name: "x".into(), median: 1.0, mean: 1.5, std: 0.0, clip: None }
                },
                "column 'x': std 0 must be finite and positive",
            ),
            (|m| m.target_transform = TargetTransform::LogStandardize { mean: 0.0, std: -1.0 }, "target_transform"),
            (|m| m.network.hidden_layers = vec![2_000_000_000], "hidden_layers has a width of 2000000000"),
            (|m| m.network.hidden_layers = vec![0], "hidden_layers has a width of 0"),
            (|m| m.network.hidden_layers = vec![60_000; 2], "parameters; at most"),
            (|m| m.network.hidden_layers = vec![4; 65], "65 hidden layers"),
            (|m| m.network.dropout = 1.0, "dropout 1 must be in [0, 1)"),
            (|m| m.network.n_outputs = 0, "n_outputs has a width of 0"),
        ];
        for (edit, expected) in cases {
            let mut bad = manifest();
            edit(&mut bad);
            // Sealed as a trainer would: the checksum holds, the numbers do not.
            let error = Manifest::from_json(&bad.to_json().expect("seals")).expect_err(expected);
            assert!(matches!(error, ArtifactError::Manifest(_)), "{error:?}");
            assert!(error.to_string().contains(expected), "{error} should mention {expected}");
        }
    }
}
