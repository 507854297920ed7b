//! Fitting preprocessing state on the training split: medians, means and standard deviations
//! of numeric columns, vocabularies and most frequent values of categorical ones, and the
//! target's scaling. Applying that state is `shared-inference`'s `Preprocessor`, never code here.

use anyhow::{bail, ensure};
use shared_inference::{ColumnKind, FittedColumn, Preprocessor, Schema, TargetTransform, UnknownCategoryPolicy};

use crate::config::TargetScaling;
use crate::data::{Column, Table};

/// Fits one [`FittedColumn`] per schema feature from the training rows only.
pub fn fit_preprocessor(
    train: &Table,
    schema: &Schema,
    unknown: UnknownCategoryPolicy,
) -> anyhow::Result<Preprocessor> {
    let mut columns = Vec::with_capacity(schema.features.len());
    for spec in &schema.features {
        let fitted = match (spec.kind, train.column(&spec.name)?) {
            (ColumnKind::Numeric, Column::Numeric { values, .. }) => fit_numeric(&spec.name, values),
            (ColumnKind::Categorical, Column::Text(values)) => fit_categorical(&spec.name, values, unknown)?,
            _ => bail!("column '{}' was not conformed to its kind before fitting", spec.name),
        };
        columns.push(fitted);
    }
    Ok(Preprocessor { columns })
}

fn fit_numeric(name: &str, values: &[f64]) -> FittedColumn {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    present.sort_by(f64::total_cmp);
    let median = match present.len() {
        0 => 0.0,
        n if n % 2 == 1 => present[n / 2],
        n => (present[n / 2 - 1] + present[n / 2]) / 2.0,
    };
    // Mean and deviation of the imputed column, which is what the network will see.
    let imputed = || values.iter().map(|&v| if v.is_finite() { v } else { median });
    let n = values.len().max(1) as f64;
    let mean = imputed().sum::<f64>() / n;
    let variance = imputed().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = if variance.sqrt() > 1e-12 { variance.sqrt() } else { 1.0 };
    FittedColumn::Numeric { name: name.to_string(), median, mean, std }
}

fn fit_categorical(
    name: &str,
    values: &[Option<String>],
    unknown: UnknownCategoryPolicy,
) -> anyhow::Result<FittedColumn> {
    let mut categories: Vec<String> = values.iter().flatten().cloned().collect();
    categories.sort();
    categories.dedup();
    ensure!(!categories.is_empty(), "categorical column '{name}' has no values in the training split");
    let counts: Vec<usize> =
        categories.iter().map(|c| values.iter().filter(|v| v.as_deref() == Some(c.as_str())).count()).collect();
    // Ties go to the first category in sorted order, so the choice does not depend on row order.
    let best = counts.iter().enumerate().fold(0, |best, (i, &c)| if c > counts[best] { i } else { best });
    let most_frequent = categories[best].clone();
    Ok(FittedColumn::Categorical { name: name.to_string(), categories, most_frequent, unknown })
}

/// Fits the regression target's scaling on the training targets.
pub fn fit_target(targets: &[f64], scaling: TargetScaling, name: &str) -> anyhow::Result<TargetTransform> {
    let transformed: Vec<f64> = match scaling {
        TargetScaling::Standardize => targets.to_vec(),
        TargetScaling::LogStandardize => {
            if let Some(bad) = targets.iter().find(|&&t| t <= 0.0) {
                bail!("target_transform = \"log_standardize\" needs positive targets, but '{name}' holds {bad}");
            }
            targets.iter().map(|t| t.ln()).collect()
        }
    };
    let n = transformed.len().max(1) as f64;
    let mean = transformed.iter().sum::<f64>() / n;
    let std = (transformed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let std = if std > 1e-12 { std } else { 1.0 };
    Ok(match scaling {
        TargetScaling::Standardize => TargetTransform::Standardize { mean, std },
        TargetScaling::LogStandardize => TargetTransform::LogStandardize { mean, std },
    })
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
    fn categorical_state_is_sorted_vocabulary_and_mode() {
        let values = [Some("b"), None, Some("a"), Some("b")].map(|v| v.map(String::from));
        let fitted = fit_categorical("c", &values, UnknownCategoryPolicy::Error).expect("fits");
        let FittedColumn::Categorical { categories, most_frequent, .. } = fitted else { panic!("categorical") };
        assert_eq!(categories, ["a", "b"]);
        assert_eq!(most_frequent, "b");
    }
}
