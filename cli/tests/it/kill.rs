//! Issue 10: `sluice run --local` killed with SIGKILL at many moments, then
//! run again, converges on exactly what one uninterrupted run produces, and
//! no unreadable file is ever visible, neither while a run is going nor
//! after a kill.
//!
//! The kill moments are counted in store commits: the local store bumps
//! `.sluice/sequencer` once per completed write (an output, a claim, a
//! manifest, a marker), so "kill once the sequencer reaches k" spreads the
//! kills over the whole run whatever the machine's speed (the kill lands at
//! or shortly after the k-th commit). Some kills wait in addition for an
//! upload in progress (a non-empty temp file), to land in the middle of
//! writing an object; some kill the first re-run too.
//!
//! What is compared with the uninterrupted run:
//! - every data file (Parquet, quarantine JSONL), byte for byte, with the
//!   ETag the store records for it (its sidecar under `.sluice/meta/`);
//! - every profile, as JSON, but for its `volume` check (see below);
//! - every manifest, but for `processed_at` and `duration_ms` (wall clock)
//!   and, for profiles, `counts.bytes_out` (the profile's length);
//! - every other `_sluice/` key (claims, dead-letter markers), by name and
//!   content;
//! - the DLQ and alerts files as sets of lines, but for an envelope's
//!   `first_seen` and `last_seen` (wall clock): both are at least once by
//!   design (an envelope is sent before its dead-letter marker is written,
//!   an alert before its profile), so a kill in between repeats a line,
//!   the same but for those times; the test prints such repeats;
//! - nothing else: `.sluice/` is the store's own state (lock, sequencer,
//!   uploads in progress, sidecars, whose metadata holds a processing time)
//!   and `*.lock` files are the JSONL appenders' locks.
//!
//! The profile holds no wall-clock time (its times are the data's). But its
//! `volume` check compares the row count with the profiles of earlier
//! partitions *that exist when it runs*, so it depends on the order the
//! partitions were profiled in, and a re-run after a kill profiles in
//! another order (it offers every pending input first): the check's value
//! differs, and sometimes its status, the profile's status, and a `volume`
//! alert with it. That is not a crash effect; the profile is compared
//! without that check (its status recomputed from the others) and `volume`
//! alerts are left out.
//!
//! The landed files are hard links to one template: a file dropped in by
//! hand has the ETag of its size, inode and mtime, and output keys carry
//! the input's ETag, so only the same inode gives comparable output keys.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// The tunables a local run reads from the environment: unset, so the
/// developer's shell cannot change what the test sees.
const TUNABLES: [&str; 7] = [
    "SLUICE_MAX_OBJECT_BYTES",
    "SLUICE_MAX_DECOMPRESSION_RATIO",
    "SLUICE_MAX_RECORD_BYTES",
    "SLUICE_RETRY_MAX_ATTEMPTS",
    "SLUICE_RETRY_BASE_DELAY_MS",
    "SLUICE_RETRY_MAX_DELAY_MS",
    "SLUICE_CODE_VERSION",
];

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args);
    for v in TUNABLES {
        cmd.env_remove(v);
    }
    cmd.env_remove("SLUICE_DEPLOYMENT");
    cmd
}

fn sluice(args: &[&str]) -> Output {
    command(args).output().expect("the sluice binary runs")
}

/// The landing files: four of trips (CSV, gzipped CSV, JSON Lines, CSV),
/// 3000 rows each over two or three days with 2% bad rows; the last one has
/// duplicates (curate quarantines them) and 20% bad rows (above the
/// contract's `max_quarantine_ratio`, so its profiles raise alerts). And one
/// empty file, which ingest dead-letters, so the DLQ is compared too.
fn make_template(dir: &Path) {
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    let files: [[&str; 6]; 4] = [
        // name, seed, start, days, bad ratio, duplicate ratio
        ["a.csv", "1", "2024-03-01", "3", "0.02", "0"],
        ["b.csv.gz", "2", "2024-03-02", "3", "0.02", "0"],
        ["c.jsonl", "3", "2024-03-01", "2", "0.02", "0"],
        ["d.csv", "4", "2024-03-03", "2", "0.2", "0.05"],
    ];
    for [name, seed, start, days, bad, dups] in files {
        let out = sluice(&[
            "generate",
            "trips",
            "--rows",
            "3000",
            "--seed",
            seed,
            "--bad-ratio",
            bad,
            "--duplicate-ratio",
            dups,
            "--start",
            start,
            "--days",
            days,
            "--out",
            raw.join(name).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "generate {name}: {out:?}");
    }
    std::fs::write(raw.join("e.csv"), b"").unwrap();
    // Read-only: a run that wrote into a landed file (shared by every copy,
    // see `fresh_copy`) would fail instead of spoiling the other runs.
    for e in std::fs::read_dir(&raw).unwrap() {
        let p = e.unwrap().path();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&p, perm).unwrap();
    }
}

