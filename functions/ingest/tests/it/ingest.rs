//! The ingest stage through the real runner, in memory: good rows to
//! partitioned Parquet, every kind of bad row to quarantine, every kind of
//! unusable file to the DLQ, and idempotent re-runs.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatchReader;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::MemoryDeadLetter;
use sluice::error::ErrorKind;
use sluice::runner::{InvocationReport, ObjectOutcome};
use sluice::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::NoMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Runner, Runtime};
use sluice_ingest::Ingest;

const HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge,Airport_fee";

fn good(day: u32, minute: u32) -> String {
    format!("2,2024-01-{day:02} 10:{minute:02}:00,2024-01-{day:02} 10:{:02}:00,1,2.50,1,N,161,237,1,14.20,1.00,0.50,3.00,0.00,1.00,22.20,2.50,0.00", minute + 10)
}

struct H {
    store: MemoryStore,
    dlq: MemoryDeadLetter,
    runner: Runner<Ingest>,
}

fn harness_with(registry: &Registry, extra: &[(&str, &str)]) -> H {
    harness_threads(registry, extra, None)
}

fn harness_threads(registry: &Registry, extra: &[(&str, &str)], threads: Option<usize>) -> H {
    let ingest = match threads {
        Some(n) => Ingest::new(registry).with_threads(n),
        None => Ingest::new(registry),
    };
    harness_store(MemoryStore::new(), ingest, extra)
}

fn harness_store(store: MemoryStore, ingest: Ingest, extra: &[(&str, &str)]) -> H {
    let dlq = MemoryDeadLetter::new();
    let mut vars = vec![
        ("SLUICE_INPUT", "s3://landing/raw/"),
        ("SLUICE_OUTPUT", "s3://validated/"),
        ("SLUICE_DLQ", "file:/unused"),
        ("SLUICE_RETRY_BASE_DELAY_MS", "1"),
        ("SLUICE_RETRY_MAX_DELAY_MS", "2"),
    ];
    vars.extend_from_slice(extra);
    let config = Config::from_raw("ingest", RawConfig::from_vars(vars).unwrap()).unwrap();
    let rt = Runtime {
        config: Arc::new(config),
        store: Arc::new(store.clone()),
        dlq: Arc::new(dlq.clone()),
        metrics: Arc::new(NoMetrics),
    };
    H {
        store,
        dlq,
        runner: Runner::new(rt, ingest),
    }
}

fn harness() -> H {
    harness_with(Registry::embedded().unwrap(), &[])
}

impl H {
    async fn land(&self, key: &str, body: impl Into<Bytes>) -> ObjectRef {
        let body = body.into();
        let r = self
            .store
            .put(
                "landing",
                key,
                body.clone(),
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

    async fn run(&self, key: &str, body: impl Into<Bytes>) -> InvocationReport {
        let o = self.land(key, body).await;
        self.runner
            .handle(&s3_notification(&[o]), None)
            .await
            .unwrap()
    }

    async fn keys(&self, bucket: &str) -> Vec<String> {
        self.store
            .list(bucket, "")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .filter(|k| !k.starts_with("_sluice/"))
            .collect()
    }

    async fn parquet_rows(
        &self,
        key: &str,
    ) -> (
        arrow::datatypes::SchemaRef,
        Vec<arrow::record_batch::RecordBatch>,
    ) {
        let bytes = self.store.get_bytes("validated", key).await.unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let schema = reader.schema();
        (schema, reader.map(|b| b.unwrap()).collect())
    }

    async fn quarantine(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for k in self
            .keys("validated")
            .await
            .into_iter()
            .filter(|k| k.starts_with("_quarantine/"))
        {
            let text = self.store.get_bytes("validated", &k).await.unwrap();
            out.extend(
                String::from_utf8(text.to_vec())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap()),
            );
        }
        out
    }
}

fn counts(r: &InvocationReport) -> sluice::Counts {
    match &r.outcomes[0].1 {
        ObjectOutcome::Processed { counts, .. } => *counts,
        other => panic!("not processed: {other:?}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn good_rows_become_partitioned_parquet_with_lineage_columns() {
    let h = harness();
    let body = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        good(15, 1),
        good(15, 2),
        good(16, 3)
    );
    let r = h.run("raw/trips/2024 01/yellow+trips é.csv", body).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 3, 0));
    let keys: Vec<String> = h.keys("validated").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("trips/v1/dt=2024-01-15/") && keys[0].ends_with(".parquet"),
        "{keys:?}"
    );
    assert!(keys[1].starts_with("trips/v1/dt=2024-01-16/"));
    let (schema, batches) = h.parquet_rows(&keys[0]).await;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names.len(), 22);
    assert_eq!(&names[19..], &["_record_id", "_source", "_line"]);
    let contract = Registry::embedded().unwrap().get("trips").unwrap().clone();
    for (f, cf) in schema.fields().iter().zip(contract.schema().fields()) {
        assert_eq!(f.data_type(), cf.data_type(), "{}", f.name());
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
    let lines = batches[0].column(21).as_primitive::<Int64Type>();
    assert_eq!(
        lines.values().to_vec(),
        vec![2, 3],
        "line numbers count the header"
    );
    let src = batches[0].column(20).as_string::<i32>();
    assert_eq!(
        src.value(0),
        "s3://landing/raw/trips/2024 01/yellow+trips é.csv"
    );
    // 16 bytes of binary per id: half the 32 hex digits it used to be.
    let ids = batches[0].column(19).as_fixed_size_binary();
    assert_eq!(ids.value_length(), 16);
    assert_eq!(ids.value(0).len(), 16);
    assert_ne!(ids.value(0), ids.value(1));
    let meta = h.store.head("validated", &keys[0]).await.unwrap().unwrap();
    assert_eq!(meta.metadata["sluice-stage"], "ingest");
}

