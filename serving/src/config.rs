//! `serving.toml` at the root of a model repository: per model, which versions are served,
//! labels, a weighted split of unversioned requests, and shadow traffic.
//!
//! ```toml
//! [model.penguins]
//! versions = { latest = 2 }            # or "all", or [3, 4]; default: the latest 1
//! labels = { stable = 4, canary = 5 }  # /v2/models/penguins/labels/canary/infer
//! split = { stable = 90, canary = 10 } # unversioned requests; keys are labels or versions
//! sticky_header = "x-user-id"          # the same value always reaches the same version
//! shadow = { to = "canary", percent = 5 } # also predicted there; the answer is only compared
//! ```
//!
//! The file is read like the repository: when it changes it is parsed and checked against the
//! versions that are ready; a file that does not parse or does not fit is reported and the last
//! good one stays in force.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Which versions of a model are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The newest `n` versions that load.
    Latest(usize),
    All,
    Specific(BTreeSet<u64>),
}

impl VersionPolicy {
    pub fn describe(&self) -> String {
        match self {
            VersionPolicy::Latest(n) => format!("latest {n}"),
            VersionPolicy::All => "all".into(),
            VersionPolicy::Specific(list) => format!("versions {list:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for VersionPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<u64>),
            Latest { latest: usize },
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("versions must be \"all\", a list of version numbers, or { latest = N }")
        })? {
            Raw::Word(word) if word == "all" => Ok(VersionPolicy::All),
            Raw::Word(word) => {
                Err(serde::de::Error::custom(format!("versions = \"{word}\": the only word is \"all\"")))
            }
            Raw::List(list) if list.is_empty() => Err(serde::de::Error::custom("versions = []: name at least one")),
            Raw::List(list) => Ok(VersionPolicy::Specific(list.into_iter().collect())),
            Raw::Latest { latest: 0 } => Err(serde::de::Error::custom("versions = { latest = 0 }: serve at least 1")),
            Raw::Latest { latest } => Ok(VersionPolicy::Latest(latest)),
        }
    }
}

/// Shadow traffic: a share of requests is also predicted by another version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// A label or a version number.
    pub to: String,
    /// Share of requests, in percent (0, 100].
    pub percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub versions: Option<VersionPolicy>,
    #[serde(default)]
    pub labels: BTreeMap<String, u64>,
    #[serde(default)]
    pub split: BTreeMap<String, f64>,
    pub sticky_header: Option<String>,
    pub shadow: Option<ShadowConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    #[serde(default)]
    pub model: BTreeMap<String, ModelConfig>,
}

/// The name of the file, at the repository root.
pub const CONFIG_FILE: &str = "serving.toml";

/// A model's routing, resolved to version numbers and checked against what is ready.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routes {
    pub labels: BTreeMap<String, u64>,
    /// `(version, label it was named by, cumulative weight)`, in key order; empty for no split.
    pub split: Vec<(u64, Option<String>, f64)>,
    pub sticky_header: Option<axum::http::HeaderName>,
    pub shadow: Option<(u64, f64)>,
}

impl Routes {
    pub fn total_weight(&self) -> f64 {
        self.split.last().map_or(0.0, |s| s.2)
    }
}

impl ServingConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ServingConfig = toml::from_str(text).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
        for (name, model) in &config.model {
            model.check_shape(name)?;
        }
        Ok(config)
    }

    /// The versions a model's config names (labels, split, shadow), for loading them.
    pub fn referenced_versions(&self, model: &str) -> BTreeSet<u64> {
        let Some(config) = self.model.get(model) else { return BTreeSet::new() };
        let mut versions: BTreeSet<u64> = config.labels.values().copied().collect();
        let target = |key: &str| key.parse::<u64>().ok().or_else(|| config.labels.get(key).copied());
        versions.extend(config.split.keys().filter_map(|k| target(k)));
        versions.extend(config.shadow.iter().filter_map(|s| target(&s.to)));
        versions
    }

    /// Resolves every model's routes against the versions that are ready, or says what does
    /// not fit, naming the file, the model and the key.
    pub fn resolve(
        &self,
        ready: &BTreeMap<String, BTreeSet<u64>>,
        known_models: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Routes>, String> {
        let mut routes = BTreeMap::new();
        for (name, config) in &self.model {
            let at = |key: &str| format!("{CONFIG_FILE}: model '{name}', {key}");
            if !known_models.contains(name) {
                return Err(format!("{CONFIG_FILE}: [model.{name}]: the repository has no model '{name}'"));
            }
            let empty = BTreeSet::new();
            let ready_versions = ready.get(name).unwrap_or(&empty);
            let must_be_ready = |key: &str, version: u64| {
                if ready_versions.contains(&version) {
                    Ok(())
                } else {
                    Err(format!("{}: version {version} is not ready (ready: {ready_versions:?})", at(key)))
                }
            };
            for (label, &version) in &config.labels {
                must_be_ready(&format!("labels.{label}"), version)?;
            }
            let target = |key: &str, value: &str| -> Result<(u64, Option<String>), String> {
                match value.parse::<u64>() {
                    Ok(version) => must_be_ready(key, version).map(|()| (version, None)),
                    Err(_) => match config.labels.get(value) {
                        Some(&version) => Ok((version, Some(value.to_string()))),
                        None => Err(format!(
                            "{}: '{value}' is neither a version number nor a label (labels: {:?})",
                            at(key),
                            config.labels.keys().collect::<Vec<_>>()
                        )),
                    },
                }
            };
            let mut split = Vec::new();
            let mut cumulative = 0.0;
            for (key, &weight) in &config.split {
                let (version, label) = target(&format!("split.{key}"), key)?;
                cumulative += weight;
                split.push((version, label, cumulative));
            }
            let shadow = match &config.shadow {
                Some(shadow) => Some((target("shadow.to", &shadow.to)?.0, shadow.percent)),
                None => None,
            };
            let sticky_header = config.sticky_header.as_deref().map(|h| {
                axum::http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("{}: not a header name", at("sticky_header")))
            });
            let sticky_header = sticky_header.transpose()?;
            routes.insert(name.clone(), Routes { labels: config.labels.clone(), split, sticky_header, shadow });
        }
        Ok(routes)
    }
}

