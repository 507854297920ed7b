//! Hostile-client checks driven through the router: bounded requests, never a wrong answer with
//! 200, access control, shutdown, and damaged artifacts that fail alone. The connection-level
//! bounds (timeouts, connection limit, TLS) are checked against the real binary in
//! `tests/end_to_end/hardening.rs`.

// Shared with the other router tests, which use the rest of it.
#[allow(dead_code)]
mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::{Fixture, assert_mentions, default_limits};
use serde_json::{Value, json};
use serving::auth::Tokens;
use serving::http::Access;
use serving::{AppState, Limits, Registry};
use shared_inference::{Cell, InputError, Predictions};
use tower::ServiceExt;

fn houses(area: Value, rooms: Value, datatype: &str) -> Value {
    json!({ "inputs": [
        { "name": "area", "shape": [2], "datatype": datatype, "data": [80.0, area] },
        { "name": "rooms", "shape": [2], "datatype": datatype, "data": [3.0, rooms] },
        { "name": "city", "shape": [2], "datatype": "BYTES", "data": ["Oslo", "Rome"] },
    ] })
}

fn valid_houses() -> Value {
    houses(json!(90.0), json!(2.0), "FP32")
}

async fn send(state: &Arc<AppState>, request: Request<Body>) -> common::Reply {
    let response = serving::app(state.clone()).oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    common::Reply { status, headers, body }
}

fn post(uri: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.into())).expect("a valid request")
}

// ---------------------------------------------------------------------------------------------
// Never a wrong answer with 200
// ---------------------------------------------------------------------------------------------

/// "houses" version 2 with its target read back through `exp` at a large scale, so that
/// ordinary-looking inputs overflow the inverse transform; resealed, as a trainer would write it.
fn overflowing_repository(fixture: &Fixture) -> (tempfile::TempDir, Arc<AppState>, shared_inference::Predictor) {
    let dir = tempfile::tempdir().expect("temp dir");
    let version = dir.path().join("houses/2");
    std::fs::create_dir_all(&version).expect("mkdir");
    let source = fixture.root.join("houses/2");
    let mut manifest =
        shared_inference::Manifest::from_json(&std::fs::read(source.join("manifest.json")).expect("read"))
            .expect("valid");
    manifest.target_transform = shared_inference::TargetTransform::LogStandardize { mean: 0.0, std: 30.0 };
    std::fs::write(version.join("manifest.json"), manifest.to_json().expect("seal")).expect("write");
    std::fs::copy(source.join("weights.mpk"), version.join("weights.mpk")).expect("copy");
    let registry = Registry::load_repository(dir.path(), true).expect("loads");
    let state = AppState::new(registry, default_limits()).expect("state");
    let predictor = shared_inference::Predictor::load(&version).expect("loads");
    (dir, state, predictor)
}

