//! Postprocessing: network outputs to what a user reads. Regression outputs are mapped back to the
//! target's original units; classification logits become probabilities (softmax, computed in f64
//! here rather than on the backend, so every front end gets the same bits) and a label.

use serde::{Deserialize, Serialize};

/// How the regression target was transformed before training, undone at prediction time.
/// Training fits `z = (t(y) - mean) / std` where `t` is the identity or `ln`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetTransform {
    /// Classification: nothing to undo.
    None,
    Standardize {
        mean: f64,
        std: f64,
    },
    LogStandardize {
        mean: f64,
        std: f64,
    },
}

impl TargetTransform {
    /// Model output to original units.
    pub fn inverse(&self, z: f32) -> f64 {
        let z = f64::from(z);
        match *self {
            TargetTransform::None => z,
            TargetTransform::Standardize { mean, std } => z * std + mean,
            TargetTransform::LogStandardize { mean, std } => (z * std + mean).exp(),
        }
    }

    /// Original units to the training scale.
    pub fn forward(&self, y: f64) -> f64 {
        match *self {
            TargetTransform::None => y,
            TargetTransform::Standardize { mean, std } => (y - mean) / std,
            TargetTransform::LogStandardize { mean, std } => (y.ln() - mean) / std,
        }
    }
}

/// The predictions for a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// `values [n_rows]`, in the target's original units.
    Regression { values: Vec<f32> },
    /// `probabilities [n_rows, n_classes]` and the index of the most probable class per row.
    Classification { probabilities: Vec<f32>, labels: Vec<usize>, n_classes: usize },
}

impl Predictions {
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
            std::iter::once("label".to_string()).chain(class_names.iter().map(|c| format!("prob_{c}"))).collect()
        } else {
            vec!["prediction".to_string()]
        }
    }

    /// One row's cells in [`Predictions::column_names`] order. Floats are written in their
    /// shortest form that reads back to the same bits, so text outputs compare exactly.
    pub fn row_cells(&self, row: usize, class_names: &[String], out: &mut Vec<String>) {
        out.clear();
        match self {
            Predictions::Regression { values } => out.push(values[row].to_string()),
            Predictions::Classification { probabilities, labels, n_classes } => {
                out.push(class_names.get(labels[row]).cloned().unwrap_or_default());
                out.extend(probabilities[row * n_classes..(row + 1) * n_classes].iter().map(f32::to_string));
            }
        }
    }
}

/// `outputs [n_rows, 1]` -> `values [n_rows]` in original units.
pub fn regression(outputs: &[f32], transform: &TargetTransform) -> Predictions {
    let values = outputs.iter().map(|&z| transform.inverse(z) as f32).collect();
    Predictions::Regression { values }
}

/// `logits [n_rows, n_classes]` -> probabilities (softmax) and labels (argmax, first on ties).
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

