//! Which files one `serving predict` run scores: one file, a directory of part files as Spark
//! and Hive write them, or a glob; and the deterministic share of them that one shard of a
//! sharded run (`--shard INDEX/COUNT`, or a Kubernetes Indexed Job) takes.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};

use crate::batch::Format;

/// The environment variable a Kubernetes Indexed Job sets to the pod's completion index.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// One share of a sharded run: the files whose position in the sorted list, modulo `count`, is
/// `index`. Every file belongs to exactly one shard, whatever the machine or the order in which
/// the file system lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> anyhow::Result<Self> {
        if count == 0 {
            bail!("a run has at least 1 shard, got a count of 0");
        }
        if index >= count {
            bail!("shard index {index} is out of range: with {count} shards the index is 0 to {}", count - 1);
        }
        Ok(Self { index, count })
    }

    /// The shard of a pod of an Indexed Job with `count` completions, from its environment.
    pub fn from_job(count: usize, index: Option<&str>) -> anyhow::Result<Self> {
        let Some(text) = index else {
            bail!(
                "--shard-count {count}: {JOB_COMPLETION_INDEX} is not set (Kubernetes sets it in an Indexed Job); \
                 outside one, pass --shard INDEX/{count}"
            );
        };
        let index = text
            .trim()
            .parse()
            .with_context(|| format!("{JOB_COMPLETION_INDEX}={text:?} is not a non-negative integer"))?;
        Self::new(index, count)
    }

    pub fn takes(self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (index, count) =
            text.split_once('/').ok_or_else(|| format!("expected INDEX/COUNT, like 0/4, got {text:?}"))?;
        let index = index.trim().parse().map_err(|_| format!("the index in {text:?} is not a non-negative integer"))?;
        let count = count.trim().parse().map_err(|_| format!("the count in {text:?} is not a positive integer"))?;
        Self::new(index, count).map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One file to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// Its path below the directory (or the glob's fixed prefix) it was found in; the output
    /// file gets the same path below the output directory.
    pub relative: PathBuf,
    pub format: Format,
}

/// What `--input` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub files: Vec<InputFile>,
    /// A directory or a glob (the output is then a directory too), rather than one file.
    pub several: bool,
}

fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Hidden files and the ones Spark and Hive write beside their data (`_SUCCESS`,
/// `_temporary/`, `.part-00000.crc`).
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn format_of(path: &Path, flag: Option<Format>) -> anyhow::Result<Format> {
    match (Format::from_path(&path.to_string_lossy()), flag) {
        (Some(format), _) | (None, Some(format)) => Ok(format),
        (None, None) => {
            bail!("{}: cannot tell the format from the name (.csv, .jsonl or .parquet); pass --format", path.display())
        }
    }
}

/// Finds the files `input` names: a file, a directory (walked in full, skipping hidden and
/// `_`-prefixed entries), or a glob. The list is sorted by relative path, so every run on every
/// machine sees the same order.
pub fn resolve(input: &str, flag: Option<Format>) -> anyhow::Result<Inputs> {
    let path = Path::new(input);
    let (mut files, several) = if has_glob(input) && !path.exists() {
        // The part before the first wildcard component is the base of the relative paths.
        let mut base = PathBuf::new();
        for component in path.components() {
            if has_glob(&component.as_os_str().to_string_lossy()) {
                break;
            }
            base.push(component);
        }
        let mut files = Vec::new();
        for entry in glob::glob(input).with_context(|| format!("--input {input}: not a valid glob"))? {
            let found = entry.with_context(|| format!("--input {input}: reading a matched path"))?;
            if found.is_file() {
                let relative = found.strip_prefix(&base).unwrap_or(&found).to_path_buf();
                files.push(InputFile { format: format_of(&found, flag)?, path: found, relative });
            }
        }
        (files, true)
    } else if path.is_dir() {
        let mut files = Vec::new();
        walk(path, Path::new(""), flag, &mut files)?;
        (files, true)
    } else {
        if !path.exists() {
            bail!("--input {input}: no such file or directory");
        }
        let relative = PathBuf::from(path.file_name().unwrap_or(path.as_os_str()));
        (vec![InputFile { path: path.to_path_buf(), relative, format: format_of(path, flag)? }], false)
    };
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    if several && files.is_empty() {
        bail!("--input {input}: no input files (hidden and _-prefixed files are skipped)");
    }
    Ok(Inputs { files, several })
}

fn walk(dir: &Path, relative: &Path, flag: Option<Format>, out: &mut Vec<InputFile>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading directory {}", dir.display()))?;
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let below = relative.join(&name);
        if path.is_dir() {
            walk(&path, &below, flag, out)?;
        } else {
            out.push(InputFile { format: format_of(&path, flag)?, path, relative: below });
        }
    }
    Ok(())
}

