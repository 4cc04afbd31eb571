//! The calling side: one connection, one channel, many concurrent calls.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    Channel, Confirmation, Connection, Consumer, PublisherConfirm,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use crate::{
    BrokerUrl, DEFAULT_URL, Error, Reply,
    broker::DEFAULT_CONNECT_TIMEOUT,
    in_flight::InFlight,
    protocol::{self, DIRECT_REPLY_TO},
};

/// How long a call waits for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an unanswered call waits before checking whether any server
/// consumes its queue (capped at half the call's timeout).
pub const DEFAULT_NO_SERVER_CHECK: Duration = Duration::from_secs(1);

/// Where replies come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyQueue {
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no queue at all,
    /// replies go straight to this client's channel. The fastest option.
    #[default]
    DirectReplyTo,
    /// An exclusive, auto-deleted queue named by the client, for brokers or
    /// proxies without direct reply-to.
    Exclusive,
}

/// Builds a [`Client`]; every setting has a documented default.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
    no_server_check: Duration,
    reply_queue: ReplyQueue,
    publisher_confirms: bool,
    name: String,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            url: DEFAULT_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            no_server_check: DEFAULT_NO_SERVER_CHECK,
            reply_queue: ReplyQueue::default(),
            publisher_confirms: false,
            name: "rabbit-rpc client".to_owned(),
        }
    }
}

impl ClientBuilder {
    /// The broker URL. Default: [`DEFAULT_URL`].
    pub fn url(mut self, url: impl Into<String>) -> ClientBuilder {
        self.url = url.into();
        self
    }

    /// How long a call waits for its reply. Default: [`DEFAULT_TIMEOUT`]
    /// (30 s). Override per call with [`CallOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// After how long an unanswered call checks whether its queue has any
    /// consumer, to fail with [`Error::NoServer`] instead of waiting out its
    /// timeout. Default: [`DEFAULT_NO_SERVER_CHECK`] (1 s), capped at half
    /// the call's timeout.
    pub fn no_server_check(mut self, after: Duration) -> ClientBuilder {
        self.no_server_check = after;
        self
    }

    /// Where replies come back. Default: [`ReplyQueue::DirectReplyTo`].
    pub fn reply_queue(mut self, reply_queue: ReplyQueue) -> ClientBuilder {
        self.reply_queue = reply_queue;
        self
    }

    /// Whether the broker confirms each request (publisher confirms). With
    /// them a request the broker refuses fails with [`Error::Rejected`] and
    /// an unroutable one with [`Error::NoRoute`] as soon as the broker says
    /// so; without them an unroutable request is noticed within
    /// [`RETURN_SWEEP`] and a refused one only by its timeout. Default: off —
    /// confirms cost the broker about 15–20% more CPU per call (measured on
    /// RabbitMQ 3.10), and the broker is the bottleneck of an RPC system.
    pub fn publisher_confirms(mut self, on: bool) -> ClientBuilder {
        self.publisher_confirms = on;
        self
    }

    /// The connection name shown by `rabbitmqctl list_connections`.
    /// Default: `rabbit-rpc client`.
    pub fn connection_name(mut self, name: impl Into<String>) -> ClientBuilder {
        self.name = name.into();
        self
    }

    /// Connects and gets ready to call.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::Connect`] when the broker cannot be
    /// reached within the connect timeout, or an AMQP error while setting up
    /// the reply consumer.
    pub async fn connect(self) -> Result<Client, Error> {
        let url = BrokerUrl::parse(&self.url)?;
        let connection = url.connect(&self.name, self.connect_timeout).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::from_lapin)?;
        if self.publisher_confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(Error::from_lapin)?;
        }
        let reply_to = match self.reply_queue {
            ReplyQueue::DirectReplyTo => DIRECT_REPLY_TO.to_owned(),
            ReplyQueue::Exclusive => {
                let name = format!("rabbit-rpc.reply.{}", uuid::Uuid::new_v4().simple());
                channel
                    .queue_declare(
                        name.as_str().into(),
                        QueueDeclareOptions::exclusive().auto_delete(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(Error::from_lapin)?;
                name
            }
        };
        // Direct reply-to requires consuming (no-ack) before the first
        // publish, on the channel that publishes.
        let replies = channel
            .basic_consume(
                reply_to.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(Error::from_lapin)?;

        let in_flight = Arc::new(InFlight::new());
        let mut tasks = vec![tokio::spawn(route_replies(replies, Arc::clone(&in_flight)))];
        let confirms = if self.publisher_confirms {
            let (confirms, confirm_queue) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(watch_confirms(
                confirm_queue,
                Arc::clone(&in_flight),
            )));
            Some(confirms)
        } else {
            tasks.push(tokio::spawn(sweep_returns(
                channel.clone(),
                Arc::clone(&in_flight),
            )));
            None
        };
        Ok(Client {
            inner: Arc::new(Inner {
                connection,
                channel,
                reply_to,
                in_flight,
                ids: CorrelationIds::new(),
                confirms,
                timeout: self.timeout,
                no_server_check: self.no_server_check,
                probes: tokio::sync::Mutex::new(HashMap::new()),
                tasks,
            }),
        })
    }
}

