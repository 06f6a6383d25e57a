//! The curate stage end to end in memory: validated trips Parquet in, curated
//! Parquet (derived and joined columns) and quarantined duplicates out,
//! through the shared runner, plus replays, determinism, failure routing and
//! `[curate]` configuration errors.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use sluice::config::{Config, RawConfig};
use sluice::contract::Registry;
use sluice::dlq::MemoryDeadLetter;
use sluice::error::ErrorKind;
use sluice::lineage::{keys, Lineage, SourceIdentity};
use sluice::runner::ObjectOutcome;
use sluice::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::NoMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Runner, Runtime};
use sluice_curate::Curate;

const KEY: &str = "trips/v1/dt=2024-01-15/0123456789abcdef0123.parquet";

/// One validated trip, as the test wants it.
#[derive(Clone)]
struct Trip {
    record_id: String,
    line: i64,
    /// Seconds after 10:00 (keeps the rows of a test distinct).
    second: i64,
    minutes: i64,
    distance: f64,
    pu: i64,
    dropoff: i64,
    fare_cents: i128,
    tip_cents: Option<i128>,
}

fn trip(n: i64) -> Trip {
    Trip {
        record_id: format!("{n:032x}"),
        line: n + 1,
        second: n,
        minutes: 10,
        distance: 2.0,
        pu: 132,
        dropoff: 138,
        fare_cents: 1000,
        tip_cents: Some(200),
    }
}

const PICKUP_US: i64 = 1_705_312_800_000_000; // 2024-01-15 10:00:00 UTC

fn decimals(v: impl IntoIterator<Item = Option<i128>>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from_iter(v)
            .with_precision_and_scale(10, 2)
            .unwrap(),
    )
}

/// A validated trips file: the contract's columns, then the bookkeeping ones.
fn validated_parquet(trips: &[Trip]) -> Bytes {
    let reg = Registry::embedded().unwrap();
    let contract = reg.get("trips").unwrap();
    let mut fields: Vec<Field> = contract
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_record_id", DataType::Utf8, false));
    fields.push(Field::new("_source", DataType::Utf8, true));
    fields.push(Field::new("_line", DataType::Int64, true));
    let schema = Arc::new(Schema::new(fields));
    let n = trips.len();
    let ints = |f: &dyn Fn(&Trip) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(trips.iter().map(f)))
    };
    let ts = |f: &dyn Fn(&Trip) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(trips.iter().map(f))
                .with_timezone("+00:00"),
        )
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "VendorID" | "RatecodeID" | "payment_type" | "passenger_count" => ints(&|_| 1),
            "tpep_pickup_datetime" => ts(&|t| PICKUP_US + t.second * 1_000_000),
            "tpep_dropoff_datetime" => {
                ts(&|t| PICKUP_US + t.second * 1_000_000 + t.minutes * 60_000_000)
            }
            "trip_distance" => Arc::new(Float64Array::from_iter_values(
                trips.iter().map(|t| t.distance),
            )) as ArrayRef,
            "store_and_fwd_flag" => Arc::new(StringArray::from(vec!["N"; n])),
            "PULocationID" => ints(&|t| t.pu),
            "DOLocationID" => ints(&|t| t.dropoff),
            "fare_amount" => decimals(trips.iter().map(|t| Some(t.fare_cents))),
            "tip_amount" => decimals(trips.iter().map(|t| t.tip_cents)),
            "total_amount" => decimals(
                trips
                    .iter()
                    .map(|t| Some(t.fare_cents + t.tip_cents.unwrap_or(0))),
            ),
            "_record_id" => Arc::new(StringArray::from_iter_values(
                trips.iter().map(|t| t.record_id.clone()),
            )),
            "_source" => Arc::new(StringArray::from(vec!["s3://landing/raw/trips/jan.csv"; n])),
            "_line" => ints(&|t| t.line),
            _ => decimals(std::iter::repeat_n(Some(50), n)),
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf.into()
}

