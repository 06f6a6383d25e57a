//! The oracle and the invariants (DESIGN.md, "The invariants, after the
//! system is quiet").
//!
//! **The oracle.** For every landing key that exists at the end, the current
//! version alone is run through the same three stages, with the same
//! configuration, in a fresh [`MemoryStore`] with no faults, one event at a
//! time (as `cli/src/local.rs` cascades). Its outputs are what the simulated
//! store must hold for that key.
//!
//! **What is compared, and what is not.** Object bodies of the validated,
//! curated and profiles buckets (quarantine included), byte for byte, except
//! in a profile (`*.profile.json`): the `volume` check compares the row count
//! with the trailing profiles that happen to exist when it runs (the order
//! of arrival), and the overall `status` is derived from it, so both are
//! removed before comparing; everything else in a profile must match.
//! Object *metadata* is not compared (it holds `sluice-processed-at`, the
//! write's wall-clock time, and the event's sequencer, which the bus varies
//! on purpose). Manifests (`_sluice/manifests/...`) hold `processed_at` and
//! `duration_ms`; they are compared by their counts and output lists.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use sluice::lineage::{keys, SourceIdentity};
use sluice::runner::Manifest;
use sluice::store::{
    MemoryStore, NotifyingStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
};
use sluice::trigger::{s3_notification, Replay};

use crate::sim::{route, Memory, Runners, Sim, INPUT_BUCKETS, LANDING, OUTPUT_BUCKETS, STAGES};
use crate::store::{short, Letter, SimDlq};

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Invariant number (1-5; 0 for a problem of the simulation itself).
    pub inv: u8,
    /// A stable class name (for grouping seeds by defect).
    pub class: String,
    /// The landing key it concerns ("" if none).
    pub key: String,
    /// What exactly differs.
    pub detail: String,
}

impl Violation {
    fn new(inv: u8, class: impl Into<String>, key: &str, detail: impl Into<String>) -> Self {
        Violation {
            inv,
            class: class.into(),
            key: key.to_string(),
            detail: detail.into(),
        }
    }
}

/// Outputs of a pipeline run: bodies by (bucket, key), manifests by
/// (stage index, input key), and DLQ letters per stage.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Non-bookkeeping objects of the output buckets.
    pub objects: BTreeMap<(String, String), Bytes>,
    /// Lineage metadata of those objects: the correlation id.
    pub correlation: BTreeMap<(String, String), String>,
    /// Manifests, by (stage, input key).
    pub manifests: BTreeMap<(usize, String), Manifest>,
    /// Manifests that do not parse.
    pub bad_manifests: Vec<(usize, String)>,
    /// DLQ letters per stage.
    pub letters: [Vec<Letter>; 3],
}

/// Read a store's output buckets.
pub async fn snapshot(store: &MemoryStore, dlqs: &[SimDlq; 3]) -> sluice::Result<Snapshot> {
    let mut s = Snapshot::default();
    for (i, bucket) in OUTPUT_BUCKETS.iter().enumerate() {
        for meta in store.list(bucket, "").await? {
            if meta.key.starts_with("_sluice/") {
                if let Some(rest) = meta
                    .key
                    .strip_prefix(&format!("_sluice/manifests/{}/", STAGES[i]))
                {
                    let _ = rest;
                    let body = store.get_bytes(bucket, &meta.key).await?;
                    match serde_json::from_slice::<Manifest>(&body) {
                        // Only a committed manifest is a commit: a dead-letter
                        // commit or a retraction's tombstone holds no outputs.
                        Ok(m) if m.state == sluice::commit::ManifestState::Committed => {
                            s.manifests.insert((i, m.source.key.clone()), m);
                        }
                        Ok(_) => {}
                        Err(_) => s.bad_manifests.push((i, meta.key.clone())),
                    }
                }
                continue;
            }
            let id = (bucket.to_string(), meta.key.clone());
            let body = store.get_bytes(bucket, &meta.key).await?;
            if let Some(c) = meta.metadata.get(keys::CORRELATION_ID) {
                s.correlation.insert(id.clone(), c.clone());
            }
            s.objects.insert(id, body);
        }
    }
    for (i, d) in dlqs.iter().enumerate() {
        s.letters[i] = d.letters();
    }
    Ok(s)
}