/// Per-call settings; unset fields fall back to the client's.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    content_type: Option<String>,
}

impl CallOptions {
    /// Default options.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// How long this call waits for its reply.
    pub fn timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }

    /// The request's `content_type` property, e.g. `text/plain`. Default:
    /// none.
    pub fn content_type(mut self, content_type: impl Into<String>) -> CallOptions {
        self.content_type = Some(content_type.into());
        self
    }
}

/// An RPC client. Cheap to clone: clones share one connection and one
/// channel, and any number of calls may run at once.
///
/// ```no_run
/// # async fn example() -> Result<(), rabbit_rpc::Error> {
/// let client = rabbit_rpc::Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let reply = client.call("rpc_queue", "30").await?;
/// assert_eq!(reply.text(), "832040");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Connection,
    channel: Channel,
    reply_to: String,
    in_flight: Arc<InFlight>,
    ids: CorrelationIds,
    /// Where publisher confirms go to be watched, when they are on.
    confirms: Option<mpsc::UnboundedSender<PendingConfirm>>,
    timeout: Duration,
    no_server_check: Duration,
    /// Recent "does anyone consume this queue?" answers, so a burst of slow
    /// calls asks the broker once.
    probes: tokio::sync::Mutex<HashMap<String, (Instant, Probe)>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Correlation ids: a random per-client prefix and a counter, e.g.
/// `3f2a9c1e-1b`. Unique among this client's calls, which is all that
/// matching needs (replies come only to this client's channel or queue); the
/// prefix tells clients apart in logs. Shorter and cheaper than a UUID per
/// call.
#[derive(Debug)]
struct CorrelationIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl CorrelationIds {
    fn new() -> CorrelationIds {
        let random = uuid::Uuid::new_v4().simple().to_string();
        CorrelationIds {
            prefix: random[..8].to_owned(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// How long a consumer-count answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum Probe {
    NoQueue,
    Consumers(u32),
    Unknown,
}

struct PendingConfirm {
    id: String,
    queue: String,
    confirm: PublisherConfirm,
}

impl std::fmt::Debug for PendingConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConfirm")
            .field("id", &self.id)
            .finish()
    }
}

impl Client {
    /// Connects to `url` with default settings.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Client, Error> {
        ClientBuilder::default().url(url).connect().await
    }

    /// A builder with every setting at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Calls the server consuming `queue` with `body` and waits for its reply.
    ///
    /// # Errors
    /// [`Error::Remote`] with the server's status when it answered with an
    /// error; [`Error::NoRoute`] when no queue has that name;
    /// [`Error::NoServer`] when nobody consumes it; [`Error::Timeout`];
    /// [`Error::ConnectionLost`].
    pub async fn call(&self, queue: &str, body: impl AsRef<[u8]>) -> Result<Reply, Error> {
        self.call_with(queue, body, &CallOptions::default()).await
    }

    /// [`Client::call`] with per-call options.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn call_with(
        &self,
        queue: &str,
        body: impl AsRef<[u8]>,
        options: &CallOptions,
    ) -> Result<Reply, Error> {
        let inner = &*self.inner;
        let timeout = options.timeout.unwrap_or(inner.timeout);
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let timed_out = || Error::Timeout {
            queue: queue.to_owned(),
            after: timeout,
        };

        let id = inner.ids.next();
        let mut pending = inner.in_flight.register(id)?;
        let properties = protocol::request_properties(
            &inner.reply_to,
            pending.id(),
            options.content_type.as_deref(),
        );
        let publish = inner.channel.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body.as_ref(),
            properties,
        );
        let mut publish = std::pin::pin!(publish);
        // One timer per call on the hot path: the moment to check for a
        // server. Publishing takes microseconds unless the broker pushes back
        // (a memory alarm); then it may use the whole timeout.
        let mut check = std::pin::pin!(tokio::time::sleep_until(
            started + inner.no_server_check.min(timeout / 2)
        ));
        let published = tokio::select! {
            published = &mut publish => published,
            () = &mut check => match tokio::time::timeout_at(deadline, &mut publish).await {
                Ok(published) => published,
                Err(_) => return Err(timed_out()),
            },
        };
        let confirm = published.map_err(Error::from_lapin)?;
        // The watcher drives every confirm to completion, even for calls
        // that end first: lapin keeps dropped, unresolved confirms forever.
        // (Without confirms, `confirm` is already resolved: dropping it is
        // free.)
        if let Some(confirms) = &inner.confirms {
            let _ = confirms.send(PendingConfirm {
                id: pending.id().to_owned(),
                queue: queue.to_owned(),
                confirm,
            });
        }

        tokio::select! {
            outcome = pending.outcome() => return outcome,
            () = &mut check => {}
        }
        match self.probe(queue).await {
            Probe::NoQueue => {
                return Err(Error::NoRoute {
                    queue: queue.to_owned(),
                });
            }
            Probe::Consumers(0) => {
                return Err(Error::NoServer {
                    queue: queue.to_owned(),
                });
            }
            Probe::Consumers(_) | Probe::Unknown => {}
        }
        match tokio::time::timeout_at(deadline, pending.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out()),
        }
    }

    /// How many calls are waiting for a reply right now.
    pub fn pending_calls(&self) -> usize {
        self.inner.in_flight.len()
    }

    /// How many replies arrived that no call was waiting for (late replies
    /// after a timeout, duplicates, strangers). They are dropped.
    pub fn unknown_replies(&self) -> u64 {
        self.inner.in_flight.unknown_replies()
    }

    /// Closes the connection. Calls still waiting fail with
    /// [`Error::ConnectionLost`].
    ///
    /// # Errors
    /// An AMQP error if the connection was already closed.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner
            .connection
            .close(200, "client closed".into())
            .await
            .map_err(Error::from_lapin)
    }

    /// Asks the broker whether `queue` exists and how many consumers it has,
    /// reusing an answer younger than [`PROBE_TTL`].
    async fn probe(&self, queue: &str) -> Probe {
        let mut probes = self.inner.probes.lock().await;
        if let Some((at, probe)) = probes.get(queue)
            && at.elapsed() < PROBE_TTL
        {
            return *probe;
        }
        let probe = consumer_count(&self.inner.connection, queue).await;
        probes.insert(queue.to_owned(), (Instant::now(), probe));
        probe
    }
}

