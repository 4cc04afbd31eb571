//! The server against raw peers: requests it cannot answer, and draining on
//! shutdown.

mod common;

use std::{sync::Arc, time::Duration};

use common::TestServer;
use futures_util::{StreamExt, future::join_all};
use lapin::BasicProperties;
use rabbit_rpc::{Request, Response, Status, handler_fn, protocol::STATUS_HEADER};
use tokio::sync::Semaphore;

#[tokio::test]
async fn a_request_without_correlation_id_gets_an_error_reply() {
    let server = TestServer::start("no_correlation_id", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    let (reply_to, mut replies) = common::reply_queue(&channel).await;
    let properties = BasicProperties::default().with_reply_to(reply_to.as_str().into());
    common::publish(&channel, &server.queue, b"1", properties).await;

    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("an error reply")
        .unwrap()
        .unwrap();
    let headers = reply.properties.headers().clone().unwrap();
    let status = headers.inner().get(STATUS_HEADER).unwrap();
    assert_eq!(
        status,
        &lapin::types::AMQPValue::LongString("invalid_argument".into())
    );
    assert!(
        String::from_utf8_lossy(&reply.data).contains("correlation_id"),
        "{:?}",
        String::from_utf8_lossy(&reply.data)
    );

    let _ = connection.close(200, "done".into()).await;
    let client = common::client().await;
    assert_eq!(
        client.call(&server.queue, "still").await.unwrap().text(),
        "still"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unanswerable_requests_are_rejected_not_requeued() {
    let server = TestServer::start("unanswerable", common::echo()).await;
    let queue = server.queue.clone();
    let (connection, channel) = common::raw_channel().await;
    // No reply_to: nowhere to answer. reply_to = the request queue: answering
    // would feed the server its own reply, forever.
    common::publish(
        &channel,
        &queue,
        b"1",
        BasicProperties::default().with_correlation_id("a".into()),
    )
    .await;
    common::publish(
        &channel,
        &queue,
        b"2",
        BasicProperties::default()
            .with_correlation_id("b".into())
            .with_reply_to(queue.as_str().into()),
    )
    .await;
    let _ = connection.close(200, "done".into()).await;

    // The server keeps serving, and after it has drained nothing is left:
    // neither message came back to the queue.
    let client = common::client().await;
    assert_eq!(client.call(&queue, "still").await.unwrap().text(), "still");
    server.drain().await.unwrap();
    assert_eq!(common::ready_messages(&queue).await, 0);
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_hand_and_returns_the_rest_to_the_queue() {
    // One request at a time; each waits for a permit the test hands out.
    let gate = Arc::new(Semaphore::new(0));
    let handler = {
        let gate = Arc::clone(&gate);
        handler_fn(move |request: Request| {
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Status>(request.into_body())
            }
        })
    };
    let mut server =
        TestServer::start_with("drain", handler, |b| b.concurrency(1).prefetch(10)).await;
    let queue = server.queue.clone();

    // Between the drain and the second server nobody consumes the queue: a
    // client that checked for a server then would rightly give up. This one
    // waits; the test is about the requests, not that check.
    let client = rabbit_rpc::Client::builder()
        .url(common::url())
        .no_server_check(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let options = rabbit_rpc::CallOptions::new().timeout(Duration::from_secs(30));
                client.call_with(&queue, format!("{i}"), &options).await
            })
        })
        .collect();
    // All five delivered to the server (prefetched), one of them started.
    common::wait_for_ready(&queue, 0, "all requests are delivered").await;
    common::wait_until(
        Duration::from_secs(10),
        "all calls are in flight",
        || async { client.pending_calls() == 5 },
    )
    .await;

    server.begin_shutdown();
    gate.add_permits(1);
    server.drain().await.unwrap();

    // The request in hand was answered; the four others went back.
    assert_eq!(common::ready_messages(&queue).await, 4);
    assert_eq!(client.pending_calls(), 4);

    // A new server picks them up and every caller gets its answer.
    let server = TestServer::start_on(queue.clone(), common::echo(), |b| b).await;
    let mut answers: Vec<String> = join_all(calls)
        .await
        .into_iter()
        .map(|call| call.unwrap().unwrap().text().into_owned())
        .collect();
    answers.sort();
    assert_eq!(answers, ["0", "1", "2", "3", "4"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn replies_that_cannot_be_sent_become_error_replies() {
    let server = TestServer::start_with(
        "unsendable_reply",
        handler_fn(|request: Request| async move {
            match request.body() {
                b"big" => Ok(Response::new(vec![b'x'; 2048])),
                b"odd type" => Ok(Response::new("x").with_content_type("t".repeat(256))),
                _ => Ok::<_, Status>(Response::new(request.into_body())),
            }
        }),
        |builder| builder.max_reply_size(1024),
    )
    .await;
    let client = common::client().await;
    let error = client.call(&server.queue, "big").await.unwrap_err();
    assert_eq!(error.code(), rabbit_rpc::Code::ResourceExhausted, "{error}");
    let error = client.call(&server.queue, "odd type").await.unwrap_err();
    assert_eq!(error.code(), rabbit_rpc::Code::Internal, "{error}");
    assert_eq!(
        client.call(&server.queue, "fine").await.unwrap().text(),
        "fine"
    );
    server.stop().await.unwrap();
}
