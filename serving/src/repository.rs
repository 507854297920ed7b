//! The live model repository: what is served changes while the server runs, without a restart
//! and without a request ever seeing a half-loaded model.
//!
//! Requests read an immutable [`Registry`] snapshot; a change (a poll, a load or unload call)
//! builds a new snapshot beside it and swaps it in whole. A version is loaded and checked
//! (format, checksums, the manifest's numbers, a warm-up prediction) before it can be part of a
//! snapshot, so a version that fails to load never replaces one that works. A version that
//! leaves the snapshot is freed once the requests holding it finish (it is `UNLOADING` until
//! then).
//!
//! Modes (`--model-control`):
//! - `poll`: the repository (and `serving.toml`) is rescanned every poll interval;
//! - `explicit`: only the load and unload endpoints change what is served;
//! - `none`: loaded once at start-up, never changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::config::{CONFIG_FILE, Routes, ServingConfig, VersionPolicy};
use crate::registry::{LoadFailure, LoadedModel, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelControl {
    Poll,
    Explicit,
    None,
}

impl ModelControl {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelControl::Poll => "poll",
            ModelControl::Explicit => "explicit",
            ModelControl::None => "none",
        }
    }

    /// The version policy of a model that `serving.toml` says nothing about: `none` keeps
    /// serving every version, as the server always did; the live modes serve the latest.
    fn default_policy(self) -> VersionPolicy {
        match self {
            ModelControl::None => VersionPolicy::All,
            ModelControl::Poll | ModelControl::Explicit => VersionPolicy::Latest(1),
        }
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: &'static str,
    pub reason: String,
}

pub const READY: &str = "READY";
pub const LOADING: &str = "LOADING";
pub const UNAVAILABLE: &str = "UNAVAILABLE";
pub const UNLOADING: &str = "UNLOADING";

/// Why a load or unload request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("model control is 'none': start the server with --model-control explicit or poll to load and unload")]
    Disabled,
    #[error("the repository has no model '{0}'")]
    UnknownModel(String),
    #[error("model '{model}' did not load: {reason}")]
    LoadFailed { model: String, reason: String },
    #[error("model '{0}' is not loaded")]
    NotLoaded(String),
}

/// The files of a version directory, to tell whether a failed version has changed since.
type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files: Fingerprint = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), metadata.len(), metadata.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

#[derive(Debug)]
struct Failed {
    reason: String,
    fingerprint: Fingerprint,
}

/// What the manager knows between changes; guarded by one mutex, so changes never interleave.
#[derive(Debug, Default)]
struct Manager {
    loaded: BTreeMap<String, BTreeMap<u64, Arc<LoadedModel>>>,
    failed: BTreeMap<(String, u64), Failed>,
    /// The `serving.toml` in force (the last good one).
    config: ServingConfig,
    /// A newer file that parsed but does not fit the ready versions yet; checked again on
    /// every refresh (its versions may still be loading).
    candidate: Option<ServingConfig>,
    /// The text last read, so that an unchanged file is not parsed again.
    config_text: Option<Option<String>>,
    /// Why the file on disk is not the one in force.
    config_error: Option<String>,
    /// Unloaded through the API: not served again until loaded through it.
    unloaded: BTreeSet<String>,
    /// `explicit` mode: the models loaded through the API (or at start).
    wanted: BTreeSet<String>,
    /// Load failures by model since start, for the metric.
    failure_counts: BTreeMap<String, u64>,
    /// The model directories the last scan found (a scan of one model updates its entry).
    known: BTreeSet<String>,
}

/// What the directory given as the repository holds. KServe mounts one model's files at
/// `/mnt/models`, as they were stored: a whole repository, one model's directory of versions,
/// or one version's files; each is served as it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/<name>/<version>/`: every model below it.
    Repository,
    /// `<root>/<version>/`: the versions of one model, called `name`.
    Model { name: String },
    /// `<root>/manifest.json`: one version of one model.
    Version { name: String, version: u64 },
}

