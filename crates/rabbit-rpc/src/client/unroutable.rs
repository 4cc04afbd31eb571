//! Requests no queue took: how a client hears that the broker returned a
//! `mandatory` request as unroutable, with or without publisher confirms.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::in_flight::InFlight;
use crate::{
    Error,
    transport::{Channel, Confirm, Confirmed},
};

/// How often, while calls are waiting, a client without publisher confirms
/// collects requests the broker returned as unroutable.
const RETURN_SWEEP: Duration = Duration::from_millis(20);

/// Without publisher confirms the broker's returns of unroutable
/// (`mandatory`) requests wait until asked for. Collect them while calls
/// wait, and fail those calls with [`Error::NoRoute`]. With confirms, the
/// same call frees the confirms of calls dropped while publishing, which
/// lapin otherwise keeps forever.
pub(super) async fn sweep_returns(channel: Channel, in_flight: Arc<InFlight>) {
    let mut tick = tokio::time::interval(RETURN_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if in_flight.len() == 0 {
            continue;
        }
        let Ok(returned) = channel.returned().await else {
            // The channel is gone; the reply consumer fails every call.
            return;
        };
        for message in returned {
            if let Some(id) = message.correlation_id {
                in_flight.fail(
                    &id,
                    Error::NoRoute {
                        queue: message.routing_key,
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
        let error = match confirm.outcome().await {
            Some(Confirmed::Taken) => continue,
            Some(Confirmed::Returned) => Error::NoRoute { queue },
            Some(Confirmed::Refused) => Error::Rejected { queue },
            // The reply consumer sees the same failure and fails every call.
            None => continue,
        };
        in_flight.fail(&id, error);
    }
}

/// A request's confirm, and which call it belongs to.
#[derive(Debug)]
pub(super) struct PendingConfirm {
    pub(super) id: String,
    pub(super) queue: String,
    pub(super) confirm: Confirm,
}
