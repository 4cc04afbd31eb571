//! The wire protocol: which properties and headers a request and a reply
//! carry, and how a reply says whether it succeeded. `docs/PROTOCOL.md` is
//! the prose version of this module; its public items are the names on the
//! wire.
//!
//! Everything here is compatible with RabbitMQ's tutorial 6: a request is a
//! message with `reply_to` and `correlation_id`; a reply is a message to
//! `reply_to` with the same `correlation_id`. What rabbit-rpc adds are
//! headers that tutorial peers ignore: [`STATUS_HEADER`] and
//! [`DETAILS_HEADER`] on error replies, a call's metadata on requests, and
//! [`CONTROL_HEADER`] on the requests a server answers itself (ping,
//! describe) and on their replies.

use std::time::Duration;

use crate::{
    Code, Error, Metadata, Reply, Status,
    transport::{Header, HeaderValue, Outgoing, Properties},
};

/// Reply header naming the outcome as a [`Code`] wire name (`"ok"`,
/// `"invalid_argument"`, …). A reply without it is a success, so replies from
/// plain tutorial servers work.
pub const STATUS_HEADER: &str = "rpc-status";

/// Error reply header: the status's structured details, as JSON text
/// ([`Status::with_details`]). A tutorial client sees only the message, the
/// body.
pub const DETAILS_HEADER: &str = "rpc-error-details";

/// Request header of a control request: one the server library answers
/// itself, without running the procedure's handler: [`CONTROL_PING`] or
/// [`CONTROL_DESCRIBE`] (a long string). The reply carries the same header
/// with the same value, which tells the caller a rabbit-rpc server answered:
/// a tutorial server ignores the header, runs its handler on the request
/// (body [`CONTROL_BODY`]) and answers without it. A value the server does not know
/// gets an `unimplemented` error reply (with the header).
pub const CONTROL_HEADER: &str = "rpc-control";

/// [`CONTROL_HEADER`] value: which server instance answers the queue, its
/// version and whether it is serving or draining, as JSON.
pub const CONTROL_PING: &str = "ping";

/// [`CONTROL_HEADER`] value: what the procedure takes and returns (content
/// types, JSON Schemas) and its documentation, as JSON.
pub const CONTROL_DESCRIBE: &str = "describe";

/// The body of a control request: `0`. rabbit-rpc servers ignore it; a
/// server that does not know [`CONTROL_HEADER`] runs its handler on it, and
/// for tutorial 6's servers, which parse the body as `n`, that is fib(0),
/// answered `0`, where an empty body crashes them.
pub const CONTROL_BODY: &[u8] = b"0";

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

/// Header names starting with this are rabbit-rpc's; the rest are a call's
/// [`Metadata`].
pub const RESERVED_PREFIX: &str = "rpc-";

/// The longest timeout sent with a request: RabbitMQ takes per-message TTLs
/// up to 2^32 - 1 ms (about 49 days). A call that waits longer sends none,
/// and its request never expires.
pub const MAX_SENT_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

/// The `expiration` a request with `remaining` time left carries, in
/// milliseconds: at least 1 (an expiration of 0 means "deliver now or
/// never"), and none at all past [`MAX_SENT_TIMEOUT`], which
/// RabbitMQ would refuse.
pub(crate) fn expiration_ms(remaining: Duration) -> Option<u64> {
    (remaining <= MAX_SENT_TIMEOUT).then(|| {
        u64::try_from(remaining.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    })
}

pub use crate::transport::DIRECT_REPLY_TO;

/// The name prefix of every reply queue a rabbit-rpc client declares. Servers
/// answer these by default (see `ServerBuilder::allow_reply_to_prefix`).
pub const REPLY_QUEUE_PREFIX: &str = "rabbit-rpc.reply.";

/// Content type of the body of an error reply: the UTF-8 message.
pub const ERROR_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The longest `correlation_id` a server answers normally. AMQP allows 255
/// bytes; ids from real clients (UUIDs, counters) are far shorter, and a
/// longer one gets an `invalid_argument` reply.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// The largest details sent with an error reply: they travel in a header,
/// which must fit one AMQP frame.
pub(crate) const MAX_DETAILS: usize = 32 * 1024;

/// A name AMQP carries as a short string (a queue, a header name): at most
/// 255 bytes.
///
/// # Errors
/// [`Error::InvalidRequest`] naming `what` when it is longer.
pub(crate) fn check_short(what: &str, name: &str) -> Result<(), Error> {
    if name.len() > 255 {
        return Err(Error::InvalidRequest {
            reason: format!("{what} is {} bytes; AMQP allows at most 255", name.len()),
        });
    }
    Ok(())
}

/// Checks a call's metadata can be sent.
///
/// # Errors
/// [`Error::InvalidRequest`] for a name rabbit-rpc reserves or one over 255
/// bytes.
pub(crate) fn check_metadata(metadata: &Metadata) -> Result<(), Error> {
    for (name, _) in metadata.iter() {
        if name.starts_with(RESERVED_PREFIX) {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "metadata name '{name}' starts with '{RESERVED_PREFIX}', which rabbit-rpc reserves for its own headers"
                ),
            });
        }
        check_short("a metadata name", name)?;
    }
    Ok(())
}

