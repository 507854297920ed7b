//! The input schema: which raw columns a model reads, of which kind, and what it predicts.
//! The schema is decided by the trainer and stored in the manifest; here it is only described.

use serde::{Deserialize, Serialize};

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Regression,
    BinaryClassification,
    MulticlassClassification,
}

impl Task {
    pub fn is_classification(self) -> bool {
        !matches!(self, Task::Regression)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Regression => "regression",
            Task::BinaryClassification => "binary_classification",
            Task::MulticlassClassification => "multiclass_classification",
        }
    }
}

/// How a raw column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// A number; missing values are imputed with the training median.
    Numeric,
    /// A category given as text; one-hot encoded over the training vocabulary.
    Categorical,
}

/// One raw input column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
}

/// The raw columns a model reads, in the order the preprocessing lays them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub features: Vec<ColumnSpec>,
    pub target: String,
    pub task: Task,
}

impl Schema {
    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|c| c.name.clone()).collect()
    }

    pub fn position(&self, column: &str) -> Option<usize> {
        self.features.iter().position(|c| c.name == column)
    }
}
