//! What a server counts, per procedure: requests answered, refused,
//! expired, dropped, redelivered, requeued; and its reconnections.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::metrics::{Outcome, ProcedureMetrics};

/// A running server's counters, readable at any time from another task:
/// for the whole server ([`Server::stats`](crate::Server::stats)) or one
/// procedure ([`Server::procedure_stats`](crate::Server::procedure_stats)).
/// Cheap to clone: clones share the counters.
#[derive(Debug, Clone)]
pub struct ServerStats {
    procedures: Arc<[Arc<Counters>]>,
    reconnections: Arc<AtomicU64>,
}

/// One procedure's counters, and its measurements for the application's
/// metrics recorder (see [`crate::metrics`]).
#[derive(Debug)]
pub(super) struct Counters {
    answered: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    dropped: AtomicU64,
    redelivered: AtomicU64,
    requeued: AtomicU64,
    refused: AtomicU64,
    denied: AtomicU64,
    pub(super) metrics: ProcedureMetrics,
}

/// Which counter to add one to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    Answered,
    Error,
    Expired,
    Dropped,
    Redelivered,
    Requeued,
    Refused,
    Denied,
}

impl Counters {
    /// Zeroes for the procedure on `queue`.
    pub(super) fn new(queue: &str) -> Counters {
        Counters {
            answered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            metrics: ProcedureMetrics::new(queue),
        }
    }

    pub(super) fn add(&self, count: Count) {
        let (counter, outcome) = match count {
            Count::Answered => (&self.answered, None),
            Count::Error => (&self.errors, None),
            Count::Expired => (&self.expired, Some(Outcome::Expired)),
            Count::Dropped => (&self.dropped, Some(Outcome::Dropped)),
            Count::Redelivered => (&self.redelivered, Some(Outcome::Redelivered)),
            Count::Requeued => (&self.requeued, Some(Outcome::Requeued)),
            Count::Refused => (&self.refused, Some(Outcome::Refused)),
            Count::Denied => (&self.denied, Some(Outcome::Denied)),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(outcome) = outcome {
            self.metrics.outcome(outcome);
        }
    }
}

impl ServerStats {
    /// The stats of `procedures` together.
    pub(super) fn of(procedures: &[Arc<Counters>], reconnections: &Arc<AtomicU64>) -> ServerStats {
        ServerStats {
            procedures: procedures.iter().cloned().collect(),
            reconnections: Arc::clone(reconnections),
        }
    }

    pub(super) fn reconnected(&self) {
        self.reconnections.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(crate::metrics::SERVER_RECONNECTIONS).increment(1);
    }

    fn sum(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.procedures
            .iter()
            .map(|counters| counter(counters).load(Ordering::Relaxed))
            .sum()
    }

    /// Requests answered, successfully or with an error reply.
    pub fn answered(&self) -> u64 {
        self.sum(|c| &c.answered)
    }

    /// Of [`ServerStats::answered`], those answered with an error reply
    /// (handler errors, panics, refused input).
    pub fn errors(&self) -> u64 {
        self.sum(|c| &c.errors)
    }

    /// Requests acknowledged without running the handler because their
    /// caller's deadline had passed, or because their caller was gone
    /// (asked after a lost connection: its direct reply-to address no
    /// longer had a consumer).
    pub fn expired(&self) -> u64 {
        self.sum(|c| &c.expired)
    }

    /// Requests that could not be answered (no `reply_to`, a `reply_to`
    /// that would loop, or a reply the broker refused to take) and were
    /// rejected without requeueing: dead-lettered
    /// when the queue has a dead-letter exchange, else dropped.
    pub fn dropped(&self) -> u64 {
        self.sum(|c| &c.dropped)
    }

    /// Requests the broker marked as delivered before (to a server that
    /// crashed or lost its connection first). They run again: at-least-once.
    pub fn redelivered(&self) -> u64 {
        self.sum(|c| &c.redelivered)
    }

    /// Requests received but not started when the server began shutting
    /// down, handed back to the queue for another server.
    pub fn requeued(&self) -> u64 {
        self.sum(|c| &c.requeued)
    }

    /// Requests refused because their `reply_to` is not an address the
    /// server may answer (see
    /// [`ServerBuilder::allow_reply_to_prefix`](crate::ServerBuilder::allow_reply_to_prefix)):
    /// not run, not answered, rejected without requeue.
    pub fn refused(&self) -> u64 {
        self.sum(|c| &c.refused)
    }

    /// Requests refused for their caller (see
    /// [`ServerBuilder::allow_callers`](crate::ServerBuilder::allow_callers)):
    /// answered with `permission_denied` or `unauthenticated`, the handler
    /// not run. Also counted as answered with an error.
    pub fn denied(&self) -> u64 {
        self.sum(|c| &c.denied)
    }

    /// How many times the server reconnected after losing the broker.
    pub fn reconnections(&self) -> u64 {
        self.reconnections.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered ({} with errors), {} expired, {} dropped, {} refused for their reply_to, {} denied for their caller, {} redelivered, {} requeued, {} reconnections",
            self.answered(),
            self.errors(),
            self.expired(),
            self.dropped(),
            self.refused(),
            self.denied(),
            self.redelivered(),
            self.requeued(),
            self.reconnections()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_sums_its_procedures() {
        let (a, b) = (Arc::new(Counters::new("a")), Arc::new(Counters::new("b")));
        let reconnections = Arc::default();
        let all = ServerStats::of(&[Arc::clone(&a), Arc::clone(&b)], &reconnections);
        let only_b = ServerStats::of(&[Arc::clone(&b)], &reconnections);
        a.add(Count::Answered);
        b.add(Count::Answered);
        b.add(Count::Refused);
        all.reconnected();
        assert_eq!((all.answered(), all.refused()), (2, 1));
        assert_eq!((only_b.answered(), only_b.reconnections()), (1, 1));
    }
}
