//! `serving predict` on Parquet written by another tool (polars), and sharded runs: N separate
//! processes over a directory of part files score every row exactly once, with the bits of one
//! unsharded run. Kept columns keep their Parquet types; bad rows come back with their error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars_core::prelude::{Column, DataFrame, DataType, NamedFrom, Series};
use polars_io::prelude::{CsvReadOptions, ParquetReader, ParquetWriter, SerReader};

use crate::support::{binary, repository, test_split_csv};

/// The diamonds test split with a unique `row_id` (Int64) and a `weight` (Float32) column.
fn diamonds_frame(dir: &Path) -> DataFrame {
    let csv = test_split_csv("diamonds", dir);
    let mut frame = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv))
        .expect("csv reader")
        .finish()
        .expect("test split reads");
    let n = frame.height();
    let ids: Vec<i64> = (0..n as i64).map(|i| 1_000_000 + i * 7).collect();
    let weights: Vec<f32> = (0..n).map(|i| i as f32 / 3.0).collect();
    frame.with_column(Column::new("row_id".into(), ids)).expect("row_id");
    frame.with_column(Column::new("weight".into(), weights)).expect("weight");
    frame
}

fn write_parquet(frame: &mut DataFrame, path: &Path, row_group: usize) {
    let file = std::fs::File::create(path).expect("create parquet");
    ParquetWriter::new(file).with_row_group_size(Some(row_group)).finish(frame).expect("polars writes parquet");
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .finish()
        .unwrap_or_else(|e| panic!("{} is not Parquet polars reads: {e}", path.display()))
}

fn predict(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(binary("serving"))
        .arg("predict")
        .arg("--model")
        .arg(repository().version_dir("diamonds"))
        .args(["--quiet", "--chunk-rows", "1000"])
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .envs(env.iter().copied())
        .output()
        .expect("serving runs");
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "serving predict {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// (row_id, prediction bits, error) for every row of the given output files.
fn rows_of(files: &[PathBuf]) -> Vec<(i64, Option<u32>, Option<String>)> {
    let mut rows = Vec::new();
    for file in files {
        let frame = read_parquet(file);
        let ids = frame.column("row_id").expect("row_id kept").i64().expect("row_id stays Int64").clone();
        let predictions = frame.column("prediction").expect("prediction").f32().expect("Float32 predictions").clone();
        let errors = frame.column("error").expect("error").str().expect("text errors").clone();
        for ((id, prediction), error) in ids.iter().zip(predictions.iter()).zip(errors.iter()) {
            rows.push((id.expect("every row keeps its id"), prediction.map(f32::to_bits), error.map(str::to_string)));
        }
    }
    rows
}

#[test]
fn parquet_in_and_out_keeps_types_and_predicts_the_bits_of_csv() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut frame = diamonds_frame(dir.path());
    let input = dir.path().join("in.parquet");
    // Row groups that chunks do not divide: chunks run across row-group boundaries.
    write_parquet(&mut frame, &input, 777);
    let output = dir.path().join("out.parquet");
    predict(
        &[
            "--input",
            path_arg(&input),
            "--output",
            path_arg(&output),
            "--keep",
            "row_id",
            "--keep",
            "weight",
            "--keep",
            "cut",
        ],
        &[],
    );
    let scored = read_parquet(&output);
    assert_eq!(scored.height(), frame.height(), "one output row per input row");
    let names: Vec<&str> = scored.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["row_id", "weight", "cut", "prediction", "error"]);
    assert_eq!(scored.column("row_id").expect("row_id").dtype(), &DataType::Int64);
    assert_eq!(scored.column("weight").expect("weight").dtype(), &DataType::Float32);
    assert_eq!(scored.column("cut").expect("cut").dtype(), &DataType::String);
    for name in ["row_id", "weight", "cut"] {
        let (got, want) = (scored.column(name).expect("kept"), frame.column(name).expect("input"));
        assert!(
            got.as_materialized_series().equals_missing(want.as_materialized_series()),
            "kept column {name} differs from the input"
        );
    }
    assert_eq!(scored.column("error").expect("error").null_count(), scored.height(), "no row failed");

    // The same rows as CSV through the text path: the same prediction bits.
    let csv_in = test_split_csv("diamonds", dir.path());
    let csv_out = dir.path().join("out.csv");
    predict(&["--input", path_arg(&csv_in), "--output", path_arg(&csv_out)], &[]);
    let mut reader = csv::Reader::from_path(&csv_out).expect("csv output");
    let from_text: Vec<u32> =
        reader.records().map(|r| r.expect("row")[0].parse::<f32>().expect("a float").to_bits()).collect();
    let from_parquet: Vec<u32> = rows_of(&[output]).into_iter().map(|(_, p, _)| p.expect("scored")).collect();
    assert_eq!(from_parquet.len(), from_text.len());
    assert!(from_parquet == from_text, "Parquet and CSV inputs give different prediction bits");
}