/// The generation each stage committed for each of its inputs (0 unless
/// rebuilt), from a snapshot's manifests.
pub type Generations = BTreeMap<(usize, String), u64>;

/// The generations of `s`'s commits.
pub fn generations(s: &Snapshot) -> Generations {
    s.manifests
        .iter()
        .filter(|(_, m)| m.source.generation > 0)
        .map(|(k, m)| (k.clone(), m.source.generation))
        .collect()
}

/// Run the current version of one landing key alone, with no faults. An
/// input that the simulated system rebuilt (`--reprocess`) is processed as
/// that generation, as a rebuild would produce it alone.
pub async fn oracle(
    key: &str,
    bytes: &Bytes,
    gens: &Generations,
    memory: Memory,
) -> sluice::Result<Snapshot> {
    let mem = memory.store();
    let store = NotifyingStore::new(Arc::new(mem.clone()));
    let dlqs = [SimDlq::new(), SimDlq::new(), SimDlq::new()];
    let runners = Runners::build(Arc::new(store.clone()), &dlqs, memory)?;
    store
        .put(
            LANDING,
            key,
            bytes.clone(),
            PutOptions::new(PutMode::Overwrite),
        )
        .await?;
    let mut queue: std::collections::VecDeque<_> = store.drain_events().into();
    while let Some(obj) = queue.pop_front() {
        if let Some(stage) = route(&obj.bucket, &obj.key) {
            let replay = match gens.get(&(stage, obj.key.clone())) {
                Some(g) => Replay::reprocess(*g),
                None => Replay::default(),
            };
            runners
                .replay(stage, &s3_notification(std::slice::from_ref(&obj)), replay)
                .await?;
        }
        queue.extend(store.drain_events());
    }
    snapshot(&mem, &dlqs).await
}

/// A profile without its order-dependent parts: the `volume` check and the
/// overall `status` it feeds. Anything that is not a profile is unchanged.
pub fn normalize(bucket: &str, key: &str, body: &Bytes) -> Bytes {
    if bucket != OUTPUT_BUCKETS[2] || !key.ends_with(".profile.json") {
        return body.clone();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(checks) = o.get_mut("checks").and_then(Value::as_array_mut) {
            checks.retain(|c| c.get("check").and_then(Value::as_str) != Some("volume"));
        }
    }
    Bytes::from(serde_json::to_vec_pretty(&v).unwrap_or_default())
}

