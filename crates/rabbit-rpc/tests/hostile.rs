//! A server the client does not trust: one that answers with bodies far
//! over the client's `max_reply_size`, floods it with replies for calls it
//! never made, sends headers of the wrong type, or answers twice. None of
//! it may crash the client or make it grow without bound, and each call
//! gets the right outcome. The hostile server is a raw lapin consumer that
//! publishes whatever it likes to the request's `reply_to` (direct
//! reply-to). Against the real broker.
//!
//! The memory figures are the test process's resident set (`VmRSS`), which
//! holds the hostile server too: its publishes pass through memory as
//! well, so the bounds are on the client and the server together.

mod common;

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicAckOptions, BasicPublishOptions},
    types::{AMQPValue, FieldTable},
};
use rabbit_rpc::{CallOptions, Client, ClientBuilder, Code, Error};
use tokio::task::JoinHandle;

const MIB: usize = 1024 * 1024;

/// The tests that measure the process's memory take turns: tests of one
/// binary share the process.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's resident set, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// A request as the hostile server sees it.
struct Request {
    body: Vec<u8>,
    correlation_id: String,
    reply_to: String,
}

/// A server that answers each request with whatever `answer` publishes.
struct HostileServer {
    queue: String,
    connection: Connection,
    task: JoinHandle<()>,
}

impl HostileServer {
    async fn start<F, Fut>(test: &str, answer: F) -> HostileServer
    where
        F: Fn(Channel, Request) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let queue = common::unique_queue(test);
        let (connection, channel) = common::raw_channel().await;
        common::declare(&channel, &queue).await;
        let mut requests = common::consume(&channel, &queue, false).await;
        let task = tokio::spawn(async move {
            while let Some(Ok(delivery)) = requests.next().await {
                let property = |value: &Option<lapin::types::ShortString>| {
                    value
                        .as_ref()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default()
                };
                let request = Request {
                    correlation_id: property(delivery.properties.correlation_id()),
                    reply_to: property(delivery.properties.reply_to()),
                    body: delivery.data.clone(),
                };
                answer(channel.clone(), request).await;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack the request");
            }
        });
        HostileServer {
            queue,
            connection,
            task,
        }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.connection.close(200, "done".into()).await;
        common::delete_queue(&self.queue).await;
    }
}

/// Publishes one reply to `reply_to`.
async fn send(channel: &Channel, reply_to: &str, properties: BasicProperties, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish a reply");
}

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default().with_correlation_id(id.into())
}

/// The broker's `max_message_size`: 128 MiB by default on 3.x, 16 MiB on
/// 4.x.
async fn broker_max_message_size() -> usize {
    let answer =
        common::rabbitmqctl(&["eval", "application:get_env(rabbit, max_message_size)."]).await;
    let digits: String = answer.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("max_message_size from rabbitmqctl eval: {answer}"))
}

fn client(max_reply_size: usize) -> ClientBuilder {
    Client::builder()
        .url(common::url())
        .timeout(Duration::from_secs(60))
        .max_reply_size(max_reply_size)
}