impl ModelConfig {
    /// Checks that need no repository: weights, percentages, label names.
    fn check_shape(&self, name: &str) -> Result<(), String> {
        let at = |key: &str| format!("{CONFIG_FILE}: model '{name}', {key}");
        for label in self.labels.keys() {
            if label.is_empty()
                || label.parse::<u64>().is_ok()
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{}: a label is letters, digits, '-' or '_', and not a number",
                    at(&format!("labels.{label}"))
                ));
            }
        }
        for (key, &weight) in &self.split {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!("{}: weight {weight} must be a finite number >= 0", at(&format!("split.{key}"))));
            }
        }
        if !self.split.is_empty() && self.split.values().sum::<f64>() <= 0.0 {
            return Err(format!("{}: the weights sum to 0; give at least one a positive weight", at("split")));
        }
        if self.sticky_header.is_some() && self.split.is_empty() {
            return Err(format!("{}: needs a split to be sticky about", at("sticky_header")));
        }
        if let Some(shadow) = &self.shadow
            && !(shadow.percent > 0.0 && shadow.percent <= 100.0)
        {
            return Err(format!("{}: {} must be in (0, 100]", at("shadow.percent"), shadow.percent));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(models: &[(&str, &[u64])]) -> (BTreeMap<String, BTreeSet<u64>>, BTreeSet<String>) {
        let ready: BTreeMap<_, _> = models.iter().map(|(n, v)| (n.to_string(), v.iter().copied().collect())).collect();
        let known = ready.keys().cloned().collect();
        (ready, known)
    }

    #[test]
    fn a_full_config_resolves_to_versions() {
        let config = ServingConfig::parse(
            r#"
            [model.penguins]
            versions = { latest = 2 }
            labels = { stable = 4, canary = 5 }
            split = { stable = 90, canary = 10 }
            sticky_header = "X-User-Id"
            shadow = { to = "5", percent = 2.5 }

            [model.diamonds]
            versions = "all"

            [model.houses]
            versions = [1, 3]
            "#,
        )
        .expect("parses");
        assert_eq!(config.model["penguins"].versions, Some(VersionPolicy::Latest(2)));
        assert_eq!(config.model["diamonds"].versions, Some(VersionPolicy::All));
        assert_eq!(config.model["houses"].versions, Some(VersionPolicy::Specific([1, 3].into())));
        assert_eq!(config.referenced_versions("penguins"), [4, 5].into());
        let (ready, known) = ready(&[("penguins", &[4, 5]), ("diamonds", &[1]), ("houses", &[1, 3])]);
        let routes = config.resolve(&ready, &known).expect("fits");
        let penguins = &routes["penguins"];
        // Keys in order: canary, stable.
        assert_eq!(penguins.split, vec![(5, Some("canary".into()), 10.0), (4, Some("stable".into()), 100.0)]);
        assert_eq!(penguins.shadow, Some((5, 2.5)));
        assert_eq!(penguins.sticky_header.as_ref().map(|h| h.as_str()), Some("x-user-id"));
        assert_eq!(penguins.total_weight(), 100.0);
    }

    #[test]
    fn bad_configs_name_the_file_the_model_and_the_key() {
        let (ready, known) = ready(&[("penguins", &[4, 5])]);
        let refused = |text: &str, expected: &str| {
            let error = ServingConfig::parse(text).and_then(|c| c.resolve(&ready, &known).map(|_| ())).expect_err(text);
            assert!(error.contains(expected), "{error} should mention {expected}");
            assert!(error.starts_with("serving.toml"), "{error}");
        };
        refused("[model.penguins]\nlabels = { canary = 6 }", "model 'penguins', labels.canary: version 6 is not ready");
        refused("[model.penguins]\nsplit = { \"4\" = 0, \"5\" = 0 }", "model 'penguins', split: the weights sum to 0");
        refused("[model.penguins]\nsplit = { \"4\" = -1, \"5\" = 2 }", "split.4: weight -1 must be");
        refused("[model.penguins]\nsplit = { \"4\" = 1, \"7\" = 1 }", "split.7: version 7 is not ready");
        refused(
            "[model.penguins]\nsplit = { \"4\" = 1, beta = 1 }",
            "split.beta: 'beta' is neither a version number nor a label",
        );
        refused("[model.penguins]\nshadow = { to = \"5\", percent = 0 }", "shadow.percent");
        refused("[model.penguins]\nsticky_header = \"x-user\"", "sticky_header: needs a split");
        refused("[model.penguins]\nversions = { latest = 0 }", "serve at least 1");
        refused("[model.penguins]\nversions = \"newest\"", "the only word is");
        refused("[model.penguins]\nlabels = { \"7\" = 4 }", "labels.7: a label is");
        refused("[model.penguins]\nweights = 3", "unknown field");
        refused("[model.pinguins]\nlabels = { a = 4 }", "[model.pinguins]: the repository has no model 'pinguins'");
        refused("[model.penguins\n", "serving.toml");
    }
}
