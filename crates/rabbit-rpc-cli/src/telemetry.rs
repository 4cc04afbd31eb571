//! Logs to stderr, and traces to an OpenTelemetry collector when the
//! standard OpenTelemetry environment asks for it.
//!
//! Traces are exported over OTLP (HTTP, protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; `/v1/traces` is added) or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) is set, unless
//! `OTEL_SDK_DISABLED=true`. The service name comes from
//! `OTEL_SERVICE_NAME` (default `rabbit-rpc`), more resource attributes from
//! `OTEL_RESOURCE_ATTRIBUTES`, the batching from `OTEL_BSP_*`. W3C trace
//! context (`traceparent`) crosses the broker in both directions. Without
//! the environment nothing is exported, and the spans are never built.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// What must be flushed before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still in the batch (within the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: could not send the last traces: {error}");
        }
    }
}

/// Logs to stderr at `default` level unless `RUST_LOG` says otherwise
/// (lapin's own logs stay off unless named; the warning that a URL's
/// `verify=verify_none` leaves the broker's certificate unchecked shows
/// unless named), and traces as the OpenTelemetry environment says.
///
/// # Errors
/// One line when the environment asks for something this build cannot do
/// (a protocol other than `http/protobuf`) or the exporter cannot be made.
pub fn init(default: &str) -> Result<Telemetry, String> {
    let mut spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    for quiet in ["lapin", "amq_protocol"] {
        if !spec.contains(quiet) {
            spec.push_str(&format!(",{quiet}=off"));
        }
    }
    if !spec.contains("rabbit_rpc::tls") {
        spec.push_str(",rabbit_rpc::tls=warn");
    }
    let filter = EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},lapin=off,amq_protocol=off")));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    let provider = tracer_provider()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("rabbit-rpc"))
            // The spans' own attributes only, not where in our code or on
            // which thread they ran.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // rabbit-rpc's call and request spans (DEBUG), nothing else.
            .with_filter(EnvFilter::new("rabbit_rpc=debug"))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(Telemetry { provider })
}

/// The exporting tracer provider, if the environment asks for one.
fn tracer_provider() -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name)
            && !protocol.trim().eq_ignore_ascii_case("http/protobuf")
        {
            return Err(format!(
                "{name}={protocol} is not supported: this build exports traces over http/protobuf only; \
                 set {name}=http/protobuf (and the collector's OTLP/HTTP endpoint, port 4318 by default)"
            ));
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|error| format!("cannot set up the trace exporter: {error}"))?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("rabbit-rpc");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}
