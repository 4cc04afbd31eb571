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

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::warn;

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

/// How long a refused `reply_to` stays quiet in the log after its line.
const QUIET_FOR: Duration = Duration::from_secs(60);

/// How many distinct addresses are remembered at once: a hostile publisher
/// sending a new `reply_to` with every request must not grow the server's
/// memory; past this, refusals are summed up in one line a minute.
const REMEMBERED: usize = 1024;

/// Logs refused `reply_to` addresses once per address per minute.
#[derive(Debug, Default)]
pub(super) struct RefusalLog(Mutex<Refusals>);

#[derive(Debug, Default)]
struct Refusals {
    /// When each address was last logged.
    logged: HashMap<String, Instant>,
    /// Refusals of addresses not remembered, since `unlisted_since`.
    unlisted: u64,
    unlisted_since: Option<Instant>,
}

impl RefusalLog {
    /// Notes a request refused for its `reply_to`, logging it unless the
    /// same address was logged within the last minute.
    pub(super) fn refused(&self, queue: &str, reply_to: &str) {
        let now = Instant::now();
        let mut refusals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = refusals.logged.get(reply_to)
            && now.duration_since(*last) < QUIET_FOR
        {
            return;
        }
        if refusals.logged.len() >= REMEMBERED {
            refusals
                .logged
                .retain(|_, last| now.duration_since(*last) < QUIET_FOR);
        }
        if refusals.logged.len() < REMEMBERED {
            refusals.logged.insert(reply_to.to_owned(), now);
            drop(refusals);
            warn!(
                queue,
                reply_to,
                "refusing a request whose reply_to is not a reply address (direct reply-to, \
                 amq.gen-…, {REPLY_QUEUE_PREFIX}…): answering would publish into another \
                 queue; to allow it, `rabbit-rpc serve --allow-reply-to PREFIX` \
                 (ServerBuilder::allow_reply_to_prefix)"
            );
            return;
        }
        refusals.unlisted += 1;
        let since = *refusals.unlisted_since.get_or_insert(now);
        if now.duration_since(since) >= QUIET_FOR {
            let count = std::mem::take(&mut refusals.unlisted);
            refusals.unlisted_since = Some(now);
            drop(refusals);
            warn!(
                queue,
                "refused {count} more requests in the last minute whose reply_to is not a reply \
                 address, from too many addresses to log each"
            );
        }
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

    #[test]
    fn the_refusal_log_remembers_a_bounded_number_of_addresses() {
        let log = RefusalLog::default();
        for n in 0..(REMEMBERED + 10) {
            log.refused("q", &format!("victim-{n}"));
        }
        let refusals = log.0.lock().unwrap();
        assert_eq!(refusals.logged.len(), REMEMBERED);
        assert_eq!(refusals.unlisted, 10);
    }
}
