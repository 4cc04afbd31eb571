//! The numbers a benchmark run produces, for people and for scripts.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde::Serialize;

pub use super::server::ServerSide;
use super::{record, usage};
use crate::cli::BenchArgs;

/// One run's results. Serialised as the `--json` line; field names are a
/// contract for scripts (`calls`, `rps`, `p50_ms`, `p99_ms`, `errors` at
/// least).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The queue driven.
    pub queue: String,
    /// Calls completed (answered or failed), not counting the first probe.
    pub calls: u64,
    /// Calls answered with a success.
    pub ok: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Failed calls by kind (`timeout`, `remote_invalid_argument`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Calls kept in flight.
    pub inflight: usize,
    /// Request body size.
    pub body_bytes: usize,
    /// Wall-clock time of the run.
    pub duration_s: f64,
    /// Completed calls per second.
    pub rps: f64,
    /// Latency of successful calls, in milliseconds.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// CPU time this client used during the run, when known.
    pub client_cpu_s: Option<f64>,
    /// This client's peak resident memory, when known.
    pub client_peak_rss_mib: Option<f64>,
    /// One sample a second through the run.
    pub timeline: Vec<Sample>,
    /// What the server saw of the run, from its /metrics
    /// (`--server-http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the start at the end of this second (1, 2, …; the last
    /// may be a fraction).
    pub t_s: f64,
    /// Calls answered in this second, per second (error replies included:
    /// they are answers); zero while the server or the broker is out of
    /// reach.
    pub rps: f64,
    /// Calls that failed without an answer in this second (lost connection,
    /// timeout, no server).
    pub errors: u64,
    /// This client's largest resident memory seen in this second, when
    /// known.
    pub rss_mib: Option<f64>,
}

/// The timeline: one sample per second of a run that lasted `duration_s`.
/// A last second shorter than a tenth is left out: its rate would be noise.
fn timeline(seconds: &[record::Second], duration_s: f64, rss: &[Option<f64>]) -> Vec<Sample> {
    seconds
        .iter()
        .enumerate()
        .filter_map(|(i, second)| {
            let start = i as f64;
            let width = (duration_s - start).min(1.0);
            (width >= 0.1).then(|| Sample {
                t_s: start + width,
                rps: second.answered as f64 / width,
                errors: second.failed,
                rss_mib: rss.get(i).copied().flatten(),
            })
        })
        .collect()
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Summary {
    pub(super) fn new(
        args: &BenchArgs,
        seen: &record::Inner,
        elapsed: Duration,
        cpu: Option<Duration>,
        rss_by_second: &[Option<f64>],
    ) -> Summary {
        let latencies = &seen.latencies;
        let ok = latencies.len();
        let errors: u64 = seen.errors.values().sum();
        let calls = ok + errors;
        let duration_s = elapsed.as_secs_f64();
        let empty = latencies.is_empty();
        let quantile = |q: f64| {
            if empty {
                0.0
            } else {
                ms(latencies.value_at_quantile(q))
            }
        };
        Summary {
            queue: args.queue.clone(),
            calls,
            ok,
            errors,
            errors_by_kind: seen.errors.clone(),
            inflight: args.inflight,
            body_bytes: args.body_size.unwrap_or(args.body.len()),
            duration_s,
            rps: if duration_s > 0.0 {
                calls as f64 / duration_s
            } else {
                0.0
            },
            mean_ms: if empty {
                0.0
            } else {
                latencies.mean() / 1000.0
            },
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if empty { 0.0 } else { ms(latencies.max()) },
            client_cpu_s: cpu.map(|cpu| cpu.as_secs_f64()),
            client_peak_rss_mib: usage::peak_rss().map(|bytes| bytes as f64 / 1048576.0),
            timeline: timeline(&seen.seconds, duration_s, rss_by_second),
            server: None,
        }
    }

    /// The summary as a few lines of text.
    pub fn human(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} calls to '{}', {} in flight, {}-byte body",
            self.calls, self.queue, self.inflight, self.body_bytes
        );
        let _ = writeln!(
            text,
            "  throughput  {:.0} calls/s over {:.2} s",
            self.rps, self.duration_s
        );
        let _ = writeln!(
            text,
            "  latency     p50 {:.3} ms · p90 {:.3} ms · p99 {:.3} ms · p99.9 {:.3} ms · max {:.3} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        let errors = if self.errors == 0 {
            "none".to_owned()
        } else {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            format!("{} ({})", self.errors, kinds.join(", "))
        };
        let _ = writeln!(text, "  errors      {errors}");
        if let Some(outage) = self.outage() {
            let _ = writeln!(text, "  outage      {outage}");
        }
        let cpu = match self.client_cpu_s {
            Some(cpu) if self.duration_s > 0.0 => {
                format!("CPU {cpu:.2} s ({:.2} of a core)", cpu / self.duration_s)
            }
            _ => "CPU n/a".to_owned(),
        };
        let rss = self
            .client_peak_rss_mib
            .map_or("peak RSS n/a".to_owned(), |mib| {
                format!("peak RSS {mib:.1} MiB")
            });
        if let Some(server) = &self.server {
            let answered: u64 = server.answered_by_code.values().sum();
            let codes: Vec<String> = server
                .answered_by_code
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(
                text,
                "  server      {answered} answered ({}) · mean {:.3} ms · p50 ≈ {:.3} ms · p99 ≈ {:.3} ms (its /metrics)",
                codes.join(", "),
                server.mean_ms,
                server.p50_ms,
                server.p99_ms
            );
        }
        let _ = write!(text, "  client      {cpu} · {rss}");
        text
    }

    /// The seconds of the timeline without answers or with failed calls,
    /// in words, e.g. `no answers in 2 of 10 seconds (4-6 s); 50 failed
    /// calls in 4-5 s`. `None` for a run without either.
    fn outage(&self) -> Option<String> {
        let span = |sample: &Sample| {
            let end = sample.t_s.ceil();
            format!("{:.0}-{end:.0} s", end - 1.0)
        };
        let silent: Vec<&Sample> = self.timeline.iter().filter(|s| s.rps == 0.0).collect();
        let mut parts = Vec::new();
        if !silent.is_empty() {
            let spans: Vec<String> = silent.iter().map(|s| span(s)).collect();
            parts.push(format!(
                "no answers in {} of {} seconds ({})",
                silent.len(),
                self.timeline.len(),
                spans.join(", ")
            ));
        }
        let failing: Vec<String> = self
            .timeline
            .iter()
            .filter(|s| s.errors > 0)
            .map(|s| format!("{} in {}", s.errors, span(s)))
            .collect();
        if !failing.is_empty() {
            parts.push(format!("failed calls: {}", failing.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The summary as one line of JSON.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }
}
