//! One request's life on the server: checks before any work, the deadline,
//! the handler (panics caught), the reply, then the acknowledgement.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;
use lapin::{
    BasicProperties, Channel,
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions},
    types::ShortString,
};
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{
    Failure,
    reply_to::{RefusalLog, ReplyToPolicy},
    stats::{Count, ServerStats},
};
use crate::{
    Code, Handler, Request, Response, Status,
    protocol::{self, ERROR_CONTENT_TYPE},
};

/// The longest `correlation_id` answered normally. AMQP allows 255 bytes;
/// ids from real clients (UUIDs, counters) are far shorter, and a longer one
/// gets an `invalid_argument` reply.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// Error messages longer than this are cut: they are for people.
const MAX_ERROR_MESSAGE: usize = 64 * 1024;

/// What every request needs, for the server's whole life.
pub(super) struct Shared<H> {
    pub(super) handler: H,
    pub(super) queue: String,
    pub(super) max_request_size: usize,
    pub(super) max_reply_size: usize,
    pub(super) stats: ServerStats,
    /// Where replies may go.
    pub(super) reply_to: ReplyToPolicy,
    pub(super) refusals: RefusalLog,
    pub(super) permits: Arc<Semaphore>,
    /// Cancelled when the server starts draining.
    pub(super) draining: CancellationToken,
}

/// Where a request came from: the connection it arrived on. Replies and
/// acknowledgements must use it.
#[derive(Clone)]
pub(super) struct Origin {
    pub(super) replies: Channel,
    pub(super) failure: Arc<Failure>,
    /// Cancelled when the connection is lost: its requests are back in the
    /// queue, so those not started yet must not run.
    pub(super) lost: CancellationToken,
}

impl<H: Handler> Shared<H> {
    /// Waits for a free handler slot, then processes the delivery; a request
    /// still waiting for a slot when draining starts goes back to the queue.
    pub(super) async fn run(
        self: Arc<Self>,
        delivery: Delivery,
        received: Instant,
        origin: Origin,
    ) {
        // A free slot needs no waiting (the common case): no futures to
        // set up for the token checks.
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => tokio::select! {
                biased;
                () = origin.lost.cancelled() => return,
                () = self.draining.cancelled() => None,
                permit = Arc::clone(&self.permits).acquire_owned() => permit.ok(),
            },
        };
        if origin.lost.is_cancelled() {
            return;
        }
        if permit.is_none() || self.draining.is_cancelled() {
            self.requeue(&delivery).await;
            return;
        }
        self.process(delivery, received, &origin).await;
        drop(permit);
    }

    /// Hands a request not started back to the queue, for another server.
    pub(super) async fn requeue(&self, delivery: &Delivery) {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        match delivery.acker.nack(requeue).await {
            Ok(_) => self.stats.add(Count::Requeued),
            Err(error) => {
                debug!(%error, "could not requeue a request; the broker requeues it when the channel closes")
            }
        }
    }

    /// Answers one delivery, then acknowledges it. Nothing is ever
    /// requeued from here: a request that cannot be answered is rejected
    /// (dead-lettered if the queue has a dead-letter exchange, else dropped)
    /// with a log line, one whose caller gave up is acknowledged unstarted.
    async fn process(&self, mut delivery: Delivery, received: Instant, origin: &Origin) {
        if delivery.redelivered {
            self.stats.add(Count::Redelivered);
        }
        let properties = &delivery.properties;
        let reply_to = match properties.reply_to() {
            Some(reply_to) if !reply_to.as_str().is_empty() => reply_to.clone(),
            _ => {
                warn!(queue = %self.queue, "dropping a request without reply_to: there is nowhere to answer");
                self.stats.add(Count::Dropped);
                reject(&delivery).await;
                return;
            }
        };
        if reply_to.as_str() == self.queue {
            warn!(queue = %self.queue, "dropping a request whose reply_to is the request queue itself: answering would loop");
            self.stats.add(Count::Dropped);
            reject(&delivery).await;
            return;
        }
        if !self.reply_to.allows(reply_to.as_str()) {
            self.refusals.refused(&self.queue, reply_to.as_str());
            self.stats.add(Count::Refused);
            reject(&delivery).await;
            return;
        }
        // A timeout too large for the clock means no deadline.
        let deadline =
            protocol::request_timeout(properties).and_then(|timeout| received.checked_add(timeout));
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            debug!(queue = %self.queue, "skipping a request whose caller stopped waiting");
            self.stats.add(Count::Expired);
            ack(&delivery).await;
            return;
        }
        let correlation_id = properties.correlation_id().clone();
        let result = match self.check(&delivery) {
            // Lost while waiting for a slot: the request is back in the
            // queue; running it here would run it twice.
            Ok(()) if origin.lost.is_cancelled() => return,
            Ok(()) => self.run_handler(&mut delivery, deadline).await,
            Err(status) => Err(status),
        };
        let failed = result.is_err();
        let (properties, body) = reply(
            correlation_id.as_ref(),
            &delivery.properties,
            result,
            self.max_reply_size,
        );
        let published = origin
            .replies
            .basic_publish(
                "".into(),
                reply_to,
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await;
        match published {
            Ok(_) => {
                ack(&delivery).await;
                self.stats.add(Count::Answered);
                if failed {
                    self.stats.add(Count::Error);
                }
            }
            // Not acknowledged: the server reconnects, closing this
            // connection, and the broker hands the request out again.
            Err(error) => origin.failure.raise(format!(
                "could not publish a reply on queue '{}': {error}",
                self.queue
            )),
        }
    }

    /// Checks a request can be worked on, before any work.
    fn check(&self, delivery: &Delivery) -> Result<(), Status> {
        let Some(id) = delivery.properties.correlation_id() else {
            return Err(Status::invalid_argument(
                "the request has no correlation_id; set one so the reply can be matched",
            ));
        };
        if id.as_str().len() > MAX_CORRELATION_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "the correlation_id is {} bytes; this server accepts at most {MAX_CORRELATION_ID_LEN}",
                id.as_str().len()
            )));
        }
        if delivery.data.len() > self.max_request_size {
            return Err(Status::resource_exhausted(format!(
                "the request body is {} bytes; this server accepts at most {}",
                delivery.data.len(),
                self.max_request_size
            )));
        }
        Ok(())
    }

    async fn run_handler(
        &self,
        delivery: &mut Delivery,
        deadline: Option<Instant>,
    ) -> Result<Response, Status> {
        let request = Request {
            body: std::mem::take(&mut delivery.data),
            content_type: delivery.properties.content_type().clone(),
            correlation_id: delivery.properties.correlation_id().clone(),
            redelivered: delivery.redelivered,
            deadline,
        };
        // The `async` block puts the handler's synchronous part (before its
        // future exists) inside the catch too.
        match AssertUnwindSafe(async { self.handler.call(request).await })
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                error!(queue = %self.queue, panic = %what, "the handler panicked; answering with an internal error");
                Err(Status::internal(format!("the handler panicked: {what}")))
            }
        }
    }
}

