//! The serving side: consume a request queue, run a [`Handler`] for each
//! request, publish its reply, then acknowledge; reconnect when the broker
//! goes away; drain on shutdown.

mod queue;
mod reply_to;
mod request;
mod stats;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, Consumer,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

pub use queue::{QueueOrigin, QueueType};
pub use request::MAX_CORRELATION_ID_LEN;
pub use stats::ServerStats;

use crate::{
    BrokerUrl, DEFAULT_URL, Error, Handler,
    broker::{Backoff, DEFAULT_CONNECT_TIMEOUT, Endpoints, STABLE_CONNECTION},
};
use queue::QueueSettings;
use reply_to::ReplyToPolicy;
use request::Shared;
use stats::Count;

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

/// The largest request body a server works on by default; a larger one is
/// answered with `resource_exhausted` before any work.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 1024 * 1024;

/// How long a draining server waits for running handlers by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`Server`]; every setting has a documented default.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    urls: Vec<String>,
    queue: String,
    prefetch: u16,
    concurrency: usize,
    declare: QueueSettings,
    reply_to: ReplyToPolicy,
    connect_timeout: Duration,
    max_request_size: usize,
    max_reply_size: usize,
    drain_timeout: Duration,
    reconnect: bool,
    name: String,
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            urls: vec![DEFAULT_URL.to_owned()],
            queue: DEFAULT_QUEUE.to_owned(),
            prefetch: DEFAULT_PREFETCH,
            concurrency: DEFAULT_CONCURRENCY,
            declare: QueueSettings::default(),
            reply_to: ReplyToPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_reply_size: DEFAULT_MAX_REPLY_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            reconnect: true,
            name: "rabbit-rpc server".to_owned(),
        }
    }
}

impl ServerBuilder {
    /// The broker URL. Default: [`DEFAULT_URL`].
    pub fn url(mut self, url: impl Into<String>) -> ServerBuilder {
        self.urls = vec![url.into()];
        self
    }

    /// Several broker URLs (say, one per cluster node), tried in turn when
    /// connecting and reconnecting, starting with the last that worked.
    pub fn urls<I>(mut self, urls: I) -> ServerBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.urls = urls.into_iter().map(Into::into).collect();
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

    /// The type of queue declared. Default: [`QueueType::Quorum`] when the
    /// queue does not exist (durable, `x-queue-type: quorum` and no other
    /// argument, as RabbitMQ's tutorials declare `rpc_queue` today), and
    /// none when it does: the server then serves the existing queue as it
    /// is, whoever declared it.
    ///
    /// Setting this, or any other queue setting ([`durable`](Self::durable),
    /// [`delivery_limit`](Self::delivery_limit),
    /// [`queue_arguments`](Self::queue_arguments)), makes the server declare
    /// the queue with exactly those settings even when it exists; if the
    /// broker finds them different from the existing queue's, binding fails
    /// with [`Error::QueueMismatch`].
    pub fn queue_type(mut self, queue_type: QueueType) -> ServerBuilder {
        self.declare.queue_type = Some(queue_type);
        self
    }

    /// Whether the declared queue survives a broker restart (its requests
    /// do not: they are sent transient). Default: true. `false` declares a
    /// transient classic queue, as the 2022 tutorial did, for fleets that
    /// run that tutorial's servers on RabbitMQ 3.x; RabbitMQ 4.3 and later
    /// refuse transient shared queues unless the operator allows them. A
    /// quorum queue is always durable. An explicit queue setting (see
    /// [`queue_type`](Self::queue_type)).
    pub fn durable(mut self, durable: bool) -> ServerBuilder {
        self.declare.durable = Some(durable);
        self
    }

    /// How many times the broker delivers one request before it drops it
    /// (or dead-letters it): `x-delivery-limit`, so a request that crashes
    /// every server it reaches cannot loop forever. Quorum queues only.
    /// Default: not set (RabbitMQ 4.0 and later then apply 20; 3.x has no
    /// limit). An explicit queue setting (see
    /// [`queue_type`](Self::queue_type)).
    pub fn delivery_limit(mut self, limit: u32) -> ServerBuilder {
        self.declare.delivery_limit = Some(limit);
        self
    }

