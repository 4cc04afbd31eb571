//! A request cannot make a server publish into someone else's queue: by
//! default replies go only to reply addresses (direct reply-to, server-named
//! queues, rabbit-rpc's own reply queues), which every tutorial client
//! uses; anything else must be allowed. Against the real broker.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::TestServer;
use lapin::{BasicProperties, Channel, options::QueueDeclareOptions, types::FieldTable};
use rabbit_rpc::{Client, ReplyQueue, Request, Status, handler_fn, protocol::DIRECT_REPLY_TO};

/// An echo handler that counts its runs.
fn counted(runs: &Arc<AtomicUsize>) -> impl rabbit_rpc::Handler {
    let runs = Arc::clone(runs);
    handler_fn(move |request: Request| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Status>(request.into_body()) }
    })
}

/// Publishes a request for `queue` with `reply_to` and waits for the reply
/// on `replies`.
async fn raw_call(
    channel: &Channel,
    replies: &mut lapin::Consumer,
    queue: &str,
    reply_to: &str,
) -> Vec<u8> {
    let properties = BasicProperties::default()
        .with_reply_to(reply_to.into())
        .with_correlation_id("raw-1".into());
    common::publish(channel, queue, b"hello", properties).await;
    let reply = common::next_delivery(replies).await;
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("raw-1")
    );
    reply.data
}

#[tokio::test]
async fn a_tutorial_client_on_direct_reply_to_gets_its_answer() {
    let server = TestServer::start("reply_to_direct", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    // As the tutorial's direct reply-to clients do: consume the pseudo-queue
    // without acks on the channel that publishes; the broker rewrites it.
    let mut replies = common::consume(&channel, DIRECT_REPLY_TO, true).await;
    let body = raw_call(&channel, &mut replies, &server.queue, DIRECT_REPLY_TO).await;
    assert_eq!(body, b"hello");
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_tutorial_client_on_a_server_named_queue_gets_its_answer() {
    let server = TestServer::start("reply_to_server_named", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, mut replies) = common::reply_queue(&channel).await;
    assert!(reply_to.starts_with("amq.gen-"), "{reply_to}");
    let body = raw_call(&channel, &mut replies, &server.queue, &reply_to).await;
    assert_eq!(body, b"hello");
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn our_client_gets_answers_in_both_reply_modes() {
    let server = TestServer::start("reply_to_ours", common::echo()).await;
    for mode in [ReplyQueue::DirectReplyTo, ReplyQueue::Exclusive] {
        let client = Client::builder()
            .url(common::url())
            .reply_queue(mode)
            .connect()
            .await
            .unwrap();
        assert_eq!(
            client.call(&server.queue, "both").await.unwrap().text(),
            "both",
            "{mode:?}"
        );
    }
    assert_eq!(server.stats.refused(), 0);
    server.stop().await.unwrap();
}

/// Declares an ordinary queue, as another service's work queue would be.
async fn victim_queue(channel: &Channel, test: &str) -> String {
    let victim = common::unique_queue(test);
    channel
        .queue_declare(
            victim.as_str().into(),
            QueueDeclareOptions::default(),
            common::expiring(),
        )
        .await
        .unwrap();
    victim
}

#[tokio::test]
async fn requests_replying_into_an_ordinary_queue_are_refused_and_the_server_serves_on() {
    const INJECTED: u64 = 100;
    let runs = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start("reply_to_victim", counted(&runs)).await;
    let (connection, channel) = common::raw_channel().await;
    let victim = victim_queue(&channel, "victim").await;
    for n in 0..INJECTED {
        let properties = BasicProperties::default()
            .with_reply_to(victim.as_str().into())
            .with_correlation_id(format!("inject-{n}").into());
        common::publish(&channel, &server.queue, b"30", properties).await;
    }
    common::wait_until(
        Duration::from_secs(10),
        "every injected request is refused",
        || async { server.stats.refused() == INJECTED },
    )
    .await;
    // Settled, not requeued, and nothing landed in the victim's queue.
    common::wait_for_ready(&server.queue, 0, "the request queue is empty").await;
    assert_eq!(common::ready_messages(&victim).await, 0);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no refused request ran");
    assert_eq!(server.stats.answered(), 0);
    // The server serves on.
    let client = common::client().await;
    assert_eq!(
        client.call(&server.queue, "still").await.unwrap().text(),
        "still"
    );
    assert_eq!(common::ready_messages(&victim).await, 0);
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&victim).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_reply_queue_allowed_by_prefix_or_name_gets_its_answer() {
    let prefix = format!("{}.", common::unique_queue("allowed"));
    let exact = common::unique_queue("allowed_exact");
    let server = TestServer::start_with("reply_to_allowed", common::echo(), |b| {
        b.allow_reply_to_prefix(&prefix)
            .allow_reply_to_queue(&exact)
    })
    .await;
    let (connection, channel) = common::raw_channel().await;
    for reply_to in [format!("{prefix}replies"), exact.clone()] {
        channel
            .queue_declare(
                reply_to.as_str().into(),
                QueueDeclareOptions::exclusive(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut replies = common::consume(&channel, &reply_to, true).await;
        let body = raw_call(&channel, &mut replies, &server.queue, &reply_to).await;
        assert_eq!(body, b"hello", "{reply_to}");
    }
    // A name allowed exactly does not allow longer names.
    let properties = BasicProperties::default()
        .with_reply_to(format!("{exact}-other").into())
        .with_correlation_id("longer".into());
    common::publish(&channel, &server.queue, b"x", properties).await;
    common::wait_until(
        Duration::from_secs(10),
        "the longer name is refused",
        || async { server.stats.refused() == 1 },
    )
    .await;
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn allowing_any_reply_to_answers_an_ordinary_queue_as_earlier_versions_did() {
    let server =
        TestServer::start_with("reply_to_any", common::echo(), |b| b.allow_any_reply_to()).await;
    let (connection, channel) = common::raw_channel().await;
    let victim = victim_queue(&channel, "any").await;
    let properties = BasicProperties::default()
        .with_reply_to(victim.as_str().into())
        .with_correlation_id("any".into());
    common::publish(&channel, &server.queue, b"landed", properties).await;
    common::wait_for_ready(&victim, 1, "the reply lands in the named queue").await;
    assert_eq!(server.stats.refused(), 0);
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&victim).await;
    server.stop().await.unwrap();
}
