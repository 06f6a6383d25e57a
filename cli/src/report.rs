//! `sluice report`: one static HTML page on the health of a pipeline, a
//! section per dataset: volume per partition, rows per stage, threshold
//! breaches, quarantine reasons, dead letters, null ratios and
//! distributions. Charts are inline SVG drawn here; the page has no script
//! and loads nothing, so it opens from `file://` anywhere.
//!
//! The work is bounded: manifests and profiles are small JSON documents
//! (profiles only for the newest `--partitions` partitions), quarantine
//! files are streamed line by line (the newest `--quarantine-files` per
//! stage and dataset), and DLQ messages are read with a short visibility
//! hold and released at once.

mod fmt;
mod html;
mod model;
mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sluice::runner::{is_internal_key, Manifest};
use sluice::store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sluice_profile::report::ProfileReport;
use tokio::io::AsyncBufReadExt;

use crate::target::{DeadLetter, StagePlaces, Target, TargetArgs};
use model::{
    first_segment, partition_of, relative, Dataset, DlqRow, Places, Reasons, Report,
    UNKNOWN_DATASET,
};

/// Arguments of `sluice report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Where to write the page.
    #[arg(long, value_name = "FILE.html", default_value = "report.html")]
    out: PathBuf,
    /// Report on this dataset only.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
    /// The newest N dt= partitions per dataset go into partition charts and
    /// profile statistics (0: all).
    #[arg(long, value_name = "N", default_value_t = 90)]
    partitions: usize,
    /// Count quarantine reasons in the newest N files per stage and dataset
    /// (0: all).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    quarantine_files: usize,
}

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this dataset.
    pub dataset: Option<String>,
    /// Newest partitions shown (0: all).
    pub partitions: usize,
    /// Newest quarantine files read per stage and dataset (0: all).
    pub quarantine_files: usize,
}

/// How many small documents are fetched at once.
const FETCH_CONCURRENCY: usize = 16;
/// How many quarantine files are streamed at once.
const STREAM_CONCURRENCY: usize = 4;
/// How long DLQ messages stay hidden while read (they are released at once).
const DLQ_HOLD: Duration = Duration::from_secs(60);

