//! `rabbit-rpc serve fib`.

use rabbit_rpc::{BrokerUrl, Error, Server};
use tracing::{info, warn};

use crate::{cli::FibArgs, exit, fib::FibService};

/// Serves the fibonacci service until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When binding to the queue fails or the connection is lost.
pub async fn serve_fib(url: &str, args: &FibArgs) -> Result<(), Error> {
    let shown = BrokerUrl::parse(url)?;
    let server = Server::builder()
        .url(url)
        .queue(&args.queue)
        .prefetch(args.prefetch)
        .concurrency(args.concurrency)
        .connection_name("rabbit-rpc serve fib")
        .bind()
        .await?;
    info!(
        "serving fib on queue '{}' at {shown} (concurrency {}, prefetch {}, n up to {}); Ctrl-C to stop",
        args.queue, args.concurrency, args.prefetch, args.max_n
    );
    server
        .serve_with_shutdown(FibService::new(args.max_n), shutdown_signal())
        .await?;
    info!("stopped");
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