#[tokio::test]
async fn every_bad_row_kind_is_quarantined_with_line_and_reason() {
    let h = harness();
    let g = good(15, 0);
    let f: Vec<&str> = g.split(',').collect();
    let with = |i: usize, v: &str| {
        let mut x = f.clone();
        x[i] = v;
        x.join(",")
    };
    let bad_rows: Vec<(Vec<u8>, &str)> = vec![
        (
            with(4, "abc").into_bytes(),
            "trip_distance: \"abc\" is not a number",
        ),
        (
            f[..18].join(",").into_bytes(),
            "expected 19 fields, found 18",
        ),
        (
            format!("{g},extra").into_bytes(),
            "expected 19 fields, found 20",
        ),
        (
            with(10, "-5.00").into_bytes(),
            "fare_amount: -500 is below the minimum 0",
        ),
        (
            with(2, "2024-01-15 09:00:00").into_bytes(),
            "rule dropoff_after_pickup failed",
        ),
        (
            with(1, "2024-13-45 25:61:00").into_bytes(),
            "tpep_pickup_datetime",
        ),
        (
            with(7, "0").into_bytes(),
            "PULocationID: 0 is below the minimum 1",
        ),
        (
            with(9, "9").into_bytes(),
            "payment_type: 9 is not an allowed value",
        ),
        (
            [with(6, "").as_bytes()]
                .concat()
                .into_iter()
                .collect::<Vec<u8>>(),
            "",
        ), // placeholder replaced below
        (with(4, "\"1,5\n0\"").into_bytes(), "trip_distance"),
    ];
    let mut bad_rows = bad_rows;
    // Invalid UTF-8 in the flag column.
    let mut utf8 = with(6, "\u{1}").into_bytes();
    let pos = utf8.iter().position(|&b| b == 1).unwrap();
    utf8.splice(pos..=pos, [0xff, 0xfe]);
    bad_rows[8] = (utf8, "store_and_fwd_flag: not valid UTF-8");

    let mut body = format!("{HEADER}\n{g}\n").into_bytes();
    for (row, _) in &bad_rows {
        body.extend_from_slice(row);
        body.push(b'\n');
    }
    body.extend_from_slice(format!("{}\n", good(15, 5)).as_bytes());
    let r = h.run("raw/trips/bad.csv", body).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (12, 2, 10));
    let q = h.quarantine().await;
    assert_eq!(q.len(), 10);
    // Line numbers: header is line 1, the good row line 2, bad rows from line 3
    // (the quoted field with a newline spans lines 12-13).
    for (i, ((_, want), got)) in bad_rows.iter().zip(&q).enumerate() {
        assert_eq!(got["line"], (i + 3) as u64, "{got}");
        let reasons: Vec<&str> = got["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let reasons = reasons.join("; ");
        assert!(reasons.contains(want), "row {i}: {reasons} lacks {want:?}");
        assert_eq!(got["source"], "s3://landing/raw/trips/bad.csv");
        assert!(
            got["raw"].as_str().unwrap().contains("237"),
            "raw text kept: {got}"
        );
    }
}

#[tokio::test]
async fn header_order_does_not_matter_and_gzip_is_detected_by_magic() {
    let h = harness();
    let cols: Vec<&str> = HEADER.split(',').collect();
    let g = good(15, 1);
    let vals: Vec<&str> = g.split(',').collect();
    let rev_header: Vec<&str> = cols.iter().rev().copied().collect();
    let rev_row: Vec<&str> = vals.iter().rev().copied().collect();
    let body = format!("{}\n{}\n", rev_header.join(","), rev_row.join(","));
    let a = counts(&h.run("raw/trips/reversed.csv", body).await);
    assert_eq!((a.rows_out, a.rows_quarantined), (1, 0));
    // The same data gzipped under a name without .gz: detected by magic bytes.
    let gz = gzip(format!("{HEADER}\n{g}\n").as_bytes());
    let b = counts(&h.run("raw/trips/plain-name.csv", gz).await);
    assert_eq!(b.rows_out, 1);
}

