//! Dead-letter routing: the versioned envelope sent for every permanent
//! file-level failure, and where it goes (SQS, a JSONL file locally, memory
//! in tests).

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::lineage::SourceIdentity;

/// The current envelope format version.
pub const ENVELOPE_VERSION: u32 = 1;

/// The error part of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeError {
    /// Classification.
    pub kind: ErrorKind,
    /// The top-level message.
    pub message: String,
    /// Every message in the source chain, outermost first.
    pub chain: Vec<String>,
}

/// What the DLQ holds for one failed object: enough to understand the failure
/// and to replay the original event once it is fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub envelope_version: u32,
    /// The stage that failed.
    pub stage: String,
    /// The object that failed, if the event named one.
    pub source: Option<SourceIdentity>,
    /// The failure.
    pub error: EnvelopeError,
    /// Deliveries so far (SQS receive count) plus in-process attempts.
    pub attempts: u32,
    /// When the failing event was first seen.
    pub first_seen: DateTime<Utc>,
    /// When it failed for the last time.
    pub last_seen: DateTime<Utc>,
    /// The correlation id of the input.
    pub correlation_id: Option<String>,
    /// The original event (the SQS record or the direct payload).
    pub event: Value,
}

impl Envelope {
    /// Build an envelope for `err`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stage: &str,
        source: Option<SourceIdentity>,
        err: &Error,
        attempts: u32,
        first_seen: Option<DateTime<Utc>>,
        correlation_id: Option<String>,
        event: Value,
    ) -> Self {
        let now = Utc::now();
        Envelope {
            envelope_version: ENVELOPE_VERSION,
            stage: stage.to_string(),
            source,
            error: EnvelopeError {
                kind: err.kind(),
                message: err.to_string(),
                chain: err.chain(),
            },
            attempts,
            first_seen: first_seen.unwrap_or(now),
            last_seen: now,
            correlation_id,
            event,
        }
    }
}

/// Where envelopes go.
#[async_trait]
pub trait DeadLetterSink: Send + Sync + Debug {
    /// Send one envelope. An error here means the failure is *not* recorded,
    /// so the caller must not acknowledge the event.
    async fn send(&self, envelope: &Envelope) -> Result<()>;

    /// Send a message that was received but not started (deferred for lack
    /// of time) back to the stage's own queue as a new message, with its
    /// body and message attributes, so that the deferral does not use up one
    /// of its receives. `Ok(false)`: this sink has no queue to send it to
    /// (the caller reports it as a batch item failure instead).
    async fn requeue(&self, body: &str, attributes: &[(&str, String)]) -> Result<bool> {
        let _ = (body, attributes);
        Ok(false)
    }
}

/// An SQS queue as DLQ.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct SqsDeadLetter {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    requeue_url: Option<String>,
}

#[cfg(feature = "aws")]
impl SqsDeadLetter {
    /// A sink sending to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsDeadLetter {
            client,
            queue_url: queue_url.into(),
            requeue_url: None,
        }
    }

    /// Send deferred messages back to `input_queue_url` (the stage's own
    /// queue, `SLUICE_QUEUE`).
    pub fn with_requeue(mut self, input_queue_url: Option<String>) -> Self {
        self.requeue_url = input_queue_url;
        self
    }
}

/// SQS messages are at most 256 KiB; the original event is cut to fit.
#[cfg(feature = "aws")]
const SQS_MAX_BODY: usize = 250 * 1024;

#[cfg(feature = "aws")]
#[async_trait]
impl DeadLetterSink for SqsDeadLetter {
    async fn send(&self, envelope: &Envelope) -> Result<()> {
        let mut body = serde_json::to_string(envelope).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "cannot encode DLQ envelope",
                Some(Box::new(e)),
            )
        })?;
        if body.len() > SQS_MAX_BODY {
            let mut cut = envelope.clone();
            cut.event = serde_json::json!({"truncated": true, "original_bytes": body.len()});
            body = serde_json::to_string(&cut).map_err(|e| {
                Error::other(
                    ErrorKind::Internal,
                    "cannot encode DLQ envelope",
                    Some(Box::new(e)),
                )
            })?;
        }
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                crate::aws::storage_error("send DLQ envelope to", self.queue_url.clone(), e)
            })?;
        Ok(())
    }

    async fn requeue(&self, body: &str, attributes: &[(&str, String)]) -> Result<bool> {
        let Some(url) = &self.requeue_url else {
            return Ok(false);
        };
        let mut send = self.client.send_message().queue_url(url).message_body(body);
        for (name, value) in attributes {
            let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| {
                    Error::other(
                        ErrorKind::Internal,
                        format!("cannot build the message attribute {name}"),
                        Some(Box::new(e)),
                    )
                })?;
            send = send.message_attributes(*name, attr);
        }
        send.send().await.map_err(|e| {
            crate::aws::storage_error("requeue a deferred message to", url.clone(), e)
        })?;
        Ok(true)
    }
}

