//! Property tests for the gRPC decoder: random `ModelInferRequest`s (valid and broken inputs,
//! datatypes, shapes, byte lengths, contents and raw contents, requested outputs) get exactly
//! what the same request gets over HTTP v2 with binary tensors: the same output bytes, or the
//! same error text with the gRPC code of the HTTP status. And a request in typed `contents`
//! gets what the same values in `raw_input_contents` get.

// Shared with the other tests, which use the rest of it.
#[allow(dead_code)]
mod common;

use common::Fixture;
use serving::grpc::Grpc;
use serving::grpc::inference::grpc_inference_service_server::GrpcInferenceService;
use serving::grpc::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use serving::grpc::inference::{InferTensorContents, ModelInferRequest};

const CASES: u64 = 600;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One input: its name, datatype, shape and values (as f64 for numbers, bytes for text).
#[derive(Clone, Debug)]
struct Input {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    numbers: Vec<f64>,
    texts: Vec<Vec<u8>>,
}

impl Input {
    /// Little-endian raw bytes, as the binary extension and `raw_input_contents` carry them.
    fn raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.datatype.as_str() {
            "FP32" => self.numbers.iter().for_each(|v| out.extend_from_slice(&(*v as f32).to_le_bytes())),
            "FP64" => self.numbers.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            "INT64" => self.numbers.iter().for_each(|v| out.extend_from_slice(&(*v as i64).to_le_bytes())),
            "INT32" => self.numbers.iter().for_each(|v| out.extend_from_slice(&(*v as i32).to_le_bytes())),
            _ => self.texts.iter().for_each(|t| {
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t);
            }),
        }
        out
    }

    fn contents(&self) -> InferTensorContents {
        let mut contents = InferTensorContents::default();
        match self.datatype.as_str() {
            "FP32" => contents.fp32_contents = self.numbers.iter().map(|v| *v as f32).collect(),
            "FP64" => contents.fp64_contents = self.numbers.clone(),
            "INT64" => contents.int64_contents = self.numbers.iter().map(|v| *v as i64).collect(),
            "INT32" => contents.int_contents = self.numbers.iter().map(|v| *v as i32).collect(),
            _ => contents.bytes_contents = self.texts.clone(),
        }
        contents
    }
}

fn random_inputs(rng: &mut Rng, model: &str) -> Vec<Input> {
    let features: &[(&str, bool)] = match model {
        "houses" => &[("area", true), ("rooms", true), ("city", false)],
        _ => &[("petal", true), ("color", false)],
    };
    let rows = *rng.pick(&[0usize, 1, 2, 3, 7]);
    let mut inputs: Vec<Input> = features
        .iter()
        .map(|&(name, numeric)| {
            let datatype = if rng.below(14) == 0 {
                rng.pick(&["FP32", "FP64", "INT64", "INT32", "BYTES", "BOOL", "NOPE"]).to_string()
            } else if numeric {
                rng.pick(&["FP32", "FP64", "INT64"]).to_string()
            } else {
                "BYTES".to_string()
            };
            let n = if rng.below(20) == 0 { rows + 1 } else { rows };
            let shape = match rng.below(24) {
                0 => vec![n as i64, 2],
                1 => vec![],
                2 => vec![n as i64, 1],
                _ => vec![n as i64],
            };
            let values = if rng.below(20) == 0 { n.saturating_sub(1) } else { n };
            // Mostly values a model takes; now and then one it refuses or reads as missing.
            let numbers = (0..values)
                .map(|_| match rng.below(30) {
                    0 => *rng.pick(&[f64::NAN, f64::INFINITY, 1e300]),
                    _ => *rng.pick(&[0.0, 1.5, -3.0, 80.0, 123_456.789]),
                })
                .collect();
            let categories: &[&[u8]] = if model == "houses" { &[b"Oslo", b"Rome"] } else { &[b"blue", b"red"] };
            let texts = (0..values)
                .map(|_| match rng.below(30) {
                    0 => rng.pick(&[&b""[..], b"NA", b"\xff\xfe", b"Paris"]).to_vec(),
                    _ => rng.pick(categories).to_vec(),
                })
                .collect();
            Input { name: name.to_string(), datatype, shape, numbers, texts }
        })
        .collect();
    match rng.below(30) {
        0 => {
            inputs.pop();
        }
        1 => inputs.push(inputs[0].clone()),
        2 => inputs[0].name = "no_such_input".to_string(),
        _ => {}
    }
    inputs
}

