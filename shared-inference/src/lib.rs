//! Everything a prediction needs, shared by the trainer and the server: the input schema, fitted
//! preprocessing (transform only), the MLP and its forward pass, postprocessing, artifact reading
//! and the [`Predictor`]. Nothing here fits state, parses CLI flags, reads CSV or speaks HTTP.
//!
//! A prediction runs in four stages, each a module: raw values arrive as a [`ColumnBatch`]
//! ([`input`]), the [`Preprocessor`] turns them into features ([`preprocess`]), the [`Network`]
//! runs the MLP's forward pass on them ([`kernel`]), and [`postprocess`] turns its outputs into
//! [`Predictions`]. A [`Predictor`], loaded from an artifact directory ([`artifact`]), chains the
//! four.
//!
//! # Embedding a model
//!
//! Load a version directory (`manifest.json` and the weights it names), then hand it records
//! as `(column, value)` pairs in any order, or a [`ColumnBatch`] of whole columns in schema
//! order:
//!
//! ```no_run
//! use std::path::Path;
//!
//! use shared_inference::{Cell, ColumnBatch, ColumnValues, Predictions, Predictor};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Reads and checks the manifest and the weights' checksum.
//!     let predictor = Predictor::load(Path::new("models/diamonds/1"))?;
//!
//!     // One record per row; numbers may also be given as text, and a value may be missing.
//!     let records = [
//!         vec![("carat", Cell::Number(0.7)), ("cut", Cell::Text("Ideal"))],
//!         vec![("cut", Cell::Text("Good")), ("carat", Cell::Missing)],
//!     ];
//!     let predictions = predictor.predict_records(&records)?;
//!
//!     // The same rows as columns, in the order of `predictor.schema().features`.
//!     let batch = ColumnBatch::new(
//!         predictor.schema(),
//!         vec![
//!             ColumnValues::Numeric(vec![0.7, f64::NAN]),
//!             ColumnValues::Categorical(vec![Some("Ideal"), Some("Good")]),
//!         ],
//!     )?;
//!     assert_eq!(predictor.predict(&batch)?.n_rows(), predictions.n_rows());
//!
//!     match predictions {
//!         Predictions::Regression { values } => println!("{values:?}"),
//!         Predictions::Classification { probabilities, labels, n_classes } => {
//!             for (row, &label) in labels.iter().enumerate() {
//!                 let row_probabilities = &probabilities[row * n_classes..(row + 1) * n_classes];
//!                 println!("{}: {row_probabilities:?}", predictor.labels()[label]);
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! A bad value fails the whole call with an [`InputError`] that names the column and carries the
//! row ([`InputError::row`]); [`Predictor::predict_partial`] predicts the other rows and lists the
//! failures instead.

#![warn(missing_docs)]

pub mod artifact;
pub mod error;
pub mod input;
pub mod kernel;
pub mod model;
pub mod output;
pub mod postprocess;
pub mod predictor;
pub mod preprocess;
pub mod schema;

pub use artifact::{Artifact, FORMAT_VERSION, MANIFEST_FILE, Manifest, WEIGHTS_FILE};
pub use error::{ArtifactError, InputError};
pub use input::{Cell, ColumnBatch, ColumnValues};
pub use kernel::Network;
pub use model::{ActivationKind, Mlp, MlpConfig};
pub use output::{OutputSpec, OutputType};
pub use postprocess::{Predictions, TargetTransform};
pub use predictor::{CpuBackend, Predictor};
pub use preprocess::{FittedColumn, Preprocessor, UnknownCategoryPolicy};
pub use schema::{ColumnKind, ColumnSpec, Schema, Task};
