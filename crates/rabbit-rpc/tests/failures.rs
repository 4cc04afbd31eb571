//! Calls that fail: each failure gets its own error, quickly, and leaves the
//! client and the server in working order.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::StreamExt;
use lapin::{BasicProperties, options::BasicPublishOptions};
use rabbit_rpc::{CallOptions, Client, Code, Error, Request, Status, blocking_fn, handler_fn};

fn short(timeout_ms: u64) -> CallOptions {
    CallOptions::new().timeout(Duration::from_millis(timeout_ms))
}

#[tokio::test]
async fn a_server_that_never_replies_gives_a_timeout_and_leaves_nothing_pending() {
    let queue = common::unique_queue("never_replies");
    let (connection, _silent) = common::silent_server(&queue).await;

    let client = common::client().await;
    let started = Instant::now();
    let error = client
        .call_with(&queue, "1", &short(400))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(client.pending_calls(), 0);

    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

/// A client that checks for a server only after 30 s: a "no route" it
/// reports sooner came from the broker's return, not from that check.
async fn client_without_early_check(confirms: bool) -> Client {
    Client::builder()
        .url(common::url())
        .no_server_check(Duration::from_secs(30))
        .publisher_confirms(confirms)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queue_that_does_not_exist_fails_at_once_with_no_route() {
    let client = client_without_early_check(false).await;
    let started = Instant::now();
    let error = client
        .call_with(&common::unique_queue("missing"), "1", &short(20_000))
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::NoRoute { .. }),
        "{error}"
    );
    assert!(error.is_no_server());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(client.pending_calls(), 0);
    // The client is still usable.
    let error = client
        .call_with(&common::unique_queue("missing"), "1", &short(20_000))
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::NoRoute { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_queue_without_consumers_fails_with_no_server_well_before_the_timeout() {
    let queue = common::unique_queue("no_consumer");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;

    let client = common::client().await;
    let started = Instant::now();
    let error = client
        .call_with(&queue, "1", &short(20_000))
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::NoServer { .. }),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(client.pending_calls(), 0);

    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn handler_errors_reach_the_caller_with_code_and_message() {
    let server = TestServer::start(
        "handler_error",
        handler_fn(|_request: Request| async move {
            Err::<Vec<u8>, _>(Status::resource_exhausted("too many widgets"))
        }),
    )
    .await;
    let client = common::client().await;
    let error = client.call(&server.queue, "x").await.unwrap_err();
    assert_eq!(
        error.status(),
        Some(&Status::resource_exhausted("too many widgets"))
    );
    assert_eq!(error.code(), Code::ResourceExhausted);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_gives_an_internal_error_and_the_server_keeps_serving() {
    let server = TestServer::start(
        "panic",
        handler_fn(|request: Request| async move {
            if request.body() == b"boom" {
                panic!("kaboom");
            }
            Ok::<_, Status>(request.into_body())
        }),
    )
    .await;
    let client = common::client().await;
    for _ in 0..3 {
        let error = client.call(&server.queue, "boom").await.unwrap_err();
        let status = error.status().expect("an error reply");
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("kaboom"), "{status}");
        assert_eq!(client.call(&server.queue, "ok").await.unwrap().text(), "ok");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_blocking_handler_is_caught_too() {
    let server = TestServer::start(
        "blocking_panic",
        blocking_fn(|request: Request| -> Result<Vec<u8>, Status> {
            assert_ne!(request.body(), b"boom", "blocking kaboom");
            Ok(request.into_body())
        }),
    )
    .await;
    let client = common::client().await;
    let error = client.call(&server.queue, "boom").await.unwrap_err();
    assert_eq!(error.code(), Code::Internal, "{error}");
    assert_eq!(client.call(&server.queue, "ok").await.unwrap().text(), "ok");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn closing_the_client_fails_waiting_calls_at_once_and_new_ones_too() {
    let queue = common::unique_queue("close_client");
    let (connection, _silent) = common::silent_server(&queue).await;

    let client = common::client().await;
    let waiting = tokio::spawn({
        let client = client.clone();
        let queue = queue.clone();
        async move { client.call_with(&queue, "1", &short(30_000)).await }
    });
    common::wait_until(Duration::from_secs(10), "the call is in flight", || async {
        client.pending_calls() == 1
    })
    .await;
    let started = Instant::now();
    client.close().await.unwrap();
    let error = waiting.await.unwrap().unwrap_err();
    assert!(error.is_connection_lost(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let error = client
        .call_with(&queue, "2", &short(30_000))
        .await
        .unwrap_err();
    assert!(error.is_connection_lost(), "{error}");

    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn replies_with_unknown_correlation_ids_are_dropped_and_counted() {
    // A raw server that first answers with a stranger's correlation id, then
    // with the right one.
    let queue = common::unique_queue("unknown_reply");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;
    let mut requests = common::consume(&channel, &queue, true).await;
    let server = tokio::spawn(async move {
        let request = requests.next().await.unwrap().unwrap();
        let reply_to = request.properties.reply_to().clone().unwrap();
        let id = request.properties.correlation_id().clone().unwrap();
        for (correlation_id, body) in [("not-yours", &b"wrong"[..]), (id.as_str(), b"right")] {
            channel
                .basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_correlation_id(correlation_id.into()),
                )
                .await
                .unwrap();
        }
        channel
    });

    let client = common::client().await;
    let reply = client.call(&queue, "1").await.unwrap();
    assert_eq!(reply.text(), "right");
    assert_eq!(client.unknown_replies(), 1);
    assert_eq!(client.pending_calls(), 0);

    server.await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast_naming_host_and_port_but_no_password() {
    let started = Instant::now();
    let error = Client::builder()
        .url("amqp://guest:hunter2@127.0.0.1:1/%2f")
        .connect()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error}");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(6));
    // The client library's error is kept: the I/O error underneath it is
    // the chain's end, and the library's own error is there to log.
    let Error::Connect {
        source: Some(broker),
        ..
    } = &error
    else {
        panic!("no source: {error:?}");
    };
    assert!(!broker.get_ref().to_string().is_empty());
    let mut chain = std::error::Error::source(&error);
    let mut io = false;
    while let Some(cause) = chain {
        io |= cause.is::<std::io::Error>();
        chain = cause.source();
    }
    assert!(io, "no I/O error in the chain of {error:?}");
}

#[tokio::test]
async fn a_wrong_password_is_a_refused_login_that_does_not_show_it() {
    let url = common::url().replacen(":guest@", ":not-the-password@", 1);
    assert!(
        url.contains("not-the-password"),
        "AMQP_URL logs in as guest: {url}"
    );
    let error = Client::builder().url(url).connect().await.unwrap_err();
    assert_eq!(error.refusal(), Some(rabbit_rpc::Refusal::Login), "{error}");
    assert_eq!(error.code(), rabbit_rpc::Code::Unauthenticated);
    let message = error.to_string();
    assert!(
        message.contains("refused the login of user 'guest'"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(
        !format!("{error:?}").contains("not-the-password"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_permission_the_user_lacks_is_a_refused_access_not_a_lost_connection() {
    let server = TestServer::start("no_write", common::echo()).await;
    // May configure and read, not write: it can consume its replies, not
    // publish requests.
    let user = common::TestUser::create("no_write", ".*", "^$", ".*").await;
    let client = Client::builder().url(&user.url).connect().await.unwrap();
    let error = client.call(&server.queue, "x").await.unwrap_err();
    assert_eq!(
        error.refusal(),
        Some(rabbit_rpc::Refusal::Access),
        "{error}"
    );
    assert_eq!(error.code(), Code::PermissionDenied);
    let message = error.to_string();
    assert!(message.starts_with("access refused: "), "{message}");
    assert!(
        message.contains(&format!("refused for user '{}'", user.name)),
        "{message}"
    );
    assert!(message.contains("list_user_permissions"), "{message}");
    // Nor may it declare a queue of its own (configure denied for it).
    let user = common::TestUser::create("no_configure", "^$", ".*", ".*").await;
    let queue = common::unique_queue("no_configure");
    let bound = rabbit_rpc::Server::builder()
        .url(&user.url)
        .procedure(&queue, common::echo())
        .bind()
        .await;
    let Err(error) = bound else {
        panic!("binding needs the configure permission");
    };
    assert_eq!(
        error.refusal(),
        Some(rabbit_rpc::Refusal::Access),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("cannot declare queue '{queue}'")),
        "{message}"
    );
    assert!(message.contains("configure permission"), "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_virtual_host_the_user_may_not_use_is_refused_by_name() {
    let url = format!(
        "{}/no-such-vhost",
        common::url().rsplit_once('/').unwrap().0
    );
    let error = Client::builder().url(url).connect().await.unwrap_err();
    assert_eq!(
        error.refusal(),
        Some(rabbit_rpc::Refusal::VirtualHost),
        "{error}"
    );
    assert!(
        error.to_string().contains("virtual host 'no-such-vhost'"),
        "{error}"
    );
}

#[tokio::test]
async fn a_port_that_never_speaks_amqp_fails_within_the_connect_timeout() {
    // Accepts the TCP connection and then says nothing, like a firewall or a
    // hung process would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let error = Client::builder()
        .url(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_publisher_confirms_a_missing_queue_is_reported_by_the_confirm() {
    let client = client_without_early_check(true).await;
    let error = client
        .call_with(
            &common::unique_queue("missing_confirmed"),
            "1",
            &short(20_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::NoRoute { .. }),
        "{error}"
    );
    assert_eq!(client.pending_calls(), 0);

    // And calls that do reach a server work as without confirms.
    let server = TestServer::start("confirmed_round_trip", common::echo()).await;
    let calls = (0..100).map(|i| client.call(&server.queue, format!("{i}")));
    for (i, reply) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(reply.unwrap().text(), i.to_string());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_the_server_took_is_not_reported_as_no_server() {
    // The server took the request and then stopped consuming, as a server
    // draining for shutdown does: nobody consumes, but nothing waits in the
    // queue either. The caller waits for the answer (here: until its timeout)
    // instead of hearing "no server".
    let queue = common::unique_queue("draining");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;
    let mut silent = common::consume(&channel, &queue, false).await;
    let client = Client::builder()
        .url(common::url())
        .no_server_check(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        let queue = queue.clone();
        async move { client.call_with(&queue, "1", &short(2000)).await }
    });
    // Took it (unacknowledged), then stopped consuming.
    let delivery = silent.next().await.unwrap().unwrap();
    channel
        .basic_cancel(silent.tag(), lapin::options::BasicCancelOptions::default())
        .await
        .unwrap();
    let error = call.await.unwrap().unwrap_err();
    assert!(error.is_timeout(), "{error}");
    drop(delivery);
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn an_oversized_request_fails_at_once_and_the_client_stays_usable() {
    let server = TestServer::start("oversized_request", common::echo()).await;
    let client = Client::builder()
        .url(common::url())
        .max_body_size(1024)
        .connect()
        .await
        .unwrap();
    let error = client
        .call(&server.queue, vec![b'x'; 1025])
        .await
        .unwrap_err();
    assert!(
        matches!(error, rabbit_rpc::Error::InvalidRequest { .. }),
        "{error}"
    );
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(client.call(&server.queue, "ok").await.unwrap().text(), "ok");

    let long_name = "q".repeat(256);
    let error = client.call(&long_name, "1").await.unwrap_err();
    assert!(error.to_string().contains("255"), "{error}");
    let options = CallOptions::new().content_type("t".repeat(256));
    let error = client
        .call_with(&server.queue, "1", &options)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("255"), "{error}");
    assert_eq!(client.pending_calls(), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_huge_timeout_means_no_timeout_not_a_panic() {
    let server = TestServer::start("huge_timeout", common::echo()).await;
    let client = common::client().await;
    let options = CallOptions::new().timeout(Duration::MAX);
    assert_eq!(
        client
            .call_with(&server.queue, "1", &options)
            .await
            .unwrap()
            .text(),
        "1"
    );
    server.stop().await.unwrap();
}

#[test]
fn builders_never_show_a_password_in_debug() {
    let client = format!(
        "{:?}",
        Client::builder().url("amqp://alice:s3cret@broker.example:5673/prod")
    );
    let server = format!(
        "{:?}",
        rabbit_rpc::Server::builder().url("amqp://alice:s3cret@broker.example:5673/prod")
    );
    for shown in [client, server] {
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice@broker.example"), "{shown}");
    }
}