fn read_parquet(bytes: Bytes) -> (Arc<Schema>, RecordBatch, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let row_groups = builder.metadata().num_row_groups();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .with_batch_size(1 << 20)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (schema, batch, row_groups)
}

struct Harness {
    store: MemoryStore,
    dlq: MemoryDeadLetter,
    runner: Runner<Curate>,
}

fn harness() -> Harness {
    harness_with(Curate::new(Registry::embedded().unwrap()).unwrap())
}

fn harness_with(curate: Curate) -> Harness {
    let store = MemoryStore::new();
    let dlq = MemoryDeadLetter::new();
    let config = Config::from_raw(
        "curate",
        RawConfig::from_vars([
            ("SLUICE_INPUT", "s3://validated/"),
            ("SLUICE_OUTPUT", "s3://curated/"),
            ("SLUICE_DLQ", "file:/unused"),
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
        metrics: Arc::new(NoMetrics),
    };
    Harness {
        store,
        dlq,
        runner: Runner::new(rt, curate),
    }
}

impl Harness {
    /// Put a validated object (stamped as ingest would) and return its event object.
    async fn land(&self, key: &str, body: Bytes) -> ObjectRef {
        let lineage = Lineage::for_input(
            SourceIdentity {
                bucket: "landing".into(),
                key: "raw/trips/jan.csv".into(),
                etag: Some("landing-etag".into()),
                version_id: None,
                sequencer: Some("01".into()),
                generation: 0,
            },
            None,
            None,
            "ingest",
            "test",
        );
        let mut opts = PutOptions::new(PutMode::Overwrite);
        opts.metadata = lineage.metadata();
        let r = self.store.put("validated", key, body, opts).await.unwrap();
        let mut o = ObjectRef::new("validated", key);
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

    async fn curated(&self) -> Bytes {
        self.store.get_bytes("curated", KEY).await.unwrap()
    }

    async fn quarantine(&self) -> Vec<String> {
        self.store
            .list("curated", "_quarantine/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }
}

fn counts(outcome: &ObjectOutcome) -> (u64, u64, u64) {
    match outcome {
        ObjectOutcome::Processed { counts, .. } => {
            (counts.rows_in, counts.rows_out, counts.rows_quarantined)
        }
        other => panic!("not processed: {other:?}"),
    }
}

fn f64s(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[tokio::test]
async fn adds_derived_and_joined_columns() {
    let h = harness();
    let mut zero_duration = trip(1);
    zero_duration.minutes = 0;
    zero_duration.fare_cents = 0;
    let mut unknown_zone = trip(2);
    unknown_zone.dropoff = 999;
    unknown_zone.pu = 1;
    unknown_zone.tip_cents = None;
    let input = validated_parquet(&[trip(0), zero_duration, unknown_zone]);
    let obj = h.land(KEY, input.clone()).await;
    let outcome = h.run(&obj).await;
    assert_eq!(counts(&outcome), (3, 3, 0));
    assert!(
        h.quarantine().await.is_empty(),
        "no duplicates, no quarantine file"
    );

    let (in_schema, _, _) = read_parquet(input);
    let (schema, batch, _) = read_parquet(h.curated().await);
    let added = [
        ("trip_duration_min", DataType::Float64),
        ("avg_speed_mph", DataType::Float64),
        ("tip_pct", DataType::Float64),
        ("pickup_Borough", DataType::Utf8),
        ("pickup_Zone", DataType::Utf8),
        ("dropoff_Borough", DataType::Utf8),
        ("dropoff_Zone", DataType::Utf8),
    ];
    assert_eq!(
        schema.fields().len(),
        in_schema.fields().len() + added.len()
    );
    for (i, f) in in_schema.fields().iter().enumerate() {
        assert_eq!(
            schema.field(i).name(),
            f.name(),
            "input columns first, in order"
        );
        assert_eq!(schema.field(i).data_type(), f.data_type());
    }
    for (j, (name, ty)) in added.iter().enumerate() {
        let f = schema.field(in_schema.fields().len() + j);
        assert_eq!((f.name().as_str(), f.data_type()), (*name, ty));
        assert!(f.is_nullable());
    }

    assert_eq!(
        f64s(&batch, "trip_duration_min"),
        vec![Some(10.0), Some(0.0), Some(10.0)]
    );
    // 2 miles in 10 minutes = 12 mph; zero duration = null, not infinity.
    assert_eq!(
        f64s(&batch, "avg_speed_mph"),
        vec![Some(12.0), None, Some(12.0)]
    );
    // tip 2.00 on fare 10.00 = 20 %; fare 0 = null; tip null = null.
    assert_eq!(f64s(&batch, "tip_pct"), vec![Some(20.0), None, None]);
    assert_eq!(
        strings(&batch, "pickup_Zone"),
        vec![
            Some("JFK Airport".into()),
            Some("JFK Airport".into()),
            Some("Newark Airport".into())
        ]
    );
    assert_eq!(
        strings(&batch, "pickup_Borough"),
        vec![
            Some("Queens".into()),
            Some("Queens".into()),
            Some("EWR".into())
        ]
    );
    assert_eq!(
        strings(&batch, "dropoff_Zone"),
        vec![
            Some("LaGuardia Airport".into()),
            Some("LaGuardia Airport".into()),
            None
        ],
        "an id missing from the table joins to null"
    );
    assert_eq!(strings(&batch, "dropoff_Borough")[2], None);

    let meta = h.store.head("curated", KEY).await.unwrap().unwrap();
    assert_eq!(meta.metadata[keys::STAGE], "curate");
    assert_eq!(meta.metadata[keys::SOURCE_BUCKET], "validated");
}

#[tokio::test]
async fn duplicates_are_quarantined_and_counts_balance() {
    let h = harness();
    // Repeats of trip 0 further down the landed file: same natural key, so
    // ingest gave them the same record id.
    let mut again = trip(0);
    again.line = 40;
    let mut third = trip(0);
    third.line = 41;
    let input = validated_parquet(&[trip(0), trip(1), again, trip(2), third]);
    let obj = h.land(KEY, input).await;
    let outcome = h.run(&obj).await;
    let (rows_in, rows_out, quarantined) = counts(&outcome);
    assert_eq!((rows_in, rows_out, quarantined), (5, 3, 2));
    assert_eq!(rows_in, rows_out + quarantined);

    let (_, batch, _) = read_parquet(h.curated().await);
    assert_eq!(batch.num_rows(), 3);
    let ids = strings(&batch, "_record_id");
    assert_eq!(
        ids,
        vec![
            Some(trip(0).record_id),
            Some(trip(1).record_id),
            Some(trip(2).record_id)
        ],
        "first occurrence kept, order preserved"
    );

    let q = h.quarantine().await;
    let id = SourceIdentity::from_event(&obj, None).object_id();
    assert_eq!(q, vec![format!("_quarantine/curate/trips/{id}.jsonl")]);
    let text = h.store.get_bytes("curated", &q[0]).await.unwrap();
    let lines: Vec<Value> = std::str::from_utf8(&text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["record_id"], trip(0).record_id);
    assert_eq!(lines[0]["line"], 40);
    assert_eq!(lines[1]["line"], 41);
    assert_eq!(lines[0]["source"], "s3://landing/raw/trips/jan.csv");
    assert_eq!(
        lines[0]["reasons"],
        serde_json::json!(["duplicate record id"])
    );
    if let ObjectOutcome::Processed { manifest, .. } = &outcome {
        assert_eq!(
            manifest.outputs.len(),
            2,
            "curated file and quarantine file"
        );
    }
}

#[tokio::test]
async fn rerun_is_already_processed() {
    let h = harness();
    let obj = h.land(KEY, validated_parquet(&[trip(0), trip(0)])).await;
    counts(&h.run(&obj).await);
    let puts = h.store.calls("put") + h.store.calls("complete");
    assert!(matches!(h.run(&obj).await, ObjectOutcome::AlreadyProcessed));
    assert_eq!(
        h.store.calls("put") + h.store.calls("complete"),
        puts,
        "nothing rewritten"
    );
}

#[tokio::test]
async fn identical_input_gives_byte_identical_output() {
    let trips: Vec<Trip> = (0..500).map(|n| trip(n % 450)).collect();
    let input = validated_parquet(&trips);
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let h = harness();
        let obj = h.land(KEY, input.clone()).await;
        assert_eq!(counts(&h.run(&obj).await), (500, 450, 50));
        let q = h.quarantine().await;
        let quarantined = h.store.get_bytes("curated", &q[0]).await.unwrap();
        outputs.push((h.curated().await, quarantined));
    }
    assert!(
        outputs[0] == outputs[1],
        "curated and quarantine bytes differ between runs"
    );
}

#[tokio::test]
async fn large_files_stream_through_several_row_groups() {
    let trips: Vec<Trip> = (0..140_000).map(trip).collect();
    let h = harness();
    let obj = h.land(KEY, validated_parquet(&trips)).await;
    assert_eq!(counts(&h.run(&obj).await), (140_000, 140_000, 0));
    let (_, batch, row_groups) = read_parquet(h.curated().await);
    assert_eq!(batch.num_rows(), 140_000);
    assert!(row_groups >= 2, "row groups are bounded: {row_groups}");
    let speed = f64s(&batch, "avg_speed_mph");
    assert!(speed.iter().all(|s| *s == Some(12.0)));
}

#[tokio::test]
async fn corrupt_input_is_dead_lettered_with_its_name() {
    let h = harness();
    let key = "trips/v1/dt=2024-01-15/broken.parquet";
    let obj = h
        .land(key, Bytes::from_static(b"PAR1 this is not parquet"))
        .await;
    assert!(matches!(h.run(&obj).await, ObjectOutcome::DeadLettered(_)));
    let envs = h.dlq.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].stage, "curate");
    assert_eq!(envs[0].error.kind, ErrorKind::InvalidInput);
    assert!(
        envs[0]
            .error
            .message
            .contains(&format!("s3://validated/{key}")),
        "{}",
        envs[0].error.message
    );
    assert!(
        h.store.list("curated", "trips/").await.unwrap().is_empty(),
        "no output"
    );
}

#[tokio::test]
async fn unknown_dataset_is_dead_lettered() {
    let h = harness();
    let key = "boats/v1/dt=2024-01-15/x.parquet";
    let obj = h.land(key, validated_parquet(&[trip(0)])).await;
    assert!(matches!(h.run(&obj).await, ObjectOutcome::DeadLettered(_)));
    let env = &h.dlq.envelopes()[0];
    assert_eq!(env.error.kind, ErrorKind::InvalidInput);
    assert!(env.error.message.contains(key), "{}", env.error.message);
    assert!(
        env.error.message.contains("unknown dataset \"boats\""),
        "{}",
        env.error.message
    );
}

#[tokio::test]
async fn input_missing_a_needed_column_is_dead_lettered() {
    let h = harness();
    // A file with only one trips column.
    let schema = Arc::new(Schema::new(vec![Field::new(
        "PULocationID",
        DataType::Int64,
        false,
    )]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let obj = h.land(KEY, buf.into()).await;
    assert!(matches!(h.run(&obj).await, ObjectOutcome::DeadLettered(_)));
    let msg = &h.dlq.envelopes()[0].error.message;
    assert!(msg.contains(&format!("s3://validated/{KEY}")), "{msg}");
    assert!(msg.contains("has no column"), "{msg}");
}

#[test]
fn reference_table_has_the_tlc_zones() {
    let curate = Curate::new(Registry::embedded().unwrap()).unwrap();
    let plan = curate.plan("trips").unwrap();
    assert!(plan.dedup);
    assert_eq!(plan.derived.len(), 3);
    assert_eq!(plan.joins.len(), 2);
    let table = &plan.joins[0].table;
    assert!(
        Arc::ptr_eq(table, &plan.joins[1].table),
        "one table, loaded once"
    );
    assert_eq!(
        table.columns,
        vec!["LocationID", "Borough", "Zone", "service_zone"]
    );
    assert_eq!(table.len(), 265);
    let row = |id: usize| {
        (0..4)
            .map(|c| table.cell(id - 1, c).unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(row(1), vec!["1", "EWR", "Newark Airport", "EWR"]);
    assert_eq!(row(132), vec!["132", "Queens", "JFK Airport", "Airports"]);
    assert_eq!(
        row(138),
        vec!["138", "Queens", "LaGuardia Airport", "Airports"]
    );
    assert_eq!(
        row(161),
        vec!["161", "Manhattan", "Midtown Center", "Yellow Zone"]
    );
    assert_eq!(row(264)[1], "Unknown");
    assert_eq!(row(265)[3], "N/A");
}

const BASE: &str = r#"
[dataset]
name = "rides"
version = "1.0.0"
[[fields]]
name = "start"
type = "timestamp"
format = "%Y-%m-%d %H:%M:%S"
[[fields]]
name = "stop"
type = "timestamp"
format = "%Y-%m-%d %H:%M:%S"
[[fields]]
name = "km"
type = "float"
[[fields]]
name = "zone"
type = "int"
[[fields]]
name = "label"
type = "string"
"#;

#[test]
fn curate_config_errors_name_the_file_and_the_entry() {
    let cases: &[(&str, &[&str])] = &[
        ("[curate]\ndedupe = true\n", &["curate", "dedupe"]),
        (
            "[[curate.derived]]\nname = \"d\"\nkind = \"product\"\n",
            &["curate.derived[0] (d)", "\"product\""],
        ),
        (
            "[[curate.derived]]\nname = \"d\"\nkind = \"duration\"\nstart = \"start\"\nend = \"nope\"\n",
            &["curate.derived[0] (d)", "unknown field \"nope\""],
        ),
        (
            "[[curate.derived]]\nname = \"d\"\nkind = \"duration\"\nstart = \"start\"\nend = \"km\"\n",
            &["curate.derived[0] (d)", "timestamp or date"],
        ),
        (
            "[[curate.derived]]\nname = \"d\"\nkind = \"duration\"\nstart = \"start\"\nend = \"stop\"\nunit = \"fortnights\"\n",
            &["curate.derived[0] (d)", "fortnights"],
        ),
        (
            "[[curate.derived]]\nname = \"d\"\nkind = \"duration\"\nstart = \"start\"\nend = \"stop\"\n\
             [[curate.derived]]\nname = \"speed\"\nkind = \"ratio\"\nnumerator = \"km\"\ndenominator = \"label\"\n",
            &["curate.derived[1] (speed)", "numeric"],
        ),
        (
            "[[curate.derived]]\nname = \"speed\"\nkind = \"ratio\"\nnumerator = \"km\"\ndenominator = \"later\"\n\
             [[curate.derived]]\nname = \"later\"\nkind = \"duration\"\nstart = \"start\"\nend = \"stop\"\n",
            &["curate.derived[0] (speed)", "defined before use"],
        ),
        (
            "[[curate.derived]]\nname = \"km\"\nkind = \"duration\"\nstart = \"start\"\nend = \"stop\"\n",
            &["curate.derived[0] (km)", "already a column"],
        ),
        (
            "[[curate.derived]]\nname = \"r\"\nkind = \"ratio\"\nnumerator = \"km\"\ndenominator = \"km\"\nscale = 0\n",
            &["curate.derived[0] (r)", "scale"],
        ),
        (
            "[[curate.derived]]\nname = \"r\"\nkind = \"ratio\"\nnumerator = \"km\"\ndenominator = \"km\"\nfactor = 2.0\n",
            &["curate.derived[0] (r)", "factor"],
        ),
        (
            "[[curate.joins]]\nreference = \"no_such_table\"\nkey = \"id\"\non = \"zone\"\ncolumns = [\"x\"]\n",
            &["curate.joins[0] (no_such_table on zone)", "contracts/reference/no_such_table.csv"],
        ),
        (
            "[[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"Id\"\non = \"zone\"\ncolumns = [\"Zone\"]\n",
            &["curate.joins[0] (taxi_zones on zone)", "key \"Id\""],
        ),
        (
            "[[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"LocationID\"\non = \"zone\"\ncolumns = [\"Colour\"]\n",
            &["curate.joins[0] (taxi_zones on zone)", "\"Colour\""],
        ),
        (
            "[[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"LocationID\"\non = \"km\"\ncolumns = [\"Zone\"]\n",
            &["curate.joins[0] (taxi_zones on km)", "int or string"],
        ),
        (
            "[[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"LocationID\"\non = \"zone\"\ncolumns = [\"Zone\"]\n\
             [[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"LocationID\"\non = \"zone\"\ncolumns = [\"Zone\"]\n",
            &["curate.joins[1] (taxi_zones on zone)", "already a column"],
        ),
        (
            "[[curate.joins]]\nreference = \"taxi_zones\"\nkey = \"LocationID\"\non = \"zone\"\ncolumns = [\"Zone\"]\nprefix = \"_\"\n",
            &["curate.joins[0] (taxi_zones on zone)", "must not start with '_'"],
        ),
    ];
    for (section, wants) in cases {
        let text = format!("{BASE}{section}");
        let reg = Registry::from_sources([("rides.toml", text.as_str())]).unwrap();
        let err = Curate::new(&reg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.to_string();
        assert!(msg.contains("contract rides.toml"), "names the file: {msg}");
        for want in *wants {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
    }
}

#[test]
fn a_bad_reference_table_names_its_file_and_line() {
    let section = "[[curate.joins]]\nreference = \"zones\"\nkey = \"id\"\non = \"zone\"\ncolumns = [\"name\"]\n";
    let text = format!("{BASE}{section}");
    let reg = Registry::from_sources([("rides.toml", text.as_str())]).unwrap();
    let err = Curate::with_references(&reg, |_| Some("id,name\n1,a\nx,b\n".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("contract rides.toml: curate.joins[0] (zones on zone)"),
        "{err}"
    );
    assert!(
        err.contains("contracts/reference/zones.csv line 3"),
        "{err}"
    );
    assert!(err.contains("not an integer"), "{err}");
    let ok = Curate::with_references(&reg, |_| Some("id,name\n1,a\n2,b\n".into())).unwrap();
    assert_eq!(ok.plan("rides").unwrap().added_columns(), vec!["name"]);
}

#[test]
fn contracts_without_a_curate_section_pass_through() {
    let reg = Registry::from_sources([("rides.toml", BASE)]).unwrap();
    let curate = Curate::new(&reg).unwrap();
    let plan = curate.plan("rides").unwrap();
    assert!(!plan.dedup);
    assert!(plan.added_columns().is_empty());
}

/// A validated `rides` file (the BASE contract): ids, zones and labels per row.
fn rides_parquet(rows: &[(&str, i64, &str)]) -> Bytes {
    let ts = |v: i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|_| v))
                .with_timezone("+00:00"),
        )
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("start", ts(0).data_type().clone(), true),
        Field::new("stop", ts(0).data_type().clone(), true),
        Field::new("km", DataType::Float64, true),
        Field::new("zone", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("_record_id", DataType::Utf8, false),
        Field::new("_line", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        ts(0),
        ts(60_000_000),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 1.5))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(1..=rows.len() as i64)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf.into()
}

#[tokio::test]
async fn dedup_by_record_id_or_by_chosen_columns() {
    let rows = [
        ("id-a", 1, "x"),
        ("id-b", 1, "x"),
        ("id-a", 2, "y"),
        ("id-c", 1, "z"),
    ];
    let key = "rides/v1/dt=2024-01-15/r.parquet";
    let cases = [
        // The default: the natural key, as ingest hashed it into _record_id.
        ("dedup = true\n", (4, 3, 1), "duplicate record id", 3),
        (
            "dedup = true\ndedup_on = \"record_id\"\n",
            (4, 3, 1),
            "duplicate record id",
            3,
        ),
        (
            "dedup = true\ndedup_on = [\"zone\"]\n",
            (4, 2, 2),
            "duplicate of an earlier row on zone",
            2,
        ),
        (
            "dedup = true\ndedup_on = [\"zone\", \"label\"]\n",
            (4, 3, 1),
            "duplicate of an earlier row on zone, label",
            2,
        ),
        (
            "dedup = true\ndedup_on = \"row\"\n",
            (4, 3, 1),
            "duplicate row",
            2,
        ),
        ("dedup = false\n", (4, 4, 0), "", 0),
    ];
    for (section, want, reason, line) in cases {
        let text = format!("{BASE}[curate]\n{section}");
        let reg = Registry::from_sources([("rides.toml", text.as_str())]).unwrap();
        let h = harness_with(Curate::new(&reg).unwrap());
        let obj = h.land(key, rides_parquet(&rows)).await;
        assert_eq!(counts(&h.run(&obj).await), want, "{section}");
        let q = h.quarantine().await;
        if want.2 == 0 {
            assert!(q.is_empty());
            continue;
        }
        let text = h.store.get_bytes("curated", &q[0]).await.unwrap();
        let first: Value =
            serde_json::from_str(std::str::from_utf8(&text).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(first["reasons"], serde_json::json!([reason]), "{section}");
        assert_eq!(first["line"], line, "{section}");
        assert!(first["source"].is_null(), "no _source column in this file");
    }
}

#[test]
fn dedup_on_errors_name_the_file_and_the_key() {
    let cases = [
        ("dedup_on = \"row\"\n", "dedup is not true"),
        ("dedup = true\ndedup_on = \"rows\"\n", "\"rows\" is not"),
        ("dedup = true\ndedup_on = []\n", "non-empty list"),
        (
            "dedup = true\ndedup_on = [\"zone\", \"nope\"]\n",
            "unknown field \"nope\"",
        ),
        ("dedup = true\ndedup_on = [\"zone\", \"zone\"]\n", "twice"),
        ("dedup = true\ndedup_on = [1]\n", "not a field name"),
    ];
    for (section, want) in cases {
        let text = format!("{BASE}[curate]\n{section}");
        let reg = Registry::from_sources([("rides.toml", text.as_str())]).unwrap();
        let msg = Curate::new(&reg).unwrap_err().to_string();
        assert!(
            msg.contains("contract rides.toml: curate.dedup_on"),
            "{msg}"
        );
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
}

#[tokio::test]
async fn a_crash_before_the_manifest_recounts_without_rewriting() {
    let h = harness();
    let obj = h
        .land(KEY, validated_parquet(&[trip(0), trip(0), trip(1)]))
        .await;
    let first = counts(&h.run(&obj).await);
    let before = (h.curated().await, h.quarantine().await);
    // The outputs are complete but the commit point (the manifest) is lost.
    let manifest =
        sluice::runner::manifest_key_in("", "curate", &SourceIdentity::from_event(&obj, None));
    h.store.delete("curated", &manifest).await.unwrap();
    let completes = h.store.calls("complete");
    assert_eq!(
        counts(&h.run(&obj).await),
        first,
        "same counts from a recount"
    );
    assert_eq!(h.store.calls("complete"), completes, "no output rewritten");
    assert_eq!((h.curated().await, h.quarantine().await), before);
    assert!(h.store.head("curated", &manifest).await.unwrap().is_some());
}
