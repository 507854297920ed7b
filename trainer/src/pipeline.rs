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
use std::time::Instant;

use crate::config::{DataShape, Recipe, TargetScaling, TrainConfig};
use crate::data::{self, Column, Table};
use crate::device::{self, Device, DeviceRequest};
use crate::fit::FitOptions;
use crate::report::{self, EpochPoint, ReportInput, TestOutcome};
use crate::split::{Split, split};
use crate::train::{self, EpochStats, Prepared, Targets};
use crate::{fit, metrics, onnx, writer};

/// The recipe the artifact holds, in the form `trainer train --config` reads.
pub const RECIPE_FILE: &str = "recipe.toml";
/// The training report the artifact holds.
pub const REPORT_FILE: &str = "report.html";

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
    /// Why `--device auto` chose the device it did.
    pub device_note: Option<String>,
    pub history: Vec<EpochStats>,
}

/// The shape the defaults are chosen from: the declared or inferred task, the file's rows and
/// the feature columns (those listed, or every column but the target).
pub fn data_shape(recipe: &Recipe, table: &Table) -> anyhow::Result<DataShape> {
    let target = recipe.target()?;
    let column = table.column(&target).with_context(|| format!("the target column '{target}' does not exist"))?;
    let task = recipe.declared_task()?.unwrap_or_else(|| data::infer_task(column));
    let features = recipe.declared_features().unwrap_or(table.names.len() - 1);
    Ok(DataShape { task, rows: table.n_rows, features })
}

/// `trainer train`: reads the data, resolves the recipe for it (defaults, file, command line)
/// and trains.
pub fn train_recipe(recipe: &Recipe, options: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let path = recipe.data_path()?;
    let (table, loaded) = read_timed(&path)?;
    let config = recipe.resolve(&data_shape(recipe, &table)?)?;
    train_table(table, loaded, &config, options)
}

/// Trains, evaluates and writes one artifact.
pub fn train(config: &TrainConfig, options: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let (table, loaded) = read_timed(&config.data_path)?;
    train_table(table, loaded, config, options)
}

/// Reads the training file, saying how large it was and how long it took (at millions of rows
/// this is seconds the user should see accounted for).
fn read_timed(path: &Path) -> anyhow::Result<(Table, f64)> {
    let started = Instant::now();
    let table = Table::read(path)?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("read {}: {} rows x {} columns in {seconds:.1}s", path.display(), table.n_rows, table.names.len());
    Ok((table, seconds))
}

/// The process's peak resident memory so far (Linux: `VmHWM` in /proc/self/status).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Prints a warning and keeps it for the artifact's provenance.
fn warn(notes: &mut Vec<String>, note: String) {
    eprintln!("warning: {note}");
    notes.push(note);
}

/// Refuses a target with one value: there is nothing to learn.
fn check_target_varies(column: &Column, name: &str) -> anyhow::Result<()> {
    let first = match column {
        Column::Numeric { values, .. } => {
            let mut present = values.iter().filter(|v| v.is_finite());
            match present.next() {
                Some(&first) if present.all(|&v| v == first) => Some(first.to_string()),
                _ => None,
            }
        }
        Column::Text(values) => {
            let mut present = values.iter().flatten();
            match present.next() {
                Some(first) if present.all(|v| v == first) => Some(format!("'{first}'")),
                _ => None,
            }
        }
    };
    match first {
        Some(value) => {
            bail!("target column '{name}' holds the single value {value} in every row; there is nothing to learn")
        }
        None => Ok(()),
    }
}

