//! The HTTP router, driven in process with `oneshot`: every endpoint of the Open Inference
//! Protocol v2 and KServe v1, the binary tensor extension, metrics, and the error cases with
//! their status codes and messages. Expected predictions always come from
//! `shared_inference::Predictor` loading the same artifact, never from the server itself.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{
    FLOWERS, Fixture, Flower, HOUSES, House, assert_mentions, bits, default_limits, expected_barometer,
    expected_flowers, expected_houses, f32s, output, strings,
};
use serde_json::{Value, json};
use serving::Limits;

// ---------------------------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------------------------

/// A JSON number of the given datatype, or null for a missing value.
fn number(value: Option<f64>, datatype: &str) -> Value {
    match value {
        None => Value::Null,
        Some(x) if datatype.starts_with("INT") || datatype.starts_with("UINT") => json!(x as i64),
        Some(x) => json!(x),
    }
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| json!(s))
}

/// A v2 request for "houses" with flat data and shape `[N]`.
fn houses_request(rows: &[House], numeric_type: &str) -> Value {
    let n = rows.len();
    json!({
        "inputs": [
            { "name": "area", "shape": [n], "datatype": numeric_type, "data": rows.iter().map(|r| number(r.0, numeric_type)).collect::<Vec<_>>() },
            { "name": "rooms", "shape": [n], "datatype": numeric_type, "data": rows.iter().map(|r| number(r.1, numeric_type)).collect::<Vec<_>>() },
            { "name": "city", "shape": [n], "datatype": "BYTES", "data": rows.iter().map(|r| text(r.2)).collect::<Vec<_>>() },
        ]
    })
}

fn flowers_request(rows: &[Flower]) -> Value {
    let n = rows.len();
    json!({
        "inputs": [
            { "name": "petal", "shape": [n], "datatype": "FP32", "data": rows.iter().map(|r| number(r.0, "FP32")).collect::<Vec<_>>() },
            { "name": "color", "shape": [n], "datatype": "BYTES", "data": rows.iter().map(|r| text(r.1)).collect::<Vec<_>>() },
        ]
    })
}

/// The `index`th input of a request, to change one thing about it.
fn input_mut(request: &mut Value, index: usize) -> &mut Value {
    &mut request["inputs"][index]
}

/// The predictions of a 200 "houses" response, checked for shape and datatype.
fn prediction_values(response: &Value, n: usize) -> Vec<f32> {
    let prediction = output(response, "prediction");
    assert_eq!(prediction["datatype"], "FP32", "{response}");
    assert_eq!(prediction["shape"], json!([n]), "{response}");
    f32s(&prediction["data"])
}

/// Splits a binary-extension response into its JSON header and the tensor bytes.
fn split_binary_response(reply: &common::Reply) -> (Value, Vec<u8>) {
    assert_eq!(reply.status, StatusCode::OK, "body: {:?}", reply.body);
    let length: usize = reply
        .header("inference-header-content-length")
        .expect("a binary response carries Inference-Header-Content-Length")
        .parse()
        .expect("the header is a byte count");
    assert!(length <= reply.body.len(), "the JSON header length {length} exceeds the body ({})", reply.body.len());
    let header = serde_json::from_slice(&reply.body[..length]).expect("the JSON part parses on its own");
    (header, reply.body[length..].to_vec())
}

/// Cuts each binary output's bytes out of the tensor section, in output order, checking that the
/// declared sizes add up to the whole section.
fn binary_outputs(header: &Value, mut tensors: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in header["outputs"].as_array().expect("'outputs' is an array") {
        let Some(size) = o["parameters"]["binary_data_size"].as_u64() else {
            continue;
        };
        assert!(o.get("data").is_none(), "a binary output carries no JSON data: {o}");
        let (bytes, rest) = tensors
            .split_at_checked(size as usize)
            .unwrap_or_else(|| panic!("output {o} declares more bytes than remain ({})", tensors.len()));
        out.push((o["name"].as_str().expect("output name").to_string(), bytes.to_vec()));
        tensors = rest;
    }
    assert!(tensors.is_empty(), "{} bytes follow the last declared binary output", tensors.len());
    out
}

fn decode_fp32(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0, "FP32 data is a multiple of 4 bytes");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn decode_bytes(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes.split_first_chunk::<4>().expect("a 4-byte length prefix");
        let (text, rest) = rest.split_at(u32::from_le_bytes(*length) as usize);
        out.push(String::from_utf8(text.to_vec()).expect("BYTES elements here are UTF-8"));
        bytes = rest;
    }
    out
}

