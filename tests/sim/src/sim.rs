//! The simulation: producers, an at-least-once event bus with per-stage
//! queues and DLQs, several concurrent runner tasks per stage running the
//! real stages, crashes, and a discrete-event scheduler that makes all of it
//! a function of one seed.
//!
//! **Scheduling.** Exactly one simulated invocation runs at any moment.
//! An invocation runs until its next store operation, where it parks at the
//! [`FaultyStore`] gate; the scheduler then picks the next thing to happen
//! from its agenda, ordered by simulated time (a store turn after its
//! latency, a bus delivery, a producer action, a crash), advances the
//! simulated clock and lets that one thing proceed. The stages' blocking
//! threads (parsing, Parquet encoding) run in real time but touch no shared
//! state, so the interleaving of everything that does is decided by the seed
//! alone. Simulated time is the scheduler's own clock, not tokio's paused
//! clock: tokio inhibits auto-advance while a `spawn_blocking` task is alive,
//! and the stages' blocking halves wait on their async halves, which would
//! stall a paused runtime (see the crate docs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use sluice::config::{Config, ParquetCompression, RawConfig};
use sluice::contract::Registry;
use sluice::runner::{is_internal_key, manifest_key_in, InvocationReport, ObjectOutcome};
use sluice::sample::{write_trips, Format, NaiveDate, TripsOptions};
use sluice::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::trigger::{s3_notification, Replay, REPROCESS_ATTRIBUTE};
use sluice::{ObjectRef, Runner, Runtime};
use sluice_curate::Curate;
use sluice_ingest::Ingest;
use sluice_profile::alerts::MemoryAlerts;
use sluice_profile::Profile;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::rng::Rng;
use crate::store::{
    short, Decision, FaultKind, FaultyStore, Letter, Notice, OpInfo, SimDlq, StoreEvent, INVOCATION,
};

/// The stages, in pipeline order.
pub const STAGES: [&str; 3] = ["ingest", "curate", "profile"];
/// The landing bucket.
pub const LANDING: &str = "landing";
/// Each stage's input bucket.
pub const INPUT_BUCKETS: [&str; 3] = [LANDING, "validated", "curated"];
/// Each stage's output bucket.
pub const OUTPUT_BUCKETS: [&str; 3] = ["validated", "curated", "profiles"];
/// The input prefix of ingest.
pub const RAW_PREFIX: &str = "raw/";
/// What a LocalStack event carries as sequencer: the same value every time.
pub const CONSTANT_SEQUENCER: &str = "0055AED6DCD90281E5"; // pragma: allowlist secret

/// Every knob of one simulated run. The defaults are what `make test` runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Share of store calls (of simulated invocations) that fail transiently.
    pub fault_rate: f64,
    /// Share of the remaining gets whose body is reset mid-stream.
    pub body_reset_rate: f64,
    /// Simulated latency of one store call: uniform in 0..=this (ms).
    pub max_latency_ms: u64,
    /// Concurrent runner tasks per stage (Lambda reserved concurrency).
    pub concurrency: usize,
    /// Largest SQS batch one invocation receives.
    pub max_batch: u64,
    /// maxReceiveCount: after this many receives a failing message goes to the DLQ.
    pub max_receives: u32,
    /// SQS visibility timeout (ms): when a failed or crashed message reappears.
    pub visibility_timeout_ms: u64,
    /// Delivery delay of a bus event: uniform in 0..=this (ms).
    pub bus_max_delay_ms: u64,
    /// Share of bus events delivered twice (at-least-once).
    pub duplicate_rate: f64,
    /// Share of events that carry no sequencer (replays, hand-made events).
    pub no_sequencer_rate: f64,
    /// Share of events that carry LocalStack's constant sequencer.
    pub constant_sequencer_rate: f64,
    /// Share of invocations killed at a random point (Lambda timeout/crash).
    pub crash_rate: f64,
    /// A crash happens uniformly within this long after the start (ms).
    pub crash_window_ms: u64,
    /// Deliver object-removed events for deletions in stage output buckets.
    pub deliver_deletions: bool,
    /// Also deliver object-removed events for landing deletions to ingest.
    pub deliver_landing_deletions: bool,
    /// Landing keys per run (inclusive range).
    pub keys: (u64, u64),
    /// Versions uploaded per key: 1..=this.
    pub max_versions: u64,
    /// Rows per generated file (inclusive range).
    pub rows: (u64, u64),
    /// Gap between two versions of a key: uniform in 0..=this (ms); small
    /// gaps overlap a version with the processing of the previous one.
    pub max_version_gap_ms: u64,
    /// Share of versions that are corrupt (not gzip, garbage, wrong header, empty).
    pub corrupt_rate: f64,
    /// Share of keys deleted from landing after their last version.
    pub delete_rate: f64,
    /// Share of deleted keys uploaded again later.
    pub reupload_rate: f64,
    /// Mid-run DLQ redrives (inclusive range of how many).
    pub redrives: (u64, u64),
    /// Mid-run rebuilds (`sluice replay --reprocess` of one object at one
    /// stage; inclusive range of how many).
    pub reprocesses: (u64, u64),
    /// After quiescence: rounds of redriving transient dead letters with faults off.
    pub settle_rounds: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            fault_rate: 0.20,
            body_reset_rate: 0.05,
            max_latency_ms: 50,
            concurrency: 3,
            max_batch: 3,
            max_receives: 5,
            visibility_timeout_ms: 30_000,
            bus_max_delay_ms: 400,
            duplicate_rate: 0.2,
            no_sequencer_rate: 0.1,
            constant_sequencer_rate: 0.1,
            crash_rate: 0.1,
            crash_window_ms: 800,
            deliver_deletions: true,
            deliver_landing_deletions: true,
            keys: (2, 4),
            max_versions: 3,
            rows: (20, 200),
            max_version_gap_ms: 1500,
            corrupt_rate: 0.12,
            delete_rate: 0.2,
            reupload_rate: 0.3,
            redrives: (0, 2),
            reprocesses: (0, 2),
            settle_rounds: 4,
        }
    }
}

/// A corrupt landing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// Named `.gz` but plain text (or, for a plain key, gzip bytes).
    NotGzip,
    /// Random bytes.
    Garbage,
    /// A CSV/JSONL file whose header or fields are not the contract's.
    WrongHeader,
    /// Zero bytes.
    Empty,
}

