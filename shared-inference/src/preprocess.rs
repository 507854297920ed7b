//! Preprocessing *transform* from fitted state: numeric columns are imputed with the training
//! median, centred and scaled, and optionally clipped smoothly; categorical columns are imputed
//! with the most frequent training category and one-hot encoded. Fitting that state is the
//! trainer's job; this module only applies it, and it is the one implementation used at train
//! time and at serve time.

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::input::{ColumnBatch, ColumnValues, is_missing_text};
use crate::kernel::{Scaling, standardize, standardize_column};
use crate::schema::same_text;

/// What to do with a category that was never seen in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCategoryPolicy {
    /// Reject the row with an error naming the column, the value and the known categories.
    Error,
    /// Encode the row's column as all zeros, as if none of the known categories applied.
    ZeroVector,
}

/// The fitted state of one raw column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedColumn {
    /// A numeric column: one feature, `(x - mean) / std` after imputation, optionally clipped.
    Numeric {
        /// The raw column's name, as in the schema.
        name: String,
        /// Replaces a missing value before scaling.
        median: f64,
        /// Subtracted before dividing by `std`.
        mean: f64,
        /// Never zero: a constant column is stored with `std = 1`.
        std: f64,
        /// When set, the scaled value `z` becomes `clip · r / √(1 + r²)` with `r = z / clip`:
        /// near `z` for small values, never beyond `±clip`, so that an outlier cannot dominate
        /// the network's input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<f64>,
    },
    /// A categorical column: one feature per category, one-hot.
    Categorical {
        /// The raw column's name, as in the schema.
        name: String,
        /// The vocabulary, in one-hot order.
        categories: Vec<String>,
        /// Replaces a missing value; always one of `categories`.
        most_frequent: String,
        /// What a category outside `categories` becomes.
        unknown: UnknownCategoryPolicy,
    },
}

impl FittedColumn {
    /// The raw column's name.
    pub fn name(&self) -> &str {
        match self {
            FittedColumn::Numeric { name, .. } | FittedColumn::Categorical { name, .. } => name,
        }
    }

    /// How many features this column becomes: 1 for a numeric column, one per category for a
    /// categorical one.
    pub fn width(&self) -> usize {
        match self {
            FittedColumn::Numeric { .. } => 1,
            FittedColumn::Categorical { categories, .. } => categories.len(),
        }
    }
}

/// The fitted preprocessing of a model: one [`FittedColumn`] per raw feature, in schema order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// One per raw feature, in schema order; their features follow each other in this order.
    pub columns: Vec<FittedColumn>,
}

impl Preprocessor {
    /// The width of a transformed row: the sum of the columns' [`FittedColumn::width`].
    pub fn n_features(&self) -> usize {
        self.columns.iter().map(FittedColumn::width).sum()
    }

    /// Transforms a batch into a row-major feature matrix `[n_rows, n_features]`, appended to
    /// `out` (which is cleared first). A row that cannot be transformed (an unknown category under
    /// [`UnknownCategoryPolicy::Error`]) is reported in the returned list, one error per bad row,
    /// and its features are left as zeros; every other row is transformed normally.
    ///
    /// The list is in row order and holds, per bad row, its first column's
    /// [`InputError::UnknownCategory`] or [`InputError::OutOfRange`] (a number that is infinite
    /// or does not fit a finite f32 once standardized).
    ///
    /// # Panics
    /// If a column of `batch` is not of its fitted column's kind, which a batch built against
    /// the model's own schema never is.
    pub fn transform_into(&self, batch: &ColumnBatch<'_>, out: &mut Vec<f32>) -> Vec<InputError> {
        let width = self.n_features();
        self.transform_laid_out(batch, out, Layout { row_step: width, feature_step: 1, features: width })
    }

    /// [`Self::transform_into`], column-major: `[n_columns, n_rows]`, each feature's values for
    /// every row, then the next feature's (`n_columns` is at least [`Self::n_features`]; the
    /// columns past the features are left as zeros for the caller). This is the layout the
    /// forward pass reads, a block of rows at a time. Returns the same errors, and panics in the
    /// same case.
    pub fn transform_columns_into(
        &self,
        batch: &ColumnBatch<'_>,
        out: &mut Vec<f32>,
        n_columns: usize,
    ) -> Vec<InputError> {
        let features = n_columns.max(self.n_features());
        self.transform_laid_out(batch, out, Layout { row_step: 1, feature_step: batch.n_rows(), features })
    }

