//! Node loss on a 3-node RabbitMQ cluster under load: the cluster of
//! `scripts/cluster.sh` (nodes rc1..rc3 on 127.0.0.1:5701..5703, beside the
//! default broker), brought up by these tests if it is not running.
//!
//! A quorum request queue, replicated on all three nodes; two `rabbit-rpc
//! serve fib` processes, one on node 1 and one on node 2; a client on node
//! 3; each given every node's URL, its own node first. Under steady load,
//! one node at a time is stopped and started again (`rabbitmqctl stop_app`
//! and `start_app`): the client's, then a server's, then the one that leads
//! the queue. Checked: no call outlives its timeout; the only failures are
//! calls in flight on a connection the stop cut, each reported as a lost
//! connection within a second of the cut (none at all for a resilient
//! client); throughput comes back within 5 s of each stop; nothing is left
//! in the queue; both servers end up serving.
//!
//! The tests of this file hold one lock: they stop nodes of the same
//! cluster. Cargo runs test binaries one after another, so no other test
//! file's tests run beside them.

#![cfg(unix)]

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod load;
mod serve;

use std::{sync::atomic::Ordering, time::Duration};

use load::{CALL_TIMEOUT, Load, Outcome, start_load_with};
use rabbit_rpc::{Client, ReplyQueue};
use serve::ServeProcess;
use tokio::time::Instant;

/// Held by every test of this file for its whole run; see the module doc.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nodes' AMQP ports: node `i` (1-based) listens on `PORTS[i - 1]`.
const PORTS: [u16; 3] = [5701, 5702, 5703];

/// Calls kept in flight.
const IN_FLIGHT: usize = 50;

/// How soon throughput must come back after a node stops.
const RECOVERY: Duration = Duration::from_secs(5);

/// How soon a call cut off by a stop must be told.
const REPORTED_WITHIN: Duration = Duration::from_secs(1);

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh")
}

/// `scripts/cluster.sh ARGS`, failing the test if it fails.
async fn cluster(args: &[&str]) {
    let script = script();
    let script = script.to_str().expect("a UTF-8 path");
    common::run_checked(script, args, Duration::from_secs(180)).await;
}

/// Every node's URL, node `first` (1-based) first.
fn urls(first: usize) -> Vec<String> {
    (0..3)
        .map(|i| {
            let port = PORTS[(first - 1 + i) % 3];
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
        })
        .collect()
}

/// `rabbitmqctl -n rcN@localhost ARGS`.
async fn ctl(node: usize, args: &[&str]) -> String {
    let node = format!("rc{node}@localhost");
    common::rabbitmqctl(&[&["-n", node.as_str()][..], args].concat()).await
}

