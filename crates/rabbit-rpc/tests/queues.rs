//! Which request queue a server serves: it joins the queue that exists,
//! whoever declared it and however, and declares a missing one the way
//! RabbitMQ's tutorials declare `rpc_queue` today (durable, quorum, no other
//! argument), so servers of any language and year share one queue. Against
//! the real broker, beside raw tutorial-style servers.

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel,
    options::{BasicAckOptions, BasicQosOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use rabbit_rpc::{CallOptions, Error, QueueOrigin, QueueType, Server};
use tokio::task::JoinHandle;

/// How a raw peer declares a request queue.
#[derive(Clone, Copy)]
enum Declaration {
    /// As RabbitMQ's tutorials do today, in every language: durable,
    /// `x-queue-type: quorum`, nothing else.
    Today,
    /// As the seed's 2022 Go tutorial does: classic, transient, no argument.
    Tutorial2022,
}

async fn declare_as(channel: &Channel, queue: &str, declaration: Declaration) {
    let (options, arguments) = match declaration {
        Declaration::Today => {
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            (QueueDeclareOptions::durable(), arguments)
        }
        Declaration::Tutorial2022 => (QueueDeclareOptions::default(), FieldTable::default()),
    };
    channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .expect("the tutorial's declaration");
}

/// A tutorial-style server in plain lapin on `channel`: declares `queue` as
/// told, prefetch 1, answers `tutorial:BODY`, then acks.
async fn tutorial_server(
    channel: Channel,
    queue: &str,
    declaration: Declaration,
) -> JoinHandle<()> {
    declare_as(&channel, queue, declaration).await;
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut requests = common::consume(&channel, queue, false).await;
    tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let mut body = b"tutorial:".to_vec();
            body.extend_from_slice(&request.data);
            let properties = BasicProperties::default()
                .with_correlation_id(request.properties.correlation_id().clone().unwrap());
            let reply_to = request.properties.reply_to().clone().unwrap();
            common::publish(&channel, reply_to.as_str(), &body, properties).await;
            request.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    })
}

/// Calls `queue` one call at a time until both our echo server (`n`) and
/// the tutorial server (`tutorial:n`) have answered; the broker hands
/// requests to its consumers in turn.
async fn both_answer(queue: &str) {
    let client = common::client().await;
    let (mut ours, mut theirs) = (false, false);
    for n in 0..20 {
        let reply = client
            .call_with(
                queue,
                n.to_string(),
                &CallOptions::new().timeout(Duration::from_secs(10)),
            )
            .await
            .expect("an answer from one of the two servers");
        if reply.text() == n.to_string() {
            ours = true;
        } else {
            assert_eq!(reply.text(), format!("tutorial:{n}"));
            theirs = true;
        }
        if ours && theirs {
            return;
        }
    }
    panic!("in 20 calls, ours answered: {ours}, the tutorial server answered: {theirs}");
}

