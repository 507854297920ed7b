//! The trainer on data it has no recipe for: `trainer train --data FILE --target COLUMN` with the
//! defaults, recorded in full and runnable again; targets as they come (zeros, skew, negative
//! values); the data problems a user's own file brings (a constant target, an empty column, an
//! identifier, a wide vocabulary, more columns than rows); and the report every artifact holds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shared_inference::{ColumnKind, FittedColumn, MANIFEST_FILE, Manifest, Predictions, Predictor, TargetTransform};

// ---------------------------------------------------------------------------------------------
// Plumbing

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn trainer<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args.into_iter().map(Into::into))
        .current_dir(root())
        .output()
        .expect("run the trainer binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `trainer train --data DATA --target TARGET --out OUT --device cpu --quiet` plus `extra`.
fn train(data: &Path, target: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<OsString> = vec!["train".into(), "--data".into(), data.into(), "--target".into(), target.into()];
    args.extend(["--out".into(), out.into()]);
    args.extend(["--device", "cpu", "--quiet"].map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    trainer(args)
}

fn assert_trained(output: &Output) {
    assert!(output.status.success(), "training failed:\n{}", text(&output.stderr));
}

fn assert_refused(output: &Output, fragments: &[&str]) {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "expected a refusal, got success; stderr:\n{stderr}");
    assert!(stderr.contains("error:") && !stderr.contains("panicked"), "{stderr}");
    for fragment in fragments {
        assert!(stderr.contains(fragment), "stderr lacks {fragment:?}:\n{stderr}");
    }
}

fn manifest(version_dir: &Path) -> Manifest {
    Manifest::from_json(&std::fs::read(version_dir.join(MANIFEST_FILE)).expect("manifest")).expect("reads")
}

/// A seeded generator (64-bit LCG), so the synthetic files are the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Bank customers: `age`, `income`, `segment` and a `balance` that is zero for a fifth of them
/// and log-normal otherwise (non-negative, skewed right), plus `churned` (yes/no).
fn customers(path: &Path, rows: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let mut csv = String::from("age,income,segment,balance,churned\n");
    for _ in 0..rows {
        let age = 18.0 + 60.0 * rng.next();
        let income = 20.0 + 100.0 * rng.next();
        let segment = ["retail", "premier", "business"][(rng.next() * 3.0) as usize % 3];
        let balance = if rng.next() < 0.2 { 0.0 } else { (3.0 + age / 20.0 + income / 50.0 + rng.next()).exp() };
        let churned = if age + income * 0.3 + 20.0 * rng.next() > 70.0 { "yes" } else { "no" };
        csv.push_str(&format!("{age:.1},{income:.2},{segment},{balance:.2},{churned}\n"));
    }
    std::fs::write(path, csv).expect("write the CSV");
}

// ---------------------------------------------------------------------------------------------
// 1. No recipe needed

#[test]
fn data_and_target_are_enough_and_the_recipe_used_is_recorded_and_runs_again() {
    let dir = tempdir();
    let out = dir.path().join("models");
    let output = train(&root().join("data/penguins.csv"), "species", &out, &["--epochs", "4"]);
    assert_trained(&output);
    let stdout = text(&output.stdout);
    let version_dir = out.join("penguins").join("1");
    assert!(stdout.contains("trained penguins v1"), "named after the file: {stdout}");
    assert!(stdout.contains(&format!("report: {}", version_dir.join("report.html").display())), "{stdout}");

    let first = manifest(&version_dir);
    let sources = &first.provenance.recipe_sources;
    assert_eq!(sources[0], "defaults (configs/defaults.toml)", "{sources:?}");
    assert!(sources.contains(&"defaults when at most 10,000 rows".to_string()), "{sources:?}");
    assert_eq!(sources.last().map(String::as_str), Some("command line"), "{sources:?}");
    // Every value is in the provenance, in recipe form, and in recipe.toml.
    let config = &first.provenance.config;
    assert_eq!(config["training"]["epochs"], 4);
    assert_eq!(config["model"]["ensemble"], 4);
    assert_eq!(config["preprocessing"]["target_transform"], "auto");
    assert_eq!(first.network.hidden_layers, [128, 128], "four members of 32 side by side");

    // recipe.toml trains the same recipe again, bit for bit the same model.
    let recipe = version_dir.join("recipe.toml");
    let output =
        trainer([OsString::from("train"), "--config".into(), recipe.into(), "--out".into(), out.clone().into()]);
    assert_trained(&output);
    let second = manifest(&out.join("penguins").join("2"));
    assert_eq!(second.provenance.config, first.provenance.config);
    assert_eq!(second.metrics, first.metrics);
    // The same weights: the two models' predictions on every row are the same bits (the
    // weight files themselves differ in burn's random parameter ids).
    let data = root().join("data/penguins.csv");
    let predict = |version: &str| {
        let predictor = Predictor::load(&out.join("penguins").join(version)).expect("loads");
        let table = trainer::data::Table::read(&data).expect("reads").conform(predictor.schema()).expect("conforms");
        match predictor.predict(&table.feature_batch(predictor.schema()).expect("batch")).expect("predicts") {
            Predictions::Classification { probabilities, .. } => probabilities.iter().map(|p| p.to_bits()).collect(),
            Predictions::Regression { .. } => panic!("penguins is a classification"),
        }
    };
    let (a, b): (Vec<u32>, Vec<u32>) = (predict("1"), predict("2"));
    assert_eq!(a, b, "the same recipe and seed train the same model");
}

#[test]
fn a_partial_recipe_overrides_only_what_it_names() {
    let dir = tempdir();
    let recipe = dir.path().join("mine.toml");
    std::fs::write(&recipe, "[model]\nensemble = 2\nhidden_layers = [8]\n[training]\nepochs = 2\n").expect("write");
    let out = dir.path().join("models");
    let output = train(&root().join("data/penguins.csv"), "species", &out, &["--config", &recipe.to_string_lossy()]);
    assert_trained(&output);
    let m = manifest(&out.join("penguins").join("1"));
    assert_eq!(m.network.hidden_layers, [16]);
    assert_eq!(m.provenance.config["training"]["epochs"], 2);
    assert_eq!(m.provenance.config["training"]["batch_size"], 32, "from the small-data defaults");
    assert!(m.provenance.recipe_sources.iter().any(|s| s.ends_with("mine.toml")), "{:?}", m.provenance.recipe_sources);
}

#[test]
fn help_says_no_recipe_is_needed_and_where_the_defaults_are() {
    let output = trainer(["train", "--help"]);
    let help = text(&output.stdout);
    assert!(output.status.success());
    for fragment in ["--data FILE --target COLUMN", "configs/defaults.toml", "--test-data", "--config"] {
        assert!(help.contains(fragment), "help lacks {fragment:?}:\n{help}");
    }
    let output = trainer(["train", "--quiet"]);
    assert_refused(&output, &["--data FILE", "--target COLUMN"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Targets as they come

#[test]
fn a_skewed_target_with_zeros_trains_on_its_logarithm_and_predicts_no_negative_amount() {
    let dir = tempdir();
    let data = dir.path().join("customers.csv");
    customers(&data, 600, 5);
    let out = dir.path().join("models");
    let output = train(&data, "balance", &out, &["--epochs", "5"]);
    assert_trained(&output);
    let version_dir = out.join("customers").join("1");
    let m = manifest(&version_dir);
    assert!(matches!(m.target_transform, TargetTransform::Log1pStandardize { .. }), "{:?}", m.target_transform);
    let note = m.provenance.notes.iter().find(|n| n.contains("auto chose log1p_standardize for 'balance'"));
    assert!(note.is_some(), "the choice is recorded: {:?}", m.provenance.notes);
    assert!(text(&output.stderr).contains("auto chose log1p_standardize"), "and said");

    // Serving undoes it; amounts never come out negative.
    let predictor = Predictor::load(&version_dir).expect("loads");
    let table = trainer::data::Table::read(&data).expect("reads").conform(predictor.schema()).expect("conforms");
    let Predictions::Regression { values } =
        predictor.predict(&table.feature_batch(predictor.schema()).expect("batch")).expect("predicts")
    else {
        panic!("regression");
    };
    assert!(values.iter().all(|v| *v >= 0.0 && v.is_finite()), "{:?}", values.iter().copied().fold(0.0, f32::min));

    // A symmetric target with negative values is standardized.
    let text = std::fs::read_to_string(&data).expect("read");
    let shifted: String = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                return "age,income,segment,balance,churned\n".to_string();
            }
            let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
            cells[1] = format!("{:.2}", cells[1].parse::<f64>().expect("income") - 70.0);
            format!("{}\n", cells.join(","))
        })
        .collect();
    let signed = dir.path().join("signed.csv");
    std::fs::write(&signed, shifted).expect("write");
    assert_trained(&train(&signed, "income", &out, &["--epochs", "2"]));
    let m = manifest(&out.join("signed").join("1"));
    assert!(matches!(m.target_transform, TargetTransform::Standardize { .. }), "{:?}", m.target_transform);
}

#[test]
fn an_explicit_log_transform_of_a_negative_target_names_the_column_and_the_first_bad_row() {
    let dir = tempdir();
    let data = dir.path().join("d.csv");
    let rows: String = (0..40).map(|i| format!("{i},{}\n", if i == 17 { -3.0 } else { f64::from(i) + 0.5 })).collect();
    std::fs::write(&data, format!("x,y\n{rows}")).expect("write");
    for (transform, fragments) in [
        ("log_standardize", ["'y' holds -3 at data row 18", "needs positive targets"]),
        ("log1p_standardize", ["'y' holds -3 at data row 18", "needs non-negative targets"]),
    ] {
        let recipe = dir.path().join(format!("{transform}.toml"));
        std::fs::write(&recipe, format!("[preprocessing]\ntarget_transform = \"{transform}\"\n")).expect("write");
        let out = dir.path().join("models");
        let output = train(&data, "y", &out, &["--config", &recipe.to_string_lossy()]);
        assert_refused(&output, &fragments);
        assert!(!out.exists(), "a refused run writes nothing");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input

#[test]
fn a_target_with_a_single_value_is_refused_naming_it() {
    let dir = tempdir();
    for (cells, value) in [("a", "'a'"), ("3.5", "3.5")] {
        let data = dir.path().join("constant.csv");
        let rows: String = (0..30).map(|i| format!("{i},{cells}\n")).collect();
        std::fs::write(&data, format!("x,y\n{rows}")).expect("write");
        let output = train(&data, "y", &dir.path().join("models"), &[]);
        assert_refused(&output, &["target column 'y'", &format!("single value {value}"), "nothing to learn"]);
    }
}

#[test]
fn empty_and_identifier_columns_are_left_out_with_a_warning_and_wide_vocabularies_are_capped() {
    let dir = tempdir();
    let data = dir.path().join("accounts.csv");
    let mut rng = Lcg(9);
    let mut csv = String::from("account_id,notes,city,score,y\n");
    for i in 0..800 {
        let city = format!("city{}", (rng.next() * rng.next() * 200.0) as usize);
        let score = rng.next() * 10.0;
        let y = if score + rng.next() * 3.0 > 6.0 { "hi" } else { "lo" };
        csv.push_str(&format!("ACC-{i:05},,{city},{score:.3},{y}\n"));
    }
    std::fs::write(&data, csv).expect("write");
    let out = dir.path().join("models");
    let output = train(&data, "y", &out, &["--epochs", "3"]);
    assert_trained(&output);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("warning: column 'account_id' is left out of the model"), "{stderr}");
    assert!(stderr.contains("distinct texts (an identifier or free text?)"), "{stderr}");
    assert!(stderr.contains("warning: column 'notes' is left out of the model: it has no value"), "{stderr}");
    assert!(stderr.contains("column 'city':") && stderr.contains("the 100 most frequent"), "{stderr}");

    let m = manifest(&out.join("accounts").join("1"));
    let features: Vec<&str> = m.schema.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(features, ["city", "score"]);
    let Some(FittedColumn::Categorical { categories, unknown, .. }) = m.preprocessing.columns.first() else {
        panic!("city is categorical");
    };
    assert_eq!(categories.len(), 100, "one-hot width capped");
    assert_eq!(*unknown, shared_inference::UnknownCategoryPolicy::ZeroVector);
    assert_eq!(m.network.n_features, 101);
    assert_eq!(m.provenance.notes.iter().filter(|n| n.contains("left out")).count(), 2, "{:?}", m.provenance.notes);

    // Serving takes the dropped columns' absence, and a rare city, as usual.
    let predictor = Predictor::load(&out.join("accounts").join("1")).expect("loads");
    assert_eq!(predictor.schema().features.iter().filter(|f| f.kind == ColumnKind::Numeric).count(), 1);

    // With nothing left to learn from, the run is refused naming the columns.
    let only_ids = dir.path().join("ids.csv");
    let rows: String = (0..300).map(|i| format!("ACC-{i},{}\n", if i % 2 == 0 { "a" } else { "b" })).collect();
    std::fs::write(&only_ids, format!("account_id,y\n{rows}")).expect("write");
    assert_refused(&train(&only_ids, "y", &out, &[]), &["no feature column is left", "account_id"]);
}

#[test]
fn more_columns_than_rows_trains_with_a_warning_and_stronger_regularization() {
    let dir = tempdir();
    let data = dir.path().join("wide.csv");
    let mut rng = Lcg(3);
    let header: Vec<String> = (0..60).map(|i| format!("x{i}")).chain(["y".to_string()]).collect();
    let mut csv = format!("{}\n", header.join(","));
    for row in 0..40 {
        let cells: Vec<String> = (0..60).map(|_| format!("{:.3}", rng.next())).collect();
        csv.push_str(&format!("{},{}\n", cells.join(","), if row % 2 == 0 { "a" } else { "b" }));
    }
    std::fs::write(&data, csv).expect("write");
    let out = dir.path().join("models");
    let output = train(&data, "y", &out, &["--epochs", "3"]);
    assert_trained(&output);
    assert!(text(&output.stderr).contains("more feature columns (60) than rows (40)"), "{}", text(&output.stderr));
    let m = manifest(&out.join("wide").join("1"));
    assert!(m.provenance.recipe_sources.iter().any(|s| s.contains("more feature columns than rows")));
    assert_eq!(m.provenance.config["model"]["dropout"], 0.3);
}

// ---------------------------------------------------------------------------------------------
// 4. The report

/// The `data-metric` cells of a report: name and the value parsed back.
fn report_metrics(html: &str) -> Vec<(String, f64)> {
    html.split("data-metric=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').expect("a closing quote");
            let value = rest.split_once('>').and_then(|(_, v)| v.split_once('<')).expect("a cell").0;
            (name.to_string(), value.parse().unwrap_or_else(|e| panic!("{name}: {value:?}: {e}")))
        })
        .collect()
}

fn plots(html: &str) -> Vec<String> {
    html.split("data-plot=\"").skip(1).filter_map(|rest| rest.split_once('"')).map(|(p, _)| p.to_string()).collect()
}

fn check_report(version_dir: &Path, expected_plots: &[&str]) -> String {
    let html = std::fs::read_to_string(version_dir.join("report.html")).expect("report.html");
    let m = manifest(version_dir);
    let shown = report_metrics(&html);
    let stored: Vec<(String, f64)> = m.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(shown.len(), stored.len(), "{shown:?}");
    for ((name, value), (stored_name, stored_value)) in shown.iter().zip(&stored) {
        assert_eq!(name, stored_name);
        assert_eq!(value.to_bits(), stored_value.to_bits(), "{name}: the report shows the manifest's number");
    }
    assert_eq!(plots(&html), expected_plots);
    assert!(html.contains(&format!("data-best-epoch=\"{}\"", m.provenance.best_epoch)), "best epoch marked");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "self-contained");
    assert_eq!(m.provenance.history.len(), m.provenance.epochs_run, "one curve point per epoch");
    html
}