fn encode_fp32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn encode_bytes(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// A binary-extension body: the JSON header followed by the tensors' bytes.
fn binary_body(header: &Value, tensors: &[&[u8]]) -> (Vec<u8>, String) {
    let mut body = header.to_string().into_bytes();
    let length = body.len().to_string();
    tensors.iter().for_each(|t| body.extend_from_slice(t));
    (body, length)
}

// ---------------------------------------------------------------------------------------------
// Health, server and model metadata
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_live_and_ready_answer_json_and_ready_turns_503_on_shutdown() {
    let fixture = Fixture::new();
    let live = fixture.get("/v2/health/live").await;
    assert_eq!(live.ok_json(), json!({ "live": true }));
    assert_eq!(live.header("content-type"), Some("application/json"));
    assert_eq!(fixture.get("/v2/health/ready").await.ok_json(), json!({ "ready": true }));

    fixture.state.set_ready(false);
    let message = fixture.get("/v2/health/ready").await.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_mentions(&message, &["shutting down"]);
    assert_eq!(fixture.get("/v2/health/live").await.ok_json(), json!({ "live": true }), "still live while draining");
}

#[tokio::test]
async fn server_metadata_advertises_the_binary_tensor_extension() {
    let fixture = Fixture::new();
    let body = fixture.get("/v2").await.ok_json();
    assert_eq!(body["name"], "serving");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");
    let extensions = strings(&body["extensions"]);
    assert!(extensions.iter().any(|e| e == "binary_tensor_data"), "{extensions:?}");
    assert!(extensions.iter().any(|e| e == "model_configuration"), "{extensions:?}");
}

#[tokio::test]
async fn model_index_lists_every_model_and_version() {
    let fixture = Fixture::new();
    let body = fixture.get("/v2/models").await.ok_json();
    assert_eq!(
        body,
        json!({ "models": [
            { "name": "barometer", "versions": ["1"] },
            { "name": "flowers", "versions": ["1"] },
            { "name": "houses", "versions": ["1", "2"] },
        ], "unavailable": [] })
    );
}

#[tokio::test]
async fn model_metadata_describes_inputs_outputs_and_categories() {
    let fixture = Fixture::new();
    let houses = fixture.get("/v2/models/houses").await.ok_json();
    assert_eq!(houses["name"], "houses");
    assert_eq!(houses["versions"], json!(["1", "2"]));
    assert_eq!(houses["platform"], "burn-mlp");
    assert_eq!(
        houses["inputs"],
        json!([
            { "name": "area", "datatype": "FP32", "shape": [-1] },
            { "name": "rooms", "datatype": "FP32", "shape": [-1] },
            { "name": "city", "datatype": "BYTES", "shape": [-1] },
        ])
    );
    assert_eq!(houses["outputs"], json!([{ "name": "prediction", "datatype": "FP32", "shape": [-1] }]));
    assert_eq!(houses["parameters"]["version"], "2", "no version means the latest");
    assert_eq!(houses["parameters"]["task"], "regression");
    assert_eq!(houses["parameters"]["categories"], json!({ "city": ["Oslo", "Rome"] }));

    let flowers = fixture.get("/v2/models/flowers").await.ok_json();
    assert_eq!(
        flowers["outputs"],
        json!([
            { "name": "label", "datatype": "BYTES", "shape": [-1] },
            { "name": "probabilities", "datatype": "FP32", "shape": [-1, 3] },
        ])
    );
    assert_eq!(flowers["parameters"]["classes"], json!(["iris", "rose", "tulip"]));
    assert_eq!(flowers["parameters"]["task"], "multiclass_classification");

    let message = fixture.get("/v2/models/mansions").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'", "not found"]);
}

#[tokio::test]
async fn model_metadata_by_version() {
    let fixture = Fixture::new();
    let v1 = fixture.get("/v2/models/houses/versions/1").await.ok_json();
    assert_eq!(v1["name"], "houses");
    assert_eq!(v1["parameters"]["version"], "1");
    assert_eq!(v1["versions"], json!(["1", "2"]));
    let v2 = fixture.get("/v2/models/houses/versions/2").await.ok_json();
    assert_eq!(v2["parameters"]["version"], "2");

    for version in ["3", "latest"] {
        let message = fixture.get(&format!("/v2/models/houses/versions/{version}")).await.error(StatusCode::NOT_FOUND);
        assert_mentions(&message, &["'houses'", &format!("version {version}"), "not found"]);
    }
}

#[tokio::test]
async fn model_ready_with_and_without_version() {
    let fixture = Fixture::new();
    assert_eq!(
        fixture.get("/v2/models/houses/ready").await.ok_json(),
        json!({ "name": "houses", "version": "2", "ready": true })
    );
    assert_eq!(
        fixture.get("/v2/models/houses/versions/1/ready").await.ok_json(),
        json!({ "name": "houses", "version": "1", "ready": true })
    );
    assert_eq!(
        fixture.get("/v2/models/flowers/ready").await.ok_json(),
        json!({ "name": "flowers", "version": "1", "ready": true })
    );
    let message = fixture.get("/v2/models/mansions/ready").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'"]);
    let message = fixture.get("/v2/models/houses/versions/9/ready").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'houses'", "version 9"]);
}

/// KServe v2 (`required_api.md`): for model ready "a 200 status code indicates true and a 4xx
/// status code indicates false"; the kserve SDK's v2 `is_model_ready` and tritonclient's
/// `is_model_ready` read only the status. While the server drains, model ready must answer 503
/// like server ready does.
#[tokio::test]
async fn model_ready_is_503_while_the_server_drains() {
    let fixture = Fixture::new();
    fixture.state.set_ready(false);
    for uri in ["/v2/models/houses/ready", "/v2/models/houses/versions/1/ready"] {
        let message = fixture.get(uri).await.error(StatusCode::SERVICE_UNAVAILABLE);
        assert_mentions(&message, &["'houses'"]);
    }
    // KServe v1 clients read the body, so v1 model status stays 200 and says not ready.
    assert_eq!(fixture.get("/v1/models/houses").await.ok_json(), json!({ "name": "houses", "ready": false }));
}

#[tokio::test]
async fn model_config_follows_tritons_model_configuration() {
    let fixture = Fixture::new();
    let config = fixture.get("/v2/models/houses/config").await.ok_json();
    assert_eq!(config["name"], "houses");
    assert_eq!(config["max_batch_size"], 0);
    assert_eq!(
        config["input"],
        json!([
            { "name": "area", "data_type": "TYPE_FP32", "dims": [-1] },
            { "name": "rooms", "data_type": "TYPE_FP32", "dims": [-1] },
            { "name": "city", "data_type": "TYPE_STRING", "dims": [-1] },
        ])
    );
    assert_eq!(config["output"], json!([{ "name": "prediction", "data_type": "TYPE_FP32", "dims": [-1] }]));

    let flowers = fixture.get("/v2/models/flowers/config").await.ok_json();
    assert_eq!(
        flowers["output"],
        json!([
            { "name": "label", "data_type": "TYPE_STRING", "dims": [-1] },
            { "name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 3] },
        ])
    );
    let message = fixture.get("/v2/models/mansions/config").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'"]);
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let fixture = Fixture::new();
    let message = fixture.get("/v3/everything").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["no such endpoint"]);
    let message =
        fixture.post_json("/v1/models/houses", &json!({ "instances": [] })).await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &[":predict"]);
}