#[tokio::test]
async fn jsonl_rows_validate_like_csv_and_share_record_ids() {
    let h = harness();
    let g = good(15, 1);
    let csv_report = h.run("raw/trips/a.csv", format!("{HEADER}\n{g}\n")).await;
    assert_eq!(counts(&csv_report).rows_out, 1);
    let obj: serde_json::Map<String, serde_json::Value> = HEADER
        .split(',')
        .zip(g.split(','))
        .map(|(k, v)| {
            let val = match v.parse::<f64>() {
                Ok(n) if !v.contains('-') || v.starts_with('-') => serde_json::json!(n),
                _ => serde_json::json!(v),
            };
            (k.to_string(), val)
        })
        .collect();
    let body = format!(
        "{}\n\n{{\"VendorID\": \"x\"}}\nnot json\n",
        serde_json::Value::Object(obj)
    );
    let r = h.run("raw/trips/b.jsonl", body).await;
    let c = counts(&r);
    assert_eq!(
        (c.rows_in, c.rows_out, c.rows_quarantined),
        (3, 1, 2),
        "blank lines are not rows"
    );
    let keys = h.keys("validated").await;
    let parquet: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(parquet.len(), 2);
    let (_, a) = h.parquet_rows(parquet[0]).await;
    let (_, b) = h.parquet_rows(parquet[1]).await;
    assert_eq!(
        a[0].column(19).as_fixed_size_binary().value(0),
        b[0].column(19).as_fixed_size_binary().value(0),
        "natural-key record ids agree across formats"
    );
    let q = h.quarantine().await;
    assert!(
        q.iter()
            .any(|e| e["line"] == 4 && e["reasons"].to_string().contains("not a JSON object")),
        "{q:?}"
    );
}

#[tokio::test]
async fn unusable_files_go_to_the_dlq_and_write_nothing() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("raw/trips/a.csv.gz", b"VendorID\n1\n".to_vec(), "not gzip"),
        ("raw/trips/empty.csv", Vec::new(), "empty file"),
        (
            "raw/trips/short.csv",
            b"VendorID,fare_amount\n1,2\n".to_vec(),
            "missing required column",
        ),
        (
            "raw/trips/data.parquet",
            b"PAR1....".to_vec(),
            "not a readable Parquet file",
        ),
        ("raw/trips/data.xlsx", b"PK....".to_vec(), "unknown format"),
        (
            "raw/nosuch/a.csv",
            format!("{HEADER}\n").into_bytes(),
            "no contract for dataset \"nosuch\"",
        ),
        (
            "raw/trips/binary.csv",
            vec![0xff, 0xfe, 0x00, 0x01, b'\n', 0x02],
            "not UTF-8",
        ),
        (
            "raw/trips/truncated.csv.gz",
            gzip(format!("{HEADER}\n{}\n", good(15, 1)).repeat(50).as_bytes())[..200].to_vec(),
            "",
        ),
    ];
    for (key, body, want) in cases {
        let h = harness();
        let r = h.run(key, body).await;
        assert!(
            matches!(r.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
            "{key}: {r:?}"
        );
        let envs = h.dlq.envelopes();
        assert_eq!(envs.len(), 1, "{key}");
        assert_eq!(
            envs[0].error.kind,
            ErrorKind::InvalidInput,
            "{key}: {:?}",
            envs[0].error
        );
        assert!(
            envs[0].error.message.contains(key),
            "{key}: names the object: {}",
            envs[0].error.message
        );
        assert!(
            envs[0].error.message.contains(want),
            "{key}: {} lacks {want:?}",
            envs[0].error.message
        );
        assert!(
            h.keys("validated").await.is_empty(),
            "{key}: nothing written"
        );
    }
}

#[tokio::test]
async fn size_and_decompression_limits_are_enforced() {
    let h = harness_with(
        Registry::embedded().unwrap(),
        &[("SLUICE_MAX_DECOMPRESSION_RATIO", "2")],
    );
    let body = format!("{HEADER}\n{}\n", good(15, 1)).repeat(2000);
    let r = h.run("raw/trips/bomb.csv.gz", gzip(body.as_bytes())).await;
    assert!(matches!(r.outcomes[0].1, ObjectOutcome::DeadLettered(_)));
    assert!(
        h.dlq.envelopes()[0]
            .error
            .message
            .contains("decompression bomb"),
        "{:?}",
        h.dlq.envelopes()[0].error
    );
    assert!(h.keys("validated").await.is_empty());

    let h = harness_with(
        Registry::embedded().unwrap(),
        &[("SLUICE_MAX_OBJECT_BYTES", "100")],
    );
    h.run("raw/trips/big.csv", format!("{HEADER}\n{}\n", good(15, 1)))
        .await;
    assert!(h.dlq.envelopes()[0]
        .error
        .message
        .contains("exceeds the limit of 100 bytes"));
}

#[tokio::test]
async fn reruns_are_no_ops_and_output_is_byte_identical() {
    let body = format!("{HEADER}\n{}\n{}\nbad,row\n", good(15, 1), good(16, 2));
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let h = harness();
        h.run("raw/trips/same.csv", body.clone()).await;
        let again = h.run("raw/trips/same.csv", body.clone()).await;
        assert!(
            matches!(again.outcomes[0].1, ObjectOutcome::AlreadyProcessed),
            "{again:?}"
        );
        let mut files = Vec::new();
        for k in h.keys("validated").await {
            files.push((k.clone(), h.store.get_bytes("validated", &k).await.unwrap()));
        }
        outputs.push(files);
    }
    assert_eq!(outputs[0].len(), 3, "two partitions and a quarantine file");
    assert_eq!(
        outputs[0], outputs[1],
        "identical input gives byte-identical output"
    );
}

