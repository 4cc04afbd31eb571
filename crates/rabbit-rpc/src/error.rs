//! Everything that can go wrong with a call, a client or a server.

use std::time::Duration;

use std::sync::Arc;

use crate::{Code, Status, codec::CodecError, fmt_duration};

/// The error type of this crate.
///
/// Each variant says what happened in words a user can act on; ask it
/// questions ([`Error::is_timeout`], [`Error::status`], [`Error::code`])
/// rather than matching on internals when deciding whether to retry.
///
/// Show it to people with `Display` (`{error}`): one line, in those words.
/// `Debug` (`{error:?}`) is the derived, structured form, every field by
/// name, for logs and test failures, as `tonic::Status`'s is. A `main`
/// that returns `Result<(), rabbit_rpc::Error>` prints the `Debug` form
/// (`Connect { endpoint: "127.0.0.1:5672", reason: "connection refused; is RabbitMQ running there?", source: … }`),
/// so print the error yourself and return an exit code, as
/// `examples/calculator`'s binaries do, or return `anyhow::Result<()>`,
/// whose `Debug` is the `Display` line and its causes:
///
/// ```no_run
/// use std::process::ExitCode;
///
/// # async fn run() -> Result<(), rabbit_rpc::Error> { Ok(()) }
/// #[tokio::main]
/// async fn main() -> ExitCode {
///     match run().await {
///         Ok(()) => ExitCode::SUCCESS,
///         Err(error) => {
///             eprintln!("error: {error}"); // error: cannot reach the broker at 127.0.0.1:5672: connection refused; …
///             ExitCode::FAILURE
///         }
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker URL could not be parsed.
    #[error("invalid broker URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },

    /// The TLS settings cannot work as given (see
    /// [`TlsOptions`](crate::TlsOptions)): a file they name is missing,
    /// unreadable, not PEM, holds no certificate or no key, or a key that
    /// is not the certificate's; or the options do not go together (TLS
    /// options on an `amqp://` URL, a certificate without its key). Nothing
    /// was sent to the broker. A broker certificate refused during the
    /// handshake is [`Error::Connect`] instead; this client's certificate
    /// (or its absence) refused by the broker, [`Error::Refused`] with
    /// [`Refusal::Login`].
    #[error("TLS settings: {reason}")]
    Tls {
        /// What is wrong, naming the file and the option (as RabbitMQ's
        /// URI query parameters name them: `cacertfile`, `certfile`,
        /// `keyfile`, …).
        reason: String,
        /// The underlying failure (reading the file, decoding it), if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The broker could not be reached or refused the connection.
    #[error("cannot reach the broker at {endpoint}: {reason}")]
    Connect {
        /// `host:port` that was tried (a comma-separated list when several
        /// brokers were).
        endpoint: String,
        /// Why it failed, in a short phrase.
        reason: String,
        /// The client library's error, when one caused it (a refused TCP
        /// connection, a failed handshake); none for a timeout or for
        /// several brokers tried.
        #[source]
        source: Option<BrokerError>,
    },

    /// A builder's settings cannot work as given: a server with no
    /// procedure, two procedures on one queue, queue settings that make no
    /// queue (a transient quorum queue, a delivery limit on a classic one),
    /// a description whose schema is not valid JSON. Found before
    /// connecting; nothing was sent to the broker.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong, and what to change.
        reason: String,
    },

    /// The request cannot be sent as it is (a queue name or content type
    /// over AMQP's 255 bytes, a body over the client's limit).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },

    /// No queue of that name exists, so the broker could not route the
    /// request (it came back as unroutable).
    #[error("no queue named '{queue}' (is a server for it running?)")]
    NoRoute {
        /// The queue the request was addressed to.
        queue: String,
    },

    /// The queue exists but no server is consuming from it, and requests
    /// wait in it (twice, a while apart). The request stays in the queue
    /// until its `expiration` (the call's timeout) and runs if a server
    /// starts consuming before then: retry only idempotent calls.
    #[error("queue '{queue}' exists but no server is consuming from it")]
    NoServer {
        /// The queue the request was addressed to.
        queue: String,
    },

    /// No reply arrived within the call's timeout.
    #[error("no reply from queue '{queue}' within {}", fmt_duration(*.after))]
    Timeout {
        /// The queue the request was addressed to.
        queue: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// The server answered with an error status.
    #[error("server error: {0}")]
    Remote(Status),

    /// The broker refused to take the request (a negative publisher confirm).
    #[error("the broker refused the request for queue '{queue}'")]
    Rejected {
        /// The queue the request was addressed to.
        queue: String,
    },

    /// The connection (or channel) to the broker closed while in use.
    #[error("connection to the broker lost: {reason}")]
    ConnectionLost {
        /// What closed it, as far as is known.
        reason: String,
        /// The client library's error that reported it, if one did (every
        /// call the loss ends shares it).
        #[source]
        source: Option<BrokerError>,
    },

    /// The request queue exists with other settings than those the server
    /// was given: the broker reports `setting` as `existing` there, where the
    /// server asked for `asked`. Nothing was declared or deleted.
    #[error(
        "queue '{queue}' exists with other settings: {setting} is {existing} there, but this \
         server asked for {asked}; give no queue settings to serve the queue as it is, or \
         delete it (and its messages) to declare it anew"
    )]
    QueueMismatch {
        /// The queue.
        queue: String,
        /// The setting the broker reported as different (`durable`,
        /// `x-queue-type`, `x-delivery-limit`, …).
        setting: String,
        /// Its value on the existing queue.
        existing: String,
        /// The value this server asked for.
        asked: String,
    },

    /// The broker refused what was asked, and said why: the login, a
    /// permission, a queue setting or a feature its operator denies.
    /// Retrying unchanged gets the same answer; [`Refusal`] says what was
    /// refused, `reason` what was asked, the broker's words and what to
    /// change.
    #[error("{refusal}: {reason}")]
    Refused {
        /// What the broker refused.
        refusal: Refusal,
        /// What was asked, the broker's words, and what to do.
        reason: String,
    },

    /// Declaring a queue failed for another reason (it vanished between
    /// declaring and consuming it, say).
    #[error("cannot declare queue '{queue}': {reason}")]
    Declare {
        /// The queue.
        queue: String,
        /// The broker's reason.
        reason: String,
        /// The client library's error, if one reported it.
        #[source]
        source: Option<BrokerError>,
    },

    /// A successful reply that does not decode as the type the caller
    /// asked for (a typed call): the server answered something else.
    #[error("the reply from queue '{queue}' does not decode: {source}")]
    Decode {
        /// The queue the request was addressed to.
        queue: String,
        /// Why, in the codec's words (and where in the reply).
        #[source]
        source: CodecError,
    },

    /// The reply's body is larger than the client takes
    /// ([`ClientBuilder::max_reply_size`](crate::ClientBuilder::max_reply_size)):
    /// the body was dropped as soon as it arrived, unread. The server
    /// answered, so the request ran.
    #[error(
        "reply of {size} bytes is over this client's max_reply_size of {max} bytes; raise \
         ClientBuilder::max_reply_size if such replies are expected"
    )]
    ReplyTooLarge {
        /// The body's size, in bytes.
        size: usize,
        /// The client's limit, in bytes.
        max: usize,
    },

    /// A control request ([`Client::ping`](crate::Client::ping),
    /// [`Client::describe`](crate::Client::describe)) was answered, but not
    /// by a rabbit-rpc server: whatever serves the queue (a tutorial
    /// server, another library's, a rabbit-rpc server older than control
    /// requests) ignored the `rpc-control` header and ran its handler on
    /// the request, whose body is `0`.
    #[error(
        "queue '{queue}' is served, but not by a rabbit-rpc server: it ran its handler on the \
         {control} request (body 0), which answered {answer}"
    )]
    NotRabbitRpc {
        /// The queue the request was addressed to.
        queue: String,
        /// The control request: `ping` or `describe`.
        control: String,
        /// What came back, in a few words.
        answer: String,
    },

    /// Any other failure the broker or the client library reported.
    #[error("broker error: {0}")]
    Broker(#[source] BrokerError),
}