/// A pipeline directory holding the template's landed files. They are hard
/// links: a file dropped in by hand has the ETag of its size, inode and
/// mtime, and the output keys carry the ETag, so every copy must see the
/// same landed versions for its outputs to be comparable with the reference.
fn fresh_copy(template: &Path, dest: &Path) {
    let raw = dest.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    for e in std::fs::read_dir(template.join("landing/raw/trips")).unwrap() {
        let e = e.unwrap();
        std::fs::hard_link(e.path(), raw.join(e.file_name())).unwrap();
    }
}

/// The store's commit counter (0 before the first write).
fn sequencer(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(".sluice/sequencer"))
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0)
}

/// The store's temp files of uploads, with their sizes.
fn upload_files(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir.join(".sluice/tmp")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect()
}

/// Whether an upload is in progress: a non-empty temp file of the store.
fn uploading(dir: &Path) -> bool {
    upload_files(dir).iter().any(|len| *len > 0)
}

/// How many uploads' temp files there are (a killed run leaves its own).
fn uploads(dir: &Path) -> usize {
    upload_files(dir).len()
}

// ---------------------------------------------------------------------------
// "No unreadable file is ever visible"
// ---------------------------------------------------------------------------

/// The buckets and folders a consumer may look at.
const VISIBLE: [&str; 5] = ["validated", "curated", "profiles", "dlq", "alerts"];

/// How a visible file must read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parquet,
    Json,
    /// An object written whole: every line is JSON, the last one ends.
    Jsonl,
    /// A JSONL file appended in place (DLQ, alerts): read, as its readers
    /// do, under its `.lock`.
    AppendedJsonl,
}

fn kind_of(dir: &Path, path: &Path) -> Option<Kind> {
    let rel = path.strip_prefix(dir).ok()?.to_string_lossy().into_owned();
    if rel.ends_with(".lock") {
        return None;
    }
    // A sidecar, whatever its name: the store's metadata of an object, JSON.
    if rel.starts_with(".sluice/meta/") {
        return Some(Kind::Json);
    }
    if rel.starts_with(".sluice/") {
        return None; // lock, sequencer, uploads in progress
    }
    if rel.starts_with("dlq/") || rel.starts_with("alerts/") {
        return rel.ends_with(".jsonl").then_some(Kind::AppendedJsonl);
    }
    if rel.ends_with(".parquet") {
        Some(Kind::Parquet)
    } else if rel.ends_with(".jsonl") {
        Some(Kind::Jsonl)
    } else if rel.ends_with(".json") {
        Some(Kind::Json)
    } else {
        None
    }
}

fn parse_lines(bytes: &[u8]) -> Result<(), String> {
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        return Err("the last line is not terminated (a torn append?)".into());
    }
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        serde_json::from_slice::<Value>(line).map_err(|e| format!("line {}: {e}", i + 1))?;
    }
    Ok(())
}

/// Read a file the way its consumer would; `Ok(false)` if it is gone.
fn check_file(path: &Path, kind: Kind) -> Result<bool, String> {
    let read = |p: &Path| match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    };
    let bytes = if kind == Kind::AppendedJsonl {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(lock_name))
            .map_err(|e| format!("cannot open its lock: {e}"))?;
        lock.lock_shared()
            .map_err(|e| format!("cannot lock it: {e}"))?;
        let b = read(path);
        let _ = lock.unlock();
        b?
    } else {
        read(path)?
    };
    let Some(bytes) = bytes else {
        return Ok(false);
    };
    match kind {
        Kind::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .map_err(|e| format!("not Parquet: {e}"))?
                .build()
                .map_err(|e| format!("not Parquet: {e}"))?;
            for batch in reader {
                batch.map_err(|e| format!("unreadable row group: {e}"))?;
            }
        }
        Kind::Json => {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        }
        Kind::Jsonl | Kind::AppendedJsonl => parse_lines(&bytes)?,
    }
    Ok(true)
}

