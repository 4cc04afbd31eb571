//! Who may call a procedure: [`CallerPolicy`], on the caller's `user_id`.
//!
//! RabbitMQ validates the `user_id` property: a message whose `user_id` is
//! not the user its connection logged in as is refused by the broker (the
//! publishing channel is closed), unless that user is tagged
//! `impersonator`. So a server that reads it knows who called, and may
//! answer only some callers. rabbit-rpc clients set it to their login's
//! user name by default; tutorial clients send none.

use std::{collections::BTreeSet, sync::Arc};

use tracing::warn;

use super::refusals::{Note, RefusalLog};
use crate::Status;

/// The callers a procedure answers: everyone (no policy, the default), or
/// only requests whose broker-validated `user_id` is one of `allowed`.
#[derive(Debug, Clone, Default)]
pub(super) struct CallerPolicy {
    allowed: Option<Arc<BTreeSet<String>>>,
}

impl CallerPolicy {
    /// Answers only these users (added to those allowed already).
    pub(super) fn allow(&mut self, users: impl IntoIterator<Item = String>) {
        let mut allowed = self.allowed.as_deref().cloned().unwrap_or_default();
        allowed.extend(users);
        self.allowed = Some(Arc::new(allowed));
    }

    /// Whether a policy is set.
    pub(super) fn is_set(&self) -> bool {
        self.allowed.is_some()
    }

    /// Whether a request from `caller` (its `user_id`) may run:
    /// `unauthenticated` when a policy is set and the request names no
    /// caller, `permission_denied` when it names another.
    pub(super) fn check(&self, queue: &str, caller: Option<&str>) -> Result<(), Status> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        let names = || allowed.iter().cloned().collect::<Vec<_>>().join(", ");
        match caller {
            Some(caller) if allowed.contains(caller) => Ok(()),
            Some(caller) => Err(Status::permission_denied(format!(
                "user '{caller}' may not call '{queue}'; it answers {}",
                names()
            ))),
            None => Err(Status::unauthenticated(format!(
                "'{queue}' answers only known callers ({}), and the request names none: send \
                 the user_id property (rabbit-rpc clients do by default; the broker checks it is \
                 the user the connection logged in as)",
                names()
            ))),
        }
    }
}

/// Logs a request that `status` refused on `queue`, from `caller`: once per
/// caller a minute (see [`RefusalLog`]).
pub(super) fn log_denied(log: &RefusalLog, queue: &str, caller: Option<&str>, status: &Status) {
    let key = caller.unwrap_or("");
    match log.note(key) {
        Note::Line => warn!(queue, caller = key, "refusing a request: {status}"),
        Note::Summary(count) => warn!(
            queue,
            "refused {count} more requests in the last minute for their caller, from too many \
             callers to log each"
        ),
        Note::Quiet => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn without_a_policy_everyone_calls_with_one_only_the_allowed() {
        let open = CallerPolicy::default();
        assert!(open.check("q", None).is_ok());
        assert!(open.check("q", Some("anyone")).is_ok());
        let mut policy = CallerPolicy::default();
        policy.allow(["billing".to_owned()]);
        policy.allow(["audit".to_owned()]);
        assert!(policy.check("q", Some("billing")).is_ok());
        assert!(policy.check("q", Some("audit")).is_ok());
        let denied = policy.check("refunds", Some("bob")).unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "user 'bob' may not call 'refunds'; it answers audit, billing"
        );
        let anonymous = policy.check("refunds", None).unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated);
    }
}
