//! Prometheus metrics in the text exposition format: requests by model, protocol and outcome,
//! latency histograms by model, rows predicted, and requests in flight. Written by hand over a
//! few counters, because the server needs nothing more than this.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use shared_inference::Predictions;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS_SECONDS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS_SECONDS.len()],
    sum_seconds: f64,
    count: u64,
}

/// One model's counters. Keyed by model name, so a request finds them without allocating.
#[derive(Debug, Default)]
struct ModelCounters {
    /// Requests by (protocol, outcome): a handful of fixed strings, found by address first
    /// (this runs on every request), sorted when rendered.
    requests: Vec<((&'static str, &'static str), u64)>,
    latency: Histogram,
    rows: u64,
}

/// Counters by model, version and label ("" when the request named no label).
#[derive(Debug, Default)]
struct Counters {
    models: BTreeMap<String, BTreeMap<u64, BTreeMap<String, ModelCounters>>>,
    shadow: BTreeMap<String, BTreeMap<u64, ShadowCounters>>,
}

/// Upper bounds of the buckets of the largest difference between a shadow's answer and the
/// served one (absolute, in the output's units: the prediction, or a class probability).
const DIFFERENCE_BUCKETS: [f64; 8] = [0.0, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0];

#[derive(Debug, Default)]
struct ShadowCounters {
    requests: u64,
    failed: u64,
    dropped: u64,
    rows: u64,
    rows_differing: u64,
    difference: [u64; DIFFERENCE_BUCKETS.len()],
    compared: u64,
}

/// How a shadow prediction went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShadowOutcome {
    /// Compared: rows, rows whose answer differs (another label, or other bits), and the
    /// largest absolute difference.
    Compared { rows: usize, differing: usize, max_difference: f64 },
    /// The shadow version could not answer the request, or answered another shape.
    Failed,
    /// Not run: the shadow's share of the inference threads was taken.
    Dropped,
}