fn train_table(
    table: Table,
    load_seconds: f64,
    config: &TrainConfig,
    options: &TrainOptions,
) -> anyhow::Result<TrainOutcome> {
    let preprocess_started = Instant::now();
    let data_sha256 = sha256_file(&config.data_path)?;
    let mut notes: Vec<String> = Vec::new();

    let mut schema = build_schema(&table, config)?;
    check_target_varies(table.column(&config.target)?, &config.target)?;
    if schema.task == Task::Regression && config.target_transform != TargetScaling::Auto {
        let targets = data::target_numbers(table.column(&config.target)?, &config.target)?;
        fit::check_target(&targets, config.target_transform, &config.target)?;
    }
    if schema.features.len() > table.n_rows {
        warn(
            &mut notes,
            format!(
                "{} has more feature columns ({}) than rows ({}): expect the model to overfit; more rows or fewer \
                 columns (data.features) would help",
                config.data_path.display(),
                schema.features.len(),
                table.n_rows
            ),
        );
    }
    let (labels, rows) = split_rows(&table, &schema, config)?;
    let table = table.conform(&schema).with_context(|| format!("reading {}", config.data_path.display()))?;
    let (train_table, valid_table) = (table.take(&rows.train), table.take(&rows.validation));
    let test_table = match &config.test_path {
        Some(path) => Table::read(path)?.conform(&schema).with_context(|| format!("reading {}", path.display()))?,
        None => table.take(&rows.test),
    };
    // The splits hold every row that is used; the whole file's columns are not needed again.
    let total_rows = table.n_rows;
    drop(table);

    // Columns with nothing to learn from, judged on the training split.
    let mut dropped = Vec::new();
    for spec in &schema.features {
        if let Some(reason) = fit::unusable(train_table.column(&spec.name)?, config.max_categories) {
            warn(&mut notes, format!("column '{}' is left out of the model: {reason}", spec.name));
            dropped.push(spec.name.clone());
        }
    }
    schema.features.retain(|f| !dropped.contains(&f.name));
    if schema.features.is_empty() {
        bail!("no feature column is left to train on: {} (see the warnings above)", dropped.join(", "));
    }

    let fit_options = FitOptions {
        unknown: config.unknown_category,
        numeric: config.numeric_scaling,
        max_categories: config.max_categories,
    };
    let (preprocessor, fit_notes) = fit::fit_preprocessor(&train_table, &schema, fit_options)?;
    for note in fit_notes {
        warn(&mut notes, note);
    }
    // Regression: the target's scaling and the range predictions are held within, both from
    // the training split's targets.
    let (target_transform, prediction_range) = match schema.task {
        Task::Regression => {
            let targets = data::target_numbers(train_table.column(&config.target)?, &config.target)?;
            let (transform, note) = fit::fit_target(&targets, config.target_transform, &config.target)?;
            if let Some(note) = note {
                eprintln!("{note}");
                notes.push(note);
            }
            let low = targets.iter().copied().fold(f64::INFINITY, f64::min);
            let high = targets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (transform, Some([low, high]))
        }
        _ => (TargetTransform::None, None),
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
    // From here on the network's inputs stand for these rows.
    drop((train_table, valid_table));

    // The served shape: the ensemble's members side by side.
    let network = MlpConfig {
        n_features: preprocessor.n_features(),
        hidden_layers: config.hidden_layers.iter().map(|w| w * config.ensemble).collect(),
        n_outputs: if schema.task.is_classification() { labels.len() } else { 1 },
        activation: config.activation,
        dropout: config.dropout,
    };
    let preprocess_seconds = preprocess_started.elapsed().as_secs_f64();
    eprintln!(
        "preprocessed in {preprocess_seconds:.1}s: {} training rows x {} network inputs ({:.0} MB as f32)",
        train_data.n_rows,
        network.n_features,
        (train_data.n_rows * network.n_features * 4) as f64 / 1e6
    );
    let work = device::Work::new(&network, config.batch_size, train_data.n_rows);
    let (device, device_note) = device::select(options.device, &work)?;
    match &device_note {
        Some(reason) => eprintln!("device: {} ({reason})", device.describe()),
        None => eprintln!("device: {}", device.describe()),
    }
    let train_started = Instant::now();
    let progress = progress_bar(options.progress, &config.name, device);
    let trained = match device {
        Device::Cpu => {
            type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
            train::fit::<B>(
                &Default::default(),
                config,
                &network,
                &target_transform,
                train_data,
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
                train_data,
                &valid_data,
                &progress,
            )?
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => bail!("this trainer was built without the `cuda` feature"),
    };
    progress.finish_and_clear();
    let train_seconds = train_started.elapsed().as_secs_f64();
    let evaluate_started = Instant::now();

    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: config.name.clone(),
        version: 0,
        schema,
        preprocessing: preprocessor,
        network,
        labels,
        target_transform,
        prediction_range,
        metrics: BTreeMap::new(),
        provenance: shared_inference::artifact::Provenance {
            config: serde_json::to_value(&config.recipe)?,
            data_file: config.data_path.display().to_string(),
            data_sha256,
            rows: BTreeMap::from([
                ("total".to_string(), total_rows),
                ("train".to_string(), rows.train.len()),
                ("validation".to_string(), rows.validation.len()),
                ("test".to_string(), test_table.n_rows),
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
            recipe_sources: config.sources.clone(),
            notes,
            history: trained.history.iter().map(EpochStats::record).collect(),
            timings: BTreeMap::from([
                ("load".to_string(), load_seconds),
                ("preprocess".to_string(), preprocess_seconds),
                ("train".to_string(), train_seconds),
            ]),
            peak_rss_bytes: None,
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
    let evaluation = evaluate_table(&predictor, &test_table)?;
    manifest.metrics = evaluation.metrics.clone();
    let test_outcome = test_outcome(&predictor, &test_table, &evaluation)?;

    // The same model for other runtimes. An artifact the export cannot represent faithfully is
    // still written (serving runs it); the reason is printed instead of a wrong graph.
    let onnx = match onnx::export(&artifact) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            eprintln!("warning: no {ONNX_FILE} in this artifact: {error:#}");
            None
        }
    };
    let recipe = config.recipe.to_toml()?;
    let recipe = format!(
        "# The recipe that trained this model, every value included; run it again with\n\
         # trainer train --config {RECIPE_FILE}\n\n{recipe}"
    );
    let mut files: Vec<(&str, Vec<u8>)> =
        vec![(WEIGHTS_FILE, trained.weights.clone()), (RECIPE_FILE, recipe.into_bytes())];
    if let Some(bytes) = onnx {
        files.push((ONNX_FILE, bytes));
    }
    // The report shows the version, which is known only once the artifact claims it: it is
    // written last, into the version directory.
    manifest.provenance.timings.insert("evaluate".to_string(), evaluate_started.elapsed().as_secs_f64());
    manifest.provenance.peak_rss_bytes = peak_rss_bytes();
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let version_dir = writer::write_artifact(&options.out, manifest, &borrowed)?;
    let manifest = Artifact::read_dir(&version_dir)?.manifest;
    write_report(&version_dir, &manifest, test_outcome)?;
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
    // With a test file, nothing is held out for testing.
    let test_fraction = if config.test_path.is_some() { 0.0 } else { config.test_fraction };
    let rows = split(table.n_rows, class_of_row.as_deref(), config.validation_fraction, test_fraction, config.seed)?;
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

/// The test split's predictions as the report plots them.
fn test_outcome(predictor: &Predictor, table: &Table, evaluation: &Evaluation) -> anyhow::Result<TestOutcome> {
    let schema = predictor.schema();
    let target = table.column(&schema.target)?;
    Ok(match &evaluation.predictions {
        Predictions::Regression { values } => TestOutcome::Regression {
            actual: data::target_numbers(target, &schema.target)?,
            predicted: values.iter().map(|&v| f64::from(v)).collect(),
        },
        Predictions::Classification { probabilities, .. } => {
            let names = data::target_labels(target, &schema.target)?;
            let truth = names
                .iter()
                .map(|n| predictor.labels().iter().position(|l| l == n).context("checked by the evaluation"))
                .collect::<anyhow::Result<Vec<usize>>>()?;
            TestOutcome::Classification {
                labels: predictor.labels().to_vec(),
                truth,
                probabilities: probabilities.clone(),
            }
        }
    })
}

/// Renders `report.html` for an artifact and writes it into its version directory (through a
/// temporary file, so a reader never sees half of it).
pub fn write_report(version_dir: &Path, manifest: &Manifest, test: TestOutcome) -> anyhow::Result<PathBuf> {
    let html = report::render(&report_input(manifest, test));
    let path = version_dir.join(REPORT_FILE);
    let temporary = version_dir.join(format!(".{REPORT_FILE}.tmp"));
    std::fs::write(&temporary, html).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What the report shows of a manifest and its test predictions.
pub fn report_input(manifest: &Manifest, test: TestOutcome) -> ReportInput {
    let p = &manifest.provenance;
    let rows = ["train", "validation", "test"]
        .iter()
        .filter_map(|s| p.rows.get(*s).map(|n| format!("{n} {s}")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut facts = vec![
        ("task".to_string(), manifest.schema.task.as_str().to_string()),
        ("target".to_string(), manifest.schema.target.clone()),
        ("data".to_string(), format!("{} (sha256 {})", p.data_file, p.data_sha256)),
        ("rows".to_string(), rows),
        (
            "features".to_string(),
            format!("{} columns, {} network inputs", manifest.schema.features.len(), manifest.network.n_features),
        ),
        (
            "network".to_string(),
            format!("hidden layers {:?}, {} outputs", manifest.network.hidden_layers, manifest.network.n_outputs),
        ),
        ("target transform".to_string(), manifest.target_transform.as_str().to_string()),
        ("device".to_string(), p.device.clone()),
        ("epochs".to_string(), format!("{} run, best {}", p.epochs_run, p.best_epoch)),
        ("recipe from".to_string(), p.recipe_sources.join(" < ")),
        ("created".to_string(), format!("{} (Unix seconds)", p.created_unix_seconds)),
    ];
    facts.extend(p.notes.iter().map(|n| ("note".to_string(), n.clone())));
    let history = p
        .history
        .iter()
        .map(|e| EpochPoint {
            epoch: e.epoch,
            train_loss: e.train_loss,
            validation_loss: e.validation_loss,
            validation_metric: e.validation_metric,
        })
        .collect();
    ReportInput {
        title: format!("{} v{}", manifest.name, manifest.version),
        facts,
        metrics: manifest.metrics.clone(),
        metric_name: if manifest.schema.task.is_classification() { "validation accuracy" } else { "validation RMSE" }
            .to_string(),
        history,
        best_epoch: p.best_epoch,
        recipe: serde_json::to_string_pretty(&p.config)
            .unwrap_or_else(|e| format!("(the recipe cannot be shown: {e})")),
        test,
    }
}

/// `trainer report`: writes an artifact's `report.html` again. The test rows are those the
/// trainer held out: the recipe in the provenance splits the training file (`data`, or the
/// file the provenance names) again, or reads its test file.
pub fn report(version_dir: &Path, data: Option<&Path>) -> anyhow::Result<PathBuf> {
    let predictor =
        Predictor::load(version_dir).with_context(|| format!("loading the model in {}", version_dir.display()))?;
    let manifest = predictor.manifest().clone();
    let raw: crate::config::RawTrainConfig = serde_json::from_value(manifest.provenance.config.clone())
        .context("the artifact's provenance holds no recipe this trainer can read (trained by an older trainer?)")?;
    let mut config = TrainConfig::try_from(raw).context("the artifact's recipe")?;
    let test_table = match &config.test_path {
        // `--data` then names the test file.
        Some(test_path) => Table::read(data.unwrap_or(test_path))?,
        None => {
            let path = data.map_or_else(|| PathBuf::from(&manifest.provenance.data_file), Path::to_path_buf);
            let sha256 = sha256_file(&path).with_context(|| {
                format!("reading the training data {} (pass --data FILE if it moved)", path.display())
            })?;
            if sha256 != manifest.provenance.data_sha256 {
                bail!(
                    "{} is not the file this model was trained on (its sha256 differs from the provenance's {}); \
                     the test rows cannot be found again",
                    path.display(),
                    manifest.provenance.data_sha256
                );
            }
            config.data_path = path;
            let table = Table::read(&config.data_path)?;
            let (_, rows) = split_rows(&table, &manifest.schema, &config)?;
            table.take(&rows.test)
        }
    };
    let test_table = test_table.conform(predictor.schema())?;
    let evaluation = evaluate_table(&predictor, &test_table)?;
    let test = test_outcome(&predictor, &test_table, &evaluation)?;
    write_report(version_dir, &manifest, test)
}

/// The sha256 of a file, read in pieces (a training file can be larger than the memory it
/// would be worth holding twice).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
