//! The wire protocol: which AMQP properties and headers a request and a reply
//! carry, and how a reply says whether it succeeded. `docs/PROTOCOL.md` is the
//! prose version of this module.
//!
//! Everything here is compatible with RabbitMQ's tutorial 6: a request is a
//! message with `reply_to` and `correlation_id`; a reply is a message to
//! `reply_to` with the same `correlation_id`. What we add is one header,
//! [`STATUS_HEADER`], that plain tutorial peers ignore.

use std::time::Duration;

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, ShortString},
};

use crate::{Code, Status};

/// Reply header naming the outcome as a [`Code`] wire name (`"ok"`,
/// `"invalid_argument"`, …). A reply without it is a success, so replies from
/// plain tutorial servers work.
pub const STATUS_HEADER: &str = "rpc-status";

/// Optional request header: how many milliseconds the caller still waited
/// when it sent the request (an integer, or decimal text). A server counts
/// the request's deadline from when it receives it and does not start a
/// request past it. rabbit-rpc clients do not send it: their requests carry
/// the same number as the `expiration` property, which the broker also
/// uses to drop requests that wait in the queue longer than their caller,
/// and which a server reads when this header is absent. (Sending both cost
/// about 5% of throughput, measured, for no extra information.) Clients in
/// other languages may send either.
pub const TIMEOUT_HEADER: &str = "rpc-timeout-ms";

/// The longest timeout sent with a request: RabbitMQ takes per-message TTLs
/// up to 2^32 - 1 ms (about 49 days). A call that waits longer sends none,
/// and its request never expires.
pub const MAX_SENT_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

/// Direct reply-to pseudo-queue: replies go straight to the requesting
/// channel, with no queue to declare or clean up.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The name prefix of every reply queue a rabbit-rpc client declares. Servers
/// answer these by default (see `ServerBuilder::allow_reply_to_prefix`).
pub const REPLY_QUEUE_PREFIX: &str = "rabbit-rpc.reply.";

/// Content type of the body of an error reply: the UTF-8 message.
pub const ERROR_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A successful reply's body and content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    body: Vec<u8>,
    content_type: Option<String>,
}

impl Reply {
    pub(crate) fn from_parts(body: Vec<u8>, content_type: Option<String>) -> Reply {
        Reply { body, content_type }
    }

    /// The reply body as sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The `content_type` property of the reply, if the server set one.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
}

/// A queue name as AMQP carries it (a short string: at most 255 bytes).
///
/// # Errors
/// [`Error::InvalidRequest`](crate::Error::InvalidRequest) when it is longer.
pub(crate) fn queue_name(name: &str) -> Result<ShortString, crate::Error> {
    ShortString::try_new(name).map_err(|_| crate::Error::InvalidRequest {
        reason: format!(
            "queue name is {} bytes; AMQP allows at most 255",
            name.len()
        ),
    })
}

/// Properties of a request: `reply_to`, `correlation_id`, the caller's
/// remaining time as `expiration` (unless longer than [`MAX_SENT_TIMEOUT`])
/// and, when given, `content_type`.
///
/// # Errors
/// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for a content type
/// longer than AMQP's 255 bytes.
pub(crate) fn request_properties(
    reply_to: &str,
    correlation_id: &str,
    timeout: Duration,
    content_type: Option<&str>,
) -> Result<BasicProperties, crate::Error> {
    // Both are ours and short: the reply queue name, a prefix and a counter.
    let mut properties = BasicProperties::default()
        .with_reply_to(reply_to.into())
        .with_correlation_id(correlation_id.into());
    if timeout <= MAX_SENT_TIMEOUT {
        // At least 1 ms: an expiration of 0 means "deliver now or never".
        let millis = timeout.as_millis().max(1);
        properties = properties.with_expiration(millis.to_string().into());
    }
    let Some(content_type) = content_type else {
        return Ok(properties);
    };
    let content_type =
        ShortString::try_new(content_type).map_err(|_| crate::Error::InvalidRequest {
            reason: format!(
                "content type is {} bytes; AMQP allows at most 255",
                content_type.len()
            ),
        })?;
    Ok(properties.with_content_type(content_type))
}

/// Properties of a reply to a request with `correlation_id`.
///
/// A success carries no [`STATUS_HEADER`] (its absence means `ok`, as with
/// tutorial servers, and saves the broker parsing a header table on the
/// hottest path) and the handler's content type, or else the request's (so a
/// `text/plain` request gets a `text/plain` reply). An error carries its code
/// in [`STATUS_HEADER`], [`ERROR_CONTENT_TYPE`], and its message as the body.
pub(crate) fn reply_properties(
    correlation_id: Option<&ShortString>,
    code: Code,
    content_type: Option<ShortString>,
) -> BasicProperties {
    let mut properties = BasicProperties::default();
    if code != Code::Ok {
        let mut headers = FieldTable::default();
        // A long string: RabbitMQ rejects the short-string field type ('s')
        // in tables and closes the connection.
        headers.insert(
            STATUS_HEADER.into(),
            AMQPValue::LongString(code.as_str().into()),
        );
        properties = properties.with_headers(headers);
    }
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.clone());
    }
    if let Some(content_type) = content_type {
        properties = properties.with_content_type(content_type);
    }
    properties
}

