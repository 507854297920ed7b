//! Writing an artifact into a model repository: `<out>/<name>/<version>/` with version one more
//! than the highest present, written to a temporary directory first and renamed into place, so a
//! crash never leaves a half-written version that serving would load.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shared_inference::{MANIFEST_FILE, Manifest};

/// The highest numeric version directory under `model_dir`, or 0 when there is none.
pub fn latest_version(model_dir: &Path) -> anyhow::Result<u64> {
    if !model_dir.exists() {
        return Ok(0);
    }
    let mut latest = 0;
    for entry in std::fs::read_dir(model_dir).with_context(|| format!("listing {}", model_dir.display()))? {
        let entry = entry?;
        if let Some(version) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            latest = latest.max(version);
        }
    }
    Ok(latest)
}

/// Writes the manifest (with its version filled in) and the given files as the next version of
/// `manifest.name` under `out`, and returns the version directory.
pub fn write_artifact(out: &Path, mut manifest: Manifest, files: &[(&str, &[u8])]) -> anyhow::Result<PathBuf> {
    let model_dir = out.join(&manifest.name);
    std::fs::create_dir_all(&model_dir)
        .with_context(|| format!("cannot create the output directory {}", model_dir.display()))?;
    let temporary = model_dir.join(format!(".tmp-{}-{}", std::process::id(), unique_suffix()));
    std::fs::create_dir(&temporary)
        .with_context(|| format!("cannot write to the output directory {}", model_dir.display()))?;
    let result = (|| {
        // Another trainer may claim a version between our look and our rename: retry upwards.
        for _ in 0..16 {
            manifest.version = latest_version(&model_dir)? + 1;
            let json = manifest.to_json()?;
            write_file(&temporary.join(MANIFEST_FILE), &json)?;
            for (name, bytes) in files {
                write_file(&temporary.join(name), bytes)?;
            }
            let target = model_dir.join(manifest.version.to_string());
            if target.exists() {
                continue;
            }
            match std::fs::rename(&temporary, &target) {
                Ok(()) => return Ok(target),
                Err(_) if target.exists() => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("moving the artifact into {}", target.display()));
                }
            }
        }
        bail!("could not claim a free version under {}", model_dir.display())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    result
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
