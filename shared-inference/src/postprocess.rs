//! Postprocessing: network outputs to what a user reads. Regression outputs are mapped back to the
//! target's original units; classification logits become probabilities (softmax, computed in f64
//! here rather than on the backend, so every front end gets the same bits) and a label.

use serde::{Deserialize, Serialize};

use crate::kernel::exp_in_place;
use crate::output;

/// How the regression target was transformed before training, undone at prediction time.
/// Training fits `z = (t(y) - mean) / std` where `t` is the identity or `ln`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetTransform {
    /// Classification: nothing to undo.
    None,
    /// The network learns the standardized `y`.
    Standardize {
        /// The training targets' mean.
        mean: f64,
        /// The training targets' standard deviation.
        std: f64,
    },
    /// For positive targets: the network learns the standardized `ln(y)`.
    LogStandardize {
        /// The mean of the training targets' `ln(y)`.
        mean: f64,
        /// The standard deviation of the training targets' `ln(y)`.
        std: f64,
    },
    /// For non-negative targets that may hold zeros: the network learns the standardized
    /// `ln(1 + y)`, and predictions below zero are raised to zero.
    Log1pStandardize {
        /// The mean of the training targets' `ln(1 + y)`.
        mean: f64,
        /// The standard deviation of the training targets' `ln(1 + y)`.
        std: f64,
    },
}

impl TargetTransform {
    /// Model output `z` to original units: with `u = z · std + mean`, `u` for `Standardize`,
    /// `e^u` for `LogStandardize` and `max(e^u - 1, 0)` for `Log1pStandardize`; `z` itself for
    /// `None`.
    pub fn inverse(&self, z: f32) -> f64 {
        let z = f64::from(z);
        match *self {
            TargetTransform::None => z,
            TargetTransform::Standardize { mean, std } => z * std + mean,
            TargetTransform::LogStandardize { mean, std } => (z * std + mean).exp(),
            // `exp(u) - 1` rather than `exp_m1`: the operations the ONNX export can spell.
            TargetTransform::Log1pStandardize { mean, std } => ((z * std + mean).exp() - 1.0).max(0.0),
        }
    }

    /// Original units to the training scale, undoing [`Self::inverse`]: not finite for a `y`
    /// outside the logarithm's domain.
    pub fn forward(&self, y: f64) -> f64 {
        match *self {
            TargetTransform::None => y,
            TargetTransform::Standardize { mean, std } => (y - mean) / std,
            TargetTransform::LogStandardize { mean, std } => (y.ln() - mean) / std,
            TargetTransform::Log1pStandardize { mean, std } => (y.ln_1p() - mean) / std,
        }
    }

    /// The scaling's `(mean, std)`, for the transforms that have them.
    pub fn moments(&self) -> Option<(f64, f64)> {
        match *self {
            TargetTransform::None => None,
            TargetTransform::Standardize { mean, std }
            | TargetTransform::LogStandardize { mean, std }
            | TargetTransform::Log1pStandardize { mean, std } => Some((mean, std)),
        }
    }

    /// The name a recipe gives this transform (`target_transform = "…"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetTransform::None => "none",
            TargetTransform::Standardize { .. } => "standardize",
            TargetTransform::LogStandardize { .. } => "log_standardize",
            TargetTransform::Log1pStandardize { .. } => "log1p_standardize",
        }
    }
}

/// The predictions for a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// A regression model's predictions.
    Regression {
        /// `[n_rows]`: one prediction per row, in the target's original units.
        values: Vec<f32>,
    },
    /// A classification model's predictions: every class's probability and the most probable
    /// class, per row.
    Classification {
        /// `[n_rows, n_classes]`, row-major: each row the softmax of its logits, in the model's
        /// class order.
        probabilities: Vec<f32>,
        /// `[n_rows]`: per row, the index of its most probable class (the first on ties) into
        /// the class names, [`Predictor::labels`](crate::Predictor::labels).
        labels: Vec<usize>,
        /// Classes per row.
        n_classes: usize,
    },
}

impl Predictions {
    /// Rows with a value that is not finite, with the first such value, in row order.
    pub fn non_finite_rows(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (values, width) = match self {
            Predictions::Regression { values } => (values.as_slice(), 1),
            Predictions::Classification { probabilities, n_classes, .. } => {
                (probabilities.as_slice(), (*n_classes).max(1))
            }
        };
        values.chunks(width).enumerate().filter_map(|(row, v)| v.iter().find(|x| !x.is_finite()).map(|&x| (row, x)))
    }

