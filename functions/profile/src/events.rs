//! Named outcome events of the profile stage, in the style of
//! `sluice::telemetry`: one `emit()` both logs (with the values as fields)
//! and records EMF metrics, so the two never drift apart.

use sluice::telemetry::{Metric, MetricsSink, Unit};

use crate::alerts::Alert;
use crate::report::{Check, CheckStatus};

/// The quality checks of one profile were evaluated.
#[derive(Debug)]
pub struct QualityChecked<'a> {
    /// Stage.
    pub stage: &'a str,
    /// Dataset.
    pub dataset: &'a str,
    /// Partition.
    pub partition: Option<&'a str>,
    /// Rows profiled.
    pub row_count: u64,
    /// The checks.
    pub checks: &'a [Check],
}

impl QualityChecked<'_> {
    /// Log every check and count passes, breaches and skips.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        let mut tally = [0u64; 3];
        for c in self.checks {
            let column = c.column.as_deref();
            let reason = c.reason.as_deref();
            match c.status {
                CheckStatus::Breach => {
                    tally[1] += 1;
                    tracing::warn!(dataset = self.dataset, partition = self.partition, check = %c.check, column, value = %c.value, threshold = %c.threshold, reason, "quality check breached");
                }
                CheckStatus::Pass => {
                    tally[0] += 1;
                    tracing::info!(dataset = self.dataset, partition = self.partition, check = %c.check, column, value = %c.value, threshold = %c.threshold, "quality check passed");
                }
                CheckStatus::Skipped => {
                    tally[2] += 1;
                    tracing::info!(dataset = self.dataset, partition = self.partition, check = %c.check, column, reason, "quality check skipped");
                }
            }
        }
        tracing::info!(
            dataset = self.dataset,
            partition = self.partition,
            row_count = self.row_count,
            passed = tally[0],
            breached = tally[1],
            skipped = tally[2],
            "profile checked"
        );
        metrics.record(
            self.stage,
            &[
                Metric::new("RowsProfiled", self.row_count as f64, Unit::Count),
                Metric::new("QualityChecksPassed", tally[0] as f64, Unit::Count),
                Metric::new("QualityBreaches", tally[1] as f64, Unit::Count),
                Metric::new("QualityChecksSkipped", tally[2] as f64, Unit::Count),
            ],
        );
    }
}

/// An alert was delivered.
#[derive(Debug)]
pub struct AlertSent<'a> {
    /// Stage.
    pub stage: &'a str,
    /// The alert.
    pub alert: &'a Alert,
}

impl AlertSent<'_> {
    /// Log and count.
    pub fn emit(&self, metrics: &dyn MetricsSink) {
        tracing::warn!(alert_id = %self.alert.alert_id, check = %self.alert.check, column = self.alert.column.as_deref(), "quality alert sent");
        metrics.record(self.stage, &[Metric::new("AlertsSent", 1.0, Unit::Count)]);
    }
}
