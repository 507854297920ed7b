//! `serving predict` on a file with bad rows mixed in: one output row per input row, in input
//! order, bad rows written with an error naming the line, the column and the problem, a summary
//! on stderr, and a non-zero exit.

use std::process::Command;

use crate::support::{binary, repository};

const GOOD: &str = "Adelie,Torgersen,39.1,18.7,181,3750,male,2007";

fn score(input_name: &str, input: &str, extra: &[&str]) -> (std::process::Output, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input_path = dir.path().join(input_name);
    std::fs::write(&input_path, input).expect("write input");
    let ext = if input_name.ends_with(".csv") { "csv" } else { "jsonl" };
    let output_path = dir.path().join(format!("out.{ext}"));
    let output = Command::new(binary("serving"))
        .arg("predict")
        .arg("--model")
        .arg(repository().version_dir("penguins"))
        .arg("--input")
        .arg(&input_path)
        .arg("--output")
        .arg(&output_path)
        .args(extra)
        .output()
        .expect("serving runs");
    let written = std::fs::read_to_string(&output_path).unwrap_or_default();
    (output, written)
}

#[test]
fn bad_csv_rows_are_reported_in_place_and_scoring_goes_on() {
    let header = "id,species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year";
    let rows = [
        format!("a,{GOOD}"),
        "b,Adelie,Atlantis,39.1,18.7,181,3750,male,2007".to_string(), // unknown category
        format!("c,{GOOD}"),
        "d,Adelie,Dream,forty,18.7,181,3750,male,2007".to_string(), // text in a numeric column
        "e,Adelie,Dream,39.1,18.7".to_string(),                     // too few fields
        "f,Gentoo,Biscoe,NA,NA,NA,NA,NA,2008".to_string(),          // missing values are imputed
        "g,Adelie,Dream,39.1,18.7,inf,3750,male,2007".to_string(),  // a number the network cannot take
    ];
    let input = format!("{header}\n{}\n", rows.join("\n"));
    let (output, written) = score("in.csv", &input, &["--keep", "id"]);
    assert_eq!(output.status.code(), Some(3), "exit code for failed rows");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scored 7 rows: 3 ok, 4 failed"), "{stderr}");

    let mut reader = csv::Reader::from_reader(written.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    assert_eq!(header, ["id", "label", "prob_Adelie", "prob_Chinstrap", "prob_Gentoo", "error"]);
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g"], "one output row per input row, in order");
    let errors: Vec<&str> = records.iter().map(|r| &r[5]).collect();
    assert_eq!(errors[0], "");
    assert!(
        errors[1].starts_with("line 3: ") && errors[1].contains("'island'") && errors[1].contains("'Atlantis'"),
        "{}",
        errors[1]
    );
    assert_eq!(errors[2], "");
    assert!(
        errors[3].starts_with("line 5: ") && errors[3].contains("'bill_length_mm'") && errors[3].contains("'forty'"),
        "{}",
        errors[3]
    );
    assert!(errors[4].starts_with("line 6: ") && errors[4].contains("fields"), "{}", errors[4]);
    assert_eq!(errors[5], "");
    assert!(
        errors[6].starts_with("line 8: ")
            && errors[6].contains("'flipper_length_mm'")
            && errors[6].contains("the number inf is out of range"),
        "{}",
        errors[6]
    );
    for good in [0, 2, 5] {
        assert!(!records[good][1].is_empty(), "row {good} has a label");
        let sum: f32 = (2..5).map(|c| records[good][c].parse::<f32>().expect("probability")).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
    assert_eq!(&records[0][1], "Adelie");
    for bad in [1, 3, 4, 6] {
        assert!(records[bad][1].is_empty(), "failed row {bad} carries no prediction");
    }
}

#[test]
fn json_lines_are_scored_line_by_line() {
    let lines = [
        r#"{"island":"Biscoe","bill_length_mm":50.0,"bill_depth_mm":15.2,"flipper_length_mm":222,"body_mass_g":5500,"sex":"male","year":2009,"tag":7}"#,
        r#"not json"#,
        r#"{"island":"Biscoe","bill_length_mm":50.0,"bill_depth_mm":15.2,"flipper_length_mm":222,"body_mass_g":5500,"sex":"male"}"#,
        r#"{"island":"Dream","bill_length_mm":null,"bill_depth_mm":18.0,"flipper_length_mm":"190","body_mass_g":3700,"sex":null,"year":2008,"tag":"x"}"#,
    ];
    let (output, written) = score("in.jsonl", &lines.join("\n"), &["--keep", "tag"]);
    assert_eq!(output.status.code(), Some(3));
    let out: Vec<serde_json::Value> = written.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(out.len(), 4);
    assert_eq!(out[0]["label"], "Gentoo");
    assert_eq!(out[0]["tag"], 7);
    assert!(out[1]["error"].as_str().is_some_and(|e| e.starts_with("line 2: invalid JSON")), "{}", out[1]);
    assert!(out[2]["error"].as_str().is_some_and(|e| e.contains("line 3") && e.contains("'year'")), "{}", out[2]);
    assert!(out[3]["label"].is_string() && out[3]["error"].is_null(), "{}", out[3]);
}

#[test]
fn a_missing_feature_column_is_a_clear_error() {
    let (output, _) = score("in.csv", "island,sex\nDream,male\n", &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no column 'bill_length_mm'"), "{stderr}");
}

/// The same bad value gives the same problem text in file scoring and over HTTP; only the
/// location differs (the file's line there, the request's row here).
#[test]
fn file_scoring_and_http_explain_a_problem_in_the_same_words() {
    let header = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year";
    let cases = [
        ("Adelie,Atlantis,39.1,18.7,181,3750,male,2007", serde_json::json!("Atlantis"), "island"),
        ("Adelie,Dream,forty,18.7,181,3750,male,2007", serde_json::json!("forty"), "bill_length_mm"),
    ];
    let model_dir = repository().version_dir("penguins");
    let mut registry = serving::Registry::default();
    let model = registry.load_version(&model_dir).expect("penguins loads");
    for (row, value, column) in cases {
        let (_, written) = score("in.csv", &format!("{header}\n{row}\n"), &[]);
        let mut reader = csv::Reader::from_reader(written.as_bytes());
        let record = reader.records().next().expect("one row").expect("readable row");
        let file_error = record.iter().next_back().expect("an error column").to_string();
        let problem = file_error.strip_prefix("line 2: ").unwrap_or_else(|| panic!("located by line: {file_error}"));
        assert!(problem.contains(&format!("column '{column}'")), "{problem}");

        // The same record over KServe v1.
        let names: Vec<&str> = header.split(',').collect();
        let mut instance = serde_json::Map::new();
        for (name, cell) in names.iter().zip(row.split(',')).skip(1) {
            let cell = if *name == column {
                value.clone()
            } else {
                cell.parse::<f64>().map_or_else(|_| serde_json::json!(cell), |n| serde_json::json!(n))
            };
            instance.insert(name.to_string(), cell);
        }
        let body = serde_json::json!({ "instances": [instance] }).to_string();
        let request = serving::v1::parse_request(body.as_bytes()).expect("valid JSON");
        let http_error = match serving::v1::decode_instances(&model, &request) {
            Err(error) => error.to_string(),
            Ok(batch) => {
                let error = model.predictor.predict(&batch).expect_err("the value is refused");
                serving::error::ServeError::input("penguins", error).to_string()
            }
        };
        assert_eq!(http_error, format!("model 'penguins', row 0: {problem}"), "{column}");
    }
}