async fn join_beside_a_tutorial_server(test: &str, declaration: Declaration) {
    let queue = common::unique_queue(test);
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    let theirs = tutorial_server(channel, &queue, declaration).await;
    let server = Server::builder()
        .url(common::url())
        .procedure(&queue, common::echo())
        .bind()
        .await
        .expect("join the tutorial's queue");
    assert_eq!(server.queue_origin(&queue), Some(QueueOrigin::Joined));
    let stats = server.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ours = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    both_answer(&queue).await;
    // Counted once acknowledged, just after the reply went out.
    common::wait_until(
        Duration::from_secs(10),
        "ours counts its answers",
        || async { stats.answered() > 0 },
    )
    .await;
    let _ = stop.send(());
    ours.await.unwrap().unwrap();
    // Ours has left; theirs keeps serving the queue alone.
    assert!(
        common::client()
            .await
            .call(&queue, "7")
            .await
            .unwrap()
            .text()
            .starts_with("tutorial:")
    );
    theirs.abort();
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_server_joins_a_queue_declared_like_todays_tutorials_and_serves_beside_theirs() {
    join_beside_a_tutorial_server("join_today", Declaration::Today).await;
}

#[tokio::test]
async fn a_server_joins_a_queue_declared_like_the_2022_tutorial_and_serves_beside_theirs() {
    join_beside_a_tutorial_server("join_2022", Declaration::Tutorial2022).await;
}

#[tokio::test]
async fn a_server_that_finds_no_queue_declares_it_as_todays_tutorials_do() {
    let queue = common::unique_queue("declare_default");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let server = Server::builder()
        .url(common::url())
        .procedure(&queue, common::echo())
        .bind()
        .await
        .expect("declare the queue");
    assert_eq!(server.queue_origin(&queue), Some(QueueOrigin::Created));
    let (durable, kind, arguments) = common::queue_info(&queue).await.expect("the queue exists");
    assert_eq!(
        (durable.as_str(), kind.as_str(), arguments.as_str()),
        ("true", "quorum", r#"[{"x-queue-type","quorum"}]"#),
        "durable, quorum and no other argument"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ours = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    // A tutorial server of today, started second, declares the same queue
    // the same way without complaint and serves beside ours.
    let (connection, channel) = common::raw_channel().await;
    let theirs = tutorial_server(channel, &queue, Declaration::Today).await;
    both_answer(&queue).await;
    let _ = stop.send(());
    ours.await.unwrap().unwrap();
    theirs.abort();
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn settings_that_match_the_existing_queue_are_accepted() {
    let queue = common::unique_queue("declare_match");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    declare_as(&channel, &queue, Declaration::Today).await;
    let server = Server::builder()
        .url(common::url())
        .procedure(&queue, common::echo())
        .queue_type(QueueType::Quorum)
        .bind()
        .await
        .expect("the same settings");
    assert_eq!(server.queue_origin(&queue), Some(QueueOrigin::Matched));
    drop(server);
    let _ = connection.close(200, "done".into()).await;
}

/// Binds a server with `settings` to a queue declared as `declaration`
/// holding one request; the bind must fail at once with
/// [`Error::QueueMismatch`], leaving the queue and its request as they were.
async fn conflict(
    test: &str,
    declaration: Declaration,
    settings: impl FnOnce(rabbit_rpc::ServerBuilder) -> rabbit_rpc::ServerBuilder,
) -> Error {
    let queue = common::unique_queue(test);
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    declare_as(&channel, &queue, declaration).await;
    common::publish(
        &channel,
        &queue,
        b"waiting",
        BasicProperties::default().with_correlation_id("w".into()),
    )
    .await;
    common::wait_for_ready(&queue, 1, "the request is queued").await;
    let before = common::queue_info(&queue).await;
    let started = Instant::now();
    let error = settings(
        Server::builder()
            .url(common::url())
            .procedure(&queue, common::echo()),
    )
    .bind()
    .await
    .expect_err("settings that differ from the existing queue's");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        common::queue_info(&queue).await,
        before,
        "the queue is unchanged"
    );
    assert_eq!(common::ready_messages(&queue).await, 1, "its request waits");
    let _ = connection.close(200, "done".into()).await;
    error
}

/// The setting, its value on the queue and the value asked for, of a
/// [`Error::QueueMismatch`].
fn mismatch(error: &Error) -> (&str, &str, &str) {
    match error {
        Error::QueueMismatch {
            setting,
            existing,
            asked,
            ..
        } => (setting, existing, asked),
        other => panic!("expected QueueMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_queue_type_that_conflicts_fails_at_once_naming_the_setting_and_changes_nothing() {
    let error = conflict("conflict_type", Declaration::Today, |b| {
        b.queue_type(QueueType::Classic)
    })
    .await;
    assert_eq!(mismatch(&error), ("x-queue-type", "'quorum'", "'classic'"));
    let message = error.to_string();
    assert!(
        message.contains("x-queue-type is 'quorum' there")
            && message.contains("asked for 'classic'")
            && message.contains("give no queue settings"),
        "{message}"
    );
}

#[tokio::test]
async fn a_delivery_limit_the_queue_lacks_fails_at_once_and_changes_nothing() {
    let error = conflict("conflict_limit", Declaration::Today, |b| {
        b.delivery_limit(5)
    })
    .await;
    assert_eq!(mismatch(&error), ("x-delivery-limit", "not set", "5"));
}

#[tokio::test]
async fn asking_for_a_durable_queue_where_a_transient_one_exists_fails_at_once() {
    let error = conflict("conflict_durable", Declaration::Tutorial2022, |b| {
        b.queue_type(QueueType::Classic)
    })
    .await;
    assert_eq!(mismatch(&error), ("durable", "false", "true"));
}

#[tokio::test]
async fn settings_that_make_no_queue_are_refused_before_connecting() {
    for builder in [
        Server::builder()
            .queue_type(QueueType::Quorum)
            .durable(false),
        Server::builder()
            .queue_type(QueueType::Classic)
            .delivery_limit(3),
    ] {
        // An unreachable broker: the settings are refused before any
        // attempt to connect.
        let error = builder
            .url("amqp://127.0.0.1:1/%2f")
            .procedure("anything", common::echo())
            .bind()
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn after_a_lost_connection_a_server_joins_the_existing_queue_again() {
    let queue = common::unique_queue("rejoin");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    declare_as(&channel, &queue, Declaration::Tutorial2022).await;
    let name = format!("test rejoin {}", uuid::Uuid::new_v4());
    let server =
        common::TestServer::start_on(queue.clone(), common::echo(), |b| b.connection_name(&name))
            .await;
    let before = common::queue_info(&queue).await;
    assert_eq!(common::close_connections_named(&name).await, 1);
    common::wait_until(Duration::from_secs(20), "the server reconnects", || async {
        server.stats.reconnections() == 1
    })
    .await;
    let client = common::client().await;
    let reply = client
        .call_with(
            &queue,
            "again",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.text(), "again");
    assert_eq!(
        common::queue_info(&queue).await,
        before,
        "joined, not re-declared"
    );
    server.stop().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_server_declares_its_queue_as_configured_when_the_one_it_joined_vanishes() {
    let queue = common::unique_queue("vanished");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    declare_as(&channel, &queue, Declaration::Tutorial2022).await;
    let server = common::TestServer::start_on(queue.clone(), common::echo(), |b| b).await;
    common::delete_queue(&queue).await;
    common::wait_until(
        Duration::from_secs(20),
        "the server re-declares",
        || async { server.stats.reconnections() == 1 },
    )
    .await;
    let (durable, kind, _) = common::queue_info(&queue).await.expect("declared again");
    assert_eq!((durable.as_str(), kind.as_str()), ("true", "quorum"));
    let reply = common::client()
        .await
        .call_with(
            &queue,
            "back",
            &CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.text(), "back");
    server.stop().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
}
