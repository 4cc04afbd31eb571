//! The spans of calls and requests, and (feature `opentelemetry`) the W3C
//! trace context that makes a server's span the child of its caller's
//! across the broker.
//!
//! Spans are `tracing` spans at DEBUG level, named `rpc.client` and
//! `rpc.server`, with the fields OpenTelemetry's conventions name for RPC
//! and messaging (`otel.kind`, `rpc.method`, `messaging.system`, …), so an
//! application keeps its own subscriber, and `tracing-opentelemetry` turns
//! them into OpenTelemetry spans. With nobody listening at DEBUG they are
//! never built.
//!
//! With feature `opentelemetry`, a client's request carries its span's
//! context as the headers `traceparent` (and `tracestate`), a server's span
//! takes the request's as its parent, and the server's reply carries the
//! server span's: through the propagator the application installs
//! (`opentelemetry::global::set_text_map_propagator`, W3C
//! `TraceContextPropagator` for these headers).

use tracing::{Span, field::Empty};

use crate::{Code, transport::Properties};

/// `rpc.system.name`: what the calls run over.
const SYSTEM: &str = "rabbit_rpc";

/// The headers of the W3C trace context.
#[cfg(feature = "opentelemetry")]
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Trace headers for an outgoing message: none unless a span has a context
/// to propagate.
pub(crate) type TraceHeaders = Vec<(&'static str, String)>;

/// The span of a call to `queue`.
pub(crate) fn client_span(queue: &str) -> Span {
    tracing::debug_span!(
        "rpc.client",
        otel.name = %queue,
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system.name = SYSTEM,
        rpc.method = %queue,
        rpc.response.status_code = Empty,
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.destination.name = %queue,
        messaging.rabbitmq.destination.routing_key = %queue,
    )
}

/// The span of a request from `queue`, a child of the caller's span when
/// the request carries its trace context.
pub(crate) fn server_span(
    queue: &str,
    correlation_id: Option<&str>,
    properties: &Properties,
) -> Span {
    let span = tracing::debug_span!(
        "rpc.server",
        otel.name = %queue,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system.name = SYSTEM,
        rpc.method = %queue,
        rpc.response.status_code = Empty,
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.destination.name = %queue,
        messaging.rabbitmq.destination.routing_key = %queue,
        messaging.message.conversation_id = correlation_id,
    );
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() && properties.has_headers() {
        propagation::adopt_parent(&span, properties);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = properties;
    span
}

/// Records how the call or request ended: its code, and an error status
/// where OpenTelemetry's RPC conventions call it one (any failure for a
/// client; for a server, only those that are the server's fault).
pub(crate) fn finish(span: &Span, code: Code, server: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("rpc.response.status_code", code.as_str());
    let error = if server {
        matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        )
    } else {
        code != Code::Ok
    };
    if error {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace context of `span`, as headers for a message that continues its
/// trace: empty when nobody listens, or without feature `opentelemetry`.
pub(crate) fn headers(span: &Span) -> TraceHeaders {
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        return propagation::headers(span);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = span;
    Vec::new()
}

/// Whether `properties` carry a valid trace context (for the fuzz targets,
/// which have no subscriber to enable the spans that would adopt it).
#[cfg(all(fuzzing, feature = "opentelemetry"))]
pub(crate) fn has_parent(properties: &Properties) -> bool {
    propagation::parent(properties).is_some()
}

#[cfg(feature = "opentelemetry")]
mod propagation {
    use opentelemetry::{
        global,
        propagation::{Extractor, Injector},
        trace::TraceContextExt,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TRACE_HEADERS, TraceHeaders};
    use crate::transport::{Header, Properties};

    /// The trace headers of a message, as text.
    struct Carrier(TraceHeaders);

    impl Extractor for Carrier {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value.as_str())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| *name).collect()
        }
    }

    impl Injector for Carrier {
        fn set(&mut self, key: &str, value: String) {
            if let Some(name) = TRACE_HEADERS.into_iter().find(|name| *name == key) {
                self.0.push((name, value));
            }
        }
    }

    /// Makes the context in `properties`' headers the parent of `span`.
    pub(super) fn adopt_parent(span: &Span, properties: &Properties) {
        if let Some(parent) = parent(properties) {
            let _ = span.set_parent(parent);
        }
    }

    /// The valid trace context in `properties`' headers, if any.
    pub(super) fn parent(properties: &Properties) -> Option<opentelemetry::Context> {
        let carrier = Carrier(
            TRACE_HEADERS
                .into_iter()
                .filter_map(|name| match properties.header(name)? {
                    Header::Text(value) => Some((name, value.into_owned())),
                    Header::Int(_) | Header::Other(_) => None,
                })
                .collect(),
        );
        if carrier.0.is_empty() {
            return None;
        }
        let parent = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
        parent.span().span_context().is_valid().then_some(parent)
    }

    pub(super) fn headers(span: &Span) -> TraceHeaders {
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return Vec::new();
        }
        let mut carrier = Carrier(Vec::new());
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut carrier);
        });
        carrier.0
    }
}
