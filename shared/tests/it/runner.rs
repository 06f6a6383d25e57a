//! The stage runner, exercised end to end in memory with a small test stage:
//! decoding, idempotency, failure routing, partial batch responses, panics,
//! retries, replacement by newer versions, the count balance check, and
//! batches that stop starting objects near the Lambda deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use sluice::config::{Config, RawConfig};
use sluice::dlq::MemoryDeadLetter;
use sluice::error::{Error, ErrorKind};
use sluice::lineage::keys;
use sluice::runner::{manifest_key, ObjectOutcome};
use sluice::store::{MemoryStore, Metadata, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::RecordingMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Counts, ObjectContext, Runner, Runtime, Stage};

/// Copies `.txt` inputs upper-cased, quarantining lines containing BAD.
/// Inputs starting with CORRUPT, PANIC or UNBALANCED misbehave on purpose;
/// an input starting with WAIT writes its outputs, then waits for `release`
/// before returning (a version still in flight); inputs starting with SLOW take [`SLOW`] (tokio time, so paused in tests
/// that pause it). An input starting with LATE waits for `release` before
/// writing, then fails once with a transient error (a writer of generation 0
/// overtaken by a rebuild, whose retry follows). Every key the stage starts
/// on is recorded.
#[derive(Default)]
struct CopyStage {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    started: Arc<Mutex<Vec<String>>>,
    late_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a SLOW input takes.
const SLOW: Duration = Duration::from_secs(2);

#[async_trait]
impl Stage for CopyStage {
    fn name(&self) -> &str {
        "copy"
    }

    fn accepts(&self, key: &str) -> bool {
        key.ends_with(".txt")
    }

    async fn process(&self, ctx: &mut ObjectContext) -> sluice::Result<Counts> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ctx.object.key.clone());
        let body = ctx.open_input().await?.bytes().await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.starts_with("SLOW") {
            tokio::time::sleep(SLOW).await;
        }
        let late = text.starts_with("LATE")
            && ctx.lineage.source.generation == 0
            && !self
                .late_failed
                .swap(true, std::sync::atomic::Ordering::SeqCst);
        if late {
            self.reached.notify_one();
            self.release.notified().await;
        }
        if text.starts_with("CORRUPT") {
            return Err(Error::invalid_input(ctx.location(), "corrupt header"));
        }
        if text.starts_with("PANIC") {
            panic!("boom in the stage");
        }
        if text.starts_with("UNBALANCED") {
            return Ok(Counts {
                rows_in: 2,
                rows_out: 1,
                ..Counts::default()
            });
        }
        let (bad, good): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.contains("BAD"));
        let id = ctx.lineage.source.output_id();
        let out = ctx.config.output.clone();
        let out_body = Bytes::from(good.join("\n").to_uppercase());
        let bytes_out = out_body.len() as u64;
        ctx.write(
            &out.bucket,
            &format!("{}copied/{id}.txt", out.prefix),
            out_body,
            Some("text/plain"),
            &Metadata::new(),
        )
        .await?;
        if !bad.is_empty() {
            let q = ctx.config.quarantine.clone();
            ctx.write(
                &q.bucket,
                &format!("{}{id}.txt", q.prefix),
                Bytes::from(bad.join("\n")),
                None,
                &Metadata::new(),
            )
            .await?;
        }
        if late {
            return Err(Error::other(
                ErrorKind::Transient,
                "connection reset (the test's)",
                None,
            ));
        }
        // A rebuild (generation > 0) of a WAIT input does not wait.
        if text.starts_with("WAIT") && ctx.lineage.source.generation == 0 {
            self.reached.notify_one();
            self.release.notified().await;
        }
        Ok(Counts {
            rows_in: (good.len() + bad.len()) as u64,
            rows_out: good.len() as u64,
            rows_quarantined: bad.len() as u64,
            bytes_in: body.len() as u64,
            bytes_out,
        })
    }
}

struct Harness {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    store: MemoryStore,
    dlq: MemoryDeadLetter,
    metrics: RecordingMetrics,
    started: Arc<Mutex<Vec<String>>>,
    runner: Runner<CopyStage>,
}

fn harness() -> Harness {
    let store = MemoryStore::new();
    let dlq = MemoryDeadLetter::new();
    let metrics = RecordingMetrics::new();
    let config = Config::from_raw(
        "copy",
        RawConfig::from_vars([
            ("SLUICE_INPUT", "s3://landing/raw/"),
            ("SLUICE_OUTPUT", "s3://out-bucket/"),
            ("SLUICE_DLQ", "file:/unused"),
            ("SLUICE_RETRY_MAX_ATTEMPTS", "3"),
            ("SLUICE_RETRY_BASE_DELAY_MS", "1"),
            ("SLUICE_RETRY_MAX_DELAY_MS", "2"),
            ("SLUICE_METRICS", "off"),
        ])
        .unwrap(),
    )
    .unwrap();
    let rt = Runtime {
        config: Arc::new(config),
        store: Arc::new(store.clone()),
        dlq: Arc::new(dlq.clone()),
        metrics: Arc::new(metrics.clone()),
    };
    let stage = CopyStage::default();
    Harness {
        reached: stage.reached.clone(),
        release: stage.release.clone(),
        store,
        dlq,
        metrics,
        started: stage.started.clone(),
        runner: Runner::new(rt, stage),
    }
}