// ---------------------------------------------------------------------------------------------
// v2 inference, JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn infer_json_matches_the_predictor_of_the_latest_version() {
    let fixture = Fixture::new();
    let reply = fixture.post_json("/v2/models/houses/infer", &houses_request(&HOUSES, "FP32")).await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.ok_json();
    assert_eq!(body["model_name"], "houses");
    assert_eq!(body["model_version"], "2");
    assert!(body.get("id").is_none(), "no id was sent, none is echoed: {body}");
    assert_eq!(body["outputs"].as_array().map(Vec::len), Some(1), "{body}");
    let got = prediction_values(&body, HOUSES.len());
    let expected = expected_houses(&fixture, 2, &HOUSES);
    // Guards the fixture: a model that ignored its inputs would make every comparison weak.
    assert!(expected.windows(2).all(|w| w[0] != w[1]), "the fixture predicts distinct values: {expected:?}");
    assert_eq!(bits(&got), bits(&expected), "got {got:?}");
}

#[tokio::test]
async fn infer_accepts_fp32_fp64_int32_and_int64() {
    let fixture = Fixture::new();
    // Whole numbers, so that every datatype carries exactly the same values.
    let rows: [House; 3] =
        [(Some(72.0), Some(3.0), Some("Oslo")), (Some(120.0), Some(5.0), Some("Rome")), (Some(48.0), Some(1.0), None)];
    let expected = expected_houses(&fixture, 2, &rows);
    for datatype in ["FP32", "FP64", "INT32", "INT64"] {
        let body = fixture.post_json("/v2/models/houses/infer", &houses_request(&rows, datatype)).await.ok_json();
        let got = prediction_values(&body, rows.len());
        assert_eq!(bits(&got), bits(&expected), "datatype {datatype}: got {got:?}, expected {expected:?}");
    }
}

#[tokio::test]
async fn fp64_inputs_keep_their_full_precision_and_fp32_inputs_are_f32() {
    let fixture = Fixture::new();
    // Near 101325 f32 values are 1/128 apart, a sixth of the barometer's training spread.
    let pressures = [101_325.013, 101_324.991, 101_325.1];
    let rounded: Vec<f64> = pressures.iter().map(|&p| f64::from(p as f32)).collect();
    let expected_full = expected_barometer(&fixture, &pressures);
    let expected_rounded = expected_barometer(&fixture, &rounded);
    for (full, rounded) in expected_full.iter().zip(&expected_rounded) {
        assert_ne!(full.to_bits(), rounded.to_bits(), "the fixture must be sensitive to f32 rounding");
    }
    for (datatype, expected, why) in
        [("FP64", &expected_full, "FP64 keeps every bit"), ("FP32", &expected_rounded, "FP32 carries f32 values")]
    {
        let request =
            json!({ "inputs": [{ "name": "pressure", "shape": [3], "datatype": datatype, "data": pressures }] });
        let body = fixture.post_json("/v2/models/barometer/infer", &request).await.ok_json();
        assert_eq!(bits(&prediction_values(&body, 3)), bits(expected), "{why}");
    }
}

#[tokio::test]
async fn infer_accepts_nested_data_and_column_shapes() {
    let fixture = Fixture::new();
    let expected = expected_houses(&fixture, 2, &HOUSES);
    let request = json!({
        "inputs": [
            { "name": "area", "shape": [3, 1], "datatype": "FP32", "data": [[72.5], [120.25], [48.0]] },
            { "name": "rooms", "shape": [3], "datatype": "FP32", "data": [[3.0, 5.0], [1.0]] },
            { "name": "city", "shape": [3, 1], "datatype": "BYTES", "data": ["Oslo", "Rome", "Rome"] },
        ]
    });
    let body = fixture.post_json("/v2/models/houses/infer", &request).await.ok_json();
    assert_eq!(bits(&prediction_values(&body, 3)), bits(&expected));
}

#[tokio::test]
async fn null_is_a_missing_value_imputed_like_the_predictor_does() {
    let fixture = Fixture::new();
    let rows: [House; 3] = [(None, Some(3.0), Some("Oslo")), (Some(120.25), None, None), (None, None, None)];
    let body = fixture.post_json("/v2/models/houses/infer", &houses_request(&rows, "FP32")).await.ok_json();
    let got = prediction_values(&body, rows.len());
    assert_eq!(bits(&got), bits(&expected_houses(&fixture, 2, &rows)));
    // Missing means the training median / most frequent category (80, 3 and "Rome" in the fixture).
    let imputed: [House; 3] = [
        (Some(80.0), Some(3.0), Some("Oslo")),
        (Some(120.25), Some(3.0), Some("Rome")),
        (Some(80.0), Some(3.0), Some("Rome")),
    ];
    assert_eq!(bits(&got), bits(&expected_houses(&fixture, 2, &imputed)));
}

#[tokio::test]
async fn classification_returns_labels_and_probabilities() {
    let fixture = Fixture::new();
    let (labels, probabilities) = expected_flowers(&fixture, &FLOWERS);
    let body = fixture.post_json("/v2/models/flowers/infer", &flowers_request(&FLOWERS)).await.ok_json();
    assert_eq!(body["model_name"], "flowers");
    assert_eq!(body["model_version"], "1");
    let label = output(&body, "label");
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["shape"], json!([4]));
    assert_eq!(strings(&label["data"]), labels);
    let probs = output(&body, "probabilities");
    assert_eq!(probs["datatype"], "FP32");
    assert_eq!(probs["shape"], json!([4, 3]));
    assert_eq!(bits(&f32s(&probs["data"])), bits(&probabilities));
    assert!(
        probabilities.chunks(3).collect::<Vec<_>>().windows(2).all(|w| w[0] != w[1]),
        "rows differ: {probabilities:?}"
    );
}