/// What a producer uploads.
#[derive(Debug, Clone)]
pub enum Content {
    /// Generated trips.
    Good(TripsOptions),
    /// A corrupt file (with a seed for its bytes).
    Bad(Corrupt, u64),
}

/// One producer action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Upload a version of a landing key (overwriting).
    Upload {
        /// The key (under `raw/`).
        key: String,
        /// What.
        content: Content,
    },
    /// Delete a landing key.
    Delete {
        /// The key.
        key: String,
    },
    /// Take every letter out of a stage's DLQ and redrive it (`sluice replay`).
    Redrive {
        /// The stage (index into [`STAGES`]).
        stage: usize,
    },
    /// Rebuild one of a stage's inputs (`sluice replay keys --reprocess`),
    /// picked among those that exist when it runs.
    Reprocess {
        /// The stage (index into [`STAGES`]).
        stage: usize,
        /// Which input (modulo how many there are).
        pick: u64,
    },
}

/// One version of a landing key that was uploaded.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its ETag.
    pub etag: String,
    /// Its bytes.
    pub bytes: Bytes,
    /// What it was, for logs.
    pub label: String,
}

/// What was known when a landing key was deleted.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// Simulated time.
    pub at_ms: u64,
    /// The etag of the version whose ingest manifest existed then, if any.
    pub committed_etag: Option<String>,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Simulated time (ms).
    pub t: u64,
    /// What happened.
    pub text: String,
}

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// 1 if the seed ran under a tight [`Memory`].
    pub tight_memory: u64,
    /// Parts written to multipart uploads (whole parts of the seed's part
    /// size, or write-through chunks where it is 0).
    pub upload_parts: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Invocations killed.
    pub crashes: u64,
    /// Duplicate bus deliveries created.
    pub duplicates: u64,
    /// Invocations started.
    pub invocations: u64,
    /// Messages received (a batch of 3 counts 3).
    pub receives: u64,
    /// Store turns granted.
    pub store_ops: u64,
    /// Outcomes by name, per stage.
    pub outcomes: BTreeMap<String, u64>,
    /// Object-removed events delivered, and what became of them.
    pub deletion_events: BTreeMap<String, u64>,
    /// Messages moved to a DLQ after max receives.
    pub retries_exhausted: u64,
    /// Letters redriven (mid-run and while settling).
    pub redriven: u64,
    /// Rebuilds sent (`--reprocess`).
    pub reprocessed: u64,
    /// Simulated time at quiescence (ms).
    pub sim_ms: u64,
}

impl Stats {
    /// Total injected faults.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// The three stages, as `cli/src/local.rs` wires them (in memory).
#[derive(Clone)]
pub struct Runners {
    /// Ingest.
    pub ingest: Arc<Runner<Ingest>>,
    /// Curate.
    pub curate: Arc<Runner<Curate>>,
    /// Profile.
    pub profile: Arc<Runner<Profile>>,
}

/// The configuration of a stage in the local layout (as `local_config`),
/// with in-process retries immediate: the runner's backoff jitter comes from
/// the thread RNG, which no seed controls, so the sim sets both delays to 0
/// (the simulated store latency still spaces attempts out). Parquet is
/// written uncompressed: the files are tiny, and a zstd context per column
/// chunk (created by every Parquet column writer and reader) cost more CPU
/// than everything else a seed does; the codec is no part of the protocol,
/// and the oracle runs with the same configuration.
pub fn stage_config(stage: &str) -> sluice::Result<Config> {
    let i = STAGES.iter().position(|s| *s == stage).unwrap_or(0);
    let input = if i == 0 {
        format!("s3://{LANDING}/{RAW_PREFIX}")
    } else {
        format!("s3://{}/", INPUT_BUCKETS[i])
    };
    let output = format!("s3://{}/", OUTPUT_BUCKETS[i]);
    let upstream = if i == 0 { "" } else { STAGES[i - 1] };
    let mut config = Config::from_raw(
        stage,
        RawConfig::from_vars([
            ("SLUICE_INPUT", input.as_str()),
            ("SLUICE_OUTPUT", output.as_str()),
            ("SLUICE_DLQ", "file:/unused-the-sim-owns-the-dlq"),
            ("SLUICE_METRICS", "off"),
            ("SLUICE_UPSTREAM", upstream),
        ])?,
    )?;
    config.retry.base_delay = Duration::ZERO;
    config.retry.max_delay = Duration::ZERO;
    config.parquet_compression = ParquetCompression::Uncompressed;
    Ok(config)
}

/// How much memory a seed's stages have. Most seeds run with the defaults
/// (ingest's 48 MiB budget, write-through multipart uploads); a tight seed
/// gives ingest a budget of a few KiB and the store a part size of a few
/// hundred bytes, so that its small files still take the bounded-memory
/// paths: rows spilled to disk (Arrow IPC), outputs held to whole parts
/// and spilled (`sluice::spool::OutputSet`), many `upload_part` calls for
/// faults and crashes to land between. The oracle runs with the same memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Ingest's per-file budget ([`Ingest::with_memory_budget`]); `None`: the default.
    pub ingest_budget: Option<usize>,
    /// The store's multipart part size (`MemoryStore::with_part_size`); 0: write-through.
    pub part_size: usize,
}

impl Memory {
    /// A third of the seeds run tight.
    pub fn pick(rng: &mut Rng) -> Memory {
        if !rng.chance(1.0 / 3.0) {
            return Memory::default();
        }
        Memory {
            ingest_budget: Some(rng.range(1024, 16 * 1024) as usize),
            part_size: rng.range(64, 1024) as usize,
        }
    }

    /// Whether this is tighter than the defaults.
    pub fn tight(&self) -> bool {
        *self != Memory::default()
    }

    /// A memory store with this part size.
    pub fn store(&self) -> MemoryStore {
        MemoryStore::new().with_part_size(self.part_size)
    }
}