/// Where two bodies part: the first few JSON paths that differ (for JSON
/// and JSON Lines), else the first differing byte offset.
pub fn diff_summary(a: &Bytes, b: &Bytes) -> String {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        if out.len() >= 4 || a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(&format!("{path}.{k}"), p, q, out),
                        _ => out.push(format!("{path}.{k} present on one side only")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    // Name array elements by their "check"/"name" when they have one.
                    let label = p
                        .get("check")
                        .or_else(|| p.get("name"))
                        .and_then(Value::as_str)
                        .map(|l| format!("[{i}:{l}]"))
                        .unwrap_or_else(|| format!("[{i}]"));
                    walk(&format!("{path}{label}"), p, q, out);
                }
            }
            _ => {
                let show = |v: &Value| {
                    let t = v.to_string();
                    if t.len() > 160 {
                        format!(
                            "{}…",
                            &t[..t.char_indices().nth(160).map_or(t.len(), |c| c.0)]
                        )
                    } else {
                        t
                    }
                };
                out.push(format!("{path}: {} vs {}", show(a), show(b)));
            }
        }
    }
    let parse = |x: &Bytes| -> Option<Vec<Value>> {
        let text = std::str::from_utf8(x).ok()?;
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Some(vec![v]);
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    if let (Some(x), Some(y)) = (parse(a), parse(b)) {
        if x.len() != y.len() {
            return format!("{} vs {} JSON lines", x.len(), y.len());
        }
        let mut out = Vec::new();
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            walk(
                &if x.len() > 1 {
                    format!("line{}", i + 1)
                } else {
                    String::new()
                },
                p,
                q,
                &mut out,
            );
        }
        return out.join("; ");
    }
    let at = a
        .iter()
        .zip(b.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "{} vs {} bytes, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

fn object_id(bucket: &str, key: &str) -> String {
    SourceIdentity::of_key(bucket, key).object_id()
}

/// The id an output key is named by: the file name before its extension.
/// The input id a key names: the stem, without the version tag that ingest's
/// outputs carry (`<object id>-<content tag>.parquet`).
fn id_of(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.split(['.', '-']).next().unwrap_or(name)
}

/// Who owns what: landing key by the id its outputs are named with.
struct Owners {
    by_id: BTreeMap<String, String>,
}

impl Owners {
    fn new(sim: &Sim, oracles: &BTreeMap<String, Snapshot>, now: &Snapshot) -> Self {
        let mut by_id = BTreeMap::new();
        for k in sim.versions.keys() {
            by_id.insert(object_id(LANDING, k), k.clone());
        }
        // Validated keys, by the id curate names its quarantine with.
        let mut validated: BTreeSet<String> = BTreeSet::new();
        for (b, k) in &sim.seen {
            if b == OUTPUT_BUCKETS[0] {
                validated.insert(k.clone());
            }
        }
        for snap in oracles.values().chain(std::iter::once(now)) {
            for (b, k) in snap.objects.keys() {
                if b == OUTPUT_BUCKETS[0] {
                    validated.insert(k.clone());
                }
            }
        }
        for v in validated {
            if let Some(owner) = by_id.get(id_of(&v)).cloned() {
                by_id.insert(object_id(OUTPUT_BUCKETS[0], &v), owner);
            }
        }
        Owners { by_id }
    }

    fn owner(&self, key: &str) -> Option<&String> {
        self.by_id.get(id_of(key))
    }

    /// Strings that identify a landing key's descendants in the log.
    fn needles(&self, landing: &str) -> Vec<String> {
        let mut n: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, k)| *k == landing)
            .map(|(id, _)| id.clone())
            .collect();
        n.push(landing.to_string());
        n
    }
}

/// Everything the checks produced for one seed.
#[derive(Debug, Default)]
pub struct Checked {
    /// Violations, sorted.
    pub violations: Vec<Violation>,
    /// For each landing key with a violation: the log lines that touch it.
    pub needles: BTreeMap<String, Vec<String>>,
}

/// Every committed ingest and curate manifest: the rows in the Parquet files
/// it lists (outside `_quarantine/`) add up to its `rows_out`, and ingest's
/// counts balance. The counts are kept as rows are parsed, the files are what
/// was encoded; a row lost between the two (a spill that drops rows, say)
/// would be reproduced by the oracle, which runs the same code.
fn rows_written(now: &Snapshot, v: &mut Vec<Violation>) {
    for ((stage, input), m) in &now.manifests {
        if *stage > 1 || m.outputs.is_empty() {
            continue;
        }
        let mut rows = 0u64;
        for o in &m.outputs {
            if !o.key.ends_with(".parquet") || o.key.starts_with("_quarantine/") {
                continue;
            }
            let Some(body) = now.objects.get(&(o.bucket.clone(), o.key.clone())) else {
                continue; // a missing output is invariant 1's
            };
            match SerializedFileReader::new(body.clone()) {
                Ok(r) => rows += r.metadata().file_metadata().num_rows() as u64,
                Err(e) => v.push(Violation::new(
                    2,
                    format!("inv2: an output is not Parquet ({})", STAGES[*stage]),
                    input,
                    format!("s3://{}/{}: {e}", o.bucket, o.key),
                )),
            }
        }
        let c = m.counts;
        if rows != c.rows_out || (*stage == 0 && !c.balanced()) {
            v.push(Violation::new(
                2,
                format!(
                    "inv2: the outputs do not hold the rows counted ({})",
                    STAGES[*stage]
                ),
                input,
                format!(
                    "{} manifest of {input}: {} rows in its Parquet, counts in/out/quarantined {}/{}/{}",
                    STAGES[*stage], rows, c.rows_in, c.rows_out, c.rows_quarantined
                ),
            ));
        }
    }
}

