//! The stage runner: the glue between an invocation (Lambda, the CLI, tests)
//! and a [`Stage`]. It decodes the event, opens one span per object, skips
//! work already done (per-input manifest), runs the stage with panics caught,
//! checks that counts balance, writes the manifest idempotently, retries
//! transient failures, dead-letters permanent ones, stops starting objects
//! when the deadline is too close to finish one more, and answers SQS
//! batches with partial batch failures.
//!
//! Deadlines are [`tokio::time::Instant`]s, the clock of the retry sleeps
//! (see [`crate::retry`]).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::commit::{Claim, Ledger, ManifestState, Swap};
use crate::config::{Config, Sink, StoreKind};
use crate::dlq::{DeadLetterSink, Envelope, FileDeadLetter};
use crate::error::{disposition, Disposition, Error, ErrorKind, Result};
use crate::idempotent::{self, StreamedOutput, WriteOutcome};
use crate::lineage::{keys, parse_claim_tag, Lineage, SourceIdentity};
use crate::retry::retry;
use crate::store::{GetResult, LocalStore, Metadata, ObjectMeta, ObjectStore, ObjectStoreExt};
use crate::telemetry::{
    AlreadyProcessed, Counts, EmfStdout, EventSkipped, MetricsSink, NoMetrics, ObjectDeadLettered,
    ObjectFailed, ObjectProcessed, ObjectsDeferred, RetryScheduled, StaleEventIgnored,
};
use crate::trigger::{self, ObjectRef, Replay};

/// One pipeline stage: what it does to one input object.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    /// The stage name (`ingest`, `curate`, ...), used in keys, logs and metrics.
    fn name(&self) -> &str;

    /// Whether this stage consumes `key` (e.g. a suffix filter); other keys
    /// under the input prefix are skipped with a log line.
    fn accepts(&self, _key: &str) -> bool {
        true
    }

    /// Process one object: read it through `ctx`, write outputs through `ctx`,
    /// and return the counts (which must balance).
    async fn process(&self, ctx: &mut ObjectContext) -> Result<Counts>;
}

/// Everything a stage needs, built once at cold start.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The dead-letter sink.
    pub dlq: Arc<dyn DeadLetterSink>,
    /// Where metrics go.
    pub metrics: Arc<dyn MetricsSink>,
}

impl Runtime {
    /// Build clients and sinks for a configuration.
    pub async fn from_config(config: Config) -> Result<Self> {
        let (store, dlq) = clients(&config).await?;
        let metrics: Arc<dyn MetricsSink> = if config.emf_metrics {
            Arc::new(EmfStdout::new("Sluice"))
        } else {
            Arc::new(NoMetrics)
        };
        Ok(Runtime {
            config: Arc::new(config),
            store,
            dlq,
            metrics,
        })
    }
}

/// The object store and DLQ a configuration names. AWS configuration is
/// loaded only if something actually uses AWS.
#[cfg(feature = "aws")]
async fn clients(config: &Config) -> Result<(Arc<dyn ObjectStore>, Arc<dyn DeadLetterSink>)> {
    use crate::dlq::SqsDeadLetter;
    use crate::store::S3Store;
    let needs_aws = config.store == StoreKind::S3 || matches!(config.dlq, Sink::Aws(_));
    let sdk = if needs_aws {
        Some(crate::aws::load_sdk_config().await)
    } else {
        None
    };
    let store: Arc<dyn ObjectStore> = match (&config.store, &sdk) {
        (StoreKind::Local(dir), _) => Arc::new(LocalStore::new(dir)?),
        (StoreKind::S3, Some(sdk)) => Arc::new(S3Store::new(
            crate::aws::s3_client(sdk, config.s3_force_path_style),
            config.part_size_bytes,
        )),
        (StoreKind::S3, None) => unreachable!("needs_aws is true for S3"),
    };
    let dlq: Arc<dyn DeadLetterSink> = match (&config.dlq, &sdk) {
        (Sink::File(path), _) => Arc::new(FileDeadLetter::new(path)),
        (Sink::Aws(url), Some(sdk)) => Arc::new(
            SqsDeadLetter::new(crate::aws::sqs_client(sdk), url).with_requeue(config.queue.clone()),
        ),
        (Sink::Aws(_), None) => unreachable!("needs_aws is true for an SQS DLQ"),
    };
    Ok((store, dlq))
}

/// Built without the `aws` feature (the CLI's demo build): a local store and
/// a file DLQ, and a configuration error naming the feature for anything else.
#[cfg(not(feature = "aws"))]
async fn clients(config: &Config) -> Result<(Arc<dyn ObjectStore>, Arc<dyn DeadLetterSink>)> {
    let store: Arc<dyn ObjectStore> = match &config.store {
        StoreKind::Local(dir) => Arc::new(LocalStore::new(dir)?),
        StoreKind::S3 => {
            return Err(Error::config(
                "SLUICE_STORE",
                format!("the S3 store needs AWS: {}", crate::aws::WITHOUT_SDK),
            ))
        }
    };
    let dlq: Arc<dyn DeadLetterSink> = match &config.dlq {
        Sink::File(path) => Arc::new(FileDeadLetter::new(path)),
        Sink::Aws(url) => {
            return Err(Error::config(
                "SLUICE_DLQ",
                format!("the SQS DLQ {url} needs AWS: {}", crate::aws::WITHOUT_SDK),
            ))
        }
    };
    Ok((store, dlq))
}

/// One output claimed by the processing of an input version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutputRef {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// The record written after a stage has finished an input version: what it
/// produced, the counts, and the timing. It is the commit point that makes a
/// redelivery a cheap no-op, and what `sluice trace` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stage.
    pub stage: String,
    /// The input version.
    pub source: SourceIdentity,
    /// Correlation id.
    pub correlation_id: String,
    /// Code version.
    pub code_version: String,
    /// Outputs, sorted.
    pub outputs: Vec<OutputRef>,
    /// Counts.
    pub counts: Counts,
    /// Time spent in this stage.
    pub duration_ms: u64,
    /// When processing finished.
    pub processed_at: chrono::DateTime<Utc>,
    /// When the original file landed.
    pub origin_time: Option<chrono::DateTime<Utc>>,
    /// Committed, dead-lettered or retracted (see [`crate::commit`]).
    #[serde(default)]
    pub state: ManifestState,
    /// Outputs of the version this manifest replaced, still to be removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_cleanup: Vec<OutputRef>,
    /// Whether everything older versions left has been removed.
    #[serde(default = "yes")]
    pub clean: bool,
    /// The stage that wrote the input, when it is a stage's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_stage: Option<String>,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// The lineage of the commit this manifest records, for rewriting it.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            source: self.source.clone(),
            stage: self.stage.clone(),
            code_version: self.code_version.clone(),
            correlation_id: self.correlation_id.clone(),
            origin_time: self.origin_time,
        }
    }
}

/// Where the manifest of an input lives for a stage.
pub fn manifest_key(config: &Config, source: &SourceIdentity) -> String {
    manifest_key_in(&config.output.prefix, &config.stage, source)
}

/// Where `stage`, writing under `output_prefix`, keeps the manifest of an input.
pub fn manifest_key_in(output_prefix: &str, stage: &str, source: &SourceIdentity) -> String {
    format!(
        "{output_prefix}_sluice/manifests/{stage}/{}.json",
        source.object_id()
    )
}

/// Where `stage` records that an input version was dead-lettered.
pub fn dead_letter_marker_key(config: &Config, source: &SourceIdentity) -> String {
    dead_letter_marker_key_in(&config.output.prefix, &config.stage, source)
}

/// Where `stage`, writing under `output_prefix`, marks a dead-lettered input.
pub fn dead_letter_marker_key_in(
    output_prefix: &str,
    stage: &str,
    source: &SourceIdentity,
) -> String {
    format!(
        "{output_prefix}_sluice/dead-letters/{stage}/{}.json",
        source.object_id()
    )
}

/// What a dead-letter marker records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterMarker {
    /// The input version that failed.
    pub source: SourceIdentity,
    /// The code version it failed with; a new version tries again.
    pub code_version: String,
    /// The error kind.
    pub kind: ErrorKind,
    /// The error message.
    pub message: String,
}

/// Keys (relative to a stage's input or output prefix) under `_sluice/` or
/// `_quarantine/` are bookkeeping, never stage input. Any other key is data,
/// whatever its segments look like (`raw/trips/_2024/x.csv` is data).
pub fn is_internal_key(key: &str) -> bool {
    key.starts_with("_sluice/") || key.starts_with("_quarantine/")
}

