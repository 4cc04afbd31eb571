//! The seam between RPC logic and the broker.
//!
//! Client and server speak to the broker only through the types here: a
//! [`Connection`] opens [`Channel`]s and asks whether a queue exists; a
//! channel declares queues, sets prefetch, consumes ([`Consumer`], a stream
//! of [`Delivery`]) and publishes; a delivery is acknowledged through its
//! [`Acker`]. Each type is an enum over two implementations:
//!
//! - [`amqp`]: RabbitMQ over lapin, the product;
//! - [`memory`]: an in-memory broker for tests (feature `test-util`), which
//!   imitates only what rabbit-rpc's guarantees rely on, each imitation
//!   proved against the real broker by the same conformance test
//!   (`tests/conformance.rs`).
//!
//! Enums rather than trait objects: two implementations, known at compile
//! time, and no allocation per publish on the hot path.
//!
//! [`tls`] holds the TLS options of `amqps://` connections and what a
//! failed handshake means; [`link`] is the one connection lifecycle both
//! sides share: connecting
//! across several URLs with a timeout, backoff between attempts, setting up
//! again after a loss, and closing within a bound.

pub(crate) mod amqp;
pub(crate) use amqp::{tls, url};
pub(crate) mod link;
#[cfg(feature = "test-util")]
pub mod memory;

use std::{
    borrow::Cow,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::Stream;

use crate::Error;

/// Direct reply-to pseudo-queue: replies go straight to the requesting
/// channel, with no queue to declare or clean up.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How long closing a channel or a connection, or cancelling a consumer,
/// may take before the caller stops waiting (a broker that has stopped
/// reading a connection, under a memory alarm, must not hold a shutdown).
pub(crate) const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An open connection to a broker.
#[derive(Debug)]
// The small variant is the test-only one: not worth a box on the product's.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connection {
    Amqp(amqp::Connection),
    #[cfg(feature = "test-util")]
    Memory(memory::Connection),
}

impl Connection {
    /// Opens a channel.
    pub(crate) async fn channel(&self) -> Result<Channel, Error> {
        match self {
            Connection::Amqp(connection) => connection.channel().await.map(Channel::Amqp),
            #[cfg(feature = "test-util")]
            Connection::Memory(connection) => connection.channel().map(Channel::Memory),
        }
    }

    /// Whether `queue` exists, and if so how many messages are ready in it
    /// and how many consumers it has: a passive declare, on a throwaway
    /// channel (a "no" closes the channel it is asked on).
    pub(crate) async fn probe(&self, queue: &str) -> Result<QueueState, Error> {
        match self {
            Connection::Amqp(connection) => connection.probe(queue).await,
            #[cfg(feature = "test-util")]
            Connection::Memory(connection) => connection.probe(queue),
        }
    }

    /// Whether the direct reply-to `address` (as the broker rewrote
    /// `amq.rabbitmq.reply-to`) still has its consumer: a passive declare of
    /// it, on a throwaway channel.
    pub(crate) async fn reply_address(&self, address: &str) -> Result<ReplyAddress, Error> {
        match self {
            Connection::Amqp(connection) => connection.reply_address(address).await,
            #[cfg(feature = "test-util")]
            Connection::Memory(connection) => connection.reply_address(address),
        }
    }

    /// The user this connection logged in as, when known (see
    /// [`BrokerUrl::user`](url::BrokerUrl)); none on the in-memory broker,
    /// which has no users.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Connection::Amqp(connection) => connection.url().user(),
            #[cfg(feature = "test-util")]
            Connection::Memory(_) => None,
        }
    }

    /// Where this connection goes, for logs (no password).
    pub(crate) fn peer(&self) -> String {
        match self {
            Connection::Amqp(connection) => connection.url().to_string(),
            #[cfg(feature = "test-util")]
            Connection::Memory(_) => "the in-memory broker".to_owned(),
        }
    }

    /// Closes the connection, which hands every unacknowledged delivery on
    /// it back to its queue; waits at most [`CLOSE_TIMEOUT`].
    pub(crate) async fn close(&self, reason: &str) -> Result<(), Error> {
        match self {
            Connection::Amqp(connection) => connection.close(reason).await,
            #[cfg(feature = "test-util")]
            Connection::Memory(connection) => {
                connection.close(reason);
                Ok(())
            }
        }
    }
}