impl Harness {
    /// Put an input and return the object reference its S3 event would carry.
    async fn land(&self, key: &str, body: &str) -> ObjectRef {
        let r = self
            .store
            .put(
                "landing",
                key,
                Bytes::from(body.to_string()),
                PutOptions::new(PutMode::Overwrite),
            )
            .await
            .unwrap();
        let mut o = ObjectRef::new("landing", key);
        o.etag = Some(r.etag);
        o.sequencer = r.sequencer;
        o.size = Some(body.len() as u64);
        o
    }

    async fn invoke(&self, payload: Value) -> sluice::runner::InvocationReport {
        self.runner.handle(&payload, None).await.unwrap()
    }

    /// The keys the stage has started on, in order.
    fn started(&self) -> Vec<String> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn outputs(&self) -> Vec<String> {
        self.store
            .list("out-bucket", "")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }
}

fn sqs_batch(messages: &[(&str, Value)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({"messageId": id, "receiptHandle": "rh", "body": body.to_string(), "eventSource": "aws:sqs",
                   "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1705312800000"},
                   "messageAttributes": {}})
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn processes_an_object_and_stamps_lineage() {
    let h = harness();
    let key = "raw/dir with space/a+b & c é.txt";
    let obj = h.land(key, "one\ntwo BAD\nthree").await;
    let report = h.invoke(s3_notification(std::slice::from_ref(&obj))).await;
    let ObjectOutcome::Processed { counts, manifest } = &report.outcomes[0].1 else {
        panic!("{report:?}");
    };
    assert_eq!(
        (counts.rows_in, counts.rows_out, counts.rows_quarantined),
        (3, 2, 1)
    );
    let outputs = h.outputs().await;
    assert_eq!(
        outputs.len(),
        3,
        "output, quarantine, manifest: {outputs:?}"
    );
    let copied = outputs.iter().find(|k| k.starts_with("copied/")).unwrap();
    let meta = h.store.head("out-bucket", copied).await.unwrap().unwrap();
    assert_eq!(meta.metadata[keys::SOURCE_BUCKET], "landing");
    assert_eq!(
        sluice::lineage::decode_meta(&meta.metadata[keys::SOURCE_KEY]),
        key
    );
    assert_eq!(meta.metadata[keys::SOURCE_ETAG], obj.etag.clone().unwrap());
    assert_eq!(meta.metadata[keys::STAGE], "copy");
    assert_eq!(meta.metadata[keys::CORRELATION_ID], manifest.correlation_id);
    assert!(manifest.correlation_id.starts_with("sl-"));
    assert_eq!(
        &h.store.get_bytes("out-bucket", copied).await.unwrap()[..],
        b"ONE\nTHREE"
    );
    assert_eq!(manifest.outputs.len(), 2);
    assert_eq!(h.metrics.total("copy", "RowsQuarantined"), 1.0);
}

#[tokio::test]
async fn duplicate_delivery_is_a_no_op() {
    let h = harness();
    let obj = h.land("raw/x.txt", "a\nb").await;
    let event = s3_notification(std::slice::from_ref(&obj));
    h.invoke(event.clone()).await;
    let before = h.outputs().await;
    let puts = h.store.calls("put");
    let gets = h.store.calls("get");
    let report = h.invoke(event).await;
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
        "{report:?}"
    );
    assert_eq!(h.outputs().await, before);
    assert_eq!(h.store.calls("put"), puts, "no writes");
    assert_eq!(
        h.store.calls("get"),
        gets + 1,
        "only the manifest is read again, not the input"
    );
    assert_eq!(h.metrics.total("copy", "AlreadyProcessed"), 1.0);
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_is_acknowledged_twice() {
    let h = harness();
    let obj = h.land("raw/x.txt", "a\nb").await;
    let event = s3_notification(std::slice::from_ref(&obj));
    h.invoke(event.clone()).await;
    let before = h.outputs().await;
    let report = h
        .invoke(sqs_batch(&[("m-1", event.clone()), ("m-2", event)]))
        .await;
    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    assert!(
        report
            .outcomes
            .iter()
            .all(|(_, o)| matches!(o, ObjectOutcome::AlreadyProcessed)),
        "{report:?}"
    );
    assert_eq!(h.outputs().await, before);
}

#[tokio::test]
async fn sqs_batch_reports_only_retryable_failures() {
    let h = harness();
    let good = h.land("raw/good.txt", "a").await;
    let corrupt = h.land("raw/corrupt.txt", "CORRUPT data").await;
    let payload = sqs_batch(&[
        ("m-good", s3_notification(&[good])),
        ("m-corrupt", s3_notification(std::slice::from_ref(&corrupt))),
    ]);
    let report = h.invoke(payload).await;
    // A permanent failure is dead-lettered and acknowledged, not redelivered.
    assert_eq!(
        report.failed_message_ids,
        Vec::<String>::new(),
        "{report:?}"
    );
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].error.kind, ErrorKind::InvalidInput);
    assert!(
        envs[0].error.message.contains("raw/corrupt.txt"),
        "{}",
        envs[0].error.message
    );
    assert_eq!(envs[0].source.as_ref().unwrap().key, "raw/corrupt.txt");
    assert_eq!(
        envs[0].event["messageId"], "m-corrupt",
        "the original SQS record is kept"
    );
    assert_eq!(envs[0].stage, "copy");

    // Now a batch where one object keeps failing transiently.
    let h = harness();
    let good = h.land("raw/good.txt", "a").await;
    let flaky = h.land("raw/flaky.txt", "b").await;
    h.store.inject_transient_failures("head", 100);
    let only_flaky = h
        .invoke(sqs_batch(&[("m-flaky", s3_notification(&[flaky]))]))
        .await;
    assert_eq!(only_flaky.failed_message_ids, vec!["m-flaky".to_string()]);
    assert!(
        h.dlq.envelopes().is_empty(),
        "transient failures are not dead-lettered"
    );
    assert_eq!(
        h.metrics.total("copy", "Retries"),
        2.0,
        "3 attempts = 2 retries"
    );
    h.store.inject_transient_failures("head", 0);
    let ok = h
        .invoke(sqs_batch(&[("m-good", s3_notification(&[good]))]))
        .await;
    assert!(ok.failed_message_ids.is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_and_processed_exactly_once() {
    let h = harness();
    let obj = h.land("raw/retry.txt", "a\nb").await;
    h.store.inject_transient_failures("get", 2);
    let report = h.invoke(s3_notification(&[obj])).await;
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{report:?}"
    );
    assert_eq!(h.metrics.total("copy", "Retries"), 2.0);
    assert_eq!(h.metrics.total("copy", "ObjectsProcessed"), 1.0);
    assert_eq!(h.outputs().await.len(), 2, "one output and one manifest");
}

