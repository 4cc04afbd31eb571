//! Control requests on RabbitMQ: ping and describe answered by the server
//! library, what each kind of procedure says of itself, the checks that
//! still come first, what other languages' clients see on the wire, and
//! what a client makes of a server that is not rabbit-rpc. (The in-memory
//! broker's share is in `conformance.rs`.)

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::BasicAckOptions,
    types::{AMQPValue, FieldTable},
};
use rabbit_rpc::{
    CallOptions, Code, Context, Description, Error, Payload, Procedure, Request, Server, Status,
    handler_fn,
};
use tokio::sync::oneshot;

/// Operands, described by their JSON Schema.
#[derive(serde::Serialize, serde::Deserialize, rabbit_rpc::JsonSchema)]
#[schemars(crate = "rabbit_rpc::schemars")]
struct Pair {
    /// The first.
    a: i64,
    /// The second.
    b: i64,
}

/// Adds, with schemas.
#[rabbit_rpc::service(name = "test.control_schema", schema)]
trait Schematic {
    /// a + b.
    async fn add(&self, pair: Pair) -> Result<i64, Status>;
}

/// Adds, without schemas.
#[rabbit_rpc::service(name = "test.control_plain")]
trait Plain {
    /// a + b, plainly.
    async fn add(&self, context: Context, pair: Pair) -> Result<i64, Status>;
}

struct Adder;

impl Schematic for Adder {
    async fn add(&self, pair: Pair) -> Result<i64, Status> {
        Ok(pair.a + pair.b)
    }
}

impl Plain for Adder {
    async fn add(&self, _context: Context, pair: Pair) -> Result<i64, Status> {
        Ok(pair.a + pair.b)
    }
}

/// A raw handler that counts its runs.
fn counting(runs: &Arc<AtomicUsize>) -> impl rabbit_rpc::Handler {
    let runs = Arc::clone(runs);
    handler_fn(move |request: Request| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Status>(request.into_body()) }
    })
}

#[tokio::test]
async fn each_kind_of_procedure_describes_itself_and_no_handler_runs() {
    let raw = common::unique_queue("control_raw");
    let documented = common::unique_queue("control_documented");
    let runs = Arc::new(AtomicUsize::new(0));
    let shout = Description::new(Payload::new(["text/plain"]), Payload::new(["text/plain"]))
        .with_doc("The request, in capitals.");
    let server = Server::builder()
        .url(common::url())
        .queue_argument("x-expires", 60_000)
        .connection_name("control describe test")
        .add_service(SchematicServer::new(Adder))
        .add_service(PlainServer::new(Adder))
        .procedure(&raw, counting(&runs))
        .add_procedure(Procedure::new(&documented, counting(&runs)).description(shout))
        .bind()
        .await
        .expect("bind");
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let client = common::client().await;
    let options = CallOptions::new().timeout(Duration::from_secs(10));

    let schematic = client
        .describe("test.control_schema.add", &options)
        .await
        .unwrap();
    assert_eq!(schematic.doc(), Some("a + b."));
    assert_eq!(schematic.request().content_types(), ["application/json"]);
    let request: serde_json::Value =
        serde_json::from_str(schematic.request().schema_json().expect("a schema")).unwrap();
    assert_eq!(request["title"], "Pair");
    assert_eq!(request["properties"]["a"]["description"], "The first.");
    let reply: serde_json::Value =
        serde_json::from_str(schematic.reply().schema_json().expect("a schema")).unwrap();
    assert_eq!(reply["type"], "integer");

    let plain = client
        .describe("test.control_plain.add", &options)
        .await
        .unwrap();
    assert_eq!(plain.doc(), Some("a + b, plainly."));
    assert_eq!(plain.request(), &Payload::json());
    assert_eq!(plain.reply(), &Payload::json());

    let bytes = client.describe(&raw, &options).await.unwrap();
    assert_eq!(bytes.procedure(), Some(raw.as_str()));
    assert_eq!(bytes.request(), &Payload::bytes());
    assert_eq!(bytes.reply(), &Payload::bytes());
    assert_eq!(bytes.doc(), None);

    let told = client.describe(&documented, &options).await.unwrap();
    assert_eq!(told.doc(), Some("The request, in capitals."));
    assert_eq!(told.request().content_types(), ["text/plain"]);

    for queue in ["test.control_schema.add", raw.as_str()] {
        let ping = client.ping(queue, &options).await.unwrap();
        assert_eq!(ping.procedure(), queue);
        assert!(ping.state().is_serving());
        assert!(
            ping.server().starts_with("control describe test on ")
                && ping
                    .server()
                    .ends_with(&format!(" pid {}", std::process::id())),
            "{}",
            ping.server()
        );
        assert!(
            ping.round_trip() < Duration::from_secs(10),
            "{:?}",
            ping.round_trip()
        );
    }

    let _ = stop.send(());
    serving.await.expect("server task").expect("serve");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "a handler ran");
    assert_eq!(stats.answered(), 0, "{stats}");
    for queue in [
        "test.control_schema.add",
        "test.control_plain.add",
        &raw,
        &documented,
    ] {
        common::delete_queue(queue).await;
    }
}

