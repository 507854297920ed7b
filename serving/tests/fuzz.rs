//! Seeded, time-bounded fuzzing of every reader a client or an operator feeds: Open Inference
//! Protocol v2 requests (JSON, and the binary tensor extension), KServe v1 requests, the CSV and
//! JSON Lines readers of `serving predict`, and the manifest reader.
//!
//! Each target starts from valid inputs, mutates them (structured changes to the JSON value,
//! then byte flips, deletions, insertions of interesting tokens, truncation, duplication) and
//! checks properties that hold for every input:
//!
//! * never a panic; over HTTP the status is 200 or 4xx (never 5xx), and every non-200 body is
//!   exactly `{"error": "<non-empty message>"}`;
//! * the same request answered twice gives byte-identical responses;
//! * a 200 is a real answer: finite numbers, probabilities that sum to one, known labels; and
//!   when the test can read the accepted request itself, the answer equals, bit for bit, what
//!   `shared_inference::Predictor` predicts for those rows.
//!
//! Environment: `FUZZ_SEED` (default [`DEFAULT_SEED`]), `FUZZ_SECONDS` per target (default 2),
//! `FUZZ_CASE` to replay one case of a seed. Each target prints its seed and how many cases ran;
//! a failure names the seed, the case and its input.

#[allow(dead_code)]
mod common;

use std::any::Any;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fixture, Reply};
use serde_json::{Map, Value, json};
use serving::batch::{self, BatchOptions, Format};
use shared_inference::{
    Artifact, ArtifactError, Cell, ColumnKind, FORMAT_VERSION, FittedColumn, InputError, Manifest, Predictions,
    Predictor,
};

// =============================================================================================
// Harness: PRNG, settings, the case loop
// =============================================================================================

const DEFAULT_SEED: u64 = 20_250_917;
const DEFAULT_SECONDS: f64 = 2.0;
/// Characters of an input (escaped) or a message shown in a failure.
const SHOWN: usize = 2048;
const INFERENCE_HEADER: &str = "inference-header-content-length";
/// Bodies stay well under the fixture's 1 MiB limit.
const MAX_BODY: usize = 64 * 1024;

/// splitmix64: tiny, fast, and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    /// The generator of one case: a function of the seed, the target and the case index only, so
    /// that `FUZZ_CASE` replays a case without running the ones before it.
    fn for_case(seed: u64, target: &str, index: u64) -> Self {
        let mut state = seed ^ 0xcbf2_9ce4_8422_2325;
        for byte in target.bytes() {
            state = (state ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = Rng(state ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

struct Settings {
    seed: u64,
    seconds: f64,
    case: Option<u64>,
}

fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn settings() -> Settings {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let seed = var("FUZZ_SEED").map_or(DEFAULT_SEED, |s| {
        parse_u64(&s).unwrap_or_else(|| panic!("FUZZ_SEED must be an unsigned integer, got {s:?}"))
    });
    let seconds = var("FUZZ_SECONDS").map_or(DEFAULT_SECONDS, |s| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or_else(|| panic!("FUZZ_SECONDS must be a non-negative number of seconds, got {s:?}"))
    });
    let case =
        var("FUZZ_CASE").map(|s| parse_u64(&s).unwrap_or_else(|| panic!("FUZZ_CASE must be a case index, got {s:?}")));
    Settings { seed, seconds, case }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// At most [`SHOWN`] characters of `text`.
fn clip(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((at, _)) => format!("{}... ({} bytes in all)", &text[..at], text.len()),
    }
}

/// Bytes escaped as ASCII, truncated.
fn shown(bytes: &[u8]) -> String {
    clip(&bytes.escape_ascii().to_string())
}

/// Runs cases of one target until its time is up (at least one case). `check` returns a label
/// for the tally printed at the end, or what went wrong.
fn fuzz<I>(
    target: &str,
    mut generate: impl FnMut(&mut Rng) -> I,
    show: impl Fn(&I) -> String,
    mut check: impl FnMut(&I) -> Result<&'static str, String>,
) {
    let Settings { seed, seconds, case } = settings();
    let started = Instant::now();
    let budget = Duration::from_secs_f64(seconds);
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut index = case.unwrap_or(0);
    let mut cases = 0u64;
    loop {
        let mut rng = Rng::for_case(seed, target, index);
        let input = match catch_unwind(AssertUnwindSafe(|| generate(&mut rng))) {
            Ok(input) => input,
            Err(payload) => panic!(
                "fuzz {target}: FUZZ_SEED={seed} case {index}: the test's own generator panicked: {}",
                panic_text(&*payload)
            ),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)))
            .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_text(&*payload))));
        match outcome {
            Ok(label) => *tally.entry(label).or_default() += 1,
            Err(message) => panic!(
                "fuzz {target}: FUZZ_SEED={seed} case {index} failed (replay: FUZZ_SEED={seed} FUZZ_CASE={index} \
                 cargo nextest run --release -p serving --test fuzz {target})\n{}\ninput: {}",
                clip(&message),
                show(&input)
            ),
        }
        cases += 1;
        index += 1;
        if case.is_some() || started.elapsed() >= budget {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz {target}: FUZZ_SEED={seed}, {cases} cases in {elapsed:.2} s ({:.0} cases/s); outcomes {tally:?}",
        cases as f64 / elapsed.max(1e-9)
    );
}

// =============================================================================================
// Byte-level mutations
// =============================================================================================

/// Tokens inserted into (or put in place of a value in) JSON bodies.
const JSON_TOKENS: &[&str] = &[
    "null",
    "1e309",
    "-1e309",
    "-0",
    "\"NA\"",
    "\"\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    " ",
    "\n",
    "true",
    "NaN",
    "Infinity",
    "\"datatype\":\"INT64\"",
    "\"datatype\":\"FP64\"",
    "\"datatype\":\"BYTES\"",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "3.5e38",
    "1e38",
    "-3e37",
    "1e-400",
    "4.9e-324",
    "123456789012345678901234567890",
    "\"shape\":[-1]",
    "\"shape\":[4000000000]",
    "\"shape\":[3]",
    "\"outputs\":[{\"name\":\"prediction\"},{\"name\":\"prediction\"}]",
    "\"outputs\":[]",
    "\"parameters\":{\"binary_data_size\":8}",
    "\"parameters\":{\"binary_data_output\":true}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\u00e9\"",
    "\"\\u004fslo\"",
    "\"Oslo\"",
    "\"Rome\"",
    "\"red\"",
    "\"Paris\"",
    "\"inputs\":[]",
    "\"instances\":[]",
    "\"instances\":[{}]",
    "\"id\":\"x\"",
    "\"area\":null",
    "\"area\":\"72.5\"",
    "\"city\":\"Oslo\"",
    "\"rooms\":1e38",
];

/// A position to insert at: most often just after a structural byte, where a token changes the
/// document's meaning rather than only breaking it.
fn insertion_point(rng: &mut Rng, bytes: &[u8]) -> usize {
    if rng.percent(60) {
        let structural: Vec<usize> =
            bytes.iter().enumerate().filter(|(_, b)| b"[{,:\n".contains(b)).map(|(i, _)| i + 1).collect();
        if !structural.is_empty() {
            return *rng.pick(&structural);
        }
    }
    rng.below(bytes.len() + 1)
}

/// Spans of JSON scalars (strings, numbers, literals) in a document, found by a plain scan.
fn scalar_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                spans.push((start, i));
            }
            b'-' | b'0'..=b'9' => {
                while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                spans.push((start, i));
            }
            b't' | b'f' | b'n' => {
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                spans.push((start, i));
            }
            _ => i += 1,
        }
    }
    spans
}

/// One random byte-level mutation.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, tokens: &[&str]) {
    let len = bytes.len();
    match rng.below(10) {
        0 if len > 0 => {
            let at = rng.below(len);
            bytes[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            bytes[at] = rng.next_u64() as u8;
        }
        2 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(8)).min(len);
            bytes.drain(start..end);
        }
        3..=5 => {
            let at = insertion_point(rng, bytes);
            let token = rng.pick(tokens);
            bytes.splice(at..at, token.bytes());
        }
        6 => bytes.truncate(rng.below(len + 1)),
        7 if len > 0 && len < MAX_BODY / 2 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let segment = bytes[start..end].to_vec();
            let at = rng.below(bytes.len() + 1);
            bytes.splice(at..at, segment);
        }
        _ => {
            let spans = scalar_spans(bytes);
            if spans.is_empty() {
                return;
            }
            let (start, end) = *rng.pick(&spans);
            let token = rng.pick(tokens);
            bytes.splice(start..end, token.bytes());
        }
    }
}

/// Up to `max` byte mutations (none about half the time).
fn maybe_mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, tokens: &[&str], max: usize) {
    if rng.percent(50) {
        return;
    }
    for _ in 0..1 + rng.below(max) {
        mutate_bytes(rng, bytes, tokens);
    }
    bytes.truncate(MAX_BODY);
}

// =============================================================================================
// Models and the independent expectation
// =============================================================================================

/// A model of the fixture, loaded by `shared_inference` itself, with what the tests need to
/// know about it.
struct Model {
    name: &'static str,
    version: u64,
    features: Vec<(String, ColumnKind)>,
    categories: BTreeMap<String, Vec<String>>,
    classes: Vec<String>,
    predictor: Predictor,
}

impl Model {
    fn load(fixture: &Fixture, name: &'static str, version: u64) -> Self {
        let predictor = fixture.predictor(name, version);
        let features = predictor.schema().features.iter().map(|f| (f.name.clone(), f.kind)).collect();
        let categories = predictor
            .manifest()
            .preprocessing
            .columns
            .iter()
            .filter_map(|c| match c {
                FittedColumn::Categorical { name, categories, .. } => Some((name.clone(), categories.clone())),
                FittedColumn::Numeric { .. } => None,
            })
            .collect();
        let classes = predictor.labels().to_vec();
        Self { name, version, features, categories, classes, predictor }
    }

    fn is_classification(&self) -> bool {
        !self.classes.is_empty()
    }

    fn output_names(&self) -> &'static [&'static str] {
        if self.is_classification() { &["label", "probabilities"] } else { &["prediction"] }
    }

    fn categories_of(&self, feature: &str) -> &[String] {
        self.categories.get(feature).map_or(&[], Vec::as_slice)
    }

    fn predict(&self, rows: &[Row]) -> Result<Expected, InputError> {
        let records: Vec<Vec<(&str, Cell<'_>)>> =
            rows.iter().map(|row| row.iter().map(|(name, value)| (name.as_str(), value.cell())).collect()).collect();
        Ok(match self.predictor.predict_records(&records)? {
            Predictions::Regression { values } => Expected { values, labels: Vec::new(), probabilities: Vec::new() },
            Predictions::Classification { probabilities, labels, .. } => Expected {
                values: Vec::new(),
                labels: labels.iter().map(|&i| self.classes[i].clone()).collect(),
                probabilities,
            },
        })
    }
}

/// The fixture's models as the HTTP targets address them.
struct Models {
    /// "houses" version 2, the latest.
    houses: Model,
    houses_v1: Model,
    flowers: Model,
}

impl Models {
    fn load(fixture: &Fixture) -> Self {
        Self {
            houses: Model::load(fixture, "houses", 2),
            houses_v1: Model::load(fixture, "houses", 1),
            flowers: Model::load(fixture, "flowers", 1),
        }
    }

    fn get(&self, which: Which) -> &Model {
        match which {
            Which::Houses => &self.houses,
            Which::HousesV1 => &self.houses_v1,
            Which::Flowers => &self.flowers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Houses,
    HousesV1,
    Flowers,
}

/// A value as the test reads it from a request, independently of the server.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Missing,
    Number(f64),
    Text(String),
}

impl Val {
    fn cell(&self) -> Cell<'_> {
        match self {
            Val::Missing => Cell::Missing,
            Val::Number(n) => Cell::Number(*n),
            Val::Text(t) => Cell::Text(t),
        }
    }
}

