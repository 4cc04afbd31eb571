//! `rabbit-rpc serve fib` and `rabbit-rpc serve echo`.

use rabbit_rpc::{Error, Handler, QueueOrigin, QueueType, Request, Server, Status, handler_fn};
use tracing::{info, warn};

use crate::{
    cli::{EchoArgs, FibArgs, ServerArgs},
    exit,
    fib::FibService,
};

/// Serves the fibonacci service until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When binding to the queue fails or the connection is lost.
pub async fn serve_fib(urls: &[String], args: &FibArgs) -> Result<(), Error> {
    let detail = format!("n up to {}", args.max_n);
    serve(
        urls,
        &args.server,
        "fib",
        &detail,
        FibService::new(args.max_n),
    )
    .await
}

/// Serves the echo service until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When binding to the queue fails or the connection is lost.
pub async fn serve_echo(urls: &[String], args: &EchoArgs) -> Result<(), Error> {
    let echo = handler_fn(|request: Request| async move { Ok::<_, Status>(request.into_body()) });
    serve(
        urls,
        &args.server,
        "echo",
        "replies with the request body",
        echo,
    )
    .await
}

async fn serve<H: Handler>(
    urls: &[String],
    args: &ServerArgs,
    service: &str,
    detail: &str,
    handler: H,
) -> Result<(), Error> {
    let signals = Signals::listen();
    let mut builder = Server::builder()
        .urls(urls)
        .queue(&args.queue)
        .prefetch(args.prefetch)
        .concurrency(args.concurrency)
        .max_request_size(args.max_request_size)
        .drain_timeout(args.drain_timeout)
        .connection_name(
            args.connection_name
                .clone()
                .unwrap_or_else(|| format!("rabbit-rpc serve {service}")),
        );
    if let Some(queue_type) = args.queue_type() {
        builder = builder.queue_type(queue_type);
    }
    if args.transient {
        builder = builder.durable(false);
    }
    if let Some(limit) = args.delivery_limit {
        builder = builder.delivery_limit(limit);
    }
    for prefix in &args.allow_reply_to {
        builder = builder.allow_reply_to_prefix(prefix);
    }
    if args.allow_any_reply_to {
        builder = builder.allow_any_reply_to();
    }
    let server = builder.bind().await?;
    let stats = server.stats();
    let queue = match server.queue_origin() {
        QueueOrigin::Joined => "existing queue, served as it is".to_owned(),
        QueueOrigin::Matched => "existing queue, same settings".to_owned(),
        _ => format!("created it: {}", declared(args)),
    };
    info!(
        "serving {service} on queue '{}' ({queue}) at {} (concurrency {}, prefetch {}, {detail}); Ctrl-C to stop",
        args.queue,
        server.broker(),
        args.concurrency,
        args.prefetch
    );
    server
        .serve_with_shutdown(handler, shutdown_signal(signals))
        .await?;
    info!("stopped: {stats}");
    Ok(())
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
    info!("shutting down: finishing requests in hand (Ctrl-C again to stop at once)");
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