/// A JSONL file as DLQ (the local default): one envelope per line, appended
/// and removed under one lock ([`crate::jsonl`]) so concurrent processes
/// never interleave lines nor lose one.
#[derive(Debug, Clone)]
pub struct FileDeadLetter {
    path: PathBuf,
}

impl FileDeadLetter {
    /// A sink appending to `path` (created with its folder if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileDeadLetter { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Read every envelope in a DLQ file; a missing file is an empty DLQ.
    pub fn read_all(path: &std::path::Path) -> Result<Vec<Envelope>> {
        crate::jsonl::read_all(path, "DLQ envelope")
    }

    /// Whether the file holds an envelope for exactly this input version
    /// (bucket, key, ETag and version id), as a dead-letter marker promises.
    pub fn holds(&self, source: &SourceIdentity) -> Result<bool> {
        Ok(Self::read_all(&self.path)?.iter().any(|e| {
            e.source.as_ref().is_some_and(|s| {
                s.bucket == source.bucket
                    && s.key == source.key
                    && s.etag == source.etag
                    && s.version_id == source.version_id
            })
        }))
    }

    /// Every non-empty line of the file, with its place, as the handle
    /// [`FileDeadLetter::remove`] takes back; a missing file has none.
    pub fn read_lines(&self) -> Result<Vec<DlqLine>> {
        Ok(crate::jsonl::read_lines(&self.path)?
            .into_iter()
            .enumerate()
            .filter(|(_, text)| !text.trim().is_empty())
            .map(|(index, text)| DlqLine { index, text })
            .collect())
    }

    /// Remove lines read earlier by [`FileDeadLetter::read_lines`], in one
    /// read-modify-write under the appenders' lock (see [`crate::jsonl`]), so
    /// an envelope appended meanwhile is kept. A line is found by its text
    /// (at its old place, else wherever it has moved to, since another
    /// rewrite may have removed lines above it); one no longer there was
    /// removed already and takes nothing else with it.
    pub async fn remove(&self, lines: &[DlqLine]) -> Result<()> {
        let lines = lines.to_vec();
        crate::jsonl::rewrite(&self.path, "DLQ envelope", move |all| {
            let mut gone = vec![false; all.len()];
            for line in &lines {
                let here = |i: usize| !gone[i] && all[i] == line.text;
                let at = if line.index < all.len() && here(line.index) {
                    Some(line.index)
                } else {
                    (0..all.len()).find(|i| here(*i))
                };
                if let Some(i) = at {
                    gone[i] = true;
                }
            }
            all.into_iter()
                .zip(gone)
                .filter(|(_, gone)| !gone)
                .map(|(l, _)| l)
                .collect()
        })
        .await
    }
}

/// One line of a local DLQ file as it was read: its place and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqLine {
    /// 0-based line number when read.
    pub index: usize,
    /// The line (an envelope, when the file is well formed).
    pub text: String,
}

#[async_trait]
impl DeadLetterSink for FileDeadLetter {
    async fn send(&self, envelope: &Envelope) -> Result<()> {
        crate::jsonl::append(&self.path, envelope, "DLQ envelope").await
    }
}

/// An in-memory DLQ for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryDeadLetter {
    envelopes: Arc<Mutex<Vec<Envelope>>>,
    requeue: Arc<Mutex<Option<Requeued>>>,
}

/// Messages a [`MemoryDeadLetter`] was asked to requeue, and whether to fail.
#[derive(Debug, Default)]
struct Requeued {
    fail: bool,
    sent: Vec<(String, Vec<(String, String)>)>,
}

impl MemoryDeadLetter {
    /// An empty DLQ.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything sent so far.
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.envelopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Act as if the stage had a queue to requeue deferred messages to
    /// (`fail`: every requeue fails transiently).
    pub fn enable_requeue(&self, fail: bool) {
        let mut guard = self.requeue.lock().unwrap_or_else(|p| p.into_inner());
        let sent = guard.take().map(|r| r.sent).unwrap_or_default();
        *guard = Some(Requeued { fail, sent });
    }

