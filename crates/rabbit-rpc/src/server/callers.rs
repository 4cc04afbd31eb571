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
//! once per direct reply-to address and remembers the answer for the rest
//! of the session, also when the broker could not say (the request then
//! runs as usual, as it would without the check). Questions are asked one
//! at a time, each bounded.

use std::collections::HashMap;

use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{
    protocol::DIRECT_REPLY_TO,
    transport::{CLOSE_TIMEOUT, Connection, ReplyAddress, link::Link},
};

/// Answers remembered per session, at most: a bound on memory, not a cache
/// policy (it starts afresh when full).
const REMEMBERED: usize = 10_000;

/// How many times the broker may crash answering about one address, on a
/// connection opened for the question, before its caller counts as gone.
const CRASHES: usize = 2;

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
        let gone = self.ask(&mut asking, reply_to).await.unwrap_or(false);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(reply_to.to_owned(), gone);
        gone
    }

    /// Closes the connection questions are asked on, if it is open and not
    /// in use (a question in progress drops it when it ends).
    pub(super) async fn close(&self) {
        let connection = match self.asking.try_lock() {
            Ok(mut asking) => asking.take(),
            Err(_) => None,
        };
        if let Some(connection) = connection {
            let _ = connection.close("caller check done").await;
        }
    }

    fn remembered(&self, reply_to: &str) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(reply_to).copied()
    }

    /// Asks the broker, on a connection of its own. Only the broker closing
    /// a connection opened for this question with `INTERNAL_ERROR`, twice,
    /// counts as the caller being gone that way (see the module's docs); a
    /// kept connection that fails is replaced without counting. `None` when
    /// the broker cannot say.
    async fn ask(&self, asking: &mut Option<Connection>, reply_to: &str) -> Option<bool> {
        let mut crashes = 0;
        loop {
            let (connection, fresh) = match asking.take() {
                Some(connection) => (connection, false),
                None => match self.link.connect().await {
                    Ok(connection) => (connection, true),
                    Err(error) => {
                        debug!(%error, "cannot ask whether a caller is still there; answering its request as usual");
                        return None;
                    }
                },
            };
            let answer =
                tokio::time::timeout(CLOSE_TIMEOUT, connection.reply_address(reply_to)).await;
            match answer {
                Ok(Ok(ReplyAddress::Live)) => {
                    *asking = Some(connection);
                    return Some(false);
                }
                Ok(Ok(ReplyAddress::Gone)) => {
                    *asking = Some(connection);
                    debug!(%reply_to, "the caller is gone; its requests are not run");
                    return Some(true);
                }
                // On a kept connection, which may have failed for another
                // reason: ask again on a new one, without counting.
                Ok(Ok(ReplyAddress::Crashed)) => {
                    if fresh {
                        crashes += 1;
                        debug!(%reply_to, crashes, "asking whether a caller is still there crashed the broker's channel");
                        if crashes == CRASHES {
                            break;
                        }
                    }
                }
                Ok(Err(_)) if !fresh => {}
                Ok(Err(error)) => {
                    debug!(%error, "cannot ask whether a caller is still there; answering its request as usual");
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
            "asking the broker about this direct reply-to address crashed the connection twice: \
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