/// A request: `reply_to`, `correlation_id` and the same value as
/// `message_id` (the AMQP 1.0 and JMS convention, by which a responder
/// answers with `correlation_id` = the request's `message_id`), the caller's remaining time as
/// `expiration` (unless longer than [`MAX_SENT_TIMEOUT`]), the content type
/// if given, the metadata as headers (none when there is none: the
/// broker then parses no table), and [`CONTROL_HEADER`] for a control
/// request.
pub(crate) fn request<'a>(
    reply_to: &'a str,
    correlation_id: &'a str,
    timeout: Duration,
    content_type: Option<&'a str>,
    metadata: &'a Metadata,
    control: Option<&'a str>,
) -> Outgoing<'a> {
    let mut headers: Vec<_> = metadata
        .iter()
        .map(|(name, value)| (name, HeaderValue::Text(value)))
        .collect();
    if let Some(control) = control {
        headers.push((CONTROL_HEADER, HeaderValue::Text(control)));
    }
    Outgoing {
        correlation_id: Some(correlation_id),
        message_id: Some(correlation_id),
        // The client sets it: it knows who it logged in as.
        user_id: None,
        reply_to: Some(reply_to),
        content_type,
        expiration_ms: expiration_ms(timeout),
        headers,
    }
}

/// A reply to a request with `correlation_id`.
///
/// A success carries no header (its absence means `ok`, as with tutorial
/// servers, and saves the broker parsing a header table on the hottest
/// path) and `content_type`. An error carries its code in
/// [`STATUS_HEADER`], its details (if any) in [`DETAILS_HEADER`], and
/// [`ERROR_CONTENT_TYPE`].
pub(crate) fn reply<'a>(
    correlation_id: Option<&'a str>,
    code: Code,
    content_type: Option<&'a str>,
    details: Option<&'a str>,
) -> Outgoing<'a> {
    let mut headers = Vec::new();
    if code != Code::Ok {
        headers.push((STATUS_HEADER, HeaderValue::Text(code.as_str())));
        if let Some(details) = details {
            headers.push((DETAILS_HEADER, HeaderValue::Text(details)));
        }
    }
    Outgoing {
        correlation_id,
        content_type,
        headers,
        ..Outgoing::default()
    }
}

/// Adds the W3C trace context (`traceparent`, `tracestate`) of the span a
/// message continues; tutorial peers ignore the headers.
pub(crate) fn add_trace<'a>(message: &mut Outgoing<'a>, trace: &'a crate::trace::TraceHeaders) {
    message.headers.extend(
        trace
            .iter()
            .map(|(name, value)| (*name, HeaderValue::Text(value))),
    );
}

