//! The embedded default: every stage in process against a directory. Each
//! bucket is a folder of `DIR`; every completed write becomes an S3-style
//! event routed to the stage whose input it falls under (as the EventBridge
//! rules do on AWS), until the pipeline is quiet.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::FileDeadLetter;
use sluice::lineage::SourceIdentity;
use sluice::runner::{
    dead_letter_marker_key, is_internal_key, DeadLetterMarker, InvocationReport, ObjectOutcome,
};
use sluice::store::{LocalStore, NotifyingStore, ObjectStore, ObjectStoreExt};
use sluice::telemetry::NoMetrics;
use sluice::trigger::{s3_notification, ObjectRef, Replay};
use sluice::{Runner, Runtime};
use sluice_curate::Curate;
use sluice_ingest::Ingest;
use sluice_profile::Profile;

/// The stages, in pipeline order.
pub const STAGES: [&str; 3] = ["ingest", "curate", "profile"];

/// Bucket names of the local layout.
pub const LANDING: &str = "landing";

/// (stage, input, output) of the local layout.
fn layout(stage: &str) -> (&'static str, &'static str) {
    match stage {
        "ingest" => ("s3://landing/raw/", "s3://validated/"),
        "curate" => ("s3://validated/", "s3://curated/"),
        _ => ("s3://curated/", "s3://profiles/"),
    }
}

/// Stage settings a local run takes from the environment (`SLUICE_*` as on
/// Lambda); everything else is fixed by the layout.
pub const LOCAL_TUNABLES: [&str; 8] = [
    "SLUICE_MAX_OBJECT_BYTES",
    "SLUICE_MEMORY_BUDGET_BYTES",
    "SLUICE_MAX_DECOMPRESSION_RATIO",
    "SLUICE_MAX_RECORD_BYTES",
    "SLUICE_RETRY_MAX_ATTEMPTS",
    "SLUICE_RETRY_BASE_DELAY_MS",
    "SLUICE_RETRY_MAX_DELAY_MS",
    "SLUICE_CODE_VERSION",
];

/// A stage's DLQ file in the local layout under `dir`.
fn dlq_path(dir: &Path, stage: &str) -> PathBuf {
    dir.join("dlq").join(format!("{stage}.jsonl"))
}

/// The validated configuration of a stage in the local layout under `dir`.
pub fn local_config(stage: &str, dir: &Path) -> anyhow::Result<Config> {
    let (input, output) = layout(stage);
    let dlq = format!("file:{}", dlq_path(dir, stage).display());
    let alerts = format!("file:{}", dir.join("alerts").join("alerts.jsonl").display());
    let mut vars = vec![
        ("SLUICE_STORE", format!("local:{}", dir.display())),
        ("SLUICE_INPUT", input.to_string()),
        ("SLUICE_OUTPUT", output.to_string()),
        ("SLUICE_DLQ", dlq),
        ("SLUICE_METRICS", "off".to_string()),
        ("SLUICE_RETRY_BASE_DELAY_MS", "20".to_string()),
        ("SLUICE_RETRY_MAX_DELAY_MS", "200".to_string()),
    ];
    if stage == "profile" {
        vars.push(("SLUICE_ALERTS", alerts));
    }
    // Every stage but the first acts only on what the one before committed.
    if let Some(i) = STAGES.iter().position(|s| *s == stage).filter(|i| *i > 0) {
        vars.push(("SLUICE_UPSTREAM", STAGES[i - 1].to_string()));
    }
    // The limits and the code version may be tuned from the environment, as
    // on Lambda; the layout may not.
    for name in LOCAL_TUNABLES {
        if let Ok(v) = std::env::var(name) {
            vars.push((name, v));
        }
    }
    Ok(Config::from_raw(stage, RawConfig::from_vars(vars)?)?)
}

/// What one stage did during a run.
#[derive(Debug, Default, Clone)]
pub struct StageSummary {
    /// Objects processed.
    pub processed: u64,
    /// Objects found already processed.
    pub already: u64,
    /// Stale or skipped events.
    pub skipped: u64,
    /// Objects sent to the DLQ.
    pub dead_lettered: u64,
    /// Objects that failed and would be redelivered.
    pub failed: u64,
    /// Objects not started for lack of time before a deadline (never on a
    /// local run, which has none), which would be redelivered.
    pub deferred: u64,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Time spent in the stage.
    pub time: Duration,
    /// Failure messages (DLQ and redelivery).
    pub errors: Vec<String>,
}

