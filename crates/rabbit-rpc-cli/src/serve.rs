//! `rabbit-rpc serve fib` and `rabbit-rpc serve echo`.

use rabbit_rpc::{Error, Handler, QueueType, Request, Server, Status, handler_fn};
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
    let queue_type = if args.quorum {
        QueueType::Quorum
    } else {
        QueueType::Classic
    };
    let server = Server::builder()
        .urls(urls)
        .queue(&args.queue)
        .prefetch(args.prefetch)
        .concurrency(args.concurrency)
        .durable(args.durable)
        .queue_type(queue_type)
        .delivery_limit(args.delivery_limit)
        .max_request_size(args.max_request_size)
        .drain_timeout(args.drain_timeout)
        .connection_name(
            args.connection_name
                .clone()
                .unwrap_or_else(|| format!("rabbit-rpc serve {service}")),
        )
        .bind()
        .await?;
    let stats = server.stats();
    let kind = match (args.quorum, args.durable) {
        (true, _) => "quorum queue",
        (false, true) => "durable queue",
        (false, false) => "queue",
    };
    info!(
        "serving {service} on {kind} '{}' at {} (concurrency {}, prefetch {}, {detail}); Ctrl-C to stop",
        args.queue,
        server.broker(),
        args.concurrency,
        args.prefetch
    );
    server
        .serve_with_shutdown(handler, shutdown_signal())
        .await?;
    info!("stopped: {stats}");
    Ok(())
}

/// Completes on the first Ctrl-C or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    info!("shutting down: finishing requests in hand (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        wait_for_signal().await;
        warn!("stopping at once; unfinished requests go back to the queue");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
