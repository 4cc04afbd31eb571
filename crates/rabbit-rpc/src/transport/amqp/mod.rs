//! The transport over RabbitMQ: lapin, and nothing of lapin beyond this
//! folder (with [`url`], which parses URLs with it, and [`tls`], which
//! builds its TLS connector): its calls, its types as the transport's enums
//! hold them, and what its errors mean.

pub(crate) mod tls;
pub(crate) mod url;

use std::{
    borrow::Cow,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Confirmation,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use super::{
    Acker, CLOSE_TIMEOUT, Confirm, Confirmed, Declaration, Delivery, Header, HeaderValue, Outgoing,
    Properties, QueueArgument, QueueState, ReplyAddress, Returned,
};
use crate::{BrokerError, Error, Refusal, error::hint};
use url::{BrokerUrl, Endpoints};

/// lapin's own types, as the transport's enums
/// ([`Channel`](super::Channel), [`Properties`], [`Acker`],
/// [`Consumer`](super::Consumer), [`Confirm`]) hold them.
pub(crate) use lapin::{
    Acker as AmqpAcker, BasicProperties as AmqpProperties, Channel as AmqpChannel,
    Consumer as AmqpConsumer, PublisherConfirm as AmqpConfirm,
};

/// A lapin connection and the broker it goes to.
#[derive(Debug)]
pub(crate) struct Connection {
    connection: lapin::Connection,
    url: BrokerUrl,
}

impl Connection {
    /// Connects to `url` within `timeout`, named `name` in the broker's
    /// connection list.
    pub(crate) async fn open(
        url: &BrokerUrl,
        name: &str,
        timeout: Duration,
    ) -> Result<Connection, Error> {
        let properties = lapin::ConnectionProperties::default().with_connection_name(name.into());
        let connecting = async {
            match url.tls() {
                None => lapin::Connection::connect_uri(url.uri().clone(), properties)
                    .await
                    .map_err(|error| url.connect_error(&error)),
                Some(tls) => connect_tls(url, tls, properties).await,
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => Ok(Connection {
                connection,
                url: url.clone(),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Connect {
                endpoint: url.endpoint(),
                reason: format!(
                    "no AMQP handshake within {}; is that a RabbitMQ port, and reachable?",
                    crate::fmt_duration(timeout)
                ),
                source: None,
            }),
        }
    }

    pub(crate) fn url(&self) -> &BrokerUrl {
        &self.url
    }

    pub(crate) async fn channel(&self) -> Result<lapin::Channel, Error> {
        self.connection.create_channel().await.map_err(classify)
    }

    pub(crate) async fn probe(&self, queue: &str) -> Result<QueueState, Error> {
        match self.passive_declare(queue).await? {
            Ok(declared) => Ok(QueueState::Exists {
                messages: declared.message_count(),
                consumers: declared.consumer_count(),
            }),
            Err(error) if amqp_code(&error) == Some(404) => Ok(QueueState::Missing),
            Err(error) => Err(declare_error(queue, &error)),
        }
    }

    pub(crate) async fn reply_address(&self, address: &str) -> Result<ReplyAddress, Error> {
        match self.passive_declare(address).await? {
            Ok(_) => Ok(ReplyAddress::Live),
            Err(error) if amqp_code(&error) == Some(404) => Ok(ReplyAddress::Gone),
            Err(error) if amqp_code(&error) == Some(541) => Ok(ReplyAddress::Crashed),
            Err(error) => Err(classify(error)),
        }
    }

    /// A passive declare of `queue` on a throwaway channel: closed after a
    /// yes, and closed by the broker with any no. The outer error is about
    /// asking at all (no channel, a name too long).
    async fn passive_declare(
        &self,
        queue: &str,
    ) -> Result<Result<lapin::Queue, lapin::Error>, Error> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue_name(queue)?, passive, FieldTable::default())
            .await;
        if declared.is_ok() {
            let _ = channel.close(200, "asked".into()).await;
        }
        Ok(declared)
    }

    pub(crate) async fn close(&self, reason: &str) -> Result<(), Error> {
        let closing = self.connection.close(200, reason.into());
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(closed) => closed.map_err(classify),
            // The socket closes when the connection is dropped anyway.
            Err(_) => Ok(()),
        }
    }
}

