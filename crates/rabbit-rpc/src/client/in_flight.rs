//! The calls waiting for a reply, keyed by `correlation_id`.
//!
//! A call registers itself and gets a [`Pending`] guard; dropping the guard
//! (the call finished, timed out or its future was dropped) removes the entry,
//! so nothing is left behind whatever way a call ends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::oneshot;

use super::strays::{Stray, Strays};
use crate::{Error, Reply};

/// What a waiting call receives: the reply, or why it will never come.
pub(crate) type Outcome = Result<Reply, Error>;

/// The map from correlation id to waiting call.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// `None` once the connection is gone: new calls fail at once instead of
    /// waiting for a reply that cannot arrive.
    calls: Mutex<Option<HashMap<Arc<str>, oneshot::Sender<Outcome>>>>,
    /// Why: what every call waiting then, and every call made since, fails
    /// with.
    closed_by: Mutex<Option<Error>>,
    /// Replies no call waits for; shared by every connection a client has
    /// had.
    strays: Arc<Strays>,
}

impl InFlight {
    #[cfg(test)]
    pub(crate) fn new() -> InFlight {
        InFlight::counting_into(Arc::default())
    }

    /// A map whose unknown replies are counted (and logged) in `strays`.
    pub(crate) fn counting_into(strays: Arc<Strays>) -> InFlight {
        InFlight {
            calls: Mutex::new(Some(HashMap::new())),
            closed_by: Mutex::default(),
            strays,
        }
    }

    /// Registers a call under `id`.
    ///
    /// # Errors
    /// What [`InFlight::close`] was given, after it.
    pub(crate) fn register(self: &Arc<Self>, id: &str) -> Result<Pending, Error> {
        // One copy of the id, for the map and the call both.
        let id: Arc<str> = Arc::from(id);
        let (sender, receiver) = oneshot::channel();
        match self.lock().as_mut() {
            Some(calls) => {
                calls.insert(Arc::clone(&id), sender);
            }
            None => return Err(self.closed_error()),
        }
        Ok(Pending {
            in_flight: Arc::clone(self),
            id,
            receiver,
        })
    }

    /// Hands `outcome` to the call waiting on `id`. Returns false, and counts
    /// an unknown reply, when no call waits on it (a late reply after a
    /// timeout, a duplicate, or a stranger's): the map stores nothing for
    /// it, so any number of them leave it as it was.
    pub(crate) fn complete(&self, id: &str, outcome: Outcome) -> bool {
        let delivered = self.fail_or_complete(id, outcome);
        if !delivered {
            self.strays.note(Stray::Unawaited(id));
        }
        delivered
    }

    /// Ends the call waiting on `id` with `error`, if it still waits. Unlike
    /// [`InFlight::complete`] this counts nothing when it does not.
    pub(crate) fn fail(&self, id: &str, error: Error) {
        self.fail_or_complete(id, Err(error));
    }

    /// Counts a reply that cannot belong to any call: it has no
    /// `correlation_id`.
    pub(crate) fn note_unmarked(&self) {
        self.strays.note(Stray::Unmarked);
    }

    fn fail_or_complete(&self, id: &str, outcome: Outcome) -> bool {
        let sender = self.lock().as_mut().and_then(|calls| calls.remove(id));
        match sender {
            // The receiver may be gone already if the call is being dropped
            // right now; that is not an unknown reply.
            Some(sender) => {
                let _ = sender.send(outcome);
                true
            }
            None => false,
        }
    }

    /// Fails every waiting call, and every new one, because of `cause`:
    /// with the broker's refusal when it refused something (a permission,
    /// say), else with [`Error::ConnectionLost`].
    pub(crate) fn close(&self, cause: &Error) {
        let cause = cause.ending_calls();
        let calls = self.lock().take().unwrap_or_default();
        for (_, sender) in calls {
            let _ = sender.send(Err(cause.ending_calls()));
        }
        *self.closed_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(cause);
    }

    /// How many calls are waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }

    /// How many replies arrived that no call was waiting for.
    #[cfg(test)]
    pub(crate) fn unknown_replies(&self) -> u64 {
        self.strays.count()
    }

    fn closed_error(&self) -> Error {
        match &*self.closed_by.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(cause) => cause.ending_calls(),
            None => Error::lost("the client is closed"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<Arc<str>, oneshot::Sender<Outcome>>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert or remove).
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One registered call. Await [`Pending::outcome`]; drop it to unregister.
#[derive(Debug)]
pub(crate) struct Pending {
    in_flight: Arc<InFlight>,
    id: Arc<str>,
    receiver: oneshot::Receiver<Outcome>,
}

impl Pending {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the reply or for the reason it will not come.
    pub(crate) async fn outcome(&mut self) -> Outcome {
        match (&mut self.receiver).await {
            Ok(outcome) => outcome,
            // The sender is only dropped without sending by `close`, which
            // always sends first; be defensive all the same.
            Err(_) => Err(self.in_flight.closed_error()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(calls) = self.in_flight.lock().as_mut() {
            calls.remove(&*self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;

    fn reply(text: &str) -> Outcome {
        Ok(Reply::new(text.as_bytes().to_vec(), None))
    }

    #[tokio::test]
    async fn a_completed_call_gets_its_reply_and_leaves_nothing() {
        let in_flight = Arc::new(InFlight::new());
        let mut pending = in_flight.register("a").unwrap();
        assert_eq!(in_flight.len(), 1);
        assert!(in_flight.complete("a", reply("1")));
        assert_eq!(pending.outcome().await.unwrap().body(), b"1");
        drop(pending);
        assert_eq!(in_flight.len(), 0);
    }

    #[test]
    fn dropping_a_call_unregisters_it() {
        let in_flight = Arc::new(InFlight::new());
        let pending = in_flight.register("a").unwrap();
        drop(pending);
        assert_eq!(in_flight.len(), 0);
        assert!(!in_flight.complete("a", reply("late")));
        assert_eq!(in_flight.unknown_replies(), 1);
    }

    #[test]
    fn unknown_ids_are_counted() {
        let in_flight = Arc::new(InFlight::new());
        let _pending = in_flight.register("a").unwrap();
        assert!(!in_flight.complete("b", reply("stranger")));
        assert_eq!(in_flight.unknown_replies(), 1);
        assert_eq!(in_flight.len(), 1);
    }

    #[tokio::test]
    async fn strangers_store_nothing_and_a_second_reply_is_dropped() {
        let in_flight = Arc::new(InFlight::new());
        let mut pending = in_flight.register("a").unwrap();
        for n in 0..10_000 {
            assert!(!in_flight.complete(&format!("stranger-{n}"), reply("x")));
        }
        assert_eq!(in_flight.len(), 1);
        assert!(in_flight.complete("a", reply("first")));
        assert!(!in_flight.complete("a", reply("second")));
        assert_eq!(pending.outcome().await.unwrap().body(), b"first");
        assert_eq!(in_flight.unknown_replies(), 10_001);
        assert_eq!(in_flight.len(), 0);
    }

    #[tokio::test]
    async fn close_fails_waiting_calls_and_refuses_new_ones() {
        let in_flight = Arc::new(InFlight::new());
        let mut pending = in_flight.register("a").unwrap();
        in_flight.close(&Error::lost("broker went away"));
        let error = pending.outcome().await.unwrap_err();
        assert!(error.is_connection_lost(), "{error}");
        let error = in_flight.register("b").unwrap_err();
        assert!(error.to_string().contains("broker went away"), "{error}");
        assert_eq!(in_flight.len(), 0);
    }
}