#[tokio::test]
async fn a_panic_fails_only_its_object() {
    let h = harness();
    let bad = h.land("raw/panic.txt", "PANIC now").await;
    let good = h.land("raw/fine.txt", "x").await;
    let report = h
        .invoke(sqs_batch(&[
            ("m-panic", s3_notification(&[bad])),
            ("m-fine", s3_notification(&[good])),
        ]))
        .await;
    assert!(
        report.failed_message_ids.is_empty(),
        "a panic is permanent: DLQ, not redelivery"
    );
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].error.kind, ErrorKind::Panic);
    assert!(
        envs[0].error.message.contains("boom in the stage"),
        "{}",
        envs[0].error.message
    );
    assert!(matches!(
        report.outcomes[1].1,
        ObjectOutcome::Processed { .. }
    ));
}

#[tokio::test]
async fn newer_version_replaces_and_late_old_event_is_ignored() {
    let h = harness();
    let v1 = h.land("raw/v.txt", "old").await;
    h.invoke(s3_notification(std::slice::from_ref(&v1))).await;
    let v2 = h.land("raw/v.txt", "new\nrows").await;
    let report = h.invoke(s3_notification(std::slice::from_ref(&v2))).await;
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{report:?}"
    );
    let copied: Vec<String> = h
        .outputs()
        .await
        .into_iter()
        .filter(|k| k.starts_with("copied/"))
        .collect();
    assert_eq!(copied.len(), 1, "replaced, not duplicated");
    assert_eq!(
        &h.store.get_bytes("out-bucket", &copied[0]).await.unwrap()[..],
        b"NEW\nROWS"
    );
    // The v1 event is delivered again, late.
    let late = h.invoke(s3_notification(&[v1])).await;
    assert!(
        matches!(late.outcomes[0].1, ObjectOutcome::Stale(_)),
        "{late:?}"
    );
    assert_eq!(
        &h.store.get_bytes("out-bucket", &copied[0]).await.unwrap()[..],
        b"NEW\nROWS"
    );
}

#[tokio::test]
async fn replacing_a_version_removes_outputs_it_no_longer_produces() {
    let h = harness();
    h.invoke(s3_notification(&[h.land("raw/q.txt", "ok\nBAD row").await]))
        .await;
    assert!(h
        .outputs()
        .await
        .iter()
        .any(|k| k.starts_with("_quarantine/")));
    h.invoke(s3_notification(&[h.land("raw/q.txt", "ok\nalso ok").await]))
        .await;
    let outputs = h.outputs().await;
    assert!(
        !outputs.iter().any(|k| k.starts_with("_quarantine/")),
        "stale quarantine removed: {outputs:?}"
    );
}

#[tokio::test]
async fn direct_invocation_errors_only_when_retryable() {
    let h = harness();
    let obj = h.land("raw/d.txt", "a").await;
    h.store.inject_transient_failures("head", 100);
    let err = h
        .runner
        .handle_lambda(s3_notification(std::slice::from_ref(&obj)), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    h.store.inject_transient_failures("head", 0);
    let corrupt = h.land("raw/c.txt", "CORRUPT").await;
    let ok = h
        .runner
        .handle_lambda(s3_notification(&[corrupt]), None)
        .await
        .unwrap();
    assert_eq!(ok["dead_lettered"], 1);
    assert_eq!(h.dlq.envelopes().len(), 1);
}

#[tokio::test]
async fn unrecognised_payload_is_dead_lettered_not_dropped() {
    let h = harness();
    let payload = json!({"surprise": true});
    let report = h.invoke(payload.clone()).await;
    assert!(matches!(
        report.outcomes[0].1,
        ObjectOutcome::DeadLettered(_)
    ));
    let envs = h.dlq.envelopes();
    assert_eq!(envs[0].error.kind, ErrorKind::InvalidEvent);
    assert_eq!(envs[0].event, payload);
}

#[tokio::test]
async fn keys_outside_the_input_or_internal_or_unaccepted_are_skipped() {
    let h = harness();
    let outside = h.land("elsewhere/x.txt", "a").await;
    let internal = h.land("raw/_sluice/manifests/x.txt", "a").await;
    let wrong_suffix = h.land("raw/x.csv", "a").await;
    let report = h
        .invoke(s3_notification(&[outside, internal, wrong_suffix]))
        .await;
    assert_eq!(report.outcomes.len(), 3);
    for (_, o) in &report.outcomes {
        assert!(matches!(o, ObjectOutcome::Skipped(_)), "{o:?}");
    }
    assert!(h.outputs().await.is_empty());
}

#[tokio::test]
async fn unbalanced_counts_are_a_permanent_failure() {
    let h = harness();
    let obj = h.land("raw/u.txt", "UNBALANCED").await;
    h.invoke(s3_notification(&[obj])).await;
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1);
    assert!(
        envs[0].error.message.contains("counts do not balance"),
        "{}",
        envs[0].error.message
    );
    // The failure is committed as such: no outputs, so nothing an older
    // version produced can outlive it.
    let manifest = manifest_key(&h.runner.runtime().config, &envs[0].source.clone().unwrap());
    let m: sluice::runner::Manifest =
        serde_json::from_slice(&h.store.get_bytes("out-bucket", &manifest).await.unwrap()).unwrap();
    assert_eq!(m.state, sluice::commit::ManifestState::DeadLettered);
    assert!(m.outputs.is_empty() && m.clean, "{m:?}");
    assert!(
        h.outputs().await.iter().all(|k| k.contains("_sluice/")),
        "no data output for a failure: {:?}",
        h.outputs().await
    );
}

