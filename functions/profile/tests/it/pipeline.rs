//! The three stages chained in memory, as S3 events would chain them:
//! generated trips (with bad rows and exact duplicates) landed, ingested by
//! the real ingest stage, curated, and profiled. Proves the stages agree on
//! keys, columns, lineage metadata and manifests: curate removes exactly the
//! generator's duplicates, and profile finds ingest's manifest through the
//! lineage chain.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::MemoryDeadLetter;
use sluice::runner::ObjectOutcome;
use sluice::sample::{write_trips, NaiveDate, TripsOptions};
use sluice::store::{
    MemoryStore, NotifyingStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
};
use sluice::telemetry::NoMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Counts, Runner, Runtime, Stage};
use sluice_profile::report::{CheckStatus, ProfileReport};

fn runner<S: Stage>(
    stage: S,
    input: &str,
    output: &str,
    store: &NotifyingStore,
    dlq: &MemoryDeadLetter,
) -> Runner<S> {
    let config = Config::from_raw(
        stage.name(),
        RawConfig::from_vars([
            ("SLUICE_INPUT", input),
            ("SLUICE_OUTPUT", output),
            ("SLUICE_DLQ", "file:/unused"),
            ("SLUICE_METRICS", "off"),
        ])
        .unwrap(),
    )
    .unwrap();
    Runner::new(
        Runtime {
            config: Arc::new(config),
            store: Arc::new(store.clone()),
            dlq: Arc::new(dlq.clone()),
            metrics: Arc::new(NoMetrics),
        },
        stage,
    )
}

/// Run `runner` on every queued event for `bucket` that is data, returning
/// the counts of each processed object.
async fn run_events<S: Stage>(
    runner: &Runner<S>,
    events: &[ObjectRef],
    bucket: &str,
) -> Vec<Counts> {
    let mut out = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.bucket == bucket && e.key.ends_with(".parquet") && !e.key.contains("/_"))
    {
        let report = runner
            .handle(&s3_notification(std::slice::from_ref(e)), None)
            .await
            .unwrap();
        match &report.outcomes[0].1 {
            ObjectOutcome::Processed { counts, .. } => out.push(*counts),
            other => panic!("{} on {}: {other:?}", runner.stage().name(), e.key),
        }
    }
    out
}

fn total(counts: &[Counts]) -> (u64, u64, u64) {
    counts.iter().fold((0, 0, 0), |t, c| {
        (t.0 + c.rows_in, t.1 + c.rows_out, t.2 + c.rows_quarantined)
    })
}

#[tokio::test]
async fn landed_trips_flow_through_ingest_curate_and_profile() {
    let registry = Registry::embedded().unwrap();
    let store = NotifyingStore::new(Arc::new(MemoryStore::new()));
    let dlq = MemoryDeadLetter::new();
    let ingest = runner(
        sluice_ingest::Ingest::new(registry),
        "s3://landing/raw/",
        "s3://validated/",
        &store,
        &dlq,
    );
    let curate = runner(
        sluice_curate::Curate::new(registry).unwrap(),
        "s3://validated/",
        "s3://curated/",
        &store,
        &dlq,
    );
    let profile = runner(
        sluice_profile::Profile::new(registry).unwrap(),
        "s3://curated/",
        "s3://profiles/",
        &store,
        &dlq,
    );

    let opts = TripsOptions {
        rows: 6_000,
        seed: 7,
        bad_ratio: 0.03,
        duplicate_ratio: 0.02,
        start: NaiveDate::from_ymd_opt(2024, 1, 15).unwrap(),
        days: 2,
        ..TripsOptions::default()
    };
    let mut csv = Vec::new();
    let generated = write_trips(&mut csv, &opts, &mut |_| {}).unwrap();
    assert!(generated.duplicates > 50, "{generated:?}");
    store
        .put(
            "landing",
            "raw/trips/2024-01-15.csv",
            Bytes::from(csv),
            PutOptions::new(PutMode::Overwrite),
        )
        .await
        .unwrap();
    let landed = store.drain_events();
    let report = ingest
        .handle(&s3_notification(&landed), None)
        .await
        .unwrap();
    let ObjectOutcome::Processed {
        counts: ingested, ..
    } = &report.outcomes[0].1
    else {
        panic!("ingest: {report:?}");
    };
    assert_eq!(ingested.rows_in, generated.rows);

    let validated = store.drain_events();
    let curated = run_events(&curate, &validated, "validated").await;
    assert_eq!(curated.len(), 2, "one validated file per pickup day");
    let (c_in, c_out, c_dups) = total(&curated);
    assert_eq!(c_in, ingested.rows_out);
    assert_eq!(
        c_dups, generated.duplicates,
        "curate drops exactly the generator's exact repeats"
    );
    assert_eq!(c_out + c_dups, c_in);

    // Curated columns: derived and joined, every zone id known.
    let curated_events = store.drain_events();
    let first = curated_events
        .iter()
        .find(|e| e.bucket == "curated" && e.key.ends_with(".parquet"))
        .unwrap();
    let body = store.get_bytes("curated", &first.key).await.unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    for b in &batches {
        let zones = b.column_by_name("pickup_Zone").unwrap().as_string::<i32>();
        assert_eq!(zones.null_count(), 0);
        assert!(b.column_by_name("avg_speed_mph").is_some());
    }

    let profiled = run_events(&profile, &curated_events, "curated").await;
    assert_eq!(profiled.len(), 2);
    assert_eq!(total(&profiled).0, c_out);
    let mut profiles = 0;
    for meta in store.list("profiles", "trips/v1/").await.unwrap() {
        let p: ProfileReport =
            serde_json::from_slice(&store.get_bytes("profiles", &meta.key).await.unwrap()).unwrap();
        let q = p
            .checks
            .iter()
            .find(|c| c.check == "max_quarantine_ratio")
            .unwrap();
        assert_ne!(
            q.status,
            CheckStatus::Skipped,
            "lineage chain to ingest's manifest: {q:?}"
        );
        let ratio = ingested.rows_quarantined as f64 / ingested.rows_in as f64;
        assert!((q.value.as_f64().unwrap() - ratio).abs() < 1e-12, "{q:?}");
        assert!(p.column("trip_duration_min").unwrap().numeric.is_some());
        assert!(p.column("_record_id").is_none());
        profiles += 1;
    }
    assert_eq!(profiles, 2);
    assert!(dlq.envelopes().is_empty(), "{:?}", dlq.envelopes());
}
