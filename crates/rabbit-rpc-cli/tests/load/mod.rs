//! Calls under load for the fault tests (`faults.rs`, `cluster.rs`): workers
//! that keep calls in flight on one client until told to stop, the outcome
//! of every call, and the checks on them.

#![allow(dead_code, missing_docs)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use rabbit_rpc::{CallOptions, Client};
use tokio::{task::JoinHandle, time::Instant};

/// How many of them are in flight at once.
pub const IN_FLIGHT: usize = 100;
/// How many must be answered before the fault is injected.
pub const ANSWERED_BEFORE_FAULT: usize = 500;
/// Each call's timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bodies cycle through n = 0..=90: every fib(n) fits a u64.
pub const LARGEST_N: usize = 90;

pub fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0_u64, 1_u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

/// One call of a load run.
pub struct Outcome {
    pub n: u64,
    pub started: Instant,
    pub ended: Instant,
    pub result: Result<String, rabbit_rpc::Error>,
}

impl Outcome {
    pub fn is_correct(&self) -> bool {
        matches!(&self.result, Ok(text) if *text == fib(self.n).to_string())
    }

    pub fn describe(&self) -> String {
        format!(
            "fib({}) after {:?}: {:?} (expected {})",
            self.n,
            self.ended - self.started,
            self.result,
            fib(self.n)
        )
    }
}

/// Calls running in the background: [`IN_FLIGHT`] workers share `calls`
/// calls on one client, bodies cycling through n = 0..=90.
pub struct Load {
    pub answered: Arc<AtomicUsize>,
    pub stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Outcome>>,
    pub started: Instant,
}

pub fn start_load(client: &Client, queue: &str, calls: usize) -> Load {
    start_load_with(client, queue, calls, IN_FLIGHT)
}

/// [`start_load`] with `in_flight` workers.
pub fn start_load_with(client: &Client, queue: &str, calls: usize, in_flight: usize) -> Load {
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let options = CallOptions::new().timeout(CALL_TIMEOUT);
    let workers: Vec<JoinHandle<Vec<Outcome>>> = (0..in_flight)
        .map(|_| {
            let (client, queue, options) = (client.clone(), queue.to_owned(), options.clone());
            let (answered, stop, next) =
                (Arc::clone(&answered), Arc::clone(&stop), Arc::clone(&next));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= calls {
                        break;
                    }
                    let n = u64::try_from(i % (LARGEST_N + 1)).unwrap();
                    let started = Instant::now();
                    let result = client
                        .call_with(&queue, n.to_string(), &options)
                        .await
                        .map(|reply| reply.text().into_owned());
                    let ended = Instant::now();
                    if result.is_ok() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    outcomes.push(Outcome {
                        n,
                        started,
                        ended,
                        result,
                    });
                }
                outcomes
            })
        })
        .collect();
    let task = tokio::spawn(async move {
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.expect("load worker panicked"));
        }
        all
    });
    Load {
        answered,
        stop,
        task,
        started: Instant::now(),
    }
}

impl Load {
    /// Waits until `count` calls were answered.
    pub async fn wait_answered(&self, count: usize) {
        let answered = &self.answered;
        crate::common::wait_until(
            Duration::from_secs(60),
            &format!("{count} calls are answered"),
            move || async move { answered.load(Ordering::SeqCst) >= count },
        )
        .await;
    }

    /// Waits for every call to end, failing the test after `limit`.
    pub async fn finish(self, limit: Duration, logs: &str) -> Vec<Outcome> {
        match tokio::time::timeout(limit, self.task).await {
            Ok(outcomes) => outcomes.expect("load task"),
            Err(_) => panic!("the load did not finish within {limit:?}\n{logs}"),
        }
    }
}

/// Fails the test unless all `calls` calls returned the right number.
pub fn assert_all_correct(outcomes: &[Outcome], calls: usize, logs: &str) {
    assert_eq!(outcomes.len(), calls, "not every call ran\n{logs}");
    let wrong: Vec<&Outcome> = outcomes.iter().filter(|o| !o.is_correct()).collect();
    let timeouts = wrong
        .iter()
        .filter(|o| matches!(&o.result, Err(e) if e.is_timeout()))
        .count();
    assert!(
        wrong.is_empty(),
        "{} of {calls} calls failed or got a wrong answer ({timeouts} timed out); first ones:\n{}\n{logs}",
        wrong.len(),
        wrong
            .iter()
            .take(10)
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

pub fn slowest(outcomes: &[Outcome]) -> Duration {
    outcomes
        .iter()
        .map(|o| o.ended - o.started)
        .max()
        .unwrap_or_default()
}
