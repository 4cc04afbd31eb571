//! Shared helpers for the integration tests. Every test runs against the real
//! broker at `AMQP_URL` (default: the local guest account) on queues of its
//! own, so tests run in parallel and leave nothing behind.

#![allow(dead_code, missing_docs)]

use std::{future::Future, time::Duration};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
};
use rabbit_rpc::{CallOptions, Client, Error, Handler, Reply, Server};
use tokio::{sync::oneshot, task::JoinHandle};

pub fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| rabbit_rpc::BrokerUrl::DEFAULT.to_owned())
}

/// A queue name no other test uses.
pub fn unique_queue(test: &str) -> String {
    format!("test.{test}.{}", uuid::Uuid::new_v4().simple())
}

/// Queue arguments that make the broker delete the queue a minute after its
/// last consumer leaves, so even a test that panics cleans up.
pub fn expiring() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    arguments
}

/// A handler that answers with the request body.
pub fn echo() -> impl Handler {
    rabbit_rpc::handler_fn(|request: rabbit_rpc::Request| async move {
        Ok::<_, rabbit_rpc::Status>(request.into_body())
    })
}

pub async fn client() -> Client {
    Client::builder()
        .url(url())
        .connect()
        .await
        .expect("connect client")
}

/// A server running in the background until [`TestServer::stop`].
pub struct TestServer {
    pub queue: String,
    pub stats: rabbit_rpc::ServerStats,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl TestServer {
    /// Binds `handler` on a fresh queue (the default declaration, plus
    /// `x-expires`); when this returns the server is consuming.
    pub async fn start<H: Handler>(test: &str, handler: H) -> TestServer {
        TestServer::start_with(test, handler, |builder| builder).await
    }

    pub async fn start_with<H: Handler>(
        test: &str,
        handler: H,
        configure: impl FnOnce(rabbit_rpc::ServerBuilder) -> rabbit_rpc::ServerBuilder,
    ) -> TestServer {
        TestServer::start_on(unique_queue(test), handler, |builder| {
            configure(builder.queue_argument("x-expires", 60_000))
        })
        .await
    }

    /// Binds `handler` on `queue`; with no queue setting from `configure`,
    /// the server joins the queue as it exists.
    pub async fn start_on<H: Handler>(
        queue: String,
        handler: H,
        configure: impl FnOnce(rabbit_rpc::ServerBuilder) -> rabbit_rpc::ServerBuilder,
    ) -> TestServer {
        let builder = Server::builder().url(url()).procedure(&queue, handler);
        let server = configure(builder).bind().await.expect("bind server");
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_shutdown(async {
            let _ = stopped.await;
        }));
        TestServer {
            queue,
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the server down gracefully, deletes its queue and returns how
    /// `serve` ended.
    pub async fn stop(self) -> Result<(), Error> {
        let queue = self.queue.clone();
        let result = self.drain().await;
        delete_queue(&queue).await;
        result
    }

    /// Shuts the server down gracefully, leaving its queue in place.
    pub async fn drain(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task")
    }

    /// Asks the server to shut down without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A plain lapin connection and channel, for playing a raw tutorial peer.
pub async fn raw_channel() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("raw connect");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

/// Declares `queue` the way a [`TestServer`] does: as our server declares
/// a queue by default (durable, quorum), and expiring.
pub async fn declare(channel: &Channel, queue: &str) {
    let mut arguments = expiring();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .expect("declare queue");
}

/// Consumes `queue` on `channel`; `no_ack` as the tutorial's client consumes
/// its reply queue.
pub async fn consume(channel: &Channel, queue: &str, no_ack: bool) -> lapin::Consumer {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume")
}

/// An exclusive, server-named reply queue consumed without acks: what the
/// tutorial's client uses for replies.
pub async fn reply_queue(channel: &Channel) -> (String, lapin::Consumer) {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions::exclusive(),
            FieldTable::default(),
        )
        .await
        .expect("declare reply queue");
    let name = queue.name().to_string();
    let consumer = consume(channel, &name, true).await;
    (name, consumer)
}

/// Declares `queue` with a consumer that takes requests and never answers
/// or acknowledges them: a server that hangs. It lasts as long as the
/// returned connection.
pub async fn silent_server(queue: &str) -> (Connection, lapin::Consumer) {
    let (connection, channel) = raw_channel().await;
    declare(&channel, queue).await;
    let consumer = consume(&channel, queue, false).await;
    (connection, consumer)
}

pub async fn publish(
    channel: &Channel,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    channel
        .basic_publish(
            "".into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish");
}

pub async fn delete_queue(queue: &str) {
    let (connection, channel) = raw_channel().await;
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
}

/// How many messages wait in `queue` (ready, not delivered).
pub async fn ready_messages(queue: &str) -> u32 {
    let (connection, channel) = raw_channel().await;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    let _ = connection.close(200, "done".into()).await;
    declared.message_count()
}

/// The `rabbitmqctl` to run: `$RABBITMQCTL`, else the one on the PATH.
pub fn rabbitmqctl_command() -> String {
    std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned())
}

/// Runs `rabbitmqctl ARGS` and returns its stdout; fails the test if it
/// fails or takes over a minute.
pub async fn rabbitmqctl(args: &[&str]) -> String {
    run_checked(&rabbitmqctl_command(), args, Duration::from_secs(60)).await
}

/// Runs `program ARGS` and returns its stdout; fails the test if it fails
/// or takes longer than `limit` (and then kills it).
pub async fn run_checked(program: &str, args: &[&str], limit: Duration) -> String {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} hung"))
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `(durable, type, arguments)` of `queue` as `rabbitmqctl list_queues`
/// prints them, e.g. `("true", "quorum", "[{\"x-queue-type\",\"quorum\"}]")`.
pub async fn queue_info(queue: &str) -> Option<(String, String, String)> {
    let listing = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "durable",
        "type",
        "arguments",
    ])
    .await;
    listing.lines().find_map(|line| {
        let mut fields = line.split('\t');
        (fields.next()? == queue).then(|| {
            let durable = fields.next()?.to_owned();
            let kind = fields.next()?.to_owned();
            let arguments = fields.next()?.to_owned();
            Some((durable, kind, arguments))
        })?
    })
}

