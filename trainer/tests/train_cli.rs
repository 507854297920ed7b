//! The trainer from the outside: recipe and data errors (through the library and through the
//! real binary, which must exit non-zero with `error:` and no panic), artifact writing and
//! reading, end-to-end quality on the bundled penguins data, and the training transform being
//! the shared one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shared_inference::ColumnKind::{Categorical, Numeric};
use shared_inference::artifact::ONNX_FILE;
use shared_inference::{
    Artifact, ArtifactError, ColumnKind, FORMAT_VERSION, FittedColumn, MANIFEST_FILE, Predictions, Predictor,
    WEIGHTS_FILE,
};
use trainer::data::Table;
use trainer::device::DeviceRequest;
use trainer::{Overrides, RawTrainConfig, TrainConfig, TrainOptions, TrainOutcome};

// ---------------------------------------------------------------------------------------------
// Plumbing

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn penguins_recipe() -> PathBuf {
    root().join("configs/penguins.toml")
}

fn penguins_csv() -> PathBuf {
    root().join("data/penguins.csv")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// The penguins recipe reading the bundled data by absolute path, optionally for fewer epochs.
fn penguins(epochs: Option<usize>) -> Overrides {
    Overrides { data: Some(penguins_csv()), epochs, ..Overrides::default() }
}

/// `trainer train` as a library call, on the CPU and without a progress bar.
fn train_lib(recipe: &Path, overrides: &Overrides, out: &Path) -> anyhow::Result<TrainOutcome> {
    let raw = RawTrainConfig::from_file(recipe)?.apply(overrides);
    let config = TrainConfig::try_from(raw)?;
    let options = TrainOptions { out: out.to_path_buf(), device: DeviceRequest::Cpu, progress: false };
    trainer::train(&config, &options)
}

/// Runs the real binary from the workspace root.
fn trainer_bin<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args.into_iter().map(Into::into))
        .current_dir(root())
        .output()
        .expect("run the trainer binary")
}

