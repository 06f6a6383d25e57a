//! The profile stage end to end in memory: curated Parquet in, profile JSON
//! out, through the shared runner; statistics on known data, sketches within
//! tolerance, every quality check (including the lineage chain to ingest's
//! manifest and the volume history), alerts before the profile, replays,
//! determinism and failure routing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use serde_json::{json, Value};

use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::MemoryDeadLetter;
use sluice::error::ErrorKind;
use sluice::lineage::{keys, Lineage, SourceIdentity};
use sluice::runner::{manifest_key_in, Manifest, ObjectOutcome};
use sluice::store::{MemoryStore, Metadata, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::RecordingMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Counts, Runner, Runtime};
use sluice_profile::alerts::{Alert, AlertSink, FileAlerts};
use sluice_profile::report::{CheckStatus, ProfileReport};
use sluice_profile::Profile;

const CONTRACT: &str = r#"
[dataset]
name = "rides"
version = "1.0.0"
partition = { field = "start", granularity = "day" }

[[fields]]
name = "start"
type = "timestamp"
format = "%Y-%m-%d %H:%M:%S"
nullable = false

[[fields]]
name = "distance"
type = "float"

[[fields]]
name = "fare"
type = "decimal"
precision = 10
scale = 2

[[fields]]
name = "zone"
type = "string"

[[fields]]
name = "riders"
type = "int"

[[fields]]
name = "shared"
type = "bool"

[quality]
min_rows = 1
max_quarantine_ratio = 0.2
volume_window = 3
volume_tolerance = 0.5

[quality.max_null_ratio]
riders = 0.1

[quality.mean_range]
distance = [0.5, 20.0]
"#;

const DAY_US: i64 = 86_400_000_000;
const JAN_15_US: i64 = 1_705_276_800_000_000; // 2024-01-15 00:00:00 UTC

#[derive(Clone, Default)]
struct Ride {
    start: i64,
    distance: Option<f64>,
    fare_cents: Option<i128>,
    zone: Option<String>,
    riders: Option<i64>,
    shared: Option<bool>,
}

fn ride(i: i64) -> Ride {
    Ride {
        start: JAN_15_US + i * 1_000_000,
        distance: Some(2.0),
        fare_cents: Some(1_000),
        zone: Some(format!("z{}", i % 3)),
        riders: Some(1),
        shared: Some(i % 2 == 0),
    }
}

