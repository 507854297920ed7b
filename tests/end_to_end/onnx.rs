//! The exported `model.onnx`, run by an independent runtime (onnxruntime, from the virtual
//! environment `scripts/test.sh` prepares), predicts what `serving predict` predicts for the same
//! raw rows: both bundled models on their test splits, and models trained on a synthetic mixed
//! data set with missing values, so the export is not tuned to two files. `tests/onnx/compare.py`
//! does the running and the comparing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use shared_inference::{Artifact, FittedColumn};

use crate::support::{binary, repository, test_split_csv, workspace};

fn python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./scripts/test.sh creates it (python3 -m venv .venv && .venv/bin/pip install -r tests/onnx/requirements.txt)",
        python.display()
    );
    python
}

fn serving_predict(model_dir: &Path, rows: &Path, out: &Path) {
    let output = Command::new(binary("serving"))
        .args(["predict", "--quiet", "--model"])
        .arg(model_dir)
        .arg("--input")
        .arg(rows)
        .arg("--output")
        .arg(out)
        .output()
        .expect("serving runs");
    assert!(output.status.success(), "serving predict failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Scores `rows` with serving and with onnxruntime and returns the comparison's report.
pub(crate) fn compare(model_dir: &Path, rows: &Path, unseen: Option<(&str, &str, &str)>) -> Value {
    let scored = rows.with_extension("scored.csv");
    serving_predict(model_dir, rows, &scored);
    let mut command = Command::new(python());
    command.arg(workspace().join("tests/onnx/compare.py")).arg("--model").arg(model_dir.join("model.onnx"));
    command.arg("--rows").arg(rows).arg("--expected").arg(&scored);
    if let Some((column, value, policy)) = unseen {
        command.args(["--unseen", &format!("{column}={value}"), "--unseen-policy", policy]);
    }
    let output = command.output().expect("python runs");
    assert!(
        output.status.success(),
        "onnxruntime disagrees with serving for {}:\n{}",
        model_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let expected_rows = csv::Reader::from_path(rows).expect("rows").records().count() as u64;
    assert_eq!(report["rows"], expected_rows, "{report}");
    report
}

#[test]
fn bundled_models_predict_the_same_in_onnxruntime() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, unseen) in [("penguins", ("island", "Atlantis")), ("diamonds", ("cut", "Flawless"))] {
        let rows = test_split_csv(name, dir.path());
        let report = compare(&repository().version_dir(name), &rows, Some((unseen.0, unseen.1, "error")));
        assert_eq!(report["unseen"], "refused", "{name}: {report}");
        if name == "penguins" {
            assert!(report["missing_cells"].as_u64() > Some(0), "the penguins test split has missing values: {report}");
        }
        // The graph's outputs are the shared ones, in the shared order.
        let task = shared_inference::Predictor::load(&repository().version_dir(name)).expect("loads").schema().task;
        assert_eq!(report["outputs"], serde_json::json!(shared_inference::output::output_names(task)), "{name}");
        assert_eq!(report["outputs"].as_array().map(Vec::len), Some(if name == "penguins" { 2 } else { 1 }));
    }
}

/// A seeded generator (64-bit LCG), so the synthetic data is the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[((self.next() * items.len() as f64) as usize).min(items.len() - 1)]
    }
}

/// Customers: numeric `age`, `income`, `score` and categorical `city`, `plan`, with missing
/// values in each; a binary target `churn` (yes/no) and a positive numeric `spend`. With
/// `unseen`, some rows carry a city never generated for training.
pub(crate) fn synthetic_csv(path: &Path, rows: usize, seed: u64, unseen: bool) {
    let mut rng = Lcg(seed);
    let cities = ["north", "south", "east", "west", "centre"];
    let plans = ["basic", "plus", "pro"];
    let mut text = String::from("age,income,score,city,plan,churn,spend\n");
    for _ in 0..rows {
        let age = 18.0 + 62.0 * rng.next();
        let income = 20_000.0 + 180_000.0 * rng.next() * rng.next();
        let score = 6.0 * rng.next() - 3.0;
        let city = if unseen && rng.next() < 0.1 { "atlantis" } else { rng.pick(&cities) };
        let plan = rng.pick(&plans);
        let city_effect = cities.iter().position(|c| *c == city).map_or(0.0, |i| i as f64 * 0.3 - 0.6);
        let plan_index = plans.iter().position(|p| *p == plan).unwrap_or(0) as f64;
        let logit = 0.04 * (age - 50.0) - income / 100_000.0 + 0.8 * score + city_effect - 0.5 * plan_index
            + (rng.next() - 0.5);
        let churn = if logit > 0.0 { "yes" } else { "no" };
        let spend = 50.0 + 2.0 * age + income / 1000.0 + 40.0 * plan_index + 20.0 * rng.next();
        let missing = |rng: &mut Lcg, p: f64, cell: String| if rng.next() < p { String::new() } else { cell };
        let cells = [
            missing(&mut rng, 0.1, format!("{age:.1}")),
            if rng.next() < 0.05 { "NA".to_string() } else { format!("{income:.0}") },
            missing(&mut rng, 0.05, format!("{score:.3}")),
            if rng.next() < 0.08 { "NA".to_string() } else { city.to_string() },
            plan.to_string(),
            churn.to_string(),
            format!("{spend:.2}"),
        ];
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).expect("write synthetic data");
}