/// A broker user of the test's own, with the permissions given on vhost
/// `/` (configure, write, read: regular expressions, `^$` for none);
/// deleted when dropped, even when the test fails.
pub struct TestUser {
    pub name: String,
    pub url: String,
}

impl TestUser {
    pub async fn create(test: &str, configure: &str, write: &str, read: &str) -> TestUser {
        let name = unique_queue(test);
        let password = "test-password";
        rabbitmqctl(&["-q", "add_user", &name, password]).await;
        let user = TestUser {
            url: url().replacen("guest:guest@", &format!("{name}:{password}@"), 1),
            name,
        };
        assert!(
            user.url.contains(&user.name),
            "AMQP_URL logs in as guest:guest"
        );
        rabbitmqctl(&[
            "-q",
            "set_permissions",
            "-p",
            "/",
            &user.name,
            configure,
            write,
            read,
        ])
        .await;
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new(rabbitmqctl_command())
            .args(["-q", "delete_user", &self.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Deletes its queue when dropped, even when the test fails: queues
/// declared exactly as a tutorial does carry no `x-expires`.
pub struct DeleteOnDrop(pub String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(rabbitmqctl_command())
            .args(["-q", "delete_queue", &self.0])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// How many messages of `queue` are delivered but not yet acknowledged;
/// `None` while the broker does not list the queue.
///
/// Only for classic queues: RabbitMQ 3.10 refreshes a quorum queue's counts
/// in `list_queues` every few seconds (zeros at first), so a check that
/// nothing is unacknowledged could pass on stale numbers.
pub async fn unacked_messages(queue: &str) -> Option<u64> {
    let listing = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    ])
    .await;
    listing.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(queue)).then(|| fields.next()?.parse().ok())?
    })
}

/// The broker-side pids of the connections whose client-provided
/// `connection_name` is `name`.
///
/// On RabbitMQ 3.10, `list_connections -q --no-table-headers pid
/// client_properties` prints one line per connection: the pid, a tab, and
/// the properties as an Erlang-ish list, e.g.
/// `<rabbit@host.1795484019.836.0>\t[{"capabilities",[...]},{"connection_name","NAME"},...]`.
pub async fn connections_named(name: &str) -> Vec<String> {
    let listing = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .await;
    let property = format!("{{\"connection_name\",\"{name}\"}}");
    listing
        .lines()
        .filter_map(|line| {
            let (pid, properties) = line.split_once('\t')?;
            properties
                .contains(&property)
                .then(|| pid.trim().to_owned())
        })
        .collect()
}

/// Closes, from the broker's side, every connection whose client-given name
/// is `name`; how many it closed.
pub async fn close_connections_named(name: &str) -> usize {
    let pids = connections_named(name).await;
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "fault injection by a test"]).await;
    }
    pids.len()
}

/// `GET path` from the HTTP server at `address` (`host:port`): its status
/// code and body. Enough HTTP/1.0 for probing an operations endpoint.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned());
    (status, body)
}

/// Starts a call in the background, with `timeout`.
pub fn spawn_call(
    client: &Client,
    queue: &str,
    body: &str,
    timeout: Duration,
) -> JoinHandle<Result<Reply, Error>> {
    let (client, queue, body) = (client.clone(), queue.to_owned(), body.to_owned());
    tokio::spawn(async move {
        client
            .call_with(&queue, body, &CallOptions::new().timeout(timeout))
            .await
    })
}

/// The next delivery from `consumer`, failing the test after 10 s.
pub async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("no delivery within 10 s")
        .expect("the consumer ended")
        .expect("a delivery")
}

/// Waits until `queue` holds exactly `count` ready messages, failing the
/// test after 10 s.
pub async fn wait_for_ready(queue: &str, count: u32, what: &str) {
    wait_until(Duration::from_secs(10), what, || async move {
        ready_messages(queue).await == count
    })
    .await;
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
