//! `sluice trace`: follow one input file through every stage. Each stage
//! writes a manifest per input version (its commit point) carrying the
//! correlation id of the landed file, when it finished, how long it took and
//! when the file first landed; the trace is those manifests in order.

use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sluice::lineage::SourceIdentity;
use sluice::runner::{manifest_key_in, Manifest};
use sluice::store::ObjectStoreExt;

use crate::target::{Target, TargetArgs};

/// Arguments of `sluice trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The correlation id (from an output's `sluice-correlation-id`
    /// metadata, a log line, a DLQ envelope or an alert).
    #[arg(required_unless_present = "key", value_name = "CORRELATION_ID")]
    correlation_id: Option<String>,
    /// Or the landed file: s3://bucket/key, or a key in ingest's input bucket.
    #[arg(long, conflicts_with = "correlation_id")]
    key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One stage's part of the trace.
struct Hop {
    stage: String,
    manifest: Manifest,
}

impl Hop {
    fn started(&self) -> DateTime<Utc> {
        self.manifest.processed_at
            - chrono::Duration::milliseconds(self.manifest.duration_ms as i64)
    }
}

/// Run `sluice trace`.
pub async fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let target = Target::open(&args.target).await?;
    let store = target.store();
    let id = match (&args.correlation_id, &args.key) {
        (Some(id), _) => id.clone(),
        (None, Some(key)) => correlation_of_key(&target, key).await?,
        (None, None) => bail!("give a correlation id or --key"),
    };
    let mut hops = Vec::new();
    for stage in target.stages() {
        let places = target.stage(&stage)?;
        let prefix = format!("{}_sluice/manifests/{stage}/", places.output.prefix);
        let listed = store.list(&places.output.bucket, &prefix).await?;
        let bucket = places.output.bucket.clone();
        let manifests: Vec<Manifest> = futures::stream::iter(listed)
            .map(|m| {
                let store = store.clone();
                let bucket = bucket.clone();
                async move {
                    let bytes = store.get_bytes(&bucket, &m.key).await?;
                    serde_json::from_slice::<Manifest>(&bytes)
                        .with_context(|| format!("s3://{bucket}/{}: not a manifest", m.key))
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        for manifest in manifests.into_iter().filter(|m| m.correlation_id == id) {
            hops.push(Hop {
                stage: stage.clone(),
                manifest,
            });
        }
    }
    if hops.is_empty() {
        bail!(
            "no stage has processed anything with correlation id {id:?} on the {}",
            target.describe()
        );
    }
    let order = |s: &str| target.stages().iter().position(|x| x == s).unwrap_or(99);
    hops.sort_by(|a, b| {
        (order(&a.stage), a.started(), &a.manifest.source.key).cmp(&(
            order(&b.stage),
            b.started(),
            &b.manifest.source.key,
        ))
    });
    let origin = hops.iter().filter_map(|h| h.manifest.origin_time).min();
    let first_start = hops.iter().map(Hop::started).min().unwrap_or_else(Utc::now);
    let last_done = hops
        .iter()
        .map(|h| h.manifest.processed_at)
        .max()
        .unwrap_or_else(Utc::now);
    let start = origin.unwrap_or(first_start);
    let lag_ms = (last_done - start).num_milliseconds();

    if args.json {
        let hops_json: Vec<_> = hops
            .iter()
            .map(|h| {
                json!({"stage": h.stage, "input": format!("s3://{}/{}", h.manifest.source.bucket, h.manifest.source.key),
                    "started": h.started(), "processed_at": h.manifest.processed_at,
                    "duration_ms": h.manifest.duration_ms, "code_version": h.manifest.code_version,
                    "counts": h.manifest.counts, "outputs": h.manifest.outputs.len()})
            })
            .collect();
        println!(
            "{}",
            json!({"correlation_id": id, "origin_time": origin, "end_to_end_lag_ms": lag_ms, "hops": hops_json})
        );
        return Ok(ExitCode::SUCCESS);
    }

    println!("trace {id} on the {}", target.describe());
    match origin {
        Some(o) => println!("landed    {}", o.to_rfc3339()),
        None => println!("landed    (unknown: no origin time recorded)"),
    }
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8}  input",
        "stage", "+start", "duration", "rows in", "rows out", "quarant.", "outputs"
    );
    let mut per_stage: Vec<(String, u64)> = Vec::new();
    for h in &hops {
        let m = &h.manifest;
        println!(
            "{:<8} {:>8.2}s {:>9}ms {:>10} {:>9} {:>9} {:>8}  s3://{}/{}",
            h.stage,
            (h.started() - start).num_milliseconds() as f64 / 1000.0,
            m.duration_ms,
            m.counts.rows_in,
            m.counts.rows_out,
            m.counts.rows_quarantined,
            m.outputs.len(),
            m.source.bucket,
            m.source.key
        );
        match per_stage.iter_mut().find(|(s, _)| *s == h.stage) {
            Some((_, total)) => *total += m.duration_ms,
            None => per_stage.push((h.stage.clone(), m.duration_ms)),
        }
    }
    let per_stage: Vec<String> = per_stage
        .iter()
        .map(|(s, ms)| format!("{s} {ms} ms"))
        .collect();
    println!("time in stages: {}", per_stage.join(", "));
    println!(
        "end-to-end lag: {:.2}s (from {} to the last stage's finish, {})",
        lag_ms as f64 / 1000.0,
        if origin.is_some() {
            "landing"
        } else {
            "the first stage's start"
        },
        last_done.to_rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}

/// The correlation id of a landed file, from ingest's manifest (found by
/// key: manifests are named by the input key's id).
async fn correlation_of_key(target: &Target, key: &str) -> anyhow::Result<String> {
    let ingest = target.stage("ingest")?;
    let (bucket, key) = ingest.object(key)?;
    let source = SourceIdentity::of_key(&bucket, &key);
    let mkey = manifest_key_in(&ingest.output.prefix, "ingest", &source);
    let bytes = match target.store().get_bytes(&ingest.output.bucket, &mkey).await {
        Ok(b) => b,
        Err(e) if e.kind() == sluice::error::ErrorKind::NotFound => {
            bail!(
                "ingest has not processed s3://{bucket}/{key} (no manifest at s3://{}/{mkey})",
                ingest.output.bucket
            )
        }
        Err(e) => return Err(e.into()),
    };
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("s3://{}/{mkey}: not a manifest", ingest.output.bucket))?;
    Ok(m.correlation_id)
}