/// Reads a reply: [`STATUS_HEADER`] absent or `"ok"` is a success, anything
/// else an error whose message is the body.
pub(crate) fn decode_reply(properties: &BasicProperties, body: Vec<u8>) -> Result<Reply, Status> {
    let code = status_header(properties).map_or(Code::Ok, Code::from_wire);
    if code == Code::Ok {
        let content_type = properties.content_type().as_ref().map(|c| c.to_string());
        return Ok(Reply::from_parts(body, content_type));
    }
    Err(Status::new(code, String::from_utf8_lossy(&body)))
}

/// The caller's timeout a request carries: [`TIMEOUT_HEADER`] if present,
/// else the `expiration` property. Any AMQP integer type is read, and so is
/// decimal text.
pub(crate) fn request_timeout(properties: &BasicProperties) -> Option<Duration> {
    let millis = match timeout_header(properties) {
        Some(millis) => millis,
        None => properties
            .expiration()
            .as_ref()?
            .as_str()
            .trim()
            .parse()
            .ok()?,
    };
    Some(Duration::from_millis(millis))
}

fn timeout_header(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(TIMEOUT_HEADER)? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongString(v) => std::str::from_utf8(v.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(v) => v.as_str().trim().parse().ok(),
        _ => None,
    }
}

fn status_header(properties: &BasicProperties) -> Option<&str> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(STATUS_HEADER)? {
        AMQPValue::ShortString(value) => Some(value.as_str()),
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_without_status_header_is_a_success() {
        let properties = BasicProperties::default().with_content_type("text/plain".into());
        let reply = decode_reply(&properties, b"832040".to_vec()).unwrap();
        assert_eq!(reply.text(), "832040");
        assert_eq!(reply.content_type(), Some("text/plain"));
    }

    #[test]
    fn error_replies_round_trip() {
        let id: ShortString = "abc".into();
        let properties = reply_properties(
            Some(&id),
            Code::InvalidArgument,
            Some(ERROR_CONTENT_TYPE.into()),
        );
        assert_eq!(properties.correlation_id().as_ref(), Some(&id));
        let status = decode_reply(&properties, b"n must be at least 0".to_vec()).unwrap_err();
        assert_eq!(status, Status::invalid_argument("n must be at least 0"));
    }

    #[test]
    fn ok_replies_round_trip() {
        let properties = reply_properties(None, Code::Ok, None);
        assert_eq!(
            decode_reply(&properties, b"1".to_vec()).unwrap().body(),
            b"1"
        );
    }

    #[test]
    fn requests_carry_their_timeout_as_expiration() {
        let properties =
            request_properties("reply", "id-1", Duration::from_millis(1500), None).unwrap();
        assert_eq!(
            properties.expiration().as_ref().map(ShortString::as_str),
            Some("1500")
        );
        assert!(properties.headers().is_none());
        assert_eq!(
            request_timeout(&properties),
            Some(Duration::from_millis(1500))
        );
        let forever = request_properties("reply", "id-2", Duration::MAX, None).unwrap();
        assert!(forever.expiration().is_none());
        assert_eq!(request_timeout(&forever), None);
        let tiny = request_properties("reply", "id-3", Duration::from_micros(10), None).unwrap();
        assert_eq!(request_timeout(&tiny), Some(Duration::from_millis(1)));
    }

    #[test]
    fn the_timeout_header_wins_over_expiration() {
        let mut headers = FieldTable::default();
        headers.insert(TIMEOUT_HEADER.into(), AMQPValue::LongInt(250));
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_expiration("60000".into());
        assert_eq!(
            request_timeout(&properties),
            Some(Duration::from_millis(250))
        );
        let garbage = BasicProperties::default().with_expiration("soon".into());
        assert_eq!(request_timeout(&garbage), None);
    }

    #[test]
    fn timeouts_from_other_clients_may_be_text_or_any_integer() {
        for value in [
            AMQPValue::LongString("250".into()),
            AMQPValue::LongInt(250),
            AMQPValue::ShortUInt(250),
        ] {
            let mut headers = FieldTable::default();
            headers.insert(TIMEOUT_HEADER.into(), value.clone());
            let properties = BasicProperties::default().with_headers(headers);
            assert_eq!(
                request_timeout(&properties),
                Some(Duration::from_millis(250)),
                "{value:?}"
            );
        }
        let mut headers = FieldTable::default();
        headers.insert(TIMEOUT_HEADER.into(), AMQPValue::LongInt(-5));
        assert_eq!(
            request_timeout(&BasicProperties::default().with_headers(headers)),
            None
        );
    }

    #[test]
    fn unknown_codes_stay_errors() {
        let mut headers = FieldTable::default();
        headers.insert(
            STATUS_HEADER.into(),
            AMQPValue::LongString("quota_exceeded".into()),
        );
        let properties = BasicProperties::default().with_headers(headers);
        let status = decode_reply(&properties, b"slow down".to_vec()).unwrap_err();
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(status.message(), "slow down");
    }
}
