//! `sluice replay`: put inputs through a stage again.
//!
//! - `dlq`: redrive a stage's dead-letter queue, both forms of message (the
//!   envelope a stage sends for a permanent failure, and the raw message SQS
//!   moves after `maxReceiveCount` deliveries), filtered by error kind and
//!   time;
//! - `keys`: replay named objects, in any order;
//! - `backfill`: replay everything under a prefix (list → events).
//!
//! Every replayed object is first checked against the stage's manifest, so
//! what is already done is counted and not sent again; what is sent carries
//! the redrive mark ([`sluice::trigger::REDRIVE_ATTRIBUTE`]) so a version that
//! was dead-lettered is tried again now that its cause is fixed. On a
//! deployment the events go to the stage's queue (the real function does the
//! work) and the command then waits on the stage's commit points: the
//! manifest (done) or a fresh dead-letter marker (failed again). Locally the
//! stage runs in process and the outputs flow on through the pipeline.
//!
//! A DLQ message leaves the DLQ only once its input has settled: committed
//! (a manifest), superseded, or dead-lettered again with a new envelope
//! ([`dlq_actions`]). Everything else (a transient failure, still pending
//! when `--wait` ends, a dry run) stays, visible again at once.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sluice::config::Location;
use sluice::dlq::Envelope;
use sluice::lineage::SourceIdentity;
use sluice::runner::{dead_letter_marker_key_in, is_internal_key, ObjectOutcome};
use sluice::store::{ObjectMeta, ObjectStoreExt};
use sluice::trigger::{
    self, s3_notification, ObjectRef, Replay, REDRIVE_ATTRIBUTE, REPROCESS_ATTRIBUTE,
};

use crate::target::{DeadLetter, DlqEntry, StagePlaces, Target, TargetArgs};

/// Arguments of `sluice replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Redrive a stage's DLQ into its queue (envelopes and raw redriven messages).
    Dlq {
        #[command(flatten)]
        common: Common,
        /// Only this error kind (repeatable): invalid_input, invalid_event,
        /// not_found, internal, panic, retries_exhausted (raw SQS-redriven
        /// messages), ...
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Only messages that failed at or after this time: RFC 3339
        /// (2026-11-22T10:00:00Z) or an age (30m, 2h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only messages that failed before this time (same forms).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Replay objects by key: s3://bucket/key, or a key in the stage's input bucket.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rebuild: Rebuild,
        /// The objects.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Replay every object under a prefix (default: the stage's whole input).
    Backfill {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rebuild: Rebuild,
        /// s3://bucket/prefix to list (must be under the stage's input).
        #[arg(long, value_name = "S3_URI")]
        prefix: Option<String>,
    },
}

/// `--reprocess`, for `keys` and `backfill`.
#[derive(Debug, clap::Args)]
struct Rebuild {
    /// Rebuild what is already processed (after a logic fix): the current
    /// version of each object is processed again as a new generation,
    /// through the same commit protocol; its outputs replace the old ones
    /// (written beside them, under keys ending `-r<generation>`), and the
    /// following stages pick up the change as they do a new upload.
    #[arg(long)]
    reprocess: bool,
}

