//! `sluice`: the command-line front end. Thin: argument parsing and output
//! formatting over the `sluice` library, which does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;

/// Sluice: S3-triggered Lambda pipelines, run locally or on AWS.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a trigger event file and print its objects as JSON lines.
    Decode {
        /// An event file (S3, SQS, SNS or EventBridge), or - for stdin.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode { file } => decode::run(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