impl Layout {
    /// Tells the layout of `root` from what it holds: a manifest makes it one version (numbered
    /// as its manifest says), numbered subdirectories (at least one with a manifest) make it one
    /// model, anything else is a repository. `name` names the model of the first two (default:
    /// the model directory's name), whatever name its manifests carry; it is refused for a
    /// repository, whose directories name its models.
    pub fn detect(root: &Path, name: Option<&str>) -> anyhow::Result<Self> {
        let manifest = shared_inference::artifact::MANIFEST_FILE;
        let dir_name = |path: &Path| path.file_name().map(|n| n.to_string_lossy().into_owned());
        if root.join(manifest).is_file() {
            // The version is the manifest's: a mounted directory's name (`models`) says nothing.
            let version = std::fs::read(root.join(manifest))
                .ok()
                .and_then(|bytes| shared_inference::artifact::Manifest::from_json(&bytes).ok())
                .map(|m| m.version)
                .or_else(|| dir_name(root).and_then(|n| n.parse().ok()))
                .unwrap_or(1);
            let name = match name {
                Some(name) => name.to_string(),
                None => root.parent().and_then(dir_name).with_context(|| {
                    format!("{} is one model version: pass --model-name to name its model", root.display())
                })?,
            };
            return Ok(Layout::Version { name, version });
        }
        let entries =
            std::fs::read_dir(root).with_context(|| format!("reading model repository {}", root.display()))?;
        let dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        let numbered = |d: &PathBuf| dir_name(d).is_some_and(|n| n.parse::<u64>().is_ok());
        if !dirs.is_empty() && dirs.iter().all(numbered) && dirs.iter().any(|d| d.join(manifest).is_file()) {
            let name = match name {
                Some(name) => name.to_string(),
                None => dir_name(root)
                    .with_context(|| format!("pass --model-name to name the model in {}", root.display()))?,
            };
            return Ok(Layout::Model { name });
        }
        if let Some(name) = name {
            bail!(
                "--model-name {name}: {} is a repository (<name>/<version>/ directories), whose directory names \
                 name its models; --model-name applies to one model's directory or one version directory",
                root.display()
            );
        }
        Ok(Layout::Repository)
    }

    /// The directory of `version` of `model`.
    fn version_dir(&self, root: &Path, model: &str, version: u64) -> PathBuf {
        match self {
            Layout::Repository => root.join(model).join(version.to_string()),
            Layout::Model { .. } => root.join(version.to_string()),
            Layout::Version { .. } => root.to_path_buf(),
        }
    }
}

/// The repository and the snapshot requests read.
#[derive(Debug)]
pub struct Repository {
    root: Option<PathBuf>,
    layout: Layout,
    mode: ModelControl,
    current: RwLock<Arc<Registry>>,
    manager: Mutex<Manager>,
    loading: Mutex<Option<(String, u64)>>,
    retired: Mutex<Vec<(String, u64, Weak<LoadedModel>)>>,
}

/// What one scan of the repository found: versions by model.
type Scan = BTreeMap<String, BTreeMap<u64, PathBuf>>;

fn scan(root: &Path, layout: &Layout, only: Option<&str>) -> anyhow::Result<Scan> {
    let mut found = Scan::new();
    match layout {
        Layout::Repository => {}
        Layout::Model { name } | Layout::Version { name, .. } if only.is_some_and(|o| o != name) => return Ok(found),
        Layout::Model { name } => {
            found.insert(name.clone(), versions_in(root)?);
            return Ok(found);
        }
        Layout::Version { name, version } => {
            if root.is_dir() {
                found.insert(name.clone(), BTreeMap::from([(*version, root.to_path_buf())]));
            }
            return Ok(found);
        }
    }
    let entries = std::fs::read_dir(root).with_context(|| format!("reading model repository {}", root.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) || only.is_some_and(|o| o != name) {
            continue;
        }
        let Ok(versions) = versions_in(&entry.path()) else {
            tracing::warn!(model = name, "cannot read the model's directory; skipped");
            continue;
        };
        found.insert(name, versions);
    }
    Ok(found)
}

