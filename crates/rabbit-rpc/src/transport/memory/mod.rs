//! An in-memory broker for tests: [`MemoryBroker`], whose docs say what it
//! imitates (they are the public ones: this module is private).

mod state;

use std::{
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll},
};

use tokio::sync::mpsc;

pub(crate) use state::Settle;

use super::{
    Confirm, Confirmed, Declaration, Delivery, Header, HeaderValue, Outgoing, QueueState,
    ReplyAddress, Returned,
};
use crate::Error;
use state::State;

/// An in-memory broker: a stand-in for RabbitMQ in tests (feature
/// `test-util`).
///
/// It stands in for RabbitMQ in your tests, with the same
/// [`Client`](crate::Client) and [`Server`](crate::Server) API and no
/// broker to run. Cheap to clone: clones are the same broker. Give it to
/// [`ClientBuilder::memory`](crate::ClientBuilder::memory) and
/// [`ServerBuilder::memory`](crate::ServerBuilder::memory).
///
/// It imitates only what rabbit-rpc's guarantees rely on:
///
/// - routing by the default exchange, and requests published `mandatory`
///   to a queue that does not exist coming back (no route);
/// - queue declarations, equivalence between them (a conflicting one is
///   refused, naming the setting), exclusive queues;
/// - consumer counts, and per-consumer prefetch set when the consumer
///   starts (a later `basic.qos` does not change it, as on RabbitMQ);
/// - acknowledgements, rejection with and without requeue, and the
///   redelivered flag on what comes back;
/// - per-message expiration (`expiration`, dropped at the head of the
///   queue), on tokio's clock, so tests can use `tokio::time::pause` (or
///   `#[tokio::test(start_paused = true)]`, with tokio's `test-util`
///   feature) and run timeouts of minutes in no time;
/// - direct reply-to;
/// - connection loss: [`MemoryBroker::close_connections`] does what
///   `rabbitmqctl close_connection` does.
///
/// Every one of these is proved on the real broker by the same test in the
/// crate's `tests/conformance.rs`. What it does not imitate: exchanges
/// other than the default, dead-lettering, queue length limits, delivery
/// limits, publisher confirms beyond "taken" or "returned", memory alarms,
/// and anything about persistence (nothing here survives the process).
///
/// ```
/// use rabbit_rpc::{Client, MemoryBroker, Server, handler_fn, Request, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rabbit_rpc::Error> {
/// let broker = MemoryBroker::new();
/// let server = Server::builder()
///     .memory(&broker)
///     .procedure("shout", handler_fn(|request: Request| async move {
///         Ok::<_, Status>(request.text()?.to_uppercase())
///     }))
///     .bind()
///     .await?;
/// tokio::spawn(server.serve());
/// let client = Client::builder().memory(&broker).connect().await?;
/// assert_eq!(client.call("shout", "hi").await?.text(), "HI");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryBroker {
    fn default() -> MemoryBroker {
        MemoryBroker {
            state: Arc::new_cyclic(|me| Mutex::new(State::new(me.clone()))),
        }
    }
}

/// What [`MemoryBroker::queue`] says about a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// Declared durable.
    pub durable: bool,
    /// The `x-…` arguments it was declared with, values as RabbitMQ's
    /// messages show them (`'quorum'`, `60000`).
    pub arguments: Vec<(String, String)>,
    /// Messages waiting to be delivered.
    pub ready: usize,
    /// Messages delivered and not yet acknowledged.
    pub unacked: usize,
    /// Consumers taking deliveries.
    pub consumers: usize,
}

impl MemoryBroker {
    /// A broker with no queue and no connection.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// A queue's declaration and counts; `None` if it does not exist.
    pub fn queue(&self, name: &str) -> Option<QueueInfo> {
        self.lock().queue(name)
    }

    /// Closes every connection named `name` (the connection name of a
    /// builder), as `rabbitmqctl close_connection` does: the calls waiting
    /// on it fail, what its servers held goes back to the queue marked
    /// redelivered, and clients and servers reconnect. Returns how many it
    /// closed.
    pub fn close_connections(&self, name: &str) -> usize {
        let mut state = self.lock();
        let ids = state.connections_named(name);
        for id in &ids {
            state.close_connection(
                *id,
                "CONNECTION_FORCED - closed by MemoryBroker::close_connections",
            );
        }
        ids.len()
    }

    /// The names of the queues, sorted.
    pub fn queue_names(&self) -> Vec<String> {
        self.lock().queue_names()
    }

    /// The names of the open connections, sorted.
    pub fn connections(&self) -> Vec<String> {
        self.lock().connection_names()
    }

    /// Deletes a queue with its messages, as `rabbitmqctl delete_queue`
    /// does; its consumers are cancelled. Returns whether it existed.
    pub fn delete_queue(&self, name: &str) -> bool {
        self.lock().delete_queue(name)
    }

