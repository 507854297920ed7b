//! No request lost during a rollout: the real binary polls a live repository every 0.2 s while
//! 32 keep-alive clients send v1 and v2 requests of a few diamonds rows. Meanwhile version 2 is
//! written (staged in a `.tmp-2` directory, then renamed, as the trainer does), `serving.toml`
//! moves the split of unversioned requests 100/0 -> 75/25 -> 50/50 -> 0/100 (each rewrite a
//! temporary file renamed over the old one), then keeps only the latest version, and version 1
//! is removed (renamed to `.old-1`, then deleted).
//!
//! Every request must be answered 200 on its connection; every answer must come from a version
//! that was being served then; and every answer's predictions must equal, bit for bit, those of
//! `serving predict --model <that version>` on the same rows. Version 2 is version 1 with the
//! target transform's mean moved, so the two versions predict differently and a v1 answer,
//! which does not name its version, is told apart by its predictions.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared_inference::{MANIFEST_FILE, Manifest, TargetTransform};

use crate::server::{diamonds_record, wait_ready};
use crate::support::{Outcome, Server, binary, copy_dir, read_response, repository, send};

/// Distinct rows the clients draw their requests from.
const ROWS: usize = 48;
const CLIENTS: usize = 32;
/// Per client: at most this many requests, one every `PAUSE` or so.
const MAX_REQUESTS: usize = 800;
const PAUSE: Duration = Duration::from_millis(25);
/// The clients stop by themselves after this long, whatever the scenario does.
const CLIENT_LIMIT: Duration = Duration::from_secs(22);
const POLL: &str = "0.2";
/// Time for a rewritten `serving.toml` to be in force: five poll intervals.
const SETTLE: Duration = Duration::from_secs(1);
/// How long each split is held.
const HOLD: Duration = Duration::from_secs(2);
/// After the index says version 1 is gone, answers sent later than this must all be version 2.
const GRACE: Duration = Duration::from_secs(1);

/// Sets the flag when dropped: the clients stop also when the test fails half-way.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Writes a file atomically: a temporary file beside it, renamed over it.
fn write_atomically(path: &Path, text: &str) {
    let name = path.file_name().expect("a file name").to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).expect("write the temporary file");
    std::fs::rename(&temporary, path).expect("rename it into place");
}

/// A copy of version directory `from` as version 2 at `to`, its target transform's mean moved
/// so that it predicts other prices, the manifest resealed.
fn make_version_2(from: &Path, to: &Path) {
    copy_dir(from, to);
    let path = to.join(MANIFEST_FILE);
    let mut manifest = Manifest::from_json(&std::fs::read(&path).expect("read the manifest")).expect("manifest");
    manifest.version = 2;
    manifest.target_transform = match manifest.target_transform {
        TargetTransform::LogStandardize { mean, std } => TargetTransform::LogStandardize { mean: mean + 0.1, std },
        TargetTransform::Standardize { mean, std } => TargetTransform::Standardize { mean: mean + std, std },
        TargetTransform::Log1pStandardize { mean, std } => TargetTransform::Log1pStandardize { mean: mean + 0.1, std },
        TargetTransform::None => panic!("diamonds is a regression"),
    };
    std::fs::write(&path, manifest.to_json().expect("manifest serializes")).expect("write the manifest");
}