impl Runners {
    /// Runners over `store`, dead-lettering into `dlqs` (one per stage),
    /// with `memory`.
    pub fn build(
        store: Arc<dyn ObjectStore>,
        dlqs: &[SimDlq; 3],
        memory: Memory,
    ) -> sluice::Result<Self> {
        let registry = Registry::embedded()?;
        let rt = |i: usize| -> sluice::Result<Runtime> {
            Ok(Runtime {
                config: Arc::new(stage_config(STAGES[i])?),
                store: store.clone(),
                dlq: Arc::new(dlqs[i].clone()),
                metrics: Arc::new(sluice::telemetry::NoMetrics),
            })
        };
        // One thread: the simulation replays its seeds exactly.
        let mut ingest = Ingest::new(registry).with_threads(1);
        if let Some(budget) = memory.ingest_budget {
            ingest = ingest.with_memory_budget(budget);
        }
        Ok(Runners {
            ingest: Arc::new(Runner::new(rt(0)?, ingest)),
            curate: Arc::new(Runner::new(rt(1)?, Curate::new(registry)?)),
            profile: Arc::new(Runner::new(
                rt(2)?,
                Profile::with_alerts(registry, Arc::new(MemoryAlerts::new()))?,
            )),
        })
    }

    /// Invoke a stage (as a redrive if asked).
    pub async fn handle(
        &self,
        stage: usize,
        payload: &Value,
        redrive: bool,
    ) -> sluice::Result<InvocationReport> {
        let replay = if redrive {
            Replay::redrive()
        } else {
            Replay::default()
        };
        self.replay(stage, payload, replay).await
    }

    /// Invoke a stage as a redrive or rebuild (or neither).
    pub async fn replay(
        &self,
        stage: usize,
        payload: &Value,
        replay: Replay,
    ) -> sluice::Result<InvocationReport> {
        // The Lambda deadline is real time (std Instant); the sim's time is
        // simulated, so the deadline is far away and timeouts are crashes.
        let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(900));
        match stage {
            0 => self.ingest.handle_replay(payload, deadline, replay).await,
            1 => self.curate.handle_replay(payload, deadline, replay).await,
            _ => self.profile.handle_replay(payload, deadline, replay).await,
        }
    }
}

/// The stage whose input an object falls under (the EventBridge rules of
/// `cli/src/local.rs`): bookkeeping keys are never routed, except an
/// upstream stage's commits (its manifests), which the next stage consumes.
pub fn route(bucket: &str, key: &str) -> Option<usize> {
    match (bucket, key) {
        ("validated", k) if k.starts_with("_sluice/manifests/ingest/") => return Some(1),
        ("curated", k) if k.starts_with("_sluice/manifests/curate/") => return Some(2),
        _ => {}
    }
    if is_internal_key(key) {
        return None;
    }
    match bucket {
        LANDING if key.starts_with(RAW_PREFIX) => Some(0),
        "validated" => Some(1),
        "curated" => Some(2),
        _ => None,
    }
}

/// A log line without what wall-clock time decides: bookkeeping objects
/// (manifests) carry processing times, so their ETags differ run to run;
/// `…/_sluice/…@1a2b3c4d` becomes `…/_sluice/…@~`.
fn stable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("_sluice/") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail.find([' ', ']']).unwrap_or(tail.len());
        let word = &tail[..end];
        match word.rfind('@') {
            Some(at) => {
                out.push_str(&word[..at]);
                out.push_str("@~");
            }
            None => out.push_str(word),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The simulated wall clock: 2024-06-01 plus simulated time.
pub fn sim_time(ms: u64) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2024, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    base + chrono::Duration::milliseconds(ms as i64)
}

/// An S3 notification for a removal (the helper only builds creations).
pub fn removal_notification(obj: &ObjectRef) -> Value {
    let mut v = s3_notification(std::slice::from_ref(obj));
    if let Some(r) = v
        .get_mut("Records")
        .and_then(Value::as_array_mut)
        .and_then(|r| r.first_mut())
    {
        r["eventName"] = json!("ObjectRemoved:Delete");
        if let Some(o) = r.get_mut("s3").and_then(|s| s.get_mut("object")) {
            if let Some(o) = o.as_object_mut() {
                o.remove("eTag");
                o.remove("size");
            }
        }
    }
    v
}

/// Render a producer's content as bytes.
pub fn render(key: &str, content: &Content) -> Bytes {
    let gz = key.ends_with(".gz");
    let gzip = |raw: &[u8]| -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = e.write_all(raw);
        e.finish().unwrap_or_default()
    };
    match content {
        Content::Good(opts) => {
            let mut raw = Vec::new();
            // The options are built valid by the plan; an error leaves the
            // file empty, which ingest dead-letters (and the oracle agrees).
            let _ = write_trips(&mut raw, opts, &mut |_| {});
            Bytes::from(if gz { gzip(&raw) } else { raw })
        }
        Content::Bad(kind, seed) => {
            let mut rng = Rng::new(*seed);
            match kind {
                Corrupt::NotGzip => {
                    let opts = TripsOptions {
                        rows: 10,
                        seed: *seed,
                        ..TripsOptions::default()
                    };
                    let mut raw = Vec::new();
                    let _ = write_trips(&mut raw, &opts, &mut |_| {});
                    // Named .gz but plain; a plain name gets gzip bytes.
                    Bytes::from(if gz { raw } else { gzip(&raw) })
                }
                Corrupt::Garbage => {
                    let n = rng.range(1, 600) as usize;
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                    Bytes::from(if gz { gzip(&bytes) } else { bytes })
                }
                Corrupt::WrongHeader => {
                    let raw: &[u8] = if key.contains(".jsonl") {
                        b"{\"vendor\":1,\"when\":\"yesterday\"}\n{\"vendor\":2}\n"
                    } else {
                        b"vendor,when,fare\n1,yesterday,3.5\n2,today,4.0\n"
                    };
                    Bytes::from(if gz { gzip(raw) } else { raw.to_vec() })
                }
                Corrupt::Empty => Bytes::new(),
            }
        }
    }
}