#[tokio::test]
async fn a_second_dataset_needs_only_a_contract() {
    let stations = r#"
[dataset]
name = "stations"
version = "2.0.0"
natural_key = ["station_id"]
partition = { field = "observed_on", granularity = "month" }
[[fields]]
name = "station_id"
type = "string"
nullable = false
pattern = "[A-Z]{3}[0-9]{2}"
[[fields]]
name = "observed_on"
type = "date"
nullable = false
[[fields]]
name = "temperature_c"
type = "float"
min = -90.0
max = 60.0
"#;
    let trips = include_str!("../../../../contracts/trips.toml");
    let registry =
        Registry::from_sources([("trips.toml", trips), ("stations.toml", stations)]).unwrap();
    let h = harness_with(&registry, &[]);
    let body = "temperature_c,observed_on,station_id\n12.5,2024-03-01,JFK01\n99,2024-03-02,JFK02\n1.0,2024-04-01,bad\n";
    let c = counts(&h.run("raw/stations/obs.csv", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 1, 2));
    let keys = h.keys("validated").await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("stations/v2/dt=2024-03/")),
        "{keys:?}"
    );
    let q = h.quarantine().await;
    assert!(q.iter().any(|e| e["reasons"]
        .to_string()
        .contains("does not match the pattern")));
    assert!(q
        .iter()
        .any(|e| e["reasons"].to_string().contains("above the maximum")));
    let _ = Array::len(&arrow::array::Int64Array::from(vec![1]));
}

// ---- Issue 10: ambiguous or empty input, and records without a size bound ----

/// The one DLQ envelope of a run, which must name the object and `want`.
fn dead_letter_message(h: &H, r: &InvocationReport, key: &str, want: &str) -> String {
    assert!(
        matches!(r.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
        "{key}: {r:?}"
    );
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1, "{key}");
    assert_eq!(envs[0].error.kind, ErrorKind::InvalidInput, "{key}");
    let msg = envs[0].error.message.clone();
    assert!(msg.contains(key), "{key}: names the object: {msg}");
    assert!(msg.contains(want), "{key}: {msg} lacks {want:?}");
    msg
}

/// One good trip as a JSON line.
fn good_json(day: u32, minute: u32) -> String {
    let g = good(day, minute);
    let obj: serde_json::Map<String, serde_json::Value> = HEADER
        .split(',')
        .zip(g.split(','))
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::Value::Object(obj).to_string()
}

fn reasons(entry: &serde_json::Value) -> String {
    entry["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The quarantine entry of a record cut short: its raw text is capped and
/// says so.
fn assert_truncated(entry: &serde_json::Value) {
    let raw = entry["raw"].as_str().unwrap();
    assert!(raw.len() <= 1024, "raw text capped: {} bytes", raw.len());
    assert_eq!(entry["raw_truncated"], true, "{entry}");
}

const SMALL_RECORDS: [(&str, &str); 1] = [("SLUICE_MAX_RECORD_BYTES", "1024")];

#[tokio::test]
async fn a_header_naming_a_column_twice_is_dead_lettered() {
    let h = harness();
    let key = "raw/trips/twice.csv";
    let body = format!("{HEADER},fare_amount,VendorID\n{},99.00,1\n", good(15, 1));
    let r = h.run(key, body).await;
    let msg = dead_letter_message(&h, &r, key, "more than once");
    assert!(
        msg.contains("fare_amount") && msg.contains("VendorID"),
        "names the duplicated columns: {msg}"
    );
    assert!(h.keys("validated").await.is_empty());
}

#[tokio::test]
async fn an_empty_gzip_is_dead_lettered() {
    for key in ["raw/trips/empty.csv.gz", "raw/trips/empty.jsonl.gz"] {
        let h = harness();
        let r = h.run(key, gzip(b"")).await;
        dead_letter_message(&h, &r, key, "empty after decompression");
        assert!(h.keys("validated").await.is_empty(), "{key}");
    }
}

#[tokio::test]
async fn a_blank_jsonl_is_dead_lettered_like_an_empty_file() {
    for (key, body) in [
        ("raw/trips/blank.jsonl", b"\n  \n\t\r\n".to_vec()),
        ("raw/trips/blank.jsonl.gz", gzip(b"\n\n")),
    ] {
        let h = harness();
        let r = h.run(key, body).await;
        dead_letter_message(&h, &r, key, "empty file");
        assert!(h.keys("validated").await.is_empty(), "{key}");
    }
}

#[tokio::test]
async fn an_overlong_jsonl_line_is_quarantined_in_bounded_memory() {
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let huge = format!("{{\"VendorID\": \"{}\"}}", "x".repeat(5 << 20));
    let body = format!("{}\n{huge}\n{}\n", good_json(15, 1), good_json(15, 2));
    let r = h.run("raw/trips/long.jsonl", body).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 2, 1));
    let q = h.quarantine().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 2);
    let why = reasons(&q[0]);
    assert!(
        why.contains("more than 1024 bytes exceeds SLUICE_MAX_RECORD_BYTES"),
        "{why}"
    );
    assert_truncated(&q[0]);
    assert!(q[0]["raw"]
        .as_str()
        .unwrap()
        .starts_with("{\"VendorID\": \"xxx"));
}

