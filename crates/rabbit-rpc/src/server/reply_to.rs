//! Where a server may publish replies: its `reply_to` policy.
//!
//! A server publishes each reply to the default exchange with the request's
//! `reply_to` as routing key, so whoever can publish to a request queue
//! could make the server publish into any queue of the virtual host: a
//! confused deputy, whose messages look legitimate to that queue's
//! consumers. Every tutorial client, in every language and year, replies
//! through an address no other service consumes: direct reply-to
//! (`amq.rabbitmq.reply-to.…`, rewritten by the broker), a server-named
//! queue (`amq.gen-…`), or, for rabbit-rpc clients, a queue under
//! [`REPLY_QUEUE_PREFIX`](crate::protocol::REPLY_QUEUE_PREFIX). Those are
//! allowed by default; anything else must be allowed by name or prefix.

use tracing::warn;

use super::refusals::{Note, RefusalLog};
use crate::protocol::REPLY_QUEUE_PREFIX;

/// The reply addresses allowed by default.
const DEFAULT_PREFIXES: [&str; 3] = ["amq.rabbitmq.reply-to.", "amq.gen-", REPLY_QUEUE_PREFIX];

/// Which `reply_to` addresses a server answers.
#[derive(Debug, Clone, Default)]
pub(super) struct ReplyToPolicy {
    prefixes: Vec<String>,
    queues: Vec<String>,
    any: bool,
}

impl ReplyToPolicy {
    pub(super) fn allow_prefix(&mut self, prefix: String) {
        self.prefixes.push(prefix);
    }

    pub(super) fn allow_queue(&mut self, queue: String) {
        self.queues.push(queue);
    }

    pub(super) fn allow_any(&mut self) {
        self.any = true;
    }

    /// Whether replies may go to `reply_to`.
    pub(super) fn allows(&self, reply_to: &str) -> bool {
        self.any
            || DEFAULT_PREFIXES
                .iter()
                .any(|prefix| reply_to.starts_with(prefix))
            || self
                .prefixes
                .iter()
                .any(|prefix| reply_to.starts_with(prefix.as_str()))
            || self.queues.iter().any(|queue| queue == reply_to)
    }
}

/// Logs a request refused for its `reply_to` on `queue`: once per address a
/// minute (see [`RefusalLog`]).
pub(super) fn log_refused(log: &RefusalLog, queue: &str, reply_to: &str) {
    match log.note(reply_to) {
        Note::Line => warn!(
            queue,
            reply_to,
            "refusing a request whose reply_to is not a reply address (direct reply-to, \
             amq.gen-…, {REPLY_QUEUE_PREFIX}…): answering would publish into another \
             queue; to allow it, `rabbit-rpc serve --allow-reply-to PREFIX` \
             (ServerBuilder::allow_reply_to_prefix)"
        ),
        Note::Summary(count) => warn!(
            queue,
            "refused {count} more requests in the last minute whose reply_to is not a reply \
             address, from too many addresses to log each"
        ),
        Note::Quiet => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_reply_addresses_are_allowed() {
        let policy = ReplyToPolicy::default();
        for allowed in [
            "amq.rabbitmq.reply-to.g1h2AA5yZXBseUA2ODc4MTMzNAAAcEoAAAAAaS8eQg==",
            "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
            "rabbit-rpc.reply.5f0c3a",
        ] {
            assert!(policy.allows(allowed), "{allowed}");
        }
        for refused in [
            "victim_q",
            "rpc_queue",
            "amq.rabbitmq.reply-to",
            "",
            "amq.gen",
        ] {
            assert!(!policy.allows(refused), "{refused}");
        }
    }

    #[test]
    fn prefixes_names_and_any_can_be_allowed() {
        let mut policy = ReplyToPolicy::default();
        policy.allow_prefix("orders.replies.".into());
        policy.allow_queue("billing-replies".into());
        assert!(policy.allows("orders.replies.7"));
        assert!(policy.allows("billing-replies"));
        assert!(!policy.allows("billing-replies-2"));
        assert!(!policy.allows("orders.work"));
        policy.allow_any();
        assert!(policy.allows("orders.work"));
    }
}