#[tokio::test]
async fn outputs_can_select_probabilities_only_and_the_id_is_echoed() {
    let fixture = Fixture::new();
    let (_, probabilities) = expected_flowers(&fixture, &FLOWERS);
    let mut request = flowers_request(&FLOWERS);
    request["id"] = json!("request-42");
    request["outputs"] = json!([{ "name": "probabilities" }]);
    let body = fixture.post_json("/v2/models/flowers/infer", &request).await.ok_json();
    assert_eq!(body["id"], "request-42");
    let outputs = body["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "only the requested output: {body}");
    assert_eq!(outputs[0]["name"], "probabilities");
    assert_eq!(bits(&f32s(&outputs[0]["data"])), bits(&probabilities));

    request["outputs"] = json!([{ "name": "logits" }]);
    let message = fixture.post_json("/v2/models/flowers/infer", &request).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'logits'", "'flowers'", "probabilities"]);
}

#[tokio::test]
async fn requests_without_content_type_with_unknown_fields_and_null_parameters_are_accepted() {
    let fixture = Fixture::new();
    let request = json!({
        "model_name": "houses",
        "model_version": "",
        "parameters": null,
        "client_extra": { "anything": [1, 2, 3] },
        "id": null,
        "inputs": [
            { "name": "area", "shape": [3], "datatype": "FP32", "parameters": null, "data": [72.5, 120.25, 48.0], "note": "x" },
            { "name": "rooms", "shape": [3], "datatype": "FP32", "parameters": {}, "data": [3, 5, 1] },
            { "name": "city", "shape": [3], "datatype": "BYTES", "data": ["Oslo", "Rome", "Rome"] },
        ],
        "outputs": [{ "name": "prediction", "parameters": null }],
    });
    let reply = fixture.post_raw("/v2/models/houses/infer", request.to_string(), &[]).await;
    let body = reply.ok_json();
    assert_eq!(bits(&prediction_values(&body, 3)), bits(&expected_houses(&fixture, 2, &HOUSES)));
}

#[tokio::test]
async fn versioned_infer_uses_that_version() {
    let fixture = Fixture::new();
    let request = houses_request(&HOUSES, "FP32");
    let expected_v1 = expected_houses(&fixture, 1, &HOUSES);
    let expected_v2 = expected_houses(&fixture, 2, &HOUSES);
    assert_ne!(bits(&expected_v1), bits(&expected_v2), "the fixture's versions have different weights");

    let v1 = fixture.post_json("/v2/models/houses/versions/1/infer", &request).await.ok_json();
    assert_eq!(v1["model_version"], "1");
    assert_eq!(bits(&prediction_values(&v1, 3)), bits(&expected_v1));
    let v2 = fixture.post_json("/v2/models/houses/versions/2/infer", &request).await.ok_json();
    assert_eq!(v2["model_version"], "2");
    assert_eq!(bits(&prediction_values(&v2, 3)), bits(&expected_v2));
}

#[tokio::test]
async fn request_ids_are_echoed_or_assigned() {
    let fixture = Fixture::new();
    let request = houses_request(&HOUSES, "FP32");
    let reply =
        fixture.post_raw("/v2/models/houses/infer", request.to_string(), &[("x-request-id", "trace-abc")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-request-id"), Some("trace-abc"));
    let reply = fixture.post_json("/v2/models/mansions/infer", &request).await;
    assert!(reply.header("x-request-id").is_some_and(|id| !id.is_empty()), "errors carry a request id too");
}

// ---------------------------------------------------------------------------------------------
// v2 inference, binary tensor extension
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binary_inputs_and_binary_outputs_match_the_json_path_bit_for_bit() {
    let fixture = Fixture::new();
    let areas = [72.5f32, 120.25, 48.0];
    let cities = ["Oslo", "Rome", "Rome"];
    let area_bytes = encode_fp32(&areas);
    let city_bytes = encode_bytes(&cities);
    let header = json!({
        "inputs": [
            { "name": "area", "shape": [3], "datatype": "FP32", "parameters": { "binary_data_size": area_bytes.len() } },
            { "name": "rooms", "shape": [3], "datatype": "INT64", "data": [3, 5, 1] },
            { "name": "city", "shape": [3], "datatype": "BYTES", "parameters": { "binary_data_size": city_bytes.len() } },
        ],
        "parameters": { "binary_data_output": true },
    });
    let (body, length) = binary_body(&header, &[&area_bytes, &city_bytes]);
    // No Content-Type, as tritonclient sends it.
    let reply =
        fixture.post_raw("/v2/models/houses/infer", body, &[("inference-header-content-length", &length)]).await;
    assert_eq!(reply.header("content-type"), Some("application/octet-stream"));
    let (json_part, tensors) = split_binary_response(&reply);
    assert_eq!(json_part["model_name"], "houses");
    let prediction = output(&json_part, "prediction");
    assert_eq!(prediction["datatype"], "FP32");
    assert_eq!(prediction["shape"], json!([3]));
    assert_eq!(prediction["parameters"]["binary_data_size"], 12);
    let binary = binary_outputs(&json_part, &tensors);
    assert_eq!(binary.len(), 1);
    assert_eq!(binary[0].0, "prediction");
    let from_binary = decode_fp32(&binary[0].1);

    let json_answer = fixture.post_json("/v2/models/houses/infer", &houses_request(&HOUSES, "FP32")).await.ok_json();
    assert_eq!(bits(&from_binary), bits(&prediction_values(&json_answer, 3)), "binary and JSON paths agree");
    assert_eq!(bits(&from_binary), bits(&expected_houses(&fixture, 2, &HOUSES)), "and match the predictor");
}

#[tokio::test]
async fn an_input_with_both_data_and_binary_data_is_refused_as_ambiguous() {
    let fixture = Fixture::new();
    let area_bytes = encode_fp32(&[72.5, 120.25, 48.0]);
    let header = json!({
        "inputs": [
            { "name": "area", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 3.0],
              "parameters": { "binary_data_size": area_bytes.len() } },
            { "name": "rooms", "shape": [3], "datatype": "INT64", "data": [3, 5, 1] },
            { "name": "city", "shape": [3], "datatype": "BYTES", "data": ["Oslo", "Rome", "Rome"] },
        ],
    });
    let (body, length) = binary_body(&header, &[&area_bytes]);
    let reply =
        fixture.post_raw("/v2/models/houses/infer", body, &[("inference-header-content-length", &length)]).await;
    let message = reply.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'area'", "both 'data' and a 'binary_data_size'"]);
}

#[tokio::test]
async fn binary_classification_outputs_carry_bytes_and_fp32() {
    let fixture = Fixture::new();
    let petals: Vec<f32> = FLOWERS.iter().map(|f| f.0.expect("every fixture flower has a petal") as f32).collect();
    let colors: Vec<&str> = FLOWERS.iter().map(|f| f.1.expect("every fixture flower has a color")).collect();
    let petal_bytes = encode_fp32(&petals);
    let color_bytes = encode_bytes(&colors);
    let header = json!({
        "id": "bin-1",
        "inputs": [
            { "name": "petal", "shape": [4, 1], "datatype": "FP32", "parameters": { "binary_data_size": petal_bytes.len() } },
            { "name": "color", "shape": [4], "datatype": "BYTES", "parameters": { "binary_data_size": color_bytes.len() } },
        ],
        "parameters": { "binary_data_output": true },
    });
    let (body, length) = binary_body(&header, &[&petal_bytes, &color_bytes]);
    let reply =
        fixture.post_raw("/v2/models/flowers/infer", body, &[("Inference-Header-Content-Length", &length)]).await;
    let (json_part, tensors) = split_binary_response(&reply);
    assert_eq!(json_part["id"], "bin-1");
    let binary = binary_outputs(&json_part, &tensors);
    let names: Vec<&str> = binary.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
    let labels = decode_bytes(&binary[0].1);
    let probabilities = decode_fp32(&binary[1].1);

    let json_answer = fixture.post_json("/v2/models/flowers/infer", &flowers_request(&FLOWERS)).await.ok_json();
    assert_eq!(labels, strings(&output(&json_answer, "label")["data"]));
    assert_eq!(bits(&probabilities), bits(&f32s(&output(&json_answer, "probabilities")["data"])));
    let (expected_labels, expected_probabilities) = expected_flowers(&fixture, &FLOWERS);
    assert_eq!(labels, expected_labels);
    assert_eq!(bits(&probabilities), bits(&expected_probabilities));
}

#[tokio::test]
async fn binary_data_can_be_asked_for_one_output() {
    let fixture = Fixture::new();
    let mut request = flowers_request(&FLOWERS);
    request["outputs"] =
        json!([{ "name": "label", "parameters": { "binary_data": true } }, { "name": "probabilities" }]);
    let reply = fixture.post_json("/v2/models/flowers/infer", &request).await;
    let (json_part, tensors) = split_binary_response(&reply);
    let binary = binary_outputs(&json_part, &tensors);
    assert_eq!(binary.len(), 1);
    assert_eq!(binary[0].0, "label");
    let (labels, probabilities) = expected_flowers(&fixture, &FLOWERS);
    assert_eq!(decode_bytes(&binary[0].1), labels);
    let probs = output(&json_part, "probabilities");
    assert!(probs.get("parameters").is_none_or(|p| p.get("binary_data_size").is_none()), "{probs}");
    assert_eq!(bits(&f32s(&probs["data"])), bits(&probabilities));
}

#[tokio::test]
async fn malformed_binary_requests_are_400() {
    let fixture = Fixture::new();
    let area_bytes = encode_fp32(&[72.5, 120.25, 48.0]);
    let header = json!({
        "inputs": [
            { "name": "area", "shape": [3], "datatype": "FP32", "parameters": { "binary_data_size": 16 } },
            { "name": "rooms", "shape": [3], "datatype": "FP32", "data": [3, 5, 1] },
            { "name": "city", "shape": [3], "datatype": "BYTES", "data": ["Oslo", "Rome", "Rome"] },
        ]
    });
    // Declares 16 bytes, carries 12.
    let (body, length) = binary_body(&header, &[&area_bytes]);
    let reply = fixture
        .post_raw("/v2/models/houses/infer", body.clone(), &[("inference-header-content-length", &length)])
        .await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["'area'", "16 bytes"]);

    let too_long = (body.len() + 1).to_string();
    let reply = fixture
        .post_raw("/v2/models/houses/infer", body.clone(), &[("inference-header-content-length", &too_long)])
        .await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["Inference-Header-Content-Length", &too_long]);

    let reply = fixture.post_raw("/v2/models/houses/infer", body, &[("inference-header-content-length", "lots")]).await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["Inference-Header-Content-Length", "'lots'"]);
}