/// Connects to `url` over TLS: TCP to the URL's host and port, then a
/// handshake that checks the broker's certificate against the server name
/// (the URL's host, or `server_name_indication`), with the connector made
/// from the TLS files as they are now.
async fn connect_tls(
    url: &BrokerUrl,
    tls: &tls::Tls,
    properties: lapin::ConnectionProperties,
) -> Result<lapin::Connection, Error> {
    use lapin::{
        tcp::{AMQPUriTcpExt, TLSConfig},
        uri::AMQPScheme,
    };
    let connector = tls.connector()?;
    let asking = connector.clone();
    if tls.skips_verification() {
        // A target of its own, so a program that keeps its logs quiet can
        // still let this one through (the CLI does).
        tracing::warn!(
            target: "rabbit_rpc::tls",
            broker = %url,
            "TLS certificate verification is OFF (verify=verify_none): the broker's certificate \
             is not checked, so anyone between here and the broker can read and change the \
             traffic, credentials included; use it for tests only"
        );
    }
    let server_name = tls.server_name().to_owned();
    let runtime = lapin::runtime::default_runtime().map_err(|error| url.connect_error(&error))?;
    let connected = lapin::Connection::connector(
        url.uri().clone(),
        runtime,
        async move |uri, runtime| {
            // lapin's own TLS takes the name to check from the host it
            // connects to; the TCP part is lapin's, the TLS part ours.
            let mut plain = uri;
            plain.scheme = AMQPScheme::AMQP;
            let stream = plain
                .connect_with_config_async(TLSConfig::default(), &runtime)
                .await?;
            Ok(stream.into_rustls(&connector, &server_name).await?)
        },
        properties,
    )
    .await;
    match connected {
        Ok(connection) => Ok(connection),
        Err(error) => {
            // Closed in or just after the handshake without a word: ask why.
            if let lapin::ErrorKind::IOError(io) = error.kind()
                && tls::tls_cause(io).is_none()
                && tls::closed(io)
            {
                let authority = &url.uri().authority;
                if let Some(cause) = tls.ask_why(&authority.host, authority.port, asking).await
                    && let Some(failure) = tls.failure(&cause, &url.endpoint())
                {
                    return Err(failure);
                }
            }
            Err(url.connect_error(&error))
        }
    }
}