/// One record: `(column, value)` pairs.
type Row = Vec<(String, Val)>;

/// What the predictor answers for some rows.
#[derive(Debug)]
struct Expected {
    values: Vec<f32>,
    labels: Vec<String>,
    probabilities: Vec<f32>,
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Probabilities of `n_classes` classes per row: each in [0, 1], each row summing to one.
fn check_probabilities(probabilities: &[f32], n_classes: usize) -> Result<(), String> {
    for row in probabilities.chunks(n_classes.max(1)) {
        let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
        if row.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-4 {
            return Err(format!("probabilities {row:?} are not a distribution (sum {sum})"));
        }
    }
    Ok(())
}

// =============================================================================================
// HTTP plumbing
// =============================================================================================

#[derive(Debug, Clone)]
struct HttpCase {
    which: Which,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn show_http(case: &HttpCase) -> String {
    format!("POST {} headers {:?} body ({} bytes): b\"{}\"", case.uri, case.headers, case.body.len(), shown(&case.body))
}

/// The router over the fixture, driven on a current-thread runtime one request at a time.
struct Server {
    runtime: tokio::runtime::Runtime,
    fixture: Fixture,
    models: Models,
}

impl Server {
    fn new() -> Self {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime");
        let fixture = Fixture::new();
        let models = Models::load(&fixture);
        Self { runtime, fixture, models }
    }

    fn send(&self, case: &HttpCase) -> Result<Reply, String> {
        let mut builder = Request::post(case.uri.as_str());
        for (name, value) in &case.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder
            .body(Body::from(case.body.clone()))
            .map_err(|e| format!("the test built an invalid request: {e}"))?;
        Ok(self.runtime.block_on(self.fixture.send(request)))
    }

    /// Sends the case twice: the answers must be byte-identical. Returns the first; checks the
    /// status and, for errors, the body.
    fn exchange(&self, case: &HttpCase) -> Result<Reply, String> {
        let reply = self.send(case)?;
        let again = self.send(case)?;
        let same = reply.status == again.status
            && reply.body == again.body
            && header(&reply, "content-type") == header(&again, "content-type")
            && header(&reply, INFERENCE_HEADER) == header(&again, INFERENCE_HEADER);
        if !same {
            return Err(format!(
                "the same request answered differently: {} {} then {} {}",
                reply.status,
                lossy(&reply.body),
                again.status,
                lossy(&again.body)
            ));
        }
        if reply.status != StatusCode::OK {
            if !reply.status.is_client_error() {
                return Err(format!(
                    "status {} (only 200 or 4xx may answer a request): {}",
                    reply.status,
                    lossy(&reply.body)
                ));
            }
            check_error_body(&reply)?;
        }
        Ok(reply)
    }
}

fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn lossy(bytes: &[u8]) -> String {
    clip(&String::from_utf8_lossy(bytes))
}

/// A non-200 body is exactly `{"error": "<non-empty string>"}`, as JSON.
fn check_error_body(reply: &Reply) -> Result<(), String> {
    let problem = |what: &str| format!("status {} with {what}: {}", reply.status, lossy(&reply.body));
    if header(reply, "content-type") != Some("application/json") {
        return Err(problem("a content type other than application/json"));
    }
    let body: Value = serde_json::from_slice(&reply.body).map_err(|_| problem("a body that is not JSON"))?;
    match body.as_object() {
        Some(object) if object.len() == 1 => match object.get("error") {
            Some(Value::String(message)) if !message.trim().is_empty() => Ok(()),
            _ => Err(problem("a body whose only field is not a non-empty 'error' string")),
        },
        _ => Err(problem("a body that is not an object with only 'error'")),
    }
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400",
        404 => "404",
        413 => "413",
        _ => "other 4xx",
    }
}

// =============================================================================================
// Open Inference Protocol v2: generating requests
// =============================================================================================

const FLOATS: &[f64] =
    &[72.5, 120.25, 48.0, 3.0, 5.0, 1.0, 0.0, 85.0, 1.5, 0.001, 250.0, 1e6, 123_456.789, -12.75, 4.5];
/// Finite values at the edges: overflowing once standardized or once rounded to f32, predictions
/// that overflow the network, subnormals, integers past 2^53.
const EXTREME_FLOATS: &[f64] = &[
    -0.0,
    1e36,
    -1e36,
    1e37,
    -3e37,
    1e38,
    -1e38,
    3.402_823_466_385_288_6e38,
    3.5e38,
    1e300,
    -1e300,
    5e-324,
    1.175_494_350_822_287_5e-38,
    9_007_199_254_740_993.0,
    f64::MAX,
    -f64::MAX,
];
const INTS: &[i64] = &[0, 1, 2, 3, 5, 7, 48, 72, 120, 255];
const NUMERIC_DATATYPES: &[&str] = &[
    "FP32", "FP32", "FP32", "FP32", "FP32", "FP64", "FP64", "INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16",
    "UINT32", "UINT64",
];
const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64",
    "BYTES", "fp32", "INT128", "", "STRING",
];
const WEIRD_CATEGORIES: &[&str] = &["Paris", "oslo", " Oslo", "Rome\u{0}", "Ösló", "😀", "\"", "\\", "NA ", "na"];

