//! `serve` on a RabbitMQ 4.3 whose operator denies a deprecated feature:
//! transient non-exclusive queues (`transient_nonexcl_queues`), which
//! RabbitMQ 4.3.6 still permits by default and says a later version will
//! deny. The broker is a node of `scripts/rabbitmq4.sh` on 127.0.0.1:5681,
//! beside the brokers the other tests use, configured with
//! `deprecated_features.permit.transient_nonexcl_queues = false`; this test
//! brings it up if it is not running (about 5 s with the RabbitMQ 4.3 tree
//! in place, 1-2 minutes to make the tree) and leaves it running
//! (`scripts/test.sh` stops it at the end; by hand:
//! `RABBITMQ4_PORT=5681 scripts/rabbitmq4.sh down`).

#![cfg(unix)]

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod serve;

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use rabbit_rpc_cli::exit;
use serve::ServeProcess;
use tokio::process::Command;

/// The denying node's AMQP port.
const PORT: &str = "5681";

const DENY: &str = "deprecated_features.permit.transient_nonexcl_queues = false\n";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rabbitmq4.sh")
}

/// `scripts/rabbitmq4.sh ARGS` for the denying node, failing the test if it
/// fails or takes over 5 minutes.
async fn node(args: &[&str]) -> String {
    let conf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deny-transient-queues.conf");
    std::fs::write(&conf, DENY).expect("write the node's extra config");
    let run = Command::new(script())
        .args(args)
        .env("RABBITMQ4_PORT", PORT)
        .env("RABBITMQ4_CONF_EXTRA", &conf)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("scripts/rabbitmq4.sh {args:?} hung"))
        .expect("run scripts/rabbitmq4.sh");
    assert!(
        output.status.success(),
        "scripts/rabbitmq4.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether the running node denies transient non-exclusive queues.
async fn denies_transient_queues() -> bool {
    let listing = node(&[
        "ctl",
        "-q",
        "list_deprecated_features",
        "--formatter",
        "json",
    ])
    .await;
    let features: serde_json::Value = serde_json::from_str(&listing).expect("JSON");
    features.as_array().into_iter().flatten().any(|feature| {
        feature["name"] == "transient_nonexcl_queues" && feature["state"] == "denied"
    })
}

/// The URL of a node that denies transient queues, started (or restarted
/// with that setting) if need be.
async fn denying_node() -> String {
    node(&["up"]).await;
    if !denies_transient_queues().await {
        node(&["down"]).await;
        node(&["up"]).await;
        assert!(
            denies_transient_queues().await,
            "the node on port {PORT} permits transient queues even with `{}`",
            DENY.trim()
        );
    }
    format!("amqp://guest:guest@127.0.0.1:{PORT}/%2f")
}

#[tokio::test]
async fn serve_transient_where_the_operator_denies_it_exits_refused_with_one_line_and_the_fix() {
    let url = denying_node().await;
    let queue = common::unique_queue("denied_transient");

    let started = Instant::now();
    let output = serve::run(&url, &["serve", "fib", "--queue", &queue, "--transient"]).await;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::REFUSED)),
        "{stderr}"
    );
    // Not retried as a lost connection would be: one refusal, then out.
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: feature denied: "), "{line}");
    for says in [
        &format!("queue '{queue}' cannot be declared transient"),
        "deprecated feature 'transient_nonexcl_queues'",
        "deprecated_features.permit.transient_nonexcl_queues = true",
        "drop --transient",
    ] {
        assert!(line.contains(says), "no '{says}' in: {line}");
    }
    assert!(!line.contains("connection"), "{line}");
    let queues = node(&["ctl", "-q", "list_queues", "--no-table-headers", "name"]).await;
    assert!(
        !queues.lines().any(|name| name.trim() == queue),
        "nothing is declared: {queues}"
    );

    // The advice works: without --transient, a durable quorum queue.
    let mut server = ServeProcess::start("fib", &queue, &["--url", &url]).await;
    assert!(
        server.log().contains("created it: durable quorum"),
        "{}",
        server.log()
    );
    let output = serve::run(&url, &["call", "--queue", &queue, "30"]).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "832040\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
    node(&["ctl", "-q", "delete_queue", &queue]).await;
}