/// What a passive declare says about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueState {
    Missing,
    Exists { messages: u32, consumers: u32 },
}

/// What the broker says of a direct reply-to address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyAddress {
    /// Its consumer is there.
    Live,
    /// Its consumer is gone: a reply would be dropped.
    Gone,
    /// The broker closed the connection with `INTERNAL_ERROR` instead of
    /// answering: RabbitMQ 3.10.0-3.10.11 and 3.11.0-3.11.3 do that for an
    /// address on a node that is down (see `server::callers`).
    Crashed,
}

/// A channel: where queues are declared and messages published and
/// consumed.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    Amqp(amqp::AmqpChannel),
    #[cfg(feature = "test-util")]
    Memory(memory::Channel),
}

impl Channel {
    /// Declares `queue`.
    ///
    /// # Errors
    /// [`Error::QueueMismatch`] when it exists with other settings,
    /// [`Error::Declare`] when the broker refuses it otherwise.
    pub(crate) async fn declare(
        &self,
        queue: &str,
        declaration: &Declaration,
    ) -> Result<(), Error> {
        match self {
            Channel::Amqp(channel) => amqp::declare(channel, queue, declaration).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => channel.declare(queue, declaration),
        }
    }

    /// Deletes `queue` with its messages.
    pub(crate) async fn delete(&self, queue: &str) -> Result<(), Error> {
        match self {
            Channel::Amqp(channel) => amqp::delete(channel, queue).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => {
                channel.delete(queue);
                Ok(())
            }
        }
    }

    /// Sets how many unacknowledged deliveries each consumer started on
    /// this channel from now on may hold. Consumers that already exist keep
    /// theirs, as RabbitMQ does.
    pub(crate) async fn prefetch(&self, count: u16) -> Result<(), Error> {
        match self {
            Channel::Amqp(channel) => amqp::prefetch(channel, count).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => channel.prefetch(count),
        }
    }

    /// Starts consuming `queue`; with `no_ack`, deliveries need no
    /// acknowledgement (replies).
    pub(crate) async fn consume(&self, queue: &str, no_ack: bool) -> Result<Consumer, Error> {
        match self {
            Channel::Amqp(channel) => amqp::consume(channel, queue, no_ack)
                .await
                .map(Consumer::Amqp),
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => channel.consume(queue, no_ack).map(Consumer::Memory),
        }
    }

    /// Stops the consumer `tag`: no new deliveries; those delivered can
    /// still be acknowledged.
    pub(crate) async fn cancel(&self, tag: &str) -> Result<(), Error> {
        match self {
            Channel::Amqp(channel) => amqp::cancel(channel, tag).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => {
                channel.cancel(tag);
                Ok(())
            }
        }
    }

    /// Turns publisher confirms on.
    pub(crate) async fn confirm(&self) -> Result<(), Error> {
        match self {
            Channel::Amqp(channel) => amqp::confirm(channel).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => {
                channel.confirm();
                Ok(())
            }
        }
    }

    /// Publishes `body` to the default exchange with `routing_key`. With
    /// `mandatory`, a message no queue takes comes back (see
    /// [`Channel::returned`] and [`Confirm`]). Resolves once the message is
    /// written; with confirms on, the [`Confirm`] resolves when the broker
    /// has taken it.
    pub(crate) async fn publish(
        &self,
        routing_key: &str,
        mandatory: bool,
        message: &Outgoing<'_>,
        body: &[u8],
    ) -> Result<Confirm, Error> {
        match self {
            Channel::Amqp(channel) => {
                amqp::publish(channel, routing_key, mandatory, message, body).await
            }
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => channel.publish(routing_key, mandatory, message, body),
        }
    }

    /// The messages published `mandatory` that no queue took, since the
    /// last call (without publisher confirms; with them, each [`Confirm`]
    /// says so).
    pub(crate) async fn returned(&self) -> Result<Vec<Returned>, Error> {
        match self {
            Channel::Amqp(channel) => amqp::returned(channel).await,
            #[cfg(feature = "test-util")]
            Channel::Memory(channel) => channel.returned(),
        }
    }
}

/// A queue to declare: its flags and `x-…` arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Declaration {
    pub(crate) durable: bool,
    pub(crate) exclusive: bool,
    pub(crate) auto_delete: bool,
    pub(crate) arguments: Vec<(String, QueueArgument)>,
}

