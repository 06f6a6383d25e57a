//! `OutputSet`: many outputs under one memory budget. A stage writes 40
//! outputs at once, in interleaved chunks of many sizes, through a store
//! whose uploads send parts of `PART` bytes (as S3's do, at 5 MiB or more:
//! `MemoryStore::with_part_size`).
//! What must hold: each output's bytes arrive whole and in order (through
//! the spill file too), each upload receives whole parts only (and a shorter
//! last one), and the bytes held in memory never pass the budget.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use sluice::config::{Config, RawConfig};
use sluice::dlq::MemoryDeadLetter;
use sluice::error::Result;
use sluice::runner::ObjectOutcome;
use sluice::spool::OutputSet;
use sluice::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::RecordingMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Counts, ObjectContext, Runner, Runtime, Stage};

const PART: usize = 1000;
const BUDGET: usize = 4000;
const OUTPUTS: usize = 40;

/// Each output's key and the bytes written to it.
type Written = Vec<(String, Vec<u8>)>;

#[derive(Default)]
struct ManyOutputs {
    expected: Arc<Mutex<Written>>,
    /// The most held at once, the peak, and the bytes spilled.
    report: Arc<Mutex<Option<(usize, usize, u64)>>>,
}

#[async_trait]
impl Stage for ManyOutputs {
    fn name(&self) -> &str {
        "many"
    }
    fn accepts(&self, key: &str) -> bool {
        key.ends_with(".txt")
    }
    async fn process(&self, ctx: &mut ObjectContext) -> Result<Counts> {
        let out = ctx.config.output.clone();
        let mut set = OutputSet::new(BUDGET);
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); OUTPUTS];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut max_held = 0;
        for round in 0..30 {
            for (i, body) in bodies.iter_mut().enumerate() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Outputs 0..4 get most bytes; the others trickle.
                let n = if i < 4 {
                    1 + (seed % (PART as u64 * 17 / 10)) as usize
                } else {
                    1 + (seed % 90) as usize
                };
                let chunk: Vec<u8> = (0..n).map(|j| (i * 31 + round * 7 + j) as u8).collect();
                body.extend_from_slice(&chunk);
                let key = format!("{}part/{i:02}.bin", out.prefix);
                set.write(
                    ctx,
                    &out.bucket,
                    &key,
                    Bytes::from(chunk),
                    "application/octet-stream",
                )
                .await?;
                assert!(set.held() <= BUDGET, "held {} over the budget", set.held());
                max_held = max_held.max(set.held());
            }
        }
        for i in 0..OUTPUTS {
            set.complete(&format!("{}part/{i:02}.bin", out.prefix))
                .await?;
        }
        assert_eq!(set.held(), 0, "nothing held once every output is complete");
        *self.report.lock().unwrap() = Some((max_held, set.peak(), set.spilled()));
        *self.expected.lock().unwrap() = bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("{}part/{i:02}.bin", out.prefix), b))
            .collect();
        Ok(Counts {
            rows_in: 1,
            rows_out: 1,
            ..Counts::default()
        })
    }
}

#[tokio::test]
async fn forty_outputs_hold_one_budget_and_send_whole_parts_in_order() {
    let store = MemoryStore::new().with_part_size(PART);
    let config = Config::from_raw(
        "many",
        RawConfig::from_vars([
            ("SLUICE_INPUT", "s3://landing/raw/"),
            ("SLUICE_OUTPUT", "s3://out-bucket/"),
            ("SLUICE_DLQ", "file:/unused"),
            ("SLUICE_METRICS", "off"),
        ])
        .unwrap(),
    )
    .unwrap();
    let stage = ManyOutputs::default();
    let expected = stage.expected.clone();
    let report = stage.report.clone();
    let runner = Runner::new(
        Runtime {
            config: Arc::new(config),
            store: Arc::new(store.clone()),
            dlq: Arc::new(MemoryDeadLetter::new()),
            metrics: Arc::new(RecordingMetrics::new()),
        },
        stage,
    );
    let r = store
        .put(
            "landing",
            "raw/in.txt",
            Bytes::from_static(b"x"),
            PutOptions::new(PutMode::Overwrite),
        )
        .await
        .unwrap();
    let mut obj = ObjectRef::new("landing", "raw/in.txt");
    obj.etag = Some(r.etag);
    let report_of_run = runner
        .handle(&s3_notification(std::slice::from_ref(&obj)), None)
        .await
        .unwrap();
    assert!(
        matches!(report_of_run.outcomes[0].1, ObjectOutcome::Processed { .. }),
        "{report_of_run:?}"
    );

    let expected = expected.lock().unwrap().clone();
    assert_eq!(expected.len(), OUTPUTS);
    for (key, body) in &expected {
        let got = store.get_bytes("out-bucket", key).await.unwrap();
        assert_eq!(got.len(), body.len(), "{key}: length");
        assert!(got[..] == body[..], "{key}: the bytes, in order");
    }
    // Every write an upload received was a whole part, but its last.
    for (key, _) in &expected {
        let sizes = store.upload_writes("out-bucket", key);
        let (last, whole) = sizes.split_last().expect("each output was written");
        assert!(whole.iter().all(|n| *n == PART), "{key}: {sizes:?}");
        assert!(*last <= PART && *last > 0, "{key}: {sizes:?}");
    }
    let (max_held, peak, spilled) = report.lock().unwrap().unwrap();
    assert!(spilled > 0, "the budget was small enough to spill");
    assert!(
        max_held <= BUDGET && max_held > BUDGET / 2,
        "held at most {max_held}"
    );
    assert!(peak <= BUDGET + PART * 2, "peak {peak}");
}
