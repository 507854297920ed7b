//! The live model repository, driven through the router with the repository refreshed by hand
//! (the poller calls the same `refresh`): versions appearing and leaving, failures that never
//! replace a good version, `serving.toml` (policy, labels, splits, shadow), the Triton
//! repository endpoints and explicit model control. The rollout under load runs against the
//! real binary in `tests/end_to_end/rollout.rs`.

// Shared with the other router tests, which use the rest of it.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fixture, Reply, assert_mentions, default_limits};
use serde_json::{Value, json};
use serving::AppState;
use serving::http::Access;
use serving::repository::{ModelControl, Repository};
use shared_inference::Manifest;
use tower::ServiceExt;

/// Copies `<root>/<name>/<from>` to `<root>/<name>/<to>` as a trainer would write it: the
/// manifest says the new version and is resealed.
fn copy_version(root: &Path, name: &str, from: u64, to: u64) {
    let source = root.join(name).join(from.to_string());
    let staging = root.join(name).join(format!(".tmp-{to}"));
    std::fs::create_dir_all(&staging).expect("mkdir");
    let mut manifest = Manifest::from_json(&std::fs::read(source.join("manifest.json")).expect("read")).expect("valid");
    manifest.version = to;
    std::fs::write(staging.join("manifest.json"), manifest.to_json().expect("seal")).expect("write");
    std::fs::copy(source.join("weights.mpk"), staging.join("weights.mpk")).expect("copy");
    std::fs::rename(&staging, root.join(name).join(to.to_string())).expect("rename into place");
}

struct Live {
    fixture: Fixture,
    repository: Arc<Repository>,
    state: Arc<AppState>,
}

impl Live {
    fn open(mode: ModelControl, initial: &[&str]) -> Self {
        let fixture = Fixture::new();
        let initial: Vec<String> = initial.iter().map(|s| s.to_string()).collect();
        let repository = Arc::new(Repository::open(&fixture.root, mode, false, &initial).expect("opens"));
        let state = AppState::with_repository(repository.clone(), default_limits(), Access::default()).expect("state");
        Self { fixture, repository, state }
    }

    fn root(&self) -> &Path {
        &self.fixture.root
    }

    fn refresh(&self) {
        self.repository.refresh(None).expect("the repository reads");
    }

    fn config(&self, text: &str) {
        std::fs::write(self.root().join("serving.toml"), text).expect("write serving.toml");
        self.refresh();
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = serving::app(self.state.clone()).oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        Reply { status, headers, body }
    }

    async fn post(&self, uri: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::post(uri).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body.to_string())).expect("request")).await
    }

    async fn version_of(&self, uri: &str, headers: &[(&str, &str)]) -> String {
        let reply = self.post(uri, &houses(), headers).await;
        let version = reply.ok_json()["model_version"].as_str().expect("model_version").to_string();
        assert_eq!(reply.header("x-model-version"), Some(version.as_str()), "the header agrees with the body");
        version
    }

    async fn index(&self) -> Vec<(String, String, String)> {
        let reply = self.post("/v2/repository/index", &json!({}), &[]).await.ok_json();
        reply
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().expect(k).to_string();
                (s("name"), s("version"), s("state"))
            })
            .collect()
    }

    async fn metrics(&self) -> String {
        self.send(Request::get("/metrics").body(Body::empty()).expect("request")).await.text()
    }
}

fn houses() -> Value {
    json!({ "inputs": [
        { "name": "area", "shape": [1], "datatype": "FP32", "data": [80.0] },
        { "name": "rooms", "shape": [1], "datatype": "FP32", "data": [3.0] },
        { "name": "city", "shape": [1], "datatype": "BYTES", "data": ["Oslo"] },
    ] })
}

fn entry(name: &str, version: u64, state: &str) -> (String, String, String) {
    (name.to_string(), version.to_string(), state.to_string())
}

#[tokio::test]
async fn poll_serves_the_latest_version_and_follows_versions_as_they_come_and_go() {
    let live = Live::open(ModelControl::Poll, &[]);
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "2");
    // Without a policy only the latest is served; the older one is listed, with the reason.
    let reply = live.post("/v2/models/houses/versions/1/infer", &houses(), &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let index = live.post("/v2/repository/index", &json!({}), &[]).await.ok_json();
    let v1 =
        index.as_array().expect("array").iter().find(|e| e["name"] == "houses" && e["version"] == "1").expect("listed");
    assert_eq!(v1["state"], "UNAVAILABLE");
    assert_mentions(v1["reason"].as_str().expect("reason"), &["not selected by the version policy (latest 1)"]);

    // A new version appears: served once loaded; work in progress and odd names are ignored.
    copy_version(live.root(), "houses", 2, 3);
    std::fs::create_dir_all(live.root().join("houses/.tmp-9")).expect("mkdir");
    std::fs::create_dir_all(live.root().join("houses/latest")).expect("mkdir");
    live.refresh();
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "3");
    assert!(live.index().await.iter().all(|(name, version, _)| name != "houses" || version != "9"));

    // Removed while a request still holds it: UNLOADING until that request is done, then freed.
    let held = live.state.registry();
    std::fs::remove_dir_all(live.root().join("houses/3")).expect("remove");
    live.refresh();
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "2");
    assert!(live.index().await.contains(&entry("houses", 3, "UNLOADING")), "{:?}", live.index().await);
    drop(held);
    live.refresh();
    assert!(!live.index().await.iter().any(|(name, version, _)| name == "houses" && version == "3"));

    // {"ready": true} keeps only what is served.
    let ready = live.post("/v2/repository/index", &json!({ "ready": true }), &[]).await.ok_json();
    assert!(ready.as_array().expect("array").iter().all(|e| e["state"] == "READY"), "{ready}");
    assert_eq!(ready.as_array().map(Vec::len), Some(3), "houses 2, flowers 1, barometer 1: {ready}");
}

