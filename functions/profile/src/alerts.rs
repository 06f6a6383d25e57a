//! Quality alerts: one per breached check, naming the dataset, partition,
//! check, column, value, threshold, object and correlation id. Alert ids are
//! deterministic (dataset + partition + check + column + object ETag), so a
//! redelivery that sends an alert again is recognisable as the same alert
//! (and SNS FIFO topics drop it outright).
//!
//! Where alerts go (`SLUICE_ALERTS`): an SNS topic (`arn:...`), a JSONL file
//! (`file:<path>`, appended under an exclusive lock like the file DLQ), or
//! nowhere but the log. A failed send is an error for the object, so the
//! profile (and the manifest) is not written and the redelivery tries again.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice::config::Sink;
#[cfg(feature = "aws")]
use sluice::error::ErrorKind;
use sluice::lineage::short_hash;
use sluice::{Error, Result};

/// One breached check, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id (see [`Alert::id_for`]).
    pub alert_id: String,
    /// Always `profile`.
    pub stage: String,
    /// Dataset.
    pub dataset: String,
    /// `dt=...` partition.
    pub partition: Option<String>,
    /// The check that breached.
    pub check: String,
    /// Its column, for per-column checks.
    pub column: Option<String>,
    /// Measured value.
    pub value: Value,
    /// Threshold.
    pub threshold: Value,
    /// Context (what the value was compared with).
    pub reason: Option<String>,
    /// The profiled object, `s3://bucket/key`.
    pub object: String,
    /// Its ETag.
    pub object_etag: String,
    /// Correlation id of the landed file.
    pub correlation_id: String,
}

impl Alert {
    /// The id of the alert for one check of one object version.
    pub fn id_for(
        dataset: &str,
        partition: Option<&str>,
        check: &str,
        column: Option<&str>,
        etag: &str,
    ) -> String {
        format!(
            "qa-{}",
            short_hash(
                &[
                    dataset.as_bytes(),
                    partition.unwrap_or("").as_bytes(),
                    check.as_bytes(),
                    column.unwrap_or("").as_bytes(),
                    etag.as_bytes(),
                ],
                32
            )
        )
    }

    /// A one-line ASCII summary (the SNS subject, at most 100 characters).
    pub fn subject(&self) -> String {
        let column = self
            .column
            .as_deref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        let s = format!(
            "Sluice quality breach: {} {} {}{column}",
            self.dataset,
            self.partition.as_deref().unwrap_or("-"),
            self.check
        );
        s.chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(100)
            .collect()
    }
}

/// Where alerts go.
#[async_trait]
pub trait AlertSink: Send + Sync + Debug {
    /// Deliver one alert; an error means it was not delivered.
    async fn send(&self, alert: &Alert) -> Result<()>;
}

/// Alerts only logged (no sink configured).
#[derive(Debug, Clone, Default)]
pub struct LogAlerts;

#[async_trait]
impl AlertSink for LogAlerts {
    async fn send(&self, alert: &Alert) -> Result<()> {
        tracing::warn!(
            alert_id = %alert.alert_id,
            dataset = %alert.dataset,
            check = %alert.check,
            column = alert.column.as_deref(),
            value = %alert.value,
            threshold = %alert.threshold,
            "quality alert (no SLUICE_ALERTS sink configured: logged only)"
        );
        Ok(())
    }
}

/// Alerts appended to a JSONL file, one per line, under an exclusive lock so
/// concurrent processes never interleave lines.
#[derive(Debug, Clone)]
pub struct FileAlerts {
    path: PathBuf,
}

impl FileAlerts {
    /// A sink appending to `path` (created with its folder if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileAlerts { path: path.into() }
    }

    /// Read every alert in a file; a missing file has none.
    pub fn read_all(path: &std::path::Path) -> Result<Vec<Alert>> {
        sluice::jsonl::read_all(path, "alert")
    }
}

#[async_trait]
impl AlertSink for FileAlerts {
    async fn send(&self, alert: &Alert) -> Result<()> {
        sluice::jsonl::append(&self.path, alert, "alert").await
    }
}

/// Alerts published to an SNS topic: the JSON alert as the message, a short
/// subject, and `alert_id`, `dataset` and `check` as message attributes. On
/// a FIFO topic the alert id is the deduplication id, so a re-sent alert is
/// dropped by SNS itself.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

