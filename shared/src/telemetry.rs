//! Telemetry: JSON logs compatible with Lambda's JSON log format, CloudWatch
//! Embedded Metric Format (EMF) on stdout, and named outcome events whose one
//! `emit()` both logs and counts, so logs and metrics never drift apart.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::error::{Error, ErrorKind};

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line on stdout (Lambda).
    Json,
    /// Compact human-readable lines on stderr (CLI).
    Human,
}

/// Install the global subscriber. The level comes from `RUST_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `default_level`. Safe to call twice.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| l.to_lowercase())
        .unwrap_or_else(|_| default_level.to_string());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(std::io::stdout)
            .try_init(),
        LogFormat::Human => tracing_subscriber::fmt()
            .compact()
            .with_env_filter(filter)
            .with_target(false)
            .with_writer(std::io::stderr)
            .try_init(),
    };
}

/// Units CloudWatch understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name, e.g. `RowsIn`.
    pub name: &'static str,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: Unit,
}

impl Metric {
    /// Shorthand constructor.
    pub fn new(name: &'static str, value: f64, unit: Unit) -> Self {
        Metric { name, value, unit }
    }
}

/// Where metrics go.
pub trait MetricsSink: Send + Sync + Debug {
    /// Record metrics for a stage.
    fn record(&self, stage: &str, metrics: &[Metric]);
}

/// CloudWatch EMF on stdout: one JSON line per record, under namespace
/// `Sluice` with dimension `Stage`.
#[derive(Debug, Clone)]
pub struct EmfStdout {
    namespace: String,
}

impl EmfStdout {
    /// A sink using `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        EmfStdout {
            namespace: namespace.into(),
        }
    }

    /// Render one EMF document.
    pub fn render(&self, stage: &str, metrics: &[Metric], timestamp_ms: i64) -> serde_json::Value {
        let defs: Vec<_> = metrics
            .iter()
            .map(|m| serde_json::json!({"Name": m.name, "Unit": m.unit.as_str()}))
            .collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Stage"]],
                    "Metrics": defs,
                }]
            },
            "Stage": stage,
        });
        if let Some(obj) = doc.as_object_mut() {
            for m in metrics {
                obj.insert(m.name.to_string(), serde_json::json!(m.value));
            }
        }
        doc
    }
}

impl MetricsSink for EmfStdout {
    fn record(&self, stage: &str, metrics: &[Metric]) {
        if metrics.is_empty() {
            return;
        }
        let doc = self.render(stage, metrics, chrono::Utc::now().timestamp_millis());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{doc}");
    }
}

/// Discard metrics.
#[derive(Debug, Clone, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn record(&self, _: &str, _: &[Metric]) {}
}

/// Sum metrics in memory: used by tests and by the local runner's summary.
#[derive(Debug, Clone, Default)]
pub struct RecordingMetrics {
    totals: Arc<Mutex<BTreeMap<(String, &'static str), f64>>>,
}

impl RecordingMetrics {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sum of a metric for a stage.
    pub fn total(&self, stage: &str, name: &str) -> f64 {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((s, n), _)| s == stage && *n == name)
            .map(|(_, v)| *v)
            .sum()
    }
}

impl MetricsSink for RecordingMetrics {
    fn record(&self, stage: &str, metrics: &[Metric]) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for m in metrics {
            *t.entry((stage.to_string(), m.name)).or_default() += m.value;
        }
    }
}

/// Row and byte counts of one processed object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Rows read.
    pub rows_in: u64,
    /// Rows written onward.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

impl Counts {
    /// Whether rows in = rows out + rows quarantined.
    pub fn balanced(&self) -> bool {
        self.rows_in == self.rows_out + self.rows_quarantined
    }
}

/// An object was processed and its outputs written.
#[derive(Debug)]
pub struct ObjectProcessed<'a> {
    /// Stage.
    pub stage: &'a str,
    /// Counts.
    pub counts: Counts,
    /// Time spent in this stage.
    pub duration: Duration,
    /// Now minus the first producer event time.
    pub lag: Option<Duration>,
}

