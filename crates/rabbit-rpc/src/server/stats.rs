//! What a server counts: requests answered, refused, expired, dropped,
//! redelivered, and reconnections.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// A running server's counters, readable at any time from another task.
/// Cheap to clone: clones share the counters. Get one from
/// [`Server::stats`](super::Server::stats) before serving.
#[derive(Debug, Clone, Default)]
pub struct ServerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    answered: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    dropped: AtomicU64,
    redelivered: AtomicU64,
    requeued: AtomicU64,
    refused: AtomicU64,
    reconnections: AtomicU64,
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
    Reconnection,
}

impl ServerStats {
    pub(super) fn add(&self, count: Count) {
        let counters = &*self.0;
        let counter = match count {
            Count::Answered => &counters.answered,
            Count::Error => &counters.errors,
            Count::Expired => &counters.expired,
            Count::Dropped => &counters.dropped,
            Count::Redelivered => &counters.redelivered,
            Count::Requeued => &counters.requeued,
            Count::Refused => &counters.refused,
            Count::Reconnection => &counters.reconnections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered, successfully or with an error reply.
    pub fn answered(&self) -> u64 {
        self.0.answered.load(Ordering::Relaxed)
    }

    /// Of [`ServerStats::answered`], those answered with an error reply
    /// (handler errors, panics, refused input).
    pub fn errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    /// Requests acknowledged without running the handler because their
    /// caller's deadline had passed.
    pub fn expired(&self) -> u64 {
        self.0.expired.load(Ordering::Relaxed)
    }

    /// Requests that could not be answered (no `reply_to`, or a `reply_to`
    /// that would loop) and were rejected without requeueing: dead-lettered
    /// when the queue has a dead-letter exchange, else dropped.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Requests the broker marked as delivered before (to a server that
    /// crashed or lost its connection first). They run again: at-least-once.
    pub fn redelivered(&self) -> u64 {
        self.0.redelivered.load(Ordering::Relaxed)
    }

    /// Requests received but not started when the server began shutting
    /// down, handed back to the queue for another server.
    pub fn requeued(&self) -> u64 {
        self.0.requeued.load(Ordering::Relaxed)
    }

    /// Requests refused because their `reply_to` is not an address the
    /// server may answer (see
    /// [`ServerBuilder::allow_reply_to_prefix`](super::ServerBuilder::allow_reply_to_prefix)):
    /// not run, not answered, rejected without requeue.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// How many times the server reconnected after losing the broker.
    pub fn reconnections(&self) -> u64 {
        self.0.reconnections.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered ({} with errors), {} expired, {} dropped, {} refused for their reply_to, {} redelivered, {} requeued, {} reconnections",
            self.answered(),
            self.errors(),
            self.expired(),
            self.dropped(),
            self.refused(),
            self.redelivered(),
            self.requeued(),
            self.reconnections()
        )
    }
}
