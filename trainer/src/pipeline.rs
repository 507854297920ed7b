//! `trainer train` and `trainer evaluate` as library functions: data file and recipe in,
//! evaluated artifact out; artifact and labelled file in, metrics out. Evaluation always runs
//! through `shared-inference`'s `Predictor`, the same code serving runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared_inference::artifact::{ONNX_FILE, WeightsInfo, sha256_hex};
use shared_inference::{
    Artifact, ColumnKind, ColumnSpec, FORMAT_VERSION, InputError, Manifest, MlpConfig, Predictions, Predictor, Schema,
    TargetTransform, Task, WEIGHTS_FILE,
};

use crate::config::TrainConfig;
use crate::data::{self, Table};
use crate::device::{self, Device, DeviceRequest};
use crate::split::{Split, split};
use crate::train::{self, EpochStats, Prepared, Targets};
use crate::{fit, metrics, onnx, writer};

/// Everything `train` needs beyond the recipe.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub device: DeviceRequest,
    /// Draw a progress bar on stderr (it is drawn only when stderr is a terminal).
    pub progress: bool,
}

/// What `train` produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub version_dir: PathBuf,
    pub manifest: Manifest,
    pub device: Device,
    /// Why CUDA was not used under `--device auto`, if it was not.
    pub device_note: Option<String>,
    pub history: Vec<EpochStats>,
}

/// Trains, evaluates and writes one artifact.
pub fn train(config: &TrainConfig, options: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let (device, device_note) = device::select(options.device)?;
    match &device_note {
        Some(reason) => eprintln!("device: {} (CUDA not used: {reason})", device.describe()),
        None => eprintln!("device: {}", device.describe()),
    }
    let table = Table::read(&config.data_path)?;
    let data_bytes =
        std::fs::read(&config.data_path).with_context(|| format!("reading {}", config.data_path.display()))?;

    let schema = build_schema(&table, config)?;
    let (labels, rows) = split_rows(&table, &schema, config)?;
    let table = table.conform(&schema).with_context(|| format!("reading {}", config.data_path.display()))?;
    let (train_table, valid_table, test_table) =
        (table.take(&rows.train), table.take(&rows.validation), table.take(&rows.test));

    let preprocessor = fit::fit_preprocessor(&train_table, &schema, config.unknown_category)?;
    let target_transform = match schema.task {
        Task::Regression => fit::fit_target(
            &data::target_numbers(train_table.column(&config.target)?, &config.target)?,
            config.target_transform,
            &config.target,
        )?,
        _ => TargetTransform::None,
    };
    let prepare = |part: &Table, name: &str| -> anyhow::Result<Prepared> {
        // The shared transform, exactly as serving applies it.
        let features = preprocessor.transform(&part.feature_batch(&schema)?).map_err(|e| match e {
            InputError::UnknownCategory { .. } => anyhow::anyhow!(
                "{name} split: {e} (the category never occurs in the training split; \
                 set preprocessing.unknown_category = \"zero_vector\" to encode such values as zeros)"
            ),
            other => anyhow::anyhow!("{name} split: {other}"),
        })?;
        let target = part.column(&config.target)?;
        let targets = if schema.task.is_classification() {
            let names = data::target_labels(target, &config.target)?;
            Targets::Classes(names.iter().map(|n| labels.iter().position(|l| l == n).unwrap_or(0) as i64).collect())
        } else {
            let values = data::target_numbers(target, &config.target)?;
            Targets::Values(values.iter().map(|&v| target_transform.forward(v) as f32).collect())
        };
        Ok(Prepared { features, n_rows: part.n_rows, targets })
    };
    let train_data = prepare(&train_table, "training")?;
    let valid_data = prepare(&valid_table, "validation")?;
    prepare(&test_table, "test")?;

    let network = MlpConfig {
        n_features: preprocessor.n_features(),
        hidden_layers: config.hidden_layers.clone(),
        n_outputs: if schema.task.is_classification() { labels.len() } else { 1 },
        activation: config.activation,
        dropout: config.dropout,
    };
    let progress = progress_bar(options.progress, &config.name, device);
    let trained = match device {
        Device::Cpu => {
            type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
            train::fit::<B>(
                &Default::default(),
                config,
                &network,
                &target_transform,
                &train_data,
                &valid_data,
                &progress,
            )?
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            type B = burn::backend::Autodiff<burn::backend::Cuda>;
            train::fit::<B>(
                &Default::default(),
                config,
                &network,
                &target_transform,
                &train_data,
                &valid_data,
                &progress,
            )?
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => bail!("this trainer was built without the `cuda` feature"),
    };
    progress.finish_and_clear();

    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: config.name.clone(),
        version: 0,
        schema,
        preprocessing: preprocessor,
        network,
        labels,
        target_transform,
        metrics: BTreeMap::new(),
        provenance: shared_inference::artifact::Provenance {
            config: serde_json::to_value(config)?,
            data_file: config.data_path.display().to_string(),
            data_sha256: sha256_hex(&data_bytes),
            rows: BTreeMap::from([
                ("total".to_string(), table.n_rows),
                ("train".to_string(), rows.train.len()),
                ("validation".to_string(), rows.validation.len()),
                ("test".to_string(), rows.test.len()),
            ]),
            seed: config.seed,
            device: device.describe().to_string(),
            epochs_run: trained.history.len(),
            best_epoch: trained.best_epoch,
            crate_versions: BTreeMap::from([
                ("trainer".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("burn".to_string(), "0.21".to_string()),
            ]),
            created_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        weights: WeightsInfo {
            file: WEIGHTS_FILE.to_string(),
            sha256: sha256_hex(&trained.weights),
            recorder: "burn NamedMpkBytesRecorder<FullPrecisionSettings>".to_string(),
        },
        manifest_sha256: String::new(),
    };
    // Evaluate the test split through the same Predictor that serving builds from the artifact.
    let artifact = Artifact::from_parts(&manifest.to_json()?, trained.weights.clone())?;
    let predictor = Predictor::new(&artifact)?;
    manifest.metrics = evaluate_table(&predictor, &test_table)?.metrics;

    // The same model for other runtimes. An artifact the export cannot represent faithfully is
    // still written (serving runs it); the reason is printed instead of a wrong graph.
    let onnx = match onnx::export(&artifact) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            eprintln!("warning: no {ONNX_FILE} in this artifact: {error:#}");
            None
        }
    };
    let mut files: Vec<(&str, &[u8])> = vec![(WEIGHTS_FILE, &trained.weights)];
    if let Some(bytes) = &onnx {
        files.push((ONNX_FILE, bytes));
    }
    let version_dir = writer::write_artifact(&options.out, manifest, &files)?;
    let manifest = Artifact::read_dir(&version_dir)?.manifest;
    Ok(TrainOutcome { version_dir, manifest, device, device_note, history: trained.history })
}

