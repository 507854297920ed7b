//! The real `serving` binary on a real port of 127.0.0.1, used the way an operator and a client
//! would: start, wait for readiness, send v1 and v2 (JSON and binary) requests, then SIGTERM it
//! under load and check that no accepted request failed and that it exits 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Outcome, binary, repository, send};

/// Starts the server on a free port and returns it with its address, read from its JSON log.
fn start_server() -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(binary("serving"))
        .args(["serve", "--addr", "127.0.0.1:0", "--grpc-addr", "off", "--log-format", "json", "--model-repository"])
        .arg(&repository().root)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("serving starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log_writer = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<Value>(&line)
                && entry["message"] == "listening"
                && let Some(addr) = entry["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
            {
                let _ = tx.send(addr);
            }
            log_writer.lock().expect("log lock").push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("server logs its address within 20 s");
    (child, addr, log)
}

pub(crate) fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Outcome::Answered(r) = send(addr, "GET", "/v2/health/ready", &[], b"")
            && r.status == 200
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server at {addr} never became ready");
}

pub(crate) fn diamonds_record(i: usize) -> Value {
    let cuts = ["Fair", "Good", "Very Good", "Premium", "Ideal"];
    json!({
        "carat": 0.2 + (i % 40) as f64 * 0.05, "cut": cuts[i % 5], "color": "E", "clarity": "VS1",
        "depth": 61.5, "table": 57.0, "x": 4.0 + (i % 10) as f64 * 0.2, "y": 4.0, "z": 2.5,
    })
}

fn answered(outcome: Outcome) -> crate::support::Response {
    match outcome {
        Outcome::Answered(r) => r,
        other => panic!("no response: {other:?}"),
    }
}

fn v2_binary_penguins_request() -> (Vec<u8>, usize) {
    let mut tensors = Vec::new();
    let mut inputs = Vec::new();
    let mut add = |name: &str, datatype: &str, bytes: Vec<u8>| {
        inputs.push(json!({ "name": name, "datatype": datatype, "shape": [2], "parameters": { "binary_data_size": bytes.len() } }));
        tensors.extend(bytes);
    };
    let texts = |values: [&str; 2]| {
        values.iter().flat_map(|v| (v.len() as u32).to_le_bytes().into_iter().chain(v.bytes())).collect::<Vec<u8>>()
    };
    let floats = |values: [f32; 2]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    add("island", "BYTES", texts(["Biscoe", "Torgersen"]));
    add("bill_length_mm", "FP32", floats([47.5, 38.9]));
    add("bill_depth_mm", "FP32", floats([15.0, 18.2]));
    add("flipper_length_mm", "FP32", floats([218.0, 187.0]));
    add("body_mass_g", "FP32", floats([5200.0, 3600.0]));
    add("sex", "BYTES", texts(["male", "female"]));
    add("year", "FP32", floats([2008.0, 2009.0]));
    let header = json!({ "id": "binary-1", "inputs": inputs, "parameters": { "binary_data_output": true } })
        .to_string()
        .into_bytes();
    let json_length = header.len();
    let mut body = header;
    body.extend(tensors);
    (body, json_length)
}