/// The node (1-based) that leads `queue`, asked of `ask`, a running node.
async fn leader(queue: &str, ask: usize) -> usize {
    let listing = ctl(
        ask,
        &["list_queues", "-q", "--no-table-headers", "name", "leader"],
    )
    .await;
    let leader = listing
        .lines()
        .find_map(|line| {
            let (name, leader) = line.split_once('\t')?;
            (name == queue).then(|| leader.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no leader for '{queue}' in:\n{listing}"));
    (1..=3)
        .find(|n| leader == format!("rc{n}@localhost"))
        .unwrap_or_else(|| panic!("leader '{leader}' is none of rc1..rc3"))
}

/// Starts the node again when dropped, unless [`Stopped::start`] did: a test
/// that fails while a node is stopped must not leave it stopped.
struct Stopped {
    node: usize,
    started: bool,
}

impl Stopped {
    async fn stop(node: usize) -> Stopped {
        let guard = Stopped {
            node,
            started: false,
        };
        cluster(&["stop", &node.to_string()]).await;
        guard
    }

    async fn start(mut self) {
        cluster(&["start", &self.node.to_string()]).await;
        self.started = true;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            let _ = std::process::Command::new(script())
                .args(["start", &self.node.to_string()])
                .status();
        }
    }
}

/// Deletes the queue (through node 1) when dropped.
struct DeleteOnCluster(String);

impl Drop for DeleteOnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::rabbitmqctl_command())
            .args(["-q", "-n", "rc1@localhost", "delete_queue", &self.0])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// One stop or start, as the load saw it.
struct Event {
    what: String,
    /// When the command was issued, and when it returned.
    began: Instant,
    ended: Instant,
}

/// Runs `change` (a stop or a start) under `load`, then lets the load run
/// until another 200 calls are answered (within a minute).
async fn under_load<F, T>(load: &Load, what: String, change: F) -> (Event, T)
where
    F: std::future::Future<Output = T>,
{
    let began = Instant::now();
    let value = change.await;
    let ended = Instant::now();
    eprintln!(
        "{what}: done in {:?} ({} calls answered so far)",
        ended - began,
        load.answered.load(Ordering::SeqCst)
    );
    let answered = load.answered.load(Ordering::SeqCst);
    load.wait_answered(answered + 200).await;
    (Event { what, began, ended }, value)
}

/// The longest time without an answered call from `from` to `to`: how long
/// throughput was gone, as the calls saw it.
fn longest_silence(outcomes: &[Outcome], from: Instant, to: Instant) -> Duration {
    let mut answered: Vec<Instant> = outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.ended >= from && o.ended <= to)
        .map(|o| o.ended)
        .collect();
    answered.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for at in answered.into_iter().chain([to]) {
        longest = longest.max(at.duration_since(last));
        last = at;
    }
    longest
}

/// The client's log (rabbit_rpc at debug level) in the test's output,
/// shown if the test fails.
fn log_client() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rabbit_rpc=debug")
        .with_test_writer()
        .try_init();
}

/// What a run under load saw: the stops and starts, every call's outcome,
/// the servers' logs, and when the load stopped.
struct Run {
    events: Vec<Event>,
    outcomes: Vec<Outcome>,
    logs: String,
    load_stopped: Instant,
}

