//! One connection's worth of calling: the connection, the channel requests
//! go out on and replies come back to, the calls waiting on it, and the
//! tasks that serve them. A client replaces its session when the broker goes
//! away (see [`supervise`]), through the lifecycle it shares with servers
//! ([`Link`]).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{ClientBuilder, ReplyQueue, in_flight::InFlight, strays::Strays, unroutable};
use crate::{
    Error, QueueArgument,
    protocol::{self, DIRECT_REPLY_TO, REPLY_QUEUE_PREFIX},
    transport::{
        CLOSE_TIMEOUT, Channel, Connection, Consumer, Declaration,
        link::{Backoff, Link},
    },
};

/// How long a resilient client's reply queue outlives the client: the
/// broker deletes it this long after its last consumer went, if the client
/// did not delete it first.
const RESILIENT_QUEUE_EXPIRES_MS: i64 = 5 * 60 * 1000;

/// What a resilient client keeps across connections: its calls, and the
/// name of its reply queue.
#[derive(Debug)]
pub(super) struct Resilient {
    pub(super) in_flight: Arc<InFlight>,
    pub(super) reply_queue: String,
}

impl Resilient {
    pub(super) fn new(strays: &Arc<Strays>) -> Resilient {
        Resilient {
            in_flight: Arc::new(InFlight::counting_into(Arc::clone(strays))),
            reply_queue: format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The reply queue: a quorum queue, replicated over a cluster's nodes,
    /// that the broker deletes once the client has been gone a while.
    fn declaration() -> Declaration {
        Declaration {
            durable: true,
            arguments: vec![
                (
                    "x-queue-type".to_owned(),
                    QueueArgument::Text("quorum".to_owned()),
                ),
                (
                    "x-expires".to_owned(),
                    QueueArgument::Int(RESILIENT_QUEUE_EXPIRES_MS),
                ),
            ],
            ..Declaration::default()
        }
    }
}

/// A client's link to the broker, as its calls see it.
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Calls go out on this session.
    Connected(Arc<Session>),
    /// The last session was lost; calls wait (within their deadline) for
    /// the next.
    Reconnecting {
        /// Why the last session ended.
        lost: String,
        /// Why the last attempt to reconnect failed, if one did.
        last_error: Option<String>,
    },
    /// [`Client::close`](super::Client::close) was called.
    Closed,
}

/// One connection, its channel and the calls waiting on it.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) connection: Connection,
    pub(super) channel: Channel,
    pub(super) reply_to: String,
    /// The `user_id` its requests carry: the user it logged in as, unless
    /// the client does not send it.
    pub(super) user: Option<String>,
    pub(super) in_flight: Arc<InFlight>,
    /// Where publisher confirms go to be watched, when they are on.
    pub(super) confirms: Option<mpsc::UnboundedSender<unroutable::PendingConfirm>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Session {
    /// Sets up the reply consumer on `connection` and starts the session's
    /// tasks. The receiver gets why the session ended, once it has. A
    /// resilient client's session works for the client's calls, which
    /// outlive it; any other session has calls of its own, which fail with
    /// it.
    pub(super) async fn open(
        connection: Connection,
        settings: &ClientBuilder,
        strays: &Arc<Strays>,
        resilient: Option<&Resilient>,
    ) -> Result<(Session, oneshot::Receiver<String>), Error> {
        let channel = connection.channel().await?;
        if settings.publisher_confirms || resilient.is_some() {
            channel.confirm().await?;
        }
        let reply_to = match (settings.reply_queue, resilient) {
            (_, Some(resilient)) => {
                // The same name on every connection: replies published
                // while the client was away wait there.
                channel
                    .declare(&resilient.reply_queue, &Resilient::declaration())
                    .await?;
                resilient.reply_queue.clone()
            }
            (ReplyQueue::DirectReplyTo, None) => DIRECT_REPLY_TO.to_owned(),
            _ => {
                // Named by us, fresh for every connection: the broker
                // deletes an exclusive queue with its connection.
                let name = format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4().simple());
                let declaration = Declaration {
                    exclusive: true,
                    auto_delete: true,
                    ..Declaration::default()
                };
                channel.declare(&name, &declaration).await?;
                name
            }
        };
        // Direct reply-to requires consuming (no-ack) before the first
        // publish, on the channel that publishes. A resilient client
        // acknowledges each reply, so one on its way when the connection
        // drops comes back on the next.
        let replies = channel.consume(&reply_to, resilient.is_none()).await?;

        let in_flight = match resilient {
            Some(resilient) => Arc::clone(&resilient.in_flight),
            None => Arc::new(InFlight::counting_into(Arc::clone(strays))),
        };
        let (lost, ended) = oneshot::channel();
        let mut tasks = vec![tokio::spawn(route_replies(
            replies,
            Arc::clone(&in_flight),
            lost,
            resilient.is_some(),
            settings.max_reply_size,
        ))];
        // Even with confirms on, the sweep is needed: it is what frees the
        // confirms of calls dropped while publishing.
        tasks.push(tokio::spawn(unroutable::sweep_returns(
            channel.clone(),
            Arc::clone(&in_flight),
        )));
        // A resilient call waits for its own confirm.
        let confirms = (settings.publisher_confirms && resilient.is_none()).then(|| {
            let (confirms, confirm_queue) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(unroutable::watch_confirms(
                confirm_queue,
                Arc::clone(&in_flight),
            )));
            confirms
        });
        let user = settings
            .send_user_id
            .then(|| connection.user().map(str::to_owned))
            .flatten();
        let session = Session {
            connection,
            channel,
            reply_to,
            user,
            in_flight,
            confirms,
            tasks,
        };
        Ok((session, ended))
    }
}