fn curated_parquet(rides: &[Ride]) -> Bytes {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "start",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("distance", DataType::Float64, true),
        Field::new("fare", DataType::Decimal128(10, 2), true),
        Field::new("zone", DataType::Utf8, true),
        Field::new("riders", DataType::Int64, true),
        Field::new("shared", DataType::Boolean, true),
        Field::new("_record_id", DataType::Utf8, false),
        Field::new("_line", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rides.iter().map(|r| r.start))
                .with_timezone("+00:00"),
        ),
        Arc::new(Float64Array::from_iter(rides.iter().map(|r| r.distance))),
        Arc::new(
            Decimal128Array::from_iter(rides.iter().map(|r| r.fare_cents))
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        Arc::new(StringArray::from_iter(rides.iter().map(|r| r.zone.clone()))),
        Arc::new(Int64Array::from_iter(rides.iter().map(|r| r.riders))),
        Arc::new(BooleanArray::from_iter(rides.iter().map(|r| r.shared))),
        Arc::new(StringArray::from_iter_values(
            (0..rides.len()).map(|i| format!("{i:032x}")),
        )),
        Arc::new(Int64Array::from_iter_values(1..=rides.len() as i64)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf.into()
}

fn registry() -> Registry {
    Registry::from_sources([("rides.toml", CONTRACT)]).unwrap()
}

struct Harness {
    store: MemoryStore,
    dlq: MemoryDeadLetter,
    metrics: RecordingMetrics,
    alerts_path: PathBuf,
    _dir: tempfile::TempDir,
    runner: Runner<Profile>,
}

fn harness_with(profile: impl FnOnce(&Registry) -> Profile) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let alerts_path = dir.path().join("alerts/profile.jsonl");
    let store = MemoryStore::new();
    let dlq = MemoryDeadLetter::new();
    let metrics = RecordingMetrics::new();
    let alerts_var = format!("file:{}", alerts_path.display());
    let config = Config::from_raw(
        "profile",
        RawConfig::from_vars([
            ("SLUICE_INPUT", "s3://curated/"),
            ("SLUICE_OUTPUT", "s3://profiles/"),
            ("SLUICE_DLQ", "file:/unused"),
            ("SLUICE_ALERTS", alerts_var.as_str()),
            ("SLUICE_RETRY_MAX_ATTEMPTS", "2"),
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
    let profile = profile(&registry());
    Harness {
        store,
        dlq,
        metrics,
        alerts_path,
        _dir: dir,
        runner: Runner::new(rt, profile),
    }
}

fn harness() -> Harness {
    harness_with(|r| Profile::new(r).unwrap())
}

fn key_for(day: i64, id: &str) -> String {
    format!("rides/v1/dt=2024-01-{:02}/{id}.parquet", 15 + day)
}

fn profile_key(curated_key: &str) -> String {
    curated_key.replace(".parquet", ".profile.json")
}

impl Harness {
    /// Land a landed -> validated -> curated chain: the validated object and
    /// ingest's manifest (with these counts, if any), then the curated object,
    /// each stamped with the lineage of the one before.
    async fn land(&self, key: &str, body: Bytes, ingest: Option<Counts>) -> ObjectRef {
        let landing = SourceIdentity {
            bucket: "landing".into(),
            key: format!("raw/rides/{key}.csv"),
            etag: Some("landing-etag".into()),
            version_id: None,
            sequencer: Some("01".into()),
            generation: 0,
        };
        let mut producer = Metadata::new();
        producer.insert(keys::CORRELATION_ID.into(), "sl-rides-corr".into());
        let ingest_lineage =
            Lineage::for_input(landing.clone(), Some(&producer), None, "ingest", "test");
        let mut opts = PutOptions::new(PutMode::Overwrite);
        opts.metadata = ingest_lineage.metadata();
        let validated_key = key.to_string();
        let v = self
            .store
            .put(
                "validated",
                &validated_key,
                Bytes::from_static(b"validated"),
                opts,
            )
            .await
            .unwrap();
        if let Some(counts) = ingest {
            let manifest = Manifest {
                stage: "ingest".into(),
                source: landing.clone(),
                correlation_id: "sl-rides-corr".into(),
                code_version: "test".into(),
                outputs: vec![],
                counts,
                duration_ms: 1,
                processed_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
                origin_time: None,
                state: Default::default(),
                pending_cleanup: vec![],
                clean: true,
                input_stage: None,
            };
            self.store
                .put(
                    "validated",
                    &manifest_key_in("", "ingest", &landing),
                    serde_json::to_vec(&manifest).unwrap().into(),
                    PutOptions::new(PutMode::Overwrite),
                )
                .await
                .unwrap();
        }
        let validated = SourceIdentity {
            bucket: "validated".into(),
            key: validated_key,
            etag: Some(v.etag),
            version_id: None,
            sequencer: v.sequencer,
            generation: 0,
        };
        let curate_lineage = Lineage::for_input(
            validated,
            Some(&ingest_lineage.metadata()),
            None,
            "curate",
            "test",
        );
        let mut opts = PutOptions::new(PutMode::Overwrite);
        opts.metadata = curate_lineage.metadata();
        let r = self.store.put("curated", key, body, opts).await.unwrap();
        let mut o = ObjectRef::new("curated", key);
        o.etag = Some(r.etag);
        o.sequencer = r.sequencer;
        o
    }

    async fn run(&self, obj: &ObjectRef) -> ObjectOutcome {
        let mut report = self
            .runner
            .handle(&s3_notification(std::slice::from_ref(obj)), None)
            .await
            .unwrap();
        report.outcomes.remove(0).1
    }

    async fn profile_bytes(&self, curated_key: &str) -> Bytes {
        self.store
            .get_bytes("profiles", &profile_key(curated_key))
            .await
            .unwrap()
    }

    async fn profile(&self, curated_key: &str) -> ProfileReport {
        serde_json::from_slice(&self.profile_bytes(curated_key).await).unwrap()
    }

    fn alerts(&self) -> Vec<Alert> {
        FileAlerts::read_all(&self.alerts_path).unwrap()
    }
}

fn ingest_counts(rows_in: u64, quarantined: u64) -> Option<Counts> {
    Some(Counts {
        rows_in,
        rows_out: rows_in - quarantined,
        rows_quarantined: quarantined,
        ..Counts::default()
    })
}

fn processed(outcome: &ObjectOutcome) -> Counts {
    match outcome {
        ObjectOutcome::Processed { counts, .. } => *counts,
        other => panic!("not processed: {other:?}"),
    }
}

fn check<'a>(
    p: &'a ProfileReport,
    name: &str,
    column: Option<&str>,
) -> &'a sluice_profile::report::Check {
    p.checks
        .iter()
        .find(|c| c.check == name && c.column.as_deref() == column)
        .unwrap_or_else(|| panic!("no check {name} {column:?} in {:?}", p.checks))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[tokio::test]
async fn profiles_known_data_exactly() {
    let h = harness();
    let mut rides: Vec<Ride> = (0..5).map(ride).collect();
    for (r, d) in rides
        .iter_mut()
        .zip([Some(1.0), Some(2.0), Some(3.0), Some(4.0), None])
    {
        r.distance = d;
    }
    rides[1].fare_cents = Some(2_050);
    rides[2].zone = Some("a much longer zone".into());
    rides[3].zone = None;
    rides[4].shared = None;
    let key = key_for(0, "f1");
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(5, 0))
        .await;
    let counts = processed(&h.run(&obj).await);
    assert_eq!(
        (counts.rows_in, counts.rows_out, counts.rows_quarantined),
        (5, 5, 0)
    );

    let p = h.profile(&key).await;
    assert_eq!(p.dataset, "rides");
    assert_eq!(p.major, 1);
    assert_eq!(p.partition.as_deref(), Some("dt=2024-01-15"));
    assert_eq!(p.object.key, key);
    assert_eq!(p.object.etag, obj.etag.clone().unwrap());
    assert_eq!(p.correlation_id, "sl-rides-corr");
    assert_eq!(p.row_count, 5);
    let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["start", "distance", "fare", "zone", "riders", "shared"],
        "bookkeeping columns are not profiled"
    );

    let d = p.column("distance").unwrap();
    assert_eq!(d.ty, "float");
    assert_eq!((d.null_count, d.null_ratio), (1, 0.2));
    let n = d.numeric.as_ref().unwrap();
    assert_eq!(
        (n.count, n.min, n.max, n.mean),
        (4, Some(1.0), Some(4.0), Some(2.5))
    );
    assert!(
        close(n.stddev.unwrap(), (5.0f64 / 3.0).sqrt(), 1e-12),
        "sample stddev {:?}",
        n.stddev
    );
    assert_eq!(n.distinct, 4);
    let q = n.quantiles.as_ref().unwrap();
    assert!(
        q.p01 >= 1.0 && q.p99 <= 4.0 && q.p25 <= q.p50 && q.p50 <= q.p75,
        "{q:?}"
    );
    let hist = n.histogram.as_ref().unwrap();
    assert_eq!((hist.lower, hist.upper, hist.counts.len()), (1.0, 4.0, 20));
    assert_eq!(hist.counts.iter().sum::<u64>(), 4);
    assert_eq!((hist.counts[0], hist.counts[19]), (1, 1));

    let fare = p.column("fare").unwrap().numeric.as_ref().unwrap();
    assert_eq!(p.column("fare").unwrap().ty, "decimal");
    assert_eq!((fare.min, fare.max), (Some(10.0), Some(20.5)));
    assert!(close(fare.mean.unwrap(), 12.1, 1e-9));

    let start = p.column("start").unwrap();
    assert_eq!(start.ty, "timestamp");
    let s = start.numeric.as_ref().unwrap();
    assert_eq!(
        s.min,
        Some(JAN_15_US as f64),
        "timestamps as epoch microseconds"
    );
    assert_eq!(s.min_time.as_deref(), Some("2024-01-15T00:00:00Z"));
    assert_eq!(s.max_time.as_deref(), Some("2024-01-15T00:00:04Z"));

    let zone = p.column("zone").unwrap();
    let t = zone.text.as_ref().unwrap();
    assert_eq!((zone.null_count, t.count, t.distinct), (1, 4, 3));
    assert_eq!((t.min_length, t.max_length), (Some(2), Some(18)));
    let top: Vec<(&str, u64)> = t
        .top_values
        .iter()
        .map(|v| (v.value.as_str(), v.count))
        .collect();
    assert_eq!(
        top,
        vec![("z1", 2), ("a much longer zone", 1), ("z0", 1)],
        "by count, then by value"
    );

    let b = p.column("shared").unwrap();
    assert_eq!(b.ty, "bool");
    let bp = b.boolean.as_ref().unwrap();
    assert_eq!((bp.true_count, bp.false_count, b.null_count), (2, 2, 1));

    // Checks: everything within thresholds; volume skipped on the first profile.
    assert_eq!(p.status, CheckStatus::Pass);
    assert_eq!(check(&p, "min_rows", None).status, CheckStatus::Pass);
    assert_eq!(
        check(&p, "max_null_ratio", Some("riders")).status,
        CheckStatus::Pass
    );
    let mean = check(&p, "mean_range", Some("distance"));
    assert_eq!(
        (mean.status, &mean.value, &mean.threshold),
        (CheckStatus::Pass, &json!(2.5), &json!([0.5, 20.0]))
    );
    let qr = check(&p, "max_quarantine_ratio", None);
    assert_eq!((qr.status, &qr.value), (CheckStatus::Pass, &json!(0.0)));
    let vol = check(&p, "volume", None);
    assert_eq!(vol.status, CheckStatus::Skipped);
    assert!(
        vol.reason
            .as_deref()
            .unwrap()
            .contains("no earlier profiles"),
        "{vol:?}"
    );
    assert!(h.alerts().is_empty());
    assert_eq!(h.metrics.total("profile", "RowsProfiled"), 5.0);
    assert_eq!(h.metrics.total("profile", "QualityBreaches"), 0.0);
    let meta = h
        .store
        .head("profiles", &profile_key(&key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.metadata["sluice-quality-status"], "pass");
    assert_eq!(meta.metadata[keys::STAGE], "profile");
}

#[tokio::test]
async fn sketches_are_within_tolerance_on_10000_values() {
    let h = harness();
    let n = 10_000i64;
    // 1..=10000 in a scrambled order, each distinct; zones distinct too.
    let rides: Vec<Ride> = (0..n)
        .map(|i| {
            let v = (i * 7_919) % n + 1;
            Ride {
                distance: Some(v as f64),
                zone: Some(format!("zone-{v}")),
                ..ride(i)
            }
        })
        .collect();
    let key = key_for(0, "big");
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(10_000, 0))
        .await;
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    let d = p.column("distance").unwrap().numeric.clone().unwrap();
    let err = |est: u64| (est as f64 - n as f64).abs() / n as f64;
    assert!(err(d.distinct) < 0.05, "numeric distinct {}", d.distinct);
    let z = p.column("zone").unwrap().text.clone().unwrap();
    assert!(err(z.distinct) < 0.05, "text distinct {}", z.distinct);
    assert_eq!(z.top_values.len(), 10);
    assert!(z.top_values.iter().all(|v| v.count == 1));
    let q = d.quantiles.unwrap();
    for (got, want) in [
        (q.p01, 100.0),
        (q.p25, 2_500.0),
        (q.p50, 5_000.0),
        (q.p75, 7_500.0),
        (q.p99, 9_900.0),
    ] {
        assert!(
            close(got, want, 0.01 * n as f64),
            "quantile {got} vs {want}"
        );
    }
    assert!(close(d.mean.unwrap(), 5_000.5, 1e-6));
    let hist = d.histogram.unwrap();
    assert_eq!(
        hist.counts,
        vec![500; 20],
        "equal-width bins of a uniform sequence"
    );
    assert!(close(d.stddev.unwrap(), 2_886.895, 0.01));
}

