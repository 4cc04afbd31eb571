//! `rabbit-rpc serve SERVICE...`: fib, echo, or both over one connection.

use rabbit_rpc::{
    Error, Health, Procedure, QueueOrigin, QueueType, Request, Server, Status, handler_fn, http,
};
use tracing::{info, warn};

use crate::{
    cli::{ServeArgs, ServerArgs, ServiceName},
    exit,
    fib::FibService,
};

/// Serves each of `queues` (a service and its queue, from
/// [`ServeArgs::queues`]) until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When binding to a queue fails, or the connection is lost and cannot come
/// back.
pub async fn serve(
    urls: &[String],
    args: &ServeArgs,
    queues: &[(ServiceName, String)],
) -> Result<(), Error> {
    let signals = Signals::listen();
    let server_args = &args.server;
    let names: Vec<&str> = queues.iter().map(|(service, _)| service.as_str()).collect();
    let mut builder = Server::builder()
        .urls(urls)
        .prefetch(server_args.prefetch)
        .concurrency(server_args.concurrency)
        .max_request_size(server_args.max_request_size)
        .drain_timeout(server_args.drain_timeout)
        .connection_name(
            server_args
                .connection_name
                .clone()
                .unwrap_or_else(|| format!("rabbit-rpc serve {}", names.join(" "))),
        );
    if let Some(timeout) = server_args.handler_timeout {
        builder = builder.handler_timeout(timeout);
    }
    for (service, queue) in queues {
        builder = match service {
            ServiceName::Fib => builder.procedure(queue, FibService::new(args.max_n())),
            ServiceName::Echo => builder.add_procedure(
                Procedure::new(
                    queue,
                    handler_fn(
                        |request: Request| async move { Ok::<_, Status>(request.into_body()) },
                    ),
                )
                .doc("Replies with the request body, unchanged, in its content type."),
            ),
        };
    }
    if let Some(queue_type) = server_args.queue_type() {
        builder = builder.queue_type(queue_type);
    }
    if server_args.transient {
        builder = builder.durable(false);
    }
    if let Some(limit) = server_args.delivery_limit {
        builder = builder.delivery_limit(limit);
    }
    for prefix in &server_args.allow_reply_to {
        builder = builder.allow_reply_to_prefix(prefix);
    }
    if server_args.allow_any_reply_to {
        builder = builder.allow_any_reply_to();
    }
    if !server_args.allow_caller.is_empty() {
        builder = builder.allow_callers(server_args.allow_caller.iter().cloned());
    }
    let builder = builder.confirm_replies(server_args.confirm_replies);
    if let Some(address) = &server_args.http {
        // Before binding: probes answer "connecting" from the start, and
        // the server takes its metric handles from the recorder.
        operations_endpoint(address, builder.health()).await;
    }
    let server = builder.bind().await?;
    for (service, queue) in queues {
        let origin = match server.queue_origin(queue) {
            Some(QueueOrigin::Joined) => "existing queue, served as it is".to_owned(),
            Some(QueueOrigin::Matched) => "existing queue, same settings".to_owned(),
            _ => format!("created it: {}", declared(server_args)),
        };
        let detail = match service {
            ServiceName::Fib => format!("n up to {}", args.max_n()),
            ServiceName::Echo => "replies with the request body".to_owned(),
        };
        info!(
            "serving {service} on queue '{queue}' ({origin}) at {} (concurrency {}, prefetch {}, {detail}); Ctrl-C to stop",
            server.broker(),
            server_args.concurrency,
            server_args.prefetch
        );
    }
    let stats = server.stats();
    let each: Vec<_> = queues
        .iter()
        .filter_map(|(service, queue)| Some((service, queue, server.procedure_stats(queue)?)))
        .collect();
    server.serve_with_shutdown(shutdown_signal(signals)).await?;
    info!("stopped: {stats}");
    if each.len() > 1 {
        for (service, queue, stats) in each {
            info!("  {service} on '{queue}': {stats}");
        }
    }
    Ok(())
}

/// Serves metrics, liveness and readiness on `address`, in the background.
/// A failure to listen there ends the process with one line (before any
/// connection is made).
async fn operations_endpoint(address: &str, health: Health) {
    let metrics = match http::Metrics::install() {
        Ok(metrics) => metrics,
        Err(error) => fail(&error.to_string()),
    };
    let endpoint = match http::Endpoint::bind(address).await {
        Ok(endpoint) => endpoint,
        Err(error) => fail(&format!("{error}; choose another address for --http")),
    };
    let listening = endpoint
        .local_addr()
        .map_or_else(|_| address.to_owned(), |a| a.to_string());
    tokio::spawn(endpoint.metrics(metrics).health(health).serve());
    info!("metrics and probes on http://{listening}: /metrics, /livez, /readyz");
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(i32::from(exit::FAILURE))
}

/// The queue `serve` declares when it does not exist, in a few words.
fn declared(args: &ServerArgs) -> String {
    let mut text = match (args.queue_type(), args.transient) {
        (Some(QueueType::Classic), false) => "durable classic".to_owned(),
        (_, true) => "transient classic".to_owned(),
        _ => "durable quorum".to_owned(),
    };
    if let Some(limit) = args.delivery_limit {
        text.push_str(&format!(", delivery limit {limit}"));
    }
    text
}

/// Completes on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn shutdown_signal(mut signals: Signals) {
    signals.next().await;
    // The library says next what it waits for (nothing, or requests in hand).
    info!("signal received (Ctrl-C again to stop at once)");
    tokio::spawn(async move {
        signals.next().await;
        warn!("stopping at once; unfinished requests go back to the queue");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
}

/// Ctrl-C and SIGTERM, listened for from the moment this exists: a signal
/// sent as soon as the server says it is ready must start a drain, not kill
/// the process.
struct Signals {
    #[cfg(unix)]
    listening: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listening = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
                _ => None,
            };
            Signals { listening }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((interrupt, terminate)) = &mut self.listening {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