/// The per-object view a stage works through.
pub struct ObjectContext {
    /// The event's object.
    pub object: ObjectRef,
    /// The input's metadata when processing started.
    pub input: ObjectMeta,
    /// Lineage stamped on every output.
    pub lineage: Lineage,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Configuration.
    pub config: Arc<Config>,
    /// When the invocation must be finished by.
    pub deadline: Option<Instant>,
    /// Where stage-specific metrics go (EMF on Lambda).
    pub metrics: Arc<dyn MetricsSink>,
    outputs: BTreeSet<OutputRef>,
    ledger: Ledger,
}

impl ObjectContext {
    /// Stream the input. Fails (retryably) if the object changed since
    /// processing started, so one run never mixes two versions.
    pub async fn open_input(&self) -> Result<GetResult> {
        let got = self
            .store
            .get(&self.object.bucket, &self.object.key)
            .await?;
        if got.meta.etag != self.input.etag {
            return Err(Error::other(
                ErrorKind::Precondition,
                format!("{} changed while being processed", self.object.location()),
                None,
            ));
        }
        Ok(got)
    }

    /// Stream the input to an anonymous temporary file, for formats that
    /// need random access (Parquet keeps its footer at the end): the body
    /// goes to local disk in chunks, never whole into memory. Objects over
    /// `SLUICE_MAX_OBJECT_BYTES` are refused. Returns the file and its size;
    /// the file disappears when dropped.
    pub async fn spool_input(&self) -> Result<(std::fs::File, u64)> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let location = self.location();
        let limit = self.config.max_object_bytes;
        let too_large = || {
            Error::invalid_input(
                &location,
                format!(
                    "object is larger than the limit of {limit} bytes (SLUICE_MAX_OBJECT_BYTES)"
                ),
            )
        };
        if self.input.size > limit {
            return Err(too_large());
        }
        // A full or failing temp disk is worth another try.
        let disk = |e: std::io::Error| {
            Error::other(
                ErrorKind::Transient,
                format!("{location}: cannot spool to a temporary file"),
                Some(Box::new(e)),
            )
        };
        let mut out = tokio::fs::File::from_std(tempfile::tempfile().map_err(disk)?);
        let mut body = self.open_input().await?.body;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large());
            }
            out.write_all(&chunk).await.map_err(disk)?;
        }
        out.flush().await.map_err(disk)?;
        Ok((out.into_std().await, size))
    }

    /// `s3://bucket/key` of the input.
    pub fn location(&self) -> String {
        self.object.location()
    }

    /// Record that this input version owns an output, before it is written
    /// (see [`crate::commit`]): a crash after the write then never leaves
    /// an output nothing points at.
    async fn claim(&mut self, bucket: &str, key: &str) -> Result<()> {
        let output = OutputRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        if self.outputs.contains(&output) {
            return Ok(());
        }
        self.ledger.claim(&self.lineage.source, &output).await?;
        self.outputs.insert(output);
        Ok(())
    }

    /// Write a small output idempotently.
    pub async fn write(
        &mut self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
        extra: &Metadata,
    ) -> Result<WriteOutcome> {
        self.claim(bucket, key).await?;
        idempotent::write_bytes(
            self.store.as_ref(),
            bucket,
            key,
            body,
            &self.lineage,
            extra,
            content_type,
        )
        .await
    }

    /// Start a streamed output; `None` if it is already there for this input
    /// version (or a newer one).
    pub async fn begin_output(
        &mut self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        extra: &Metadata,
    ) -> Result<Option<StreamedOutput>> {
        self.claim(bucket, key).await?;
        Ok(idempotent::begin_stream(
            self.store.as_ref(),
            bucket,
            key,
            &self.lineage,
            extra,
            content_type,
        )
        .await?
        .ok())
    }

    /// The outputs claimed so far.
    pub fn outputs(&self) -> impl Iterator<Item = &OutputRef> {
        self.outputs.iter()
    }
}

/// What happened to one object.
#[derive(Debug)]
pub enum ObjectOutcome {
    /// Processed; outputs written.
    Processed {
        /// Counts.
        counts: Counts,
        /// The manifest written.
        manifest: Box<Manifest>,
    },
    /// Already done for this input version.
    AlreadyProcessed,
    /// An older event than the last one processed, or the object has changed since.
    Stale(String),
    /// Not for this stage.
    Skipped(String),
    /// Permanent failure, now in the DLQ.
    DeadLettered(Error),
    /// This input version already failed permanently with this code version;
    /// its DLQ envelope exists, so nothing is sent again.
    AlreadyDeadLettered,
    /// Failed after retries; left for the queue to redeliver.
    Failed(Error),
    /// The input was removed by its upstream stage: everything this stage
    /// derived from it was removed (this many outputs).
    Retracted(usize),
    /// Not started: too little time was left before the invocation's
    /// deadline to finish it. Its message goes back to the queue
    /// unprocessed; this is not an attempt, a failure or a dead letter.
    Deferred {
        /// Time left before the deadline when the runner stopped starting objects.
        left: Duration,
        /// Time it wanted left to start one more (see [`pace`]).
        need: Duration,
    },
}

/// The result of one invocation.
#[derive(Debug, Default)]
pub struct InvocationReport {
    /// Per object (or per undecodable delivery, with no object).
    pub outcomes: Vec<(Option<ObjectRef>, ObjectOutcome)>,
    /// SQS message ids to report as batch item failures.
    pub failed_message_ids: Vec<String>,
    /// Whether the payload was an SQS batch.
    pub is_sqs_batch: bool,
}

impl InvocationReport {
    /// A short JSON summary for direct invocations.
    pub fn summary(&self) -> Value {
        let mut s = serde_json::Map::new();
        for (_, o) in &self.outcomes {
            let name = match o {
                ObjectOutcome::Processed { .. } => "processed",
                ObjectOutcome::AlreadyProcessed => "already_processed",
                ObjectOutcome::Stale(_) => "stale",
                ObjectOutcome::Skipped(_) => "skipped",
                ObjectOutcome::DeadLettered(_) => "dead_lettered",
                ObjectOutcome::AlreadyDeadLettered => "already_dead_lettered",
                ObjectOutcome::Failed(_) => "failed",
                ObjectOutcome::Retracted(_) => "retracted",
                ObjectOutcome::Deferred { .. } => "deferred",
            };
            let n = s.get(name).and_then(Value::as_u64).unwrap_or(0);
            s.insert(name.into(), Value::from(n + 1));
        }
        Value::Object(s)
    }

    /// The first failure left for redelivery, if any.
    pub fn first_failure(&self) -> Option<&Error> {
        self.outcomes.iter().find_map(|(_, o)| match o {
            ObjectOutcome::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// How many objects were deferred (not started) for lack of time.
    pub fn deferred(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, ObjectOutcome::Deferred { .. }))
            .count()
    }
}

/// The safety factor on the per-object estimate: another object starts only
/// if at least this many times the estimate is left before the deadline.
/// Two covers an object twice as slow as the recent ones (a cold S3
/// prefix, a bigger file, a retry) without idling half the time budget.
pub const PACE_SAFETY_FACTOR: u32 = 2;

/// The least time left at which another object starts, whatever the
/// estimate: no object finishes in less, and the runner needs a moment to
/// answer the batch.
pub const PACE_FLOOR: Duration = Duration::from_secs(1);

/// Whether a batch starts its next object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Start it.
    Start,
    /// Leave it, and everything after it in the batch, for redelivery.
    Defer {
        /// Time left before the deadline.
        left: Duration,
        /// Time wanted left to start one more.
        need: Duration,
    },
}

/// Decide whether to start the next object of a batch with `left` before
/// the deadline (`None`: no deadline), given the per-object `estimate`
/// (`None`: nothing measured yet) and whether this invocation has started an
/// object already.
///
/// It wants `need = max(PACE_SAFETY_FACTOR × estimate, PACE_FLOOR)` left. The
/// first object of an invocation needs only the floor: deferring it would
/// make no progress at all, and an estimate above half the function timeout
/// would then defer every delivery until SQS dead-letters it untried.
pub fn pace(left: Option<Duration>, estimate: Option<Duration>, started_any: bool) -> Pacing {
    let Some(left) = left else {
        return Pacing::Start;
    };
    let need = estimate
        .map(|e| e.saturating_mul(PACE_SAFETY_FACTOR))
        .unwrap_or_default()
        .max(PACE_FLOOR);
    let need = if started_any { need } else { PACE_FLOOR };
    if left >= need {
        Pacing::Start
    } else {
        Pacing::Defer { left, need }
    }
}

