//! Fault injection against the real broker: servers killed or stopped under
//! load, connections closed by the broker, the broker restarted.
//!
//! Every test here holds [`BROKER`], one global async lock, for its whole
//! run: two of them close connections from the broker side or stop and
//! restart the broker's application, which would break any other test
//! running at the same time. Cargo runs test binaries one after another, so
//! the tests of this file never overlap those of other files; the lock keeps
//! them from overlapping each other.
//!
//! The broker is driven with `rabbitmqctl` (the command named by the
//! `RABBITMQCTL` environment variable, default `rabbitmqctl`), so it must be
//! able to reach the broker's node.
//!
//! Nothing here sleeps to synchronise: every wait is for a condition, with a
//! deadline.

#![cfg(unix)]

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod load;
mod serve;

use std::{
    os::unix::process::ExitStatusExt, process::Stdio, sync::atomic::Ordering, time::Duration,
};

use load::{
    ANSWERED_BEFORE_FAULT, CALL_TIMEOUT, Outcome, assert_all_correct, fib, slowest, start_load,
};
use rabbit_rpc::{CallOptions, Client};
use serve::ServeProcess;
use tokio::time::Instant;

/// Held by every test of this file for its whole run; see the module doc.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many calls a load run makes.
const CALLS: usize = 3000;
/// Starts `rabbit-rpc serve fib --queue QUEUE EXTRA...` and returns once it
/// logged that it is serving.
async fn serve(queue: &str, extra: &[&str]) -> ServeProcess {
    ServeProcess::start("fib", queue, extra).await
}

// ---------------------------------------------------------------------------
// Load.

async fn client(name: &str) -> Client {
    Client::builder()
        .url(common::url())
        .connection_name(name)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .expect("connect client")
}