#[test]
fn bad_parquet_rows_get_their_error_in_place_and_the_rest_is_scored() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let frame = diamonds_frame(dir.path()).head(Some(50));
    // `cut` of row 3 an unknown category, `carat` of row 5 null, `clarity` of row 8 null; the
    // numeric `depth` as text with one bad value.
    let n = frame.height();
    let cut: Vec<String> = frame
        .column("cut")
        .expect("cut")
        .str()
        .expect("text")
        .iter()
        .enumerate()
        .map(|(i, c)| if i == 2 { "Exquisite".to_string() } else { c.expect("cut").to_string() })
        .collect();
    let depth: Vec<String> = frame
        .column("depth")
        .expect("depth")
        .f64()
        .expect("f64")
        .iter()
        .enumerate()
        .map(|(i, d)| if i == 6 { "deep".to_string() } else { d.expect("depth").to_string() })
        .collect();
    let mut frame = frame;
    frame.with_column(Series::new("cut".into(), cut).into()).expect("cut");
    frame.with_column(Series::new("depth".into(), depth).into()).expect("depth");
    let carat: Vec<Option<f64>> = frame
        .column("carat")
        .expect("carat")
        .f64()
        .expect("f64")
        .iter()
        .enumerate()
        .map(|(i, c)| if i == 4 { None } else { c })
        .collect();
    frame.with_column(Series::new("carat".into(), carat).into()).expect("carat");
    let input = dir.path().join("bad.parquet");
    write_parquet(&mut frame, &input, 16);
    let output = dir.path().join("out.jsonl");
    let run = predict(&["--input", path_arg(&input), "--output", path_arg(&output), "--keep", "row_id"], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "some rows failed: {stderr}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), n, "one output row per input row");
    let ids: Vec<i64> = lines.iter().map(|l| l["row_id"].as_i64().expect("an integer id")).collect();
    let want: Vec<i64> = (0..n as i64).map(|i| 1_000_000 + i * 7).collect();
    assert_eq!(ids, want, "rows in input order, ids kept as numbers");
    let error = |row: usize| lines[row]["error"].as_str().unwrap_or("").to_string();
    assert!(
        error(2).starts_with("row 3: ") && error(2).contains("'cut'") && error(2).contains("Exquisite"),
        "{}",
        error(2)
    );
    assert!(
        error(6).starts_with("row 7: ") && error(6).contains("'depth'") && error(6).contains("deep"),
        "{}",
        error(6)
    );
    let failed: Vec<usize> = (0..n).filter(|&r| !error(r).is_empty()).collect();
    // A null `carat` is a missing value, which the recipe imputes: scored like any other row.
    assert_eq!(failed, [2, 6], "exactly the bad rows failed: {stderr}");
    for (row, line) in lines.iter().enumerate().filter(|(r, _)| !failed.contains(r)) {
        assert!(line["prediction"].as_f64().is_some_and(f64::is_finite), "row {row} has no prediction: {line}");
    }
}

