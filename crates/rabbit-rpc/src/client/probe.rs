//! "Is anybody there?": asking the broker whether a queue exists and how
//! many consumers it has, for calls that are slow to be answered.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::transport::{Connection, QueueState};

/// How long a consumer-count answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// What the broker said about a queue.
#[derive(Debug, Clone, Copy)]
pub(super) enum Probe {
    NoQueue,
    Queue { consumers: u32, messages: u32 },
    Unknown,
}

impl Probe {
    /// The error a waiting call should end with, given this answer: the
    /// queue is gone, or nobody consumes it while requests wait (ours among
    /// them). With no request waiting, ours is in the hands of a server
    /// that is draining or reconnecting: keep waiting.
    pub(super) fn failure(self, queue: &str) -> Option<crate::Error> {
        match self {
            Probe::NoQueue => Some(crate::Error::NoRoute {
                queue: queue.to_owned(),
            }),
            Probe::Queue {
                consumers: 0,
                messages,
            } if messages > 0 => Some(crate::Error::NoServer {
                queue: queue.to_owned(),
            }),
            Probe::Queue { .. } | Probe::Unknown => None,
        }
    }
}

/// Recent answers, so a burst of slow calls asks the broker once per queue.
/// Each queue has its own lock, held while asking: calls about one queue
/// wait for one answer, and never for an answer about another queue.
#[derive(Debug, Default)]
pub(super) struct Probes(std::sync::Mutex<HashMap<String, Arc<Slot>>>);

/// The last answer about one queue.
type Slot = tokio::sync::Mutex<Option<(Instant, Probe)>>;

impl Probes {
    /// Whether `queue` exists and how many consumers it has, reusing an
    /// answer younger than [`PROBE_TTL`] and not older than `not_before`.
    pub(super) async fn check(
        &self,
        connection: &Connection,
        queue: &str,
        not_before: Option<Instant>,
    ) -> Probe {
        let slot = {
            let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(slots.entry(queue.to_owned()).or_default())
        };
        let mut last = slot.lock().await;
        if let Some((at, probe)) = *last
            && at.elapsed() < PROBE_TTL
            && not_before.is_none_or(|not_before| at >= not_before)
        {
            return probe;
        }
        let probe = match connection.probe(queue).await {
            Ok(QueueState::Missing) => Probe::NoQueue,
            Ok(QueueState::Exists {
                messages,
                consumers,
            }) => Probe::Queue {
                consumers,
                messages,
            },
            Err(_) => Probe::Unknown,
        };
        *last = Some((Instant::now(), probe));
        probe
    }
}