/// The numbered version directories of one model's directory.
fn versions_in(dir: &Path) -> anyhow::Result<BTreeMap<u64, PathBuf>> {
    let mut versions = BTreeMap::new();
    let dirs = std::fs::read_dir(dir).with_context(|| format!("reading model directory {}", dir.display()))?;
    for version in dirs.flatten() {
        let Some(number) = version.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        if version.file_type().is_ok_and(|t| t.is_dir()) {
            versions.insert(number, version.path());
        }
    }
    Ok(versions)
}

impl Repository {
    /// A fixed set of models that never changes (tests, `--model DIR`).
    pub fn fixed(registry: Registry) -> Self {
        Self {
            root: None,
            layout: Layout::Repository,
            mode: ModelControl::None,
            current: RwLock::new(Arc::new(registry)),
            manager: Mutex::new(Manager::default()),
            loading: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Opens a repository and loads what `mode` says to serve at start: in `explicit` mode the
    /// models in `initial` (all when empty). An unreadable repository is an error; so is, with
    /// `strict`, any version that fails to load, and in `none` mode a repository with nothing
    /// loadable.
    pub fn open(root: &Path, mode: ModelControl, strict: bool, initial: &[String]) -> anyhow::Result<Self> {
        Self::open_as(root, Layout::Repository, mode, strict, initial)
    }

    /// [`Repository::open`] for a directory of the given layout.
    pub fn open_as(
        root: &Path,
        layout: Layout,
        mode: ModelControl,
        strict: bool,
        initial: &[String],
    ) -> anyhow::Result<Self> {
        let repository = Self {
            root: Some(root.to_path_buf()),
            layout,
            mode,
            current: RwLock::new(Arc::new(Registry::default())),
            manager: Mutex::new(Manager::default()),
            loading: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
        };
        let found = scan(root, &repository.layout, None)?;
        if mode == ModelControl::Explicit {
            let mut manager = repository.lock();
            for name in initial {
                if !found.contains_key(name) {
                    bail!("--load-model {name}: the repository has no model '{name}'");
                }
            }
            manager.wanted =
                if initial.is_empty() { found.keys().cloned().collect() } else { initial.iter().cloned().collect() };
        }
        repository.refresh(None)?;
        let registry = repository.registry();
        if strict && let Some(failure) = registry.failures().first() {
            bail!(
                "--strict: model '{}' version {} failed to load ({}): {}",
                failure.model,
                failure.version,
                failure.dir.display(),
                failure.reason
            );
        }
        if mode == ModelControl::None && registry.all().next().is_none() {
            return Err(crate::registry::nothing_loadable(root, registry.failures()));
        }
        Ok(repository)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Manager> {
        self.manager.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn mode(&self) -> ModelControl {
        self.mode
    }

    /// The snapshot to serve a request from.
    pub fn registry(&self) -> Arc<Registry> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Rescans the repository (one model, or all) and swaps in what it finds. Called by the
    /// poller, the load endpoint and start-up; never concurrently with itself.
    pub fn refresh(&self, only: Option<&str>) -> anyhow::Result<()> {
        let Some(root) = &self.root else { return Ok(()) };
        let mut manager = self.lock();
        let found = scan(root, &self.layout, only)?;
        match only {
            None => manager.known = found.keys().cloned().collect(),
            Some(name) if found.contains_key(name) => {
                manager.known.insert(name.to_string());
            }
            Some(name) => {
                manager.known.remove(name);
            }
        }
        self.read_config(&mut manager, root);
        let names: Vec<String> = found.keys().cloned().collect();
        for name in &names {
            if !self.is_active(&manager, name) {
                manager.loaded.remove(name);
                continue;
            }
            let versions = &found[name];
            self.load_model(&mut manager, name, versions);
        }
        if only.is_none() {
            // Models whose directory is gone.
            let gone: Vec<String> = manager.loaded.keys().filter(|n| !found.contains_key(*n)).cloned().collect();
            for name in gone {
                manager.loaded.remove(&name);
            }
            manager.failed.retain(|(name, version), _| found.get(name).is_some_and(|v| v.contains_key(version)));
        }
        self.publish(&mut manager, root);
        Ok(())
    }

    fn is_active(&self, manager: &Manager, name: &str) -> bool {
        match self.mode {
            ModelControl::Explicit => manager.wanted.contains(name),
            ModelControl::Poll | ModelControl::None => !manager.unloaded.contains(name),
        }
    }

    /// Reads `serving.toml` when it changed. A file that does not parse is reported and the one
    /// in force stays; one that parses becomes the candidate, applied in `publish` once it fits
    /// the versions that are ready.
    fn read_config(&self, manager: &mut Manager, root: &Path) {
        let path = root.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                self.config_problem(manager, format!("{CONFIG_FILE}: cannot be read: {e}"));
                return;
            }
        };
        if manager.config_text.as_ref() == Some(&text) {
            return;
        }
        manager.config_text = Some(text.clone());
        match text.as_deref().map(ServingConfig::parse).transpose() {
            Ok(config) => manager.candidate = Some(config.unwrap_or_default()),
            Err(error) => {
                manager.candidate = None;
                self.config_problem(manager, error);
            }
        }
    }

    /// The configuration versions are chosen by: the candidate, if there is one (what the
    /// operator asked for), else the one in force.
    fn selecting(manager: &Manager) -> &ServingConfig {
        manager.candidate.as_ref().unwrap_or(&manager.config)
    }

    fn config_problem(&self, manager: &mut Manager, error: String) {
        if manager.config_error.as_deref() != Some(error.as_str()) {
            tracing::error!(error, "serving.toml not applied; the last good configuration stays in force");
        }
        manager.config_error = Some(error);
    }

    /// Loads what a model's policy and routes need, newest first, keeping what is loaded.
    fn load_model(&self, manager: &mut Manager, name: &str, on_disk: &BTreeMap<u64, PathBuf>) {
        let selecting = Self::selecting(manager);
        let config = selecting.model.get(name).cloned().unwrap_or_default();
        let policy = config.versions.clone().unwrap_or_else(|| self.mode.default_policy());
        let mut referenced = selecting.referenced_versions(name);
        // Versions the configuration in force routes to stay loaded until the new one applies.
        referenced.extend(manager.config.referenced_versions(name));
        let mut wanted: BTreeSet<u64> = BTreeSet::new();
        let mut loaded_count = 0;
        for (&version, dir) in on_disk.iter().rev() {
            let selected = match &policy {
                VersionPolicy::All => true,
                VersionPolicy::Specific(list) => list.contains(&version),
                VersionPolicy::Latest(n) => loaded_count < *n,
            };
            if !selected && !referenced.contains(&version) {
                continue;
            }
            if self.ensure_loaded(manager, name, version, dir) {
                wanted.insert(version);
                if selected {
                    loaded_count += 1;
                }
            }
        }
        let versions = manager.loaded.entry(name.to_string()).or_default();
        versions.retain(|version, _| wanted.contains(version));
        if versions.is_empty() {
            manager.loaded.remove(name);
        }
    }

    /// Whether `name`/`version` is loaded, loading it if needed. A version that failed is tried
    /// again only when its files change.
    fn ensure_loaded(&self, manager: &mut Manager, name: &str, version: u64, dir: &Path) -> bool {
        if manager.loaded.get(name).is_some_and(|v| v.contains_key(&version)) {
            return true;
        }
        let key = (name.to_string(), version);
        let print = fingerprint(dir);
        if manager.failed.get(&key).is_some_and(|f| f.fingerprint == print) {
            return false;
        }
        *self.loading.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key.clone());
        let renamed = self.layout != Layout::Repository;
        let outcome = crate::registry::load_named(dir, name, version, renamed);
        *self.loading.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        match outcome {
            Ok(model) => {
                tracing::info!(model = name, version, "model version loaded");
                manager.failed.remove(&key);
                manager.loaded.entry(name.to_string()).or_default().insert(version, Arc::new(model));
                true
            }
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(model = name, version, dir = %dir.display(), reason, "model version not loaded; the versions already served stay");
                *manager.failure_counts.entry(name.to_string()).or_default() += 1;
                manager.failed.insert(key, Failed { reason, fingerprint: print });
                false
            }
        }
    }

