//! `rabbit-rpc ping` and `rabbit-rpc describe`: control requests, answered
//! by the rabbit-rpc server library itself, and what they print.

use std::time::Duration;

use rabbit_rpc::{CallOptions, Client, Description, Error, Payload, Ping};

use crate::cli::ControlArgs;

/// Pings whatever serves `args.queue`.
///
/// # Errors
/// Every way a call can fail, and [`Error::NotRabbitRpc`] when the queue is
/// served by something that ran its handler on the ping.
pub async fn ping(urls: &[String], args: &ControlArgs) -> Result<Ping, Error> {
    let client = connect(urls, "rabbit-rpc ping").await?;
    let ping = client.ping(&args.queue, &options(args)).await;
    let _ = client.close().await;
    ping
}

/// Asks the server on `args.queue` to describe its procedure.
///
/// # Errors
/// As [`ping`].
pub async fn describe(urls: &[String], args: &ControlArgs) -> Result<Description, Error> {
    let client = connect(urls, "rabbit-rpc describe").await?;
    let description = client.describe(&args.queue, &options(args)).await;
    let _ = client.close().await;
    description
}

async fn connect(urls: &[String], name: &str) -> Result<Client, Error> {
    Client::builder()
        .urls(urls)
        .connection_name(name)
        .connect()
        .await
}

fn options(args: &ControlArgs) -> CallOptions {
    CallOptions::new().timeout(args.timeout)
}

/// `ping`'s one line: `serving: rpc_queue answered by '…' (rabbit-rpc
/// 0.1.0, 0 in flight) in 1.2 ms`.
pub fn ping_line(ping: &Ping) -> String {
    let in_flight = ping
        .in_flight()
        .map(|n| format!(", {n} in flight"))
        .unwrap_or_default();
    format!(
        "{}: {} answered by '{}' (rabbit-rpc {}{in_flight}) in {}",
        ping.state(),
        ping.procedure(),
        ping.server(),
        ping.version(),
        milliseconds(ping.round_trip())
    )
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// A description as people read it: the procedure, its doc, then what its
/// requests and replies may be, each schema as indented JSON.
pub fn description_text(description: &Description) -> String {
    let mut text = format!("procedure {}\n", description.procedure().unwrap_or("?"));
    if let Some(doc) = description.doc() {
        text.push_str(&indented(doc));
    }
    text.push_str(&payload_text("request", description.request()));
    text.push_str(&payload_text("reply", description.reply()));
    text
}

fn payload_text(what: &str, payload: &Payload) -> String {
    let types = if payload.content_types().is_empty() {
        "any content type".to_owned()
    } else {
        payload.content_types().join(", ")
    };
    match payload.schema_json() {
        None => format!("{what}: {types}, no schema\n"),
        Some(schema) => format!("{what}: {types}, schema:\n{}", indented(&pretty(schema))),
    }
}

/// JSON text, pretty; anything else as it is.
pub fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn indented(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_reads_as_text() {
        let description: Description = serde_json::from_str(
            r#"{"procedure": "calculator.add", "doc": "a + b.",
                "request": {"content_types": ["application/json"], "schema": {"type": "object"}},
                "reply": {"content_types": ["application/json"], "schema": null}}"#,
        )
        .unwrap();
        assert_eq!(
            description_text(&description),
            "procedure calculator.add\n  a + b.\nrequest: application/json, schema:\n  {\n    \
             \"type\": \"object\"\n  }\nreply: application/json, no schema\n"
        );
    }
}
