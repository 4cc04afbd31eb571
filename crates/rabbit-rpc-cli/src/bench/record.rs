//! What a run saw: the latency of every answered call, failures by kind,
//! and answered and failed calls in each second of the run.
//!
//! One record is shared by every call in flight, so the bench's own memory
//! does not grow with `--inflight`: a latency histogram is about 170 KB, and
//! one per call in flight would dwarf what the library itself uses.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use rabbit_rpc::Error;

/// Calls answered and failed in one second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Second {
    pub(super) answered: u64,
    pub(super) failed: u64,
}

/// The run's record; see the module docs.
pub(super) struct Record {
    started: Instant,
    inner: Mutex<Inner>,
}

/// What the record holds, taken out at the end of the run.
pub(super) struct Inner {
    /// Latencies of successful calls, in microseconds.
    pub(super) latencies: Histogram<u64>,
    /// Failed calls (error replies included) by kind.
    pub(super) errors: BTreeMap<String, u64>,
    /// Second `i` counts the calls that ended between `i` and `i + 1`
    /// seconds after the start.
    pub(super) seconds: Vec<Second>,
}

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
/// three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Record {
    /// An empty record for a run starting at `started`.
    pub(super) fn new(started: Instant) -> Record {
        Record {
            started,
            inner: Mutex::new(Inner {
                latencies: new_histogram(),
                errors: BTreeMap::new(),
                seconds: Vec::new(),
            }),
        }
    }

    /// Records one call that was sent at `sent` and ended now with
    /// `outcome`.
    pub(super) fn call<T>(&self, sent: Instant, outcome: &Result<T, Error>) {
        let now = Instant::now();
        let micros = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
        let second = usize::try_from(now.duration_since(self.started).as_secs()).unwrap_or(0);
        let mut inner = self.lock();
        if inner.seconds.len() <= second {
            inner.seconds.resize(second + 1, Second::default());
        }
        match outcome {
            Ok(_) => {
                inner.latencies.saturating_record(micros.max(1));
                inner.seconds[second].answered += 1;
            }
            Err(error) => {
                // An error reply is an answer; anything else is an outage.
                if error.status().is_some() {
                    inner.seconds[second].answered += 1;
                } else {
                    inner.seconds[second].failed += 1;
                }
                *inner.errors.entry(error_kind(error)).or_insert(0) += 1;
            }
        }
    }

    /// Calls answered and failed so far.
    pub(super) fn totals(&self) -> Second {
        let inner = self.lock();
        inner
            .seconds
            .iter()
            .fold(Second::default(), |sum, second| Second {
                answered: sum.answered + second.answered,
                failed: sum.failed + second.failed,
            })
    }

    /// Everything recorded, with the per-second counts covering `elapsed`
    /// (seconds without a call ending in them count as zero).
    pub(super) fn finish(self, elapsed: Duration) -> Inner {
        let mut inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        let seconds = usize::try_from(elapsed.as_secs_f64().ceil() as u64).unwrap_or(0);
        if inner.seconds.len() < seconds {
            inner.seconds.resize(seconds, Second::default());
        }
        inner
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update is a few additions: a panic cannot leave it half done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_in_the_second_they_end_and_fills_silent_seconds() {
        let started = Instant::now() - Duration::from_millis(2500);
        let record = Record::new(started);
        let ok: Result<(), Error> = Ok(());
        let lost: Result<(), Error> = Err(Error::ConnectionLost {
            reason: "cut".into(),
            source: None,
        });
        let refused: Result<(), Error> =
            Err(Error::Remote(rabbit_rpc::Status::invalid_argument("n")));
        record.call(Instant::now(), &ok);
        record.call(Instant::now(), &lost);
        record.call(Instant::now(), &refused);
        assert_eq!(
            record.totals(),
            Second {
                answered: 2,
                failed: 1
            }
        );
        let inner = record.finish(Duration::from_millis(4200));
        assert_eq!(inner.seconds.len(), 5);
        assert_eq!(inner.seconds[0], Second::default());
        assert_eq!(
            inner.seconds[2],
            Second {
                answered: 2,
                failed: 1
            }
        );
        assert_eq!(inner.latencies.len(), 1);
        assert_eq!(inner.errors["connection_lost"], 1);
        assert_eq!(inner.errors["remote_invalid_argument"], 1);
    }
}
