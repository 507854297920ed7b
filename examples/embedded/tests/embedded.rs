//! The example as a user runs it: its binary on a real port on 127.0.0.1, serving models the
//! trainer binary trained, with every answer compared bit for bit with what `serving predict`
//! writes for the same rows. Model quality is not tested here, only that embedding changes nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};
use shared_inference::{ColumnKind, ColumnSpec, Predictor};

/// Records per request: several requests for the larger data set, each far under axum's default
/// body limit (2 MB).
const RECORDS_PER_REQUEST: usize = 1000;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("examples/embedded sits in the workspace")
}

/// A binary of the workspace, built beside this test executable (`target/<profile>/<name>`), as
/// the test command builds every binary before it runs the tests.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; build the workspace first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A bundled recipe trained on the CPU by the trainer binary, once per test process.
struct Trained {
    _dir: tempfile::TempDir,
    version_dir: PathBuf,
}

impl Trained {
    fn new(recipe: &str, epochs: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = workspace();
        let mut command = Command::new(binary("trainer"));
        command
            .args(["train", "--quiet", "--device", "cpu", "--config"])
            .arg(root.join(format!("configs/{recipe}.toml")));
        command.arg("--data").arg(root.join(format!("data/{recipe}.csv"))).arg("--out").arg(dir.path());
        if let Some(epochs) = epochs {
            command.args(["--epochs", epochs]);
        }
        let output = command.output().expect("the trainer runs");
        assert!(output.status.success(), "training {recipe} failed: {}", String::from_utf8_lossy(&output.stderr));
        Self { version_dir: dir.path().join(recipe).join("1"), _dir: dir }
    }
}

fn penguins() -> &'static Path {
    static MODEL: OnceLock<Trained> = OnceLock::new();
    &MODEL.get_or_init(|| Trained::new("penguins", None)).version_dir
}

/// Diamonds for a few epochs: equal bits need the same model, not a good one.
fn diamonds() -> &'static Path {
    static MODEL: OnceLock<Trained> = OnceLock::new();
    &MODEL.get_or_init(|| Trained::new("diamonds", Some("4"))).version_dir
}