#[tokio::test]
async fn breaches_raise_alerts_before_the_profile_and_only_once() {
    let h = harness();
    let rides: Vec<Ride> = (0..10)
        .map(|i| Ride {
            distance: Some(100.0),
            riders: (i % 2 == 0).then_some(1),
            ..ride(i)
        })
        .collect();
    let key = key_for(0, "bad");
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(10, 0))
        .await;
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    assert_eq!(p.status, CheckStatus::Breach);
    let alerts = h.alerts();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let nulls = alerts.iter().find(|a| a.check == "max_null_ratio").unwrap();
    assert_eq!(nulls.column.as_deref(), Some("riders"));
    assert_eq!((&nulls.value, &nulls.threshold), (&json!(0.5), &json!(0.1)));
    let mean = alerts.iter().find(|a| a.check == "mean_range").unwrap();
    assert_eq!(mean.column.as_deref(), Some("distance"));
    assert_eq!(
        (&mean.value, &mean.threshold),
        (&json!(100.0), &json!([0.5, 20.0]))
    );
    for a in &alerts {
        assert_eq!(a.dataset, "rides");
        assert_eq!(a.stage, "profile");
        assert_eq!(a.partition.as_deref(), Some("dt=2024-01-15"));
        assert_eq!(a.object, format!("s3://curated/{key}"));
        assert_eq!(a.object_etag, obj.etag.clone().unwrap());
        assert_eq!(a.correlation_id, "sl-rides-corr");
        assert_eq!(
            a.alert_id,
            Alert::id_for(
                "rides",
                Some("dt=2024-01-15"),
                &a.check,
                a.column.as_deref(),
                &a.object_etag
            )
        );
    }
    assert_eq!(h.metrics.total("profile", "QualityBreaches"), 2.0);
    assert_eq!(h.metrics.total("profile", "AlertsSent"), 2.0);
    let meta = h
        .store
        .head("profiles", &profile_key(&key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.metadata["sluice-quality-status"], "breach");

    // A redelivery is a no-op: no second profile, no second round of alerts.
    assert!(matches!(h.run(&obj).await, ObjectOutcome::AlreadyProcessed));
    assert_eq!(h.alerts().len(), 2);

    // A crash after the profile but before the manifest: the redelivery
    // sees the profile (the alerts' commit point) and does not alert again.
    let manifest = manifest_key_in("", "profile", &SourceIdentity::from_event(&obj, None));
    h.store.delete("profiles", &manifest).await.unwrap();
    processed(&h.run(&obj).await);
    assert_eq!(h.alerts().len(), 2);
    assert!(h.store.head("profiles", &manifest).await.unwrap().is_some());
}