    /// The transform itself, for either layout: feature `f` of row `r` goes to
    /// `out[r * row_step + f * feature_step]`.
    fn transform_laid_out(&self, batch: &ColumnBatch<'_>, out: &mut Vec<f32>, layout: Layout) -> Vec<InputError> {
        let n_rows = batch.n_rows();
        let Layout { row_step, feature_step, features } = layout;
        out.clear();
        out.resize(n_rows * features, 0.0);
        let mut errors: Vec<InputError> = Vec::new();
        let mut offset = 0;
        for (fitted, values) in self.columns.iter().zip(batch.columns()) {
            match (fitted, values) {
                (FittedColumn::Numeric { name, median, mean, std, clip }, ColumnValues::Numeric(xs)) => {
                    let scaling = Scaling { median: *median, mean: *mean, std: *std, clip: *clip };
                    let scaled = |x: f64| standardize(x, &scaling);
                    let column = &mut out[offset * feature_step..];
                    // Column-major, the feature's values are contiguous: plain loops over a
                    // slice, without branches, which the compiler turns into vector code.
                    let all_finite = if row_step == 1 {
                        standardize_column(xs, &mut column[..xs.len()], &scaling)
                    } else {
                        column.iter_mut().step_by(row_step).zip(xs).fold(true, |ok, (slot, &x)| {
                            *slot = scaled(x).1;
                            ok & slot.is_finite()
                        })
                    };
                    // An infinite feature would reach the network as NaN or infinity and come
                    // out as a meaningless prediction; it is bad input, said so.
                    if !all_finite {
                        for (row, &x) in xs.iter().enumerate() {
                            let (x, z) = scaled(x);
                            if !z.is_finite() {
                                errors.push(InputError::OutOfRange { column: name.clone(), row, value: x });
                            }
                        }
                    }
                }
                (
                    FittedColumn::Categorical { name, categories, most_frequent, unknown },
                    ColumnValues::Categorical(xs),
                ) => {
                    let index = CategoryIndex::new(categories);
                    for (row, x) in xs.iter().enumerate() {
                        // One rule for a missing category on every path: no value, or the text
                        // of a missing value ("" or "NA"), which binary BYTES tensors can carry.
                        let value = match x {
                            Some(text) if !is_missing_text(text) => text,
                            _ => most_frequent.as_str(),
                        };
                        match index.position(categories, value) {
                            Some(hot) => out[row * row_step + (offset + hot) * feature_step] = 1.0,
                            None if *unknown == UnknownCategoryPolicy::ZeroVector => {}
                            None => errors.push(InputError::UnknownCategory {
                                column: name.clone(),
                                row,
                                value: value.to_string(),
                                known: categories.clone(),
                            }),
                        }
                    }
                }
                // `ColumnBatch::new` checked kinds against the schema, and the manifest loader
                // checked the schema against these columns, so a mismatch cannot reach here.
                _ => unreachable!("column kinds were validated when the batch was built"),
            }
            offset += fitted.width();
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.row());
            errors.dedup_by_key(|e| e.row());
            for row in errors.iter().filter_map(InputError::row) {
                for feature in 0..features {
                    out[row * row_step + feature * feature_step] = 0.0;
                }
            }
        }
        errors
    }

    /// Transforms a batch into a row-major feature matrix `[n_rows, n_features]`, failing on the
    /// first bad row.
    ///
    /// # Errors
    /// The first bad row's error from [`Self::transform_into`]:
    /// [`InputError::UnknownCategory`] or [`InputError::OutOfRange`].
    ///
    /// # Panics
    /// As [`Self::transform_into`].
    pub fn transform(&self, batch: &ColumnBatch<'_>) -> Result<Vec<f32>, InputError> {
        let mut out = Vec::new();
        match self.transform_into(batch, &mut out).into_iter().next() {
            Some(error) => Err(error),
            None => Ok(out),
        }
    }
}

/// Where a transform writes: feature `f` of row `r` at `r * row_step + f * feature_step`, with
/// `features` values per row (the preprocessing's own, then zeros).
#[derive(Debug, Clone, Copy)]
struct Layout {
    row_step: usize,
    feature_step: usize,
    features: usize,
}

/// Finds a value's position in a vocabulary with one string comparison instead of a scan: each
/// category is filed under a hash of its length and first and last bytes. A value equal to a
/// category has that category's hash, so an empty slot means "unknown"; a slot two categories
/// share falls back to the scan.
struct CategoryIndex {
    slots: [u8; Self::SLOTS],
}

