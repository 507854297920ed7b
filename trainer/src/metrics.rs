//! Evaluation metrics, in the target's original units: accuracy, macro F1 and log loss for
//! classification; RMSE, MAE and R^2 for regression. Training-side only: serving never scores.

use std::collections::BTreeMap;

/// Classification metrics from true class indices, predicted class indices and probabilities
/// `[n_rows, n_classes]`.
pub fn classification(
    truth: &[usize],
    predicted: &[usize],
    probabilities: &[f32],
    n_classes: usize,
) -> BTreeMap<String, f64> {
    let n = truth.len().max(1) as f64;
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    let mut f1_sum = 0.0;
    for class in 0..n_classes {
        let tp = truth.iter().zip(predicted).filter(|&(&t, &p)| t == class && p == class).count() as f64;
        let fp = truth.iter().zip(predicted).filter(|&(&t, &p)| t != class && p == class).count() as f64;
        let fn_ = truth.iter().zip(predicted).filter(|&(&t, &p)| t == class && p != class).count() as f64;
        let denominator = 2.0 * tp + fp + fn_;
        f1_sum += if denominator > 0.0 { 2.0 * tp / denominator } else { 0.0 };
    }
    const EPSILON: f64 = 1e-15;
    let log_loss = truth
        .iter()
        .enumerate()
        .map(|(row, &t)| -f64::from(probabilities[row * n_classes + t]).clamp(EPSILON, 1.0).ln())
        .sum::<f64>()
        / n;
    BTreeMap::from([
        ("accuracy".to_string(), correct as f64 / n),
        ("macro_f1".to_string(), f1_sum / n_classes.max(1) as f64),
        ("log_loss".to_string(), log_loss),
    ])
}

/// Regression metrics from true and predicted values.
pub fn regression(truth: &[f64], predicted: &[f32]) -> BTreeMap<String, f64> {
    let n = truth.len().max(1) as f64;
    let errors: Vec<f64> = truth.iter().zip(predicted).map(|(&t, &p)| f64::from(p) - t).collect();
    let mse = errors.iter().map(|e| e * e).sum::<f64>() / n;
    let mae = errors.iter().map(|e| e.abs()).sum::<f64>() / n;
    let mean = truth.iter().sum::<f64>() / n;
    let total = truth.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n;
    let r2 = if total > 0.0 { 1.0 - mse / total } else { 0.0 };
    BTreeMap::from([("rmse".to_string(), mse.sqrt()), ("mae".to_string(), mae), ("r2".to_string(), r2)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        // Class 0: tp 1, fp 1, fn 1 -> F1 0.5. Class 1: tp 1, fp 1, fn 1 -> F1 0.5.
        let m = classification(&[0, 0, 1, 1], &[0, 1, 1, 0], &[0.9, 0.1, 0.4, 0.6, 0.2, 0.8, 0.5, 0.5], 2);
        assert_eq!(m["accuracy"], 0.5);
        assert_eq!(m["macro_f1"], 0.5);
        let expected = -(0.9f64.ln() + 0.4f64.ln() + 0.8f64.ln() + 0.5f64.ln()) / 4.0;
        assert!((m["log_loss"] - expected).abs() < 1e-6);
    }

    #[test]
    fn regression_metrics_match_hand_computed_values() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m["mae"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["r2"] - (1.0 - (4.0 / 3.0) / (2.0 / 3.0))).abs() < 1e-12);
    }
}
