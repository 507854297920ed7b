//! The model repository as serving sees it: `<root>/<name>/<version>/` directories, each an
//! artifact loaded and checked at start-up. Directories that are not numeric versions (such as a
//! trainer's `.tmp-*` work in progress) are skipped. A version that fails to load is recorded
//! with its reason and skipped, so one damaged version never takes the other models down; with
//! `strict` it stops start-up instead. A repository that cannot be read, or that yields no
//! loadable version at all, is a start-up error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use shared_inference::{Cell, Predictor};

use crate::config::Routes;
use crate::error::ServeError;

/// One loaded version of a model.
#[derive(Debug)]
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub predictor: Predictor,
}

impl LoadedModel {
    /// The class names of `labels`, indices into the model's classes.
    pub fn label_names(&self, labels: &[usize]) -> Result<Vec<&str>, ServeError> {
        let classes = self.predictor.labels();
        labels
            .iter()
            .map(|&i| {
                classes.get(i).map(String::as_str).ok_or_else(|| ServeError::Internal {
                    detail: format!("model '{}' predicted class {i} of {}", self.name, classes.len()),
                })
            })
            .collect()
    }
}

/// Every served model, by name then version: one immutable snapshot of the repository, with
/// the routes `serving.toml` gives (labels, split, shadow).
#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, BTreeMap<u64, Arc<LoadedModel>>>,
    failures: Vec<LoadFailure>,
    routes: BTreeMap<String, Routes>,
    /// Load failures by model since start (the repository keeps retrying changed versions).
    failure_counts: BTreeMap<String, u64>,
    /// Why the `serving.toml` on disk is not the one in force, when it is not.
    config_error: Option<String>,
}