/// Reads a reply: [`STATUS_HEADER`] absent or `"ok"` is a success, any
/// other text an error whose message is the body (a code name this version
/// does not know: [`Code::Unknown`]). Either remembers the reply's
/// [`CONTROL_HEADER`], if any.
///
/// Whatever headers a server sends, the reply is one of those: a
/// [`STATUS_HEADER`] that is not text (an integer, a table, a byte array)
/// makes it a [`Code::Unknown`] error whose message says the header is
/// malformed; a [`DETAILS_HEADER`] that is not text is left out, and the
/// message says so; a [`CONTROL_HEADER`] that is not text is ignored.
pub(crate) fn decode_reply(properties: &Properties, body: Vec<u8>) -> Result<Reply, Status> {
    if !properties.has_headers() {
        return Ok(Reply::new(body, properties.content_type()));
    }
    let answered = control(properties).map(String::from);
    let (code, malformed) = match properties.header(STATUS_HEADER) {
        None => (Code::Ok, None),
        Some(Header::Text(name)) => (Code::from_wire(&name), None),
        Some(other) => (Code::Unknown, Some(other.kind())),
    };
    if code == Code::Ok {
        return Ok(Reply::new(body, properties.content_type()).with_control(answered));
    }
    let text = String::from_utf8_lossy(&body);
    let mut message = match malformed {
        None => text.into_owned(),
        Some(kind) if text.is_empty() => {
            format!("malformed reply: its {STATUS_HEADER} header is {kind}, not a code name")
        }
        Some(kind) => format!(
            "malformed reply: its {STATUS_HEADER} header is {kind}, not a code name; its body: {text}"
        ),
    };
    let details = match properties.header(DETAILS_HEADER) {
        None => None,
        Some(Header::Text(json)) => Some(json.into_owned()),
        Some(other) => {
            message.push_str(&format!(
                " (its {DETAILS_HEADER} header is {}, not JSON text: left out)",
                other.kind()
            ));
            None
        }
    };
    Err(Status::new(code, message)
        .with_details_json(details)
        .with_control(answered))
}

/// The [`CONTROL_HEADER`] of a request or reply, if it has one (with a
/// text value). One header lookup, and only when the message has headers
/// at all: the requests of rabbit-rpc's and the tutorials' clients usually
/// have none.
pub(crate) fn control(properties: &Properties) -> Option<std::borrow::Cow<'_, str>> {
    if !properties.has_headers() {
        return None;
    }
    match properties.header(CONTROL_HEADER)? {
        Header::Text(value) => Some(value),
        Header::Int(_) | Header::Other(_) => None,
    }
}

/// The id a reply to this request must carry as its `correlation_id`: the
/// request's `correlation_id`, as in RabbitMQ's tutorials; else its
/// `message_id`, as AMQP 1.0 requesters (RabbitMQ's own clients, JMS) send
/// it.
pub(crate) fn request_id(properties: &Properties) -> Option<&str> {
    properties.correlation_id().or(properties.message_id())
}

/// The caller's timeout a request carries: [`TIMEOUT_HEADER`] if present,
/// else the `expiration` property. Any AMQP integer type is read, and so is
/// decimal text.
pub(crate) fn request_timeout(properties: &Properties) -> Option<Duration> {
    let from_header = if properties.has_headers() {
        match properties.header(TIMEOUT_HEADER) {
            Some(Header::Int(millis)) => Some(u64::try_from(millis).ok()?),
            Some(Header::Text(text)) => Some(text.trim().parse().ok()?),
            Some(Header::Other(_)) | None => None,
        }
    } else {
        None
    };
    let millis = match from_header {
        Some(millis) => millis,
        None => properties.expiration()?.trim().parse().ok()?,
    };
    Some(Duration::from_millis(millis))
}