/// The predictions of `serving predict --model dir` on the rows, as f32 bits.
fn expected_predictions(dir: &Path, rows_file: &Path, out: &Path) -> Vec<u32> {
    let output = Command::new(binary("serving"))
        .args(["predict", "--quiet", "--model"])
        .arg(dir)
        .arg("--input")
        .arg(rows_file)
        .arg("--output")
        .arg(out)
        .env_remove("RUST_LOG")
        .output()
        .expect("serving predict runs");
    assert!(output.status.success(), "serving predict failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut reader = csv::Reader::from_path(out).expect("read the predictions");
    let header = reader.headers().expect("header").clone();
    assert_eq!(header.iter().collect::<Vec<_>>(), ["prediction", "error"], "columns of serving predict");
    let values: Vec<u32> = reader
        .records()
        .map(|record| {
            let record = record.expect("a CSV record");
            assert_eq!(&record[1], "", "serving predict failed a row: {record:?}");
            record[0].parse::<f32>().unwrap_or_else(|e| panic!("{:?}: {e}", &record[0])).to_bits()
        })
        .collect();
    assert_eq!(values.len(), ROWS, "one prediction per row");
    values
}

fn v1_body(rows: &[Value]) -> Vec<u8> {
    json!({ "instances": rows }).to_string().into_bytes()
}

fn v2_body(rows: &[Value]) -> Vec<u8> {
    let first = rows[0].as_object().expect("a record is an object");
    let inputs: Vec<Value> = first
        .iter()
        .map(|(name, value)| {
            let datatype = if value.is_string() { "BYTES" } else { "FP64" };
            let data: Vec<Value> = rows.iter().map(|r| r[name].clone()).collect();
            json!({ "name": name, "datatype": datatype, "shape": [rows.len()], "data": data })
        })
        .collect();
    json!({ "inputs": inputs }).to_string().into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V1,
    V2,
}

/// One answered request: when it was sent and answered (from the test's start), the version
/// its predictions match, and for v2 the version it named.
#[derive(Debug, Clone)]
struct Sample {
    client: usize,
    sent: Duration,
    done: Duration,
    protocol: Protocol,
    named: Option<u64>,
    predicted_by: u64,
}

struct ClientReport {
    samples: Vec<Sample>,
    failures: Vec<String>,
    connections: usize,
}

/// The version whose expected predictions `got` equals on `rows`, or why none does.
fn attribute(got: &[u32], rows: &[usize], expected: &[(u64, Vec<u32>)]) -> Result<u64, String> {
    expected
        .iter()
        .find(|(_, values)| got.len() == rows.len() && rows.iter().zip(got).all(|(&r, &g)| values[r] == g))
        .map(|(version, _)| *version)
        .ok_or_else(|| {
            let wanted: Vec<String> = expected
                .iter()
                .map(|(v, values)| {
                    format!("v{v}: {:?}", rows.iter().map(|&r| f32::from_bits(values[r])).collect::<Vec<_>>())
                })
                .collect();
            format!(
                "predictions {:?} for rows {rows:?} match no version ({})",
                got.iter().map(|&g| f32::from_bits(g)).collect::<Vec<_>>(),
                wanted.join("; ")
            )
        })
}

fn f32_bits(values: Option<&Vec<Value>>) -> Result<Vec<u32>, String> {
    values
        .ok_or("no predictions")?
        .iter()
        .map(|v| v.as_f64().map(|f| (f as f32).to_bits()).ok_or_else(|| format!("{v} is not a number")))
        .collect()
}

fn client(
    id: usize,
    addr: SocketAddr,
    records: Arc<Vec<Value>>,
    expected: Arc<Vec<(u64, Vec<u32>)>>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> ClientReport {
    let mut report = ClientReport { samples: Vec::new(), failures: Vec::new(), connections: 0 };
    let mut stream: Option<TcpStream> = None;
    for j in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) || start.elapsed() > CLIENT_LIMIT {
            break;
        }
        let first = (id * 7 + j * 3) % ROWS;
        let rows: Vec<usize> = (0..1 + (id + j) % 4).map(|k| (first + k) % ROWS).collect();
        let values: Vec<Value> = rows.iter().map(|&r| records[r].clone()).collect();
        let protocol = if (id + j).is_multiple_of(2) { Protocol::V2 } else { Protocol::V1 };
        let (path, body) = match protocol {
            Protocol::V1 => ("/v1/models/diamonds:predict", v1_body(&values)),
            Protocol::V2 => ("/v2/models/diamonds/infer", v2_body(&values)),
        };
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        if stream.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    report.connections += 1;
                    stream = Some(s);
                }
                Err(e) => {
                    report.failures.push(format!("client {id} request {j}: connect: {e}"));
                    std::thread::sleep(PAUSE);
                    continue;
                }
            }
        }
        let Some(connection) = stream.as_mut() else { continue };
        let sent = start.elapsed();
        let answer =
            connection.write_all(&request).map_err(|e| format!("write: {e}")).and_then(|()| read_response(connection));
        let done = start.elapsed();
        let fail = |report: &mut ClientReport, what: String| {
            report.failures.push(format!("client {id} request {j} ({protocol:?}, sent at {sent:?}): {what}"));
        };
        match answer {
            Err(e) => {
                fail(&mut report, e);
                stream = None;
            }
            Ok(response) => {
                if response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    fail(&mut report, format!("the server closed the connection: {:?}", response.headers));
                    stream = None;
                }
                if response.status != 200 {
                    fail(
                        &mut report,
                        format!("status {}: {}", response.status, String::from_utf8_lossy(&response.body)),
                    );
                } else {
                    let parsed: Result<(Option<u64>, Vec<u32>), String> =
                        serde_json::from_slice::<Value>(&response.body).map_err(|e| e.to_string()).and_then(|body| {
                            match protocol {
                                Protocol::V1 => Ok((None, f32_bits(body["predictions"].as_array())?)),
                                Protocol::V2 => {
                                    let named = body["model_version"]
                                        .as_str()
                                        .and_then(|v| v.parse::<u64>().ok())
                                        .ok_or_else(|| format!("no model_version in {body}"))?;
                                    let output = body["outputs"]
                                        .as_array()
                                        .and_then(|o| o.iter().find(|t| t["name"] == "prediction"))
                                        .ok_or_else(|| format!("no prediction output in {body}"))?;
                                    Ok((Some(named), f32_bits(output["data"].as_array())?))
                                }
                            }
                        });
                    match parsed.and_then(|(named, got)| Ok((named, attribute(&got, &rows, &expected)?))) {
                        Ok((named, predicted_by)) => {
                            if named.is_some_and(|n| n != predicted_by) {
                                fail(
                                    &mut report,
                                    format!("named version {named:?} but predicted as version {predicted_by}"),
                                );
                            }
                            report.samples.push(Sample { client: id, sent, done, protocol, named, predicted_by });
                        }
                        Err(e) => fail(&mut report, e),
                    }
                }
            }
        }
        std::thread::sleep(PAUSE);
    }
    report
}