/// The producers' script for a seed: (time, action), in time order.
pub fn plan(cfg: &SimConfig, rng: &mut Rng) -> Vec<(u64, Action)> {
    const NAMES: [&str; 6] = ["jan", "feb", "q1 2024+late", "mar", "apr", "may"];
    const EXT: [&str; 4] = ["csv", "jsonl", "csv.gz", "jsonl.gz"];
    let mut out = Vec::new();
    let n = rng.range(cfg.keys.0, cfg.keys.1).min(NAMES.len() as u64) as usize;
    let mut horizon = 0;
    for name in NAMES.iter().take(n) {
        let ext = EXT[rng.below(EXT.len() as u64) as usize];
        let key = format!("{RAW_PREFIX}trips/{name}.{ext}");
        let format = if ext.starts_with("jsonl") {
            Format::Jsonl
        } else {
            Format::Csv
        };
        let mut t = rng.below(2000);
        let versions = rng.range(1, cfg.max_versions);
        let upload = |rng: &mut Rng, t: u64, out: &mut Vec<(u64, Action)>| {
            let content = if rng.chance(cfg.corrupt_rate) {
                let kinds = [
                    Corrupt::NotGzip,
                    Corrupt::Garbage,
                    Corrupt::WrongHeader,
                    Corrupt::Empty,
                ];
                Content::Bad(*rng.pick(&kinds), rng.next_u64())
            } else {
                let start = NaiveDate::from_ymd_opt(2024, 1, 1)
                    .and_then(|d| d.checked_add_days(chrono::Days::new(rng.below(4))))
                    .unwrap_or_default();
                Content::Good(TripsOptions {
                    rows: rng.range(cfg.rows.0, cfg.rows.1),
                    seed: rng.next_u64(),
                    bad_ratio: *rng.pick(&[0.0, 0.05, 0.1]),
                    format,
                    start,
                    days: rng.range(1, 3) as u32,
                    duplicate_ratio: *rng.pick(&[0.0, 0.0, 0.05]),
                })
            };
            out.push((
                t,
                Action::Upload {
                    key: key.clone(),
                    content,
                },
            ));
        };
        for v in 0..versions {
            if v > 0 {
                t += rng.below(cfg.max_version_gap_ms + 1);
            }
            upload(rng, t, &mut out);
        }
        if rng.chance(cfg.delete_rate) {
            t += rng.below(3000);
            out.push((t, Action::Delete { key: key.clone() }));
            if rng.chance(cfg.reupload_rate) {
                t += rng.below(3000);
                upload(rng, t, &mut out);
            }
        }
        horizon = horizon.max(t);
    }
    for _ in 0..rng.range(cfg.reprocesses.0, cfg.reprocesses.1) {
        let t = rng.below(horizon + 5000);
        let stage = rng.below(3) as usize;
        let pick = rng.below(1 << 20);
        out.push((t, Action::Reprocess { stage, pick }));
    }
    for _ in 0..rng.range(cfg.redrives.0, cfg.redrives.1) {
        let t = rng.below(horizon + 5000);
        out.push((
            t,
            Action::Redrive {
                stage: rng.below(3) as usize,
            },
        ));
    }
    // Stable: equal times keep script order.
    out.sort_by_key(|(t, _)| *t);
    out
}

