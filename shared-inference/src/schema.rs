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
        self.features.iter().position(|c| same_text(&c.name, column))
    }

    /// [`Self::position`], trying `hint` first: records usually name their columns in schema
    /// order, so the `i`-th name of a record is most often feature `i`.
    #[inline]
    pub fn position_from(&self, hint: usize, column: &str) -> Option<usize> {
        match self.features.get(hint) {
            Some(spec) if same_text(&spec.name, column) => Some(hint),
            _ => self.position(column),
        }
    }
}

/// String equality, inlined for the short strings column names and categories usually are: a
/// `memcmp` call per comparison dominated reading and transforming large batches.
#[inline]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && if a.len() <= 16 { a.iter().zip(b).all(|(x, y)| x == y) } else { a == b }
}