#[tokio::test]
async fn deleted_input_is_dead_lettered_with_its_name() {
    let h = harness();
    let obj = h.land("raw/gone.txt", "a").await;
    h.store.delete("landing", "raw/gone.txt").await.unwrap();
    h.invoke(s3_notification(&[obj])).await;
    let envs = h.dlq.envelopes();
    assert_eq!(envs[0].error.kind, ErrorKind::NotFound);
    assert!(envs[0].error.message.contains("s3://landing/raw/gone.txt"));
}

#[tokio::test]
async fn redelivered_poison_file_is_dead_lettered_once_per_code_version() {
    let h = harness();
    let obj = h.land("raw/poison.txt", "CORRUPT again").await;
    let event = s3_notification(std::slice::from_ref(&obj));
    h.invoke(event.clone()).await;
    let again = h.invoke(event.clone()).await;
    assert!(
        matches!(again.outcomes[0].1, ObjectOutcome::AlreadyDeadLettered),
        "{again:?}"
    );
    assert_eq!(h.dlq.envelopes().len(), 1, "one envelope for one failure");
    // A new version of the file is a new chance.
    let fixed = h.land("raw/poison.txt", "now fine").await;
    let ok = h.invoke(s3_notification(&[fixed])).await;
    assert!(
        matches!(ok.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{ok:?}"
    );
}

#[tokio::test]
async fn a_redrive_tries_a_dead_lettered_version_again() {
    let h = harness();
    let obj = h.land("raw/poison.txt", "CORRUPT still").await;
    let event = s3_notification(std::slice::from_ref(&obj));
    h.invoke(event.clone()).await;
    assert_eq!(h.dlq.envelopes().len(), 1);
    // An explicit redrive (sluice replay, in process) is not short-circuited
    // by the dead-letter marker: the cause may have been fixed. Here it was
    // not, so the version fails again and a second envelope records it.
    let redriven = h.runner.handle_redrive(&event, None).await.unwrap();
    assert!(
        matches!(redriven.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
        "{redriven:?}"
    );
    assert_eq!(h.dlq.envelopes().len(), 2);
    // Through SQS the mark is a message attribute; without it the marker holds.
    let mut batch = sqs_batch(&[("m1", event.clone())]);
    let plain = h.invoke(batch.clone()).await;
    assert!(
        matches!(plain.outcomes[0].1, ObjectOutcome::AlreadyDeadLettered),
        "{plain:?}"
    );
    batch["Records"][0]["messageAttributes"] = json!({
        sluice::trigger::REDRIVE_ATTRIBUTE: {"stringValue": "sluice replay", "dataType": "String"}
    });
    let marked = h.invoke(batch).await;
    assert!(
        matches!(marked.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
        "{marked:?}"
    );
    assert_eq!(h.dlq.envelopes().len(), 3);
}

// --- the write protocol (shared/src/commit.rs): regression tests named after
// the defects issue 10 lists. The simulation (tests/sim) explores the rest.

impl Harness {
    /// The data outputs (not bookkeeping), with their bodies.
    async fn data(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for m in self.store.list("out-bucket", "").await.unwrap() {
            if m.key.contains("_sluice/") {
                continue;
            }
            let b = self.store.get_bytes("out-bucket", &m.key).await.unwrap();
            out.push((m.key, String::from_utf8_lossy(&b).into_owned()));
        }
        out
    }

    async fn manifest(&self, obj: &ObjectRef) -> sluice::runner::Manifest {
        let source = sluice::lineage::SourceIdentity::from_event(obj, None);
        let key = manifest_key(&self.runner.runtime().config, &source);
        serde_json::from_slice(&self.store.get_bytes("out-bucket", &key).await.unwrap()).unwrap()
    }
}

/// v1 is still in flight when v2 lands and commits; v1 then finishes.
/// Both events carry LocalStack's constant sequencer.
async fn overlap(first: &str, second: &str) -> (Harness, ObjectRef, ObjectRef) {
    let h = harness();
    let mut v1 = h.land("raw/k.txt", first).await;
    v1.sequencer = Some("01".into());
    let in_flight = h.invoke(s3_notification(std::slice::from_ref(&v1)));
    let meanwhile = async {
        h.reached.notified().await;
        let mut v2 = h.land("raw/k.txt", second).await;
        v2.sequencer = Some("01".into());
        let report = h.invoke(s3_notification(std::slice::from_ref(&v2))).await;
        h.release.notify_one();
        (v2, report)
    };
    let (late, (v2, report)) = tokio::join!(in_flight, meanwhile);
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{report:?}"
    );
    assert!(
        matches!(late.outcomes[0].1, ObjectOutcome::Stale(_)),
        "v1 must lose: {late:?}"
    );
    (h, v1, v2)
}

#[tokio::test]
async fn an_older_version_finishing_last_neither_replaces_nor_deletes_the_newer_one() {
    let (h, _, v2) = overlap("WAIT old\nBAD old", "new").await;
    let m = h.manifest(&v2).await;
    assert_eq!(
        m.source.etag, v2.etag,
        "the key stays on its newest version"
    );
    let data = h.data().await;
    assert_eq!(data.len(), 1, "only v2's output: {data:?}");
    assert_eq!(data[0].1, "NEW");
    assert_eq!(
        m.outputs.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        vec![data[0].0.clone()]
    );
}

#[tokio::test]
async fn a_late_older_version_leaves_no_orphan_outputs() {
    // v1 quarantines a line (a second output) that v2 does not produce.
    let (h, _, _) = overlap("WAIT a\nBAD a", "b").await;
    let q: Vec<_> = h.store.list("out-bucket", "_quarantine/").await.unwrap();
    assert!(q.is_empty(), "v1's quarantine output is an orphan: {q:?}");
}

#[tokio::test]
async fn a_replacement_removes_what_the_older_version_produced() {
    let h = harness();
    let v1 = h.land("raw/r.txt", "a\nBAD a").await;
    h.invoke(s3_notification(&[v1])).await;
    assert_eq!(h.data().await.len(), 2);
    let v2 = h.land("raw/r.txt", "b").await;
    h.invoke(s3_notification(std::slice::from_ref(&v2))).await;
    let data = h.data().await;
    assert_eq!(data.len(), 1, "{data:?}");
    assert_eq!(data[0].1, "B");
    assert!(h.manifest(&v2).await.clean);
}

#[tokio::test]
async fn cleanup_after_a_replacement_is_retried_until_done() {
    let h = harness();
    let v1 = h.land("raw/c.txt", "a\nBAD a").await;
    h.invoke(s3_notification(&[v1])).await;
    let v2 = h.land("raw/c.txt", "b").await;
    let ev2 = s3_notification(std::slice::from_ref(&v2));
    h.store.inject_transient_failures("delete", 1000);
    let report = h.invoke(ev2.clone()).await;
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::Failed(_)),
        "{report:?}"
    );
    let m = h.manifest(&v2).await;
    assert!(
        !m.clean && !m.pending_cleanup.is_empty(),
        "the cleanup owed is recorded: {m:?}"
    );
    h.store.inject_transient_failures("delete", 0);
    // The redelivery finds v2 committed and finishes what it owes.
    let report = h.invoke(ev2).await;
    assert!(
        matches!(report.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
        "{report:?}"
    );
    let data = h.data().await;
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(h.manifest(&v2).await.clean);
}

#[tokio::test]
async fn an_event_with_an_equal_or_no_sequencer_cannot_replace_a_newer_version() {
    let h = harness();
    let mut v1 = h.land("raw/s.txt", "one").await;
    let v1_event = {
        v1.sequencer = Some("05".into());
        v1.clone()
    };
    let mut v2 = h.land("raw/s.txt", "two").await;
    v2.sequencer = Some("05".into());
    h.invoke(s3_notification(&[v2])).await;
    // A late v1 event with the same sequencer: stale, not newer.
    let r = h.invoke(s3_notification(&[v1_event])).await;
    assert!(matches!(r.outcomes[0].1, ObjectOutcome::Stale(_)), "{r:?}");
    // A replay event with no version at all resolves to the current one.
    let replay = ObjectRef::new("landing", "raw/s.txt");
    let r = h.invoke(s3_notification(&[replay])).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
        "{r:?}"
    );
    let data = h.data().await;
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].1, "TWO");
}

