//! [`Context`]: what a handler knows about the call besides its arguments.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Metadata, protocol, transport::Properties};

/// What a handler knows about a call besides its arguments: where it came
/// in, when the caller stops waiting, whether it was delivered before, and
/// the caller's metadata.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub(crate) queue: Arc<str>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) caller: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) redelivered: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    /// Fired when the server gives up on the request (see
    /// [`Context::cancelled`]); none when nothing limits it.
    pub(crate) cancel: Option<CancellationToken>,
}

impl Context {
    /// The handler's view of a request: its [`Context`], read off the
    /// request's properties.
    pub(super) fn of_request(
        queue: &Arc<str>,
        properties: &Properties,
        redelivered: bool,
        deadline: Option<Instant>,
    ) -> Context {
        Context {
            queue: Arc::clone(queue),
            correlation_id: protocol::request_id(properties).map(str::to_owned),
            caller: properties.user_id().map(str::to_owned),
            content_type: properties.content_type().map(str::to_owned),
            redelivered,
            deadline,
            metadata: protocol::metadata(properties),
            cancel: None,
        }
    }

    /// An empty context, for calling a handler directly (in a unit test,
    /// say) without a broker: no deadline, no metadata.
    pub fn new() -> Context {
        Context::default()
    }

    /// This context with `name: value` in its metadata (for tests).
    pub fn with_metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Context {
        self.metadata.insert(name, value);
        self
    }

    /// This context with a deadline `timeout` from now (for tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Context {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// This context from `caller` (for tests): see [`Context::caller`].
    pub fn with_caller(mut self, caller: impl Into<String>) -> Context {
        self.caller = Some(caller.into());
        self
    }

    /// This context with a `content_type` (for tests).
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Context {
        self.content_type = Some(content_type.into());
        self
    }

    /// The queue the request came in on: the procedure's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The id the reply carries as its `correlation_id`: the request's
    /// `correlation_id`, or its `message_id` when it has none (as AMQP 1.0
    /// requesters send it).
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// Who called: the request's `user_id`, which RabbitMQ checks is the
    /// user the publishing connection logged in as (unless that user is
    /// tagged `impersonator`), so a server can trust it. `None` for a
    /// request that names no caller, as tutorial clients' requests do.
    /// rabbit-rpc clients send their login's user name by default
    /// ([`ClientBuilder::send_user_id`](crate::ClientBuilder::send_user_id)).
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The `content_type` property the caller set, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// True when the broker delivered this request before, to this or
    /// another server that did not acknowledge it: it crashed, lost its
    /// connection, or handed the request back unstarted while shutting
    /// down. The handler may have run for it already: handlers should be
    /// idempotent.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// When the caller stops waiting, if it said (rabbit-rpc clients send
    /// their timeout; tutorial clients do not). Counted from when this
    /// server received the request. A handler doing long work can stop at
    /// the deadline: nobody will read the answer.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How long until [`Context::deadline`]: `None` without a deadline, zero
    /// once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The caller's metadata: the request's headers that are not
    /// rabbit-rpc's own (see [`Metadata`]).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Completes when the server gives up on this request: the caller's
    /// deadline has passed, or the server's own limit
    /// ([`ServerBuilder::handler_timeout`](crate::ServerBuilder::handler_timeout),
    /// [`Procedure::handler_timeout`](crate::Procedure::handler_timeout)),
    /// whichever comes first. Never, for a request with neither.
    ///
    /// An async handler needs no part in this: the server drops (cancels)
    /// its future at that moment. Work it spawned, and a blocking handler
    /// ([`blocking_fn`](crate::blocking_fn), `spawn_blocking`), which
    /// cannot be dropped mid-run, should watch this signal (or
    /// [`Context::is_cancelled`]) and stop: their result is thrown away.
    pub async fn cancelled(&self) {
        match &self.cancel {
            Some(cancel) => cancel.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Whether the server has given up on this request (see
    /// [`Context::cancelled`]): for a blocking handler to poll between
    /// steps of its work.
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }
}