/// The example's binary serving one model on 127.0.0.1, killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    /// Starts it on port 0 and reads the address it bound from its first line on stdout.
    fn start(model: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_embedded-model"))
            .arg("--model")
            .arg(model)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Read on, so that the example never writes into a closed pipe.
            for _ in lines.map_while(Result::ok) {}
        });
        let first = receiver.recv_timeout(Duration::from_secs(20));
        let addr = match &first {
            Ok(Some(Ok(line))) => line.strip_prefix("listening on http://").and_then(|a| a.parse::<SocketAddr>().ok()),
            _ => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example did not print `listening on http://<addr>` first: {first:?}");
        };
        Self { child, addr }
    }

    /// Posts `body` to `/predict` on a fresh connection: the status and the JSON answer.
    fn post(&self, body: &[u8]) -> (u16, Value) {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("set a read timeout");
        let head = format!(
            "POST /predict HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).expect("send the request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read the response");
        let response = String::from_utf8(response).expect("a UTF-8 response");
        let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "a body of known length: {head}");
        let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).expect("a status line");
        (status, serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {body}")))
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of a bundled data file as a JSON record of the model's features, as a web client
/// sends it: numbers for numeric columns, text for categorical ones, null where a value is missing.
fn records(data: &Path, predictor: &Predictor) -> Vec<Map<String, Value>> {
    let mut reader = csv::Reader::from_path(data).expect("the data file");
    let header = reader.headers().expect("a header").clone();
    let columns: Vec<(usize, &ColumnSpec)> = predictor
        .schema()
        .features
        .iter()
        .map(|spec| (header.iter().position(|h| h == spec.name).expect("every feature is in the file"), spec))
        .collect();
    reader
        .records()
        .map(|record| {
            let record = record.expect("a data row");
            columns
                .iter()
                .map(|&(index, spec)| {
                    let value = match (spec.kind, record.get(index).expect("a full row")) {
                        (_, "NA" | "") => Value::Null,
                        (ColumnKind::Numeric, text) => json!(text.parse::<f64>().expect("a number")),
                        (ColumnKind::Categorical, text) => json!(text),
                    };
                    (spec.name.clone(), value)
                })
                .collect()
        })
        .collect()
}

/// One row's prediction as facts to compare: the label, if any, and for each float in `serving
/// predict`'s column order (`prediction`, or one probability per class) its `f32` bits and the
/// bits of its decimal read as `f64`. Equal decimals show the example writes each float as the
/// `f32` it is, in its shortest form, as `serving predict` does, rather than widened.
#[derive(Debug, PartialEq)]
struct Bits {
    label: Option<String>,
    /// The f32 bits of each number: equal bits, not merely close values.
    floats: Vec<u32>,
}

/// A JSON number's f32 bits. The answer's decimal is the shortest that reads back to its f32, so
/// reading it through f64 first lands on the same f32.
fn bits_of_number(number: f64) -> u32 {
    (number as f32).to_bits()
}

/// A row of `serving predict`'s CSV output, which must have scored it.
fn bits_of_scored(header: &csv::StringRecord, row: &csv::StringRecord) -> Bits {
    let mut bits = Bits { label: None, floats: Vec::new() };
    for (column, cell) in header.iter().zip(row.iter()) {
        match column {
            "error" => assert_eq!(cell, "", "serving predict failed a row"),
            "label" => bits.label = Some(cell.to_string()),
            _ => match cell.parse::<f32>() {
                Ok(single) => bits.floats.push(single.to_bits()),
                _ => panic!("{column}: {cell:?} is not a float"),
            },
        }
    }
    bits
}

/// An answer of the example: `{"prediction": x}` or `{"label": l, "probabilities": {class: p}}`.
fn bits_of_answer(answer: &Value, classes: &[String]) -> Bits {
    let number = |value: &Value| bits_of_number(value.as_f64().unwrap_or_else(|| panic!("a number: {answer}")));
    if classes.is_empty() {
        return Bits { label: None, floats: vec![number(&answer["prediction"])] };
    }
    let probabilities = answer["probabilities"].as_object().unwrap_or_else(|| panic!("probabilities: {answer}"));
    assert_eq!(probabilities.len(), classes.len(), "one probability per class: {answer}");
    Bits {
        label: answer["label"].as_str().map(str::to_string),
        floats: classes.iter().map(|class| number(&answer["probabilities"][class])).collect(),
    }
}

/// Posts every row of `data` to the example and compares each answer with `serving predict`'s
/// output for the same file.
fn check_against_serving_predict(model: &Path, data: &str) {
    let data = workspace().join(data);
    let predictor = Predictor::load(model).expect("the model loads");
    let dir = tempfile::tempdir().expect("temporary directory");
    let scored_path = dir.path().join("scored.csv");
    let output = Command::new(binary("serving"))
        .args(["predict", "--quiet", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&data)
        .arg("--output")
        .arg(&scored_path)
        .output()
        .expect("serving runs");
    assert!(output.status.success(), "serving predict failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut scored = csv::Reader::from_path(&scored_path).expect("the scored file");
    let header = scored.headers().expect("a header").clone();
    let expected: Vec<Bits> = scored.records().map(|row| bits_of_scored(&header, &row.expect("a row"))).collect();

    let records = records(&data, &predictor);
    assert_eq!(records.len(), expected.len(), "serving predict wrote one row per record");
    let example = Example::start(model);
    let mut answers = Vec::with_capacity(records.len());
    for chunk in records.chunks(RECORDS_PER_REQUEST) {
        let (status, answer) = example.post(&serde_json::to_vec(chunk).expect("JSON"));
        assert_eq!(status, 200, "{answer}");
        let chunk_answers = match answer {
            Value::Array(chunk_answers) => chunk_answers,
            other => panic!("an array of answers: {other}"),
        };
        assert_eq!(chunk_answers.len(), chunk.len(), "one answer per record");
        answers.extend(chunk_answers);
    }
    for (row, (answer, scored_row)) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(&bits_of_answer(answer, predictor.labels()), scored_row, "row {row}: {answer}");
    }
}

#[test]
fn answers_equal_serving_predict_bit_for_bit_on_penguins() {
    check_against_serving_predict(penguins(), "data/penguins.csv");
}

#[test]
fn answers_equal_serving_predict_bit_for_bit_on_diamonds() {
    check_against_serving_predict(diamonds(), "data/diamonds.csv");
}

#[test]
fn a_bad_request_is_a_400_that_says_what_is_wrong() {
    let model = penguins();
    let predictor = Predictor::load(model).expect("the model loads");
    let good = records(&workspace().join("data/penguins.csv"), &predictor).swap_remove(0);
    let example = Example::start(model);
    let with = |column: &str, value: Option<Value>| {
        let mut record = good.clone();
        if let Some(value) = value {
            record.insert(column.to_string(), value);
        } else {
            record.remove(column);
        }
        serde_json::to_vec(&[record]).expect("JSON")
    };
    let check = |body: Vec<u8>, status: u16, named: &str| {
        let (got, answer) = example.post(&body);
        assert_eq!(got, status, "{answer}");
        let text = answer["error"].as_str().map_or_else(|| answer.to_string(), str::to_string);
        assert!(text.contains(named), "{named} not in {answer}");
    };
    check(with("island", Some(json!("Biscoe"))), 200, "label");
    check(with("wingspan_mm", Some(json!(210.0))), 400, "unknown column 'wingspan_mm'");
    check(with("sex", None), 400, "missing column 'sex'");
    check(with("bill_length_mm", Some(json!("long"))), 400, "row 0: column 'bill_length_mm': expected a number");
    check(with("island", Some(json!(true))), 400, "row 0, column 'island': expected a number, text or null");
    check(with("island", Some(json!("Atlantis"))), 400, "unknown category 'Atlantis'");
    check(br#"{"island": "Biscoe"}"#.to_vec(), 400, "expected a JSON array of records");
    check(b"[{\"island\": ".to_vec(), 400, "expected a JSON array of records");
}
