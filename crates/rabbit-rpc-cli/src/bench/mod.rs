//! `rabbit-rpc bench`: drive any tutorial-compatible server with many calls
//! in flight and report throughput, latency percentiles, errors and the
//! client's own cost.

mod record;
mod report;
mod server;
mod summary;
pub mod usage;

use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use rabbit_rpc::{CallOptions, Client, Error};

pub use summary::{Sample, Summary};

use crate::cli::BenchArgs;
use record::Record;

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
/// and must be answered, so a missing queue, server or broker fails fast
/// with its own error. After that the run goes on until `--calls` or
/// `--duration` whatever happens: a call that fails (a lost connection, say)
/// is counted, and the calls after it wait for the client to reconnect, so
/// the timeline shows the outage.
///
/// # Errors
/// Connecting, or that first call.
pub async fn bench(urls: &[String], args: &BenchArgs) -> Result<Summary, Error> {
    let client = Client::builder()
        .urls(urls)
        .timeout(args.timeout)
        .publisher_confirms(args.publisher_confirms)
        .reply_queue(crate::call::reply_queue(args.resilient))
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

    let server_before = match &args.server_http {
        Some(address) => server_scrape(address, &args.queue).await,
        None => None,
    };
    let started = Instant::now();
    let plan = match args.duration {
        Some(duration) => Plan::Until(started + duration),
        None => Plan::Calls(args.calls),
    };
    let progress = Arc::new(Progress {
        plan,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let record = Arc::new(Record::new(started));
    let cpu_before = usage::cpu_time();

    let workers: Vec<_> = (0..args.inflight)
        .map(|_| {
            let client = client.clone();
            let progress = Arc::clone(&progress);
            let record = Arc::clone(&record);
            let queue = args.queue.clone();
            let body = body.clone();
            let options = options.clone();
            tokio::spawn(async move {
                worker(&client, &queue, &body, &options, &progress, &record).await;
            })
        })
        .collect();
    let ticker = tokio::spawn(tick(
        Arc::clone(&progress),
        Arc::clone(&record),
        plan,
        started,
    ));
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    progress.stop.store(true, Ordering::Relaxed);
    let rss = ticker.await.unwrap_or_default();
    let cpu = match (cpu_before, usage::cpu_time()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let _ = client.close().await;
    let server = match (&args.server_http, server_before) {
        (Some(address), Some(before)) => server_scrape(address, &args.queue)
            .await
            .map(|after| after.since(&before)),
        _ => None,
    };

    // Every worker has ended, so this is the last reference.
    let record = Arc::into_inner(record).expect("workers and ticker have ended");
    let seen = record.finish(elapsed);
    let mut summary = Summary::new(args, &seen, elapsed, cpu, &rss);
    summary.server = server;
    if let Some(path) = &args.report
        && let Err(error) = report::write_svg(path, &summary, &seen.latencies)
    {
        eprintln!(
            "warning: cannot write the report to {}: {error}",
            path.display()
        );
    }
    Ok(summary)
}

/// A scrape of the server's /metrics, or a warning (the run goes on
/// without the server's figures).
async fn server_scrape(address: &str, queue: &str) -> Option<server::Scrape> {
    match server::scrape(address, queue).await {
        Ok(scrape) => Some(scrape),
        Err(error) => {
            eprintln!("warning: {error}; the summary leaves out the server's figures");
            None
        }
    }
}

/// Makes calls one after another while the plan allows.
async fn worker(
    client: &Client,
    queue: &str,
    body: &[u8],
    options: &CallOptions,
    progress: &Progress,
    record: &Record,
) {
    while progress.take() {
        let sent = Instant::now();
        let outcome = client.call_with(queue, body, options).await;
        // A failed call is counted and the run goes on: a call made while
        // the client reconnects waits for the new connection (within its
        // timeout) instead of failing at once, so this cannot spin.
        record.call(sent, &outcome);
    }
}

/// Drives the progress bar on a terminal (nothing is drawn otherwise) and
/// samples this process's memory; returns the largest resident size seen
/// in each second of the run, in MiB.
async fn tick(
    progress: Arc<Progress>,
    record: Arc<Record>,
    plan: Plan,
    started: Instant,
) -> Vec<Option<f64>> {
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(plan, started));
    let mut rss: Vec<Option<f64>> = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    while !progress.stop.load(Ordering::Relaxed) {
        interval.tick().await;
        let now = Instant::now();
        let second = usize::try_from(now.duration_since(started).as_secs()).unwrap_or(0);
        if rss.len() <= second {
            rss.resize(second + 1, None);
        }
        if let Some(bytes) = usage::rss() {
            let mib = bytes as f64 / 1048576.0;
            rss[second] = Some(rss[second].map_or(mib, |seen: f64| seen.max(mib)));
        }
        let Some(bar) = &bar else { continue };
        let totals = record.totals();
        let window = now.duration_since(last.0).as_secs_f64();
        if window > 0.0 {
            rate = (totals.answered - last.1) as f64 / window;
        }
        last = (now, totals.answered);
        match plan {
            Plan::Calls(_) => bar.set_position(totals.answered + totals.failed),
            Plan::Until(_) => bar
                .set_position(u64::try_from(now.duration_since(started).as_millis()).unwrap_or(0)),
        }
        if totals.failed == 0 {
            bar.set_message(format!("{rate:.0} calls/s"));
        } else {
            bar.set_message(format!("{rate:.0} calls/s · {} failed", totals.failed));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    rss
}

fn progress_bar(plan: Plan, started: Instant) -> ProgressBar {
    let (bar, template) = match plan {
        Plan::Calls(total) => (
            ProgressBar::new(total),
            "{bar:40} {pos}/{len} calls · {msg}",
        ),
        Plan::Until(end) => (
            ProgressBar::new(
                u64::try_from(end.duration_since(started).as_millis()).unwrap_or(u64::MAX),
            ),
            "{bar:40} {elapsed} · {msg}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}