fn random_outputs(rng: &mut Rng, model: &str) -> Vec<String> {
    let known: &[&str] = if model == "houses" { &["prediction"] } else { &["label", "probabilities"] };
    match rng.below(16) {
        0 => vec!["no_such_output".to_string()],
        1 => vec![known[0].to_string(), known[0].to_string()],
        2 => known.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn grpc_request(model: &str, inputs: &[Input], outputs: &[String], raw: bool) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: inputs
            .iter()
            .map(|i| InferInputTensor {
                name: i.name.clone(),
                datatype: i.datatype.clone(),
                shape: i.shape.clone(),
                contents: (!raw).then(|| i.contents()),
                ..InferInputTensor::default()
            })
            .collect(),
        outputs: outputs.iter().map(|o| InferRequestedOutputTensor { name: o.clone(), ..Default::default() }).collect(),
        raw_input_contents: if raw { inputs.iter().map(Input::raw).collect() } else { Vec::new() },
        ..ModelInferRequest::default()
    }
}

/// The same request as HTTP v2 with every tensor binary: the JSON header and the bytes after it.
fn http_request(inputs: &[Input], outputs: &[String]) -> (Vec<u8>, usize) {
    let header = serde_json::json!({
        "inputs": inputs.iter().map(|i| serde_json::json!({
            "name": i.name, "datatype": i.datatype, "shape": i.shape,
            "parameters": {"binary_data_size": i.raw().len()},
        })).collect::<Vec<_>>(),
        "outputs": if outputs.is_empty() { serde_json::Value::Null } else {
            serde_json::Value::Array(outputs.iter().map(|o| serde_json::json!({"name": o, "parameters": {"binary_data": true}})).collect())
        },
        "parameters": {"binary_data_output": true},
    });
    let mut header = header;
    if outputs.is_empty() {
        header.as_object_mut().expect("an object").remove("outputs");
    }
    let mut body = serde_json::to_vec(&header).expect("JSON");
    let length = body.len();
    for input in inputs {
        body.extend_from_slice(&input.raw());
    }
    (body, length)
}

/// What a request got: the outputs' raw bytes, or the error's code and text.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer(Vec<Vec<u8>>),
    Error(tonic::Code, String),
}

async fn over_grpc(grpc: &Grpc, request: ModelInferRequest) -> Outcome {
    match grpc.model_infer(tonic::Request::new(request)).await {
        Ok(response) => Outcome::Answer(response.into_inner().raw_output_contents),
        Err(status) => Outcome::Error(status.code(), status.message().to_string()),
    }
}

async fn over_http(fixture: &Fixture, model: &str, inputs: &[Input], outputs: &[String]) -> Outcome {
    let (body, length) = http_request(inputs, outputs);
    let length = length.to_string();
    let reply = fixture
        .post_raw(&format!("/v2/models/{model}/infer"), body, &[("inference-header-content-length", &length)])
        .await;
    if reply.status.is_success() {
        // Binary outputs follow the JSON header; with no bytes to carry (no rows), the answer
        // may be plain JSON.
        let json_length =
            reply.header("inference-header-content-length").map_or(reply.body.len(), |l| l.parse().expect("a number"));
        let header: serde_json::Value = serde_json::from_slice(&reply.body[..json_length]).expect("JSON header");
        let mut at = json_length;
        let outputs = header["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| match o["parameters"]["binary_data_size"].as_u64() {
                Some(size) => {
                    at += size as usize;
                    reply.body[at - size as usize..at].to_vec()
                }
                None => {
                    let mut raw = Vec::new();
                    for value in o["data"].as_array().expect("data") {
                        match value {
                            serde_json::Value::String(text) => {
                                raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
                                raw.extend_from_slice(text.as_bytes());
                            }
                            number => raw.extend_from_slice(&(number.as_f64().expect("a number") as f32).to_le_bytes()),
                        }
                    }
                    raw
                }
            })
            .collect();
        Outcome::Answer(outputs)
    } else {
        let code = match reply.status.as_u16() {
            400 => tonic::Code::InvalidArgument,
            404 => tonic::Code::NotFound,
            other => panic!("unexpected HTTP status {other}: {}", reply.text()),
        };
        Outcome::Error(code, reply.json()["error"].as_str().expect("an error text").to_string())
    }
}