#[tokio::test]
async fn replies_over_max_reply_size_fail_their_call_and_are_not_kept() {
    let _turn = MEMORY.lock().await;
    // 100 MiB where the broker takes it (3.x), else as large as it takes
    // (4.x: 16 MiB), with the client's limit below that.
    let size = (100 * MIB).min(broker_max_message_size().await - 64 * 1024);
    let max = ClientBuilder::DEFAULT_MAX_REPLY_SIZE.min(size / 2);
    // Enough replies that a client keeping their bodies would hold 400 MiB.
    let replies = (400 * MIB).div_ceil(size);
    let big = Arc::new(vec![b'x'; size]);
    let server = HostileServer::start("hostile_large", move |channel, request| {
        let big = Arc::clone(&big);
        async move {
            let body: &[u8] = if request.body == b"large" {
                &big
            } else {
                &request.body
            };
            send(
                &channel,
                &request.reply_to,
                with_id(&request.correlation_id),
                body,
            )
            .await;
        }
    })
    .await;
    let client = client(max).connect().await.expect("connect");
    assert_eq!(
        client.call(&server.queue, "warm-up").await.unwrap().text(),
        "warm-up"
    );
    let before = rss();
    let mut grown = 0;
    for _ in 0..replies {
        let error = client.call(&server.queue, "large").await.unwrap_err();
        assert!(
            matches!(error, Error::ReplyTooLarge { size: s, max: m } if s == size && m == max),
            "{error:?}"
        );
        assert_eq!(error.code(), Code::ResourceExhausted);
        grown = grown.max(rss().saturating_sub(before));
    }
    let error = client.call(&server.queue, "large").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "reply of {size} bytes is over this client's max_reply_size of {max} bytes; raise \
             ClientBuilder::max_reply_size if such replies are expected"
        )
    );
    assert_eq!(
        client.call(&server.queue, "after").await.unwrap().text(),
        "after"
    );
    assert_eq!(client.pending_calls(), 0);
    eprintln!(
        "{replies} replies of {size} bytes (max_reply_size {max}): the process grew by at most \
         {} MiB",
        grown / MIB
    );
    assert!(
        grown < 250 * MIB,
        "the process grew by {} MiB over {replies} replies of {} MiB",
        grown / MIB,
        size / MIB
    );
    client.close().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_replies_for_no_call_is_dropped_and_the_real_reply_gets_through() {
    const STRAYS: usize = 100_000;
    let _turn = MEMORY.lock().await;
    // 1 KiB each: 100 MiB in all, were the client to keep them.
    let stray_body = Arc::new(vec![b's'; 1024]);
    let server = HostileServer::start("hostile_flood", move |channel, request| {
        let stray_body = Arc::clone(&stray_body);
        async move {
            if request.body != b"flood" {
                let properties = with_id(&request.correlation_id);
                send(&channel, &request.reply_to, properties, &request.body).await;
                return;
            }
            // Half before the real reply, half after; one in ten with no
            // correlation_id at all.
            for n in 0..STRAYS {
                if n == STRAYS / 2 {
                    let properties = with_id(&request.correlation_id);
                    send(&channel, &request.reply_to, properties, b"the real one").await;
                }
                let properties = if n % 10 == 0 {
                    BasicProperties::default()
                } else {
                    with_id(&format!("stranger-{n}"))
                };
                send(&channel, &request.reply_to, properties, &stray_body).await;
            }
        }
    })
    .await;
    let client = client(ClientBuilder::DEFAULT_MAX_REPLY_SIZE)
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        client.call(&server.queue, "warm-up").await.unwrap().text(),
        "warm-up"
    );
    let before = rss();
    let reply = client
        .call_with(
            &server.queue,
            "flood",
            &CallOptions::new().timeout(Duration::from_secs(120)),
        )
        .await
        .expect("the real reply");
    assert_eq!(reply.text(), "the real one");
    assert_eq!(client.pending_calls(), 0);
    common::wait_until(Duration::from_secs(120), "every stray is dropped", || {
        let dropped = client.unknown_replies();
        async move { dropped == STRAYS as u64 }
    })
    .await;
    let grown = rss().saturating_sub(before);
    assert_eq!(
        client.call(&server.queue, "after").await.unwrap().text(),
        "after"
    );
    assert_eq!(client.unknown_replies(), STRAYS as u64);
    eprintln!(
        "{STRAYS} stray replies of 1 KiB: the process grew by {} MiB",
        grown / MIB
    );
    assert!(
        grown < 50 * MIB,
        "the process grew by {} MiB over {STRAYS} stray replies",
        grown / MIB
    );
    client.close().await.expect("close");
    server.stop().await;
}

/// A header table of one entry.
fn header(name: &str, value: AMQPValue) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(name.into(), value);
    headers
}