/// The inclusive range of an integer datatype; `None` for any other name.
fn integer_range(datatype: &str) -> Option<(i128, i128)> {
    Some(match datatype {
        "UINT8" => (0, u8::MAX.into()),
        "UINT16" => (0, u16::MAX.into()),
        "UINT32" => (0, u32::MAX.into()),
        "UINT64" => (0, u64::MAX.into()),
        "INT8" => (i8::MIN.into(), i8::MAX.into()),
        "INT16" => (i16::MIN.into(), i16::MAX.into()),
        "INT32" => (i32::MIN.into(), i32::MAX.into()),
        "INT64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

/// An integer as JSON, exactly where it fits 64 bits.
fn integer_json(value: i128) -> Value {
    if let Ok(v) = i64::try_from(value) {
        json!(v)
    } else if let Ok(v) = u64::try_from(value) {
        json!(v)
    } else {
        json!(value as f64)
    }
}

fn numeric_element(rng: &mut Rng, datatype: &str) -> Value {
    if rng.percent(8) {
        return Value::Null;
    }
    match integer_range(datatype) {
        Some((low, high)) => {
            if rng.percent(8) {
                integer_json(*rng.pick(&[low, high, low - 1, high + 1]))
            } else {
                let value = i128::from(*rng.pick(INTS)).clamp(low, high);
                if rng.percent(5) { json!(value as f64) } else { integer_json(value) }
            }
        }
        None if rng.percent(8) => json!(*rng.pick(EXTREME_FLOATS)),
        None if rng.percent(20) => json!(*rng.pick(INTS)),
        None => json!(*rng.pick(FLOATS)),
    }
}

fn category_text(rng: &mut Rng, model: &Model, feature: &str) -> String {
    match rng.below(14) {
        0 => "NA".to_string(),
        1 => String::new(),
        2 => rng.pick(WEIRD_CATEGORIES).to_string(),
        _ => {
            let known = model.categories_of(feature);
            if known.is_empty() { "x".to_string() } else { rng.pick(known).clone() }
        }
    }
}

fn category_element(rng: &mut Rng, model: &Model, feature: &str) -> Value {
    if rng.percent(8) { Value::Null } else { Value::String(category_text(rng, model, feature)) }
}

fn pick_model(rng: &mut Rng) -> Which {
    match rng.below(20) {
        0..=11 => Which::Houses,
        12..=14 => Which::HousesV1,
        _ => Which::Flowers,
    }
}

fn v2_uri(rng: &mut Rng, which: Which) -> String {
    match which {
        Which::Houses if rng.percent(20) => "/v2/models/houses/versions/2/infer".to_string(),
        Which::Houses => "/v2/models/houses/infer".to_string(),
        Which::HousesV1 => "/v2/models/houses/versions/1/infer".to_string(),
        Which::Flowers => "/v2/models/flowers/infer".to_string(),
    }
}

fn row_count(rng: &mut Rng) -> usize {
    *rng.pick(&[0, 1, 1, 2, 2, 3, 3, 4, 5])
}

fn shape_for(rng: &mut Rng, n: usize) -> Value {
    if rng.percent(30) { json!([n, 1]) } else { json!([n]) }
}

/// Optional `id`, request `parameters` and `outputs`.
fn add_request_options(rng: &mut Rng, request: &mut Value, model: &Model) {
    if rng.percent(25) {
        request["id"] = json!(format!("req-{}", rng.below(1000)));
    }
    if rng.percent(20) {
        request["parameters"] = json!({ "binary_data_output": rng.percent(50) });
    }
    if rng.percent(25) {
        let mut names: Vec<&str> = model.output_names().iter().copied().filter(|_| rng.percent(70)).collect();
        rng.shuffle(&mut names);
        let outputs: Vec<Value> = names
            .into_iter()
            .map(|name| {
                if rng.percent(30) {
                    json!({ "name": name, "parameters": { "binary_data": rng.percent(50) } })
                } else {
                    json!({ "name": name })
                }
            })
            .collect();
        request["outputs"] = Value::Array(outputs);
    }
}

/// A valid v2 JSON request of a few rows.
fn v2_request(rng: &mut Rng, model: &Model) -> Value {
    let n = row_count(rng);
    let mut inputs = Vec::new();
    for (name, kind) in &model.features {
        let datatype = match kind {
            ColumnKind::Numeric => *rng.pick(NUMERIC_DATATYPES),
            ColumnKind::Categorical => "BYTES",
        };
        let values: Vec<Value> = (0..n)
            .map(|_| match kind {
                ColumnKind::Numeric => numeric_element(rng, datatype),
                ColumnKind::Categorical => category_element(rng, model, name),
            })
            .collect();
        let data = if rng.percent(25) {
            Value::Array(values.into_iter().map(|v| json!([v])).collect())
        } else {
            Value::Array(values)
        };
        let mut input = json!({ "name": name, "shape": shape_for(rng, n), "datatype": datatype, "data": data });
        if rng.percent(10) {
            input["parameters"] = json!({});
        }
        inputs.push(input);
    }
    if rng.percent(40) {
        rng.shuffle(&mut inputs);
    }
    let mut request = json!({ "inputs": inputs });
    add_request_options(rng, &mut request, model);
    request
}

/// Sets a field of an object (a request that a mutation turned into something else is left
/// alone).
fn set_field(object: &mut Value, key: &str, value: Value) {
    if let Some(object) = object.as_object_mut() {
        object.insert(key.to_string(), value);
    }
}

fn input_at(request: &mut Value, which: usize) -> Option<&mut Map<String, Value>> {
    request.get_mut("inputs")?.as_array_mut()?.get_mut(which)?.as_object_mut()
}

/// The length of an input's data (its top-level array), for shapes that fit it or nearly.
fn data_len(request: &Value, which: usize) -> usize {
    request["inputs"][which]["data"].as_array().map_or(0, Vec::len)
}

const WEIRD_ELEMENTS: &[&str] = &[
    "null",
    "true",
    "{}",
    "[]",
    "[[]]",
    "\"NA\"",
    "\"\"",
    "\"72.5\"",
    "\"Oslo\"",
    "1e308",
    "-1e308",
    "3.4028235e38",
    "3.5e38",
    "1e38",
    "-3e37",
    "1e-320",
    "-0.0",
    "-0",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "9223372036854775807",
    "2147483648",
    "1.5",
    "256",
    "-129",
    "65536",
    "[1, [2]]",
];

fn weird_element(rng: &mut Rng) -> Value {
    serde_json::from_str(rng.pick_str(WEIRD_ELEMENTS)).expect("the weird elements are JSON")
}

/// One structured mutation of a v2 request's JSON value.
fn mutate_v2(rng: &mut Rng, request: &mut Value, model: &Model) {
    let n_inputs = request.get("inputs").and_then(Value::as_array).map_or(0, Vec::len);
    let which = rng.below(n_inputs.max(1));
    let n = data_len(request, which);
    match rng.below(17) {
        0 => {
            let shapes = [
                json!([n]),
                json!([n, 1]),
                json!([-1]),
                json!([n + 1]),
                json!([n.saturating_sub(1)]),
                json!([0]),
                json!([4_000_000_000u64]),
                json!([n, 2]),
                json!([1, n]),
                json!([]),
                json!([i64::MAX]),
                json!([-5]),
                json!([n, 1, 1]),
                json!([n, 0]),
            ];
            if let Some(input) = input_at(request, which) {
                input.insert("shape".into(), rng.pick(&shapes).clone());
            }
        }
        1 => {
            let datatype = *rng.pick(DATATYPES);
            if let Some(input) = input_at(request, which) {
                input.insert("datatype".into(), json!(datatype));
            }
        }
        2 => {
            let element = weird_element(rng);
            if let Some(data) = input_at(request, which).and_then(|i| i.get_mut("data")).and_then(Value::as_array_mut)
                && !data.is_empty()
            {
                let at = rng.below(data.len());
                data[at] = element;
            }
        }
        3 => {
            let key = *rng.pick(&["name", "shape", "datatype", "data", "parameters"]);
            if let Some(input) = input_at(request, which) {
                input.remove(key);
            }
        }
        4 => {
            let key = *rng.pick(&["inputs", "outputs", "id", "parameters"]);
            if let Some(object) = request.as_object_mut() {
                object.remove(key);
            }
        }
        5 => {
            if let Some(inputs) = request.get_mut("inputs").and_then(Value::as_array_mut)
                && !inputs.is_empty()
            {
                let copy = inputs[which.min(inputs.len() - 1)].clone();
                let at = rng.below(inputs.len() + 1);
                inputs.insert(at, copy);
            }
        }
        6 => {
            if let Some(inputs) = request.get_mut("inputs").and_then(Value::as_array_mut)
                && which < inputs.len()
            {
                inputs.remove(which);
            }
        }
        7 => {
            let name = *rng.pick(&["Area", "area ", "price", "", "city", "rooms", "area", "petal", "color", "species"]);
            if let Some(input) = input_at(request, which) {
                input.insert("name".into(), json!(name));
            }
        }
        8 => {
            // Numbers as strings, strings as numbers.
            if let Some(data) = input_at(request, which).and_then(|i| i.get_mut("data")).and_then(Value::as_array_mut) {
                for element in data.iter_mut() {
                    *element = match element.take() {
                        Value::Number(n) => json!(n.to_string()),
                        Value::String(s) => s.parse::<f64>().map_or(json!(s.len()), |v| json!(v)),
                        other => other,
                    };
                }
            }
        }
        9 => {
            let size = rng
                .pick(&[json!(0), json!(4), json!(8), json!(12), json!(-1), json!("8"), Value::Null, json!(1e20)])
                .clone();
            if let Some(input) = input_at(request, which) {
                input.insert("parameters".into(), json!({ "binary_data_size": size }));
            }
        }
        10 => {
            let name = model.output_names()[0];
            let outputs = [
                json!([{ "name": name }, { "name": name }]),
                json!([{ "name": "price" }]),
                json!([{ "name": name, "parameters": { "binary_data": "yes" } }]),
                json!({ "name": name }),
                json!([]),
                json!([name]),
                Value::Null,
            ];
            let outputs = rng.pick(&outputs).clone();
            set_field(request, "outputs", outputs);
        }
        11 => {
            let id = rng.pick(&[json!(7), Value::Null, json!(""), json!({}), json!(true), json!("\u{0}")]).clone();
            set_field(request, "id", id);
        }
        12 => {
            let parameters = rng
                .pick(&[
                    json!([]),
                    Value::Null,
                    json!("x"),
                    json!({ "binary_data_output": "yes" }),
                    json!({ "binary_data_output": true }),
                ])
                .clone();
            set_field(request, "parameters", parameters);
        }
        13 => {
            let data = rng
                .pick(&[Value::Null, json!({}), json!([]), json!([[]]), json!(5), json!("Oslo"), json!([[1, 2], [3]])])
                .clone();
            if let Some(input) = input_at(request, which) {
                input.insert("data".into(), data);
            }
        }
        14 => {
            let whole =
                [json!([]), Value::Null, json!({}), json!("inputs"), json!([request.clone()]), json!({ "inputs": {} })];
            *request = rng.pick(&whole).clone();
        }
        15 => {
            let element = rng
                .pick(&[json!(1.0), json!("3"), Value::Null, json!(-1), json!(4_294_967_296u64), json!(i64::MAX)])
                .clone();
            if let Some(shape) = input_at(request, which).and_then(|i| i.get_mut("shape")).and_then(Value::as_array_mut)
                && !shape.is_empty()
            {
                let at = rng.below(shape.len());
                shape[at] = element;
            }
        }
        _ => {
            // Every element of one input replaced by one weird value.
            let element = weird_element(rng);
            if let Some(data) = input_at(request, which).and_then(|i| i.get_mut("data")).and_then(Value::as_array_mut) {
                data.iter_mut().for_each(|e| *e = element.clone());
            }
        }
    }
}

fn serialize(rng: &mut Rng, value: &Value) -> Vec<u8> {
    if rng.percent(20) {
        serde_json::to_vec_pretty(value).expect("a JSON value serializes")
    } else {
        serde_json::to_vec(value).expect("a JSON value serializes")
    }
}

fn content_type(rng: &mut Rng, usual: &'static str) -> Vec<(&'static str, String)> {
    match rng.below(10) {
        0 => Vec::new(),
        1 => vec![("content-type", "text/plain".to_string())],
        2 => vec![("content-type", "application/octet-stream".to_string())],
        _ => vec![("content-type", usual.to_string())],
    }
}

fn v2_json_case(rng: &mut Rng, models: &Models) -> HttpCase {
    let which = pick_model(rng);
    let model = models.get(which);
    let mut request = v2_request(rng, model);
    if rng.percent(65) {
        for _ in 0..1 + rng.below(3) {
            mutate_v2(rng, &mut request, model);
        }
    }
    let mut body = serialize(rng, &request);
    maybe_mutate_bytes(rng, &mut body, JSON_TOKENS, 3);
    let mut headers = content_type(rng, "application/json");
    if rng.percent(3) {
        // The binary extension's header on a plain JSON body: all of it, or a cut.
        let length = if rng.percent(50) { body.len() } else { rng.below(body.len() + 1) };
        headers.push((INFERENCE_HEADER, length.to_string()));
    }
    HttpCase { which, uri: v2_uri(rng, which), headers, body }
}

// =============================================================================================
// Open Inference Protocol v2: reading a request independently
// =============================================================================================

/// What the test reads from a v2 request the server accepted.
struct V2Reading {
    rows: Vec<Row>,
    id: Option<String>,
    /// Output names in the order they must come back, and whether each travels as binary.
    outputs: Vec<(String, bool)>,
}

/// A request body as JSON. serde_json skips the fields a request type ignores without checking
/// that their strings are UTF-8, so a body the server accepted may hold invalid UTF-8 there (and
/// only there: every string the server reads is checked): such a body is read with the invalid
/// bytes replaced.
fn parse_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok().or_else(|| match std::str::from_utf8(body) {
        Ok(_) => None,
        Err(_) => serde_json::from_str(&String::from_utf8_lossy(body)).ok(),
    })
}

/// Prints, with `FUZZ_SHOW_UNREAD` set, the accepted requests the test could not read itself.
fn note_unread(case: &HttpCase) {
    if std::env::var_os("FUZZ_SHOW_UNREAD").is_some() {
        println!("a 200 the test did not read: {}", show_http(case));
    }
}

/// Every scalar of a (possibly nested) tensor `data`, or `None` if it holds something that is
/// neither a number, a string nor null.
fn flatten<'v>(value: &'v Value, out: &mut Vec<&'v Value>) -> Option<()> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, out)),
        Value::Number(_) | Value::String(_) | Value::Null => {
            out.push(value);
            Some(())
        }
        Value::Bool(_) | Value::Object(_) => None,
    }
}

fn is_numeric_datatype(datatype: &str) -> bool {
    matches!(datatype, "FP32" | "FP64") || integer_range(datatype).is_some()
}

/// A JSON number of a numeric datatype as the model receives it: integers exactly (in range),
/// integral floats for integer types, FP32 rounded to f32.
fn json_number(datatype: &str, number: &serde_json::Number) -> Option<f64> {
    let range = integer_range(datatype);
    let fp32 = datatype == "FP32";
    let exact = number.as_u64().map(i128::from).or_else(|| number.as_i64().map(i128::from));
    let value = match exact {
        Some(integer) => {
            if let Some((low, high)) = range
                && (integer < low || integer > high)
            {
                return None;
            }
            integer as f64
        }
        None => {
            let value = number.as_f64()?;
            if let Some((low, high)) = range
                && (value.fract() != 0.0 || value < low as f64 || value >= (high + 1) as f64)
            {
                return None;
            }
            value
        }
    };
    Some(if fp32 { f64::from(value as f32) } else { value })
}

fn json_values(kind: ColumnKind, datatype: &str, data: &Value, n: usize) -> Option<Vec<Val>> {
    let datatype_fits = match kind {
        ColumnKind::Categorical => datatype == "BYTES",
        ColumnKind::Numeric => is_numeric_datatype(datatype),
    };
    if !datatype_fits {
        return None;
    }
    let mut flat = Vec::new();
    flatten(data, &mut flat)?;
    if flat.len() != n {
        return None;
    }
    flat.into_iter()
        .map(|element| match (kind, element) {
            (_, Value::Null) => Some(Val::Missing),
            (ColumnKind::Categorical, Value::String(text)) => Some(Val::Text(text.clone())),
            (ColumnKind::Numeric, Value::Number(number)) => json_number(datatype, number).map(Val::Number),
            _ => None,
        })
        .collect()
}

fn binary_values(kind: ColumnKind, datatype: &str, bytes: &[u8], n: usize) -> Option<Vec<Val>> {
    if kind == ColumnKind::Categorical {
        if datatype != "BYTES" {
            return None;
        }
        let mut rest = bytes;
        let mut out = Vec::new();
        for _ in 0..n {
            let (length, tail) = rest.split_first_chunk::<4>()?;
            let (text, tail) = tail.split_at_checked(u32::from_le_bytes(*length) as usize)?;
            out.push(Val::Text(std::str::from_utf8(text).ok()?.to_string()));
            rest = tail;
        }
        return rest.is_empty().then_some(out);
    }
    let width = match datatype {
        "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    };
    if n.checked_mul(width) != Some(bytes.len()) {
        return None;
    }
    let values = bytes
        .chunks_exact(width)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(c);
            match datatype {
                "INT8" => f64::from(c[0] as i8),
                "UINT8" => f64::from(c[0]),
                "INT16" => f64::from(i16::from_le_bytes([b[0], b[1]])),
                "UINT16" => f64::from(u16::from_le_bytes([b[0], b[1]])),
                "INT32" => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                "UINT32" => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                "FP32" => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                "INT64" => i64::from_le_bytes(b) as f64,
                "UINT64" => u64::from_le_bytes(b) as f64,
                _ => f64::from_le_bytes(b),
            }
        })
        .map(Val::Number)
        .collect();
    Some(values)
}

/// `parameters` of a request or tensor: absent, null, or an object.
fn parameters(object: &Map<String, Value>) -> Option<Option<&Map<String, Value>>> {
    match object.get("parameters") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(map)) => Some(Some(map)),
        Some(_) => None,
    }
}