/// The per-object processing time a [`Runner`] expects, learnt from the
/// objects it has worked on (kept across the invocations of a warm Lambda).
///
/// A peak-following moving average: a slower object raises the estimate to
/// its own duration at once; a faster one pulls it down by a quarter of the
/// difference. Quick to believe that S3 got slow, slow to believe that it
/// recovered, which is the safe side for a deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectPace {
    estimate: Option<Duration>,
}

impl ObjectPace {
    /// The current estimate; `None` before the first measurement.
    pub fn estimate(&self) -> Option<Duration> {
        self.estimate
    }

    /// Learn from one object that took `took`.
    pub fn observe(&mut self, took: Duration) {
        self.estimate = Some(match self.estimate {
            Some(e) if took < e => e - (e - took) / 4,
            _ => took,
        });
    }

    /// Whether an outcome measures the cost of an object. Short cuts
    /// (already processed, stale, skipped, already dead-lettered) take a
    /// fraction of a real object and would make the next one look cheap.
    fn measures(outcome: &ObjectOutcome) -> bool {
        matches!(
            outcome,
            ObjectOutcome::Processed { .. }
                | ObjectOutcome::Failed(_)
                | ObjectOutcome::DeadLettered(_)
        )
    }
}

/// What the upstream stage's commit says of an input.
enum UpstreamCommit {
    /// Committed: the upstream manifest lists it.
    Listed,
    /// The upstream committed its source without it: not wanted.
    NotWanted(String),
    /// Not committed yet; the commit's own event delivers it.
    Pending(String),
}

/// How a commit ended.
enum Committed {
    /// This version's manifest is in place (and its cleanup done).
    Won(Manifest),
    /// A duplicate delivery of the same version committed first.
    Duplicate,
    /// A newer version or a retraction committed; this version's outputs are not wanted.
    Lost {
        /// The manifest that won, if any.
        winner: Option<Manifest>,
    },
}

/// Runs one stage.
pub struct Runner<S> {
    stage: S,
    rt: Runtime,
    pace: Mutex<ObjectPace>,
}

impl<S: Stage> Runner<S> {
    /// A runner for `stage` with these clients.
    pub fn new(rt: Runtime, stage: S) -> Self {
        Runner {
            stage,
            rt,
            pace: Mutex::new(ObjectPace::default()),
        }
    }

