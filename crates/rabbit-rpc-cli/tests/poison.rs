//! Poison requests sent straight to the request queue by a raw lapin client
//! (no rabbit-rpc code): every answerable one gets exactly one error reply,
//! the unanswerable ones are dropped without looping, nothing stays in the
//! queue or unacknowledged, and the real `rabbit-rpc serve fib` process lives
//! on and stops cleanly.

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;
mod serve;

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use lapin::{BasicProperties, message::Delivery, types::AMQPValue};

/// How long anything the server should do promptly may take.
const LIMIT: Duration = Duration::from_secs(30);

/// Waits until `queue` holds no ready and no unacknowledged message.
async fn wait_until_settled(queue: &str) {
    common::wait_until(LIMIT, "the request queue is empty", || async {
        common::ready_messages(queue).await == 0
    })
    .await;
    common::wait_until(
        LIMIT,
        "no request is left unacknowledged (rabbitmqctl list_queues)",
        || async { common::unacked_messages(queue).await == Some(0) },
    )
    .await;
}

fn correlation_id(reply: &Delivery) -> Option<String> {
    reply
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.to_string())
}

/// The `rpc-status` header of a reply, which must be a long string when
/// present.
fn rpc_status(reply: &Delivery) -> Option<String> {
    let headers = reply.properties.headers().as_ref()?;
    match headers.inner().get("rpc-status")? {
        AMQPValue::LongString(value) => Some(
            std::str::from_utf8(value.as_bytes())
                .expect("rpc-status is UTF-8")
                .to_owned(),
        ),
        other => panic!("rpc-status is not a long string: {other:?}"),
    }
}

async fn next_reply(replies: &mut lapin::Consumer) -> Delivery {
    tokio::time::timeout(LIMIT, replies.next())
        .await
        .expect("a reply is missing")
        .expect("the reply consumer ended")
        .expect("reply delivery")
}

/// Checks one error reply: the expected code(s) and a short, non-empty UTF-8
/// message.
fn assert_error_reply(what: &str, reply: &Delivery, codes: &[&str]) {
    let status = rpc_status(reply).unwrap_or_else(|| panic!("{what}: no rpc-status header"));
    assert_ne!(status, "ok", "{what}");
    assert!(
        codes.contains(&status.as_str()),
        "{what}: rpc-status {status}, expected one of {codes:?}"
    );
    let message = std::str::from_utf8(&reply.data)
        .unwrap_or_else(|_| panic!("{what}: the error message is not UTF-8"));
    assert!(!message.is_empty(), "{what}: empty error message");
    assert!(
        message.len() < 4096,
        "{what}: a {} byte error message echoes the poison back",
        message.len()
    );
}