/// Reads a v2 request (its JSON part and tensor bytes) the way the protocol describes it, or
/// `None` if the test cannot (the server may still have accepted it: then only the properties
/// every answer has are checked).
fn read_v2(model: &Model, json: &[u8], binary: &[u8]) -> Option<V2Reading> {
    let request = parse_json(json)?;
    let request = request.as_object()?;
    let id = match request.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return None,
    };
    let all_binary =
        parameters(request)?.and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool) == Some(true);
    let known = model.output_names();
    let outputs = match request.get("outputs") {
        None | Some(Value::Null) => known.iter().map(|n| (n.to_string(), all_binary)).collect(),
        Some(Value::Array(items)) => {
            let mut outputs: Vec<(String, bool)> = Vec::new();
            for item in items {
                let item = item.as_object()?;
                let name = item.get("name")?.as_str()?;
                if !known.contains(&name) || outputs.iter().any(|(n, _)| n == name) {
                    return None;
                }
                let binary =
                    parameters(item)?.and_then(|p| p.get("binary_data")).and_then(Value::as_bool) == Some(true);
                outputs.push((name.to_string(), all_binary || binary));
            }
            outputs
        }
        Some(_) => return None,
    };
    let mut columns: Vec<Option<Vec<Val>>> = vec![None; model.features.len()];
    let mut rows: Option<usize> = None;
    let mut cursor = 0usize;
    for input in request.get("inputs")?.as_array()? {
        let input = input.as_object()?;
        let name = input.get("name")?.as_str()?;
        let index = model.features.iter().position(|(feature, _)| feature == name)?;
        if columns[index].is_some() {
            return None;
        }
        let kind = model.features[index].1;
        let datatype = input.get("datatype")?.as_str()?;
        let shape: Vec<i64> = input.get("shape")?.as_array()?.iter().map(Value::as_i64).collect::<Option<_>>()?;
        let n = match shape.as_slice() {
            [n] | [n, 1] => usize::try_from(*n).ok()?,
            _ => return None,
        };
        if rows.is_some_and(|r| r != n) {
            return None;
        }
        rows = Some(n);
        let size = parameters(input)?.and_then(|p| p.get("binary_data_size"));
        let data = input.get("data").filter(|d| !d.is_null());
        let values = match (size, data) {
            (Some(size), None) => {
                let size = usize::try_from(size.as_u64()?).ok()?;
                let end = cursor.checked_add(size)?;
                let bytes = binary.get(cursor..end)?;
                cursor = end;
                binary_values(kind, datatype, bytes, n)?
            }
            (None, Some(data)) => json_values(kind, datatype, data, n)?,
            _ => return None,
        };
        columns[index] = Some(values);
    }
    if cursor != binary.len() {
        return None;
    }
    let columns: Vec<Vec<Val>> = columns.into_iter().collect::<Option<_>>()?;
    let rows = (0..rows.unwrap_or(0))
        .map(|r| {
            model.features.iter().zip(&columns).map(|((name, _), column)| (name.clone(), column[r].clone())).collect()
        })
        .collect();
    Some(V2Reading { rows, id, outputs })
}

/// Splits a case's body as its `Inference-Header-Content-Length` says, then reads it.
fn read_v2_case(model: &Model, case: &HttpCase) -> Option<V2Reading> {
    let length = case.headers.iter().find(|(name, _)| *name == INFERENCE_HEADER).map(|(_, value)| value.as_str());
    let (json, binary) = match length {
        None => (&case.body[..], &[][..]),
        Some(text) => case.body.split_at_checked(text.trim().parse::<usize>().ok()?)?,
    };
    read_v2(model, json, binary)
}

// =============================================================================================
// Open Inference Protocol v2: reading and checking a response
// =============================================================================================

#[derive(Debug)]
enum Tensor {
    Floats(Vec<f32>),
    Texts(Vec<String>),
}

impl Tensor {
    fn len(&self) -> usize {
        match self {
            Tensor::Floats(v) => v.len(),
            Tensor::Texts(v) => v.len(),
        }
    }
}

struct Output {
    name: String,
    shape: Vec<i64>,
    binary: bool,
    tensor: Tensor,
}

struct V2Response {
    header: Value,
    outputs: Vec<Output>,
}

fn tensor_from_bytes(datatype: &str, bytes: &[u8]) -> Result<Tensor, String> {
    match datatype {
        "FP32" if bytes.len().is_multiple_of(4) => {
            Ok(Tensor::Floats(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        }
        "BYTES" => {
            let mut rest = bytes;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let (length, tail) = rest.split_first_chunk::<4>().ok_or("a BYTES output ends inside a length")?;
                let (text, tail) = tail
                    .split_at_checked(u32::from_le_bytes(*length) as usize)
                    .ok_or("a BYTES output ends inside an element")?;
                out.push(String::from_utf8(text.to_vec()).map_err(|_| "a BYTES output is not UTF-8")?);
                rest = tail;
            }
            Ok(Tensor::Texts(out))
        }
        _ => Err(format!("a binary output of datatype {datatype} and {} bytes", bytes.len())),
    }
}

fn tensor_from_json(datatype: &str, data: &Value) -> Result<Tensor, String> {
    let items = data.as_array().ok_or_else(|| format!("output data is not a flat array: {data}"))?;
    match datatype {
        "FP32" => items
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| format!("FP32 output element {v}")))
            .collect::<Result<_, _>>()
            .map(Tensor::Floats),
        "BYTES" => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("BYTES output element {v}")))
            .collect::<Result<_, _>>()
            .map(Tensor::Texts),
        _ => Err(format!("an output of datatype {datatype}")),
    }
}

fn parse_v2_response(reply: &Reply) -> Result<V2Response, String> {
    let content_type = header(reply, "content-type");
    let (json_part, mut tensors): (&[u8], &[u8]) = match header(reply, INFERENCE_HEADER) {
        Some(length) => {
            if content_type != Some("application/octet-stream") {
                return Err(format!("a binary response with content type {content_type:?}"));
            }
            let length: usize = length.parse().map_err(|_| format!("{INFERENCE_HEADER} is {length:?}"))?;
            reply
                .body
                .split_at_checked(length)
                .ok_or_else(|| format!("{INFERENCE_HEADER} {length} is past the body"))?
        }
        None => {
            if content_type != Some("application/json") {
                return Err(format!("a JSON response with content type {content_type:?}"));
            }
            (&reply.body[..], &[])
        }
    };
    let header: Value =
        serde_json::from_slice(json_part).map_err(|e| format!("the response's JSON does not parse ({e})"))?;
    let items = header.get("outputs").and_then(Value::as_array).ok_or("the response has no 'outputs' array")?;
    let mut outputs = Vec::new();
    for item in items {
        let name =
            item.get("name").and_then(Value::as_str).ok_or_else(|| format!("an output without a name: {item}"))?;
        let datatype = item.get("datatype").and_then(Value::as_str).ok_or_else(|| format!("no datatype: {item}"))?;
        let shape: Vec<i64> = item
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_i64).collect())
            .ok_or_else(|| format!("no shape: {item}"))?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
            .ok_or_else(|| format!("a shape that is no element count: {item}"))?;
        let (tensor, binary) = match item.get("parameters").and_then(|p| p.get("binary_data_size")) {
            Some(size) => {
                if item.get("data").is_some() {
                    return Err(format!("an output with both data and binary data: {item}"));
                }
                let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or("binary_data_size is no count")?;
                let (bytes, rest) = tensors.split_at_checked(size).ok_or("binary outputs past the body")?;
                tensors = rest;
                (tensor_from_bytes(datatype, bytes)?, true)
            }
            None => (tensor_from_json(datatype, item.get("data").ok_or_else(|| format!("no data: {item}"))?)?, false),
        };
        if tensor.len() != count {
            return Err(format!("output '{name}' has shape {shape:?} but {} elements", tensor.len()));
        }
        outputs.push(Output { name: name.to_string(), shape, binary, tensor });
    }
    if !tensors.is_empty() {
        return Err(format!("{} bytes follow the last binary output", tensors.len()));
    }
    Ok(V2Response { header, outputs })
}

/// What every 200 must be: the model's outputs, each once, finite, well-formed. Returns the
/// number of rows the outputs agree on, if any output came back.
fn check_v2_answer(model: &Model, response: &V2Response) -> Result<Option<usize>, String> {
    let header = &response.header;
    if header.get("model_name") != Some(&json!(model.name))
        || header.get("model_version") != Some(&json!(model.version.to_string()))
    {
        return Err(format!("the response names another model: {header}"));
    }
    let n_classes = model.classes.len();
    let mut rows: Option<usize> = None;
    for (index, output) in response.outputs.iter().enumerate() {
        if response.outputs[..index].iter().any(|o| o.name == output.name) {
            return Err(format!("output '{}' comes back twice", output.name));
        }
        let n = match (output.name.as_str(), &output.tensor, output.shape.as_slice()) {
            ("prediction", Tensor::Floats(values), &[n]) if !model.is_classification() => {
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(format!("a 200 with the prediction {bad}"));
                }
                n
            }
            ("label", Tensor::Texts(labels), &[n]) if model.is_classification() => {
                if let Some(bad) = labels.iter().find(|l| !model.classes.contains(l)) {
                    return Err(format!("a 200 with the label {bad:?}, not a class of {:?}", model.classes));
                }
                n
            }
            ("probabilities", Tensor::Floats(p), &[n, k]) if model.is_classification() && k == n_classes as i64 => {
                check_probabilities(p, n_classes)?;
                n
            }
            _ => {
                return Err(format!(
                    "unexpected output '{}' of shape {:?}: {:?}",
                    output.name, output.shape, output.tensor
                ));
            }
        };
        let n = usize::try_from(n).map_err(|_| format!("output '{}' has {n} rows", output.name))?;
        if rows.is_some_and(|r| r != n) {
            return Err(format!("outputs disagree on the number of rows: {rows:?} and {n}"));
        }
        rows = Some(n);
    }
    Ok(rows)
}

/// A 200 against what the predictor gives for the rows the test read from the request.
fn compare_v2(model: &Model, response: &V2Response, reading: &V2Reading) -> Result<(), String> {
    let got: Vec<(String, bool)> = response.outputs.iter().map(|o| (o.name.clone(), o.binary)).collect();
    if got != reading.outputs {
        return Err(format!("outputs (name, binary) {got:?}; the request asked for {:?}", reading.outputs));
    }
    let echoed = response.header.get("id").map(|id| id.as_str().map(str::to_string));
    match (echoed, &reading.id) {
        (None, None) => {}
        (Some(Some(got)), Some(sent)) if got == *sent => {}
        (got, sent) => return Err(format!("id {got:?} echoed for {sent:?}")),
    }
    let expected = model.predict(&reading.rows).map_err(|e| {
        format!("a 200, but the predictor refuses the same rows ({e}); rows as the test reads them: {:?}", reading.rows)
    })?;
    for output in &response.outputs {
        if output.shape.first().copied() != Some(reading.rows.len() as i64) {
            return Err(format!(
                "output '{}' has shape {:?} for {} rows",
                output.name,
                output.shape,
                reading.rows.len()
            ));
        }
        let same = match (output.name.as_str(), &output.tensor) {
            ("prediction", Tensor::Floats(v)) => bits(v) == bits(&expected.values),
            ("probabilities", Tensor::Floats(v)) => bits(v) == bits(&expected.probabilities),
            ("label", Tensor::Texts(v)) => *v == expected.labels,
            _ => false,
        };
        if !same {
            return Err(format!(
                "output '{}' is {:?} but the predictor gives {expected:?} for the rows {:?}",
                output.name, output.tensor, reading.rows
            ));
        }
    }
    Ok(())
}

fn check_v2_case(server: &Server, case: &HttpCase) -> Result<&'static str, String> {
    let reply = server.exchange(case)?;
    if reply.status != StatusCode::OK {
        return Ok(status_label(reply.status));
    }
    let model = server.models.get(case.which);
    let response = parse_v2_response(&reply)?;
    let rows = check_v2_answer(model, &response)?;
    match read_v2_case(model, case) {
        Some(reading) => {
            if rows.is_some_and(|n| n != reading.rows.len()) {
                return Err(format!("{rows:?} rows answered for {} sent", reading.rows.len()));
            }
            compare_v2(model, &response, &reading)?;
            Ok("200 compared with the predictor")
        }
        None => {
            note_unread(case);
            Ok("200 (request not read by the test)")
        }
    }
}