/// The request's metadata: every header not reserved by rabbit-rpc, with a
/// text or integer value.
pub(crate) fn metadata(properties: &Properties) -> Metadata {
    let mut metadata = Metadata::new();
    if !properties.has_headers() {
        return metadata;
    }
    for (name, value) in properties.headers() {
        if name.starts_with(RESERVED_PREFIX) {
            continue;
        }
        match value {
            Header::Text(text) => metadata.insert(name, text.into_owned()),
            Header::Int(n) => metadata.insert(name, n.to_string()),
            Header::Other(_) => {}
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use lapin::{
        BasicProperties,
        types::{AMQPValue, FieldTable},
    };

    use super::*;

    fn with_headers(pairs: &[(&str, AMQPValue)]) -> Properties {
        let mut headers = FieldTable::default();
        for (name, value) in pairs {
            headers.insert((*name).into(), value.clone());
        }
        Properties::Amqp(BasicProperties::default().with_headers(headers))
    }

    #[test]
    fn a_reply_without_status_header_is_a_success() {
        let properties =
            Properties::Amqp(BasicProperties::default().with_content_type("text/plain".into()));
        let reply = decode_reply(&properties, b"832040".to_vec()).unwrap();
        assert_eq!(reply.text(), "832040");
        assert_eq!(reply.content_type(), Some("text/plain"));
    }

    #[test]
    fn error_replies_carry_code_and_details() {
        let sent = reply(
            Some("abc"),
            Code::InvalidArgument,
            Some(ERROR_CONTENT_TYPE),
            Some(r#"{"max":5}"#),
        );
        assert_eq!(sent.headers.len(), 2);
        let received = with_headers(&[
            (
                STATUS_HEADER,
                AMQPValue::LongString("invalid_argument".into()),
            ),
            (DETAILS_HEADER, AMQPValue::LongString(r#"{"max":5}"#.into())),
        ]);
        let status = decode_reply(&received, b"n must be at least 0".to_vec()).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "n must be at least 0");
        assert_eq!(status.details_json(), Some(r#"{"max":5}"#));
    }

    #[test]
    fn successes_carry_no_header() {
        assert!(
            reply(Some("a"), Code::Ok, None, Some("{}"))
                .headers
                .is_empty()
        );
        let metadata = Metadata::new();
        let request = request(
            "reply",
            "id-1",
            Duration::from_millis(1500),
            None,
            &metadata,
            None,
        );
        assert!(request.headers.is_empty());
        assert_eq!(request.expiration_ms, Some(1500));
    }

    #[test]
    fn requests_carry_their_timeout_as_expiration() {
        let metadata = Metadata::new();
        let forever = request("reply", "id-2", Duration::MAX, None, &metadata, None);
        assert_eq!(forever.expiration_ms, None);
        let tiny = request(
            "reply",
            "id-3",
            Duration::from_micros(10),
            None,
            &metadata,
            None,
        );
        assert_eq!(tiny.expiration_ms, Some(1));
        let received = Properties::Amqp(BasicProperties::default().with_expiration("1500".into()));
        assert_eq!(
            request_timeout(&received),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn the_timeout_header_wins_over_expiration_and_may_be_text_or_any_integer() {
        for value in [
            AMQPValue::LongString("250".into()),
            AMQPValue::LongInt(250),
            AMQPValue::ShortUInt(250),
        ] {
            let mut headers = FieldTable::default();
            headers.insert(TIMEOUT_HEADER.into(), value.clone());
            let properties = Properties::Amqp(
                BasicProperties::default()
                    .with_headers(headers)
                    .with_expiration("60000".into()),
            );
            assert_eq!(
                request_timeout(&properties),
                Some(Duration::from_millis(250)),
                "{value:?}"
            );
        }
        let negative = with_headers(&[(TIMEOUT_HEADER, AMQPValue::LongInt(-5))]);
        assert_eq!(request_timeout(&negative), None);
        let garbage = Properties::Amqp(BasicProperties::default().with_expiration("soon".into()));
        assert_eq!(request_timeout(&garbage), None);
    }

    #[test]
    fn metadata_is_every_header_but_ours() {
        let received = with_headers(&[
            ("authorization", AMQPValue::LongString("Bearer x".into())),
            ("x-delivery-count", AMQPValue::LongLongInt(2)),
            (TIMEOUT_HEADER, AMQPValue::LongInt(100)),
            ("flag", AMQPValue::Boolean(true)),
        ]);
        let metadata = metadata(&received);
        assert_eq!(metadata.get("authorization"), Some("Bearer x"));
        assert_eq!(metadata.get("x-delivery-count"), Some("2"));
        assert_eq!(metadata.get(TIMEOUT_HEADER), None);
        assert_eq!(metadata.len(), 2);
        let mut reserved = Metadata::new();
        reserved.insert("rpc-status", "ok");
        assert!(check_metadata(&reserved).is_err());
    }

    #[test]
    fn control_requests_and_their_replies_carry_the_control_header() {
        let metadata = Metadata::new();
        let ping = request(
            "reply",
            "id-4",
            Duration::from_secs(1),
            None,
            &metadata,
            Some(CONTROL_PING),
        );
        assert_eq!(
            ping.headers,
            vec![(CONTROL_HEADER, HeaderValue::Text(CONTROL_PING))]
        );
        let answered = with_headers(&[(CONTROL_HEADER, AMQPValue::LongString("ping".into()))]);
        assert_eq!(control(&answered).as_deref(), Some("ping"));
        let reply = decode_reply(&answered, b"{}".to_vec()).unwrap();
        assert_eq!(reply.control(), Some("ping"));
        let plain = Properties::Amqp(BasicProperties::default());
        assert_eq!(control(&plain), None);
        assert_eq!(decode_reply(&plain, Vec::new()).unwrap().control(), None);
        let refused = with_headers(&[
            (CONTROL_HEADER, AMQPValue::LongString("frob".into())),
            (STATUS_HEADER, AMQPValue::LongString("unimplemented".into())),
        ]);
        let status = decode_reply(&refused, b"no".to_vec()).unwrap_err();
        assert_eq!(status.control(), Some("frob"));
    }

    #[test]
    fn malformed_headers_are_each_a_defined_outcome() {
        let status_of = |value: AMQPValue| {
            decode_reply(&with_headers(&[(STATUS_HEADER, value)]), b"boom".to_vec()).unwrap_err()
        };
        let status = status_of(AMQPValue::LongInt(42));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(
            status.message(),
            "malformed reply: its rpc-status header is an integer (42), not a code name; its body: boom"
        );
        let mut table = FieldTable::default();
        table.insert("code".into(), AMQPValue::LongString("ok".into()));
        for (value, kind) in [
            (AMQPValue::FieldTable(table), "a table"),
            (
                AMQPValue::ByteArray(vec![0xff, 0, 0xfe].into()),
                "a byte array",
            ),
            (AMQPValue::Boolean(true), "a boolean"),
            (AMQPValue::Void, "void"),
        ] {
            let status = status_of(value);
            assert_eq!(status.code(), Code::Unknown);
            assert!(status.message().contains(kind), "{}", status.message());
        }
        // Text that is not UTF-8 is read with replacements: a name no one
        // knows.
        let garbage = status_of(AMQPValue::LongString(vec![0xff, 0xfe, b'o', b'k'].into()));
        assert_eq!(garbage.code(), Code::Unknown);
        assert_eq!(garbage.message(), "boom");
        let bad_details = with_headers(&[
            (STATUS_HEADER, AMQPValue::LongString("internal".into())),
            (DETAILS_HEADER, AMQPValue::LongLongInt(7)),
            (CONTROL_HEADER, AMQPValue::Boolean(false)),
        ]);
        let status = decode_reply(&bad_details, b"failed".to_vec()).unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.details_json(), None);
        assert_eq!(status.control(), None);
        assert!(
            status
                .message()
                .starts_with("failed (its rpc-error-details header is an integer (7)")
        );
        // Not text either way: the request's deadline falls back to
        // `expiration`, and metadata leaves it out.
        let mut headers = FieldTable::default();
        headers.insert(
            TIMEOUT_HEADER.into(),
            AMQPValue::FieldArray(Default::default()),
        );
        headers.insert("tags".into(), AMQPValue::FieldArray(Default::default()));
        let request = Properties::Amqp(
            BasicProperties::default()
                .with_headers(headers)
                .with_expiration("900".into()),
        );
        assert_eq!(request_timeout(&request), Some(Duration::from_millis(900)));
        assert!(metadata(&request).is_empty());
    }

    #[test]
    fn unknown_codes_stay_errors() {
        let received = with_headers(&[(
            STATUS_HEADER,
            AMQPValue::LongString("quota_exceeded".into()),
        )]);
        let status = decode_reply(&received, b"slow down".to_vec()).unwrap_err();
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(status.message(), "slow down");
    }
}