/// The value of a queue argument (`x-expires`, `x-dead-letter-exchange`,
/// …), for [`ServerBuilder::queue_argument`](crate::ServerBuilder::queue_argument).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueArgument {
    /// Text, sent as an AMQP long string.
    Text(String),
    /// An integer, sent as a 64-bit signed integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for QueueArgument {
    fn from(text: &str) -> QueueArgument {
        QueueArgument::Text(text.to_owned())
    }
}

impl From<String> for QueueArgument {
    fn from(text: String) -> QueueArgument {
        QueueArgument::Text(text)
    }
}

impl From<i64> for QueueArgument {
    fn from(n: i64) -> QueueArgument {
        QueueArgument::Int(n)
    }
}

impl From<i32> for QueueArgument {
    fn from(n: i32) -> QueueArgument {
        QueueArgument::Int(i64::from(n))
    }
}

impl From<u32> for QueueArgument {
    fn from(n: u32) -> QueueArgument {
        QueueArgument::Int(i64::from(n))
    }
}

impl From<bool> for QueueArgument {
    fn from(b: bool) -> QueueArgument {
        QueueArgument::Bool(b)
    }
}

impl std::fmt::Display for QueueArgument {
    /// As the broker's messages show a value, and as [`Error::QueueMismatch`]
    /// repeats it: text in quotes, numbers and booleans bare.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueArgument::Text(text) => write!(f, "'{text}'"),
            QueueArgument::Int(n) => write!(f, "{n}"),
            QueueArgument::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A message to publish. Only what rabbit-rpc sends: requests and replies.
#[derive(Debug, Default)]
pub(crate) struct Outgoing<'a> {
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) message_id: Option<&'a str>,
    /// Who sends it: the user the connection logged in as (the broker
    /// refuses any other).
    pub(crate) user_id: Option<&'a str>,
    pub(crate) reply_to: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    /// Per-message TTL, in milliseconds.
    pub(crate) expiration_ms: Option<u64>,
    /// Header table; empty means none is sent (the broker then parses no
    /// table: the hot path sends none).
    pub(crate) headers: Vec<(&'a str, HeaderValue<'a>)>,
}

/// A header value rabbit-rpc sends: text, as an AMQP long string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderValue<'a> {
    Text(&'a str),
}

/// A header value as received: text, an integer of any AMQP width, or
/// something else (a table, a byte array, …), named for messages, so that
/// a header of an unexpected type is told apart from an absent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    /// A value of another type: what it is, e.g. `"a table"`.
    Other(&'static str),
}

impl Header<'_> {
    /// What the value is, for a message about a header of the wrong type:
    /// `text`, `an integer (42)`, `a table`, ….
    pub(crate) fn kind(&self) -> String {
        match self {
            Header::Text(_) => "text".to_owned(),
            Header::Int(n) => format!("an integer ({n})"),
            Header::Other(what) => (*what).to_owned(),
        }
    }
}

/// What a message carries besides its body, as received.
#[derive(Debug)]
// Boxing the AMQP properties would cost an allocation per message on the
// product's path to shrink a test-only variant.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Properties {
    Amqp(amqp::AmqpProperties),
    #[cfg(feature = "test-util")]
    Memory(std::sync::Arc<memory::Stored>),
}

