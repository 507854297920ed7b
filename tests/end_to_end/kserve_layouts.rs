//! The model directory layouts `serving serve --model-repository` accepts, as KServe mounts a
//! model's files at /mnt/models: a repository of <name>/<version>/, one model's directory of
//! <version>/ directories, or one version directory. Each is served under the right name, with
//! the same predictions.

use serde_json::{Value, json};

use crate::server::diamonds_record;
use crate::support::{Outcome, Server, copy_dir, repository, send};

fn infer(server: &Server, model: &str) -> (u16, Value) {
    let inputs: Vec<Value> = ["carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z"]
        .iter()
        .map(|name| {
            let value = diamonds_record(3)[name].clone();
            let datatype = if value.is_string() { "BYTES" } else { "FP64" };
            json!({"name": name, "shape": [1], "datatype": datatype, "data": [value]})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "inputs": inputs })).expect("request JSON");
    let path = format!("/v2/models/{model}/infer");
    match send(server.addr, "POST", &path, &[("content-type", "application/json")], &body) {
        Outcome::Answered(response) => {
            let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            (response.status, json)
        }
        other => panic!("POST {path}: {other:?}; log:\n{}", server.log()),
    }
}

fn ready(server: &Server, model: &str) -> u16 {
    match send(server.addr, "GET", &format!("/v2/models/{model}/ready"), &[], b"") {
        Outcome::Answered(response) => response.status,
        other => panic!("ready {model}: {other:?}"),
    }
}

#[test]
fn a_repository_a_model_directory_and_a_version_directory_are_each_served_as_they_come() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // One model's directory of versions, as `storageUri: .../diamonds` mounts it; its version 2
    // is a copy of version 1, which the version check must still refuse under another name.
    let model_dir = dir.path().join("diamonds-model");
    copy_dir(&repository().version_dir("diamonds"), &model_dir.join("1"));
    copy_dir(&repository().version_dir("diamonds"), &model_dir.join("2"));
    // One version's files, as `storageUri: .../diamonds/1` mounts them at /mnt/models.
    let version_dir = dir.path().join("mnt").join("models");
    copy_dir(&repository().version_dir("diamonds"), &version_dir);

    let whole = Server::start(&repository().root, &[]);
    let (status, reference) = infer(&whole, "diamonds");
    assert_eq!(status, 200, "{reference}");

    let model = Server::start(&model_dir, &["--model-name", "price"]);
    assert_eq!(ready(&model, "price"), 200, "{}", model.log());
    let (status, answer) = infer(&model, "price");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model_version"], "1", "the one good version answers: {answer}");
    assert!(model.log().contains("version 1, but the directory is price/2"), "{}", model.log());
    assert_eq!(answer["outputs"], reference["outputs"], "the same model, the same prediction");
    let (status, _) = infer(&model, "diamonds");
    assert_eq!(status, 404, "the model is served under --model-name only");

    // Without --model-name, a model directory is named after itself.
    let unnamed = Server::start(&model_dir, &[]);
    assert_eq!(ready(&unnamed, "diamonds-model"), 200, "{}", unnamed.log());

    let version = Server::start(&version_dir, &["--model-name", "diamonds"]);
    let (status, answer) = infer(&version, "diamonds");
    assert_eq!(status, 200, "{answer}; log:\n{}", version.log());
    assert_eq!(answer["outputs"], reference["outputs"]);
}

#[test]
fn model_name_on_a_whole_repository_is_refused_with_the_reason() {
    let output = std::process::Command::new(crate::support::binary("serving"))
        .args(["serve", "--addr", "127.0.0.1:0", "--grpc-addr", "off", "--model-name", "x", "--model-repository"])
        .arg(&repository().root)
        .output()
        .expect("serving runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--model-name x") && stderr.contains("is a repository"), "{stderr}");
}
