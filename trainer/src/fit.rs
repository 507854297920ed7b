//! Fitting preprocessing state on the training split: medians and scales of numeric columns,
//! vocabularies and most frequent values of categorical ones, and the target's scaling; and
//! deciding which columns carry nothing to learn from. Applying that state is
//! `shared-inference`'s `Preprocessor`, never code here.

use anyhow::{bail, ensure};
use shared_inference::{ColumnKind, FittedColumn, Preprocessor, Schema, TargetTransform, UnknownCategoryPolicy};

use crate::config::{NumericScaling, TargetScaling};
use crate::data::{Column, Table};

/// Where robust scaling clips, in scaled units.
pub const CLIP: f64 = 3.0;

/// How to fit the preprocessing.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub unknown: UnknownCategoryPolicy,
    pub numeric: NumericScaling,
    /// The most one-hot columns one categorical column becomes.
    pub max_categories: usize,
}

/// Fits one [`FittedColumn`] per schema feature from the training rows only, and says in
/// words what it decided beyond the recipe (a capped vocabulary).
pub fn fit_preprocessor(
    train: &Table,
    schema: &Schema,
    options: FitOptions,
) -> anyhow::Result<(Preprocessor, Vec<String>)> {
    let mut columns = Vec::with_capacity(schema.features.len());
    let mut notes = Vec::new();
    for spec in &schema.features {
        let fitted = match (spec.kind, train.column(&spec.name)?) {
            (ColumnKind::Numeric, Column::Numeric { values, .. }) => match options.numeric {
                NumericScaling::Standardize => fit_numeric(&spec.name, values),
                NumericScaling::RobustClip => fit_numeric_robust(&spec.name, values),
            },
            (ColumnKind::Categorical, Column::Text(values)) => {
                let (fitted, note) = fit_categorical(&spec.name, values, options.unknown, options.max_categories)?;
                notes.extend(note);
                fitted
            }
            _ => bail!("column '{}' was not conformed to its kind before fitting", spec.name),
        };
        columns.push(fitted);
    }
    Ok((Preprocessor { columns }, notes))
}

/// Why a feature column is left out of the model, judged on the training split: it has no
/// value at all, or it is text with more distinct values than `max_categories` and as many as
/// half its rows (an identifier or free text, which one-hot encoding would turn into thousands
/// of columns that each match a row or two).
pub fn unusable(column: &Column, max_categories: usize) -> Option<String> {
    match column {
        Column::Numeric { values, .. } if values.iter().all(|v| !v.is_finite()) => {
            Some("it has no value in the training split".to_string())
        }
        Column::Text(values) => {
            let present: Vec<&str> = values.iter().flatten().map(String::as_str).collect();
            if present.is_empty() {
                return Some("it has no value in the training split".to_string());
            }
            // A hash set: linear in the rows (sorting millions of texts is not).
            let distinct: std::collections::HashSet<&str> = present.iter().copied().collect();
            (distinct.len() > max_categories && distinct.len() * 2 >= present.len()).then(|| {
                format!(
                    "its {} training values hold {} distinct texts (an identifier or free text?); \
                     declare it in data.numeric if it holds numbers",
                    present.len(),
                    distinct.len()
                )
            })
        }
        Column::Numeric { .. } => None,
    }
}

/// Robust scaling: centred on the median, divided by the interquartile range (half the range
/// when the quartiles coincide, 1 for a constant column), then smoothly clipped at ±[`CLIP`].
fn fit_numeric_robust(name: &str, values: &[f64]) -> FittedColumn {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    present.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if present.is_empty() {
            return 0.0;
        }
        // Linear interpolation between the closest ranks.
        let position = q * (present.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        present[low] + (present[high] - present[low]) * (position - low as f64)
    };
    let median = quantile(0.5);
    let spread = quantile(0.75) - quantile(0.25);
    let range = present.last().copied().unwrap_or(0.0) - present.first().copied().unwrap_or(0.0);
    let scale = if spread > 1e-12 * median.abs().max(1.0) {
        spread
    } else if range > 1e-12 * median.abs().max(1.0) {
        range / 2.0
    } else {
        1.0
    };
    FittedColumn::Numeric { name: name.to_string(), median, mean: median, std: scale, clip: Some(CLIP) }
}

