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

use crate::{
    Error,
    transport::{Channel, Connection, Declaration, QueueArgument, QueueState},
};

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
    /// [`ServerBuilder::durable`](crate::ServerBuilder::durable)`(false)`.
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

/// What to declare, from the builder's settings (a server's for every
/// queue, a procedure's for its own).
#[derive(Debug, Clone, Default)]
pub(super) struct QueueSettings {
    pub(super) queue_type: Option<QueueType>,
    pub(super) durable: Option<bool>,
    pub(super) delivery_limit: Option<u32>,
    pub(super) arguments: Vec<(String, QueueArgument)>,
}

impl QueueSettings {
    /// Whether the user asked for any queue setting: then the server
    /// declares with exactly those even when the queue exists.
    pub(super) fn explicit(&self) -> bool {
        self.queue_type.is_some()
            || self.durable.is_some()
            || self.delivery_limit.is_some()
            || !self.arguments.is_empty()
    }

    /// `self` (a procedure's settings) over `defaults` (the server's): each
    /// setting the procedure gives wins; arguments add up, the procedure's
    /// winning by name.
    pub(super) fn over(&self, defaults: &QueueSettings) -> QueueSettings {
        let mut arguments = defaults.arguments.clone();
        for (name, value) in &self.arguments {
            arguments.retain(|(n, _)| n != name);
            arguments.push((name.clone(), value.clone()));
        }
        QueueSettings {
            queue_type: self.queue_type.or(defaults.queue_type),
            durable: self.durable.or(defaults.durable),
            delivery_limit: self.delivery_limit.or(defaults.delivery_limit),
            arguments,
        }
    }

    /// Sets the argument `name`, replacing an earlier value.
    pub(super) fn set_argument(&mut self, name: String, value: QueueArgument) {
        self.arguments.retain(|(n, _)| *n != name);
        self.arguments.push((name, value));
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
    /// [`Error::Config`] for a transient quorum queue or a delivery
    /// limit on a classic queue.
    pub(super) fn check(&self) -> Result<(), Error> {
        let invalid = |reason: &str| {
            Err(Error::Config {
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

    /// The declaration: durability, and as arguments the queue type, the
    /// delivery limit if asked, and any extra arguments.
    fn declaration(&self) -> Declaration {
        let mut arguments = self.arguments.clone();
        let queue_type = match self.queue_type() {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        };
        arguments.retain(|(name, _)| name != "x-queue-type" && name != "x-delivery-limit");
        arguments.push((
            "x-queue-type".to_owned(),
            QueueArgument::Text(queue_type.to_owned()),
        ));
        if let Some(limit) = self.delivery_limit {
            arguments.push((
                "x-delivery-limit".to_owned(),
                QueueArgument::Int(i64::from(limit)),
            ));
        }
        Declaration {
            durable: self.durable(),
            arguments,
            ..Declaration::default()
        }
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
    queue: &str,
    settings: &QueueSettings,
) -> Result<QueueOrigin, Error> {
    let exists = connection.probe(queue).await? != QueueState::Missing;
    if exists && !settings.explicit() {
        return Ok(QueueOrigin::Joined);
    }
    channel.declare(queue, &settings.declaration()).await?;
    Ok(if exists {
        QueueOrigin::Matched
    } else {
        QueueOrigin::Created
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_settings_the_declaration_is_todays_tutorials() {
        let settings = QueueSettings::default();
        assert!(!settings.explicit());
        let declaration = settings.declaration();
        assert!(declaration.durable);
        assert_eq!(
            declaration.arguments,
            vec![(
                "x-queue-type".to_owned(),
                QueueArgument::Text("quorum".to_owned())
            )]
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

    #[test]
    fn a_procedures_settings_win_over_the_servers() {
        let mut server = QueueSettings {
            queue_type: Some(QueueType::Classic),
            ..QueueSettings::default()
        };
        server.set_argument("x-expires".into(), QueueArgument::Int(60_000));
        let mut procedure = QueueSettings {
            delivery_limit: Some(3),
            queue_type: Some(QueueType::Quorum),
            ..QueueSettings::default()
        };
        procedure.set_argument("x-expires".into(), QueueArgument::Int(1_000));
        let merged = procedure.over(&server);
        assert_eq!(merged.queue_type(), QueueType::Quorum);
        assert_eq!(merged.delivery_limit, Some(3));
        assert_eq!(
            merged.arguments,
            vec![("x-expires".to_owned(), QueueArgument::Int(1_000))]
        );
    }
}