// =============================================================================================
// Open Inference Protocol v2: binary requests
// =============================================================================================

/// One tensor of the binary section: the datatype it claims and its bytes.
struct BinaryTensor {
    datatype: &'static str,
    bytes: Vec<u8>,
}

fn encode_numeric(rng: &mut Rng, datatype: &'static str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        match integer_range(datatype) {
            Some((low, high)) => {
                let value = if rng.percent(10) {
                    *rng.pick(&[low, high])
                } else {
                    i128::from(*rng.pick(INTS)).clamp(low, high)
                };
                // Two's complement, little-endian, as wide as the datatype.
                let width = match datatype {
                    "INT8" | "UINT8" => 1,
                    "INT16" | "UINT16" => 2,
                    "INT32" | "UINT32" => 4,
                    _ => 8,
                };
                out.extend_from_slice(&value.to_le_bytes()[..width]);
            }
            None => {
                let value = match rng.below(20) {
                    0 => f64::NAN,
                    1 => *rng.pick(EXTREME_FLOATS),
                    _ => *rng.pick(FLOATS),
                };
                if datatype == "FP64" {
                    out.extend_from_slice(&value.to_le_bytes());
                } else {
                    out.extend_from_slice(&(value as f32).to_le_bytes());
                }
            }
        }
    }
    out
}

fn encode_texts(texts: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for text in texts {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

const F32_PATTERNS: &[u32] =
    &[0x7fc0_0000, 0xffff_ffff, 0x7f80_0001, 0x7f80_0000, 0xff80_0000, 0x7f7f_ffff, 0x0000_0001, 0x8000_0000];
const F64_PATTERNS: &[u64] = &[
    0x7ff8_0000_0000_0000,
    0xffff_ffff_ffff_ffff,
    0x7ff0_0000_0000_0001,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0x0000_0000_0000_0001,
    0x8000_0000_0000_0000,
];

/// Damages one tensor's bytes in a way its datatype makes interesting.
fn mutate_tensor(rng: &mut Rng, tensor: &mut BinaryTensor) {
    let bytes = &mut tensor.bytes;
    match tensor.datatype {
        "FP32" if bytes.len() >= 4 && rng.percent(70) => {
            let at = 4 * rng.below(bytes.len() / 4);
            bytes[at..at + 4].copy_from_slice(&rng.pick(F32_PATTERNS).to_le_bytes());
        }
        "FP64" if bytes.len() >= 8 && rng.percent(70) => {
            let at = 8 * rng.below(bytes.len() / 8);
            bytes[at..at + 8].copy_from_slice(&rng.pick(F64_PATTERNS).to_le_bytes());
        }
        "BYTES" if bytes.len() >= 4 && rng.percent(70) => {
            // Find the length prefixes, then corrupt one of them or what follows it.
            let mut prefixes = Vec::new();
            let mut at = 0;
            while at + 4 <= bytes.len() {
                prefixes.push(at);
                let length = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
                at += 4 + length;
            }
            let at = *rng.pick(&prefixes);
            let length = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            match rng.below(4) {
                0 => {
                    let new = *rng.pick(&[length + 1, length.saturating_sub(1), u32::MAX, 0, 0x8000_0000, 1 << 20]);
                    bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
                }
                1 if at + 4 < bytes.len() => bytes[at + 4] = *rng.pick(&[0xffu8, 0xc3, 0x80, 0xed]),
                2 => bytes.truncate(at + rng.below(4)),
                _ => {
                    let text = b"NA";
                    bytes.splice(at..at, (text.len() as u32).to_le_bytes().into_iter().chain(text.iter().copied()));
                }
            }
        }
        _ => match rng.below(3) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ => bytes.extend(std::iter::repeat_n(0u8, 1 + rng.below(8))),
        },
    }
}

fn v2_binary_case(rng: &mut Rng, models: &Models) -> HttpCase {
    let which = pick_model(rng);
    let model = models.get(which);
    let n = row_count(rng);
    // Each input with its tensor, if it travels as binary.
    let mut inputs: Vec<(Value, Option<BinaryTensor>)> = Vec::new();
    for (name, kind) in &model.features {
        let datatype: &'static str = match kind {
            ColumnKind::Numeric => rng.pick_str(NUMERIC_DATATYPES),
            ColumnKind::Categorical => "BYTES",
        };
        let shape = shape_for(rng, n);
        if rng.percent(75) {
            let bytes = match kind {
                ColumnKind::Numeric => encode_numeric(rng, datatype, n),
                ColumnKind::Categorical => {
                    let texts: Vec<String> = (0..n).map(|_| category_text(rng, model, name)).collect();
                    encode_texts(&texts)
                }
            };
            let input = json!({ "name": name, "shape": shape, "datatype": datatype,
                                "parameters": { "binary_data_size": bytes.len() } });
            inputs.push((input, Some(BinaryTensor { datatype, bytes })));
        } else {
            let data: Vec<Value> = (0..n)
                .map(|_| match kind {
                    ColumnKind::Numeric => numeric_element(rng, datatype),
                    ColumnKind::Categorical => category_element(rng, model, name),
                })
                .collect();
            inputs.push((json!({ "name": name, "shape": shape, "datatype": datatype, "data": data }), None));
        }
    }
    if rng.percent(40) {
        rng.shuffle(&mut inputs);
    }
    let (headers_json, tensors): (Vec<Value>, Vec<Option<BinaryTensor>>) = inputs.into_iter().unzip();
    let mut tensors: Vec<BinaryTensor> = tensors.into_iter().flatten().collect();
    let mut request = json!({ "inputs": headers_json });
    add_request_options(rng, &mut request, model);
    if rng.percent(30) {
        request["parameters"] = json!({ "binary_data_output": true });
    }
    let mut mutate_length = false;
    let mut json_mutations = 0;
    if rng.percent(75) {
        for _ in 0..1 + rng.below(2) {
            match rng.below(7) {
                0 => mutate_v2(rng, &mut request, model),
                1 => {
                    // binary_data_size of one input.
                    let n_inputs = request["inputs"].as_array().map_or(0, Vec::len);
                    let which_input = rng.below(n_inputs.max(1));
                    if let Some(size) = input_at(&mut request, which_input)
                        .and_then(|i| i.get_mut("parameters"))
                        .and_then(|p| p.get_mut("binary_data_size"))
                    {
                        let current = size.as_u64().unwrap_or(0);
                        *size = rng
                            .pick(&[
                                json!(current + 1),
                                json!(current.saturating_sub(1)),
                                json!(current + 4),
                                json!(0),
                                json!(u64::MAX),
                                json!(-1),
                                json!(current.to_string()),
                                json!(current as f64 + 0.5),
                                Value::Null,
                                json!(1u64 << 40),
                            ])
                            .clone();
                    }
                }
                2 | 3 => {
                    if !tensors.is_empty() {
                        let at = rng.below(tensors.len());
                        mutate_tensor(rng, &mut tensors[at]);
                    }
                }
                4 => match rng.below(3) {
                    0 if tensors.len() >= 2 => tensors.swap(0, 1),
                    1 if !tensors.is_empty() => {
                        let at = rng.below(tensors.len());
                        tensors.remove(at);
                    }
                    _ => tensors.push(BinaryTensor { datatype: "FP32", bytes: 1.5f32.to_le_bytes().to_vec() }),
                },
                5 => mutate_length = true,
                _ => json_mutations += 1,
            }
        }
    }
    let mut json_part = serialize(rng, &request);
    for _ in 0..json_mutations {
        mutate_bytes(rng, &mut json_part, JSON_TOKENS);
    }
    let declared = json_part.len();
    let mut body = json_part;
    for tensor in &tensors {
        body.extend_from_slice(&tensor.bytes);
    }
    if rng.percent(5) {
        body.truncate(rng.below(body.len() + 1));
    }
    let length = match mutate_length {
        true => {
            let choices = [
                Some((declared + 1).to_string()),
                Some(declared.saturating_sub(1).to_string()),
                Some((declared + 4).to_string()),
                Some("0".to_string()),
                Some(body.len().to_string()),
                Some((body.len() + 1).to_string()),
                Some("18446744073709551616".to_string()),
                Some("-1".to_string()),
                Some(format!(" {declared} ")),
                Some(format!("+{declared}")),
                Some(String::new()),
                Some("lots".to_string()),
                Some("1e2".to_string()),
                Some(format!("0x{declared:x}")),
                None,
            ];
            rng.pick(&choices).clone()
        }
        false => Some(declared.to_string()),
    };
    let mut headers = content_type(rng, "application/octet-stream");
    if let Some(length) = length {
        headers.push((INFERENCE_HEADER, length));
    }
    HttpCase { which, uri: v2_uri(rng, which), headers, body }
}

// =============================================================================================
// KServe v1
// =============================================================================================

/// A v1 value for a column, as JSON text.
fn v1_value(rng: &mut Rng, model: &Model, feature: &str, kind: ColumnKind) -> String {
    match kind {
        ColumnKind::Numeric => match rng.below(20) {
            0..=9 => json!(*rng.pick(FLOATS)).to_string(),
            10..=11 => json!(*rng.pick(INTS)).to_string(),
            12..=14 => json!(
                *rng.pick(&["72.5", " 3 ", "1e3", "NA", "", "abc", "inf", "NaN", "-0", "1e309", "0x10", "3,5", "48"])
            )
            .to_string(),
            15 => "null".to_string(),
            _ => json!(*rng.pick(EXTREME_FLOATS)).to_string(),
        },
        ColumnKind::Categorical => category_element(rng, model, feature).to_string(),
    }
}

const V1_WEIRD_VALUES: &[&str] = &[
    "true",
    "[]",
    "{}",
    "[1]",
    "\"abc\"",
    "1e308",
    "-1e38",
    "\"1e309\"",
    "\"inf\"",
    "\"NaN\"",
    "null",
    "1e-400",
    "18446744073709551616",
    "-0",
    "\"\\u004fslo\"",
    "\"Rome\"",
    "3",
];

fn mutate_v1_entries(rng: &mut Rng, action: usize, entries: &mut Vec<(String, String)>) {
    if entries.is_empty() {
        entries.push(("area".into(), "1".into()));
        return;
    }
    let i = rng.below(entries.len());
    match action {
        0 => {
            entries.remove(i);
        }
        1 => {
            let key = *rng.pick(&["price", "Area", "extra", "", "species", "area", "color"]);
            entries.push((key.into(), "1".into()));
        }
        2 => {
            let copy = entries[i].clone();
            entries.push(copy);
        }
        3 => entries[i].0 = entries[i].0.to_uppercase(),
        _ => entries[i].1 = rng.pick(V1_WEIRD_VALUES).to_string(),
    }
}

