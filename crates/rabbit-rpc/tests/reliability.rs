//! What the issue on reliability asks of the library, against the real
//! broker: deadlines that travel with requests, checks before any work,
//! redelivery, quorum queues, bounded drains, several URLs, and recovery
//! from connections the broker closes. `docs/RELIABILITY.md` cites these
//! tests by name.
//!
//! The connection-closing tests close only connections they opened (by a
//! unique connection name), so they run in parallel with everything else.
//! Broker restarts live in the CLI crate's `faults.rs`, which runs alone.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::TestServer;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicQosOptions, BasicRejectOptions},
    types::AMQPValue,
};
use rabbit_rpc::{
    CallOptions, Client, Code, QueueType, Request, Status, handler_fn,
    protocol::{REPLY_QUEUE_PREFIX, STATUS_HEADER, TIMEOUT_HEADER},
};
use tokio::sync::Semaphore;

fn within(timeout_ms: u64) -> CallOptions {
    CallOptions::new().timeout(Duration::from_millis(timeout_ms))
}

/// A handler that counts its runs and waits for a permit from `gate` before
/// answering with the body.
fn gated(gate: &Arc<Semaphore>, runs: &Arc<AtomicUsize>) -> impl rabbit_rpc::Handler {
    let gate = Arc::clone(gate);
    let runs = Arc::clone(runs);
    handler_fn(move |request: Request| {
        let gate = Arc::clone(&gate);
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, Status>(request.into_body())
        }
    })
}

