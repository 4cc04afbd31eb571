//! Where requests are dispatched to procedures: every procedure's consumer
//! is polled in turn, and each delivery becomes a task of its procedure,
//! stamped with the time it arrived (its deadline counts from then). Also
//! how a session's consumers are stopped on shutdown, and how the prefetch
//! comes back after a request this server could not parse.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
};

use futures_util::{FutureExt, StreamExt, future::join_all};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info};

use super::{
    reply::Origin,
    running::Running,
    session::{Consuming, Session},
    shared::{Failure, Shared},
};
use crate::{
    Error,
    transport::{CLOSE_TIMEOUT, Delivery, link::STABLE_CONNECTION},
};

/// Why a session's serve loop ended.
pub(super) enum Ended {
    Shutdown,
    Lost {
        /// What ended it, its cause kept.
        cause: Error,
        /// The broker sent a frame lapin could not parse: most likely a
        /// request with properties that are not valid UTF-8, which comes
        /// back on every connection.
        unparsable: bool,
    },
}

/// What the consumers had next: a delivery, nearly always, moved once.
#[allow(clippy::large_enum_variant)]
enum Next {
    Delivery(usize, Delivery),
    Failed(usize, Error),
    Cancelled(usize),
}

/// Takes deliveries from one session until shutdown or until the session
/// fails, and runs each as a task of its procedure. A session opened with
/// prefetch 1 (after an unparsable request) gets its procedures' prefetch
/// back once it has lasted [`STABLE_CONNECTION`].
pub(super) async fn serve_session(
    procedures: &[Arc<Running>],
    shared: &Shared,
    tasks: &TaskTracker,
    session: &mut Session,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    // Shared by the session's requests: one reference count each, not a
    // copy of its channels and token.
    let origin = Arc::new(Origin {
        replies: session.replies.clone(),
        callers: session.callers.clone(),
        failure: Arc::new(Failure::default()),
        lost: CancellationToken::new(),
        stop: shared.draining.child_token(),
    });
    let ended = take_deliveries(procedures, tasks, session, &origin, shutdown).await;
    if let Ended::Lost { .. } = ended {
        // Tasks of this session still waiting for a handler slot must not
        // run: their requests go back to the queue with the connection.
        origin.lost.cancel();
        origin.stop.cancel();
    }
    ended
}

/// The loop of [`serve_session`].
async fn take_deliveries(
    procedures: &[Arc<Running>],
    tasks: &TaskTracker,
    session: &mut Session,
    origin: &Arc<Origin>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let mut restore = pin!(tokio::time::sleep(STABLE_CONNECTION));
    // One wait for the whole session, not one set up and torn down for
    // every delivery (a waiter registered and removed each time).
    let mut failed = pin!(origin.failure.wait());
    let mut turn = 0;
    loop {
        let next = tokio::select! {
            biased;
            () = &mut shutdown => return Ended::Shutdown,
            reason = &mut failed => {
                return Ended::Lost { cause: Error::lost(reason), unparsable: false };
            }
            () = &mut restore, if session.degraded => {
                if let Err(error) = restore_prefetch(session, procedures).await {
                    return Ended::Lost { cause: error, unparsable: false };
                }
                info!("the connection holds; every procedure takes its configured prefetch again");
                continue;
            }
            next = next_delivery(session, &mut turn) => next,
        };
        if let Some(ended) = take(procedures, tasks, origin, next) {
            return ended;
        }
        // Deliveries already waiting are taken at once, up to a batch,
        // before shutdown and failures are looked at again: each look polls
        // them (the application's shutdown future too), which cost some
        // hundreds of instructions per request when done for each one
        // (bench/count.py). A consumer polled here without the task's waker
        // is polled with it again by the `select!` above before the loop
        // sleeps.
        for _ in 1..BATCH {
            let Some(next) = next_delivery(session, &mut turn).now_or_never() else {
                break;
            };
            if let Some(ended) = take(procedures, tasks, origin, next) {
                return ended;
            }
        }
    }
}

/// How many deliveries already waiting [`take_deliveries`] takes in one go.
const BATCH: usize = 32;

/// Runs a delivery as a task of its procedure; or, for a consumer that
/// failed or was cancelled, how the session ends.
fn take(
    procedures: &[Arc<Running>],
    tasks: &TaskTracker,
    origin: &Arc<Origin>,
    next: Next,
) -> Option<Ended> {
    match next {
        Next::Delivery(index, delivery) => {
            let received = Instant::now();
            // Boxed: the request's future (some 4 KiB) is then copied
            // once, into its box, instead of each time tokio moves the
            // task (measured: ~3,000 instructions less per request,
            // bench/count.py).
            tasks.spawn(Box::pin(Arc::clone(&procedures[index]).run(
                delivery,
                received,
                Arc::clone(origin),
            )));
            None
        }
        Next::Failed(index, error) => {
            let unparsable = error.is_unparsable();
            if unparsable {
                error!(
                    queue = %procedures[index].queue,
                    "the broker sent a message this server cannot parse (a request whose AMQP \
                     properties are not valid UTF-8?); it comes back on every connection \
                     until it is removed from the queue (a quorum queue's delivery limit \
                     drops it); taking one request at a time meanwhile"
                );
            }
            Some(Ended::Lost {
                cause: error,
                unparsable,
            })
        }
        Next::Cancelled(index) => Some(Ended::Lost {
            cause: Error::lost(format!(
                "the broker cancelled the consumer of queue '{}' (was it deleted?)",
                procedures[index].queue
            )),
            unparsable: false,
        }),
    }
}