fn logs(servers: &[&ServeProcess]) -> String {
    servers
        .iter()
        .map(|s| format!("--- serve (pid {}) stderr:\n{}", s.pid, s.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// The broker, through rabbitmqctl.

/// The pid of the one connection named `name`, waiting up to 30 s for it to
/// appear.
async fn the_connection_named(name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids = common::connections_named(name).await;
        match pids.as_slice() {
            [pid] => return pid.clone(),
            [] => assert!(
                Instant::now() < deadline,
                "no connection named '{name}' within 30 s"
            ),
            _ => panic!("several connections named '{name}': {pids:?}"),
        }
        // Poll interval (each rabbitmqctl run takes about a second anyway).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts the broker's application when dropped, unless
/// [`BrokerStopped::start`] did: a test that fails while the broker is
/// stopped must not leave it stopped for every later test.
struct BrokerStopped {
    started: bool,
}

impl BrokerStopped {
    /// `rabbitmqctl stop_app`.
    async fn stop() -> BrokerStopped {
        // Armed before stopping: if stop_app fails halfway, start_app still
        // runs.
        let guard = BrokerStopped { started: false };
        common::rabbitmqctl(&["stop_app"]).await;
        guard
    }

    /// `rabbitmqctl start_app`; returns when it did, before
    /// `rabbitmqctl await_startup`.
    async fn start(&mut self) -> Instant {
        common::rabbitmqctl(&["start_app"]).await;
        self.started = true;
        let at = Instant::now();
        common::rabbitmqctl(&["await_startup"]).await;
        at
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        eprintln!("restarting the broker's application after a failure");
        for args in [&["start_app"][..], &["await_startup"][..]] {
            match std::process::Command::new(common::rabbitmqctl_command())
                .args(args)
                .stdin(Stdio::null())
                .status()
            {
                Ok(status) if status.success() => {}
                other => eprintln!("rabbitmqctl {args:?}: {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_one_of_two_servers_under_load_loses_no_call() {
    let _broker = BROKER.lock().await;
    let queue = common::unique_queue("faults_kill_9");
    let mut victim = serve(&queue, &["--prefetch", "50"]).await;
    let mut survivor = serve(&queue, &["--prefetch", "50"]).await;
    let client = client(&format!("{queue}.client")).await;

    let load = start_load(&client, &queue, CALLS);
    load.wait_answered(ANSWERED_BEFORE_FAULT).await;
    let answered_at_kill = load.answered.load(Ordering::SeqCst);
    victim.signal("-KILL");
    let killed_at = Instant::now();
    let status = victim.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.signal(), Some(9), "{status}");

    let started = load.started;
    let outcomes = load
        .finish(Duration::from_secs(120), &logs(&[&victim, &survivor]))
        .await;
    let took = started.elapsed();
    assert_all_correct(&outcomes, CALLS, &logs(&[&victim, &survivor]));
    eprintln!(
        "kill -9 after {answered_at_kill} answers: {CALLS} calls all correct in {took:?} \
         ({:?} after the kill); slowest call {:?}; {} duplicate or late replies dropped",
        killed_at.elapsed(),
        slowest(&outcomes),
        client.unknown_replies()
    );

    assert!(survivor.still_running(), "{}", survivor.log());
    survivor.stop().await;
    let _ = client.close().await;
    common::delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_one_of_two_servers_under_load_exits_0_within_10s_and_loses_no_call() {
    let _broker = BROKER.lock().await;
    let queue = common::unique_queue("faults_sigterm");
    let mut stopped = serve(&queue, &["--prefetch", "50"]).await;
    let mut survivor = serve(&queue, &["--prefetch", "50"]).await;
    let client = client(&format!("{queue}.client")).await;

    let load = start_load(&client, &queue, CALLS);
    load.wait_answered(ANSWERED_BEFORE_FAULT).await;
    let answered_at_signal = load.answered.load(Ordering::SeqCst);
    stopped.signal("-TERM");
    let signalled_at = Instant::now();
    let status = stopped.exit_within(Duration::from_secs(10)).await;
    let exited_after = signalled_at.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "ended with {status} after SIGTERM:\n{}",
        stopped.log()
    );

    let started = load.started;
    let outcomes = load
        .finish(Duration::from_secs(120), &logs(&[&stopped, &survivor]))
        .await;
    let took = started.elapsed();
    assert_all_correct(&outcomes, CALLS, &logs(&[&stopped, &survivor]));
    eprintln!(
        "SIGTERM after {answered_at_signal} answers: exited 0 after {exited_after:?}; \
         {CALLS} calls all correct in {took:?}; slowest call {:?}; {} duplicate or late replies dropped",
        slowest(&outcomes),
        client.unknown_replies()
    );

    assert!(survivor.still_running(), "{}", survivor.log());
    survivor.stop().await;
    let _ = client.close().await;
    common::delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_side_close_of_server_and_client_connections_under_load_recovers() {
    let _broker = BROKER.lock().await;
    let queue = common::unique_queue("faults_close");
    let server_name = format!("{queue}.server");
    let client_name = format!("{queue}.client");
    let mut server = serve(&queue, &["--connection-name", &server_name]).await;
    let client = client(&client_name).await;
    let server_connection = the_connection_named(&server_name).await;
    let client_connection = the_connection_named(&client_name).await;

    // Load with no end of its own: 100 calls stay in flight until the
    // broker has closed both connections, so the close hits calls in every
    // stage (being published, queued, in the server's hands, being
    // answered). Every call that ends after the close began counts as in
    // flight at it.
    let load = start_load(&client, &queue, usize::MAX);
    load.wait_answered(ANSWERED_BEFORE_FAULT).await;
    let close_started = Instant::now();
    let close_server = ["close_connection", &server_connection, "fault injection"];
    let close_client = ["close_connection", &client_connection, "fault injection"];
    tokio::join!(
        common::rabbitmqctl(&close_server),
        common::rabbitmqctl(&close_client)
    );
    let closed = Instant::now();
    load.stop.store(true, Ordering::SeqCst);

    let outcomes = load
        .finish(Duration::from_secs(25), &logs(&[&server]))
        .await;
    let (before, in_flight): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.ended < close_started);
    let broken: Vec<&&Outcome> = before.iter().filter(|o| !o.is_correct()).collect();
    assert!(
        broken.is_empty(),
        "calls before the close failed: {}",
        broken
            .iter()
            .take(10)
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!in_flight.is_empty(), "no call was in flight at the close");
    let bound = closed + Duration::from_secs(5);
    let bad: Vec<&&Outcome> = in_flight
        .iter()
        .filter(|o| {
            let acceptable =
                o.is_correct() || matches!(&o.result, Err(e) if e.is_connection_lost());
            !acceptable || o.ended > bound
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} calls in flight at the close neither answered correctly nor failed with \
         connection lost within 5 s of it; first ones:\n{}\n{}",
        bad.len(),
        in_flight.len(),
        bad.iter()
            .take(10)
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join("\n"),
        logs(&[&server])
    );
    let lost = in_flight
        .iter()
        .filter(|o| matches!(&o.result, Err(e) if e.is_connection_lost()))
        .count();
    let last_end = in_flight.iter().map(|o| o.ended).max().unwrap();
    // The client's connection closed under 100 calls: some were waiting for
    // a reply on it. (None failing would mean the close hit nothing.)
    assert!(lost > 0, "no call in flight failed with connection lost");

    // The same client object, and the same server process, get going again
    // by themselves.
    let recovered_after = call_until_answered(&client, &queue, closed, &[&server]).await;
    let load = start_load(&client, &queue, 500);
    let outcomes = load
        .finish(Duration::from_secs(60), &logs(&[&server]))
        .await;
    assert_all_correct(&outcomes, 500, &logs(&[&server]));
    assert!(
        server.still_running(),
        "serve exited after its connection was closed:\n{}",
        server.log()
    );
    let new_server_connection = the_connection_named(&server_name).await;
    let new_client_connection = the_connection_named(&client_name).await;
    assert_ne!(new_server_connection, server_connection);
    assert_ne!(new_client_connection, client_connection);
    eprintln!(
        "broker-side close (took {:?}): {} calls ended after it began, the last {:?} after it \
         ({lost} connection lost, the rest answered); a call on the same client succeeded {recovered_after:?} after it",
        closed - close_started,
        in_flight.len(),
        last_end.saturating_duration_since(closed),
    );

    server.stop().await;
    let _ = client.close().await;
    common::delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_under_a_running_server_and_a_long_lived_client_recovers_within_20s() {
    let _broker = BROKER.lock().await;
    let queue = common::unique_queue("faults_restart");
    let mut server = serve(&queue, &["--http", "127.0.0.1:0"]).await;
    let probes = server.http_address();
    assert_eq!(common::http_get(&probes, "/readyz").await.0, 200);
    let client = client(&format!("{queue}.client")).await;
    let reply = client
        .call(&queue, "30")
        .await
        .expect("call before restart");
    assert_eq!(reply.text(), fib(30).to_string());

    let mut broker = BrokerStopped::stop().await;
    // The server's readiness probe fails while the broker is away (the
    // connection was lost while stop_app ran), its liveness probe does not.
    let (status, why) = common::http_get(&probes, "/readyz").await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("reconnecting"), "{why}");
    assert_eq!(common::http_get(&probes, "/livez").await.0, 200);
    // While the broker is down a call fails; it does not hang past its
    // timeout.
    let down = CallOptions::new().timeout(Duration::from_secs(2));
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.call_with(&queue, "30", &down),
    )
    .await
    .expect("a call with a 2 s timeout hung for 10 s while the broker was down");
    assert!(outcome.is_err(), "answered while the broker was down");
    let started = broker.start().await;

    let recovered_after = call_until_answered(&client, &queue, started, &[&server]).await;
    assert!(
        server.still_running(),
        "serve exited during the broker restart:\n{}",
        server.log()
    );
    eprintln!(
        "broker restart: a call on the same client succeeded {recovered_after:?} after start_app returned"
    );
    common::wait_until(Duration::from_secs(20), "the server is ready again", || {
        let probes = probes.clone();
        async move { common::http_get(&probes, "/readyz").await.0 == 200 }
    })
    .await;
    drop(broker);

    server.stop().await;
    let _ = client.close().await;
    common::delete_queue(&queue).await;
}

/// Calls fib(30) on `client` with short timeouts until it is answered
/// correctly, failing the test unless that happens within 20 s of `since`;
/// returns how long after `since` it was.
async fn call_until_answered(
    client: &Client,
    queue: &str,
    since: Instant,
    servers: &[&ServeProcess],
) -> Duration {
    let deadline = since + Duration::from_secs(20);
    let options = CallOptions::new().timeout(Duration::from_secs(2));
    let mut errors = Vec::new();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            client.call_with(queue, "30", &options),
        )
        .await;
        match attempt {
            Ok(Ok(reply)) => {
                assert_eq!(reply.text(), fib(30).to_string());
                return since.elapsed();
            }
            Ok(Err(error)) => errors.push(format!("{:?}: {error}", since.elapsed())),
            Err(_) => errors.push(format!(
                "{:?}: a call with a 2 s timeout hung for 5 s",
                since.elapsed()
            )),
        }
        assert!(
            Instant::now() < deadline,
            "no call on the same client succeeded within 20 s; last errors:\n{}\n{}",
            errors[errors.len().saturating_sub(10)..].join("\n"),
            logs(servers)
        );
        // Poll interval: failures like "no such queue" come back at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `bench` needs after the cut to show that its run goes on: the
/// client's reconnection, then at least one whole second of answers in its
/// timeline (under a second on any machine; the rest is margin).
const AFTER_THE_CUT: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_runs_its_whole_duration_across_a_broker_side_close_of_its_connection() {
    let _broker = BROKER.lock().await;
    // A server in this process, whose count of answered requests says when
    // the bench is under way at once (the broker's traffic statistics lag
    // by up to 5 s on RabbitMQ 4.3, which once left no time after the cut).
    let server = common::TestServer::start("faults_bench_close", common::echo()).await;
    // The cut itself is two rabbitmqctl runs, 0.6 s on an idle machine and
    // seconds on a loaded one, during which the bench's clock runs on. So
    // the bench's duration is made relative to the cut: a run whose cut
    // left it less than AFTER_THE_CUT says nothing about what follows a
    // cut, and is run again for twice as long as that cut took, plus
    // AFTER_THE_CUT.
    let mut duration = Duration::from_secs(8);
    for _ in 0..4 {
        match bench_across_a_cut(&server, duration).await {
            Ok(()) => {
                server.stop().await.unwrap();
                return;
            }
            Err(cut_after) => {
                eprintln!(
                    "the cut came {cut_after:?} into a {duration:?} bench, too late to tell; \
                     running it again for longer"
                );
                duration = cut_after * 2 + AFTER_THE_CUT;
            }
        }
    }
    panic!("four cuts in a row left the bench under {AFTER_THE_CUT:?} to run");
}

/// Runs `rabbit-rpc bench --duration DURATION` against `server`, closes
/// its connection from the broker's side once the server has answered it
/// 300 times, and checks that the run went on to its end. `Err` with how
/// far into the run the cut came when that left the bench under
/// [`AFTER_THE_CUT`] (the bench is killed; nothing was checked).
async fn bench_across_a_cut(
    server: &common::TestServer,
    duration: Duration,
) -> Result<(), Duration> {
    const BENCH: &str = "rabbit-rpc bench";
    let answered_before = server.stats.answered();
    let mut bench = tokio::process::Command::new(serve::BIN)
        .args(["bench", "--queue", &server.queue])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .args(["--inflight", "50", "--json"])
        .env("AMQP_URL", common::url())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rabbit-rpc bench");
    let spawned = Instant::now();
    let stats = server.stats.clone();
    common::wait_until(Duration::from_secs(60), "the bench is under way", || {
        let answered = stats.answered() - answered_before;
        async move { answered >= 300 }
    })
    .await;
    assert_eq!(common::close_connections_named(BENCH).await, 1);
    // Counted from before the bench started, whose own clock starts once it
    // connected and made its first call: the bench has at least this long
    // left.
    let cut_after = spawned.elapsed();
    if cut_after + AFTER_THE_CUT > duration {
        bench.kill().await.expect("kill the bench");
        // Its connections gone, so the next run's is the only one named so.
        common::wait_until(
            Duration::from_secs(30),
            "the bench's connection closes",
            || async { common::connections_named(BENCH).await.is_empty() },
        )
        .await;
        return Err(cut_after);
    }
    eprintln!("the cut came {cut_after:?} into a {duration:?} bench");
    let cut_at = server.stats.answered();

    let output = tokio::time::timeout(duration + Duration::from_secs(60), bench.wait_with_output())
        .await
        .expect("the bench ends")
        .expect("bench output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("no JSON line:\n{stdout}\n{stderr}"));
    assert!(
        summary["duration_s"].as_f64().unwrap() >= duration.as_secs_f64(),
        "stopped early: {last}"
    );
    let errors = summary["errors"].as_u64().unwrap();
    let kinds = summary["errors_by_kind"].as_object().unwrap();
    assert!(
        kinds.keys().all(|kind| kind == "connection_lost"),
        "errors other than connection_lost: {last}"
    );
    assert!(
        (1..=50).contains(&errors),
        "only the calls in flight fail: {last}"
    );
    assert_eq!(
        output.status.code(),
        Some(i32::from(rabbit_rpc_cli::exit::FAILURE))
    );
    let timeline = summary["timeline"].as_array().unwrap();
    let cut = timeline
        .iter()
        .position(|second| second["errors"].as_u64().unwrap() > 0)
        .expect("the timeline shows when calls failed");
    let answered_after: f64 = timeline[cut + 1..]
        .iter()
        .map(|second| second["rps"].as_f64().unwrap())
        .sum();
    assert!(
        answered_after > 0.0,
        "no call answered after the cut: {last}"
    );
    assert!(
        stdout.contains("outage") && stdout.contains("failed calls"),
        "{stdout}"
    );
    assert!(
        server.stats.answered() > cut_at,
        "the server answered nothing after the cut: {last}"
    );
    Ok(())
}
