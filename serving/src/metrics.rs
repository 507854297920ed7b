//! Prometheus metrics in the text exposition format: requests by model, protocol and outcome,
//! latency histograms by model, rows predicted, and requests in flight. Written by hand over a
//! few counters, because the server needs nothing more than this.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

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
    requests: BTreeMap<(&'static str, &'static str), u64>,
    latency: Histogram,
    rows: u64,
}

#[derive(Debug, Default)]
struct Counters {
    models: BTreeMap<String, ModelCounters>,
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

    /// Records one finished inference request. `model` must be a served model's name (or a
    /// fixed placeholder), never a client-chosen string, to keep label cardinality bounded.
    pub fn record(&self, model: &str, protocol: &'static str, outcome: &'static str, elapsed: Duration, rows: usize) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        if !c.models.contains_key(model) {
            c.models.insert(model.to_string(), ModelCounters::default());
        }
        let Some(m) = c.models.get_mut(model) else {
            return;
        };
        *m.requests.entry((protocol, outcome)).or_default() += 1;
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(c) = self.counters.lock() else {
            return out;
        };
        out.push_str("# HELP serving_requests_total Inference requests by model, protocol and outcome.\n");
        out.push_str("# TYPE serving_requests_total counter\n");
        for (model, m) in &c.models {
            for ((protocol, outcome), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "serving_requests_total{{model=\"{model}\",protocol=\"{protocol}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP serving_request_duration_seconds Inference request latency, body read to response.\n");
        out.push_str("# TYPE serving_request_duration_seconds histogram\n");
        for (model, h) in c.models.iter().map(|(model, m)| (model, &m.latency)) {
            for (bound, count) in BUCKETS_SECONDS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "serving_request_duration_seconds_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ =
                writeln!(out, "serving_request_duration_seconds_bucket{{model=\"{model}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "serving_request_duration_seconds_sum{{model=\"{model}\"}} {}", h.sum_seconds);
            let _ = writeln!(out, "serving_request_duration_seconds_count{{model=\"{model}\"}} {}", h.count);
        }
        out.push_str("# HELP serving_rows_predicted_total Rows predicted by model.\n");
        out.push_str("# TYPE serving_rows_predicted_total counter\n");
        for (model, m) in c.models.iter().filter(|(_, m)| m.rows > 0) {
            let _ = writeln!(out, "serving_rows_predicted_total{{model=\"{model}\"}} {}", m.rows);
        }
        out.push_str("# HELP serving_in_flight_requests Inference requests being processed.\n");
        out.push_str("# TYPE serving_in_flight_requests gauge\n");
        let _ = writeln!(out, "serving_in_flight_requests {}", self.in_flight.load(Ordering::Relaxed));
        out
    }
}