/// The next delivery of any procedure: each consumer is polled in turn,
/// starting after the one that gave the last delivery, so a busy procedure
/// does not starve the others. Retired consumers that end are forgotten.
fn next_delivery<'a>(
    session: &'a mut Session,
    turn: &'a mut usize,
) -> impl Future<Output = Next> + 'a {
    poll_fn(move |cx| {
        let count = session.consuming.len();
        for step in 0..count {
            let index = (*turn + step) % count;
            let consuming = &mut session.consuming[index];
            let mut retired = 0;
            while retired < consuming.retiring.len() {
                match consuming.retiring[retired].poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(delivery))) => {
                        *turn = (index + 1) % count;
                        return Poll::Ready(Next::Delivery(index, delivery));
                    }
                    // An error here is the connection's: the active
                    // consumer reports it too.
                    Poll::Ready(Some(Err(_)) | None) => {
                        consuming.retiring.swap_remove(retired);
                    }
                    Poll::Pending => retired += 1,
                }
            }
            match consuming.consumer.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    *turn = (index + 1) % count;
                    return Poll::Ready(Next::Delivery(index, delivery));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Next::Failed(index, error)),
                Poll::Ready(None) => return Poll::Ready(Next::Cancelled(index)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
}

/// Gives every procedure its configured prefetch again. A consumer keeps
/// the prefetch it started with (a later `basic.qos` only applies to new
/// consumers, on RabbitMQ as here), so each gets a new consumer, and the
/// old one is cancelled and retired.
async fn restore_prefetch(session: &mut Session, procedures: &[Arc<Running>]) -> Result<(), Error> {
    for (consuming, procedure) in session.consuming.iter_mut().zip(procedures) {
        consuming.channel.prefetch(procedure.prefetch).await?;
        let fresh = consuming.channel.consume(&procedure.queue, false).await?;
        let old = std::mem::replace(&mut consuming.consumer, fresh);
        consuming.channel.cancel(&old.tag()).await?;
        consuming.retiring.push(old);
    }
    session.degraded = false;
    Ok(())
}

/// Cancels every consumer of the session, then hands what reached them
/// before the cancellation took effect straight back to the queue, not when
/// the connection closes. Each step is bounded.
pub(super) async fn stop_consuming(session: &mut Session, procedures: &[Arc<Running>]) {
    let stopping = session
        .consuming
        .iter_mut()
        .zip(procedures)
        .map(|(consuming, procedure)| stop(consuming, procedure));
    join_all(stopping).await;
}

async fn stop(consuming: &mut Consuming, procedure: &Arc<Running>) {
    let tag = consuming.consumer.tag();
    let cancel = consuming.channel.cancel(&tag);
    if !matches!(
        tokio::time::timeout(CLOSE_TIMEOUT, cancel).await,
        Ok(Ok(()))
    ) {
        return;
    }
    // Bounded as a whole: nothing to race against.
    let never = CancellationToken::new();
    let received_late = async {
        for consumer in std::iter::once(&mut consuming.consumer).chain(&mut consuming.retiring) {
            while let Some(Ok(delivery)) = consumer.next().await {
                procedure.requeue(&delivery.acker, &never).await;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, received_late).await;
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::{future::pending, time::Duration};

    use tokio::sync::Semaphore;

    use super::*;
    use crate::{MemoryBroker, RawMessage, Request, Server, Status, handler_fn};

    /// After a request it could not parse, a server takes one request at a
    /// time; once the connection has held, each procedure must really get
    /// its prefetch back. A consumer keeps the prefetch it started with
    /// (`basic.qos` only changes later consumers, on RabbitMQ as on the
    /// in-memory broker), so setting it on the channel is not enough.
    #[tokio::test(start_paused = true)]
    async fn a_degraded_session_takes_its_prefetch_again_once_the_connection_holds() {
        let broker = MemoryBroker::new();
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::clone(&gate);
        let builder = Server::builder()
            .memory(&broker)
            .prefetch(4)
            .concurrency(10)
            .procedure(
                "restore",
                handler_fn(move |request: Request| {
                    let gate = Arc::clone(&held);
                    async move {
                        gate.acquire().await.expect("gate").forget();
                        Ok::<_, Status>(request.into_body())
                    }
                }),
            );
        let shared = builder.shared();
        let procedures = builder.running(&shared).unwrap();
        let connection = builder.link().unwrap().connect().await.unwrap();
        let mut session = Session::open(connection, &procedures, &shared, true)
            .await
            .unwrap();
        for n in 0..6 {
            broker.publish(
                "restore",
                RawMessage::new("x")
                    .correlation_id(n.to_string())
                    .reply_to("amq.gen-restore"),
            );
        }
        let tasks = TaskTracker::new();
        let unacked = || broker.queue("restore").map_or(0, |queue| queue.unacked);
        let watch = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(unacked(), 1, "one at a time while degraded");
            tokio::time::sleep(STABLE_CONNECTION).await;
            assert_eq!(unacked(), 5, "the one in hand, and four more");
        };
        let never = std::pin::pin!(pending::<()>());
        tokio::select! {
            _ = serve_session(&procedures, &shared, &tasks, &mut session, never) => {
                panic!("the session ended")
            }
            () = watch => {}
        }
        assert!(!session.degraded);
        gate.add_permits(10);
    }
}