    /// The number of rows predicted.
    pub fn n_rows(&self) -> usize {
        match self {
            Predictions::Regression { values } => values.len(),
            Predictions::Classification { labels, .. } => labels.len(),
        }
    }

    /// The columns of a tabular prediction output: `prediction`, or `label` then one
    /// `prob_<class>` per class in `class_names` order.
    pub fn column_names(task_is_classification: bool, class_names: &[String]) -> Vec<String> {
        if task_is_classification {
            std::iter::once(output::LABEL.to_string())
                .chain(class_names.iter().map(|c| format!("{}{c}", output::PROBABILITY_COLUMN_PREFIX)))
                .collect()
        } else {
            vec![output::PREDICTION.to_string()]
        }
    }

    /// One row's cells in [`Predictions::column_names`] order, written into `out` (which is
    /// cleared first). Floats are written in their shortest form that reads back to the same
    /// bits, so text outputs compare exactly.
    ///
    /// # Panics
    /// If `row` is not below [`Self::n_rows`], or, for classification, a label has no name in
    /// `class_names`.
    pub fn row_cells(&self, row: usize, class_names: &[String], out: &mut Vec<String>) {
        out.clear();
        match self {
            Predictions::Regression { values } => out.push(values[row].to_string()),
            Predictions::Classification { probabilities, labels, n_classes } => {
                // Labels are argmaxes over `n_classes` outputs, and the manifest loader checked
                // that there is a name for each.
                out.push(class_names[labels[row]].clone());
                out.extend(probabilities[row * n_classes..(row + 1) * n_classes].iter().map(f32::to_string));
            }
        }
    }
}

/// `outputs [n_rows, 1]` -> `values [n_rows]` in original units, held within `range`
/// (`[low, high]`) if the model has one. A NaN output stays NaN.
pub fn regression(outputs: &[f32], transform: &TargetTransform, range: Option<[f64; 2]>) -> Predictions {
    let values = match range {
        None => outputs.iter().map(|&z| transform.inverse(z) as f32).collect(),
        // The manifest loader checked `low <= high`, both finite; a NaN stays NaN and is refused
        // later, as without a range.
        Some([low, high]) => outputs.iter().map(|&z| transform.inverse(z).clamp(low, high) as f32).collect(),
    };
    Predictions::Regression { values }
}

/// `logits [n_rows, n_classes]`, row-major -> `probabilities [n_rows, n_classes]` (softmax)
/// and `labels [n_rows]` (argmax, first on ties).
///
/// # Panics
/// May panic if `logits.len()` is not a multiple of `n_classes`.
pub fn classification(logits: &[f32], n_classes: usize) -> Predictions {
    /// Rows per pass: their exponentials fit in the first-level cache.
    const CHUNK: usize = 256;
    let width = n_classes.max(1);
    let n_rows = logits.len() / width;
    let mut probabilities = vec![0.0f32; n_rows * n_classes];
    let mut labels = Vec::with_capacity(n_rows);
    let mut exps = vec![0.0f64; CHUNK.min(n_rows) * n_classes];
    for (logits, probabilities) in logits.chunks(CHUNK * width).zip(probabilities.chunks_mut(CHUNK * width)) {
        let exps = &mut exps[..logits.len()];
        // The same code, compiled for the usual numbers of classes as constants, so that the
        // loops over a row's classes unroll.
        match width {
            2 => softmax_chunk(logits, exps, probabilities, &mut labels, 2),
            3 => softmax_chunk(logits, exps, probabilities, &mut labels, 3),
            4 => softmax_chunk(logits, exps, probabilities, &mut labels, 4),
            _ => softmax_chunk(logits, exps, probabilities, &mut labels, width),
        }
    }
    Predictions::Classification { probabilities, labels, n_classes }
}

