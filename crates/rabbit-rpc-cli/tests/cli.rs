//! The `rabbit-rpc` command as a user runs it: output, exit codes, messages.

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod serve;

use std::{
    process::Output,
    time::{Duration, Instant},
};

use rabbit_rpc_cli::exit;
use serve::ServeProcess;

async fn rabbit_rpc(args: &[&str]) -> Output {
    serve::run(&common::url(), args).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> u8 {
    u8::try_from(output.status.code().expect("exited, not killed")).unwrap()
}

/// `rabbit-rpc serve fib` on `queue`, returned once it logged that it is
/// ready.
async fn serve(queue: &str) -> ServeProcess {
    serve_service("fib", queue).await
}

async fn serve_service(service: &str, queue: &str) -> ServeProcess {
    let server = ServeProcess::start(service, queue, &[]).await;
    assert!(
        !server.log().contains(":guest@"),
        "password in log: {}",
        server.log()
    );
    server
}

#[tokio::test]
async fn serve_and_call_like_the_tutorial_then_stop_cleanly_on_sigterm() {
    let queue = common::unique_queue("cli_serve");
    let mut server = serve(&queue).await;

    let output = rabbit_rpc(&["call", "--queue", &queue]).await;
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    assert_eq!(code(&output), exit::OK);
    assert_eq!(stderr(&output), "");

    let output = rabbit_rpc(&["call", "--queue", &queue, "--", "-1"]).await;
    assert_eq!(code(&output), exit::REMOTE_ERROR);
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("invalid_argument"), "{message}");
    assert!(message.contains("0 <= n <= 100000"), "{message}");

    // Still serving, and the URL may come after the subcommand.
    let output = rabbit_rpc(&["call", "10", "--queue", &queue, "--url", &common::url()]).await;
    assert_eq!(stdout(&output), "55\n", "{}", stderr(&output));

    server.signal("-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("serve did not stop within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    common::delete_queue(&queue).await;
}

/// An idle server stops on Ctrl-C at once, and says so: there is nothing
/// to drain. (It took 1.5 s once, saying nothing.)
#[tokio::test]
async fn an_idle_server_stops_at_once_on_sigint_and_says_why() {
    let queue = common::unique_queue("cli_idle_sigint");
    let mut server = serve(&queue).await;
    server.signal("-INT");
    let signalled = Instant::now();
    let status = server.exit_within(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    eprintln!("an idle serve exited {took:?} after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // A drain that waited for anything (the consumers' cancellation, a
    // drain timeout) takes far longer than this on any machine.
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}:\n{}",
        server.log()
    );
    common::wait_until(Duration::from_secs(5), "the shutdown log line", || {
        let said = !server
            .lines(|line| line.contains("nothing in flight"))
            .is_empty();
        async move { said }
    })
    .await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn a_second_signal_stops_a_draining_server_at_once_and_its_request_goes_back() {
    let queue = common::unique_queue("cli_second_signal");
    // fib(20,000,000) keeps the server busy for many seconds.
    let mut server = ServeProcess::start(
        "fib",
        &queue,
        &["--max-n", "20000000", "--queue-type", "classic"],
    )
    .await;
    let client = common::client().await;
    let call = common::spawn_call(&client, &queue, "20000000", Duration::from_secs(120));
    common::wait_until(
        Duration::from_secs(10),
        "the server has the request",
        || {
            let queue = queue.clone();
            async move { common::unacked_messages(&queue).await == Some(1) }
        },
    )
    .await;
    server.signal("-TERM");
    // Draining: it waits for the request in hand...
    let draining = tokio::time::timeout(Duration::from_millis(500), server.child.wait()).await;
    assert!(
        draining.is_err(),
        "serve stopped before finishing its request"
    );
    // ...until a second signal.
    let stopped_at = Instant::now();
    server.signal("-TERM");
    let status = tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("serve did not stop at once on a second signal")
        .unwrap();
    assert_eq!(status.code(), Some(i32::from(exit::INTERRUPTED)));
    assert!(stopped_at.elapsed() < Duration::from_secs(2));
    // The unfinished request is back in the queue, for another server.
    common::wait_for_ready(&queue, 1, "the request is back").await;
    call.abort();
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn a_missing_queue_exits_no_server_at_once() {
    let queue = common::unique_queue("cli_missing");
    let started = Instant::now();
    let output = rabbit_rpc(&["call", "--queue", &queue, "--timeout", "20s"]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert!(stderr(&output).contains(&format!("no queue named '{queue}'")));
    assert_eq!(stderr(&output).lines().count(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The hint names the queue asked for, and suggests `serve fib` only for
/// the queue `serve fib` serves.
#[tokio::test]
async fn the_no_server_hint_names_the_queue_asked_for() {
    let queue = common::unique_queue("cli_inventroy.stock");
    let output = rabbit_rpc(&["call", "--queue", &queue]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "error: no queue named '{queue}' (is a server for it running?); \
             is '{queue}' spelt as its server names it?\n"
        )
    );
    let idle = common::unique_queue("cli_hint_idle");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &idle).await;
    let output = rabbit_rpc(&["call", "--queue", &idle, "--timeout", "20s"]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "error: queue '{idle}' exists but no server is consuming from it; \
             start the server for '{idle}'\n"
        )
    );
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&idle).await;
}

#[tokio::test]
async fn a_queue_without_a_server_exits_no_server_before_the_timeout() {
    let queue = common::unique_queue("cli_no_consumer");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;
    let started = Instant::now();
    let output = rabbit_rpc(&["call", "--queue", &queue, "--timeout", "20s"]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no server is consuming"),
        "{}",
        stderr(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn a_server_that_does_not_answer_in_time_exits_timeout() {
    let queue = common::unique_queue("cli_timeout");
    let (connection, _silent) = common::silent_server(&queue).await;
    let output = rabbit_rpc(&["call", "--queue", &queue, "--timeout", "500ms"]).await;
    assert_eq!(code(&output), exit::TIMEOUT, "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!("error: no reply from queue '{queue}' within 500ms\n")
    );
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn an_unreachable_broker_exits_cannot_connect_naming_it_without_the_password() {
    let started = Instant::now();
    let output = rabbit_rpc(&["--url", "amqp://guest:hunter2@127.0.0.1:1/%2f", "call"]).await;
    assert_eq!(code(&output), exit::CANNOT_CONNECT);
    let message = stderr(&output);
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    let output = rabbit_rpc(&["--url", "http://nope", "call"]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    let output = rabbit_rpc(&["call", "--timeout", "soon"]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    assert!(stderr(&output).contains("500ms"), "{}", stderr(&output));
    let output = rabbit_rpc(&["serve", "fib", "--prefetch", "0"]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    let output = rabbit_rpc(&["serve", "fib", "--concurrency", "0"]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    // Queue settings that make no queue, and reply_to policies that read
    // two ways.
    for settings in [
        &["--transient", "--delivery-limit", "3"][..],
        &["--transient", "--queue-type", "quorum"][..],
        &["--queue-type", "classic", "--delivery-limit", "3"][..],
        &["--queue-type", "stream"][..],
        // A reply_to policy that allows everything says so explicitly.
        &["--allow-reply-to", "*"][..],
        &["--allow-reply-to", "x.", "--allow-any-reply-to"][..],
    ] {
        let output = rabbit_rpc(&[&["serve", "fib"][..], settings].concat()).await;
        assert_eq!(
            code(&output),
            exit::USAGE,
            "{settings:?}: {}",
            stderr(&output)
        );
    }
    let long_queue = "q".repeat(300);
    let output = rabbit_rpc(&["call", "--queue", &long_queue]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[tokio::test]
async fn bench_smoke_run_answers_every_call_and_ends_with_a_json_line() {
    let queue = common::unique_queue("cli_bench");
    let mut server = serve(&queue).await;
    let report = std::env::temp_dir().join(format!("{queue}.svg"));
    let output = rabbit_rpc(&[
        "bench",
        "--queue",
        &queue,
        "--calls",
        "300",
        "--inflight",
        "20",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    let text = stdout(&output);
    let last = text.lines().last().expect("output");
    let summary: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(summary["calls"], 300, "{last}");
    assert_eq!(summary["errors"], 0, "{last}");
    for field in ["rps", "p50_ms", "p99_ms"] {
        assert!(summary[field].as_f64().unwrap() > 0.0, "{field}: {last}");
    }
    let svg = std::fs::read_to_string(&report).expect("report written");
    assert!(
        svg.starts_with("<svg") && svg.contains("Latency"),
        "not an SVG report"
    );
    let _ = std::fs::remove_file(&report);

    // Errors are counted by kind and make the run fail.
    let output = rabbit_rpc(&[
        "bench", "--queue", &queue, "--calls", "10", "--body", "-5", "--json",
    ])
    .await;
    assert_eq!(code(&output), exit::FAILURE);
    let text = stdout(&output);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["errors_by_kind"]["remote_invalid_argument"], 10);

    server.signal("-TERM");
    let _ = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("serve did not stop within 10 s of SIGTERM");
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn bench_without_a_server_fails_fast_like_call() {
    let queue = common::unique_queue("cli_bench_missing");
    let output = rabbit_rpc(&["bench", "--queue", &queue, "--calls", "10"]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
}

#[tokio::test]
async fn serve_echo_replies_with_the_body() {
    let queue = common::unique_queue("cli_echo");
    let mut server = serve_service("echo", &queue).await;
    let output = rabbit_rpc(&["call", "--queue", &queue, "hello, world"]).await;
    assert_eq!(stdout(&output), "hello, world\n", "{}", stderr(&output));
    server.signal("-INT");
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("serve did not stop within 10 s of SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn serve_declares_a_missing_queue_as_asked_and_by_default_as_todays_tutorials() {
    /// `serve fib` with `settings` on a new queue declares it `durable`, of
    /// type `kind`, with exactly `arguments`, and says `described`.
    struct Case {
        settings: &'static [&'static str],
        durable: &'static str,
        kind: &'static str,
        arguments: &'static [&'static str],
        described: &'static str,
    }
    const QUORUM: &str = r#"{"x-queue-type","quorum"}"#;
    const CLASSIC: &str = r#"{"x-queue-type","classic"}"#;
    let cases = [
        Case {
            settings: &[],
            durable: "true",
            kind: "quorum",
            arguments: &[QUORUM],
            described: "durable quorum",
        },
        Case {
            settings: &["--queue-type", "classic"],
            durable: "true",
            kind: "classic",
            arguments: &[CLASSIC],
            described: "durable classic",
        },
        Case {
            settings: &["--transient"],
            durable: "false",
            kind: "classic",
            arguments: &[CLASSIC],
            described: "transient classic",
        },
        Case {
            settings: &["--delivery-limit", "3"],
            durable: "true",
            kind: "quorum",
            arguments: &[QUORUM, r#"{"x-delivery-limit",3}"#],
            described: "durable quorum, delivery limit 3",
        },
        // The options of earlier versions.
        Case {
            settings: &["--quorum"],
            durable: "true",
            kind: "quorum",
            arguments: &[QUORUM],
            described: "durable quorum",
        },
        Case {
            settings: &["--durable"],
            durable: "true",
            kind: "classic",
            arguments: &[CLASSIC],
            described: "durable classic",
        },
    ];
    for case in cases {
        let settings = case.settings;
        let queue = common::unique_queue("cli_declare");
        let _cleanup = common::DeleteOnDrop(queue.clone());
        let mut server = ServeProcess::start("fib", &queue, settings).await;
        let (durable, kind, arguments) = common::queue_info(&queue).await.expect("declared");
        assert_eq!(
            (durable.as_str(), kind.as_str()),
            (case.durable, case.kind),
            "{settings:?}"
        );
        for argument in case.arguments {
            assert!(arguments.contains(argument), "{settings:?}: {arguments}");
        }
        assert_eq!(
            arguments.matches("x-").count(),
            case.arguments.len(),
            "{settings:?}: no other argument: {arguments}"
        );
        let ready = server.lines(|line| line.contains("serving fib on queue"));
        assert!(
            ready[0].contains(&format!("(created it: {})", case.described)),
            "{ready:?}"
        );
        // A second server with no settings joins it as it is.
        let mut second = ServeProcess::start("fib", &queue, &[]).await;
        let ready = second.lines(|line| line.contains("serving fib on queue"));
        assert!(
            ready[0].contains("(existing queue, served as it is)"),
            "{ready:?}"
        );
        second.stop().await;
        server.stop().await;
    }
}

#[tokio::test]
async fn serve_with_a_queue_setting_the_queue_lacks_exits_8_changing_nothing() {
    let queue = common::unique_queue("cli_conflict");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let (connection, channel) = common::raw_channel().await;
    // As today's tutorials declare it: durable, quorum, nothing else.
    let mut quorum = lapin::types::FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::durable(),
            quorum,
        )
        .await
        .unwrap();
    common::publish(
        &channel,
        &queue,
        b"30",
        lapin::BasicProperties::default().with_correlation_id("waiting".into()),
    )
    .await;
    common::wait_for_ready(&queue, 1, "the request is queued").await;
    let before = common::queue_info(&queue).await;
    let started = Instant::now();
    let output = rabbit_rpc(&["serve", "fib", "--queue", &queue, "--queue-type", "classic"]).await;
    // The library's own test holds it to a second; here a loaded machine
    // starts a process too.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code(&output), exit::QUEUE_MISMATCH, "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("error: queue '")
            && message.contains("x-queue-type is 'quorum' there")
            && message.contains("asked for 'classic'")
            && message.contains("give no queue settings"),
        "{message}"
    );
    assert_eq!(common::queue_info(&queue).await, before);
    assert_eq!(common::ready_messages(&queue).await, 1);
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn serve_refuses_replies_into_other_queues_with_one_log_line_unless_allowed() {
    let (connection, channel) = common::raw_channel().await;
    let victim = common::unique_queue("cli_victim");
    let _victim_cleanup = common::DeleteOnDrop(victim.clone());
    common::declare(&channel, &victim).await;
    let inject = |queue: String, reply_to: String, n: usize| {
        let channel = channel.clone();
        async move {
            for i in 0..n {
                let properties = lapin::BasicProperties::default()
                    .with_reply_to(reply_to.as_str().into())
                    .with_correlation_id(format!("inject-{i}").into());
                common::publish(&channel, &queue, b"30", properties).await;
            }
        }
    };

    // By default: 100 requests, no reply in the victim's queue, one line.
    let queue = common::unique_queue("cli_reply_to");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    let mut server = serve(&queue).await;
    inject(queue.clone(), victim.clone(), 100).await;
    common::wait_for_ready(&queue, 0, "the injected requests are settled").await;
    let output = rabbit_rpc(&["call", "--queue", &queue, "10"]).await;
    assert_eq!(stdout(&output), "55\n", "{}", stderr(&output));
    assert_eq!(common::ready_messages(&victim).await, 0);
    server.stop().await;
    let refusals = server.lines(|line| line.contains("refusing a request whose reply_to"));
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(
        refusals[0].contains(&victim) && refusals[0].contains("--allow-reply-to"),
        "{refusals:#?}"
    );
    let stopped = server.lines(|line| line.contains("stopped:"));
    assert!(
        stopped[0].contains("100 refused for their reply_to"),
        "{stopped:?}"
    );

    // Allowed by prefix, the same requests are answered into that queue.
    let prefix = victim[..victim.len() - 4].to_owned();
    let mut server =
        ServeProcess::start("fib", &queue, &["--allow-reply-to", &format!("{prefix}*")]).await;
    inject(queue.clone(), victim.clone(), 3).await;
    common::wait_for_ready(&victim, 3, "the answers land in the allowed queue").await;
    server.stop().await;
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn serve_fib_echo_serves_both_over_one_connection_each_on_its_queue() {
    let fib = common::unique_queue("cli_two_fib");
    let echo = common::unique_queue("cli_two_echo");
    let _cleanup = (
        common::DeleteOnDrop(fib.clone()),
        common::DeleteOnDrop(echo.clone()),
    );
    let name = format!("cli two services {}", uuid::Uuid::new_v4());
    // `ServeProcess::start` waits for fib's ready line; echo's is the next.
    let mut server = ServeProcess::start(
        "fib",
        &format!("fib={fib}"),
        &[
            "echo",
            "--queue",
            &format!("echo={echo}"),
            "--connection-name",
            &name,
        ],
    )
    .await;
    common::wait_until(Duration::from_secs(10), "echo is ready too", || async {
        !server
            .lines(|line| line.contains("serving echo on queue"))
            .is_empty()
    })
    .await;
    assert_eq!(common::connections_named(&name).await.len(), 1);
    let consumers =
        common::rabbitmqctl(&["list_consumers", "-q", "--no-table-headers", "queue_name"]).await;
    for queue in [&fib, &echo] {
        assert_eq!(
            consumers
                .lines()
                .filter(|line| line.trim() == queue.as_str())
                .count(),
            1,
            "{queue}: {consumers}"
        );
    }
    let output = rabbit_rpc(&["call", "--queue", &fib, "30"]).await;
    assert_eq!(stdout(&output), "832040\n", "{}", stderr(&output));
    let output = rabbit_rpc(&["call", "--queue", &echo, "hello"]).await;
    assert_eq!(stdout(&output), "hello\n", "{}", stderr(&output));
    server.stop().await;
    let per_service = server.lines(|line| line.contains(" on '") && line.contains("answered"));
    assert_eq!(per_service.len(), 2, "{}", server.log());
}

#[tokio::test]
async fn serve_help_says_where_each_service_listens() {
    let output = rabbit_rpc(&["serve", "--help"]).await;
    let help = stdout(&output);
    for says in [
        "fib on",
        "rpc_queue",
        "echo on echo",
        "--queue SERVICE=NAME",
    ] {
        assert!(help.contains(says), "{says}: {help}");
    }
}

#[tokio::test]
async fn serve_http_answers_probes_and_counts_the_calls_in_prometheus_text() {
    let queue = common::unique_queue("cli_http");
    let mut server = ServeProcess::start("fib", &queue, &["--http", "127.0.0.1:0"]).await;
    let address = server.http_address();
    assert_eq!(
        common::http_get(&address, "/readyz").await,
        (200, format!("serving {queue}\n"))
    );
    assert_eq!(common::http_get(&address, "/livez").await.0, 200);
    for n in ["10", "20", "30"] {
        assert_eq!(
            code(&rabbit_rpc(&["call", "--queue", &queue, n]).await),
            exit::OK
        );
    }
    let failed = rabbit_rpc(&["call", "--queue", &queue, "--", "-1"]).await;
    assert_eq!(code(&failed), exit::REMOTE_ERROR);
    let (status, scrape) = common::http_get(&address, "/metrics").await;
    assert_eq!(status, 200);
    let count = |code: &str| {
        let prefix = format!(
            "rpc_server_call_duration_seconds_count{{rpc_method=\"{queue}\",rpc_response_status_code=\"{code}\"}} "
        );
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(str::to_owned)
    };
    assert_eq!(count("ok").as_deref(), Some("3"), "{scrape}");
    assert_eq!(count("invalid_argument").as_deref(), Some("1"), "{scrape}");
    server.stop().await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn serve_http_on_a_taken_address_exits_with_one_line() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let queue = common::unique_queue("cli_http_taken");
    let output = rabbit_rpc(&["serve", "fib", "--queue", &queue, "--http", &address]).await;
    assert_eq!(code(&output), exit::FAILURE);
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains(&format!("cannot listen on {address}")),
        "{message}"
    );
    assert!(message.contains("--http"), "{message}");
}

#[tokio::test]
async fn bench_with_server_http_shows_what_the_server_saw() {
    let queue = common::unique_queue("cli_bench_server");
    let mut server = ServeProcess::start("fib", &queue, &["--http", "127.0.0.1:0"]).await;
    let address = server.http_address();
    let output = rabbit_rpc(&[
        "bench",
        "--queue",
        &queue,
        "--calls",
        "300",
        "--inflight",
        "10",
        "--json",
        "--server-http",
        &address,
    ])
    .await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("  server      300 answered (ok 300)"),
        "{text}"
    );
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["server"]["answered_by_code"]["ok"], 300, "{text}");
    assert!(
        summary["server"]["p50_ms"].as_f64().unwrap() > 0.0,
        "{text}"
    );
    server.stop().await;
    common::delete_queue(&queue).await;
}
/// A raw responder on `queue` (a fresh one) that answers every request
/// with `body` and `headers`: a tutorial server, or a fake rabbit-rpc one.
/// It lasts as long as the returned connection.
async fn responder(
    queue: &str,
    body: &'static [u8],
    headers: &[(&str, &str)],
) -> (lapin::Connection, tokio::task::JoinHandle<()>) {
    use futures_util::StreamExt;
    use lapin::types::{AMQPValue, FieldTable};
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, queue).await;
    let mut requests = common::consume(&channel, queue, false).await;
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert((*name).into(), AMQPValue::LongString((*value).into()));
    }
    let answering = tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let mut properties = lapin::BasicProperties::default()
                .with_correlation_id(request.properties.correlation_id().clone().unwrap());
            if !table.inner().is_empty() {
                properties = properties.with_headers(table.clone());
            }
            let reply_to = request.properties.reply_to().clone().unwrap();
            common::publish(&channel, reply_to.as_str(), body, properties).await;
            let _ = request
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await;
        }
    });
    (connection, answering)
}

#[tokio::test]
async fn ping_describe_and_call_json_against_serve_fib() {
    let queue = common::unique_queue("cli_ping");
    let mut server = serve(&queue).await;

    let output = rabbit_rpc(&["ping", "--queue", &queue]).await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let line = stdout(&output);
    let expected = format!(
        "serving: {queue} answered by 'rabbit-rpc serve fib on {} pid {}' (rabbit-rpc {}, 0 in flight) in ",
        hostname(),
        server.pid,
        env!("CARGO_PKG_VERSION")
    );
    assert!(line.starts_with(&expected), "{line}\nnot\n{expected}");
    assert!(
        line.ends_with(" ms\n") && line.lines().count() == 1,
        "{line}"
    );

    let output = rabbit_rpc(&["describe", "--queue", &queue]).await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("procedure {queue}\n  fibonacci(n), exact.")),
        "{text}"
    );
    assert!(
        text.contains("\nrequest: text/plain, application/json, schema:\n  {\n"),
        "{text}"
    );
    assert!(text.contains("\"maximum\": 100000"), "{text}");

    let output = rabbit_rpc(&["describe", "--queue", &queue, "--json"]).await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["procedure"], queue.as_str());
    assert_eq!(
        json["request"]["schema"]["required"],
        serde_json::json!(["n"])
    );
    assert_eq!(json["reply"]["content_types"][1], "application/json");

    let output = rabbit_rpc(&["call", "--queue", &queue, "--json", r#"{"n": 30}"#]).await;
    assert_eq!(code(&output), exit::OK, "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\n  \"fib\": \"832040\",\n  \"n\": 30\n}\n"
    );
    // -1 is JSON, and out of range.
    let output = rabbit_rpc(&["call", "--queue", &queue, "--json", "-1"]).await;
    assert_eq!(code(&output), exit::REMOTE_ERROR, "{}", stderr(&output));

    let output = rabbit_rpc(&["call", "--queue", &queue, "--json", r#"{"n": "#]).await;
    assert_eq!(code(&output), exit::USAGE, "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--json is not valid JSON"),
        "{}",
        stderr(&output)
    );

    server.stop().await;
    // Pings and describes are not calls: the two calls are all it counted.
    let stopped = server.lines(|line| line.contains("stopped: "));
    assert!(
        stopped[0].contains("stopped: 2 answered (1 with errors)"),
        "{stopped:?}"
    );
    common::delete_queue(&queue).await;
}

/// This machine's name as a server names it in a ping.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn ping_exits_with_a_code_for_each_outcome() {
    // No such queue, and a queue nobody consumes: 5, as for call.
    let missing = common::unique_queue("cli_ping_missing");
    let output = rabbit_rpc(&["ping", "--queue", &missing]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no queue named"),
        "{}",
        stderr(&output)
    );
    let idle = common::unique_queue("cli_ping_idle");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &idle).await;
    let output = rabbit_rpc(&["describe", "--queue", &idle, "--timeout", "10s"]).await;
    assert_eq!(code(&output), exit::NO_SERVER, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no server is consuming"),
        "{}",
        stderr(&output)
    );
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&idle).await;

    // No broker: 6.
    let output = rabbit_rpc(&["--url", "amqp://guest:guest@127.0.0.1:1/%2f", "ping"]).await;
    assert_eq!(code(&output), exit::CANNOT_CONNECT, "{}", stderr(&output));

    // A server that takes requests and never answers: 4.
    let silent = common::unique_queue("cli_ping_silent");
    let (connection, _consumer) = common::silent_server(&silent).await;
    let output = rabbit_rpc(&["ping", "--queue", &silent, "--timeout", "500ms"]).await;
    assert_eq!(code(&output), exit::TIMEOUT, "{}", stderr(&output));
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&silent).await;

    // A tutorial server runs its handler: 14, with one line that says so.
    let tutorial = common::unique_queue("cli_ping_tutorial");
    let (connection, answering) = responder(&tutorial, b"0", &[]).await;
    for command in ["ping", "describe"] {
        let output = rabbit_rpc(&[command, "--queue", &tutorial]).await;
        assert_eq!(code(&output), exit::NOT_RABBIT_RPC, "{}", stderr(&output));
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains("not by a rabbit-rpc server: it ran its handler on the"),
            "{message}"
        );
        assert_eq!(stdout(&output), "");
    }
    answering.abort();
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&tutorial).await;

    // A rabbit-rpc server that is draining: 13, and the line says so. (A
    // real one stops taking requests at once and hands back those it has
    // not started, so only a ping it had taken before can say draining:
    // played here by a responder.)
    let draining = common::unique_queue("cli_ping_draining");
    let (connection, answering) = responder(
        &draining,
        br#"{"procedure": "q", "server": "s on h pid 1", "version": "0.1.0", "state": "draining", "in_flight": 3}"#,
        &[("rpc-control", "ping")],
    )
    .await;
    let output = rabbit_rpc(&["ping", "--queue", &draining]).await;
    assert_eq!(code(&output), exit::NOT_SERVING, "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with(
            "draining: q answered by 's on h pid 1' (rabbit-rpc 0.1.0, 3 in flight) in "
        ),
        "{}",
        stdout(&output)
    );
    answering.abort();
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&draining).await;
}

#[tokio::test]
async fn serve_allow_caller_answers_that_user_only() {
    let alice = common::TestUser::create("cli_alice", ".*", ".*", ".*").await;
    let bob = common::TestUser::create("cli_bob", ".*", ".*", ".*").await;
    let queue = common::unique_queue("cli_allow_caller");
    let mut server = ServeProcess::start("fib", &queue, &["--allow-caller", &alice.name]).await;
    let answered = serve::run(&alice.url, &["call", "--queue", &queue, "30"]).await;
    assert_eq!(stdout(&answered), "832040\n", "{}", stderr(&answered));
    let denied = serve::run(&bob.url, &["call", "--queue", &queue, "30"]).await;
    assert_eq!(code(&denied), exit::REMOTE_ERROR);
    let message = stderr(&denied);
    assert!(message.contains("permission_denied"), "{message}");
    assert!(
        message.contains(&format!("user '{}' may not call", bob.name)),
        "{message}"
    );
    server.stop().await;
    assert!(
        server.log().contains("1 denied for their caller"),
        "{}",
        server.log()
    );
    common::delete_queue(&queue).await;
}