#[derive(Debug, clap::Args)]
struct Common {
    #[command(flatten)]
    target: TargetArgs,
    /// The stage: ingest, curate or profile.
    #[arg(long)]
    stage: String,
    /// Say what would be replayed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many objects per second.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// On a deployment, how long to wait for the stage to finish what was
    /// sent before counting it as pending (0: do not wait).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    wait: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// What happened to one replayed object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Processed now.
    New,
    /// Its output already existed: nothing was sent.
    Already,
    /// A newer version of the key was already processed.
    Stale,
    /// It failed again, permanently: a new envelope is in the DLQ (the
    /// reason, when known).
    FailedAgain(String),
    /// It failed, and nothing recorded the failure (a transient error, a
    /// DLQ that could not be written): neither committed nor dead-lettered.
    Unsettled(String),
    /// Sent, not finished within `--wait`.
    Pending,
    /// Sent, and nothing identifies its result (an event naming no object).
    Sent,
    /// Would be replayed (`--dry-run`).
    WouldReplay,
    /// The object does not exist.
    Missing,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::New => "new",
            Outcome::Already => "already processed",
            Outcome::Stale => "stale",
            Outcome::FailedAgain(_) => "failed again",
            Outcome::Unsettled(_) => "unsettled",
            Outcome::Pending => "pending",
            Outcome::Sent => "sent",
            Outcome::WouldReplay => "would replay",
            Outcome::Missing => "missing",
        }
    }

    fn ok(&self) -> bool {
        !matches!(
            self,
            Outcome::FailedAgain(_) | Outcome::Unsettled(_) | Outcome::Pending | Outcome::Missing
        )
    }

    /// Whether the input has settled, so that the DLQ message it came from
    /// may go: committed now or before, superseded, dead-lettered again with
    /// a new envelope, or (an event naming no object) handed to the stage's
    /// queue, whose own redrive leads back to the DLQ.
    fn settles(&self) -> bool {
        match self {
            Outcome::New
            | Outcome::Already
            | Outcome::Stale
            | Outcome::FailedAgain(_)
            | Outcome::Sent => true,
            Outcome::Unsettled(_) | Outcome::Pending | Outcome::WouldReplay | Outcome::Missing => {
                false
            }
        }
    }
}

/// What becomes of one DLQ message after a redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DlqAction {
    /// Its input has settled: the message is deleted (acknowledged).
    Delete,
    /// Not settled (yet): the message stays, visible again at once.
    Release,
}

impl DlqAction {
    fn label(self) -> &'static str {
        match self {
            DlqAction::Delete => "deleted",
            DlqAction::Release => "kept",
        }
    }
}

/// For each of `messages` DLQ messages (by index), whether it leaves the DLQ:
/// only when every object it names has settled ([`Outcome::settles`]), as
/// known once the command has waited for the results. A dry run changes
/// nothing; a message that gave no item is kept.
fn dlq_actions(messages: usize, items: &[Item], dry_run: bool) -> Vec<DlqAction> {
    (0..messages)
        .map(|m| {
            let mut of_message = items.iter().filter(|it| it.dlq == Some(m)).peekable();
            let settled = of_message.peek().is_some()
                && of_message.all(|it| it.outcome.as_ref().is_some_and(Outcome::settles));
            if settled && !dry_run {
                DlqAction::Delete
            } else {
                DlqAction::Release
            }
        })
        .collect()
}

/// One object (or undecodable event) to replay.
struct Item {
    /// What to call it in output.
    label: String,
    /// The object, when the event names one.
    object: Option<ObjectRef>,
    /// The event to deliver.
    payload: Value,
    /// The DLQ message it came from.
    dlq: Option<usize>,
    outcome: Option<Outcome>,
    sent_at: Option<DateTime<Utc>>,
    /// What it asks beyond the command's own replay (a rebuild's letter).
    replay: Replay,
}

impl Item {
    fn for_object(object: ObjectRef, dlq: Option<usize>) -> Self {
        Item {
            label: object.location(),
            payload: s3_notification(std::slice::from_ref(&object)),
            object: Some(object),
            dlq,
            outcome: None,
            sent_at: None,
            replay: Replay::default(),
        }
    }
}