#[tokio::test]
async fn an_overlong_csv_record_is_quarantined_in_bounded_memory() {
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let g = good(15, 1);
    // A properly closed quoted field of 5 MB (with newlines in it) on line 3.
    let huge = format!("\"{}\"{}", "ab\n".repeat(2 << 20), &g[1..]);
    let body = format!("{HEADER}\n{g}\n{huge}\n{}\n", good(15, 3));
    let r = h.run("raw/trips/long.csv", body).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 2, 1));
    let q = h.quarantine().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 3);
    let why = reasons(&q[0]);
    assert!(
        why.contains("more than 1024 bytes exceeds SLUICE_MAX_RECORD_BYTES"),
        "{why}"
    );
    assert!(!why.contains("unclosed"), "{why}");
    assert_truncated(&q[0]);
    // The row after the long one is read from its own line.
    let keys = h.keys("validated").await;
    let part = keys.iter().find(|k| k.ends_with(".parquet")).unwrap();
    let (_, b) = h.parquet_rows(part).await;
    let lines = b[0].column(21).as_primitive::<Int64Type>();
    assert_eq!(lines.values().to_vec(), vec![2, 3 + (2 << 20) + 1]);
}

#[tokio::test]
async fn an_unclosed_quote_is_reported_as_such() {
    let h = harness();
    let g = good(15, 1);
    let f: Vec<&str> = g.split(',').collect();
    let mut open = f.clone();
    open[4] = "\"2.50";
    let body = format!(
        "{HEADER}\n{g}\n{}\n{}\n{}\n",
        open.join(","),
        good(15, 2),
        good(15, 3)
    );
    let r = h.run("raw/trips/open.csv", body).await;
    let c = counts(&r);
    assert_eq!(
        (c.rows_in, c.rows_out, c.rows_quarantined),
        (2, 1, 1),
        "the open record swallows the rest of the file and is one row"
    );
    let q = h.quarantine().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 3);
    let why = reasons(&q[0]);
    assert_eq!(
        why.matches("unclosed quote").count(),
        1,
        "reported once: {why}"
    );
    assert!(why.contains("unclosed quote starting at line 3"), "{why}");

    // A lone quote on the last line is not a blank line.
    let h = harness();
    let c = counts(
        &h.run("raw/trips/lone.csv", format!("{HEADER}\n{g}\n\""))
            .await,
    );
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (2, 1, 1));
    assert!(reasons(&h.quarantine().await[0]).contains("unclosed quote starting at line 3"));

    // The same in a big file: the quote opens on line 4 of a record that
    // starts on line 3, and the rest is bounded as well.
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let mut open = f.clone();
    open[6] = "\"N\n\"";
    open[17] = "\"2.50";
    let body = format!(
        "{HEADER}\n{g}\n{}\n{}",
        open.join(","),
        format!("{}\n", good(15, 2)).repeat(40_000)
    );
    let r = h.run("raw/trips/open-big.csv", body).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (2, 1, 1));
    let q = h.quarantine().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"], 3);
    let why = reasons(&q[0]);
    assert!(why.contains("unclosed quote starting at line 4"), "{why}");
    assert!(why.contains("exceeds SLUICE_MAX_RECORD_BYTES"), "{why}");
    assert_truncated(&q[0]);
}