impl Inputs {
    /// The files `shard` scores.
    pub fn shard(&self, shard: Shard) -> Vec<InputFile> {
        self.files.iter().enumerate().filter(|(i, _)| shard.takes(*i)).map(|(_, f)| f.clone()).collect()
    }
}

/// Where the output of `file` goes below the output directory `dir`: its relative path, with
/// the extension of `format`.
pub fn output_path(dir: &Path, file: &InputFile, format: Format) -> PathBuf {
    let mut relative = file.relative.clone();
    // `part-00000-….snappy.parquet` keeps `part-00000-…` and gets the new extension.
    let name = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let stem =
        [".snappy.parquet", ".zstd.parquet", ".gz.parquet", ".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json"]
            .iter()
            .find(|ext| lower.ends_with(*ext))
            .map_or(name.as_str(), |ext| &name[..name.len() - ext.len()]);
    relative.set_file_name(format!("{stem}.{}", format.extension()));
    dir.join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_any_number_of_files_into_disjoint_shares_that_cover_them() {
        for files in 0..20 {
            for count in 1..7 {
                let mut seen = vec![0; files];
                for index in 0..count {
                    let shard = Shard::new(index, count).expect("valid shard");
                    for (position, seen) in seen.iter_mut().enumerate() {
                        if shard.takes(position) {
                            *seen += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{files} files in {count} shards: {seen:?}");
            }
        }
    }

    #[test]
    fn a_shard_is_read_from_index_slash_count_and_a_bad_one_says_why() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 2, count: 8 }));
        assert!("8/8".parse::<Shard>().expect_err("out of range").contains("0 to 7"));
        assert!("1/0".parse::<Shard>().expect_err("no shards").contains("count of 0"));
        assert!("3".parse::<Shard>().expect_err("no slash").contains("INDEX/COUNT"));
        assert!("a/4".parse::<Shard>().expect_err("not a number").contains("index"));
        assert_eq!(Shard::from_job(4, Some("3")).expect("index 3"), Shard { index: 3, count: 4 });
        let unset = Shard::from_job(4, None).expect_err("unset").to_string();
        assert!(unset.contains(JOB_COMPLETION_INDEX) && unset.contains("--shard INDEX/4"), "{unset}");
        assert!(Shard::from_job(4, Some("4")).is_err());
    }

    #[test]
    fn a_directory_is_walked_in_sorted_order_skipping_what_spark_writes_beside_the_data() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        for name in ["part-00001.csv", "part-00000.csv", "_SUCCESS", ".part-00000.csv.crc", "sub/part-00002.csv"] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "a\n").expect("write");
        }
        std::fs::create_dir_all(root.join("_temporary/0")).expect("mkdir");
        std::fs::write(root.join("_temporary/0/part-9.csv"), "a\n").expect("write");
        let inputs = resolve(&root.to_string_lossy(), None).expect("resolves");
        let names: Vec<_> = inputs.files.iter().map(|f| f.relative.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["part-00000.csv", "part-00001.csv", "sub/part-00002.csv"]);
        assert!(inputs.several);

        let glob = format!("{}/part-*.csv", root.display());
        let inputs = resolve(&glob, None).expect("glob resolves");
        let names: Vec<_> = inputs.files.iter().map(|f| f.relative.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["part-00000.csv", "part-00001.csv"]);

        std::fs::write(root.join("notes.txt"), "x").expect("write");
        let error = resolve(&root.to_string_lossy(), None).expect_err("unknown extension").to_string();
        assert!(error.contains("notes.txt") && error.contains("--format"), "{error}");
        let empty = tempfile::tempdir().expect("temporary directory");
        let error = resolve(&empty.path().to_string_lossy(), None).expect_err("empty").to_string();
        assert!(error.contains("no input files"), "{error}");
    }

    #[test]
    fn outputs_keep_the_relative_path_and_take_the_output_format_extension() {
        let file = InputFile {
            path: PathBuf::from("/in/date=1/part-00000-abc.snappy.parquet"),
            relative: PathBuf::from("date=1/part-00000-abc.snappy.parquet"),
            format: Format::Parquet,
        };
        assert_eq!(output_path(Path::new("/out"), &file, Format::Csv), Path::new("/out/date=1/part-00000-abc.csv"));
        assert_eq!(
            output_path(Path::new("/out"), &file, Format::Parquet),
            Path::new("/out/date=1/part-00000-abc.parquet")
        );
    }
}
