//! The request queue: joining the one that exists, or declaring it the way
//! today's tutorials do, and what to say when it exists with other settings.
//!
//! The rule, at bind and at every reconnection:
//! - the server first asks the broker whether the queue exists (a passive
//!   declare on a throwaway channel: a "no" closes the channel it is asked
//!   on);
//! - if it exists and no queue setting was given, the server consumes it as
//!   it is, whatever its type and arguments: a server of any language or
//!   year may have declared it;
//! - otherwise it declares the queue with exactly the settings given (by
//!   default durable, `x-queue-type: quorum` and nothing else, as RabbitMQ's
//!   tutorials declare `rpc_queue` today), and the broker judges whether an
//!   existing queue is equivalent.

use lapin::{
    Channel, Connection,
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable, ShortString},
};

use crate::Error;

/// The kind of request queue a server declares when it declares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// A quorum queue (`x-queue-type: quorum`): durable and replicated over
    /// a cluster's nodes. What RabbitMQ's tutorials declare today, in every
    /// language; the default.
    #[default]
    Quorum,
    /// A classic queue (`x-queue-type: classic`): durable unless
    /// [`ServerBuilder::durable`](super::ServerBuilder::durable)`(false)`.
    Classic,
}

/// How a server came by its request queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueOrigin {
    /// The queue existed and no queue setting was given: the server serves
    /// it as it is, whatever its type and arguments.
    Joined,
    /// The queue existed and the broker found it equivalent to the settings
    /// given.
    Matched,
    /// The queue did not exist; the server declared it.
    Created,
}

/// What to declare, from the builder's settings.
#[derive(Debug, Clone, Default)]
pub(super) struct QueueSettings {
    pub(super) queue_type: Option<QueueType>,
    pub(super) durable: Option<bool>,
    pub(super) delivery_limit: Option<u32>,
    pub(super) arguments: FieldTable,
}

impl QueueSettings {
    /// Whether the user asked for any queue setting: then the server
    /// declares with exactly those even when the queue exists.
    pub(super) fn explicit(&self) -> bool {
        self.queue_type.is_some()
            || self.durable.is_some()
            || self.delivery_limit.is_some()
            || !self.arguments.inner().is_empty()
    }

    /// The type declared: as set, else classic for a transient queue, else
    /// quorum.
    pub(super) fn queue_type(&self) -> QueueType {
        match (self.queue_type, self.durable) {
            (Some(queue_type), _) => queue_type,
            (None, Some(false)) => QueueType::Classic,
            (None, _) => QueueType::Quorum,
        }
    }

    /// Whether the declaration is durable: always, unless a classic queue
    /// was asked to be transient.
    pub(super) fn durable(&self) -> bool {
        self.durable.unwrap_or(true)
    }

    /// Checks that the settings make one queue.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a transient quorum queue or a delivery
    /// limit on a classic queue.
    pub(super) fn check(&self) -> Result<(), Error> {
        let invalid = |reason: &str| {
            Err(Error::InvalidRequest {
                reason: reason.to_owned(),
            })
        };
        match self.queue_type() {
            QueueType::Quorum if !self.durable() => invalid(
                "a quorum queue is always durable; ask for a classic queue to make it transient",
            ),
            QueueType::Classic if self.delivery_limit.is_some() => invalid(
                "a delivery limit applies to quorum queues only; drop it or ask for a quorum queue",
            ),
            _ => Ok(()),
        }
    }

    /// The declaration's arguments: the queue type, the delivery limit if
    /// asked, and any extra arguments.
    fn arguments(&self) -> FieldTable {
        let mut arguments = self.arguments.clone();
        let queue_type = match self.queue_type() {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        };
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.into()),
        );
        if let Some(limit) = self.delivery_limit {
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(limit)),
            );
        }
        arguments
    }

    /// A few words for logs: "a durable quorum queue".
    pub(super) fn describe(&self) -> &'static str {
        match (self.queue_type(), self.durable()) {
            (QueueType::Quorum, _) => "a durable quorum queue",
            (QueueType::Classic, true) => "a durable classic queue",
            (QueueType::Classic, false) => "a transient classic queue",
        }
    }
}