#[tokio::test]
async fn a_version_that_fails_to_load_never_replaces_the_one_served() {
    let live = Live::open(ModelControl::Poll, &[]);
    // Version 3: weights that do not match their checksum.
    copy_version(live.root(), "houses", 2, 3);
    std::fs::write(live.root().join("houses/3/weights.mpk"), b"not weights").expect("write");
    live.refresh();
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "2", "the good version keeps serving");
    let index = live.post("/v2/repository/index", &json!({}), &[]).await.ok_json();
    let v3 =
        index.as_array().expect("array").iter().find(|e| e["name"] == "houses" && e["version"] == "3").expect("listed");
    assert_eq!(v3["state"], "UNAVAILABLE");
    assert_mentions(v3["reason"].as_str().expect("reason"), &["checksum mismatch"]);
    live.refresh();
    let metrics = live.metrics().await;
    // Tried once: an unchanged failed version is not reloaded on every poll.
    assert!(metrics.contains("serving_model_load_failures_total{model=\"houses\"} 1"), "{metrics}");
    // Repaired in place: loaded on the next poll.
    std::fs::copy(live.root().join("houses/2/weights.mpk"), live.root().join("houses/3/weights.mpk")).expect("copy");
    live.refresh();
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "3");
}

#[tokio::test]
async fn labels_splits_and_sticky_headers_route_unversioned_requests() {
    let live = Live::open(ModelControl::Poll, &[]);
    live.config(
        r#"
        [model.houses]
        versions = "all"
        labels = { stable = 1, canary = 2 }
        split = { stable = 100, canary = 0 }
        "#,
    );
    assert_eq!(live.version_of("/v2/models/houses/labels/canary/infer", &[]).await, "2");
    assert_eq!(live.version_of("/v2/models/houses/labels/stable/infer", &[]).await, "1");
    for _ in 0..20 {
        assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "1", "100% to stable");
    }
    let reply = live.post("/v2/models/houses/labels/beta/infer", &houses(), &[]).await;
    assert_mentions(&reply.error(StatusCode::NOT_FOUND), &["no label 'beta'", "canary", "stable"]);
    // Metrics carry the version and the label a request used.
    let metrics = live.metrics().await;
    assert!(metrics.contains("model=\"houses\",version=\"2\",label=\"canary\""), "{metrics}");

    // A 50/50 split: both versions are reached; a sticky header always reaches the same one.
    live.config(
        r#"
        [model.houses]
        versions = "all"
        split = { "1" = 50, "2" = 50 }
        sticky_header = "x-user-id"
        "#,
    );
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let first = live.version_of("/v2/models/houses/infer", &[("x-user-id", &id)]).await;
        for _ in 0..3 {
            assert_eq!(live.version_of("/v2/models/houses/infer", &[("x-user-id", &id)]).await, first, "{id}");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "40 users reach both halves of a 50/50 split: {seen:?}");
}

#[tokio::test]
async fn a_bad_serving_toml_is_reported_and_the_last_good_one_stays() {
    let live = Live::open(ModelControl::Poll, &[]);
    live.config("[model.houses]\nversions = \"all\"\nlabels = { stable = 1 }\n");
    assert_eq!(live.version_of("/v2/models/houses/labels/stable/infer", &[]).await, "1");
    for (text, expected) in [
        ("[model.houses\n", "serving.toml"),
        ("[model.houses]\nversions = \"all\"\nlabels = { stable = 7 }\n", "labels.stable: version 7 is not ready"),
        ("[model.houses]\nversions = \"all\"\nsplit = { \"1\" = 0 }\n", "weights sum to 0"),
        ("[model.houses]\nversions = \"all\"\nsplit = { \"1\" = 1, \"5\" = 1 }\n", "split.5: version 5 is not ready"),
        ("[model.castles]\nversions = \"all\"\n", "no model 'castles'"),
    ] {
        live.config(text);
        // The last good file stays in force ...
        assert_eq!(live.version_of("/v2/models/houses/labels/stable/infer", &[]).await, "1", "{text}");
        // ... and the problem is visible.
        assert_mentions(live.state.registry().config_error().expect("a config error"), &[expected]);
        assert!(live.metrics().await.contains("serving_config_valid 0"));
    }
    live.config("[model.houses]\nversions = \"all\"\nlabels = { stable = 2 }\n");
    assert_eq!(live.version_of("/v2/models/houses/labels/stable/infer", &[]).await, "2");
    assert!(live.metrics().await.contains("serving_config_valid 1"));
}