/// Every file under `dir` (recursively); a folder removed meanwhile is skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// What a scan found.
#[derive(Debug, Default)]
struct Scan {
    /// Files read and found good (each version once).
    checked: u64,
    /// Files that were visible and could not be read.
    problems: Vec<String>,
}

/// Open every visible file not yet seen in this version (path, inode,
/// size, mtime: objects are immutable, so a file once good stays good
/// until replaced, which gives it a new inode).
fn scan(dir: &Path, seen: &mut HashSet<(PathBuf, u64, u64, i64)>, out: &mut Scan) {
    let mut files = Vec::new();
    for top in VISIBLE {
        walk(&dir.join(top), &mut files);
    }
    walk(&dir.join(".sluice/meta"), &mut files);
    for path in files {
        let Some(kind) = kind_of(dir, &path) else {
            continue;
        };
        let Ok(m) = std::fs::metadata(&path) else {
            continue; // removed since the listing
        };
        let version = (path.clone(), m.ino(), m.len(), m.mtime_nsec());
        if seen.contains(&version) {
            continue;
        }
        match check_file(&path, kind) {
            Ok(true) => {
                out.checked += 1;
                seen.insert(version);
            }
            Ok(false) => {}
            Err(e) => out.problems.push(format!("{}: {e}", path.display())),
        }
    }
}

/// A thread scanning `dir` over and over until stopped.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Scan>,
}

impl Watcher {
    fn start(dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut out = Scan::default();
            while !flag.load(Ordering::Relaxed) {
                scan(&dir, &mut seen, &mut out);
                std::thread::sleep(Duration::from_millis(1));
            }
            out
        });
        Watcher { stop, thread }
    }

    fn finish(self) -> Scan {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the watcher thread does not panic")
    }
}

/// Scan once with nothing running: every visible file must read.
fn assert_all_readable(dir: &Path, when: &str) -> u64 {
    let mut out = Scan::default();
    scan(dir, &mut HashSet::new(), &mut out);
    assert!(
        out.problems.is_empty(),
        "{when}: unreadable files are visible:\n{}",
        out.problems.join("\n")
    );
    out.checked
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once this many writes have been committed since the run started.
    Commits(u64),
    /// Once this many have, at the next moment an upload is in progress.
    Uploading(u64),
}

/// How a run ended.
enum Ended {
    /// Killed, with the sequencer (relative to the run's start) then, and
    /// the uploads it left unfinished (temp files, never visible).
    Killed { commits: u64, uploads: usize },
    /// Finished before the kill moment came (a kill moment past the end).
    Exited(std::process::ExitStatus),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Killed { commits, uploads } => {
                write!(
                    f,
                    "killed after {commits} commits, {uploads} uploads unfinished"
                )
            }
            Ended::Exited(status) => write!(f, "finished first ({status})"),
        }
    }
}

fn spawn_run(dir: &Path, log: &Path) -> Child {
    let stdout = File::create(log.with_extension("out")).unwrap();
    let stderr = File::create(log.with_extension("err")).unwrap();
    command(&["run", "--local", dir.to_str().unwrap()])
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("the sluice binary starts")
}

/// Start a run in `dir`, watched, and SIGKILL it at `at` (if it is still
/// running then). Every visible file read well while it ran.
fn run_and_kill(dir: &Path, log: &Path, at: KillAt) -> Ended {
    let base = sequencer(dir);
    let uploads_before = uploads(dir);
    let watcher = Watcher::start(dir);
    let mut child = spawn_run(dir, log);
    let ended = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Ended::Exited(status);
        }
        let done = sequencer(dir).saturating_sub(base);
        let now = match at {
            KillAt::Commits(k) => done >= k,
            KillAt::Uploading(k) => done >= k && uploading(dir),
        };
        if now {
            // std's Child::kill is SIGKILL on unix: no handler, no cleanup.
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(status.code().is_none(), "killed by a signal: {status:?}");
            break Ended::Killed {
                commits: sequencer(dir).saturating_sub(base),
                uploads: uploads(dir).saturating_sub(uploads_before),
            };
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let scan = watcher.finish();
    assert!(
        scan.problems.is_empty(),
        "{}: while the run went ({at:?}), unreadable files were visible:\n{}",
        dir.display(),
        scan.problems.join("\n")
    );
    ended
}

