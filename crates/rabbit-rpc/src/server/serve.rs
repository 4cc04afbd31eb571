//! The [`Server`]: what it serves and how it is doing, and its serve loop,
//! which runs sessions, reconnects when the broker goes away, and drains on
//! shutdown.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{
    callers,
    dispatch::{self, Ended},
    health::{self, Health, ServerState},
    queue::QueueOrigin,
    running::Running,
    session::Session,
    shared::Shared,
    stats::ServerStats,
};
use crate::{
    Error,
    transport::link::{Backoff, Link},
};

/// A builder's settings, fixed at
/// [`ServerBuilder::bind`](crate::ServerBuilder::bind), for reconnecting.
pub(super) struct Settings {
    pub(super) link: Link,
    pub(super) running: Vec<Arc<Running>>,
    /// What every procedure shares, server-wide.
    pub(super) shared: Arc<Shared>,
    pub(super) drain_timeout: Duration,
    pub(super) reconnect: bool,
    pub(super) reconnections: Arc<AtomicU64>,
    pub(super) health: health::HealthSender,
}

/// A server bound to its queues; [`Server::serve`] runs it.
///
/// ```no_run
/// use rabbit_rpc::{handler_fn, Request, Server, Status};
///
/// # async fn example() -> Result<(), rabbit_rpc::Error> {
/// let server = Server::builder()
///     .procedure("echo", handler_fn(|request: Request| async move {
///         Ok::<_, Status>(request.into_body())
///     }))
///     .bind()
///     .await?;
/// server.serve().await
/// # }
/// ```
pub struct Server {
    pub(super) settings: Arc<Settings>,
    pub(super) session: Session,
    pub(super) stats: ServerStats,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("queues", &self.queues())
            .field("broker", &self.broker())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The queues this server consumes, one per procedure, in the order
    /// they were added.
    pub fn queues(&self) -> Vec<&str> {
        self.settings
            .running
            .iter()
            .map(|running| &*running.queue)
            .collect()
    }

    /// The broker this server is connected to (password hidden).
    pub fn broker(&self) -> String {
        self.session.connection.peer()
    }

    /// Whether the server joined `queue` as it existed, found it matching
    /// the settings given, or created it; `None` for a queue it does not
    /// serve.
    pub fn queue_origin(&self, queue: &str) -> Option<QueueOrigin> {
        let index = self
            .settings
            .running
            .iter()
            .position(|running| &*running.queue == queue)?;
        Some(self.session.consuming[index].origin)
    }

    /// Whether the server takes requests now, for readiness and liveness
    /// probes: [`ServerState::Serving`] once bound, `Reconnecting` while its
    /// connection is lost, `Draining` once shutdown starts, `Stopped` when
    /// serving has ended.
    pub fn health(&self) -> Health {
        self.settings.health.health()
    }

    /// The server's counters, all procedures together, to read while it
    /// serves.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// The counters of the procedure on `queue` (and the server's
    /// reconnections); `None` for a queue it does not serve.
    pub fn procedure_stats(&self, queue: &str) -> Option<ServerStats> {
        let running = self
            .settings
            .running
            .iter()
            .find(|running| &*running.queue == queue)?;
        Some(ServerStats::of(
            &[Arc::clone(&running.counters)],
            &self.settings.reconnections,
        ))
    }