/// Compares a shadow's predictions with the served ones.
pub fn compare(served: &Predictions, shadow: &Predictions) -> ShadowOutcome {
    match (served, shadow) {
        (Predictions::Regression { values: a }, Predictions::Regression { values: b }) if a.len() == b.len() => {
            let differing = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            let max_difference = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
            ShadowOutcome::Compared { rows: a.len(), differing, max_difference }
        }
        (
            Predictions::Classification { probabilities: pa, labels: la, n_classes: na },
            Predictions::Classification { probabilities: pb, labels: lb, n_classes: nb },
        ) if na == nb && la.len() == lb.len() => {
            let differing = la.iter().zip(lb).filter(|(x, y)| x != y).count();
            let max_difference = pa.iter().zip(pb).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
            ShadowOutcome::Compared { rows: la.len(), differing, max_difference }
        }
        _ => ShadowOutcome::Failed,
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    in_flight: AtomicI64,
}

/// Decrements the in-flight gauge when dropped, whatever path the request takes.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records one finished inference request. `model` and `label` must be a served model's
    /// name and a configured label (or a fixed placeholder), never client-chosen strings, to
    /// keep label cardinality bounded.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        model: &str,
        version: u64,
        label: Option<&str>,
        protocol: &'static str,
        outcome: &'static str,
        elapsed: Duration,
        rows: usize,
    ) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        if !c.models.contains_key(model) {
            c.models.insert(model.to_string(), BTreeMap::new());
        }
        let Some(versions) = c.models.get_mut(model) else {
            return;
        };
        let labels = versions.entry(version).or_default();
        let label = label.unwrap_or("");
        if !labels.contains_key(label) {
            labels.insert(label.to_string(), ModelCounters::default());
        }
        let Some(m) = labels.get_mut(label) else {
            return;
        };
        let same = |a: &'static str, b: &'static str| std::ptr::eq(a, b) || a == b;
        match m.requests.iter_mut().find(|((p, o), _)| same(p, protocol) && same(o, outcome)) {
            Some((_, n)) => *n += 1,
            None => m.requests.push(((protocol, outcome), 1)),
        }
        m.rows += rows as u64;
        let h = &mut m.latency;
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS_SECONDS.iter().zip(h.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.sum_seconds += seconds;
        h.count += 1;
    }

    /// Records one shadow prediction of `model` version `version`.
    pub fn record_shadow(&self, model: &str, version: u64, outcome: ShadowOutcome) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        if !c.shadow.contains_key(model) {
            c.shadow.insert(model.to_string(), BTreeMap::new());
        }
        let Some(versions) = c.shadow.get_mut(model) else {
            return;
        };
        let s = versions.entry(version).or_default();
        s.requests += 1;
        match outcome {
            ShadowOutcome::Compared { rows, differing, max_difference } => {
                s.compared += 1;
                s.rows += rows as u64;
                s.rows_differing += differing as u64;
                for (bound, count) in DIFFERENCE_BUCKETS.iter().zip(s.difference.iter_mut()) {
                    if max_difference <= *bound {
                        *count += 1;
                    }
                }
            }
            ShadowOutcome::Failed => s.failed += 1,
            ShadowOutcome::Dropped => s.dropped += 1,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(c) = self.counters.lock() else {
            return out;
        };
        let series: Vec<(String, &ModelCounters)> = c
            .models
            .iter()
            .flat_map(|(model, versions)| {
                versions.iter().flat_map(move |(version, labels)| {
                    labels.iter().map(move |(label, m)| {
                        let mut key = format!("model=\"{model}\",version=\"{version}\"");
                        if !label.is_empty() {
                            let _ = write!(key, ",label=\"{label}\"");
                        }
                        (key, m)
                    })
                })
            })
            .collect();
        out.push_str(
            "# HELP serving_requests_total Inference requests by model, version, label, protocol and outcome.\n",
        );
        out.push_str("# TYPE serving_requests_total counter\n");
        for (key, m) in &series {
            let mut requests = m.requests.clone();
            requests.sort_unstable();
            for ((protocol, outcome), n) in &requests {
                let _ =
                    writeln!(out, "serving_requests_total{{{key},protocol=\"{protocol}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        out.push_str("# HELP serving_request_duration_seconds Inference request latency, body read to response.\n");
        out.push_str("# TYPE serving_request_duration_seconds histogram\n");
        for (key, m) in &series {
            let h = &m.latency;
            for (bound, count) in BUCKETS_SECONDS.iter().zip(h.counts) {
                let _ = writeln!(out, "serving_request_duration_seconds_bucket{{{key},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "serving_request_duration_seconds_bucket{{{key},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "serving_request_duration_seconds_sum{{{key}}} {}", h.sum_seconds);
            let _ = writeln!(out, "serving_request_duration_seconds_count{{{key}}} {}", h.count);
        }
        out.push_str("# HELP serving_rows_predicted_total Rows predicted by model, version and label.\n");
        out.push_str("# TYPE serving_rows_predicted_total counter\n");
        for (key, m) in series.iter().filter(|(_, m)| m.rows > 0) {
            let _ = writeln!(out, "serving_rows_predicted_total{{{key}}} {}", m.rows);
        }
        if !c.shadow.is_empty() {
            out.push_str(
                "# HELP serving_shadow_requests_total Requests also predicted by a shadow version, by outcome.\n",
            );
            out.push_str("# TYPE serving_shadow_requests_total counter\n");
            for (model, versions) in &c.shadow {
                for (version, s) in versions {
                    let key = format!("model=\"{model}\",version=\"{version}\"");
                    let _ = writeln!(out, "serving_shadow_requests_total{{{key},outcome=\"compared\"}} {}", s.compared);
                    let _ = writeln!(out, "serving_shadow_requests_total{{{key},outcome=\"failed\"}} {}", s.failed);
                    let _ = writeln!(out, "serving_shadow_requests_total{{{key},outcome=\"dropped\"}} {}", s.dropped);
                }
            }
            out.push_str(
                "# HELP serving_shadow_rows_total Rows a shadow version predicted, and those whose answer differs.\n",
            );
            out.push_str("# TYPE serving_shadow_rows_total counter\n");
            for (model, versions) in &c.shadow {
                for (version, s) in versions {
                    let key = format!("model=\"{model}\",version=\"{version}\"");
                    let _ = writeln!(out, "serving_shadow_rows_total{{{key},answer=\"any\"}} {}", s.rows);
                    let _ =
                        writeln!(out, "serving_shadow_rows_total{{{key},answer=\"different\"}} {}", s.rows_differing);
                }
            }
            out.push_str("# HELP serving_shadow_max_difference Largest absolute difference per compared request.\n");
            out.push_str("# TYPE serving_shadow_max_difference histogram\n");
            for (model, versions) in &c.shadow {
                for (version, s) in versions {
                    let key = format!("model=\"{model}\",version=\"{version}\"");
                    for (bound, count) in DIFFERENCE_BUCKETS.iter().zip(s.difference) {
                        let _ = writeln!(out, "serving_shadow_max_difference_bucket{{{key},le=\"{bound}\"}} {count}");
                    }
                    let _ = writeln!(out, "serving_shadow_max_difference_bucket{{{key},le=\"+Inf\"}} {}", s.compared);
                    let _ = writeln!(out, "serving_shadow_max_difference_count{{{key}}} {}", s.compared);
                }
            }
        }
        out.push_str("# HELP serving_in_flight_requests Inference requests being processed.\n");
        out.push_str("# TYPE serving_in_flight_requests gauge\n");
        let _ = writeln!(out, "serving_in_flight_requests {}", self.in_flight.load(Ordering::Relaxed));
        out
    }
}
