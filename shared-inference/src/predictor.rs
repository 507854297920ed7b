//! The [`Predictor`]: raw records in, predictions out, on the CPU backend. It chains the shared
//! preprocessing, the network's forward pass and postprocessing, and it is the only way serving
//! and the trainer's evaluation turn records into predictions.

use std::path::Path;

use burn_ndarray::{NdArray, NdArrayDevice};

use crate::Manifest;
use crate::artifact::Artifact;
use crate::error::{ArtifactError, InputError};
use crate::input::{Cell, ColumnBatch};
use crate::kernel::Network;
use crate::postprocess::{self, Predictions};
use crate::schema::{Schema, Task};

/// The backend the weights are loaded with: burn-ndarray, single-threaded, f32. Predictions run
/// on the inference kernel ([`Network`]), not on the backend.
pub type CpuBackend = NdArray<f32>;

/// A loaded model, ready to predict. Cheap to share between threads behind an `Arc`.
#[derive(Debug)]
pub struct Predictor {
    manifest: Manifest,
    network: Network,
}

impl Predictor {
    /// Loads a checked artifact's weights into the network.
    ///
    /// # Errors
    /// [`ArtifactError::Weights`] if the weights do not load into the network the manifest
    /// describes (see [`Artifact::model`]), or the network does not read as many features as the
    /// preprocessing makes.
    pub fn new(artifact: &Artifact) -> Result<Self, ArtifactError> {
        let model = artifact.model::<CpuBackend>(&NdArrayDevice::Cpu)?;
        let network = model.to_network()?;
        if network.n_inputs() != artifact.manifest.network.n_features {
            return Err(ArtifactError::Weights(format!(
                "the network reads {} features but the preprocessing makes {}",
                network.n_inputs(),
                artifact.manifest.network.n_features
            )));
        }
        Ok(Self { manifest: artifact.manifest.clone(), network })
    }

    /// Reads, checks and loads the artifact in a version directory (`manifest.json` and the
    /// weights file it names).
    ///
    /// # Errors
    /// The errors of [`Artifact::read_dir`] ([`ArtifactError::Io`], [`ArtifactError::Manifest`],
    /// [`ArtifactError::UnsupportedFormat`], [`ArtifactError::ManifestChecksumMismatch`],
    /// [`ArtifactError::ChecksumMismatch`]) and of [`Self::new`] ([`ArtifactError::Weights`]).
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        Self::new(&Artifact::read_dir(dir)?)
    }

    /// The artifact's manifest: schema, preprocessing, network shape, labels, provenance.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The raw columns the model reads, in the order a [`ColumnBatch`] holds them.
    pub fn schema(&self) -> &Schema {
        &self.manifest.schema
    }

    /// Class names in output order; empty for regression.
    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// Predicts every row of a batch, or fails on the first row that cannot be transformed or
    /// whose prediction is not finite. The predictions have `batch.n_rows()` rows.
    ///
    /// # Errors
    /// The lowest failing row's error: [`InputError::UnknownCategory`],
    /// [`InputError::OutOfRange`] or [`InputError::NotFinite`].
    ///
    /// # Panics
    /// If `batch` was built against a schema whose column kinds differ from [`Self::schema`]'s.
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
    ///
    /// A row whose prediction is not finite fails with [`InputError::NotFinite`]: no caller
    /// ever reports `inf` or `NaN` as an answer. The errors are in row order; the predictions
    /// have `batch.n_rows()` rows.
    ///
    /// # Panics
    /// As [`Self::predict`].
    pub fn predict_partial(&self, batch: &ColumnBatch<'_>) -> (Predictions, Vec<InputError>) {
        let (features, mut errors) = self.preprocess_partial(batch);
        let predictions = self.predict_features(features, batch.n_rows());
        let first_failure = errors.len();
        for (row, value) in predictions.non_finite_rows() {
            if !errors[..first_failure].iter().any(|e| e.row() == Some(row)) {
                errors.push(InputError::NotFinite { row, value });
            }
        }
        if errors.len() > first_failure {
            errors.sort_by_key(|e| e.row());
        }
        (predictions, errors)
    }

    /// The first half of [`Self::predict_partial`]: features for [`Self::predict_features`],
    /// column-major `[feature_width(), n_rows]` (each feature's value for every row, then the
    /// next feature's), and the rows that failed (their features are zeros), in row order.
    ///
    /// # Panics
    /// As [`Self::predict`].
    pub fn preprocess_partial(&self, batch: &ColumnBatch<'_>) -> (Vec<f32>, Vec<InputError>) {
        let mut features = Vec::new();
        let width = self.feature_width();
        let errors = self.manifest.preprocessing.transform_columns_into(batch, &mut features, width);
        (features, errors)
    }

    /// Values per row in the features [`Self::preprocess_partial`] makes and
    /// [`Self::forward`] takes.
    pub fn feature_width(&self) -> usize {
        self.network.n_inputs()
    }

    /// The inference kernel's network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Predicts records given as `(column, value)` pairs in any order, one record per row; see
    /// [`ColumnBatch::from_records`].
    ///
    /// # Errors
    /// The first bad record's error from [`ColumnBatch::from_records`]
    /// ([`InputError::UnknownColumn`], [`InputError::DuplicateColumn`],
    /// [`InputError::MissingColumn`], [`InputError::NotANumber`], [`InputError::NotText`]),
    /// then those of [`Self::predict`].
    pub fn predict_records<'a, R>(&self, records: &'a [R]) -> Result<Predictions, InputError>
    where
        R: AsRef<[(&'a str, Cell<'a>)]>,
    {
        self.predict(&ColumnBatch::from_records(self.schema(), records)?)
    }

    /// Features from [`Self::preprocess_partial`], `[feature_width(), n_rows]` column-major ->
    /// postprocessed predictions of `n_rows` rows. Rows whose prediction is not finite are not
    /// reported here; see [`Predictions::non_finite_rows`].
    ///
    /// # Panics
    /// If `features.len()` is not `feature_width() * n_rows`.
    pub fn predict_features(&self, features: Vec<f32>, n_rows: usize) -> Predictions {
        let outputs = self.forward(&features, n_rows);
        match self.manifest.schema.task {
            Task::Regression => {
                postprocess::regression(&outputs, &self.manifest.target_transform, self.manifest.prediction_range)
            }
            Task::BinaryClassification | Task::MulticlassClassification => {
                postprocess::classification(&outputs, self.manifest.network.n_outputs)
            }
        }
    }

    /// The network alone: features `[feature_width(), n_rows]`, column-major, from
    /// [`Self::preprocess_partial`] -> outputs `[n_rows, n_outputs]`, row-major: logits for
    /// classification, the standardized target for regression.
    ///
    /// # Panics
    /// If `features.len()` is not `feature_width() * n_rows`.
    pub fn forward(&self, features: &[f32], n_rows: usize) -> Vec<f32> {
        self.network.forward(features, n_rows)
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
