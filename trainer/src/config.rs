//! Training recipes. A recipe is built in layers, each a TOML table laid over the ones below:
//! the trainer's defaults for the data's task and size (`configs/defaults.toml`, compiled in),
//! then the `--config` file, if any, then the command line. The result is parsed into
//! [`RawTrainConfig`] (unknown keys rejected) and validated once into a [`TrainConfig`] that
//! cannot be invalid.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use shared_inference::{ActivationKind, Task, UnknownCategoryPolicy};

/// The defaults file, as shipped in `configs/`.
pub const DEFAULTS_TOML: &str = include_str!("../../configs/defaults.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrainConfig {
    pub name: String,
    pub data: RawData,
    pub split: RawSplit,
    #[serde(default)]
    pub preprocessing: RawPreprocessing,
    pub model: RawModel,
    pub training: RawTraining,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// CSV or Parquet; relative paths are read from the working directory.
    pub path: PathBuf,
    pub target: String,
    /// Feature columns; every column but the target when absent.
    pub features: Option<Vec<String>>,
    /// Columns to treat as categorical whatever their values look like.
    #[serde(default)]
    pub categorical: Vec<String>,
    /// Columns to treat as numeric; text in them is an error naming the row.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Inferred from the target when absent.
    pub task: Option<Task>,
    /// A labelled file to evaluate on instead of holding out `split.test_fraction` of the data.
    pub test_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocessing {
    /// `error` (default) or `zero_vector`.
    pub unknown_category: Option<UnknownCategoryPolicy>,
    /// Regression only: `auto`, `standardize`, `log_standardize` or `log1p_standardize`.
    pub target_transform: Option<TargetScaling>,
    /// `standardize` (mean and standard deviation) or `robust_clip` (median and quartiles, then
    /// a smooth clip at ±3).
    pub numeric_scaling: Option<NumericScaling>,
    /// A text column with more distinct training values than this is dropped with a warning
    /// (an identifier or free text); at most this many one-hot columns per categorical column.
    pub max_categories: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetScaling {
    /// `log1p_standardize` for a non-negative, right-skewed training target, else `standardize`.
    Auto,
    Standardize,
    /// Standardized `ln(y)`; every target must be positive.
    LogStandardize,
    /// Standardized `ln(1 + y)`; every target must be non-negative (zeros allowed).
    Log1pStandardize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericScaling {
    Standardize,
    RobustClip,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The widths of one member's hidden layers.
    pub hidden_layers: Vec<usize>,
    pub activation: ActivationKind,
    pub dropout: f64,
    /// Members trained side by side from different initial weights, each on its own loss, and
    /// averaged (their logits, or their outputs on the training scale) into one network.
    #[serde(default = "one")]
    pub ensemble: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraining {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss.
    pub early_stopping_patience: usize,
    /// `constant` or `cosine` (decays to `learning_rate * min_lr_fraction` at the last epoch).
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub min_lr_fraction: f64,
    /// Classification only: the share of each target moved evenly onto every class.
    #[serde(default)]
    pub label_smoothing: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    Cosine,
}

/// Command-line values that replace the recipe's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub test_data: Option<PathBuf>,
    pub target: Option<String>,
    pub name: Option<String>,
    pub seed: Option<u64>,
    pub epochs: Option<usize>,
}

/// A validated recipe: every number is in range and every choice is made.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The recipe these values were validated from, in recipe form: written into the artifact
    /// as `recipe.toml`, which `trainer train --config` runs again as is.
    pub recipe: RawTrainConfig,
    /// Where the recipe's values came from, lowest layer first.
    pub sources: Vec<String>,
    pub name: String,
    pub data_path: PathBuf,
    pub target: String,
    pub features: Option<Vec<String>>,
    pub categorical: Vec<String>,
    pub numeric: Vec<String>,
    pub task: Option<Task>,
    pub test_path: Option<PathBuf>,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
    pub unknown_category: UnknownCategoryPolicy,
    pub target_transform: TargetScaling,
    pub numeric_scaling: NumericScaling,
    pub max_categories: usize,
    pub hidden_layers: Vec<usize>,
    pub activation: ActivationKind,
    pub dropout: f64,
    pub ensemble: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub early_stopping_patience: usize,
    pub lr_schedule: LrSchedule,
    pub min_lr_fraction: f64,
    pub label_smoothing: f64,
}

impl RawTrainConfig {
    /// Reads a recipe, naming the file and the offending key on error.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading recipe {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("recipe {}: {}", path.display(), e.to_string().trim_end()))
    }

    pub fn apply(mut self, overrides: &Overrides) -> Self {
        if let Some(data) = &overrides.data {
            self.data.path = data.clone();
        }
        if let Some(test) = &overrides.test_data {
            self.data.test_path = Some(test.clone());
        }
        if let Some(target) = &overrides.target {
            self.data.target = target.clone();
        }
        if let Some(name) = &overrides.name {
            self.name = name.clone();
        }
        if let Some(seed) = overrides.seed {
            self.split.seed = seed;
        }
        if let Some(epochs) = overrides.epochs {
            self.training.epochs = epochs;
        }
        self
    }
}

impl TryFrom<RawTrainConfig> for TrainConfig {
    type Error = anyhow::Error;

    fn try_from(raw: RawTrainConfig) -> anyhow::Result<Self> {
        let recipe = raw.clone();
        let RawTrainConfig { name, data, split, preprocessing, model, training } = raw;
        ensure!(is_valid_name(&name), "name '{name}' must be non-empty and use only letters, digits, '-', '_' and '.'");
        ensure!(!data.target.is_empty(), "data.target must name a column");
        let fraction_ok = |f: f64| f > 0.0 && f < 1.0;
        ensure!(
            fraction_ok(split.validation_fraction),
            "split.validation_fraction must be in (0, 1), got {}",
            split.validation_fraction
        );
        ensure!(fraction_ok(split.test_fraction), "split.test_fraction must be in (0, 1), got {}", split.test_fraction);
        ensure!(
            split.validation_fraction + split.test_fraction < 0.9,
            "split.validation_fraction + split.test_fraction must leave at least 10% for training, got {}",
            split.validation_fraction + split.test_fraction
        );
        ensure!(!model.hidden_layers.contains(&0), "model.hidden_layers must not contain 0");
        ensure!((0.0..1.0).contains(&model.dropout), "model.dropout must be in [0, 1), got {}", model.dropout);
        ensure!(training.epochs > 0, "training.epochs must be at least 1");
        ensure!(training.batch_size > 0, "training.batch_size must be at least 1");
        ensure!(
            training.learning_rate > 0.0 && training.learning_rate.is_finite(),
            "training.learning_rate must be positive, got {}",
            training.learning_rate
        );
        ensure!(training.weight_decay >= 0.0, "training.weight_decay must not be negative");
        ensure!((0.0..=1.0).contains(&training.min_lr_fraction), "training.min_lr_fraction must be in [0, 1]");
        ensure!(
            (0.0..0.5).contains(&training.label_smoothing),
            "training.label_smoothing must be in [0, 0.5), got {}",
            training.label_smoothing
        );
        ensure!((1..=32).contains(&model.ensemble), "model.ensemble must be between 1 and 32, got {}", model.ensemble);
        let max_categories = preprocessing.max_categories.unwrap_or(DEFAULT_MAX_CATEGORIES);
        ensure!(max_categories >= 2, "preprocessing.max_categories must be at least 2, got {max_categories}");
        for column in &data.categorical {
            if data.numeric.contains(column) {
                bail!("column '{column}' is listed both in data.categorical and data.numeric");
            }
        }
        if let Some(features) = &data.features {
            ensure!(!features.is_empty(), "data.features must name at least one column");
            ensure!(!features.contains(&data.target), "data.features must not contain the target '{}'", data.target);
        }
        Ok(TrainConfig {
            recipe,
            sources: Vec::new(),
            name,
            data_path: data.path,
            target: data.target,
            features: data.features,
            categorical: data.categorical,
            numeric: data.numeric,
            task: data.task,
            test_path: data.test_path,
            validation_fraction: split.validation_fraction,
            test_fraction: split.test_fraction,
            seed: split.seed,
            unknown_category: preprocessing.unknown_category.unwrap_or(UnknownCategoryPolicy::Error),
            target_transform: preprocessing.target_transform.unwrap_or(TargetScaling::Auto),
            numeric_scaling: preprocessing.numeric_scaling.unwrap_or(NumericScaling::Standardize),
            max_categories,
            hidden_layers: model.hidden_layers,
            activation: model.activation,
            dropout: model.dropout,
            ensemble: model.ensemble,
            epochs: training.epochs,
            batch_size: training.batch_size,
            learning_rate: training.learning_rate,
            weight_decay: training.weight_decay,
            early_stopping_patience: training.early_stopping_patience,
            lr_schedule: training.lr_schedule,
            min_lr_fraction: training.min_lr_fraction,
            label_smoothing: training.label_smoothing,
        })
    }
}

/// The one-hot width limit of a recipe that does not set `preprocessing.max_categories`.
pub const DEFAULT_MAX_CATEGORIES: usize = 100;

/// Names become directory names in a model repository and URL path segments in serving.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl TrainConfig {
    /// Learning rate for a zero-based epoch.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.learning_rate,
            LrSchedule::Cosine => {
                let progress = epoch as f64 / (self.epochs.max(2) - 1) as f64;
                let floor = self.learning_rate * self.min_lr_fraction;
                floor + (self.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// What the defaults are chosen from: the task and the data's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    pub task: Task,
    /// Rows in the training file.
    pub rows: usize,
    /// Feature columns.
    pub features: usize,
}

/// `configs/defaults.toml`: a base recipe and rules laid over it for some data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    base: toml::Table,
    #[serde(default)]
    when: Vec<Rule>,
}

/// One `[[when]]` block: `set` applies when every condition given holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// Named in the artifact's provenance when it applied.
    name: String,
    /// `classification` or `regression`.
    task: Option<TaskFamily>,
    min_rows: Option<usize>,
    max_rows: Option<usize>,
    min_features: Option<usize>,
    /// Holds when the data has more feature columns than rows (`true`) or not (`false`).
    more_features_than_rows: Option<bool>,
    set: toml::Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TaskFamily {
    Classification,
    Regression,
}

impl Rule {
    fn holds(&self, shape: &DataShape) -> bool {
        let family = if shape.task.is_classification() { TaskFamily::Classification } else { TaskFamily::Regression };
        self.task.is_none_or(|t| t == family)
            && self.min_rows.is_none_or(|n| shape.rows >= n)
            && self.max_rows.is_none_or(|n| shape.rows <= n)
            && self.min_features.is_none_or(|n| shape.features >= n)
            && self.more_features_than_rows.is_none_or(|wide| wide == (shape.features > shape.rows))
    }
}

fn defaults() -> anyhow::Result<Defaults> {
    toml::from_str(DEFAULTS_TOML).map_err(|e| anyhow::anyhow!("configs/defaults.toml: {}", e.to_string().trim_end()))
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn lay_over(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => lay_over(below, above),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A recipe before it meets the data: an optional `--config` file and the command line.
#[derive(Debug, Clone, Default)]
pub struct Recipe {
    file: Option<PathBuf>,
    table: toml::Table,
    overrides: Overrides,
}

impl Recipe {
    /// Reads the recipe file, if any; its values are checked when the recipe is resolved.
    pub fn new(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading recipe {}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("recipe {}: {}", path.display(), e.to_string().trim_end()))?
            }
        };
        Ok(Self { file: file.map(Path::to_path_buf), table, overrides })
    }

    fn data_value(&self, key: &str) -> Option<&toml::Value> {
        self.table.get("data").and_then(toml::Value::as_table).and_then(|d| d.get(key))
    }

    /// The training file: `--data`, else the recipe's `data.path`.
    pub fn data_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.overrides.data {
            return Ok(path.clone());
        }
        match self.data_value("path") {
            Some(toml::Value::String(path)) => Ok(PathBuf::from(path)),
            Some(other) => bail!("{}: data.path must be a string, got {other}", self.describe()),
            None => bail!("no training data: give --data FILE (and --target COLUMN), or a --config recipe naming them"),
        }
    }

    /// The target column: `--target`, else the recipe's `data.target`.
    pub fn target(&self) -> anyhow::Result<String> {
        if let Some(target) = &self.overrides.target {
            return Ok(target.clone());
        }
        match self.data_value("target") {
            Some(toml::Value::String(target)) => Ok(target.clone()),
            Some(other) => bail!("{}: data.target must be a string, got {other}", self.describe()),
            None => bail!("no target column: give --target COLUMN, or a --config recipe with data.target"),
        }
    }

    /// The task the recipe declares (`data.task`), if it does.
    pub fn declared_task(&self) -> anyhow::Result<Option<Task>> {
        self.data_value("task")
            .map(|v| v.clone().try_into::<Task>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: data.task: {}", self.describe(), e.to_string().trim_end()))
    }

    /// How many feature columns the recipe lists (`data.features`), if it lists them.
    pub fn declared_features(&self) -> Option<usize> {
        self.data_value("features").and_then(toml::Value::as_array).map(Vec::len)
    }

    fn describe(&self) -> String {
        match &self.file {
            Some(path) => format!("recipe {}", path.display()),
            None => "the command line".to_string(),
        }
    }

    /// The command line as a recipe layer.
    fn overrides_table(&self) -> toml::Table {
        let o = &self.overrides;
        let mut top = toml::Table::new();
        let mut section = |name: &str, key: &str, value: toml::Value| {
            let entry = top.entry(name.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(table) = entry {
                table.insert(key.to_string(), value);
            }
        };
        let path = |p: &PathBuf| toml::Value::String(p.display().to_string());
        if let Some(p) = &o.data {
            section("data", "path", path(p));
        }
        if let Some(p) = &o.test_data {
            section("data", "test_path", path(p));
        }
        if let Some(t) = &o.target {
            section("data", "target", toml::Value::String(t.clone()));
        }
        if let Some(seed) = o.seed {
            section("split", "seed", toml::Value::Integer(seed.min(i64::MAX as u64) as i64));
        }
        if let Some(epochs) = o.epochs {
            section("training", "epochs", toml::Value::Integer(epochs.min(i64::MAX as usize) as i64));
        }
        if let Some(name) = &o.name {
            top.insert("name".to_string(), toml::Value::String(name.clone()));
        }
        top
    }

    /// The recipe for data of this shape: the defaults that hold for it, the file, the command
    /// line, each over the ones before. Without a name anywhere, the model is named after the
    /// data file.
    pub fn resolve(&self, shape: &DataShape) -> anyhow::Result<TrainConfig> {
        let defaults = defaults()?;
        let mut merged = defaults.base.clone();
        let mut sources = vec!["defaults (configs/defaults.toml)".to_string()];
        for rule in defaults.when.iter().filter(|r| r.holds(shape)) {
            lay_over(&mut merged, &rule.set);
            sources.push(format!("defaults when {}", rule.name));
        }
        if let Some(file) = &self.file {
            lay_over(&mut merged, &self.table);
            sources.push(format!("recipe {}", file.display()));
        }
        let command_line = self.overrides_table();
        if !command_line.is_empty() {
            lay_over(&mut merged, &command_line);
            sources.push("command line".to_string());
        }
        if !merged.contains_key("name") {
            merged.insert("name".to_string(), toml::Value::String(name_from_path(&self.data_path()?)));
        }
        let raw: RawTrainConfig = merged
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", self.describe(), e.to_string().trim_end()))?;
        let mut config = TrainConfig::try_from(raw).with_context(|| self.describe())?;
        config.sources = sources;
        Ok(config)
    }
}

/// A model name from a data file's name: `data/My Sales.csv` is `My-Sales`.
pub fn name_from_path(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    if is_valid_name(&name) { name } else { "model".to_string() }
}

impl RawTrainConfig {
    /// The recipe as TOML, as `trainer train --config` reads it.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("writing the recipe as TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(task: Task, rows: usize, features: usize) -> DataShape {
        DataShape { task, rows, features }
    }

    fn recipe(file_text: Option<&str>, overrides: Overrides) -> Recipe {
        let table = file_text.map(|t| toml::from_str(t).expect("TOML")).unwrap_or_default();
        Recipe { file: file_text.map(|_| PathBuf::from("mine.toml")), table, overrides }
    }

    fn data(path: &str, target: &str) -> Overrides {
        Overrides { data: Some(path.into()), target: Some(target.into()), ..Overrides::default() }
    }

    #[test]
    fn the_defaults_parse_and_resolve_for_every_task_and_size() {
        let defaults = defaults().expect("configs/defaults.toml parses");
        assert!(!defaults.when.is_empty());
        for task in [Task::Regression, Task::BinaryClassification, Task::MulticlassClassification] {
            for (rows, features) in [(10, 50), (150, 4), (5_000, 20), (60_000, 9), (2_000_000, 30)] {
                let config = recipe(None, data("dir/sales 2024.csv", "y"))
                    .resolve(&shape(task, rows, features))
                    .unwrap_or_else(|e| panic!("{task:?} {rows}x{features}: {e:#}"));
                assert_eq!(config.name, "sales-2024");
                assert_eq!(config.target, "y");
                assert_eq!(config.target_transform, TargetScaling::Auto);
                assert!(config.sources[0].starts_with("defaults"), "{:?}", config.sources);
                assert_eq!(config.sources.last().map(String::as_str), Some("command line"));
                // The recipe written down runs again to the same values.
                let again: RawTrainConfig = toml::from_str(&config.recipe.to_toml().expect("TOML")).expect("parses");
                let again = TrainConfig::try_from(again).expect("valid");
                assert_eq!(format!("{:?}", again.recipe), format!("{:?}", config.recipe));
            }
        }
    }

    #[test]
    fn size_rules_apply_only_to_the_data_they_name() {
        let small = recipe(None, data("d.csv", "y")).resolve(&shape(Task::Regression, 300, 5)).expect("resolves");
        let large = recipe(None, data("d.csv", "y")).resolve(&shape(Task::Regression, 500_000, 5)).expect("resolves");
        assert_ne!(small.batch_size, large.batch_size, "{:?} vs {:?}", small.sources, large.sources);
        assert!(small.sources.len() != large.sources.len() || small.sources != large.sources);
    }

    #[test]
    fn a_recipe_file_overrides_the_defaults_and_the_command_line_overrides_both() {
        let file = "[training]\nepochs = 7\nbatch_size = 16\n[model]\nensemble = 2\n";
        let overrides = Overrides { epochs: Some(3), ..data("d.csv", "y") };
        let config = recipe(Some(file), overrides).resolve(&shape(Task::Regression, 1000, 3)).expect("resolves");
        assert_eq!((config.epochs, config.batch_size, config.ensemble), (3, 16, 2));
        assert!(config.sources.iter().any(|s| s == "recipe mine.toml"), "{:?}", config.sources);
    }

    #[test]
    fn unknown_keys_in_a_partial_recipe_are_named() {
        let error = recipe(Some("[training]\nepochz = 3\n"), data("d.csv", "y"))
            .resolve(&shape(Task::Regression, 1000, 3))
            .expect_err("refused");
        let message = format!("{error:#}");
        assert!(message.contains("unknown field `epochz`") && message.contains("mine.toml"), "{message}");
    }

    #[test]
    fn without_data_or_target_the_error_says_what_to_give() {
        let error = recipe(None, Overrides::default()).data_path().expect_err("no data");
        assert!(error.to_string().contains("--data FILE"), "{error}");
        let error = recipe(None, Overrides { data: Some("d.csv".into()), ..Overrides::default() })
            .target()
            .expect_err("no target");
        assert!(error.to_string().contains("--target COLUMN"), "{error}");
    }

    #[test]
    fn names_from_paths_are_valid_model_names() {
        assert_eq!(name_from_path(Path::new("data/My Sales.csv")), "My-Sales");
        assert_eq!(name_from_path(Path::new("x/é.parquet")), "model");
        assert_eq!(name_from_path(Path::new("/tmp/.hidden.csv")), "hidden");
        assert_eq!(name_from_path(Path::new("runs/v1.2_final.csv")), "v1.2_final");
    }
}