impl StageSummary {
    fn add(&mut self, report: &InvocationReport, took: Duration) {
        self.time += took;
        for (_, o) in &report.outcomes {
            match o {
                ObjectOutcome::Processed { counts, .. } => {
                    self.processed += 1;
                    self.rows_in += counts.rows_in;
                    self.rows_out += counts.rows_out;
                    self.rows_quarantined += counts.rows_quarantined;
                }
                ObjectOutcome::AlreadyProcessed | ObjectOutcome::AlreadyDeadLettered => {
                    self.already += 1
                }
                ObjectOutcome::Stale(_)
                | ObjectOutcome::Skipped(_)
                | ObjectOutcome::Retracted(_) => self.skipped += 1,
                ObjectOutcome::DeadLettered(e) => {
                    self.dead_lettered += 1;
                    self.errors.push(e.to_string());
                }
                ObjectOutcome::Failed(e) => {
                    self.failed += 1;
                    self.errors.push(format!("will retry: {e}"));
                }
                ObjectOutcome::Deferred { left, need } => {
                    self.deferred += 1;
                    self.errors.push(format!(
                        "not started, will retry: deadline in {} ms, need ~{} ms",
                        left.as_millis(),
                        need.as_millis()
                    ));
                }
            }
        }
    }
}

/// The three stages wired to one directory.
pub struct LocalPipeline {
    dir: PathBuf,
    store: NotifyingStore,
    ingest: Runner<Ingest>,
    curate: Runner<Curate>,
    profile: Runner<Profile>,
}