/// Connects to the first of `endpoints` that answers, starting with the one
/// that worked last, each within `timeout`.
///
/// # Errors
/// [`Error::Connect`] naming every broker tried and why each failed.
pub(crate) async fn connect(
    endpoints: &Endpoints,
    name: &str,
    timeout: Duration,
) -> Result<Connection, Error> {
    let mut failures = Vec::new();
    for (index, url) in endpoints.in_turn() {
        match Connection::open(url, name, timeout).await {
            Ok(connection) => {
                endpoints.worked(index);
                return Ok(connection);
            }
            Err(error) => failures.push(error),
        }
    }
    // A broker that answered and refused says what to fix, whatever the
    // others said.
    if let Some(at) = failures.iter().position(|e| e.refusal().is_some()) {
        return Err(failures.swap_remove(at));
    }
    if failures.len() == 1 {
        return Err(failures.remove(0));
    }
    let endpoint = endpoints
        .all()
        .iter()
        .map(BrokerUrl::endpoint)
        .collect::<Vec<_>>()
        .join(", ");
    let reason = failures
        .iter()
        .map(|error| match error {
            Error::Connect {
                endpoint, reason, ..
            } => format!("{endpoint}: {reason}"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    // Several causes: each is in the reason.
    Err(Error::Connect {
        endpoint,
        reason,
        source: None,
    })
}

/// A name as AMQP carries it: at most 255 bytes.
fn queue_name(name: &str) -> Result<ShortString, Error> {
    ShortString::try_new(name).map_err(|_| Error::InvalidRequest {
        reason: format!(
            "queue name is {} bytes; AMQP allows at most 255",
            name.len()
        ),
    })
}

pub(crate) async fn declare(
    channel: &lapin::Channel,
    queue: &str,
    declaration: &Declaration,
) -> Result<(), Error> {
    let mut arguments = FieldTable::default();
    for (key, value) in &declaration.arguments {
        let value = match value {
            QueueArgument::Text(text) => AMQPValue::LongString(text.as_str().into()),
            QueueArgument::Int(n) => AMQPValue::LongLongInt(*n),
            QueueArgument::Bool(b) => AMQPValue::Boolean(*b),
        };
        arguments.insert(key.as_str().into(), value);
    }
    let options = QueueDeclareOptions {
        durable: declaration.durable,
        exclusive: declaration.exclusive,
        auto_delete: declaration.auto_delete,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue_name(queue)?, options, arguments)
        .await
        .map(drop)
        .map_err(|error| declare_error(queue, &error))
}

pub(crate) async fn consume(
    channel: &lapin::Channel,
    queue: &str,
    no_ack: bool,
) -> Result<lapin::Consumer, Error> {
    channel
        .basic_consume(
            queue_name(queue)?,
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| match amqp_code(&error) {
            Some(404) => Error::Declare {
                queue: queue.to_owned(),
                reason: "it does not exist (deleted just now?)".to_owned(),
                source: Some(BrokerError::new(error.clone(), false)),
            },
            Some(403) => Error::Refused {
                refusal: Refusal::Access,
                reason: format!(
                    "cannot consume queue '{queue}' ({}); the user needs the read permission on it \
                     (rabbitmqctl set_permissions)",
                    broker_words(&error)
                ),
            },
            Some(405) => Error::Refused {
                refusal: Refusal::Locked,
                reason: format!(
                    "queue '{queue}' is exclusive to another connection ({}); choose another queue \
                     name",
                    broker_words(&error)
                ),
            },
            _ => classify(error),
        })
}

pub(crate) async fn publish(
    channel: &lapin::Channel,
    routing_key: &str,
    mandatory: bool,
    message: &Outgoing<'_>,
    body: &[u8],
) -> Result<Confirm, Error> {
    let properties = properties(message)?;
    let confirm = channel
        .basic_publish(
            "".into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(classify)?;
    Ok(Confirm::Amqp(confirm))
}

/// The lapin properties of an outgoing message.
pub(crate) fn properties(message: &Outgoing<'_>) -> Result<BasicProperties, Error> {
    let short = |what: &str, value: &str| {
        ShortString::try_new(value).map_err(|_| Error::InvalidRequest {
            reason: format!("{what} is {} bytes; AMQP allows at most 255", value.len()),
        })
    };
    let mut properties = BasicProperties::default();
    if let Some(id) = message.correlation_id {
        properties = properties.with_correlation_id(short("the correlation id", id)?);
    }
    if let Some(id) = message.message_id {
        properties = properties.with_message_id(short("the message id", id)?);
    }
    if let Some(user) = message.user_id {
        properties = properties.with_user_id(short("the user id", user)?);
    }
    if let Some(reply_to) = message.reply_to {
        properties = properties.with_reply_to(short("the reply address", reply_to)?);
    }
    if let Some(content_type) = message.content_type {
        properties = properties.with_content_type(short("the content type", content_type)?);
    }
    if let Some(millis) = message.expiration_ms {
        properties = properties.with_expiration(decimal(millis).into());
    }
    if !message.headers.is_empty() {
        let mut headers = FieldTable::default();
        for (key, value) in &message.headers {
            let value = match value {
                // A long string: RabbitMQ rejects the short-string field
                // type ('s') in tables and closes the connection.
                HeaderValue::Text(text) => AMQPValue::LongString(LongString::from(*text)),
            };
            headers.insert(short("a header name", key)?, value);
        }
        properties = properties.with_headers(headers);
    }
    Ok(properties)
}

/// `n` in decimal, without the formatting machinery (it runs for every
/// request's expiration).
fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[at..].iter().map(|&d| char::from(d)).collect()
}

pub(crate) async fn returned(channel: &lapin::Channel) -> Result<Vec<Returned>, Error> {
    // Without publisher confirms lapin keeps returned messages until this
    // is called, which then answers at once.
    let returned = channel.wait_for_confirms().await.map_err(classify)?;
    Ok(returned
        .into_iter()
        .map(|message| Returned {
            correlation_id: message
                .delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|id| id.to_string()),
            routing_key: message.delivery.routing_key.to_string(),
        })
        .collect())
}

pub(crate) async fn confirmed(confirm: lapin::PublisherConfirm) -> Option<Confirmed> {
    match confirm.await {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Some(Confirmed::Taken),
        Ok(Confirmation::Ack(Some(_returned))) => Some(Confirmed::Returned),
        Ok(Confirmation::Nack(_)) => Some(Confirmed::Refused),
        Err(_) => None,
    }
}

pub(crate) fn poll_delivery(
    consumer: &mut lapin::Consumer,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Delivery, Error>>> {
    consumer.poll_next_unpin(cx).map(|item| {
        item.map(|delivery| {
            delivery
                .map(|delivery| Delivery {
                    properties: Properties::Amqp(delivery.properties),
                    body: delivery.data,
                    redelivered: delivery.redelivered,
                    acker: Acker::Amqp(delivery.acker),
                })
                .map_err(classify)
        })
    })
}

/// A header value as rabbit-rpc reads it: text (invalid UTF-8 replaced),
/// an integer of any width, or the name of any other type.
pub(crate) fn header(value: &AMQPValue) -> Header<'_> {
    match value {
        AMQPValue::LongString(text) => Header::Text(String::from_utf8_lossy(text.as_bytes())),
        AMQPValue::ShortString(text) => Header::Text(Cow::Borrowed(text.as_str())),
        AMQPValue::LongLongInt(n) => Header::Int(*n),
        AMQPValue::LongInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::LongUInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::ShortInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Header::Int(i64::from(*n)),
        AMQPValue::Boolean(_) => Header::Other("a boolean"),
        AMQPValue::Float(_) | AMQPValue::Double(_) => Header::Other("a floating-point number"),
        AMQPValue::DecimalValue(_) => Header::Other("a decimal"),
        AMQPValue::FieldArray(_) => Header::Other("an array"),
        AMQPValue::Timestamp(_) => Header::Other("a timestamp"),
        AMQPValue::FieldTable(_) => Header::Other("a table"),
        AMQPValue::ByteArray(_) => Header::Other("a byte array"),
        AMQPValue::Void => Header::Other("void"),
    }
}

/// The broker's text of a protocol error, else lapin's description.
fn broker_words(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => error.to_string(),
    }
}

fn amqp_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The error for a failed declaration of `queue`: what the broker refused,
/// said of the queue, with what to change.
fn declare_error(queue: &str, error: &lapin::Error) -> Error {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return classify(error.clone());
    };
    let message = amqp.get_message().as_str();
    let refused = |refusal, reason| Error::Refused { refusal, reason };
    match amqp.get_id() {
        406 => match Inequivalent::parse(message) {
            Some(found) => Error::QueueMismatch {
                queue: queue.to_owned(),
                setting: found.setting,
                existing: found.current,
                asked: found.received,
            },
            None => refused(
                Refusal::Precondition,
                format!(
                    "the broker will not declare queue '{queue}' as asked ({message}); \
                     change the queue settings"
                ),
            ),
        },
        403 => refused(
            Refusal::Access,
            format!(
                "cannot declare queue '{queue}' ({message}); the user needs the configure \
                 permission on it (rabbitmqctl set_permissions)"
            ),
        ),
        405 => refused(
            Refusal::Locked,
            format!(
                "queue '{queue}' is exclusive to another connection ({message}); choose another \
                 queue name"
            ),
        ),
        _ => match DeniedFeature::parse(message) {
            Some(denied) => refused(Refusal::DeniedFeature, denied.of_queue(queue)),
            None => classify(error.clone()),
        },
    }
}

