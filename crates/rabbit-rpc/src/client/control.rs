//! Control requests from the calling side: [`Client::ping`] and
//! [`Client::describe`], answered by the rabbit-rpc server library itself
//! (see `docs/PROTOCOL.md`), and told apart from the answer of a server
//! that ran its handler on them instead.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::{CallOptions, Client, Reply};
use crate::{
    Description, Error,
    codec::CodecError,
    protocol::{CONTROL_DESCRIBE, CONTROL_PING},
};

/// A rabbit-rpc server's answer to [`Client::ping`]: which instance
/// answered, its version and state, and how long the round trip took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    procedure: String,
    server: String,
    version: String,
    state: PingState,
    in_flight: Option<u64>,
    round_trip: Duration,
}

impl Ping {
    /// The queue the answering server consumes.
    pub fn procedure(&self) -> &str {
        &self.procedure
    }

    /// The server instance that answered: its connection name, host and
    /// process (`rabbit-rpc serve fib on web-1 pid 4242`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The rabbit-rpc version of the server, e.g. `0.1.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the server that answered is serving or draining.
    pub fn state(&self) -> &PingState {
        &self.state
    }

    /// How many requests of the procedure that server was handling when it
    /// answered (not counting the ping), if it said.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// From sending the ping to its answer: through the broker and the
    /// queue, and the wait for a handler slot on the server.
    pub fn round_trip(&self) -> Duration {
        self.round_trip
    }
}

/// The state a server reports in a [`Ping`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PingState {
    /// Taking and answering requests.
    Serving,
    /// Shutting down: it takes no new requests and finishes those in hand.
    Draining,
    /// A state this version does not know, as the server named it.
    Other(String),
}

impl PingState {
    fn from_wire(name: &str) -> PingState {
        match name {
            "serving" => PingState::Serving,
            "draining" => PingState::Draining,
            other => PingState::Other(other.to_owned()),
        }
    }

    /// Whether the server is serving.
    pub fn is_serving(&self) -> bool {
        *self == PingState::Serving
    }

    /// The state's name on the wire: `serving`, `draining`, …
    pub fn as_str(&self) -> &str {
        match self {
            PingState::Serving => "serving",
            PingState::Draining => "draining",
            PingState::Other(name) => name,
        }
    }
}

impl std::fmt::Display for PingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `ping` reply's body.
#[derive(Deserialize)]
struct PingReply {
    procedure: String,
    server: String,
    version: String,
    state: String,
    #[serde(default)]
    in_flight: Option<u64>,
}

/// Reads a ping reply's body.
pub(crate) fn decode_ping(queue: &str, body: &[u8], round_trip: Duration) -> Result<Ping, Error> {
    let ping: PingReply = serde_json::from_slice(body).map_err(|error| Error::Decode {
        queue: queue.to_owned(),
        source: CodecError::new(format!("not a ping reply: {error}")),
    })?;
    Ok(Ping {
        procedure: ping.procedure,
        server: ping.server,
        version: ping.version,
        state: PingState::from_wire(&ping.state),
        in_flight: ping.in_flight,
        round_trip,
    })
}

/// Reads a describe reply's body.
pub(crate) fn decode_description(queue: &str, body: &[u8]) -> Result<Description, Error> {
    serde_json::from_slice(body).map_err(|error| Error::Decode {
        queue: queue.to_owned(),
        source: CodecError::new(format!("not a description: {error}")),
    })
}

impl Client {
    /// Asks whatever serves `queue` to answer a ping: a round trip through
    /// the broker that runs no handler, answered by the rabbit-rpc server
    /// library itself, saying which instance answered, its version and
    /// whether it is serving or draining.
    ///
    /// ```no_run
    /// # async fn example(client: rabbit_rpc::Client) -> Result<(), rabbit_rpc::Error> {
    /// let ping = client.ping("rpc_queue", &rabbit_rpc::CallOptions::new()).await?;
    /// println!("{} answered by {} in {:?}", ping.state(), ping.server(), ping.round_trip());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Client::call`] ([`Error::NoRoute`], [`Error::NoServer`],
    /// [`Error::Timeout`], …); [`Error::NotRabbitRpc`] when something else
    /// serves the queue (a tutorial server: it ran its handler on the ping,
    /// an empty request); [`Error::Decode`] when the answer is not a ping
    /// reply.
    pub async fn ping(&self, queue: &str, options: &CallOptions) -> Result<Ping, Error> {
        let sent = Instant::now();
        let reply = self.control(queue, CONTROL_PING, options).await?;
        let round_trip = sent.elapsed();
        decode_ping(queue, reply.body(), round_trip)
    }

    /// Asks the rabbit-rpc server that serves `queue` to describe the
    /// procedure: its documentation, the content types it takes and
    /// returns, and their JSON Schemas if it has them. No handler runs.
    ///
    /// # Errors
    /// As [`Client::ping`].
    pub async fn describe(&self, queue: &str, options: &CallOptions) -> Result<Description, Error> {
        let reply = self.control(queue, CONTROL_DESCRIBE, options).await?;
        decode_description(queue, reply.body())
    }

    /// Sends the control request `control` to `queue` (body
    /// [`CONTROL_BODY`](crate::protocol::CONTROL_BODY)) and
    /// returns a rabbit-rpc server's answer: one that carries the control
    /// header back.
    async fn control(
        &self,
        queue: &str,
        control: &'static str,
        options: &CallOptions,
    ) -> Result<Reply, Error> {
        let mut options = options.clone();
        options.control = Some(control);
        let not_rabbit_rpc = |answer: String| Error::NotRabbitRpc {
            queue: queue.to_owned(),
            control: control.to_owned(),
            answer,
        };
        match self
            .call_raw(queue, crate::protocol::CONTROL_BODY, &options, None)
            .await
        {
            Ok(reply) if reply.control().is_some() => Ok(reply),
            Ok(reply) => Err(not_rabbit_rpc(format!("'{}'", excerpt(&reply.text())))),
            // A rabbit-rpc server that refused it (a control request it
            // does not know) says so with the header.
            Err(Error::Remote(status)) if status.control().is_some() => Err(Error::Remote(status)),
            Err(Error::Remote(status)) => Err(not_rabbit_rpc(format!(
                "with an error: {}",
                excerpt(&status.to_string())
            ))),
            Err(error) => Err(error),
        }
    }
}

/// `text`, cut to a length that fits a line.
fn excerpt(text: &str) -> String {
    const MAX: usize = 100;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_this_version_does_not_know_are_kept_by_name() {
        assert!(PingState::from_wire("serving").is_serving());
        assert_eq!(PingState::from_wire("draining"), PingState::Draining);
        let other = PingState::from_wire("paused");
        assert!(!other.is_serving());
        assert_eq!(other.to_string(), "paused");
    }

    #[test]
    fn long_answers_are_cut_to_fit_a_line() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(150);
        assert_eq!(excerpt(&long).chars().count(), 101);
    }
}
