//! A call's deadline: the moment its caller stops waiting, how it travels
//! on the wire, and how much of it is left.
//!
//! The wire carries a relative timeout, never a moment, so that clocks need
//! not agree (as gRPC's `grpc-timeout` and tarpc's context do): a client
//! sends its remaining time as the request's `expiration` (see
//! [`protocol::expiration_ms`]); a server reads it back, or the
//! `rpc-timeout-ms` header, and counts it from when it received the request
//! ([`Deadline::of_request`]). Where each side enforces it:
//!
//! - the client, `client/deadline.rs`: one timer per call, which knows the
//!   phase the call was in when it fired (`Timeout` or `ConnectionLost`);
//! - the server, `server/deadline.rs`: a request past its deadline is not
//!   started, and a handler still running when it passes is cancelled.

use std::time::Duration;

use tokio::time::Instant;

use crate::{protocol, transport::Properties};

/// A deadline for timeouts too long to represent: about 30 years.
const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The moment a caller stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `timeout` from `start`. A timeout too large for the clock
    /// (`Duration::MAX` for "no timeout") is a deadline that never comes.
    pub(crate) fn after(start: Instant, timeout: Duration) -> Deadline {
        Deadline(start + timeout.min(NEVER))
    }

    /// The deadline a request carries, as its server sees it: the caller's
    /// timeout (`rpc-timeout-ms`, else `expiration`) counted from
    /// `received`. `None` when it carries none, or one too large for the
    /// clock.
    pub(crate) fn of_request(properties: &Properties, received: Instant) -> Option<Deadline> {
        protocol::request_timeout(properties)
            .and_then(|timeout| received.checked_add(timeout))
            .map(Deadline)
    }

    /// The moment itself.
    pub(crate) fn instant(self) -> Instant {
        self.0
    }

    /// What is left of it now; zero once it has passed.
    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub(crate) fn has_passed(self) -> bool {
        Instant::now() >= self.0
    }
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;

    use super::*;

    #[test]
    fn the_expiration_is_at_least_one_millisecond_and_absent_past_the_brokers_limit() {
        assert_eq!(protocol::expiration_ms(Duration::from_micros(10)), Some(1));
        assert_eq!(
            protocol::expiration_ms(Duration::from_millis(1500)),
            Some(1500)
        );
        assert_eq!(
            protocol::expiration_ms(protocol::MAX_SENT_TIMEOUT),
            Some(u64::from(u32::MAX))
        );
        assert_eq!(protocol::expiration_ms(Duration::MAX), None);
    }

    #[test]
    fn a_timeout_too_long_for_the_clock_never_comes() {
        let now = Instant::now();
        let never = Deadline::after(now, Duration::MAX);
        assert!(never.instant() > now + Duration::from_secs(365 * 24 * 3600));
        assert!(!never.has_passed());
    }

    #[test]
    fn a_requests_deadline_counts_from_receipt() {
        let received = Instant::now();
        let properties = Properties::Amqp(BasicProperties::default().with_expiration("250".into()));
        let deadline = Deadline::of_request(&properties, received).unwrap();
        assert_eq!(deadline.instant(), received + Duration::from_millis(250));
        assert!(deadline.remaining() <= Duration::from_millis(250));
        let none = Properties::Amqp(BasicProperties::default());
        assert_eq!(Deadline::of_request(&none, received), None);
    }
}