/// Finite inputs whose prediction overflows, found by asking the predictor, so the test does
/// not depend on the fixture's random weights.
fn overflowing_house(predictor: &shared_inference::Predictor) -> (f64, f64) {
    let candidates = [-1e5, -1e4, -1e3, 0.0, 1e3, 1e4, 1e5];
    for &area in &candidates {
        for &rooms in &candidates {
            let record = [("area", Cell::Number(area)), ("rooms", Cell::Number(rooms)), ("city", Cell::Text("Rome"))];
            match predictor.predict_records(&[record]) {
                Err(InputError::NotFinite { row: 0, .. }) => return (area, rooms),
                Ok(Predictions::Regression { values }) => assert!(values[0].is_finite(), "a 200 with {values:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    panic!("no candidate overflows the fixture network");
}

#[tokio::test]
async fn a_prediction_that_is_not_finite_is_400_naming_the_row_on_every_protocol() {
    let fixture = Fixture::new();
    let (_dir, state, predictor) = overflowing_repository(&fixture);
    let (area, rooms) = overflowing_house(&predictor);
    // Row 0 is ordinary; row 1 overflows. Every front end refuses the request and names row 1.
    let ordinary = [("area", Cell::Number(80.0)), ("rooms", Cell::Number(3.0)), ("city", Cell::Text("Oslo"))];
    let fine = predictor.predict_records(&[ordinary]).expect("row 0 alone is fine");
    assert!(matches!(fine, Predictions::Regression { ref values } if values[0].is_finite()), "{fine:?}");
    let v2 = houses(json!(area), json!(rooms), "FP64");
    let v2 = send(&state, post("/v2/models/houses/infer", v2.to_string(), &[])).await;
    assert_mentions(&v2.error(StatusCode::BAD_REQUEST), &["row 1", "not a finite number"]);
    let instances = json!({ "instances": [
        { "area": 80.0, "rooms": 3.0, "city": "Oslo" },
        { "area": area, "rooms": rooms, "city": "Rome" },
    ] });
    let v1 = send(&state, post("/v1/models/houses:predict", instances.to_string(), &[])).await;
    assert_mentions(&v1.error(StatusCode::BAD_REQUEST), &["row 1", "not a finite number"]);
    // Offline scoring reports the row as failed instead of writing inf.
    let csv = format!("area,rooms,city\n80,3,Oslo\n{area},{rooms},Rome\n");
    let mut out = Vec::new();
    let options = serving::batch::BatchOptions {
        input_format: serving::batch::Format::Csv,
        output_format: serving::batch::Format::Csv,
        keep: vec![],
        chunk_rows: 16,
    };
    let summary =
        serving::batch::score(&predictor, std::io::Cursor::new(csv), &mut out, &options, |_| {}).expect("scoring runs");
    assert_eq!((summary.rows, summary.failed), (2, 1));
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("not a finite number"), "{text}");
    for line in text.lines().skip(1) {
        assert!(
            !line.split(',').any(|cell| cell.eq_ignore_ascii_case("inf") || cell.eq_ignore_ascii_case("nan")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn integers_outside_their_datatype_are_400_and_the_range_ends_are_exact() {
    let fixture = Fixture::new();
    let int64 = |value: &str| {
        format!(
            r#"{{"inputs":[{{"name":"area","shape":[1],"datatype":"INT64","data":[{value}]}},
               {{"name":"rooms","shape":[1],"datatype":"INT64","data":[3]}},
               {{"name":"city","shape":[1],"datatype":"BYTES","data":["Oslo"]}}]}}"#
        )
    };
    for over in ["9223372036854775808", "18446744073709551615", "-9223372036854775809", "9.3e18"] {
        let reply = fixture.post_raw("/v2/models/houses/infer", int64(over), &[]).await;
        assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["input 'area'", "out of range for INT64"]);
    }
    for within in ["9223372036854775807", "-9223372036854775808", "0"] {
        let reply = fixture.post_raw("/v2/models/houses/infer", int64(within), &[]).await;
        // Valid INT64 values; i64::MAX standardizes to a finite f32 here, so a 200 with a number.
        let body = reply.ok_json();
        assert!(body["outputs"][0]["data"][0].as_f64().is_some_and(f64::is_finite), "{body}");
    }
    let int8 = r#"{"inputs":[{"name":"area","shape":[1],"datatype":"INT8","data":[128]},
        {"name":"rooms","shape":[1],"datatype":"INT8","data":[3]},
        {"name":"city","shape":[1],"datatype":"BYTES","data":["Oslo"]}]}"#;
    let reply = fixture.post_raw("/v2/models/houses/infer", int8, &[]).await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["128 is out of range for INT8"]);
}

