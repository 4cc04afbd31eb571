//! Timeouts tested on tokio's paused clock (tokio's `test-util` feature,
//! `#[tokio::test(start_paused = true)]`): whenever every task waits, the
//! runtime jumps to the next timer, so a 30 s timeout takes no real time.
//! The in-memory broker keeps its time (message expiration) on the same
//! clock. The README and docs/LIBRARY.md ("Testing your service") show
//! this test.

use std::time::Duration;

use rabbit_rpc::{Client, MemoryBroker, Request, Server, Status, handler_fn};

#[tokio::test(start_paused = true)]
async fn a_slow_handler_times_out_on_the_paused_clock() {
    let broker = MemoryBroker::new();
    let server = Server::builder()
        .memory(&broker)
        .procedure(
            "slow",
            handler_fn(|_request: Request| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, Status>("done")
            }),
        )
        .bind()
        .await
        .expect("bind");
    tokio::spawn(server.serve());
    let client = Client::builder()
        .memory(&broker)
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect");

    let real = std::time::Instant::now();
    let started = tokio::time::Instant::now();
    let error = client.call("slow", "").await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // 30 s on tokio's clock, next to nothing on the wall clock.
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert!(real.elapsed() < Duration::from_secs(5));
}
