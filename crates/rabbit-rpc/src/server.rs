//! The serving side: consume a request queue, run a [`Handler`] for each
//! request, publish its reply, then acknowledge.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::{FutureExt, StreamExt};
use lapin::{
    BasicProperties, Channel, Connection, Consumer,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
        BasicQosOptions, QueueDeclareOptions,
    },
    types::{FieldTable, ShortString},
};
use tokio::sync::Semaphore;
use tracing::{debug, error, warn};

use crate::{
    BrokerUrl, Code, DEFAULT_URL, Error, Handler, Request, Response, Status,
    broker::DEFAULT_CONNECT_TIMEOUT,
    protocol::{self, ERROR_CONTENT_TYPE},
};

/// The queue served unless told otherwise: the tutorial's.
pub const DEFAULT_QUEUE: &str = "rpc_queue";

/// How many requests run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How many unacknowledged requests the broker sends ahead by default.
pub const DEFAULT_PREFETCH: u16 = 256;

/// The largest reply a server sends by default: RabbitMQ 4's default
/// `max_message_size`. A larger one would make the broker close the reply
/// channel; it is answered with `resource_exhausted` instead.
pub const DEFAULT_MAX_REPLY_SIZE: usize = 16 * 1024 * 1024;

/// Builds a [`Server`]; every setting has a documented default.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    url: String,
    queue: String,
    prefetch: u16,
    concurrency: usize,
    durable: bool,
    arguments: FieldTable,
    connect_timeout: Duration,
    max_reply_size: usize,
    name: String,
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            url: DEFAULT_URL.to_owned(),
            queue: DEFAULT_QUEUE.to_owned(),
            prefetch: DEFAULT_PREFETCH,
            concurrency: DEFAULT_CONCURRENCY,
            durable: false,
            arguments: FieldTable::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_reply_size: DEFAULT_MAX_REPLY_SIZE,
            name: "rabbit-rpc server".to_owned(),
        }
    }
}

impl ServerBuilder {
    /// The broker URL. Default: [`DEFAULT_URL`].
    pub fn url(mut self, url: impl Into<String>) -> ServerBuilder {
        self.url = url.into();
        self
    }

    /// The request queue. Default: [`DEFAULT_QUEUE`] (`rpc_queue`).
    pub fn queue(mut self, queue: impl Into<String>) -> ServerBuilder {
        self.queue = queue.into();
        self
    }

    /// How many requests the broker sends ahead before they are
    /// acknowledged. Default: [`DEFAULT_PREFETCH`]. The tutorial uses 1,
    /// which spreads slow requests most evenly over many servers but caps
    /// throughput at one round trip per request.
    pub fn prefetch(mut self, prefetch: u16) -> ServerBuilder {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How many requests are handled at once. Default:
    /// [`DEFAULT_CONCURRENCY`].
    pub fn concurrency(mut self, concurrency: usize) -> ServerBuilder {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Declares the queue durable. Default: false, as the tutorial declares
    /// `rpc_queue`; both sides must agree or the broker refuses the second
    /// declaration.
    pub fn durable(mut self, durable: bool) -> ServerBuilder {
        self.durable = durable;
        self
    }

    /// Extra `x-…` arguments for the queue declaration (e.g. `x-expires`,
    /// `x-queue-type`). Default: none.
    pub fn queue_arguments(mut self, arguments: FieldTable) -> ServerBuilder {
        self.arguments = arguments;
        self
    }

    /// How long connecting may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The largest reply body sent; a handler's larger result is answered
    /// with `resource_exhausted`. Default: [`DEFAULT_MAX_REPLY_SIZE`]
    /// (16 MiB). Keep it under the broker's `max_message_size`.
    pub fn max_reply_size(mut self, bytes: usize) -> ServerBuilder {
        self.max_reply_size = bytes;
        self
    }

    /// The connection name shown by `rabbitmqctl list_connections`.
    /// Default: `rabbit-rpc server`.
    pub fn connection_name(mut self, name: impl Into<String>) -> ServerBuilder {
        self.name = name.into();
        self
    }

    /// Connects, declares the queue and starts consuming from it. When this
    /// returns, requests are being received (and wait for
    /// [`Server::serve`]).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::Connect`], [`Error::Declare`] when the
    /// queue exists with other settings, or another AMQP error.
    pub async fn bind(self) -> Result<Server, Error> {
        let url = BrokerUrl::parse(&self.url)?;
        let queue = crate::protocol::queue_name(&self.queue)?;
        let connection = url.connect(&self.name, self.connect_timeout).await?;
        let requests = connection
            .create_channel()
            .await
            .map_err(Error::from_lapin)?;
        // Replies go out on their own channel: each channel is one process in
        // the broker, so this spreads the work (about +8% measured).
        let replies = connection
            .create_channel()
            .await
            .map_err(Error::from_lapin)?;
        requests
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: self.durable,
                    ..QueueDeclareOptions::default()
                },
                self.arguments.clone(),
            )
            .await
            .map_err(|e| Error::Declare {
                queue: self.queue.clone(),
                reason: declare_failure(&e),
            })?;
        requests
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(Error::from_lapin)?;
        let consumer = requests
            .basic_consume(
                queue,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::from_lapin)?;
        Ok(Server {
            connection,
            requests,
            replies,
            consumer,
            queue: self.queue,
            concurrency: self.concurrency,
            max_reply_size: self.max_reply_size,
        })
    }
}

fn declare_failure(error: &lapin::Error) -> String {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind()
        && amqp.get_id() == 406
    {
        return format!(
            "it already exists with different settings ({}); delete it or declare it the same way",
            amqp.get_message()
        );
    }
    error.to_string()
}