#[test]
fn every_artifact_holds_a_report_that_trainer_report_writes_again_identically() {
    let dir = tempdir();
    let data = dir.path().join("customers.csv");
    customers(&data, 500, 8);
    let out = dir.path().join("models");
    for (target, plots) in [
        ("balance", ["loss", "validation-metric", "predicted-vs-actual", "residuals"]),
        ("churned", ["loss", "validation-metric", "confusion-matrix", "calibration"]),
    ] {
        assert_trained(&train(&data, target, &out, &["--epochs", "6", "--name", target]));
        let version_dir = out.join(target).join("1");
        let original = check_report(&version_dir, &plots);

        // `trainer report` finds the same test rows again and writes the same page.
        std::fs::remove_file(version_dir.join("report.html")).expect("remove");
        let output = trainer([OsString::from("report"), "--model".into(), version_dir.clone().into()]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(text(&output.stdout).contains("report.html"));
        assert_eq!(std::fs::read_to_string(version_dir.join("report.html")).expect("rewritten"), original);
    }

    // The training file changed: the test rows cannot be found again, and that is said.
    let version_dir = out.join("balance").join("1");
    customers(&data, 500, 9);
    let output = trainer([OsString::from("report"), "--model".into(), version_dir.into()]);
    assert_refused(&output, &["is not the file this model was trained on"]);
}

#[test]
fn a_test_file_replaces_the_held_out_split() {
    let dir = tempdir();
    let (data, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    customers(&data, 400, 1);
    customers(&test, 123, 2);
    let out = dir.path().join("models");
    assert_trained(&train(&data, "churned", &out, &["--epochs", "2", "--test-data", &test.to_string_lossy()]));
    let version_dir = out.join("train").join("1");
    let m = manifest(&version_dir);
    assert_eq!(m.provenance.rows["test"], 123, "the test rows are the test file's");
    assert_eq!(
        m.provenance.rows["train"] + m.provenance.rows["validation"],
        400,
        "nothing of the training file is held out"
    );
    let evaluation = trainer::evaluate(&version_dir, &test).expect("evaluates");
    assert_eq!(evaluation.n_rows, 123);
    assert_eq!(evaluation.metrics, m.metrics, "the manifest's metrics are those of the test file");
}