impl LocalPipeline {
    /// Open (creating) the layout under `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join(LANDING).join("raw"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&dir)?);
        Self::open_on(&dir, local)
    }

    /// The layout's buckets in `store` (S3, for `sluice bench-ingest
    /// --s3`); the DLQ files and alerts stay under `dir`.
    pub fn open_on(dir: &Path, store: Arc<dyn ObjectStore>) -> anyhow::Result<Self> {
        let dir = dir.to_path_buf();
        let store = NotifyingStore::new(store);
        let registry = Registry::embedded()?;
        let runtime = |stage: &str| -> anyhow::Result<Runtime> {
            let config = local_config(stage, &dir)?;
            let dlq = FileDeadLetter::new(dlq_path(&dir, stage));
            Ok(Runtime {
                config: Arc::new(config),
                store: Arc::new(store.clone()),
                dlq: Arc::new(dlq),
                metrics: Arc::new(NoMetrics),
            })
        };
        Ok(LocalPipeline {
            ingest: Runner::new(runtime("ingest")?, Ingest::new(registry)),
            curate: Runner::new(runtime("curate")?, Curate::new(registry)?),
            profile: Runner::new(runtime("profile")?, Profile::new(registry)?),
            store,
            dir,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory as an object store (writes through it trigger stages
    /// on the next [`LocalPipeline::cascade`]).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.store.clone())
    }

    /// A stage's DLQ file.
    pub fn dlq(&self, stage: &str) -> FileDeadLetter {
        FileDeadLetter::new(dlq_path(&self.dir, stage))
    }

    /// Invoke one stage with an event payload (no cascade), as an ordinary
    /// delivery. An object the stage skips as already dead-lettered whose
    /// envelope the DLQ does not hold (see [`LocalPipeline::stale_marker`])
    /// has its marker removed and is delivered again.
    pub async fn invoke(&self, stage: &str, payload: &Value) -> anyhow::Result<InvocationReport> {
        let mut report = self.handle(stage, payload).await?;
        for i in 0..report.outcomes.len() {
            let (Some(obj), ObjectOutcome::AlreadyDeadLettered) = &report.outcomes[i] else {
                continue;
            };
            let Some(marker) = self.stale_marker(stage, obj).await? else {
                continue;
            };
            let obj = obj.clone();
            eprintln!(
                "note: {stage}: {} was marked dead-lettered, but {} holds no envelope for it; \
                 delivering it again",
                obj.location(),
                self.dlq(stage).path().display()
            );
            self.store
                .delete(&marker.0, &marker.1)
                .await
                .with_context(|| {
                    format!("removing the stale marker s3://{}/{}", marker.0, marker.1)
                })?;
            let again = self
                .handle(stage, &s3_notification(std::slice::from_ref(&obj)))
                .await?;
            if let Some((_, outcome)) = again.outcomes.into_iter().next() {
                report.outcomes[i] = (Some(obj), outcome);
            }
            report.failed_message_ids.extend(again.failed_message_ids);
        }
        Ok(report)
    }

    async fn handle(&self, stage: &str, payload: &Value) -> anyhow::Result<InvocationReport> {
        let report = match stage {
            "ingest" => self.ingest.handle(payload, None).await?,
            "curate" => self.curate.handle(payload, None).await?,
            "profile" => self.profile.handle(payload, None).await?,
            other => anyhow::bail!("unknown stage {other:?} (stages: {})", STAGES.join(", ")),
        };
        Ok(report)
    }

    /// A dead-letter marker means "an envelope for this input version (and
    /// code version) is in the DLQ": the reason an ordinary delivery skips
    /// the input. When the DLQ holds no envelope for the version it names
    /// (the line was lost or removed), skipping would leave the input in no
    /// DLQ and never processed. Such a marker's (bucket, key), if any.
    async fn stale_marker(
        &self,
        stage: &str,
        obj: &ObjectRef,
    ) -> anyhow::Result<Option<(String, String)>> {
        let config = match stage {
            "ingest" => &self.ingest.runtime().config,
            "curate" => &self.curate.runtime().config,
            _ => &self.profile.runtime().config,
        };
        let key = dead_letter_marker_key(config, &SourceIdentity::from_event(obj, None));
        let bucket = config.output.bucket.clone();
        let bytes = match self.store.get_bytes(&bucket, &key).await {
            Ok(b) => b,
            Err(e) if e.kind() == sluice::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading s3://{bucket}/{key}")),
        };
        // The runner skips only on a marker it can read, naming this version.
        let Ok(marker) = serde_json::from_slice::<DeadLetterMarker>(&bytes) else {
            return Ok(None);
        };
        let held = self
            .dlq(stage)
            .holds(&marker.source)
            .with_context(|| format!("looking for the envelope s3://{bucket}/{key} names"))?;
        Ok((!held).then_some((bucket, key)))
    }

    /// Invoke one stage as an explicit redrive or rebuild (`sluice replay`,
    /// `--reprocess`): what was dead-lettered with this code version is
    /// tried again; a rebuild replaces what was committed. No cascade: the
    /// outputs wait in [`LocalPipeline::cascade`]'s event buffer.
    pub async fn replay(
        &self,
        stage: &str,
        payload: &Value,
        replay: Replay,
    ) -> anyhow::Result<InvocationReport> {
        let report = match stage {
            "ingest" => self.ingest.handle_replay(payload, None, replay).await?,
            "curate" => self.curate.handle_replay(payload, None, replay).await?,
            "profile" => self.profile.handle_replay(payload, None, replay).await?,
            other => anyhow::bail!("unknown stage {other:?} (stages: {})", STAGES.join(", ")),
        };
        Ok(report)
    }

    /// `sluice retract`: remove what `stage` derived from an input key (no
    /// cascade: the removals wait in [`LocalPipeline::cascade`]'s buffer).
    pub async fn retract(&self, stage: &str, bucket: &str, key: &str) -> anyhow::Result<usize> {
        Ok(match stage {
            "ingest" => self.ingest.retract_key(bucket, key).await?,
            "curate" => self.curate.retract_key(bucket, key).await?,
            "profile" => self.profile.retract_key(bucket, key).await?,
            other => anyhow::bail!("unknown stage {other:?} (stages: {})", STAGES.join(", ")),
        })
    }

    /// The objects written since the last call (they would trigger stages).
    pub fn drain_events(&self) -> Vec<ObjectRef> {
        self.store.drain_events()
    }

    /// The stage whose input an object falls under, if any: a data object,
    /// or an upstream stage's commit (a manifest), which delivers what it lists.
    fn route(&self, obj: &ObjectRef) -> Option<&'static str> {
        let commits = [
            ("curate", self.curate.upstream_commits()),
            ("profile", self.profile.upstream_commits()),
        ];
        for (stage, prefix) in commits {
            let config = if stage == "curate" {
                &self.curate.runtime().config
            } else {
                &self.profile.runtime().config
            };
            if prefix.is_some_and(|p| obj.bucket == config.input.bucket && obj.key.starts_with(&p))
            {
                return Some(stage);
            }
        }
        if is_internal_key(&obj.key) {
            return None;
        }
        let configs = [
            ("ingest", &self.ingest.runtime().config),
            ("curate", &self.curate.runtime().config),
            ("profile", &self.profile.runtime().config),
        ];
        configs
            .into_iter()
            .find(|(_, c)| c.input.contains(&obj.bucket, &obj.key))
            .map(|(s, _)| s)
    }

    /// Run the pipeline until quiet. Every stage's existing input is offered
    /// first (so an interrupted run catches up, and a repeated run finds
    /// everything already done); each new output then triggers the next stage.
    pub async fn run(&self) -> anyhow::Result<BTreeMap<&'static str, StageSummary>> {
        let mut queue: VecDeque<ObjectRef> = VecDeque::new();
        for stage in STAGES {
            let (input, _) = layout(stage);
            let loc = sluice::config::Location::parse("input", input)?;
            for meta in self.store.list(&loc.bucket, &loc.prefix).await? {
                let mut o = ObjectRef::new(&meta.bucket, &meta.key);
                o.etag = Some(meta.etag);
                o.size = Some(meta.size);
                o.event_time = meta.last_modified;
                queue.push_back(o);
            }
        }
        self.cascade(queue).await
    }

    /// Offer each object to the stage whose input it falls under, and every
    /// output that produces to the next stage, until the pipeline is quiet.
    pub async fn cascade(
        &self,
        mut queue: VecDeque<ObjectRef>,
    ) -> anyhow::Result<BTreeMap<&'static str, StageSummary>> {
        queue.extend(self.store.drain_events());
        let mut summary: BTreeMap<&'static str, StageSummary> = STAGES
            .iter()
            .map(|s| (*s, StageSummary::default()))
            .collect();
        while let Some(obj) = queue.pop_front() {
            let Some(stage) = self.route(&obj) else {
                continue;
            };
            let started = Instant::now();
            let report = self
                .invoke(stage, &s3_notification(std::slice::from_ref(&obj)))
                .await?;
            if let Some(s) = summary.get_mut(stage) {
                s.add(&report, started.elapsed());
            }
            queue.extend(self.store.drain_events());
        }
        Ok(summary)
    }
}

