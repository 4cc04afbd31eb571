//! One suite, two brokers: every behaviour the in-memory broker imitates is
//! proved on RabbitMQ by the same test, so the two cannot drift. Each test
//! is an `async fn` of a [`Broker`]; [`conformance!`] runs it once against
//! the local RabbitMQ (module `real`) and once against a fresh
//! [`MemoryBroker`] on tokio's paused clock (module `memory`), where time
//! only passes when everything waits, so tests that wait for timeouts take
//! no time.
//!
//! What is imitated (see `rabbit_rpc::MemoryBroker`): default-exchange
//! routing and returns of unroutable requests, queue declarations and their
//! equivalence, exclusive reply queues, consumer counts, per-consumer
//! prefetch, acknowledgement, rejection with and without requeue and the
//! redelivered flag, per-message expiration, direct reply-to, and
//! connection loss. Faults only the real broker has (kill, restart) stay in
//! the real-only suites.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use lapin::{BasicProperties, options::BasicGetOptions};
use rabbit_rpc::{
    CallOptions, Client, ClientBuilder, Code, Context, Error, Handler, MemoryBroker, Procedure,
    QueueType, RawMessage, ReplyQueue, Request, Server, ServerBuilder, ServerStats, Status, codec,
    handler_fn,
};
use tokio::{sync::Semaphore, task::JoinHandle, time::Instant};

/// The broker a conformance test runs against.
enum Broker {
    Real,
    Memory(MemoryBroker),
}

impl Broker {
    fn client(&self) -> ClientBuilder {
        match self {
            Broker::Real => Client::builder().url(common::url()),
            Broker::Memory(broker) => Client::builder().memory(broker),
        }
    }

    fn server(&self) -> ServerBuilder {
        match self {
            Broker::Real => Server::builder().url(common::url()),
            Broker::Memory(broker) => Server::builder().memory(broker),
        }
    }

    /// A queue name no other test uses, deleted when the guard drops.
    fn queue(&self, test: &str) -> (String, Option<common::DeleteOnDrop>) {
        let queue = common::unique_queue(test);
        let guard = matches!(self, Broker::Real).then(|| common::DeleteOnDrop(queue.clone()));
        (queue, guard)
    }

    /// Messages ready in `queue`.
    async fn ready(&self, queue: &str) -> usize {
        match self {
            Broker::Real => common::ready_messages(queue).await as usize,
            Broker::Memory(broker) => broker.queue(queue).map_or(0, |q| q.ready),
        }
    }

    /// Messages of `queue` delivered and not acknowledged.
    async fn unacked(&self, queue: &str) -> usize {
        match self {
            Broker::Real => common::unacked_messages(queue).await.unwrap_or(0) as usize,
            Broker::Memory(broker) => broker.queue(queue).map_or(0, |q| q.unacked),
        }
    }

    /// `(durable, x-queue-type)` of `queue`.
    async fn declared(&self, queue: &str) -> Option<(bool, String)> {
        match self {
            Broker::Real => {
                let (durable, kind, _) = common::queue_info(queue).await?;
                Some((durable == "true", kind))
            }
            Broker::Memory(broker) => {
                let info = broker.queue(queue)?;
                let kind = info
                    .arguments
                    .iter()
                    .find(|(name, _)| name == "x-queue-type")
                    .map_or("classic".to_owned(), |(_, v)| {
                        v.trim_matches('\'').to_owned()
                    });
                Some((info.durable, kind))
            }
        }
    }

    /// Closes the connections named `name` from the broker's side.
    async fn cut(&self, name: &str) -> usize {
        match self {
            Broker::Real => common::close_connections_named(name).await,
            Broker::Memory(broker) => broker.close_connections(name),
        }
    }

    /// How many open connections are named `name`.
    async fn connections_named(&self, name: &str) -> usize {
        match self {
            Broker::Real => common::connections_named(name).await.len(),
            Broker::Memory(broker) => broker.connections().iter().filter(|n| *n == name).count(),
        }
    }