fn which_version(sim: &Sim, key: &str, correlation: Option<&String>) -> String {
    let Some(c) = correlation else {
        return "an unknown version".into();
    };
    let versions = sim.versions.get(key).map(Vec::as_slice).unwrap_or(&[]);
    for (i, v) in versions.iter().enumerate() {
        let id = SourceIdentity {
            bucket: LANDING.into(),
            key: key.into(),
            etag: Some(v.etag.clone()),
            version_id: None,
            sequencer: None,
            generation: 0,
        };
        if id.derived_correlation_id() == *c {
            let last = i + 1 == versions.len();
            return format!("v{}{}", i + 1, if last { " (the current one)" } else { "" });
        }
    }
    "an unknown version".into()
}

/// Compare the outputs a landing key has with what an oracle says it should
/// have. `inv` and `what` name the invariant in the violations.
fn compare(
    sim: &Sim,
    now: &Snapshot,
    owners: &Owners,
    key: &str,
    want: &Snapshot,
    inv: u8,
    out: &mut Vec<Violation>,
) {
    let have: BTreeMap<&(String, String), &Bytes> = now
        .objects
        .iter()
        .filter(|((_, k), _)| owners.owner(k).map(String::as_str) == Some(key))
        .collect();
    let place = |b: &str, k: &str| format!("s3://{b}/{k}");
    let kind = |b: &str, k: &str| {
        if k.starts_with("_quarantine/") {
            format!("{b} quarantine")
        } else {
            b.to_string()
        }
    };
    for (id, body) in &want.objects {
        let (b, k) = id;
        match have.get(id) {
            None => out.push(Violation::new(
                inv,
                format!("inv{inv}: missing output in {}", kind(b, k)),
                key,
                format!("{} is missing (the oracle has it)", place(b, k)),
            )),
            Some(got) => {
                if normalize(b, k, got) != normalize(b, k, body) {
                    let version = which_version(sim, key, now.correlation.get(id));
                    let class = if version.contains("current") {
                        format!("inv{inv}: output bytes differ in {}", kind(b, k))
                    } else {
                        format!(
                            "inv{inv}: output of an older version survives in {}",
                            kind(b, k)
                        )
                    };
                    out.push(Violation::new(
                        inv,
                        class,
                        key,
                        format!(
                            "{} differs from the oracle (made from {version}; sim vs oracle: {})",
                            place(b, k),
                            diff_summary(&normalize(b, k, got), &normalize(b, k, body))
                        ),
                    ));
                }
            }
        }
    }
    for id in have.keys() {
        if !want.objects.contains_key(*id) {
            let (b, k) = *id;
            let version = which_version(sim, key, now.correlation.get(*id));
            out.push(Violation::new(
                inv,
                format!("inv{inv}: extra output in {} (stale)", kind(b, k)),
                key,
                format!(
                    "{} exists but the oracle has no such output (made from {version})",
                    place(b, k)
                ),
            ));
        }
    }
}

/// Whether a letter is about this exact input version.
fn letter_for(l: &Letter, bucket: &str, key: &str, etag: &str) -> bool {
    l.version()
        .is_some_and(|(b, k, e)| b == bucket && k == key && e.as_deref() == Some(etag))
}

