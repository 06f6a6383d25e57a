//! `sluice status`: is the pipeline keeping up, and is anything stuck?
//! Per stage: the trigger queue's depth (deployments), the backlog of inputs
//! with neither a manifest nor a dead-letter marker, the DLQ's depth and its
//! oldest message's age, and the last quality breach the profile stage
//! recorded.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice::runner::is_internal_key;
use sluice::store::ObjectStoreExt;
use sluice_profile::QUALITY_STATUS_KEY;

use crate::target::{StagePlaces, Target, TargetArgs};

/// Arguments of `sluice status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Wait (up to SECONDS) until the pipeline is idle: no messages queued
    /// or in flight and no input without a manifest or dead-letter marker,
    /// twice in a row. Exit 4 if it is not idle by then.
    #[arg(long, value_name = "SECONDS")]
    wait_idle: Option<u64>,
}

/// The figures of one stage.
#[derive(Debug, Default)]
struct StageStatus {
    stage: String,
    /// Visible / in flight / delayed messages in the trigger queue.
    queue: Option<(u64, u64, u64)>,
    /// Inputs with neither a manifest nor a dead-letter marker.
    backlog: u64,
    /// When the oldest input of the backlog landed.
    backlog_oldest: Option<DateTime<Utc>>,
    inputs: u64,
    dlq_depth: u64,
    dlq_oldest: Option<DateTime<Utc>>,
    last_breach: Option<Value>,
}