/// The repository index's state of `diamonds` version `version`, if listed.
fn index_state(addr: SocketAddr, version: u64) -> Option<String> {
    let response = match send(addr, "POST", "/v2/repository/index", &[], b"") {
        Outcome::Answered(r) if r.status == 200 => r,
        other => panic!("repository index: {other:?}"),
    };
    let index = response.json();
    let entries = index.as_array().unwrap_or_else(|| panic!("the index is not an array: {index}"));
    entries
        .iter()
        .find(|e| e["name"] == "diamonds" && e["version"] == version.to_string().as_str())
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
}

/// Waits (at most 10 s) until `condition` holds of the index state of diamonds `version`.
fn wait_index(server: &Server, version: u64, what: &str, condition: impl Fn(Option<&str>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = index_state(server.addr, version);
        if condition(state.as_deref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "diamonds version {version} never became {what} (last state {state:?}); log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metrics(addr: SocketAddr) -> String {
    match send(addr, "GET", "/metrics", &[], b"") {
        Outcome::Answered(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
        other => panic!("/metrics: {other:?}"),
    }
}

fn assert_config_valid(server: &Server, when: &str) {
    let text = metrics(server.addr);
    assert!(
        text.lines().any(|l| l == "serving_config_valid 1"),
        "serving.toml refused {when}; metrics:\n{text}\nlog:\n{}",
        server.log()
    );
}

fn split_config(one: u32, two: u32) -> String {
    format!("[model.diamonds]\nversions = \"all\"\nsplit = {{ \"1\" = {one}, \"2\" = {two} }}\n")
}

#[test]
fn no_request_is_lost_or_misrouted_while_a_new_version_rolls_out_and_the_old_one_is_removed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("models");
    let model = root.join("diamonds");
    let trained = repository().version_dir("diamonds");
    copy_dir(&trained, &model.join("1"));
    let staged = dir.path().join("staging/diamonds/2");
    make_version_2(&model.join("1"), &staged);

    let records: Vec<Value> = (0..ROWS).map(|i| diamonds_record(i * 5 + i / 10)).collect();
    let rows_file = dir.path().join("rows.jsonl");
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&rows_file, lines.join("\n") + "\n").expect("write the rows");
    let expected = vec![
        (1, expected_predictions(&model.join("1"), &rows_file, &dir.path().join("v1.csv"))),
        (2, expected_predictions(&staged, &rows_file, &dir.path().join("v2.csv"))),
    ];
    for row in 0..ROWS {
        assert_ne!(expected[0].1[row], expected[1].1[row], "versions 1 and 2 predict row {row} alike");
    }
    let expected = Arc::new(expected);
    let records = Arc::new(records);

    let server = Server::start(&root, &["--poll-interval-seconds", POLL]);
    wait_ready(server.addr);
    assert_eq!(index_state(server.addr, 1).as_deref(), Some("READY"));

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (records, expected, stop, addr) = (records.clone(), expected.clone(), stop.clone(), server.addr);
            std::thread::spawn(move || client(id, addr, records, expected, start, stop))
        })
        .collect();
    let config = root.join("serving.toml");
    let at = || start.elapsed();

    // Only version 1, then every version served but the split sending everything to 1.
    std::thread::sleep(Duration::from_millis(500));
    write_atomically(&config, "[model.diamonds]\nversions = \"all\"\nsplit = { \"1\" = 100 }\n");
    std::thread::sleep(Duration::from_millis(600));
    assert_config_valid(&server, "with only version 1 in the split");

    // Version 2 arrives whole.
    let temporary = model.join(".tmp-2");
    copy_dir(&staged, &temporary);
    let v2_on_disk = at();
    std::fs::rename(&temporary, model.join("2")).expect("rename .tmp-2 to 2");
    wait_index(&server, 2, "READY", |s| s == Some("READY"));
    let v2_ready = at();

    // The split moves over to version 2.
    let mut writes = Vec::new();
    for (one, two) in [(100, 0), (75, 25), (50, 50), (0, 100)] {
        write_atomically(&config, &split_config(one, two));
        writes.push(((one, two), at()));
        std::thread::sleep(HOLD);
        assert_config_valid(&server, &format!("with split {one}/{two}"));
    }

    // Only the latest version, then version 1 leaves the disk.
    write_atomically(&config, "[model.diamonds]\nversions = { latest = 1 }\n");
    let latest_only = at();
    wait_index(&server, 1, "not ready", |s| s != Some("READY"));
    let v1_unserved = at();
    let old = model.join(".old-1");
    std::fs::rename(model.join("1"), &old).expect("rename 1 to .old-1");
    std::fs::remove_dir_all(&old).expect("delete .old-1");
    wait_index(&server, 1, "gone from the index", |s| s.is_none());
    let v1_gone = at();
    std::thread::sleep(GRACE + Duration::from_millis(1500));

    let text = metrics(server.addr);
    let v2_ok = text.lines().find(|l| {
        l.starts_with("serving_requests_total{")
            && l.contains("model=\"diamonds\",version=\"2\"")
            && l.contains("outcome=\"ok\"")
            && l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
    });
    assert!(v2_ok.is_some(), "no serving_requests_total series of diamonds version 2 in /metrics:\n{text}");
    let scenario_end = at();
    stop.store(true, Ordering::SeqCst);

    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let mut connections = 0;
    for client in clients {
        let report = client.join().expect("client thread");
        samples.extend(report.samples);
        failures.extend(report.failures);
        connections += report.connections;
    }
    let count = |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count();
    let (v1_answers, v2_answers) = (count(&|s| s.protocol == Protocol::V1), count(&|s| s.protocol == Protocol::V2));
    let by_version = |version: u64| count(&|s| s.predicted_by == version);
    let named = |version: u64| count(&|s| s.named == Some(version));
    eprintln!(
        "rollout: {} requests answered ({v1_answers} v1, {v2_answers} v2 naming version 1 {} and 2 {} times; {} by version 1, {} by version 2) \
         on {connections} connections, {} failed; v2 on disk at {v2_on_disk:?}, ready at {v2_ready:?}, \
         splits written at {:?}, latest-only at {latest_only:?}, v1 unserved at {v1_unserved:?}, \
         gone at {v1_gone:?}, end at {scenario_end:?}",
        samples.len(),
        named(1),
        named(2),
        by_version(1),
        by_version(2),
        failures.len(),
        writes.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; the first: {:#?}\nserver log:\n{}",
        failures.len(),
        failures.len() + samples.len(),
        &failures[..failures.len().min(20)],
        server.log()
    );

    // Version facts, each by causality (a version cannot answer before it is on disk, a split
    // cannot act before it is written) or after a settling time for the poller.
    let mut wrong = Vec::new();
    let (split_100_0, split_75_25, split_50_50, split_0_100) = (writes[0].1, writes[1].1, writes[2].1, writes[3].1);
    for s in &samples {
        let v = s.predicted_by;
        if v == 2 && s.done < v2_on_disk {
            wrong.push(format!("version 2 answered before it was on disk: {s:?}"));
        }
        if v == 2 && s.done < split_75_25 {
            wrong.push(format!("version 2 answered while the split gave it nothing: {s:?}"));
        }
        if v == 1 && s.sent > split_0_100 + SETTLE {
            wrong.push(format!("version 1 answered after the split gave it nothing: {s:?}"));
        }
        if v == 1 && s.sent > v1_gone + GRACE {
            wrong.push(format!("version 1 answered after the index said it was gone: {s:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers from the wrong version; the first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );

    // Every stage saw traffic, and the shares of the mixed splits are about right.
    let window = |from: Duration, to: Duration| -> Vec<&Sample> {
        samples.iter().filter(|s| s.sent >= from && s.done <= to).collect()
    };
    let share_of_2 = |w: &[&Sample]| w.iter().filter(|s| s.predicted_by == 2).count() as f64 / w.len().max(1) as f64;
    let stages = [
        ("only version 1", Duration::ZERO, v2_on_disk, 0.0, 0.0),
        ("split 100/0", split_100_0, split_75_25, 0.0, 0.0),
        ("split 75/25", split_75_25 + SETTLE, split_50_50, 0.1, 0.45),
        ("split 50/50", split_50_50 + SETTLE, split_0_100, 0.3, 0.7),
        ("split 0/100", split_0_100 + SETTLE, latest_only, 1.0, 1.0),
        ("version 1 gone", v1_gone + GRACE, scenario_end, 1.0, 1.0),
    ];
    for (stage, from, to, low, high) in stages {
        let w = window(from, to);
        let share = share_of_2(&w);
        eprintln!("rollout: {stage}: {} answers, {:.1}% by version 2", w.len(), share * 100.0);
        assert!(w.len() >= 20, "{stage}: only {} answers between {from:?} and {to:?}", w.len());
        assert!((low..=high).contains(&share), "{stage}: {:.1}% of {} answers by version 2", share * 100.0, w.len());
    }
    let clients_at_end = samples
        .iter()
        .filter(|s| s.sent > v1_gone + GRACE)
        .map(|s| s.client)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(clients_at_end.len(), CLIENTS, "every client was still sending at the end");
    assert!(matches!(index_state(server.addr, 2).as_deref(), Some("READY")), "version 2 is served at the end");
}
