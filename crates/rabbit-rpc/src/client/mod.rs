//! The calling side: one connection, one channel, many concurrent calls,
//! and a new connection whenever the broker goes away.

mod body;
mod builder;
mod control;
mod deadline;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
mod in_flight;
mod probe;
mod reply;
mod session;
mod strays;
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

pub use body::RequestBody;
pub use builder::{CallOptions, ClientBuilder, ReplyQueue};
pub use control::{Ping, PingState};
pub use reply::Reply;

use tracing::Instrument;

use crate::{
    Code, Error,
    deadline::Deadline,
    metrics::ClientMetrics,
    protocol, trace,
    transport::{Confirm, Confirmed},
};
use deadline::{Clock, Phase};
use in_flight::Pending;
use probe::{Probe, Probes};
use session::{Resilient, Session, State};
use unroutable::PendingConfirm;

/// One call, as checked and timed.
struct Call<'a> {
    queue: &'a str,
    body: &'a [u8],
    content_type: Option<&'a str>,
    options: &'a CallOptions,
    timeout: Duration,
    /// Its deadline, and the phase it is in (see [`Clock`]).
    clock: Clock,
    /// The call's trace context, for the request's headers.
    trace: trace::TraceHeaders,
}

impl Call<'_> {
    fn timed_out(&self) -> Error {
        Error::Timeout {
            queue: self.queue.to_owned(),
            after: self.timeout,
        }
    }
}

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
    /// What outlives connections, for a [`ReplyQueue::Resilient`] client.
    resilient: Option<Arc<Resilient>>,
    /// Replies no call waited for.
    strays: Arc<strays::Strays>,
    /// For the application's metrics recorder (see [`crate::metrics`]).
    metrics: ClientMetrics,
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
        // `{prefix}-{n:x}`, without the formatting machinery (a few hundred
        // instructions less per call).
        let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1);
        let mut id = String::with_capacity(self.prefix.len() + 1 + digits as usize);
        id.push_str(&self.prefix);
        id.push('-');
        for shift in (0..digits).rev() {
            id.push(char::from(
                b"0123456789abcdef"[(n >> (shift * 4)) as usize & 0xf],
            ));
        }
        id
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

    /// Calls the server consuming `queue` with `body` and waits for its
    /// reply: [`Client::call_with`] with default options.
    ///
    /// # Errors
    /// As [`Client::call_with`].
    pub async fn call(&self, queue: &str, body: impl RequestBody) -> Result<Reply, Error> {
        self.call_with(queue, body, &CallOptions::default()).await
    }

    /// The call: sends `body` to the server consuming `queue`, with
    /// per-call options, and waits for its reply. `body` is bytes as they
    /// are (`"30"`, a `Vec<u8>`) or a typed value a codec encodes
    /// ([`codec::json`](crate::codec::json)`(&args)`, sent as
    /// `application/json` unless `options` name another content type); a
    /// typed reply decodes with [`Reply::decode`]. [`Client::call`] and
    /// [`Client::call_json`] are this call, shortened.
    ///
    /// ```no_run
    /// # async fn example(client: rabbit_rpc::Client) -> Result<(), rabbit_rpc::Error> {
    /// use std::time::Duration;
    /// use rabbit_rpc::CallOptions;
    ///
    /// let options = CallOptions::new()
    ///     .timeout(Duration::from_secs(2))
    ///     .metadata("tenant", "acme");
    /// let reply = client.call_with("rpc_queue", "30", &options).await?;
    /// assert_eq!(reply.text(), "832040");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Remote`] with the server's status when it answered with an
    /// error; [`Error::NoRoute`] when no queue has that name;
    /// [`Error::NoServer`] when nobody consumes it; [`Error::Timeout`];
    /// [`Error::ConnectionLost`]; [`Error::InvalidRequest`] when the body
    /// cannot be sent as it is (a typed value that does not encode, a body
    /// over [`ClientBuilder::max_body_size`]).
    pub async fn call_with(
        &self,
        queue: &str,
        body: impl RequestBody,
        options: &CallOptions,
    ) -> Result<Reply, Error> {
        let (bytes, codec_type) = body.bytes()?;
        let content_type = options.content_type.as_deref().or(codec_type);
        self.call_raw(queue, &bytes, options, content_type).await
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
        // An unanswered call checks for a server a while after publishing,
        // at most half its timeout.
        let clock = Clock::new(
            Deadline::after(started, timeout),
            inner.no_server_check.min(timeout / 2),
        );
        let span = trace::client_span(queue);
        let call = Call {
            queue,
            body,
            content_type,
            options,
            timeout,
            clock,
            trace: trace::headers(&span),
        };
        let attempt = async {
            match &inner.resilient {
                Some(resilient) => self.call_resilient(&call, resilient).await,
                None => self.call_once(&call).await,
            }
        };
        // The one place a call's deadline ends it.
        let result = call
            .clock
            .run(attempt, |phase| match phase {
                Phase::Connecting => self.unavailable(),
                Phase::Sent => call.timed_out(),
            })
            .instrument(span.clone())
            .await;
        let code = result.as_ref().map_or_else(Error::code, |_| Code::Ok);
        trace::finish(&span, code, false);
        inner
            .metrics
            .call(queue, code, started.elapsed().as_secs_f64());
        result
    }

    /// A call that fails with its connection: published once, its reply
    /// awaited on the same connection.
    async fn call_once(&self, call: &Call<'_>) -> Result<Reply, Error> {
        let id = self.inner.ids.next();
        let (session, mut pending) = loop {
            let session = self.session().await?;
            match session.in_flight.register(&id) {
                Ok(pending) => break (session, pending),
                // The connection has just dropped and nothing was sent:
                // wait for the next one.
                Err(_) => self.replaced(&session).await?,
            }
        };
        call.clock.publishing();
        let confirm = match self.publish(&session, call, pending.id()).await {
            Ok(confirm) => confirm,
            Err(error) => {
                if error.is_connection_lost() || error.refusal().is_some() {
                    // The connection (or channel) is gone before its reply
                    // consumer has noticed: say so now, so that the next
                    // calls wait for the reconnection instead of failing
                    // the same way.
                    session.in_flight.close(&error);
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
                queue: call.queue.to_owned(),
                confirm,
            });
        }
        self.reply(&session, call, &mut pending).await
    }

    /// A call that outlives its connection (see [`ReplyQueue::Resilient`]):
    /// published until the broker confirms it, on whichever connection the
    /// client has, and its reply awaited across reconnections.
    async fn call_resilient(
        &self,
        call: &Call<'_>,
        resilient: &session::Resilient,
    ) -> Result<Reply, Error> {
        let id = self.inner.ids.next();
        let mut pending = resilient.in_flight.register(&id)?;
        let mut session = self.session().await?;
        loop {
            call.clock.publishing();
            let confirmed = match self.publish(&session, call, pending.id()).await {
                Ok(confirm) => tokio::select! {
                    outcome = pending.outcome() => return outcome,
                    confirmed = confirm.outcome() => confirmed,
                },
                Err(Error::ConnectionLost { .. }) => None,
                Err(error) => return Err(error),
            };
            match confirmed {
                Some(Confirmed::Taken) => break,
                Some(Confirmed::Returned) => {
                    return Err(Error::NoRoute {
                        queue: call.queue.to_owned(),
                    });
                }
                Some(Confirmed::Refused) => {
                    return Err(Error::Rejected {
                        queue: call.queue.to_owned(),
                    });
                }
                // The connection went with the confirm: the broker may or
                // may not have the request. Publish it again on the next
                // connection (a second reply, if any, is dropped).
                None => {
                    call.clock.connecting();
                    self.replaced(&session).await?;
                    session = self.session().await?;
                }
            }
        }
        self.reply(&session, call, &mut pending).await
    }

    /// Publishes the request with correlation id `id` on `session`, with
    /// the call's remaining time as its expiration. Publishing takes
    /// microseconds unless the broker pushes back (a memory alarm), and then
    /// it may use the whole timeout (the call's [`Clock`] ends it).
    async fn publish(
        &self,
        session: &Session,
        call: &Call<'_>,
        id: &str,
    ) -> Result<Confirm, Error> {
        let mut message = protocol::request(
            &session.reply_to,
            id,
            call.clock.deadline().remaining(),
            call.content_type,
            &call.options.metadata,
            call.options.control,
        );
        protocol::add_trace(&mut message, &call.trace);
        message.user_id = session.user.as_deref();
        session
            .channel
            .publish(call.queue, true, &message, call.body)
            .await
    }

    /// Waits for the reply to a published call, checking when the call's
    /// clock says whether anybody serves its queue.
    async fn reply(
        &self,
        session: &Session,
        call: &Call<'_>,
        pending: &mut Pending,
    ) -> Result<Reply, Error> {
        let queue = call.queue;
        tokio::select! {
            outcome = pending.outcome() => return outcome,
            () = call.clock.check_due() => {}
        }
        // "No server" takes two answers a while apart: a server that is
        // reconnecting, or restarting, is back within that while.
        let first = self.probe(session, queue, None).await;
        if let Some(error) = first.failure(queue) {
            if matches!(error, Error::NoRoute { .. }) {
                return Err(error);
            }
            let asked = Instant::now();
            let left = call.clock.deadline().remaining();
            let again = asked + self.inner.no_server_check.min(left / 2);
            tokio::select! {
                outcome = pending.outcome() => return outcome,
                () = tokio::time::sleep_until(again) => {}
            }
            let second = self.probe(session, queue, Some(asked)).await;
            if let Some(error) = second.failure(queue) {
                return Err(error);
            }
        }
        pending.outcome().await
    }

    /// Asks the broker about `queue`. A broker that blocks this connection
    /// (a memory alarm) cannot hold the call past its deadline: the call's
    /// [`Clock`] ends it.
    async fn probe(&self, session: &Session, queue: &str, not_before: Option<Instant>) -> Probe {
        self.inner
            .probes
            .check(&session.connection, queue, not_before)
            .await
    }

    /// The session to call on: the current one, or the next one if the
    /// client is reconnecting, waiting for it (until the call's [`Clock`]
    /// ends the call: [`Error::ConnectionLost`], see [`Client::unavailable`]).
    async fn session(&self) -> Result<Arc<Session>, Error> {
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
            if state.changed().await.is_err() {
                return Err(closed());
            }
        }
    }

    /// Waits until `lost` (a session whose connection has dropped) is no
    /// longer the current one.
    async fn replaced(&self, lost: &Arc<Session>) -> Result<(), Error> {
        let mut state = self.inner.state.subscribe();
        let still_current =
            |state: &State| matches!(state, State::Connected(s) if Arc::ptr_eq(s, lost));
        match state.wait_for(|s| !still_current(s)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(closed()),
        }
    }

    /// Why a call made while reconnecting gave up: what its [`Clock`] says
    /// when the deadline comes in [`Phase::Connecting`].
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
        Error::lost(reason)
    }

    /// How many calls are waiting for a reply right now.
    pub fn pending_calls(&self) -> usize {
        if let Some(resilient) = &self.inner.resilient {
            return resilient.in_flight.len();
        }
        match &*self.inner.state.borrow() {
            State::Connected(session) => session.in_flight.len(),
            State::Reconnecting { .. } | State::Closed => 0,
        }
    }

    /// How many replies arrived that no call was waiting for (late replies
    /// after a timeout, duplicates, strangers, replies without a
    /// `correlation_id`). They are dropped, leaving nothing behind, and
    /// logged at DEBUG at most once every 10 s (with how many since the
    /// last line).
    pub fn unknown_replies(&self) -> u64 {
        self.inner.strays.count()
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
        if let Some(resilient) = &self.inner.resilient {
            resilient.in_flight.close(&closed());
        }
        match self.inner.state.send_replace(State::Closed) {
            State::Connected(session) => {
                if let Some(resilient) = &self.inner.resilient {
                    // Gone for good: the reply queue goes too, rather than
                    // when it expires.
                    let delete = session.channel.delete(&resilient.reply_queue);
                    let _ = tokio::time::timeout(crate::transport::CLOSE_TIMEOUT, delete).await;
                }
                // Bounded: a broker that stopped reading this connection
                // must not hold the caller; the socket closes when the
                // session is dropped anyway.
                session.connection.close("client closed").await
            }
            State::Reconnecting { .. } | State::Closed => Ok(()),
        }
    }

    /// Connects a client and starts it on its first session.
    async fn start(settings: ClientBuilder) -> Result<Client, Error> {
        let link = settings.link()?;
        let strays = Arc::default();
        let resilient = (settings.reply_queue == ReplyQueue::Resilient)
            .then(|| Arc::new(Resilient::new(&strays)));
        let (session, ended) = link
            .open(|connection| Session::open(connection, &settings, &strays, resilient.as_deref()))
            .await?;
        let state = Arc::new(watch::Sender::new(State::Connected(Arc::new(session))));
        let closed = CancellationToken::new();
        let supervisor = tokio::spawn(session::supervise(
            settings.clone(),
            link,
            Arc::clone(&state),
            ended,
            closed.clone(),
            Arc::clone(&strays),
            resilient.clone(),
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                state,
                ids: CorrelationIds::new(),
                timeout: settings.timeout,
                no_server_check: settings.no_server_check,
                max_body_size: settings.max_body_size,
                probes: Probes::default(),
                resilient,
                strays,
                metrics: ClientMetrics::default(),
                closed,
                supervisor,
            }),
        })
    }
}

fn closed() -> Error {
    Error::lost("the client is closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_the_prefix_and_a_hex_counter() {
        let ids = CorrelationIds::new();
        for n in [0u64, 1, 9, 10, 15, 16, 255, 4096, 0xdead_beef, u64::MAX] {
            ids.next.store(n, Ordering::Relaxed);
            assert_eq!(ids.next(), format!("{}-{n:x}", ids.prefix));
        }
    }
}
