//! The [`Predictor`]: raw records in, predictions out, on the CPU backend. It chains the shared
//! preprocessing, the network's forward pass and postprocessing, and it is the only way serving
//! and the trainer's evaluation turn records into predictions.

use std::path::Path;

use burn_core::tensor::{Tensor, TensorData};
use burn_ndarray::{NdArray, NdArrayDevice};

use crate::Manifest;
use crate::artifact::Artifact;
use crate::error::{ArtifactError, InputError};
use crate::input::{Cell, ColumnBatch};
use crate::model::{FoldedMlp, Mlp};
use crate::postprocess::{self, Predictions};
use crate::schema::{Schema, Task};

/// The backend every prediction runs on: burn-ndarray, single-threaded, f32.
pub type CpuBackend = NdArray<f32>;

/// A loaded model, ready to predict. Cheap to share between threads behind an `Arc`.
#[derive(Debug)]
pub struct Predictor {
    manifest: Manifest,
    model: Mlp<CpuBackend>,
    /// The same network with biases folded into its matrix products, run straight through the
    /// matrix kernel, where that applies; then features carry a trailing 1 per row (see
    /// [`FoldedMlp`]).
    folded: Option<FoldedMlp>,
    device: NdArrayDevice,
}

impl Predictor {
    pub fn new(artifact: &Artifact) -> Result<Self, ArtifactError> {
        let device = NdArrayDevice::Cpu;
        let model = artifact.model::<CpuBackend>(&device)?;
        let folded = FoldedMlp::fold(&model);
        Ok(Self { manifest: artifact.manifest.clone(), model, folded, device })
    }

    /// Reads, checks and loads the artifact in a version directory.
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        Self::new(&Artifact::read_dir(dir)?)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn schema(&self) -> &Schema {
        &self.manifest.schema
    }

    /// Class names in output order; empty for regression.
    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// Predicts every row of a batch, or fails on the first row that cannot be transformed.
    pub fn predict(&self, batch: &ColumnBatch<'_>) -> Result<Predictions, InputError> {
        let (predictions, errors) = self.predict_partial(batch);
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(predictions),
        }
    }

    /// Predicts every row it can. Rows that fail are listed with their error, one per row (with
    /// the zero-based row index inside the error); their entries in the predictions hold no
    /// meaningful value and must not be reported.
    pub fn predict_partial(&self, batch: &ColumnBatch<'_>) -> (Predictions, Vec<InputError>) {
        let (features, errors) = self.preprocess_partial(batch);
        (self.predict_features(features, batch.n_rows()), errors)
    }

    /// The first half of [`Self::predict_partial`]: features for [`Self::predict_features`],
    /// column-major `[feature_width(), n_rows]` (each feature's value for every row, then the
    /// next feature's), and the rows that failed (their features are zeros).
    pub fn preprocess_partial(&self, batch: &ColumnBatch<'_>) -> (Vec<f32>, Vec<InputError>) {
        let mut features = Vec::new();
        let width = self.feature_width();
        let errors = self.manifest.preprocessing.transform_columns_into(batch, &mut features, width);
        if self.folded.is_some() {
            features[(width - 1) * batch.n_rows()..].fill(1.0);
        }
        (features, errors)
    }

    /// Values per row in the features [`Self::preprocess_partial`] makes and
    /// [`Self::forward`] takes: the preprocessing's features, plus a trailing 1 when the
    /// network's biases are folded into its matrix products.
    pub fn feature_width(&self) -> usize {
        self.manifest.network.n_features + usize::from(self.folded.is_some())
    }

    /// Predicts records given as `(column, value)` pairs; see [`ColumnBatch::from_records`].
    pub fn predict_records<'a, R>(&self, records: &'a [R]) -> Result<Predictions, InputError>
    where
        R: AsRef<[(&'a str, Cell<'a>)]>,
    {
        self.predict(&ColumnBatch::from_records(self.schema(), records)?)
    }

    /// Features from [`Self::preprocess_partial`] -> postprocessed predictions.
    pub fn predict_features(&self, features: Vec<f32>, n_rows: usize) -> Predictions {
        let outputs = self.forward(features, n_rows);
        match self.manifest.schema.task {
            Task::Regression => postprocess::regression(&outputs, &self.manifest.target_transform),
            Task::BinaryClassification | Task::MulticlassClassification => {
                postprocess::classification(&outputs, self.manifest.network.n_outputs)
            }
        }
    }

    /// The network alone: features `[feature_width(), n_rows]`, column-major, from
    /// [`Self::preprocess_partial`] -> outputs `[n_rows, n_outputs]`, row-major.
    pub fn forward(&self, features: Vec<f32>, n_rows: usize) -> Vec<f32> {
        if n_rows == 0 {
            return Vec::new();
        }
        if let Some(folded) = &self.folded {
            return folded.forward(&features, n_rows);
        }
        let width = self.feature_width();
        debug_assert_eq!(features.len(), n_rows * width);
        // The module takes rows: `[n_rows, width]`, row-major.
        let mut rows = vec![0.0f32; n_rows * width];
        for (feature, values) in features.chunks_exact(n_rows).enumerate() {
            for (row, &value) in values.iter().enumerate() {
                rows[row * width + feature] = value;
            }
        }
        let input = Tensor::<CpuBackend, 2>::from_data(TensorData::new(rows, [n_rows, width]), &self.device);
        // The backend is f32 end to end, so this conversion cannot fail; an empty result would
        // surface as a row-count mismatch in the caller's tests rather than a panic here.
        self.model.forward(input).into_data().into_vec::<f32>().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn predictor_can_be_shared_between_threads() {
        assert_send_sync::<Predictor>();
    }
}