/// What a client in another language sends and reads: the header on the
/// request, the same header, the correlation id and JSON on the reply.
#[tokio::test]
async fn on_the_wire_a_ping_is_a_header_and_its_reply_json_with_the_header_back() {
    let server = common::TestServer::start("control_wire", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    let (reply_queue, mut replies) = common::reply_queue(&channel).await;
    let mut headers = FieldTable::default();
    headers.insert("rpc-control".into(), AMQPValue::LongString("ping".into()));
    let properties = BasicProperties::default()
        .with_correlation_id("wire-1".into())
        .with_reply_to(reply_queue.as_str().into())
        .with_headers(headers);
    common::publish(&channel, &server.queue, b"", properties).await;
    let reply = common::next_delivery(&mut replies).await;
    let properties = &reply.properties;
    assert_eq!(
        properties.correlation_id().as_ref().map(|id| id.as_str()),
        Some("wire-1")
    );
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    let control = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("rpc-control").cloned());
    assert_eq!(control, Some(AMQPValue::LongString("ping".into())));
    let ping: serde_json::Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(ping["procedure"], server.queue.as_str());
    assert_eq!(ping["state"], "serving");
    assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
    assert!(ping["server"].as_str().unwrap().contains(" pid "), "{ping}");
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

/// The checks that come before any work apply to control requests: no
/// reply_to, or the request queue itself, is dropped; an address the
/// server may not answer is refused. None is answered.
#[tokio::test]
async fn the_checks_before_any_work_apply_to_control_requests() {
    let server = common::TestServer::start("control_checks", common::echo()).await;
    let (connection, channel) = common::raw_channel().await;
    let ping = |reply_to: Option<&str>| {
        let mut headers = FieldTable::default();
        headers.insert("rpc-control".into(), AMQPValue::LongString("ping".into()));
        let properties = BasicProperties::default()
            .with_correlation_id("checked".into())
            .with_headers(headers);
        match reply_to {
            Some(reply_to) => properties.with_reply_to(reply_to.into()),
            None => properties,
        }
    };
    common::publish(&channel, &server.queue, b"", ping(None)).await;
    common::publish(&channel, &server.queue, b"", ping(Some(&server.queue))).await;
    common::publish(&channel, &server.queue, b"", ping(Some("orders.work"))).await;
    let stats = server.stats.clone();
    common::wait_until(
        Duration::from_secs(10),
        "two dropped and one refused",
        || async { stats.dropped() == 2 && stats.refused() == 1 },
    )
    .await;
    assert_eq!(stats.answered(), 0);
    let _ = connection.close(200, "done".into()).await;
    server.stop().await.unwrap();
}

/// A tutorial server ignores the header and runs its handler on the
/// request's body, `0`; a client reports that as [`Error::NotRabbitRpc`], whether the
/// handler answered or failed, never as a decode error.
#[tokio::test]
async fn a_server_that_runs_its_handler_on_a_ping_is_not_a_rabbit_rpc_server() {
    for (test, status) in [
        ("control_tutorial", None),
        ("control_old", Some("invalid_argument")),
    ] {
        let queue = common::unique_queue(test);
        let (connection, channel) = common::raw_channel().await;
        common::declare(&channel, &queue).await;
        let mut requests = common::consume(&channel, &queue, false).await;
        let (seen, saw) = tokio::sync::mpsc::unbounded_channel();
        // Answers anything: "0" (fib of the body, 0), or an error
        // as a rabbit-rpc server's handler would that knew no ping.
        let answering = tokio::spawn(async move {
            while let Some(Ok(request)) = requests.next().await {
                let _ = seen.send((request.data.clone(), request.properties.headers().clone()));
                let mut properties = BasicProperties::default()
                    .with_correlation_id(request.properties.correlation_id().clone().unwrap());
                if let Some(code) = status {
                    let mut headers = FieldTable::default();
                    headers.insert("rpc-status".into(), AMQPValue::LongString(code.into()));
                    properties = properties.with_headers(headers);
                }
                let reply_to = request.properties.reply_to().clone().unwrap();
                common::publish(&channel, reply_to.as_str(), b"0", properties).await;
                request.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
        });
        let client = common::client().await;
        let options = CallOptions::new().timeout(Duration::from_secs(10));
        let error = client.ping(&queue, &options).await.unwrap_err();
        assert!(error.is_not_rabbit_rpc(), "{error}");
        assert_eq!(error.code(), Code::Unimplemented);
        let message = error.to_string();
        assert!(message.contains("not by a rabbit-rpc server"), "{message}");
        match status {
            None => assert!(message.contains("answered '0'"), "{message}"),
            Some(code) => assert!(
                message.contains(&format!("with an error: {code}")),
                "{message}"
            ),
        }
        let error = client.describe(&queue, &options).await.unwrap_err();
        assert!(
            matches!(&error, Error::NotRabbitRpc { control, .. } if control == "describe"),
            "{error}"
        );
        let mut saw = saw;
        let (body, headers) = saw.recv().await.expect("the server got the ping");
        assert_eq!(body, rabbit_rpc::protocol::CONTROL_BODY);
        assert_eq!(
            headers.and_then(|headers| headers.inner().get("rpc-control").cloned()),
            Some(AMQPValue::LongString("ping".into()))
        );
        answering.abort();
        let _ = connection.close(200, "done".into()).await;
        common::delete_queue(&queue).await;
    }
}