/// The class names (empty for regression) and the seeded split of a table's rows, exactly as
/// `train` makes them; tests use it to score the same test rows.
pub fn split_rows(table: &Table, schema: &Schema, config: &TrainConfig) -> anyhow::Result<(Vec<String>, Split)> {
    let target = table.column(&config.target)?;
    let (labels, class_of_row) = if schema.task.is_classification() {
        let names = data::target_labels(target, &config.target)?;
        let mut classes = names.clone();
        classes.sort();
        classes.dedup();
        if classes.len() < 2 {
            bail!(
                "target column '{}' has a single class {:?}; classification needs at least two",
                config.target,
                classes
            );
        }
        (classes, Some(names))
    } else {
        (Vec::new(), None)
    };
    let rows =
        split(table.n_rows, class_of_row.as_deref(), config.validation_fraction, config.test_fraction, config.seed)?;
    Ok((labels, rows))
}

/// Decides the schema (feature columns, their kinds, the task) from the recipe and the data.
pub fn build_schema(table: &Table, config: &TrainConfig) -> anyhow::Result<Schema> {
    table.column(&config.target).with_context(|| format!("the target column '{}' does not exist", config.target))?;
    let features: Vec<String> = match &config.features {
        Some(features) => features.clone(),
        None => table.names.iter().filter(|n| **n != config.target).cloned().collect(),
    };
    if features.is_empty() {
        bail!("the data has no columns besides the target '{}'", config.target);
    }
    for listed in config.categorical.iter().chain(&config.numeric) {
        if !features.contains(listed) {
            bail!(
                "column '{listed}' is listed in data.categorical or data.numeric but is not a feature; features are {features:?}"
            );
        }
    }
    let mut specs = Vec::with_capacity(features.len());
    for name in features {
        let declared = if config.categorical.contains(&name) {
            Some(ColumnKind::Categorical)
        } else if config.numeric.contains(&name) {
            Some(ColumnKind::Numeric)
        } else {
            None
        };
        let kind = data::infer_kind(table, &name, declared)?;
        specs.push(ColumnSpec { name, kind });
    }
    let task = config.task.unwrap_or_else(|| data::infer_task(table.column(&config.target).expect("checked above")));
    Ok(Schema { features: specs, target: config.target.clone(), task })
}

fn progress_bar(enabled: bool, name: &str, device: Device) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{name} on {}", device.describe()));
    bar
}

/// Metrics and per-row predictions of a labelled file.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: BTreeMap<String, f64>,
    pub predictions: Predictions,
    pub n_rows: usize,
}

/// `trainer evaluate`: scores a labelled file with an artifact through the shared Predictor.
pub fn evaluate(model_dir: &Path, data_path: &Path) -> anyhow::Result<Evaluation> {
    let predictor =
        Predictor::load(model_dir).with_context(|| format!("loading the model in {}", model_dir.display()))?;
    let table = Table::read(data_path)?
        .conform(predictor.schema())
        .with_context(|| format!("reading {}", data_path.display()))?;
    evaluate_table(&predictor, &table)
}

fn evaluate_table(predictor: &Predictor, table: &Table) -> anyhow::Result<Evaluation> {
    let schema = predictor.schema();
    let target =
        table.column(&schema.target).with_context(|| format!("the data has no target column '{}'", schema.target))?;
    let batch = table.feature_batch(schema)?;
    let predictions = predictor.predict(&batch).map_err(|e| match e.row() {
        Some(row) => anyhow::anyhow!("data row {}: {e}", row + 1),
        None => anyhow::anyhow!("{e}"),
    })?;
    let metrics = match &predictions {
        Predictions::Regression { values } => {
            metrics::regression(&data::target_numbers(target, &schema.target)?, values)
        }
        Predictions::Classification { probabilities, labels, n_classes } => {
            let names = data::target_labels(target, &schema.target)?;
            let truth = names
                .iter()
                .enumerate()
                .map(|(row, name)| {
                    predictor.labels().iter().position(|l| l == name).with_context(|| {
                        format!(
                            "data row {}: class '{name}' is not one the model knows ({:?})",
                            row + 1,
                            predictor.labels()
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<usize>>>()?;
            metrics::classification(&truth, labels, probabilities, *n_classes)
        }
    };
    Ok(Evaluation { metrics, predictions, n_rows: table.n_rows })
}

/// A two-column table of metrics for the terminal.
pub fn metrics_table(metrics: &BTreeMap<String, f64>) -> String {
    let mut out = String::from("metric      value\n----------  ------------\n");
    for (name, value) in metrics {
        out.push_str(&format!("{name:<10}  {value:>12.6}\n"));
    }
    out
}