    /// What this runner expects an object to take.
    pub fn object_pace(&self) -> ObjectPace {
        *self.pace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether to start another object now (see [`pace`]).
    fn pacing(&self, deadline: Option<Instant>, started_any: bool) -> Pacing {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        pace(left, self.object_pace().estimate(), started_any)
    }

    /// Process one object as [`Runner::process_with_retries`] does, and
    /// learn from how long it took.
    async fn process_timed(
        &self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        receive_count: u32,
        first_seen: Option<chrono::DateTime<Utc>>,
        raw_event: &Value,
        replay: Replay,
    ) -> ObjectOutcome {
        let started = Instant::now();
        let outcome = self
            .process_with_retries(obj, deadline, receive_count, first_seen, raw_event, replay)
            .await;
        if ObjectPace::measures(&outcome) {
            self.pace
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .observe(started.elapsed());
        }
        outcome
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The stage.
    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// Handle a whole invocation payload.
    pub async fn handle(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
    ) -> Result<InvocationReport> {
        self.handle_with(payload, deadline, Replay::default()).await
    }

    /// Handle a payload as an explicit redrive (`sluice replay`): input
    /// versions already dead-lettered with this code version are tried again.
    pub async fn handle_redrive(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
    ) -> Result<InvocationReport> {
        self.handle_with(payload, deadline, Replay::redrive()).await
    }

    /// Handle a payload as a redrive or a rebuild (`sluice replay
    /// --reprocess`: the current version of each object is processed again
    /// as `replay.reprocess`'s generation and replaces what it committed).
    pub async fn handle_replay(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
        replay: Replay,
    ) -> Result<InvocationReport> {
        self.handle_with(payload, deadline, replay).await
    }

    async fn handle_with(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
        replay: Replay,
    ) -> Result<InvocationReport> {
        let stage = self.stage.name().to_string();
        let decoded = match trigger::decode(payload) {
            Ok(d) => d,
            Err(err) => {
                // An unrecognisable payload is a permanent failure: keep it in the DLQ.
                self.dead_letter(None, &err, 1, None, None, payload.clone())
                    .await?;
                let mut report = InvocationReport::default();
                report
                    .outcomes
                    .push((None, ObjectOutcome::DeadLettered(err)));
                return Ok(report);
            }
        };
        let mut report = InvocationReport {
            is_sqs_batch: decoded.is_sqs_batch,
            ..Default::default()
        };
        // Once the deadline is too close to finish another object, nothing
        // more is started: `deferring` holds (time left, time needed) from
        // that moment, and every later object goes back to the queue as is.
        let mut deferring: Option<(Duration, Duration)> = None;
        let mut started_any = false;
        let mut deferred_messages = 0;
        let mut requeued_messages = 0;
        for delivery in decoded.deliveries {
            let trigger::Delivery {
                message_id,
                receive_count,
                first_seen,
                objects,
                skipped,
                raw,
                replay: marked,
            } = delivery;
            // A message of a batch can only be given back by its id; one
            // without (SQS always sends one) is processed, never deferred.
            let can_defer = message_id.is_some() || !report.is_sqs_batch;
            let mut delivery_failed = false;
            let mut delivery_deferred = false;
            if deferring.is_none() || !can_defer {
                // Reported with the delivery's processing (a deferred one
                // reports them when it comes back).
                for reason in &skipped {
                    EventSkipped {
                        stage: &stage,
                        reason,
                    }
                    .emit(self.rt.metrics.as_ref());
                }
            }
            match (objects, deferring.filter(|_| can_defer)) {
                (Err(_), Some((left, need))) => {
                    delivery_deferred = true;
                    report
                        .outcomes
                        .push((None, ObjectOutcome::Deferred { left, need }));
                }
                (Err(err), None) => {
                    match self
                        .dead_letter(None, &err, receive_count, first_seen, None, raw.clone())
                        .await
                    {
                        Ok(()) => report
                            .outcomes
                            .push((None, ObjectOutcome::DeadLettered(err))),
                        Err(dlq_err) => {
                            delivery_failed = true;
                            report.outcomes.push((None, ObjectOutcome::Failed(dlq_err)));
                        }
                    }
                }
                (Ok(objects), _) => {
                    for obj in objects {
                        if can_defer && deferring.is_none() {
                            if let Pacing::Defer { left, need } = self.pacing(deadline, started_any)
                            {
                                deferring = Some((left, need));
                            }
                        }
                        if let (true, Some((left, need))) = (can_defer, deferring) {
                            delivery_deferred = true;
                            report
                                .outcomes
                                .push((Some(obj), ObjectOutcome::Deferred { left, need }));
                            continue;
                        }
                        started_any = true;
                        let outcome = self
                            .process_timed(
                                &obj,
                                deadline,
                                receive_count,
                                first_seen,
                                &raw,
                                replay.or(marked),
                            )
                            .await;
                        delivery_failed |= matches!(outcome, ObjectOutcome::Failed(_));
                        report.outcomes.push((Some(obj), outcome));
                    }
                }
            }
            if delivery_deferred && !delivery_failed && message_id.is_some() {
                // Sent back as a new message, it is acknowledged here and
                // keeps every one of its receives for real attempts.
                match self.requeue(&raw).await {
                    Ok(true) => {
                        requeued_messages += 1;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not requeue a deferred message; reporting it as failed")
                    }
                }
            }
            if delivery_failed || delivery_deferred {
                if let Some(id) = message_id {
                    deferred_messages += usize::from(delivery_deferred);
                    report.failed_message_ids.push(id);
                }
            }
        }
        if let Some((left, need)) = deferring {
            ObjectsDeferred {
                stage: &stage,
                objects: report.deferred(),
                messages: deferred_messages,
                requeued: requeued_messages,
                left,
                need,
                estimate: self.object_pace().estimate(),
            }
            .emit(self.rt.metrics.as_ref());
        }
        Ok(report)
    }

    /// Send a deferred SQS message back to the stage's queue (body and the
    /// Sluice message attributes), if the runtime has a queue for that.
    async fn requeue(&self, raw: &Value) -> Result<bool> {
        let Some(body) = raw.get("body").and_then(Value::as_str) else {
            return Ok(false);
        };
        let attributes: Vec<(&str, String)> =
            [trigger::REDRIVE_ATTRIBUTE, trigger::REPROCESS_ATTRIBUTE]
                .into_iter()
                .filter_map(|name| {
                    raw.get("messageAttributes")
                        .and_then(|a| a.get(name))
                        .and_then(|a| a.get("stringValue"))
                        .and_then(Value::as_str)
                        .map(|v| (name, v.to_string()))
                })
                .collect();
        self.rt.dlq.requeue(body, &attributes).await
    }

    /// Process one object with in-process retries; route a permanent failure
    /// to the DLQ. Never returns an error: the outcome says what happened.
    pub async fn process_with_retries(
        &self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        receive_count: u32,
        first_seen: Option<chrono::DateTime<Utc>>,
        raw_event: &Value,
        replay: Replay,
    ) -> ObjectOutcome {
        let stage = self.stage.name().to_string();
        let span = tracing::info_span!("object", stage = %stage, bucket = %obj.bucket, key = %obj.key, correlation_id = tracing::field::Empty);
        async {
            let metrics = self.rt.metrics.as_ref();
            let retried = retry(
                &self.rt.config.retry,
                deadline,
                |attempt, delay, error| {
                    RetryScheduled {
                        stage: &stage,
                        attempt,
                        delay,
                        error,
                    }
                    .emit(metrics)
                },
                |_| self.process_once(obj, deadline, replay),
            )
            .await;
            match retried.result {
                Ok(outcome) => outcome,
                Err(err) => {
                    let attempts = receive_count.saturating_sub(1) + retried.attempts;
                    match disposition(&err) {
                        Disposition::Retry => {
                            ObjectFailed {
                                stage: &stage,
                                error: &err,
                                attempts: retried.attempts,
                            }
                            .emit(metrics);
                            ObjectOutcome::Failed(err)
                        }
                        Disposition::DeadLetter | Disposition::Quarantine => {
                            let source = SourceIdentity::from_event(obj, None);
                            let correlation_id = Some(source.derived_correlation_id());
                            match self
                                .dead_letter(
                                    Some(source),
                                    &err,
                                    attempts,
                                    first_seen,
                                    correlation_id,
                                    raw_event.clone(),
                                )
                                .await
                            {
                                Ok(()) => {
                                    ObjectDeadLettered {
                                        stage: &stage,
                                        error: &err,
                                        attempts,
                                    }
                                    .emit(metrics);
                                    self.mark_dead_lettered(obj, &err).await;
                                    // Commit the failure, so nothing an older
                                    // version produced outlives it. If that
                                    // fails, the redelivery (which finds the
                                    // marker) commits it.
                                    // (An input gone mid-read still owes the sweep of
                                    // what it wrote: retried too.)
                                    match self.commit_dead_letter(obj, replay).await {
                                        Ok(()) => ObjectOutcome::DeadLettered(err),
                                        Err(e) => {
                                            tracing::warn!(error = %e, "dead-lettered, but could not commit that yet");
                                            ObjectOutcome::Failed(e)
                                        }
                                    }
                                }
                                // Not recorded anywhere: it must be redelivered, not acknowledged.
                                Err(dlq_err) => {
                                    ObjectFailed {
                                        stage: &stage,
                                        error: &dlq_err,
                                        attempts,
                                    }
                                    .emit(metrics);
                                    ObjectOutcome::Failed(dlq_err)
                                }
                            }
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Record a dead-lettered input version, so a redelivery of the same
    /// event does not produce a second envelope. Best effort: without the
    /// marker the worst case is a duplicate envelope, never a lost one.
    async fn mark_dead_lettered(&self, obj: &ObjectRef, err: &Error) {
        if obj.etag.is_none() || err.kind() == ErrorKind::NotFound {
            return;
        }
        let source = SourceIdentity::from_event(obj, None);
        let marker = DeadLetterMarker {
            source: source.clone(),
            code_version: self.rt.config.code_version.clone(),
            kind: err.kind(),
            message: err.to_string(),
        };
        let Ok(body) = serde_json::to_vec_pretty(&marker) else {
            return;
        };
        let key = dead_letter_marker_key(&self.rt.config, &source);
        let opts = crate::store::PutOptions::new(crate::store::PutMode::Overwrite);
        if let Err(e) = self
            .rt
            .store
            .put(&self.rt.config.output.bucket, &key, body.into(), opts)
            .await
        {
            tracing::warn!(error = %e, "could not record the dead-letter marker");
        }
    }

    /// Whether this input version already failed with this code version.
    async fn already_dead_lettered(&self, source: &SourceIdentity) -> bool {
        let key = dead_letter_marker_key(&self.rt.config, source);
        let bucket = &self.rt.config.output.bucket;
        // A head first: the common case (no marker) costs no body read.
        if !matches!(self.rt.store.head(bucket, &key).await, Ok(Some(_))) {
            return false;
        }
        let Ok(bytes) = self.rt.store.get_bytes(bucket, &key).await else {
            return false;
        };
        serde_json::from_slice::<DeadLetterMarker>(&bytes).is_ok_and(|m| {
            m.code_version == self.rt.config.code_version
                && m.source.etag == source.etag
                && m.source.version_id == source.version_id
        })
    }

    async fn dead_letter(
        &self,
        source: Option<SourceIdentity>,
        err: &Error,
        attempts: u32,
        first_seen: Option<chrono::DateTime<Utc>>,
        correlation_id: Option<String>,
        event: Value,
    ) -> Result<()> {
        let env = Envelope::new(
            self.stage.name(),
            source,
            err,
            attempts,
            first_seen,
            correlation_id,
            event,
        );
        self.rt.dlq.send(&env).await
    }

    /// An event this stage does not act on, logged and counted.
    fn skipped(&self, reason: String) -> ObjectOutcome {
        EventSkipped {
            stage: self.stage.name(),
            reason: &reason,
        }
        .emit(self.rt.metrics.as_ref());
        ObjectOutcome::Skipped(reason)
    }

    /// An event for a version that is no longer (or never was) the one to act on.
    fn stale(&self, reason: String) -> ObjectOutcome {
        StaleEventIgnored {
            stage: self.stage.name(),
            reason: &reason,
        }
        .emit(self.rt.metrics.as_ref());
        ObjectOutcome::Stale(reason)
    }

    /// The ledger of this stage: manifests and claims under its output.
    fn ledger(&self) -> Ledger {
        let cfg = &self.rt.config;
        Ledger::new(
            self.rt.store.clone(),
            &cfg.output.bucket,
            &cfg.output.prefix,
            self.stage.name(),
        )
    }

    /// The input as it is now, or `None` if it no longer exists.
    async fn current(&self, obj: &ObjectRef) -> Result<Option<ObjectMeta>> {
        self.rt.store.head(&obj.bucket, &obj.key).await
    }

    /// One attempt at one object.
    async fn process_once(
        &self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        replay: Replay,
    ) -> Result<ObjectOutcome> {
        let cfg = &self.rt.config;
        let stage = self.stage.name();
        let metrics = self.rt.metrics.as_ref();
        let skip = |reason: String| Ok(self.skipped(reason));
        let stale = |reason: String| Ok(self.stale(reason));
        if !cfg.input.contains(&obj.bucket, &obj.key) {
            return skip(format!(
                "{} is outside this stage's input {}",
                obj.location(),
                cfg.input
            ));
        }
        if self
            .upstream_commits()
            .is_some_and(|p| obj.key.starts_with(&p) && obj.key.ends_with(".json"))
        {
            return self.deliver_committed(obj, deadline, replay).await;
        }
        let relative = obj.key.strip_prefix(&cfg.input.prefix).unwrap_or(&obj.key);
        if is_internal_key(relative) {
            return skip(format!("{} is bookkeeping, not data", obj.location()));
        }
        if !self.stage.accepts(&obj.key) {
            return skip(format!(
                "{} is not an input {stage} accepts",
                obj.location()
            ));
        }
        let ledger = self.ledger();
        if obj.is_removal() {
            return self.process_removal(obj, &ledger).await;
        }
        let started = Instant::now();
        let Some(input) = self.current(obj).await? else {
            // Gone before its version committed: what that version wrote is
            // its own to remove (a committed version's outputs stay: a
            // landed object's deletion removes nothing, invariant 5).
            let event_source = SourceIdentity::from_event(obj, None);
            if event_source.etag.is_some() || event_source.version_id.is_some() {
                let committed = match ledger.read(&event_source).await? {
                    Some((m, etag))
                        if m.source.same_content(&event_source)
                            && m.state == ManifestState::Committed =>
                    {
                        Some((m, etag))
                    }
                    _ => None,
                };
                if let Some((m, etag)) = committed {
                    // A late duplicate of a version committed before its
                    // input was deleted: done, not lost. No newer version
                    // will take over the cleanup this commit owes.
                    if !m.clean {
                        let lineage = m.lineage();
                        self.finish_cleanup(&ledger, &lineage, m, etag).await?;
                    }
                    AlreadyProcessed { stage }.emit(metrics);
                    return Ok(ObjectOutcome::AlreadyProcessed);
                }
                self.sweep_gone(&ledger, &event_source, replay).await?;
            } else if replay.reprocess.is_some() {
                // A rebuild names no version: what its generation claimed.
                self.sweep_gone(&ledger, &event_source, replay).await?;
            }
            if cfg.upstream.is_some() {
                // Its upstream removed it (a newer version replaced it); the
                // removal event retracts whatever was derived from it.
                return stale(format!(
                    "{} no longer exists: its upstream stage removed it",
                    obj.location()
                ));
            }
            return Err(Error::Storage {
                op: "head",
                location: obj.location(),
                kind: ErrorKind::NotFound,
                message: "the object in the event no longer exists".into(),
                source: None,
            });
        };
        let event_source = SourceIdentity::from_event(obj, None);
        let source = SourceIdentity::from_event(obj, Some(&input));
        let current_source =
            SourceIdentity::from_event(&ObjectRef::new(&obj.bucket, &obj.key), Some(&input));
        if !source.same_content(&current_source) {
            // A late event for a version that is no longer current: whatever
            // it may have written before a crash is its own to remove.
            let removed = if event_source.etag.is_some() || event_source.version_id.is_some() {
                self.sweep_own(&ledger, &event_source, &BTreeSet::new(), &current_source)
                    .await?
            } else {
                0
            };
            return stale(format!(
                "{} has changed since this event (etag {}, now {}){}",
                obj.location(),
                source.etag.as_deref().unwrap_or("-"),
                input.etag,
                if removed > 0 {
                    format!("; removed {removed} output(s) it had left")
                } else {
                    String::new()
                }
            ));
        }
        // Replays carry no version: they are resolved to the current one, so
        // they can never resurrect an older version.
        let mut source = current_source;
        let input_stage = input.metadata.get(keys::STAGE).cloned();
        if let Some(up) = &cfg.upstream {
            match self.upstream_commit(obj, &input, up).await? {
                UpstreamCommit::Listed => {}
                UpstreamCommit::NotWanted(reason) => return stale(reason),
                UpstreamCommit::Pending(reason) => return skip(reason),
            }
        }
        // The manifest is the commit point: if it is there for this content
        // and generation, so is everything else (once its cleanup is done).
        // An ordinary event takes the generation committed for its content;
        // a rebuild brings its own.
        let existing = ledger.read(&source).await?;
        let committed_generation = existing
            .as_ref()
            .filter(|(m, _)| m.source.same_content(&source))
            .map(|(m, _)| m.source.generation);
        source.generation = replay
            .reprocess
            .unwrap_or(committed_generation.unwrap_or(0));
        if let Some(newer) = committed_generation.filter(|g| *g > source.generation) {
            // A later rebuild committed first: this one is stale.
            let removed = self
                .sweep_own(&ledger, &source, &BTreeSet::new(), &source)
                .await?;
            return stale(format!(
                "{}: a later rebuild (generation {newer}) committed first; removed {removed} output(s) generation {} had left",
                obj.location(),
                source.generation
            ));
        }
        let lineage = Lineage::for_input(
            source,
            Some(&input.metadata),
            obj.event_time,
            stage,
            &cfg.code_version,
        );
        tracing::Span::current().record("correlation_id", lineage.correlation_id.as_str());

        if let Some((m, etag)) = existing {
            if m.source.same_commit(&lineage.source) {
                match m.state {
                    ManifestState::Committed => {
                        if !m.clean {
                            self.finish_cleanup(&ledger, &lineage, m, etag).await?;
                        } else if m.source.generation > 0 {
                            self.sweep_older_generations(&ledger, &m, &etag).await?;
                        }
                        AlreadyProcessed { stage }.emit(metrics);
                        return Ok(ObjectOutcome::AlreadyProcessed);
                    }
                    // Retracted by `sluice retract`: not to come back by itself.
                    ManifestState::Retracted if cfg.upstream.is_none() && !replay.redrive => {
                        return skip(format!(
                            "{} was retracted (`sluice retract`); a new upload or a redrive ingests it again",
                            obj.location()
                        ));
                    }
                    // Whether its envelope still stands is the marker's to
                    // say (below); the commit only owes its cleanup.
                    ManifestState::DeadLettered if !m.clean => {
                        self.finish_cleanup(&ledger, &lineage, m, etag).await?;
                    }
                    _ => {}
                }
            }
        }
        if !replay.redrive && self.already_dead_lettered(&lineage.source).await {
            // The envelope exists; make sure the dead-letter commit does too.
            self.commit_dead_letter(obj, replay).await?;
            tracing::info!("already dead-lettered with this code version; not sending again");
            return Ok(ObjectOutcome::AlreadyDeadLettered);
        }

        let mut ctx = ObjectContext {
            object: obj.clone(),
            input,
            lineage,
            store: self.rt.store.clone(),
            config: self.rt.config.clone(),
            deadline,
            metrics: self.rt.metrics.clone(),
            outputs: BTreeSet::new(),
            ledger: ledger.clone(),
        };
        let processed = match AssertUnwindSafe(self.stage.process(&mut ctx))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(panic) => Err(Error::Panic {
                location: obj.location(),
                message: crate::error::panic_message(panic.as_ref()),
            }),
        };
        let counts = match processed {
            Ok(c) => c,
            Err(e) => {
                // Whatever this attempt wrote is claimed: a retry writes the
                // same keys, a dead-letter commit removes them.
                return Err(e);
            }
        };
        if !counts.balanced() {
            return Err(Error::other(
                ErrorKind::Internal,
                format!(
                    "{}: counts do not balance: {} in != {} out + {} quarantined",
                    obj.location(),
                    counts.rows_in,
                    counts.rows_out,
                    counts.rows_quarantined
                ),
                None,
            ));
        }
        let duration = started.elapsed();
        let manifest = Manifest {
            stage: stage.to_string(),
            source: ctx.lineage.source.clone(),
            correlation_id: ctx.lineage.correlation_id.clone(),
            code_version: cfg.code_version.clone(),
            outputs: ctx.outputs.iter().cloned().collect(),
            counts,
            duration_ms: duration.as_millis() as u64,
            processed_at: Utc::now(),
            origin_time: ctx.lineage.origin_time,
            state: ManifestState::Committed,
            pending_cleanup: Vec::new(),
            clean: false,
            input_stage,
        };
        match self.commit(obj, &ledger, &ctx.lineage, manifest).await? {
            Committed::Won(manifest) => {
                let lag = ctx
                    .lineage
                    .origin_time
                    .and_then(|t| (Utc::now() - t).to_std().ok());
                ObjectProcessed {
                    stage,
                    counts,
                    duration,
                    lag,
                }
                .emit(metrics);
                Ok(ObjectOutcome::Processed {
                    counts,
                    manifest: Box::new(manifest),
                })
            }
            Committed::Duplicate => {
                AlreadyProcessed { stage }.emit(metrics);
                Ok(ObjectOutcome::AlreadyProcessed)
            }
            Committed::Lost { winner } => {
                let keep: BTreeSet<OutputRef> = winner
                    .as_ref()
                    .map(|m| m.outputs.iter().cloned().collect())
                    .unwrap_or_default();
                let mut removed = ledger.remove(ctx.outputs.iter().collect(), &keep).await?;
                let current = match self.current(obj).await? {
                    Some(now) => SourceIdentity::from_event(
                        &ObjectRef::new(&obj.bucket, &obj.key),
                        Some(&now),
                    ),
                    None => SourceIdentity::of_key(&obj.bucket, &obj.key),
                };
                removed += self
                    .sweep_own(&ledger, &ctx.lineage.source, &keep, &current)
                    .await?;
                stale(format!(
                    "{}: a newer version (or a removal) committed first; removed the {removed} output(s) this version wrote",
                    obj.location()
                ))
            }
        }
    }

    /// A stale version's (or generation's) cleanup: remove the outputs its
    /// own claims name, except those `keep` or the current manifest lists.
    /// A version with the content of `current` (the input now) shares its
    /// keys with every delivery of that content and generation, which may
    /// still commit: nothing is removed then, unless a later generation has
    /// committed over it.
    async fn sweep_own(
        &self,
        ledger: &Ledger,
        version: &SourceIdentity,
        keep: &BTreeSet<OutputRef>,
        current: &SourceIdentity,
    ) -> Result<usize> {
        let manifest = ledger.read(version).await?;
        if version.same_content(current) {
            let replaced = manifest.as_ref().is_some_and(|(m, _)| {
                m.source.same_content(version) && m.source.generation > version.generation
            });
            if !replaced {
                return Ok(0);
            }
        }
        let tag = version.claim_tag();
        let claims = ledger.claims(version).await?;
        let owned: Vec<&OutputRef> = claims
            .iter()
            .filter(|c| c.tag == tag)
            .map(|c| &c.output)
            .collect();
        if owned.is_empty() {
            return Ok(0);
        }
        // A duplicate of the committed version shares its keys: what the
        // manifest lists is the commit's, whichever delivery wrote it, and
        // only the commit that replaces it may remove it.
        let mut keep = keep.clone();
        if let Some((m, _)) = manifest {
            keep.extend(m.outputs);
        }
        ledger.remove(owned, &keep).await
    }

    /// A rebuild's commit is clean, but an attempt of an older generation of
    /// the same content may have written after that cleanup (it was in
    /// flight, then failed or crashed). No older generation can commit any
    /// more, so what they claimed is removed, except what the commit lists.
    /// Run by every delivery that finds the rebuild committed: the retry or
    /// redelivery of the late attempt is one of them.
    async fn sweep_older_generations(
        &self,
        ledger: &Ledger,
        committed: &Manifest,
        etag: &str,
    ) -> Result<usize> {
        let content = committed.source.content_tag();
        let claims = ledger.claims(&committed.source).await?;
        // Only if that commit is still the manifest once the claims are
        // listed: had another version committed since it was read (the same
        // bytes uploaded again after a different version, whose writes are
        // generation 0 again), a listed claim could be a live writer's.
        // Claims listed while the commit stands are of generations that
        // started before it and can never commit.
        let unchanged = ledger
            .read(&committed.source)
            .await?
            .is_some_and(|(_, now)| now == etag);
        if !unchanged {
            return Ok(0);
        }
        let older: Vec<&OutputRef> = claims
            .iter()
            .filter(|c| {
                let (tag, generation) = parse_claim_tag(&c.tag);
                tag == content && generation < committed.source.generation
            })
            .map(|c| &c.output)
            .collect();
        if older.is_empty() {
            return Ok(0);
        }
        let keep: BTreeSet<OutputRef> = committed.outputs.iter().cloned().collect();
        ledger.remove(older, &keep).await
    }

    /// The input is gone and this event's version never committed: nothing
    /// of that content can commit any more, whichever generation, so remove
    /// what any generation of it claimed (and, for a rebuild, what its own
    /// generation claimed), except what the current manifest lists.
    async fn sweep_gone(
        &self,
        ledger: &Ledger,
        event: &SourceIdentity,
        replay: Replay,
    ) -> Result<usize> {
        let known = event.etag.is_some() || event.version_id.is_some();
        let content = event.content_tag();
        let claims = ledger.claims(event).await?;
        let owned: Vec<&OutputRef> = claims
            .iter()
            .filter(|c| {
                let (tag, generation) = parse_claim_tag(&c.tag);
                (known && tag == content) || replay.reprocess == Some(generation)
            })
            .map(|c| &c.output)
            .collect();
        if owned.is_empty() {
            return Ok(0);
        }
        let keep: BTreeSet<OutputRef> = match ledger.read(event).await? {
            Some((m, _)) => m.outputs.into_iter().collect(),
            None => BTreeSet::new(),
        };
        ledger.remove(owned, &keep).await
    }

    /// Check the upstream commit of `input`: later stages act only on
    /// committed outputs.
    async fn upstream_commit(
        &self,
        obj: &ObjectRef,
        input: &ObjectMeta,
        upstream: &str,
    ) -> Result<UpstreamCommit> {
        let cfg = &self.rt.config;
        let Some(up_source) = SourceIdentity::from_metadata(&input.metadata) else {
            // Not written by a Sluice stage (a hand-placed file): nothing to wait for.
            return Ok(UpstreamCommit::Listed);
        };
        let up = Ledger::new(
            self.rt.store.clone(),
            &cfg.input.bucket,
            &cfg.input.prefix,
            upstream,
        );
        let me = OutputRef {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        };
        Ok(match up.read(&up_source).await? {
            Some((m, _))
                if m.state == ManifestState::Committed
                    && m.source.same_content(&up_source)
                    && m.outputs.contains(&me) =>
            {
                UpstreamCommit::Listed
            }
            Some((m, _))
                if m.source.same_content(&up_source) && m.state == ManifestState::Committed =>
            {
                UpstreamCommit::NotWanted(format!(
                    "{}: {upstream} committed its input without this output",
                    obj.location()
                ))
            }
            // Not committed yet (the upstream is still finishing, or this is
            // a losing version's output): the upstream's commit is an event
            // of its own, which delivers every output it lists.
            _ => UpstreamCommit::Pending(format!(
                "{}: not committed by {upstream} yet; its commit delivers it",
                obj.location()
            )),
        })
    }

    /// Where the upstream stage commits (`<input prefix>_sluice/manifests/<upstream>/`).
    pub fn upstream_commits(&self) -> Option<String> {
        let cfg = &self.rt.config;
        cfg.upstream
            .as_ref()
            .map(|u| format!("{}_sluice/manifests/{u}/", cfg.input.prefix))
    }

    /// An upstream manifest was written: process every output it commits
    /// (each with its own retries and dead-lettering). Boxed: it recurses
    /// into [`Runner::process_with_retries`].
    fn deliver_committed<'a>(
        &'a self,
        obj: &'a ObjectRef,
        deadline: Option<Instant>,
        replay: Replay,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ObjectOutcome>> + Send + 'a>>
    {
        Box::pin(async move {
            let cfg = &self.rt.config;
            let skip = |reason: String| Ok(self.skipped(reason));
            if obj.is_removal() {
                return skip(format!(
                    "{} (an upstream manifest) was removed",
                    obj.location()
                ));
            }
            let bytes = match self.rt.store.get_bytes(&obj.bucket, &obj.key).await {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return skip(format!("{} no longer exists", obj.location()))
                }
                Err(e) => return Err(e),
            };
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::other(
                    ErrorKind::InvalidInput,
                    format!("{}: unreadable upstream manifest", obj.location()),
                    Some(Box::new(e)),
                )
            })?;
            if manifest.state != ManifestState::Committed {
                return skip(format!(
                    "{}: the upstream commit holds no outputs ({:?})",
                    obj.location(),
                    manifest.state
                ));
            }
            let mut delivered = 0;
            let mut failed = None;
            for o in &manifest.outputs {
                let relative = o.key.strip_prefix(&cfg.input.prefix).unwrap_or(&o.key);
                if !cfg.input.contains(&o.bucket, &o.key)
                    || is_internal_key(relative)
                    || !self.stage.accepts(&o.key)
                {
                    continue;
                }
                let one = ObjectRef::new(&o.bucket, &o.key);
                let raw = trigger::s3_notification(std::slice::from_ref(&one));
                match self
                    .process_with_retries(&one, deadline, 1, None, &raw, replay)
                    .await
                {
                    ObjectOutcome::Failed(e) => failed = Some(e),
                    _ => delivered += 1,
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            skip(format!(
                "{}: delivered the {delivered} output(s) it commits",
                obj.location()
            ))
        })
    }

    /// Commit a finished version by compare-and-swap of its manifest.
    async fn commit(
        &self,
        obj: &ObjectRef,
        ledger: &Ledger,
        lineage: &Lineage,
        mut manifest: Manifest,
    ) -> Result<Committed> {
        const ROUNDS: usize = 5;
        let mut extra = Metadata::new();
        extra.insert(keys::DURATION_MS.into(), manifest.duration_ms.to_string());
        for _ in 0..ROUNDS {
            // Read, then check the input is still this version, then swap
            // against what was read: a version that stopped being current
            // before the swap always loses it.
            let existing = ledger.read(&lineage.source).await?;
            let still_current = self
                .current(obj)
                .await?
                .is_some_and(|now| lineage.source.etag.as_deref() == Some(now.etag.as_str()));
            if !still_current {
                return Ok(Committed::Lost {
                    winner: existing.map(|(m, _)| m),
                });
            }
            let expected = match &existing {
                Some((m, _))
                    if m.source.same_content(&lineage.source)
                        && m.source.generation > lineage.source.generation =>
                {
                    // A later rebuild of this version committed first.
                    return Ok(Committed::Lost {
                        winner: existing.map(|(m, _)| m),
                    });
                }
                Some((m, etag))
                    if m.state == ManifestState::Committed
                        && m.source.same_commit(&lineage.source) =>
                {
                    // A duplicate delivery of this version committed first
                    // (or this one did, and the answer was lost); its
                    // outputs are these outputs, its cleanup ours to finish.
                    if !m.clean {
                        self.finish_cleanup(ledger, lineage, m.clone(), etag.clone())
                            .await?;
                    }
                    return Ok(Committed::Duplicate);
                }
                Some((m, etag)) => {
                    let ours: BTreeSet<&OutputRef> = manifest.outputs.iter().collect();
                    manifest.pending_cleanup = m
                        .outputs
                        .iter()
                        .chain(&m.pending_cleanup)
                        .filter(|o| !ours.contains(o))
                        .cloned()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    Some(etag.clone())
                }
                None => {
                    manifest.pending_cleanup.clear();
                    None
                }
            };
            manifest.clean = false;
            match ledger
                .swap(&manifest, expected.as_deref(), lineage, &extra)
                .await?
            {
                Swap::Done(etag) => {
                    let manifest = self.finish_cleanup(ledger, lineage, manifest, etag).await?;
                    return Ok(Committed::Won(manifest));
                }
                Swap::Lost => continue,
            }
        }
        Err(Error::other(
            ErrorKind::Precondition,
            format!(
                "{}: lost {ROUNDS} commit races in a row; will try again",
                obj.location()
            ),
            None,
        ))
    }

    /// The winner's cleanup: remove what the replaced manifest listed and
    /// every output claimed by another version, then mark the manifest
    /// clean. Claims are listed *before* checking that this version is still
    /// current, so every claim listed belongs to a version that landed
    /// before it: an older one.
    async fn finish_cleanup(
        &self,
        ledger: &Ledger,
        lineage: &Lineage,
        mut manifest: Manifest,
        etag: String,
    ) -> Result<Manifest> {
        let keep: BTreeSet<OutputRef> = manifest.outputs.iter().cloned().collect();
        let claims = ledger.claims(&lineage.source).await?;
        let source = &manifest.source;
        let still_current = match manifest.state {
            // A retraction owns everything of every version of its input.
            ManifestState::Retracted => true,
            _ => match self.rt.store.head(&source.bucket, &source.key).await? {
                Some(now) => source.etag.as_deref() == Some(now.etag.as_str()),
                // Deleted: the commit stands (invariant 5) and no newer
                // version will replace it, so the cleanup stays ours as
                // long as the manifest is still this one. A version that
                // landed after it and was deleted before committing cannot
                // commit any more: what it claimed is removable.
                None => ledger
                    .read(source)
                    .await?
                    .is_some_and(|(_, now)| now == etag),
            },
        };
        if !still_current {
            // A newer version has landed; its commit owes the cleanup now.
            return Ok(manifest);
        }
        ledger
            .remove(manifest.pending_cleanup.iter().collect(), &keep)
            .await?;
        // A later rebuild of this same version may be writing now: its
        // outputs are its own (it cleans up after this one when it commits).
        // A retraction owns them too: its input is gone.
        let own_content = source.content_tag();
        let retracted = manifest.state == ManifestState::Retracted;
        let claims: Vec<Claim> = claims
            .into_iter()
            .filter(|c| {
                let (content, generation) = parse_claim_tag(&c.tag);
                retracted || content != own_content || generation <= source.generation
            })
            .collect();
        let claimed: Vec<&OutputRef> = claims.iter().map(|c| &c.output).collect();
        ledger.remove(claimed, &keep).await?;
        ledger.drop_claims(&claims, &keep).await?;
        manifest.pending_cleanup.clear();
        manifest.clean = true;
        let mut extra = Metadata::new();
        extra.insert(keys::DURATION_MS.into(), manifest.duration_ms.to_string());
        // If someone replaced the manifest meanwhile, they own the cleanup.
        let _ = ledger.swap(&manifest, Some(&etag), lineage, &extra).await?;
        Ok(manifest)
    }

    /// The current version failed permanently (its envelope is in the DLQ):
    /// commit that, so nothing an older version produced outlives it.
    async fn commit_dead_letter(&self, obj: &ObjectRef, replay: Replay) -> Result<()> {
        let cfg = &self.rt.config;
        let Some(now) = self.current(obj).await? else {
            // Gone (often the cause: deleted mid-read): nothing can commit
            // this version any more, so what it wrote is removed.
            let event = SourceIdentity::from_event(obj, None);
            if event.etag.is_some() || event.version_id.is_some() || replay.reprocess.is_some() {
                self.sweep_gone(&self.ledger(), &event, replay).await?;
            }
            return Ok(());
        };
        let event = SourceIdentity::from_event(obj, None);
        let mut source =
            SourceIdentity::from_event(&ObjectRef::new(&obj.bucket, &obj.key), Some(&now));
        if (event.etag.is_some() || event.version_id.is_some()) && !event.same_content(&source) {
            return Ok(());
        }
        let ledger = self.ledger();
        // The generation that failed: a rebuild's own, else the one
        // committed for this content. Its cleanup then also removes what a
        // failed rebuild wrote.
        let committed = ledger
            .read(&source)
            .await?
            .filter(|(m, _)| m.source.same_content(&source))
            .map(|(m, _)| m.source.generation);
        source.generation = replay.reprocess.or(committed).unwrap_or(0);
        let lineage = Lineage::for_input(
            source.clone(),
            Some(&now.metadata),
            obj.event_time,
            self.stage.name(),
            &cfg.code_version,
        );
        let manifest = Manifest {
            stage: self.stage.name().to_string(),
            source,
            correlation_id: lineage.correlation_id.clone(),
            code_version: cfg.code_version.clone(),
            outputs: Vec::new(),
            counts: Counts::default(),
            duration_ms: 0,
            processed_at: Utc::now(),
            origin_time: lineage.origin_time,
            state: ManifestState::DeadLettered,
            pending_cleanup: Vec::new(),
            clean: false,
            input_stage: now.metadata.get(keys::STAGE).cloned(),
        };
        self.swap_state(obj, &ledger, &lineage, manifest).await
    }

    /// Swap in a dead-letter or retraction manifest, carrying over what the
    /// replaced one owes, then clean up.
    async fn swap_state(
        &self,
        obj: &ObjectRef,
        ledger: &Ledger,
        lineage: &Lineage,
        mut manifest: Manifest,
    ) -> Result<()> {
        const ROUNDS: usize = 5;
        for _ in 0..ROUNDS {
            let existing = ledger.read(&lineage.source).await?;
            let expected = match &existing {
                Some((m, etag)) => {
                    if m.state == manifest.state
                        && m.source.same_content(&manifest.source)
                        && m.source.generation >= manifest.source.generation
                    {
                        if !m.clean {
                            self.finish_cleanup(ledger, lineage, m.clone(), etag.clone())
                                .await?;
                        }
                        return Ok(());
                    }
                    manifest.pending_cleanup = m
                        .outputs
                        .iter()
                        .chain(&m.pending_cleanup)
                        .cloned()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    Some(etag.clone())
                }
                None => None,
            };
            if manifest.state == ManifestState::DeadLettered {
                let still_current = self
                    .current(obj)
                    .await?
                    .is_some_and(|now| manifest.source.etag.as_deref() == Some(now.etag.as_str()));
                if !still_current {
                    return Ok(());
                }
            }
            match ledger
                .swap(&manifest, expected.as_deref(), lineage, &Metadata::new())
                .await?
            {
                Swap::Done(etag) => {
                    self.finish_cleanup(ledger, lineage, manifest, etag).await?;
                    return Ok(());
                }
                Swap::Lost => continue,
            }
        }
        Err(Error::other(
            ErrorKind::Precondition,
            format!("{}: lost {ROUNDS} commit races in a row", obj.location()),
            None,
        ))
    }

    /// A removal event. For a stage with an upstream, the upstream removed
    /// this input (a newer version replaced it, or a retraction): retract
    /// everything derived from it. A landed object's removal retracts nothing.
    async fn process_removal(&self, obj: &ObjectRef, ledger: &Ledger) -> Result<ObjectOutcome> {
        if self.rt.config.upstream.is_none() {
            return Ok(self.skipped(format!(
                "{} was removed; what was derived from it is kept (`sluice retract` removes it)",
                obj.location()
            )));
        }
        if self.current(obj).await?.is_some() {
            return Ok(self.stale(format!("{} exists again since its removal", obj.location())));
        }
        let removed = self.retract(obj, ledger).await?;
        tracing::info!(removed, "retracted what was derived from a removed input");
        Ok(ObjectOutcome::Retracted(removed))
    }

    /// Retract an input key: a `retracted` tombstone replaces its manifest,
    /// then every output any version derived from it is removed.
    async fn retract(&self, obj: &ObjectRef, ledger: &Ledger) -> Result<usize> {
        let cfg = &self.rt.config;
        let key_only = SourceIdentity::of_key(&obj.bucket, &obj.key);
        let before = ledger.read(&key_only).await?;
        let owed = before
            .as_ref()
            .map(|(m, _)| m.outputs.len() + m.pending_cleanup.len())
            .unwrap_or(0);
        let source = before
            .as_ref()
            .map(|(m, _)| m.source.clone())
            .unwrap_or(key_only);
        let lineage = Lineage::for_input(
            source.clone(),
            None,
            None,
            self.stage.name(),
            &cfg.code_version,
        );
        let claims = ledger.claims(&source).await?.len();
        let manifest = Manifest {
            stage: self.stage.name().to_string(),
            source,
            correlation_id: lineage.correlation_id.clone(),
            code_version: cfg.code_version.clone(),
            outputs: Vec::new(),
            counts: Counts::default(),
            duration_ms: 0,
            processed_at: Utc::now(),
            origin_time: None,
            state: ManifestState::Retracted,
            pending_cleanup: Vec::new(),
            clean: false,
            input_stage: before.as_ref().and_then(|(m, _)| m.input_stage.clone()),
        };
        self.swap_state(obj, ledger, &lineage, manifest).await?;
        Ok(owed.max(claims))
    }

    /// `sluice retract`: remove everything this stage derived from an input
    /// key, whatever its versions, and record it as a `retracted` manifest.
    /// The removals reach the next stage as deletions, which retracts in
    /// turn. Idempotent. A later event for the same content is skipped
    /// (a new upload, or a redrive, processes it again). Returns how many
    /// outputs were owed.
    pub async fn retract_key(&self, bucket: &str, key: &str) -> Result<usize> {
        let obj = ObjectRef::removal(bucket, key);
        self.retract(&obj, &self.ledger()).await
    }

    /// Answer a Lambda invocation: a batch response for SQS; for a direct
    /// invocation, an error when something is left to retry (so Lambda
    /// retries it), else a summary.
    pub async fn handle_lambda(&self, payload: Value, deadline: Option<Instant>) -> Result<Value> {
        let report = self.handle(&payload, deadline).await?;
        if report.is_sqs_batch {
            if !report.failed_message_ids.is_empty() {
                tracing::warn!(
                    messages = ?report.failed_message_ids,
                    "giving messages back to the queue (batch item failures); they return after its visibility timeout"
                );
            }
            let failures: Vec<Value> = report
                .failed_message_ids
                .iter()
                .map(|id| serde_json::json!({"itemIdentifier": id}))
                .collect();
            return Ok(serde_json::json!({"batchItemFailures": failures}));
        }
        if let Some(err) = report.first_failure() {
            return Err(Error::other(err.kind(), err.to_string(), None));
        }
        // A direct invocation has no message to give back: failing it makes
        // Lambda retry the event, and what was done is then already processed.
        if report.deferred() > 0 {
            return Err(Error::other(
                ErrorKind::Transient,
                format!(
                    "deferred {} objects: too little time left before the deadline",
                    report.deferred()
                ),
                None,
            ));
        }
        Ok(report.summary())
    }
}

/// Tell Lambda why initialisation failed (`POST /runtime/init/error`), so
/// the invoke error and the console name the reason, not just "Runtime exited".
async fn report_init_error(e: &Error) {
    let diagnostic = lambda_runtime::Diagnostic {
        error_type: "Sluice.InitError".into(),
        error_message: e.to_string(),
    };
    let sent = async {
        let client = lambda_runtime_api_client::Client::builder().build()?;
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Sluice.InitError")
            .header("content-type", "application/json")
            .body(lambda_runtime_api_client::body::Body::from(
                serde_json::to_vec(&diagnostic)?,
            ))?;
        client.call(req).await?;
        Ok::<_, lambda_runtime::Error>(())
    };
    if let Err(err) = sent.await {
        tracing::warn!(error = %err, "could not report the init error to the Runtime API");
    }
}

/// Convert the Lambda context deadline (epoch ms) into an `Instant`.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Run a stage as a Lambda function: JSON logs, configuration validated once
/// (a bad configuration fails the cold start with a clear message), clients
/// built once, then the runtime loop. This is all a stage's `main` calls.
pub async fn run_lambda<S: Stage>(stage: S) -> std::result::Result<(), lambda_runtime::Error> {
    crate::telemetry::init_logging(crate::telemetry::LogFormat::Json, "info");
    let started = async {
        let config = Config::from_env(stage.name())?;
        Runtime::from_config(config).await
    };
    let runtime = match started.await {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "refusing to start");
            report_init_error(&e).await;
            return Err(e.into());
        }
    };
    let runner = Arc::new(Runner::new(runtime, stage));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let runner = runner.clone();
            async move {
                let deadline = deadline_from_epoch_ms(event.context.deadline);
                runner.handle_lambda(event.payload, Some(deadline)).await
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pace_starts_an_object_only_with_twice_the_estimate_left() {
        let defer = |left: u64, need: u64| Pacing::Defer {
            left: ms(left),
            need: ms(need),
        };
        // (left before the deadline, estimate, started one already) -> decision
        let table: &[(Option<u64>, Option<u64>, bool, Pacing)] = &[
            // No deadline (CLI, tests): always start.
            (None, Some(60_000), true, Pacing::Start),
            (None, None, false, Pacing::Start),
            // Nothing measured yet: only the floor applies.
            (Some(1_000), None, true, Pacing::Start),
            (Some(999), None, true, defer(999, 1_000)),
            // need = 2 x estimate, at the boundary and either side.
            (Some(4_000), Some(2_000), true, Pacing::Start),
            (Some(3_999), Some(2_000), true, defer(3_999, 4_000)),
            (Some(30_000), Some(2_000), true, Pacing::Start),
            // A fast estimate still wants the floor.
            (Some(999), Some(10), true, defer(999, 1_000)),
            (Some(1_000), Some(10), true, Pacing::Start),
            (Some(0), Some(10), true, defer(0, 1_000)),
            // The first object of an invocation needs only the floor, even
            // with an estimate above half the time left.
            (Some(20_000), Some(15_000), false, Pacing::Start),
            (Some(20_000), Some(15_000), true, defer(20_000, 30_000)),
            (Some(999), Some(15_000), false, defer(999, 1_000)),
            (Some(0), None, false, defer(0, 1_000)),
        ];
        for &(left, estimate, started_any, want) in table {
            assert_eq!(
                pace(left.map(ms), estimate.map(ms), started_any),
                want,
                "left {left:?} ms, estimate {estimate:?} ms, started_any {started_any}"
            );
        }
    }

    #[test]
    fn object_pace_follows_peaks_at_once_and_recoveries_slowly() {
        let mut p = ObjectPace::default();
        assert_eq!(p.estimate(), None);
        let mut seen = Vec::new();
        for took in [400, 2_000, 400, 400, 400, 3_000, 0] {
            p.observe(ms(took));
            seen.push(p.estimate().map(|e| e.as_millis()));
        }
        assert_eq!(
            seen,
            [400, 2_000, 1_600, 1_300, 1_075, 3_000, 2_250].map(Some),
            "up to a slower object at once, a quarter of the way down to a faster one"
        );
        // Durations measured in whole seconds or nanoseconds: no overflow.
        p.observe(Duration::MAX);
        p.observe(Duration::ZERO);
        assert!(p
            .estimate()
            .is_some_and(|e| e > Duration::from_secs(1 << 40)));
    }

    #[test]
    fn only_real_work_measures_the_pace() {
        let err = || Error::other(ErrorKind::Transient, "503", None);
        assert!(ObjectPace::measures(&ObjectOutcome::Failed(err())));
        assert!(ObjectPace::measures(&ObjectOutcome::DeadLettered(err())));
        for cheap in [
            ObjectOutcome::AlreadyProcessed,
            ObjectOutcome::AlreadyDeadLettered,
            ObjectOutcome::Stale("older".into()),
            ObjectOutcome::Skipped("not ours".into()),
            ObjectOutcome::Deferred {
                left: ms(1),
                need: ms(2),
            },
        ] {
            assert!(!ObjectPace::measures(&cheap), "{cheap:?}");
        }
    }
}
