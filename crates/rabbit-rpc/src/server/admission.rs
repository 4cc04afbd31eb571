//! Admission: whether a request is taken, before any work. Its gates, in
//! order: a `reply_to` to answer (not the request queue itself, one the
//! server allows), a caller still there (after a lost connection), a
//! control request (answered by the library), a deadline not passed yet,
//! then the checks that refuse with a status (the caller policy, the
//! request's id, its size). Each gives a [`Verdict`].

use std::borrow::Cow;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{caller_policy, deadline, reply::Origin, reply_to, running::Running, stats::Count};
use crate::{
    Status,
    deadline::Deadline,
    protocol::{self, MAX_CORRELATION_ID_LEN},
    transport::Properties,
};

/// What becomes of a request, once admission has looked at it.
pub(super) enum Verdict<'a> {
    /// Its connection is gone: the request is back in the queue, nothing
    /// more to do here.
    Lost,
    /// Nowhere to answer, or nowhere allowed: rejected (dead-lettered if
    /// the queue has a dead-letter exchange, else dropped), counted so.
    Reject(Count),
    /// Its caller gave up (left, or its deadline passed): acknowledged
    /// unstarted, counted expired.
    Expired,
    /// A ping or describe, answered by the library, not the handler.
    Control {
        control: Cow<'a, str>,
        reply_to: &'a str,
    },
    /// To answer: by its handler when `admitted`, else with the refusal.
    Answer {
        reply_to: &'a str,
        deadline: Option<Deadline>,
        admitted: Result<(), Status>,
    },
}

impl Running {
    /// Runs a request through the gates, in order; the first that stops it
    /// gives the verdict.
    pub(super) async fn admit<'a>(
        &self,
        properties: &'a Properties,
        body: &[u8],
        received: Instant,
        origin: &Origin,
    ) -> Verdict<'a> {
        let reply_to = match properties.reply_to() {
            Some(reply_to) if !reply_to.is_empty() => reply_to,
            _ => {
                warn!(queue = %self.queue, "dropping a request without reply_to: there is nowhere to answer");
                return Verdict::Reject(Count::Dropped);
            }
        };
        if reply_to == &*self.queue {
            warn!(queue = %self.queue, "dropping a request whose reply_to is the request queue itself: answering would loop");
            return Verdict::Reject(Count::Dropped);
        }
        if !self.shared.reply_to.allows(reply_to) {
            reply_to::log_refused(&self.shared.refusals, &self.queue, reply_to);
            return Verdict::Reject(Count::Refused);
        }
        if let Some(callers) = &origin.callers {
            // Boxed: asked only after a lost connection, and its future
            // (a passive declare) would otherwise make every request's
            // task larger.
            let gone = tokio::select! {
                biased;
                gone = Box::pin(callers.gone(reply_to)) => gone,
                // The request is back in the queue with its connection.
                () = origin.lost.cancelled() => return Verdict::Lost,
            };
            if gone {
                // Answering would reach no one, and on some RabbitMQ
                // versions costs the connection (see `Callers`).
                return Verdict::Expired;
            }
        }
        // Ping and describe: answered by the library, not the handler, and
        // not counted (see `control`). One header lookup, for requests with
        // headers only.
        if let Some(control) = protocol::control(properties) {
            return Verdict::Control { control, reply_to };
        }
        // A timeout too large for the clock means no deadline. Checked
        // after the caller check, which may have taken a while.
        let deadline = Deadline::of_request(properties, received);
        if deadline::passed(deadline) {
            debug!(queue = %self.queue, "skipping a request whose caller stopped waiting");
            return Verdict::Expired;
        }
        let admitted = self.check(properties, body);
        // Lost while waiting for a slot: the request is back in the queue;
        // running it here would run it twice.
        if admitted.is_ok() && origin.lost.is_cancelled() {
            return Verdict::Lost;
        }
        Verdict::Answer {
            reply_to,
            deadline,
            admitted,
        }
    }

    /// Checks a request can be worked on, before any work: its caller, its
    /// id, its size.
    pub(super) fn check(&self, properties: &Properties, body: &[u8]) -> Result<(), Status> {
        if self.callers.is_set() {
            let caller = properties.user_id();
            if let Err(status) = self.callers.check(&self.queue, caller) {
                caller_policy::log_denied(&self.shared.denials, &self.queue, caller, &status);
                self.counters.add(Count::Denied);
                return Err(status);
            }
        }
        check_id(properties)?;
        if body.len() > self.max_request_size {
            return Err(Status::resource_exhausted(format!(
                "the request body is {} bytes; this server accepts at most {}",
                body.len(),
                self.max_request_size
            )));
        }
        Ok(())
    }
}

/// Checks the request carries an id its reply can be matched by, of a
/// length this server accepts.
pub(super) fn check_id(properties: &Properties) -> Result<(), Status> {
    let Some(id) = protocol::request_id(properties) else {
        return Err(Status::invalid_argument(
            "the request has no correlation_id (nor message_id); set one so the reply can be matched",
        ));
    };
    if id.len() > MAX_CORRELATION_ID_LEN {
        let which = if properties.correlation_id().is_some() {
            "correlation_id"
        } else {
            "message_id"
        };
        return Err(Status::invalid_argument(format!(
            "the {which} is {} bytes; this server accepts at most {MAX_CORRELATION_ID_LEN}",
            id.len()
        )));
    }
    Ok(())
}