/// Fails its first `failures` sends, then records.
#[derive(Debug, Default)]
struct FlakyAlerts {
    failures: AtomicU32,
    sent: std::sync::Mutex<Vec<Alert>>,
}

#[async_trait]
impl AlertSink for FlakyAlerts {
    async fn send(&self, alert: &Alert) -> sluice::Result<()> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(sluice::Error::other(
                ErrorKind::Transient,
                "topic unavailable",
                None,
            ));
        }
        self.sent.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

#[tokio::test]
async fn an_alert_failure_leaves_no_profile_and_is_retried() {
    let sink = Arc::new(FlakyAlerts::default());
    sink.failures.store(100, Ordering::SeqCst);
    let s = sink.clone();
    let h = harness_with(move |r| Profile::with_alerts(r, s).unwrap());
    let rides: Vec<Ride> = (0..4)
        .map(|i| Ride {
            distance: Some(99.0),
            ..ride(i)
        })
        .collect();
    let key = key_for(0, "flaky");
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(4, 0))
        .await;
    let outcome = h.run(&obj).await;
    assert!(
        matches!(outcome, ObjectOutcome::Failed(ref e) if e.is_retryable()),
        "{outcome:?}"
    );
    assert!(
        h.store
            .head("profiles", &profile_key(&key))
            .await
            .unwrap()
            .is_none(),
        "no profile without its alerts"
    );
    assert!(h.dlq.envelopes().is_empty());

    sink.failures.store(0, Ordering::SeqCst);
    processed(&h.run(&obj).await);
    let sent = sink.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].check, "mean_range");
    assert!(h
        .store
        .head("profiles", &profile_key(&key))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn quarantine_ratio_follows_the_lineage_to_the_ingest_manifest() {
    let h = harness();
    let rides: Vec<Ride> = (0..7).map(ride).collect();
    let key = key_for(0, "q");
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(10, 3))
        .await;
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    let c = check(&p, "max_quarantine_ratio", None);
    assert_eq!(
        (c.status, &c.value, &c.threshold),
        (CheckStatus::Breach, &json!(0.3), &json!(0.2))
    );
    assert!(c.reason.as_deref().unwrap().contains("3 of 10"), "{c:?}");
    assert_eq!(h.alerts()[0].check, "max_quarantine_ratio");

    // No ingest manifest: skipped with the reason, no alert.
    let h = harness();
    let obj = h.land(&key, curated_parquet(&rides), None).await;
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    let c = check(&p, "max_quarantine_ratio", None);
    assert_eq!(c.status, CheckStatus::Skipped);
    assert!(
        c.reason.as_deref().unwrap().contains("ingest manifest"),
        "{c:?}"
    );
    assert!(
        c.reason.as_deref().unwrap().contains("does not exist"),
        "{c:?}"
    );
    assert!(h.alerts().is_empty());
}