/// What the broker refused, in [`Error::Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The login: a wrong user name or password, or an authentication
    /// mechanism the broker does not accept; over TLS, also this client's
    /// certificate: none where the broker requires one, one it does not
    /// trust, or one naming no user it knows (EXTERNAL).
    Login,
    /// The virtual host: it does not exist, or the user may not use it
    /// (AMQP `NOT_ALLOWED` when opening the connection).
    VirtualHost,
    /// A permission: the user may not configure, write to or read from a
    /// resource (AMQP `ACCESS_REFUSED`, 403).
    Access,
    /// An operation the broker does not allow (AMQP `NOT_ALLOWED`, 530).
    NotAllowed,
    /// A resource another connection holds: a queue exclusive to it (AMQP
    /// `RESOURCE_LOCKED`, 405).
    Locked,
    /// A value the broker will not take as given: a queue argument it does
    /// not accept, a `user_id` that is not the connection's user (AMQP
    /// `PRECONDITION_FAILED`, 406).
    Precondition,
    /// A feature the broker's operator denies: a deprecated feature, such
    /// as transient non-exclusive queues (`transient_nonexcl_queues`),
    /// where it is not permitted.
    DeniedFeature,
}

impl Refusal {
    /// The status code that describes this refusal.
    pub fn code(self) -> Code {
        match self {
            Refusal::Login => Code::Unauthenticated,
            Refusal::VirtualHost | Refusal::Access | Refusal::NotAllowed => Code::PermissionDenied,
            Refusal::Locked | Refusal::Precondition | Refusal::DeniedFeature => {
                Code::FailedPrecondition
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Login => "login refused",
            Refusal::VirtualHost => "virtual host refused",
            Refusal::Access => "access refused",
            Refusal::NotAllowed => "not allowed",
            Refusal::Locked => "resource locked",
            Refusal::Precondition => "precondition failed",
            Refusal::DeniedFeature => "feature denied",
        })
    }
}

