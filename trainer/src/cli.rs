//! The command line: `trainer train`, `trainer evaluate`, `trainer export-onnx`, `trainer report`. Parsing and
//! printing only; the work is in [`crate::pipeline`].

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared_inference::{Predictions, Predictor};

use crate::config::{Overrides, Recipe};
use crate::device::DeviceRequest;
use crate::pipeline::{self, TrainOptions, metrics_table};

/// Train tabular MLPs into versioned model artifacts that `serving` loads.
#[derive(Debug, Parser)]
#[command(name = "trainer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on a CSV or Parquet file, evaluate it on its test split and write the
    /// artifact to <out>/<name>/<version>/ (version = 1 + the highest present), with its
    /// report.html and the recipe.toml that trained it.
    ///
    /// `trainer train --data FILE --target COLUMN` needs no recipe: the defaults in
    /// configs/defaults.toml are chosen from the task (inferred from the target) and the data's
    /// size. A --config recipe overrides any of them, and the flags override the recipe.
    Train(TrainArgs),
    /// Score a labelled CSV or Parquet file with an artifact and print its metrics.
    Evaluate(EvaluateArgs),
    /// Write model.onnx (preprocessing, network and postprocessing in one graph, raw columns as
    /// inputs) into an existing artifact's version directory, replacing any there.
    ExportOnnx(ExportOnnxArgs),
    /// Write report.html (learning curves, test metrics and plots) again into an existing
    /// artifact's version directory. The test rows are found again from the recipe and the
    /// training file the artifact's provenance names.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The artifact's version directory, for example artifacts/diamonds/1.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The training file, if it is no longer where the provenance says (it must be the same
    /// file: its sha256 is checked); for a model trained with --test-data, the test file.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportOnnxArgs {
    /// The artifact's version directory, for example artifacts/diamonds/1.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// A training recipe (TOML), for example configs/penguins.toml; keys it leaves out take the
    /// defaults. Without it, --data and --target are needed.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The CSV or Parquet file to train on (replaces the recipe's data.path).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// The column to predict (replaces the recipe's data.target); the features are every other
    /// column unless the recipe lists them. Text, booleans or at most 10 distinct integers make
    /// a classification, other numbers a regression.
    #[arg(long, value_name = "COLUMN")]
    pub target: Option<String>,
    /// Evaluate on this labelled file instead of holding out a test split of --data.
    #[arg(long, value_name = "FILE")]
    pub test_data: Option<PathBuf>,
    /// Name the model (its directory in the repository); by default the recipe's name, else
    /// the data file's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The model repository to write into.
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub out: PathBuf,
    /// Seed for the split, the weight initialization and the batch order.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Train for at most this many epochs instead of the recipe's training.epochs.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Where to train: auto picks CUDA when a GPU is usable and the model's training steps are
    /// large enough for it to beat the CPU (see README "Training at scale"), and says why.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceRequest,
    /// Print no progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The artifact's version directory, for example artifacts/penguins/1.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A labelled CSV or Parquet file with the model's feature columns and its target.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Print one JSON object with the metrics on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write each row's prediction to this CSV, in the format `serving predict` writes.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => run_train(args),
        Command::Evaluate(args) => run_evaluate(args),
        Command::ExportOnnx(args) => {
            let path = crate::onnx::export_dir(&args.model)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Report(args) => {
            let path = pipeline::report(&args.model, args.data.as_deref())?;
            println!("report: {}", path.display());
            Ok(())
        }
    }
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data: args.data,
        test_data: args.test_data,
        target: args.target,
        name: args.name,
        seed: args.seed,
        epochs: args.epochs,
    };
    let recipe = Recipe::new(args.config.as_deref(), overrides)?;
    let options = TrainOptions { out: args.out, device: args.device, progress: !args.quiet };
    let outcome = pipeline::train_recipe(&recipe, &options)?;
    let m = &outcome.manifest;
    let seconds: f64 = outcome.history.iter().map(|e| e.seconds).sum();
    println!(
        "trained {} v{} ({}) on {}: {} epochs in {:.1}s ({:.3}s/epoch), best epoch {}",
        m.name,
        m.version,
        m.schema.task.as_str(),
        outcome.device.describe(),
        outcome.history.len(),
        seconds,
        seconds / outcome.history.len().max(1) as f64,
        m.provenance.best_epoch
    );
    println!("test split ({} rows):", m.provenance.rows.get("test").copied().unwrap_or(0));
    print!("{}", metrics_table(&m.metrics));
    println!("artifact: {}", outcome.version_dir.display());
    println!("report: {}", outcome.version_dir.join(pipeline::REPORT_FILE).display());
    Ok(())
}

fn run_evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let evaluation = pipeline::evaluate(&args.model, &args.data)?;
    if let Some(path) = &args.predictions {
        let predictor = Predictor::load(&args.model)?;
        write_predictions(path, &evaluation.predictions, &predictor)?;
    }
    if args.json {
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "data": args.data.display().to_string(),
            "rows": evaluation.n_rows,
            "metrics": evaluation.metrics,
        });
        println!("{json}");
    } else {
        println!("{} rows of {}:", evaluation.n_rows, args.data.display());
        print!("{}", metrics_table(&evaluation.metrics));
    }
    Ok(())
}

fn write_predictions(path: &PathBuf, predictions: &Predictions, predictor: &Predictor) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let classes = predictor.labels();
    let header = Predictions::column_names(predictor.schema().task.is_classification(), classes);
    writeln!(out, "{}", header.join(","))?;
    let mut cells = Vec::new();
    for row in 0..predictions.n_rows() {
        predictions.row_cells(row, classes, &mut cells);
        writeln!(out, "{}", cells.join(","))?;
    }
    out.flush()?;
    Ok(())
}