#[tokio::test]
async fn a_file_with_no_newline_over_the_record_limit_is_quarantined() {
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let huge = format!("{{\"VendorID\": \"{}\"}}", "y".repeat(5 << 20));
    let c = counts(&h.run("raw/trips/one-line.jsonl", huge).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (1, 0, 1));
    let q = h.quarantine().await;
    assert_eq!(q[0]["line"], 1);
    assert!(reasons(&q[0]).contains("exceeds SLUICE_MAX_RECORD_BYTES"));
    assert_truncated(&q[0]);

    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let body = format!("{HEADER}\n{}", "z".repeat(5 << 20));
    let c = counts(&h.run("raw/trips/one-line.csv", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (1, 0, 1));
    let q = h.quarantine().await;
    assert_eq!(q[0]["line"], 2);
    assert!(reasons(&q[0]).contains("exceeds SLUICE_MAX_RECORD_BYTES"));
    assert_truncated(&q[0]);
}

#[tokio::test]
async fn a_header_over_the_record_limit_is_dead_lettered() {
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let key = "raw/trips/wide-header.csv";
    let body = format!("{HEADER},{}\n{}\n", "w".repeat(5 << 20), good(15, 1));
    let r = h.run(key, body).await;
    dead_letter_message(&h, &r, key, "exceeds SLUICE_MAX_RECORD_BYTES");
}

#[tokio::test]
async fn records_at_the_limit_are_rows_and_one_byte_more_is_quarantined() {
    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    // An extra column the contract ignores pads a record to an exact size.
    let g = good(15, 1);
    let pad = |len: usize| format!("{g},{}", "p".repeat(len - g.len() - 1));
    let (at, over) = (pad(1024), pad(1025));
    assert_eq!((at.len(), over.len()), (1024, 1025));
    let body = format!("{HEADER},note\n{at}\n{over}\n{at}");
    let c = counts(&h.run("raw/trips/edge.csv", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 2, 1));
    let q = h.quarantine().await;
    assert!(
        reasons(&q[0]).contains("exceeds SLUICE_MAX_RECORD_BYTES"),
        "{}",
        q[0]
    );
    assert_eq!(q[0]["line"], 3);

    let h = harness_with(Registry::embedded().unwrap(), &SMALL_RECORDS);
    let j = good_json(15, 1);
    let pad = |len: usize| {
        format!(
            "{}, \"note\": \"{}\"}}",
            &j[..j.len() - 1],
            "p".repeat(len - j.len() - 12)
        )
    };
    let (at, over) = (pad(1024), pad(1025));
    assert_eq!((at.len(), over.len()), (1024, 1025));
    let body = format!("{at}\n{over}\n{at}");
    let c = counts(&h.run("raw/trips/edge.jsonl", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 2, 1));
    let q = h.quarantine().await;
    assert!(
        reasons(&q[0]).contains("exceeds SLUICE_MAX_RECORD_BYTES"),
        "{}",
        q[0]
    );
    assert_eq!(q[0]["line"], 2);
}

#[tokio::test]
async fn crlf_and_blank_lines_keep_true_line_numbers() {
    let h = harness();
    let body = format!(
        "{HEADER}\r\n{}\r\n\r\nbad,row\r\n\n{}\r\nworse\r\n",
        good(15, 1),
        good(15, 2)
    );
    let c = counts(&h.run("raw/trips/crlf.csv", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (4, 2, 2));
    let q = h.quarantine().await;
    let lines: Vec<u64> = q.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![4, 7], "{q:?}");
    let keys = h.keys("validated").await;
    let part = keys.iter().find(|k| k.ends_with(".parquet")).unwrap();
    let (_, b) = h.parquet_rows(part).await;
    let lines = b[0].column(21).as_primitive::<Int64Type>();
    assert_eq!(lines.values().to_vec(), vec![2, 6]);
}

#[tokio::test]
async fn a_jsonl_object_naming_a_key_twice_is_quarantined() {
    let h = harness();
    let g = good_json(15, 1);
    let twice = format!("{}, \"fare_amount\": \"99.00\"}}", &g[..g.len() - 1]);
    let body = format!("{g}\n{twice}\n");
    let c = counts(&h.run("raw/trips/twice.jsonl", body).await);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (2, 1, 1));
    let q = h.quarantine().await;
    assert_eq!(q[0]["line"], 2);
    let why = reasons(&q[0]);
    assert!(
        why.contains("fare_amount") && why.contains("more than once"),
        "{why}"
    );
}

/// Parquet encoding on a thread of its own (two or more cores) writes the
/// bytes one thread writes, row group for row group, partition for
/// partition; so do the two encoders that share the last row groups of
/// the partitions (two days: one each; seven: unevenly).
#[tokio::test]
async fn encoding_on_a_second_thread_writes_the_same_bytes() {
    for days in [2, 7] {
        let mut csv = Vec::new();
        let opts = sluice::sample::TripsOptions {
            rows: 300_000,
            seed: 11,
            bad_ratio: 0.01,
            days,
            ..Default::default()
        };
        sluice::sample::write_trips(&mut csv, &opts, &mut |_| {}).unwrap();
        let csv = Bytes::from(csv);
        let mut outputs = Vec::new();
        let mut groups = Vec::new();
        for threads in [1, 2] {
            let h = harness_threads(Registry::embedded().unwrap(), &[], Some(threads));
            let report = h.run("raw/trips/many.csv", csv.clone()).await;
            let c = counts(&report);
            assert_eq!(c.rows_in, 300_000, "{threads} threads");
            assert!(c.rows_quarantined > 0 && c.rows_out + c.rows_quarantined == c.rows_in);
            let mut files = Vec::new();
            for key in h.keys("validated").await {
                let body = h.store.get_bytes("validated", &key).await.unwrap();
                if key.ends_with(".parquet") {
                    let meta = ParquetRecordBatchReaderBuilder::try_new(body.clone()).unwrap();
                    groups.push(meta.metadata().num_row_groups());
                }
                files.push((key, body.len(), content_hash(&body)));
            }
            outputs.push(files);
        }
        let parquet = outputs[0]
            .iter()
            .filter(|f| f.0.ends_with(".parquet"))
            .count();
        assert_eq!(parquet, days as usize, "one file per day: {:?}", outputs[0]);
        if days == 2 {
            assert!(
                groups.iter().all(|&g| g >= 2),
                "several row groups per file: {groups:?}"
            );
        }
        assert_eq!(outputs[0], outputs[1], "{days} days");
    }
}