// ---------------------------------------------------------------------------------------------
// KServe v1
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_predict_matches_the_predictor() {
    let fixture = Fixture::new();
    let instances: Vec<Value> =
        HOUSES.iter().map(|&(area, rooms, city)| json!({ "city": city, "area": area, "rooms": rooms })).collect();
    let body = fixture.post_json("/v1/models/houses:predict", &json!({ "instances": instances })).await.ok_json();
    let predictions = body["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), 3);
    assert_eq!(bits(&f32s(&body["predictions"])), bits(&expected_houses(&fixture, 2, &HOUSES)));

    let instances: Vec<Value> =
        FLOWERS.iter().map(|&(petal, color)| json!({ "petal": petal, "color": color })).collect();
    let body = fixture.post_json("/v1/models/flowers:predict", &json!({ "instances": instances })).await.ok_json();
    let (labels, probabilities) = expected_flowers(&fixture, &FLOWERS);
    let predictions = body["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), FLOWERS.len());
    for (row, prediction) in predictions.iter().enumerate() {
        assert_eq!(prediction["label"], labels[row].as_str(), "row {row}");
        let got: Vec<f32> =
            ["iris", "rose", "tulip"].iter().map(|c| f32s(&prediction["probabilities"][c])[0]).collect();
        assert_eq!(bits(&got), bits(&probabilities[row * 3..row * 3 + 3]), "row {row}");
    }
}

#[tokio::test]
async fn v1_model_status() {
    let fixture = Fixture::new();
    assert_eq!(fixture.get("/v1/models/houses").await.ok_json(), json!({ "name": "houses", "ready": true }));
    let message = fixture.get("/v1/models/mansions").await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'"]);
    let message = fixture
        .post_json("/v1/models/mansions:predict", &json!({ "instances": [] }))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'"]);
}

#[tokio::test]
async fn v1_instance_missing_a_column_is_400() {
    let fixture = Fixture::new();
    let request = json!({ "instances": [
        { "area": 72.5, "rooms": 3, "city": "Oslo" },
        { "area": 120.25, "city": "Rome" },
    ] });
    let message = fixture.post_json("/v1/models/houses:predict", &request).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'houses'", "row 1", "missing column 'rooms'", "\"area\", \"rooms\", \"city\""]);
}