#[tokio::test]
async fn shadow_traffic_is_compared_after_the_answer_and_recorded() {
    let live = Live::open(ModelControl::Poll, &[]);
    live.config("[model.houses]\nversions = \"all\"\nshadow = { to = \"1\", percent = 100 }\n");
    // One request at a time, each waiting for its shadow to be recorded: shadow work beyond
    // one per inference thread is dropped by design, and this test counts comparisons.
    let mut metrics = String::new();
    for sent in 1..=5 {
        // The answer is the served version's (the latest, 2), never the shadow's.
        assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "2");
        let line =
            format!("serving_shadow_requests_total{{model=\"houses\",version=\"1\",outcome=\"compared\"}} {sent}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !metrics.contains(&line) {
            assert!(std::time::Instant::now() < deadline, "shadow not recorded:\n{metrics}");
            tokio::time::sleep(Duration::from_millis(5)).await;
            metrics = live.metrics().await;
        }
    }
    // Version 1's output layer differs from version 2's: every compared row differs.
    assert!(
        metrics.contains("serving_shadow_rows_total{model=\"houses\",version=\"1\",answer=\"different\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("serving_shadow_max_difference_count{model=\"houses\",version=\"1\"} 5"), "{metrics}");
    // Shadow traffic is not counted as served traffic of version 1.
    assert!(!metrics.contains("serving_requests_total{model=\"houses\",version=\"1\""), "{metrics}");
}

#[tokio::test]
async fn explicit_control_changes_only_through_load_and_unload() {
    let live = Live::open(ModelControl::Explicit, &["houses"]);
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "2");
    let flowers = live.send(Request::get("/v2/models/flowers").body(Body::empty()).expect("request")).await;
    assert_eq!(flowers.status, StatusCode::NOT_FOUND, "not loaded at start");
    // A new version on disk changes nothing until a load.
    copy_version(live.root(), "houses", 2, 3);
    live.refresh();
    live.refresh();
    let reply = live.post("/v2/repository/models/flowers/load", &json!({}), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        live.send(Request::get("/v2/models/flowers").body(Body::empty()).expect("r")).await.status,
        StatusCode::OK
    );
    let reply = live.post("/v2/repository/models/houses/unload", &json!({}), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let gone = live.post("/v2/models/houses/infer", &houses(), &[]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let reply = live.post("/v2/repository/models/houses/load", &json!({}), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(live.version_of("/v2/models/houses/infer", &[]).await, "3", "a load reads what is on disk now");
    // Unknown models are 404, naming the model.
    let reply = live.post("/v2/repository/models/castles/load", &json!({}), &[]).await;
    assert_mentions(&reply.error(StatusCode::NOT_FOUND), &["no model 'castles'"]);
    let reply = live.post("/v2/repository/models/castles/unload", &json!({}), &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn load_and_unload_are_400_when_model_control_is_none() {
    let live = Live::open(ModelControl::None, &[]);
    // `none` serves every version, as the server always did.
    assert_eq!(live.version_of("/v2/models/houses/versions/1/infer", &[]).await, "1");
    for action in ["load", "unload"] {
        let reply = live.post(&format!("/v2/repository/models/houses/{action}"), &json!({}), &[]).await;
        assert_mentions(&reply.error(StatusCode::BAD_REQUEST), &["model control is 'none'"]);
    }
    let index = live.post("/v2/repository/index", &json!({}), &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    let bad = live.send(Request::post("/v2/repository/index").body(Body::from("{oops")).expect("request")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[test]
fn an_unreadable_repository_is_a_start_up_error_in_every_mode() {
    let missing = tempfile::tempdir().expect("temp dir").path().join("nowhere");
    for mode in [ModelControl::Poll, ModelControl::Explicit, ModelControl::None] {
        let error = Repository::open(&missing, mode, false, &[]).expect_err("nothing to read");
        assert_mentions(&format!("{error:#}"), &["reading model repository", "nowhere"]);
    }
    // Explicit control names its models at start; an unknown one is refused.
    let fixture = Fixture::new();
    let error =
        Repository::open(&fixture.root, ModelControl::Explicit, false, &["castles".into()]).expect_err("unknown");
    assert_mentions(&format!("{error:#}"), &["--load-model castles", "no model 'castles'"]);
}
