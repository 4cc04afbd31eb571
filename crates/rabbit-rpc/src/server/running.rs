//! A procedure as the server runs it: its handler with every setting
//! resolved, its counters and handler slots. What it does with a request is
//! in [`request`](super::request) (the orchestration),
//! [`admission`](super::admission) (whether it is taken) and
//! [`reply`](super::reply) (the answer and the acknowledgement).

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use super::{
    about::About, caller_policy::CallerPolicy, handler::ErasedHandler, queue::QueueSettings,
    shared::Shared, stats::Counters,
};

/// A procedure as the server runs it, for the server's whole life.
pub(super) struct Running {
    pub(super) queue: Arc<str>,
    pub(super) handler: Arc<dyn ErasedHandler>,
    pub(super) prefetch: u16,
    pub(super) declare: QueueSettings,
    pub(super) max_request_size: usize,
    pub(super) max_reply_size: usize,
    /// The server's own cap on a handler's run (see [`deadline`](super::deadline)).
    pub(super) handler_timeout: Option<Duration>,
    pub(super) counters: Arc<Counters>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) shared: Arc<Shared>,
    /// Who may call it.
    pub(super) callers: CallerPolicy,
    /// What its control replies say (see [`super::control`]).
    pub(super) control: About,
}