/// Run `sluice replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (common, title, reprocess) = match &args.what {
        What::Dlq { common, .. } => (common, "DLQ redrive", false),
        What::Keys {
            common, rebuild, ..
        } => (common, "replay of keys", rebuild.reprocess),
        What::Backfill {
            common, rebuild, ..
        } => (common, "backfill", rebuild.reprocess),
    };
    // One generation for the whole command, later than any before it: a
    // rebuild replaces what an earlier one committed, never the reverse.
    let replay = if reprocess {
        let generation = u64::try_from(Utc::now().timestamp_millis())
            .context("the clock is before 1970: no generation to stamp")?;
        Replay::reprocess(generation)
    } else {
        Replay::redrive()
    };
    let target = Target::open(&common.target).await?;
    let places = target.stage(&common.stage)?;
    let mut dlq_entries: Vec<DlqEntry> = Vec::new();
    let mut notes = Vec::new();
    let mut items = match &args.what {
        What::Dlq {
            kinds,
            since,
            until,
            ..
        } => {
            let since = since.as_deref().map(parse_time).transpose()?;
            let until = until.as_deref().map(parse_time).transpose()?;
            // Held (hidden from other readers) long enough for a rate-limited
            // redrive and the wait for its results, as SQS allows (12 h at
            // most); released at once when not selected, deleted or released
            // once the results are known.
            let hold = Duration::from_secs(900u64.saturating_add(common.wait).min(43_200));
            let all = target.dlq_read(&common.stage, hold).await?;
            let (selected, skipped): (Vec<_>, Vec<_>) = all
                .into_iter()
                .partition(|e| matches(&e.letter, kinds, since, until));
            if !skipped.is_empty() {
                target
                    .dlq_release(&common.stage, &skipped.iter().collect::<Vec<_>>())
                    .await?;
                notes.push(format!(
                    "{} message(s) in the DLQ did not match the filters and stay there",
                    skipped.len()
                ));
            }
            dlq_entries = selected;
            let mut items = Vec::new();
            for (i, e) in dlq_entries.iter().enumerate() {
                items.extend(items_of_letter(&e.letter, i));
            }
            items
        }
        What::Keys { keys, .. } => {
            let mut items = Vec::new();
            for k in keys {
                let (bucket, key) = places.object(k)?;
                match target.store().head(&bucket, &key).await {
                    Ok(Some(meta)) => items.push(Item::for_object(object_of(&meta), None)),
                    Ok(None) => items.push(Item {
                        label: format!("s3://{bucket}/{key}"),
                        object: None,
                        payload: Value::Null,
                        dlq: None,
                        outcome: Some(Outcome::Missing),
                        sent_at: None,
                        replay: Replay::default(),
                    }),
                    Err(e) => return Err(e).with_context(|| format!("s3://{bucket}/{key}")),
                }
            }
            items
        }
        What::Backfill { prefix, .. } => {
            let loc = match prefix {
                Some(p) => Location::parse("--prefix", p)?,
                None => places.input.clone(),
            };
            if !places.input.contains(&loc.bucket, &loc.prefix) {
                bail!(
                    "s3://{}/{} is not under stage {}'s input s3://{}/{}",
                    loc.bucket,
                    loc.prefix,
                    places.name,
                    places.input.bucket,
                    places.input.prefix
                );
            }
            let listed = target.store().list(&loc.bucket, &loc.prefix).await?;
            listed
                .iter()
                .filter(|m| !is_internal_key(&m.key))
                .map(|m| Item::for_object(object_of(m), None))
                .collect()
        }
    };

    let progress = progress_bar(items.len() as u64, common.json);
    let mut limiter = common
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r)));
    let mut local_outputs = VecDeque::new();
    for item in items.iter_mut() {
        progress.set_message(item.label.clone());
        if item.outcome.is_none() {
            if let Some(done) = precheck(&target, &places, item, replay.or(item.replay)).await? {
                item.outcome = Some(done);
            } else if common.dry_run {
                item.outcome = Some(Outcome::WouldReplay);
            } else {
                if let Some(l) = limiter.as_mut() {
                    l.tick().await;
                }
                item.sent_at = Some(Utc::now());
                item.outcome =
                    deliver(&target, &common.stage, item, replay, &mut local_outputs).await?;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    #[cfg(feature = "aws")]
    if let Target::Aws(_) = &target {
        if common.wait > 0 && !common.dry_run {
            await_results(
                &target,
                &places,
                &mut items,
                replay,
                Duration::from_secs(common.wait),
            )
            .await?;
        }
    }

    // Only now are the outcomes known (on a deployment, after the wait):
    // delete the DLQ messages whose inputs settled, release the rest.
    let actions = dlq_actions(dlq_entries.len(), &items, common.dry_run);
    if !dlq_entries.is_empty() {
        let (delete, keep): (Vec<_>, Vec<_>) = dlq_entries
            .iter()
            .zip(&actions)
            .partition(|(_, a)| **a == DlqAction::Delete);
        let delete: Vec<&DlqEntry> = delete.into_iter().map(|(e, _)| e).collect();
        let keep: Vec<&DlqEntry> = keep.into_iter().map(|(e, _)| e).collect();
        target.dlq_ack(&common.stage, &delete).await?;
        target.dlq_release(&common.stage, &keep).await?;
        if !common.dry_run && !keep.is_empty() {
            notes.push(format!(
                "{} redriven DLQ message(s) not settled stay in the DLQ; {} settled and deleted",
                keep.len(),
                delete.len()
            ));
        }
    }

    if let Target::Local(l) = &target {
        // The replayed outputs flow on through the pipeline, as S3 events would.
        let downstream = l.pipeline.cascade(local_outputs).await?;
        let processed: u64 = downstream.values().map(|s| s.processed).sum();
        if processed > 0 {
            notes.push(format!(
                "downstream: {processed} object(s) processed by the following stages"
            ));
        }
    }

    report(&target, title, common, &items, &actions, &notes);
    Ok(
        if items
            .iter()
            .all(|i| i.outcome.as_ref().is_some_and(Outcome::ok))
        {
            ExitCode::SUCCESS
        } else {
            // Distinct from 1 (the command itself failed): it ran, and some
            // objects failed again, are missing, or are still pending.
            ExitCode::from(3)
        },
    )
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Drawn on stderr only when it is a terminal.
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {wide_msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Whether a dead letter passes the filters.
fn matches(
    letter: &DeadLetter,
    kinds: &[String],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    let kind_ok = kinds.is_empty() || kinds.iter().any(|k| *k == letter.kind());
    let time = letter.time();
    let since_ok = since.is_none_or(|s| time.is_some_and(|t| t >= s));
    let until_ok = until.is_none_or(|u| time.is_some_and(|t| t < u));
    kind_ok && since_ok && until_ok
}

/// The objects a dead letter names, as replay items; an event naming none
/// (it could not be decoded) is replayed as it was.
fn items_of_letter(letter: &DeadLetter, index: usize) -> Vec<Item> {
    match letter {
        DeadLetter::Envelope(e) => match &e.source {
            Some(s) => {
                // The first failure is the closest record of when it landed.
                let mut o = object_of_source(s);
                o.event_time = Some(e.first_seen);
                vec![Item::for_object(o, Some(index))]
            }
            None => vec![opaque_item(original_event(e), index)],
        },
        DeadLetter::Raw {
            event, reprocess, ..
        } => {
            // A rebuild that ran out of receives is redriven as that rebuild.
            let replay = reprocess.map(Replay::reprocess).unwrap_or_default();
            match trigger::decode(event).and_then(|d| d.into_objects()) {
                Ok(objects) if !objects.is_empty() => objects
                    .into_iter()
                    .map(|o| Item {
                        replay,
                        ..Item::for_object(o, Some(index))
                    })
                    .collect(),
                _ => vec![opaque_item(event.clone(), index)],
            }
        }
    }
}

fn opaque_item(payload: Value, index: usize) -> Item {
    Item {
        label: format!("DLQ message {} (names no object)", index + 1),
        object: None,
        payload,
        dlq: Some(index),
        outcome: None,
        sent_at: None,
        replay: Replay::default(),
    }
}

/// The event an envelope was made for: the body of the SQS record it keeps,
/// or the direct payload.
fn original_event(e: &Envelope) -> Value {
    if e.event.get("eventSource").and_then(Value::as_str) == Some("aws:sqs") {
        if let Some(body) = e.event.get("body").and_then(Value::as_str) {
            if let Ok(v) = serde_json::from_str(body) {
                return v;
            }
        }
    }
    e.event.clone()
}

fn object_of_source(s: &SourceIdentity) -> ObjectRef {
    let mut o = ObjectRef::new(&s.bucket, &s.key);
    o.etag = s.etag.clone();
    o.version_id = s.version_id.clone();
    o.sequencer = s.sequencer.clone();
    o
}

fn object_of(m: &ObjectMeta) -> ObjectRef {
    let mut o = ObjectRef::new(&m.bucket, &m.key);
    o.etag = Some(m.etag.clone());
    o.version_id = m.version_id.clone();
    o.size = Some(m.size);
    o.event_time = m.last_modified;
    o
}

/// What the stage's manifest says of the item's object version, if it is
/// already settled: done, or superseded by a newer version.
/// What is known of an item before (and, on a deployment, after) it is
/// sent: already committed (for a rebuild: as its generation or a later
/// one), stale, or worth sending (`None`).
async fn precheck(
    target: &Target,
    places: &StagePlaces,
    item: &Item,
    replay: Replay,
) -> anyhow::Result<Option<Outcome>> {
    let Some(source) = item
        .object
        .as_ref()
        .map(|o| SourceIdentity::from_event(o, None))
    else {
        return Ok(None);
    };
    if source.etag.is_none() {
        return Ok(None);
    }
    let store = target.store();
    let ledger = sluice::commit::Ledger::new(
        store.clone(),
        &places.output.bucket,
        &places.output.prefix,
        &places.name,
    );
    let manifest = ledger
        .read(&source)
        .await
        .with_context(|| format!("checking the manifest of {}", item.label))?;
    if let Some((m, _)) = &manifest {
        if m.state == sluice::commit::ManifestState::Committed
            && m.source.same_content(&source)
            && m.source.generation >= replay.reprocess.unwrap_or(0)
        {
            return Ok(Some(Outcome::Already));
        }
    }
    // Not committed: stale if the object has moved on to another version
    // (the runner would say so too), else worth sending.
    let now = store
        .head(&source.bucket, &source.key)
        .await
        .with_context(|| format!("looking up {}", item.label))?;
    let current = now.map(|m| {
        SourceIdentity::from_event(
            &sluice::ObjectRef::new(&source.bucket, &source.key),
            Some(&m),
        )
    });
    Ok(match current {
        Some(c) if !c.same_content(&source) => Some(Outcome::Stale),
        _ => None,
    })
}

/// Deliver one item: in process locally (the outcome is known at once), to
/// the stage's queue on a deployment (known later).
async fn deliver(
    target: &Target,
    stage: &str,
    item: &Item,
    replay: Replay,
    local_outputs: &mut VecDeque<ObjectRef>,
) -> anyhow::Result<Option<Outcome>> {
    match target {
        Target::Local(l) => {
            let replay = replay.or(item.replay);
            let report = l.pipeline.replay(stage, &item.payload, replay).await?;
            // One object per item: its outcome is the item's.
            let outcome = match report.outcomes.first().map(|(_, o)| o) {
                Some(ObjectOutcome::Processed { .. }) => Outcome::New,
                Some(ObjectOutcome::AlreadyProcessed) => Outcome::Already,
                Some(
                    ObjectOutcome::Stale(_)
                    | ObjectOutcome::Skipped(_)
                    | ObjectOutcome::Retracted(_),
                )
                | None => Outcome::Stale,
                // A new envelope is in the DLQ.
                Some(ObjectOutcome::DeadLettered(e)) => Outcome::FailedAgain(e.to_string()),
                // Left for a redelivery that, locally, nothing makes.
                Some(ObjectOutcome::Failed(e)) => Outcome::Unsettled(e.to_string()),
                Some(ObjectOutcome::AlreadyDeadLettered) => Outcome::Unsettled(
                    "already dead-lettered with this code version; not tried again".into(),
                ),
                // Not started for lack of time (a local redrive has no
                // deadline, so this does not happen): not settled.
                Some(ObjectOutcome::Deferred { .. }) => {
                    Outcome::Unsettled("deferred: too little time left".into())
                }
            };
            local_outputs.extend(l.pipeline.drain_events());
            Ok(Some(outcome))
        }
        #[cfg(feature = "aws")]
        Target::Aws(a) => {
            let url = a.queue_url(stage)?;
            let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("sluice replay")
                .build()
                .context("building the redrive attribute")?;
            let mut send = a
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(item.payload.to_string())
                .message_attributes(REDRIVE_ATTRIBUTE, attr);
            if let Some(generation) = replay.or(item.replay).reprocess {
                let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(generation.to_string())
                    .build()
                    .context("building the reprocess attribute")?;
                send = send.message_attributes(REPROCESS_ATTRIBUTE, attr);
            }
            send.send()
                .await
                .with_context(|| format!("sending {} to {url}", item.label))?;
            Ok(if item.object.is_some() {
                None
            } else {
                Some(Outcome::Sent)
            })
        }
    }
}

/// Wait until every sent object has a manifest (new) or a dead-letter marker
/// written after it was sent (failed again), or the time is up (pending).
async fn await_results(
    target: &Target,
    places: &StagePlaces,
    items: &mut [Item],
    replay: Replay,
    wait: Duration,
) -> anyhow::Result<()> {
    let store = target.store();
    let deadline = Instant::now() + wait;
    loop {
        let mut waiting = 0;
        for item in items.iter_mut().filter(|i| i.outcome.is_none()) {
            let Some(obj) = &item.object else { continue };
            let source = SourceIdentity::from_event(obj, None);
            match precheck(target, places, item, replay.or(item.replay)).await? {
                Some(Outcome::Already) => item.outcome = Some(Outcome::New),
                Some(o) => item.outcome = Some(o),
                None => {
                    let marker =
                        dead_letter_marker_key_in(&places.output.prefix, &places.name, &source);
                    let failed = store
                        .head(&places.output.bucket, &marker)
                        .await?
                        .and_then(|m| m.last_modified)
                        .zip(item.sent_at)
                        // Second-granular S3 timestamps: allow the send's second.
                        .is_some_and(|(modified, sent)| {
                            modified >= sent - chrono::Duration::seconds(1)
                        });
                    if failed {
                        let reason = store
                            .get_bytes(&places.output.bucket, &marker)
                            .await
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            .and_then(|v| {
                                v.get("message").and_then(Value::as_str).map(String::from)
                            })
                            .unwrap_or_else(|| "dead-lettered again".into());
                        item.outcome = Some(Outcome::FailedAgain(reason));
                    } else {
                        waiting += 1;
                    }
                }
            }
        }
        if waiting == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for item in items.iter_mut().filter(|i| i.outcome.is_none()) {
        item.outcome = Some(Outcome::Pending);
    }
    Ok(())
}

const ORDER: [&str; 9] = [
    "new",
    "already processed",
    "stale",
    "failed again",
    "unsettled",
    "pending",
    "sent",
    "would replay",
    "missing",
];

fn report(
    target: &Target,
    title: &str,
    common: &Common,
    items: &[Item],
    actions: &[DlqAction],
    notes: &[String],
) {
    let count = |label: &str| {
        items
            .iter()
            .filter(|i| i.outcome.as_ref().is_some_and(|o| o.label() == label))
            .count()
    };
    if common.json {
        let mut counts = serde_json::Map::new();
        for label in ORDER {
            counts.insert(label.replace(' ', "_"), json!(count(label)));
        }
        let objects: Vec<Value> = items
            .iter()
            .map(|i| {
                let o = i.outcome.clone().unwrap_or(Outcome::Pending);
                let reason = match &o {
                    Outcome::FailedAgain(r) | Outcome::Unsettled(r) => Some(r.clone()),
                    _ => None,
                };
                let dlq = i.dlq.and_then(|m| actions.get(m)).map(|a| a.label());
                json!({"object": i.label, "outcome": o.label(), "reason": reason, "dlq": dlq})
            })
            .collect();
        let out = json!({"stage": common.stage, "mode": title, "dry_run": common.dry_run,
            "counts": counts, "objects": objects, "notes": notes});
        println!("{out}");
        return;
    }
    println!(
        "{title} for stage {} on the {}{}",
        common.stage,
        target.describe(),
        if common.dry_run { " (dry run)" } else { "" }
    );
    for label in ORDER {
        let n = count(label);
        if n > 0 || matches!(label, "new" | "already processed" | "failed again") {
            println!("  {label:<18} {n:>6}");
        }
    }
    for item in items {
        match &item.outcome {
            Some(Outcome::FailedAgain(r)) => println!("  failed again: {}: {r}", item.label),
            Some(Outcome::Unsettled(r)) => println!(
                "  unsettled: {}: {r} (neither committed nor dead-lettered again; replay it again)",
                item.label
            ),
            Some(Outcome::Missing) => println!("  missing: {} does not exist", item.label),
            Some(Outcome::Pending) => println!(
                "  pending: {} (not finished within --wait; see `sluice status`)",
                item.label
            ),
            Some(Outcome::WouldReplay) => println!("  would replay: {}", item.label),
            _ => {}
        }
    }
    for n in notes {
        println!("  note: {n}");
    }
}

/// RFC 3339, or an age before now: `90s`, `30m`, `2h`, `7d`.
fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is neither RFC 3339 nor an age like 30m, 2h, 7d"))?;
    let age = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => bail!("{s:?} is neither RFC 3339 nor an age like 30m, 2h, 7d"),
    };
    Ok(Utc::now() - age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dlq_item(message: usize, outcome: Option<Outcome>) -> Item {
        let mut it = Item::for_object(ObjectRef::new("landing", "raw/trips/a.csv"), Some(message));
        it.outcome = outcome;
        it
    }

    /// Which redriven DLQ messages leave the DLQ: those whose inputs settled
    /// (committed, superseded, dead-lettered again with a new envelope), and
    /// only those; on SQS the rest are released, visible again at once.
    #[test]
    fn a_settled_redrive_is_deleted_from_the_dlq_not_released() {
        use DlqAction::{Delete, Release};
        let why = || "boom".to_string();
        let table: Vec<(&str, Vec<Option<Outcome>>, bool, DlqAction)> = vec![
            (
                "committed by the redrive",
                vec![Some(Outcome::New)],
                false,
                Delete,
            ),
            (
                "found committed",
                vec![Some(Outcome::Already)],
                false,
                Delete,
            ),
            ("superseded", vec![Some(Outcome::Stale)], false, Delete),
            (
                "dead-lettered again (a new envelope)",
                vec![Some(Outcome::FailedAgain(why()))],
                false,
                Delete,
            ),
            (
                "names no object, handed to the queue",
                vec![Some(Outcome::Sent)],
                false,
                Delete,
            ),
            (
                "a transient failure, nothing recorded",
                vec![Some(Outcome::Unsettled(why()))],
                false,
                Release,
            ),
            (
                "not settled within --wait",
                vec![Some(Outcome::Pending)],
                false,
                Release,
            ),
            (
                "sent, not waited for (--wait 0)",
                vec![None],
                false,
                Release,
            ),
            ("missing", vec![Some(Outcome::Missing)], false, Release),
            ("dry run", vec![Some(Outcome::WouldReplay)], true, Release),
            (
                "dry run, found committed",
                vec![Some(Outcome::Already)],
                true,
                Release,
            ),
            (
                "two objects, both settled",
                vec![Some(Outcome::New), Some(Outcome::Already)],
                false,
                Delete,
            ),
            (
                "two objects, one pending",
                vec![Some(Outcome::New), Some(Outcome::Pending)],
                false,
                Release,
            ),
            ("no object at all", vec![], false, Release),
        ];
        for (case, outcomes, dry_run, want) in table {
            // The message under test is number 1, between two settled ones.
            let mut items = vec![dlq_item(0, Some(Outcome::New))];
            items.extend(outcomes.into_iter().map(|o| dlq_item(1, o)));
            items.push(dlq_item(2, Some(Outcome::New)));
            let got = dlq_actions(3, &items, dry_run);
            let neighbour = if dry_run { Release } else { Delete };
            assert_eq!(got, vec![neighbour, want, neighbour], "{case}");
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_ages() {
        let t = parse_time("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00+00:00");
        let two_h = parse_time("2h").unwrap();
        let age = Utc::now() - two_h;
        assert!(
            age >= chrono::Duration::hours(2)
                && age < chrono::Duration::hours(2) + chrono::Duration::minutes(1)
        );
        for bad in ["", "2w", "h", "yesterday"] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(e.contains("neither RFC 3339"), "{bad}: {e}");
        }
    }

    fn letter(kind: sluice::error::ErrorKind, at: &str) -> DeadLetter {
        let err = sluice::error::Error::other(kind, "boom", None);
        let mut e = Envelope::new("ingest", None, &err, 1, None, None, Value::Null);
        e.last_seen = parse_time(at).unwrap();
        DeadLetter::Envelope(Box::new(e))
    }

    #[test]
    fn filters_by_kind_and_time() {
        use sluice::error::ErrorKind::*;
        let l = letter(InvalidInput, "2026-11-22T10:00:00Z");
        let t = |s| Some(parse_time(s).unwrap());
        assert!(matches(&l, &[], None, None));
        assert!(matches(&l, &["invalid_input".into()], None, None));
        assert!(!matches(&l, &["not_found".into()], None, None));
        assert!(matches(&l, &[], t("2026-11-22T10:00:00Z"), None));
        assert!(!matches(&l, &[], t("2026-11-22T10:00:01Z"), None));
        assert!(!matches(&l, &[], None, t("2026-11-22T10:00:00Z")));
        assert!(matches(&l, &[], None, t("2026-11-22T10:00:01Z")));
        let raw = DeadLetter::Raw {
            event: json!({}),
            sent: None,
            receive_count: 3,
            reprocess: None,
        };
        assert!(matches(&raw, &["retries_exhausted".into()], None, None));
        assert!(
            !matches(&raw, &[], t("1d"), None),
            "no time: not after a bound"
        );
    }

    #[test]
    fn letters_become_items_for_their_objects() {
        // An envelope naming its source replays exactly that version.
        let err = sluice::error::Error::other(sluice::error::ErrorKind::InvalidInput, "x", None);
        let source = SourceIdentity {
            bucket: "landing".into(),
            key: "raw/trips/a b.csv".into(),
            etag: Some("e1".into()),
            version_id: Some("v1".into()),
            sequencer: Some("s1".into()),
            generation: 0,
        };
        let e = Envelope::new("ingest", Some(source), &err, 1, None, None, json!({"x": 1}));
        let items = items_of_letter(&DeadLetter::Envelope(Box::new(e)), 3);
        assert_eq!(items.len(), 1);
        let o = items[0].object.as_ref().unwrap();
        assert_eq!(
            (o.key.as_str(), o.etag.as_deref()),
            ("raw/trips/a b.csv", Some("e1"))
        );
        assert_eq!(items[0].dlq, Some(3));
        let decoded = trigger::decode(&items[0].payload)
            .unwrap()
            .into_objects()
            .unwrap();
        assert_eq!(
            decoded[0].key, "raw/trips/a b.csv",
            "the key survives encoding"
        );

        // A raw SQS-redriven EventBridge event: one item per object.
        let raw: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../events/eventbridge-object-created.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let items = items_of_letter(
            &DeadLetter::Raw {
                event: raw.clone(),
                sent: None,
                receive_count: 5,
                reprocess: None,
            },
            0,
        );
        assert_eq!(items.len(), 1);
        assert!(items[0].object.is_some());
        assert_eq!(items[0].replay, Replay::default());
        // A rebuild that ran out of receives is redriven as that rebuild.
        let items = items_of_letter(
            &DeadLetter::Raw {
                event: raw,
                sent: None,
                receive_count: 5,
                reprocess: Some(1_764_590_000_123),
            },
            0,
        );
        assert_eq!(items[0].replay, Replay::reprocess(1_764_590_000_123));

        // An envelope for an event that named nothing is replayed as it was.
        let e = Envelope::new(
            "ingest",
            None,
            &err,
            1,
            None,
            None,
            json!({"eventSource": "aws:sqs", "body": "{\"junk\":true}"}),
        );
        let items = items_of_letter(&DeadLetter::Envelope(Box::new(e)), 0);
        assert_eq!(items[0].payload, json!({"junk": true}));
        assert!(items[0].object.is_none());
    }
}