#[tokio::test]
async fn headers_of_the_wrong_type_are_each_a_clean_error() {
    let server = HostileServer::start("hostile_headers", |channel, request| async move {
        let mut table = FieldTable::default();
        table.insert("code".into(), AMQPValue::LongString("ok".into()));
        let headers = match &request.body[..] {
            b"int" => header("rpc-status", AMQPValue::LongInt(42)),
            b"table" => header("rpc-status", AMQPValue::FieldTable(table)),
            b"bytes" => header(
                "rpc-status",
                AMQPValue::ByteArray(vec![0xff, 0x00, 0xfe, 0x80].into()),
            ),
            b"not-utf-8" => header(
                "rpc-status",
                AMQPValue::LongString(vec![0xff, 0xfe, b'o', b'k'].into()),
            ),
            b"bool" => header("rpc-status", AMQPValue::Boolean(true)),
            b"void" => header("rpc-status", AMQPValue::Void),
            b"details" => {
                let mut headers = header("rpc-status", AMQPValue::LongString("internal".into()));
                headers.insert("rpc-error-details".into(), AMQPValue::Double(1.5));
                headers
            }
            b"control" => header("rpc-control", AMQPValue::FieldArray(Default::default())),
            _ => FieldTable::default(),
        };
        let properties = with_id(&request.correlation_id).with_headers(headers);
        send(&channel, &request.reply_to, properties, &request.body).await;
    })
    .await;
    let client = client(ClientBuilder::DEFAULT_MAX_REPLY_SIZE)
        .connect()
        .await
        .expect("connect");
    for (body, kind) in [
        ("int", "an integer (42)"),
        ("table", "a table"),
        ("bytes", "a byte array"),
        ("bool", "a boolean"),
        ("void", "void"),
    ] {
        let error = client.call(&server.queue, body).await.unwrap_err();
        let status = error
            .status()
            .unwrap_or_else(|| panic!("{body}: {error:?}"));
        assert_eq!(status.code(), Code::Unknown, "{body}");
        assert_eq!(
            status.message(),
            format!(
                "malformed reply: its rpc-status header is {kind}, not a code name; its body: {body}"
            )
        );
    }
    // Text that is not UTF-8 is read with replacements: a code name no one
    // knows.
    let error = client.call(&server.queue, "not-utf-8").await.unwrap_err();
    assert_eq!(error.code(), Code::Unknown, "{error}");
    assert_eq!(error.status().unwrap().message(), "not-utf-8");
    // Details that are not text are left out, and the message says so.
    let error = client.call(&server.queue, "details").await.unwrap_err();
    let status = error.status().expect("a status");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.details_json(), None);
    assert_eq!(
        status.message(),
        "details (its rpc-error-details header is a floating-point number, not JSON text: left out)"
    );
    // A control header that is not text is ignored: a success like any.
    let reply = client
        .call(&server.queue, "control")
        .await
        .expect("a success");
    assert_eq!(reply.text(), "control");
    assert_eq!(
        client.call(&server.queue, "plain").await.unwrap().text(),
        "plain"
    );
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.unknown_replies(), 0);
    client.close().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn of_two_replies_to_one_call_the_first_wins_and_the_second_is_dropped() {
    let server = HostileServer::start("hostile_twice", |channel, request| async move {
        for answer in ["first", "second"] {
            let properties = with_id(&request.correlation_id);
            let body = format!("{answer} to {}", String::from_utf8_lossy(&request.body));
            send(&channel, &request.reply_to, properties, body.as_bytes()).await;
        }
    })
    .await;
    let client = client(ClientBuilder::DEFAULT_MAX_REPLY_SIZE)
        .connect()
        .await
        .expect("connect");
    for (n, call) in ["one", "two", "three"].into_iter().enumerate() {
        let reply = client.call(&server.queue, call).await.expect("a reply");
        assert_eq!(reply.text(), format!("first to {call}"));
        common::wait_until(
            Duration::from_secs(10),
            "the second reply is dropped",
            || {
                let dropped = client.unknown_replies();
                async move { dropped == n as u64 + 1 }
            },
        )
        .await;
        assert_eq!(client.pending_calls(), 0);
    }
    client.close().await.expect("close");
    server.stop().await;
}