#[tokio::test]
async fn a_data_key_with_an_underscore_segment_is_processed_not_skipped() {
    let h = harness();
    let obj = h.land("raw/_2024/x.txt", "a").await;
    let r = h.invoke(s3_notification(&[obj])).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{r:?}"
    );
    let internal = h.land("raw/_sluice/manifests/y.txt", "a").await;
    let r = h.invoke(s3_notification(&[internal])).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::Skipped(_)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_corrupt_reupload_removes_the_older_versions_outputs() {
    let h = harness();
    let v1 = h.land("raw/d.txt", "fine").await;
    h.invoke(s3_notification(&[v1])).await;
    let v2 = h.land("raw/d.txt", "CORRUPT").await;
    let r = h.invoke(s3_notification(std::slice::from_ref(&v2))).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
        "{r:?}"
    );
    assert!(h.data().await.is_empty(), "{:?}", h.data().await);
    assert_eq!(
        h.manifest(&v2).await.state,
        sluice::commit::ManifestState::DeadLettered
    );
}

/// A deadline `after` from now, on the clock the runner reads (tokio's,
/// which the paused tests control).
fn deadline_in(after: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + after
}

#[tokio::test(start_paused = true)]
async fn a_batch_stops_starting_objects_near_the_deadline() {
    let h = harness();
    // Six messages, each object taking 2 s (simulated); 11 s left. After the
    // first object the runner knows an object takes ~2 s and wants twice
    // that left before starting another: objects 1-4 start (11, 9, 7, 5 s
    // left), 5 and 6 would start with 3 s left and are deferred.
    let mut messages = Vec::new();
    for i in 1..=6 {
        let obj = h.land(&format!("raw/slow-{i}.txt"), "SLOW rows").await;
        messages.push((format!("m{i}"), s3_notification(&[obj])));
    }
    let batch: Vec<(&str, Value)> = messages
        .iter()
        .map(|(id, ev)| (id.as_str(), ev.clone()))
        .collect();
    let report = h
        .runner
        .handle(
            &sqs_batch(&batch),
            Some(deadline_in(Duration::from_secs(11))),
        )
        .await
        .unwrap();

    let done: Vec<String> = (1..=4).map(|i| format!("raw/slow-{i}.txt")).collect();
    assert_eq!(h.started(), done, "only the first four were started");
    assert_eq!(
        report.failed_message_ids,
        vec!["m5".to_string(), "m6".to_string()],
        "the unstarted ones go back to the queue, the done ones do not: {report:?}"
    );
    assert_eq!(h.metrics.total("copy", "ObjectsProcessed"), 4.0);
    assert_eq!(
        h.metrics.total("copy", "Failures"),
        0.0,
        "deferred is not failed"
    );
    assert!(h.dlq.envelopes().is_empty(), "nothing is dead-lettered");
    assert_eq!(h.metrics.total("copy", "ObjectsDeferred"), 2.0);
    let outcomes: Vec<(String, &ObjectOutcome)> = report
        .outcomes
        .iter()
        .map(|(o, out)| (o.as_ref().map(|o| o.key.clone()).unwrap_or_default(), out))
        .collect();
    for (key, outcome) in &outcomes[..4] {
        assert!(
            matches!(outcome, ObjectOutcome::Processed { .. }),
            "{key}: {outcome:?}"
        );
    }
    for (key, outcome) in &outcomes[4..] {
        let ObjectOutcome::Deferred { left, need } = outcome else {
            panic!("{key}: {outcome:?}");
        };
        assert_eq!(
            (*left, *need),
            (Duration::from_secs(3), 2 * SLOW),
            "{key}: decided with 3 s left, wanting twice the 2 s an object took"
        );
    }
    assert_eq!(report.summary(), json!({"processed": 4, "deferred": 2}));
    let copied = h
        .outputs()
        .await
        .into_iter()
        .filter(|k| k.starts_with("copied/"))
        .count();
    assert_eq!(copied, 4, "outputs only for the started objects");
}