    /// Extra `x-…` arguments for the queue declaration (e.g. `x-expires`,
    /// `x-dead-letter-exchange`). Default: none. An explicit queue setting
    /// (see [`queue_type`](Self::queue_type)).
    pub fn queue_arguments(mut self, arguments: FieldTable) -> ServerBuilder {
        self.declare.arguments = arguments;
        self
    }

    /// Also answers requests whose `reply_to` starts with `prefix`.
    ///
    /// A server publishes each reply to the queue its request's `reply_to`
    /// names, so a request could make it publish into any queue of the
    /// virtual host. By default it answers only reply addresses: direct
    /// reply-to (`amq.rabbitmq.reply-to.…`), server-named queues
    /// (`amq.gen-…`) and rabbit-rpc clients' reply queues
    /// ([`REPLY_QUEUE_PREFIX`](crate::protocol::REPLY_QUEUE_PREFIX)), which
    /// is what every tutorial client uses. A request with any other
    /// `reply_to` is not run and not answered: it is rejected without
    /// requeue, counted in [`ServerStats::refused`] and logged once per
    /// address per minute. Allow the reply queues of clients that name
    /// their own here. May be called several times.
    pub fn allow_reply_to_prefix(mut self, prefix: impl Into<String>) -> ServerBuilder {
        self.reply_to.allow_prefix(prefix.into());
        self
    }

    /// Also answers requests whose `reply_to` is exactly `queue` (see
    /// [`allow_reply_to_prefix`](Self::allow_reply_to_prefix)). May be
    /// called several times.
    pub fn allow_reply_to_queue(mut self, queue: impl Into<String>) -> ServerBuilder {
        self.reply_to.allow_queue(queue.into());
        self
    }

    /// Answers any `reply_to` but the request queue itself: the behaviour of
    /// earlier versions, and of the tutorial's servers. **Unsafe on a
    /// shared virtual host**: whoever may publish to the request queue can
    /// then make this server publish into any queue there (see
    /// [`allow_reply_to_prefix`](Self::allow_reply_to_prefix)).
    pub fn allow_any_reply_to(mut self) -> ServerBuilder {
        self.reply_to.allow_any();
        self
    }

    /// How long connecting may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The largest request body worked on; a larger one is answered with
    /// `resource_exhausted` without running the handler. Default:
    /// [`DEFAULT_MAX_REQUEST_SIZE`] (1 MiB).
    pub fn max_request_size(mut self, bytes: usize) -> ServerBuilder {
        self.max_request_size = bytes;
        self
    }

    /// The largest reply body sent; a handler's larger result is answered
    /// with `resource_exhausted`. Default: [`DEFAULT_MAX_REPLY_SIZE`]
    /// (16 MiB). Keep it under the broker's `max_message_size`.
    pub fn max_reply_size(mut self, bytes: usize) -> ServerBuilder {
        self.max_reply_size = bytes;
        self
    }