    /// Publishes `message` to the default exchange with routing key `queue`
    /// (a queue, or a direct reply-to address), as a client in another
    /// language would: to test what a server does with requests no
    /// rabbit-rpc client sends (no `reply_to`, a `reply_to` into another
    /// service's queue, a body of the wrong shape). Returns whether a queue
    /// took it.
    pub fn publish(&self, queue: &str, message: RawMessage) -> bool {
        let expiration_ms = message.expiration_ms;
        let stored = Stored {
            correlation_id: message.correlation_id,
            message_id: message.message_id,
            user_id: message.user_id,
            reply_to: message.reply_to,
            content_type: message.content_type,
            expiration: expiration_ms.map(|ms| ms.to_string()),
            headers: message
                .headers
                .into_iter()
                .map(|(name, value)| (name, OwnedHeader(value)))
                .collect(),
            body: message.body,
        };
        self.lock()
            .route(None, None, queue, false, stored, expiration_ms)
            .unwrap_or(false)
    }

    /// Takes the message at the head of `queue`, if any, as `basic.get`
    /// does: to read what landed in a queue (a reply, a dead letter).
    pub fn get(&self, queue: &str) -> Option<RawMessage> {
        let (stored, redelivered) = self.lock().get(queue)?;
        Some(RawMessage {
            body: stored.body.clone(),
            correlation_id: stored.correlation_id.clone(),
            message_id: stored.message_id.clone(),
            user_id: stored.user_id.clone(),
            reply_to: stored.reply_to.clone(),
            content_type: stored.content_type.clone(),
            expiration_ms: stored.expiration.as_deref().and_then(|ms| ms.parse().ok()),
            headers: stored
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.0.clone()))
                .collect(),
            redelivered,
        })
    }

    pub(crate) fn connect(&self, name: &str) -> Result<Connection, Error> {
        let id = self.lock().connect(name);
        Ok(Connection {
            guard: Arc::new(Guard {
                broker: self.clone(),
                id,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is complete before anything that can
        // panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes its connection when the last handle to it (the connection or one
/// of its channels) is dropped, as lapin does.
#[derive(Debug)]
struct Guard {
    broker: MemoryBroker,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.broker
            .lock()
            .close_connection(self.id, "the connection was dropped");
    }
}

/// A connection to the in-memory broker.
#[derive(Debug)]
pub(crate) struct Connection {
    guard: Arc<Guard>,
}

impl Connection {
    pub(crate) fn channel(&self) -> Result<Channel, Error> {
        let id = self.guard.broker.lock().channel(self.guard.id)?;
        Ok(Channel {
            guard: Arc::clone(&self.guard),
            id,
        })
    }

    pub(crate) fn probe(&self, queue: &str) -> Result<QueueState, Error> {
        self.guard.broker.lock().probe(self.guard.id, queue)
    }

    pub(crate) fn reply_address(&self, address: &str) -> Result<ReplyAddress, Error> {
        self.guard
            .broker
            .lock()
            .reply_address(self.guard.id, address)
    }

    pub(crate) fn close(&self, reason: &str) {
        self.guard
            .broker
            .lock()
            .close_connection(self.guard.id, reason);
    }
}

/// A channel of the in-memory broker.
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    guard: Arc<Guard>,
    id: u64,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.guard.broker.lock()
    }

    pub(crate) fn declare(&self, queue: &str, declaration: &Declaration) -> Result<(), Error> {
        self.lock().declare(self.id, queue, declaration)
    }

    pub(crate) fn delete(&self, queue: &str) {
        self.lock().delete_queue(queue);
    }

    pub(crate) fn prefetch(&self, count: u16) -> Result<(), Error> {
        self.lock().prefetch(self.id, count)
    }

    pub(crate) fn consume(&self, queue: &str, no_ack: bool) -> Result<Consumer, Error> {
        let (sender, deliveries) = mpsc::unbounded_channel();
        let (id, tag) = self.lock().consume(self.id, queue, no_ack, sender)?;
        Ok(Consumer {
            broker: self.guard.broker.clone(),
            id,
            tag,
            deliveries,
        })
    }

    pub(crate) fn cancel(&self, tag: &str) {
        self.lock().cancel(self.id, tag);
    }

    /// Confirms cost nothing here: every publish already knows its fate.
    pub(crate) fn confirm(&self) {}

    pub(crate) fn publish(
        &self,
        routing_key: &str,
        mandatory: bool,
        message: &Outgoing<'_>,
        body: &[u8],
    ) -> Result<Confirm, Error> {
        let stored = Stored {
            correlation_id: message.correlation_id.map(str::to_owned),
            message_id: message.message_id.map(str::to_owned),
            user_id: message.user_id.map(str::to_owned),
            reply_to: message.reply_to.map(str::to_owned),
            content_type: message.content_type.map(str::to_owned),
            expiration: message.expiration_ms.map(|ms| ms.to_string()),
            headers: message
                .headers
                .iter()
                .map(|(key, value)| ((*key).to_owned(), OwnedHeader::from(*value)))
                .collect(),
            body: body.to_vec(),
        };
        let routed = self.lock().publish(
            self.id,
            routing_key,
            mandatory,
            stored,
            message.expiration_ms,
        )?;
        let confirmed = match (routed, mandatory) {
            (false, true) => Confirmed::Returned,
            _ => Confirmed::Taken,
        };
        Ok(Confirm::Done(confirmed))
    }

    pub(crate) fn returned(&self) -> Result<Vec<Returned>, Error> {
        self.lock().returned(self.id)
    }
}

/// A consumer of the in-memory broker; dropping it cancels it, as lapin
/// does.
#[derive(Debug)]
pub(crate) struct Consumer {
    broker: MemoryBroker,
    id: u64,
    tag: String,
    deliveries: mpsc::UnboundedReceiver<Result<Delivery, Error>>,
}

impl Consumer {
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    pub(crate) fn poll_delivery(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Error>>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.broker.lock().stop(self.id);
    }
}

/// Settles one delivery of the in-memory broker.
#[derive(Debug)]
pub(crate) struct Acker {
    state: Weak<Mutex<State>>,
    consumer: u64,
    tag: u64,
    /// A delivery to a consumer without acknowledgements: nothing to settle.
    no_ack: bool,
}

impl Acker {
    fn new(state: Weak<Mutex<State>>, consumer: u64, tag: u64, no_ack: bool) -> Acker {
        Acker {
            state,
            consumer,
            tag,
            no_ack,
        }
    }

    pub(crate) fn settle(&self, how: Settle) -> Result<(), Error> {
        if self.no_ack {
            return Ok(());
        }
        let Some(state) = self.state.upgrade() else {
            return Err(Error::lost("the in-memory broker is gone"));
        };
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.settle(self.consumer, self.tag, how)
    }
}

/// A message as any client publishes or reads it, for
/// [`MemoryBroker::publish`] and [`MemoryBroker::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The `correlation_id` property.
    pub correlation_id: Option<String>,
    /// The `message_id` property.
    pub message_id: Option<String>,
    /// The `user_id` property: who sent it. The in-memory broker does not
    /// check it, where RabbitMQ refuses one that is not the publisher's
    /// login.
    pub user_id: Option<String>,
    /// The `reply_to` property.
    pub reply_to: Option<String>,
    /// The `content_type` property.
    pub content_type: Option<String>,
    /// The `expiration` property, in milliseconds.
    pub expiration_ms: Option<u64>,
    /// Headers, as text.
    pub headers: Vec<(String, String)>,
    /// Delivered before (what [`MemoryBroker::get`] reads).
    pub redelivered: bool,
}

impl RawMessage {
    /// A message with this body and no property.
    pub fn new(body: impl Into<Vec<u8>>) -> RawMessage {
        RawMessage {
            body: body.into(),
            ..RawMessage::default()
        }
    }

    /// With this `correlation_id`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> RawMessage {
        self.correlation_id = Some(id.into());
        self
    }

    /// With this `message_id`.
    pub fn message_id(mut self, id: impl Into<String>) -> RawMessage {
        self.message_id = Some(id.into());
        self
    }

    /// With this `user_id`.
    pub fn user_id(mut self, user: impl Into<String>) -> RawMessage {
        self.user_id = Some(user.into());
        self
    }

    /// With this `reply_to`.
    pub fn reply_to(mut self, reply_to: impl Into<String>) -> RawMessage {
        self.reply_to = Some(reply_to.into());
        self
    }

    /// With this `content_type`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> RawMessage {
        self.content_type = Some(content_type.into());
        self
    }

    /// With this `expiration`, in milliseconds.
    pub fn expiration_ms(mut self, millis: u64) -> RawMessage {
        self.expiration_ms = Some(millis);
        self
    }

    /// With this header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> RawMessage {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A message as the in-memory broker keeps it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) correlation_id: Option<String>,
    pub(crate) message_id: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) reply_to: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) expiration: Option<String>,
    pub(crate) headers: Vec<(String, OwnedHeader)>,
    pub(crate) body: Vec<u8>,
}

/// A header value as the in-memory broker keeps it: what rabbit-rpc sends,
/// text.
#[derive(Debug, Clone)]
pub(crate) struct OwnedHeader(String);

impl OwnedHeader {
    pub(crate) fn borrowed(&self) -> Header<'_> {
        Header::Text(self.0.as_str().into())
    }
}

impl From<HeaderValue<'_>> for OwnedHeader {
    fn from(value: HeaderValue<'_>) -> OwnedHeader {
        match value {
            HeaderValue::Text(text) => OwnedHeader(text.to_owned()),
        }
    }
}