#[tokio::test(start_paused = true)]
async fn a_deferred_message_is_processed_when_it_comes_back() {
    let h = harness();
    let a = h.land("raw/a.txt", "SLOW a").await;
    let b = h.land("raw/b.txt", "SLOW b").await;
    let batch = sqs_batch(&[
        ("m-a", s3_notification(std::slice::from_ref(&a))),
        ("m-b", s3_notification(std::slice::from_ref(&b))),
    ]);
    // 3 s: the first object starts (it needs only the floor), the second
    // would want 4 s and is given back.
    let first = h
        .runner
        .handle(&batch, Some(deadline_in(Duration::from_secs(3))))
        .await
        .unwrap();
    assert_eq!(first.failed_message_ids, vec!["m-b".to_string()]);
    assert_eq!(
        h.runner.object_pace().estimate(),
        Some(SLOW),
        "the runner learnt what an object takes"
    );
    // The queue redelivers the same batch (m-a was acknowledged in reality;
    // here it comes back too and is already processed).
    let again = h
        .runner
        .handle(&batch, Some(deadline_in(Duration::from_secs(60))))
        .await
        .unwrap();
    assert!(again.failed_message_ids.is_empty(), "{again:?}");
    assert!(matches!(
        again.outcomes[0].1,
        ObjectOutcome::AlreadyProcessed
    ));
    assert!(matches!(
        again.outcomes[1].1,
        ObjectOutcome::Processed { .. }
    ));
    assert_eq!(
        h.started(),
        vec!["raw/a.txt".to_string(), "raw/b.txt".to_string()],
        "each object was worked on once"
    );
    assert_eq!(h.metrics.total("copy", "Failures"), 0.0);
    assert!(h.dlq.envelopes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_direct_invocation_with_deferred_objects_fails_so_lambda_retries_it() {
    let h = harness();
    let a = h.land("raw/a.txt", "SLOW a").await;
    let b = h.land("raw/b.txt", "SLOW b").await;
    // One S3 notification with two records: no message to give back, so
    // the invocation fails (retryably) and Lambda's retry finishes the job.
    let err = h
        .runner
        .handle_lambda(
            s3_notification(&[a.clone(), b.clone()]),
            Some(deadline_in(Duration::from_secs(3))),
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("deferred 1 objects"), "{err}");
    let ok = h
        .runner
        .handle_lambda(
            s3_notification(&[a, b]),
            Some(deadline_in(Duration::from_secs(60))),
        )
        .await
        .unwrap();
    assert_eq!(ok, json!({"already_processed": 1, "processed": 1}));
}

/// Sim seed 625: a duplicate delivery of the committed version that finds a
/// newer (not yet committed) version landed must not sweep the outputs it
/// shares with the commit; the landing object is then deleted, so nothing
/// ever replaces the commit.
#[tokio::test]
async fn a_stale_duplicate_of_the_committed_version_keeps_the_commits_outputs() {
    let h = harness();
    let v1 = h.land("raw/p.txt", "a\nb").await;
    // v1 commits, but dropping its claims fails, so they are still there.
    h.store.inject_transient_failures("delete", 1000);
    let r = h.invoke(s3_notification(std::slice::from_ref(&v1))).await;
    assert!(matches!(r.outcomes[0].1, ObjectOutcome::Failed(_)), "{r:?}");
    h.store.inject_transient_failures("delete", 0);
    let committed = h.data().await;
    assert_eq!(committed.len(), 1, "{committed:?}");
    // v2 lands but its event is delayed; the late duplicate of v1 arrives.
    h.land("raw/p.txt", "c").await;
    let r = h.invoke(s3_notification(std::slice::from_ref(&v1))).await;
    assert!(matches!(r.outcomes[0].1, ObjectOutcome::Stale(_)), "{r:?}");
    // The landing object is deleted before v2 is processed: v1's commit
    // stands, and so must every output it lists.
    h.store.delete("landing", "raw/p.txt").await.unwrap();
    let m = h.manifest(&v1).await;
    assert_eq!(m.state, sluice::commit::ManifestState::Committed);
    assert_eq!(
        h.data().await,
        committed,
        "the commit lists {:?}",
        m.outputs
    );
}

/// Sim seed 247: a commit whose cleanup was interrupted and whose input was
/// then deleted still owes that cleanup: no newer version will ever take it
/// over, so the redelivery must finish it.
#[tokio::test]
async fn a_commit_whose_input_is_deleted_before_its_cleanup_still_cleans_up() {
    let h = harness();
    let v1 = h.land("raw/q.txt", "one").await;
    h.invoke(s3_notification(&[v1])).await;
    let v2 = h.land("raw/q.txt", "two").await;
    let ev2 = s3_notification(std::slice::from_ref(&v2));
    h.store.inject_transient_failures("delete", 1000);
    let r = h.invoke(ev2.clone()).await;
    assert!(matches!(r.outcomes[0].1, ObjectOutcome::Failed(_)), "{r:?}");
    assert!(!h.manifest(&v2).await.clean);
    h.store.inject_transient_failures("delete", 0);
    h.store.delete("landing", "raw/q.txt").await.unwrap();
    let r = h.invoke(ev2).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
        "{r:?}"
    );
    let data = h.data().await;
    assert_eq!(data.len(), 1, "only v2's output may remain: {data:?}");
    assert_eq!(data[0].1, "TWO");
    assert!(h.manifest(&v2).await.clean);
}

/// `sluice replay --reprocess`: the current version is rebuilt as a new
/// generation through the same commit protocol, beside (never over) what it
/// replaces, which its cleanup then removes.
#[tokio::test]
async fn a_reprocess_rebuilds_the_current_version_and_removes_what_it_replaces() {
    use sluice::trigger::Replay;
    let h = harness();
    let v1 = h.land("raw/r.txt", "a\nBAD b").await;
    h.invoke(s3_notification(std::slice::from_ref(&v1))).await;
    let before = h.outputs().await;
    // A replay event carries no version: it resolves to the current one.
    let replay = s3_notification(&[ObjectRef::new("landing", "raw/r.txt")]);
    let r = h
        .runner
        .handle_replay(&replay, None, Replay::reprocess(5))
        .await
        .unwrap();
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{r:?}"
    );
    let m = h.manifest(&v1).await;
    assert_eq!(m.source.generation, 5);
    assert!(m.clean, "{m:?}");
    let data = h.data().await;
    assert_eq!(data.len(), 2, "one output, one quarantine file: {data:?}");
    assert!(data.iter().all(|(k, _)| k.ends_with("-r5.txt")), "{data:?}");
    assert_eq!(data[1].1, "A");
    let after = h.outputs().await;
    for key in before.iter().filter(|k| !k.contains("_sluice/")) {
        assert!(
            !after.contains(key),
            "{key} survived its rebuild: {after:?}"
        );
    }
    // An ordinary duplicate event of the version is already processed.
    let r = h.invoke(s3_notification(std::slice::from_ref(&v1))).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
        "{r:?}"
    );
    // The same rebuild again is a duplicate; an earlier one arriving late is stale.
    for (generation, done) in [(5, true), (3, false)] {
        let r = h
            .runner
            .handle_replay(&replay, None, Replay::reprocess(generation))
            .await
            .unwrap();
        assert_eq!(
            matches!(r.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
            done,
            "generation {generation}: {r:?}"
        );
        assert_eq!(
            matches!(r.outcomes[0].1, ObjectOutcome::Stale(_)),
            !done,
            "generation {generation}: {r:?}"
        );
    }
    assert_eq!(h.outputs().await, after);
}

