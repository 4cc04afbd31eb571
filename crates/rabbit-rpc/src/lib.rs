//! Request/reply (RPC) over RabbitMQ, done properly.
//!
//! The pattern is RabbitMQ's tutorial 6: a client publishes a request to a
//! queue with `reply_to` and a unique `correlation_id`; a server consumes the
//! queue, computes, publishes the answer to `reply_to` with the same
//! `correlation_id`, and acknowledges. This crate adds what the tutorial
//! leaves out: many concurrent calls on one connection, deadlines, a
//! distinct error for every failure ("no such queue", "no server", "too
//! slow", "server error", "connection lost", "refused by the broker"),
//! error replies instead of crashes, reconnection, many procedures per
//! server, typed procedures with serde, and an in-memory broker for tests.
//! It stays wire-compatible with the tutorial's clients and servers in
//! every language, and with RabbitMQ's own AMQP 1.0 requesters and
//! responders (see [`protocol`]
//! and `docs/PROTOCOL.md`).
//!
//! # Quick start
//!
//! A service, defined once for client and server:
//!
//! ```no_run
//! use rabbit_rpc::{Client, Context, Server, Status};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct Add { pub a: i64, pub b: i64 }
//!
//! /// Arithmetic, on the queues `calculator.add` and `calculator.negate`.
//! #[rabbit_rpc::service]
//! pub trait Calculator {
//!     /// a + b.
//!     async fn add(&self, args: Add) -> Result<i64, Status>;
//!     /// -n, with the call's context.
//!     async fn negate(&self, context: Context, n: i64) -> Result<i64, Status>;
//! }
//!
//! struct Arithmetic;
//!
//! impl Calculator for Arithmetic {
//!     async fn add(&self, args: Add) -> Result<i64, Status> {
//!         args.a.checked_add(args.b).ok_or_else(|| Status::invalid_argument("overflow"))
//!     }
//!     async fn negate(&self, _context: Context, n: i64) -> Result<i64, Status> {
//!         n.checked_neg().ok_or_else(|| Status::invalid_argument("overflow"))
//!     }
//! }
//!
//! # async fn run() -> Result<(), rabbit_rpc::Error> {
//! let server = Server::builder()
//!     .url("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .add_service(CalculatorServer::new(Arithmetic))
//!     .bind()
//!     .await?;
//! tokio::spawn(server.serve());
//!
//! let calculator = CalculatorClient::new(Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?);
//! assert_eq!(calculator.add(&Add { a: 2, b: 3 }).await?, 5);
//! # Ok(()) }
//! ```
//!
//! Raw procedures move bytes, as the tutorial does:
//!
//! ```no_run
//! use std::time::Duration;
//! use rabbit_rpc::{blocking_fn, CallOptions, Client, Request, Server, Status};
//!
//! # async fn run() -> Result<(), rabbit_rpc::Error> {
//! let server = Server::builder()
//!     .procedure("shout", blocking_fn(|request: Request| -> Result<String, Status> {
//!         Ok(request.text()?.to_uppercase())
//!     }))
//!     .bind()
//!     .await?;
//! tokio::spawn(server.serve());
//!
//! let client = Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//! let options = CallOptions::new().timeout(Duration::from_secs(2));
//! match client.call_with("shout", "hello", &options).await {
//!     Ok(reply) => assert_eq!(reply.text(), "HELLO"),
//!     Err(error) if error.is_timeout() => eprintln!("too slow: {error}"),
//!     Err(error) => eprintln!("{error}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # TLS
//!
//! `amqps://` URLs connect over TLS, checking the broker's certificate
//! against the system's trusted CAs. A CA file, a client certificate, the
//! server name to check and login by certificate (EXTERNAL) go in the URL's
//! query as RabbitMQ spells them (`?cacertfile=…&certfile=…&keyfile=…&auth_mechanism=external`)
//! or through [`TlsOptions`] ([`ClientBuilder::tls`], [`ServerBuilder::tls`]);
//! a bad file is [`Error::Tls`], naming it, before anything is sent.
//!
//! # Testing your service
//!
//! [`MemoryBroker`] (feature `test-util`, in your `[dev-dependencies]`)
//! takes RabbitMQ's place with the same [`Client`] and [`Server`] API, and
//! keeps its time on tokio's clock: with tokio's own `test-util` feature,
//! `#[tokio::test(start_paused = true)]` runs a test of a 30 s timeout in
//! no time.
//!
//! ```
//! use std::time::Duration;
//! use rabbit_rpc::{Client, MemoryBroker, Request, Server, Status, handler_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), rabbit_rpc::Error> {
//! let broker = MemoryBroker::new();
//! let server = Server::builder()
//!     .memory(&broker)
//!     .procedure("slow", handler_fn(|_request: Request| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         Ok::<_, Status>("done")
//!     }))
//!     .bind()
//!     .await?;
//! tokio::spawn(server.serve());
//! let client = Client::builder()
//!     .memory(&broker)
//!     .timeout(Duration::from_secs(30))
//!     .connect()
//!     .await?;
//! let started = tokio::time::Instant::now();
//! assert!(client.call("slow", "").await.unwrap_err().is_timeout());
//! assert!(started.elapsed() >= Duration::from_secs(30)); // on tokio's clock only
//! # Ok(()) }
//! ```
//!
//! # Logging
//!
//! The library logs through [`tracing`](https://docs.rs/tracing), under
//! targets named for its modules (`rabbit_rpc::server::…`,
//! `rabbit_rpc::client::…`, `rabbit_rpc::transport::…`, and
//! `rabbit_rpc::tls` for the warning that certificate checks are off):
//! `ERROR` for a handler that panicked or a message the server cannot
//! parse, `WARN` for a lost broker and requests dropped or refused
//! (refusals summarised once a minute per kind), `INFO` for
//! reconnections and shutdown, `DEBUG` for replies no call waits for and
//! the `rpc.client`/`rpc.server` spans. Nothing is printed unless your
//! program installs a subscriber, e.g. with `tracing-subscriber`:
//! `tracing_subscriber::fmt().with_env_filter("info,lapin=off").init()`.
//! The `rabbit-rpc` command logs to stderr; `RUST_LOG` sets the level.
//!
//! # Layout
//!
//! - [`Client`] (`client/`): calls, deadlines, reconnection;
//! - [`Server`] (`server/`): procedures, dispatch, one request's life,
//!   drain;
//! - [`Service`] (`service/`) and the [`service`] attribute: typed
//!   procedures defined once for client and server;
//! - [`codec`]: how typed values become bodies;
//! - `transport/`: the seam to the broker — RabbitMQ over lapin, and
//!   [`MemoryBroker`] for tests (feature `test-util`).
//!
//! # Features
//!
//! - `macros` (default): the [`service`] attribute.
//! - `schema`: JSON Schemas of typed procedures' arguments and results in
//!   their [`Description`] (`describe`), from the `schemars` crate
//!   (re-exported as `rabbit_rpc::schemars`):
//!   `#[rabbit_rpc::service(schema)]`, `TypedFn::with_schemas`.
//! - `test-util`: [`MemoryBroker`], an in-memory broker for tests.
//! - `http`: `http::Endpoint`, Prometheus metrics, liveness and readiness
//!   over HTTP, for running a server in production.
//! - `opentelemetry`: W3C trace context across the broker: a server's span
//!   is the child of its caller's, and its reply carries the trace on.