fn synthetic_recipe(
    dir: &Path,
    data: &Path,
    target: &str,
    activation: &str,
    unknown: &str,
    transform: &str,
    (preprocessing, model): (&str, &str),
) -> PathBuf {
    let transform = if transform.is_empty() { String::new() } else { format!("target_transform = \"{transform}\"\n") };
    let recipe = format!(
        "name = \"synthetic-{target}-{activation}\"\n\n[data]\npath = \"{}\"\ntarget = \"{target}\"\n\n\
         [split]\nvalidation_fraction = 0.15\ntest_fraction = 0.15\nseed = 3\n\n\
         [preprocessing]\nunknown_category = \"{unknown}\"\n{transform}{preprocessing}\n\
         [model]\nhidden_layers = [16, 8]\nactivation = \"{activation}\"\ndropout = 0.1\n{model}\n\
         [training]\nepochs = 8\nbatch_size = 64\nlearning_rate = 0.01\nweight_decay = 0.0001\n\
         early_stopping_patience = 8\nlr_schedule = \"constant\"\n",
        data.display()
    );
    let path = dir.join(format!("synthetic-{target}-{activation}.toml"));
    std::fs::write(&path, recipe).expect("write recipe");
    path
}

#[test]
fn synthetic_mixed_data_predicts_the_same_in_onnxruntime() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let train_csv = dir.path().join("customers.csv");
    synthetic_csv(&train_csv, 1500, 11, false);
    let fresh_csv = dir.path().join("fresh.csv");
    synthetic_csv(&fresh_csv, 300, 12, false);
    let unseen_csv = dir.path().join("fresh-unseen.csv");
    synthetic_csv(&unseen_csv, 300, 13, true);
    let models = dir.path().join("models");

    // (target, activation, unseen-category policy, target transform, more recipe keys); the keys
    // a recipe leaves out take the defaults. The last two: robust scaling with its smooth clip,
    // ln(1 + y), and ensembles folded into one network.
    let robust = "numeric_scaling = \"robust_clip\"\n";
    let cases = [
        ("churn", "gelu", "zero_vector", "", ("", "")),
        ("spend", "tanh", "error", "standardize", ("", "")),
        ("spend", "silu", "zero_vector", "log_standardize", ("", "")),
        ("spend", "relu", "zero_vector", "log1p_standardize", (robust, "ensemble = 3\n")),
        ("churn", "relu", "error", "", (robust, "ensemble = 2\n")),
    ];
    for (target, activation, unknown, transform, extra) in cases {
        let recipe = synthetic_recipe(dir.path(), &train_csv, target, activation, unknown, transform, extra);
        let output = Command::new(binary("trainer"))
            .args(["train", "--quiet", "--device", "cpu", "--config"])
            .arg(&recipe)
            .arg("--out")
            .arg(&models)
            .output()
            .expect("trainer runs");
        assert!(output.status.success(), "training failed: {}", String::from_utf8_lossy(&output.stderr));
        let model_dir = models.join(format!("synthetic-{target}-{activation}")).join("1");
        assert!(model_dir.join("model.onnx").exists(), "training writes model.onnx");

        let report = compare(&model_dir, &fresh_csv, Some(("plan", "enterprise", unknown)));
        assert!(report["missing_cells"].as_u64() > Some(50), "{report}");
        if unknown == "zero_vector" {
            // Serving encodes an unseen city as zeros; so must the graph, row by row.
            compare(&model_dir, &unseen_csv, None);
        }
    }
}

#[test]
fn export_onnx_rewrites_the_same_file_for_an_existing_artifact() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = repository().version_dir("penguins");
    let copy = dir.path().join("penguins").join("1");
    std::fs::create_dir_all(&copy).expect("create copy");
    for file in ["manifest.json", "weights.mpk", "model.onnx"] {
        std::fs::copy(source.join(file), copy.join(file)).expect("copy artifact");
    }
    std::fs::remove_file(copy.join("model.onnx")).expect("remove model.onnx");
    let output =
        Command::new(binary("trainer")).args(["export-onnx", "--model"]).arg(&copy).output().expect("trainer runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported = std::fs::read(copy.join("model.onnx")).expect("export-onnx wrote model.onnx");
    assert_eq!(
        exported,
        std::fs::read(source.join("model.onnx")).expect("trained model.onnx"),
        "export is deterministic"
    );

    // An artifact whose weights were tampered with is refused before anything is written.
    std::fs::remove_file(copy.join("model.onnx")).expect("remove model.onnx");
    let mut weights = std::fs::read(copy.join("weights.mpk")).expect("weights");
    let last = weights.len() - 1;
    weights[last] ^= 1;
    std::fs::write(copy.join("weights.mpk"), weights).expect("tamper");
    let output =
        Command::new(binary("trainer")).args(["export-onnx", "--model"]).arg(&copy).output().expect("trainer runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!copy.join("model.onnx").exists());
}

#[test]
fn the_export_refuses_what_it_cannot_represent() {
    let artifact = Artifact::read_dir(&repository().version_dir("diamonds")).expect("artifact reads");
    let refusal = |edit: &dyn Fn(&mut FittedColumn)| -> String {
        let mut artifact = artifact.clone();
        edit(&mut artifact.manifest.preprocessing.columns[0]);
        format!("{:#}", trainer::onnx::export(&artifact).expect_err("refused"))
    };
    trainer::onnx::export(&artifact).expect("the unedited artifact exports");

    let clash = refusal(&|column| {
        if let FittedColumn::Numeric { name, .. } = column {
            *name = "prediction".to_string();
        }
    });
    assert!(clash.contains("column 'prediction'") && clash.contains("clash"), "{clash}");

    // carat, moved far from zero with a tiny spread: float32 inputs cannot resolve it.
    let far = refusal(&|column| {
        if let FittedColumn::Numeric { mean, std, median, .. } = column {
            (*mean, *std, *median) = (1.0e9, 0.5, 1.0e9);
        }
    });
    assert!(far.contains("'carat'") && far.contains("float32"), "{far}");
}