/// An upload that fails while the two threads share the last row groups
/// (the first output's completion fails once, transiently): the file is
/// retried, nothing hangs, and the outputs are those of a clean run on one
/// thread, none twice.
#[tokio::test]
async fn a_failed_upload_at_the_end_with_two_threads_is_retried_to_the_same_outputs() {
    let mut csv = Vec::new();
    let opts = sluice::sample::TripsOptions {
        rows: 200_000,
        seed: 3,
        bad_ratio: 0.0,
        days: 7,
        ..Default::default()
    };
    sluice::sample::write_trips(&mut csv, &opts, &mut |_| {}).unwrap();
    let csv = Bytes::from(csv);
    let mut outputs = Vec::new();
    for (threads, failures) in [(1, 0), (2, 1)] {
        let h = harness_threads(Registry::embedded().unwrap(), &[], Some(threads));
        h.store.inject_transient_failures("complete", failures);
        let report = h.run("raw/trips/week.csv", csv.clone()).await;
        assert_eq!(counts(&report).rows_out, 200_000, "{threads} threads");
        let mut files = Vec::new();
        for key in h.keys("validated").await {
            if key.ends_with(".parquet") {
                let body = h.store.get_bytes("validated", &key).await.unwrap();
                files.push((key, body.len(), content_hash(&body)));
            }
        }
        assert_eq!(files.len(), 7, "{threads} threads: {files:?}");
        if failures > 0 {
            assert!(
                h.store.calls("complete") > 7,
                "the injected failure was not reached: {} completions",
                h.store.calls("complete")
            );
        }
        outputs.push(files);
    }
    assert_eq!(outputs[0], outputs[1]);
}

/// A file over 40 daily partitions through a store that sends parts (as S3
/// does), with a memory budget far below a part per partition: row groups
/// are cut small, outputs are spilled to the ephemeral disk and sent in
/// whole parts, and every output is the same, row for row, as through a
/// store that holds nothing back with the default budget.
#[tokio::test]
async fn many_partitions_under_a_small_memory_budget_keep_every_row() {
    let mut csv = Vec::new();
    let opts = sluice::sample::TripsOptions {
        rows: 100_000,
        seed: 5,
        bad_ratio: 0.01,
        days: 40,
        ..Default::default()
    };
    sluice::sample::write_trips(&mut csv, &opts, &mut |_| {}).unwrap();
    let csv = Bytes::from(csv);
    let registry = Registry::embedded().unwrap();
    let mut outputs = Vec::new();
    for (part, budget) in [(0, sluice_ingest::MEMORY_BUDGET), (16 * 1024, 512 * 1024)] {
        let ingest = Ingest::new(registry).with_memory_budget(budget);
        let h = harness_store(MemoryStore::new().with_part_size(part), ingest, &[]);
        let report = h.run("raw/trips/year.csv", csv.clone()).await;
        let c = counts(&report);
        assert_eq!(c.rows_in, 100_000, "part size {part}");
        let mut files = Vec::new();
        for key in h.keys("validated").await {
            let body = h.store.get_bytes("validated", &key).await.unwrap();
            let size = body.len();
            // Smaller row groups change the bytes, not the rows.
            let rows = if key.ends_with(".parquet") {
                let reader = ParquetRecordBatchReaderBuilder::try_new(body)
                    .unwrap()
                    .build()
                    .unwrap();
                let batches: Vec<_> = reader.map(Result::unwrap).collect();
                let one = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
                format!("{one:?}")
            } else {
                String::from_utf8(body.to_vec()).unwrap()
            };
            files.push((key, size, rows));
        }
        outputs.push(files);
    }
    let parquet: Vec<_> = outputs[0]
        .iter()
        .filter(|f| f.0.ends_with(".parquet"))
        .collect();
    assert_eq!(parquet.len(), 40, "one file per day");
    let total: usize = parquet.iter().map(|f| f.1).sum();
    assert!(
        total > 4 * 128 * 1024,
        "the budget is well below the output: {total} bytes"
    );
    assert_eq!(outputs[0].len(), outputs[1].len());
    for (a, b) in outputs[0].iter().zip(&outputs[1]) {
        assert_eq!(a.0, b.0);
        assert!(a.2 == b.2, "{}: the same rows in order", a.0);
    }
}

/// A content hash for comparing outputs.
fn content_hash(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Parquet bytes of one batch.
fn parquet_of(batch: &arrow::record_batch::RecordBatch) -> Bytes {
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    Bytes::from(out)
}

/// Ingest's own output, landed again as Parquet input, comes out with the
/// same values and record ids (the lineage columns of the input are not in
/// the contract and are ignored).
#[tokio::test]
async fn parquet_input_reads_columns_by_name_with_the_same_values_and_ids() {
    let h = harness();
    let body = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        good(15, 1),
        good(15, 2),
        good(15, 3)
    );
    h.run("raw/trips/a.csv", body).await;
    let first = h.keys("validated").await;
    let first: Vec<&String> = first.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(first.len(), 1);
    let (_, want) = h.parquet_rows(first[0]).await;
    let landed = h.store.get_bytes("validated", first[0]).await.unwrap();

    let h2 = harness();
    let r = h2.run("raw/trips/b.parquet", landed).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 3, 0));
    let keys = h2.keys("validated").await;
    let out: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(out.len(), 1, "{keys:?}");
    let (_, got) = h2.parquet_rows(out[0]).await;
    // Every contract column and the record id agree; _source names the
    // new input and _line counts rows.
    for i in 0..20 {
        assert_eq!(got[0].column(i), want[0].column(i), "column {i}");
    }
    let lines = got[0].column(21).as_primitive::<Int64Type>();
    assert_eq!(lines.values().to_vec(), vec![1, 2, 3]);
}