#[tokio::test]
async fn v1_instance_with_an_unknown_column_is_400() {
    let fixture = Fixture::new();
    let request = json!({ "instances": [{ "area": 72.5, "rooms": 3, "city": "Oslo", "garden": true }] });
    let message = fixture.post_json("/v1/models/houses:predict", &request).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'houses'", "row 0", "'garden'"]);
}

// ---------------------------------------------------------------------------------------------
// v2 errors
// ---------------------------------------------------------------------------------------------

async fn infer_error(fixture: &Fixture, request: &Value, status: StatusCode) -> String {
    fixture.post_json("/v2/models/houses/infer", request).await.error(status)
}

#[tokio::test]
async fn wrong_datatype_is_400_naming_input_model_and_expected_type() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    input_mut(&mut request, 0)["datatype"] = json!("BYTES");
    input_mut(&mut request, 0)["data"] = json!(["72.5", "120.25", "48"]);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'area'", "'BYTES'", "'houses'", "FP32"]);

    let mut request = houses_request(&HOUSES, "FP32");
    input_mut(&mut request, 2)["datatype"] = json!("FP32");
    input_mut(&mut request, 2)["data"] = json!([1.0, 2.0, 3.0]);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'city'", "'FP32'", "'houses'", "expects 'BYTES'"]);

    let mut request = houses_request(&HOUSES, "FP32");
    input_mut(&mut request, 1)["datatype"] = json!("FLOAT");
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'rooms'", "'FLOAT'"]);
}

#[tokio::test]
async fn wrong_shape_is_400_naming_input_model_and_expected_shape() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    input_mut(&mut request, 0)["shape"] = json!([2, 5]);
    input_mut(&mut request, 0)["data"] = json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["unexpected shape", "'area'", "'houses'", "Expected [-1]", "[2, 5]"]);
}

#[tokio::test]
async fn missing_input_is_400_naming_the_missing_one() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    request["inputs"].as_array_mut().expect("inputs").remove(2);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["expected 3 inputs but got 2", "'houses'", "Missing required input(s) [\"city\"]"]);
}

#[tokio::test]
async fn an_input_given_twice_is_400() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    let again = request["inputs"][1].clone();
    request["inputs"].as_array_mut().expect("inputs").push(again);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'rooms'", "twice", "'houses'"]);
}

#[tokio::test]
async fn unknown_input_is_400_listing_the_models_inputs() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    request["inputs"].as_array_mut().expect("inputs").push(json!({
        "name": "garden", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]
    }));
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["unexpected inference input 'garden'", "'houses'", "\"area\", \"rooms\", \"city\""]);
}

#[tokio::test]
async fn unknown_category_is_400_naming_column_value_and_known_categories() {
    let fixture = Fixture::new();
    let rows: [House; 2] = [(Some(72.5), Some(3.0), Some("Oslo")), (Some(50.0), Some(2.0), Some("Paris"))];
    let message = infer_error(&fixture, &houses_request(&rows, "FP32"), StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'houses'", "'city'", "'Paris'", "row 1", "\"Oslo\", \"Rome\""]);

    let request = json!({ "instances": [{ "area": 50.0, "rooms": 2, "city": "Paris" }] });
    let message = fixture.post_json("/v1/models/houses:predict", &request).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'houses'", "'city'", "'Paris'"]);
}

#[tokio::test]
async fn a_number_the_network_cannot_take_is_400_naming_column_row_and_value() {
    let fixture = Fixture::new();
    // Finite as f64, but no 32-bit float once standardized.
    let rows: [House; 2] = [(Some(72.5), Some(3.0), Some("Oslo")), (Some(1e300), Some(2.0), Some("Rome"))];
    let message = infer_error(&fixture, &houses_request(&rows, "FP64"), StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'houses'", "'area'", "row 1", "1e300", "out of range"]);

    let request = json!({ "instances": [{ "area": 72.5, "rooms": -1e300, "city": "Oslo" }] });
    let message = fixture.post_json("/v1/models/houses:predict", &request).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["'houses'", "'rooms'", "out of range"]);
}

#[tokio::test]
async fn row_count_mismatch_between_inputs_is_400() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    input_mut(&mut request, 1)["shape"] = json!([2]);
    input_mut(&mut request, 1)["data"] = json!([3, 5]);
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'rooms' has 2 rows", "'area' has 3", "'houses'"]);
}

