//! The input schema: which raw columns a model reads, of which kind, and what it predicts.
//! The schema is decided by the trainer and stored in the manifest; here it is only described.

use serde::{Deserialize, Serialize};

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One number per row, in the target's units.
    Regression,
    /// One of two classes per row, with both probabilities.
    BinaryClassification,
    /// One of several classes per row, with every class's probability.
    MulticlassClassification,
}

impl Task {
    /// Whether the model predicts a class (binary or multiclass) rather than a number.
    pub fn is_classification(self) -> bool {
        !matches!(self, Task::Regression)
    }

    /// The name the manifest gives the task: `regression`, `binary_classification` or
    /// `multiclass_classification`.
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
    /// The column's name, as records and file headers give it (compared exactly).
    pub name: String,
    /// How its values are read.
    pub kind: ColumnKind,
}

/// The raw columns a model reads, in the order the preprocessing lays them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The input columns, in the order batches hold them.
    pub features: Vec<ColumnSpec>,
    /// The name of the column the model was trained to predict; not an input.
    pub target: String,
    /// What the model predicts.
    pub task: Task,
}

impl Schema {
    /// The feature columns' names, in schema order.
    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|c| c.name.clone()).collect()
    }

    /// The zero-based index in [`Self::features`] of the column named `column`; `None` for a
    /// column the model does not read.
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

/// String equality, inlined for the short strings column names and categories usually are:
/// a `memcmp` call, or a byte-by-byte loop, per comparison dominated reading and transforming
/// large batches. Up to 32 bytes it compares a few overlapping machine words instead.
#[inline]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Each arm reads windows that together cover all n bytes (overlapping where n is not a
    // multiple of the window), so equal windows mean equal strings.
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("a slice of 8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("a slice of 4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => {
            word(a, 0) == word(b, 0)
                && word(a, 8) == word(b, 8)
                && word(a, n - 16) == word(b, n - 16)
                && word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_agrees_with_equality_at_every_length() {
        let base: String = (0..40u8).map(|i| char::from(b'a' + i % 26)).collect();
        for n in 0..=40 {
            let a = &base[..n];
            assert!(same_text(a, a), "{n} bytes equal to themselves");
            let copy = String::from(a);
            assert!(same_text(a, &copy), "{n} bytes, another buffer");
            for at in 0..n {
                // One byte changed at each position must be seen.
                let mut other = a.as_bytes().to_vec();
                other[at] = b'Z';
                let other = String::from_utf8(other).expect("ascii");
                assert!(!same_text(a, &other), "{n} bytes, differing at {at}");
            }
            if n > 0 {
                assert!(!same_text(a, &base[..n - 1]), "{n} vs {} bytes", n - 1);
            }
        }
        assert!(same_text("Très", "Très") && !same_text("Très", "Trés"));
    }
}
