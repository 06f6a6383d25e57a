//! `sluice retract`: remove everything derived from landed keys, in every
//! stage, and record it (invariant 5: deleting a landed object keeps its
//! downstream data; retracting it does not). Ingest's outputs are removed
//! here, through the same commit protocol the stages use; their removals
//! reach curate and then profile as deletion events (S3 → EventBridge on a
//! deployment, the local cascade on a directory), which retract in turn.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::MemoryDeadLetter;
use sluice::telemetry::NoMetrics;
use sluice::{Runner, Runtime};
use sluice_ingest::Ingest;

use crate::target::{Target, TargetArgs};

/// Arguments of `sluice retract`.
#[derive(Debug, clap::Args)]
pub struct RetractArgs {
    /// Landed objects: `s3://bucket/key`, or keys in the landing bucket.
    #[arg(required = true)]
    pub keys: Vec<String>,
    /// Where.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `sluice retract`.
pub async fn run(args: RetractArgs) -> anyhow::Result<ExitCode> {
    let target = Target::open(&args.target).await?;
    let places = target.stage("ingest")?;
    let mut results = Vec::new();
    match &target {
        Target::Local(l) => {
            for k in &args.keys {
                let (bucket, key) = places.object(k)?;
                let removed = l
                    .pipeline
                    .retract("ingest", &bucket, &key)
                    .await
                    .with_context(|| format!("retracting s3://{bucket}/{key}"))?;
                results.push((format!("s3://{bucket}/{key}"), removed));
            }
            // The removals cascade through the later stages, as S3 events would.
            l.pipeline.cascade(Default::default()).await?;
        }
        #[cfg(feature = "aws")]
        Target::Aws(a) => {
            // The ingest stage's own commit protocol, run here against the
            // deployment's buckets: it needs no new code deployed.
            let vars = [
                ("SLUICE_INPUT", places.input.to_string()),
                ("SLUICE_OUTPUT", places.output.to_string()),
                ("SLUICE_QUARANTINE", places.quarantine.to_string()),
                ("SLUICE_DLQ", "file:/dev/null".to_string()),
                ("SLUICE_METRICS", "off".to_string()),
            ];
            let config = Config::from_raw("ingest", RawConfig::from_vars(vars)?)?;
            let runtime = Runtime {
                config: std::sync::Arc::new(config),
                store: a.store.clone(),
                dlq: std::sync::Arc::new(MemoryDeadLetter::new()),
                metrics: std::sync::Arc::new(NoMetrics),
            };
            let runner = Runner::new(runtime, Ingest::new(Registry::embedded()?));
            for k in &args.keys {
                let (bucket, key) = places.object(k)?;
                let removed = runner
                    .retract_key(&bucket, &key)
                    .await
                    .with_context(|| format!("retracting s3://{bucket}/{key}"))?;
                results.push((format!("s3://{bucket}/{key}"), removed));
            }
        }
    }
    if args.json {
        let objects: Vec<_> = results
            .iter()
            .map(|(o, n)| json!({"object": o, "ingest_outputs_removed": n}))
            .collect();
        println!("{}", json!({"retracted": objects}));
    } else {
        for (o, n) in &results {
            println!("retracted {o}: {n} ingest output(s) removed; later stages retract what they derived as the removals reach them");
        }
    }
    Ok(ExitCode::SUCCESS)
}
