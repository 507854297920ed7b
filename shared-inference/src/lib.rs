//! Everything a prediction needs, shared by the trainer and the server: the input schema, fitted
//! preprocessing (transform only), the MLP and its forward pass, postprocessing, artifact reading
//! and the [`Predictor`]. Nothing here fits state, parses CLI flags, reads CSV or speaks HTTP.

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
