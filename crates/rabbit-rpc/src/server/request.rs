//! One request's life on the server: checks before any work, the deadline,
//! the handler (panics caught), the reply, then the acknowledgement.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, warn};

use super::{
    about::About,
    caller_policy::{self, CallerPolicy},
    callers::Callers,
    context::Context,
    deadline::{self, Exceeded, Limit},
    handler::{ErasedHandler, Request, Response},
    queue::QueueSettings,
    reply_to,
    shared::{Failure, Shared},
    stats::{Count, Counters},
};
use crate::{
    Code, Status,
    deadline::Deadline,
    protocol::{self, ERROR_CONTENT_TYPE, MAX_CORRELATION_ID_LEN, MAX_DETAILS},
    trace,
    transport::{Acker, Channel, Confirmed, Connection, Delivery, Properties},
};

/// Error messages longer than this are cut: they are for people.
const MAX_ERROR_MESSAGE: usize = 64 * 1024;

/// The channels replies go out on: their own, not the requests' (each
/// channel is one process in the broker, so this spreads the work, about +8%
/// measured).
#[derive(Debug, Clone)]
pub(super) struct Replies {
    /// In confirm mode: a request is acknowledged once the broker has its
    /// reply.
    confirmed: Channel,
    /// A request is acknowledged once its reply is written (the same
    /// channel as `confirmed` when every reply is confirmed).
    unconfirmed: Channel,
}

impl Replies {
    pub(super) async fn open(
        connection: &Connection,
        confirm_all: bool,
    ) -> Result<Replies, crate::Error> {
        let confirmed = connection.channel().await?;
        confirmed.confirm().await?;
        let unconfirmed = if confirm_all {
            confirmed.clone()
        } else {
            connection.channel().await?
        };
        Ok(Replies {
            confirmed,
            unconfirmed,
        })
    }

    /// The channel for a reply to `reply_to`. Replies to a resilient
    /// client's reply queue are confirmed: that queue outlives the caller's
    /// connection, so a reply the broker has confirmed reaches the caller
    /// even after it reconnects, and one it has not goes to another server.
    pub(super) fn to(&self, reply_to: &str) -> &Channel {
        if reply_to.starts_with(protocol::REPLY_QUEUE_PREFIX) {
            &self.confirmed
        } else {
            &self.unconfirmed
        }
    }
}

/// A procedure as the server runs it, for the server's whole life.
pub(super) struct Running {
    pub(super) queue: Arc<str>,
    pub(super) handler: Arc<dyn ErasedHandler>,
    pub(super) prefetch: u16,
    pub(super) declare: QueueSettings,
    pub(super) max_request_size: usize,
    pub(super) max_reply_size: usize,
    /// The server's own cap on a handler's run (see [`deadline`]).
    pub(super) handler_timeout: Option<Duration>,
    pub(super) counters: Arc<Counters>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) shared: Arc<Shared>,
    /// Who may call it.
    pub(super) callers: CallerPolicy,
    /// What its control replies say (see [`super::control`]).
    pub(super) control: About,
}

/// Where a request came from: the connection it arrived on. Replies and
/// acknowledgements must use it.
#[derive(Clone)]
pub(super) struct Origin {
    pub(super) replies: Replies,
    /// Set after a lost connection (see [`Callers`]).
    pub(super) callers: Option<Arc<Callers>>,
    pub(super) failure: Arc<Failure>,
    /// Cancelled when the connection is lost: its requests are back in the
    /// queue, so those not started yet must not run.
    pub(super) lost: CancellationToken,
}

