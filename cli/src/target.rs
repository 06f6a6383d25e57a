//! Where an operations command acts: a local pipeline directory (the
//! embedded default) or a deployed environment described by `terraform
//! output -json` (AWS, or LocalStack when the outputs name an endpoint).
//! Commands see one interface: the object store, each stage's locations,
//! and its dead-letter queue.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::config::Location;
use sluice::deployment::Deployment;
use sluice::dlq::{DlqLine, Envelope, FileDeadLetter};
use sluice::store::ObjectStore;
#[cfg(feature = "aws")]
use sluice::store::{s3::S3Store, DEFAULT_PART_SIZE};

use crate::local::{self, LocalPipeline, STAGES};

/// Where to act: `--local DIR` or `--deployment FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// A local pipeline directory (as made by `sluice run --local`).
    #[arg(long, value_name = "DIR", conflicts_with = "deployment")]
    pub local: Option<PathBuf>,
    /// A deployed environment: the JSON of `terraform output -json` for
    /// infra/envs/<env> (`scripts/infra.sh output local > FILE`). Credentials
    /// and region come from the usual AWS environment; an `endpoint` output
    /// (LocalStack) is used as the endpoint.
    #[arg(long, value_name = "FILE", env = "SLUICE_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
}

/// One stage's places.
#[derive(Debug, Clone)]
pub struct StagePlaces {
    /// Stage name.
    pub name: String,
    /// What it reads.
    pub input: Location,
    /// What it writes (manifests live under `<output>_sluice/`).
    pub output: Location,
    /// Where its quarantined rows go.
    pub quarantine: Location,
}

impl StagePlaces {
    /// An input object named `s3://bucket/key`, or by a key in the stage's
    /// input bucket: (bucket, key).
    pub fn object(&self, k: &str) -> anyhow::Result<(String, String)> {
        match k.strip_prefix("s3://") {
            Some(rest) => match rest.split_once('/') {
                Some((b, key)) if !b.is_empty() && !key.is_empty() => {
                    Ok((b.to_string(), key.to_string()))
                }
                _ => bail!("{k:?} is not s3://bucket/key"),
            },
            None if k.is_empty() => bail!("an empty key"),
            None => Ok((self.input.bucket.clone(), k.to_string())),
        }
    }
}

/// A dead-letter message, in either form.
#[derive(Debug, Clone)]
pub enum DeadLetter {
    /// The envelope a stage sends for a permanent failure.
    Envelope(Box<Envelope>),
    /// A message SQS moved after `maxReceiveCount` deliveries: the original
    /// event, unchanged.
    Raw {
        /// The original message body, parsed.
        event: Value,
        /// When it was first sent.
        sent: Option<DateTime<Utc>>,
        /// How often it was received before SQS gave up.
        receive_count: u32,
        /// The generation of its `sluice-reprocess` attribute: a rebuild
        /// that ran out of receives, to be redriven as that rebuild.
        reprocess: Option<u64>,
    },
}

impl DeadLetter {
    /// The error kind: the envelope's, or `retries_exhausted` for raw ones.
    pub fn kind(&self) -> String {
        match self {
            DeadLetter::Envelope(e) => e.error.kind.as_str().to_string(),
            DeadLetter::Raw { .. } => "retries_exhausted".to_string(),
        }
    }

    /// When it failed last (envelope) or was sent (raw).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            DeadLetter::Envelope(e) => Some(e.last_seen),
            DeadLetter::Raw { sent, .. } => *sent,
        }
    }

    /// A one-line description of the error.
    pub fn message(&self) -> String {
        match self {
            DeadLetter::Envelope(e) => e.error.message.clone(),
            DeadLetter::Raw { receive_count, .. } => {
                format!("delivered {receive_count} times without success; moved by SQS redrive")
            }
        }
    }
}

/// A dead letter and how to acknowledge it.
#[derive(Debug, Clone)]
pub struct DlqEntry {
    /// The message.
    pub letter: DeadLetter,
    /// SQS receipt handle, or the line number in the local JSONL file.
    handle: Handle,
}

#[derive(Debug, Clone)]
enum Handle {
    Sqs(String),
    Line(DlqLine),
}

/// The target.
pub enum Target {
    /// A local directory.
    Local(LocalTarget),
    /// A deployed environment.
    #[cfg(feature = "aws")]
    Aws(AwsTarget),
}

/// Why a build without the `aws` feature cannot act on a deployment.
#[cfg(not(feature = "aws"))]
pub const WITHOUT_AWS: &str = "this sluice was built without AWS (the quick build of `make demo`, \
     `--no-default-features`): build it with `cargo build -p sluice-cli` to act on S3, SQS or a deployment";

/// A local pipeline directory.
pub struct LocalTarget {
    /// The pipeline, wired to the directory.
    pub pipeline: LocalPipeline,
}