/// Check every invariant on a finished simulation.
pub async fn check(sim: &Sim) -> Checked {
    let mut v: Vec<Violation> = Vec::new();
    for p in &sim.problems {
        v.push(Violation::new(
            0,
            "sim: did not finish cleanly",
            "",
            p.clone(),
        ));
    }
    let ungated = sim.ungated_calls();
    if ungated > 0 {
        v.push(Violation::new(
            0,
            "sim: store calls outside the scheduler",
            "",
            format!("{ungated} store call(s) were not gated: the schedule is not seed-determined"),
        ));
    }
    let now = match snapshot(&sim.inner, &sim.dlqs).await {
        Ok(s) => s,
        Err(e) => {
            v.push(Violation::new(
                0,
                "sim: cannot read the final store",
                "",
                e.to_string(),
            ));
            return Checked {
                violations: v,
                ..Checked::default()
            };
        }
    };
    // Current landing objects and the oracle for each.
    let mut current: BTreeMap<String, (String, Bytes)> = BTreeMap::new();
    for key in sim.versions.keys() {
        if let Ok(got) = sim.inner.get(LANDING, key).await {
            let etag = got.meta.etag.clone();
            if let Ok(b) = got.bytes().await {
                current.insert(key.clone(), (etag, b));
            }
        }
    }
    let gens = generations(&now);
    let mut oracles: BTreeMap<String, Snapshot> = BTreeMap::new();
    for (key, (_, bytes)) in &current {
        match oracle(key, bytes, &gens, sim.memory).await {
            Ok(s) => {
                oracles.insert(key.clone(), s);
            }
            Err(e) => v.push(Violation::new(
                0,
                "sim: the oracle failed",
                key,
                e.to_string(),
            )),
        }
    }
    // Oracles of the last committed version of deleted keys (invariant 5).
    let mut deleted_oracles: BTreeMap<String, (String, Snapshot)> = BTreeMap::new();
    for (key, d) in &sim.deletions {
        if current.contains_key(key) || d.committed_etag.is_none() {
            continue;
        }
        let m = now.manifests.get(&(0, key.clone()));
        let Some(etag) = m.and_then(|m| m.source.etag.clone()) else {
            v.push(Violation::new(
                5,
                "inv5: deleting the landing object removed its ingest manifest",
                key,
                format!(
                    "ingest had committed {} before the deletion at {} ms; no manifest is left",
                    short(d.committed_etag.as_deref().unwrap_or("-")),
                    d.at_ms
                ),
            ));
            continue;
        };
        let version = sim
            .versions
            .get(key)
            .and_then(|vs| vs.iter().find(|x| x.etag == etag));
        if let Some(ver) = version {
            if let Ok(s) = oracle(key, &ver.bytes, &gens, sim.memory).await {
                deleted_oracles.insert(key.clone(), (etag, s));
            }
        }
    }
    let owners = {
        let mut all = oracles.clone();
        for (k, (_, s)) in &deleted_oracles {
            all.insert(format!("{k} (deleted)"), s.clone());
        }
        Owners::new(sim, &all, &now)
    };
    for (i, key) in now.bad_manifests.iter() {
        v.push(Violation::new(
            3,
            "inv3: unreadable manifest",
            "",
            format!("{} manifest {key} does not parse", STAGES[*i]),
        ));
    }

    // Invariant 2, without the oracle (which runs the same code): a
    // commit's Parquet holds the rows its counts say were written.
    rows_written(&now, &mut v);

    // Invariant 1: outputs of current keys are exactly the oracle's.
    for (key, want) in &oracles {
        compare(sim, &now, &owners, key, want, 1, &mut v);
    }
    // Invariant 5: a deleted key keeps what its last committed version made.
    for (key, (_, want)) in &deleted_oracles {
        let mut found = Vec::new();
        compare(sim, &now, &owners, key, want, 5, &mut found);
        for f in &mut found {
            if f.class.contains("missing") {
                f.class = "inv5: deleting the landing object removed downstream data".into();
            } else {
                f.class = f
                    .class
                    .replace("inv5:", "inv5 (deleted key, vs its last version):");
            }
        }
        v.extend(found);
    }

    // Invariant 2: every current input is in exactly one state, and its rows
    // are all accounted for, as the oracle's.
    let exists = |bucket: &str, key: &str| -> Option<String> {
        if bucket == LANDING {
            return current.get(key).map(|(e, _)| e.clone());
        }
        now.objects
            .get(&(bucket.to_string(), key.to_string()))
            .map(|b| sluice::store::local::etag_of(b))
    };
    let mut inputs: Vec<(usize, String, String, String)> = Vec::new(); // (stage, key, etag, owner)
    for (key, (etag, _)) in &current {
        inputs.push((0, key.clone(), etag.clone(), key.clone()));
    }
    for ((b, k), body) in &now.objects {
        if k.starts_with("_quarantine/") {
            continue;
        }
        let stage = match b.as_str() {
            "validated" => 1,
            "curated" => 2,
            _ => continue,
        };
        let owner = owners.owner(k).cloned().unwrap_or_default();
        inputs.push((stage, k.clone(), sluice::store::local::etag_of(body), owner));
    }
    for (stage, key, etag, owner) in &inputs {
        let bucket = INPUT_BUCKETS[*stage];
        let m = now.manifests.get(&(*stage, key.clone()));
        let committed = m.is_some_and(|m| m.source.etag.as_deref() == Some(etag.as_str()));
        let dead = now.letters[*stage]
            .iter()
            .any(|l| letter_for(l, bucket, key, etag));
        let where_ = format!("s3://{bucket}/{key}@{}", short(etag));
        if committed && dead {
            v.push(Violation::new(
                4,
                format!(
                    "inv4: DLQ letter for a committed version ({})",
                    STAGES[*stage]
                ),
                owner,
                format!(
                    "{where_} is committed by {} and also in its DLQ",
                    STAGES[*stage]
                ),
            ));
        }
        if !committed && !dead {
            v.push(Violation::new(
                2,
                format!(
                    "inv2: current input neither committed nor dead-lettered ({})",
                    STAGES[*stage]
                ),
                owner,
                format!(
                    "{where_}: no {} manifest for this version ({}) and no DLQ letter",
                    STAGES[*stage],
                    m.and_then(|m| m.source.etag.as_deref())
                        .map(|e| format!("the manifest is for {}", short(e)))
                        .unwrap_or_else(|| "no manifest at all".into())
                ),
            ));
        }
        // Against the oracle of the owning landing key.
        let Some(want) = oracles
            .get(owner)
            .or_else(|| deleted_oracles.get(owner).map(|x| &x.1))
        else {
            continue;
        };
        let om = want.manifests.get(&(*stage, key.clone()));
        match (committed, om) {
            (true, Some(om)) => {
                let got = m.map(|m| m.counts).unwrap_or_default();
                let exp = om.counts;
                if (got.rows_in, got.rows_out, got.rows_quarantined)
                    != (exp.rows_in, exp.rows_out, exp.rows_quarantined)
                {
                    v.push(Violation::new(
                        2,
                        format!(
                            "inv2: row counts differ from the oracle ({})",
                            STAGES[*stage]
                        ),
                        owner,
                        format!(
                            "{where_}: in/out/quarantined {}/{}/{} vs the oracle's {}/{}/{}",
                            got.rows_in,
                            got.rows_out,
                            got.rows_quarantined,
                            exp.rows_in,
                            exp.rows_out,
                            exp.rows_quarantined
                        ),
                    ));
                }
                let outs = m.map(|m| m.outputs.clone()).unwrap_or_default();
                if outs != om.outputs {
                    v.push(Violation::new(
                        2,
                        format!(
                            "inv2: manifest outputs differ from the oracle ({})",
                            STAGES[*stage]
                        ),
                        owner,
                        format!(
                            "{where_}: lists {:?}, the oracle's lists {:?}",
                            outs.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
                            om.outputs
                                .iter()
                                .map(|o| o.key.as_str())
                                .collect::<Vec<_>>()
                        ),
                    ));
                }
            }
            (true, None) if *stage == 0 => v.push(Violation::new(
                2,
                "inv2: committed although the oracle dead-letters it (ingest)",
                owner,
                format!("{where_} is committed; processing it alone dead-letters it"),
            )),
            (false, Some(_)) if dead && *stage == 0 => v.push(Violation::new(
                2,
                "inv2: dead-lettered although the oracle commits it (ingest)",
                owner,
                format!(
                    "{where_} is in the DLQ ({}); processing it alone commits it",
                    now.letters[0]
                        .iter()
                        .find(|l| letter_for(l, bucket, key, etag))
                        .map(Letter::describe)
                        .unwrap_or_default()
                ),
            )),
            _ => {}
        }
    }

    // Invariant 3: no orphans; downstream manifests only for committed upstream outputs.
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut current_manifest: BTreeSet<(usize, String)> = BTreeSet::new();
    for ((stage, key), m) in &now.manifests {
        let bucket = INPUT_BUCKETS[*stage];
        let live = match exists(bucket, key) {
            Some(e) => m.source.etag.as_deref() == Some(e.as_str()),
            // A deleted landing object keeps its last commit (invariant 5).
            None => *stage == 0,
        };
        if live {
            current_manifest.insert((*stage, key.clone()));
            listed.extend(m.outputs.iter().map(|o| (o.bucket.clone(), o.key.clone())));
        }
    }
    for (b, k) in now.objects.keys() {
        if !listed.contains(&(b.clone(), k.clone())) {
            let owner = owners.owner(k).cloned().unwrap_or_default();
            v.push(Violation::new(
                3,
                format!("inv3: orphan output in {}", b),
                &owner,
                format!("s3://{b}/{k} is listed by no current manifest"),
            ));
        }
    }
    for ((stage, key), m) in &now.manifests {
        // A retraction's tombstone is what a removed input leaves behind.
        if *stage == 0 || m.state == sluice::commit::ManifestState::Retracted {
            continue;
        }
        let bucket = INPUT_BUCKETS[*stage];
        let upstream_ok = exists(bucket, key)
            .is_some_and(|e| m.source.etag.as_deref() == Some(e.as_str()))
            && listed.contains(&(bucket.to_string(), key.clone()));
        if !upstream_ok {
            let owner = owners.owner(key).cloned().unwrap_or_default();
            v.push(Violation::new(
                3,
                format!(
                    "inv3: {} manifest for an input that is not a committed {} output",
                    STAGES[*stage],
                    STAGES[*stage - 1]
                ),
                &owner,
                format!(
                    "{} manifest of s3://{bucket}/{key}@{}: that version is {}",
                    STAGES[*stage],
                    short(m.source.etag.as_deref().unwrap_or("-")),
                    match exists(bucket, key) {
                        None => "gone".to_string(),
                        Some(e) if m.source.etag.as_deref() != Some(e.as_str()) =>
                            format!("replaced by {}", short(&e)),
                        Some(_) => "listed by no current upstream manifest".to_string(),
                    }
                ),
            ));
        }
    }

    // Invariant 4: no letter for a committed version (for inputs that no
    // longer exist too), and no message left in flight.
    for (stage, letters) in now.letters.iter().enumerate() {
        for l in letters {
            let Some((b, k, Some(e))) = l.version() else {
                continue;
            };
            if exists(&b, &k).is_some() {
                continue; // checked above with the current inputs
            }
            if now
                .manifests
                .get(&(stage, k.clone()))
                .is_some_and(|m| m.source.etag.as_deref() == Some(e.as_str()))
            {
                let owner = owners.owner(&k).cloned().unwrap_or_else(|| k.clone());
                v.push(Violation::new(
                    4,
                    format!(
                        "inv4: DLQ letter for a committed version ({})",
                        STAGES[stage]
                    ),
                    &owner,
                    format!("{} is committed and in the DLQ", l.describe()),
                ));
            }
        }
    }
    for m in sim.unsettled_messages() {
        v.push(Violation::new(
            4,
            "inv4: message not settled at quiescence",
            &m.obj.key,
            format!("message m{} is {:?}", m.id, m.state),
        ));
    }

    // Keys whose current version is (rightly) dead-lettered at ingest keep
    // the outputs of their last good version: whether that is a defect is a
    // policy question (DESIGN invariant 1 says nothing older survives), so
    // those violations get a class of their own.
    let dead_current: BTreeSet<&String> = current
        .iter()
        .filter(|(key, (etag, _))| {
            now.manifests
                .get(&(0, (*key).clone()))
                .is_none_or(|m| m.source.etag.as_deref() != Some(etag.as_str()))
                && now.letters[0]
                    .iter()
                    .any(|l| letter_for(l, LANDING, key, etag))
        })
        .map(|(k, _)| k)
        .collect();
    for x in &mut v {
        if dead_current.contains(&x.key) && (x.inv == 1 || x.inv == 3) {
            x.class.push_str(" [current version dead-lettered]");
        }
    }
    v.sort();
    v.dedup();
    let mut needles = BTreeMap::new();
    for x in &v {
        if !x.key.is_empty() {
            needles
                .entry(x.key.clone())
                .or_insert_with(|| owners.needles(&x.key));
        }
    }
    Checked {
        violations: v,
        needles,
    }
}
