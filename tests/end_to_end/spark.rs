//! The Spark job in deploy/spark/score.py, run for real by spark-submit in local mode (pyspark
//! and a Java runtime, which `scripts/test.sh` installs), scores 200,000 diamonds rows in at
//! least four partitions and penguins from Parquet with the `serving` binary, and its output
//! matches `serving predict` run once on the same rows: every row once, the same float32 bits,
//! the same errors. `tests/spark/check.py` builds the inputs, runs both and compares.

use std::process::Command;

use serde_json::Value;

use crate::support::{binary, repository, workspace};

#[test]
fn spark_job_scores_every_row_once_with_the_bits_of_serving_predict() {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./scripts/test.sh creates it (./scripts/python-env.sh tests/onnx/requirements.txt \
         tests/spark/requirements.txt)",
        python.display()
    );
    let work = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(&python)
        .arg(workspace().join("tests/spark/check.py"))
        .arg("--serving")
        .arg(binary("serving"))
        .arg("--diamonds")
        .arg(repository().version_dir("diamonds"))
        .arg("--penguins")
        .arg(repository().version_dir("penguins"))
        .arg("--work")
        .arg(work.path())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the Spark check failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON report");
    let diamonds = &report["diamonds"];
    assert!(diamonds["rows"].as_u64() >= Some(200_000), "{report}");
    assert!(diamonds["partitions"].as_u64() >= Some(4) && diamonds["files"].as_u64() >= Some(4), "{report}");
    assert!(diamonds["failed"].as_u64() > Some(0), "bad rows were scored as errors: {report}");
    assert_eq!(diamonds["self_check"].as_array().map(Vec::len), Some(5), "{report}");
    assert_eq!(report["penguins"]["prediction_columns"][0], "label", "{report}");
    println!("{report}");
}
