//! The stage runner: the glue between an invocation (Lambda, the CLI, tests)
//! and a [`Stage`]. It decodes the event, opens one span per object, skips
//! work already done (per-input manifest), runs the stage with panics caught,
//! checks that counts balance, writes the manifest idempotently, retries
//! transient failures, dead-letters permanent ones, and answers SQS batches
//! with partial batch failures.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::config::{Config, Sink, StoreKind};
use crate::dlq::{DeadLetterSink, Envelope, FileDeadLetter, SqsDeadLetter};
use crate::error::{disposition, Disposition, Error, ErrorKind, Result};
use crate::idempotent::{self, Plan, Skip, StreamedOutput, WriteOutcome};
use crate::lineage::{keys, Lineage, SourceIdentity};
use crate::retry::retry;
use crate::store::{
    GetResult, LocalStore, Metadata, ObjectMeta, ObjectStore, ObjectStoreExt, S3Store,
};
use crate::telemetry::{
    AlreadyProcessed, Counts, EmfStdout, EventSkipped, MetricsSink, NoMetrics, ObjectDeadLettered,
    ObjectFailed, ObjectProcessed, RetryScheduled, StaleEventIgnored,
};
use crate::trigger::{self, ObjectRef};

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
    /// Build clients and sinks for a configuration. AWS configuration is
    /// loaded only if something actually uses AWS.
    pub async fn from_config(config: Config) -> Result<Self> {
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
            (Sink::Aws(url), Some(sdk)) => {
                Arc::new(SqsDeadLetter::new(crate::aws::sqs_client(sdk), url))
            }
            (Sink::Aws(_), None) => unreachable!("needs_aws is true for an SQS DLQ"),
        };
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

/// Keys with a path segment starting with `_` (`_sluice/`, `_quarantine/`)
/// are bookkeeping, never stage input.
pub fn is_internal_key(key: &str) -> bool {
    key.split('/').any(|seg| seg.starts_with('_'))
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

    fn claim(&mut self, bucket: &str, key: &str) {
        self.outputs.insert(OutputRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
        });
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
        self.claim(bucket, key);
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
        self.claim(bucket, key);
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
}

/// Runs one stage.
pub struct Runner<S> {
    stage: S,
    rt: Runtime,
}

impl<S: Stage> Runner<S> {
    /// A runner for `stage` with these clients.
    pub fn new(rt: Runtime, stage: S) -> Self {
        Runner { stage, rt }
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
        self.handle_with(payload, deadline, false).await
    }

    /// Handle a payload as an explicit redrive (`sluice replay`): input
    /// versions already dead-lettered with this code version are tried again.
    pub async fn handle_redrive(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
    ) -> Result<InvocationReport> {
        self.handle_with(payload, deadline, true).await
    }