    /// Messages requeued so far: body and attributes.
    pub fn requeued(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.requeue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.sent.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl DeadLetterSink for MemoryDeadLetter {
    async fn send(&self, envelope: &Envelope) -> Result<()> {
        self.envelopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(envelope.clone());
        Ok(())
    }

    async fn requeue(&self, body: &str, attributes: &[(&str, String)]) -> Result<bool> {
        let mut guard = self.requeue.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            None => Ok(false),
            Some(r) if r.fail => Err(Error::other(
                ErrorKind::Transient,
                "requeue failed (injected)",
                None,
            )),
            Some(r) => {
                r.sent.push((
                    body.to_string(),
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                ));
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_dlq_round_trips_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq/ingest.jsonl");
        let sink = FileDeadLetter::new(&path);
        let err = Error::invalid_input("s3://landing/raw/trips/x.csv.gz", "not a gzip file");
        let env = Envelope::new(
            "ingest",
            None,
            &err,
            2,
            None,
            Some("sl-1".into()),
            serde_json::json!({"k": 1}),
        );
        sink.send(&env).await.unwrap();
        sink.send(&env).await.unwrap();
        let back = FileDeadLetter::read_all(&path).unwrap();
        assert_eq!(back, vec![env.clone(), env]);
        assert_eq!(back[0].error.kind, ErrorKind::InvalidInput);
        assert_eq!(back[0].envelope_version, 1);
        assert!(back[0].error.message.contains("x.csv.gz"));
    }

    fn numbered(stage: &str, n: u32) -> Envelope {
        let err = Error::invalid_input("s3://landing/raw/trips/x.csv", "bad");
        Envelope::new(stage, None, &err, n, None, None, Value::Null)
    }

    /// Appenders in several threads while another rewrites the file line by
    /// line: every append survives, every removed line is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_local_dlq_rewrite_does_not_lose_a_concurrent_append() {
        const SEEDED: u32 = 60;
        const WRITERS: u32 = 4;
        const APPENDS: u32 = 60;
        let dir = tempfile::tempdir().unwrap();
        let dlq = FileDeadLetter::new(dir.path().join("dlq/ingest.jsonl"));
        for n in 0..SEEDED {
            dlq.send(&numbered("seed", n)).await.unwrap();
        }
        let seeded = dlq.read_lines().unwrap();
        assert_eq!(seeded.len(), SEEDED as usize);

        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let dlq = dlq.clone();
            writers.push(tokio::spawn(async move {
                for n in 0..APPENDS {
                    dlq.send(&numbered(&format!("writer-{w}"), n)).await?;
                }
                Ok::<(), Error>(())
            }));
        }
        // One rewrite per seeded line, while the writers append (last line
        // first, so that no removal moves the lines still to be removed).
        for line in seeded.iter().rev() {
            dlq.remove(std::slice::from_ref(line)).await.unwrap();
        }
        for w in writers {
            w.await.unwrap().unwrap();
        }

        let left = FileDeadLetter::read_all(dlq.path()).unwrap();
        for w in 0..WRITERS {
            let mut got: Vec<u32> = left
                .iter()
                .filter(|e| e.stage == format!("writer-{w}"))
                .map(|e| e.attempts)
                .collect();
            got.sort_unstable();
            assert_eq!(
                got,
                (0..APPENDS).collect::<Vec<_>>(),
                "writer {w}: {} of {APPENDS} appends survived the rewrites",
                got.len()
            );
        }
        let seeds = left.iter().filter(|e| e.stage == "seed").count();
        assert_eq!(seeds, 0, "every removed line is gone");
    }

    /// Lines are named by what they say, not only where they were: after one
    /// removal moved the lines below it, removing another line read at the
    /// same time still removes that line, and a line already gone is not
    /// replaced by its neighbour.
    #[tokio::test]
    async fn a_dlq_line_removed_after_another_rewrite_is_the_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let dlq = FileDeadLetter::new(dir.path().join("ingest.jsonl"));
        for n in 0..4 {
            dlq.send(&numbered("ingest", n)).await.unwrap();
        }
        let read = dlq.read_lines().unwrap();
        dlq.remove(&read[0..1]).await.unwrap();
        dlq.remove(&read[2..3]).await.unwrap();
        // Removed by another reader already: nothing else goes in its place.
        dlq.remove(&read[0..1]).await.unwrap();
        let left: Vec<u32> = FileDeadLetter::read_all(dlq.path())
            .unwrap()
            .iter()
            .map(|e| e.attempts)
            .collect();
        assert_eq!(left, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_file_dlq_says_whether_it_holds_an_input_version() {
        let dir = tempfile::tempdir().unwrap();
        let dlq = FileDeadLetter::new(dir.path().join("ingest.jsonl"));
        let v1 = SourceIdentity {
            bucket: "landing".into(),
            key: "raw/trips/a.csv".into(),
            etag: Some("e1".into()),
            version_id: None,
            sequencer: Some("01".into()),
            generation: 0,
        };
        assert!(!dlq.holds(&v1).unwrap(), "a missing file holds nothing");
        let err = Error::invalid_input("s3://landing/raw/trips/a.csv", "bad");
        let env = Envelope::new("ingest", Some(v1.clone()), &err, 1, None, None, Value::Null);
        dlq.send(&env).await.unwrap();
        dlq.send(&numbered("ingest", 0)).await.unwrap();
        assert!(dlq.holds(&v1).unwrap());
        let v2 = SourceIdentity {
            etag: Some("e2".into()),
            ..v1.clone()
        };
        assert!(!dlq.holds(&v2).unwrap(), "another version");
        let other = SourceIdentity {
            key: "raw/trips/b.csv".into(),
            ..v1
        };
        assert!(!dlq.holds(&other).unwrap(), "another key");
    }

    #[test]
    fn missing_dlq_file_is_empty() {
        assert!(
            FileDeadLetter::read_all(std::path::Path::new("/nonexistent/dlq.jsonl"))
                .unwrap()
                .is_empty()
        );
    }
}