/// What to do about a refusal met while using a connection, where nothing
/// more is known of what was asked.
pub(crate) fn hint(refusal: Refusal, message: &str) -> &'static str {
    match refusal {
        Refusal::Precondition if message.contains("user_id") => {
            "; the client sends the user it logged in as as user_id, and the broker knows it by \
             another name: turn it off with ClientBuilder::send_user_id(false)"
        }
        Refusal::Access | Refusal::NotAllowed => {
            "; check the user's permissions (rabbitmqctl list_user_permissions USER)"
        }
        Refusal::DeniedFeature => {
            "; the broker's operator denies that deprecated feature (rabbitmqctl list_deprecated_features)"
        }
        _ => "",
    }
}

/// A failure reported by the broker or the AMQP client library, kept with
/// its cause but without naming the library's types.
///
/// It is transparent, as [`std::io::Error`] is around a custom error: its
/// `Display` is the library's error's, [`source`](std::error::Error::source)
/// that error's own cause, and [`BrokerError::get_ref`] the library's error
/// itself (to log its `Debug` form, or to downcast it). Cheap to clone:
/// every call a lost connection ends shares one.
#[derive(Debug, Clone)]
pub struct BrokerError {
    source: Arc<dyn std::error::Error + Send + Sync>,
    /// The broker sent a frame the client library could not parse.
    unparsable: bool,
}

impl BrokerError {
    /// A broker error caused by `source`; `unparsable` when the broker sent
    /// a frame the client library could not parse.
    pub(crate) fn new(
        source: impl std::error::Error + Send + Sync + 'static,
        unparsable: bool,
    ) -> BrokerError {
        BrokerError {
            source: Arc::new(source),
            unparsable,
        }
    }