impl ObjectProcessed<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        let c = &self.counts;
        tracing::info!(
            rows_in = c.rows_in,
            rows_out = c.rows_out,
            rows_quarantined = c.rows_quarantined,
            bytes_in = c.bytes_in,
            bytes_out = c.bytes_out,
            duration_ms = self.duration.as_millis() as u64,
            lag_ms = self.lag.map(|l| l.as_millis() as u64),
            "object processed"
        );
        if c.rows_quarantined > 0 {
            tracing::warn!(rows_quarantined = c.rows_quarantined, "rows quarantined");
        }
        let mut m = vec![
            Metric::new("ObjectsProcessed", 1.0, Unit::Count),
            Metric::new("RowsIn", c.rows_in as f64, Unit::Count),
            Metric::new("RowsOut", c.rows_out as f64, Unit::Count),
            Metric::new("RowsQuarantined", c.rows_quarantined as f64, Unit::Count),
            Metric::new("BytesIn", c.bytes_in as f64, Unit::Bytes),
            Metric::new("BytesOut", c.bytes_out as f64, Unit::Bytes),
            Metric::new(
                "Duration",
                self.duration.as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            ),
        ];
        if let Some(lag) = self.lag {
            m.push(Metric::new(
                "Lag",
                lag.as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            ));
        }
        metrics.record(self.stage, &m);
    }
}

/// A duplicate delivery: the outputs already exist for this input version.
#[derive(Debug)]
pub struct AlreadyProcessed<'a> {
    /// Stage.
    pub stage: &'a str,
}

impl AlreadyProcessed<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::info!("already processed");
        metrics.record(
            self.stage,
            &[Metric::new("AlreadyProcessed", 1.0, Unit::Count)],
        );
    }
}

/// A late event for an input version older than the one already processed.
#[derive(Debug)]
pub struct StaleEventIgnored<'a> {
    /// Stage.
    pub stage: &'a str,
    /// Why it is stale.
    pub reason: &'a str,
}

impl StaleEventIgnored<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::info!(reason = self.reason, "stale event ignored");
        metrics.record(self.stage, &[Metric::new("StaleEvents", 1.0, Unit::Count)]);
    }
}

/// An event that was recognised and deliberately not processed.
#[derive(Debug)]
pub struct EventSkipped<'a> {
    /// Stage.
    pub stage: &'a str,
    /// Why.
    pub reason: &'a str,
}

impl EventSkipped<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::info!(reason = self.reason, "event skipped");
        metrics.record(
            self.stage,
            &[Metric::new("EventsSkipped", 1.0, Unit::Count)],
        );
    }
}

/// A retryable failure; the operation will be tried again after `delay`.
#[derive(Debug)]
pub struct RetryScheduled<'a> {
    /// Stage.
    pub stage: &'a str,
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Sleep before the next attempt.
    pub delay: Duration,
    /// The failure.
    pub error: &'a Error,
}

impl RetryScheduled<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::warn!(
            attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64,
            error_kind = %self.error.kind(),
            error = %self.error,
            "retrying after a transient failure"
        );
        metrics.record(self.stage, &[Metric::new("Retries", 1.0, Unit::Count)]);
    }
}

/// A permanent failure, sent to the DLQ. Logged at ERROR: data is held back.
#[derive(Debug)]
pub struct ObjectDeadLettered<'a> {
    /// Stage.
    pub stage: &'a str,
    /// The failure.
    pub error: &'a Error,
    /// Attempts made.
    pub attempts: u32,
}

impl ObjectDeadLettered<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::error!(
            error_kind = %self.error.kind(),
            error = %self.error,
            attempts = self.attempts,
            "sent to dead-letter queue"
        );
        metrics.record(self.stage, &[Metric::new("DeadLettered", 1.0, Unit::Count)]);
    }
}

/// A failure left for the queue to redeliver (retries exhausted in process).
#[derive(Debug)]
pub struct ObjectFailed<'a> {
    /// Stage.
    pub stage: &'a str,
    /// The failure.
    pub error: &'a Error,
    /// Attempts made in this invocation.
    pub attempts: u32,
}