fn describe(content: &Content) -> String {
    match content {
        Content::Good(o) => format!(
            "{} rows from {} over {} day(s), bad {:.2}, dup {:.2}",
            o.rows, o.start, o.days, o.bad_ratio, o.duplicate_ratio
        ),
        Content::Bad(k, _) => format!("corrupt: {k:?}"),
    }
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgState {
    /// Waiting to become visible (delivery delay or visibility timeout).
    Pending,
    /// Visible, waiting for a runner.
    Ready,
    /// Received by an invocation.
    InFlight(u64),
    /// Deleted after a successful handling.
    Acked,
    /// Moved to the DLQ.
    Dead,
}

/// One bus message (SQS in front of a stage).
#[derive(Debug, Clone)]
pub struct Msg {
    /// Id.
    pub id: u64,
    /// Stage index.
    pub stage: usize,
    /// The object.
    pub obj: ObjectRef,
    /// An object-removed event.
    pub removed: bool,
    /// Receives so far.
    pub receive_count: u32,
    /// When it was sent (ms).
    pub sent_ms: u64,
    /// A redrive (handled with `handle_redrive`).
    pub redrive: bool,
    /// A rebuild: the generation its `sluice-reprocess` attribute carries.
    pub reprocess: Option<u64>,
    /// Where it is.
    pub state: MsgState,
}

impl Msg {
    fn body(&self) -> Value {
        if self.removed {
            removal_notification(&self.obj)
        } else {
            s3_notification(std::slice::from_ref(&self.obj))
        }
    }

    fn sqs_record(&self) -> Value {
        json!({
            "messageId": format!("m-{}", self.id),
            "receiptHandle": format!("rh-{}-{}", self.id, self.receive_count),
            "body": self.body().to_string(),
            "attributes": {
                "ApproximateReceiveCount": self.receive_count.to_string(),
                "SentTimestamp": sim_time(self.sent_ms).timestamp_millis().to_string(),
            },
            "messageAttributes": match self.reprocess {
                // As `sluice replay --reprocess` sends it.
                Some(g) => json!({
                    REPROCESS_ATTRIBUTE: {"stringValue": g.to_string(), "dataType": "Number"}
                }),
                None => json!({}),
            },
            "eventSource": "aws:sqs",
            "eventSourceARN": format!("arn:aws:sqs:local:000000000000:{}", STAGES[self.stage]),
            "awsRegion": "local",
        })
    }

    fn label(&self) -> String {
        format!(
            "m{} {} {}{}s3://{}/{}@{}{}",
            self.id,
            STAGES[self.stage],
            if self.removed { "REMOVED " } else { "" },
            match self.reprocess {
                Some(g) => format!("REPROCESS g{g} "),
                None => String::new(),
            },
            self.obj.bucket,
            self.obj.key,
            short(self.obj.etag.as_deref().unwrap_or("-")),
            match self.obj.sequencer.as_deref() {
                None => " seq=none".to_string(),
                Some(CONSTANT_SEQUENCER) => " seq=const".to_string(),
                Some(s) => format!(" seq={}", s.trim_start_matches('0')),
            }
        )
    }
}

/// Something on the agenda.
#[derive(Debug, Clone, Copy)]
enum Ev {
    Producer(usize),
    Deliver(u64),
    Grant(u64),
    Crash(u64),
}

struct Inv {
    stage: usize,
    msgs: Vec<u64>,
    handle: JoinHandle<()>,
    pending: Option<(OpInfo, Decision, oneshot::Sender<Decision>)>,
    alive: bool,
}

/// One simulated run, from the producers' first upload to quiescence.
pub struct Sim {
    /// The seed.
    pub seed: u64,
    /// The knobs.
    pub cfg: SimConfig,
    /// The stages' memory (and the store's part size).
    pub memory: Memory,
    rng: Rng,
    /// Simulated time (ms).
    pub now: u64,
    seq: u64,
    agenda: BTreeMap<(u64, u64), Ev>,
    /// The store everything lives in.
    pub inner: MemoryStore,
    faulty: FaultyStore,
    notices: mpsc::UnboundedReceiver<Notice>,
    runners: Runners,
    /// Per-stage DLQs.
    pub dlqs: [SimDlq; 3],
    /// Every bus message.
    pub msgs: BTreeMap<u64, Msg>,
    ready: [Vec<u64>; 3],
    invs: BTreeMap<u64, Inv>,
    running: Option<u64>,
    graveyard: Vec<oneshot::Sender<Decision>>,
    next_inv: u64,
    next_msg: u64,
    script: Vec<(u64, Action)>,
    /// Every version uploaded, per landing key.
    pub versions: BTreeMap<String, Vec<Version>>,
    /// Landing deletions, per key (the last one).
    pub deletions: BTreeMap<String, Deletion>,
    /// Every (bucket, key) an event was ever recorded for.
    pub seen: BTreeSet<(String, String)>,
    faults_on: bool,
    crashes_on: bool,
    /// The event log.
    pub log: Vec<LogEntry>,
    /// Counters.
    pub stats: Stats,
    /// Problems of the simulation itself (a hang, no convergence).
    pub problems: Vec<String>,
    /// Log every line to stderr as it happens.
    pub verbose: bool,
}

impl Sim {
    /// A simulation for `seed`. Must be called inside a tokio runtime.
    pub fn new(seed: u64, cfg: SimConfig) -> sluice::Result<Self> {
        let mut rng = Rng::new(seed);
        let script = plan(&cfg, &mut rng.fork(1));
        let rng = rng.fork(2);
        // A fork of its own, so that the other streams (and every seed's
        // schedule from before the tight seeds) are unchanged.
        let memory = Memory::pick(&mut Rng::new(seed).fork(3));
        let inner = memory.store();
        let (tx, rx) = mpsc::unbounded_channel();
        let faulty = FaultyStore::new(inner.clone(), tx);
        let dlqs = [SimDlq::new(), SimDlq::new(), SimDlq::new()];
        let runners = Runners::build(Arc::new(faulty.clone()), &dlqs, memory)?;
        let mut sim = Sim {
            seed,
            cfg,
            memory,
            rng,
            now: 0,
            seq: 0,
            agenda: BTreeMap::new(),
            inner,
            faulty,
            notices: rx,
            runners,
            dlqs,
            msgs: BTreeMap::new(),
            ready: [Vec::new(), Vec::new(), Vec::new()],
            invs: BTreeMap::new(),
            running: None,
            graveyard: Vec::new(),
            next_inv: 1,
            next_msg: 1,
            script,
            versions: BTreeMap::new(),
            deletions: BTreeMap::new(),
            seen: BTreeSet::new(),
            faults_on: true,
            crashes_on: true,
            log: Vec::new(),
            stats: Stats {
                tight_memory: u64::from(memory.tight()),
                ..Stats::default()
            },
            problems: Vec::new(),
            verbose: false,
        };
        for i in 0..sim.script.len() {
            let t = sim.script[i].0;
            sim.schedule(t, Ev::Producer(i));
        }
        Ok(sim)
    }

    /// The producers' script.
    pub fn script(&self) -> &[(u64, Action)] {
        &self.script
    }

    fn schedule(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.agenda.insert((t, self.seq), ev);
    }

    fn note(&mut self, text: String) {
        let text = stable(&text);
        if self.verbose {
            eprintln!("[{:>8} ms] {text}", self.now);
        }
        self.log.push(LogEntry { t: self.now, text });
    }

    /// Run the producers and everything they cause until quiet, then settle:
    /// faults and crashes off, transient dead letters redriven, until quiet.
    pub async fn run(&mut self) {
        if !self.run_until_quiet().await {
            return;
        }
        self.note("quiescent: faults and crashes off; settling".into());
        self.stats.sim_ms = self.now;
        self.stats.upload_parts = self.faulty.parts_written();
        self.faults_on = false;
        self.crashes_on = false;
        for round in 0..=self.cfg.settle_rounds {
            let mut letters = Vec::new();
            for s in 0..3 {
                letters.extend(
                    self.dlqs[s]
                        .take(Letter::is_transient)
                        .into_iter()
                        .map(|l| (s, l)),
                );
            }
            if letters.is_empty() {
                return;
            }
            if round == self.cfg.settle_rounds {
                self.problems.push(format!(
                    "did not settle: transient dead letters remain after {round} redrive rounds"
                ));
                for (s, l) in letters {
                    self.dlqs[s].push(l);
                }
                return;
            }
            for (s, l) in letters {
                self.redrive_letter(s, l);
            }
            if !self.run_until_quiet().await {
                return;
            }
        }
    }

    /// The main loop; false if the simulation had to stop (a hang).
    async fn run_until_quiet(&mut self) -> bool {
        loop {
            if let Some(inv) = self.running {
                if !self.await_running(inv).await {
                    return false;
                }
                continue;
            }
            self.drain_store_events();
            if self.dispatch_one() {
                continue;
            }
            let Some(((t, _), ev)) = self.agenda.pop_first() else {
                return true;
            };
            self.now = self.now.max(t);
            self.process(ev).await;
        }
    }

    /// Wait until the running invocation parks at its next store call or ends.
    async fn await_running(&mut self, inv: u64) -> bool {
        let notice = tokio::time::timeout(Duration::from_secs(300), self.notices.recv()).await;
        let notice = match notice {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.problems.push("the notice channel closed".into());
                return false;
            }
            Err(_) => {
                self.problems.push(format!(
                    "invocation {inv} neither reached a store call nor finished within 300 s of real time (hang)"
                ));
                return false;
            }
        };
        self.running = None;
        match notice {
            Notice::Parked { inv, op, grant } => {
                let (latency, d) = self.decide(&op);
                if let Some(i) = self.invs.get_mut(&inv) {
                    i.pending = Some((op, d, grant));
                }
                self.schedule(self.now + latency, Ev::Grant(inv));
            }
            Notice::Done { inv, result } => self.finish(inv, result),
        }
        true
    }

    fn decide(&mut self, op: &OpInfo) -> (u64, Decision) {
        let latency = self.rng.below(self.cfg.max_latency_ms + 1);
        let mut d = Decision::default();
        if !self.faults_on {
            return (latency, d);
        }
        if self.rng.chance(self.cfg.fault_rate) {
            let kinds: &[FaultKind] = if op.is_write() && op.conditional {
                &FaultKind::ALL
            } else if op.is_write() {
                &FaultKind::ALL[..5]
            } else {
                &FaultKind::ALL[..4]
            };
            let k = *self.rng.pick(kinds);
            if k == FaultKind::LostResponse {
                d.after = Some(k);
            } else {
                d.before = Some(k);
            }
        } else if op.op == "get" && self.rng.chance(self.cfg.body_reset_rate) {
            d.cut_body = Some(self.rng.next_u64());
        }
        (latency, d)
    }

    async fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Producer(i) => self.produce(i).await,
            Ev::Deliver(id) => {
                if let Some(m) = self.msgs.get_mut(&id) {
                    if m.state == MsgState::Pending {
                        m.state = MsgState::Ready;
                        self.ready[m.stage].push(id);
                    }
                }
            }
            Ev::Grant(inv) => {
                let Some(i) = self.invs.get_mut(&inv) else {
                    return;
                };
                let Some((op, d, grant)) = i.pending.take() else {
                    return;
                };
                if !i.alive {
                    return;
                }
                let fault = d
                    .before
                    .or(d.after)
                    .or(d.cut_body.map(|_| FaultKind::Reset));
                self.stats.store_ops += 1;
                if let Some(f) = fault {
                    *self.stats.faults.entry(f).or_default() += 1;
                }
                let text = format!(
                    "inv{inv} {} s3://{}/{}{}",
                    op.op,
                    op.bucket,
                    op.key,
                    match (fault, d.cut_body.is_some()) {
                        (Some(f), true) => format!(" FAULT {} (mid-body)", f.name()),
                        (Some(f), false) => format!(" FAULT {}", f.name()),
                        _ => String::new(),
                    }
                );
                // Only writes and faults go to the log: reads are many and
                // decided nothing the log reader needs.
                if op.is_write() || fault.is_some() || op.op == "complete" {
                    self.note(text);
                }
                if grant.send(d).is_ok() {
                    self.running = Some(inv);
                }
            }
            Ev::Crash(inv) => {
                let Some(i) = self.invs.get_mut(&inv) else {
                    return;
                };
                if !i.alive {
                    return;
                }
                i.alive = false;
                // Keep the grant sender until the run ends: dropping it would
                // wake the gate, and the aborted task must never move again.
                if let Some(p) = i.pending.take() {
                    self.graveyard.push(p.2);
                }
                i.handle.abort();
                let msgs = i.msgs.clone();
                let stage = i.stage;
                self.stats.crashes += 1;
                let labels: Vec<String> = msgs
                    .iter()
                    .filter_map(|m| self.msgs.get(m).map(Msg::label))
                    .collect();
                self.note(format!(
                    "inv{inv} {} CRASHED (killed mid-invocation) holding [{}]",
                    STAGES[stage],
                    labels.join("; ")
                ));
                for m in msgs {
                    self.fail_msg(m, "crash");
                }
                self.invs.remove(&inv);
            }
        }
    }

    async fn produce(&mut self, i: usize) {
        let Some((_, action)) = self.script.get(i).cloned() else {
            return;
        };
        match action {
            Action::Upload { key, content } => {
                let bytes = render(&key, &content);
                let size = bytes.len() as u64;
                match self
                    .inner
                    .put(
                        LANDING,
                        &key,
                        bytes.clone(),
                        PutOptions::new(PutMode::Overwrite),
                    )
                    .await
                {
                    Ok(r) => {
                        let n = self.versions.get(&key).map_or(0, Vec::len) + 1;
                        let label = format!("v{n} ({})", describe(&content));
                        self.note(format!(
                            "producer: upload s3://{LANDING}/{key} {label} etag={} size={size}",
                            short(&r.etag)
                        ));
                        self.versions.entry(key.clone()).or_default().push(Version {
                            etag: r.etag.clone(),
                            bytes,
                            label,
                        });
                        let mut o = ObjectRef::new(LANDING, &key);
                        o.etag = Some(r.etag);
                        o.sequencer = r.sequencer;
                        o.size = Some(size);
                        self.faulty.record(StoreEvent {
                            removed: false,
                            obj: o,
                        });
                    }
                    Err(e) => self
                        .problems
                        .push(format!("producer upload of {key} failed: {e}")),
                }
            }
            Action::Delete { key } => {
                let id = sluice::lineage::SourceIdentity::of_key(LANDING, &key);
                let mkey = manifest_key_in("", "ingest", &id);
                let committed_etag = match self.inner.get_bytes(OUTPUT_BUCKETS[0], &mkey).await {
                    Ok(b) => serde_json::from_slice::<sluice::runner::Manifest>(&b)
                        .ok()
                        .filter(|m| m.state == sluice::commit::ManifestState::Committed)
                        .and_then(|m| m.source.etag),
                    Err(_) => None,
                };
                if let Err(e) = self.inner.delete(LANDING, &key).await {
                    self.problems
                        .push(format!("producer delete of {key} failed: {e}"));
                    return;
                }
                self.note(format!(
                    "producer: delete s3://{LANDING}/{key} (ingest manifest then: {})",
                    committed_etag.as_deref().map(short).unwrap_or("none")
                ));
                self.deletions.insert(
                    key.clone(),
                    Deletion {
                        at_ms: self.now,
                        committed_etag,
                    },
                );
                self.faulty.record(StoreEvent {
                    removed: true,
                    obj: ObjectRef::new(LANDING, &key),
                });
            }
            Action::Redrive { stage } => {
                let letters = self.dlqs[stage].take(|_| true);
                self.note(format!(
                    "operator: redrive {} letter(s) from the {} DLQ",
                    letters.len(),
                    STAGES[stage]
                ));
                for l in letters {
                    self.redrive_letter(stage, l);
                }
            }
            Action::Reprocess { stage, pick } => {
                let bucket = INPUT_BUCKETS[stage];
                let inputs: Vec<String> = match self.inner.list(bucket, "").await {
                    Ok(l) => l
                        .into_iter()
                        .map(|m| m.key)
                        .filter(|k| route(bucket, k) == Some(stage) && !k.starts_with('_'))
                        .collect(),
                    Err(e) => {
                        self.problems
                            .push(format!("operator list of {bucket} failed: {e}"));
                        return;
                    }
                };
                if inputs.is_empty() {
                    return;
                }
                let key = inputs[(pick % inputs.len() as u64) as usize].clone();
                // A generation later than any before (the CLI stamps the time).
                let generation = self.now + 1;
                self.stats.reprocessed += 1;
                self.note(format!(
                    "operator: reprocess s3://{bucket}/{key} at {} as generation {generation}",
                    STAGES[stage]
                ));
                let delay = self.rng.below(200);
                let id = self.next_msg;
                self.new_msg(stage, ObjectRef::new(bucket, &key), false, true, delay);
                if let Some(m) = self.msgs.get_mut(&id) {
                    m.reprocess = Some(generation);
                }
            }
        }
    }

    /// Put a letter back on its stage's queue as a redrive.
    fn redrive_letter(&mut self, stage: usize, letter: Letter) {
        self.stats.redriven += 1;
        let (obj, removed) = match &letter {
            Letter::Envelope(e) => match &e.source {
                Some(s) => {
                    let mut o = ObjectRef::new(&s.bucket, &s.key);
                    o.etag = s.etag.clone();
                    o.version_id = s.version_id.clone();
                    o.sequencer = s.sequencer.clone();
                    o.event_time = Some(e.first_seen);
                    (o, false)
                }
                None => {
                    // Names no object (an undecodable event): nothing to redrive;
                    // keep it where it was.
                    self.dlqs[stage].push(letter.clone());
                    self.stats.redriven -= 1;
                    return;
                }
            },
            Letter::Raw { obj, removed, .. } => (obj.clone(), *removed),
        };
        let reprocess = match &letter {
            Letter::Raw { reprocess, .. } => *reprocess,
            Letter::Envelope(_) => None,
        };
        self.note(format!("redrive: {}", letter.describe()));
        let delay = self.rng.below(200);
        let id = self.next_msg;
        self.new_msg(stage, obj, removed, true, delay);
        if let Some(m) = self.msgs.get_mut(&id) {
            m.reprocess = reprocess;
        }
    }

    fn new_msg(&mut self, stage: usize, obj: ObjectRef, removed: bool, redrive: bool, delay: u64) {
        let id = self.next_msg;
        self.next_msg += 1;
        let m = Msg {
            id,
            stage,
            obj,
            removed,
            receive_count: 0,
            sent_ms: self.now,
            redrive,
            reprocess: None,
            state: MsgState::Pending,
        };
        self.msgs.insert(id, m);
        self.schedule(self.now + delay, Ev::Deliver(id));
    }

    /// Turn recorded store changes into bus messages.
    fn drain_store_events(&mut self) {
        for ev in self.faulty.drain_events() {
            self.seen
                .insert((ev.obj.bucket.clone(), ev.obj.key.clone()));
            let Some(stage) = route(&ev.obj.bucket, &ev.obj.key) else {
                continue;
            };
            if ev.removed {
                let wanted = if stage == 0 {
                    self.cfg.deliver_landing_deletions
                } else {
                    self.cfg.deliver_deletions
                };
                if !wanted {
                    continue;
                }
            }
            let mut obj = ev.obj.clone();
            obj.event_time = Some(sim_time(self.now));
            if !ev.removed {
                if self.rng.chance(self.cfg.no_sequencer_rate) {
                    obj.sequencer = None;
                } else if self.rng.chance(self.cfg.constant_sequencer_rate) {
                    obj.sequencer = Some(CONSTANT_SEQUENCER.into());
                }
            }
            let copies = if self.rng.chance(self.cfg.duplicate_rate) {
                self.stats.duplicates += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.below(self.cfg.bus_max_delay_ms + 1);
                self.new_msg(stage, obj.clone(), ev.removed, false, delay);
            }
        }
    }

    /// Start one invocation if a stage has a free runner and ready messages.
    fn dispatch_one(&mut self) -> bool {
        let start = self.rng.below(3) as usize;
        for k in 0..3 {
            let s = (start + k) % 3;
            if self.ready[s].is_empty() {
                continue;
            }
            let live = self.invs.values().filter(|i| i.stage == s).count();
            if live >= self.cfg.concurrency {
                continue;
            }
            // A batch of random ready messages, all redrives or none.
            let want = self.rng.range(1, self.cfg.max_batch) as usize;
            let first = self.ready[s].remove(self.rng.below(self.ready[s].len() as u64) as usize);
            let redrive = self.msgs.get(&first).is_some_and(|m| m.redrive);
            let mut batch = vec![first];
            while batch.len() < want && !self.ready[s].is_empty() {
                let j = self.rng.below(self.ready[s].len() as u64) as usize;
                let id = self.ready[s][j];
                if self.msgs.get(&id).is_some_and(|m| m.redrive) != redrive {
                    break;
                }
                batch.push(self.ready[s].remove(j));
            }
            self.start(s, batch, redrive);
            return true;
        }
        false
    }

    fn start(&mut self, stage: usize, batch: Vec<u64>, redrive: bool) {
        let inv = self.next_inv;
        self.next_inv += 1;
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for id in &batch {
            if let Some(m) = self.msgs.get_mut(id) {
                m.receive_count += 1;
                m.state = MsgState::InFlight(inv);
                records.push(m.sqs_record());
                labels.push(format!("{} rc={}", m.label(), m.receive_count));
            }
        }
        self.stats.invocations += 1;
        self.stats.receives += batch.len() as u64;
        self.note(format!(
            "inv{inv} {} {}start [{}]",
            STAGES[stage],
            if redrive { "REDRIVE " } else { "" },
            labels.join("; ")
        ));
        let payload = json!({ "Records": records });
        let runners = self.runners.clone();
        let tx = self.faulty_notices();
        let fut = async move {
            let result = runners.handle(stage, &payload, redrive).await;
            let _ = tx.send(Notice::Done { inv, result });
        };
        let handle = tokio::spawn(INVOCATION.scope(inv, fut));
        self.invs.insert(
            inv,
            Inv {
                stage,
                msgs: batch,
                handle,
                pending: None,
                alive: true,
            },
        );
        if self.crashes_on && self.rng.chance(self.cfg.crash_rate) {
            let at = self.now + self.rng.below(self.cfg.crash_window_ms + 1);
            self.schedule(at, Ev::Crash(inv));
        }
        self.running = Some(inv);
    }

    fn faulty_notices(&self) -> mpsc::UnboundedSender<Notice> {
        self.faulty.notices()
    }

    fn finish(&mut self, inv: u64, result: sluice::Result<InvocationReport>) {
        let Some(i) = self.invs.remove(&inv) else {
            return;
        };
        let stage = i.stage;
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut lines = Vec::new();
        match result {
            Ok(report) => {
                failed.extend(report.failed_message_ids.iter().cloned());
                for (obj, o) in &report.outcomes {
                    let name = outcome_name(o);
                    *self
                        .stats
                        .outcomes
                        .entry(format!("{} {name}", STAGES[stage]))
                        .or_default() += 1;
                    let what = obj
                        .as_ref()
                        .map(|o| {
                            format!(
                                "s3://{}/{}@{}",
                                o.bucket,
                                o.key,
                                short(o.etag.as_deref().unwrap_or("-"))
                            )
                        })
                        .unwrap_or_else(|| "(no object)".into());
                    lines.push(format!("{what} {}", outcome_detail(o)));
                }
                // Deliveries that decoded to no object (removals, skipped).
                for id in &i.msgs {
                    if let Some(m) = self.msgs.get(id) {
                        if m.removed {
                            let fate = if failed.contains(&format!("m-{id}")) {
                                "failed"
                            } else if report.outcomes.iter().any(|(o, out)| {
                                o.is_none() && matches!(out, ObjectOutcome::DeadLettered(_))
                            }) {
                                "dead-lettered (rejected by the decoder?)"
                            } else {
                                "acknowledged (ignored or handled)"
                            };
                            *self
                                .stats
                                .deletion_events
                                .entry(format!("{} {fate}", STAGES[stage]))
                                .or_default() += 1;
                        }
                    }
                }
            }
            Err(e) => {
                for id in &i.msgs {
                    failed.insert(format!("m-{id}"));
                }
                lines.push(format!("handle failed: {e}"));
            }
        }
        self.note(format!(
            "inv{inv} {} done: {}",
            STAGES[stage],
            if lines.is_empty() {
                "nothing to do".to_string()
            } else {
                lines.join("; ")
            }
        ));
        for id in i.msgs {
            if failed.contains(&format!("m-{id}")) {
                self.fail_msg(id, "reported failed");
            } else if let Some(m) = self.msgs.get_mut(&id) {
                m.state = MsgState::Acked;
            }
        }
    }

    /// A message whose handling failed: back after the visibility timeout,
    /// or to the DLQ once it was received `max_receives` times.
    fn fail_msg(&mut self, id: u64, why: &str) {
        let Some(m) = self.msgs.get(&id).cloned() else {
            return;
        };
        if m.receive_count >= self.cfg.max_receives {
            if let Some(mm) = self.msgs.get_mut(&id) {
                mm.state = MsgState::Dead;
            }
            self.stats.retries_exhausted += 1;
            let letter = Letter::Raw {
                obj: m.obj.clone(),
                removed: m.removed,
                body: m.body(),
                receive_count: m.receive_count,
                reprocess: m.reprocess,
            };
            self.note(format!(
                "bus: {} {why}; moved to the {} DLQ (retries_exhausted)",
                m.label(),
                STAGES[m.stage]
            ));
            self.dlqs[m.stage].push(letter);
            return;
        }
        if let Some(mm) = self.msgs.get_mut(&id) {
            mm.state = MsgState::Pending;
        }
        let at = self.now + self.cfg.visibility_timeout_ms + self.rng.below(1000);
        self.schedule(at, Ev::Deliver(id));
    }

    /// Store calls that bypassed the scheduler.
    pub fn ungated_calls(&self) -> u64 {
        self.faulty.ungated_calls()
    }

    /// Messages not in a final state.
    pub fn unsettled_messages(&self) -> Vec<&Msg> {
        self.msgs
            .values()
            .filter(|m| !matches!(m.state, MsgState::Acked | MsgState::Dead))
            .collect()
    }
}

