//! The calling side: one connection, one channel, many concurrent calls,
//! and a new connection whenever the broker goes away.

mod builder;
mod in_flight;
mod probe;
mod reply;
mod session;
mod typed;
mod unroutable;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

pub use builder::{CallOptions, ClientBuilder, ReplyQueue};
pub use reply::Reply;

use crate::{Error, protocol};
use probe::{Probe, Probes};
use session::{Session, State};
use unroutable::PendingConfirm;

/// A deadline for timeouts too long to represent: about 30 years.
const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// An RPC client. Cheap to clone: clones share one connection and one
/// channel, and any number of calls may run at once.
///
/// When the broker goes away (a dropped connection, a broker restart, a
/// channel error) the calls waiting for a reply fail at once with
/// [`Error::ConnectionLost`] — the request may or may not have run — and the
/// client reconnects in the background, with backoff, trying every URL in
/// turn. Calls made meanwhile wait for the new connection, within their
/// timeout.
///
/// ```no_run
/// # async fn example() -> Result<(), rabbit_rpc::Error> {
/// let client = rabbit_rpc::Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let reply = client.call("rpc_queue", "30").await?;
/// assert_eq!(reply.text(), "832040");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Arc<watch::Sender<State>>,
    ids: CorrelationIds,
    timeout: Duration,
    no_server_check: Duration,
    max_body_size: usize,
    /// Recent "does anyone consume this queue?" answers.
    probes: Probes,
    unknown_replies: Arc<AtomicU64>,
    closed: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// Correlation ids: a random per-client prefix and a counter, e.g.
/// `3f2a9c1e-1b`. Unique among this client's calls, which is all that
/// matching needs (replies come only to this client's channel or queue); the
/// prefix tells clients apart in logs. Shorter and cheaper than a UUID per
/// call.
#[derive(Debug)]
struct CorrelationIds {
    prefix: String,
    next: AtomicU64,
}

