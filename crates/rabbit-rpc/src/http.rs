//! An HTTP endpoint for running a server in production (feature `http`):
//! Prometheus metrics at `/metrics`, liveness at `/livez`, readiness at
//! `/readyz`.
//!
//! ```no_run
//! use rabbit_rpc::{http, Request, Server, Status, handler_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Before binding: the server keeps the metric handles it gets then.
//! let metrics = http::Metrics::install()?;
//! let builder = Server::builder().procedure("echo", handler_fn(|request: Request| async move {
//!     Ok::<_, Status>(request.into_body())
//! }));
//! // Probes answer from the start: 503 "connecting" until bound.
//! let endpoint = http::Endpoint::bind("127.0.0.1:9464")
//!     .await?
//!     .metrics(metrics)
//!     .health(builder.health());
//! tokio::spawn(endpoint.serve());
//! let server = builder.bind().await?;
//! server.serve().await?;
//! # Ok(()) }
//! ```
//!
//! - `GET /metrics`: every metric of the process's recorder in Prometheus'
//!   text format (what rabbit-rpc records is listed in
//!   [`crate::metrics`]);
//! - `GET /livez`: 200 while the servers run their loops (reconnecting
//!   included), 503 once one has stopped;
//! - `GET /readyz`: 200 while every server is connected and consuming all
//!   its queues, 503 while connecting, reconnecting or draining; the body
//!   is one line saying which, and why.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{Health, metrics as names};

/// How often histograms are folded into their buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's metrics recorder: Prometheus, for [`Endpoint`]'s
/// `/metrics`. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Installs a Prometheus recorder as the process's metrics recorder,
    /// with rabbit-rpc's histogram buckets ([`names::DURATION_BUCKETS`],
    /// [`names::SIZE_BUCKETS`]). Call it once, inside a tokio runtime,
    /// before binding servers and connecting clients.
    ///
    /// # Errors
    /// An [`io::ErrorKind::AlreadyExists`] error when the process already
    /// has a metrics recorder.
    pub fn install() -> io::Result<Metrics> {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".to_owned()),
                names::DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Suffix("_size_bytes".to_owned()),
                    names::SIZE_BUCKETS,
                )
            })
            .map_err(|error| io::Error::other(error.to_string()))?;
        let handle = builder.install_recorder().map_err(|error| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot install the Prometheus recorder: {error}"),
            )
        })?;
        names::describe();
        // Samples wait in a histogram until upkeep folds them into its
        // buckets: without scrapes they would pile up.
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP).await;
                upkeep.run_upkeep();
            }
        });
        Ok(Metrics { handle })
    }

    /// Every metric, in Prometheus' text format (what `/metrics` serves).
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// The HTTP listener, bound; [`Endpoint::serve`] answers on it.
#[derive(Debug)]
pub struct Endpoint {
    listener: tokio::net::TcpListener,
    shared: Shared,
}

#[derive(Debug, Clone, Default)]
struct Shared {
    metrics: Option<Metrics>,
    health: Vec<Health>,
}

impl Endpoint {
    /// Listens on `address` (e.g. `127.0.0.1:9464`; port 0 picks a free
    /// one, see [`Endpoint::local_addr`]).
    ///
    /// # Errors
    /// When the address cannot be resolved or listened on (taken, say); the
    /// error names it.
    pub async fn bind(address: &str) -> io::Result<Endpoint> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| {
                io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
            })?;
        Ok(Endpoint {
            listener,
            shared: Shared::default(),
        })
    }

    /// Serves `metrics` at `/metrics` (without, `/metrics` answers 404).
    pub fn metrics(mut self, metrics: Metrics) -> Endpoint {
        self.shared.metrics = Some(metrics);
        self
    }

    /// Answers `/livez` and `/readyz` for this server too; without any,
    /// both answer 200.
    pub fn health(mut self, health: Health) -> Endpoint {
        self.shared.health.push(health);
        self
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// As [`tokio::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers requests until the task is dropped.
    ///
    /// # Errors
    /// When accepting connections fails for good.
    pub async fn serve(self) -> io::Result<()> {
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(Arc::new(self.shared));
        axum::serve(self.listener, router).await
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match &shared.metrics {
        Some(metrics) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no metrics recorder here\n".to_owned(),
        ),
    }
}

async fn livez(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.health.iter().all(Health::is_live) {
        (StatusCode::OK, "live\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n")
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut lines = Vec::new();
    let mut ready = true;
    for health in &shared.health {
        match health.readiness() {
            Ok(line) => lines.push(line),
            Err(line) => {
                ready = false;
                lines.push(line);
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if lines.is_empty() {
        "ready\n".to_owned()
    } else {
        format!("{}\n", lines.join("; "))
    };
    (status, body)
}