/// Hands each reply to the call waiting for it (and, for a `resilient`
/// client, acknowledges it); when the reply consumer ends (the connection
/// or channel closed), reports why and, unless the calls outlive the
/// session (`resilient`), fails every waiting call at once.
///
/// Whatever the server sends ends as one defined outcome: a body over
/// `max_reply_size` fails its call with [`Error::ReplyTooLarge`] and is
/// dropped here, unread; a reply no call waits for (or without
/// `correlation_id`) is dropped and counted, leaving nothing behind; a
/// malformed header is read as [`protocol::decode_reply`] says.
async fn route_replies(
    mut replies: Consumer,
    in_flight: Arc<InFlight>,
    lost: oneshot::Sender<String>,
    resilient: bool,
    max_reply_size: usize,
) {
    let cause = loop {
        match replies.next().await {
            Some(Ok(delivery)) => {
                let acker = resilient.then_some(delivery.acker);
                let (properties, body) = (delivery.properties, delivery.body);
                match properties.correlation_id() {
                    Some(id) if body.len() > max_reply_size => {
                        let size = body.len();
                        // Freed before the call hears of it: the error
                        // holds only the sizes.
                        drop(body);
                        let too_large = Error::ReplyTooLarge {
                            size,
                            max: max_reply_size,
                        };
                        in_flight.complete(id, Err(too_large));
                    }
                    Some(id) => {
                        let outcome =
                            protocol::decode_reply(&properties, body).map_err(Error::Remote);
                        in_flight.complete(id, outcome);
                    }
                    None => {
                        drop(body);
                        in_flight.note_unmarked();
                    }
                }
                if let Some(acker) = acker {
                    // A reply not acknowledged comes back on the next
                    // connection, to be dropped as one nobody waits for.
                    // Not awaited here: on a connection that has just died
                    // lapin may never finish the ack, and this loop must go
                    // on to see the consumer end (and the task must end too).
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, acker.ack()).await;
                    });
                }
            }
            Some(Err(error)) => break error,
            None => {
                break Error::lost("the reply consumer was cancelled");
            }
        }
    };
    let reason = match &cause {
        Error::ConnectionLost { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    debug!(%reason, "reply consumer ended");
    if !resilient {
        in_flight.close(&cause);
    }
    let _ = lost.send(reason);
}

/// Keeps a client connected: when its session ends, publishes
/// [`State::Reconnecting`], then reconnects with backoff (every URL in turn)
/// until it succeeds or the client is closed.
pub(super) async fn supervise(
    settings: ClientBuilder,
    link: Link,
    state: Arc<watch::Sender<State>>,
    mut ended: oneshot::Receiver<String>,
    closed: CancellationToken,
    strays: Arc<Strays>,
    resilient: Option<Arc<Resilient>>,
) {
    let mut backoff = Backoff::default();
    let mut connected = tokio::time::Instant::now();
    loop {
        let lost = tokio::select! {
            biased;
            () = closed.cancelled() => return,
            lost = &mut ended => lost.unwrap_or_else(|_| "the reply consumer stopped".to_owned()),
        };
        warn!(reason = %lost, "the client lost the broker; reconnecting");
        // `Client::close` may have run meanwhile: never replace `Closed`.
        let mut old = None;
        let reconnecting = state.send_if_modified(|current| {
            if matches!(current, State::Closed) {
                return false;
            }
            old = Some(std::mem::replace(
                current,
                State::Reconnecting {
                    lost: lost.clone(),
                    last_error: None,
                },
            ));
            true
        });
        if !reconnecting {
            return;
        }
        if let Some(State::Connected(old)) = old {
            // A channel error leaves the connection open: close it.
            let _ = old.connection.close("reconnecting").await;
        }
        backoff.connection_lasted(connected.elapsed());
        let opened = link
            .reopen(
                &mut backoff,
                "the client",
                |connection| Session::open(connection, &settings, &strays, resilient.as_deref()),
                |error| {
                    state.send_if_modified(|state| {
                        if let State::Reconnecting { last_error, .. } = state {
                            *last_error = Some(error.to_string());
                            return true;
                        }
                        false
                    });
                },
                closed.cancelled(),
            )
            .await;
        let Some((session, next_end)) = opened else {
            return;
        };
        let session = Arc::new(session);
        let installed = state.send_if_modified(|current| {
            if matches!(current, State::Closed) {
                return false;
            }
            *current = State::Connected(Arc::clone(&session));
            true
        });
        if !installed {
            let _ = session.connection.close("client closed").await;
            return;
        }
        info!("the client reconnected to {}", session.connection.peer());
        ::metrics::counter!(crate::metrics::CLIENT_RECONNECTIONS).increment(1);
        ended = next_end;
        connected = tokio::time::Instant::now();
    }
}