/// Land `body` at `key` and deliver it; once the stage has reached its
/// wait (a WAIT or LATE input, generation 0), rebuild it as `generation`,
/// then let the first delivery go on. Checks that the rebuild committed and
/// left only its own output; returns the first delivery's outcome.
async fn overtaken_by_a_rebuild(key: &str, body: &str, generation: u64) -> ObjectOutcome {
    use sluice::trigger::Replay;
    let h = harness();
    let v1 = h.land(key, body).await;
    let in_flight = h.invoke(s3_notification(std::slice::from_ref(&v1)));
    let meanwhile = async {
        h.reached.notified().await;
        let replay = s3_notification(&[ObjectRef::new("landing", key)]);
        let r = h
            .runner
            .handle_replay(&replay, None, Replay::reprocess(generation))
            .await
            .unwrap();
        h.release.notify_one();
        r
    };
    let (mut late, rebuilt) = tokio::join!(in_flight, meanwhile);
    assert!(
        matches!(rebuilt.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{rebuilt:?}"
    );
    let data = h.data().await;
    assert_eq!(data.len(), 1, "only the rebuild's output is left: {data:?}");
    assert!(
        data[0].0.ends_with(&format!("-r{generation}.txt")),
        "{data:?}"
    );
    assert_eq!(h.manifest(&v1).await.source.generation, generation);
    late.outcomes.remove(0).1
}

/// A first processing still in flight when a rebuild of the same version
/// commits loses, and removes what it wrote.
#[tokio::test]
async fn a_first_processing_overtaken_by_a_rebuild_leaves_nothing_behind() {
    let late = overtaken_by_a_rebuild("raw/w.txt", "WAIT x", 9).await;
    assert!(matches!(late, ObjectOutcome::Stale(_)), "{late:?}");
}

/// A generation-0 attempt that writes only after a rebuild has committed and
/// cleaned up, and then fails transiently: its retry finds the rebuild's
/// commit (already processed) and must still remove what the failed attempt
/// wrote (simulation seed 3006 left such a profile behind).
#[tokio::test]
async fn an_attempt_that_writes_after_a_rebuild_committed_is_swept_by_its_retry() {
    let late = overtaken_by_a_rebuild("raw/late.txt", "LATE x", 7).await;
    assert!(matches!(late, ObjectOutcome::AlreadyProcessed), "{late:?}");
}

/// Through SQS a rebuild is the `sluice-reprocess` attribute; a value that
/// is not a generation fails that message alone, into the DLQ, by name.
#[tokio::test]
async fn a_reprocess_attribute_rebuilds_and_a_bad_one_is_dead_lettered_by_name() {
    let h = harness();
    let obj = h.land("raw/attr.txt", "x").await;
    h.invoke(s3_notification(std::slice::from_ref(&obj))).await;
    let replay = s3_notification(&[ObjectRef::new("landing", "raw/attr.txt")]);
    let mut batch = sqs_batch(&[("good", replay.clone()), ("bad", replay)]);
    batch["Records"][0]["messageAttributes"] = json!({
        sluice::trigger::REPROCESS_ATTRIBUTE: {"stringValue": "77", "dataType": "Number"}
    });
    batch["Records"][1]["messageAttributes"] = json!({
        sluice::trigger::REPROCESS_ATTRIBUTE: {"stringValue": "soon", "dataType": "String"}
    });
    let r = h.invoke(batch).await;
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{r:?}"
    );
    assert!(
        matches!(r.outcomes[1].1, ObjectOutcome::DeadLettered(_)),
        "{r:?}"
    );
    assert_eq!(h.manifest(&obj).await.source.generation, 77);
    let envelopes = h.dlq.envelopes();
    assert_eq!(envelopes.len(), 1);
    let text = format!("{:?}", envelopes[0]);
    assert!(
        text.contains("sluice-reprocess") && text.contains("soon"),
        "{text}"
    );
}