#[tokio::test]
async fn parquet_rows_are_checked_like_text_rows_and_bad_files_are_dead_lettered() {
    use arrow::array::{ArrayRef, Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    // A CSV of good rows, read into Arrow with text columns for everything,
    // is a Parquet file whose columns are all strings: parsed as CSV is.
    let csv_text = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        good(15, 1),
        good(15, 2),
        good(15, 3)
    );
    let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        let values: Vec<Option<String>> = rows
            .iter()
            .enumerate()
            .map(|(r, rec)| match (name.as_str(), r) {
                // Row 2: a passenger count over the maximum; row 3: no vendor.
                ("passenger_count", 1) => Some("12".to_string()),
                ("VendorID", 2) => None,
                _ => Some(rec[i].to_string()),
            })
            .collect();
        if name == "passenger_count" {
            // A typed column: Int32, not text.
            let ints: Int32Array = values
                .iter()
                .map(|v| v.as_ref().map(|s| s.parse::<i32>().unwrap()))
                .collect();
            fields.push(Field::new(name, arrow::datatypes::DataType::Int32, true));
            cols.push(Arc::new(ints));
        } else {
            fields.push(Field::new(name, arrow::datatypes::DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(values)));
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), cols.clone()).unwrap();
    let h = harness();
    let r = h.run("raw/trips/typed.parquet", parquet_of(&batch)).await;
    let c = counts(&r);
    assert_eq!((c.rows_in, c.rows_out, c.rows_quarantined), (3, 1, 2));
    let q = h.quarantine().await;
    assert_eq!(q.len(), 2);
    assert_eq!(q[0]["line"], 2);
    assert_eq!(
        reasons(&q[0]),
        "passenger_count: 12 is above the maximum 9",
        "{q:?}"
    );
    assert!(q[0]["raw"]
        .as_str()
        .unwrap()
        .contains("\"passenger_count\":\"12\""));
    assert_eq!(q[1]["line"], 3);
    assert_eq!(reasons(&q[1]), "VendorID: missing value");

    // A column whose type cannot hold the contract's: the file is dead-lettered.
    let mut wrong_fields = fields.clone();
    let mut wrong_cols = cols.clone();
    wrong_fields[0] = Field::new("VendorID", arrow::datatypes::DataType::Float64, true);
    wrong_cols[0] = Arc::new(Float64Array::from(vec![2.0, 2.0, 2.0]));
    let wrong = RecordBatch::try_new(Arc::new(Schema::new(wrong_fields)), wrong_cols).unwrap();
    let h = harness();
    let r = h.run("raw/trips/wrong.parquet", parquet_of(&wrong)).await;
    dead_letter_message(&h, &r, "wrong.parquet", "VendorID is Float64");

    // A column named twice: which one holds the data?
    let mut twice_fields = fields.clone();
    let mut twice_cols = cols.clone();
    twice_fields.push(fields[3].clone());
    twice_cols.push(cols[3].clone());
    let twice = RecordBatch::try_new(Arc::new(Schema::new(twice_fields)), twice_cols).unwrap();
    let h = harness();
    let r = h.run("raw/trips/twice.parquet", parquet_of(&twice)).await;
    dead_letter_message(
        &h,
        &r,
        "twice.parquet",
        "column(s) passenger_count more than once",
    );

    // A required column missing, and bytes that are not Parquet at all.
    let missing = batch
        .project(&(1..batch.num_columns()).collect::<Vec<_>>())
        .unwrap();
    let h = harness();
    let r = h
        .run("raw/trips/missing.parquet", parquet_of(&missing))
        .await;
    dead_letter_message(
        &h,
        &r,
        "missing.parquet",
        "missing required column(s) VendorID",
    );
    let h = harness();
    let r = h.run("raw/trips/junk.parquet", "not parquet at all").await;
    dead_letter_message(&h, &r, "junk.parquet", "not a readable Parquet file");
}

/// A file that fails after some row groups were encoded leaves no output,
/// with the encoder on its own thread as with one thread: the encoder
/// closes a partition's file only when the whole input was read.
#[tokio::test]
async fn a_failure_after_encoded_row_groups_publishes_nothing_with_any_thread_count() {
    let mut csv = Vec::new();
    let opts = sluice::sample::TripsOptions {
        rows: 200_000,
        seed: 5,
        days: 1,
        ..Default::default()
    };
    sluice::sample::write_trips(&mut csv, &opts, &mut |_| {}).unwrap();
    let mut body = gzip(&csv);
    // Cut the gzip stream short: the read fails after more than one row
    // group of the one partition was encoded and sent on.
    body.truncate(body.len() - 4096);
    for threads in [1, 2] {
        let h = harness_threads(Registry::embedded().unwrap(), &[], Some(threads));
        let r = h.run("raw/trips/cut.csv.gz", body.clone()).await;
        assert!(
            matches!(r.outcomes[0].1, ObjectOutcome::DeadLettered(_)),
            "{threads} threads: {r:?}"
        );
        let keys = h.keys("validated").await;
        assert!(
            keys.iter().all(|k| !k.ends_with(".parquet")),
            "{threads} threads: a partial output was published: {keys:?}"
        );
    }
}
