//! Calls that succeed: round trips, concurrency, content types, reply queues.

mod common;

use std::{sync::Arc, time::Duration};

use common::TestServer;
use futures_util::future::join_all;
use rabbit_rpc::{CallOptions, Client, ReplyQueue, Request, Response, Status, handler_fn};
use tokio::sync::Notify;

#[tokio::test]
async fn round_trip() {
    let server = TestServer::start("round_trip", common::echo()).await;
    let client = common::client().await;
    let reply = client.call(&server.queue, "hello").await.unwrap();
    assert_eq!(reply.body(), b"hello");
    assert_eq!(client.pending_calls(), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_thousand_concurrent_calls_on_one_client() {
    let square = handler_fn(|request: Request| async move {
        let n: u64 = request
            .text()?
            .parse()
            .map_err(|_| Status::invalid_argument("not a number"))?;
        Ok::<_, Status>((n * n).to_string())
    });
    let server = TestServer::start("thousand", square).await;
    let client = common::client().await;
    let calls = (0..1000u64).map(|n| {
        let client = client.clone();
        let queue = server.queue.clone();
        async move { (n, client.call(&queue, n.to_string()).await) }
    });
    for (n, reply) in join_all(calls).await {
        assert_eq!(reply.unwrap().text(), (n * n).to_string(), "n = {n}");
    }
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.unknown_replies(), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn replies_carry_the_request_content_type_unless_the_handler_sets_one() {
    let server = TestServer::start(
        "content_type",
        handler_fn(|request: Request| async move {
            let response = Response::new(request.into_body());
            Ok::<_, Status>(if response.body() == b"json" {
                response.with_content_type("application/json")
            } else {
                response
            })
        }),
    )
    .await;
    let client = common::client().await;
    let text = CallOptions::new().content_type("text/plain");
    let reply = client
        .call_with(&server.queue, "plain", &text)
        .await
        .unwrap();
    assert_eq!(reply.content_type(), Some("text/plain"));
    let reply = client
        .call_with(&server.queue, "json", &text)
        .await
        .unwrap();
    assert_eq!(reply.content_type(), Some("application/json"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_exclusive_reply_queue_works_too() {
    let server = TestServer::start("exclusive_reply", common::echo()).await;
    let client = Client::builder()
        .url(common::url())
        .reply_queue(ReplyQueue::Exclusive)
        .connect()
        .await
        .unwrap();
    let calls = (0..50).map(|i| client.call(&server.queue, format!("{i}")));
    for (i, reply) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(reply.unwrap().text(), i.to_string());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_that_waits_does_not_hold_up_other_calls() {
    // The "slow" call waits until the test releases it, which the test does
    // only after twenty other calls were answered: that can only happen if
    // the server handles calls concurrently.
    let release = Arc::new(Notify::new());
    let server = TestServer::start("slow_and_fast", {
        let release = Arc::clone(&release);
        handler_fn(move |request: Request| {
            let release = Arc::clone(&release);
            async move {
                if request.body() == b"slow" {
                    release.notified().await;
                }
                Ok::<_, Status>(request.into_body())
            }
        })
    })
    .await;
    let client = common::client().await;
    let slow = tokio::spawn({
        let client = client.clone();
        let queue = server.queue.clone();
        async move { client.call(&queue, "slow").await }
    });
    let fast = async {
        for i in 0..20 {
            let reply = client
                .call(&server.queue, format!("fast {i}"))
                .await
                .unwrap();
            assert_eq!(reply.text(), format!("fast {i}"));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fast)
        .await
        .expect("fast calls were held up behind the slow one");
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap().text(), "slow");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_blocking_handler_does_not_stall_the_runtime() {
    // `#[tokio::test]` is a single-threaded runtime: if `blocking_fn` ran the
    // handler on it, the thread-blocking "block" call would stall every other
    // call (and this test). The watchdog releases it after 20 s so a
    // regression fails instead of hanging.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let server = TestServer::start(
        "blocking_off_reactor",
        rabbit_rpc::blocking_fn(move |request: Request| -> Result<Vec<u8>, Status> {
            if request.body() == b"block" {
                let _ = released.lock().unwrap().recv();
            }
            Ok(request.into_body())
        }),
    )
    .await;
    let client = common::client().await;
    let blocked = tokio::spawn({
        let client = client.clone();
        let queue = server.queue.clone();
        async move { client.call(&queue, "block").await }
    });
    let watchdog_release = release.clone();
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let stalled = Arc::clone(&stalled);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            stalled.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = watchdog_release.send(());
        })
    };
    common::wait_until(
        Duration::from_secs(10),
        "the blocking call is in flight",
        || async { client.pending_calls() == 1 },
    )
    .await;
    for i in 0..10 {
        let reply = client.call(&server.queue, format!("{i}")).await.unwrap();
        assert_eq!(reply.text(), i.to_string());
    }
    assert!(
        !stalled.load(std::sync::atomic::Ordering::SeqCst),
        "other calls were answered only after the watchdog released the blocked one"
    );
    release.send(()).unwrap();
    assert_eq!(blocked.await.unwrap().unwrap().text(), "block");
    server.stop().await.unwrap();
    drop(watchdog);
}
