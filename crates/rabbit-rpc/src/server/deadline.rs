//! Where the server enforces a request's deadline: before the handler
//! starts ([`passed`]), and while it runs ([`Limit::enforce`]).
//!
//! A handler runs until the earlier of two moments: its caller's deadline
//! (the request's timeout counted from receipt, see [`crate::deadline`]),
//! and the server's own cap, `handler_timeout` counted from the handler's
//! start, if one is set. When the caller's comes first, nobody waits for
//! the answer: the handler is cancelled and nothing is published. When the
//! server's cap comes first, the caller is still waiting: the handler is
//! cancelled and the caller is answered `deadline_exceeded`.

use std::{future::Future, pin::pin, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deadline::Deadline;

/// Whether a request's caller stopped waiting before it started.
pub(super) fn passed(deadline: Option<Deadline>) -> bool {
    deadline.is_some_and(Deadline::has_passed)
}

/// Which limit ended a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exceeded {
    /// The caller's deadline: nobody reads an answer now.
    Caller,
    /// The server's own `handler_timeout`, this long: the caller waits.
    Server(Duration),
}

/// When a handler that starts now is cancelled, and why; and the signal
/// its [`Context`](crate::Context) shows it.
#[derive(Debug)]
pub(super) struct Limit {
    at: Instant,
    by: Exceeded,
    signal: CancellationToken,
}

impl Limit {
    /// The earlier of the caller's `deadline` and `handler_timeout` from
    /// now; `None` when there is neither (nothing to enforce, nothing to
    /// allocate).
    pub(super) fn new(
        deadline: Option<Deadline>,
        handler_timeout: Option<Duration>,
    ) -> Option<Limit> {
        let own = handler_timeout
            .and_then(|timeout| Some((Instant::now().checked_add(timeout)?, timeout)));
        let (at, by) = match (deadline.map(Deadline::instant), own) {
            (None, None) => return None,
            (Some(caller), Some((own, timeout))) if own < caller => {
                (own, Exceeded::Server(timeout))
            }
            (Some(caller), _) => (caller, Exceeded::Caller),
            (None, Some((own, timeout))) => (own, Exceeded::Server(timeout)),
        };
        Some(Limit {
            at,
            by,
            signal: CancellationToken::new(),
        })
    }

    /// The signal fired when the limit comes, for the handler's context.
    pub(super) fn signal(&self) -> CancellationToken {
        self.signal.clone()
    }

    /// Runs `work` (the handler) until it ends or the limit comes; then it
    /// is dropped, after the signal fires (so a blocking handler, which
    /// dropping cannot stop, sees it and can stop; its result is thrown
    /// away).
    pub(super) async fn enforce<T>(self, work: impl Future<Output = T>) -> Result<T, Exceeded> {
        let mut work = pin!(work);
        tokio::select! {
            biased;
            done = &mut work => Ok(done),
            () = tokio::time::sleep_until(self.at) => {
                self.signal.cancel();
                Err(self.by)
            }
        }
    }
}

/// `work` within `limit`, if there is one.
pub(super) async fn within<T>(
    limit: Option<Limit>,
    work: impl Future<Output = T>,
) -> Result<T, Exceeded> {
    match limit {
        Some(limit) => limit.enforce(work).await,
        None => Ok(work.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(after: Duration) -> Option<Deadline> {
        Some(Deadline::after(Instant::now(), after))
    }

    #[tokio::test(start_paused = true)]
    async fn the_smaller_of_the_callers_deadline_and_the_servers_cap_wins() {
        let second = Duration::from_secs(1);
        let limit = |deadline, cap| Limit::new(deadline, cap).map(|l| l.by);
        assert_eq!(limit(None, None), None);
        assert_eq!(limit(caller(second), None), Some(Exceeded::Caller));
        assert_eq!(limit(None, Some(second)), Some(Exceeded::Server(second)));
        assert_eq!(
            limit(caller(second * 2), Some(second)),
            Some(Exceeded::Server(second))
        );
        assert_eq!(
            limit(caller(second), Some(second * 2)),
            Some(Exceeded::Caller)
        );
        // A tie: the caller has given up, so nothing is answered.
        assert_eq!(limit(caller(second), Some(second)), Some(Exceeded::Caller));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_its_limit_is_dropped_after_the_signal_fires() {
        struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::default();
        let limit = Limit::new(caller(Duration::from_secs(1)), None).unwrap();
        let signal = limit.signal();
        let guard = Dropped(std::sync::Arc::clone(&dropped));
        let work = async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        };
        assert_eq!(limit.enforce(work).await, Err(Exceeded::Caller));
        assert!(signal.is_cancelled());
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        let quick = within(Limit::new(caller(Duration::from_secs(1)), None), async {
            5
        });
        assert_eq!(quick.await, Ok(5));
        assert_eq!(within(None, async { 6 }).await, Ok(6));
    }
}