/// A deployed environment.
#[cfg(feature = "aws")]
pub struct AwsTarget {
    /// Its Terraform outputs.
    pub dep: Deployment,
    /// S3 as an object store.
    pub store: Arc<dyn ObjectStore>,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Target {
    /// Open what the arguments name.
    pub async fn open(args: &TargetArgs) -> anyhow::Result<Self> {
        match (&args.local, &args.deployment) {
            (Some(dir), _) => Ok(Target::Local(LocalTarget {
                pipeline: LocalPipeline::open(dir)?,
            })),
            #[cfg(feature = "aws")]
            (None, Some(path)) => Ok(Target::Aws(AwsTarget::open(Deployment::load(path)?).await)),
            #[cfg(not(feature = "aws"))]
            (None, Some(path)) => {
                // Still parsed, so that a bad file is reported as such.
                let _ = Deployment::load(path)?;
                bail!("--deployment {}: {WITHOUT_AWS}", path.display())
            }
            (None, None) => bail!(
                "say where: --local DIR for a local pipeline directory, or --deployment FILE \
                 (or SLUICE_DEPLOYMENT) for the `terraform output -json` of a deployed environment"
            ),
        }
    }

    /// A short description for headings.
    pub fn describe(&self) -> String {
        match self {
            Target::Local(l) => format!("local directory {}", l.pipeline.dir().display()),
            #[cfg(feature = "aws")]
            Target::Aws(a) => match &a.dep.endpoint {
                Some(e) => format!("deployment {} at {e}", a.dep.source),
                None => format!("deployment {}", a.dep.source),
            },
        }
    }

    /// The object store.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        match self {
            Target::Local(l) => l.pipeline.store(),
            #[cfg(feature = "aws")]
            Target::Aws(a) => a.store.clone(),
        }
    }

    /// The stages, in pipeline order.
    pub fn stages(&self) -> Vec<String> {
        match self {
            Target::Local(_) => STAGES.iter().map(|s| s.to_string()).collect(),
            #[cfg(feature = "aws")]
            Target::Aws(a) => STAGES
                .iter()
                .filter(|s| a.dep.stages.contains_key(**s))
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// A prod stage's places.
    pub fn stage(&self, name: &str) -> anyhow::Result<StagePlaces> {
        match self {
            Target::Local(l) => {
                let c = local::local_config(name, l.pipeline.dir())?;
                Ok(StagePlaces {
                    name: name.to_string(),
                    input: c.input.clone(),
                    output: c.output.clone(),
                    quarantine: c.quarantine.clone(),
                })
            }
            #[cfg(feature = "aws")]
            Target::Aws(a) => places(name, a.dep.stage(name)?),
        }
    }

    /// A ghost stage's places (deployments only).
    pub fn ghost_stage(&self, name: &str) -> anyhow::Result<StagePlaces> {
        match self {
            Target::Local(_) => bail!(
                "a local directory has no ghost stages: compare two locations with --prod and --ghost"
            ),
            #[cfg(feature = "aws")]
            Target::Aws(a) => places(name, a.dep.ghost_stage(name)?),
        }
    }

    /// Every message in a stage's DLQ. On SQS the messages are received
    /// with `hold` as visibility timeout: until acknowledged or released they
    /// are hidden from other readers.
    pub async fn dlq_read(
        &self,
        stage: &str,
        hold: std::time::Duration,
    ) -> anyhow::Result<Vec<DlqEntry>> {
        match self {
            Target::Local(l) => local_dlq_read(&l.dlq(stage)),
            #[cfg(feature = "aws")]
            Target::Aws(a) => a.dlq_read(stage, hold).await,
        }
    }

    /// Remove handled messages from the DLQ.
    pub async fn dlq_ack(&self, stage: &str, entries: &[&DlqEntry]) -> anyhow::Result<()> {
        match self {
            Target::Local(l) => {
                let lines: Vec<DlqLine> = entries
                    .iter()
                    .filter_map(|e| match &e.handle {
                        Handle::Line(line) => Some(line.clone()),
                        Handle::Sqs(_) => None,
                    })
                    .collect();
                if lines.is_empty() {
                    return Ok(());
                }
                Ok(l.dlq(stage).remove(&lines).await?)
            }
            #[cfg(feature = "aws")]
            Target::Aws(a) => a.dlq_delete(stage, entries).await,
        }
    }

    /// Make unhandled messages visible again at once.
    pub async fn dlq_release(&self, stage: &str, entries: &[&DlqEntry]) -> anyhow::Result<()> {
        match self {
            Target::Local(_) => Ok(()),
            #[cfg(feature = "aws")]
            Target::Aws(a) => a.dlq_release(stage, entries).await,
        }
    }
}

fn places(name: &str, s: &sluice::deployment::StageOut) -> anyhow::Result<StagePlaces> {
    let loc = |what: &str, v: &str| {
        Location::parse(what, v).with_context(|| format!("stage {name}: {what} {v:?}"))
    };
    let output = loc("output", &s.output)?;
    let quarantine = match &s.quarantine {
        Some(q) => loc("quarantine", q)?,
        None => Location {
            bucket: output.bucket.clone(),
            prefix: format!("{}_quarantine/{name}/", output.prefix),
        },
    };
    Ok(StagePlaces {
        name: name.to_string(),
        input: loc("input", &s.input)?,
        output,
        quarantine,
    })
}

impl LocalTarget {
    /// A stage's DLQ file.
    pub fn dlq(&self, stage: &str) -> FileDeadLetter {
        self.pipeline.dlq(stage)
    }
}

/// The local DLQ: one envelope per line. A line that is not an envelope is an
/// error naming the file and line, never skipped silently.
fn local_dlq_read(dlq: &FileDeadLetter) -> anyhow::Result<Vec<DlqEntry>> {
    let mut out = Vec::new();
    for line in dlq.read_lines()? {
        let envelope: Envelope = serde_json::from_str(&line.text).with_context(|| {
            format!(
                "{}:{}: not a DLQ envelope",
                dlq.path().display(),
                line.index + 1
            )
        })?;
        out.push(DlqEntry {
            letter: DeadLetter::Envelope(Box::new(envelope)),
            handle: Handle::Line(line),
        });
    }
    Ok(out)
}

#[cfg(feature = "aws")]
impl AwsTarget {
    /// Clients for a deployment. With an `endpoint` output (LocalStack) the
    /// SDK is pointed there, path-style, with test credentials unless the
    /// environment has some.
    pub async fn open(dep: Deployment) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(sluice::aws::http_client());
        if let Some(endpoint) = &dep.endpoint {
            loader = loader.endpoint_url(endpoint);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "localstack",
                ));
            }
        }
        if let Some(region) = &dep.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let conf = loader.load().await;
        let s3 = sluice::aws::s3_client(&conf, dep.endpoint.is_some());
        AwsTarget {
            store: Arc::new(S3Store::new(s3, DEFAULT_PART_SIZE)),
            sqs: aws_sdk_sqs::Client::new(&conf),
            dep,
        }
    }

    /// A stage's trigger queue URL.
    pub fn queue_url(&self, stage: &str) -> anyhow::Result<&str> {
        Ok(&self.dep.stage(stage)?.queue_url)
    }

    /// A stage's DLQ URL.
    pub fn dlq_url(&self, stage: &str) -> anyhow::Result<&str> {
        Ok(&self.dep.stage(stage)?.dlq_url)
    }

    async fn dlq_read(
        &self,
        stage: &str,
        hold: std::time::Duration,
    ) -> anyhow::Result<Vec<DlqEntry>> {
        let url = self.dlq_url(stage)?;
        let mut out = Vec::new();
        let mut empty_polls = 0;
        // Short polls until the queue answers empty twice: SQS samples a
        // subset of servers, so one empty answer does not mean empty.
        while empty_polls < 2 {
            let resp = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(hold.as_secs().try_into().unwrap_or(i32::MAX))
                .wait_time_seconds(if empty_polls == 0 { 0 } else { 1 })
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .message_attribute_names(sluice::trigger::REPROCESS_ATTRIBUTE)
                .send()
                .await
                .with_context(|| format!("receiving from {url}"))?;
            let messages = resp.messages.unwrap_or_default();
            if messages.is_empty() {
                empty_polls += 1;
                continue;
            }
            empty_polls = 0;
            for m in messages {
                let handle = m.receipt_handle.clone().unwrap_or_default();
                let id = m.message_id.clone().unwrap_or_default();
                let attrs = m.attributes.unwrap_or_default();
                let attr = |name: aws_sdk_sqs::types::MessageSystemAttributeName| {
                    attrs.get(&name).cloned()
                };
                let body = m.body.unwrap_or_default();
                let rebuild = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(sluice::trigger::REPROCESS_ATTRIBUTE))
                    .and_then(|v| v.string_value.as_deref())
                    .and_then(|g| g.trim().parse::<u64>().ok());
                let mut letter = parse_dead_letter(
                    &body,
                    attr(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                        .and_then(|s| s.parse::<i64>().ok())
                        .and_then(DateTime::from_timestamp_millis),
                    attr(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                )
                .with_context(|| format!("{url}: message {id}"))?;
                if let DeadLetter::Raw { reprocess, .. } = &mut letter {
                    *reprocess = rebuild;
                }
                out.push(DlqEntry {
                    letter,
                    handle: Handle::Sqs(handle),
                });
            }
        }
        Ok(out)
    }

    /// The receipt handles of SQS entries, in batches of ten (the SQS limit).
    fn handle_batches<'a>(entries: &'a [&DlqEntry]) -> Vec<Vec<&'a str>> {
        let handles: Vec<&str> = entries
            .iter()
            .filter_map(|e| match &e.handle {
                Handle::Sqs(h) => Some(h.as_str()),
                Handle::Line(_) => None,
            })
            .collect();
        handles.chunks(10).map(<[&str]>::to_vec).collect()
    }

    async fn dlq_delete(&self, stage: &str, entries: &[&DlqEntry]) -> anyhow::Result<()> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as Entry;
        let url = self.dlq_url(stage)?;
        for batch in Self::handle_batches(entries) {
            let batch = batch
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .context("building a delete batch")?;
            let resp = self
                .sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(batch))
                .send()
                .await
                .with_context(|| format!("deleting messages from {url}"))?;
            if let Some(f) = resp.failed.first() {
                bail!(
                    "deleting a message from {url}: {} {}",
                    f.code,
                    f.message.as_deref().unwrap_or("")
                );
            }
        }
        Ok(())
    }

    async fn dlq_release(&self, stage: &str, entries: &[&DlqEntry]) -> anyhow::Result<()> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        let url = self.dlq_url(stage)?;
        for batch in Self::handle_batches(entries) {
            let batch = batch
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .visibility_timeout(0)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .context("building a release batch")?;
            let resp = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(batch))
                .send()
                .await
                .with_context(|| format!("releasing messages of {url}"))?;
            if let Some(f) = resp.failed.first() {
                bail!(
                    "releasing a message of {url}: {} {}",
                    f.code,
                    f.message.as_deref().unwrap_or("")
                );
            }
        }
        Ok(())
    }
}

