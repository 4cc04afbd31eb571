//! Wire compatibility with RabbitMQ's tutorial 6, both ways, using plain
//! lapin for the tutorial side (no rabbit-rpc code), and the fibonacci
//! service's answers to every kind of bad input.

#[path = "../../rabbit-rpc/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicAckOptions, BasicQosOptions},
};
use rabbit_rpc::Code;
use rabbit_rpc_cli::fib::FibService;

/// What the tutorial's client does: an exclusive server-named reply queue, a
/// `text/plain` request with `reply_to` and `correlation_id`, then wait for
/// the reply with that id.
async fn tutorial_call(queue: &str, body: &[u8]) -> (Vec<u8>, BasicProperties) {
    tutorial_call_as(queue, body, Some("text/plain")).await
}

/// [`tutorial_call`] with another content type, or none.
async fn tutorial_call_as(
    queue: &str,
    body: &[u8],
    content_type: Option<&str>,
) -> (Vec<u8>, BasicProperties) {
    let (connection, channel) = common::raw_channel().await;
    let (reply_queue, mut replies) = common::reply_queue(&channel).await;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let mut properties = BasicProperties::default()
        .with_correlation_id(correlation_id.as_str().into())
        .with_reply_to(reply_queue.as_str().into());
    if let Some(content_type) = content_type {
        properties = properties.with_content_type(content_type.into());
    }
    common::publish(&channel, queue, body, properties).await;
    let wait = async {
        while let Some(Ok(reply)) = replies.next().await {
            if reply
                .properties
                .correlation_id()
                .as_ref()
                .map(|id| id.as_str())
                == Some(correlation_id.as_str())
            {
                return (reply.data, reply.properties);
            }
        }
        panic!("reply consumer ended");
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the tutorial client got no reply");
    let _ = connection.close(200, "done".into()).await;
    reply
}

#[tokio::test]
async fn a_tutorial_client_gets_fib_30_from_our_server() {
    let server = TestServer::start("tutorial_client", FibService::default()).await;
    let (body, properties) = tutorial_call(&server.queue, b"30").await;
    assert_eq!(body, b"832040");
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("text/plain")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_tutorial_client_asking_fib_minus_1_gets_an_answer_and_the_server_lives_on() {
    let server = TestServer::start("tutorial_minus_1", FibService::default()).await;
    let (body, _) = tutorial_call(&server.queue, b"-1").await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("0 <= n <= 100000"), "{text}");
    let (body, _) = tutorial_call(&server.queue, b"10").await;
    assert_eq!(body, b"55");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn our_client_gets_the_answer_from_a_tutorial_style_server() {
    // The tutorial's server, in plain lapin: prefetch 1, naive recursion,
    // reply without any header, then ack.
    fn fib(n: u64) -> u64 {
        if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
    }
    let queue = common::unique_queue("tutorial_server");
    let (connection, channel) = common::raw_channel().await;
    common::declare(&channel, &queue).await;
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut requests = common::consume(&channel, &queue, false).await;
    let server = tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let n: u64 = std::str::from_utf8(&request.data).unwrap().parse().unwrap();
            let properties = BasicProperties::default()
                .with_content_type("text/plain".into())
                .with_correlation_id(request.properties.correlation_id().clone().unwrap());
            let reply_to = request.properties.reply_to().clone().unwrap();
            common::publish(
                &channel,
                reply_to.as_str(),
                fib(n).to_string().as_bytes(),
                properties,
            )
            .await;
            request.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    });

    let client = common::client().await;
    assert_eq!(client.call(&queue, "30").await.unwrap().text(), "832040");
    assert_eq!(client.call(&queue, "1").await.unwrap().text(), "1");

    server.abort();
    let _ = connection.close(200, "done".into()).await;
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_invalid_argument_naming_the_range() {
    let server = TestServer::start("fib_bad_input", FibService::new(1000)).await;
    let client = common::client().await;
    let bad: [&[u8]; 14] = [
        b"-1",
        b"1001",
        b"abc",
        b"",
        b"  \n",
        b"3.5",
        b"1e3",
        b"12345678901234567890123456",
        b"\xff\xfe\xfd",
        b"0x10",
        // JSON, which fib speaks too, but wrong.
        b"{\"n\": -1}",
        b"{\"n\": 1001}",
        b"{\"n\": 3",
        b"{\"m\": 3}",
    ];
    for body in bad {
        let error = client.call(&server.queue, body).await.unwrap_err();
        let status = error
            .status()
            .unwrap_or_else(|| panic!("{body:?}: {error}"));
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}");
        assert!(
            status.message().contains("0 <= n <= 1000"),
            "{body:?}: {}",
            status.message()
        );
        // Still serving.
        assert_eq!(
            client.call(&server.queue, "12").await.unwrap().text(),
            "144"
        );
    }
    assert_eq!(
        client
            .call(&server.queue, " 1000\n")
            .await
            .unwrap()
            .text()
            .len(),
        209
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_raw_client_sending_json_gets_json_back() {
    let server = TestServer::start("fib_json", FibService::default()).await;
    // The tutorial's client in plain lapin, with a JSON body, as any
    // language would send it.
    let (body, properties) =
        tutorial_call_as(&server.queue, br#"{"n": 30}"#, Some("application/json")).await;
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("a JSON reply");
    assert_eq!(reply, serde_json::json!({"n": 30, "fib": "832040"}));
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    // Typed by hand into a tutorial client that says text/plain.
    let (body, _) = tutorial_call_as(&server.queue, br#" {"n": 10}"#, Some("text/plain")).await;
    assert_eq!(body, br#"{"n":10,"fib":"55"}"#);
    // (Text stays exactly as before:
    // a_tutorial_client_gets_fib_30_from_our_server.)
    server.stop().await.unwrap();
}