/// One element of `instances`: entries (key and value as JSON text, in order, duplicates
/// allowed), or raw JSON for something that is not an object.
enum Instance {
    Entries(Vec<(String, String)>),
    Raw(&'static str),
}

fn v1_case(rng: &mut Rng, models: &Models) -> HttpCase {
    let which = if rng.percent(60) { Which::Houses } else { Which::Flowers };
    let model = models.get(which);
    let n = row_count(rng);
    let mut instances: Vec<Instance> = (0..n)
        .map(|_| {
            let mut entries: Vec<(String, String)> =
                model.features.iter().map(|(name, kind)| (name.clone(), v1_value(rng, model, name, *kind))).collect();
            if rng.percent(40) {
                rng.shuffle(&mut entries);
            }
            Instance::Entries(entries)
        })
        .collect();
    let mut instances_raw: Option<&'static str> = None;
    let mut top: Vec<(String, String)> = Vec::new();
    if rng.percent(10) {
        top.push(("parameters".into(), "{\"x\": 1}".into()));
    }
    let mut with_instances = 1;
    if rng.percent(65) {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(instances.len().max(1));
            let action = rng.below(11);
            if action <= 5 {
                if let Some(Instance::Entries(entries)) = instances.get_mut(at) {
                    mutate_v1_entries(rng, action, entries);
                }
                continue;
            }
            match action {
                6 if !instances.is_empty() => {
                    instances[at] = Instance::Raw(rng.pick_str(&["1", "\"x\"", "null", "[1,2]", "true", "{}", "[]"]));
                }
                7 => instances_raw = Some(*rng.pick(&["{}", "\"x\"", "null", "3", "[[1]]", "[null]", "{\"area\": 1}"])),
                8 => with_instances = *rng.pick(&[0, 2]),
                9 => top.push((rng.pick(&["signature_name", "inputs", "Instances", "id"]).to_string(), "\"x\"".into())),
                _ => instances.clear(),
            }
        }
    }
    let key = |k: &str| Value::String(k.to_string()).to_string();
    let instances_text = instances_raw.map_or_else(
        || {
            let items: Vec<String> = instances
                .iter()
                .map(|instance| match instance {
                    Instance::Entries(entries) => {
                        let fields: Vec<String> = entries.iter().map(|(k, v)| format!("{}:{v}", key(k))).collect();
                        format!("{{{}}}", fields.join(","))
                    }
                    Instance::Raw(raw) => raw.to_string(),
                })
                .collect();
            format!("[{}]", items.join(","))
        },
        str::to_string,
    );
    for _ in 0..with_instances {
        let at = rng.below(top.len() + 1);
        top.insert(at, ("instances".into(), instances_text.clone()));
    }
    let fields: Vec<String> = top.iter().map(|(k, v)| format!("{}:{v}", key(k))).collect();
    let mut body = format!("{{{}}}", fields.join(",")).into_bytes();
    maybe_mutate_bytes(rng, &mut body, JSON_TOKENS, 3);
    HttpCase {
        which,
        uri: format!("/v1/models/{}:predict", model.name),
        headers: content_type(rng, "application/json"),
        body,
    }
}

/// The records of a v1 request as the test reads them, or `None`.
fn read_v1(body: &[u8]) -> Option<Vec<Row>> {
    let request = parse_json(body)?;
    request
        .as_object()?
        .get("instances")?
        .as_array()?
        .iter()
        .map(|instance| {
            instance
                .as_object()?
                .iter()
                .map(|(column, value)| {
                    let value = match value {
                        Value::Null => Val::Missing,
                        Value::Number(n) => Val::Number(n.as_f64()?),
                        Value::String(s) => Val::Text(s.clone()),
                        _ => return None,
                    };
                    Some((column.clone(), value))
                })
                .collect::<Option<Row>>()
        })
        .collect()
}

fn check_v1_case(server: &Server, case: &HttpCase) -> Result<&'static str, String> {
    let reply = server.exchange(case)?;
    if reply.status != StatusCode::OK {
        return Ok(status_label(reply.status));
    }
    let model = server.models.get(case.which);
    if header(&reply, "content-type") != Some("application/json") {
        return Err("a 200 that is not application/json".into());
    }
    let body: Value = serde_json::from_slice(&reply.body).map_err(|e| format!("a 200 that is not JSON ({e})"))?;
    let predictions = match body.as_object() {
        Some(object) if object.len() == 1 => object.get("predictions").and_then(Value::as_array),
        _ => None,
    }
    .ok_or_else(|| format!("a 200 that is not {{\"predictions\": [...]}}: {}", lossy(&reply.body)))?;
    // What every answer must be, read back.
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut probabilities = Vec::new();
    for prediction in predictions {
        if model.is_classification() {
            let object =
                prediction.as_object().filter(|o| o.len() == 2).ok_or_else(|| format!("prediction {prediction}"))?;
            let label =
                object.get("label").and_then(Value::as_str).ok_or_else(|| format!("prediction {prediction}"))?;
            if !model.classes.iter().any(|c| c == label) {
                return Err(format!("a 200 with the label {label:?}, not a class of {:?}", model.classes));
            }
            labels.push(label.to_string());
            let by_class = object.get("probabilities").and_then(Value::as_object).ok_or("no probabilities")?;
            if by_class.len() != model.classes.len() {
                return Err(format!("probabilities {by_class:?} for the classes {:?}", model.classes));
            }
            let row: Vec<f32> = model
                .classes
                .iter()
                .map(|c| by_class.get(c).and_then(Value::as_f64).map(|p| p as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("probabilities {by_class:?} for the classes {:?}", model.classes))?;
            check_probabilities(&row, row.len())?;
            probabilities.extend(row);
        } else {
            let value = prediction.as_f64().ok_or_else(|| format!("a 200 with the prediction {prediction}"))? as f32;
            if !value.is_finite() {
                return Err(format!("a 200 with the prediction {value}"));
            }
            values.push(value);
        }
    }
    let Some(rows) = read_v1(&case.body) else {
        note_unread(case);
        return Ok("200 (request not read by the test)");
    };
    let expected = model.predict(&rows).map_err(|e| {
        format!("a 200, but the predictor refuses the same rows ({e}); rows as the test reads them: {rows:?}")
    })?;
    if predictions.len() != rows.len()
        || bits(&values) != bits(&expected.values)
        || labels != expected.labels
        || bits(&probabilities) != bits(&expected.probabilities)
    {
        return Err(format!("answered {predictions:?}; the predictor gives {expected:?} for the rows {rows:?}"));
    }
    Ok("200 compared with the predictor")
}

// =============================================================================================
// `serving predict`: CSV and JSON Lines
// =============================================================================================

struct BatchCase {
    input: Vec<u8>,
    options: BatchOptions,
}

fn show_batch(case: &BatchCase) -> String {
    format!("{:?}, input ({} bytes): b\"{}\"", case.options, case.input.len(), shown(&case.input))
}

const CSV_TOKENS: &[&str] = &[
    ",",
    "\"",
    "\n",
    "\r",
    "\r\n",
    "\u{feff}",
    "\u{ff}",
    "NA",
    "1e309",
    "Oslo",
    "Rome",
    ",,",
    "\"\"",
    " ",
    "area",
    "city",
    "\"a,b\"",
    "-0",
    "1e38",
    "inf",
    "NaN",
    "9999999999999999999999",
    "\t",
];

fn quote_csv(rng: &mut Rng, field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || rng.percent(10) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn csv_field(rng: &mut Rng, houses: &Model, column: &str, row: usize) -> String {
    match column {
        "id" => format!("r{row}"),
        "note" => rng.pick(&["plain", "with, comma", "with \"quotes\"", "", "two\nlines"]).to_string(),
        _ => match houses.features.iter().find(|(name, _)| name == column).map(|(_, kind)| *kind) {
            Some(ColumnKind::Numeric) => match rng.below(20) {
                0..=11 => rng.pick(FLOATS).to_string(),
                12..=15 => rng
                    .pick(&[
                        "NA", "", " 5 ", "1e3", "1.5e2", "abc", "inf", "NaN", "-0", "0x10", "3,5", "+4", ".5", "5.",
                    ])
                    .to_string(),
                _ => format!("{:e}", rng.pick(EXTREME_FLOATS)),
            },
            _ => category_text(rng, houses, column),
        },
    }
}

fn csv_case(rng: &mut Rng, houses: &Model) -> BatchCase {
    let mut columns: Vec<&str> = houses.features.iter().map(|(name, _)| name.as_str()).collect();
    if rng.percent(40) {
        columns.push("id");
    }
    if rng.percent(20) {
        columns.push("note");
    }
    if rng.percent(40) {
        rng.shuffle(&mut columns);
    }
    if rng.percent(4) {
        columns.remove(rng.below(columns.len()));
    }
    if rng.percent(4) {
        let copy = columns[rng.below(columns.len())];
        columns.push(copy);
    }
    let newline = if rng.percent(20) { "\r\n" } else { "\n" };
    let mut text = columns.iter().map(|c| quote_csv(rng, c)).collect::<Vec<_>>().join(",");
    for row in 0..*rng.pick(&[0, 1, 2, 3, 4, 6, 9]) {
        text.push_str(newline);
        let fields: Vec<String> = columns
            .iter()
            .map(|c| {
                let field = csv_field(rng, houses, c, row);
                quote_csv(rng, &field)
            })
            .collect();
        text.push_str(&fields.join(","));
    }
    if rng.percent(80) {
        text.push_str(newline);
    }
    let mut input = text.into_bytes();
    maybe_mutate_bytes(rng, &mut input, CSV_TOKENS, 3);
    let keep = match rng.below(10) {
        0..=3 if columns.contains(&"id") => vec!["id".to_string()],
        4 => vec!["nope".to_string()],
        _ => Vec::new(),
    };
    BatchCase { input, options: batch_options(rng, Format::Csv, keep) }
}

fn batch_options(rng: &mut Rng, input_format: Format, keep: Vec<String>) -> BatchOptions {
    BatchOptions {
        input_format,
        output_format: if rng.percent(50) { Format::Csv } else { Format::Jsonl },
        keep,
        chunk_rows: *rng.pick(&[1, 2, 3, 4096]),
    }
}

fn jsonl_case(rng: &mut Rng, houses: &Model) -> BatchCase {
    let newline = if rng.percent(20) { "\r\n" } else { "\n" };
    let mut text = String::new();
    for row in 0..*rng.pick(&[0, 1, 2, 3, 4, 6]) {
        match rng.below(20) {
            0 => text.push_str(rng.pick_str(&["", "   ", "[1]", "3", "\"x\"", "null", "{", "{}"])),
            _ => {
                let mut entries: Vec<(String, String)> = houses
                    .features
                    .iter()
                    .map(|(name, kind)| (name.clone(), v1_value(rng, houses, name, *kind)))
                    .collect();
                if rng.percent(40) {
                    entries.push(("id".into(), json!(format!("r{row}")).to_string()));
                }
                if rng.percent(30) {
                    rng.shuffle(&mut entries);
                }
                if rng.percent(10) && !entries.is_empty() {
                    entries.remove(rng.below(entries.len()));
                }
                if rng.percent(10) && !entries.is_empty() {
                    let i = rng.below(entries.len());
                    entries[i].1 = rng.pick(V1_WEIRD_VALUES).to_string();
                }
                let fields: Vec<String> =
                    entries.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect();
                text.push_str(&format!("{{{}}}", fields.join(",")));
            }
        }
        text.push_str(newline);
    }
    let mut input = text.into_bytes();
    maybe_mutate_bytes(rng, &mut input, JSON_TOKENS, 3);
    let keep = match rng.below(10) {
        0..=3 => vec!["id".to_string()],
        _ => Vec::new(),
    };
    BatchCase { input, options: batch_options(rng, Format::Jsonl, keep) }
}

/// One output row as the test expects it: the kept values, and the prediction or an error.
#[derive(Debug)]
struct ExpectedRow {
    kept: Vec<Value>,
    prediction: Option<f32>,
    /// The row is refused because its prediction is not finite.
    overflows: bool,
}

impl ExpectedRow {
    fn failed(kept: Vec<Value>) -> Self {
        Self { kept, prediction: None, overflows: false }
    }

    fn predicted(houses: &Model, kept: Vec<Value>, row: Row) -> Self {
        match houses.predict(&[row]) {
            Ok(expected) => Self { kept, prediction: expected.values.first().copied(), overflows: false },
            Err(error) => Self { kept, prediction: None, overflows: matches!(error, InputError::NotFinite { .. }) },
        }
    }
}

/// What scoring a CSV input must give, read with the `csv` crate the way a CSV file reads:
/// `Err` when the run as a whole must be refused.
fn expected_csv(houses: &Model, input: &[u8], keep: &[String]) -> Result<Vec<ExpectedRow>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(input);
    let header = reader.headers().map_err(|e| format!("the header does not read: {e}"))?.clone();
    let names: Vec<&str> = header.iter().collect();
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            return Err(format!("the header names '{name}' twice"));
        }
    }
    let at = |name: &str| names.iter().position(|n| *n == name).ok_or_else(|| format!("no column '{name}'"));
    let features: Vec<usize> = houses.features.iter().map(|(name, _)| at(name)).collect::<Result<_, _>>()?;
    let kept_at: Vec<usize> = keep.iter().map(|name| at(name)).collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let kept = kept_at.iter().map(|&i| Value::from(record.get(i).unwrap_or(""))).collect();
                rows.push(if record.len() == names.len() {
                    let row = houses
                        .features
                        .iter()
                        .zip(&features)
                        .map(|((name, _), &i)| (name.clone(), Val::Text(record.get(i).unwrap_or("").to_string())))
                        .collect();
                    ExpectedRow::predicted(houses, kept, row)
                } else {
                    ExpectedRow::failed(kept)
                });
            }
            Err(e) if e.is_io_error() => return Err(format!("reading: {e}")),
            Err(_) => rows.push(ExpectedRow::failed(vec![Value::Null; keep.len()])),
        }
        if rows.len() > 100_000 {
            return Err("the test's own reader did not stop".into());
        }
    }
    Ok(rows)
}