/// Print the per-stage table and where the outputs are.
pub fn print_summary(dir: &Path, summary: &BTreeMap<&'static str, StageSummary>, wall: Duration) {
    println!();
    println!(
        "{:<8} {:>8} {:>8} {:>11} {:>11} {:>12} {:>5} {:>9}  balanced",
        "stage", "objects", "already", "rows in", "rows out", "quarantined", "DLQ", "time"
    );
    for stage in STAGES {
        let s = &summary[stage];
        let balanced = s.rows_in == s.rows_out + s.rows_quarantined;
        println!(
            "{:<8} {:>8} {:>8} {:>11} {:>11} {:>12} {:>5} {:>8.2}s  {}",
            stage,
            s.processed,
            s.already,
            s.rows_in,
            s.rows_out,
            s.rows_quarantined,
            s.dead_lettered,
            s.time.as_secs_f64(),
            if balanced { "yes" } else { "NO" }
        );
    }
    let processed: u64 = summary.values().map(|s| s.processed).sum();
    let already: u64 = summary.values().map(|s| s.already).sum();
    println!();
    if processed == 0 && already > 0 {
        println!(
            "Nothing to do: all {already} objects were already processed (idempotent re-run)."
        );
    }
    for (stage, s) in summary {
        for e in s.errors.iter().take(5) {
            println!("{stage}: {e}");
        }
    }
    println!(
        "Finished in {:.2}s. Outputs under {}:",
        wall.as_secs_f64(),
        dir.display()
    );
    println!("  validated Parquet   {}", dir.join("validated").display());
    println!("  curated Parquet     {}", dir.join("curated").display());
    println!("  profiles (JSON)     {}", dir.join("profiles").display());
    println!("  quarantined rows    {}/*/_quarantine/", dir.display());
    println!("  dead letters        {}", dir.join("dlq").display());
    println!(
        "  alerts              {}",
        dir.join("alerts").join("alerts.jsonl").display()
    );
}
