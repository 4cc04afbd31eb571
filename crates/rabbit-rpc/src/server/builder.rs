//! [`ServerBuilder`]: a server's procedures and its settings, each with a
//! documented default.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{
    about,
    caller_policy::CallerPolicy,
    handler::Handler,
    health::{Health, HealthSender},
    procedure::Procedure,
    queue::{QueueSettings, QueueType},
    refusals::RefusalLog,
    reply_to::ReplyToPolicy,
    running::Running,
    serve::{Server, Settings},
    session::Session,
    shared::Shared,
    stats::{Counters, ServerStats},
};
use crate::{
    Error, QueueArgument, Service,
    transport::link::{Link, LinkSettings},
};

/// Builds a [`Server`]: the procedures it answers, and settings that hold
/// for all of them unless a [`Procedure`] says otherwise. Every setting has
/// a documented default.
///
/// ```no_run
/// use rabbit_rpc::{blocking_fn, handler_fn, Procedure, Request, Server, Status};
///
/// # async fn example() -> Result<(), rabbit_rpc::Error> {
/// let server = Server::builder()
///     .url("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .procedure("echo", handler_fn(|request: Request| async move {
///         Ok::<_, Status>(request.into_body())
///     }))
///     .add_procedure(
///         Procedure::new("report", blocking_fn(|_: Request| Ok::<_, Status>("done")))
///             .concurrency(2),
///     )
///     .bind()
///     .await?;
/// server.serve().await
/// # }
/// ```
#[derive(Debug)]
pub struct ServerBuilder {
    link: LinkSettings,
    procedures: Vec<Procedure>,
    prefetch: u16,
    concurrency: usize,
    max_request_size: usize,
    max_reply_size: usize,
    handler_timeout: Option<Duration>,
    declare: QueueSettings,
    reply_to: ReplyToPolicy,
    callers: CallerPolicy,
    drain_timeout: Duration,
    reconnect: bool,
    confirm_replies: bool,
    health: HealthSender,
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            link: LinkSettings::new("rabbit-rpc server"),
            procedures: Vec::new(),
            prefetch: ServerBuilder::DEFAULT_PREFETCH,
            concurrency: ServerBuilder::DEFAULT_CONCURRENCY,
            max_request_size: ServerBuilder::DEFAULT_MAX_REQUEST_SIZE,
            max_reply_size: 16 * 1024 * 1024,
            handler_timeout: None,
            declare: QueueSettings::default(),
            reply_to: ReplyToPolicy::default(),
            callers: CallerPolicy::default(),
            drain_timeout: Duration::from_secs(30),
            reconnect: true,
            confirm_replies: false,
            health: HealthSender::default(),
        }
    }
}

impl Server {
    /// A builder with every setting at its default.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl ServerBuilder {
    /// How many unacknowledged requests the broker sends ahead, per
    /// procedure, unless set: 256.
    pub const DEFAULT_PREFETCH: u16 = 256;

    /// How many requests of one procedure are handled at once, unless set:
    /// 64.
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// The largest request body worked on, unless set: 1 MiB.
    pub const DEFAULT_MAX_REQUEST_SIZE: usize = 1024 * 1024;

    /// The broker URL. Default: [`BrokerUrl::DEFAULT`](crate::BrokerUrl::DEFAULT),
    /// a local RabbitMQ with the `guest` account.
    pub fn url(mut self, url: impl Into<String>) -> ServerBuilder {
        self.link.urls = vec![url.into()];
        self
    }

