//! A seeded train/validation/test split of row indices, stratified by class for classification.
//! The generator is written here (SplitMix64) so that a seed means the same split forever,
//! whatever version of a random-number crate is in the lockfile.

use anyhow::bail;

/// SplitMix64: tiny, fast and well distributed; enough for shuffling rows.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so that no index is favoured.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Row indices of each split, each sorted ascending so that split order follows file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `n_rows` rows. With `classes` (one label per row) each class is split in the same
/// proportions; a class with fewer than 3 rows cannot be, and is an error that names it.
pub fn split(
    n_rows: usize,
    classes: Option<&[String]>,
    validation_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> anyhow::Result<Split> {
    let mut rng = Rng::new(seed);
    let groups: Vec<(String, Vec<usize>)> = match classes {
        None => vec![(String::new(), (0..n_rows).collect())],
        Some(labels) => {
            let mut names: Vec<&String> = labels.iter().collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|name| (name.clone(), (0..n_rows).filter(|&r| &labels[r] == name).collect()))
                .collect()
        }
    };
    let mut out = Split { train: Vec::new(), validation: Vec::new(), test: Vec::new() };
    for (class, mut rows) in groups {
        if rows.len() < 3 {
            if classes.is_some() {
                bail!(
                    "class '{class}' has {} row(s); a stratified split needs at least 3 per class \
                     (one each for training, validation and test)",
                    rows.len()
                );
            }
            bail!("the data has {} row(s); at least 3 are needed to split it", rows.len());
        }
        rng.shuffle(&mut rows);
        let n = rows.len();
        // A test fraction of zero (the test rows come from another file) holds none out.
        let n_test =
            if test_fraction == 0.0 { 0 } else { ((n as f64 * test_fraction).round() as usize).clamp(1, n - 2) };
        let n_validation = ((n as f64 * validation_fraction).round() as usize).clamp(1, n - n_test - 1);
        out.test.extend_from_slice(&rows[..n_test]);
        out.validation.extend_from_slice(&rows[n_test..n_test + n_validation]);
        out.train.extend_from_slice(&rows[n_test + n_validation..]);
    }
    out.train.sort_unstable();
    out.validation.sort_unstable();
    out.test.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let a = split(100, None, 0.1, 0.2, 3).expect("splits");
        assert_eq!(a, split(100, None, 0.1, 0.2, 3).expect("splits"));
        assert_ne!(a, split(100, None, 0.1, 0.2, 4).expect("splits"));
        assert_eq!((a.train.len(), a.validation.len(), a.test.len()), (70, 10, 20));
        let mut all: Vec<usize> = a.train.iter().chain(&a.validation).chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        let labels: Vec<String> = (0..100).map(|i| if i < 80 { "a".into() } else { "b".into() }).collect();
        let s = split(100, Some(&labels), 0.1, 0.25, 1).expect("splits");
        let count_b = |rows: &[usize]| rows.iter().filter(|&&r| labels[r] == "b").count();
        assert_eq!((count_b(&s.test), count_b(&s.validation), count_b(&s.train)), (5, 2, 13));
    }

    #[test]
    fn a_test_fraction_of_zero_holds_nothing_out() {
        let s = split(50, None, 0.2, 0.0, 3).expect("splits");
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (40, 10, 0));
    }

    #[test]
    fn a_class_too_small_to_stratify_is_named() {
        let labels: Vec<String> = ["a", "a", "a", "a", "rare", "rare"].map(String::from).to_vec();
        let error = split(6, Some(&labels), 0.2, 0.2, 1).expect_err("too small").to_string();
        assert!(error.contains("class 'rare' has 2 row(s)"), "{error}");
    }
}
