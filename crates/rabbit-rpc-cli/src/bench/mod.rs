//! `rabbit-rpc bench`: drive any tutorial-compatible server with many calls
//! in flight and report throughput, latency percentiles, errors and the
//! client's own cost.

mod report;
mod summary;
pub mod usage;

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rabbit_rpc::{CallOptions, Client, Error};

pub use summary::{Sample, Summary};

use crate::cli::BenchArgs;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
/// three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What one worker saw.
struct WorkerResult {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// How many calls, or for how long.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Calls(u64),
    Until(Instant),
}

/// Shared between workers and the progress ticker.
struct Progress {
    plan: Plan,
    issued: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    /// Claims the right to start one more call.
    fn take(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.plan {
            Plan::Calls(total) => self.issued.fetch_add(1, Ordering::Relaxed) < total,
            Plan::Until(end) => Instant::now() < end,
        }
    }
}

/// Runs the benchmark and returns its summary. The first call is made alone
/// and must be answered, so a missing server fails fast with its own error.
///
/// # Errors
/// Connecting, or that first call.
pub async fn bench(urls: &[String], args: &BenchArgs) -> Result<Summary, Error> {
    let client = Client::builder()
        .urls(urls)
        .timeout(args.timeout)
        .publisher_confirms(args.publisher_confirms)
        .connection_name("rabbit-rpc bench")
        .connect()
        .await?;
    let mut options = CallOptions::new().timeout(args.timeout);
    if !args.content_type.is_empty() {
        options = options.content_type(&args.content_type);
    }
    let body = args.body_bytes();
    match client.call_with(&args.queue, &body, &options).await {
        // An error reply is an answer: benchmarking the error path is fine.
        Ok(_) | Err(Error::Remote(_)) => {}
        Err(error) => return Err(error),
    }

    let started = Instant::now();
    let plan = match args.duration {
        Some(duration) => Plan::Until(started + duration),
        None => Plan::Calls(args.calls),
    };
    let progress = Arc::new(Progress {
        plan,
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let cpu_before = usage::cpu_time();

    let workers: Vec<_> = (0..args.inflight)
        .map(|_| {
            let client = client.clone();
            let progress = Arc::clone(&progress);
            let queue = args.queue.clone();
            let body = body.clone();
            let options = options.clone();
            tokio::spawn(async move { worker(&client, &queue, &body, &options, &progress).await })
        })
        .collect();
    let ticker = tokio::spawn(tick(Arc::clone(&progress), plan, started));

    let mut latencies = new_histogram();
    let mut errors = BTreeMap::new();
    for worker in workers {
        let Ok(result) = worker.await else { continue };
        latencies
            .add(&result.latencies)
            .expect("histograms share bounds");
        for (kind, count) in result.errors {
            *errors.entry(kind).or_insert(0) += count;
        }
    }
    let elapsed = started.elapsed();
    progress.stop.store(true, Ordering::Relaxed);
    let timeline = ticker.await.unwrap_or_default();
    let cpu = match (cpu_before, usage::cpu_time()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let _ = client.close().await;

    let summary = Summary::new(args, &latencies, errors, elapsed, cpu, timeline);
    if let Some(path) = &args.report
        && let Err(error) = report::write_svg(path, &summary, &latencies)
    {
        eprintln!(
            "warning: cannot write the report to {}: {error}",
            path.display()
        );
    }
    Ok(summary)
}

async fn worker(
    client: &Client,
    queue: &str,
    body: &[u8],
    options: &CallOptions,
    progress: &Progress,
) -> WorkerResult {
    let mut result = WorkerResult {
        latencies: new_histogram(),
        errors: BTreeMap::new(),
    };
    while progress.take() {
        let sent = Instant::now();
        let outcome = client.call_with(queue, body, options).await;
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        progress.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(_) => result.latencies.saturating_record(micros.max(1)),
            Err(error) => {
                // Without a connection every further call fails at once:
                // stop rather than spin.
                if error.is_connection_lost() {
                    progress.stop.store(true, Ordering::Relaxed);
                }
                *result.errors.entry(error_kind(&error)).or_insert(0) += 1;
            }
        }
    }
    result
}

/// A short, stable name for an error, for counting.
fn error_kind(error: &Error) -> String {
    match error {
        Error::Remote(status) => format!("remote_{}", status.code()),
        Error::Timeout { .. } => "timeout".to_owned(),
        Error::NoRoute { .. } | Error::NoServer { .. } => "no_server".to_owned(),
        Error::ConnectionLost { .. } => "connection_lost".to_owned(),
        _ => "other".to_owned(),
    }
}

/// Samples completed calls (and this process's memory) every second for the
/// timeline, and drives the
/// progress bar on a terminal (nothing is drawn otherwise).
async fn tick(progress: Arc<Progress>, plan: Plan, started: Instant) -> Vec<Sample> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = match plan {
            Plan::Calls(total) => ProgressBar::new(total),
            Plan::Until(end) => ProgressBar::new(
                u64::try_from(end.duration_since(started).as_millis()).unwrap_or(u64::MAX),
            ),
        };
        let template = match plan {
            Plan::Calls(_) => "{bar:40} {pos}/{len} calls · {msg}",
            Plan::Until(_) => "{bar:40} {elapsed} · {msg}",
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        Some(bar)
    } else {
        None
    };
    let mut timeline = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    let mut last_second = (Instant::now(), 0u64);
    let mut rate = 0.0;
    while !progress.stop.load(Ordering::Relaxed) {
        interval.tick().await;
        let now = Instant::now();
        let done = progress.done.load(Ordering::Relaxed);
        let window = now.duration_since(last.0).as_secs_f64();
        if window > 0.0 {
            rate = (done - last.1) as f64 / window;
        }
        last = (now, done);
        if now.duration_since(last_second.0) >= Duration::from_secs(1) {
            let seconds = now.duration_since(last_second.0).as_secs_f64();
            timeline.push(Sample {
                t_s: now.duration_since(started).as_secs_f64(),
                rps: (done - last_second.1) as f64 / seconds,
                rss_mib: usage::rss().map(|bytes| bytes as f64 / 1048576.0),
            });
            last_second = (now, done);
        }
        if let Some(bar) = &bar {
            match plan {
                Plan::Calls(_) => bar.set_position(done),
                Plan::Until(_) => bar.set_position(
                    u64::try_from(now.duration_since(started).as_millis()).unwrap_or(0),
                ),
            }
            bar.set_message(format!("{rate:.0} calls/s"));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    timeline
}