impl ObjectFailed<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        let level_is_error = self.error.kind() != ErrorKind::Transient;
        if level_is_error {
            tracing::error!(error_kind = %self.error.kind(), error = %self.error, attempts = self.attempts, "object failed; left for redelivery");
        } else {
            tracing::warn!(error_kind = %self.error.kind(), error = %self.error, attempts = self.attempts, "object failed; left for redelivery");
        }
        metrics.record(self.stage, &[Metric::new("Failures", 1.0, Unit::Count)]);
    }
}

/// Objects of a batch left unstarted because the invocation's deadline is
/// too close to finish another one: their messages go back to the queue
/// unprocessed. Not a failure (nothing was attempted), so WARN, not ERROR.
#[derive(Debug)]
pub struct ObjectsDeferred<'a> {
    /// Stage.
    pub stage: &'a str,
    /// Objects not started (an undecodable delivery counts as one).
    pub objects: usize,
    /// SQS messages reported back as batch item failures for them.
    pub messages: usize,
    /// SQS messages sent back to the stage's queue as new messages instead
    /// (`SLUICE_QUEUE`), so the deferral used up none of their receives.
    pub requeued: usize,
    /// Time left before the deadline when the runner stopped starting objects.
    pub left: Duration,
    /// Time it wanted left to start one more.
    pub need: Duration,
    /// The per-object estimate `need` came from, if one was measured yet.
    pub estimate: Option<Duration>,
}

impl ObjectsDeferred<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        let left_ms = self.left.as_millis() as u64;
        let need_ms = self.need.as_millis() as u64;
        tracing::warn!(
            objects_deferred = self.objects,
            messages_deferred = self.messages,
            messages_requeued = self.requeued,
            deadline_in_ms = left_ms,
            need_ms,
            estimate_ms = self.estimate.map(|e| e.as_millis() as u64),
            "deferred {} objects: deadline in {left_ms} ms, need ~{need_ms} ms",
            self.objects
        );
        metrics.record(
            self.stage,
            &[Metric::new(
                "ObjectsDeferred",
                self.objects as f64,
                Unit::Count,
            )],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_shape() {
        let doc = EmfStdout::new("Sluice").render(
            "ingest",
            &[
                Metric::new("RowsIn", 10.0, Unit::Count),
                Metric::new("Duration", 5.5, Unit::Milliseconds),
            ],
            1_700_000_000_000,
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Sluice");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Stage"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Milliseconds"
        );
        assert_eq!(doc["Stage"], "ingest");
        assert_eq!(doc["RowsIn"], 10.0);
    }

    #[test]
    fn outcome_events_count_what_they_log() {
        let m = RecordingMetrics::new();
        let counts = Counts {
            rows_in: 10,
            rows_out: 8,
            rows_quarantined: 2,
            bytes_in: 100,
            bytes_out: 50,
        };
        assert!(counts.balanced());
        ObjectProcessed {
            stage: "ingest",
            counts,
            duration: Duration::from_millis(3),
            lag: None,
        }
        .emit(&m);
        AlreadyProcessed { stage: "ingest" }.emit(&m);
        ObjectsDeferred {
            stage: "ingest",
            objects: 3,
            messages: 2,
            requeued: 0,
            left: Duration::from_millis(900),
            need: Duration::from_secs(2),
            estimate: Some(Duration::from_secs(1)),
        }
        .emit(&m);
        assert_eq!(m.total("ingest", "ObjectsDeferred"), 3.0);
        assert_eq!(m.total("ingest", "Failures"), 0.0, "deferred is not failed");
        assert_eq!(m.total("ingest", "RowsIn"), 10.0);
        assert_eq!(m.total("ingest", "RowsQuarantined"), 2.0);
        assert_eq!(m.total("ingest", "AlreadyProcessed"), 1.0);
        assert_eq!(m.total("curate", "RowsIn"), 0.0);
    }
}