fn fit_numeric(name: &str, values: &[f64]) -> FittedColumn {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    // The median by selection, linear in the rows: the same value a full sort gives.
    let median = match present.len() {
        0 => 0.0,
        n => {
            let (lower, middle, _) = present.select_nth_unstable_by(n / 2, f64::total_cmp);
            let middle = *middle;
            if n % 2 == 1 {
                middle
            } else {
                let below = lower.iter().copied().max_by(f64::total_cmp).unwrap_or(middle);
                (below + middle) / 2.0
            }
        }
    };
    // Mean and deviation of the imputed column, which is what the network will see.
    let imputed = || values.iter().map(|&v| if v.is_finite() { v } else { median });
    let n = values.len().max(1) as f64;
    let mean = imputed().sum::<f64>() / n;
    let variance = imputed().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = if variance.sqrt() > 1e-12 { variance.sqrt() } else { 1.0 };
    FittedColumn::Numeric { name: name.to_string(), median, mean, std, clip: None }
}

/// The vocabulary of a categorical column. Past `max_categories` distinct values, only the most
/// frequent `max_categories` are kept (ties broken by name) and the rest encode as all zeros, as
/// an unknown category does under `zero_vector`; the note says so.
fn fit_categorical(
    name: &str,
    values: &[Option<String>],
    unknown: UnknownCategoryPolicy,
    max_categories: usize,
) -> anyhow::Result<(FittedColumn, Option<String>)> {
    // Counted in a hash map (linear in the rows); the ranking below fixes the order.
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for value in values.iter().flatten() {
        *counts.entry(value.as_str()).or_default() += 1;
    }
    ensure!(!counts.is_empty(), "categorical column '{name}' has no values in the training split");
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    // Most frequent first; ties in name order, so the choice does not depend on row order.
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let most_frequent = ranked[0].0.to_string();
    let (unknown, note) = if ranked.len() > max_categories {
        let kept: usize = ranked[..max_categories].iter().map(|(_, n)| n).sum();
        let total: usize = ranked.iter().map(|(_, n)| n).sum();
        let note = format!(
            "column '{name}': {} distinct values; the {max_categories} most frequent (covering {:.1}% of the \
             training rows) are one-hot encoded, the other {} encode as zeros",
            ranked.len(),
            100.0 * kept as f64 / total as f64,
            ranked.len() - max_categories
        );
        ranked.truncate(max_categories);
        (UnknownCategoryPolicy::ZeroVector, Some(note))
    } else {
        (unknown, None)
    };
    let mut categories: Vec<String> = ranked.into_iter().map(|(c, _)| c.to_string()).collect();
    categories.sort();
    Ok((FittedColumn::Categorical { name: name.to_string(), categories, most_frequent, unknown }, note))
}

/// Skewness above which `auto` takes the logarithm of a non-negative target: about that of a
/// log-normal target whose spread is a third of its log-mean, well past any symmetric one.
pub const AUTO_LOG_SKEWNESS: f64 = 1.0;

/// Refuses targets an explicit log transform cannot take, naming the first such row (1-based,
/// in the file). `auto` never refuses.
pub fn check_target(targets: &[f64], scaling: TargetScaling, name: &str) -> anyhow::Result<()> {
    let (rule, bad): (&str, fn(f64) -> bool) = match scaling {
        TargetScaling::LogStandardize => ("positive", |t| t <= 0.0),
        TargetScaling::Log1pStandardize => ("non-negative", |t| t < 0.0),
        TargetScaling::Auto | TargetScaling::Standardize => return Ok(()),
    };
    if let Some(row) = targets.iter().position(|&t| bad(t)) {
        bail!(
            "target_transform = \"{}\" needs {rule} targets, but target column '{name}' holds {} at data row {} \
             (use target_transform = \"standardize\", or \"auto\" to choose from the data)",
            match scaling {
                TargetScaling::LogStandardize => "log_standardize",
                _ => "log1p_standardize",
            },
            targets[row],
            row + 1
        );
    }
    Ok(())
}

/// Sample skewness: the third central moment over the second's 1.5th power (0 when constant).
pub fn skewness(values: &[f64]) -> f64 {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let m2 = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let m3 = values.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / n;
    if m2 > 0.0 { m3 / m2.powf(1.5) } else { 0.0 }
}