/// Run `sluice report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.target.local {
        if !dir.is_dir() {
            anyhow::bail!(
                "{}: no such directory (make one with `sluice run --local DIR`)",
                dir.display()
            );
        }
    }
    let target = Target::open(&args.target).await?;
    let opts = Options {
        dataset: args.dataset.clone(),
        partitions: args.partitions,
        quarantine_files: args.quarantine_files,
    };
    let report = collect(&target, &opts).await?;
    let page = html::render(&report);
    write_atomically(&args.out, page.as_bytes())?;
    let shown = args.out.canonicalize().unwrap_or_else(|_| args.out.clone());
    println!("wrote {}", shown.display());
    println!("{}", summary_line(&report, page.len()));
    for n in &report.notes {
        eprintln!("sluice: note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `1 dataset (trips): 22 partitions, 92,000 rows landed, ...`.
fn summary_line(r: &Report, size: usize) -> String {
    let names: Vec<&str> = r.datasets.iter().map(|d| d.name.as_str()).collect();
    let sum = |f: &dyn Fn(&Dataset) -> u64| r.datasets.iter().map(f).sum::<u64>();
    let plural = |n: u64, one: &str, many: &str| {
        format!("{} {}", fmt::count(n), if n == 1 { one } else { many })
    };
    format!(
        "{} ({}): {}, {} rows landed, {} rows quarantined, {}, {}; {}",
        plural(r.datasets.len() as u64, "dataset", "datasets"),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
        plural(
            sum(&|d| d.dated_partitions().len() as u64),
            "partition",
            "partitions"
        ),
        fmt::count(sum(&|d| d.stages.get("ingest").map_or(0, |s| s.rows_in))),
        fmt::count(sum(&|d| d.rows_quarantined())),
        plural(sum(&|d| d.dlq.len() as u64), "dead letter", "dead letters"),
        plural(sum(&|d| d.breaches.len() as u64), "breach", "breaches"),
        fmt::bytes(size as u64)
    )
}

fn places_of(p: &StagePlaces) -> Places {
    Places {
        input_bucket: p.input.bucket.clone(),
        input_prefix: p.input.prefix.clone(),
        output_bucket: p.output.bucket.clone(),
        output_prefix: p.output.prefix.clone(),
    }
}

/// Everything the page shows.
pub async fn collect(target: &Target, opts: &Options) -> anyhow::Result<Report> {
    let store = target.store();
    let stages = target.stages();
    let places: Vec<StagePlaces> = stages
        .iter()
        .map(|s| target.stage(s))
        .collect::<anyhow::Result<_>>()?;
    let want = |d: &str| opts.dataset.as_deref().is_none_or(|w| w == d);
    let mut notes = Vec::new();
    let mut datasets: BTreeMap<String, Dataset> = BTreeMap::new();
    let entry = |datasets: &mut BTreeMap<String, Dataset>, name: &str| {
        datasets.entry(name.to_string()).or_insert_with(|| Dataset {
            name: name.to_string(),
            ..Default::default()
        });
    };

    // Manifests: counts per stage, partitions, landed files.
    let mut ingested = BTreeSet::new();
    for p in &places {
        let prefix = format!("{}_sluice/manifests/{}/", p.output.prefix, p.name);
        let keys = list_keys(&store, &p.output.bucket, &prefix, &mut notes)
            .await
            .into_iter()
            .filter(|m| m.key.ends_with(".json"))
            .map(|m| m.key)
            .collect();
        let at = places_of(p);
        for (_, m) in fetch_json::<Manifest>(&store, &p.output.bucket, keys, &mut notes).await {
            if p.name == "ingest" {
                ingested.insert((m.source.bucket.clone(), m.source.key.clone()));
            }
            let ds = at.dataset_of_manifest(&m);
            if want(&ds) {
                entry(&mut datasets, &ds);
                if let Some(d) = datasets.get_mut(&ds) {
                    d.add_manifest(&p.name, &m);
                }
            }
        }
    }

    // The landing area: what landed, and what has no ingest manifest.
    if let Some(p) = places.iter().find(|p| p.name == "ingest") {
        for m in list_keys(&store, &p.input.bucket, &p.input.prefix, &mut notes).await {
            let Some(rel) = relative(&m.key, &p.input.prefix) else {
                continue;
            };
            if is_internal_key(rel) {
                continue;
            }
            let ds = first_segment(rel).unwrap_or(UNKNOWN_DATASET).to_string();
            if !want(&ds) {
                continue;
            }
            entry(&mut datasets, &ds);
            if let Some(d) = datasets.get_mut(&ds) {
                d.landed_objects += 1;
                if !ingested.contains(&(m.bucket.clone(), m.key.clone())) {
                    d.without_manifest += 1;
                    if d.without_manifest_examples.len() < model::MAX_WAITING {
                        d.without_manifest_examples
                            .push(format!("s3://{}/{}", m.bucket, m.key));
                    }
                }
            }
        }
    }

    // Profiles: listed by key, read for the newest partitions only.
    let mut profile_keys: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let profile_bucket = places
        .iter()
        .find(|p| p.name == "profile")
        .map(|p| (p.output.bucket.clone(), p.output.prefix.clone()));
    if let Some((bucket, prefix)) = &profile_bucket {
        for m in list_keys(&store, bucket, prefix, &mut notes).await {
            let Some(rel) = relative(&m.key, prefix) else {
                continue;
            };
            if is_internal_key(rel) || !rel.ends_with(".profile.json") {
                continue;
            }
            let Some(ds) = first_segment(rel).filter(|d| want(d)) else {
                continue;
            };
            profile_keys
                .entry(ds.to_string())
                .or_default()
                .entry(partition_of(rel))
                .or_default()
                .push(m.key.clone());
        }
    }
    for ds in profile_keys.keys() {
        entry(&mut datasets, ds);
    }
    for (name, d) in datasets.iter_mut() {
        // The partitions shown: the newest of those seen by curate or profile.
        let mut all: BTreeSet<String> = d.partitions.keys().cloned().collect();
        if let Some(p) = profile_keys.get(name) {
            all.extend(p.keys().cloned());
        }
        let keep: BTreeSet<String> = if opts.partitions == 0 || all.len() <= opts.partitions {
            all.clone()
        } else {
            all.iter().rev().take(opts.partitions).cloned().collect()
        };
        d.partitions_hidden = all.len() - keep.len();
        d.partitions.retain(|k, _| keep.contains(k));
        let keys: Vec<String> = profile_keys
            .get(name)
            .map(|p| {
                p.iter()
                    .filter(|(part, _)| keep.contains(*part))
                    .flat_map(|(_, keys)| keys.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some((bucket, _)) = &profile_bucket {
            let profiles: Vec<ProfileReport> = fetch_json(&store, bucket, keys, &mut notes)
                .await
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            d.add_profiles(&profiles);
        }
    }

    // Quarantine: reasons counted line by line.
    let mut seen_locations = BTreeSet::new();
    for p in &places {
        let q = &p.quarantine;
        if !seen_locations.insert((q.bucket.clone(), q.prefix.clone())) {
            notes.push(format!(
                "the {} stage shares its quarantine location s3://{}/{} with an earlier stage; \
                 its rows are counted there",
                p.name, q.bucket, q.prefix
            ));
            continue;
        }
        let mut by_dataset: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for m in list_keys(&store, &q.bucket, &q.prefix, &mut notes).await {
            let ds = relative(&m.key, &q.prefix)
                .and_then(first_segment)
                .unwrap_or(UNKNOWN_DATASET)
                .to_string();
            if want(&ds) {
                by_dataset.entry(ds).or_default().push(m);
            }
        }
        for (ds, mut files) in by_dataset {
            let found = files.len() as u64;
            // Newest first, so a cap keeps the recent ones.
            files.sort_by(|a, b| {
                b.last_modified
                    .cmp(&a.last_modified)
                    .then_with(|| a.key.cmp(&b.key))
            });
            if opts.quarantine_files > 0 {
                files.truncate(opts.quarantine_files);
            }
            let mut reasons = count_reasons(&store, &q.bucket, &files, &mut notes).await;
            reasons.files_found = found;
            entry(&mut datasets, &ds);
            if let Some(d) = datasets.get_mut(&ds) {
                d.quarantine.insert(p.name.clone(), reasons);
            }
        }
    }

    // Dead letters: read, released at once, attributed by their object.
    let mut dlq_errors = BTreeMap::new();
    for p in &places {
        let entries = match target.dlq_read(&p.name, DLQ_HOLD).await {
            Ok(e) => e,
            Err(e) => {
                dlq_errors.insert(p.name.clone(), format!("{e:#}"));
                continue;
            }
        };
        let refs: Vec<_> = entries.iter().collect();
        if let Err(e) = target.dlq_release(&p.name, &refs).await {
            notes.push(format!(
                "could not release the {} DLQ messages read (they reappear after {}s): {e:#}",
                p.name,
                DLQ_HOLD.as_secs()
            ));
        }
        let at = places_of(p);
        for e in &entries {
            let (object, row) = dlq_row(&p.name, &e.letter);
            let ds = object
                .as_ref()
                .and_then(|(b, k)| at.dataset_of_input(b, k))
                .unwrap_or_else(|| UNKNOWN_DATASET.to_string());
            if want(&ds) {
                entry(&mut datasets, &ds);
                if let Some(d) = datasets.get_mut(&ds) {
                    d.dlq.push(row);
                }
            }
        }
    }

    if let Some(w) = &opts.dataset {
        if !datasets.contains_key(w) {
            notes.push(format!("nothing was found for the dataset {w:?}"));
            entry(&mut datasets, w);
        }
    }
    Ok(Report {
        target: target.describe(),
        generated_at: chrono::Utc::now(),
        stages,
        datasets: datasets.into_values().collect(),
        dlq_errors,
        notes,
    })
}

/// A dead letter as a table row, and its object's bucket and key.
fn dlq_row(stage: &str, letter: &DeadLetter) -> (Option<(String, String)>, DlqRow) {
    let object = match letter {
        DeadLetter::Envelope(e) => e.source.as_ref().map(|s| (s.bucket.clone(), s.key.clone())),
        DeadLetter::Raw { event, .. } => sluice::trigger::decode(event)
            .ok()
            .and_then(|d| d.into_objects().ok())
            .and_then(|objs| objs.into_iter().next())
            .map(|o| (o.bucket, o.key)),
    };
    let attempts = match letter {
        DeadLetter::Envelope(e) => Some(e.attempts),
        DeadLetter::Raw { receive_count, .. } => Some(*receive_count),
    };
    let row = DlqRow {
        stage: stage.to_string(),
        kind: letter.kind(),
        object: object.as_ref().map(|(b, k)| format!("s3://{b}/{k}")),
        message: letter.message(),
        time: letter.time(),
        attempts,
    };
    (object, row)
}

/// Objects under a prefix; a failure becomes a note and an empty list, so
/// one unreadable place does not cost the whole report.
async fn list_keys(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    notes: &mut Vec<String>,
) -> Vec<ObjectMeta> {
    match store.list(bucket, prefix).await {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!("could not list s3://{bucket}/{prefix}: {e}"));
            Vec::new()
        }
    }
}

/// Small JSON documents, fetched a few at a time, in key order; unreadable
/// ones become notes.
async fn fetch_json<T: DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    keys: Vec<String>,
    notes: &mut Vec<String>,
) -> Vec<(String, T)> {
    let results: Vec<_> = futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            let bucket = bucket.to_string();
            async move {
                let got = store.get_bytes(&bucket, &key).await;
                (key, got)
            }
        })
        .buffered(FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    let mut bad = Vec::new();
    for (key, got) in results {
        match got
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(anyhow::Error::from))
        {
            Ok(doc) => out.push((key, doc)),
            Err(e) => bad.push(format!("s3://{bucket}/{key}: {e}")),
        }
    }
    if !bad.is_empty() {
        notes.push(format!(
            "{} documents could not be read, e.g. {}",
            bad.len(),
            bad[0]
        ));
    }
    out
}

/// Count the reasons of quarantine files, streaming each line by line.
async fn count_reasons(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    files: &[ObjectMeta],
    notes: &mut Vec<String>,
) -> Reasons {
    let parts: Vec<_> = futures::stream::iter(files.iter().map(|m| m.key.clone()))
        .map(|key| {
            let store = store.clone();
            let bucket = bucket.to_string();
            async move {
                let r = stream_reasons(store.as_ref(), &bucket, &key).await;
                (key, r)
            }
        })
        .buffered(STREAM_CONCURRENCY)
        .collect()
        .await;
    let mut total = Reasons::default();
    for (key, r) in parts {
        match r {
            Ok(r) => total.merge(r),
            Err(e) => notes.push(format!("could not read s3://{bucket}/{key}: {e:#}")),
        }
    }
    total
}

async fn stream_reasons(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Reasons> {
    let got = store.get(bucket, key).await?;
    let mut reader = tokio::io::BufReader::new(got.into_async_read());
    let mut r = Reasons {
        files: 1,
        ..Default::default()
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            break;
        }
        r.add_line(&String::from_utf8_lossy(&buf));
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
