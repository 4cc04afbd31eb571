//! Where a call's deadline is enforced on the client: one timer around the
//! whole call ([`Clock::run`]), instead of one per step. The steps inside
//! (waiting for a connection, publishing, waiting for the reply, asking the
//! broker whether anybody serves the queue) just wait; when the deadline
//! comes, the call ends with the error of the phase it was in.
//!
//! The same timer also tells the call when to check for a server (a while
//! after publishing, if no reply has come): one timer per call on the hot
//! path, as before there was a clock.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    task::Poll,
    time::Duration,
};

use tokio::time::Instant;

use crate::{Error, deadline::Deadline};

/// What a call was doing when its deadline came: it decides the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a connection (the client is reconnecting): the caller
    /// hears `ConnectionLost`, with why the client is not connected.
    Connecting,
    /// Published, or publishing: the caller hears `Timeout`.
    Sent,
}

/// One call's deadline, the phase it is in, and when it checks for a
/// server.
#[derive(Debug)]
pub(super) struct Clock {
    deadline: Deadline,
    /// How long after publishing an unanswered call asks whether anybody
    /// consumes its queue.
    check_after: Duration,
    /// A [`Phase`], as a number.
    phase: AtomicU8,
    /// When the request was first published: the check counts from there,
    /// so a call that waited for the client to reconnect gets the same
    /// grace as any other.
    published: OnceLock<Instant>,
    /// Set by [`Clock::run`] when the time to check has come.
    check_due: AtomicBool,
}

impl Clock {
    pub(super) fn new(deadline: Deadline, check_after: Duration) -> Clock {
        Clock {
            deadline,
            check_after,
            phase: AtomicU8::new(Phase::Connecting as u8),
            published: OnceLock::new(),
            check_due: AtomicBool::new(false),
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The call is waiting for a (new) connection.
    pub(super) fn connecting(&self) {
        self.phase.store(Phase::Connecting as u8, Ordering::Relaxed);
    }

    /// The call is publishing its request (again, for a resilient call).
    pub(super) fn publishing(&self) {
        self.phase.store(Phase::Sent as u8, Ordering::Relaxed);
        if self.published.get().is_none() {
            let _ = self.published.set(Instant::now());
        }
    }

    fn phase(&self) -> Phase {
        if self.phase.load(Ordering::Relaxed) == Phase::Connecting as u8 {
            Phase::Connecting
        } else {
            Phase::Sent
        }
    }

    /// Completes once it is time to check for a server. Only meaningful
    /// inside [`Clock::run`], which polls the call again as soon as it sets
    /// the flag (so this needs no waker of its own).
    pub(super) async fn check_due(&self) {
        poll_fn(|_| {
            if self.check_due.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Runs `call` until it ends or the deadline comes; then it is dropped
    /// (its in-flight entry with it) and `ended` says what the caller hears
    /// for the phase it was in.
    pub(super) async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, Error>>,
        ended: impl FnOnce(Phase) -> Error,
    ) -> Result<T, Error> {
        let mut call = pin!(call);
        let deadline = self.deadline.instant();
        // A timer registers when first polled, after the call has started
        // (published, on the hot path).
        let first = (Instant::now() + self.check_after).min(deadline);
        let mut timer = pin!(tokio::time::sleep_until(first));
        let mut ended = Some(ended);
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(result) = call.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                if now >= deadline {
                    let ended = ended
                        .take()
                        .expect("a clock's call is not polled after it ended");
                    return Poll::Ready(Err(ended(self.phase())));
                }
                let next = match self.published.get() {
                    Some(&published) if published + self.check_after <= now => {
                        self.check_due.store(true, Ordering::Relaxed);
                        deadline
                    }
                    Some(&published) => published + self.check_after,
                    // Still waiting to publish: look again later.
                    None => now + self.check_after,
                };
                timer.as_mut().reset(next.min(deadline));
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Error {
        Error::lost("reconnecting")
    }

    fn timed_out() -> Error {
        Error::Timeout {
            queue: "q".to_owned(),
            after: Duration::from_secs(1),
        }
    }

    fn clock(timeout: Duration, check_after: Duration) -> Clock {
        Clock::new(Deadline::after(Instant::now(), timeout), check_after)
    }

    fn ended(phase: Phase) -> Error {
        match phase {
            Phase::Connecting => lost(),
            Phase::Sent => timed_out(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_connecting_at_its_deadline_is_connection_lost() {
        let clock = clock(Duration::from_secs(1), Duration::from_millis(500));
        let error = clock
            .run(std::future::pending::<Result<(), Error>>(), ended)
            .await
            .unwrap_err();
        assert!(error.is_connection_lost(), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_sent_at_its_deadline_is_a_timeout() {
        let clock = clock(Duration::from_secs(1), Duration::from_millis(500));
        let started = Instant::now();
        let call = async {
            clock.publishing();
            std::future::pending::<Result<(), Error>>().await
        };
        let error = clock.run(call, ended).await.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_check_comes_its_while_after_publishing_not_after_the_start() {
        let clock = clock(Duration::from_secs(10), Duration::from_secs(2));
        let started = Instant::now();
        let call = async {
            // Three seconds reconnecting, then published.
            tokio::time::sleep(Duration::from_secs(3)).await;
            clock.publishing();
            clock.check_due().await;
            Ok::<_, Error>(started.elapsed())
        };
        assert_eq!(
            clock.run(call, ended).await.unwrap(),
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_ends_in_time_keeps_its_result() {
        let clock = clock(Duration::from_secs(1), Duration::from_millis(500));
        let call = async {
            clock.publishing();
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok::<_, Error>(7)
        };
        assert_eq!(clock.run(call, ended).await.unwrap(), 7);
    }
}
