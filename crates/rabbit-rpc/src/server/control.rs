//! Control requests: those a server answers itself, for any procedure,
//! without running its handler: `ping` (which instance answers, its
//! version, whether it is serving or draining) and `describe` (what the
//! procedure takes and returns). A request is one when it carries the
//! header [`CONTROL_HEADER`]; see `docs/PROTOCOL.md`.
//!
//! A control request goes through the same checks as any request until its
//! `reply_to` is known to be answerable (present, not the request queue,
//! allowed, its caller still there), then is answered from here: no
//! deadline check, no handler, nothing counted in [`ServerStats`](super::ServerStats).
//! It waits for a handler slot like any request, so a ping's round trip
//! shows how long a request waits for one.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::request::{Origin, Running, ack, reject, unless_lost};
use crate::{
    Code, Description, Error, Status,
    codec::{Codec, Json},
    protocol::{self, CONTROL_DESCRIBE, CONTROL_HEADER, CONTROL_PING, ERROR_CONTENT_TYPE},
    transport::{Acker, Confirmed, HeaderValue, Properties},
};

/// The version a `ping` reports: this crate's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a procedure's control replies say that does not change while the
/// server runs.
pub(super) struct About {
    /// The server instance, as `ping` names it.
    instance: Arc<str>,
    /// How many of the procedure's requests can be handled at once.
    slots: usize,
    /// The `describe` reply's body, encoded once, when the server binds.
    description: Vec<u8>,
}

impl About {
    /// For the procedure on `queue`, of the server `instance`.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the description does not encode (a
    /// schema that is not valid JSON).
    pub(super) fn new(
        queue: &str,
        instance: Arc<str>,
        concurrency: usize,
        description: Description,
    ) -> Result<About, Error> {
        let description = Json::encode(&description.for_procedure(queue)).map_err(|error| {
            Error::InvalidRequest {
                reason: format!(
                    "the description of procedure '{queue}' does not encode: {error}; give \
                     Payload::with_schema_json valid JSON"
                ),
            }
        })?;
        Ok(About {
            instance,
            slots: concurrency.min(Semaphore::MAX_PERMITS),
            description,
        })
    }
}

/// The name `ping` gives a server: its connection name, the host and the
/// process, so that two replicas differ (`rabbit-rpc serve fib on web-1
/// pid 4242`).
pub(super) fn instance(connection_name: &str) -> Arc<str> {
    format!(
        "{connection_name} on {} pid {}",
        hostname(),
        std::process::id()
    )
    .into()
}

/// This machine's name: the kernel's on Linux, else `$HOSTNAME`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "an unnamed host".to_owned())
}

/// A `ping` reply's body.
#[derive(Serialize)]
struct Ping<'a> {
    procedure: &'a str,
    server: &'a str,
    version: &'a str,
    state: &'a str,
    in_flight: usize,
}

impl Running {
    /// Answers the control request `control` (a request whose `reply_to`
    /// passed the checks), then acknowledges it. Nothing is counted.
    pub(super) async fn answer_control(
        &self,
        control: &str,
        properties: &Properties,
        body: &[u8],
        reply_to: &str,
        acker: &Acker,
        origin: &Origin,
    ) {
        let answer = self.check(properties, body).and_then(|()| match control {
            CONTROL_PING => Ok(self.ping()),
            CONTROL_DESCRIBE => Ok(self.control.description.clone()),
            other => Err(Status::unimplemented(format!(
                "unknown control request '{other}' ({CONTROL_HEADER}); this server (rabbit-rpc \
                 {VERSION}) answers '{CONTROL_PING}' and '{CONTROL_DESCRIBE}'"
            ))),
        });
        let (code, content_type, body) = match answer {
            Ok(json) => (Code::Ok, Json::CONTENT_TYPE, json),
            Err(status) => (
                status.code(),
                ERROR_CONTENT_TYPE,
                status.message().as_bytes().to_vec(),
            ),
        };
        let mut message = protocol::reply(
            protocol::request_id(properties),
            code,
            Some(content_type),
            None,
        );
        message
            .headers
            .push((CONTROL_HEADER, HeaderValue::Text(control)));
        let channel = origin.replies.to(reply_to);
        let confirm = match unless_lost(
            &origin.lost,
            channel.publish(reply_to, false, &message, &body),
        )
        .await
        {
            Ok(confirm) => confirm,
            Err(error) => {
                origin.failure.raise(format!(
                    "could not publish a reply on queue '{}': {error}",
                    self.queue
                ));
                return;
            }
        };
        let confirmed = unless_lost(&origin.lost, async { Ok(confirm.outcome().await) })
            .await
            .unwrap_or(None);
        match confirmed {
            Some(Confirmed::Taken | Confirmed::Returned) => {
                debug!(queue = %self.queue, control, "answered a control request");
                ack(acker, &origin.lost).await;
            }
            Some(Confirmed::Refused) => {
                warn!(queue = %self.queue, %reply_to, "the broker refused the reply to a control request; dropping it");
                reject(acker, &origin.lost).await;
            }
            None => origin.failure.raise(format!(
                "lost the connection before the broker confirmed a reply on queue '{}'",
                self.queue
            )),
        }
    }

    /// The `ping` reply: who answers, and how it is doing now.
    fn ping(&self) -> Vec<u8> {
        self.control.ping(
            &self.queue,
            self.common.draining.is_cancelled(),
            self.permits.available_permits(),
        )
    }
}

impl About {
    /// The `ping` reply of the procedure on `queue`, with `free` handler
    /// slots, one of which the ping itself holds.
    fn ping(&self, queue: &str, draining: bool, free: usize) -> Vec<u8> {
        let ping = Ping {
            procedure: queue,
            server: &self.instance,
            version: VERSION,
            state: if draining { "draining" } else { "serving" },
            in_flight: self.slots.saturating_sub(free).saturating_sub(1),
        };
        // A struct of strings and a number always encodes.
        serde_json::to_vec(&ping).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_named_by_connection_host_and_process() {
        let name = instance("rabbit-rpc serve fib");
        assert!(name.starts_with("rabbit-rpc serve fib on "), "{name}");
        assert!(
            name.ends_with(&format!(" pid {}", std::process::id())),
            "{name}"
        );
    }

    #[test]
    fn a_description_that_does_not_encode_is_refused_naming_the_procedure() {
        let broken = Description::new(
            crate::Payload::json().with_schema_json("{not json"),
            crate::Payload::json(),
        );
        let error = About::new("orders.create", "x".into(), 1, broken)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("'orders.create'"), "{error}");
        let fine = About::new("orders.create", "x".into(), 1, Description::bytes()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&fine.description).unwrap();
        assert_eq!(json["procedure"], "orders.create");
    }

    #[test]
    fn a_ping_says_whether_the_server_is_draining_and_what_it_is_doing() {
        let about = About::new("q", "s on h pid 1".into(), 8, Description::bytes()).unwrap();
        let ping = |draining, free| -> serde_json::Value {
            serde_json::from_slice(&about.ping("q", draining, free)).unwrap()
        };
        assert_eq!(
            ping(false, 7),
            serde_json::json!({
                "procedure": "q",
                "server": "s on h pid 1",
                "version": VERSION,
                "state": "serving",
                "in_flight": 0,
            })
        );
        let draining = ping(true, 4);
        assert_eq!(draining["state"], "draining");
        assert_eq!(draining["in_flight"], 3);
    }
}