/// `trainer train` arguments equivalent to `train_lib(recipe, overrides, out)`.
fn train_args(recipe: &Path, overrides: &Overrides, out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["train".into(), "--config".into(), recipe.into(), "--out".into(), out.into()];
    args.extend(["--device", "cpu", "--quiet"].map(OsString::from));
    let mut flag = |name: &str, value: Option<OsString>| {
        if let Some(value) = value {
            args.extend([OsString::from(name), value]);
        }
    };
    flag("--data", overrides.data.clone().map(OsString::from));
    flag("--target", overrides.target.clone().map(OsString::from));
    flag("--name", overrides.name.clone().map(OsString::from));
    flag("--seed", overrides.seed.map(|s| s.to_string().into()));
    flag("--epochs", overrides.epochs.map(|e| e.to_string().into()));
    args
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The binary failed cleanly: non-zero exit, `error:` on stderr, no panic, and every fragment.
fn assert_cli_error(output: &Output, expected: &[&str]) {
    let stderr = stderr(output);
    assert!(!output.status.success(), "expected a failure, got {:?}; stderr:\n{stderr}", output.status);
    assert!(stderr.contains("error:"), "no 'error:' on stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "the binary panicked:\n{stderr}");
    for fragment in expected {
        assert!(stderr.contains(fragment), "stderr lacks {fragment:?}:\n{stderr}");
    }
}

fn assert_error_mentions(error: &anyhow::Error, expected: &[&str]) {
    let message = format!("{error:#}");
    for fragment in expected {
        assert!(message.contains(fragment), "error lacks {fragment:?}: {message}");
    }
}

/// Training `recipe` with `overrides` fails, through the library and through the binary, with a
/// message holding every fragment, and leaves no artifact behind.
fn check_train_error(recipe: &Path, overrides: &Overrides, expected: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("repository");
    let error = train_lib(recipe, overrides, &out).expect_err("training should fail");
    assert_error_mentions(&error, expected);
    assert_cli_error(&trainer_bin(train_args(recipe, overrides, &out)), expected);
    assert!(!out.exists(), "a failed run created {}", out.display());
}

/// A small recipe over `csv` (written next to it) with `extra_data` added to its `[data]` table.
fn small_recipe(dir: &Path, csv: &str, extra_data: &str) -> PathBuf {
    let data = dir.join("data.csv");
    std::fs::write(&data, csv).expect("write the CSV");
    let recipe = dir.join("recipe.toml");
    let text = format!(
        r#"name = "case"

[data]
path = "{}"
target = "species"
{extra_data}

[split]
validation_fraction = 0.2
test_fraction = 0.2
seed = 1

[model]
hidden_layers = [4]
activation = "relu"
dropout = 0.0

[training]
epochs = 2
batch_size = 4
learning_rate = 0.01
weight_decay = 0.0
early_stopping_patience = 0
lr_schedule = "constant"
"#,
        data.display()
    );
    std::fs::write(&recipe, text).expect("write the recipe");
    recipe
}

/// A CSV with a `species` column alternating `a`/`b` and a `mass` column holding `masses`.
fn mass_csv(masses: &[&str]) -> String {
    let rows: String =
        masses.iter().enumerate().map(|(i, m)| format!("{},{m}\n", if i % 2 == 0 { "a" } else { "b" })).collect();
    format!("species,mass\n{rows}")
}

/// Training on `csv` with the small recipe fails naming every fragment.
fn check_data_error(csv: &str, extra_data: &str, expected: &[&str]) {
    let dir = tempdir();
    check_train_error(&small_recipe(dir.path(), csv, extra_data), &Overrides::default(), expected);
}

// ---------------------------------------------------------------------------------------------
// 1. Unknown keys in the recipe

/// The penguins recipe with `line` inserted after the line `after` is refused, naming `key` and
/// the recipe's path.
fn check_unknown_key(after: &str, line: &str, key: &str) {
    let dir = tempdir();
    let text = std::fs::read_to_string(penguins_recipe()).expect("read the penguins recipe");
    assert!(text.lines().any(|l| l == after), "the penguins recipe has no line {after:?}");
    let edited: String =
        text.lines().flat_map(|l| [l, if l == after { line } else { "" }]).map(|l| format!("{l}\n")).collect();
    let recipe = dir.path().join("typo.toml");
    std::fs::write(&recipe, edited).expect("write the recipe");
    let path = recipe.display().to_string();
    let expected = [format!("unknown field `{key}`"), path.clone()];
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();

    let error = RawTrainConfig::from_file(&recipe).expect_err("an unknown key is refused");
    assert_error_mentions(&error, &expected);
    let out = dir.path().join("out");
    assert_cli_error(&trainer_bin(train_args(&recipe, &penguins(Some(1)), &out)), &expected);
    assert!(!out.exists(), "a refused recipe created {}", out.display());
}

#[test]
fn unknown_recipe_keys_are_named_with_the_file() {
    check_unknown_key(r#"name = "penguins""#, r#"colour = "red""#, "colour");
    check_unknown_key("[data]", r#"targte = "species""#, "targte");
    check_unknown_key("[training]", "epochz = 3", "epochz");
    check_unknown_key("[model]", "hidden_layer = [8]", "hidden_layer");
}

// ---------------------------------------------------------------------------------------------
// 2. A target that is not a column

#[test]
fn a_missing_target_lists_the_available_columns() {
    let overrides = Overrides { target: Some("specie".into()), ..penguins(Some(1)) };
    let columns = r#"["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]"#;
    check_train_error(&penguins_recipe(), &overrides, &["'specie'", "does not exist", columns]);
}

// ---------------------------------------------------------------------------------------------
// 3. Text in a numeric column

#[test]
fn text_in_a_numeric_column_names_the_column_and_row() {
    let with_text_in_row_7 = ["1.5", "2", "3", "4", "5", "6", "heavy", "8", "9", "10", "11", "12"];
    check_data_error(&mass_csv(&with_text_in_row_7), "", &["column 'mass'", "data row 7", "'heavy'"]);
    // Missing values neither count as text nor shift the row number.
    let with_gaps = ["1", "NA", "3", "", "5", "6", "7", "8", "9", "10", "oops", "12"];
    check_data_error(&mass_csv(&with_gaps), "", &["column 'mass'", "data row 11", "'oops'"]);
}

#[test]
fn text_in_a_declared_numeric_column_names_the_column_and_row() {
    // Mostly text, so only the declaration makes it numeric.
    let masses = ["1", "2", "light", "heavy", "light", "heavy"];
    check_data_error(&mass_csv(&masses), r#"numeric = ["mass"]"#, &["column 'mass'", "data row 3", "'light'"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Files without data

#[test]
fn files_without_data_are_refused() {
    check_data_error("", "", &["data.csv", "the file is empty"]);
    check_data_error("species,mass\n", "", &["data.csv", "has no data rows"]);
}

// ---------------------------------------------------------------------------------------------
// 5. Classes too small to stratify

/// `species` with `a` and `b` five times each and `rare` `n_rare` times.
fn check_rare_class(n_rare: usize) {
    let mut csv = mass_csv(&["1"; 10]);
    csv.extend(std::iter::repeat_n("rare,2\n", n_rare));
    check_data_error(&csv, "", &[&format!("class 'rare' has {n_rare} row(s)"), "at least 3 per class"]);
}

#[test]
fn a_class_too_small_to_stratify_is_named() {
    check_rare_class(1);
    check_rare_class(2);
}

// ---------------------------------------------------------------------------------------------
// 6. An output directory that cannot be written

/// `--out` at `out` (relative to a directory holding a regular file `blocker`) fails cleanly.
fn check_unwritable_out(out: &str) {
    let dir = tempdir();
    std::fs::write(dir.path().join("blocker"), "not a directory").expect("write the blocking file");
    let out = dir.path().join(out);
    let expected = ["cannot create the output directory", "blocker"];
    let error = train_lib(&penguins_recipe(), &penguins(Some(1)), &out).expect_err("cannot write under a file");
    assert_error_mentions(&error, &expected);
    assert_cli_error(&trainer_bin(train_args(&penguins_recipe(), &penguins(Some(1)), &out)), &expected);
    assert_eq!(std::fs::read_to_string(dir.path().join("blocker")).expect("still a file"), "not a directory");
}

#[test]
fn an_unwritable_output_directory_is_an_error() {
    check_unwritable_out("blocker");
    check_unwritable_out("blocker/repository");
}

// ---------------------------------------------------------------------------------------------
// 7. Artifact writing and reading

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn artifacts_are_versioned_checked_and_read_back() {
    let dir = tempdir();
    let out = dir.path().join("repository");
    let model_dir = out.join("penguins");

    let first = train_lib(&penguins_recipe(), &penguins(Some(5)), &out).expect("first run trains");
    assert_eq!(first.version_dir, model_dir.join("1"));
    assert_eq!((first.manifest.name.as_str(), first.manifest.version), ("penguins", 1));
    assert!(first.history.len() <= 5 && !first.history.is_empty(), "{} epochs", first.history.len());
    assert_eq!(first.manifest.provenance.config["training"]["epochs"], 5);
    assert_eq!(entries(&first.version_dir), [MANIFEST_FILE, ONNX_FILE, "recipe.toml", "report.html", WEIGHTS_FILE]);
    let onnx_len = std::fs::metadata(first.version_dir.join(ONNX_FILE)).expect("model.onnx").len();
    assert!(onnx_len > 0, "model.onnx is empty");

    // The second run goes through the binary and claims the next version.
    let output = trainer_bin(train_args(&penguins_recipe(), &penguins(Some(5)), &out));
    assert!(output.status.success(), "second run failed:\n{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("trained penguins v2"), "{stdout}");
    assert!(stdout.contains(&format!("artifact: {}", model_dir.join("2").display())), "{stdout}");
    assert_eq!(entries(&model_dir), ["1", "2"], "temporary directories must not remain");
    assert_eq!(trainer::writer::latest_version(&model_dir).expect("versions"), 2);

    for version in ["1", "2"] {
        let artifact = Artifact::read_dir(&model_dir.join(version)).expect("the artifact reads back");
        assert_eq!(artifact.manifest.version.to_string(), version);
        assert_eq!(artifact.manifest.format_version, FORMAT_VERSION);
    }
    let read = Artifact::read_dir(&first.version_dir).expect("reads").manifest;
    assert_eq!(read, first.manifest);

    // One flipped byte in the weights is a checksum mismatch, for the library and the binary.
    let weights_path = model_dir.join("1").join(WEIGHTS_FILE);
    let mut weights = std::fs::read(&weights_path).expect("read the weights");
    let middle = weights.len() / 2;
    weights[middle] ^= 0x01;
    std::fs::write(&weights_path, &weights).expect("write the weights");
    match Artifact::read_dir(&model_dir.join("1")) {
        Err(ArtifactError::ChecksumMismatch { expected, actual }) => {
            assert_eq!(expected, first.manifest.weights.sha256);
            assert_ne!(actual, expected);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let model_1 = model_dir.join("1");
    let evaluate = |model: &Path| {
        trainer_bin([
            OsString::from("evaluate"),
            "--model".into(),
            model.into(),
            "--data".into(),
            penguins_csv().into(),
        ])
    };
    assert_cli_error(&evaluate(&model_1), &["checksum mismatch"]);

    // A manifest from a future format is refused before anything else is read.
    let manifest_path = model_dir.join("2").join(MANIFEST_FILE);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read the manifest")).expect("manifest is JSON");
    manifest["format_version"] = 999.into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).expect("serialize")).expect("write");
    let error = Artifact::read_dir(&model_dir.join("2")).expect_err("format 999 is refused");
    assert!(matches!(error, ArtifactError::UnsupportedFormat { found: 999, supported: FORMAT_VERSION }), "{error:?}");
    assert!(error.to_string().contains("format version 999 is not supported"), "{error}");
    assert_cli_error(&evaluate(&model_dir.join("2")), &["format version 999 is not supported"]);
}

// ---------------------------------------------------------------------------------------------
// 8. End-to-end quality

#[test]
fn penguins_trains_to_high_accuracy_and_evaluates() {
    let dir = tempdir();
    let outcome = train_lib(&penguins_recipe(), &penguins(None), dir.path()).expect("the full recipe trains");
    let metrics = &outcome.manifest.metrics;
    let test_accuracy = metrics.get("accuracy").copied().expect("test accuracy in the manifest");
    assert!(test_accuracy >= 0.97, "test accuracy {test_accuracy} < 0.97; metrics {metrics:?}");
    assert_eq!(outcome.manifest.provenance.rows["total"], 344);

    let evaluation = trainer::evaluate(&outcome.version_dir, &penguins_csv()).expect("evaluates");
    let keys: Vec<&str> = evaluation.metrics.keys().map(String::as_str).collect();
    assert_eq!(keys, ["accuracy", "log_loss", "macro_f1"]);
    assert!(evaluation.metrics.values().all(|v| v.is_finite()), "{:?}", evaluation.metrics);
    assert!(evaluation.metrics["accuracy"] > 0.9, "{:?}", evaluation.metrics);
    assert!(evaluation.metrics["macro_f1"] > 0.9, "{:?}", evaluation.metrics);
    assert!(evaluation.metrics["log_loss"] < 0.5, "{:?}", evaluation.metrics);
    assert_eq!(evaluation.n_rows, 344);

    // The accuracy is that of the shared Predictor's own predictions.
    let predictor = Predictor::load(&outcome.version_dir).expect("loads");
    let table = Table::read(&penguins_csv()).expect("reads").conform(predictor.schema()).expect("conforms");
    let Predictions::Classification { labels, .. } =
        predictor.predict(&table.feature_batch(predictor.schema()).expect("batch")).expect("predicts")
    else {
        panic!("penguins is classification");
    };
    let trainer::data::Column::Text(species) = table.column("species").expect("target") else {
        panic!("species is text");
    };
    let correct =
        labels.iter().zip(species).filter(|(l, s)| Some(predictor.labels()[**l].as_str()) == s.as_deref()).count();
    assert_eq!(correct as f64 / 344.0, evaluation.metrics["accuracy"]);

    // The binary prints one JSON object with the same metrics.
    let output = trainer_bin([
        OsString::from("evaluate"),
        "--model".into(),
        outcome.version_dir.clone().into(),
        "--data".into(),
        "data/penguins.csv".into(),
        "--json".into(),
    ]);
    assert!(output.status.success(), "evaluate failed:\n{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(stdout.trim_end().lines().count(), 1, "one line of JSON expected:\n{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON value");
    assert!(json.is_object(), "{json}");
    assert_eq!(json["rows"], 344);
    let printed: BTreeMap<String, f64> = serde_json::from_value(json["metrics"].clone()).expect("metrics are numbers");
    assert_eq!(printed, evaluation.metrics);
    assert!(json["metrics"]["accuracy"].as_f64().is_some_and(|a| a > 0.9), "{json}");
}

// ---------------------------------------------------------------------------------------------
// 9. The training transform is the shared one

/// Median, mean and standard deviation (population) of a column with missing values imputed.
fn numeric_state(values: &[Option<f64>]) -> (f64, f64, f64) {
    let mut present: Vec<f64> = values.iter().flatten().copied().collect();
    present.sort_by(f64::total_cmp);
    let n = present.len();
    let median = if n % 2 == 1 { present[n / 2] } else { (present[n / 2 - 1] + present[n / 2]) / 2.0 };
    let imputed: Vec<f64> = values.iter().map(|v| v.unwrap_or(median)).collect();
    let mean = imputed.iter().sum::<f64>() / imputed.len() as f64;
    let std = (imputed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / imputed.len() as f64).sqrt();
    (median, mean, std)
}

#[test]
fn the_training_transform_is_the_shared_one() {
    let dir = tempdir();
    let outcome = train_lib(&penguins_recipe(), &penguins(Some(5)), dir.path()).expect("trains");
    let predictor = Predictor::load(&outcome.version_dir).expect("loads");
    let manifest = predictor.manifest();
    let schema = predictor.schema();
    let kinds: Vec<(&str, ColumnKind)> = schema.features.iter().map(|f| (f.name.as_str(), f.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("island", Categorical),
            ("bill_length_mm", Numeric),
            ("bill_depth_mm", Numeric),
            ("flipper_length_mm", Numeric),
            ("body_mass_g", Numeric),
            ("sex", Categorical),
            ("year", Numeric)
        ]
    );

    let table = Table::read(&penguins_csv()).expect("reads").conform(schema).expect("conforms");
    let batch = table.feature_batch(schema).expect("batch");
    let features = manifest.preprocessing.transform(&batch).expect("transforms");
    let width = manifest.preprocessing.n_features();
    assert_eq!(width, 3 + 4 + 2 + 1, "3 islands, 4 numbers, 2 sexes, the year");
    assert_eq!(features.len(), table.n_rows * width);

    // The CSV read by hand, cell by cell.
    let text = std::fs::read_to_string(penguins_csv()).expect("read the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<BTreeMap<&str, &str>> = lines.map(|l| header.iter().copied().zip(l.split(',')).collect()).collect();
    assert_eq!(rows.len(), 344);

    // The fitted state is that of the training split alone (the recipe's fractions and seed).
    let species: Vec<String> = rows.iter().map(|r| r["species"].to_string()).collect();
    let training = trainer::split::split(344, Some(&species), 0.15, 0.2, 7).expect("splits").train;
    assert_eq!(outcome.manifest.provenance.rows["train"], training.len());
    for column in &manifest.preprocessing.columns {
        let cell = |row: usize| Some(rows[row][column.name()]).filter(|c| *c != "NA");
        match column {
            FittedColumn::Numeric { name, median, mean, std, .. } => {
                let values: Vec<Option<f64>> =
                    training.iter().map(|&r| cell(r).map(|c| c.parse().expect("a number"))).collect();
                let (m, mu, sigma) = numeric_state(&values);
                assert_eq!(*median, m, "{name} median");
                assert!((mean - mu).abs() < 1e-9 * mu.abs().max(1.0), "{name} mean {mean} vs {mu}");
                assert!((std - sigma).abs() < 1e-9 * sigma.max(1.0), "{name} std {std} vs {sigma}");
            }
            FittedColumn::Categorical { name, categories, most_frequent, .. } => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                training.iter().filter_map(|&r| cell(r)).for_each(|c| *counts.entry(c).or_default() += 1);
                let vocabulary: Vec<&str> = counts.keys().copied().collect();
                assert_eq!(categories, &vocabulary, "{name} categories");
                let mode = counts.iter().max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c))).map(|(c, _)| *c);
                assert_eq!(Some(most_frequent.as_str()), mode, "{name} most frequent");
            }
        }
    }

    // Data row 4 (1-based) has every measurement and the sex missing.
    let row = 3;
    assert_eq!(rows[row]["bill_length_mm"], "NA");
    assert_eq!(rows[row]["sex"], "NA");
    let mut expected: Vec<f32> = Vec::with_capacity(width);
    for column in &manifest.preprocessing.columns {
        let raw = rows[row][column.name()];
        match column {
            FittedColumn::Numeric { median, mean, std, .. } => {
                let x = if raw == "NA" { *median } else { raw.parse::<f64>().expect("a number") };
                expected.push(((x - mean) / std) as f32);
            }
            FittedColumn::Categorical { categories, most_frequent, .. } => {
                let value = if raw == "NA" { most_frequent.as_str() } else { raw };
                expected.extend(categories.iter().map(|c| if c == value { 1.0 } else { 0.0 }));
            }
        }
    }
    assert_eq!(&features[row * width..(row + 1) * width], expected.as_slice());
    // Imputed numbers land on the training median, not on zero or NaN.
    assert!(features.iter().all(|f| f.is_finite()));
}
