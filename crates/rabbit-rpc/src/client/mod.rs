//! The calling side: one connection, one channel, many concurrent calls.

mod builder;
mod probe;
mod unroutable;

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{Channel, Connection, Consumer, options::BasicPublishOptions};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

pub use builder::{CallOptions, ClientBuilder, DEFAULT_NO_SERVER_CHECK, ReplyQueue};
pub use unroutable::RETURN_SWEEP;

use crate::{Error, Reply, in_flight::InFlight, protocol};
use probe::{Probe, Probes};
use unroutable::PendingConfirm;

/// How long a call waits for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body a client sends by default: RabbitMQ 4's default
/// `max_message_size`. A larger message makes the broker close the channel.
pub const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;

/// A deadline for timeouts too long to represent: about 30 years.
const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

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
    max_body_size: usize,
    /// Recent "does anyone consume this queue?" answers.
    probes: Probes,
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
        let body = body.as_ref();
        if body.len() > inner.max_body_size {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "the body is {} bytes; this client sends at most {} (ClientBuilder::max_body_size)",
                    body.len(),
                    inner.max_body_size
                ),
            });
        }
        let routing_key = protocol::queue_name(queue)?;
        let timeout = options.timeout.unwrap_or(inner.timeout);
        let started = tokio::time::Instant::now();
        // A timeout too large for the clock (`Duration::MAX` for "no
        // timeout") means a deadline that never comes.
        let deadline = started + timeout.min(NEVER);
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
        )?;
        let publish = inner.channel.basic_publish(
            "".into(),
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
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
        // Asking is bounded by the call's deadline: a broker that blocks this
        // connection (a memory alarm) must not hold the call past it.
        let probe = tokio::time::timeout_at(deadline, inner.probes.check(&inner.connection, queue));
        match probe.await.unwrap_or(Probe::Unknown) {
            Probe::NoQueue => {
                return Err(Error::NoRoute {
                    queue: queue.to_owned(),
                });
            }
            // Nobody consumes and requests wait: ours is among them. (With
            // no message waiting, ours is in the hands of a server that is
            // draining or restarting: keep waiting.)
            Probe::Queue {
                consumers: 0,
                messages,
            } if messages > 0 => {
                return Err(Error::NoServer {
                    queue: queue.to_owned(),
                });
            }
            Probe::Queue { .. } | Probe::Unknown => {}
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

    /// Starts the client's background tasks on a connected channel that
    /// consumes `replies` from `reply_to`.
    fn start(
        connection: Connection,
        channel: Channel,
        reply_to: String,
        replies: Consumer,
        settings: &ClientBuilder,
    ) -> Client {
        let in_flight = Arc::new(InFlight::new());
        let mut tasks = vec![tokio::spawn(route_replies(replies, Arc::clone(&in_flight)))];
        // Even with confirms on, the sweep is needed: it is what frees the
        // confirms of calls dropped while publishing.
        tasks.push(tokio::spawn(unroutable::sweep_returns(
            channel.clone(),
            Arc::clone(&in_flight),
        )));
        let confirms = settings.publisher_confirms.then(|| {
            let (confirms, confirm_queue) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(unroutable::watch_confirms(
                confirm_queue,
                Arc::clone(&in_flight),
            )));
            confirms
        });
        Client {
            inner: Arc::new(Inner {
                connection,
                channel,
                reply_to,
                in_flight,
                ids: CorrelationIds::new(),
                confirms,
                timeout: settings.timeout,
                no_server_check: settings.no_server_check,
                max_body_size: settings.max_body_size,
                probes: Probes::default(),
                tasks,
            }),
        }
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