/// Rejects without requeueing: the broker dead-letters the request if the
/// queue has a dead-letter exchange, else drops it.
async fn reject(delivery: &Delivery) {
    let options = BasicNackOptions {
        requeue: false,
        ..BasicNackOptions::default()
    };
    if let Err(error) = delivery.acker.nack(options).await {
        warn!(%error, "could not reject a request; the broker will redeliver it");
    }
}

/// The reply's properties and body for a handler's result. A result that
/// cannot be sent as it is (too large, a content type over 255 bytes) becomes
/// an error reply saying so.
fn reply(
    correlation_id: Option<&ShortString>,
    request: &BasicProperties,
    result: Result<Response, Status>,
    max_size: usize,
) -> (BasicProperties, Vec<u8>) {
    let sendable = result.and_then(|response| {
        if response.body.len() > max_size {
            return Err(Status::resource_exhausted(format!(
                "the reply is {} bytes; this server sends at most {max_size}",
                response.body.len()
            )));
        }
        let content_type = match response.content_type {
            Some(content_type) => Some(ShortString::try_new(content_type).map_err(|_| {
                Status::internal("the handler set a content type longer than 255 bytes")
            })?),
            None => request.content_type().clone(),
        };
        Ok((content_type, response.body))
    });
    match sendable {
        Ok((content_type, body)) => {
            let properties = protocol::reply_properties(correlation_id, Code::Ok, content_type);
            (properties, body)
        }
        Err(status) => {
            debug!(%status, "answering with an error");
            let properties = protocol::reply_properties(
                correlation_id,
                status.code(),
                Some(ERROR_CONTENT_TYPE.into()),
            );
            (
                properties,
                truncated(status.message(), max_size.min(MAX_ERROR_MESSAGE)),
            )
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

async fn ack(delivery: &Delivery) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        warn!(%error, "could not acknowledge a request; the broker will redeliver it");
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
}