#[test]
fn shards_in_separate_processes_score_every_row_once_with_the_bits_of_one_run() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut frame = diamonds_frame(dir.path());
    let whole = dir.path().join("whole.parquet");
    write_parquet(&mut frame, &whole, 500);
    // The same rows as 7 part files of uneven size, as a Spark job writes them, with the files
    // Spark writes beside them.
    let parts = dir.path().join("parts");
    std::fs::create_dir_all(&parts).expect("parts dir");
    let n = frame.height();
    let mut start = 0;
    for part in 0..7 {
        let len = if part == 6 { n - start } else { n / 9 + part * 40 };
        let mut slice = frame.slice(start as i64, len);
        write_parquet(&mut slice, &parts.join(format!("part-{part:05}-c000.snappy.parquet")), 300);
        start += len;
    }
    std::fs::write(parts.join("_SUCCESS"), "").expect("marker");
    std::fs::write(parts.join(".part-00000-c000.snappy.parquet.crc"), "crc").expect("checksum file");

    let unsharded = dir.path().join("unsharded.parquet");
    predict(&["--input", path_arg(&whole), "--output", path_arg(&unsharded), "--keep", "row_id"], &[]);
    let expected = rows_of(&[unsharded]);
    assert_eq!(expected.len(), n);

    // Three shards, each its own process, started together: two with --shard, one as a pod of
    // an Indexed Job would run it.
    let out = dir.path().join("scored");
    let parts_arg = path_arg(&parts).to_string();
    let out_arg = path_arg(&out).to_string();
    let runs: Vec<std::thread::JoinHandle<Output>> = (0..3)
        .map(|index| {
            let (parts_arg, out_arg) = (parts_arg.clone(), out_arg.clone());
            std::thread::spawn(move || {
                let common = ["--input", parts_arg.as_str(), "--output", out_arg.as_str(), "--keep", "row_id"];
                if index == 2 {
                    predict(&[&common[..], &["--shard-count", "3"]].concat(), &[("JOB_COMPLETION_INDEX", "2")])
                } else {
                    let shard = format!("{index}/3");
                    predict(&[&common[..], &["--shard", shard.as_str()]].concat(), &[])
                }
            })
        })
        .collect();
    for run in runs {
        let output = run.join().expect("shard thread");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("of 7 input files"), "{stderr}");
    }
    let mut written: Vec<PathBuf> =
        std::fs::read_dir(&out).expect("output dir").map(|e| e.expect("entry").path()).collect();
    written.sort();
    let names: Vec<String> =
        written.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
    let want: Vec<String> = (0..7).map(|p| format!("part-{p:05}-c000.parquet")).collect();
    assert_eq!(names, want, "one output file per input file, and nothing else (no temporary files)");

    let mut union = rows_of(&written);
    union.sort_by_key(|row| row.0);
    let mut expected = expected;
    expected.sort_by_key(|row| row.0);
    assert_eq!(union.len(), expected.len(), "every row scored exactly once");
    for (got, want) in union.iter().zip(&expected) {
        assert_eq!(got, want, "row {} differs between the sharded and the unsharded run", want.0);
    }
}

#[test]
fn damaged_parquet_files_are_refused_or_scored_never_a_panic() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut frame = diamonds_frame(dir.path()).head(Some(3000));
    let clean = dir.path().join("clean.parquet");
    write_parquet(&mut frame, &clean, 400);
    let bytes = std::fs::read(&clean).expect("read back");
    let predictor = shared_inference::Predictor::load(&repository().version_dir("diamonds")).expect("model loads");
    let options = serving::batch::BatchOptions {
        input_format: serving::batch::Format::Parquet,
        output_format: serving::batch::Format::Csv,
        keep: vec!["row_id".into()],
        chunk_rows: 256,
    };
    let damaged = dir.path().join("damaged.parquet");
    // A small deterministic generator (xorshift): the same 300 damaged files on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let (mut refused, mut scored) = (0, 0);
    for case in 0..300 {
        let mut damaged_bytes = bytes.clone();
        if case % 4 == 0 {
            damaged_bytes.truncate(next(bytes.len()));
        } else {
            for _ in 0..1 + next(8) {
                let at = next(damaged_bytes.len());
                damaged_bytes[at] = next(256) as u8;
            }
        }
        std::fs::write(&damaged, &damaged_bytes).expect("write damaged file");
        let file = std::fs::File::open(&damaged).expect("open damaged file");
        let mut out = Vec::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serving::batch::score_parquet(&predictor, file, &mut out, &options, |_| {})
        }));
        match outcome {
            Err(_) => panic!("case {case}: a damaged Parquet file made the reader panic"),
            Ok(Err(error)) => {
                assert!(!format!("{error:#}").trim().is_empty(), "case {case}: refused without a message");
                refused += 1;
            }
            Ok(Ok(summary)) => {
                // Damage the format cannot detect (a flipped digit in a plain-encoded number)
                // still gives one output row per input row.
                assert_eq!(summary.rows, frame.height(), "case {case}: scored, but not every row");
                scored += 1;
            }
        }
    }
    assert!(refused > 100, "only {refused} of 300 damaged files were refused ({scored} scored)");
}