/// Integer inputs whose values an integer type holds exactly: a raw INT64 is widened as its
/// bits say, a typed one is also range-checked (as JSON integers are), so out-of-range values are
/// left out of the raw-against-typed comparison.
fn integers_are_exact(inputs: &[Input]) -> bool {
    inputs
        .iter()
        .filter(|i| i.datatype.starts_with("INT"))
        .all(|i| i.numbers.iter().all(|v| v.is_finite() && v.abs() < 2f64.powi(31) && v.fract() == 0.0))
}

#[tokio::test]
async fn random_requests_get_over_grpc_what_they_get_over_http_v2() {
    let fixture = Fixture::new();
    let grpc = Grpc::new(fixture.state.clone());
    let mut rng = Rng(20_261_202);
    let (mut answered, mut refused) = (0, 0);
    for case in 0..CASES {
        let model = *rng.pick(&["houses", "flowers"]);
        let inputs = random_inputs(&mut rng, model);
        let outputs = random_outputs(&mut rng, model);
        let http = over_http(&fixture, model, &inputs, &outputs).await;
        let raw = over_grpc(&grpc, grpc_request(model, &inputs, &outputs, true)).await;
        assert_eq!(raw, http, "case {case}: {model} {inputs:?} {outputs:?}");
        match &raw {
            Outcome::Answer(_) => answered += 1,
            Outcome::Error(..) => refused += 1,
        }
        // Typed contents carry the same values: the same answer (numbers in contents are not
        // length-checked bytes, so only requests that were answered are compared).
        if let (Outcome::Answer(_), true) = (&raw, integers_are_exact(&inputs)) {
            let typed = over_grpc(&grpc, grpc_request(model, &inputs, &outputs, false)).await;
            assert_eq!(typed, raw, "case {case} in contents: {model} {inputs:?}");
        }
    }
    // The generator reaches both sides.
    assert!(answered > CASES / 10 && refused > CASES / 10, "{answered} answered, {refused} refused");
    // Both protocols are counted, each under its own label.
    let metrics = fixture.state.metrics.render();
    for protocol in ["grpc", "v2"] {
        let counted = format!("protocol=\"{protocol}\",outcome=\"ok\"");
        assert!(metrics.lines().any(|l| l.contains(&counted)), "no {counted} in:\n{metrics}");
    }
}

#[tokio::test]
async fn contents_in_the_wrong_field_and_mixed_raw_inputs_are_refused_with_what_to_do() {
    let fixture = Fixture::new();
    let grpc = Grpc::new(fixture.state.clone());
    let input = |name: &str, datatype: &str, contents: InferTensorContents| InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![1],
        contents: Some(contents),
        ..Default::default()
    };
    let fp64 = InferTensorContents { fp64_contents: vec![1.0], ..Default::default() };
    let text = InferTensorContents { bytes_contents: vec![b"red".to_vec()], ..Default::default() };
    let request = ModelInferRequest {
        model_name: "flowers".into(),
        inputs: vec![input("petal", "FP32", fp64.clone()), input("color", "BYTES", text.clone())],
        ..Default::default()
    };
    let Outcome::Error(code, message) = over_grpc(&grpc, request).await else { panic!("FP64 values under FP32") };
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(message.contains("petal") && message.contains("fp32_contents"), "{message}");
    let request = ModelInferRequest {
        model_name: "flowers".into(),
        inputs: vec![input("petal", "FP64", fp64), input("color", "BYTES", text)],
        raw_input_contents: vec![1.0f64.to_le_bytes().to_vec()],
        ..Default::default()
    };
    let Outcome::Error(code, message) = over_grpc(&grpc, request).await else { panic!("one raw entry for two") };
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(message.contains("raw_input_contents holds 1 entries but the request has 2 inputs"), "{message}");
}