#[tokio::test]
async fn quarantine_check_is_skipped_without_lineage() {
    let h = harness();
    let key = key_for(0, "orphan");
    let r = h
        .store
        .put(
            "curated",
            &key,
            curated_parquet(&[ride(0)]),
            PutOptions::new(PutMode::Overwrite),
        )
        .await
        .unwrap();
    let mut obj = ObjectRef::new("curated", &key);
    obj.etag = Some(r.etag);
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    let c = check(&p, "max_quarantine_ratio", None);
    assert_eq!(c.status, CheckStatus::Skipped);
    assert!(
        c.reason.as_deref().unwrap().contains("no source metadata"),
        "{c:?}"
    );
}

#[tokio::test]
async fn volume_breach_against_trailing_profiles() {
    let h = harness();
    // Three earlier days of ~1000 rows, profiled by the stage itself.
    for (day, rows) in [(-3, 1_000), (-2, 1_010), (-1, 990)] {
        let key = key_for(day, "daily");
        let rides: Vec<Ride> = (0..rows)
            .map(|i| Ride {
                start: JAN_15_US + day * DAY_US + i,
                ..ride(i)
            })
            .collect();
        let obj = h
            .land(&key, curated_parquet(&rides), ingest_counts(rows as u64, 0))
            .await;
        processed(&h.run(&obj).await);
    }
    // Outside the window (older than the 3 latest) and after this partition: both ignored.
    for (dt, rows) in [("2024-01-01", 1), ("2024-01-20", 1_000_000)] {
        h.store
            .put(
                "profiles",
                &format!("rides/v1/dt={dt}/x.profile.json"),
                Bytes::from(json!({"row_count": rows}).to_string()),
                PutOptions::new(PutMode::Overwrite),
            )
            .await
            .unwrap();
    }
    let key = key_for(0, "daily");
    let rides: Vec<Ride> = (0..100).map(ride).collect();
    let obj = h
        .land(&key, curated_parquet(&rides), ingest_counts(100, 0))
        .await;
    processed(&h.run(&obj).await);
    let p = h.profile(&key).await;
    let v = check(&p, "volume", None);
    assert_eq!(v.status, CheckStatus::Breach, "{v:?}");
    assert_eq!((&v.value, &v.threshold), (&json!(0.9), &json!(0.5)));
    assert!(
        v.reason
            .as_deref()
            .unwrap()
            .contains("mean of 1000.0 over 3"),
        "{v:?}"
    );
    let alerts = h.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].check, "volume");

    // The earlier days themselves: the first was skipped, the others passed.
    let first = h.profile(&key_for(-3, "daily")).await;
    assert_eq!(check(&first, "volume", None).status, CheckStatus::Skipped);
    let second = h.profile(&key_for(-2, "daily")).await;
    assert_eq!(check(&second, "volume", None).status, CheckStatus::Pass);
}

