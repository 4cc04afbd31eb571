//! Client settings: [`ClientBuilder`] for the client, [`CallOptions`] per
//! call.

use std::time::Duration;

use super::Client;
use crate::{
    Error, Metadata,
    transport::link::{Link, LinkSettings},
};

/// Where replies come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyQueue {
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no queue at all,
    /// replies go straight to this client's channel. The fastest option.
    #[default]
    DirectReplyTo,
    /// An exclusive, auto-deleted queue named by the client
    /// (`rabbit-rpc.reply.…`), for brokers or proxies without direct
    /// reply-to.
    Exclusive,
    /// Calls that outlive their connection, and their broker node: replies
    /// go to a quorum queue of the client's own (`rabbit-rpc.reply.…`,
    /// replicated over a cluster's nodes, deleted by the broker five
    /// minutes after the client is gone, or at once by
    /// [`Client::close`](super::Client::close)), consumed with
    /// acknowledgements, so a reply waits there while the client
    /// reconnects to another node. Requests are published with publisher
    /// confirms; one whose confirm did not arrive before the connection
    /// dropped is published again on the new connection, with the same
    /// correlation id. So a lost connection fails no call: calls wait for
    /// the reconnection, within their timeout.
    ///
    /// The price: a request may run twice (published again after the
    /// broker took it but before its confirm arrived; the second reply is
    /// dropped), so handlers must be idempotent; and each call costs the
    /// broker a confirm and an acknowledgement more. The request queue must
    /// survive the node loss too: a quorum queue, `serve`'s default.
    Resilient,
}

/// Builds a [`Client`]; every setting has a documented default.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    link: LinkSettings,
    pub(super) timeout: Duration,
    pub(super) no_server_check: Duration,
    pub(super) reply_queue: ReplyQueue,
    pub(super) publisher_confirms: bool,
    pub(super) max_body_size: usize,
    pub(super) max_reply_size: usize,
    pub(super) send_user_id: bool,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            link: LinkSettings::new("rabbit-rpc client"),
            timeout: ClientBuilder::DEFAULT_TIMEOUT,
            no_server_check: Duration::from_secs(1),
            reply_queue: ReplyQueue::default(),
            publisher_confirms: false,
            max_body_size: 16 * 1024 * 1024,
            max_reply_size: ClientBuilder::DEFAULT_MAX_REPLY_SIZE,
            send_user_id: true,
        }
    }
}

impl ClientBuilder {
    /// How long a call waits for its reply unless told otherwise: 30 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The largest reply body a client takes unless told otherwise: 16 MiB,
    /// RabbitMQ 4's default `max_message_size`.
    pub const DEFAULT_MAX_REPLY_SIZE: usize = 16 * 1024 * 1024;

    /// The broker URL. Default: [`BrokerUrl::DEFAULT`](crate::BrokerUrl::DEFAULT),
    /// a local RabbitMQ with the `guest` account.
    pub fn url(mut self, url: impl Into<String>) -> ClientBuilder {
        self.link.urls = vec![url.into()];
        self
    }

    /// Several broker URLs (say, one per cluster node), tried in turn when
    /// connecting and reconnecting, starting with the last that worked.
    pub fn urls<I>(mut self, urls: I) -> ClientBuilder
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
    pub fn memory(mut self, broker: &crate::MemoryBroker) -> ClientBuilder {
        self.link.memory = Some(broker.clone());
        self
    }

    /// How long a call waits for its reply. Default:
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) (30 s). Override per call
    /// with [`CallOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
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
    pub fn tls(mut self, options: crate::TlsOptions) -> ClientBuilder {
        self.link.tls = Some(options);
        self
    }

    /// How long connecting may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.link.connect_timeout = timeout;
        self
    }

    /// After how long an unanswered call checks whether its queue has any
    /// consumer, to fail with [`Error::NoServer`] instead of waiting out its
    /// timeout; the same again for the second, confirming check. Default:
    /// 1 s, capped at half the call's (remaining) timeout.
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
    /// so; without them an unroutable request is noticed within 20 ms and a
    /// refused one only by its timeout. Default: off — confirms cost the
    /// broker about 14% more CPU per call (measured on RabbitMQ 3.10), and
    /// the broker is the bottleneck of an RPC system.
    pub fn publisher_confirms(mut self, on: bool) -> ClientBuilder {
        self.publisher_confirms = on;
        self
    }

    /// Whether requests carry the `user_id` property: the user this client
    /// logged in as, which RabbitMQ checks (a request with another is
    /// refused, the channel closed), so that servers know who called
    /// ([`Context::caller`](crate::Context::caller),
    /// [`ServerBuilder::allow_callers`](crate::ServerBuilder::allow_callers)).
    /// Default: on, with the URL's user; with the EXTERNAL mechanism (a
    /// client certificate) only when the URL names the user, since the
    /// broker maps a certificate to a user by its own setting. Turn it off
    /// for a user the broker knows by another name than the one logged in
    /// with.
    pub fn send_user_id(mut self, on: bool) -> ClientBuilder {
        self.send_user_id = on;
        self
    }

    /// The largest request body sent; a call with a larger one fails at once
    /// with [`Error::InvalidRequest`] instead of making the broker close the
    /// channel. Default: 16 MiB, RabbitMQ 4's default `max_message_size`.
    /// Keep it under the broker's.
    pub fn max_body_size(mut self, bytes: usize) -> ClientBuilder {
        self.max_body_size = bytes;
        self
    }

    /// The largest reply body taken; a reply with a larger one fails its
    /// call with [`Error::ReplyTooLarge`] (code `resource_exhausted`), and
    /// the body is dropped at once, so a server that answers with huge
    /// bodies cannot make the client hold them. The body has been received
    /// whole by then (the AMQP library assembles it before the client sees
    /// it): the broker's `max_message_size` bounds that. Default:
    /// [`DEFAULT_MAX_REPLY_SIZE`](Self::DEFAULT_MAX_REPLY_SIZE) (16 MiB).
    pub fn max_reply_size(mut self, bytes: usize) -> ClientBuilder {
        self.max_reply_size = bytes;
        self
    }

    /// The connection name shown by `rabbitmqctl list_connections`.
    /// Default: `rabbit-rpc client`.
    pub fn connection_name(mut self, name: impl Into<String>) -> ClientBuilder {
        self.link.name = name.into();
        self
    }

    /// Where connections go.
    pub(super) fn link(&self) -> Result<Link, Error> {
        self.link.link()
    }

    /// Connects and gets ready to call. Only this first connection fails
    /// the caller; later ones are the client's own business (see
    /// [`Client`]).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::Connect`] when no broker can be
    /// reached within the connect timeout, or a broker error while setting
    /// up the reply consumer.
    pub async fn connect(self) -> Result<Client, Error> {
        Client::start(self).await
    }
}

/// Per-call settings; unset fields fall back to the client's.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub(super) timeout: Option<Duration>,
    pub(super) content_type: Option<String>,
    pub(super) metadata: Metadata,
    /// Makes the call a control request (ping, describe): not for users.
    pub(super) control: Option<&'static str>,
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
    /// none (typed calls send their codec's).
    pub fn content_type(mut self, content_type: impl Into<String>) -> CallOptions {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sends `name: value` with the request, as a header the handler reads
    /// from [`Context::metadata`](crate::Context::metadata): an auth token,
    /// a trace context. Names starting with `rpc-` are rabbit-rpc's own; a
    /// call with one fails with [`Error::InvalidRequest`].
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> CallOptions {
        self.metadata.insert(name, value);
        self
    }
}
