//! Calls the calculator.
//!
//! `cargo run -p calculator-example --bin client -- add 2 3`
//! (also `divide 7 2`, `sum 1 2 3`, `greet --user ada`)

use std::{process::ExitCode, time::Duration};

use calculator_example::{BadOperand, CalculatorClient, Operands};
use clap::{Parser, Subcommand};
use rabbit_rpc::{BrokerUrl, CallOptions, Client, Error};

/// Call the calculator.
#[derive(Debug, Parser)]
struct Args {
    /// The broker.
    #[arg(long, env = "AMQP_URL", default_value = BrokerUrl::DEFAULT, hide_default_value = true)]
    url: String,
    /// What to compute.
    #[command(subcommand)]
    operation: Operation,
}

#[derive(Debug, Subcommand)]
#[command(allow_negative_numbers = true)]
enum Operation {
    /// a + b.
    Add { a: i64, b: i64 },
    /// a / b, with the remainder.
    Divide { a: i64, b: i64 },
    /// The sum of the numbers.
    Sum { numbers: Vec<i64> },
    /// A greeting, for the user named.
    Greet {
        #[arg(long, default_value = "ada")]
        user: String,
    },
}

async fn run(args: Args) -> Result<String, Error> {
    let client = Client::builder()
        .url(&args.url)
        .timeout(Duration::from_secs(5))
        .connection_name("calculator client")
        .connect()
        .await?;
    let calculator = CalculatorClient::new(client);
    Ok(match args.operation {
        Operation::Add { a, b } => calculator.add(&Operands { a, b }).await?.to_string(),
        Operation::Divide { a, b } => {
            let division = calculator.divide(&Operands { a, b }).await?;
            format!("{} remainder {}", division.quotient, division.remainder)
        }
        Operation::Sum { numbers } => calculator.sum(&numbers).await?.to_string(),
        Operation::Greet { user } => {
            let options = CallOptions::new().metadata("user", user);
            calculator.greet_with(&options).await?
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // An error reply may say which operand was wrong.
            let detail = error
                .status()
                .and_then(|status| status.details::<BadOperand>().ok().flatten())
                .map(|bad| format!(" ({} {})", bad.operand, bad.reason))
                .unwrap_or_default();
            eprintln!("error: {error}{detail}");
            ExitCode::FAILURE
        }
    }
}
