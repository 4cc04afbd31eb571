//! The `rabbit-rpc` command.

use std::{io::Write, process::ExitCode};

use clap::{CommandFactory, Parser};
use rabbit_rpc_cli::{
    bench, call,
    cli::{Cli, Command},
    exit, serve, telemetry,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` logs at info; `call` and `bench` keep stderr for their one
    // error line.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        Command::Call(_) | Command::Bench(_) => "error",
    };
    let telemetry = match telemetry::init(default_level) {
        Ok(telemetry) => telemetry,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    install_panic_hook();
    let mut builder = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(cli.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(run(cli));
    telemetry.shutdown();
    ExitCode::from(code)
}

async fn run(cli: Cli) -> u8 {
    let result = match &cli.command {
        Command::Serve(args) => match args.queues() {
            Ok(queues) => serve::serve(&cli.urls, args, &queues).await,
            Err(usage) => Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, usage)
                .exit(),
        },
        Command::Call(args) => match call::call(&cli.urls, args).await {
            Ok(reply) => {
                let mut stdout = std::io::stdout().lock();
                let written = stdout
                    .write_all(reply.body())
                    .and_then(|()| stdout.write_all(b"\n"))
                    .and_then(|()| stdout.flush());
                if let Err(error) = written {
                    eprintln!("error: cannot write the reply: {error}");
                    return exit::FAILURE;
                }
                Ok(())
            }
            Err(error) => Err(error),
        },
        Command::Bench(args) => match bench::bench(&cli.urls, args).await {
            Ok(summary) => {
                println!("{}", summary.human());
                if args.json {
                    println!("{}", summary.json());
                }
                if summary.errors > 0 {
                    eprintln!(
                        "error: {} of {} calls failed",
                        summary.errors, summary.calls
                    );
                    return exit::FAILURE;
                }
                Ok(())
            }
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("{}", exit::message_for(&error));
            exit::code_for(&error)
        }
    }
}

/// A panic is a bug; report it in one line rather than a backtrace dump.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error (a bug, please report it): {info}");
    }));
}