#[tokio::test]
async fn empty_file_breaches_min_rows() {
    let h = harness();
    let key = key_for(0, "empty");
    let obj = h
        .land(&key, curated_parquet(&[]), ingest_counts(0, 0))
        .await;
    let counts = processed(&h.run(&obj).await);
    assert_eq!(counts.rows_in, 0);
    let p = h.profile(&key).await;
    assert_eq!(p.row_count, 0);
    assert_eq!(check(&p, "min_rows", None).status, CheckStatus::Breach);
    assert_eq!(
        check(&p, "max_null_ratio", Some("riders")).status,
        CheckStatus::Skipped
    );
    assert_eq!(
        check(&p, "mean_range", Some("distance")).status,
        CheckStatus::Skipped
    );
    let d = p.column("distance").unwrap().numeric.clone().unwrap();
    assert_eq!(
        (d.count, d.mean, d.quantiles, d.histogram),
        (0, None, None, None)
    );
    assert_eq!(h.alerts().len(), 1);
}

#[tokio::test]
async fn identical_input_gives_identical_profile_bytes() {
    let rides: Vec<Ride> = (0..3_000)
        .map(|i| Ride {
            distance: Some((i % 97) as f64 / 7.0),
            zone: Some(format!("z{}", i % 37)),
            riders: (i % 11 != 0).then_some(i % 4),
            ..ride(i)
        })
        .collect();
    let body = curated_parquet(&rides);
    let key = key_for(0, "same");
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let h = harness();
        let obj = h.land(&key, body.clone(), ingest_counts(3_000, 10)).await;
        processed(&h.run(&obj).await);
        outputs.push(h.profile_bytes(&key).await);
    }
    assert_eq!(outputs[0], outputs[1]);
    let v: Value = serde_json::from_slice(&outputs[0]).unwrap();
    assert_eq!(v["row_count"], 3_000);
}

