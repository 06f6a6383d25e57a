//! The profile stage: measures every curated file (row count, per-column
//! null ratios, numeric statistics, distinct counts, quantiles, histograms,
//! frequent values), checks it against the contract's quality thresholds,
//! alerts on every breach, and writes the profile as JSON.
//!
//! - Input: `<input prefix><dataset>/v<major>/dt=.../<id>.parquet` in the
//!   curated bucket; an unknown dataset or an unreadable file goes to the DLQ.
//! - Output: `<output prefix><dataset>/v<major>/dt=.../<id>.profile.json`
//!   ([`report::ProfileReport`]); counts are rows in = rows out = row count.
//! - Alerts ([`alerts`]): one per breached check, sent *before* the profile
//!   is written. A failed send fails the object (retried, then redelivered),
//!   and since the profile is the last thing written, a redelivery sends the
//!   alerts again, with the same deterministic ids. Once the profile exists
//!   for this input version, alerts are not sent again.
//! - Metrics: EMF through the runner's metrics sink (`RowsProfiled`,
//!   `QualityBreaches`, ...), and one log line per check.
//!
//! Memory is bounded: the object is spooled to a temporary file and read
//! twice in batches, with fixed-size sketches per column ([`sketch`]). The
//! profile's bytes depend only on the data, the contract and the stored
//! lineage: no clock, no randomness.

use std::sync::Arc;

use async_trait::async_trait;
use sluice::contract::Registry;
use sluice::error::ErrorKind;
use sluice::idempotent::{self, Plan};
use sluice::store::Metadata;
use sluice::{Counts, Error, ObjectContext, Result, Stage};

pub mod alerts;
pub mod checks;
pub mod events;
pub mod layout;
pub mod report;
pub mod sketch;
pub mod stats;

use alerts::{Alert, AlertSink};
use events::{AlertSent, QualityChecked};
use layout::Target;
use report::{CheckStatus, ObjectInfo, ProfileReport, PROFILE_VERSION};

/// Metadata key on profiles: `pass` or `breach`.
pub const QUALITY_STATUS_KEY: &str = "sluice-quality-status";

/// Where alerts go.
#[derive(Debug)]
enum AlertRouting {
    /// As configured (`SLUICE_ALERTS`), resolved on first use and kept.
    FromConfig(tokio::sync::OnceCell<Arc<dyn AlertSink>>),
    /// A sink built at cold start (or given by a test).
    Fixed(Arc<dyn AlertSink>),
}

/// The profile stage.
#[derive(Debug)]
pub struct Profile {
    registry: Registry,
    alerts: AlertRouting,
}

impl Profile {
    /// A profile stage for the contracts in `registry`; alerts go where the
    /// runtime configuration says (an SNS client, if needed, is built on the
    /// first alert and reused).
    pub fn new(registry: &Registry) -> Result<Self> {
        Ok(Profile {
            registry: registry.clone(),
            alerts: AlertRouting::FromConfig(tokio::sync::OnceCell::new()),
        })
    }

    /// A profile stage sending alerts to `sink` (built once at cold start,
    /// see [`alerts::sink_for`]).
    pub fn with_alerts(registry: &Registry, sink: Arc<dyn AlertSink>) -> Result<Self> {
        Ok(Profile {
            registry: registry.clone(),
            alerts: AlertRouting::Fixed(sink),
        })
    }

    async fn alert_sink(&self, ctx: &ObjectContext) -> Arc<dyn AlertSink> {
        match &self.alerts {
            AlertRouting::Fixed(s) => s.clone(),
            AlertRouting::FromConfig(cell) => cell
                .get_or_init(|| alerts::sink_for(ctx.config.alerts.as_ref()))
                .await
                .clone(),
        }
    }
}

#[async_trait]
impl Stage for Profile {
    fn name(&self) -> &str {
        "profile"
    }

    fn accepts(&self, key: &str) -> bool {
        key.ends_with(".parquet")
    }

