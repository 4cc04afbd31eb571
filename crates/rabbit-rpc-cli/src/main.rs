//! The `rabbit-rpc` command.

use std::{io::Write, process::ExitCode};

use clap::CommandFactory;
use rabbit_rpc_cli::{
    bench, call,
    cli::{Cli, Command},
    control, exit, serve, telemetry,
};

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    // `serve` logs at info; the other commands keep stderr for their one
    // error line.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        Command::Call(_) | Command::Bench(_) | Command::Ping(_) | Command::Describe(_) => "error",
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
            Ok(reply) => return print(&call::printed(args, &reply)),
            Err(error) => Err(error),
        },
        Command::Ping(args) => match control::ping(&cli.urls, args).await {
            Ok(ping) => {
                let printed = print(control::ping_line(&ping).as_bytes());
                return if printed == exit::OK && !ping.state().is_serving() {
                    exit::NOT_SERVING
                } else {
                    printed
                };
            }
            Err(error) => Err(error),
        },
        Command::Describe(args) => match control::describe(&cli.urls, &args.control).await {
            Ok(description) if args.json => {
                // A description always encodes: its schemas came as JSON.
                let json = serde_json::to_string_pretty(&description).unwrap_or_default();
                return print(json.as_bytes());
            }
            Ok(description) => {
                let text = control::description_text(&description);
                return print(text.trim_end().as_bytes());
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

/// Writes `output` and a newline to stdout: [`exit::OK`], or
/// [`exit::FAILURE`] with one line on stderr if it cannot.
fn print(output: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(output)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("error: cannot write the reply: {error}");
            exit::FAILURE
        }
    }
}

/// A panic is a bug; report it in one line rather than a backtrace dump.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error (a bug, please report it): {info}");
    }));
}