impl CategoryIndex {
    const SLOTS: usize = 64;
    const EMPTY: u8 = u8::MAX;
    const SHARED: u8 = u8::MAX - 1;

    fn new(categories: &[String]) -> Self {
        let mut slots = [Self::EMPTY; Self::SLOTS];
        for (i, category) in categories.iter().enumerate() {
            let slot = &mut slots[Self::hash(category)];
            // Vocabularies past 253 entries are scanned; so are categories sharing a slot.
            *slot = if *slot == Self::EMPTY && i < usize::from(Self::SHARED) { i as u8 } else { Self::SHARED };
        }
        Self { slots }
    }

    #[inline]
    fn hash(text: &str) -> usize {
        let bytes = text.as_bytes();
        let (first, last) = (bytes.first().copied().unwrap_or(0), bytes.last().copied().unwrap_or(0));
        (bytes.len().wrapping_mul(31) ^ usize::from(first).wrapping_mul(7) ^ usize::from(last)) % Self::SLOTS
    }

    #[inline]
    fn position(&self, categories: &[String], value: &str) -> Option<usize> {
        match self.slots[Self::hash(value)] {
            Self::EMPTY => None,
            Self::SHARED => categories.iter().position(|c| same_text(c, value)),
            i => Some(usize::from(i)).filter(|&i| same_text(&categories[i], value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnKind, ColumnSpec, Schema, Task};

    fn fixture(unknown: UnknownCategoryPolicy) -> (Schema, Preprocessor) {
        let schema = Schema {
            features: vec![
                ColumnSpec { name: "mass".into(), kind: ColumnKind::Numeric },
                ColumnSpec { name: "island".into(), kind: ColumnKind::Categorical },
            ],
            target: "species".into(),
            task: Task::MulticlassClassification,
        };
        let pre = Preprocessor {
            columns: vec![
                FittedColumn::Numeric { name: "mass".into(), median: 4.0, mean: 5.0, std: 2.0, clip: None },
                FittedColumn::Categorical {
                    name: "island".into(),
                    categories: vec!["Biscoe".into(), "Dream".into(), "Torgersen".into()],
                    most_frequent: "Dream".into(),
                    unknown,
                },
            ],
        };
        (schema, pre)
    }

    fn check(mass: f64, island: Option<&str>, expected: [f32; 4]) {
        let (schema, pre) = fixture(UnknownCategoryPolicy::Error);
        let batch =
            ColumnBatch::new(&schema, vec![ColumnValues::Numeric(vec![mass]), ColumnValues::Categorical(vec![island])])
                .expect("valid batch");
        assert_eq!(pre.transform(&batch).expect("known values"), expected);
    }

    #[test]
    fn transforms_against_hand_computed_values() {
        // (9 - 5) / 2 = 2; (1 - 5) / 2 = -2; missing -> median 4 -> (4 - 5) / 2 = -0.5.
        check(9.0, Some("Biscoe"), [2.0, 1.0, 0.0, 0.0]);
        check(1.0, Some("Torgersen"), [-2.0, 0.0, 0.0, 1.0]);
        check(f64::NAN, Some("Dream"), [-0.5, 0.0, 1.0, 0.0]);
        // A missing category takes the most frequent one.
        check(5.0, None, [0.0, 0.0, 1.0, 0.0]);
    }

    fn batch_with_unknown<'a>(schema: &Schema) -> ColumnBatch<'a> {
        ColumnBatch::new(
            schema,
            vec![
                ColumnValues::Numeric(vec![9.0, 7.0, 1.0]),
                ColumnValues::Categorical(vec![Some("Biscoe"), Some("Atlantis"), Some("Dream")]),
            ],
        )
        .expect("valid batch")
    }

    #[test]
    fn unknown_category_is_an_error_naming_column_value_and_known_values() {
        let (schema, pre) = fixture(UnknownCategoryPolicy::Error);
        let mut out = Vec::new();
        let errors = pre.transform_into(&batch_with_unknown(&schema), &mut out);
        assert_eq!(
            errors,
            vec![InputError::UnknownCategory {
                column: "island".into(),
                row: 1,
                value: "Atlantis".into(),
                known: vec!["Biscoe".into(), "Dream".into(), "Torgersen".into()],
            }]
        );
        let message = errors[0].to_string();
        assert!(message.contains("'island'") && message.contains("'Atlantis'") && message.contains("Torgersen"));
        // The valid rows around the bad one are transformed as usual.
        assert_eq!(&out[..4], &[2.0, 1.0, 0.0, 0.0]);
        assert_eq!(&out[8..], &[-2.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn numbers_the_network_cannot_take_are_errors_naming_column_row_and_value() {
        let (schema, pre) = fixture(UnknownCategoryPolicy::Error);
        // Infinite either way, and finite but overflowing f32 once standardized ((x - 5) / 2).
        let values = vec![9.0, f64::INFINITY, 1e300, f64::NEG_INFINITY, 1.0, 1e39];
        let n = values.len();
        let batch = ColumnBatch::new(
            &schema,
            vec![ColumnValues::Numeric(values), ColumnValues::Categorical(vec![Some("Biscoe"); n])],
        )
        .expect("valid batch");
        let mut out = Vec::new();
        let errors = pre.transform_into(&batch, &mut out);
        let refused: Vec<(usize, f64)> = errors
            .iter()
            .map(|e| match e {
                InputError::OutOfRange { column, row, value } if column == "mass" => (*row, *value),
                other => panic!("unexpected error {other:?}"),
            })
            .collect();
        assert_eq!(refused, vec![(1, f64::INFINITY), (2, 1e300), (3, f64::NEG_INFINITY), (5, 1e39)]);
        assert!(errors[0].to_string().starts_with("column 'mass': the number inf is out of range"), "{}", errors[0]);
        assert_eq!(errors[0].row(), Some(1));
        // Refused rows hold zeros; the rows around them are transformed as usual.
        assert_eq!(&out[..4], &[2.0, 1.0, 0.0, 0.0]);
        assert_eq!(&out[4..8], &[0.0; 4]);
        assert_eq!(&out[16..20], &[-2.0, 1.0, 0.0, 0.0]);
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_column_major_transform_is_the_row_major_one_transposed() {
        let (schema, pre) = fixture(UnknownCategoryPolicy::Error);
        // Good rows, a missing number, an unknown category and an overflowing number.
        let batch = ColumnBatch::new(
            &schema,
            vec![
                ColumnValues::Numeric(vec![9.0, f64::NAN, 7.0, 1e300, 1.0]),
                ColumnValues::Categorical(vec![
                    Some("Biscoe"),
                    None,
                    Some("Atlantis"),
                    Some("Dream"),
                    Some("Torgersen"),
                ]),
            ],
        )
        .expect("valid batch");
        let (mut rows, mut columns) = (Vec::new(), Vec::new());
        let row_errors = pre.transform_into(&batch, &mut rows);
        // One column more than the features: it stays zero.
        let column_errors = pre.transform_columns_into(&batch, &mut columns, 5);
        assert_eq!(row_errors, column_errors);
        assert_eq!(row_errors.iter().filter_map(InputError::row).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(columns.len(), 5 * 5);
        for row in 0..5 {
            for feature in 0..4 {
                assert_eq!(columns[feature * 5 + row], rows[row * 4 + feature], "row {row}, feature {feature}");
            }
            assert_eq!(columns[4 * 5 + row], 0.0);
        }
        assert_eq!(&rows[4..8], &[-0.5, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn category_index_finds_every_category_and_nothing_else() {
        // Colliding slots, long and empty names, and more categories than slots.
        let mut categories: Vec<String> =
            ["", "a", "b", "ab", "ba", "aab", "abb", "a very long category name indeed", "Ideal", "VS2", "VVS2"]
                .iter()
                .map(|c| c.to_string())
                .collect();
        categories.extend((0..300).map(|i| format!("c{i}")));
        for n in [1, 2, 5, categories.len()] {
            let vocabulary = &categories[..n];
            let index = CategoryIndex::new(vocabulary);
            for (i, category) in vocabulary.iter().enumerate() {
                assert_eq!(index.position(vocabulary, category), Some(i), "{category:?} of {n}");
            }
            for other in &categories[n..] {
                assert_eq!(index.position(vocabulary, other), None, "{other:?} is not among {n}");
            }
            for stranger in ["x", "Idea", "ideal", "VS22", "c3000", "a very long category name indeeD"] {
                assert_eq!(index.position(vocabulary, stranger), None, "{stranger:?}");
            }
        }
    }

    #[test]
    fn unknown_category_can_be_a_zero_vector() {
        let (schema, pre) = fixture(UnknownCategoryPolicy::ZeroVector);
        let out = pre.transform(&batch_with_unknown(&schema)).expect("zero vector policy");
        assert_eq!(&out[4..8], &[1.0, 0.0, 0.0, 0.0]);
    }
}