    async fn process(&self, ctx: &mut ObjectContext) -> Result<Counts> {
        let location = ctx.location();
        let target = Target::parse(&ctx.config.input.prefix, &ctx.object.key, &location)?;
        let contract = self.registry.get(&target.dataset).cloned().ok_or_else(|| {
            Error::invalid_input(
                &location,
                format!(
                    "unknown dataset {:?} (the first key segment); known: {}",
                    target.dataset,
                    self.registry.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let (file, bytes_in) = ctx.spool_input().await?;
        let stats = {
            let at = location.clone();
            tokio::task::spawn_blocking(move || stats::profile_file(file, &at))
                .await
                .map_err(|e| Error::from_join(&location, e))??
        };

        let quality = &contract.quality;
        let store = ctx.store.clone();
        let out = ctx.config.output.clone();
        // A rebuild (`--reprocess`) writes beside, never over, what it replaces.
        let out_key = format!(
            "{}{}",
            out.prefix,
            ctx.lineage
                .source
                .generation_key(&target.profile_relative())
        );
        let mut checks = checks::data_checks(quality, stats.row_count, &stats.columns);
        checks.push(checks::quarantine_check(store.as_ref(), &ctx.input, &target, quality).await?);
        checks.push(
            checks::volume_check(
                store.as_ref(),
                &out.bucket,
                &out.prefix,
                &target,
                stats.row_count,
                quality,
            )
            .await?,
        );
        let breached = checks.iter().any(|c| c.status == CheckStatus::Breach);
        let report = ProfileReport {
            profile_version: PROFILE_VERSION,
            dataset: target.dataset.clone(),
            major: target.major,
            partition: target.partition.clone(),
            object: ObjectInfo {
                bucket: ctx.object.bucket.clone(),
                key: ctx.object.key.clone(),
                etag: ctx.input.etag.clone(),
            },
            correlation_id: ctx.lineage.correlation_id.clone(),
            row_count: stats.row_count,
            status: if breached {
                CheckStatus::Breach
            } else {
                CheckStatus::Pass
            },
            checks,
            columns: stats.columns,
        };
        QualityChecked {
            stage: self.name(),
            dataset: &report.dataset,
            partition: report.partition.as_deref(),
            row_count: report.row_count,
            checks: &report.checks,
        }
        .emit(ctx.metrics.as_ref());

        // Alerts go out before the profile: the profile is the commit point
        // for them. If it is already there for this input version, they were sent.
        let already = matches!(
            idempotent::plan(store.as_ref(), &out.bucket, &out_key, &ctx.lineage.source).await?,
            Plan::Skip(_)
        );
        if breached && !already {
            let sink = self.alert_sink(ctx).await;
            for check in report.breaches() {
                let alert = Alert {
                    alert_id: Alert::id_for(
                        &report.dataset,
                        report.partition.as_deref(),
                        &check.check,
                        check.column.as_deref(),
                        &report.object.etag,
                    ),
                    stage: self.name().to_string(),
                    dataset: report.dataset.clone(),
                    partition: report.partition.clone(),
                    check: check.check.clone(),
                    column: check.column.clone(),
                    value: check.value.clone(),
                    threshold: check.threshold.clone(),
                    reason: check.reason.clone(),
                    object: location.clone(),
                    object_etag: report.object.etag.clone(),
                    correlation_id: report.correlation_id.clone(),
                };
                sink.send(&alert).await?;
                AlertSent {
                    stage: self.name(),
                    alert: &alert,
                }
                .emit(ctx.metrics.as_ref());
            }
        }

        let mut body = serde_json::to_vec_pretty(&report).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                format!("{location}: cannot encode the profile"),
                Some(Box::new(e)),
            )
        })?;
        body.push(b'\n');
        let bytes_out = body.len() as u64;
        let mut extra = Metadata::new();
        extra.insert(QUALITY_STATUS_KEY.into(), report.status.as_str().into());
        ctx.write(
            &out.bucket,
            &out_key,
            body.into(),
            Some("application/json"),
            &extra,
        )
        .await?;
        Ok(Counts {
            rows_in: report.row_count,
            rows_out: report.row_count,
            rows_quarantined: 0,
            bytes_in,
            bytes_out,
        })
    }
}