    /// How long a graceful shutdown waits for running handlers before it
    /// closes the connection anyway (the broker then hands their requests to
    /// another server). Default: [`DEFAULT_DRAIN_TIMEOUT`] (30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.drain_timeout = timeout;
        self
    }

    /// Whether the server reconnects, re-declares its queue and resumes
    /// consuming when it loses the broker. Default: true. When false,
    /// [`Server::serve`] ends with [`Error::ConnectionLost`] instead.
    pub fn reconnect(mut self, reconnect: bool) -> ServerBuilder {
        self.reconnect = reconnect;
        self
    }

    /// The connection name shown by `rabbitmqctl list_connections`.
    /// Default: `rabbit-rpc server`.
    pub fn connection_name(mut self, name: impl Into<String>) -> ServerBuilder {
        self.name = name.into();
        self
    }

    /// Connects, joins or declares the queue (see
    /// [`queue_type`](Self::queue_type)) and starts consuming from it. When
    /// this returns, requests are being received (and wait for
    /// [`Server::serve`]).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::InvalidRequest`] for queue settings
    /// that make no queue (a transient quorum queue, a delivery limit on a
    /// classic one), [`Error::Connect`], [`Error::QueueMismatch`] when the
    /// queue exists with other settings than those given, [`Error::Declare`]
    /// when the broker refuses the queue otherwise, or another AMQP error.
    pub async fn bind(self) -> Result<Server, Error> {
        crate::protocol::queue_name(&self.queue)?;
        self.declare.check()?;
        let endpoints = Endpoints::parse(&self.urls)?;
        let settings = Arc::new(Settings {
            endpoints,
            builder: self,
        });
        let session = Session::open(&settings, settings.builder.prefetch).await?;
        Ok(Server {
            settings,
            session,
            stats: ServerStats::default(),
        })
    }
}

/// A builder's settings, fixed at [`ServerBuilder::bind`], for reconnecting.
#[derive(Debug)]
struct Settings {
    builder: ServerBuilder,
    endpoints: Endpoints,
}

/// One connection's worth of serving: the connection, a channel consuming
/// requests, and one publishing replies.
#[derive(Debug)]
struct Session {
    connection: Connection,
    url: BrokerUrl,
    requests: Channel,
    replies: Channel,
    consumer: Consumer,
    /// Whether the queue was joined, matched or created on this connection.
    origin: QueueOrigin,
    /// The prefetch in force: the configured one, or 1 after a request this
    /// server could not parse (see [`serve_session`]).
    prefetch: u16,
}

