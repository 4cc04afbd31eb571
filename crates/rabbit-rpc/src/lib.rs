//! Request/reply (RPC) over RabbitMQ, done properly.
//!
//! The pattern is RabbitMQ's tutorial 6: a client publishes a request to a
//! queue with `reply_to` and a unique `correlation_id`; a server consumes the
//! queue, computes, publishes the answer to `reply_to` with the same
//! `correlation_id`, and acknowledges. This crate adds what the tutorial
//! leaves out: many concurrent calls on one connection, timeouts, distinct
//! errors for "no such queue", "no server", "too slow" and "server error",
//! error replies instead of crashes, and panics that stay inside the handler.
//! It stays wire-compatible with the tutorial's clients and servers in every
//! language (see [`protocol`] and `docs/PROTOCOL.md`).
//!
//! # Quick start
//!
//! A server:
//!
//! ```no_run
//! use rabbit_rpc::{blocking_fn, Request, Server, Status};
//!
//! # async fn run() -> Result<(), rabbit_rpc::Error> {
//! let server = Server::builder()
//!     .url("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .queue("shout")
//!     .bind()
//!     .await?;
//! server
//!     .serve(blocking_fn(|request: Request| -> Result<String, Status> {
//!         Ok(request.text()?.to_uppercase())
//!     }))
//!     .await
//! # }
//! ```
//!
//! A client:
//!
//! ```no_run
//! use std::time::Duration;
//! use rabbit_rpc::{CallOptions, Client};
//!
//! # async fn run() -> Result<(), rabbit_rpc::Error> {
//! let client = Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//! let reply = client.call("shout", "hello").await?;
//! assert_eq!(reply.text(), "HELLO");
//!
//! let options = CallOptions::new().timeout(Duration::from_secs(2));
//! match client.call_with("shout", "again", &options).await {
//!     Ok(reply) => println!("{}", reply.text()),
//!     Err(error) if error.is_timeout() => eprintln!("too slow: {error}"),
//!     Err(error) => eprintln!("{error}"),
//! }
//! # Ok(()) }
//! ```

mod broker;
mod client;
mod error;
mod handler;
mod in_flight;
pub mod protocol;
mod server;
mod status;

pub use broker::{BrokerUrl, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_SECS, DEFAULT_URL};
pub use client::{
    CallOptions, Client, ClientBuilder, DEFAULT_MAX_BODY_SIZE, DEFAULT_NO_SERVER_CHECK,
    DEFAULT_TIMEOUT, RETURN_SWEEP, ReplyQueue,
};
pub use error::Error;
pub use handler::{BlockingFn, Handler, HandlerFn, Request, Response, blocking_fn, handler_fn};
pub use protocol::Reply;
pub use server::{
    DEFAULT_CONCURRENCY, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_REPLY_SIZE, DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_PREFETCH, DEFAULT_QUEUE, MAX_CORRELATION_ID_LEN, QueueOrigin, QueueType, Server,
    ServerBuilder, ServerStats,
};
pub use status::{Code, Status};

/// Re-exported so callers can build queue arguments without naming lapin.
pub use lapin::types::{AMQPValue, FieldTable};

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