/// Joins or declares `queue` on `channel` (the channel that will consume
/// it), by the rule in this module's docs.
///
/// # Errors
/// [`Error::QueueMismatch`] when the queue exists with other settings than
/// those given, [`Error::Declare`] when the broker refuses otherwise (no
/// permission, a queue exclusive to another connection), or the connection
/// failing.
pub(super) async fn bind(
    connection: &Connection,
    channel: &Channel,
    queue: &ShortString,
    settings: &QueueSettings,
) -> Result<QueueOrigin, Error> {
    let exists = exists(connection, queue).await?;
    if exists && !settings.explicit() {
        return Ok(QueueOrigin::Joined);
    }
    channel
        .queue_declare(
            queue.clone(),
            QueueDeclareOptions {
                durable: settings.durable(),
                ..QueueDeclareOptions::default()
            },
            settings.arguments(),
        )
        .await
        .map_err(|error| declare_error(queue.as_str(), &error))?;
    Ok(if exists {
        QueueOrigin::Matched
    } else {
        QueueOrigin::Created
    })
}

/// Whether `queue` exists, asked on a throwaway channel.
async fn exists(connection: &Connection, queue: &ShortString) -> Result<bool, Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::from_lapin)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.clone(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = channel.close(200, "probe done".into()).await;
            Ok(true)
        }
        // The 404 closed the throwaway channel; nothing else to do.
        Err(error) if amqp_code(&error) == Some(404) => Ok(false),
        Err(error) => Err(declare_error(queue.as_str(), &error)),
    }
}

fn amqp_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The error for a failed declaration of `queue`.
fn declare_error(queue: &str, error: &lapin::Error) -> Error {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return Error::from_lapin(error.clone());
    };
    let message = amqp.get_message().as_str();
    match amqp.get_id() {
        406 => match Inequivalent::parse(message) {
            Some(found) => Error::QueueMismatch {
                queue: queue.to_owned(),
                setting: found.setting,
                existing: found.current,
                asked: found.received,
            },
            None => Error::Declare {
                queue: queue.to_owned(),
                reason: format!(
                    "it exists with other settings ({message}); serve it without queue settings \
                     to take it as it is, or delete it to declare it anew"
                ),
            },
        },
        403 => Error::Declare {
            queue: queue.to_owned(),
            reason: format!("access refused ({message}); check the user's permissions"),
        },
        405 => Error::Declare {
            queue: queue.to_owned(),
            reason: format!(
                "it is exclusive to another connection ({message}); choose another queue name"
            ),
        },
        _ => Error::from_lapin(error.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn without_settings_the_declaration_is_todays_tutorials() {
        let settings = QueueSettings::default();
        assert!(!settings.explicit());
        assert!(settings.durable());
        assert_eq!(settings.queue_type(), QueueType::Quorum);
        let arguments = settings.arguments();
        assert_eq!(arguments.inner().len(), 1, "{arguments:?}");
        assert_eq!(
            arguments.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }

    #[test]
    fn settings_that_make_no_queue_are_refused() {
        let transient_quorum = QueueSettings {
            queue_type: Some(QueueType::Quorum),
            durable: Some(false),
            ..QueueSettings::default()
        };
        assert!(transient_quorum.check().is_err());
        let limited_classic = QueueSettings {
            queue_type: Some(QueueType::Classic),
            delivery_limit: Some(3),
            ..QueueSettings::default()
        };
        assert!(limited_classic.check().is_err());
        let transient = QueueSettings {
            durable: Some(false),
            ..QueueSettings::default()
        };
        assert!(transient.check().is_ok());
        assert_eq!(transient.queue_type(), QueueType::Classic);
        assert_eq!(transient.describe(), "a transient classic queue");
    }
}
