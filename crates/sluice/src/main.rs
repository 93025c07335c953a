//! The Sluice binary: `sluice serve` runs a DataHub-compatible server with embedded storage;
//! the other commands (`sluice project|topic|shard|record|connector|subscription`, `produce`,
//! `consume`, `tail`, `login`) are a command-line client of any such endpoint.
//!
//! Layout: `main.rs` (command line), `serve.rs` (start-up, credentials, signals, shutdown),
//! `cli/` (the client commands).

mod cli;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A self-hosted DataHub: streaming hub and connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
        Command::Client(cmd) => cli::run(cmd),
    }
}