    /// Builds the snapshot from the manager's state and swaps it in.
    fn publish(&self, manager: &mut Manager, root: &Path) {
        let ready: BTreeMap<String, BTreeSet<u64>> =
            manager.loaded.iter().map(|(name, versions)| (name.clone(), versions.keys().copied().collect())).collect();
        let known = manager.known.clone();
        let routes: BTreeMap<String, Routes> = match manager.candidate.take() {
            Some(candidate) => match candidate.resolve(&ready, &known) {
                Ok(routes) => {
                    tracing::info!("serving.toml applied");
                    manager.config = candidate;
                    manager.config_error = None;
                    routes
                }
                Err(error) => {
                    self.config_problem(manager, error);
                    manager.candidate = Some(candidate);
                    manager.config.resolve(&ready, &known).unwrap_or_else(|_| self.registry().routes().clone())
                }
            },
            // The configuration in force, against what is ready now; where a version it names
            // has gone, the routes to it answer 503 until the file changes.
            None => manager.config.resolve(&ready, &known).unwrap_or_else(|_| self.registry().routes().clone()),
        };
        let failures: Vec<LoadFailure> = manager
            .failed
            .iter()
            .map(|((model, version), failed)| LoadFailure {
                model: model.clone(),
                version: *version,
                dir: self.layout.version_dir(root, model, *version),
                reason: failed.reason.clone(),
            })
            .collect();
        let registry = Registry::from_parts(
            manager.loaded.clone(),
            failures,
            routes,
            manager.failure_counts.clone(),
            manager.config_error.clone(),
        );
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner),
            Arc::new(registry),
        );
        let new = self.registry();
        let mut retired = self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for model in old.all() {
            if new.get(&model.name, Some(&model.version.to_string())).is_err() {
                tracing::info!(model = model.name, version = model.version, "model version unloading");
                retired.push((model.name.clone(), model.version, Arc::downgrade(model)));
            }
        }
        drop(old);
        retired.retain(|(_, _, weak)| weak.strong_count() > 0);
    }

    /// `POST /v2/repository/models/{name}/load`: loads (or reloads) the model now.
    pub fn load(&self, name: &str) -> Result<(), ControlError> {
        let Some(root) = &self.root else { return Err(ControlError::Disabled) };
        if self.mode == ModelControl::None {
            return Err(ControlError::Disabled);
        }
        let found = scan(root, &self.layout, Some(name))
            .map_err(|e| ControlError::LoadFailed { model: name.into(), reason: format!("{e:#}") })?;
        if !found.contains_key(name) {
            return Err(ControlError::UnknownModel(name.to_string()));
        }
        {
            let mut manager = self.lock();
            manager.unloaded.remove(name);
            manager.wanted.insert(name.to_string());
        }
        self.refresh(Some(name))
            .map_err(|e| ControlError::LoadFailed { model: name.into(), reason: format!("{e:#}") })?;
        if self.registry().versions(name).is_empty() {
            let manager = self.lock();
            let reason = manager
                .failed
                .iter()
                .filter(|((model, _), _)| model == name)
                .map(|((_, version), failed)| format!("version {version}: {}", failed.reason))
                .collect::<Vec<_>>()
                .join("; ");
            let reason = if reason.is_empty() { "no version directory".to_string() } else { reason };
            return Err(ControlError::LoadFailed { model: name.into(), reason });
        }
        Ok(())
    }

    /// `POST /v2/repository/models/{name}/unload`: stops serving the model (requests in flight
    /// finish). In `poll` mode it stays unloaded until loaded through the API.
    pub fn unload(&self, name: &str) -> Result<(), ControlError> {
        let Some(root) = &self.root else { return Err(ControlError::Disabled) };
        if self.mode == ModelControl::None {
            return Err(ControlError::Disabled);
        }
        let mut manager = self.lock();
        let on_disk = scan(root, &self.layout, Some(name)).is_ok_and(|s| s.contains_key(name));
        if !manager.loaded.contains_key(name) {
            return Err(if on_disk {
                ControlError::NotLoaded(name.into())
            } else {
                ControlError::UnknownModel(name.into())
            });
        }
        manager.unloaded.insert(name.to_string());
        manager.wanted.remove(name);
        manager.loaded.remove(name);
        self.publish(&mut manager, root);
        Ok(())
    }

    /// The repository index: every version on disk (or still unloading) and its state.
    pub fn index(&self) -> Vec<IndexEntry> {
        let registry = self.registry();
        let mut entries: BTreeMap<(String, u64), IndexEntry> = BTreeMap::new();
        let entry = |name: &str, version: u64, state: &'static str, reason: String| IndexEntry {
            name: name.to_string(),
            version: version.to_string(),
            state,
            reason,
        };
        // While a version loads, the manager is busy: the index then comes from the snapshot.
        let manager = self.manager.try_lock().ok();
        if let (Some(root), Some(manager)) = (&self.root, manager) {
            for (name, versions) in scan(root, &self.layout, None).unwrap_or_default() {
                for version in versions.into_keys() {
                    let reason = if let Some(failed) = manager.failed.get(&(name.clone(), version)) {
                        failed.reason.clone()
                    } else if manager.unloaded.contains(&name) {
                        "unloaded through the repository API".to_string()
                    } else if self.mode == ModelControl::Explicit && !manager.wanted.contains(&name) {
                        "not loaded (explicit model control)".to_string()
                    } else {
                        let policy = manager.config.model.get(&name).and_then(|c| c.versions.clone());
                        let policy = policy.unwrap_or_else(|| self.mode.default_policy());
                        format!("not selected by the version policy ({})", policy.describe())
                    };
                    entries.insert((name.clone(), version), entry(&name, version, UNAVAILABLE, reason));
                }
            }
        } else {
            for failure in registry.failures() {
                entries.insert(
                    (failure.model.clone(), failure.version),
                    entry(&failure.model, failure.version, UNAVAILABLE, failure.reason.clone()),
                );
            }
        }
        for model in registry.all() {
            entries
                .insert((model.name.clone(), model.version), entry(&model.name, model.version, READY, String::new()));
        }
        for (name, version, weak) in self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            if weak.strong_count() > 0 && !registry.versions(name).contains(version) {
                entries.insert(
                    (name.clone(), *version),
                    entry(name, *version, UNLOADING, "finishing requests in flight".into()),
                );
            }
        }
        if let Some((name, version)) = self.loading.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            entries.insert((name.clone(), version), entry(&name, version, LOADING, String::new()));
        }
        entries.into_values().collect()
    }

    /// Starts the poller thread (`poll` mode only): rescans every `interval` until the
    /// repository is dropped.
    pub fn start_polling(self: &Arc<Self>, interval: std::time::Duration) -> std::io::Result<()> {
        if self.mode != ModelControl::Poll || self.root.is_none() {
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        std::thread::Builder::new().name("repository-poll".into()).spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(repository) = weak.upgrade() else { return };
                if let Err(error) = repository.refresh(None) {
                    tracing::error!(error = format!("{error:#}"), "repository scan failed; serving what was loaded");
                }
            }
        })?;
        Ok(())
    }
}
