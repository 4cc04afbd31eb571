//! Replies no call waits for: late ones (after their call timed out), a
//! second reply to one request, a stranger's, one without a
//! `correlation_id`. They are dropped, counted
//! ([`Client::unknown_replies`](super::Client::unknown_replies)) and
//! logged at DEBUG at most once every [`LOG_EVERY`], so a server that
//! floods a client with them grows neither its memory nor its log.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::debug;

/// The shortest time between two log lines about dropped replies.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a reply is dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stray<'a> {
    /// It carries this `correlation_id`, which no call waits on.
    Unawaited(&'a str),
    /// It carries no `correlation_id` at all.
    Unmarked,
}

/// The dropped replies of one client, over all its connections.
#[derive(Debug, Default)]
pub(crate) struct Strays {
    count: AtomicU64,
    log: Mutex<LogWindow>,
}

#[derive(Debug, Default)]
struct LogWindow {
    /// When the last line was logged.
    last_line: Option<Instant>,
    /// Replies dropped since then, not logged.
    unlogged: u64,
}

impl Strays {
    /// Counts a dropped reply, and logs it unless a line was logged lately.
    pub(crate) fn note(&self, stray: Stray<'_>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let Some(unlogged) = self.due(Instant::now()) else {
            return;
        };
        match stray {
            Stray::Unawaited(id) => debug!(
                correlation_id = %id,
                unlogged,
                "dropping a reply no call is waiting for (late, a duplicate, or not this \
                 client's); {unlogged} more dropped since the last such line"
            ),
            Stray::Unmarked => debug!(
                unlogged,
                "dropping a reply without correlation_id; {unlogged} more dropped since the \
                 last such line"
            ),
        }
    }

    /// How many replies were dropped.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether a reply dropped at `now` gets a line: if so, how many were
    /// dropped without one since the last.
    fn due(&self, now: Instant) -> Option<u64> {
        let mut window = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match window.last_line {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                window.unlogged += 1;
                None
            }
            _ => {
                window.last_line = Some(now);
                Some(std::mem::take(&mut window.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_of_the_rest() {
        let strays = Strays::default();
        let start = Instant::now();
        assert_eq!(strays.due(start), Some(0));
        for n in 1..=1000 {
            assert_eq!(strays.due(start + Duration::from_millis(n)), None);
        }
        assert_eq!(strays.due(start + LOG_EVERY), Some(1000));
        assert_eq!(strays.due(start + LOG_EVERY), None);
        for _ in 0..5 {
            strays.note(Stray::Unmarked);
        }
        assert_eq!(strays.count(), 5);
    }
}
