//! The error types of the inference core. Each variant carries the facts a user needs to fix the
//! problem (column, row, value, expected vs got); none of them formats HTTP or exit codes.

use std::path::PathBuf;

/// A problem with the records or columns handed to the predictor. The message names the column
/// and what was wrong, and leaves out the row: each front end says where in its own terms (a
/// file's line, a request's row), from [`InputError::row`], so the same problem reads the same
/// on every path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A feature column the input does not give: absent from a record, or past the end of the
    /// columns of a batch.
    #[error("missing column '{column}': the model expects columns {expected:?}")]
    MissingColumn {
        /// The first column missing, in schema order.
        column: String,
        /// Every feature column, in schema order.
        expected: Vec<String>,
    },

    /// A record names a column the model does not read.
    #[error("unknown column '{column}': the model expects columns {expected:?}")]
    UnknownColumn {
        /// The name as the record gave it.
        column: String,
        /// Every feature column, in schema order.
        expected: Vec<String>,
    },

    /// A batch was given more columns than the model has features.
    #[error("{got} columns were given, but the model expects the {} columns {expected:?}", expected.len())]
    ColumnCount {
        /// Every feature column, in schema order.
        expected: Vec<String>,
        /// How many columns were given.
        got: usize,
    },

    /// A record names the same column twice.
    #[error("column '{column}' was given twice")]
    DuplicateColumn {
        /// The name as the record gave it.
        column: String,
    },

    /// The columns of a batch differ in length.
    #[error("column '{column}' has {got} rows but column '{first}' has {expected}")]
    RowCountMismatch {
        /// The first column whose length differs from the first column's.
        column: String,
        /// The first column, whose length sets the batch's number of rows.
        first: String,
        /// The first column's length.
        expected: usize,
        /// This column's length.
        got: usize,
    },

    /// A numeric column was given text that does not parse as a number, or (for a whole column
    /// of a batch, `row` 0) categories.
    #[error("column '{column}': expected a number, got {got}")]
    NotANumber {
        /// The feature column.
        column: String,
        /// Zero-based row of the value.
        row: usize,
        /// What was given instead, in words: the text, quoted, or `text` for a whole column.
        got: String,
    },

    /// A categorical column was given a number, or (for a whole column of a batch, `row` 0)
    /// numbers.
    #[error("column '{column}': expected text (a category), got {got}")]
    NotText {
        /// The feature column.
        column: String,
        /// Zero-based row of the value.
        row: usize,
        /// What was given instead, in words: `the number …`, or `numbers` for a whole column.
        got: String,
    },

    /// A category never seen in training, in a column whose policy is
    /// [`UnknownCategoryPolicy::Error`](crate::preprocess::UnknownCategoryPolicy::Error).
    #[error("column '{column}': unknown category '{value}'; known categories: {known:?}")]
    UnknownCategory {
        /// The feature column.
        column: String,
        /// Zero-based row of the value.
        row: usize,
        /// The category as given.
        value: String,
        /// The training vocabulary, in one-hot order.
        known: Vec<String>,
    },

    /// A number the network cannot take: infinite, or so far from the training data that its
    /// standardized value overflows a 32-bit float.
    #[error(
        "column '{column}': the number {value:?} is out of range (standardized with the training data's mean and \
         standard deviation, it is not a finite 32-bit float)"
    )]
    OutOfRange {
        /// The feature column.
        column: String,
        /// Zero-based row of the value.
        row: usize,
        /// The number as given.
        value: f64,
    },

    /// Every input was in range, yet the prediction is not a finite number: the row is so far
    /// from the training data that the network or the inverse target transform overflows.
    #[error(
        "the prediction is not a finite number ({value}): the inputs are too far outside the training data for this \
         model"
    )]
    NotFinite {
        /// Zero-based row of the prediction.
        row: usize,
        /// The first value of the row's prediction that is not finite.
        value: f32,
    },
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
    /// A file of the artifact could not be read. The OS error is the source, not part of the
    /// message, so a chain of causes prints it once.
    #[error("reading {path:?}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// The manifest is not JSON of the expected form, its parts disagree with each other, it
    /// holds numbers no model can be served with, it names a weights file outside its directory,
    /// or it cannot be written; the message says which.
    #[error("manifest is not valid: {0}")]
    Manifest(String),

    /// The manifest's `format_version` is outside the versions this build reads.
    #[error("artifact format version {found} is not supported (this build reads versions 2 to {supported})")]
    UnsupportedFormat {
        /// The manifest's `format_version`.
        found: u32,
        /// The newest version this build reads,
        /// [`FORMAT_VERSION`](crate::artifact::FORMAT_VERSION).
        supported: u32,
    },

    /// The weights' bytes do not hash to the checksum the manifest gives.
    #[error("weights checksum mismatch: manifest says sha256 {expected}, file has {actual}")]
    ChecksumMismatch {
        /// The manifest's `weights.sha256`.
        expected: String,
        /// The weights' SHA-256, lower-case hex.
        actual: String,
    },

    /// The manifest's content does not hash to its own `manifest_sha256`: it was edited, or
    /// never sealed.
    #[error(
        "manifest checksum mismatch: manifest_sha256 is '{expected}' but its content hashes to {actual} (was the \
         manifest edited?)"
    )]
    ManifestChecksumMismatch {
        /// The manifest's `manifest_sha256`.
        expected: String,
        /// The SHA-256 of the manifest's content, lower-case hex.
        actual: String,
    },

    /// The weights cannot be decoded, or their layers do not have the shapes the manifest
    /// describes.
    #[error("weights do not fit the network described in the manifest: {0}")]
    Weights(String),
}
