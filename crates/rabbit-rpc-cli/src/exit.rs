//! The command's exit codes: one per kind of failure a script may want to
//! tell apart. Documented in docs/CLI.md (the exit code table, summarised in
//! the README); keep them in step.

use rabbit_rpc::{Error, Refusal};

/// Success.
pub const OK: u8 = 0;
/// Any failure not listed below (an unexpected AMQP error, a queue the
/// broker will not let this user declare, a reply over the client's
/// 16 MiB `max_reply_size`, …).
pub const FAILURE: u8 = 1;
/// Bad command-line usage, including a malformed `--url`, a `--url-file`
/// that cannot be read, TLS options that cannot work (a missing or bad
/// certificate or key file: see docs/SECURITY.md) or a
/// request that cannot be sent as given (clap's own code).
pub const USAGE: u8 = 2;
/// The server answered with an error status (e.g. `invalid_argument`).
pub const REMOTE_ERROR: u8 = 3;
/// No reply within `--timeout`.
pub const TIMEOUT: u8 = 4;
/// No such queue, or nobody consuming it: no server to answer.
pub const NO_SERVER: u8 = 5;
/// The broker could not be reached (connection refused, unreachable, not
/// AMQP, no handshake in time).
pub const CANNOT_CONNECT: u8 = 6;
/// The connection to the broker dropped while in use.
pub const CONNECTION_LOST: u8 = 7;
/// The request queue exists with other settings than those `serve` was
/// given (`--queue-type`, `--transient`, `--delivery-limit`): nothing was
/// declared or deleted.
pub const QUEUE_MISMATCH: u8 = 8;
/// The broker refused what was asked as given: a queue setting or feature
/// its operator denies (a transient queue where `transient_nonexcl_queues`
/// is denied), a value it will not take (`PRECONDITION_FAILED`), a queue
/// exclusive to another connection (`RESOURCE_LOCKED`). Retrying unchanged
/// gets the same answer.
pub const REFUSED: u8 = 9;
/// The user lacks a permission (`ACCESS_REFUSED`, `NOT_ALLOWED`): to
/// configure, write to or read from a queue.
pub const ACCESS_REFUSED: u8 = 10;
/// The broker refused the login: the user name or password.
pub const LOGIN_REFUSED: u8 = 11;
/// The user may not use the virtual host, or it does not exist.
pub const VHOST_REFUSED: u8 = 12;
/// `ping`: a rabbit-rpc server answered, but is not serving (it is
/// draining: shutting down). Like grpc-health-probe's "rpc successful, but
/// the response is not SERVING" (its 4, which is our timeout).
pub const NOT_SERVING: u8 = 13;
/// `ping`, `describe`: the queue is served, but not by a rabbit-rpc server
/// (a tutorial server, another library's): it ran its handler on the
/// request instead of answering it. Like grpc-health-probe's "this server
/// does not implement the grpc health protocol".
pub const NOT_RABBIT_RPC: u8 = 14;
/// Stopped by a second Ctrl-C / SIGTERM before draining finished.
pub const INTERRUPTED: u8 = 130;

/// The exit code for a library error.
pub fn code_for(error: &Error) -> u8 {
    match error {
        Error::Remote(_) => REMOTE_ERROR,
        Error::Timeout { .. } => TIMEOUT,
        Error::NoRoute { .. } | Error::NoServer { .. } => NO_SERVER,
        Error::Connect { .. } => CANNOT_CONNECT,
        Error::ConnectionLost { .. } => CONNECTION_LOST,
        Error::InvalidUrl { .. }
        | Error::InvalidRequest { .. }
        | Error::Config { .. }
        | Error::Tls { .. } => USAGE,
        Error::QueueMismatch { .. } => QUEUE_MISMATCH,
        Error::NotRabbitRpc { .. } => NOT_RABBIT_RPC,
        // The server answered, but not with an error status (3), and the
        // call was well formed (2): the answer is more than this command
        // takes.
        Error::ReplyTooLarge { .. } => FAILURE,
        Error::Refused { refusal, .. } => match refusal {
            Refusal::Login => LOGIN_REFUSED,
            Refusal::VirtualHost => VHOST_REFUSED,
            Refusal::Access | Refusal::NotAllowed => ACCESS_REFUSED,
            _ => REFUSED,
        },
        _ => FAILURE,
    }
}

/// What to do when nothing serves `queue`, naming it. `serve fib` is
/// suggested only for the queue it serves by default
/// ([`DEFAULT_QUEUE`](crate::cli::DEFAULT_QUEUE)): any other queue is some
/// other service's, or misspelt.
fn no_server_hint(error: &Error, queue: &str) -> String {
    if queue == crate::cli::DEFAULT_QUEUE {
        format!("start one with `rabbit-rpc serve fib` (it serves '{queue}')")
    } else if matches!(error, Error::NoRoute { .. }) {
        format!("is '{queue}' spelt as its server names it?")
    } else {
        format!("start the server for '{queue}'")
    }
}

/// One line for stderr: what happened and, where it helps, what to do.
pub fn message_for(error: &Error) -> String {
    match error {
        Error::Connect { .. } => {
            format!("error: {error} (the broker is set with --url, --url-file or AMQP_URL)")
        }
        Error::NoRoute { queue } | Error::NoServer { queue } => {
            format!("error: {error}; {}", no_server_hint(error, queue))
        }
        Error::NotRabbitRpc { .. } => format!(
            "error: {error}; ping and describe need a rabbit-rpc server (a tutorial server \
             runs its handler on them)"
        ),
        Error::Refused {
            refusal: Refusal::DeniedFeature,
            reason,
        } if reason.contains("transient_nonexcl_queues") => {
            format!("error: {error} (for `serve`: drop --transient)")
        }
        Error::Refused {
            refusal: Refusal::Login | Refusal::VirtualHost,
            ..
        } => format!("error: {error} (the broker is set with --url, --url-file or AMQP_URL)"),
        _ => format!("error: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_server_hint_names_the_queue_and_suggests_serve_only_for_rpc_queue() {
        let fib = message_for(&Error::NoServer {
            queue: "rpc_queue".into(),
        });
        assert!(fib.contains("`rabbit-rpc serve fib`"), "{fib}");
        let other = message_for(&Error::NoRoute {
            queue: "inventroy.stock".into(),
        });
        assert!(!other.contains("rabbit-rpc serve"), "{other}");
        assert_eq!(
            other,
            "error: no queue named 'inventroy.stock' (is a server for it running?); \
             is 'inventroy.stock' spelt as its server names it?"
        );
        let idle = message_for(&Error::NoServer {
            queue: "inventory.stock".into(),
        });
        assert!(
            idle.ends_with("; start the server for 'inventory.stock'"),
            "{idle}"
        );
    }
}