    /// Serves until the process ends, reconnecting whenever the broker goes
    /// away.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection is lost and
    /// [`ServerBuilder::reconnect`](crate::ServerBuilder::reconnect) is off.
    pub async fn serve(self) -> Result<(), Error> {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then drains: stops taking requests
    /// (cancels the consumers), hands those received but not started back
    /// to their queues, finishes and answers those being handled (for up to
    /// [`ServerBuilder::drain_timeout`](crate::ServerBuilder::drain_timeout)), and closes the connection.
    ///
    /// When the broker goes away (a dropped connection, a broker restart) the
    /// server reconnects with backoff, trying every URL in turn, joins or
    /// re-declares its queues and resumes consuming.
    ///
    /// # Errors
    /// [`Error::ConnectionLost`] when the connection is lost and
    /// [`ServerBuilder::reconnect`](crate::ServerBuilder::reconnect) is off.
    pub async fn serve_with_shutdown<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()>,
    {
        let Server {
            settings,
            mut session,
            stats,
        } = self;
        let procedures = &settings.running;
        let tasks = TaskTracker::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            let connected = Instant::now();
            let ended = dispatch::serve_session(
                procedures,
                &settings.shared,
                &tasks,
                &mut session,
                shutdown.as_mut(),
            )
            .await;
            let Ended::Lost { cause, unparsable } = ended else {
                break;
            };
            let reason = cause.to_string();
            // Not ready from now: closing a dead connection may take a while.
            settings.health.set(ServerState::Reconnecting {
                reason: reason.clone(),
            });
            // Whatever broke, start afresh: the old connection's
            // unacknowledged requests go back to the queue.
            session.close("reconnecting").await;
            if !settings.reconnect {
                settings.health.set(ServerState::Stopped);
                // A lost connection, its cause kept.
                return Err(match cause {
                    Error::Refused { .. } => Error::lost(reason),
                    other => other.ending_calls(),
                });
            }
            warn!(%reason, "the server lost the broker; reconnecting");
            backoff.connection_lasted(connected.elapsed());
            // After an unparsable request, take one request at a time until
            // the connection holds: only that request comes back each time,
            // not the others around it (on a quorum queue each return
            // counts towards their delivery limit too).
            let reopened = settings
                .link
                .reopen(
                    &mut backoff,
                    "the server",
                    |connection| {
                        Session::open(connection, procedures, &settings.shared, unparsable)
                    },
                    |_| {},
                    shutdown.as_mut(),
                )
                .await;
            let Some(fresh) = reopened else {
                settings.health.set(ServerState::Draining);
                drain(&settings, &tasks).await;
                settings.health.set(ServerState::Stopped);
                return Ok(());
            };
            session = fresh;
            session.callers = Some(Arc::new(callers::Callers::new(&settings.link)));
            stats.reconnected();
            settings.health.set(ServerState::Serving);
            reconnected(&session, procedures);
        }
        // No request starts from here on, then no new deliveries.
        settings.health.set(ServerState::Draining);
        shutting_down(&tasks, settings.drain_timeout);
        settings.shared.draining.cancel();
        dispatch::stop_consuming(&mut session, procedures).await;
        drain(&settings, &tasks).await;
        session.close("server shutting down").await;
        settings.health.set(ServerState::Stopped);
        Ok(())
    }
}

/// Logs a reconnection, and each queue that had to be declared again.
fn reconnected(session: &Session, procedures: &[Arc<Running>]) {
    for (consuming, procedure) in session.consuming.iter().zip(procedures) {
        if consuming.origin == QueueOrigin::Created {
            info!(
                "queue '{}' no longer existed; declared it again as {}",
                procedure.queue,
                procedure.declare.describe()
            );
        }
    }
    let queues: Vec<&str> = procedures.iter().map(|p| &*p.queue).collect();
    info!(
        "reconnected to {}; serving {} again",
        session.connection.peer(),
        queues.join(", ")
    );
}

/// Says that shutdown began and what it waits for: an idle server stops at
/// once, so a quiet exit does not look like a hang.
fn shutting_down(tasks: &TaskTracker, timeout: Duration) {
    match tasks.len() {
        0 => info!("shutting down: nothing in flight; stopping now"),
        n => info!(
            "shutting down: {n} requests in hand; finishing those started (up to {}), handing back the rest",
            crate::fmt_duration(timeout)
        ),
    }
}

/// Hands requests not started back to the queue and waits (up to
/// `timeout`) for the running ones.
async fn drain(settings: &Settings, tasks: &TaskTracker) {
    let timeout = settings.drain_timeout;
    settings.shared.draining.cancel();
    tasks.close();
    if tokio::time::timeout(timeout, tasks.wait()).await.is_err() {
        warn!(
            "{} requests still running after {}; closing anyway (the broker hands them to another server)",
            tasks.len(),
            crate::fmt_duration(timeout)
        );
    }
}
