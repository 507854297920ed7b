//! Training recipes: a TOML file parsed into [`RawTrainConfig`] (unknown keys rejected), command
//! line overrides applied, then validated once into a [`TrainConfig`] that cannot be invalid.
//! Defaults live in the recipes under `configs/`, except where a key is documented as optional.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use shared_inference::{ActivationKind, Task, UnknownCategoryPolicy};

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
    /// Regression only: `standardize` (default) or `log_standardize`.
    pub target_transform: Option<TargetScaling>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetScaling {
    Standardize,
    LogStandardize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub hidden_layers: Vec<usize>,
    pub activation: ActivationKind,
    pub dropout: f64,
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
    pub target: Option<String>,
    pub name: Option<String>,
    pub seed: Option<u64>,
    pub epochs: Option<usize>,
}

/// A validated recipe: every number is in range and every choice is made.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    pub name: String,
    pub data_path: PathBuf,
    pub target: String,
    pub features: Option<Vec<String>>,
    pub categorical: Vec<String>,
    pub numeric: Vec<String>,
    pub task: Option<Task>,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
    pub unknown_category: UnknownCategoryPolicy,
    pub target_transform: TargetScaling,
    pub hidden_layers: Vec<usize>,
    pub activation: ActivationKind,
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub early_stopping_patience: usize,
    pub lr_schedule: LrSchedule,
    pub min_lr_fraction: f64,
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
            name,
            data_path: data.path,
            target: data.target,
            features: data.features,
            categorical: data.categorical,
            numeric: data.numeric,
            task: data.task,
            validation_fraction: split.validation_fraction,
            test_fraction: split.test_fraction,
            seed: split.seed,
            unknown_category: preprocessing.unknown_category.unwrap_or(UnknownCategoryPolicy::Error),
            target_transform: preprocessing.target_transform.unwrap_or(TargetScaling::Standardize),
            hidden_layers: model.hidden_layers,
            activation: model.activation,
            dropout: model.dropout,
            epochs: training.epochs,
            batch_size: training.batch_size,
            learning_rate: training.learning_rate,
            weight_decay: training.weight_decay,
            early_stopping_patience: training.early_stopping_patience,
            lr_schedule: training.lr_schedule,
            min_lr_fraction: training.min_lr_fraction,
        })
    }
}

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