#[tokio::test]
async fn element_count_not_matching_the_shape_is_400() {
    let fixture = Fixture::new();
    let mut request = houses_request(&HOUSES, "FP32");
    for input in request["inputs"].as_array_mut().expect("inputs") {
        input["shape"] = json!([4]);
    }
    let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["'area'", "4 elements", "holds 3 elements"]);
}

#[tokio::test]
async fn fp16_in_json_is_400() {
    let fixture = Fixture::new();
    for datatype in ["FP16", "BF16"] {
        let mut request = houses_request(&HOUSES, "FP32");
        input_mut(&mut request, 0)["datatype"] = json!(datatype);
        let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
        assert_mentions(&message, &["'area'", &format!("'{datatype}'"), "'houses'", "FP32"]);
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let fixture = Fixture::new();
    let body = "{\n  \"inputs\": [\n    {\"name\": \"area\",, \"shape\": [1]}\n  ]\n}";
    let parse_error = serde_json::from_str::<Value>(body).expect_err("the body is not JSON");
    assert_eq!(parse_error.line(), 3, "the syntax error is on the third line");
    let reply = fixture.post_raw("/v2/models/houses/infer", body, &[]).await;
    let message = reply.error(StatusCode::BAD_REQUEST);
    assert_mentions(
        &message,
        &["failed to parse the request JSON buffer", &format!("line 3 column {}", parse_error.column())],
    );

    let message =
        fixture.post_raw("/v1/models/houses:predict", "{\"instances\": [", &[]).await.error(StatusCode::BAD_REQUEST);
    assert_mentions(&message, &["failed to parse the request JSON buffer", "line 1 column 15"]);

    // Well-formed JSON without the required `inputs` is a parse error too, also located.
    let message = infer_error(&fixture, &json!({ "id": "x" }), StatusCode::BAD_REQUEST).await;
    assert_mentions(&message, &["missing field `inputs`", "line 1 column"]);
}

/// The child-process switch of [`a_huge_declared_shape_is_400_not_a_crash`].
const HUGE_SHAPE_CHILD: &str = "ROUTER_TEST_HUGE_SHAPE_CHILD";

/// A request declaring a huge shape with a few elements of data must be refused as a shape or
/// element-count error; the server must not size an allocation from the client's shape. Such
/// an allocation aborts the whole process (not a panic a task can catch), so the requests run
/// in a child process: an abort there fails this test instead of killing every test at once.
#[test]
fn a_huge_declared_shape_is_400_not_a_crash() {
    if std::env::var_os(HUGE_SHAPE_CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(huge_shape_requests());
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = std::process::Command::new(exe)
        .args(["a_huge_declared_shape_is_400_not_a_crash", "--exact", "--nocapture", "--test-threads=1"])
        .env(HUGE_SHAPE_CHILD, "1")
        .output()
        .expect("run the test binary as a child");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "the child ended with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", child.status);
    assert!(stdout.contains("1 passed"), "the child ran the requests: {stdout}");
}

async fn huge_shape_requests() {
    let fixture = Fixture::new();
    for n in [1u64 << 40, 1u64 << 62] {
        let request = json!({ "inputs": [
            { "name": "area", "shape": [n], "datatype": "FP32", "data": [72.5, 48.0] },
            { "name": "rooms", "shape": [n], "datatype": "FP32", "data": [3, 1] },
            { "name": "city", "shape": [n], "datatype": "BYTES", "data": ["Oslo", "Rome"] },
        ] });
        let message = infer_error(&fixture, &request, StatusCode::BAD_REQUEST).await;
        assert_mentions(&message, &["'area'", "2 elements"]);
    }
    let city_bytes = encode_bytes(&["Oslo", "Rome"]);
    let header = json!({ "inputs": [
        { "name": "city", "shape": [1u64 << 40], "datatype": "BYTES", "parameters": { "binary_data_size": city_bytes.len() } },
    ] });
    let (body, length) = binary_body(&header, &[&city_bytes]);
    let reply =
        fixture.post_raw("/v2/models/houses/infer", body, &[("inference-header-content-length", &length)]).await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["'city'"]);
}

#[tokio::test]
async fn unknown_model_and_version_are_404() {
    let fixture = Fixture::new();
    let request = houses_request(&HOUSES, "FP32");
    let message = fixture.post_json("/v2/models/mansions/infer", &request).await.error(StatusCode::NOT_FOUND);
    assert_eq!(message, "Request for unknown model: 'mansions' is not found");
    let message = fixture.post_json("/v2/models/houses/versions/9/infer", &request).await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'houses'", "version 9", "not found"]);
    let message =
        fixture.post_json("/v2/models/mansions/versions/1/infer", &request).await.error(StatusCode::NOT_FOUND);
    assert_mentions(&message, &["'mansions'", "not found"]);
}

#[tokio::test]
async fn a_body_over_the_cap_is_413() {
    let limit = 256;
    let fixture = Fixture::with_limits(Limits { max_body_bytes: limit, ..default_limits() });
    let rows: Vec<House> = (0..40).map(|i| (Some(50.0 + f64::from(i)), Some(2.0), Some("Oslo"))).collect();
    let request = houses_request(&rows, "FP32");
    assert!(request.to_string().len() > limit, "the request must exceed the cap");
    let message = fixture.post_json("/v2/models/houses/infer", &request).await.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_mentions(&message, &["larger than the limit", "256 bytes"]);
    let instances: Vec<Value> = rows.iter().map(|r| json!({ "area": r.0, "rooms": r.1, "city": r.2 })).collect();
    let reply = fixture.post_json("/v1/models/houses:predict", &json!({ "instances": instances })).await;
    assert_mentions(&reply.error(StatusCode::PAYLOAD_TOO_LARGE), &["256 bytes"]);

    // A small request still goes through under the same cap.
    let small = houses_request(&HOUSES[..1], "FP32");
    assert!(small.to_string().len() <= limit);
    let body = fixture.post_json("/v2/models/houses/infer", &small).await.ok_json();
    assert_eq!(bits(&prediction_values(&body, 1)), bits(&expected_houses(&fixture, 2, &HOUSES[..1])));
}

