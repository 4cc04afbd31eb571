//! What the whole server shares, owned by [`Server`](crate::Server) and
//! handed to each procedure and request task: where replies may go, the
//! refusal logs, whether it is draining, and how a request task tells the
//! serve loop that its session cannot go on.

use tokio_util::sync::CancellationToken;

use super::{refusals::RefusalLog, reply_to::ReplyToPolicy};

/// The server-wide state: one per server, fixed at
/// [`ServerBuilder::bind`](crate::ServerBuilder::bind) (but for `draining`).
pub(super) struct Shared {
    /// Where replies may go.
    pub(super) reply_to: ReplyToPolicy,
    /// Requests refused for their reply address, in the log.
    pub(super) refusals: RefusalLog,
    /// Requests refused for their caller, in the log.
    pub(super) denials: RefusalLog,
    /// Cancelled when the server starts draining.
    pub(super) draining: CancellationToken,
    /// Whether every request is acknowledged only once the broker has
    /// confirmed its reply, not only those answered to a reply queue (see
    /// [`Replies`](super::reply::Replies)).
    pub(super) confirm_replies: bool,
}

/// A request task's report that its session cannot go on (its reply channel
/// is gone): the serve loop reconnects, and the broker hands the old
/// session's unacknowledged requests out again.
#[derive(Default)]
pub(super) struct Failure {
    reason: std::sync::Mutex<Option<String>>,
    raised: tokio::sync::Notify,
}

impl Failure {
    /// Reports the session broken; the first reason is the one kept.
    pub(super) fn raise(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(reason);
        // A stored permit: the loop sees it even if not waiting right now.
        self.raised.notify_one();
    }

    /// Waits for a report, and gives its reason.
    pub(super) async fn wait(&self) -> String {
        self.raised.notified().await;
        let slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().unwrap_or_default()
    }
}
