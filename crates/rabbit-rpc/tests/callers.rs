//! Who called: the `user_id` a client sends (the user it logged in as,
//! which RabbitMQ checks), what a handler sees of it, and the procedures
//! that answer only some callers. The tests create their own broker users
//! (rabbitmqctl add_user) and delete them.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::TestUser;
use lapin::{BasicProperties, Connection, ConnectionProperties, options::BasicPublishOptions};
use rabbit_rpc::{Client, Code, Context, Procedure, Request, Server, Status, handler_fn};

/// A handler that answers with its caller (or `nobody`) and counts its runs.
fn whoami(runs: &Arc<AtomicUsize>) -> impl rabbit_rpc::Handler {
    let runs = Arc::clone(runs);
    handler_fn(move |request: Request| {
        runs.fetch_add(1, Ordering::SeqCst);
        let caller = request.context().caller().unwrap_or("nobody").to_owned();
        async move { Ok::<_, Status>(caller) }
    })
}

async fn client(url: &str) -> Client {
    Client::builder()
        .url(url)
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_handler_sees_the_user_the_client_logged_in_as() {
    let alice = TestUser::create("alice", ".*", ".*", ".*").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let server = common::TestServer::start("whoami", whoami(&runs)).await;
    let reply = client(&alice.url)
        .await
        .call(&server.queue, "")
        .await
        .unwrap();
    assert_eq!(reply.text(), alice.name);
    let anonymous = Client::builder()
        .url(&alice.url)
        .send_user_id(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        anonymous.call(&server.queue, "").await.unwrap().text(),
        "nobody"
    );
    assert_eq!(
        Context::new().with_caller("ada").caller(),
        Some("ada"),
        "handlers can be tested with a caller"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_policy_answers_its_callers_and_refuses_the_others_and_the_anonymous() {
    let alice = TestUser::create("alice", ".*", ".*", ".*").await;
    let bob = TestUser::create("bob", ".*", ".*", ".*").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let name = alice.name.clone();
    let server = common::TestServer::start_with("policy", whoami(&runs), move |builder| {
        builder.allow_callers([name])
    })
    .await;
    assert_eq!(
        client(&alice.url)
            .await
            .call(&server.queue, "")
            .await
            .unwrap()
            .text(),
        alice.name
    );
    let denied = client(&bob.url)
        .await
        .call(&server.queue, "")
        .await
        .unwrap_err();
    let status = denied.status().expect("an error reply");
    assert_eq!(status.code(), Code::PermissionDenied, "{denied}");
    assert!(
        status
            .message()
            .contains(&format!("user '{}' may not call", bob.name)),
        "{status}"
    );
    // A tutorial client sends no user_id.
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, mut replies) = common::reply_queue(&channel).await;
    common::publish(
        &channel,
        &server.queue,
        b"",
        BasicProperties::default()
            .with_correlation_id("anonymous".into())
            .with_reply_to(reply_to.as_str().into()),
    )
    .await;
    let reply = common::next_delivery(&mut replies).await;
    let headers = reply.properties.headers().clone().expect("an error reply");
    assert_eq!(
        headers.inner().get("rpc-status"),
        Some(&lapin::types::AMQPValue::LongString(
            "unauthenticated".into()
        ))
    );
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only alice's request ran");
    assert_eq!(server.stats.denied(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_procedure_policy_is_over_the_servers() {
    let alice = TestUser::create("alice", ".*", ".*", ".*").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (open, audited) = (
        common::unique_queue("policy_open"),
        common::unique_queue("policy_audited"),
    );
    let server = Server::builder()
        .url(common::url())
        .queue_argument("x-expires", 60_000)
        .allow_callers(["nobody-at-all"])
        .add_procedure(Procedure::new(&open, whoami(&runs)).allow_callers([alice.name.clone()]))
        .procedure(&audited, whoami(&runs))
        .bind()
        .await
        .expect("bind");
    let serving = tokio::spawn(server.serve());
    let alice_client = client(&alice.url).await;
    assert_eq!(
        alice_client.call(&open, "").await.unwrap().text(),
        alice.name
    );
    let error = alice_client.call(&audited, "").await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error}");
    serving.abort();
    for queue in [open, audited] {
        common::delete_queue(&queue).await;
    }
}

#[tokio::test]
async fn a_forged_user_id_is_refused_by_the_broker_and_never_reaches_the_server() {
    let alice = TestUser::create("alice", ".*", ".*", ".*").await;
    let bob = TestUser::create("bob", ".*", ".*", ".*").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let name = bob.name.clone();
    let server = common::TestServer::start_with("forged", whoami(&runs), move |builder| {
        builder.allow_callers([name])
    })
    .await;
    // Alice's connection claims to be bob.
    let connection = Connection::connect(&alice.url, ConnectionProperties::default())
        .await
        .expect("connect as alice");
    let channel = connection.create_channel().await.unwrap();
    let published = channel
        .basic_publish(
            "".into(),
            server.queue.as_str().into(),
            BasicPublishOptions::default(),
            b"",
            BasicProperties::default()
                .with_correlation_id("forged".into())
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_user_id(bob.name.as_str().into()),
        )
        .await;
    // The broker closes the channel (PRECONDITION_FAILED: "user_id property
    // set to 'bob' but authenticated user was 'alice'"); the connection
    // stays.
    if published.is_ok() {
        common::wait_until(
            Duration::from_secs(10),
            "the broker closes the channel",
            || {
                let closed = !channel.status().connected();
                async move { closed }
            },
        )
        .await;
    }
    assert!(
        connection.status().connected(),
        "only the channel is closed"
    );
    // Nothing reached the server: a request it took would be counted.
    let probe = client(&bob.url).await;
    assert_eq!(
        probe.call(&server.queue, "").await.unwrap().text(),
        bob.name
    );
    let _ = connection.close(200, "done".into()).await;
    // A request is counted once its reply is confirmed and it is
    // acknowledged, just after its caller has the reply: stopping drains,
    // settling and counting every request first.
    let stats = server.stats.clone();
    server.stop().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only bob's own call ran");
    assert_eq!(stats.answered(), 1, "{stats}");
    assert_eq!(stats.denied(), 0, "{stats}");
}
