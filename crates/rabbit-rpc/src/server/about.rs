//! [`About`]: what a procedure's control replies (`ping`, `describe`) say
//! that does not change while the server runs: which instance it is, how
//! many requests it handles at once, its description.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::{
    Description, Error,
    codec::{Codec, Json},
};

/// The version a `ping` reports: this crate's.
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a procedure's control replies say that does not change while the
/// server runs.
pub(super) struct About {
    /// The server instance, as `ping` names it.
    instance: Arc<str>,
    /// How many of the procedure's requests can be handled at once.
    slots: usize,
    /// The `describe` reply's body, encoded once, when the server binds.
    pub(super) description: Vec<u8>,
}

impl About {
    /// For the procedure on `queue`, of the server `instance`.
    ///
    /// # Errors
    /// [`Error::Config`] when the description does not encode (a
    /// schema that is not valid JSON).
    pub(super) fn new(
        queue: &str,
        instance: Arc<str>,
        concurrency: usize,
        description: Description,
    ) -> Result<About, Error> {
        let description =
            Json::encode(&description.for_procedure(queue)).map_err(|error| Error::Config {
                reason: format!(
                    "the description of procedure '{queue}' does not encode: {error}; give \
                     Payload::with_schema_json valid JSON"
                ),
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

impl About {
    /// The `ping` reply of the procedure on `queue`, with `free` handler
    /// slots, one of which the ping itself holds.
    pub(super) fn ping(&self, queue: &str, draining: bool, free: usize) -> Vec<u8> {
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
