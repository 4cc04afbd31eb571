//! One connection's worth of serving: the connection, a channel and a
//! consumer per procedure, and the channels for replies ([`Replies`]);
//! opening it (each queue joined or declared, prefetch set, consuming) and
//! closing it.

use std::sync::Arc;

use super::{
    callers::Callers, queue, queue::QueueOrigin, reply::Replies, running::Running, shared::Shared,
};
use crate::{
    Error,
    transport::{Channel, Connection, Consumer},
};

/// One procedure's queue as this connection consumes it.
#[derive(Debug)]
pub(super) struct Consuming {
    pub(super) channel: Channel,
    pub(super) consumer: Consumer,
    pub(super) origin: QueueOrigin,
    /// Consumers replaced by a new one (to change the prefetch, which a
    /// consumer keeps for its life): cancelled, but what was on its way to
    /// them is still taken and handled, until they end.
    pub(super) retiring: Vec<Consumer>,
}

/// One connection's worth of serving.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) connection: Connection,
    pub(super) replies: Replies,
    /// One per procedure, in the server's order.
    pub(super) consuming: Vec<Consuming>,
    /// Taking one request at a time (prefetch 1), after a request this
    /// server could not parse (see [`dispatch`](super::dispatch)).
    pub(super) degraded: bool,
    /// After a lost connection: asks whether a caller is still there before
    /// running its request (see [`callers`](super::callers)).
    pub(super) callers: Option<Arc<Callers>>,
}

impl Session {
    /// Joins or declares each procedure's queue on `connection`, sets its
    /// prefetch (1 when `degraded`) and starts consuming.
    pub(super) async fn open(
        connection: Connection,
        procedures: &[Arc<Running>],
        shared: &Shared,
        degraded: bool,
    ) -> Result<Session, Error> {
        let replies = Replies::open(&connection, shared.confirm_replies).await?;
        let mut consuming = Vec::with_capacity(procedures.len());
        for procedure in procedures {
            let channel = connection.channel().await?;
            let origin =
                queue::bind(&connection, &channel, &procedure.queue, &procedure.declare).await?;
            let prefetch = if degraded { 1 } else { procedure.prefetch };
            channel.prefetch(prefetch).await?;
            let consumer = channel.consume(&procedure.queue, false).await?;
            consuming.push(Consuming {
                channel,
                consumer,
                origin,
                retiring: Vec::new(),
            });
        }
        Ok(Session {
            connection,
            replies,
            consuming,
            degraded,
            callers: None,
        })
    }

    /// Closes the connection, which hands every unacknowledged request on it
    /// back to its queue, and the caller check's; bounded.
    pub(super) async fn close(&self, why: &str) {
        let _ = self.connection.close(why).await;
        if let Some(callers) = &self.callers {
            callers.close().await;
        }
    }
}
