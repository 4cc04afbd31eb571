//! Whether a request's caller is still there, asked of the broker before
//! the request runs, on sessions that follow a lost connection.
//!
//! Why: RabbitMQ 3.10.0–3.10.11 and 3.11.0–3.11.3 crash the channel (and
//! close the connection with `INTERNAL_ERROR`) that publishes to a direct
//! reply-to address whose node is down (fixed in 3.10.12 and 3.11.4). On a
//! cluster, when a client's node stops, its requests stay in a replicated
//! queue; each one a server answers costs that server its connection, and
//! puts the requests it held back in the queue, to crash the next server.
//! Asking first breaks that loop: a passive declare of the reply address
//! says whether its consumer is alive (on any broker version), and on
//! those versions crashes only the connection it is asked on, a connection
//! of its own.
//!
//! The first session does not ask (it would cost a round trip per new
//! caller on every healthy server); a session after a lost connection asks
//! once per direct reply-to address and remembers the answer.

use std::collections::HashMap;

use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{
    protocol::DIRECT_REPLY_TO,
    transport::{CLOSE_TIMEOUT, Connection, QueueState, link::Link},
};

/// Answers remembered per session, at most: a bound on memory, not a cache
/// policy (it starts afresh when full).
const REMEMBERED: usize = 10_000;

/// Asks the broker whether callers are still there, for one session.
#[derive(Debug)]
pub(super) struct Callers {
    link: Link,
    known: std::sync::Mutex<HashMap<String, bool>>,
    /// The connection the questions are asked on, opened at the first one;
    /// held while asking, so one question is asked at a time.
    asking: Mutex<Option<Connection>>,
}

impl Callers {
    /// Asks on connections to where `link` goes, under its name plus
    /// " (caller check)".
    pub(super) fn new(link: &Link) -> Callers {
        Callers {
            link: link.renamed(" (caller check)"),
            known: std::sync::Mutex::default(),
            asking: Mutex::new(None),
        }
    }

    /// Whether the caller that asked for replies at `reply_to` is gone for
    /// good: only direct reply-to addresses are asked about (a reply queue
    /// outlives its caller's connection, or is deleted with it and then
    /// drops the reply harmlessly). When the broker cannot say, the caller
    /// counts as there and the request runs as usual.
    pub(super) async fn gone(&self, reply_to: &str) -> bool {
        if !is_direct(reply_to) {
            return false;
        }
        if let Some(gone) = self.remembered(reply_to) {
            return gone;
        }
        let mut asking = self.asking.lock().await;
        // Another request may have asked while this one waited.
        if let Some(gone) = self.remembered(reply_to) {
            return gone;
        }
        let Some(gone) = self.ask(&mut asking, reply_to).await else {
            return false;
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(reply_to.to_owned(), gone);
        gone
    }

    fn remembered(&self, reply_to: &str) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(reply_to).copied()
    }

    /// Asks the broker, on a connection of its own. A question that
    /// costs the connection twice is about an address on a node that is
    /// down (see the module's docs). `None` when the broker cannot be asked.
    async fn ask(&self, asking: &mut Option<Connection>, reply_to: &str) -> Option<bool> {
        for _attempt in 0..2 {
            let connection = match asking.take() {
                Some(connection) => connection,
                None => match self.link.connect().await {
                    Ok(connection) => connection,
                    Err(error) => {
                        debug!(%error, "cannot ask whether a caller is still there; answering its request as usual");
                        return None;
                    }
                },
            };
            let state = tokio::time::timeout(CLOSE_TIMEOUT, connection.probe(reply_to)).await;
            match state {
                Ok(Ok(QueueState::Exists { .. })) => {
                    *asking = Some(connection);
                    return Some(false);
                }
                Ok(Ok(QueueState::Missing)) => {
                    *asking = Some(connection);
                    debug!(%reply_to, "the caller is gone; its requests are not run");
                    return Some(true);
                }
                Ok(Err(error)) if error.is_connection_lost() => {
                    debug!(%error, %reply_to, "asking whether a caller is still there cost the connection");
                }
                Ok(Err(error)) => {
                    debug!(%error, "cannot ask whether a caller is still there; answering its request as usual");
                    *asking = Some(connection);
                    return None;
                }
                Err(_) => {
                    debug!(
                        "the broker did not say in time whether a caller is still there; answering its request as usual"
                    );
                    return None;
                }
            }
        }
        warn!(
            %reply_to,
            "asking the broker about this direct reply-to address closed the connection twice: \
             its caller's node is down (RabbitMQ before 3.10.12 and 3.11.4 crashes a channel \
             that publishes there), so its requests are not run; upgrading RabbitMQ fixes the crash"
        );
        Some(true)
    }
}

/// Whether `reply_to` is a direct reply-to address, as the broker rewrites
/// the pseudo-queue.
fn is_direct(reply_to: &str) -> bool {
    reply_to
        .strip_prefix(DIRECT_REPLY_TO)
        .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_direct_reply_to_addresses_are_asked_about() {
        assert!(is_direct(
            "amq.rabbitmq.reply-to.g1h2AA5yZXBseUA0MjU1NzQ5AAAZdAAAAABk"
        ));
        assert!(!is_direct("amq.rabbitmq.reply-to"));
        assert!(!is_direct("amq.rabbitmq.reply-tox"));
        assert!(!is_direct("amq.gen-Xa2"));
        assert!(!is_direct("rabbit-rpc.reply.1"));
    }
}