// docs.rs (`--cfg docsrs`, nightly) marks the items each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Built without `test-util`, there is no `MemoryBroker` to link to: the
// links above go to the list of features instead.
#![cfg_attr(
    not(feature = "test-util"),
    doc = "",
    doc = "[`MemoryBroker`]: #features"
)]

mod client;
pub mod codec;
mod deadline;
mod description;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "http")]
pub mod http;
mod metadata;
pub mod metrics;
pub mod protocol;
mod server;
mod service;
mod status;
mod trace;
mod transport;

pub use client::{
    CallOptions, Client, ClientBuilder, Ping, PingState, Reply, ReplyQueue, RequestBody,
};
pub use description::{Description, Payload};
pub use error::{BrokerError, Error, Refusal};
pub use metadata::Metadata;
pub use server::{
    BlockingFn, Context, Handler, HandlerFn, Health, Procedure, QueueOrigin, QueueType, Request,
    Response, Server, ServerBuilder, ServerState, ServerStats, TypedFn, blocking_fn, handler_fn,
    typed_fn,
};
pub use service::Service;
pub use status::{Code, Status};
#[cfg(feature = "test-util")]
pub use transport::memory::{MemoryBroker, QueueInfo, RawMessage};
pub use transport::{QueueArgument, tls::TlsOptions, url::BrokerUrl};

/// Defines a service once for client and server: from a trait of async
/// methods, generates a typed client (`NameClient`) and a server adapter
/// (`NameServer`), each method on its own queue (`name.method`). See the
/// crate docs for an example and `rabbit-rpc-macros` for the rules.
#[cfg(feature = "macros")]
pub use rabbit_rpc_macros::service;

/// The `schemars` crate (feature `schema`), whose `JsonSchema` derive
/// describes typed procedures' arguments and results
/// ([`TypedFn::with_schemas`], `#[rabbit_rpc::service(schema)]`). Use it
/// without depending on `schemars` yourself by pointing the derive here:
/// `#[derive(rabbit_rpc::JsonSchema)] #[schemars(crate = "rabbit_rpc::schemars")]`.
#[cfg(feature = "schema")]
pub use schemars;

/// `schemars::JsonSchema`, the trait and its derive (feature `schema`); see
/// [`schemars`].
#[cfg(feature = "schema")]
pub use schemars::JsonSchema;

/// `1.5s`, `500ms`, `30s`: durations as people write them.
pub(crate) fn fmt_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}