    /// The durable reply queues (`rabbit-rpc.reply.…`) that exist: those of
    /// resilient clients.
    async fn reply_queues(&self) -> Vec<String> {
        let durable: Vec<(String, bool)> = match self {
            Broker::Real => {
                common::rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "name", "durable"])
                    .await
                    .lines()
                    .filter_map(|line| {
                        let (name, durable) = line.split_once('\t')?;
                        Some((name.to_owned(), durable.trim() == "true"))
                    })
                    .collect()
            }
            Broker::Memory(broker) => broker
                .queue_names()
                .into_iter()
                .map(|name| {
                    let durable = broker.queue(&name).is_some_and(|q| q.durable);
                    (name, durable)
                })
                .collect(),
        };
        durable
            .into_iter()
            .filter(|(name, durable)| *durable && name.starts_with("rabbit-rpc.reply."))
            .map(|(name, _)| name)
            .collect()
    }

    /// Publishes as a client in another language would.
    async fn publish(&self, queue: &str, message: RawMessage) {
        match self {
            Broker::Real => {
                let (connection, channel) = common::raw_channel().await;
                let mut properties = BasicProperties::default();
                if let Some(id) = &message.correlation_id {
                    properties = properties.with_correlation_id(id.as_str().into());
                }
                if let Some(id) = &message.message_id {
                    properties = properties.with_message_id(id.as_str().into());
                }
                if let Some(reply_to) = &message.reply_to {
                    properties = properties.with_reply_to(reply_to.as_str().into());
                }
                if let Some(content_type) = &message.content_type {
                    properties = properties.with_content_type(content_type.as_str().into());
                }
                if !message.headers.is_empty() {
                    let mut headers = lapin::types::FieldTable::default();
                    for (name, value) in &message.headers {
                        headers.insert(
                            name.as_str().into(),
                            lapin::types::AMQPValue::LongString(value.as_str().into()),
                        );
                    }
                    properties = properties.with_headers(headers);
                }
                common::publish(&channel, queue, &message.body, properties).await;
                let _ = connection.close(200, "done".into()).await;
            }
            Broker::Memory(broker) => {
                broker.publish(queue, message);
            }
        }
    }

    /// Takes the next message of `queue`, if any: its body and the
    /// properties rabbit-rpc reads.
    async fn get(&self, queue: &str) -> Option<RawMessage> {
        match self {
            Broker::Real => {
                let (connection, channel) = common::raw_channel().await;
                let got = channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                    .await
                    .expect("basic.get");
                let _ = connection.close(200, "done".into()).await;
                let delivery = got?.delivery;
                let text = |value: &Option<lapin::types::ShortString>| {
                    value.as_ref().map(|value| value.to_string())
                };
                let properties = &delivery.properties;
                let mut message = RawMessage::new(delivery.data.clone());
                message.correlation_id = text(properties.correlation_id());
                message.message_id = text(properties.message_id());
                message.reply_to = text(properties.reply_to());
                message.content_type = text(properties.content_type());
                if let Some(headers) = properties.headers() {
                    for (name, value) in headers.inner() {
                        if let lapin::types::AMQPValue::LongString(value) = value {
                            message.headers.push((name.to_string(), value.to_string()));
                        }
                    }
                }
                Some(message)
            }
            Broker::Memory(broker) => broker.get(queue),
        }
    }

    /// Waits up to 10 s for the next message of `queue`.
    async fn next(&self, queue: &str) -> RawMessage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(message) = self.get(queue).await {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "nothing in '{queue}' within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs each named test against both brokers.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod real {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&super::Broker::Real).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $test() {
                    super::$test(&super::Broker::Memory(rabbit_rpc::MemoryBroker::new())).await;
                }
            )*
        }
    };
}

conformance!(
    a_call_is_answered_over_direct_reply_to_and_over_an_exclusive_queue,
    a_call_to_a_missing_queue_fails_at_once_with_no_route,
    a_queue_nobody_consumes_gives_no_server_before_the_timeout,
    a_request_nobody_takes_in_time_expires_in_the_queue,
    a_server_holds_no_more_requests_than_its_prefetch,
    a_request_held_by_a_lost_connection_comes_back_redelivered,
    shutdown_hands_requests_not_started_back_marked_redelivered,
    requests_that_cannot_be_answered_are_dropped_not_requeued,
    a_client_whose_connection_is_cut_fails_waiting_calls_at_once_and_reconnects,
    a_server_whose_connection_is_cut_reconnects_and_serves_on,
    a_missing_queue_is_declared_durable_and_quorum_and_a_conflict_is_refused,
    several_procedures_share_one_connection_each_on_its_queue,
    a_typed_service_answers_its_typed_client_with_metadata_and_error_details,
    a_resilient_call_outlives_its_clients_connection,
    after_a_lost_connection_a_server_skips_requests_whose_caller_is_gone,
    requests_correlate_by_message_id_too_as_amqp_1_0_peers_do,
    control_requests_are_answered_by_the_server_not_the_handler,
    a_handler_still_running_at_its_callers_deadline_is_cancelled_and_nothing_is_published,
    a_handler_past_the_servers_own_limit_is_cancelled_and_answered_deadline_exceeded,
);

/// A server answering `handler` on a fresh queue, running until the handle
/// is stopped.
struct Running {
    queue: String,
    stats: ServerStats,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
    _cleanup: Option<common::DeleteOnDrop>,
}

impl Running {
    async fn start<H: Handler>(
        broker: &Broker,
        test: &str,
        handler: H,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> Running {
        let (queue, cleanup) = broker.queue(test);
        let mut running = Running::on(broker, &queue, handler, configure).await;
        running._cleanup = cleanup;
        running
    }

    async fn on<H: Handler>(
        broker: &Broker,
        queue: &str,
        handler: H,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> Running {
        let builder = broker.server().procedure(queue, handler);
        let server = configure(builder).bind().await.expect("bind");
        let stats = server.stats();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_shutdown(async {
            let _ = stopped.await;
        }));
        Running {
            queue: queue.to_owned(),
            stats,
            stop: Some(stop),
            task,
            _cleanup: None,
        }
    }

    fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn stop(mut self) -> Result<(), Error> {
        self.begin_stop();
        (&mut self.task).await.expect("server task")
    }
}

/// A handler that counts its runs and answers with the body once `gate`
/// gives it a permit.
fn gated(gate: &Arc<Semaphore>, runs: &Arc<AtomicUsize>) -> impl Handler {
    let (gate, runs) = (Arc::clone(gate), Arc::clone(runs));
    handler_fn(move |request: Request| {
        let gate = Arc::clone(&gate);
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            gate.acquire().await.expect("gate").forget();
            Ok::<_, Status>(request.into_body())
        }
    })
}

