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
use shared_inference::Predictor;

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

/// Every served model, by name then version.
#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, BTreeMap<u64, Arc<LoadedModel>>>,
    failures: Vec<LoadFailure>,
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
                    registry.failures.push(LoadFailure { model: model.clone(), version: number, dir, reason: format!("{error:#}") });
                }
            }
        }
        if registry.models.is_empty() {
            let failed: Vec<String> =
                registry.failures.iter().map(|f| format!("{}/{}: {}", f.model, f.version, f.reason)).collect();
            bail!(
                "model repository {} holds no loadable model versions (expected <name>/<version>/manifest.json){}",
                root.display(),
                if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join("; ")) }
            );
        }
        registry.failures.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        Ok(registry)
    }

    /// Loads a version found at `<root>/<model>/<version>`, refusing one whose manifest names
    /// another model or version than its place in the repository.
    fn load_version_named(&mut self, dir: &Path, model: &str, version: u64) -> anyhow::Result<()> {
        let predictor = Predictor::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
        let manifest = predictor.manifest();
        if manifest.name != model || manifest.version != version {
            bail!(
                "{}: the manifest says model '{}' version {}, but the directory is {model}/{version}",
                dir.display(),
                manifest.name,
                manifest.version
            );
        }
        self.insert(dir, predictor).map(|_| ())
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

/// A model or version the repository does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("Request for unknown model: '{0}' is not found")]
    UnknownModel(String),
    #[error("Request for unknown model: '{model}' version {version} is not found")]
    UnknownVersion { model: String, version: String },
}