#[test]
fn real_binary_serves_v1_and_v2_and_drains_on_sigterm() {
    let (mut child, addr, log) = start_server();
    wait_ready(addr);

    // KServe v1 records.
    let body = json!({ "instances": [diamonds_record(1), diamonds_record(2)] }).to_string();
    let r = answered(send(
        addr,
        "POST",
        "/v1/models/diamonds:predict",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    ));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let predictions = r.json()["predictions"].as_array().expect("predictions").clone();
    assert_eq!(predictions.len(), 2);
    assert!(predictions.iter().all(|p| p.as_f64().is_some_and(|v| v > 0.0)), "{predictions:?}");

    // v2 JSON, without a Content-Type, as tritonclient sends it.
    let body = json!({ "id": "json-1", "inputs": [
        { "name": "island", "datatype": "BYTES", "shape": [1], "data": ["Dream"] },
        { "name": "bill_length_mm", "datatype": "FP64", "shape": [1, 1], "data": [[49.0]] },
        { "name": "bill_depth_mm", "datatype": "FP32", "shape": [1], "data": [18.5] },
        { "name": "flipper_length_mm", "datatype": "INT32", "shape": [1], "data": [195] },
        { "name": "body_mass_g", "datatype": "INT64", "shape": [1], "data": [3700] },
        { "name": "sex", "datatype": "BYTES", "shape": [1], "data": [null] },
        { "name": "year", "datatype": "INT16", "shape": [1], "data": [2008] },
    ]})
    .to_string();
    let r = answered(send(addr, "POST", "/v2/models/penguins/infer", &[], body.as_bytes()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let response = r.json();
    assert_eq!(response["id"], "json-1");
    assert_eq!(response["model_name"], "penguins");

    // v2 with binary tensors both ways.
    let (body, json_length) = v2_binary_penguins_request();
    let r = answered(send(
        addr,
        "POST",
        "/v2/models/penguins/versions/1/infer",
        &[("Inference-Header-Content-Length", &json_length.to_string())],
        &body,
    ));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let header_length: usize =
        r.header("inference-header-content-length").expect("binary response header").parse().expect("number");
    let header: Value = serde_json::from_slice(&r.body[..header_length]).expect("JSON header");
    assert_eq!(header["id"], "binary-1");
    let sizes: usize = header["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| o["parameters"]["binary_data_size"].as_u64().expect("size") as usize)
        .sum();
    assert_eq!(r.body.len() - header_length, sizes);
    let labels_size = header["outputs"][0]["parameters"]["binary_data_size"].as_u64().expect("size") as usize;
    let labels = &r.body[header_length..header_length + labels_size];
    assert_eq!(&labels[4..4 + u32::from_le_bytes([labels[0], labels[1], labels[2], labels[3]]) as usize], b"Gentoo");

    // Load: four clients send 2,000-row v1 requests in a loop, bounded in count and time.
    let batch = json!({ "instances": (0..2000).map(diamonds_record).collect::<Vec<_>>() }).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let signal_sent: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (batch, stop, completed, signal_sent) =
                (batch.clone(), stop.clone(), completed.clone(), signal_sent.clone());
            std::thread::spawn(move || {
                let mut ok_after_signal = 0;
                let mut refused_after_signal = 0;
                let mut failures = Vec::new();
                let started = Instant::now();
                for _ in 0..500 {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    let sent_at = Instant::now();
                    match send(addr, "POST", "/v1/models/diamonds:predict", &[], batch.as_bytes()) {
                        Outcome::Answered(r) if r.status == 200 => {
                            let n = r.json()["predictions"].as_array().map_or(0, Vec::len);
                            if n != 2000 {
                                failures.push(format!("answered with {n} predictions"));
                            }
                            completed.fetch_add(1, Ordering::SeqCst);
                            if signal_sent.lock().expect("lock").is_some_and(|t| t > sent_at) {
                                ok_after_signal += 1;
                            }
                        }
                        // Sent after the signal: refused cleanly, telling the client to go elsewhere.
                        Outcome::Answered(r)
                            if r.status == 503 && signal_sent.lock().expect("lock").is_some_and(|t| t < sent_at) =>
                        {
                            let closes = r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                            if !closes || r.header("retry-after").is_none() {
                                failures.push(format!(
                                    "503 after shutdown without Connection: close and Retry-After: {:?}",
                                    r.headers
                                ));
                            }
                            refused_after_signal += 1;
                        }
                        Outcome::Answered(r) => {
                            failures.push(format!("status {}: {}", r.status, String::from_utf8_lossy(&r.body)))
                        }
                        Outcome::Broken(e) => failures.push(format!("broken response: {e}")),
                        // Refused or closed before any byte: the server had stopped accepting.
                        Outcome::NotAnswered(reason) => {
                            if signal_sent.lock().expect("lock").is_none() {
                                failures.push(format!("not answered before shutdown: {reason}"));
                            }
                            break;
                        }
                    }
                }
                (ok_after_signal, refused_after_signal, failures)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed.load(Ordering::SeqCst) < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(completed.load(Ordering::SeqCst) >= 8, "load never got going");
    // Marked before the signal goes out: from then on a refused connection is the server
    // having stopped accepting, not a failure (marking after `kill` returns leaves a window).
    *signal_sent.lock().expect("lock") = Some(Instant::now());
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());

    let exit = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "server did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    stop.store(true, Ordering::SeqCst);
    let mut in_flight_finished = 0;
    let mut refused = 0;
    for client in clients {
        let (ok_after_signal, refused_after_signal, failures) = client.join().expect("client thread");
        assert!(failures.is_empty(), "accepted requests failed: {failures:?}");
        in_flight_finished += ok_after_signal;
        refused += refused_after_signal;
    }
    assert!(refused > 0, "no request sent after SIGTERM was seen to get its 503");
    assert!(exit.success(), "server exit status {exit:?}");
    assert!(in_flight_finished > 0, "no request in flight at SIGTERM was seen to finish");
    let log = log.lock().expect("log lock").join("\n");
    assert!(log.contains("shutdown requested"), "{log}");
}
