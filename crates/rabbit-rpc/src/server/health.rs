//! [`Health`]: whether a server takes requests now, for readiness and
//! liveness probes.

use std::{fmt, sync::Arc};

use tokio::sync::watch;

/// What a server is doing, as probes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// Not connected yet: [`ServerBuilder::bind`](crate::ServerBuilder::bind)
    /// is connecting and declaring its queues.
    Connecting,
    /// Connected, and consuming every procedure's queue.
    Serving,
    /// The connection was lost (`reason` says how); reconnecting.
    Reconnecting {
        /// Why the connection was lost.
        reason: String,
    },
    /// Shutting down: no new requests are taken, those in hand finish.
    Draining,
    /// Serving has ended.
    Stopped,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerState::Connecting => f.write_str("connecting to the broker"),
            ServerState::Serving => f.write_str("serving"),
            ServerState::Reconnecting { reason } => {
                write!(
                    f,
                    "reconnecting to the broker (the connection was lost: {reason})"
                )
            }
            ServerState::Draining => f.write_str("draining: finishing the requests in hand"),
            ServerState::Stopped => f.write_str("stopped"),
        }
    }
}

/// A handle on a server's state, for probes: cheap to clone, readable from
/// any task. From [`ServerBuilder::health`](crate::ServerBuilder::health)
/// (which says [`ServerState::Connecting`] until the server is bound) or
/// [`Server::health`](crate::Server::health).
#[derive(Debug, Clone)]
pub struct Health {
    now: watch::Receiver<Now>,
}

/// What a [`Health`] watches: the state and the queues served.
#[derive(Debug, Clone)]
struct Now {
    state: ServerState,
    queues: Arc<[String]>,
}

impl Health {
    /// What the server is doing now.
    pub fn state(&self) -> ServerState {
        self.now.borrow().state.clone()
    }

    /// Whether it takes requests now: `Ok` with a line saying what it
    /// serves, or `Err` with a line saying why not (connecting, the
    /// connection lost and why, draining, stopped). What a readiness probe
    /// answers.
    pub fn readiness(&self) -> Result<String, String> {
        let now = self.now.borrow();
        match &now.state {
            ServerState::Serving => Ok(format!("serving {}", now.queues.join(", "))),
            other => Err(format!("not serving: {other}")),
        }
    }

    /// Whether the server still runs its loop: everything but
    /// [`ServerState::Stopped`]. What a liveness probe answers (a process
    /// that reconnects is alive; restarting it would not help).
    pub fn is_live(&self) -> bool {
        !matches!(self.now.borrow().state, ServerState::Stopped)
    }

    /// Waits until the state changes, then returns the new one; `None`
    /// once the server is gone.
    pub async fn changed(&mut self) -> Option<ServerState> {
        self.now.changed().await.ok()?;
        Some(self.state())
    }
}

/// The server's side of [`Health`]: sets the state.
#[derive(Debug, Clone)]
pub(super) struct HealthSender {
    now: Arc<watch::Sender<Now>>,
}

impl Default for HealthSender {
    fn default() -> HealthSender {
        HealthSender {
            now: Arc::new(watch::Sender::new(Now {
                state: ServerState::Connecting,
                queues: Arc::from(Vec::new()),
            })),
        }
    }
}

impl HealthSender {
    pub(super) fn set(&self, state: ServerState) {
        self.now.send_modify(|now| now.state = state);
    }

    /// Serving `queues` (bound).
    pub(super) fn serving(&self, queues: Vec<String>) {
        self.now.send_modify(|now| {
            now.state = ServerState::Serving;
            now.queues = queues.into();
        });
    }

    pub(super) fn health(&self) -> Health {
        Health {
            now: self.now.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_serving_with_a_line_either_way() {
        let sender = HealthSender::default();
        let health = sender.health();
        assert_eq!(
            health.readiness(),
            Err("not serving: connecting to the broker".into())
        );
        sender.serving(vec!["rpc_queue".into(), "echo".into()]);
        assert_eq!(health.readiness(), Ok("serving rpc_queue, echo".into()));
        sender.set(ServerState::Reconnecting {
            reason: "CONNECTION_FORCED".into(),
        });
        let why = health.readiness().unwrap_err();
        assert!(
            why.contains("reconnecting") && why.contains("CONNECTION_FORCED"),
            "{why}"
        );
        assert!(health.is_live());
        sender.set(ServerState::Draining);
        assert!(health.readiness().unwrap_err().contains("draining"));
        sender.set(ServerState::Stopped);
        assert!(!health.is_live());
    }
}
