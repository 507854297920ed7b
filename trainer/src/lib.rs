//! The trainer: training-only code on top of `shared-inference`. It loads data with polars,
//! splits it, fits preprocessing, trains with burn autodiff (CPU or CUDA), evaluates through the
//! shared `Predictor`, and writes versioned artifacts. Serving never links this crate.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod fit;
pub mod metrics;
pub mod onnx;
pub mod pipeline;
pub mod report;
pub mod split;
pub mod train;
pub mod writer;

pub use config::{Overrides, RawTrainConfig, Recipe, TrainConfig};
pub use pipeline::{Evaluation, TrainOptions, TrainOutcome, evaluate, train, train_recipe};