#[tokio::test]
async fn a_request_whose_caller_gave_up_is_acknowledged_unstarted() {
    let gate = Arc::new(Semaphore::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with("deadline_skip", gated(&gate, &runs), |b| {
        b.concurrency(1).prefetch(10)
    })
    .await;
    let client = common::client().await;
    // The first call holds the only handler slot...
    let first = common::spawn_call(
        &client,
        &server.queue,
        "first",
        Duration::from_millis(30_000),
    );
    common::wait_until(Duration::from_secs(10), "the first call runs", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    // ...so the next requests wait in the server past their deadlines: one
    // from a raw client that says its timeout in the header (100 ms), then
    // ours (300 ms, as `expiration`).
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, _replies) = common::reply_queue(&channel).await;
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(TIMEOUT_HEADER.into(), AMQPValue::LongLongInt(100));
    let properties = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id("raw".into())
        .with_headers(headers);
    common::publish(&channel, &server.queue, b"raw", properties).await;
    let sent = tokio::time::Instant::now();
    let error = client
        .call_with(&server.queue, "second", &within(300))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // The server's deadline counts from receipt, a little after sending:
    // open the gate only once it has surely passed.
    tokio::time::sleep_until(sent + Duration::from_millis(600)).await;
    gate.add_permits(10);
    assert_eq!(first.await.unwrap().unwrap().text(), "first");
    common::wait_until(
        Duration::from_secs(10),
        "the late requests are skipped",
        || async { server.stats.expired() == 2 },
    )
    .await;
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(
        client.call(&server.queue, "third").await.unwrap().text(),
        "third"
    );
    // The late requests never reached the handler.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(common::ready_messages(&server.queue).await, 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_nobody_took_in_time_expires_in_the_queue() {
    let queue = common::unique_queue("deadline_expiry");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;
    let client = common::client().await;
    let error = client
        .call_with(&queue, "late", &within(300))
        .await
        .unwrap_err();
    assert!(error.is_no_server() || error.is_timeout(), "{error}");
    // The broker drops it: a server that comes later never sees it.
    common::wait_until(Duration::from_secs(5), "the request expires", || {
        let queue = queue.clone();
        async move { common::ready_messages(&queue).await == 0 }
    })
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_on(
        queue.clone(),
        gated(&Arc::new(Semaphore::new(100)), &runs),
        |b| b,
    )
    .await;
    assert_eq!(client.call(&queue, "now").await.unwrap().text(), "now");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.stop().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn handlers_see_the_callers_deadline() {
    let server = TestServer::start(
        "deadline_visible",
        handler_fn(|request: Request| async move {
            let remaining = request.context().remaining().map(|r| r.as_millis());
            Ok::<_, Status>(format!("{remaining:?}"))
        }),
    )
    .await;
    let client = common::client().await;
    let reply = client
        .call_with(&server.queue, "", &within(5_000))
        .await
        .unwrap();
    let millis: u128 = reply
        .text()
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|_| panic!("{}", reply.text()));
    assert!(millis > 4_000 && millis <= 5_000, "{millis}");

    // A tutorial client sends no timeout: no deadline.
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, mut replies) = common::reply_queue(&channel).await;
    let properties = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id("x".into());
    common::publish(&channel, &server.queue, b"", properties).await;
    let reply = common::next_delivery(&mut replies).await;
    assert_eq!(reply.data, b"None");
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

/// A blocking handler cannot be dropped mid-run: it sees the cancellation
/// signal through its context and stops itself; its result is thrown away
/// (no stray reply), and the request counts as expired.
#[tokio::test]
async fn a_blocking_handler_sees_the_cancellation_signal_and_its_result_is_thrown_away() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&stopped);
    let server = TestServer::start(
        "deadline_blocking",
        rabbit_rpc::blocking_fn(move |request: Request| -> Result<Vec<u8>, Status> {
            if request.body() == b"long" {
                // Long work in steps, checking between them.
                while !request.context().is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok(request.into_body())
        }),
    )
    .await;
    let client = common::client().await;
    let error = client
        .call_with(&server.queue, "long", &within(300))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    common::wait_until(
        Duration::from_secs(10),
        "the handler stops and the request counts as expired",
        || async { stopped.load(Ordering::SeqCst) == 1 && server.stats.expired() == 1 },
    )
    .await;
    // A reply to the first call would have come before this one's.
    let reply = client.call(&server.queue, "short").await.unwrap();
    assert_eq!(reply.text(), "short");
    assert_eq!(client.unknown_replies(), 0);
    // Counted once acknowledged, after the reply left.
    common::wait_until(
        Duration::from_secs(10),
        "the second call is counted",
        || async { server.stats.answered() == 1 },
    )
    .await;
    assert_eq!(server.stats.expired(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn requests_carry_their_timeout_as_expiration() {
    // What a request looks like on the wire, seen by a raw consumer.
    let queue = common::unique_queue("deadline_wire");
    let (connection, mut requests) = common::silent_server(&queue).await;
    let client = common::client().await;
    let call = common::spawn_call(&client, &queue, "1", Duration::from_millis(2_000));
    let request = common::next_delivery(&mut requests).await;
    let expiration: u64 = request
        .properties
        .expiration()
        .as_ref()
        .expect("an expiration")
        .as_str()
        .parse()
        .unwrap();
    assert!(expiration > 1_500 && expiration <= 2_000, "{expiration}");
    // No header table on the hot path: the server reads `expiration`.
    assert!(request.properties.headers().is_none());
    assert!(call.await.unwrap().unwrap_err().is_timeout());
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn an_oversized_request_gets_resource_exhausted_without_running_the_handler() {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_with(
        "request_limit",
        gated(&Arc::new(Semaphore::new(100)), &runs),
        |b| b.max_request_size(1_000),
    )
    .await;
    let client = common::client().await;
    let error = client
        .call(&server.queue, vec![b'x'; 1_001])
        .await
        .unwrap_err();
    let status = error.status().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("at most 1000"), "{status}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let fits = client.call(&server.queue, vec![b'x'; 1_000]).await.unwrap();
    assert_eq!(fits.body().len(), 1_000);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_very_long_correlation_id_gets_invalid_argument() {
    let server = TestServer::start("long_correlation_id", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, mut replies) = common::reply_queue(&channel).await;
    let id = "x".repeat(200);
    let properties = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id(id.as_str().into());
    common::publish(&channel, &server.queue, b"1", properties).await;
    let reply = common::next_delivery(&mut replies).await;
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some(id.as_str())
    );
    let headers = reply.properties.headers().clone().unwrap();
    assert_eq!(
        headers.inner().get(STATUS_HEADER),
        Some(&AMQPValue::LongString("invalid_argument".into()))
    );
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_request_is_flagged_counted_and_answered_once() {
    let queue = common::unique_queue("redelivered");
    // A "server" that takes the request and dies without acknowledging it.
    let (doomed, mut taken) = common::silent_server(&queue).await;
    let client = common::client().await;
    let call = common::spawn_call(&client, &queue, "1", Duration::from_millis(20_000));
    let first = common::next_delivery(&mut taken).await;
    assert!(!first.redelivered);
    let server = TestServer::start_on(
        queue.clone(),
        handler_fn(|request: Request| async move {
            Ok::<_, Status>(format!("redelivered={}", request.context().redelivered()))
        }),
        |b| b,
    )
    .await;
    doomed.close(200, "crash".into()).await.unwrap();
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.text(), "redelivered=true");
    let stats = server.stats.clone();
    // Stopping drains: every request is settled and counted.
    server.stop().await.unwrap();
    assert_eq!(stats.redelivered(), 1);
    assert_eq!(stats.answered(), 1);
}

#[tokio::test]
async fn a_quorum_queue_drops_a_request_after_its_delivery_limit() {
    let server = TestServer::start_with("quorum", common::echo(), |b| {
        b.queue_type(QueueType::Quorum).delivery_limit(2)
    })
    .await;
    let queue = server.queue.clone();
    let client = common::client().await;
    assert_eq!(client.call(&queue, "q").await.unwrap().text(), "q");
    server.drain().await.unwrap();

    // A request that "crashes" every consumer (here: rejected with requeue;
    // from RabbitMQ 4.3 a nack no longer counts as a delivery attempt)
    // is delivered at most limit + 1 times, then dropped.
    let (connection, channel) = common::raw_channel().await;
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    common::publish(
        &channel,
        &queue,
        b"poison",
        BasicProperties::default().with_correlation_id("p".into()),
    )
    .await;
    let mut deliveries = common::consume(&channel, &queue, false).await;
    let mut seen = 0;
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), deliveries.next()).await
    {
        seen += 1;
        assert!(seen <= 3, "delivered {seen} times");
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    assert!(seen >= 2, "delivered {seen} times");
    assert_eq!(common::ready_messages(&queue).await, 0);
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn a_hung_handler_does_not_hold_shutdown_past_the_drain_timeout() {
    let runs = Arc::new(AtomicUsize::new(0));
    let never = Arc::new(Semaphore::new(0));
    let mut server = TestServer::start_with("drain_timeout", gated(&never, &runs), |b| {
        b.drain_timeout(Duration::from_millis(300))
    })
    .await;
    let queue = server.queue.clone();
    let client = common::client().await;
    let call = common::spawn_call(&client, &queue, "hang", Duration::from_millis(60_000));
    common::wait_until(Duration::from_secs(10), "the handler runs", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let started = Instant::now();
    server.begin_shutdown();
    server.drain().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The request it could not finish went back to the queue.
    common::wait_for_ready(&queue, 1, "the request is back").await;
    call.abort();
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn several_urls_are_tried_in_turn() {
    let server = TestServer::start_with("several_urls", common::echo(), |b| {
        // Nothing listens on port 1: the server moves on to the next URL.
        b.urls([
            "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            common::url(),
        ])
    })
    .await;
    let client = Client::builder()
        .urls([
            "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            common::url(),
        ])
        .connect()
        .await
        .unwrap();
    assert_eq!(client.call(&server.queue, "hi").await.unwrap().text(), "hi");
    let error = Client::builder()
        .urls([
            "amqp://guest:guest@127.0.0.1:1/%2f",
            "amqp://guest:guest@127.0.0.1:2/%2f",
        ])
        .connect()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("127.0.0.1:1") && message.contains("127.0.0.1:2"),
        "{message}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_whose_connection_the_broker_closes_fails_calls_at_once_and_reconnects() {
    let server = TestServer::start("client_reconnect", common::echo()).await;
    let name = format!("test client {}", uuid::Uuid::new_v4());
    let client = Client::builder()
        .url(common::url())
        .connection_name(&name)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.call(&server.queue, "before").await.unwrap().text(),
        "before"
    );

    // A call the server holds (it waits on a raw consumer that never
    // answers) is in flight when the connection goes.
    let silent = common::unique_queue("client_reconnect_silent");
    let (silent_connection, _requests) = common::silent_server(&silent).await;
    let in_flight = common::spawn_call(&client, &silent, "held", Duration::from_millis(30_000));
    common::wait_until(Duration::from_secs(10), "the call is in flight", || async {
        client.pending_calls() == 1
    })
    .await;
    // rabbitmqctl takes a while to start: the call must fail by the time
    // the close has returned, or just after, not at its 30 s timeout.
    assert_eq!(common::close_connections_named(&name).await, 1);
    let error = tokio::time::timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("the call in flight did not fail at once")
        .unwrap()
        .unwrap_err();
    assert!(error.is_connection_lost(), "{error}");

    // New calls on the same client succeed: it reconnected by itself.
    let reply = client
        .call_with(&server.queue, "after", &within(20_000))
        .await
        .unwrap();
    assert_eq!(reply.text(), "after");
    assert!(client.is_connected());
    let _ = silent_connection.close(200, "done".into()).await;
    common::delete_queue(&silent).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_whose_connection_the_broker_closes_reconnects_and_serves_on() {
    let name = format!("test server {}", uuid::Uuid::new_v4());
    let server = TestServer::start_with("server_reconnect", common::echo(), |b| {
        b.connection_name(&name)
    })
    .await;
    let client = common::client().await;
    assert_eq!(
        client.call(&server.queue, "before").await.unwrap().text(),
        "before"
    );
    assert_eq!(common::close_connections_named(&name).await, 1);
    common::wait_until(Duration::from_secs(20), "the server reconnects", || async {
        server.stats.reconnections() == 1
    })
    .await;
    let reply = client
        .call_with(&server.queue, "after", &within(20_000))
        .await
        .unwrap();
    assert_eq!(reply.text(), "after");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_recreates_its_queue_when_it_is_deleted_under_it() {
    let server = TestServer::start("queue_deleted", common::echo()).await;
    let client = common::client().await;
    assert_eq!(client.call(&server.queue, "1").await.unwrap().text(), "1");
    common::delete_queue(&server.queue).await;
    common::wait_until(
        Duration::from_secs(20),
        "the server re-declares",
        || async { server.stats.reconnections() == 1 },
    )
    .await;
    let reply = client
        .call_with(&server.queue, "2", &within(20_000))
        .await
        .unwrap();
    assert_eq!(reply.text(), "2");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unanswerable_requests_are_dead_lettered_when_the_queue_says_where() {
    let dead = common::unique_queue("dead_letters");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &dead).await;
    let server = TestServer::start_with("dead_lettering", common::echo(), |b| {
        b.queue_argument("x-dead-letter-exchange", "")
            .queue_argument("x-dead-letter-routing-key", dead.as_str())
    })
    .await;
    common::publish(
        &channel,
        &server.queue,
        b"nowhere to answer",
        BasicProperties::default().with_correlation_id("dl".into()),
    )
    .await;
    common::wait_for_ready(&dead, 1, "the request is dead-lettered").await;
    assert_eq!(server.stats.dropped(), 1);
    assert_eq!(common::ready_messages(&server.queue).await, 0);
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&dead).await;
    server.stop().await.unwrap();
}

/// Declares a queue that takes nothing: full at length 0, refusing new
/// messages (a publisher with confirms on gets a nack).
async fn refusing_queue(channel: &lapin::Channel, queue: &str) {
    let mut arguments = common::expiring();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(0));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(queue.into(), Default::default(), arguments)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reply_to_a_resilient_clients_reply_queue_is_confirmed_before_its_request_is_acknowledged()
 {
    // The broker refuses the reply: the request is not counted answered
    // but rejected, and not run again.
    let reply_queue = format!("{REPLY_QUEUE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let (connection, channel) = common::raw_channel().await;
    refusing_queue(&channel, &reply_queue).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let server = TestServer::start("reply_confirmed", gated(&gate, &runs)).await;
    let properties = BasicProperties::default()
        .with_reply_to(reply_queue.as_str().into())
        .with_correlation_id("refused-reply".into());
    common::publish(&channel, &server.queue, b"1", properties).await;
    common::wait_until(
        Duration::from_secs(10),
        "the request whose reply was refused is dropped",
        || async { server.stats.dropped() == 1 },
    )
    .await;
    assert_eq!(server.stats.answered(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The server serves on.
    let client = common::client().await;
    assert_eq!(client.call(&server.queue, "on").await.unwrap().text(), "on");
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&reply_queue).await;
    let stats = server.stats.clone();
    server.stop().await.unwrap();
    // Nothing was requeued: the refused request ran once.
    assert_eq!((stats.requeued(), stats.redelivered()), (0, 0));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn confirm_replies_confirms_replies_to_every_queue() {
    // A reply queue of the caller's own naming, refusing everything: by
    // default its reply counts as answered once written (and the broker
    // drops it); with confirm_replies the server learns it was refused.
    let prefix = format!("{}.", common::unique_queue("own_replies"));
    let reply_queue = format!("{prefix}refusing");
    let (connection, channel) = common::raw_channel().await;
    refusing_queue(&channel, &reply_queue).await;
    for confirm in [false, true] {
        let server = TestServer::start_with("confirm_replies", common::echo(), |b| {
            b.allow_reply_to_prefix(&prefix).confirm_replies(confirm)
        })
        .await;
        let properties = BasicProperties::default()
            .with_reply_to(reply_queue.as_str().into())
            .with_correlation_id("own".into());
        common::publish(&channel, &server.queue, b"1", properties).await;
        common::wait_until(
            Duration::from_secs(10),
            "the request is settled",
            || async { server.stats.answered() + server.stats.dropped() == 1 },
        )
        .await;
        assert_eq!(
            server.stats.dropped(),
            u64::from(confirm),
            "confirm {confirm}"
        );
        server.stop().await.unwrap();
    }
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&reply_queue).await;
}

#[tokio::test]
async fn with_publisher_confirms_a_request_the_broker_refuses_fails_at_once_with_rejected() {
    let queue = common::unique_queue("refusing");
    let (connection, channel) = common::raw_channel().await;
    refusing_queue(&channel, &queue).await;
    let client = Client::builder()
        .url(common::url())
        .publisher_confirms(true)
        .no_server_check(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let error = client
        .call_with(&queue, "1", &within(20_000))
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::Rejected { .. }),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn dropping_the_last_clone_of_a_client_closes_its_connection() {
    let server = TestServer::start("client_drop", common::echo()).await;
    let name = format!("test dropped client {}", uuid::Uuid::new_v4());
    let client = Client::builder()
        .url(common::url())
        .connection_name(&name)
        .connect()
        .await
        .unwrap();
    let clone = client.clone();
    assert_eq!(clone.call(&server.queue, "x").await.unwrap().text(), "x");
    drop(client);
    assert_eq!(common::connections_named(&name).await.len(), 1);
    drop(clone);
    common::wait_until(Duration::from_secs(10), "the connection closes", || {
        let name = name.clone();
        async move { common::connections_named(&name).await.is_empty() }
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn after_reconnecting_a_server_does_not_also_run_what_it_held_before() {
    let gate = Arc::new(Semaphore::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let name = format!("test server {}", uuid::Uuid::new_v4());
    // Classic: RabbitMQ's counts of a quorum queue's unacknowledged
    // messages lag by seconds.
    let server = TestServer::start_with("stale_tasks", gated(&gate, &runs), |b| {
        b.concurrency(1)
            .prefetch(10)
            .connection_name(&name)
            .queue_type(QueueType::Classic)
    })
    .await;
    let client = common::client().await;
    let calls: Vec<_> = (0..3)
        .map(|i| {
            common::spawn_call(
                &client,
                &server.queue,
                &i.to_string(),
                Duration::from_secs(30),
            )
        })
        .collect();
    // One runs (and waits at the gate), two wait for the only slot.
    common::wait_until(Duration::from_secs(10), "all three are delivered", || {
        let queue = server.queue.clone();
        let runs = Arc::clone(&runs);
        async move {
            runs.load(Ordering::SeqCst) == 1 && common::unacked_messages(&queue).await == Some(3)
        }
    })
    .await;
    assert_eq!(common::close_connections_named(&name).await, 1);
    common::wait_until(Duration::from_secs(20), "the server reconnects", || async {
        server.stats.reconnections() == 1
    })
    .await;
    gate.add_permits(100);
    let mut answers: Vec<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|call| call.unwrap().unwrap().text().into_owned())
        .collect();
    answers.sort();
    assert_eq!(answers, ["0", "1", "2"]);
    // The one that was running finished (its reply had nowhere to go); the
    // two waiting for the slot did not run on the old connection; all three
    // ran again on the new one.
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    server.stop().await.unwrap();
}
