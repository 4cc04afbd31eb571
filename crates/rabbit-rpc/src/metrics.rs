//! What clients and servers measure, and under which names.
//!
//! rabbit-rpc records its measurements through the [`metrics`](https://docs.rs/metrics)
//! facade, as it logs through `tracing`: whatever recorder the application
//! installs gets them (a Prometheus exporter: `rabbit_rpc::http::Metrics`
//! with feature `http`; an OpenTelemetry or StatsD bridge), and with none
//! installed they cost next to nothing. Install the recorder before binding
//! a server or connecting a client: each keeps the handles it got then.
//!
//! Names follow OpenTelemetry's semantic conventions for RPC
//! (`rpc.server.call.duration` in seconds, with the attributes `rpc.method`
//! and `rpc.response.status_code`), spelled as Prometheus spells them. A
//! procedure is its queue: `rpc_method` is the queue's name, and
//! `rpc_response_status_code` a [`Code`]'s wire name (`ok`,
//! `invalid_argument`, …; on the client, the code of the error the call
//! failed with, e.g. `deadline_exceeded` for a timeout). The calls made are
//! the duration histograms' counts.

use std::sync::{Arc, OnceLock};

use ::metrics::{Counter, Gauge, Histogram, Label};

use crate::Code;

/// Server: how long each request took, from its delivery to its reply
/// being sent (histogram, seconds; labels `rpc_method`,
/// `rpc_response_status_code`). Its `_count` is the requests answered, by
/// code, recorded as each reply leaves (before the caller can have it).
pub const SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";

/// Server: requests being worked on now (gauge; label `rpc_method`).
pub const SERVER_REQUESTS_IN_FLIGHT: &str = "rpc_server_requests_in_flight";

/// Server: request body sizes (histogram, bytes; label `rpc_method`).
pub const SERVER_REQUEST_SIZE: &str = "rpc_server_request_size_bytes";

/// Server: reply body sizes (histogram, bytes; label `rpc_method`).
pub const SERVER_RESPONSE_SIZE: &str = "rpc_server_response_size_bytes";

/// Server: requests not answered, or not only answered, by what became of
/// them (counter; labels `rpc_method` and `outcome`: `refused` for their
/// `reply_to`, `denied` for their caller (answered with an error),
/// `expired` (the caller had stopped waiting), `dropped`
/// (nowhere to answer), `redelivered` (delivered before), `requeued`
/// (handed back unstarted on shutdown)). The same counts as
/// [`ServerStats`](crate::ServerStats).
pub const SERVER_REQUESTS: &str = "rabbit_rpc_server_requests_total";

/// Server: connections lost and made again (counter).
pub const SERVER_RECONNECTIONS: &str = "rabbit_rpc_server_reconnections_total";

/// Client: how long each call took, from the call to its reply or failure
/// (histogram, seconds; labels `rpc_method`, `rpc_response_status_code`).
/// Its `_count` is the calls made, by outcome.
pub const CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";

/// Client: connections lost and made again (counter).
pub const CLIENT_RECONNECTIONS: &str = "rabbit_rpc_client_reconnections_total";

/// The buckets of the duration histograms, in seconds: 100 µs to 60 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// The buckets of the size histograms, in bytes: 16 B to 16 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Describes every metric above to the installed recorder (their help
/// texts and units), and registers the reconnection counters at zero.
/// `http::Metrics::install` (feature `http`) calls it; call it after
/// installing a recorder of your own.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        SERVER_CALL_DURATION,
        Unit::Seconds,
        "How long each request took on the server, from its delivery to its reply, by procedure and code"
    );
    describe_gauge!(
        SERVER_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests the server is working on now, by procedure"
    );
    describe_histogram!(
        SERVER_REQUEST_SIZE,
        Unit::Bytes,
        "Request body sizes, by procedure"
    );
    describe_histogram!(
        SERVER_RESPONSE_SIZE,
        Unit::Bytes,
        "Reply body sizes, by procedure"
    );
    describe_counter!(
        SERVER_REQUESTS,
        Unit::Count,
        "Requests by what became of them besides an answer: refused for their reply_to, denied for their caller, expired, dropped, redelivered, requeued"
    );
    describe_counter!(
        SERVER_RECONNECTIONS,
        Unit::Count,
        "Connections the server lost and made again"
    );
    describe_histogram!(
        CLIENT_CALL_DURATION,
        Unit::Seconds,
        "How long each call took on the client, by procedure and outcome code"
    );
    describe_counter!(
        CLIENT_RECONNECTIONS,
        Unit::Count,
        "Connections the client lost and made again"
    );
}

