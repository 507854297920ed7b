//! The model repository as serving sees it: `<root>/<name>/<version>/` directories, each an
//! artifact loaded and checked at start-up. Directories that are not numeric versions (such as a
//! trainer's `.tmp-*` work in progress) are skipped; a version that fails to load stops start-up
//! with an error naming it, so an operator never serves a partial repository by surprise.

use std::collections::BTreeMap;
use std::path::Path;
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
}

impl Registry {
    /// Loads every version of every model under `root`.
    pub fn load_repository(root: &Path) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let entries =
            std::fs::read_dir(root).with_context(|| format!("reading model repository {}", root.display()))?;
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            for version in std::fs::read_dir(entry.path())? {
                let version = version?;
                let is_version = version.file_name().to_str().is_some_and(|n| n.parse::<u64>().is_ok());
                if version.file_type()?.is_dir() && is_version {
                    registry.load_version(&version.path())?;
                }
            }
        }
        if registry.models.is_empty() {
            bail!(
                "model repository {} holds no model versions (expected <name>/<version>/manifest.json)",
                root.display()
            );
        }
        Ok(registry)
    }

    /// Loads one version directory and adds it.
    pub fn load_version(&mut self, dir: &Path) -> anyhow::Result<Arc<LoadedModel>> {
        let predictor = Predictor::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
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