#[cfg(feature = "aws")]
impl SnsAlerts {
    /// A sink publishing to `topic_arn` with `client` (built once, at cold start).
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsAlerts {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl AlertSink for SnsAlerts {
    async fn send(&self, alert: &Alert) -> Result<()> {
        let body = serde_json::to_string(alert).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "cannot encode alert",
                Some(Box::new(e)),
            )
        })?;
        let attribute = |v: &str| {
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| {
                    Error::other(
                        ErrorKind::Internal,
                        "cannot build an SNS attribute",
                        Some(Box::new(e)),
                    )
                })
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(alert.subject())
            .message(body)
            .message_attributes("alert_id", attribute(&alert.alert_id)?)
            .message_attributes("dataset", attribute(&alert.dataset)?)
            .message_attributes("check", attribute(&alert.check)?);
        if self.topic_arn.ends_with(".fifo") {
            request = request
                .message_group_id(&alert.dataset)
                .message_deduplication_id(&alert.alert_id);
        }
        request.send().await.map_err(|e| {
            sluice::aws::storage_error("publish alert to", self.topic_arn.clone(), e)
        })?;
        Ok(())
    }
}

/// Alerts kept in memory, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryAlerts {
    alerts: Arc<Mutex<Vec<Alert>>>,
}

impl MemoryAlerts {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything sent so far.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl AlertSink for MemoryAlerts {
    async fn send(&self, alert: &Alert) -> Result<()> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(alert.clone());
        Ok(())
    }
}

/// The sink for a configured destination, building the SNS client (from the
/// shared SDK configuration) only when one is needed. Call once, at cold start.
pub async fn sink_for(sink: Option<&Sink>) -> Arc<dyn AlertSink> {
    match sink {
        None => Arc::new(LogAlerts),
        Some(Sink::File(path)) => Arc::new(FileAlerts::new(path)),
        #[cfg(feature = "aws")]
        Some(Sink::Aws(arn)) => {
            let sdk = sluice::aws::load_sdk_config().await;
            Arc::new(SnsAlerts::new(aws_sdk_sns::Client::new(&sdk), arn))
        }
        #[cfg(not(feature = "aws"))]
        Some(Sink::Aws(arn)) => Arc::new(NoSdkAlerts(arn.clone())),
    }
}

/// An SNS topic configured in a build without the `aws` feature: every send
/// fails with a configuration error, so the profile is not written and the
/// object is retried (or dead-lettered) rather than its alerts lost.
#[cfg(not(feature = "aws"))]
#[derive(Debug)]
struct NoSdkAlerts(String);

#[cfg(not(feature = "aws"))]
#[async_trait]
impl AlertSink for NoSdkAlerts {
    async fn send(&self, _alert: &Alert) -> Result<()> {
        Err(Error::config(
            "SLUICE_ALERTS",
            format!(
                "the SNS topic {} needs AWS: {}",
                self.0,
                sluice::aws::WITHOUT_SDK
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_specific() {
        let a = Alert::id_for(
            "trips",
            Some("dt=2024-01-15"),
            "mean_range",
            Some("fare"),
            "e1",
        );
        assert_eq!(
            a,
            Alert::id_for(
                "trips",
                Some("dt=2024-01-15"),
                "mean_range",
                Some("fare"),
                "e1"
            )
        );
        assert!(a.starts_with("qa-"));
        assert_ne!(
            a,
            Alert::id_for(
                "trips",
                Some("dt=2024-01-15"),
                "mean_range",
                Some("fare"),
                "e2"
            )
        );
        assert_ne!(
            a,
            Alert::id_for(
                "trips",
                Some("dt=2024-01-15"),
                "mean_range",
                Some("tip"),
                "e1"
            )
        );
    }

    #[tokio::test]
    async fn file_sink_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/alerts.jsonl");
        let alert = Alert {
            alert_id: "qa-1".into(),
            stage: "profile".into(),
            dataset: "trips".into(),
            partition: Some("dt=2024-01-15".into()),
            check: "volume".into(),
            column: None,
            value: serde_json::json!(0.9),
            threshold: serde_json::json!(0.5),
            reason: None,
            object: "s3://curated/k".into(),
            object_etag: "e".into(),
            correlation_id: "sl-1".into(),
        };
        let sink = FileAlerts::new(&path);
        sink.send(&alert).await.unwrap();
        sink.send(&alert).await.unwrap();
        assert_eq!(
            FileAlerts::read_all(&path).unwrap(),
            vec![alert.clone(), alert.clone()]
        );
        assert_eq!(
            alert.subject(),
            "Sluice quality breach: trips dt=2024-01-15 volume"
        );
    }
}