/// Found by the LocalStack fault-proxy e2e: under slow S3 each invocation
/// started one object and gave the rest of its batch back; every give-back
/// used up a receive, so messages never tried reached the DLQ as
/// `retries_exhausted`. With the stage's own queue known (`SLUICE_QUEUE`),
/// a deferred message goes back as a new message (its attributes kept) and
/// is acknowledged; without one, or when the send fails, it is a batch item
/// failure as before.
#[tokio::test(start_paused = true)]
async fn a_deferred_message_is_requeued_so_it_keeps_its_receives() {
    let h = harness();
    let a = h.land("raw/a.txt", "SLOW a").await;
    let b = h.land("raw/b.txt", "SLOW b").await;
    let mut batch = sqs_batch(&[
        ("m-a", s3_notification(std::slice::from_ref(&a))),
        ("m-b", s3_notification(std::slice::from_ref(&b))),
    ]);
    batch["Records"][1]["messageAttributes"] = json!({
        sluice::trigger::REDRIVE_ATTRIBUTE: {"stringValue": "sluice replay", "dataType": "String"}
    });
    let short = || Some(deadline_in(Duration::from_secs(3)));
    h.dlq.enable_requeue(false);
    let r = h.runner.handle(&batch, short()).await.unwrap();
    assert!(r.failed_message_ids.is_empty(), "{r:?}");
    assert!(
        matches!(r.outcomes[1].1, ObjectOutcome::Deferred { .. }),
        "{r:?}"
    );
    let requeued = h.dlq.requeued();
    assert_eq!(requeued.len(), 1, "{requeued:?}");
    assert_eq!(
        Some(requeued[0].0.as_str()),
        batch["Records"][1]["body"].as_str(),
        "the same body"
    );
    assert_eq!(
        requeued[0].1,
        vec![(
            sluice::trigger::REDRIVE_ATTRIBUTE.to_string(),
            "sluice replay".to_string()
        )]
    );
    // A failing send falls back to a batch item failure.
    h.dlq.enable_requeue(true);
    let r = h.runner.handle(&batch, short()).await.unwrap();
    assert_eq!(r.failed_message_ids, vec!["m-b".to_string()], "{r:?}");
}