/// What scoring a JSON Lines input must give; `Err` when it must be refused (not UTF-8).
fn expected_jsonl(houses: &Model, input: &[u8], keep: &[String]) -> Result<Vec<ExpectedRow>, String> {
    let mut rows = Vec::new();
    for line in input.lines() {
        let line = line.map_err(|e| format!("a line does not read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(map)) => {
                let kept = keep.iter().map(|k| map.get(k).cloned().unwrap_or(Value::Null)).collect();
                let cells: Option<Row> = houses
                    .features
                    .iter()
                    .map(|(name, _)| {
                        let value = match map.get(name)? {
                            Value::Null => Val::Missing,
                            Value::Number(n) => Val::Number(n.as_f64().unwrap_or(f64::NAN)),
                            Value::String(s) => Val::Text(s.clone()),
                            _ => return None,
                        };
                        Some((name.clone(), value))
                    })
                    .collect();
                match cells {
                    Some(row) => ExpectedRow::predicted(houses, kept, row),
                    None => ExpectedRow::failed(kept),
                }
            }
            _ => ExpectedRow::failed(vec![Value::Null; keep.len()]),
        };
        rows.push(row);
    }
    Ok(rows)
}

/// `serving predict`'s text for a kept value in CSV.
fn kept_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An output row as read back: the kept values (as text for CSV), and the prediction or error.
struct GotRow {
    kept: Vec<Value>,
    prediction: Result<f32, String>,
}

fn read_csv_output(output: &[u8], keep: &[String]) -> Result<Vec<GotRow>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(output);
    let header = reader.headers().map_err(|e| format!("the output's header does not read: {e}"))?.clone();
    let wanted: Vec<&str> = keep.iter().map(String::as_str).chain(["prediction", "error"]).collect();
    if header.iter().collect::<Vec<_>>() != wanted {
        return Err(format!("output header {header:?}, expected {wanted:?}"));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("an output row does not read: {e}"))?;
        let kept = (0..keep.len()).map(|i| Value::from(record.get(i).unwrap_or(""))).collect();
        let prediction = record.get(keep.len()).unwrap_or("");
        let error = record.get(keep.len() + 1).unwrap_or("");
        let prediction = match (prediction, error) {
            ("", error) if !error.trim().is_empty() => Err(error.to_string()),
            (value, "") => Ok(value.parse::<f32>().map_err(|_| format!("output prediction {value:?}"))?),
            _ => return Err(format!("an output row with both a prediction and an error, or neither: {record:?}")),
        };
        rows.push(GotRow { kept, prediction });
    }
    Ok(rows)
}

fn read_jsonl_output(output: &[u8], keep: &[String]) -> Result<Vec<GotRow>, String> {
    let text = std::str::from_utf8(output).map_err(|_| "the output is not UTF-8")?;
    let mut rows = Vec::new();
    for line in text.lines() {
        let object: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("an output line is not an object ({e}): {line}"))?;
        let kept = keep.iter().map(|k| object.get(k).cloned().unwrap_or(Value::Null)).collect();
        let extra: Vec<&String> = object.keys().filter(|k| !keep.contains(k)).collect();
        let prediction = match (object.get("prediction"), object.get("error"), extra.len()) {
            (Some(value), None, 1) => {
                Ok(value.as_f64().ok_or_else(|| format!("output prediction {value} in {line}"))? as f32)
            }
            (None, Some(Value::String(error)), 1) if !error.trim().is_empty() => Err(error.clone()),
            _ => return Err(format!("an output line that is neither a prediction nor an error: {line}")),
        };
        rows.push(GotRow { kept, prediction });
    }
    Ok(rows)
}

fn check_batch_case(houses: &Model, case: &BatchCase) -> Result<&'static str, String> {
    let options = &case.options;
    let mut output = Vec::new();
    let result = batch::score(&houses.predictor, &case.input[..], &mut output, options, |_| {});
    let expected = match options.input_format {
        Format::Csv => expected_csv(houses, &case.input, &options.keep),
        Format::Jsonl => expected_jsonl(houses, &case.input, &options.keep),
        Format::Parquet => unreachable!("the batch cases are text; Parquet is fuzzed in its own target"),
    };
    let (summary, expected) = match (result, expected) {
        (Err(error), Err(_)) => {
            let message = format!("{error:#}");
            return if message.trim().is_empty() { Err("refused without a message".into()) } else { Ok("refused") };
        }
        (Err(error), Ok(_)) => return Err(format!("refused an input the test reads fine: {error:#}")),
        (Ok(summary), Err(why)) => return Err(format!("scored an input it must refuse ({why}): {summary:?}")),
        (Ok(summary), Ok(expected)) => (summary, expected),
    };
    let got = match options.output_format {
        Format::Csv => read_csv_output(&output, &options.keep),
        Format::Jsonl => read_jsonl_output(&output, &options.keep),
        Format::Parquet => unreachable!("the batch cases write text"),
    }
    .map_err(|e| format!("{e}; output: b\"{}\"", shown(&output)))?;
    let failed = expected.iter().filter(|r| r.prediction.is_none()).count();
    if got.len() != expected.len() || summary.rows != expected.len() || summary.failed != failed {
        return Err(format!(
            "{} output rows (summary {summary:?}) for {} input rows of which {failed} fail; output: b\"{}\"",
            got.len(),
            expected.len(),
            shown(&output)
        ));
    }
    for (index, (got, expected)) in got.iter().zip(&expected).enumerate() {
        let kept: Vec<Value> = match options.output_format {
            Format::Csv => expected.kept.iter().map(|v| Value::from(kept_text(v))).collect(),
            Format::Jsonl => expected.kept.clone(),
            Format::Parquet => unreachable!("the batch cases write text"),
        };
        let same = match (&got.prediction, expected.prediction) {
            (Ok(value), Some(want)) => value.to_bits() == want.to_bits(),
            (Err(_), None) => true,
            _ => false,
        };
        if !same || got.kept != kept {
            return Err(format!(
                "output row {index} is {:?} kept {:?}; predicting that row alone gives {:?} (None: an error) kept {kept:?}; \
                 output: b\"{}\"",
                got.prediction,
                got.kept,
                expected.prediction,
                shown(&output)
            ));
        }
    }
    Ok(if failed == 0 {
        "scored, every row predicted"
    } else if expected.iter().any(|r| r.overflows) {
        "scored, a row failed for a non-finite prediction"
    } else {
        "scored, some rows failed"
    })
}

// =============================================================================================
// Manifest reader
// =============================================================================================

struct ManifestCase {
    bytes: Vec<u8>,
}

fn show_manifest(case: &ManifestCase) -> String {
    format!("manifest ({} bytes): b\"{}\"", case.bytes.len(), shown(&case.bytes))
}

const MANIFEST_TOKENS: &[&str] = &[
    " ",
    "\n",
    "\t",
    "\r\n",
    "0",
    "-1",
    "1e308",
    "\"NaN\"",
    "2000000000",
    "[]",
    "{}",
    "null",
    ",",
    "\"",
    "true",
    "9999999999999999999999",
    "-0",
    "0.5",
    "\"x\"",
];

/// Every JSON pointer of a value (its root included).
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_string());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, &format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, &format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

fn manifest_targeted(rng: &mut Rng) -> (&'static str, Value) {
    let ones: Vec<u32> = vec![1; 65];
    let choices = [
        ("/network/hidden_layers", json!([2_000_000_000u64])),
        ("/network/hidden_layers", json!([])),
        ("/network/hidden_layers", json!([8, 6, 6])),
        ("/network/hidden_layers", json!([8])),
        ("/network/hidden_layers", json!([6, 8])),
        ("/network/hidden_layers", json!([0])),
        ("/network/hidden_layers", json!(ones)),
        ("/network/hidden_layers", json!([65536, 65536])),
        ("/network/hidden_layers", json!([4097])),
        ("/network/hidden_layers", json!([u64::MAX])),
        ("/network/n_features", json!(2_000_000_000u64)),
        ("/network/n_features", json!(4)),
        ("/network/n_outputs", json!(0)),
        ("/network/n_outputs", json!(2)),
        ("/network/dropout", json!(1.0)),
        ("/network/dropout", json!(-0.5)),
        ("/network/dropout", json!(0.5)),
        ("/network/activation", json!("tanh")),
        ("/network/activation", json!("gelu")),
        ("/network/activation", json!("silu")),
        ("/network/activation", json!("swish")),
        ("/target_transform", json!({ "kind": "log_standardize", "mean": 5.0, "std": 0.5 })),
        ("/target_transform", json!({ "kind": "none" })),
        ("/target_transform/std", json!(0)),
        ("/target_transform/std", json!(1e-300)),
        ("/target_transform/mean", json!(1e308)),
        ("/schema/task", json!("multiclass_classification")),
        ("/schema/task", json!("binary_classification")),
        ("/labels", json!(["a", "b"])),
        ("/labels", json!(["only"])),
        ("/preprocessing/columns/0/std", json!(0.0)),
        ("/preprocessing/columns/0/std", json!(1e-320)),
        ("/preprocessing/columns/0/mean", json!(1e308)),
        ("/preprocessing/columns/1/median", json!(-1e308)),
        ("/preprocessing/columns/2/categories", json!([])),
        ("/preprocessing/columns/2/categories", json!(["Oslo", "Oslo"])),
        ("/preprocessing/columns/2/categories", json!(["Oslo"])),
        ("/preprocessing/columns/2/categories", json!(["Oslo", "Rome", "Paris"])),
        ("/preprocessing/columns/2/most_frequent", json!("Paris")),
        ("/preprocessing/columns/2/most_frequent", json!("")),
        ("/preprocessing/columns/2/unknown", json!("zero_vector")),
        ("/preprocessing/columns/2/kind", json!("numeric")),
        ("/schema/features/2/kind", json!("numeric")),
        ("/schema/features/0/name", json!("city")),
        ("/schema/features", json!([])),
        ("/preprocessing/columns", json!([])),
        ("/format_version", json!(1)),
        ("/format_version", json!(3)),
        ("/format_version", json!(-1)),
        ("/weights/file", json!("../weights.mpk")),
        ("/weights/sha256", json!("")),
        ("/version", json!(-1)),
        ("/version", json!(u64::MAX)),
        ("/metrics", json!({ "rmse": 1e308 })),
        ("/manifest_sha256", json!("")),
        ("/manifest_sha256", json!("0000000000000000000000000000000000000000000000000000000000000000")),
    ];
    rng.pick(&choices).clone()
}