/// What became of a request besides (or instead of) its answer: the
/// `outcome` label of [`SERVER_REQUESTS`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Refused,
    Denied,
    Expired,
    Dropped,
    Redelivered,
    Requeued,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Refused,
        Outcome::Denied,
        Outcome::Expired,
        Outcome::Dropped,
        Outcome::Redelivered,
        Outcome::Requeued,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Refused => "refused",
            Outcome::Denied => "denied",
            Outcome::Expired => "expired",
            Outcome::Dropped => "dropped",
            Outcome::Redelivered => "redelivered",
            Outcome::Requeued => "requeued",
        }
    }
}

/// A duration histogram per response code, each registered the first time
/// a call ends with that code (so a scrape shows the codes that happened).
#[derive(Debug)]
struct ByCode {
    name: &'static str,
    method: Arc<str>,
    histograms: [OnceLock<Histogram>; Code::ALL.len()],
}

impl ByCode {
    fn new(name: &'static str, method: &str) -> ByCode {
        ByCode {
            name,
            method: method.into(),
            histograms: Default::default(),
        }
    }

    fn record(&self, code: Code, seconds: f64) {
        self.histograms[code.index()]
            .get_or_init(|| {
                ::metrics::histogram!(
                    self.name,
                    "rpc_method" => self.method.to_string(),
                    "rpc_response_status_code" => code.as_str()
                )
            })
            .record(seconds);
    }
}

/// One procedure's measurements on a server.
#[derive(Debug)]
pub(crate) struct ProcedureMetrics {
    durations: ByCode,
    in_flight: Gauge,
    request_size: Histogram,
    response_size: Histogram,
    outcomes: [Counter; Outcome::ALL.len()],
}

impl ProcedureMetrics {
    pub(crate) fn new(queue: &str) -> ProcedureMetrics {
        let method = || Label::new("rpc_method", queue.to_owned());
        ProcedureMetrics {
            durations: ByCode::new(SERVER_CALL_DURATION, queue),
            in_flight: ::metrics::gauge!(SERVER_REQUESTS_IN_FLIGHT, vec![method()]),
            request_size: ::metrics::histogram!(SERVER_REQUEST_SIZE, vec![method()]),
            response_size: ::metrics::histogram!(SERVER_RESPONSE_SIZE, vec![method()]),
            outcomes: Outcome::ALL.map(|outcome| {
                ::metrics::counter!(
                    SERVER_REQUESTS,
                    vec![method(), Label::new("outcome", outcome.as_str())]
                )
            }),
        }
    }

    /// A request is being worked on until the guard drops.
    pub(crate) fn in_flight(&self, request_size: usize) -> InFlightGuard<'_> {
        self.request_size.record(request_size as f64);
        self.in_flight.increment(1.0);
        InFlightGuard(&self.in_flight)
    }

    /// A request answered with `code` and a reply of `size` bytes, after
    /// `seconds`.
    pub(crate) fn answered(&self, code: Code, size: usize, seconds: f64) {
        self.durations.record(code, seconds);
        self.response_size.record(size as f64);
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
    }
}

/// Counts a request out of the in-flight gauge when dropped, however its
/// task ends.
pub(crate) struct InFlightGuard<'a>(&'a Gauge);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A client's measurements, per procedure called.
#[derive(Debug, Default)]
pub(crate) struct ClientMetrics {
    calls: std::sync::RwLock<std::collections::HashMap<Box<str>, ByCode>>,
}

impl ClientMetrics {
    /// A call to `queue` ended with `code` after `seconds`.
    pub(crate) fn call(&self, queue: &str, code: Code, seconds: f64) {
        if let Some(by_code) = self
            .calls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
        {
            return by_code.record(code, seconds);
        }
        self.calls
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue.into())
            .or_insert_with(|| ByCode::new(CLIENT_CALL_DURATION, queue))
            .record(code, seconds);
    }
}
