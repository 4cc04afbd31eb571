//! The reply: a handler's result as it can be sent, published on the
//! request's own connection, then the request settled (acknowledged once the
//! broker has its reply, rejected when the broker refuses it).

use std::{
    future::Future,
    pin::{Pin, pin},
    sync::Arc,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, warn};

use super::{callers::Callers, handler::Response, running::Running, shared::Failure, stats::Count};
use crate::{
    Code, Status,
    protocol::{self, ERROR_CONTENT_TYPE, MAX_DETAILS},
    trace,
    transport::{Acker, Channel, Confirmed, Connection, Outgoing, Properties},
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
    /// Cancelled when `lost` is, or when the server starts draining (a
    /// child of its `draining` token): what a request waiting for a handler
    /// slot waits on, one wait instead of two.
    pub(super) stop: CancellationToken,
}

/// A request being answered: what its reply is matched by, where it goes,
/// and how it is settled.
pub(super) struct Answering<'a> {
    pub(super) properties: &'a Properties,
    pub(super) reply_to: &'a str,
    pub(super) received: Instant,
    pub(super) span: &'a Span,
    pub(super) acker: &'a Acker,
    pub(super) origin: &'a Origin,
}

impl Running {
    /// Sends `result` (the handler's, or a refusal) as the reply, then
    /// settles the request: acknowledged once the broker has the reply,
    /// rejected when it refuses it, left to the broker (which hands it out
    /// again) when the session breaks first.
    pub(super) async fn reply(&self, result: Result<Response, Status>, request: Answering<'_>) {
        let Answering {
            properties,
            reply_to,
            received,
            span,
            acker,
            origin,
        } = request;
        let answer = Answer::new(result, self.max_reply_size);
        let failed = answer.code != Code::Ok;
        trace::finish(span, answer.code, true);
        let trace_headers = trace::headers(span);
        let mut message = answer.message(properties);
        protocol::add_trace(&mut message, &trace_headers);
        // Measured as the reply leaves: by the time its caller has it, a
        // scrape shows it.
        self.counters.metrics.answered(
            answer.code,
            answer.body.len(),
            received.elapsed().as_secs_f64(),
        );
        match publish(&self.queue, origin, reply_to, &message, &answer.body).await {
            Some(Confirmed::Taken | Confirmed::Returned) => {
                ack(acker, &origin.lost).await;
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
                reject(acker, &origin.lost).await;
            }
            None => {}
        }
    }
}

/// Publishes a reply to `reply_to` on the request's connection and waits
/// for the broker's word (known at once without confirms). `None` when the
/// session broke first: reported to the serve loop, which reconnects, and
/// the request, not acknowledged, goes back to the queue with its
/// connection.
pub(super) async fn publish(
    queue: &str,
    origin: &Origin,
    reply_to: &str,
    message: &Outgoing<'_>,
    body: &[u8],
) -> Option<Confirmed> {
    let channel = origin.replies.to(reply_to);
    let published = unless_lost(
        &origin.lost,
        pin!(channel.publish(reply_to, false, message, body)),
    )
    .await;
    let confirm = match published {
        Ok(confirm) => confirm,
        Err(error) => {
            origin.failure.raise(format!(
                "could not publish a reply on queue '{queue}': {error}"
            ));
            return None;
        }
    };
    let confirmed = unless_lost(&origin.lost, pin!(async { Ok(confirm.outcome().await) }))
        .await
        .unwrap_or(None);
    if confirmed.is_none() {
        origin.failure.raise(format!(
            "lost the connection before the broker confirmed a reply on queue '{queue}'"
        ));
    }
    confirmed
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
    /// The reply's properties, answering the request of `properties`:
    /// its id, this answer's code and details, and the answer's content
    /// type, else the request's.
    pub(super) fn message<'a>(&'a self, properties: &'a Properties) -> Outgoing<'a> {
        protocol::reply(
            protocol::request_id(properties),
            self.code,
            self.content_type.as_deref().or(properties.content_type()),
            self.details.as_deref(),
        )
    }

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
    if let Err(error) = unless_lost(lost, pin!(acker.ack())).await {
        settle_failed("acknowledge", &error);
    }
}

/// Rejects without requeueing: the broker dead-letters the request if the
/// queue has a dead-letter exchange, else drops it.
pub(super) async fn reject(acker: &Acker, lost: &CancellationToken) {
    if let Err(error) = unless_lost(lost, pin!(acker.nack(false))).await {
        settle_failed("reject", &error);
    }
}

/// `operation` on the broker, unless `lost` says the request's connection
/// is gone first: lapin may never finish an operation on a connection that
/// has died, and a request task must end (a drain waits for it). The
/// broker hands the request out again either way.
///
/// `operation` comes pinned where it was made: taken by value, it would be
/// stored twice in the request's task (as this function's argument, and in
/// the `select!`), and a larger task costs a copy of every byte each time
/// tokio moves it (measured: see `bench/count.py`).
pub(super) async fn unless_lost<T>(
    lost: &CancellationToken,
    operation: Pin<&mut impl Future<Output = Result<T, crate::Error>>>,
) -> Result<T, crate::Error> {
    tokio::select! {
        biased;
        result = operation => result,
        () = lost.cancelled() => Err(crate::Error::lost("the connection the request came on is gone")),
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