/// Run `sluice status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = Target::open(&args.target).await?;
    if let Some(secs) = args.wait_idle {
        let started = std::time::Instant::now();
        let mut idle_polls = 0;
        while idle_polls < 2 {
            if started.elapsed() > Duration::from_secs(secs) {
                eprintln!("sluice: the pipeline is not idle after {secs}s");
                return Ok(ExitCode::from(4));
            }
            let busy = is_busy(&target).await?;
            idle_polls = if busy { 0 } else { idle_polls + 1 };
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let now = Utc::now();
    let mut rows = Vec::new();
    for stage in target.stages() {
        let places = target.stage(&stage)?;
        let mut s = StageStatus {
            stage: stage.clone(),
            ..Default::default()
        };
        let b = backlog(&target, &places).await?;
        (s.inputs, s.backlog, s.backlog_oldest) = (b.inputs, b.pending, b.oldest);
        #[cfg(feature = "aws")]
        if let Target::Aws(a) = &target {
            s.queue = Some(queue_depth(a, a.queue_url(&stage)?).await?);
        }
        // The DLQ is read (held briefly) and released at once: its messages
        // are never consumed by looking.
        let entries = target.dlq_read(&stage, Duration::from_secs(20)).await?;
        target
            .dlq_release(&stage, &entries.iter().collect::<Vec<_>>())
            .await?;
        s.dlq_depth = entries.len() as u64;
        s.dlq_oldest = entries.iter().filter_map(|e| e.letter.time()).min();
        if stage == "profile" {
            s.last_breach = last_breach(&target, &places).await?;
        }
        rows.push(s);
    }

    if args.json {
        let stages: Vec<Value> = rows
            .iter()
            .map(|s| {
                json!({"stage": s.stage,
                    "queue": s.queue.map(|(v, f, d)| json!({"visible": v, "in_flight": f, "delayed": d})),
                    "inputs": s.inputs, "backlog": s.backlog,
                    "backlog_oldest_age_s": s.backlog_oldest.map(|t| (now - t).num_seconds()),
                    "dlq_depth": s.dlq_depth,
                    "dlq_oldest_age_s": s.dlq_oldest.map(|t| (now - t).num_seconds()),
                    "last_breach": s.last_breach})
            })
            .collect();
        println!("{}", json!({"target": target.describe(), "stages": stages}));
    } else {
        println!(
            "status of the {} at {}",
            target.describe(),
            now.to_rfc3339()
        );
        println!(
            "{:<8} {:>22} {:>8} {:>8} {:>15} {:>6} {:>12}",
            "stage",
            "queue vis/flight/delay",
            "inputs",
            "backlog",
            "backlog oldest",
            "DLQ",
            "DLQ oldest"
        );
        for s in &rows {
            let queue = match s.queue {
                Some((v, f, d)) => format!("{v}/{f}/{d}"),
                None => "- (in process)".into(),
            };
            println!(
                "{:<8} {:>22} {:>8} {:>8} {:>15} {:>6} {:>12}",
                s.stage,
                queue,
                s.inputs,
                s.backlog,
                s.backlog_oldest
                    .map(|t| age(now - t))
                    .unwrap_or_else(|| "-".into()),
                s.dlq_depth,
                s.dlq_oldest
                    .map(|t| age(now - t))
                    .unwrap_or_else(|| "-".into())
            );
        }
        for s in &rows {
            if s.stage != "profile" {
                continue;
            }
            match &s.last_breach {
                Some(b) => println!(
                    "last breach ({}): {} {} at {}: {}",
                    s.stage,
                    b["dataset"].as_str().unwrap_or("?"),
                    b["partition"].as_str().unwrap_or(""),
                    b["time"].as_str().unwrap_or("?"),
                    b["checks"].as_str().unwrap_or("?")
                ),
                None => println!("last breach ({}): none", s.stage),
            }
        }
    }
    let stuck = rows.iter().any(|s| s.dlq_depth > 0);
    Ok(if stuck {
        // Non-zero so scripts and cron can alert on a non-empty DLQ.
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether anything is queued, in flight, or waiting for a stage.
async fn is_busy(target: &Target) -> anyhow::Result<bool> {
    for stage in target.stages() {
        let places = target.stage(&stage)?;
        if backlog(target, &places).await?.pending > 0 {
            return Ok(true);
        }
        #[cfg(feature = "aws")]
        if let Target::Aws(a) = target {
            let (visible, in_flight, delayed) = queue_depth(a, a.queue_url(&stage)?).await?;
            if visible + in_flight + delayed > 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A stage's inputs and those still waiting for it.
struct Backlog {
    inputs: u64,
    /// Inputs with neither a manifest nor a dead-letter marker.
    pending: u64,
    /// When the oldest of those landed: on a deployment, about the age of
    /// the oldest message its trigger queue (or retries) still holds.
    oldest: Option<DateTime<Utc>>,
}

/// Listing only: manifests and markers are named by the input key's id.
async fn backlog(target: &Target, places: &StagePlaces) -> anyhow::Result<Backlog> {
    let store = target.store();
    let done_prefix =
        |what: &str| format!("{}_sluice/{what}/{}/", places.output.prefix, places.name);
    let mut settled = BTreeSet::new();
    for what in ["manifests", "dead-letters"] {
        let prefix = done_prefix(what);
        for m in store.list(&places.output.bucket, &prefix).await? {
            if let Some(id) = m
                .key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix(".json"))
            {
                settled.insert(id.to_string());
            }
        }
    }
    let inputs: Vec<_> = store
        .list(&places.input.bucket, &places.input.prefix)
        .await?
        .into_iter()
        .filter(|m| !is_internal_key(&m.key))
        .collect();
    let pending: Vec<_> = inputs
        .iter()
        .filter(|m| {
            !settled
                .contains(&sluice::lineage::SourceIdentity::of_key(&m.bucket, &m.key).object_id())
        })
        .collect();
    Ok(Backlog {
        inputs: inputs.len() as u64,
        pending: pending.len() as u64,
        oldest: pending.iter().filter_map(|m| m.last_modified).min(),
    })
}

#[cfg(feature = "aws")]
async fn queue_depth(a: &crate::target::AwsTarget, url: &str) -> anyhow::Result<(u64, u64, u64)> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let resp = a
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading the attributes of {url}: {e}"))?;
    let attrs = resp.attributes.unwrap_or_default();
    let get = |n: A| {
        attrs
            .get(&n)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    Ok((
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
        get(A::ApproximateNumberOfMessagesDelayed),
    ))
}

/// The newest profile whose quality status is `breach`, with its breached
/// checks. Profiles are looked at newest first.
async fn last_breach(target: &Target, places: &StagePlaces) -> anyhow::Result<Option<Value>> {
    let store = target.store();
    let mut profiles: Vec<_> = store
        .list(&places.output.bucket, &places.output.prefix)
        .await?
        .into_iter()
        .filter(|m| !is_internal_key(&m.key) && m.key.ends_with(".json"))
        .collect();
    profiles.sort_by(|a, b| {
        b.last_modified
            .cmp(&a.last_modified)
            .then(b.key.cmp(&a.key))
    });
    for m in profiles {
        let Some(meta) = store.head(&m.bucket, &m.key).await? else {
            continue;
        };
        if meta.metadata.get(QUALITY_STATUS_KEY).map(String::as_str) != Some("breach") {
            continue;
        }
        let body: Value = serde_json::from_slice(&store.get_bytes(&m.bucket, &m.key).await?)
            .map_err(|e| anyhow::anyhow!("s3://{}/{}: not JSON: {e}", m.bucket, m.key))?;
        let checks: Vec<String> = body["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "breach")
            .map(|c| match c["column"].as_str() {
                Some(col) => format!(
                    "{} {col} = {} (threshold {})",
                    c["check"].as_str().unwrap_or("?"),
                    c["value"],
                    c["threshold"]
                ),
                None => format!(
                    "{} = {} (threshold {})",
                    c["check"].as_str().unwrap_or("?"),
                    c["value"],
                    c["threshold"]
                ),
            })
            .collect();
        return Ok(Some(json!({
            "object": format!("s3://{}/{}", m.bucket, m.key),
            "dataset": body["dataset"], "partition": body["partition"],
            "time": m.last_modified.map(|t| t.to_rfc3339()),
            "checks": checks.join("; "),
        })));
    }
    Ok(None)
}
