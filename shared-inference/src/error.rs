//! The error types of the inference core. Each variant carries the facts a user needs to fix the
//! problem (column, row, value, expected vs got); none of them formats HTTP or exit codes.

use std::path::PathBuf;

/// A problem with the records or columns handed to the predictor. The message names the column
/// and what was wrong, and leaves out the row: each front end says where in its own terms (a
/// file's line, a request's row), from [`InputError::row`], so the same problem reads the same
/// on every path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("missing column '{column}': the model expects columns {expected:?}")]
    MissingColumn { column: String, expected: Vec<String> },

    #[error("unknown column '{column}': the model expects columns {expected:?}")]
    UnknownColumn { column: String, expected: Vec<String> },

    #[error("{got} columns were given, but the model expects the {} columns {expected:?}", expected.len())]
    ColumnCount { expected: Vec<String>, got: usize },

    #[error("column '{column}' was given twice")]
    DuplicateColumn { column: String },

    #[error("column '{column}' has {got} rows but column '{first}' has {expected}")]
    RowCountMismatch { column: String, first: String, expected: usize, got: usize },

    #[error("column '{column}': expected a number, got {got}")]
    NotANumber { column: String, row: usize, got: String },

    #[error("column '{column}': expected text (a category), got {got}")]
    NotText { column: String, row: usize, got: String },

    #[error("column '{column}': unknown category '{value}'; known categories: {known:?}")]
    UnknownCategory { column: String, row: usize, value: String, known: Vec<String> },

    /// A number the network cannot take: infinite, or so far from the training data that its
    /// standardized value overflows a 32-bit float.
    #[error(
        "column '{column}': the number {value:?} is out of range (standardized with the training data's mean and \
         standard deviation, it is not a finite 32-bit float)"
    )]
    OutOfRange { column: String, row: usize, value: f64 },

    /// Every input was in range, yet the prediction is not a finite number: the row is so far
    /// from the training data that the network or the inverse target transform overflows.
    #[error(
        "the prediction is not a finite number ({value}): the inputs are too far outside the training data for this \
         model"
    )]
    NotFinite { row: usize, value: f32 },
}

impl InputError {
    /// The zero-based row the error is about, when it is about one row.
    pub fn row(&self) -> Option<usize> {
        match self {
            Self::NotANumber { row, .. }
            | Self::NotText { row, .. }
            | Self::UnknownCategory { row, .. }
            | Self::OutOfRange { row, .. }
            | Self::NotFinite { row, .. } => Some(*row),
            _ => None,
        }
    }
}

/// A problem reading or checking a model artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The OS error is the source, not part of the message, so a chain of causes prints it once.
    #[error("reading {path:?}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("manifest is not valid: {0}")]
    Manifest(String),

    #[error("artifact format version {found} is not supported (this build reads versions 2 to {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },

    #[error("weights checksum mismatch: manifest says sha256 {expected}, file has {actual}")]
    ChecksumMismatch { expected: String, actual: String },

    #[error(
        "manifest checksum mismatch: manifest_sha256 is '{expected}' but its content hashes to {actual} (was the \
         manifest edited?)"
    )]
    ManifestChecksumMismatch { expected: String, actual: String },

    #[error("weights do not fit the network described in the manifest: {0}")]
    Weights(String),
}
