//! `sluice`: the command-line front end. Thin: argument parsing and output
//! formatting over the library crates, which do the work.
//!
//! Built without the `aws` feature (`make demo`'s quick build), the code
//! that acts on a deployment is compiled out and what only it used is left
//! unused: the lints below are relaxed for that build alone (clippy checks
//! the default build with warnings denied).
#![cfg_attr(
    not(feature = "aws"),
    allow(dead_code, unused_imports, unused_variables, irrefutable_let_patterns)
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod bench;
mod decode;
mod generate;
mod ghost;
mod local;
mod replay;
mod report;
mod retract;
mod status;
mod target;
mod trace;

/// Sluice: S3-triggered Lambda pipelines, run locally or on AWS.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log more (repeat for debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
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
    /// Run the whole pipeline in process against a directory.
    Run {
        /// The directory: put files in DIR/landing/raw/<dataset>/.
        #[arg(long)]
        local: PathBuf,
    },
    /// Run one stage on one event file, against a directory.
    Invoke {
        /// ingest, curate or profile.
        stage: String,
        /// The event file (any shape `sluice decode` accepts).
        #[arg(long)]
        event: PathBuf,
        /// The directory.
        #[arg(long)]
        local: PathBuf,
    },
    /// Generate sample data.
    Generate(generate::GenerateArgs),
    /// Redrive a stage's DLQ, replay objects by key, or backfill a prefix.
    Replay(replay::ReplayArgs),
    /// Ghost deployments: compare a ghost's outputs with prod's.
    #[command(subcommand)]
    Ghost(ghost::GhostCommand),
    /// Write a static HTML report of pipeline health per dataset.
    Report(report::ReportArgs),
    /// Follow one input file through every stage by its correlation id.
    Trace(trace::TraceArgs),
    /// Queue and DLQ depths, oldest message ages, last breach per stage.
    Status(status::StatusArgs),
    /// Remove everything derived from landed keys, in every stage, and record it.
    Retract(retract::RetractArgs),
    /// Measure ingest on one file (used by `make bench`).
    #[command(hide = true)]
    BenchIngest(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The summaries say what happened; logs are for digging (-v, -vv, -vvv).
    let level = match cli.verbose {
        0 => "off",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    sluice::telemetry::init_logging(sluice::telemetry::LogFormat::Human, level);
    let result = match cli.command {
        Command::Decode { file } => decode::run(&file),
        Command::Generate(args) => generate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Run { local } => block_on(run_local(local)),
        Command::Invoke {
            stage,
            event,
            local,
        } => block_on(invoke(stage, event, local)),
        Command::BenchIngest(args) => bench::run(&args),
        Command::Replay(args) => block_on(replay::run(args)),
        Command::Ghost(ghost::GhostCommand::Diff(args)) => block_on(ghost::diff(args)),
        Command::Report(args) => block_on(report::run(args)),
        Command::Trace(args) => block_on(trace::run(args)),
        Command::Status(args) => block_on(status::run(args)),
        Command::Retract(args) => block_on(retract::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

async fn run_local(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let pipeline = local::LocalPipeline::open(&dir)?;
    let summary = pipeline.run().await?;
    local::print_summary(pipeline.dir(), &summary, started.elapsed());
    let unfinished: u64 = summary.values().map(|s| s.failed + s.deferred).sum();
    Ok(if unfinished > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn invoke(stage: String, event: PathBuf, dir: PathBuf) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&event).with_context(|| format!("reading {}", event.display()))?;
    let payload: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let pipeline = local::LocalPipeline::open(&dir)?;
    let report = pipeline.invoke(&stage, &payload).await?;
    for (obj, outcome) in &report.outcomes {
        let what = obj
            .as_ref()
            .map(|o| o.location())
            .unwrap_or_else(|| "(event)".into());
        println!("{what}: {}", describe(outcome));
    }
    if report.is_sqs_batch {
        println!("batchItemFailures: {:?}", report.failed_message_ids);
    }
    let unfinished = report.first_failure().is_some() || report.deferred() > 0;
    Ok(if unfinished {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(o: &sluice::runner::ObjectOutcome) -> String {
    use sluice::runner::ObjectOutcome::*;
    match o {
        Processed { counts, .. } => format!(
            "processed: {} rows in, {} out, {} quarantined",
            counts.rows_in, counts.rows_out, counts.rows_quarantined
        ),
        AlreadyProcessed => "already processed".into(),
        Stale(r) => format!("stale: {r}"),
        Skipped(r) => format!("skipped: {r}"),
        DeadLettered(e) => format!("dead-lettered: {e}"),
        AlreadyDeadLettered => "already dead-lettered (no new envelope)".into(),
        Failed(e) => format!("failed (would be retried): {e}"),
        Retracted(n) => {
            format!("retracted: its input was removed upstream; {n} derived output(s) removed")
        }
        Deferred { left, need } => format!(
            "deferred (would be retried): deadline in {} ms, need ~{} ms",
            left.as_millis(),
            need.as_millis()
        ),
    }
}