/// A server bound to its queue; [`Server::serve`] runs it.
///
/// ```no_run
/// use rabbit_rpc::{handler_fn, Request, Server, Status};
///
/// # async fn example() -> Result<(), rabbit_rpc::Error> {
/// let server = Server::builder().queue("echo").bind().await?;
/// server
///     .serve(handler_fn(|request: Request| async move {
///         Ok::<_, Status>(request.into_body())
///     }))
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    connection: Connection,
    requests: Channel,
    replies: Channel,
    consumer: Consumer,
    queue: String,
    concurrency: usize,
    max_reply_size: usize,
}

impl Server {
    /// A builder with every setting at its default.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The queue this server consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Serves until the connection is lost.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection or the consumer ends.
    pub async fn serve<H: Handler>(self, handler: H) -> Result<(), Error> {
        self.serve_with_shutdown(handler, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes, then drains: stops taking requests,
    /// finishes and answers those being handled, returns those received but
    /// not started to the queue, and closes the connection.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection or the consumer ends
    /// before `shutdown`.
    pub async fn serve_with_shutdown<H, F>(self, handler: H, shutdown: F) -> Result<(), Error>
    where
        H: Handler,
        F: Future<Output = ()>,
    {
        let Server {
            connection,
            requests,
            replies,
            mut consumer,
            queue,
            concurrency,
            max_reply_size,
        } = self;
        let shared = Arc::new(Shared {
            handler,
            replies,
            queue,
            max_reply_size,
            failure: Failure::default(),
        });
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut shutdown = std::pin::pin!(shutdown);
        let ended = loop {
            let permit = tokio::select! {
                () = &mut shutdown => break None,
                reason = shared.failure.wait() => break Some(Error::ConnectionLost { reason }),
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
            };
            let delivery = tokio::select! {
                () = &mut shutdown => break None,
                reason = shared.failure.wait() => break Some(Error::ConnectionLost { reason }),
                delivery = consumer.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        shared.process(delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => break Some(Error::from_lapin(error)),
                None => {
                    break Some(Error::ConnectionLost {
                        reason: format!(
                            "the broker cancelled the consumer of queue '{}' (was it deleted?)",
                            shared.queue
                        ),
                    });
                }
            }
        };
        if let Some(error) = ended {
            return Err(error);
        }
        // Drain: no new deliveries, finish what is in hand, then closing the
        // channel hands prefetched-but-unstarted requests back to the queue.
        let _ = requests
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
        let _ = requests.close(200, "server shutting down".into()).await;
        let _ = connection.close(200, "server shutting down".into()).await;
        Ok(())
    }
}

/// What every request task needs.
struct Shared<H> {
    handler: H,
    replies: Channel,
    queue: String,
    max_reply_size: usize,
    failure: Failure,
}

/// A request task's report that the server cannot go on (its reply channel
/// is gone): the serve loop ends with it, the connection closes, and the
/// broker hands unacknowledged requests to another server.
#[derive(Default)]
struct Failure {
    reason: std::sync::Mutex<Option<String>>,
    raised: tokio::sync::Notify,
}

impl Failure {
    fn raise(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(reason);
        // A stored permit: the loop sees it even if not waiting right now.
        self.raised.notify_one();
    }

    async fn wait(&self) -> String {
        self.raised.notified().await;
        let slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().unwrap_or_default()
    }
}

impl<H: Handler> Shared<H> {
    /// Answers one delivery, then acknowledges it. A request that cannot be
    /// answered is acknowledged and dropped with a log line: requeueing it
    /// would only loop.
    async fn process(&self, mut delivery: Delivery) {
        let properties = &delivery.properties;
        let Some(reply_to) = properties.reply_to().clone() else {
            warn!(queue = %self.queue, "dropping a request without reply_to: there is nowhere to answer");
            ack(&delivery).await;
            return;
        };
        if reply_to.as_str() == self.queue {
            warn!(queue = %self.queue, "dropping a request whose reply_to is the request queue itself: answering would loop");
            ack(&delivery).await;
            return;
        }
        let correlation_id = properties.correlation_id().clone();
        let result = match &correlation_id {
            None => Err(Status::invalid_argument(
                "the request has no correlation_id; set one so the reply can be matched",
            )),
            Some(_) => self.run_handler(&mut delivery).await,
        };
        let (properties, body) = reply(
            correlation_id.as_ref(),
            &delivery.properties,
            result,
            self.max_reply_size,
        );
        let published = self
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
            Ok(_) => ack(&delivery).await,
            // Not acknowledged: ending the server closes the connection, and
            // the broker hands the request to a server again.
            Err(error) => self.failure.raise(format!(
                "could not publish a reply on queue '{}': {error}",
                self.queue
            )),
        }
    }

    async fn run_handler(&self, delivery: &mut Delivery) -> Result<Response, Status> {
        let request = Request {
            body: std::mem::take(&mut delivery.data),
            content_type: delivery.properties.content_type().clone(),
            correlation_id: delivery.properties.correlation_id().clone(),
            redelivered: delivery.redelivered,
        };
        match AssertUnwindSafe(self.handler.call(request))
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
            let mut message = status.message().as_bytes().to_vec();
            message.truncate(max_size.min(MAX_ERROR_MESSAGE));
            (properties, message)
        }
    }
}

/// Error messages longer than this are cut: they are for people.
const MAX_ERROR_MESSAGE: usize = 64 * 1024;

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