impl CorrelationIds {
    fn new() -> CorrelationIds {
        let random = uuid::Uuid::new_v4().simple().to_string();
        CorrelationIds {
            prefix: random[..8].to_owned(),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

impl Client {
    /// Connects to `url` with default settings.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Client, Error> {
        ClientBuilder::default().url(url).connect().await
    }

    /// A builder with every setting at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Calls the server consuming `queue` with `body` and waits for its reply.
    ///
    /// # Errors
    /// [`Error::Remote`] with the server's status when it answered with an
    /// error; [`Error::NoRoute`] when no queue has that name;
    /// [`Error::NoServer`] when nobody consumes it; [`Error::Timeout`];
    /// [`Error::ConnectionLost`].
    pub async fn call(&self, queue: &str, body: impl AsRef<[u8]>) -> Result<Reply, Error> {
        self.call_with(queue, body, &CallOptions::default()).await
    }

    /// [`Client::call`] with per-call options.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn call_with(
        &self,
        queue: &str,
        body: impl AsRef<[u8]>,
        options: &CallOptions,
    ) -> Result<Reply, Error> {
        self.call_raw(
            queue,
            body.as_ref(),
            options,
            options.content_type.as_deref(),
        )
        .await
    }

    /// A call with `content_type` in place of the options' one.
    async fn call_raw(
        &self,
        queue: &str,
        body: &[u8],
        options: &CallOptions,
        content_type: Option<&str>,
    ) -> Result<Reply, Error> {
        // A caller that retries failed calls in a loop must still let the
        // client's own tasks (reply routing, reconnection) run.
        tokio::task::consume_budget().await;
        let inner = &*self.inner;
        if body.len() > inner.max_body_size {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "the body is {} bytes; this client sends at most {} (ClientBuilder::max_body_size)",
                    body.len(),
                    inner.max_body_size
                ),
            });
        }
        protocol::check_short("the queue name", queue)?;
        if !options.metadata.is_empty() {
            protocol::check_metadata(&options.metadata)?;
        }
        let timeout = options.timeout.unwrap_or(inner.timeout);
        let started = Instant::now();
        // A timeout too large for the clock (`Duration::MAX` for "no
        // timeout") means a deadline that never comes.
        let deadline = started + timeout.min(NEVER);
        let timed_out = || Error::Timeout {
            queue: queue.to_owned(),
            after: timeout,
        };

        let id = inner.ids.next();
        let (session, mut pending) = loop {
            let session = self.session(deadline).await?;
            match session.in_flight.register(&id) {
                Ok(pending) => break (session, pending),
                // The connection has just dropped and nothing was sent:
                // wait for the next one.
                Err(_) => self.replaced(&session, deadline).await?,
            }
        };
        // One timer per call on the hot path: the moment to check for a
        // server, counted from publishing (a call that waited for the client
        // to reconnect gets the same grace as any other). Publishing takes
        // microseconds unless the broker pushes back (a memory alarm); then
        // it may use the whole timeout.
        let check_at = (Instant::now() + inner.no_server_check.min(timeout / 2)).min(deadline);
        let mut check = std::pin::pin!(tokio::time::sleep_until(check_at));
        let published = {
            let message = protocol::request(
                &session.reply_to,
                pending.id(),
                deadline.saturating_duration_since(Instant::now()),
                content_type,
                &options.metadata,
            );
            let publish = session.channel.publish(queue, true, &message, body);
            let mut publish = std::pin::pin!(publish);
            tokio::select! {
                published = &mut publish => published,
                () = &mut check => match tokio::time::timeout_at(deadline, &mut publish).await {
                    Ok(published) => published,
                    Err(_) => return Err(timed_out()),
                },
            }
        };
        let confirm = match published {
            Ok(confirm) => confirm,
            Err(error) => {
                if let Error::ConnectionLost { reason } = &error {
                    // The connection is gone before its reply consumer has
                    // noticed: say so now, so that the next calls wait for
                    // the reconnection instead of failing the same way.
                    session.in_flight.close(reason.clone());
                }
                return Err(error);
            }
        };
        // The watcher drives every confirm to completion, even for calls
        // that end first: lapin keeps dropped, unresolved confirms forever.
        // (Without confirms, `confirm` is already resolved: dropping it is
        // free.)
        if let Some(confirms) = &session.confirms {
            let _ = confirms.send(PendingConfirm {
                id: pending.id().to_owned(),
                queue: queue.to_owned(),
                confirm,
            });
        }

        tokio::select! {
            outcome = pending.outcome() => return outcome,
            () = &mut check => {}
        }
        // "No server" takes two answers a while apart: a server that is
        // reconnecting, or restarting, is back within that while.
        let first = self.probe(&session, queue, deadline, None).await;
        if let Some(error) = first.failure(queue) {
            if matches!(error, Error::NoRoute { .. }) {
                return Err(error);
            }
            let asked = Instant::now();
            let left = deadline.saturating_duration_since(asked);
            let again = asked + inner.no_server_check.min(left / 2);
            tokio::select! {
                outcome = pending.outcome() => return outcome,
                () = tokio::time::sleep_until(again) => {}
            }
            let second = self.probe(&session, queue, deadline, Some(asked)).await;
            if let Some(error) = second.failure(queue) {
                return Err(error);
            }
        }
        match tokio::time::timeout_at(deadline, pending.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out()),
        }
    }

    /// Asks the broker about `queue`, within the call's deadline: a broker
    /// that blocks this connection (a memory alarm) must not hold the call
    /// past it.
    async fn probe(
        &self,
        session: &Session,
        queue: &str,
        deadline: Instant,
        not_before: Option<Instant>,
    ) -> Probe {
        let asking = self
            .inner
            .probes
            .check(&session.connection, queue, not_before);
        tokio::time::timeout_at(deadline, asking)
            .await
            .unwrap_or(Probe::Unknown)
    }

    /// The session to call on: the current one, or the next one if the
    /// client is reconnecting, waiting for it until `deadline`.
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, Error> {
        if let State::Connected(session) = &*self.inner.state.borrow() {
            return Ok(Arc::clone(session));
        }
        // Subscribe before looking, so no change is missed in between.
        let mut state = self.inner.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Connected(session) => return Ok(Arc::clone(session)),
                State::Closed => return Err(closed()),
                State::Reconnecting { .. } => {}
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(closed()),
                Err(_) => return Err(self.unavailable()),
            }
        }
    }

    /// Waits until `lost` (a session whose connection has dropped) is no
    /// longer the current one, or until `deadline`.
    async fn replaced(&self, lost: &Arc<Session>, deadline: Instant) -> Result<(), Error> {
        let mut state = self.inner.state.subscribe();
        let still_current =
            |state: &State| matches!(state, State::Connected(s) if Arc::ptr_eq(s, lost));
        match tokio::time::timeout_at(deadline, state.wait_for(|s| !still_current(s))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(self.unavailable()),
        }
    }

    /// Why a call made while reconnecting gave up.
    fn unavailable(&self) -> Error {
        let reason = match &*self.inner.state.borrow() {
            State::Reconnecting {
                last_error: Some(error),
                ..
            } => format!("still reconnecting when the call's time ran out; last attempt: {error}"),
            State::Reconnecting { lost, .. } => {
                format!(
                    "still reconnecting when the call's time ran out; the connection was lost: {lost}"
                )
            }
            State::Connected(_) | State::Closed => "not connected".to_owned(),
        };
        Error::ConnectionLost { reason }
    }

    /// How many calls are waiting for a reply right now.
    pub fn pending_calls(&self) -> usize {
        match &*self.inner.state.borrow() {
            State::Connected(session) => session.in_flight.len(),
            State::Reconnecting { .. } | State::Closed => 0,
        }
    }

    /// How many replies arrived that no call was waiting for (late replies
    /// after a timeout, duplicates, strangers). They are dropped.
    pub fn unknown_replies(&self) -> u64 {
        self.inner.unknown_replies.load(Ordering::Relaxed)
    }

    /// Whether the client has a connection right now (false while it
    /// reconnects).
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.state.borrow(), State::Connected(_))
    }

    /// Closes the connection and stops reconnecting. Calls still waiting and
    /// calls made afterwards fail with [`Error::ConnectionLost`].
    ///
    /// # Errors
    /// A broker error if the connection was already closed.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.closed.cancel();
        match self.inner.state.send_replace(State::Closed) {
            // Bounded: a broker that stopped reading this connection must
            // not hold the caller; the socket closes when the session is
            // dropped anyway.
            State::Connected(session) => session.connection.close("client closed").await,
            State::Reconnecting { .. } | State::Closed => Ok(()),
        }
    }

    /// Connects a client and starts it on its first session.
    async fn start(settings: ClientBuilder) -> Result<Client, Error> {
        let link = settings.link()?;
        let unknown_replies = Arc::default();
        let (session, ended) = link
            .open(|connection| Session::open(connection, &settings, &unknown_replies))
            .await?;
        let state = Arc::new(watch::Sender::new(State::Connected(Arc::new(session))));
        let closed = CancellationToken::new();
        let supervisor = tokio::spawn(session::supervise(
            settings.clone(),
            link,
            Arc::clone(&state),
            ended,
            closed.clone(),
            Arc::clone(&unknown_replies),
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                state,
                ids: CorrelationIds::new(),
                timeout: settings.timeout,
                no_server_check: settings.no_server_check,
                max_body_size: settings.max_body_size,
                probes: Probes::default(),
                unknown_replies,
                closed,
                supervisor,
            }),
        })
    }
}

fn closed() -> Error {
    Error::ConnectionLost {
        reason: "the client is closed".to_owned(),
    }
}
