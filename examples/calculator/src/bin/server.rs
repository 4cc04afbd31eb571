//! Serves the calculator until Ctrl-C.
//!
//! `cargo run -p calculator-example --bin server [-- --url URL]`

use std::process::ExitCode;

use calculator_example::{Arithmetic, CalculatorServer};
use clap::Parser;
use rabbit_rpc::{BrokerUrl, Server};

/// Serve the calculator.
#[derive(Debug, Parser)]
struct Args {
    /// The broker.
    #[arg(long, env = "AMQP_URL", default_value = BrokerUrl::DEFAULT, hide_default_value = true)]
    url: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Errors printed as people read them (`Display`): a `main` returning
    // `Result<(), rabbit_rpc::Error>` would print their `Debug` form.
    match serve(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), rabbit_rpc::Error> {
    let server = Server::builder()
        .url(&args.url)
        .connection_name("calculator server")
        // Every method of the service, each on its own queue, with its own
        // settings where it needs them.
        .add_service(
            CalculatorServer::new(Arithmetic)
                .into_service()
                .configure("sum", |procedure| procedure.max_request_size(64 * 1024)),
        )
        .bind()
        .await?;
    println!(
        "serving {} at {}; Ctrl-C to stop",
        server.queues().join(", "),
        server.broker()
    );
    server
        .serve_with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
