//! Requests no queue took: how a client hears that the broker returned a
//! `mandatory` request as unroutable, with or without publisher confirms.

use std::{sync::Arc, time::Duration};

use lapin::{Channel, Confirmation, PublisherConfirm};
use tokio::sync::mpsc;

use crate::{Error, in_flight::InFlight};

/// How often, while calls are waiting, a client without publisher confirms
/// collects requests the broker returned as unroutable.
pub const RETURN_SWEEP: Duration = Duration::from_millis(20);

/// Without publisher confirms lapin keeps returned (unroutable `mandatory`)
/// requests until `wait_for_confirms` is called, which then returns at once.
/// Collect them while calls wait, and fail those calls with
/// [`Error::NoRoute`]. With confirms, the same call frees the confirms of
/// calls dropped while publishing, which lapin otherwise keeps forever.
pub(super) async fn sweep_returns(channel: Channel, in_flight: Arc<InFlight>) {
    let mut tick = tokio::time::interval(RETURN_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if in_flight.len() == 0 {
            continue;
        }
        let Ok(returned) = channel.wait_for_confirms().await else {
            // The channel is gone; the reply consumer fails every call.
            return;
        };
        for message in returned {
            let properties = &message.delivery.properties;
            if let Some(id) = properties.correlation_id() {
                in_flight.fail(
                    id.as_str(),
                    Error::NoRoute {
                        queue: message.delivery.routing_key.to_string(),
                    },
                );
            }
        }
    }
}

/// Resolves publisher confirms in order, failing calls whose request no
/// queue took (returned as unroutable) or the broker refused.
pub(super) async fn watch_confirms(
    mut queue: mpsc::UnboundedReceiver<PendingConfirm>,
    in_flight: Arc<InFlight>,
) {
    while let Some(PendingConfirm { id, queue, confirm }) = queue.recv().await {
        let error = match confirm.await {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => continue,
            Ok(Confirmation::Ack(Some(_returned))) => Error::NoRoute { queue },
            Ok(Confirmation::Nack(_)) => Error::Rejected { queue },
            // The reply consumer sees the same failure and fails every call.
            Err(_) => continue,
        };
        in_flight.fail(&id, error);
    }
}

/// A request's confirm, and which call it belongs to.
pub(super) struct PendingConfirm {
    pub(super) id: String,
    pub(super) queue: String,
    pub(super) confirm: PublisherConfirm,
}

impl std::fmt::Debug for PendingConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConfirm")
            .field("id", &self.id)
            .finish()
    }
}