/// A deprecated feature the broker's operator denies, as RabbitMQ 3.13 and
/// later report it when a client uses it: they close the connection with
/// `INTERNAL_ERROR` and a text that names the feature, cut off at AMQP's
/// 255 bytes (e.g. `INTERNAL_ERROR - Feature \`transient_nonexcl_queues\` is
/// deprecated. By default, this feature can be used for now. Its use is
/// not permitted per the configuration (relevant configuration:
/// deprecated_features.permit.transient_no…`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DeniedFeature {
    pub(crate) feature: String,
}

impl DeniedFeature {
    pub(crate) fn parse(message: &str) -> Option<DeniedFeature> {
        let rest = &message[message.find("Feature `")? + "Feature `".len()..];
        let (feature, rest) = rest.split_once('`')?;
        rest.trim_start()
            .starts_with("is deprecated")
            .then(|| DeniedFeature {
                feature: feature.to_owned(),
            })
    }

    /// What to tell the user who declared `queue`.
    fn of_queue(&self, queue: &str) -> String {
        let feature = &self.feature;
        let what = match feature.as_str() {
            "transient_nonexcl_queues" => format!(
                "queue '{queue}' cannot be declared transient: this broker denies transient \
                 non-exclusive queues (deprecated feature '{feature}'); declare it durable"
            ),
            _ => format!(
                "queue '{queue}' cannot be declared as asked: this broker denies the deprecated \
                 feature '{feature}'; declare it without"
            ),
        };
        format!(
            "{what}, or have the broker's operator permit it \
             (deprecated_features.permit.{feature} = true)"
        )
    }
}