#[tokio::test]
async fn an_output_named_twice_is_400_so_a_response_is_bounded_by_its_request() {
    let fixture = Fixture::new();
    let mut request = valid_houses();
    request["outputs"] = json!([{ "name": "prediction" }, { "name": "prediction" }]);
    let reply = fixture.post_json("/v2/models/houses/infer", &request).await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["output 'prediction' is requested twice"]);
    request["outputs"] = json!([{ "name": "prediction" }, { "name": "nonsense" }]);
    let reply = fixture.post_json("/v2/models/houses/infer", &request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    request["outputs"] = json!([{ "name": "prediction" }]);
    let body = fixture.post_json("/v2/models/houses/infer", &request).await.ok_json();
    assert_eq!(body["outputs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_header_given_twice_with_different_values_is_400_and_identical_copies_pass() {
    let fixture = Fixture::new();
    let body = valid_houses().to_string();
    let conflicting = fixture
        .send(post(
            "/v2/models/houses/infer",
            body.clone(),
            &[("inference-header-content-length", "10"), ("inference-header-content-length", "12")],
        ))
        .await;
    assert_mentions(
        &conflicting.error(StatusCode::BAD_REQUEST),
        &["header 'inference-header-content-length' is given 2 times with different values"],
    );
    let types = &[("content-type", "application/json"), ("content-type", "application/octet-stream")];
    let reply = fixture.send(post("/v2/models/houses/infer", body.clone(), types)).await;
    assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["'content-type'"]);
    let same = &[("content-type", "application/json"), ("content-type", "application/json")];
    assert_eq!(fixture.send(post("/v2/models/houses/infer", body, same)).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Requests that are refused before their body is read
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_compressed_body_is_415_not_parsed_as_json() {
    let fixture = Fixture::new();
    let reply = fixture
        .send(post("/v2/models/houses/infer", valid_houses().to_string(), &[("content-encoding", "gzip")]))
        .await;
    assert_mentions(&reply.error(StatusCode::UNSUPPORTED_MEDIA_TYPE), &["Content-Encoding 'gzip' is not supported"]);
    let identity = &[("content-encoding", "identity")];
    assert_eq!(fixture.send(post("/v2/models/houses/infer", valid_houses().to_string(), identity)).await.status, 200);
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_413_before_any_byte_of_the_body() {
    let fixture = Fixture::with_limits(Limits { max_body_bytes: 1000, ..default_limits() });
    // The declared length is all there is: the body never comes. The answer must not wait for it.
    let request = Request::post("/v2/models/houses/infer")
        .header("content-length", "1073741824")
        .body(Body::new(Stalled { sent: true }))
        .expect("request");
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), fixture.send(request)).await.expect("answered at once");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_mentions(&reply.error(StatusCode::PAYLOAD_TOO_LARGE), &["limit of 1000 bytes"]);
    assert_eq!(reply.header("connection"), Some("close"), "the unread body cannot be followed by another request");
}

#[tokio::test]
async fn over_long_targets_too_many_headers_and_wrong_methods_get_json_errors() {
    let fixture = Fixture::new();
    let long = format!("/v2/models/{}", "m".repeat(serving::http::MAX_URI_BYTES));
    assert_mentions(&fixture.get(&long).await.error(StatusCode::URI_TOO_LONG), &["the limit is 8192"]);
    let mut request = Request::get("/v2/models/houses");
    for i in 0..=serving::http::MAX_HEADERS {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    let reply = fixture.send(request.body(Body::empty()).expect("request")).await;
    assert_mentions(&reply.error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE), &["101 header fields", "limit is 100"]);
    let big = "x".repeat(serving::http::MAX_HEADER_BYTES);
    let reply = fixture.send(Request::get("/v2").header("x-big", big).body(Body::empty()).expect("request")).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let reply = fixture.send(Request::delete("/v2/models/houses/infer").body(Body::empty()).expect("request")).await;
    assert_mentions(
        &reply.error(StatusCode::METHOD_NOT_ALLOWED),
        &["DELETE is not allowed on /v2/models/houses/infer"],
    );
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = fixture.send(post("/v2/models/houses", "", &[])).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET"));
}

// ---------------------------------------------------------------------------------------------
// Bodies: time and memory
// ---------------------------------------------------------------------------------------------

/// A body that sends a few bytes (or none) and then never anything more.
struct Stalled {
    sent: bool,
}

impl axum::body::HttpBody for Stalled {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            Poll::Pending
        } else {
            self.sent = true;
            Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"{\"inputs\": [")))))
        }
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_after_the_body_timeout() {
    let fixture = Fixture::with_limits(Limits { body_timeout: Duration::from_millis(200), ..default_limits() });
    let request = Request::post("/v2/models/houses/infer").body(Body::new(Stalled { sent: false })).expect("request");
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), fixture.send(request)).await.expect("answered");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_mentions(&reply.error(StatusCode::REQUEST_TIMEOUT), &["--body-timeout-seconds"]);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[tokio::test]
async fn bodies_being_received_share_one_budget_and_get_it_back() {
    let body = valid_houses().to_string();
    let limits = Limits { max_buffered_body_bytes: body.len() + 10, ..default_limits() };
    let fixture = Fixture::with_limits(limits);
    // A stalled body holds part of the budget while it waits ...
    let stalled = Request::post("/v2/models/houses/infer").body(Body::new(Stalled { sent: false })).expect("request");
    let app = serving::app(fixture.state.clone());
    let holder = tokio::spawn(async move { app.oneshot(stalled).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... so a full body no longer fits: 503 with Retry-After, not an unbounded buffer.
    let reply = fixture.post_json("/v2/models/houses/infer", &valid_houses()).await;
    assert_mentions(&reply.error(StatusCode::SERVICE_UNAVAILABLE), &["--max-buffered-body-bytes"]);
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Once the stalled request is gone, its share is given back.
    holder.abort();
    let _ = holder.await;
    let reply = fixture.post_json("/v2/models/houses/infer", &valid_houses()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn once_draining_inference_is_503_with_connection_close_and_metadata_still_answers() {
    let fixture = Fixture::new();
    fixture.state.set_ready(false);
    let reply = fixture.post_json("/v2/models/houses/infer", &valid_houses()).await;
    assert_mentions(&reply.error(StatusCode::SERVICE_UNAVAILABLE), &["shutting down"]);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    let v1 = fixture.post_json("/v1/models/houses:predict", &json!({ "instances": [] })).await;
    assert_eq!((v1.status, v1.header("connection")), (StatusCode::SERVICE_UNAVAILABLE, Some("close")));
    let metadata = fixture.get("/v2/models/houses").await;
    assert_eq!((metadata.status, metadata.header("connection")), (StatusCode::OK, Some("close")));
    let live = fixture.get("/v2/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Access control
// ---------------------------------------------------------------------------------------------

const TOKENS: &str = r#"
[[token]]
name = "scorer"
token = "scorer-secret-0123456789"
scopes = ["inference"]

[[token]]
name = "reader"
token = "reader-secret-0123456789"
scopes = ["metadata"]
"#;

fn guarded(fixture: &Fixture, protect_metrics: bool) -> Arc<AppState> {
    let registry = Registry::load_repository(&fixture.root, true).expect("loads");
    let access = Access { tokens: Tokens::parse(TOKENS).expect("tokens"), protect_metrics };
    AppState::with_access(registry, default_limits(), access).expect("state")
}

fn with_token(mut request: Request<Body>, token: &str) -> Request<Body> {
    let value = format!("Bearer {token}").parse().expect("header value");
    request.headers_mut().insert("authorization", value);
    request
}

#[tokio::test]
async fn tokens_gate_each_scope_with_401_or_403_and_health_stays_open() {
    let fixture = Fixture::new();
    let state = guarded(&fixture, false);
    let infer = || post("/v2/models/houses/infer", valid_houses().to_string(), &[]);
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");

    let reply = send(&state, infer()).await;
    assert_mentions(&reply.error(StatusCode::UNAUTHORIZED), &["'inference' scope", "Authorization: Bearer"]);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer realm=\"serving\""));
    let reply = send(&state, with_token(infer(), "not-a-known-token-at-all")).await;
    assert_mentions(&reply.error(StatusCode::UNAUTHORIZED), &["not valid"]);
    assert!(reply.header("www-authenticate").is_some_and(|v| v.contains("invalid_token")));
    let reply = send(&state, with_token(infer(), "reader-secret-0123456789")).await;
    assert_mentions(&reply.error(StatusCode::FORBIDDEN), &["'reader' does not have the 'inference' scope"]);
    assert!(reply.header("www-authenticate").is_some_and(|v| v.contains("insufficient_scope")));
    assert_eq!(send(&state, with_token(infer(), "scorer-secret-0123456789")).await.status, StatusCode::OK);

    let reply = send(&state, with_token(get("/v2/models/houses"), "scorer-secret-0123456789")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&state, with_token(get("/v2/models/houses"), "reader-secret-0123456789")).await.status, 200);
    // Unknown paths need a token too: an outsider cannot map the server.
    assert_eq!(send(&state, get("/v2/secret")).await.status, StatusCode::UNAUTHORIZED);
    for open in ["/v2/health/live", "/v2/health/ready", "/metrics"] {
        assert_eq!(send(&state, get(open)).await.status, StatusCode::OK, "{open}");
    }
    let protected = guarded(&fixture, true);
    assert_eq!(send(&protected, get("/metrics")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&protected, get("/v2/health/ready")).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Damaged artifacts fail alone
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_damaged_version_is_reported_and_skipped_and_strict_stops_instead() {
    let fixture = Fixture::new();
    let root = &fixture.root;
    // An empty version directory, a manifest edited by hand, and a model with nothing loadable.
    std::fs::create_dir_all(root.join("flowers/2")).expect("mkdir");
    let manifest = root.join("houses/2/manifest.json");
    let edited = std::fs::read_to_string(&manifest).expect("read").replacen("\"std\": 30.0", "\"std\": 31.0", 1);
    std::fs::create_dir_all(root.join("houses/3")).expect("mkdir");
    std::fs::write(root.join("houses/3/manifest.json"), edited).expect("write");
    std::fs::copy(root.join("houses/2/weights.mpk"), root.join("houses/3/weights.mpk")).expect("copy");
    std::fs::create_dir_all(root.join("gone/1")).expect("mkdir");
    std::fs::write(root.join("gone/1/manifest.json"), "{ not json").expect("write");

    let error = Registry::load_repository(root, true).expect_err("strict stops");
    assert_mentions(&format!("{error:#}"), &["--strict"]);

    let registry = Registry::load_repository(root, false).expect("the others load");
    let failed: Vec<(String, u64)> = registry.failures().iter().map(|f| (f.model.clone(), f.version)).collect();
    assert_eq!(failed, [("flowers".into(), 2), ("gone".into(), 1), ("houses".into(), 3)]);
    let reasons: Vec<&str> = registry.failures().iter().map(|f| f.reason.as_str()).collect();
    assert_mentions(reasons[0], &["flowers/2", "manifest.json", "No such file"]);
    assert_eq!(reasons[0].matches("No such file").count(), 1, "the OS error is said once: {}", reasons[0]);
    assert_mentions(reasons[2], &["manifest checksum mismatch"]);
    assert_eq!(registry.missing_models(), ["gone"]);
    let state = AppState::new(registry, default_limits()).expect("state");

    // The good versions serve; the latest houses is still 2, not the damaged 3.
    let reply = send(&state, post("/v2/models/houses/infer", valid_houses().to_string(), &[])).await;
    assert_eq!(reply.ok_json()["model_version"], "2");
    let index = send(&state, Request::get("/v2/models").body(Body::empty()).expect("request")).await.ok_json();
    let unavailable = index["unavailable"].as_array().expect("unavailable");
    assert_eq!(unavailable.len(), 3);
    assert!(
        unavailable.iter().all(|u| u["state"] == "UNAVAILABLE" && u["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
    let metrics = send(&state, Request::get("/metrics").body(Body::empty()).expect("request")).await.text();
    for line in [
        "serving_model_load_failures{model=\"gone\"} 1",
        "serving_model_load_failures{model=\"houses\"} 1",
        "serving_model_load_failures{model=\"barometer\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // A model with no loaded version makes the server not ready, and says which.
    let ready = send(&state, Request::get("/v2/health/ready").body(Body::empty()).expect("request")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("gone"), "{}", ready.text());
}

#[test]
fn a_csv_header_naming_a_column_twice_is_refused_not_read_from_one_copy() {
    let fixture = Fixture::new();
    let predictor = fixture.predictor("houses", 1);
    let options = serving::batch::BatchOptions {
        input_format: serving::batch::Format::Csv,
        output_format: serving::batch::Format::Csv,
        keep: vec![],
        chunk_rows: 16,
    };
    let csv = "area,rooms,city,area\n80,3,Oslo,90\n";
    let mut out = Vec::new();
    let error = serving::batch::score(&predictor, std::io::Cursor::new(csv), &mut out, &options, |_| {})
        .expect_err("a duplicated column is refused");
    assert_mentions(&format!("{error:#}"), &["column 'area' twice", "columns 1 and 4"]);
    let fine = "area,rooms,city\n80,3,Oslo\n";
    let summary =
        serving::batch::score(&predictor, std::io::Cursor::new(fine), &mut out, &options, |_| {}).expect("scores");
    assert_eq!((summary.rows, summary.failed), (1, 0));
}