/// How a request names the version it wants.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// No version: the split if there is one, else the latest. `sticky` is the value of the
    /// split's sticky header; `draw` a per-request number for an unsticky split.
    Default {
        sticky: Option<&'a [u8]>,
        draw: u64,
    },
    Version(&'a str),
    Label(&'a str),
}

/// A loaded version, checked, with a warm-up prediction done: what a repository may serve.
pub fn load_checked(dir: &Path, model: &str, version: u64) -> anyhow::Result<LoadedModel> {
    load_named(dir, model, version, false)
}

/// [`load_checked`], where `renamed` says the model is served under a name of the operator's
/// choosing (`--model-name`), which its manifest need not carry; the version must still match.
pub fn load_named(dir: &Path, model: &str, version: u64, renamed: bool) -> anyhow::Result<LoadedModel> {
    let predictor = Predictor::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
    let manifest = predictor.manifest();
    if (!renamed && manifest.name != model) || manifest.version != version {
        bail!(
            "{}: the manifest says model '{}' version {}, but the directory is {model}/{version}",
            dir.display(),
            manifest.name,
            manifest.version
        );
    }
    warm_up(&predictor).with_context(|| format!("{}: the warm-up prediction failed", dir.display()))?;
    Ok(LoadedModel { name: model.to_string(), version, predictor })
}

/// One prediction of a row with every value missing (imputed as in training): it exercises
/// the whole path once, so the first request does not pay for it and a model that cannot
/// predict never becomes ready.
fn warm_up(predictor: &Predictor) -> anyhow::Result<()> {
    let names = predictor.schema().feature_names();
    let record: Vec<(&str, Cell<'_>)> = names.iter().map(|n| (n.as_str(), Cell::Missing)).collect();
    predictor.predict_records(&[record])?;
    Ok(())
}

/// A version directory that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    /// The model's directory name (its manifest could not be trusted to say).
    pub model: String,
    pub version: u64,
    pub dir: PathBuf,
    pub reason: String,
}

impl Registry {
    /// Loads every version of every model under `root`; see the module docs for failures.
    pub fn load_repository(root: &Path, strict: bool) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let entries =
            std::fs::read_dir(root).with_context(|| format!("reading model repository {}", root.display()))?;
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let model = entry.file_name().to_string_lossy().into_owned();
            let versions = std::fs::read_dir(entry.path())
                .with_context(|| format!("reading model directory {}", entry.path().display()))?;
            for version in versions {
                let version = version?;
                let Some(number) = version.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                    continue;
                };
                if !version.file_type()?.is_dir() {
                    continue;
                }
                let dir = version.path();
                if let Err(error) = registry.load_version_named(&dir, &model, number) {
                    if strict {
                        return Err(error.context("--strict: a model version failed to load"));
                    }
                    registry.failures.push(LoadFailure {
                        model: model.clone(),
                        version: number,
                        dir,
                        reason: format!("{error:#}"),
                    });
                }
            }
        }
        if registry.models.is_empty() {
            return Err(nothing_loadable(root, &registry.failures));
        }
        registry.failures.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        Ok(registry)
    }

    /// Loads a version found at `<root>/<model>/<version>`, refusing one whose manifest names
    /// another model or version than its place in the repository.
    fn load_version_named(&mut self, dir: &Path, model: &str, version: u64) -> anyhow::Result<()> {
        let loaded = load_checked(dir, model, version)?;
        self.insert(dir, loaded.predictor).map(|_| ())
    }

    /// A snapshot from its parts (see [`crate::repository`]).
    pub fn from_parts(
        models: BTreeMap<String, BTreeMap<u64, Arc<LoadedModel>>>,
        failures: Vec<LoadFailure>,
        routes: BTreeMap<String, Routes>,
        failure_counts: BTreeMap<String, u64>,
        config_error: Option<String>,
    ) -> Self {
        Self { models, failures, routes, failure_counts, config_error }
    }

    pub fn routes(&self) -> &BTreeMap<String, Routes> {
        &self.routes
    }

    /// Versions that are failed now, by model (0 for a model that has none).
    pub fn failure_counts(&self) -> BTreeMap<&str, u64> {
        let mut counts: BTreeMap<&str, u64> = self.models.keys().map(|n| (n.as_str(), 0)).collect();
        for failure in &self.failures {
            *counts.entry(failure.model.as_str()).or_default() += 1;
        }
        counts
    }

    /// Every load that failed since start, by model (a live repository retries a failed
    /// version when its files change).
    pub fn load_failures_total(&self) -> &BTreeMap<String, u64> {
        &self.failure_counts
    }

    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    /// The version a request reaches, and the label it was reached by, if any.
    pub fn route(&self, name: &str, target: Target<'_>) -> Result<(&Arc<LoadedModel>, Option<&str>), LookupError> {
        let versions = self.models.get(name).ok_or_else(|| LookupError::UnknownModel(name.to_string()))?;
        let routes = self.routes.get(name);
        let pick = |version: u64, label: Option<&'_ str>| {
            versions.get(&version).ok_or_else(|| LookupError::NotServed {
                model: name.to_string(),
                version,
                via: label.map_or_else(|| "the split".to_string(), |l| format!("label '{l}'")),
            })
        };
        match target {
            Target::Version(v) => self.get(name, Some(v)).map(|m| (m, None)),
            Target::Label(label) => {
                let (label, version) =
                    routes.and_then(|r| r.labels.get_key_value(label)).ok_or_else(|| LookupError::UnknownLabel {
                        model: name.to_string(),
                        label: label.to_string(),
                        labels: routes.map(|r| r.labels.keys().cloned().collect()).unwrap_or_default(),
                    })?;
                pick(*version, Some(label.as_str())).map(|m| (m, Some(label.as_str())))
            }
            Target::Default { sticky, draw } => match routes.filter(|r| !r.split.is_empty()) {
                None => self.get(name, None).map(|m| (m, None)),
                Some(routes) => {
                    let total = routes.total_weight();
                    let ticket = match (sticky, &routes.sticky_header) {
                        (Some(value), Some(_)) => fnv1a(value),
                        _ => draw,
                    };
                    // A point in [0, total): the same ticket lands on the same entry while the
                    // split is unchanged.
                    let point = (ticket >> 11) as f64 / (1u64 << 53) as f64 * total;
                    let (version, label, _) = routes
                        .split
                        .iter()
                        .find(|(_, _, cumulative)| point < *cumulative)
                        .or_else(|| routes.split.iter().rev().find(|(_, _, c)| *c > 0.0))
                        .ok_or_else(|| LookupError::UnknownModel(name.to_string()))?;
                    pick(*version, label.as_deref()).map(|m| (m, label.as_deref()))
                }
            },
        }
    }

    /// The version a request is also sent to as shadow traffic, when this request is one of
    /// the configured share.
    pub fn shadow(&self, name: &str, draw: u64) -> Option<&Arc<LoadedModel>> {
        let (version, percent) = self.routes.get(name)?.shadow?;
        let point = (draw >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
        (point < percent).then(|| self.models.get(name)?.get(&version)).flatten()
    }

    /// Versions that failed to load, by model then version.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Whether every model named in the repository has at least one version loaded; the
    /// models that have none otherwise.
    pub fn missing_models(&self) -> Vec<&str> {
        let mut missing: Vec<&str> =
            self.failures.iter().map(|f| f.model.as_str()).filter(|m| !self.models.contains_key(*m)).collect();
        missing.dedup();
        missing
    }

    /// Loads one version directory and adds it.
    pub fn load_version(&mut self, dir: &Path) -> anyhow::Result<Arc<LoadedModel>> {
        let predictor = Predictor::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
        self.insert(dir, predictor)
    }

    fn insert(&mut self, dir: &Path, predictor: Predictor) -> anyhow::Result<Arc<LoadedModel>> {
        let name = predictor.manifest().name.clone();
        let version = predictor.manifest().version;
        let model = Arc::new(LoadedModel { name: name.clone(), version, predictor });
        let versions = self.models.entry(name.clone()).or_default();
        if versions.insert(version, model.clone()).is_some() {
            bail!("model '{name}' version {version} is in the repository twice (last at {})", dir.display());
        }
        Ok(model)
    }

    /// A model by name and version; the latest version when none is given.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<&Arc<LoadedModel>, LookupError> {
        let versions = self.models.get(name).ok_or_else(|| LookupError::UnknownModel(name.to_string()))?;
        match version {
            None => versions.values().next_back().ok_or_else(|| LookupError::UnknownModel(name.to_string())),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|v| versions.get(&v))
                .ok_or_else(|| LookupError::UnknownVersion { model: name.to_string(), version: v.to_string() }),
        }
    }

    /// Versions of a model, ascending.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.models.get(name).map(|v| v.keys().copied().collect()).unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.models.keys()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values().flat_map(|v| v.values())
    }
}

/// The start-up error of a repository with no version that loads, listing what failed.
pub fn nothing_loadable(root: &Path, failures: &[LoadFailure]) -> anyhow::Error {
    let failed: Vec<String> = failures.iter().map(|f| format!("{}/{}: {}", f.model, f.version, f.reason)).collect();
    anyhow::anyhow!(
        "model repository {} holds no loadable model versions (expected <name>/<version>/manifest.json){}",
        root.display(),
        if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join("; ")) }
    )
}

/// A model or version the repository does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("Request for unknown model: '{0}' is not found")]
    UnknownModel(String),
    #[error("Request for unknown model: '{model}' version {version} is not found")]
    UnknownVersion { model: String, version: String },
    #[error("model '{model}' has no label '{label}'; its labels are {labels:?}")]
    UnknownLabel { model: String, label: String, labels: Vec<String> },
    #[error("model '{model}': {via} names version {version}, which is not being served")]
    NotServed { model: String, version: u64, via: String },
}

/// FNV-1a: a fixed, fast hash of a sticky header's value.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Spread the low bits, which FNV mixes poorly, into the high bits the split reads.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}