    /// The client library's error, as it reported it.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for BrokerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl Error {
    /// The status code that best describes this error: the remote code for
    /// [`Error::Remote`], otherwise the client-side equivalent.
    pub fn code(&self) -> Code {
        match self {
            Error::Remote(status) => status.code(),
            Error::InvalidUrl { .. }
            | Error::InvalidRequest { .. }
            | Error::Config { .. }
            | Error::Tls { .. } => Code::InvalidArgument,
            Error::Timeout { .. } => Code::DeadlineExceeded,
            Error::NoRoute { .. } => Code::NotFound,
            Error::Declare { .. } | Error::QueueMismatch { .. } => Code::InvalidArgument,
            Error::Decode { .. } => Code::Internal,
            Error::NotRabbitRpc { .. } => Code::Unimplemented,
            Error::ReplyTooLarge { .. } => Code::ResourceExhausted,
            Error::Refused { refusal, .. } => refusal.code(),
            Error::Connect { .. }
            | Error::NoServer { .. }
            | Error::Rejected { .. }
            | Error::ConnectionLost { .. }
            | Error::Broker(_) => Code::Unavailable,
        }
    }

    /// The server's status when the server answered with an error.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Remote(status) => Some(status),
            _ => None,
        }
    }

    /// True when no reply came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True when the broker could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }

    /// True when there is nobody to take the request: no such queue, or no
    /// consumer on it.
    pub fn is_no_server(&self) -> bool {
        matches!(self, Error::NoRoute { .. } | Error::NoServer { .. })
    }

    /// True when a control request (ping, describe) was answered by
    /// something that is not a rabbit-rpc server, which ran its handler on
    /// it ([`Error::NotRabbitRpc`]).
    pub fn is_not_rabbit_rpc(&self) -> bool {
        matches!(self, Error::NotRabbitRpc { .. })
    }

    /// What the broker refused, when it refused something.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }

    /// True when the connection dropped while in use.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }

    /// This error as each of the calls it ends sees it: a refusal stays
    /// one (the calls fail for that reason), anything else is the lost
    /// connection it caused.
    pub(crate) fn ending_calls(&self) -> Error {
        match self {
            Error::Refused { refusal, reason } => Error::Refused {
                refusal: *refusal,
                reason: reason.clone(),
            },
            Error::ConnectionLost { reason, source } => Error::ConnectionLost {
                reason: reason.clone(),
                source: source.clone(),
            },
            Error::Broker(source) => Error::ConnectionLost {
                reason: source.to_string(),
                source: Some(source.clone()),
            },
            other => Error::lost(other.to_string()),
        }
    }

    /// A lost connection known only by what was seen (no library error).
    pub(crate) fn lost(reason: impl Into<String>) -> Error {
        Error::ConnectionLost {
            reason: reason.into(),
            source: None,
        }
    }

    /// Whether the broker sent something the client library cannot parse
    /// (a message whose properties are not valid UTF-8, say).
    pub(crate) fn is_unparsable(&self) -> bool {
        matches!(self, Error::Broker(broker) if broker.unparsable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let timeout = Error::Timeout {
            queue: "rpc_queue".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "no reply from queue 'rpc_queue' within 1.5s"
        );
        assert!(timeout.is_timeout());
        assert_eq!(timeout.code(), Code::DeadlineExceeded);

        let remote = Error::Remote(Status::invalid_argument("n = -1 is out of range"));
        assert_eq!(
            remote.to_string(),
            "server error: invalid_argument: n = -1 is out of range"
        );
        assert_eq!(remote.code(), Code::InvalidArgument);
        assert!(remote.status().is_some());

        let large = Error::ReplyTooLarge {
            size: 104_857_600,
            max: 16_777_216,
        };
        assert_eq!(
            large.to_string(),
            "reply of 104857600 bytes is over this client's max_reply_size of 16777216 bytes; \
             raise ClientBuilder::max_reply_size if such replies are expected"
        );
        assert_eq!(large.code(), Code::ResourceExhausted);
    }
}