/// What the broker reports about an inequivalent declaration, e.g.
/// `PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost
/// '/': received 'false' but current is 'true'`.
#[derive(Debug, PartialEq, Eq)]
struct Inequivalent {
    setting: String,
    received: String,
    current: String,
}

impl Inequivalent {
    fn parse(message: &str) -> Option<Inequivalent> {
        let rest = &message[message.find("inequivalent arg '")? + "inequivalent arg '".len()..];
        let (setting, rest) = rest.split_once('\'')?;
        let rest = &rest[rest.find(": received ")? + ": received ".len()..];
        let (received, current) = rest.split_once(" but current is ")?;
        Some(Inequivalent {
            setting: setting.to_owned(),
            received: value(received),
            current: value(current),
        })
    }
}

/// A value as the broker prints it, as a person would: `none` is "not set",
/// `the value '10' of type 'signedint'` is `10`, `'quorum'` stays quoted.
fn value(text: &str) -> String {
    let text = text.trim();
    if text == "none" {
        return "not set".to_owned();
    }
    let text = text.strip_prefix("the value ").unwrap_or(text);
    let text = match text.rfind(" of type '") {
        Some(at) => &text[..at],
        None => text,
    };
    match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(bare) if bare.parse::<f64>().is_ok() || bare == "true" || bare == "false" => {
            bare.to_owned()
        }
        _ => text.to_owned(),
    }
}

/// Classifies a lapin error raised while using an open connection: a
/// refusal by the broker is named for what it is, a closed connection
/// is a lost one, anything else a broker error.
pub(crate) fn classify(error: lapin::Error) -> Error {
    use lapin::{ErrorKind, protocol::AMQPErrorKind};
    match error.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError => lost(error),
        ErrorKind::ProtocolError(amqp) => {
            let message = amqp.get_message().as_str();
            let refusal = match amqp.get_id() {
                403 => Some(Refusal::Access),
                405 => Some(Refusal::Locked),
                406 => Some(Refusal::Precondition),
                530 => Some(Refusal::NotAllowed),
                _ => DeniedFeature::parse(message).map(|_| Refusal::DeniedFeature),
            };
            match refusal {
                Some(refusal) => Error::Refused {
                    refusal,
                    reason: format!("the broker says: {message}{}", hint(refusal, message)),
                },
                // Any other connection-level error (the broker closed
                // the connection, e.g. CONNECTION_FORCED): the
                // connection is gone.
                None if matches!(amqp.kind(), AMQPErrorKind::Hard(_)) => lost(error),
                None => broker(error),
            }
        }
        _ => broker(error),
    }
}

/// The connection is gone, as lapin reported it.
fn lost(error: lapin::Error) -> Error {
    Error::ConnectionLost {
        reason: error.to_string(),
        source: Some(BrokerError::new(error, false)),
    }
}

/// An error the broker or lapin raised, its cause kept.
fn broker(error: lapin::Error) -> Error {
    let unparsable = matches!(error.kind(), lapin::ErrorKind::ParsingError(_));
    Error::Broker(BrokerError::new(error, unparsable))
}

/// Deletes `queue` with its messages.
pub(crate) async fn delete(channel: &lapin::Channel, queue: &str) -> Result<(), Error> {
    channel
        .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .map(drop)
        .map_err(classify)
}

/// Sets the prefetch of the consumers started on `channel` from now on.
pub(crate) async fn prefetch(channel: &lapin::Channel, count: u16) -> Result<(), Error> {
    channel
        .basic_qos(count, lapin::options::BasicQosOptions::default())
        .await
        .map_err(classify)
}