const MANIFEST_REPLACEMENTS: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "\"NaN\"",
    "2000000000",
    "18446744073709551615",
    "[]",
    "{}",
    "\"\"",
    "null",
    "true",
    "[2000000000]",
    "4096",
    "0.5",
    "1",
    "1e-320",
    "\"relu\"",
    "\"x\"",
];

fn mutate_manifest_value(rng: &mut Rng, value: &mut Value) {
    let mut all = Vec::new();
    pointers(value, "", &mut all);
    let all: Vec<String> = all.into_iter().filter(|p| !p.is_empty()).collect();
    match rng.below(10) {
        0..=3 => {
            let replacement: Value =
                serde_json::from_str(rng.pick_str(MANIFEST_REPLACEMENTS)).expect("the replacements are JSON");
            let pointer = rng.pick(&all).clone();
            if let Some(node) = value.pointer_mut(&pointer) {
                *node = replacement;
            }
        }
        4 => {
            // Delete a key or an element.
            let pointer = rng.pick(&all).clone();
            let (parent, last) = pointer.rsplit_once('/').expect("a non-root pointer has a parent");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(index) = last.parse::<usize>()
                        && index < items.len()
                    {
                        items.remove(index);
                    }
                }
                _ => {}
            }
        }
        5..=7 => {
            let (pointer, replacement) = manifest_targeted(rng);
            if let Some(node) = value.pointer_mut(pointer) {
                *node = replacement;
            }
        }
        8 => {
            // Duplicate an array element, or add an unknown field.
            let pointer = rng.pick(&all).clone();
            match value.pointer_mut(&pointer) {
                Some(Value::Array(items)) if !items.is_empty() => {
                    let copy = items[rng.below(items.len())].clone();
                    items.push(copy);
                }
                Some(Value::Object(map)) => {
                    map.insert("unexpected".into(), json!(1));
                }
                _ => {}
            }
        }
        _ => {
            // A number set to an edge.
            let numbers: Vec<&String> = all.iter().filter(|p| value.pointer(p).is_some_and(Value::is_number)).collect();
            if !numbers.is_empty() {
                let pointer = (*rng.pick(&numbers)).clone();
                let replacement = rng
                    .pick(&[json!(0), json!(-1), json!(1e308), json!("NaN"), json!(2_000_000_000u64), json!(0.1)])
                    .clone();
                if let Some(node) = value.pointer_mut(&pointer) {
                    *node = replacement;
                }
            }
        }
    }
}

fn manifest_case(rng: &mut Rng, original: &[u8]) -> ManifestCase {
    let mut bytes = if rng.percent(60) {
        let mut value: Value = serde_json::from_slice(original).expect("the fixture's manifest is JSON");
        for _ in 0..1 + rng.below(2) {
            mutate_manifest_value(rng, &mut value);
        }
        serialize(rng, &value)
    } else {
        original.to_vec()
    };
    let byte_mutations = if bytes == original { 1 + rng.below(3) } else { usize::from(rng.percent(30)) };
    for _ in 0..byte_mutations {
        if rng.percent(25) {
            // Whitespace between tokens: the content stays the same.
            let structural: Vec<usize> =
                bytes.iter().enumerate().filter(|(_, b)| b"[{,:".contains(b)).map(|(i, _)| i + 1).collect();
            let at = if structural.is_empty() { 0 } else { *rng.pick(&structural) };
            let space = *rng.pick(&[" ", "\n", "\t", "\r\n  "]);
            bytes.splice(at..at, space.bytes());
        } else {
            mutate_bytes(rng, &mut bytes, MANIFEST_TOKENS);
        }
    }
    ManifestCase { bytes }
}

/// Predictor building is bounded: nothing wider than this is built.
const MAX_BUILT_WIDTH: usize = 4096;

/// Whether two manifests have the same content, checksum field included, value for value and
/// bit for bit.
fn same_content(a: &Manifest, b: &Manifest) -> bool {
    serde_json::to_vec(a).ok() == serde_json::to_vec(b).ok()
}

fn check_manifest_case(original: &Manifest, weights: &[u8], case: &ManifestCase) -> Result<&'static str, String> {
    let read = Manifest::from_json(&case.bytes);
    let parsed = serde_json::from_slice::<Manifest>(&case.bytes);
    let refused_properly = |error: &ArtifactError| match error {
        ArtifactError::Manifest(reason) if reason.trim().is_empty() => Err("refused with an empty reason".to_string()),
        _ => Ok(()),
    };
    let changed = match parsed {
        Err(_) => {
            return match read {
                Ok(_) => Err("accepted a manifest that does not parse".into()),
                Err(error @ (ArtifactError::Manifest(_) | ArtifactError::UnsupportedFormat { .. })) => {
                    refused_properly(&error)?;
                    Ok("unparsable, refused")
                }
                Err(other) => Err(format!("an unparsable manifest refused with {other:?}")),
            };
        }
        // The same content is the same canonical JSON: `-0` where `0.0` was is an edit (other
        // bits), though `PartialEq` calls the two equal.
        Ok(manifest) if same_content(&manifest, original) => {
            return match read {
                Ok(manifest) if same_content(&manifest, original) => Ok("same content, accepted"),
                other => Err(format!("a manifest with unchanged content read as {other:?}")),
            };
        }
        Ok(changed) => changed,
    };
    match (&read, changed.format_version == FORMAT_VERSION) {
        (Err(ArtifactError::ManifestChecksumMismatch { .. }), true) => {}
        (Err(ArtifactError::UnsupportedFormat { .. }), false) => {}
        _ => return Err(format!("a manifest whose content changed read as {read:?}; it must fail its checksum")),
    }
    // Re-sealed, the changed content passes the checksum and meets validation.
    let resealed = changed.to_json().map_err(|e| format!("to_json failed on a parsed manifest: {e}"))?;
    match Manifest::from_json(&resealed) {
        Ok(_) => {}
        Err(ArtifactError::Manifest(reason)) if !reason.trim().is_empty() => return Ok("changed, resealed, refused"),
        Err(ArtifactError::UnsupportedFormat { .. }) if changed.format_version != FORMAT_VERSION => {
            return Ok("changed, resealed, refused");
        }
        Err(other) => return Err(format!("a resealed manifest refused with {other:?}")),
    }
    let network = &changed.network;
    let mut widths =
        std::iter::once(network.n_features).chain(network.hidden_layers.iter().copied()).chain([network.n_outputs]);
    if widths.any(|w| w > MAX_BUILT_WIDTH) {
        return Ok("changed, resealed, accepted (too big to build here)");
    }
    let artifact = match Artifact::from_parts(&resealed, weights.to_vec()) {
        Ok(artifact) => artifact,
        Err(_) => return Ok("changed, resealed, accepted, artifact refused"),
    };
    let predictor = match Predictor::new(&artifact) {
        Ok(predictor) => predictor,
        Err(_) => return Ok("changed, resealed, accepted, predictor refused"),
    };
    // A model that loads predicts (or refuses a row) without panicking.
    let names: Vec<String> = predictor.schema().feature_names();
    for pick in 0..3 {
        let record: Vec<(&str, Cell<'_>)> = names
            .iter()
            .map(|name| {
                let cell = match (pick, name.as_str()) {
                    (0, "city") => Cell::Text("Oslo"),
                    (0, _) => Cell::Number(72.5),
                    (1, _) => Cell::Missing,
                    (_, "city") => Cell::Text("Paris"),
                    _ => Cell::Text("3"),
                };
                (name.as_str(), cell)
            })
            .collect();
        let _ = predictor.predict_records(&[record]);
    }
    Ok("changed, resealed, loaded and predicted")
}

// =============================================================================================
// The targets
// =============================================================================================

#[test]
fn fuzz_v2_json_requests() {
    let server = Server::new();
    fuzz(
        "fuzz_v2_json_requests",
        |rng| v2_json_case(rng, &server.models),
        show_http,
        |case| check_v2_case(&server, case),
    );
}

#[test]
fn fuzz_v2_binary_requests() {
    let server = Server::new();
    fuzz(
        "fuzz_v2_binary_requests",
        |rng| v2_binary_case(rng, &server.models),
        show_http,
        |case| check_v2_case(&server, case),
    );
}

#[test]
fn fuzz_v1_requests() {
    let server = Server::new();
    fuzz("fuzz_v1_requests", |rng| v1_case(rng, &server.models), show_http, |case| check_v1_case(&server, case));
}

#[test]
fn fuzz_batch_csv_and_jsonl() {
    let fixture = Fixture::new();
    let houses = Model::load(&fixture, "houses", 1);
    fuzz(
        "fuzz_batch_csv_and_jsonl",
        |rng| if rng.percent(50) { csv_case(rng, &houses) } else { jsonl_case(rng, &houses) },
        show_batch,
        |case| check_batch_case(&houses, case),
    );
}

#[test]
fn fuzz_manifest_reader() {
    let fixture = Fixture::new();
    let dir = fixture.root.join("houses").join("1");
    let original_bytes = std::fs::read(dir.join("manifest.json")).expect("the fixture's manifest");
    let weights = std::fs::read(dir.join("weights.mpk")).expect("the fixture's weights");
    let original = Manifest::from_json(&original_bytes).expect("the fixture's manifest reads");
    fuzz(
        "fuzz_manifest_reader",
        |rng| manifest_case(rng, &original_bytes),
        show_manifest,
        |case| check_manifest_case(&original, &weights, case),
    );
}

// =============================================================================================
// Reproducers of bugs the fuzzers found, kept as regression tests
// =============================================================================================

/// Found by `fuzz_manifest_reader`: a manifest that passes its checksum and validation, whose
/// weights pass theirs, but whose `network.hidden_layers` names another number of layers than the
/// weights hold, made `Predictor::new` panic inside burn's `load_record` instead of returning
/// `ArtifactError::Weights`, and so stopped the server instead of skipping that version.
#[test]
fn reproducer_a_manifest_naming_another_number_of_hidden_layers_is_refused_not_a_panic() {
    let fixture = Fixture::new();
    let dir = fixture.root.join("houses").join("1");
    let weights = std::fs::read(dir.join("weights.mpk")).expect("the fixture's weights");
    let manifest_json = std::fs::read(dir.join("manifest.json")).expect("the fixture's manifest");
    for layers in [vec![8, 6, 6], vec![8]] {
        let mut manifest = Manifest::from_json(&manifest_json).expect("the fixture's manifest reads");
        manifest.network.hidden_layers = layers.clone();
        let resealed = manifest.to_json().expect("the manifest serializes");
        let artifact = Artifact::from_parts(&resealed, weights.clone()).expect("the checksums and validation pass");
        let outcome = catch_unwind(AssertUnwindSafe(|| Predictor::new(&artifact).map(|_| ())));
        match outcome {
            Ok(Err(ArtifactError::Weights(_))) => {}
            Ok(other) => panic!("hidden_layers {layers:?}: Predictor::new gave {other:?}, expected a Weights error"),
            Err(payload) => panic!("hidden_layers {layers:?}: Predictor::new panicked: {}", panic_text(&*payload)),
        }
    }
    // What it means for serving: a repository holding such a version must still load, with that
    // version reported as failed.
    let mut manifest = Manifest::from_json(&manifest_json).expect("the fixture's manifest reads");
    manifest.network.hidden_layers = vec![8, 6, 6];
    std::fs::write(dir.join("manifest.json"), manifest.to_json().expect("serializes")).expect("write the manifest");
    let loaded = catch_unwind(AssertUnwindSafe(|| serving::Registry::load_repository(&fixture.root, false)));
    match loaded {
        Ok(Ok(registry)) => assert!(
            registry.failures().iter().any(|f| f.model == "houses" && f.version == 1),
            "houses/1 is reported as failed"
        ),
        Ok(Err(error)) => panic!("the repository did not load: {error:#}"),
        Err(payload) => panic!("loading the repository panicked: {}", panic_text(&*payload)),
    }
}