    async fn handle_with(
        &self,
        payload: &Value,
        deadline: Option<Instant>,
        redrive: bool,
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
        for delivery in decoded.deliveries {
            for reason in &delivery.skipped {
                EventSkipped {
                    stage: &stage,
                    reason,
                }
                .emit(self.rt.metrics.as_ref());
            }
            let mut delivery_failed = false;
            match delivery.objects {
                Err(err) => {
                    match self
                        .dead_letter(
                            None,
                            &err,
                            delivery.receive_count,
                            delivery.first_seen,
                            None,
                            delivery.raw.clone(),
                        )
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
                Ok(objects) => {
                    for obj in objects {
                        let outcome = self
                            .process_with_retries(
                                &obj,
                                deadline,
                                delivery.receive_count,
                                delivery.first_seen,
                                &delivery.raw,
                                redrive || delivery.redrive,
                            )
                            .await;
                        delivery_failed |= matches!(outcome, ObjectOutcome::Failed(_));
                        report.outcomes.push((Some(obj), outcome));
                    }
                }
            }
            if delivery_failed {
                if let Some(id) = delivery.message_id {
                    report.failed_message_ids.push(id);
                }
            }
        }
        Ok(report)
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
        redrive: bool,
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
                |_| self.process_once(obj, deadline, redrive),
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
                                    ObjectOutcome::DeadLettered(err)
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

    /// One attempt at one object.
    async fn process_once(
        &self,
        obj: &ObjectRef,
        deadline: Option<Instant>,
        redrive: bool,
    ) -> Result<ObjectOutcome> {
        let cfg = &self.rt.config;
        let stage = self.stage.name();
        let metrics = self.rt.metrics.as_ref();
        let skip = |reason: String| {
            EventSkipped {
                stage,
                reason: &reason,
            }
            .emit(metrics);
            Ok(ObjectOutcome::Skipped(reason))
        };
        if !cfg.input.contains(&obj.bucket, &obj.key) {
            return skip(format!(
                "{} is outside this stage's input {}",
                obj.location(),
                cfg.input
            ));
        }
        if is_internal_key(&obj.key) {
            return skip(format!("{} is bookkeeping, not data", obj.location()));
        }
        if !self.stage.accepts(&obj.key) {
            return skip(format!(
                "{} is not an input {stage} accepts",
                obj.location()
            ));
        }
        let started = Instant::now();
        let input = self
            .rt
            .store
            .head(&obj.bucket, &obj.key)
            .await?
            .ok_or_else(|| Error::Storage {
                op: "head",
                location: obj.location(),
                kind: ErrorKind::NotFound,
                message: "the object in the event no longer exists".into(),
                source: None,
            })?;
        let changed = match (&obj.version_id, &input.version_id) {
            (Some(event), Some(now)) if event != now => Some(format!("version {event}, now {now}")),
            _ => obj
                .etag
                .as_ref()
                .filter(|etag| **etag != input.etag)
                .map(|etag| format!("etag {etag}, now {}", input.etag)),
        };
        if let Some(change) = changed {
            let reason = format!("{} has changed since this event ({change})", obj.location());
            StaleEventIgnored {
                stage,
                reason: &reason,
            }
            .emit(metrics);
            return Ok(ObjectOutcome::Stale(reason));
        }
        let source = SourceIdentity::from_event(obj, Some(&input));
        let lineage = Lineage::for_input(
            source,
            Some(&input.metadata),
            obj.event_time,
            stage,
            &cfg.code_version,
        );
        tracing::Span::current().record("correlation_id", lineage.correlation_id.as_str());

        // The manifest is the commit point: if it is there for this version, so is everything else.
        let mkey = manifest_key(cfg, &lineage.source);
        let previous = match idempotent::plan(
            self.rt.store.as_ref(),
            &cfg.output.bucket,
            &mkey,
            &lineage.source,
        )
        .await?
        {
            Plan::Skip(Skip::AlreadyProcessed) => {
                AlreadyProcessed { stage }.emit(metrics);
                return Ok(ObjectOutcome::AlreadyProcessed);
            }
            Plan::Skip(Skip::Superseded) => {
                let reason = "a newer version of this input has already been processed".to_string();
                StaleEventIgnored {
                    stage,
                    reason: &reason,
                }
                .emit(metrics);
                return Ok(ObjectOutcome::Stale(reason));
            }
            Plan::Write(crate::store::PutMode::Update { .. }) => self.read_manifest(&mkey).await,
            Plan::Write(_) => None,
        };
        if !redrive && self.already_dead_lettered(&lineage.source).await {
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
        };
        let counts = match AssertUnwindSafe(self.stage.process(&mut ctx))
            .catch_unwind()
            .await
        {
            Ok(r) => r?,
            Err(panic) => {
                return Err(Error::Panic {
                    location: obj.location(),
                    message: crate::error::panic_message(panic.as_ref()),
                });
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
        };
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "cannot encode manifest",
                Some(Box::new(e)),
            )
        })?;
        let mut extra = Metadata::new();
        extra.insert(keys::DURATION_MS.into(), manifest.duration_ms.to_string());
        idempotent::write_bytes(
            self.rt.store.as_ref(),
            &cfg.output.bucket,
            &mkey,
            body.into(),
            &ctx.lineage,
            &extra,
            Some("application/json"),
        )
        .await?;
        // Outputs of the replaced version that this version did not produce
        // (a partition that no longer occurs, say) would be stale: remove them.
        if let Some(prev) = previous {
            for old in prev.outputs.iter().filter(|o| !ctx.outputs.contains(*o)) {
                self.rt.store.delete(&old.bucket, &old.key).await?;
            }
        }
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

    async fn read_manifest(&self, key: &str) -> Option<Manifest> {
        let bytes = self
            .rt
            .store
            .get_bytes(&self.rt.config.output.bucket, key)
            .await
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Answer a Lambda invocation: a batch response for SQS; for a direct
    /// invocation, an error when something is left to retry (so Lambda
    /// retries it), else a summary.
    pub async fn handle_lambda(&self, payload: Value, deadline: Option<Instant>) -> Result<Value> {
        let report = self.handle(&payload, deadline).await?;
        if report.is_sqs_batch {
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