/// How long closing a channel or connection, or cancelling the consumer, may
/// take before the server gives up waiting.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Session {
    /// Connects, declares the queue, sets the prefetch and starts consuming.
    async fn open(settings: &Settings, prefetch: u16) -> Result<Session, Error> {
        let builder = &settings.builder;
        let (connection, url) = settings
            .endpoints
            .connect(&builder.name, builder.connect_timeout)
            .await?;
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
        let queue = crate::protocol::queue_name(&builder.queue)?;
        let origin = queue::bind(&connection, &requests, &queue, &builder.declare).await?;
        requests
            .basic_qos(prefetch, BasicQosOptions::default())
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
        Ok(Session {
            connection,
            url,
            requests,
            replies,
            consumer,
            origin,
            prefetch,
        })
    }

    /// Closes the connection, which hands every unacknowledged request on it
    /// back to the queue. Bounded: a broker that has stopped reading this
    /// connection (a memory alarm) must not hold a shutdown forever; the
    /// socket closes when the session is dropped anyway.
    async fn close(&self, why: &str) {
        let closing = async {
            let _ = self.requests.close(200, why.into()).await;
            let _ = self.connection.close(200, why.into()).await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
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
    settings: Arc<Settings>,
    session: Session,
    stats: ServerStats,
}

/// Why a session's serve loop ended.
enum Ended {
    Shutdown,
    Lost {
        reason: String,
        /// The broker sent a frame lapin could not parse: most likely a
        /// request with properties that are not valid UTF-8, which comes
        /// back on every connection.
        unparsable: bool,
    },
}

impl Server {
    /// A builder with every setting at its default.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The queue this server consumes.
    pub fn queue(&self) -> &str {
        &self.settings.builder.queue
    }

    /// The broker this server is connected to (password hidden).
    pub fn broker(&self) -> &BrokerUrl {
        &self.session.url
    }

    /// Whether the server joined an existing queue as it was, found it
    /// matching the settings given, or created it.
    pub fn queue_origin(&self) -> QueueOrigin {
        self.session.origin
    }

    /// The server's counters, to read while it serves.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Serves until the process ends, reconnecting whenever the broker goes
    /// away.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection is lost and
    /// [`ServerBuilder::reconnect`] is off.
    pub async fn serve<H: Handler>(self, handler: H) -> Result<(), Error> {
        self.serve_with_shutdown(handler, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes, then drains: stops taking requests
    /// (cancels the consumer), hands those received but not started back to
    /// the queue, finishes and answers those being handled (for up to
    /// [`ServerBuilder::drain_timeout`]), and closes the connection.
    ///
    /// When the broker goes away (a dropped connection, a broker restart) the
    /// server reconnects with backoff, trying every URL in turn, re-declares
    /// its queue and resumes consuming.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection is lost and
    /// [`ServerBuilder::reconnect`] is off.
    pub async fn serve_with_shutdown<H, F>(self, handler: H, shutdown: F) -> Result<(), Error>
    where
        H: Handler,
        F: Future<Output = ()>,
    {
        let Server {
            settings,
            mut session,
            stats,
        } = self;
        let builder = &settings.builder;
        let shared = Arc::new(Shared {
            handler,
            queue: builder.queue.clone(),
            max_request_size: builder.max_request_size,
            max_reply_size: builder.max_reply_size,
            stats: stats.clone(),
            reply_to: builder.reply_to.clone(),
            refusals: Default::default(),
            permits: Arc::new(Semaphore::new(
                builder.concurrency.min(Semaphore::MAX_PERMITS),
            )),
            draining: CancellationToken::new(),
        });
        let tasks = TaskTracker::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            let connected = Instant::now();
            let ended = serve_session(
                &shared,
                &tasks,
                &mut session,
                builder.prefetch,
                shutdown.as_mut(),
            )
            .await;
            match ended {
                Ended::Shutdown => break,
                Ended::Lost { reason, unparsable } => {
                    // Whatever broke, start afresh: the old connection's
                    // unacknowledged requests go back to the queue.
                    session.close("reconnecting").await;
                    if !builder.reconnect {
                        return Err(Error::ConnectionLost { reason });
                    }
                    warn!(queue = %builder.queue, %reason, "lost the broker; reconnecting");
                    backoff.connection_lasted(connected.elapsed());
                    // After an unparsable request, take one request at a
                    // time until the connection holds: only that request
                    // comes back each time, not the others around it (on a
                    // quorum queue each return counts towards their
                    // delivery limit too).
                    let prefetch = if unparsable { 1 } else { builder.prefetch };
                    match reconnect(&settings, prefetch, &mut backoff, shutdown.as_mut()).await {
                        Some(fresh) => {
                            session = fresh;
                            stats.add(Count::Reconnection);
                            if session.origin == QueueOrigin::Created {
                                info!(
                                    "reconnected to {}; queue '{}' no longer existed, so declared it again as {}",
                                    session.url,
                                    builder.queue,
                                    builder.declare.describe()
                                );
                            } else {
                                info!(
                                    "reconnected to {}; serving queue '{}' again",
                                    session.url, builder.queue
                                );
                            }
                        }
                        None => {
                            drain(&shared, &tasks, builder.drain_timeout).await;
                            return Ok(());
                        }
                    }
                }
            }
        }
        // No request starts from here on, then no new deliveries.
        shared.draining.cancel();
        let cancel = session
            .requests
            .basic_cancel(session.consumer.tag(), BasicCancelOptions::default());
        if let Ok(Ok(())) = tokio::time::timeout(CLOSE_TIMEOUT, cancel).await {
            // Deliveries that arrived before the cancel took effect go back
            // at once, not when the connection closes.
            let received_late = async {
                while let Some(Ok(delivery)) = session.consumer.next().await {
                    shared.requeue(&delivery).await;
                }
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, received_late).await;
        }
        drain(&shared, &tasks, builder.drain_timeout).await;
        session.close("server shutting down").await;
        Ok(())
    }
}

/// Takes deliveries from one session until shutdown or until the session
/// fails. Each delivery gets its own task at once, stamped with the time it
/// arrived (its deadline counts from then), which waits for a free handler
/// slot. A session opened with less than the configured `prefetch` (after an
/// unparsable request) gets it back once it has lasted
/// [`STABLE_CONNECTION`].
async fn serve_session<H: Handler>(
    shared: &Arc<Shared<H>>,
    tasks: &TaskTracker,
    session: &mut Session,
    prefetch: u16,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let origin = request::Origin {
        replies: session.replies.clone(),
        failure: Arc::new(Failure::default()),
        lost: CancellationToken::new(),
    };
    let ended = take_deliveries(shared, tasks, session, prefetch, &origin, shutdown).await;
    if let Ended::Lost { .. } = ended {
        // Tasks of this session still waiting for a handler slot must not
        // run: their requests go back to the queue with the connection.
        origin.lost.cancel();
    }
    ended
}

/// The loop of [`serve_session`].
async fn take_deliveries<H: Handler>(
    shared: &Arc<Shared<H>>,
    tasks: &TaskTracker,
    session: &mut Session,
    prefetch: u16,
    origin: &request::Origin,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let mut restore = std::pin::pin!(tokio::time::sleep(STABLE_CONNECTION));
    loop {
        let delivery = tokio::select! {
            biased;
            () = &mut shutdown => return Ended::Shutdown,
            reason = origin.failure.wait() => {
                return Ended::Lost { reason, unparsable: false };
            }
            () = &mut restore, if session.prefetch < prefetch => {
                match session.requests.basic_qos(prefetch, BasicQosOptions::default()).await {
                    Ok(()) => {
                        session.prefetch = prefetch;
                        info!(queue = %shared.queue, "the connection holds; prefetch {prefetch} again");
                    }
                    Err(error) => {
                        return Ended::Lost { reason: error.to_string(), unparsable: false };
                    }
                }
                continue;
            }
            delivery = session.consumer.next() => delivery,
        };
        match delivery {
            Some(Ok(delivery)) => {
                let received = Instant::now();
                tasks.spawn(Arc::clone(shared).run(delivery, received, origin.clone()));
            }
            Some(Err(error)) => {
                let unparsable = matches!(error.kind(), lapin::ErrorKind::ParsingError(_));
                if unparsable {
                    error!(
                        queue = %shared.queue,
                        "the broker sent a message this server cannot parse (a request whose AMQP \
                         properties are not valid UTF-8?); it comes back on every connection \
                         until it is removed from the queue (a quorum queue's delivery limit \
                         drops it); taking one request at a time meanwhile"
                    );
                }
                return Ended::Lost {
                    reason: error.to_string(),
                    unparsable,
                };
            }
            None => {
                return Ended::Lost {
                    reason: format!(
                        "the broker cancelled the consumer of queue '{}' (was it deleted?)",
                        shared.queue
                    ),
                    unparsable: false,
                };
            }
        }
    }
}

/// Opens a new session, waiting with backoff between attempts. `None` when
/// `shutdown` completes first.
async fn reconnect(
    settings: &Settings,
    prefetch: u16,
    backoff: &mut Backoff,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<Session> {
    loop {
        let delay = backoff.next_delay();
        tokio::select! {
            () = &mut shutdown => return None,
            () = tokio::time::sleep(delay) => {}
        }
        tokio::select! {
            () = &mut shutdown => return None,
            opened = Session::open(settings, prefetch) => match opened {
                Ok(session) => return Some(session),
                Err(error) => warn!(queue = %settings.builder.queue, %error, "could not reconnect yet; retrying"),
            },
        }
    }
}

/// Hands requests not started back to the queue and waits (up to
/// `timeout`) for the running ones.
async fn drain<H: Handler>(shared: &Shared<H>, tasks: &TaskTracker, timeout: Duration) {
    shared.draining.cancel();
    tasks.close();
    if tokio::time::timeout(timeout, tasks.wait()).await.is_err() {
        warn!(
            queue = %shared.queue,
            "{} requests still running after {}; closing anyway (the broker hands them to another server)",
            tasks.len(),
            crate::fmt_duration(timeout)
        );
    }
}

/// A request task's report that its session cannot go on (its reply channel
/// is gone): the serve loop reconnects, and the broker hands the old
/// session's unacknowledged requests out again.
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