/// [`exp_portable`], as 4-wide vector code where the processor has AVX2 (the same operations,
/// so the same bits: AVX2 has no fused multiply-add, and none is asked for).
fn exp_in_place(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the processor has AVX2.
        unsafe {
            exp_avx2(values)
        };
        return;
    }
    exp_portable(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_avx2(values: &mut [f64]) {
    exp_portable(values);
}

/// `e^x` for every value, in place: within about one unit in the last place of the exact
/// value, 1 for ±0, 0 below -746, infinity above 710, NaN for NaN.
///
/// Written out rather than taken from the C library so that it is the same bits on every
/// machine (only IEEE additions and multiplications, no fused multiply-add, no table) and runs
/// as vector code: `libm`'s `exp` picks its code path by processor and is one call per value.
///
/// `x = k ln 2 + r` with `k` an integer and `|r| <= ln 2 / 2`; `e^r` from its Taylor series to
/// the 13th power (the first term left out is below 5e-18 relative); then `e^r · 2^k`, the power
/// applied in two halves so that neither is out of range where the result is not.
#[inline(always)]
fn exp_portable(values: &mut [f64]) {
    // ln 2 split in two: the high part has its low 21 bits zero, so `k · LN2_HI` is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    // 1.5 · 2^52: adding it rounds to an integer (to nearest, ties to even), kept in the low bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // 1 / n! for n = 4 to 13.
    const C: [f64; 10] = [
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    for value in values.iter_mut() {
        let x = *value;
        // Past these bounds the result is 0 or infinity anyway (e^-746 < 2^-1075, e^710 >
        // f64::MAX), and within them `k` stays between -1077 and 1025.
        let clamped = x.clamp(-746.0, 710.0);
        let rounded = clamped * LOG2_E + ROUND;
        let k = rounded - ROUND;
        let k_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits()) as i64;
        let r = (clamped - k * LN2_HI) - k * LN2_LO;
        // The terms from r^4 on, r^4 · (C[0] + C[1] r + ... + C[9] r^9), in pairs combined by
        // powers of r rather than in one chain (the operations overlap; these terms are below
        // 1/1000 of the result, so their rounding does not reach its last place); then the
        // first terms, in a chain from the smallest, which decides the last place.
        let r2 = r * r;
        let r4 = r2 * r2;
        let pairs = [C[0] + C[1] * r, C[2] + C[3] * r, C[4] + C[5] * r, C[6] + C[7] * r, C[8] + C[9] * r];
        let tail = ((pairs[0] + pairs[1] * r2) + (pairs[2] + pairs[3] * r2) * r4) + pairs[4] * (r4 * r4);
        let p = (((tail * r + 1.0 / 6.0) * r + 0.5) * r + 1.0) * r + 1.0;
        let half = k_bits >> 1;
        let scale = |power: i64| f64::from_bits(((power + 1023) as u64) << 52);
        let result = p * scale(half) * scale(k_bits - half);
        // One NaN for every NaN, whatever its payload: a select, not a conditional store.
        *value = if x.is_nan() { f64::NAN } else { result };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_undoes_the_target_transform() {
        let standardized = TargetTransform::Standardize { mean: 10.0, std: 2.0 };
        let logged = TargetTransform::LogStandardize { mean: 1.0, std: 0.5 };
        for (transform, z, expected) in [(standardized, 1.5, 13.0), (logged, 2.0, 2f64.exp())] {
            let Predictions::Regression { values } = regression(&[z], &transform) else {
                panic!("regression gives values");
            };
            assert!((f64::from(values[0]) - expected).abs() < 1e-5, "{values:?} vs {expected}");
            assert!((transform.forward(expected) - f64::from(z)).abs() < 1e-9);
        }
    }

    #[test]
    fn exp_is_within_about_one_unit_in_the_last_place() {
        let mut xs: Vec<f64> = (-7460..=7100).map(|i| f64::from(i) * 0.1 + 0.0123).collect();
        xs.extend([-1e-300, 1e-300, -0.5, 0.5, -0.346_573_590_279_972_6, 0.346_573_590_279_972_6, -708.4, -709.1]);
        let mut values = xs.clone();
        exp_in_place(&mut values);
        // The vector code for this processor and the portable loop agree to the bit.
        let mut portable = xs.clone();
        exp_portable(&mut portable);
        assert!(values.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits()));
        for (&x, &e) in xs.iter().zip(&values) {
            let expected = x.exp();
            if expected.is_infinite() {
                assert_eq!(e, expected, "exp({x})");
                continue;
            }
            // Relative to the result, or in absolute terms for results too small for 53 bits.
            let error = (e - expected).abs() / expected.max(f64::MIN_POSITIVE);
            assert!(error <= f64::EPSILON, "exp({x}) = {e:e}, not {expected:e}: {error:e}");
        }
        let special = [0.0, -0.0, -746.5, -1e9, f64::NEG_INFINITY, 710.5, 1e9, f64::INFINITY, f64::NAN];
        let mut values = special;
        exp_in_place(&mut values);
        assert_eq!(&values[..2], &[1.0, 1.0]);
        assert_eq!(&values[2..5], &[0.0; 3]);
        assert_eq!(&values[5..8], &[f64::INFINITY; 3]);
        assert!(values[8].is_nan());
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