fn spawn_call(
    client: &Client,
    queue: &str,
    body: &str,
    timeout: Duration,
) -> JoinHandle<Result<String, Error>> {
    let (client, queue, body) = (client.clone(), queue.to_owned(), body.to_owned());
    tokio::spawn(async move {
        client
            .call_with(&queue, body, &CallOptions::new().timeout(timeout))
            .await
            .map(|reply| reply.text().into_owned())
    })
}

async fn a_call_is_answered_over_direct_reply_to_and_over_an_exclusive_queue(broker: &Broker) {
    let server = Running::start(broker, "conf_call", common::echo(), |b| b).await;
    for mode in [ReplyQueue::DirectReplyTo, ReplyQueue::Exclusive] {
        let client = broker.client().reply_queue(mode).connect().await.unwrap();
        let reply = client.call(&server.queue, "hello").await.unwrap();
        assert_eq!(reply.text(), "hello", "{mode:?}");
    }
    server.stop().await.unwrap();
}

async fn a_call_to_a_missing_queue_fails_at_once_with_no_route(broker: &Broker) {
    let client = broker.client().connect().await.unwrap();
    let started = Instant::now();
    let error = client
        .call_with(
            "conformance.nowhere",
            "1",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NoRoute { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A queue declared by a server that then leaves it, with nobody consuming.
/// A reply queue as a client in another language would have one: declared,
/// nobody consuming it, to read replies from with [`Broker::next`]. Named
/// as rabbit-rpc's reply queues are, which servers answer by default.
async fn hand_made_reply_queue(broker: &Broker) -> (String, Option<common::DeleteOnDrop>) {
    let replies = format!("rabbit-rpc.reply.{}", uuid::Uuid::new_v4().simple());
    let cleanup = matches!(broker, Broker::Real).then(|| common::DeleteOnDrop(replies.clone()));
    Running::on(broker, &replies, common::echo(), |b| {
        b.queue_argument("x-expires", 60_000)
    })
    .await
    .stop()
    .await
    .unwrap();
    (replies, cleanup)
}

async fn abandoned_queue(broker: &Broker, test: &str) -> (String, Option<common::DeleteOnDrop>) {
    let (queue, cleanup) = broker.queue(test);
    Running::on(broker, &queue, common::echo(), |b| b)
        .await
        .stop()
        .await
        .unwrap();
    (queue, cleanup)
}

async fn a_queue_nobody_consumes_gives_no_server_before_the_timeout(broker: &Broker) {
    let (queue, _cleanup) = abandoned_queue(broker, "conf_no_server").await;
    let client = broker.client().connect().await.unwrap();
    let started = Instant::now();
    let error = client
        .call_with(
            &queue,
            "1",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NoServer { .. }), "{error}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

async fn a_request_nobody_takes_in_time_expires_in_the_queue(broker: &Broker) {
    let (queue, _cleanup) = abandoned_queue(broker, "conf_expiry").await;
    let client = broker.client().connect().await.unwrap();
    let error = client
        .call_with(
            &queue,
            "late",
            &CallOptions::new().timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(error.is_timeout() || error.is_no_server(), "{error}");
    common::wait_until(Duration::from_secs(10), "the request expires", || async {
        broker.ready(&queue).await == 0
    })
    .await;
    // A server that comes later never sees it.
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Running::on(
        broker,
        &queue,
        gated(&Arc::new(Semaphore::new(10)), &runs),
        |b| b,
    )
    .await;
    assert_eq!(client.call(&queue, "now").await.unwrap().text(), "now");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.stop().await.unwrap();
}

async fn a_server_holds_no_more_requests_than_its_prefetch(broker: &Broker) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    // Classic: RabbitMQ's counts of a quorum queue's unacknowledged
    // messages lag by seconds.
    let server = Running::start(broker, "conf_prefetch", gated(&gate, &runs), |b| {
        b.prefetch(2).concurrency(10).queue_type(QueueType::Classic)
    })
    .await;
    let client = broker.client().connect().await.unwrap();
    let calls: Vec<_> = (0..5)
        .map(|n| {
            spawn_call(
                &client,
                &server.queue,
                &n.to_string(),
                Duration::from_secs(60),
            )
        })
        .collect();
    common::wait_until(Duration::from_secs(20), "2 taken, 3 waiting", || async {
        runs.load(Ordering::SeqCst) == 2 && broker.ready(&server.queue).await == 3
    })
    .await;
    assert_eq!(broker.unacked(&server.queue).await, 2);
    gate.add_permits(5);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    server.stop().await.unwrap();
}

async fn a_request_held_by_a_lost_connection_comes_back_redelivered(broker: &Broker) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let name = format!("conformance doomed {}", uuid::Uuid::new_v4());
    // The first server takes the request and never answers; it does not
    // reconnect once its connection is cut.
    let doomed = Running::start(broker, "conf_redelivered", gated(&gate, &runs), |b| {
        b.connection_name(&name).reconnect(false)
    })
    .await;
    let client = broker.client().connect().await.unwrap();
    let call = spawn_call(&client, &doomed.queue, "1", Duration::from_secs(60));
    common::wait_until(
        Duration::from_secs(10),
        "the first server took it",
        || async { runs.load(Ordering::SeqCst) == 1 },
    )
    .await;
    let second = Running::on(
        broker,
        &doomed.queue,
        handler_fn(|request: Request| async move {
            Ok::<_, Status>(format!("redelivered={}", request.context().redelivered()))
        }),
        |b| b,
    )
    .await;
    assert_eq!(broker.cut(&name).await, 1);
    assert_eq!(call.await.unwrap().unwrap(), "redelivered=true");
    assert_eq!(second.stats.redelivered(), 1);
    assert!(doomed.stop().await.unwrap_err().is_connection_lost());
    second.stop().await.unwrap();
}

async fn shutdown_hands_requests_not_started_back_marked_redelivered(broker: &Broker) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut first = Running::start(broker, "conf_drain", gated(&gate, &runs), |b| {
        b.concurrency(1).prefetch(5)
    })
    .await;
    let client = broker.client().connect().await.unwrap();
    let calls: Vec<_> = (0..3)
        .map(|n| {
            spawn_call(
                &client,
                &first.queue,
                &n.to_string(),
                Duration::from_secs(60),
            )
        })
        .collect();
    common::wait_until(
        Duration::from_secs(10),
        "one runs, two wait in the server",
        || async { runs.load(Ordering::SeqCst) == 1 && broker.ready(&first.queue).await == 0 },
    )
    .await;
    first.begin_stop();
    common::wait_until(Duration::from_secs(10), "the two go back", || async {
        broker.ready(&first.queue).await == 2
    })
    .await;
    let second = Running::on(
        broker,
        &first.queue,
        handler_fn(|request: Request| async move {
            Ok::<_, Status>(format!("again {}", request.context().redelivered()))
        }),
        |b| b,
    )
    .await;
    gate.add_permits(1);
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap().unwrap());
    }
    // The one in hand finished where it ran; the two handed back were
    // answered by the second server, marked redelivered.
    assert_eq!(
        replies.iter().filter(|r| *r == "again true").count(),
        2,
        "{replies:?}"
    );
    assert_eq!(first.stats.requeued(), 2);
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

async fn requests_that_cannot_be_answered_are_dropped_not_requeued(broker: &Broker) {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Running::start(
        broker,
        "conf_unanswerable",
        gated(&Arc::new(Semaphore::new(10)), &runs),
        |b| b.queue_type(QueueType::Classic),
    )
    .await;
    let (victim, _cleanup) = abandoned_queue(broker, "conf_victim").await;
    // Nowhere to answer, and an answer into another service's queue.
    broker
        .publish(&server.queue, RawMessage::new("1").correlation_id("a"))
        .await;
    broker
        .publish(
            &server.queue,
            RawMessage::new("2")
                .correlation_id("b")
                .reply_to(victim.as_str()),
        )
        .await;
    common::wait_until(Duration::from_secs(10), "both are settled", || async {
        server.stats.dropped() == 1 && server.stats.refused() == 1
    })
    .await;
    assert_eq!(broker.ready(&server.queue).await, 0);
    assert_eq!(broker.unacked(&server.queue).await, 0);
    assert_eq!(
        broker.get(&victim).await,
        None,
        "nothing landed in the victim's queue"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    server.stop().await.unwrap();
}

async fn a_client_whose_connection_is_cut_fails_waiting_calls_at_once_and_reconnects(
    broker: &Broker,
) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = Running::start(broker, "conf_client_cut", gated(&gate, &runs), |b| b).await;
    let name = format!("conformance client {}", uuid::Uuid::new_v4());
    let client = broker
        .client()
        .connection_name(&name)
        .connect()
        .await
        .unwrap();
    let call = spawn_call(&client, &server.queue, "1", Duration::from_secs(60));
    common::wait_until(Duration::from_secs(10), "the server runs it", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let cut = Instant::now();
    assert_eq!(broker.cut(&name).await, 1);
    let error = call.await.unwrap().unwrap_err();
    assert!(error.is_connection_lost(), "{error}");
    assert!(
        cut.elapsed() < Duration::from_secs(5),
        "{:?}",
        cut.elapsed()
    );
    gate.add_permits(10);
    let reply = client
        .call_with(
            &server.queue,
            "2",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.text(), "2");
    server.stop().await.unwrap();
}

async fn a_server_whose_connection_is_cut_reconnects_and_serves_on(broker: &Broker) {
    let name = format!("conformance server {}", uuid::Uuid::new_v4());
    let server = Running::start(broker, "conf_server_cut", common::echo(), |b| {
        b.connection_name(&name)
    })
    .await;
    let client = broker.client().connect().await.unwrap();
    assert_eq!(
        client.call(&server.queue, "before").await.unwrap().text(),
        "before"
    );
    assert_eq!(broker.cut(&name).await, 1);
    common::wait_until(Duration::from_secs(20), "the server reconnects", || async {
        server.stats.reconnections() == 1
    })
    .await;
    let reply = client
        .call_with(
            &server.queue,
            "after",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.text(), "after");
    server.stop().await.unwrap();
}

async fn a_missing_queue_is_declared_durable_and_quorum_and_a_conflict_is_refused(broker: &Broker) {
    let (queue, _cleanup) = abandoned_queue(broker, "conf_declare").await;
    assert_eq!(
        broker.declared(&queue).await,
        Some((true, "quorum".to_owned()))
    );
    let error = broker
        .server()
        .procedure(&queue, common::echo())
        .queue_type(rabbit_rpc::QueueType::Classic)
        .bind()
        .await
        .unwrap_err();
    match error {
        Error::QueueMismatch {
            setting,
            existing,
            asked,
            ..
        } => assert_eq!(
            (setting.as_str(), existing.as_str(), asked.as_str()),
            ("x-queue-type", "'quorum'", "'classic'")
        ),
        other => panic!("expected QueueMismatch, got {other:?}"),
    }
    // The same settings are accepted; none at all joins.
    for settings in [Some(rabbit_rpc::QueueType::Quorum), None] {
        let running = Running::on(broker, &queue, common::echo(), |b| match settings {
            Some(queue_type) => b.queue_type(queue_type),
            None => b,
        })
        .await;
        running.stop().await.unwrap();
    }
}

async fn several_procedures_share_one_connection_each_on_its_queue(broker: &Broker) {
    let name = format!("conformance two procedures {}", uuid::Uuid::new_v4());
    let (first, _a) = broker.queue("conf_first");
    let (second, _b) = broker.queue("conf_second");
    let server = broker
        .server()
        .connection_name(&name)
        .procedure(&first, common::echo())
        .procedure(
            &second,
            handler_fn(|request: Request| async move {
                Ok::<_, Status>(format!("second: {}", request.text()?))
            }),
        )
        .bind()
        .await
        .unwrap();
    let first_stats = server.procedure_stats(&first).unwrap();
    let all = server.stats();
    let task = tokio::spawn(server.serve());
    assert_eq!(broker.connections_named(&name).await, 1);
    let client = broker.client().connect().await.unwrap();
    assert_eq!(client.call(&first, "a").await.unwrap().text(), "a");
    assert_eq!(client.call(&second, "b").await.unwrap().text(), "second: b");
    assert_eq!(client.call(&second, "c").await.unwrap().text(), "second: c");
    // Counted once acknowledged, just after each reply went out.
    common::wait_until(Duration::from_secs(10), "all three counted", || async {
        all.answered() == 3
    })
    .await;
    assert_eq!(first_stats.answered(), 1);
    task.abort();
}

mod typed {
    use rabbit_rpc::{Context, Status};

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    pub struct Add {
        pub a: i64,
        pub b: i64,
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    pub struct Overflow {
        pub limit: i64,
    }

    /// The conformance suite's typed service.
    #[rabbit_rpc::service(name = "conformance")]
    pub trait Calculator {
        /// a + b, or `invalid_argument` with details on overflow.
        async fn add(&self, args: Add) -> Result<i64, Status>;
        /// Who the caller says they are, from the metadata.
        async fn whoami(&self, context: Context) -> Result<String, Status>;
    }
}

struct Arithmetic;

impl typed::Calculator for Arithmetic {
    async fn add(&self, args: typed::Add) -> Result<i64, Status> {
        args.a.checked_add(args.b).ok_or_else(|| {
            Status::invalid_argument("the sum overflows")
                .with_details(&typed::Overflow { limit: i64::MAX })
        })
    }

    async fn whoami(&self, context: Context) -> Result<String, Status> {
        context
            .metadata()
            .get("user")
            .map(str::to_owned)
            .ok_or_else(|| Status::invalid_argument("no user"))
    }
}

async fn a_typed_service_answers_its_typed_client_with_metadata_and_error_details(broker: &Broker) {
    let server = broker
        .server()
        .add_service(typed::CalculatorServer::new(Arithmetic))
        .queue_argument("x-expires", 60_000)
        .bind()
        .await
        .unwrap();
    assert_eq!(server.queues(), ["conformance.add", "conformance.whoami"]);
    let task = tokio::spawn(server.serve());
    let client = typed::CalculatorClient::new(broker.client().connect().await.unwrap());
    assert_eq!(client.add(&typed::Add { a: 2, b: 3 }).await.unwrap(), 5);
    let error = client
        .add(&typed::Add { a: i64::MAX, b: 1 })
        .await
        .unwrap_err();
    let status = error.status().expect("an error reply");
    assert_eq!(status.code(), rabbit_rpc::Code::InvalidArgument);
    assert_eq!(status.message(), "the sum overflows");
    let details: typed::Overflow = status.details().unwrap().expect("details");
    assert_eq!(details, typed::Overflow { limit: i64::MAX });
    let me = client
        .whoami_with(&CallOptions::new().metadata("user", "ada"))
        .await
        .unwrap();
    assert_eq!(me, "ada");
    // A raw call with a body of the wrong shape: invalid_argument, saying
    // where.
    let raw = client
        .client()
        .call_with(
            "conformance.add",
            r#"{"a": 1}"#,
            &CallOptions::new().content_type("application/json"),
        )
        .await
        .unwrap_err();
    assert!(raw.to_string().contains("missing field `b`"), "{raw}");
    // The one call method, typed: a value a codec encodes, sent with the
    // codec's content type, its reply decoded by the same codec.
    let reply = client
        .client()
        .call_with(
            "conformance.add",
            codec::json(&typed::Add { a: 20, b: 22 }),
            &CallOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.content_type(), Some("application/json"));
    assert_eq!(reply.decode::<codec::Json, i64>().unwrap(), 42);
    // The options' content type wins over the codec's: here one the
    // procedure does not take.
    let refused = client
        .client()
        .call_with(
            "conformance.add",
            codec::json(&typed::Add { a: 1, b: 1 }),
            &CallOptions::new().content_type("application/msgpack"),
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("'application/msgpack' is not supported"),
        "{refused}"
    );
    // A value that does not encode fails before anything is sent.
    let map = std::collections::HashMap::from([((1, 2), 3)]);
    let unencodable = client
        .client()
        .call_with("conformance.add", codec::json(&map), &CallOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(unencodable, Error::InvalidRequest { .. }),
        "{unencodable:?}"
    );
    // A reply of another type: Error::Decode, the codec's error its source.
    let wrong: Result<String, Error> = client
        .client()
        .call_json("conformance.add", &typed::Add { a: 1, b: 2 })
        .await;
    let wrong = wrong.unwrap_err();
    assert!(matches!(wrong, Error::Decode { .. }), "{wrong:?}");
    let source = std::error::Error::source(&wrong).expect("the codec's error");
    assert!(source.is::<codec::CodecError>(), "{source}");
    // A client in any language: JSON published by hand (plain lapin on
    // RabbitMQ), the reply read from a queue of its own.
    let (replies, _cleanup) = hand_made_reply_queue(broker).await;
    broker
        .publish(
            "conformance.add",
            RawMessage::new(r#"{"a": 40, "b": 2}"#)
                .correlation_id("by-hand")
                .reply_to(replies.as_str())
                .content_type("application/json"),
        )
        .await;
    assert_eq!(broker.next(&replies).await.body, b"42");
    task.abort();
    if let Broker::Real = broker {
        for queue in ["conformance.add", "conformance.whoami"] {
            common::delete_queue(queue).await;
        }
    }
}

async fn a_resilient_call_outlives_its_clients_connection(broker: &Broker) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = Running::start(broker, "conf_resilient", gated(&gate, &runs), |b| b).await;
    let name = format!("conformance resilient {}", uuid::Uuid::new_v4());
    let before = broker.reply_queues().await;
    let client = broker
        .client()
        .connection_name(&name)
        .reply_queue(ReplyQueue::Resilient)
        .connect()
        .await
        .unwrap();
    let held = spawn_call(&client, &server.queue, "held", Duration::from_secs(60));
    common::wait_until(Duration::from_secs(10), "the server runs it", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // The client's connection goes while the server holds the request; the
    // reply waits in the client's queue until it is back.
    assert_eq!(broker.cut(&name).await, 1);
    gate.add_permits(10);
    assert_eq!(held.await.unwrap().unwrap(), "held");
    // And later calls go out on the new connection.
    assert_eq!(
        client.call(&server.queue, "next").await.unwrap().text(),
        "next"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // Its reply queue is durable; closing the client removes it.
    let ours: Vec<String> = broker
        .reply_queues()
        .await
        .into_iter()
        .filter(|queue| !before.contains(queue))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    client.close().await.unwrap();
    common::wait_until(
        Duration::from_secs(10),
        "the reply queue is gone",
        || async { !broker.reply_queues().await.contains(&ours[0]) },
    )
    .await;
    server.stop().await.unwrap();
}

async fn after_a_lost_connection_a_server_skips_requests_whose_caller_is_gone(broker: &Broker) {
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let server_name = format!("conformance callers server {}", uuid::Uuid::new_v4());
    let server = Running::start(broker, "conf_callers", gated(&gate, &runs), |b| {
        b.connection_name(&server_name).concurrency(1).prefetch(1)
    })
    .await;
    let live = broker.client().connect().await.unwrap();
    let first = spawn_call(&live, &server.queue, "first", Duration::from_secs(60));
    common::wait_until(Duration::from_secs(10), "the server runs it", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // Behind it in the queue: a request whose caller goes away, then one
    // whose caller stays.
    let gone_name = format!("conformance callers gone {}", uuid::Uuid::new_v4());
    let gone = broker
        .client()
        .connection_name(&gone_name)
        .connect()
        .await
        .unwrap();
    let abandoned = spawn_call(&gone, &server.queue, "gone", Duration::from_secs(60));
    common::wait_until(Duration::from_secs(10), "it is queued", || async {
        broker.ready(&server.queue).await == 1
    })
    .await;
    let second = spawn_call(&live, &server.queue, "second", Duration::from_secs(60));
    common::wait_until(Duration::from_secs(10), "it is queued", || async {
        broker.ready(&server.queue).await == 2
    })
    .await;
    assert_eq!(broker.cut(&gone_name).await, 1);
    assert!(abandoned.await.unwrap().unwrap_err().is_connection_lost());
    // The server loses its connection; everything comes back to it.
    assert_eq!(broker.cut(&server_name).await, 1);
    gate.add_permits(10);
    assert_eq!(first.await.unwrap().unwrap(), "first");
    assert_eq!(second.await.unwrap().unwrap(), "second");
    assert_eq!(
        server.stats.expired(),
        1,
        "the abandoned request is skipped"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "first (twice: cut while running) and second, not the abandoned one"
    );
    let asking = format!("{server_name} (caller check)");
    assert_eq!(broker.connections_named(&asking).await, 1);
    server.stop().await.unwrap();
    common::wait_until(
        Duration::from_secs(10),
        "the caller check's connection is closed with the server's",
        || async { broker.connections_named(&asking).await == 0 },
    )
    .await;
}

/// AMQP 1.0 requesters (RabbitMQ's own clients, JMS) put the request's id
/// in `message_id` and expect it back as the reply's `correlation_id`;
/// AMQP 1.0 responders answer that way. A server answers a request with
/// only a `message_id` under that id, a `correlation_id` wins when there
/// are both, and a client sends its id as both.
async fn requests_correlate_by_message_id_too_as_amqp_1_0_peers_do(broker: &Broker) {
    let server = Running::start(broker, "conf_message_id", common::echo(), |b| b).await;
    let (replies, _cleanup) = hand_made_reply_queue(broker).await;
    broker
        .publish(
            &server.queue,
            RawMessage::new("by message id")
                .message_id("m-1")
                .reply_to(replies.as_str()),
        )
        .await;
    let reply = broker.next(&replies).await;
    assert_eq!(reply.body, b"by message id");
    assert_eq!(reply.correlation_id.as_deref(), Some("m-1"));
    broker
        .publish(
            &server.queue,
            RawMessage::new("both")
                .correlation_id("c-2")
                .message_id("m-2")
                .reply_to(replies.as_str()),
        )
        .await;
    assert_eq!(
        broker.next(&replies).await.correlation_id.as_deref(),
        Some("c-2")
    );
    server.stop().await.unwrap();

    // A queue nobody serves, to read a client's request from.
    let (idle, _cleanup) = abandoned_queue(broker, "conf_message_id_idle").await;
    let client = broker.client().connect().await.expect("client");
    let call = spawn_call(&client, &idle, "hi", Duration::from_secs(30));
    let request = broker.next(&idle).await;
    assert!(request.correlation_id.is_some());
    assert_eq!(request.message_id, request.correlation_id);
    call.abort();
}

/// Ping and describe are answered by the server library: the handler does
/// not run, nothing is counted, and a ping shows the requests in hand. A
/// control request the server does not know gets `unimplemented`, with the
/// header back; the `reply_to` policy applies to control requests too.
async fn control_requests_are_answered_by_the_server_not_the_handler(broker: &Broker) {
    let gate = Arc::new(Semaphore::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Running::start(broker, "conf_control", gated(&gate, &runs), |b| {
        b.connection_name("conformance control").concurrency(2)
    })
    .await;
    let client = broker.client().connect().await.unwrap();
    let options = CallOptions::new().timeout(Duration::from_secs(10));
    let ping = client.ping(&server.queue, &options).await.unwrap();
    assert_eq!(ping.procedure(), server.queue);
    assert!(ping.state().is_serving(), "{:?}", ping.state());
    assert_eq!(ping.version(), env!("CARGO_PKG_VERSION"));
    assert!(
        ping.server().starts_with("conformance control on "),
        "{}",
        ping.server()
    );
    assert_eq!(ping.in_flight(), Some(0));
    let description = client.describe(&server.queue, &options).await.unwrap();
    assert_eq!(description.procedure(), Some(server.queue.as_str()));
    assert_eq!(
        description.request().content_types(),
        ["application/octet-stream"]
    );
    assert_eq!(description.doc(), None);

    // A request in hand shows in a ping, which takes the other slot.
    let held = spawn_call(&client, &server.queue, "held", Duration::from_secs(30));
    common::wait_until(Duration::from_secs(10), "the handler runs", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let ping = client.ping(&server.queue, &options).await.unwrap();
    assert_eq!(ping.in_flight(), Some(1));

    let (replies, _cleanup) = hand_made_reply_queue(broker).await;
    broker
        .publish(
            &server.queue,
            RawMessage::new("")
                .correlation_id("c-1")
                .reply_to(replies.as_str())
                .header("rpc-control", "frobnicate"),
        )
        .await;
    let reply = broker.next(&replies).await;
    assert_eq!(reply.correlation_id.as_deref(), Some("c-1"));
    let header = |name: &str| {
        reply
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(header("rpc-status").as_deref(), Some("unimplemented"));
    assert_eq!(header("rpc-control").as_deref(), Some("frobnicate"));
    let message = String::from_utf8_lossy(&reply.body);
    assert!(message.contains("'ping' and 'describe'"), "{message}");

    // The reply_to policy comes first: a ping that would reply into another
    // service's queue is refused, not answered.
    broker
        .publish(
            &server.queue,
            RawMessage::new("")
                .correlation_id("c-2")
                .reply_to("orders.work")
                .header("rpc-control", "ping"),
        )
        .await;
    common::wait_until(Duration::from_secs(10), "the ping is refused", || async {
        server.stats.refused() == 1
    })
    .await;

    gate.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap(), "held");
    let stats = server.stats.clone();
    server.stop().await.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the call ran the handler"
    );
    assert_eq!((stats.answered(), stats.errors()), (1, 0), "{stats}");
}

/// What a [`stuck`] handler has shown so far.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    /// Its future was dropped.
    dropped: AtomicBool,
    /// Its context's cancellation signal fired (seen by a task it spawned).
    signalled: AtomicBool,
}

/// A handler that never finishes the request `stuck`, and echoes others.
fn stuck(seen: &Arc<Seen>) -> impl Handler {
    let seen = Arc::clone(seen);
    handler_fn(move |request: Request| {
        let seen = Arc::clone(&seen);
        async move {
            if request.body() != b"stuck" {
                return Ok::<_, Status>(request.into_body());
            }
            seen.started.fetch_add(1, Ordering::SeqCst);
            let context = request.context().clone();
            let watcher = Arc::clone(&seen);
            tokio::spawn(async move {
                context.cancelled().await;
                assert!(context.is_cancelled());
                watcher.signalled.store(true, Ordering::SeqCst);
            });
            let _guard = Dropped(Arc::clone(&seen));
            std::future::pending::<Result<Vec<u8>, Status>>().await
        }
    })
}

/// Sets [`Seen::dropped`] when dropped: held by a handler's future, it
/// proves the future was dropped.
struct Dropped(Arc<Seen>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// The server cancels a handler still running when its caller's deadline
/// passes: its future is dropped, its context's signal fires, nothing is
/// published (no stray reply reaches the client, even after a later call
/// answered on the same path), and the request is acknowledged and counted
/// as expired.
async fn a_handler_still_running_at_its_callers_deadline_is_cancelled_and_nothing_is_published(
    broker: &Broker,
) {
    let seen = Arc::new(Seen::default());
    let server = Running::start(broker, "conf_cancel", stuck(&seen), |b| b).await;
    let client = broker.client().connect().await.unwrap();
    let options = CallOptions::new().timeout(Duration::from_millis(500));
    let started = Instant::now();
    let error = client
        .call_with(&server.queue, "stuck", &options)
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(seen.started.load(Ordering::SeqCst), 1);
    common::wait_until(
        Duration::from_secs(10),
        "the server cancels the handler and counts the request expired",
        || async {
            seen.dropped.load(Ordering::SeqCst)
                && seen.signalled.load(Ordering::SeqCst)
                && server.stats.expired() == 1
        },
    )
    .await;
    // Any reply to the first call would have left before this one's, on
    // the same reply channel to the same reply address.
    let reply = client.call(&server.queue, "after").await.unwrap();
    assert_eq!(reply.text(), "after");
    assert_eq!(client.unknown_replies(), 0, "nothing was published");
    assert_eq!(client.pending_calls(), 0);
    // Counted once acknowledged, after the reply left.
    common::wait_until(
        Duration::from_secs(10),
        "only the second call is answered",
        || async { server.stats.answered() == 1 },
    )
    .await;
    assert_eq!(server.stats.expired(), 1);
    common::wait_until(
        Duration::from_secs(10),
        "the request is acknowledged",
        || async {
            broker.unacked(&server.queue).await == 0 && broker.ready(&server.queue).await == 0
        },
    )
    .await;
    server.stop().await.unwrap();
}

/// A server's own limit (`handler_timeout`) cancels a handler whose caller
/// waits longer, and answers it `deadline_exceeded`; a procedure's limit
/// wins over the server's; and when the caller's deadline is the smaller,
/// it wins: nothing is answered and the request is counted expired.
async fn a_handler_past_the_servers_own_limit_is_cancelled_and_answered_deadline_exceeded(
    broker: &Broker,
) {
    let seen = Arc::new(Seen::default());
    let (queue, _cleanup) = broker.queue("conf_handler_timeout");
    let server = Running::on(broker, &queue, common::echo(), |b| {
        b.handler_timeout(Duration::from_secs(3600)).add_procedure(
            Procedure::new(format!("{queue}.capped"), stuck(&seen))
                .handler_timeout(Duration::from_millis(400)),
        )
    })
    .await;
    let capped = format!("{queue}.capped");
    let _capped_cleanup =
        matches!(broker, Broker::Real).then(|| common::DeleteOnDrop(capped.clone()));
    let client = broker.client().connect().await.unwrap();
    // The caller waits 60 s; the procedure's 400 ms cap (not the server's
    // hour) ends the handler, and the caller hears why.
    let started = Instant::now();
    let long = CallOptions::new().timeout(Duration::from_secs(60));
    let error = client.call_with(&capped, "stuck", &long).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    assert!(
        matches!(error, Error::Remote { .. }),
        "answered by the server: {error:?}"
    );
    assert!(error.to_string().contains("handler_timeout"), "{error}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        seen.dropped.load(Ordering::SeqCst),
        "the handler's future was dropped before the reply"
    );
    common::wait_until(Duration::from_secs(10), "the signal fires", || async {
        seen.signalled.load(Ordering::SeqCst)
    })
    .await;
    let stats = server.stats.clone();
    common::wait_until(Duration::from_secs(10), "the error is counted", || async {
        stats.answered() == 1
    })
    .await;
    assert_eq!((stats.errors(), stats.expired()), (1, 0));
    // The caller's 200 ms is smaller than the 400 ms cap: it wins.
    let short = CallOptions::new().timeout(Duration::from_millis(200));
    let error = client
        .call_with(&capped, "stuck", &short)
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    common::wait_until(Duration::from_secs(10), "it is counted expired", || async {
        stats.expired() == 1
    })
    .await;
    // A fast handler is not touched by the server's hour.
    assert_eq!(client.call(&queue, "quick").await.unwrap().text(), "quick");
    assert_eq!(client.call(&capped, "quick").await.unwrap().text(), "quick");
    assert_eq!(client.unknown_replies(), 0);
    common::wait_until(
        Duration::from_secs(10),
        "three answers are counted",
        || async { stats.answered() == 3 },
    )
    .await;
    assert_eq!((stats.errors(), stats.expired()), (1, 1));
    assert_eq!(seen.started.load(Ordering::SeqCst), 2);
    server.stop().await.unwrap();
}