/// Run to completion in `dir`, watched; it must succeed.
fn run_to_end(dir: &Path, log: &Path) {
    let watcher = Watcher::start(dir);
    let status = spawn_run(dir, log).wait().unwrap();
    let scan = watcher.finish();
    let text = |ext: &str| std::fs::read_to_string(log.with_extension(ext)).unwrap_or_default();
    assert!(
        status.success(),
        "{}: the run failed ({status:?}); its output, {}.out and .err:\n{}\n{}",
        dir.display(),
        log.display(),
        text("out"),
        text("err")
    );
    assert!(
        scan.problems.is_empty(),
        "{}: while the run went, unreadable files were visible:\n{}",
        dir.display(),
        scan.problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// What a quiet directory holds
// ---------------------------------------------------------------------------

/// A directory's outputs, with the wall-clock fields taken out.
#[derive(Debug, PartialEq)]
struct Snapshot(BTreeMap<String, Entry>);

#[derive(Debug, PartialEq)]
enum Entry {
    /// Compared byte for byte; with the ETag its sidecar records, if any.
    Bytes {
        len: usize,
        sha: String,
        etag: Option<String>,
    },
    /// Compared as JSON.
    Json(Value),
    /// Compared as a set of JSON lines.
    Lines(BTreeSet<String>),
}

fn without(mut v: Value, fields: &[&str]) -> Value {
    if let Some(map) = v.as_object_mut() {
        for f in fields {
            map.remove(*f);
        }
    }
    v
}

fn snapshot(dir: &Path) -> Snapshot {
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut out = BTreeMap::new();
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with(".sluice/") || rel.ends_with(".lock") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let json =
            || -> Value { serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}")) };
        let entry = if rel.starts_with("dlq/") || rel.starts_with("alerts/") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            // A set: both are at least once (see the module docs).
            let lines: BTreeSet<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: {e}")))
                .map(|v| without(v, &["first_seen", "last_seen"]))
                // Volume alerts depend on the order of profiling.
                .filter(|v| v["check"] != "volume")
                .map(|v| v.to_string())
                .collect();
            if lines.is_empty() {
                continue; // as good as no file
            }
            Entry::Lines(lines)
        } else if rel.contains("/_sluice/manifests/") {
            let mut m = without(json(), &["processed_at", "duration_ms"]);
            if rel.starts_with("profiles/") {
                // The profile's length, which the volume check changes.
                m["counts"] = without(m["counts"].take(), &["bytes_out"]);
            }
            Entry::Json(m)
        } else if rel.starts_with("profiles/") && rel.ends_with(".profile.json") {
            // Without the `volume` check (see the module docs); the status
            // is "breach" when any check is, so it is recomputed without it.
            let mut p = json();
            let mut breach = false;
            if let Some(checks) = p["checks"].as_array_mut() {
                checks.retain(|c| c["check"] != "volume");
                breach = checks.iter().any(|c| c["status"] == "breach");
            }
            p["status"] = Value::from(if breach { "breach" } else { "pass" });
            Entry::Json(p)
        } else if rel.contains("/_sluice/") {
            Entry::Json(json())
        } else {
            let etag = std::fs::read(dir.join(".sluice/meta").join(&rel))
                .ok()
                .map(|b| {
                    let v: Value = serde_json::from_slice(&b)
                        .unwrap_or_else(|e| panic!("sidecar of {rel}: {e}"));
                    v["etag"].as_str().unwrap_or("").to_string()
                });
            Entry::Bytes {
                len: bytes.len(),
                sha: sluice::store::local::etag_of(&bytes),
                etag,
            }
        };
        out.insert(rel, entry);
    }
    Snapshot(out)
}