/// Softmax and argmax for a chunk of rows of `width` logits, in passes over the chunk, each a
/// plain loop the compiler can vectorize and the processor can overlap across rows: each logit
/// less its row's largest, then the exponentials, then each row's sum and divisions.
#[inline(always)]
fn softmax_chunk(logits: &[f32], exps: &mut [f64], probabilities: &mut [f32], labels: &mut Vec<usize>, width: usize) {
    for (row, shifted) in logits.chunks_exact(width).zip(exps.chunks_exact_mut(width)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (e, &l) in shifted.iter_mut().zip(row) {
            *e = f64::from(l - max);
        }
        labels.push(row.iter().enumerate().fold(0, |best, (i, &l)| if l > row[best] { i } else { best }));
    }
    exp_in_place(exps);
    for (p, e) in probabilities.chunks_exact_mut(width).zip(exps.chunks_exact(width)) {
        let sum: f64 = e.iter().sum();
        for (p, e) in p.iter_mut().zip(e) {
            *p = (e / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_undoes_the_target_transform() {
        let standardized = TargetTransform::Standardize { mean: 10.0, std: 2.0 };
        let logged = TargetTransform::LogStandardize { mean: 1.0, std: 0.5 };
        let logged_1p = TargetTransform::Log1pStandardize { mean: 1.0, std: 0.5 };
        for (transform, z, expected) in
            [(standardized, 1.5, 13.0), (logged, 2.0, 2f64.exp()), (logged_1p, 2.0, 2f64.exp() - 1.0)]
        {
            let Predictions::Regression { values } = regression(&[z], &transform, None) else {
                panic!("regression gives values");
            };
            assert!((f64::from(values[0]) - expected).abs() < 1e-5, "{values:?} vs {expected}");
            assert!((transform.forward(expected) - f64::from(z)).abs() < 1e-9);
        }
    }

    #[test]
    fn log1p_predictions_stay_non_negative_and_zero_maps_to_its_scale() {
        let transform = TargetTransform::Log1pStandardize { mean: 2.0, std: 1.5 };
        // y = 0 is ln(1) = 0, standardized to -mean / std, and back to exactly zero.
        let z = transform.forward(0.0);
        assert_eq!(z, -2.0 / 1.5);
        assert_eq!(transform.inverse(z as f32).abs(), 0.0);
        // Outputs below that would be negative amounts: they are raised to zero.
        let Predictions::Regression { values } = regression(&[-5.0, -1.4, 0.0], &transform, None) else {
            panic!("regression gives values");
        };
        assert_eq!(values[..2], [0.0, 0.0]);
        assert!((f64::from(values[2]) - (2f64.exp() - 1.0)).abs() < 1e-5);
    }

    #[test]
    fn predictions_are_held_within_the_range() {
        let transform = TargetTransform::LogStandardize { mean: 0.0, std: 1.0 };
        let Predictions::Regression { values } =
            regression(&[-50.0, 0.0, 50.0, f32::NAN], &transform, Some([0.5, 20.0]))
        else {
            panic!("regression gives values");
        };
        assert_eq!(values[..3], [0.5, 1.0, 20.0]);
        assert!(values[3].is_nan(), "a NaN is not hidden inside the range");
    }

    #[test]
    fn every_number_of_classes_gives_softmax_and_the_first_largest() {
        for n_classes in 1..=6 {
            // 600 rows: more than one chunk, and a last chunk that is not full.
            let mut logits: Vec<f32> =
                (0..n_classes * 600).map(|i| ((i * 7919 % 997) as f32 - 500.0) * 0.013).collect();
            // Ties for the largest, and a row of equal logits.
            logits[n_classes * 5..n_classes * 6].fill(2.5);
            if n_classes > 2 {
                logits[n_classes * 7 + 1] = 9.0;
                logits[n_classes * 7 + 2] = 9.0;
            }
            let Predictions::Classification { probabilities, labels, .. } = classification(&logits, n_classes) else {
                panic!("classification gives probabilities");
            };
            assert_eq!(labels.len(), 600);
            for ((row, p), &label) in logits.chunks(n_classes).zip(probabilities.chunks(n_classes)).zip(&labels) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(label, row.iter().position(|&l| l == max).expect("a largest"), "{row:?}");
                let sum: f64 = row.iter().map(|&l| f64::from(l - max).exp()).sum();
                for (&l, &q) in row.iter().zip(p) {
                    let expected = f64::from(l - max).exp() / sum;
                    assert!((f64::from(q) - expected).abs() <= 1e-7, "{n_classes} classes: {q} vs {expected}");
                }
            }
        }
    }

    #[test]
    fn classification_gives_softmax_and_argmax() {
        let Predictions::Classification { probabilities, labels, .. } =
            classification(&[0.0, 1.0, 0.0, 3.0, 1.0, 2.0], 3)
        else {
            panic!("classification gives probabilities");
        };
        let e = std::f64::consts::E;
        let expected = [1.0 / (2.0 + e), e / (2.0 + e), 1.0 / (2.0 + e)];
        for (p, q) in probabilities[..3].iter().zip(expected) {
            assert!((f64::from(*p) - q).abs() < 1e-6);
        }
        assert_eq!(labels, vec![1, 0]);
        assert!((probabilities[3..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