async fn node_loss_under_load(reply_queue: ReplyQueue) -> Run {
    log_client();
    cluster(&["up"]).await;
    let queue = common::unique_queue("cluster");
    let _cleanup = DeleteOnCluster(queue.clone());
    let mut servers = Vec::new();
    for node in [1, 2] {
        let mut extra: Vec<String> = urls(node)
            .into_iter()
            .flat_map(|url| ["--url".to_owned(), url])
            .collect();
        extra.extend([
            "--connection-name".to_owned(),
            format!("{queue} server {node}"),
        ]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        servers.push(ServeProcess::start("fib", &queue, &extra).await);
    }
    let client = Client::builder()
        .urls(urls(3))
        .connection_name(format!("{queue} client"))
        .timeout(CALL_TIMEOUT)
        .reply_queue(reply_queue)
        .connect()
        .await
        .expect("connect the client to node 3");
    let load = start_load_with(&client, &queue, usize::MAX, IN_FLIGHT);
    load.wait_answered(300).await;

    let mut events = Vec::new();
    for which in [
        "the client's node",
        "a server's node",
        "the queue leader's node",
    ] {
        let node = match which {
            "the client's node" => 3,
            "a server's node" => 1,
            _ => leader(&queue, 2).await,
        };
        let (event, stopped) = under_load(
            &load,
            format!("stop rc{node} ({which})"),
            Stopped::stop(node),
        )
        .await;
        events.push(event);
        let (event, ()) = under_load(&load, format!("start rc{node}"), stopped.start()).await;
        events.push(event);
    }

    // Both servers serve: each is consuming from the queue.
    let consumers = ctl(
        1,
        &["list_consumers", "-q", "--no-table-headers", "queue_name"],
    )
    .await;
    let consuming = consumers
        .lines()
        .filter(|line| line.trim() == queue)
        .count();
    load.stop.store(true, Ordering::SeqCst);
    let load_stopped = Instant::now();
    let logs = servers
        .iter()
        .map(|s| format!("--- serve (pid {}):\n{}", s.pid, s.log()))
        .collect::<Vec<_>>()
        .join("\n");
    let outcomes = load.finish(CALL_TIMEOUT * 2, &logs).await;
    assert_eq!(
        consuming, 2,
        "two servers consume the queue:\n{consumers}\n{logs}"
    );
    for server in &mut servers {
        assert!(server.still_running(), "a server exited:\n{logs}");
        server.stop().await;
    }
    let answered_by_each: Vec<String> = servers
        .iter()
        .flat_map(|s| s.lines(|line| line.contains("stopped:")))
        .collect();
    assert_eq!(answered_by_each.len(), 2, "{logs}");
    for line in &answered_by_each {
        assert!(!line.contains("stopped: 0 answered"), "{line}");
    }
    let _ = client.close().await;
    Run {
        events,
        outcomes,
        logs,
        load_stopped,
    }
}

/// The checks both modes share: no call outlives its timeout, no call is
/// answered wrongly, and around each stop or start (from when the command
/// was issued until 5 s after it returned, or until the load stopped if
/// that came first) no stretch without answers is longer than
/// [`RECOVERY`]: throughput is back within 5 s.
fn check_common(run: &Run) {
    let Run {
        events,
        outcomes,
        logs,
        load_stopped,
    } = run;
    let silences: Vec<Duration> = events
        .iter()
        .map(|e| longest_silence(outcomes, e.began, (e.ended + RECOVERY).min(*load_stopped)))
        .collect();
    let report = events
        .iter()
        .zip(&silences)
        .map(|(e, silence)| {
            format!(
                "{}: took {:?}; longest time without an answer {silence:?}",
                e.what,
                e.ended - e.began
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{report}");
    let slowest = load::slowest(outcomes);
    assert!(
        slowest <= CALL_TIMEOUT + Duration::from_secs(1),
        "a call took {slowest:?}\n{report}"
    );
    for (event, silence) in events.iter().zip(&silences) {
        assert!(
            *silence <= RECOVERY,
            "{}: no answer for {silence:?}\n{report}\n{logs}",
            event.what
        );
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result.is_ok() && !o.is_correct())
        .map(Outcome::describe)
        .collect();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stop_under_load_costs_only_the_calls_in_flight_on_the_cut_connection() {
    let _cluster = CLUSTER.lock().await;
    let run = node_loss_under_load(ReplyQueue::DirectReplyTo).await;
    check_common(&run);
    let Run {
        events,
        outcomes,
        logs,
        ..
    } = run;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    for outcome in &failed {
        let error = outcome.result.as_ref().unwrap_err();
        assert!(
            error.is_connection_lost(),
            "a failure other than a lost connection: {}\n{logs}",
            outcome.describe()
        );
        // In flight when a stop cut its connection, and told within a
        // second of the stop's end.
        let cut = events
            .iter()
            .filter(|e| e.what.starts_with("stop"))
            .find(|e| outcome.started <= e.ended && outcome.ended >= e.began);
        let cut = cut
            .unwrap_or_else(|| panic!("a call failed outside every stop: {}", outcome.describe()));
        assert!(
            outcome.ended <= cut.ended + REPORTED_WITHIN,
            "told {:?} after '{}' ended: {}",
            outcome.ended - cut.ended,
            cut.what,
            outcome.describe()
        );
    }
    if std::env::var_os("CLUSTER_TEST_LOGS").is_some() {
        eprintln!("{logs}");
    }
    eprintln!(
        "{} calls, {} answered, {} failed with a lost connection",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stop_under_load_fails_no_resilient_call() {
    let _cluster = CLUSTER.lock().await;
    let run = node_loss_under_load(ReplyQueue::Resilient).await;
    check_common(&run);
    let Run { outcomes, logs, .. } = run;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(Outcome::describe)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} resilient calls failed: {:?}\n{logs}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)]
    );
    eprintln!("{} resilient calls, none failed", outcomes.len());
}