/// Lines of the DLQ and alerts files that repeat another (but for their
/// times): legitimate, since both are at least once, and worth knowing.
fn duplicates(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(&dir.join("dlq"), &mut files);
    walk(&dir.join("alerts"), &mut files);
    let mut out = Vec::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let mut seen = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            let v = without(v, &["first_seen", "last_seen"]);
            if !seen.insert(v.to_string()) {
                let what = match v["alert_id"].as_str() {
                    Some(id) => format!("alert {id} ({} of {})", v["check"], v["object"]),
                    None => format!("the envelope of {}", v["source"]["key"]),
                };
                let name = path.strip_prefix(dir).unwrap_or(path).display();
                out.push(format!("{name} repeats {what}"));
            }
        }
    }
    out
}

/// Where two JSON values differ, as `path: want -> got` lines.
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_diff(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// The differences between two snapshots, one per line ("" if none).
fn diff(reference: &Snapshot, got: &Snapshot) -> String {
    let mut lines = Vec::new();
    let keys: BTreeSet<&String> = reference.0.keys().chain(got.0.keys()).collect();
    for k in keys {
        match (reference.0.get(k), got.0.get(k)) {
            (Some(_), None) => lines.push(format!("missing:    {k}")),
            (None, Some(_)) => lines.push(format!("unexpected: {k}")),
            (Some(a), Some(b)) if a != b => {
                let mut at = Vec::new();
                match (a, b) {
                    (Entry::Json(a), Entry::Json(b)) => json_diff("", a, b, &mut at),
                    (Entry::Lines(a), Entry::Lines(b)) => {
                        at.push(format!("{} lines want, {} got", a.len(), b.len()));
                        at.extend(a.difference(b).map(|l| format!("only wanted: {l}")));
                        at.extend(b.difference(a).map(|l| format!("only got: {l}")));
                    }
                    _ => at.push(format!("want {a:?}, got {b:?}")),
                }
                lines.push(format!("differs:    {k}\n    {}", at.join("\n    ")));
            }
            _ => {}
        }
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn sigkill_at_any_moment_then_a_rerun_converges_on_the_uninterrupted_outputs() {
    let started = Instant::now();
    // Kept if the test fails (a panic skips the removal at the end).
    let tmp = tempfile::Builder::new()
        .prefix("sluice-kill-")
        .disable_cleanup(true)
        .tempdir()
        .unwrap();
    eprintln!("working in {}", tmp.path().display());
    let template = tmp.path().join("template");
    make_template(&template);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // The reference: one uninterrupted run.
    let ref_dir = tmp.path().join("reference");
    fresh_copy(&template, &ref_dir);
    let t = Instant::now();
    run_to_end(&ref_dir, &logs.join("reference"));
    let ref_wall = t.elapsed();
    let reference = snapshot(&ref_dir);
    let total = sequencer(&ref_dir);
    let readable = assert_all_readable(&ref_dir, "after the reference run");
    // The reference is what it should be: every kind of output is there,
    // and the empty file was dead-lettered once.
    let count = |f: &dyn Fn(&str) -> bool| reference.0.keys().filter(|k| f(k)).count();
    for (what, n) in [
        (
            "validated Parquet",
            count(&|k| k.starts_with("validated/trips/")),
        ),
        (
            "curated Parquet",
            count(&|k| k.starts_with("curated/trips/")),
        ),
        ("profiles", count(&|k| k.ends_with(".profile.json"))),
        ("manifests", count(&|k| k.contains("/_sluice/manifests/"))),
        ("quarantine", count(&|k| k.contains("/_quarantine/"))),
    ] {
        assert!(
            n > 0,
            "the reference has no {what}: {:?}",
            reference.0.keys()
        );
    }
    match reference.0.get("dlq/ingest.jsonl") {
        Some(Entry::Lines(l)) => assert_eq!(l.len(), 1, "{l:?}"),
        other => panic!("the reference DLQ: {other:?}"),
    }
    match reference.0.get("alerts/alerts.jsonl") {
        Some(Entry::Lines(l)) => assert!(
            l.iter().all(|a| a.contains("max_quarantine_ratio")) && l.len() == 2,
            "two alerts, for d.csv's two days: {l:?}"
        ),
        other => panic!("the reference alerts: {other:?}"),
    }
    assert!(
        duplicates(&ref_dir).is_empty(),
        "{:?}",
        duplicates(&ref_dir)
    );
    assert!(total > 20, "the reference committed only {total} writes");
    eprintln!(
        "reference: {} entries, {readable} readable files, {total} commits, {:.2}s",
        reference.0.len(),
        ref_wall.as_secs_f64()
    );

    // The kill moments, spread over the reference's commits: after the k-th
    // commit; after it, once an upload is in progress; and a few that kill
    // the first re-run too.
    let mut plans: Vec<(KillAt, Option<KillAt>)> = Vec::new();
    for k in [0, 1, 3, 7, 15, 30, 50, 75, 100] {
        plans.push((KillAt::Commits(k * total / 100), None));
    }
    for k in [10, 40, 70, 95] {
        plans.push((KillAt::Uploading(k * total / 100), None));
    }
    plans.push((KillAt::Commits(total / 5), Some(KillAt::Commits(total / 5))));
    plans.push((
        KillAt::Uploading(total / 2),
        Some(KillAt::Uploading(total / 10)),
    ));
    plans.push((KillAt::Commits(total - 2), Some(KillAt::Commits(1))));

    let mut failures = Vec::new();
    for (i, (first, second)) in plans.iter().enumerate() {
        let dir = tmp.path().join(format!("kill-{i}"));
        fresh_copy(&template, &dir);
        let t = Instant::now();
        let log = |n: &str| logs.join(format!("kill-{i}-{n}"));
        let mut ends = vec![run_and_kill(&dir, &log("a"), *first)];
        assert_all_readable(&dir, &format!("kill-{i} after the kill at {first:?}"));
        if let Some(second) = second {
            ends.push(run_and_kill(&dir, &log("b"), *second));
            assert_all_readable(&dir, &format!("kill-{i} after the kill at {second:?}"));
        }
        run_to_end(&dir, &log("c"));
        assert_all_readable(&dir, &format!("kill-{i} after the re-run"));
        let d = diff(&reference, &snapshot(&dir));
        for dup in duplicates(&dir) {
            eprintln!("kill-{i}: note: {dup}");
        }
        let ends: Vec<String> = ends.iter().map(|e| e.to_string()).collect();
        let ends = ends.join(", then ");
        eprintln!(
            "kill-{i}: {first:?} then {second:?}: {ends}; converged: {}; {:.2}s",
            d.is_empty(),
            t.elapsed().as_secs_f64()
        );
        if !d.is_empty() {
            failures.push(format!(
                "kill-{i} ({first:?}, then {second:?}: {ends}), against the reference:\n{d}"
            ));
        }
    }
    eprintln!("total {:.1}s", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(tmp.path());
    }
    assert!(
        failures.is_empty(),
        "a re-run after SIGKILL did not converge on the uninterrupted outputs:\n{}",
        failures.join("\n\n")
    );
}

/// The watcher can fail: a truncated Parquet file, a truncated JSON file, a
/// JSONL object with a bad line and a DLQ with a torn last line are each
/// reported; their whole versions are not.
#[test]
fn the_readability_scan_reports_torn_files() {
    use arrow::array::{ArrayRef, Int64Array};
    use arrow::record_batch::RecordBatch;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let column: ArrayRef = Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>()));
    let batch = RecordBatch::try_from_iter([("n", column)]).unwrap();
    let mut parquet = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut parquet, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let json = br#"{"row_count": 1000, "checks": []}"#.to_vec();
    let lines = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
    let files: [(&str, &[u8]); 5] = [
        ("validated/t/v1/dt=2024-01-01/x.parquet", &parquet),
        ("profiles/t/v1/dt=2024-01-01/x.profile.json", &json),
        ("validated/_quarantine/ingest/t/x.jsonl", &lines),
        ("dlq/ingest.jsonl", &lines),
        (".sluice/meta/validated/t/v1/dt=2024-01-01/x.parquet", &json),
    ];
    let write = |rel: &str, body: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    for (rel, body) in files {
        write(rel, body);
    }
    assert_eq!(assert_all_readable(dir, "whole files"), 5);

    for (rel, body) in files {
        write(rel, &body[..body.len() - 3]);
    }
    let mut out = Scan::default();
    scan(dir, &mut HashSet::new(), &mut out);
    assert_eq!(out.problems.len(), 5, "{:#?}", out.problems);
    let all = out.problems.join("\n");
    for (rel, _) in files {
        assert!(all.contains(rel), "{rel} not reported: {all}");
    }
    assert!(all.contains("not Parquet"), "{all}");
    assert!(all.contains("not terminated"), "{all}");
}