/// Fits the regression target's scaling on the training targets. `auto` chooses
/// `log1p_standardize` for a non-negative target skewed right past [`AUTO_LOG_SKEWNESS`], else
/// `standardize`, and says why in the returned note.
pub fn fit_target(
    targets: &[f64],
    scaling: TargetScaling,
    name: &str,
) -> anyhow::Result<(TargetTransform, Option<String>)> {
    check_target(targets, scaling, name)?;
    let (scaling, note) = match scaling {
        TargetScaling::Auto => {
            let skew = skewness(targets);
            let non_negative = targets.iter().all(|&t| t >= 0.0);
            let chosen = if non_negative && skew > AUTO_LOG_SKEWNESS {
                TargetScaling::Log1pStandardize
            } else {
                TargetScaling::Standardize
            };
            let why = match (chosen, non_negative) {
                (TargetScaling::Log1pStandardize, _) => format!("non-negative and skewed right ({skew:.2})"),
                (_, false) => "it holds negative values".to_string(),
                _ => format!("its skewness {skew:.2} is at most {AUTO_LOG_SKEWNESS}"),
            };
            let word = if chosen == TargetScaling::Standardize { "standardize" } else { "log1p_standardize" };
            (chosen, Some(format!("target_transform auto chose {word} for '{name}': {why} on the training split")))
        }
        other => (other, None),
    };
    let transformed: Vec<f64> = match scaling {
        TargetScaling::LogStandardize => targets.iter().map(|t| t.ln()).collect(),
        TargetScaling::Log1pStandardize => targets.iter().map(|t| t.ln_1p()).collect(),
        TargetScaling::Auto | TargetScaling::Standardize => targets.to_vec(),
    };
    let n = transformed.len().max(1) as f64;
    let mean = transformed.iter().sum::<f64>() / n;
    let std = (transformed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let std = if std > 1e-12 { std } else { 1.0 };
    let transform = match scaling {
        TargetScaling::LogStandardize => TargetTransform::LogStandardize { mean, std },
        TargetScaling::Log1pStandardize => TargetTransform::Log1pStandardize { mean, std },
        TargetScaling::Auto | TargetScaling::Standardize => TargetTransform::Standardize { mean, std },
    };
    Ok((transform, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_state_is_median_and_moments_of_the_imputed_column() {
        let FittedColumn::Numeric { median, mean, std, .. } = fit_numeric("x", &[1.0, f64::NAN, 3.0, 8.0]) else {
            panic!("numeric");
        };
        // Median of [1, 3, 8] is 3; imputed column [1, 3, 3, 8] has mean 3.75.
        assert_eq!(median, 3.0);
        assert_eq!(mean, 3.75);
        let expected_std = ((2.75f64.powi(2) + 0.75f64.powi(2) * 2.0 + 4.25f64.powi(2)) / 4.0).sqrt();
        assert!((std - expected_std).abs() < 1e-12);
    }

    #[test]
    fn the_median_by_selection_is_the_sorted_median() {
        let mut rng = crate::split::Rng::new(3);
        for n in [1usize, 2, 3, 4, 5, 10, 11, 1000, 1001] {
            let mut values: Vec<f64> = (0..n).map(|_| (rng.next_u64() % 50) as f64 - 20.5).collect();
            values.push(f64::NAN);
            let FittedColumn::Numeric { median, .. } = fit_numeric("x", &values) else { panic!("numeric") };
            let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            sorted.sort_by(f64::total_cmp);
            let expected = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
            assert_eq!(median.to_bits(), expected.to_bits(), "{n} values");
        }
    }

    #[test]
    fn categorical_state_is_sorted_vocabulary_and_mode() {
        let values = [Some("b"), None, Some("a"), Some("b")].map(|v| v.map(String::from));
        let (fitted, note) = fit_categorical("c", &values, UnknownCategoryPolicy::Error, 10).expect("fits");
        let FittedColumn::Categorical { categories, most_frequent, .. } = fitted else { panic!("categorical") };
        assert_eq!(categories, ["a", "b"]);
        assert_eq!(most_frequent, "b");
        assert_eq!(note, None);
    }

    #[test]
    fn a_wide_vocabulary_keeps_its_most_frequent_values_and_encodes_the_rest_as_zeros() {
        // c0 ten times, c1 nine times, ..., c9 once; ties never arise.
        let values: Vec<Option<String>> =
            (0..10).flat_map(|i| std::iter::repeat_n(Some(format!("c{i}")), 10 - i)).collect();
        let (fitted, note) = fit_categorical("city", &values, UnknownCategoryPolicy::Error, 3).expect("fits");
        let FittedColumn::Categorical { categories, most_frequent, unknown, .. } = fitted else { panic!() };
        assert_eq!(categories, ["c0", "c1", "c2"]);
        assert_eq!(most_frequent, "c0");
        assert_eq!(unknown, UnknownCategoryPolicy::ZeroVector);
        let note = note.expect("the cap is said");
        // 27 of 55 rows are c0, c1 or c2.
        assert!(note.contains("column 'city': 10 distinct values") && note.contains("49.1%"), "{note}");
    }

    #[test]
    fn identifiers_and_empty_columns_are_unusable_and_ordinary_columns_are_not() {
        let ids: Vec<Option<String>> = (0..500).map(|i| Some(format!("id-{i}"))).collect();
        let reason = unusable(&Column::Text(ids), 100).expect("an identifier is dropped");
        assert!(reason.contains("500 distinct texts"), "{reason}");
        assert!(unusable(&Column::Text(vec![None; 5]), 100).is_some());
        let empty = Column::Numeric { values: vec![f64::NAN; 5], integral: false };
        assert!(unusable(&empty, 100).unwrap_or_default().contains("no value"));
        // Many distinct values but each repeated: capped, not dropped.
        let cities: Vec<Option<String>> = (0..1000).map(|i| Some(format!("c{}", i % 300))).collect();
        assert_eq!(unusable(&Column::Text(cities), 100), None);
        let numbers = Column::Numeric { values: (0..50).map(f64::from).collect(), integral: true };
        assert_eq!(unusable(&numbers, 100), None);
    }

    #[test]
    fn robust_scaling_uses_median_and_quartiles_and_clips() {
        let values: Vec<f64> = (0..=100).map(f64::from).chain([f64::NAN, 1e9]).collect();
        let FittedColumn::Numeric { median, mean, std, clip, .. } = fit_numeric_robust("x", &values) else {
            panic!("numeric");
        };
        // 102 present values, 0..=100 and 1e9: ranks 25.25, 50.5 and 75.75 interpolate to 25.25,
        // 50.5 and 75.75, whatever the outlier.
        assert_eq!((median, mean, std, clip), (50.5, 50.5, 50.5, Some(CLIP)));
        let constant = fit_numeric_robust("c", &[4.0; 10]);
        assert!(matches!(constant, FittedColumn::Numeric { std, median, .. } if std == 1.0 && median == 4.0));
        // Mostly zeros: the quartiles coincide and half the range is the scale.
        let mut sparse = vec![0.0; 20];
        sparse[3] = 8.0;
        assert!(matches!(fit_numeric_robust("s", &sparse), FittedColumn::Numeric { std, .. } if std == 4.0));
    }

    #[test]
    fn auto_takes_the_log_of_skewed_non_negative_targets_only() {
        let skewed: Vec<f64> = (0..200).map(|i| if i % 10 == 0 { 0.0 } else { (f64::from(i) / 20.0).exp() }).collect();
        let (transform, note) = fit_target(&skewed, TargetScaling::Auto, "balance").expect("fits");
        assert!(matches!(transform, TargetTransform::Log1pStandardize { .. }), "{transform:?}");
        assert!(note.expect("said").contains("log1p_standardize for 'balance'"));
        let symmetric: Vec<f64> = (0..200).map(|i| f64::from(i % 20)).collect();
        let (transform, _) = fit_target(&symmetric, TargetScaling::Auto, "y").expect("fits");
        assert!(matches!(transform, TargetTransform::Standardize { .. }), "{transform:?}");
        let mut negative = skewed.clone();
        negative[7] = -1.0;
        let (transform, note) = fit_target(&negative, TargetScaling::Auto, "y").expect("fits");
        assert!(matches!(transform, TargetTransform::Standardize { .. }), "{transform:?}");
        assert!(note.expect("said").contains("negative"));
    }

    #[test]
    fn explicit_log_transforms_name_the_first_bad_row() {
        let targets = [3.0, 0.0, 5.0, -2.0, 1.0];
        let error = check_target(&targets, TargetScaling::LogStandardize, "price").expect_err("zero").to_string();
        assert!(error.contains("'price' holds 0 at data row 2") && error.contains("positive"), "{error}");
        let error = check_target(&targets, TargetScaling::Log1pStandardize, "price").expect_err("negative").to_string();
        assert!(error.contains("'price' holds -2 at data row 4") && error.contains("non-negative"), "{error}");
        assert!(check_target(&targets, TargetScaling::Auto, "price").is_ok());
    }
}