/// A DLQ message body: a versioned envelope, or anything else that is JSON
/// (the original event, moved by SQS redrive).
pub fn parse_dead_letter(
    body: &str,
    sent: Option<DateTime<Utc>>,
    receive_count: u32,
) -> anyhow::Result<DeadLetter> {
    let value: Value = serde_json::from_str(body).context("the body is not JSON")?;
    if value.get("envelope_version").is_some() {
        let envelope: Envelope =
            serde_json::from_value(value).context("the body is not a valid DLQ envelope")?;
        return Ok(DeadLetter::Envelope(Box::new(envelope)));
    }
    Ok(DeadLetter::Raw {
        event: value,
        sent,
        receive_count,
        reprocess: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_envelopes_from_raw_redriven_messages() {
        let raw = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{}}"#;
        let sent = DateTime::from_timestamp_millis(1_700_000_000_000);
        let DeadLetter::Raw { receive_count, .. } = parse_dead_letter(raw, sent, 5).unwrap() else {
            panic!("a raw event is not an envelope");
        };
        assert_eq!(receive_count, 5);
        let letter = parse_dead_letter(raw, sent, 5).unwrap();
        assert_eq!(letter.kind(), "retries_exhausted");
        assert_eq!(letter.time(), sent);

        let e = parse_dead_letter("{\"envelope_version\":1}", None, 1).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a valid DLQ envelope"),
            "{e:#}"
        );
        let e = parse_dead_letter("garbage", None, 1).unwrap_err();
        assert!(format!("{e:#}").contains("not JSON"), "{e:#}");
    }

    #[tokio::test]
    async fn local_dlq_lines_are_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.jsonl");
        let dlq = FileDeadLetter::new(&path);
        assert!(
            local_dlq_read(&dlq).unwrap().is_empty(),
            "a missing file is empty"
        );
        let err =
            sluice::error::Error::other(sluice::error::ErrorKind::InvalidInput, "bad file", None);
        let lines: String = (0..3)
            .map(|i| {
                let e = Envelope::new("ingest", None, &err, i, None, None, Value::Null);
                format!("{}\n", serde_json::to_string(&e).unwrap())
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        let entries = local_dlq_read(&dlq).unwrap();
        assert_eq!(entries.len(), 3);
        let target_entries = [&entries[0], &entries[2]];
        let lines: Vec<DlqLine> = target_entries
            .iter()
            .filter_map(|e| match &e.handle {
                Handle::Line(l) => Some(l.clone()),
                Handle::Sqs(_) => None,
            })
            .collect();
        dlq.remove(&lines).await.unwrap();
        let left = local_dlq_read(&dlq).unwrap();
        assert_eq!(left.len(), 1);
        let DeadLetter::Envelope(e) = &left[0].letter else {
            panic!("envelope expected")
        };
        assert_eq!(e.attempts, 1, "the middle line is the one kept");

        std::fs::write(&path, "{\"not\":\"an envelope\"}\n").unwrap();
        let e = local_dlq_read(&dlq).unwrap_err();
        assert!(
            format!("{e:#}").contains("ingest.jsonl:1: not a DLQ envelope"),
            "{e:#}"
        );
    }
}