/// The outcome's name, as in `InvocationReport::summary`.
pub fn outcome_name(o: &ObjectOutcome) -> &'static str {
    match o {
        ObjectOutcome::Processed { .. } => "processed",
        ObjectOutcome::AlreadyProcessed => "already_processed",
        ObjectOutcome::Stale(_) => "stale",
        ObjectOutcome::Skipped(_) => "skipped",
        ObjectOutcome::DeadLettered(_) => "dead_lettered",
        ObjectOutcome::AlreadyDeadLettered => "already_dead_lettered",
        ObjectOutcome::Failed(_) => "failed",
        ObjectOutcome::Retracted(_) => "retracted",
        ObjectOutcome::Deferred { .. } => "deferred",
    }
}

fn outcome_detail(o: &ObjectOutcome) -> String {
    match o {
        ObjectOutcome::Processed { counts, .. } => format!(
            "processed (in {} out {} quarantined {})",
            counts.rows_in, counts.rows_out, counts.rows_quarantined
        ),
        ObjectOutcome::Stale(r) => format!("stale ({r})"),
        ObjectOutcome::Skipped(r) => format!("skipped ({r})"),
        ObjectOutcome::Retracted(n) => format!("retracted ({n} outputs)"),
        ObjectOutcome::DeadLettered(e) => format!("DEAD-LETTERED ({e})"),
        ObjectOutcome::Failed(e) => format!("failed ({e})"),
        other => outcome_name(other).to_string(),
    }
}
