//! [`Procedure`]: a queue, the handler that answers it, and settings of its
//! own over the server's.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    caller_policy::CallerPolicy,
    handler::{Erased, ErasedHandler, Handler},
    queue::{QueueSettings, QueueType},
};
use crate::{Description, QueueArgument};

/// One procedure a server answers: a request queue and its handler, with
/// settings of its own where they differ from the server's
/// ([`ServerBuilder`](crate::ServerBuilder)'s are the defaults).
///
/// ```
/// use rabbit_rpc::{blocking_fn, Procedure, Request, Server, Status};
///
/// let report = Procedure::new("reports.monthly", blocking_fn(|_request: Request| {
///     Ok::<_, Status>("a long report")
/// }))
/// .concurrency(2)
/// .prefetch(2);
/// let builder = Server::builder().add_procedure(report);
/// # let _ = builder;
/// ```
pub struct Procedure {
    pub(super) queue: String,
    pub(super) handler: Arc<dyn ErasedHandler>,
    pub(super) prefetch: Option<u16>,
    pub(super) concurrency: Option<usize>,
    pub(super) max_request_size: Option<usize>,
    pub(super) max_reply_size: Option<usize>,
    pub(super) handler_timeout: Option<Duration>,
    pub(super) declare: QueueSettings,
    /// Over the handler's own ([`Handler::describe`]).
    description: Option<Description>,
    doc: Option<String>,
    pub(super) callers: CallerPolicy,
}

impl fmt::Debug for Procedure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Procedure")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Procedure {
    /// `handler` answering the requests of `queue`, with the server's
    /// settings.
    pub fn new(queue: impl Into<String>, handler: impl Handler) -> Procedure {
        Procedure {
            queue: queue.into(),
            handler: Arc::new(Erased(Arc::new(handler))),
            prefetch: None,
            concurrency: None,
            max_request_size: None,
            max_reply_size: None,
            handler_timeout: None,
            declare: QueueSettings::default(),
            description: None,
            doc: None,
            callers: CallerPolicy::default(),
        }
    }

    /// The request queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// How many unacknowledged requests the broker sends ahead for this
    /// procedure. Default: the server's
    /// ([`ServerBuilder::prefetch`](crate::ServerBuilder::prefetch)).
    pub fn prefetch(mut self, prefetch: u16) -> Procedure {
        self.prefetch = Some(prefetch.max(1));
        self
    }

    /// How many of this procedure's requests are handled at once. Default:
    /// the server's
    /// ([`ServerBuilder::concurrency`](crate::ServerBuilder::concurrency)).
    pub fn concurrency(mut self, concurrency: usize) -> Procedure {
        self.concurrency = Some(concurrency.max(1));
        self
    }

    /// The largest request body this procedure works on. Default: the
    /// server's ([`ServerBuilder::max_request_size`](crate::ServerBuilder::max_request_size)).
    pub fn max_request_size(mut self, bytes: usize) -> Procedure {
        self.max_request_size = Some(bytes);
        self
    }

    /// The largest reply body this procedure sends. Default: the server's
    /// ([`ServerBuilder::max_reply_size`](crate::ServerBuilder::max_reply_size)).
    pub fn max_reply_size(mut self, bytes: usize) -> Procedure {
        self.max_reply_size = Some(bytes);
        self
    }

    /// The longest this procedure's handler may run before it is
    /// cancelled and its caller answered `deadline_exceeded`, unless the
    /// caller's deadline comes first. Default: the server's
    /// ([`ServerBuilder::handler_timeout`](crate::ServerBuilder::handler_timeout)).
    pub fn handler_timeout(mut self, timeout: Duration) -> Procedure {
        self.handler_timeout = Some(timeout);
        self
    }

    /// What this procedure says about itself when asked (`rabbit-rpc
    /// describe`, [`Client::describe`](crate::Client::describe)), instead of
    /// what its handler says ([`Handler::describe`]). A doc given with
    /// [`Procedure::doc`] wins over this one's.
    pub fn description(mut self, description: Description) -> Procedure {
        self.description = Some(description);
        self
    }

    /// The procedure's documentation, as `describe` shows it, over its
    /// handler's (or [`Procedure::description`]'s). `#[rabbit_rpc::service]`
    /// sets each method's doc comment here.
    pub fn doc(mut self, doc: impl Into<String>) -> Procedure {
        self.doc = Some(doc.into());
        self
    }

    /// What `describe` answers for this procedure: its description, else
    /// its handler's, with its doc.
    pub(super) fn described(&self) -> Description {
        let description = self
            .description
            .clone()
            .unwrap_or_else(|| self.handler.describe());
        match &self.doc {
            Some(doc) => description.with_doc(doc.clone()),
            None => description,
        }
    }

    /// Answers only requests from these users, over the server's policy
    /// (see [`ServerBuilder::allow_callers`](crate::ServerBuilder::allow_callers)).
    /// Repeat to allow more.
    pub fn allow_callers<I, S>(mut self, users: I) -> Procedure
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.callers.allow(users.into_iter().map(Into::into));
        self
    }

    /// The type of this procedure's queue, over the server's (see
    /// [`ServerBuilder::queue_type`](crate::ServerBuilder::queue_type)).
    pub fn queue_type(mut self, queue_type: QueueType) -> Procedure {
        self.declare.queue_type = Some(queue_type);
        self
    }

    /// Whether this procedure's queue is durable, over the server's (see
    /// [`ServerBuilder::durable`](crate::ServerBuilder::durable)).
    pub fn durable(mut self, durable: bool) -> Procedure {
        self.declare.durable = Some(durable);
        self
    }

    /// This procedure's queue's delivery limit, over the server's (see
    /// [`ServerBuilder::delivery_limit`](crate::ServerBuilder::delivery_limit)).
    pub fn delivery_limit(mut self, limit: u32) -> Procedure {
        self.declare.delivery_limit = Some(limit);
        self
    }

    /// An `x-…` argument for this procedure's queue, over the server's
    /// (see [`ServerBuilder::queue_argument`](crate::ServerBuilder::queue_argument)).
    pub fn queue_argument(
        mut self,
        name: impl Into<String>,
        value: impl Into<QueueArgument>,
    ) -> Procedure {
        self.declare.set_argument(name.into(), value.into());
        self
    }
}