#[tokio::test]
async fn saturation_is_503_about_the_concurrency_limit() {
    let fixture = Fixture::with_limits(Limits { max_concurrency: 0, ..default_limits() });
    let message = fixture
        .post_json("/v2/models/houses/infer", &houses_request(&HOUSES, "FP32"))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    assert_mentions(&message, &["concurrency limit", "retry later"]);
    let request = json!({ "instances": [{ "area": 72.5, "rooms": 3, "city": "Oslo" }] });
    let message = fixture.post_json("/v1/models/houses:predict", &request).await.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_mentions(&message, &["concurrency limit"]);
    // Metadata is not inference: it still answers.
    assert_eq!(fixture.get("/v2/models/houses/ready").await.status, StatusCode::OK);
    let metrics = fixture.get("/metrics").await.text();
    assert!(
        metrics.contains(
            "serving_requests_total{model=\"houses\",version=\"2\",protocol=\"v2\",outcome=\"unavailable\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_over_the_timeout_is_503() {
    let fixture =
        Fixture::with_limits(Limits { timeout: Duration::ZERO, max_body_bytes: 64 << 20, ..default_limits() });
    // Large enough (tens of milliseconds of work) that the prediction cannot finish before the
    // zero timeout fires at the timer's next millisecond tick.
    let rows: Vec<House> = (0..200_000).map(|i| (Some(f64::from(i % 200)), Some(3.0), Some("Rome"))).collect();
    let message = fixture
        .post_json("/v2/models/houses/infer", &houses_request(&rows, "FP32"))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    assert_mentions(&message, &["timed out after 0 ms"]);
}

#[tokio::test]
async fn requests_up_to_the_inline_size_are_answered_in_place_and_the_rest_on_the_inference_threads() {
    // Tens of milliseconds of work: handed to the inference threads under a zero timeout it is
    // always late (`a_request_over_the_timeout_is_503`), even though the timer only fires at its
    // next millisecond tick; answered in place it is not subject to the timeout. The answer
    // must not depend on the path.
    let rows: Vec<House> = (0..200_000).map(|i| (Some(f64::from(i % 200)), Some(3.0), Some("Rome"))).collect();
    let request = houses_request(&rows, "FP32");
    let size = request.to_string().len();
    let limits = Limits { timeout: Duration::ZERO, max_body_bytes: 64 << 20, ..default_limits() };
    let in_place = Fixture::with_limits(Limits { inline_max_bytes: size, ..limits });
    let answered = in_place.post_json("/v2/models/houses/infer", &request).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    let handed_over = Fixture::with_limits(Limits { inline_max_bytes: size - 1, ..limits });
    let message =
        handed_over.post_json("/v2/models/houses/infer", &request).await.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_mentions(&message, &["timed out after 0 ms"]);
    let pooled = Fixture::with_limits(Limits { inline_max_bytes: 0, max_body_bytes: 64 << 20, ..default_limits() });
    let reference = pooled.post_json("/v2/models/houses/infer", &request).await;
    assert_eq!(reference.status, StatusCode::OK);
    assert_eq!(answered.json(), reference.json());
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_requests_by_model_and_outcome_and_rows_predicted() {
    let fixture = Fixture::new();
    let ok = fixture.post_json("/v2/models/houses/infer", &houses_request(&HOUSES, "FP32")).await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok = fixture.post_json("/v2/models/houses/versions/1/infer", &houses_request(&HOUSES[..2], "FP64")).await;
    assert_eq!(ok.status, StatusCode::OK);
    let mut bad = houses_request(&HOUSES, "FP32");
    input_mut(&mut bad, 0)["shape"] = json!([2, 5]);
    assert_eq!(fixture.post_json("/v2/models/houses/infer", &bad).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(fixture.post_json("/v2/models/mansions/infer", &bad).await.status, StatusCode::NOT_FOUND);
    let instances: Vec<Value> =
        FLOWERS.iter().map(|&(petal, color)| json!({ "petal": petal, "color": color })).collect();
    let v1 = fixture.post_json("/v1/models/flowers:predict", &json!({ "instances": instances })).await;
    assert_eq!(v1.status, StatusCode::OK);

    let reply = fixture.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{:?}", reply.headers);
    let metrics = reply.text();
    for line in [
        // Each version has its own series: the request to version 1 is counted there.
        "serving_requests_total{model=\"houses\",version=\"2\",protocol=\"v2\",outcome=\"ok\"} 1",
        "serving_requests_total{model=\"houses\",version=\"1\",protocol=\"v2\",outcome=\"ok\"} 1",
        "serving_requests_total{model=\"houses\",version=\"2\",protocol=\"v2\",outcome=\"client_error\"} 1",
        "serving_requests_total{model=\"_unknown\",version=\"0\",protocol=\"v2\",outcome=\"client_error\"} 1",
        "serving_requests_total{model=\"flowers\",version=\"1\",protocol=\"v1\",outcome=\"ok\"} 1",
        "serving_rows_predicted_total{model=\"houses\",version=\"2\"} 3",
        "serving_rows_predicted_total{model=\"houses\",version=\"1\"} 2",
        "serving_rows_predicted_total{model=\"flowers\",version=\"1\"} 4",
        "serving_request_duration_seconds_count{model=\"houses\",version=\"2\"} 2",
        "serving_request_duration_seconds_bucket{model=\"houses\",version=\"2\",le=\"+Inf\"} 2",
        "# TYPE serving_in_flight_requests gauge",
        "serving_in_flight_requests 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing line {line:?} in\n{metrics}");
    }
    // Nothing failed on the server's side.
    assert!(!metrics.contains("outcome=\"server_error\""), "{metrics}");
}