impl Running {
    /// Waits for a free handler slot, then processes the delivery; a request
    /// still waiting for a slot when draining starts goes back to the queue.
    pub(super) async fn run(
        self: Arc<Self>,
        delivery: Delivery,
        received: Instant,
        origin: Origin,
    ) {
        let draining = &self.shared.draining;
        // A free slot needs no waiting (the common case): no futures to
        // set up for the token checks.
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => tokio::select! {
                biased;
                () = origin.lost.cancelled() => return,
                () = draining.cancelled() => None,
                permit = Arc::clone(&self.permits).acquire_owned() => permit.ok(),
            },
        };
        if origin.lost.is_cancelled() {
            return;
        }
        if permit.is_none() || draining.is_cancelled() {
            self.requeue(&delivery.acker, &origin.lost).await;
            return;
        }
        self.process(delivery, received, &origin).await;
        drop(permit);
    }

    /// Hands a request not started back to the queue, for another server
    /// (unless `lost` says its connection is gone, which did it already).
    pub(super) async fn requeue(&self, acker: &Acker, lost: &CancellationToken) {
        match unless_lost(lost, acker.nack(true)).await {
            Ok(()) => self.counters.add(Count::Requeued),
            Err(error) => {
                debug!(%error, "could not requeue a request; the broker requeues it when the channel closes")
            }
        }
    }

    /// Answers one delivery, then acknowledges it. Nothing is ever
    /// requeued from here: a request that cannot be answered is rejected
    /// (dead-lettered if the queue has a dead-letter exchange, else dropped)
    /// with a log line, one whose caller gave up is acknowledged unstarted.
    async fn process(&self, delivery: Delivery, received: Instant, origin: &Origin) {
        let Delivery {
            properties,
            body,
            redelivered,
            acker,
        } = delivery;
        let metrics = &self.counters.metrics;
        let _in_flight = metrics.in_flight(body.len());
        let span = trace::server_span(&self.queue, protocol::request_id(&properties), &properties);
        if redelivered {
            self.counters.add(Count::Redelivered);
        }
        let reply_to = match properties.reply_to() {
            Some(reply_to) if !reply_to.is_empty() => reply_to,
            _ => {
                warn!(queue = %self.queue, "dropping a request without reply_to: there is nowhere to answer");
                self.counters.add(Count::Dropped);
                reject(&acker, &origin.lost).await;
                return;
            }
        };
        if reply_to == &*self.queue {
            warn!(queue = %self.queue, "dropping a request whose reply_to is the request queue itself: answering would loop");
            self.counters.add(Count::Dropped);
            reject(&acker, &origin.lost).await;
            return;
        }
        if !self.shared.reply_to.allows(reply_to) {
            reply_to::log_refused(&self.shared.refusals, &self.queue, reply_to);
            self.counters.add(Count::Refused);
            reject(&acker, &origin.lost).await;
            return;
        }
        if let Some(callers) = &origin.callers {
            let gone = tokio::select! {
                biased;
                gone = callers.gone(reply_to) => gone,
                // The request is back in the queue with its connection.
                () = origin.lost.cancelled() => return,
            };
            if gone {
                // Answering would reach no one, and on some RabbitMQ
                // versions costs the connection (see `Callers`).
                self.counters.add(Count::Expired);
                ack(&acker, &origin.lost).await;
                return;
            }
        }
        // Ping and describe: answered by the library, not the handler, and
        // not counted (see `control`). One header lookup, for requests with
        // headers only.
        if let Some(control) = protocol::control(&properties) {
            self.answer_control(&control, &properties, &body, reply_to, &acker, origin)
                .await;
            return;
        }
        // A timeout too large for the clock means no deadline. Checked
        // after the caller check, which may have taken a while.
        let deadline = Deadline::of_request(&properties, received);
        if deadline::passed(deadline) {
            debug!(queue = %self.queue, "skipping a request whose caller stopped waiting");
            self.counters.add(Count::Expired);
            ack(&acker, &origin.lost).await;
            return;
        }
        let result = match self.check(&properties, &body) {
            // Lost while waiting for a slot: the request is back in the
            // queue; running it here would run it twice.
            Ok(()) if origin.lost.is_cancelled() => return,
            Ok(()) => {
                let limit = Limit::new(deadline, self.handler_timeout);
                let ran = self
                    .run_handler(&properties, body, redelivered, deadline, limit)
                    .instrument(span.clone())
                    .await;
                match ran {
                    Ok(result) => result,
                    // Back in the queue with its connection: not ours to
                    // count.
                    Err(Exceeded::Caller) if origin.lost.is_cancelled() => return,
                    // Nobody waits for an answer: publish nothing.
                    Err(Exceeded::Caller) => {
                        debug!(queue = %self.queue, "cancelled a handler still running at its caller's deadline");
                        self.counters.add(Count::Expired);
                        ack(&acker, &origin.lost).await;
                        return;
                    }
                    // The caller still waits: tell it.
                    Err(Exceeded::Server(after)) => Err(Status::deadline_exceeded(format!(
                        "the handler ran longer than this server allows ({after:?}, its handler_timeout) and was cancelled"
                    ))),
                }
            }
            Err(status) => Err(status),
        };
        let answer = Answer::new(result, self.max_reply_size);
        let failed = answer.code != Code::Ok;
        trace::finish(&span, answer.code, true);
        let trace_headers = trace::headers(&span);
        let mut message = protocol::reply(
            protocol::request_id(&properties),
            answer.code,
            answer.content_type.as_deref().or(properties.content_type()),
            answer.details.as_deref(),
        );
        protocol::add_trace(&mut message, &trace_headers);
        // Measured as the reply leaves: by the time its caller has it, a
        // scrape shows it.
        metrics.answered(
            answer.code,
            answer.body.len(),
            received.elapsed().as_secs_f64(),
        );
        let channel = origin.replies.to(reply_to);
        let published = unless_lost(
            &origin.lost,
            channel.publish(reply_to, false, &message, &answer.body),
        )
        .await;
        // Without confirms the outcome is known at once.
        let confirmed = match published {
            Ok(confirm) => unless_lost(&origin.lost, async { Ok(confirm.outcome().await) })
                .await
                .unwrap_or(None),
            Err(error) => {
                // Not acknowledged: the server reconnects, closing this
                // connection, and the broker hands the request out again.
                origin.failure.raise(format!(
                    "could not publish a reply on queue '{}': {error}",
                    self.queue
                ));
                return;
            }
        };
        match confirmed {
            Some(Confirmed::Taken | Confirmed::Returned) => {
                ack(&acker, &origin.lost).await;
                self.counters.add(Count::Answered);
                if failed {
                    self.counters.add(Count::Error);
                }
            }
            // The broker said no: most often a full reply queue that
            // rejects publishes, where running the request again would get
            // the same answer, so it is not requeued. (A reply queue that
            // is briefly unavailable says no too; its caller then times
            // out.)
            Some(Confirmed::Refused) => {
                warn!(queue = %self.queue, %reply_to, "the broker refused the reply (is the reply queue full or unavailable?); dropping the request");
                self.counters.add(Count::Dropped);
                reject(&acker, &origin.lost).await;
            }
            // The connection went before the broker said: the request goes
            // back to the queue with it.
            None => origin.failure.raise(format!(
                "lost the connection before the broker confirmed a reply on queue '{}'",
                self.queue
            )),
        }
    }

    /// Checks a request can be worked on, before any work.
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

    async fn run_handler(
        &self,
        properties: &Properties,
        body: Vec<u8>,
        redelivered: bool,
        deadline: Option<Deadline>,
        limit: Option<Limit>,
    ) -> Result<Result<Response, Status>, Exceeded> {
        let mut context = context(
            &self.queue,
            properties,
            redelivered,
            deadline.map(Deadline::instant),
        );
        context.cancel = limit.as_ref().map(Limit::signal);
        let request = Request { context, body };
        // The `async` block puts the handler's synchronous part (before its
        // future exists) inside the catch too.
        let handler = AssertUnwindSafe(async { self.handler.call_boxed(request).await });
        Ok(
            match deadline::within(limit, handler.catch_unwind()).await? {
                Ok(result) => result,
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    error!(queue = %self.queue, panic = %what, "the handler panicked; answering with an internal error");
                    Err(Status::internal(format!("the handler panicked: {what}")))
                }
            },
        )
    }
}