/// Stops the consumer `tag`.
pub(crate) async fn cancel(channel: &lapin::Channel, tag: &str) -> Result<(), Error> {
    channel
        .basic_cancel(tag.into(), lapin::options::BasicCancelOptions::default())
        .await
        .map_err(classify)
}

/// Turns publisher confirms on.
pub(crate) async fn confirm(channel: &lapin::Channel) -> Result<(), Error> {
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .map_err(classify)
}

/// Acknowledges a delivery.
pub(crate) async fn ack(acker: &lapin::Acker) -> Result<(), Error> {
    acker
        .ack(lapin::options::BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(classify)
}

/// Rejects a delivery, back to its queue when `requeue`.
pub(crate) async fn nack(acker: &lapin::Acker, requeue: bool) -> Result<(), Error> {
    acker
        .nack(lapin::options::BasicNackOptions {
            requeue,
            ..lapin::options::BasicNackOptions::default()
        })
        .await
        .map(drop)
        .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn parsed(message: &str) -> (String, String, String) {
        let found = Inequivalent::parse(message).expect("parses");
        (found.setting, found.received, found.current)
    }

    #[test]
    fn reads_what_rabbitmq_says_about_inequivalent_queues() {
        // Messages as RabbitMQ 3.10 sends them.
        assert_eq!(
            parsed(
                "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'rpc_queue' in \
                 vhost '/': received 'false' but current is 'true'"
            ),
            ("durable".into(), "false".into(), "true".into())
        );
        assert_eq!(
            parsed(
                "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost \
                 '/': received none but current is the value 'quorum' of type 'longstr'"
            ),
            ("x-queue-type".into(), "not set".into(), "'quorum'".into())
        );
        assert_eq!(
            parsed(
                "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in \
                 vhost '/': received the value '10' of type 'signedint' but current is none"
            ),
            ("x-delivery-limit".into(), "10".into(), "not set".into())
        );
        assert_eq!(
            parsed(
                "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost \
                 '/': received 'classic' but current is 'quorum'"
            ),
            ("x-queue-type".into(), "'classic'".into(), "'quorum'".into())
        );
        assert!(Inequivalent::parse("PRECONDITION_FAILED - something else").is_none());
    }

    #[test]
    fn outgoing_headers_are_long_strings_and_absent_when_empty() {
        let plain = properties(&Outgoing {
            correlation_id: Some("a-1"),
            expiration_ms: Some(1500),
            ..Outgoing::default()
        })
        .unwrap();
        assert!(plain.headers().is_none());
        assert_eq!(plain.expiration().as_ref().unwrap().as_str(), "1500");
        for n in [0, 7, 10, 1500, 99_999, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
        let with = properties(&Outgoing {
            headers: vec![("rpc-status", HeaderValue::Text("internal"))],
            ..Outgoing::default()
        })
        .unwrap();
        assert_eq!(
            with.headers().as_ref().unwrap().inner().get("rpc-status"),
            Some(&AMQPValue::LongString("internal".into()))
        );
        let too_long = "x".repeat(300);
        assert!(
            properties(&Outgoing {
                content_type: Some(&too_long),
                ..Outgoing::default()
            })
            .is_err()
        );
    }

    #[test]
    fn headers_are_read_as_text_or_integers_or_named_for_their_type() {
        assert_eq!(
            header(&AMQPValue::LongString("250".into())),
            Header::Text("250".into())
        );
        assert_eq!(header(&AMQPValue::ShortUInt(250)), Header::Int(250));
        assert_eq!(
            header(&AMQPValue::FieldTable(FieldTable::default())),
            Header::Other("a table")
        );
        assert_eq!(
            header(&AMQPValue::Boolean(true)),
            Header::Other("a boolean")
        );
    }

    #[test]
    fn a_connection_closed_by_the_broker_is_a_lost_connection() {
        use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};
        let forced = lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED),
            "CONNECTION_FORCED - fault injection".into(),
        )));
        assert!(classify(forced).is_connection_lost());
        let refused = lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'u'".into(),
        )));
        let refused = classify(refused);
        assert_eq!(refused.refusal(), Some(Refusal::Access));
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(
            refused.to_string().contains("refused for user 'u'"),
            "{refused}"
        );
        let denied = lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Hard(AMQPHardError::INTERNALERROR),
            "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\nBy default".into(),
        )));
        assert_eq!(classify(denied).refusal(), Some(Refusal::DeniedFeature));
    }
}
