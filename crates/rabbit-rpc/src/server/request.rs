//! One request's life on the server, orchestrated: a handler slot, then
//! [`admission`](super::admission) (whether it is taken), the handler (its
//! deadline enforced by [`deadline`], panics caught), and the
//! [`reply`](super::reply) (published, then the request settled).

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error};

use super::{
    admission::Verdict,
    context::Context,
    deadline::{self, Exceeded, Limit},
    handler::{Request, Response},
    reply::{Answering, Origin, ack, reject, unless_lost},
    running::Running,
    stats::Count,
};
use crate::{
    Status,
    deadline::Deadline,
    protocol, trace,
    transport::{Acker, Delivery, Properties},
};

impl Running {
    /// Waits for a free handler slot, then processes the delivery; a request
    /// still waiting for a slot when draining starts goes back to the queue.
    pub(super) async fn run(
        self: Arc<Self>,
        delivery: Delivery,
        received: Instant,
        origin: Arc<Origin>,
    ) {
        let draining = &self.shared.draining;
        // A free slot needs no waiting (the common case): no futures to
        // set up for the token checks.
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            // One wait for both ends (`stop`: the connection lost, or
            // draining); a lost connection wins, as it did when each had
            // a branch of its own.
            Err(_) => tokio::select! {
                biased;
                () = origin.stop.cancelled() => {
                    if origin.lost.is_cancelled() {
                        return;
                    }
                    None
                }
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
        match unless_lost(lost, std::pin::pin!(acker.nack(true))).await {
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
        let _in_flight = self.counters.metrics.in_flight(body.len());
        let span = trace::server_span(&self.queue, protocol::request_id(&properties), &properties);
        if redelivered {
            self.counters.add(Count::Redelivered);
        }
        let (reply_to, deadline, admitted) =
            match self.admit(&properties, &body, received, origin).await {
                Verdict::Lost => return,
                Verdict::Reject(count) => {
                    self.counters.add(count);
                    return reject(&acker, &origin.lost).await;
                }
                Verdict::Expired => return self.expired(&acker, origin).await,
                // Boxed: a rare request, whose larger future would
                // otherwise make every request's task larger.
                Verdict::Control { control, reply_to } => {
                    return Box::pin(self.answer_control(
                        &control,
                        &properties,
                        &body,
                        reply_to,
                        &acker,
                        origin,
                    ))
                    .await;
                }
                Verdict::Answer {
                    reply_to,
                    deadline,
                    admitted,
                } => (reply_to, deadline, admitted),
            };
        let result = match admitted {
            Ok(()) => {
                let limit = Limit::new(deadline, self.handler_timeout);
                let handling = self.run_handler(&properties, body, redelivered, deadline, limit);
                // Entering a span nobody listens to still costs, at every
                // poll.
                let ran = if span.is_disabled() {
                    handling.await
                } else {
                    handling.instrument(span.clone()).await
                };
                match ran {
                    Ok(result) => result,
                    // Back in the queue with its connection: not ours to
                    // count.
                    Err(Exceeded::Caller) if origin.lost.is_cancelled() => return,
                    // Nobody waits for an answer: publish nothing.
                    Err(Exceeded::Caller) => {
                        debug!(queue = %self.queue, "cancelled a handler still running at its caller's deadline");
                        return self.expired(&acker, origin).await;
                    }
                    // The caller still waits: tell it.
                    Err(Exceeded::Server(after)) => Err(Status::deadline_exceeded(format!(
                        "the handler ran longer than this server allows ({after:?}, its handler_timeout) and was cancelled"
                    ))),
                }
            }
            Err(status) => Err(status),
        };
        let request = Answering {
            properties: &properties,
            reply_to,
            received,
            span: &span,
            acker: &acker,
            origin,
        };
        self.reply(result, request).await;
    }

    /// Acknowledges, unstarted or cancelled, a request whose caller no
    /// longer waits.
    async fn expired(&self, acker: &Acker, origin: &Origin) {
        self.counters.add(Count::Expired);
        ack(acker, &origin.lost).await;
    }

    async fn run_handler(
        &self,
        properties: &Properties,
        body: Vec<u8>,
        redelivered: bool,
        deadline: Option<Deadline>,
        limit: Option<Limit>,
    ) -> Result<Result<Response, Status>, Exceeded> {
        let mut context = Context::of_request(
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