/// The handler's view of a request: its [`Context`], read off the
/// request's properties.
pub(super) fn context(
    queue: &Arc<str>,
    properties: &Properties,
    redelivered: bool,
    deadline: Option<Instant>,
) -> Context {
    Context {
        queue: Arc::clone(queue),
        correlation_id: protocol::request_id(properties).map(str::to_owned),
        caller: properties.user_id().map(str::to_owned),
        content_type: properties.content_type().map(str::to_owned),
        redelivered,
        deadline,
        metadata: protocol::metadata(properties),
        cancel: None,
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

/// What a reply says: a handler's result as it can be sent. A result that
/// cannot be sent as it is (too large, a content type over 255 bytes)
/// becomes an error saying so; error details too large for a header are
/// left out, with a note in the message.
pub(super) struct Answer {
    pub(super) code: Code,
    /// The reply's content type; `None` repeats the request's.
    pub(super) content_type: Option<String>,
    pub(super) details: Option<String>,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn new(result: Result<Response, Status>, max_size: usize) -> Answer {
        let sendable = result.and_then(|response| {
            if response.body.len() > max_size {
                return Err(Status::resource_exhausted(format!(
                    "the reply is {} bytes; this server sends at most {max_size}",
                    response.body.len()
                )));
            }
            if response
                .content_type
                .as_ref()
                .is_some_and(|c| c.len() > 255)
            {
                return Err(Status::internal(
                    "the handler set a content type longer than 255 bytes",
                ));
            }
            Ok(response)
        });
        match sendable {
            Ok(response) => Answer {
                code: Code::Ok,
                content_type: response.content_type,
                details: None,
                body: response.body,
            },
            Err(status) => {
                debug!(%status, "answering with an error");
                let mut message = status.message().to_owned();
                let details = match status.details_json() {
                    Some(details) if details.len() > MAX_DETAILS => {
                        message.push_str(&format!(
                            " (details left out: {} bytes, over the {MAX_DETAILS} a header may carry)",
                            details.len()
                        ));
                        None
                    }
                    details => details.map(str::to_owned),
                };
                Answer {
                    code: status.code(),
                    content_type: Some(ERROR_CONTENT_TYPE.to_owned()),
                    details,
                    body: truncated(&message, max_size.min(MAX_ERROR_MESSAGE)),
                }
            }
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> Vec<u8> {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.as_bytes()[..end].to_vec()
}

pub(super) async fn ack(acker: &Acker, lost: &CancellationToken) {
    if let Err(error) = unless_lost(lost, acker.ack()).await {
        settle_failed("acknowledge", &error);
    }
}

/// Rejects without requeueing: the broker dead-letters the request if the
/// queue has a dead-letter exchange, else drops it.
pub(super) async fn reject(acker: &Acker, lost: &CancellationToken) {
    if let Err(error) = unless_lost(lost, acker.nack(false)).await {
        settle_failed("reject", &error);
    }
}

/// `operation` on the broker, unless `lost` says the request's connection
/// is gone first: lapin may never finish an operation on a connection that
/// has died, and a request task must end (a drain waits for it). The
/// broker hands the request out again either way.
pub(super) async fn unless_lost<T>(
    lost: &CancellationToken,
    operation: impl Future<Output = Result<T, crate::Error>>,
) -> Result<T, crate::Error> {
    tokio::select! {
        biased;
        result = operation => result,
        () = lost.cancelled() => Err(crate::Error::ConnectionLost {
            reason: "the connection the request came on is gone".to_owned(),
        }),
    }
}

/// Says that settling a request failed. A lost connection is reported once,
/// by the serve loop: not once more for each request it held.
fn settle_failed(what: &str, error: &crate::Error) {
    if error.is_connection_lost() {
        debug!(%error, "could not {what} a request; the broker will redeliver it");
    } else {
        warn!(%error, "could not {what} a request; the broker will redeliver it");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncated("héllo", 2), b"h");
        assert_eq!(truncated("héllo", 3), "hé".as_bytes());
        assert_eq!(truncated("abc", 10), b"abc");
    }

    #[test]
    fn details_too_large_for_a_header_are_left_out_with_a_note() {
        let big = "x".repeat(MAX_DETAILS + 1);
        let answer = Answer::new(
            Err(Status::invalid_argument("bad").with_details(&big)),
            1024,
        );
        assert!(answer.details.is_none());
        assert!(
            String::from_utf8(answer.body)
                .unwrap()
                .contains("details left out")
        );
        let small = Answer::new(Err(Status::internal("oops").with_details(&[1, 2])), 1024);
        assert_eq!(small.details.as_deref(), Some("[1,2]"));
    }
}