#[tokio::test]
async fn corrupt_input_is_dead_lettered_with_its_name() {
    let h = harness();
    let key = key_for(0, "broken");
    let obj = h
        .land(&key, Bytes::from_static(b"definitely not parquet"), None)
        .await;
    assert!(matches!(h.run(&obj).await, ObjectOutcome::DeadLettered(_)));
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].stage, "profile");
    assert_eq!(envs[0].error.kind, ErrorKind::InvalidInput);
    assert!(
        envs[0]
            .error
            .message
            .contains(&format!("s3://curated/{key}")),
        "{}",
        envs[0].error.message
    );
    assert!(h.store.list("profiles", "rides/").await.unwrap().is_empty());
    assert!(h.alerts().is_empty());
}

#[tokio::test]
async fn unknown_dataset_or_layout_is_dead_lettered() {
    let h = harness();
    for key in ["boats/v1/dt=2024-01-15/x.parquet", "rides/latest/x.parquet"] {
        let obj = h.land(key, curated_parquet(&[ride(0)]), None).await;
        assert!(
            matches!(h.run(&obj).await, ObjectOutcome::DeadLettered(_)),
            "{key}"
        );
    }
    let envs = h.dlq.envelopes();
    assert!(
        envs[0].error.message.contains("unknown dataset \"boats\""),
        "{}",
        envs[0].error.message
    );
    assert!(
        envs[1].error.message.contains("rides/latest/x.parquet"),
        "{}",
        envs[1].error.message
    );
}