#[tokio::test]
async fn a_poison_list_sent_by_a_raw_client_never_hurts_the_server() {
    let queue = common::unique_queue("poison");
    let _cleanup = common::DeleteOnDrop(queue.clone());
    // Classic: RabbitMQ's counts of a quorum queue's unacknowledged
    // messages lag by seconds, and this test checks there are none.
    let mut server = serve::ServeProcess::start("fib", &queue, &["--queue-type", "classic"]).await;

    let (connection, channel) = common::raw_channel().await;
    let (reply_queue, mut replies) = common::reply_queue(&channel).await;
    let request = |id: &str| {
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_reply_to(reply_queue.as_str().into())
            .with_correlation_id(id.into())
    };

    // Answerable: a reply_to and a correlation_id each, and an error each.
    let huge = vec![b'7'; 4 * 1024 * 1024];
    let answerable: [(&str, &[u8], &[&str]); 8] = [
        ("minus-one", b"-1", &["invalid_argument"]),
        ("letters", b"abc", &["invalid_argument"]),
        ("empty", b"", &["invalid_argument"]),
        ("fraction", b"3.5", &["invalid_argument"]),
        (
            "26-digits",
            b"12345678901234567890123456",
            &["invalid_argument"],
        ),
        ("not-utf8", b"\xff\xfe\xfd", &["invalid_argument"]),
        // Over the server's default request size limit of 1 MiB.
        ("4-mib", &huge, &["resource_exhausted"]),
        ("bad-json", b"{\"n\": 3", &["invalid_argument"]),
    ];
    for (id, body, _) in answerable {
        common::publish(&channel, &queue, body, request(id)).await;
    }
    // Unanswerable: nowhere to reply, and a reply_to that would loop.
    common::publish(
        &channel,
        &queue,
        b"5",
        BasicProperties::default().with_correlation_id("no-reply-to".into()),
    )
    .await;
    common::publish(
        &channel,
        &queue,
        b"5",
        BasicProperties::default()
            .with_reply_to(queue.as_str().into())
            .with_correlation_id("loop".into()),
    )
    .await;
    // Answerable only without an id.
    common::publish(
        &channel,
        &queue,
        b"5",
        BasicProperties::default().with_reply_to(reply_queue.as_str().into()),
    )
    .await;

    // One reply per answerable request, in any order.
    let mut got: HashMap<Option<String>, Vec<Delivery>> = HashMap::new();
    for _ in 0..answerable.len() + 1 {
        let reply = next_reply(&mut replies).await;
        got.entry(correlation_id(&reply)).or_default().push(reply);
    }

    // The two dropped requests are logged, and every request is settled
    // (acknowledged, or rejected without requeue).
    common::wait_until(LIMIT, "both dropped requests are logged", || async {
        server.lines(|line| line.contains("reply_to")).len() >= 2
    })
    .await;
    wait_until_settled(&queue).await;

    // Still running, and still answering. Any duplicate reply was published
    // before its request was acknowledged, so it is queued ahead of this one.
    assert!(
        server.still_running(),
        "the server exited:\n{}",
        server.log()
    );
    common::publish(&channel, &queue, b"10", request("good")).await;
    let good = loop {
        let reply = next_reply(&mut replies).await;
        match correlation_id(&reply).as_deref() {
            Some("good") => break reply,
            _ => got.entry(correlation_id(&reply)).or_default().push(reply),
        }
    };
    assert_eq!(good.data, b"55");
    assert!(
        rpc_status(&good).is_none_or(|status| status == "ok"),
        "{:?}",
        rpc_status(&good)
    );

    for (id, _, codes) in answerable {
        let for_id = got.remove(&Some(id.to_owned())).unwrap_or_default();
        assert_eq!(for_id.len(), 1, "{id}: {} replies", for_id.len());
        assert_error_reply(id, &for_id[0], codes);
    }
    let without_id = got.remove(&None).unwrap_or_default();
    assert_eq!(
        without_id.len(),
        1,
        "{} replies to the request without correlation_id",
        without_id.len()
    );
    assert_error_reply("no correlation_id", &without_id[0], &["invalid_argument"]);
    assert!(got.is_empty(), "unexpected replies: {:?}", got.keys());

    // Nothing looped: the queue stayed empty, and the only lines about
    // reply_to are the two drops (an answer sent to the request queue would
    // come back as a request without reply_to and add a third).
    wait_until_settled(&queue).await;
    let drops = server.lines(|line| line.contains("reply_to"));
    assert_eq!(drops.len(), 2, "{drops:#?}");
    assert!(
        drops
            .iter()
            .any(|line| line.contains("WARN") && line.contains("request queue itself")),
        "no warning about reply_to being the request queue:\n{drops:#?}"
    );
    assert!(
        drops
            .iter()
            .any(|line| line.contains("WARN") && line.contains("without reply_to")),
        "no warning about the request without reply_to:\n{drops:#?}"
    );
    let errors = server.lines(|line| line.contains("ERROR") || line.contains("panicked"));
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        server.still_running(),
        "the server exited:\n{}",
        server.log()
    );
    let _ = connection.close(200, "done".into()).await;

    server.stop().await;
    common::delete_queue(&queue).await;
}