impl Properties {
    pub(crate) fn correlation_id(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.correlation_id().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.correlation_id.as_deref(),
        }
    }

    pub(crate) fn message_id(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.message_id().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.message_id.as_deref(),
        }
    }

    /// The `user_id` property: the user the publisher logged in as, checked
    /// by RabbitMQ.
    pub(crate) fn user_id(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.user_id().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.user_id.as_deref(),
        }
    }

    pub(crate) fn reply_to(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.reply_to().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.reply_to.as_deref(),
        }
    }

    pub(crate) fn content_type(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.content_type().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.content_type.as_deref(),
        }
    }

    pub(crate) fn expiration(&self) -> Option<&str> {
        match self {
            Properties::Amqp(p) => p.expiration().as_ref().map(|s| s.as_str()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m.expiration.as_deref(),
        }
    }

    /// The header `name`, if present.
    pub(crate) fn header(&self, name: &str) -> Option<Header<'_>> {
        match self {
            Properties::Amqp(p) => Some(amqp::header(p.headers().as_ref()?.inner().get(name)?)),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.borrowed()),
        }
    }

    /// Every header.
    pub(crate) fn headers(&self) -> Vec<(&str, Header<'_>)> {
        match self {
            Properties::Amqp(p) => p.headers().as_ref().map_or_else(Vec::new, |table| {
                table
                    .inner()
                    .iter()
                    .map(|(key, value)| (key.as_str(), amqp::header(value)))
                    .collect()
            }),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => m
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.borrowed()))
                .collect(),
        }
    }

    /// Whether the message has any header at all (the hot path has none).
    pub(crate) fn has_headers(&self) -> bool {
        match self {
            Properties::Amqp(p) => p.headers().as_ref().is_some_and(|t| !t.inner().is_empty()),
            #[cfg(feature = "test-util")]
            Properties::Memory(m) => !m.headers.is_empty(),
        }
    }
}

/// A message received from a consumer.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) properties: Properties,
    pub(crate) body: Vec<u8>,
    /// Delivered before, to a consumer that did not acknowledge it.
    pub(crate) redelivered: bool,
    pub(crate) acker: Acker,
}

/// Settles one delivery.
#[derive(Debug)]
pub(crate) enum Acker {
    Amqp(amqp::AmqpAcker),
    #[cfg(feature = "test-util")]
    Memory(memory::Acker),
}

impl Acker {
    /// Acknowledges: the broker forgets the message.
    pub(crate) async fn ack(&self) -> Result<(), Error> {
        match self {
            Acker::Amqp(acker) => amqp::ack(acker).await,
            #[cfg(feature = "test-util")]
            Acker::Memory(acker) => acker.settle(memory::Settle::Ack),
        }
    }

    /// Rejects: back to the queue (`requeue`, marked redelivered), else
    /// dead-lettered if the queue says where, else dropped.
    pub(crate) async fn nack(&self, requeue: bool) -> Result<(), Error> {
        match self {
            Acker::Amqp(acker) => amqp::nack(acker, requeue).await,
            #[cfg(feature = "test-util")]
            Acker::Memory(acker) => acker.settle(memory::Settle::Nack { requeue }),
        }
    }
}

/// A stream of deliveries. It yields an error and ends when the connection
/// or channel fails; it ends without an error when the consumer is
/// cancelled (by [`Channel::cancel`], or by the broker when its queue is
/// deleted).
#[derive(Debug)]
pub(crate) enum Consumer {
    Amqp(amqp::AmqpConsumer),
    #[cfg(feature = "test-util")]
    Memory(memory::Consumer),
}

impl Consumer {
    /// The consumer tag, to cancel it by.
    pub(crate) fn tag(&self) -> String {
        match self {
            Consumer::Amqp(consumer) => consumer.tag().to_string(),
            #[cfg(feature = "test-util")]
            Consumer::Memory(consumer) => consumer.tag().to_owned(),
        }
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Consumer::Amqp(consumer) => amqp::poll_delivery(consumer, cx),
            #[cfg(feature = "test-util")]
            Consumer::Memory(consumer) => consumer.poll_delivery(cx),
        }
    }
}

/// What became of a published message, with publisher confirms on.
#[derive(Debug)]
pub(crate) enum Confirm {
    Amqp(amqp::AmqpConfirm),
    /// The message's fate, known at once.
    #[cfg(feature = "test-util")]
    Done(Confirmed),
}

/// The broker's answer to a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmed {
    /// Taken (or confirms are off: nothing to say).
    Taken,
    /// No queue took it (published `mandatory`).
    Returned,
    /// The broker refused it.
    Refused,
}

impl Confirm {
    /// Waits for the broker's answer. A lost connection gives `None`: the
    /// calls on it fail for that reason anyway.
    pub(crate) async fn outcome(self) -> Option<Confirmed> {
        match self {
            Confirm::Amqp(confirm) => amqp::confirmed(confirm).await,
            #[cfg(feature = "test-util")]
            Confirm::Done(confirmed) => Some(confirmed),
        }
    }
}

/// A message published `mandatory` that no queue took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Returned {
    pub(crate) correlation_id: Option<String>,
    pub(crate) routing_key: String,
}