    /// Several broker URLs (say, one per cluster node), tried in turn when
    /// connecting and reconnecting, starting with the last that worked.
    pub fn urls<I>(mut self, urls: I) -> ServerBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.link.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Uses the in-memory broker `broker` instead of RabbitMQ, for tests
    /// (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn memory(mut self, broker: &crate::MemoryBroker) -> ServerBuilder {
        self.link.memory = Some(broker.clone());
        self
    }

    /// Answers the requests of `queue` with `handler`, with this server's
    /// settings. Several procedures share the server's connection; each has
    /// its own queue, consumer and channel.
    pub fn procedure(self, queue: impl Into<String>, handler: impl Handler) -> ServerBuilder {
        self.add_procedure(Procedure::new(queue, handler))
    }

    /// Answers `procedure`, with its own settings where it has them.
    pub fn add_procedure(mut self, procedure: Procedure) -> ServerBuilder {
        self.procedures.push(procedure);
        self
    }

    /// Answers every procedure of `service`, each on its own queue
    /// (`service.method`).
    pub fn add_service(mut self, service: impl Into<Service>) -> ServerBuilder {
        self.procedures.extend(service.into().into_procedures());
        self
    }

    /// How many unacknowledged requests the broker sends ahead, per
    /// procedure. Default: [`DEFAULT_PREFETCH`](Self::DEFAULT_PREFETCH)
    /// (256). The tutorial uses 1, which spreads slow requests most evenly
    /// over many servers but caps throughput at one round trip per request.
    pub fn prefetch(mut self, prefetch: u16) -> ServerBuilder {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How many requests of one procedure are handled at once. Default:
    /// [`DEFAULT_CONCURRENCY`](Self::DEFAULT_CONCURRENCY) (64).
    pub fn concurrency(mut self, concurrency: usize) -> ServerBuilder {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The largest request body worked on; a larger one is answered with
    /// `resource_exhausted` without running the handler. Default:
    /// [`DEFAULT_MAX_REQUEST_SIZE`](Self::DEFAULT_MAX_REQUEST_SIZE) (1 MiB).
    pub fn max_request_size(mut self, bytes: usize) -> ServerBuilder {
        self.max_request_size = bytes;
        self
    }

    /// The largest reply body sent; a handler's larger result is answered
    /// with `resource_exhausted`. Default: 16 MiB, RabbitMQ 4's default
    /// `max_message_size`; keep it under the broker's.
    pub fn max_reply_size(mut self, bytes: usize) -> ServerBuilder {
        self.max_reply_size = bytes;
        self
    }

    /// The longest a handler may run, counted from its start, for
    /// requests whose caller set a longer deadline or none (tutorial
    /// clients set none). When it passes, the handler is cancelled (its
    /// future dropped; see [`Context::cancelled`](crate::Context::cancelled)
    /// for blocking handlers) and the caller, still waiting, is answered
    /// `deadline_exceeded`. The caller's deadline, when it comes first,
    /// wins: the handler is cancelled and nothing is answered, since
    /// nobody waits. Default: none (a handler runs as long as its caller
    /// waits, or for ever). A [`Procedure`] may set its own.
    pub fn handler_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.handler_timeout = Some(timeout);
        self
    }

    /// The type of queue declared for each procedure. Default:
    /// [`QueueType::Quorum`] when the queue does not exist (durable,
    /// `x-queue-type: quorum` and no other argument, as RabbitMQ's tutorials
    /// declare `rpc_queue` today), and none when it does: the server then
    /// serves the existing queue as it is, whoever declared it.
    ///
    /// Setting this, or any other queue setting ([`durable`](Self::durable),
    /// [`delivery_limit`](Self::delivery_limit),
    /// [`queue_argument`](Self::queue_argument)), makes the server declare
    /// the queue with exactly those settings even when it exists; if the
    /// broker finds them different from the existing queue's, binding fails
    /// with [`Error::QueueMismatch`]. A [`Procedure`] may set its own.
    pub fn queue_type(mut self, queue_type: QueueType) -> ServerBuilder {
        self.declare.queue_type = Some(queue_type);
        self
    }

    /// Whether declared queues survive a broker restart (their requests do
    /// not: they are sent transient). Default: true. `false` declares
    /// transient classic queues, as the 2022 tutorial did, for fleets that
    /// run that tutorial's servers. Transient shared queues are deprecated
    /// in RabbitMQ 4.x (`transient_nonexcl_queues`): 4.3 permits them by
    /// default, its operator may deny them (binding then fails with
    /// [`Error::Refused`](crate::Error::Refused),
    /// [`Refusal::DeniedFeature`](crate::Refusal::DeniedFeature)), and a
    /// later version will. A quorum queue is always durable. A queue setting (see
    /// [`queue_type`](Self::queue_type)).
    pub fn durable(mut self, durable: bool) -> ServerBuilder {
        self.declare.durable = Some(durable);
        self
    }

    /// How many times the broker delivers one request before it drops it
    /// (or dead-letters it): `x-delivery-limit`, so a request that crashes
    /// every server it reaches cannot loop forever. Quorum queues only.
    /// Default: not set (RabbitMQ 4.x then applies 20, measured on 4.3.6:
    /// dropped at the 21st delivery; 3.x has no limit). A queue setting (see [`queue_type`](Self::queue_type)).
    pub fn delivery_limit(mut self, limit: u32) -> ServerBuilder {
        self.declare.delivery_limit = Some(limit);
        self
    }

    /// An extra `x-…` argument for every declared queue (e.g. `x-expires`,
    /// `x-dead-letter-exchange`). Default: none. A queue setting (see
    /// [`queue_type`](Self::queue_type)).
    pub fn queue_argument(
        mut self,
        name: impl Into<String>,
        value: impl Into<QueueArgument>,
    ) -> ServerBuilder {
        self.declare.set_argument(name.into(), value.into());
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

    /// Answers only requests from these users, for every procedure
    /// without a policy of its own ([`Procedure::allow_callers`]): the
    /// request's `user_id`, which RabbitMQ checks is the user its publisher
    /// logged in as. A request from anyone else gets a `permission_denied`
    /// error reply, one with no `user_id` (a tutorial client's) an
    /// `unauthenticated` one; neither runs the handler, both are counted
    /// ([`ServerStats::denied`]) and logged once per caller a minute.
    /// Default: no policy, everyone is answered. Repeat to allow more.
    pub fn allow_callers<I, S>(mut self, users: I) -> ServerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.callers.allow(users.into_iter().map(Into::into));
        self
    }

    /// TLS options for the `amqps://` URLs: a CA file, a client
    /// certificate, the server name to check, login by certificate
    /// (EXTERNAL). A URL's own query parameters (`cacertfile`, `certfile`,
    /// …) win over these, one by one; options for an `amqp://` URL are an
    /// error. The files are read and checked when connecting, so a bad one
    /// fails at once with [`Error::Tls`] naming it. Default: none: an
    /// `amqps://` URL checks the broker's certificate against the system's
    /// trusted CAs and the URL's host, and presents no client certificate.
    pub fn tls(mut self, options: crate::TlsOptions) -> ServerBuilder {
        self.link.tls = Some(options);
        self
    }

    /// How long connecting may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.link.connect_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for running handlers before it
    /// closes the connection anyway (the broker then hands their requests to
    /// another server). Default: 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.drain_timeout = timeout;
        self
    }

    /// Whether the server reconnects, re-declares its queues and resumes
    /// consuming when it loses the broker. Default: true. When false,
    /// [`Server::serve`] ends with [`Error::ConnectionLost`] instead.
    pub fn reconnect(mut self, reconnect: bool) -> ServerBuilder {
        self.reconnect = reconnect;
        self
    }

    /// Whether every request is acknowledged only once the broker has
    /// confirmed its reply (publisher confirms). Default: false.
    ///
    /// A reply to a rabbit-rpc client's reply queue (`rabbit-rpc.reply.…`:
    /// [`ReplyQueue::Resilient`](crate::ReplyQueue::Resilient), and
    /// `ReplyQueue::Exclusive`, whose queues share the prefix) is always
    /// confirmed first: a resilient client's queue outlives its connection,
    /// so a confirmed reply reaches the caller even after it reconnects to
    /// another node, and an unconfirmed one leaves its request to another
    /// server. Other replies (direct reply-to, `amq.gen-…` queues) die with
    /// the caller's connection anyway; without this setting their request is
    /// acknowledged once the reply is written. The reply and the
    /// acknowledgement then travel on two channels, so if this server's
    /// broker node stops between the two, the acknowledgement may count and
    /// the reply be lost: that caller waits for its timeout. With this
    /// setting the request goes to another server instead, at a cost (one
    /// more frame per call, and the request's slot held until the broker
    /// answers: about 0.8× the throughput at 200 calls in flight on one
    /// node, measured with `python3 bench/ab.py .
    /// --serve-options=--confirm-replies`).
    pub fn confirm_replies(mut self, confirm: bool) -> ServerBuilder {
        self.confirm_replies = confirm;
        self
    }

    /// The connection name shown by `rabbitmqctl list_connections`, and
    /// in the server's answer to a ping, with its host and process id
    /// ([`Client::ping`](crate::Client::ping)). Default: `rabbit-rpc server`.
    pub fn connection_name(mut self, name: impl Into<String>) -> ServerBuilder {
        self.link.name = name.into();
        self
    }

    /// The health of the server this builder binds, for probes that must
    /// answer before it is bound: [`ServerState::Connecting`](crate::ServerState::Connecting)
    /// until [`bind`](Self::bind) succeeds, then as
    /// [`Server::health`](crate::Server::health).
    pub fn health(&self) -> Health {
        self.health.health()
    }

    /// Connects, joins or declares each procedure's queue (see
    /// [`queue_type`](Self::queue_type)) and starts consuming them. When
    /// this returns, requests are being received (and wait for
    /// [`Server::serve`]).
    ///
    /// # Errors
    /// [`Error::Config`] for no procedure, two on one queue, queue settings
    /// that make no queue (a transient quorum queue, a delivery limit on a
    /// classic one), or a description whose schema is not valid JSON,
    /// [`Error::InvalidRequest`] for a queue name over 255 bytes, all before
    /// connecting; [`Error::InvalidUrl`], [`Error::Connect`],
    /// [`Error::QueueMismatch`] when a queue exists with other settings than
    /// those given, [`Error::Refused`] when the broker refuses a queue (a
    /// permission, a denied feature), or another broker error.
    pub async fn bind(self) -> Result<Server, Error> {
        let shared = self.shared();
        let running = self.running(&shared)?;
        let link = self.link()?;
        let session = link
            .open(|connection| Session::open(connection, &running, &shared, false))
            .await?;
        let reconnections = Arc::new(AtomicU64::new(0));
        let counters: Vec<Arc<Counters>> =
            running.iter().map(|r| Arc::clone(&r.counters)).collect();
        self.health
            .serving(running.iter().map(|r| r.queue.to_string()).collect());
        // Shown at zero from the start, not only after a first loss.
        ::metrics::counter!(crate::metrics::SERVER_RECONNECTIONS).increment(0);
        Ok(Server {
            stats: ServerStats::of(&counters, &reconnections),
            settings: Arc::new(Settings {
                link,
                running,
                shared,
                drain_timeout: self.drain_timeout,
                reconnect: self.reconnect,
                reconnections,
                health: self.health,
            }),
            session,
        })
    }

    /// The server-wide state its procedures share.
    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            reply_to: self.reply_to.clone(),
            refusals: RefusalLog::default(),
            denials: RefusalLog::default(),
            draining: CancellationToken::new(),
            confirm_replies: self.confirm_replies,
        })
    }

    /// Each procedure with its settings resolved, checked before any
    /// connection is made.
    pub(super) fn running(&self, shared: &Arc<Shared>) -> Result<Vec<Arc<Running>>, Error> {
        let invalid = |reason: String| Err(Error::Config { reason });
        if self.procedures.is_empty() {
            return invalid(
                "the server has no procedure to serve; add one with ServerBuilder::procedure"
                    .to_owned(),
            );
        }
        let mut queues = HashSet::new();
        let instance = about::instance(&self.link.name);
        let mut running = Vec::with_capacity(self.procedures.len());
        for procedure in &self.procedures {
            crate::protocol::check_short("the queue name", &procedure.queue)?;
            if !queues.insert(procedure.queue.as_str()) {
                return invalid(format!(
                    "two procedures on queue '{}'; give each its own queue",
                    procedure.queue
                ));
            }
            let declare = procedure.declare.over(&self.declare);
            declare.check()?;
            let concurrency = procedure.concurrency.unwrap_or(self.concurrency);
            running.push(Arc::new(Running {
                queue: procedure.queue.as_str().into(),
                handler: Arc::clone(&procedure.handler),
                prefetch: procedure.prefetch.unwrap_or(self.prefetch),
                declare,
                max_request_size: procedure.max_request_size.unwrap_or(self.max_request_size),
                max_reply_size: procedure.max_reply_size.unwrap_or(self.max_reply_size),
                handler_timeout: procedure.handler_timeout.or(self.handler_timeout),
                counters: Arc::new(Counters::new(&procedure.queue)),
                permits: Arc::new(Semaphore::new(concurrency.min(Semaphore::MAX_PERMITS))),
                shared: Arc::clone(shared),
                callers: if procedure.callers.is_set() {
                    procedure.callers.clone()
                } else {
                    self.callers.clone()
                },
                control: about::About::new(
                    &procedure.queue,
                    Arc::clone(&instance),
                    concurrency,
                    procedure.described(),
                )?,
            }));
        }
        Ok(running)
    }

    /// Where connections go.
    pub(super) fn link(&self) -> Result<Link, Error> {
        self.link.link()
    }
}