/// A passive declare on a throwaway channel (a missing queue closes the
/// channel it is asked on).
async fn consumer_count(connection: &Connection, queue: &str) -> Probe {
    let Ok(channel) = connection.create_channel().await else {
        return Probe::Unknown;
    };
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(declared) => {
            let _ = channel.close(200, "probe done".into()).await;
            Probe::Consumers(declared.consumer_count())
        }
        Err(error) => match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Probe::NoQueue,
            _ => Probe::Unknown,
        },
    }
}

/// Hands each reply to the call waiting for it; when the reply consumer ends
/// (the connection or channel closed), fails every waiting call at once.
async fn route_replies(mut replies: Consumer, in_flight: Arc<InFlight>) {
    let reason = loop {
        match replies.next().await {
            Some(Ok(delivery)) => {
                let Some(id) = delivery.properties.correlation_id().clone() else {
                    debug!("dropping a reply without correlation_id");
                    in_flight.note_unknown();
                    continue;
                };
                let outcome = protocol::decode_reply(&delivery.properties, delivery.data)
                    .map_err(Error::Remote);
                if !in_flight.complete(id.as_str(), outcome) {
                    debug!(correlation_id = %id, "dropping a reply no call is waiting for");
                }
            }
            Some(Err(error)) => break error.to_string(),
            None => break "the reply consumer was cancelled".to_owned(),
        }
    };
    debug!(%reason, "reply consumer ended");
    in_flight.close(reason);
}

/// How often, while calls are waiting, a client without publisher confirms
/// collects requests the broker returned as unroutable.
pub const RETURN_SWEEP: Duration = Duration::from_millis(20);

/// Without publisher confirms lapin keeps returned (unroutable `mandatory`)
/// requests until `wait_for_confirms` is called, which then returns at once.
/// Collect them while calls wait, and fail those calls with
/// [`Error::NoRoute`].
async fn sweep_returns(channel: Channel, in_flight: Arc<InFlight>) {
    let mut tick = tokio::time::interval(RETURN_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if in_flight.len() == 0 {
            continue;
        }
        let Ok(returned) = channel.wait_for_confirms().await else {
            // The channel is gone; the reply consumer fails every call.
            return;
        };
        for message in returned {
            let properties = &message.delivery.properties;
            if let Some(id) = properties.correlation_id() {
                in_flight.fail(
                    id.as_str(),
                    Error::NoRoute {
                        queue: message.delivery.routing_key.to_string(),
                    },
                );
            }
        }
    }
}

/// Resolves publisher confirms in order, failing calls whose request no
/// queue took (returned as unroutable) or the broker refused.
async fn watch_confirms(
    mut queue: mpsc::UnboundedReceiver<PendingConfirm>,
    in_flight: Arc<InFlight>,
) {
    while let Some(PendingConfirm { id, queue, confirm }) = queue.recv().await {
        let error = match confirm.await {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => continue,
            Ok(Confirmation::Ack(Some(_returned))) => Error::NoRoute { queue },
            Ok(Confirmation::Nack(_)) => Error::Rejected { queue },
            // The reply consumer sees the same failure and fails every call.
            Err(_) => continue,
        };
        in_flight.fail(&id, error);
    }
}
