//! The operations commands against a local pipeline directory, through the
//! real binary: a file dead-lettered for a cause that is then fixed is
//! redriven; replays of keys and prefixes are idempotent; trace follows the
//! file through every stage; status sees the DLQ and the backlog.
//! (The same commands against LocalStack are in tests/e2e.)

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args);
    for v in sluice_cli_tunables() {
        cmd.env_remove(v);
    }
    cmd.env_remove("SLUICE_DEPLOYMENT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the sluice binary runs")
}

fn sluice_cli_tunables() -> [&'static str; 2] {
    ["SLUICE_MAX_OBJECT_BYTES", "SLUICE_CODE_VERSION"]
}

/// Run, expect `code`, parse stdout as JSON.
fn json(args: &[&str], env: &[(&str, &str)], code: i32) -> Value {
    let out = sluice(args, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "sluice {args:?}: stdout {stdout} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("sluice {args:?}: {e}: {stdout}"))
}

fn dlq_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("dlq/ingest.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn redrive_after_a_fix_then_replays_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    let file = raw.join("a b+c.csv");
    let out = sluice(
        &[
            "generate",
            "trips",
            "--rows",
            "2000",
            "--seed",
            "5",
            "--bad-ratio",
            "0.02",
            "--start",
            "2024-03-01",
            "--days",
            "2",
            "--out",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");

    // Landed, not yet run: the backlog says so, and it never gets idle alone.
    let waiting = json(&["status", "--local", d, "--json"], &[], 0);
    assert_eq!(waiting["stages"][0]["backlog"], 1, "{waiting}");
    assert!(
        waiting["stages"][0]["backlog_oldest_age_s"]
            .as_i64()
            .unwrap()
            >= 0,
        "{waiting}"
    );
    let out = sluice(&["status", "--local", d, "--wait-idle", "1"], &[]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // The cause: a limit too small for the file. It is dead-lettered.
    let small = [("SLUICE_MAX_OBJECT_BYTES", "1000")];
    let out = sluice(&["run", "--local", d], &small);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(dlq_lines(dir), 1);
    let status = json(&["status", "--local", d, "--json"], &[], 3);
    assert_eq!(status["stages"][0]["stage"], "ingest");
    assert_eq!(status["stages"][0]["dlq_depth"], 1);

    // Dry run and a filter that matches nothing change nothing.
    let dry = json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d,
            "--dry-run",
            "--json",
        ],
        &[],
        0,
    );
    assert_eq!(dry["counts"]["would_replay"], 1, "{dry}");
    let none = json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d,
            "--kind",
            "not_found",
            "--json",
        ],
        &[],
        0,
    );
    assert_eq!(none["objects"].as_array().unwrap().len(), 0, "{none}");
    let none = json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d,
            "--until",
            "2000-01-01T00:00:00Z",
            "--json",
        ],
        &[],
        0,
    );
    assert_eq!(none["objects"].as_array().unwrap().len(), 0, "{none}");
    assert_eq!(dlq_lines(dir), 1);

    // Redriven before the fix: it fails again, and is recorded again.
    let again = json(
        &["replay", "dlq", "--stage", "ingest", "--local", d, "--json"],
        &small,
        3,
    );
    assert_eq!(again["counts"]["failed_again"], 1, "{again}");
    assert!(
        again["objects"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit"),
        "{again}"
    );
    assert_eq!(
        dlq_lines(dir),
        1,
        "the old envelope acknowledged, a new one written"
    );

    // The fix, then the redrive: processed, and on through every stage.
    let fixed = json(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d,
            "--rate",
            "50",
            "--kind",
            "invalid_input",
            "--since",
            "1h",
            "--json",
        ],
        &[],
        0,
    );
    assert_eq!(fixed["counts"]["new"], 1, "{fixed}");
    assert_eq!(dlq_lines(dir), 0);
    assert!(
        fixed["notes"].to_string().contains("downstream"),
        "the outputs flowed on: {fixed}"
    );

    // Every replay now is a no-op that says so.
    let empty = json(
        &["replay", "dlq", "--stage", "ingest", "--local", d, "--json"],
        &[],
        0,
    );
    assert_eq!(empty["objects"].as_array().unwrap().len(), 0);
    let keys = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--json",
            "raw/trips/a b+c.csv",
            "s3://landing/raw/trips/a b+c.csv",
        ],
        &[],
        0,
    );
    assert_eq!(keys["counts"]["already_processed"], 2, "{keys}");
    let missing = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--json",
            "raw/trips/nope.csv",
        ],
        &[],
        3,
    );
    assert_eq!(missing["counts"]["missing"], 1, "{missing}");
    for stage in ["ingest", "curate", "profile"] {
        let b = json(
            &[
                "replay", "backfill", "--stage", stage, "--local", d, "--json",
            ],
            &[],
            0,
        );
        let n = b["counts"]["already_processed"].as_u64().unwrap();
        assert!(n >= 1, "{stage}: {b}");
        assert_eq!(b["counts"]["new"], 0, "{stage}: {b}");
    }
    let outside = sluice(
        &[
            "replay",
            "backfill",
            "--stage",
            "curate",
            "--local",
            d,
            "--prefix",
            "s3://landing/raw/",
        ],
        &[],
    );
    assert_eq!(outside.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("is not under stage curate's input"));

    // The trace: ingest, then a curate and a profile per partition.
    let t = json(
        &[
            "trace",
            "--local",
            d,
            "--key",
            "raw/trips/a b+c.csv",
            "--json",
        ],
        &[],
        0,
    );
    let stages: Vec<&str> = t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages.first(), Some(&"ingest"), "{t}");
    assert_eq!(
        stages.iter().filter(|s| **s == "curate").count(),
        2,
        "two partitions: {t}"
    );
    assert_eq!(stages.iter().filter(|s| **s == "profile").count(), 2, "{t}");
    assert_eq!(t["hops"][0]["counts"]["rows_in"], 2000);
    assert!(t["end_to_end_lag_ms"].as_i64().unwrap() >= 0);
    let id = t["correlation_id"].as_str().unwrap();
    let by_id = json(&["trace", "--local", d, id, "--json"], &[], 0);
    assert_eq!(by_id["hops"], t["hops"]);
    let unknown = sluice(&["trace", "--local", d, "sl-0000"], &[]);
    assert_eq!(unknown.status.code(), Some(1));

    // Idle and clean.
    let status = json(
        &["status", "--local", d, "--json", "--wait-idle", "10"],
        &[],
        0,
    );
    for s in status["stages"].as_array().unwrap() {
        assert_eq!(s["backlog"], 0, "{status}");
        assert_eq!(s["dlq_depth"], 0, "{status}");
        assert!(s["backlog_oldest_age_s"].is_null(), "{status}");
    }
}

#[test]
fn commands_say_where_to_act_and_name_bad_input() {
    let out = sluice(&["status"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--local DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("outputs.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = sluice(&["status", "--deployment", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outputs.json: no output \"buckets\""), "{err}");
    // A corrupt line in the local DLQ is named, not skipped.
    let d = tmp.path().join("p");
    std::fs::create_dir_all(d.join("dlq")).unwrap();
    std::fs::write(d.join("dlq/ingest.jsonl"), "{\"oops\":1}\n").unwrap();
    let out = sluice(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.jsonl:1: not a DLQ envelope"), "{err}");
    let out = sluice(
        &[
            "replay",
            "dlq",
            "--stage",
            "ingest",
            "--local",
            d.to_str().unwrap(),
            "--since",
            "yesterday",
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither RFC 3339"));
}

/// Land a small trips file under `dir` and dead-letter it (a size limit too
/// small); the DLQ holds its one envelope. Returns the DLQ line.
fn dead_letter_one(dir: &Path) -> String {
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    let out = sluice(
        &[
            "generate",
            "trips",
            "--rows",
            "200",
            "--seed",
            "7",
            "--out",
            raw.join("t.csv").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let out = sluice(
        &["run", "--local", dir.to_str().unwrap()],
        &[("SLUICE_MAX_OBJECT_BYTES", "1000")],
    );
    assert!(out.status.success(), "{out:?}");
    let line = std::fs::read_to_string(dir.join("dlq/ingest.jsonl")).unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    line
}

/// `sluice` with writes to regular files capped at 512 bytes (`ulimit -f 1`,
/// SIGXFSZ ignored: a write past the cap fails with EFBIG, as on a full
/// disk). Files already bigger cannot grow; small new ones can be written.
#[cfg(unix)]
fn sluice_on_a_full_disk(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(args);
    for v in sluice_cli_tunables() {
        cmd.env_remove(v);
    }
    cmd.env_remove("SLUICE_DEPLOYMENT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("sh runs the sluice binary")
}

/// A redrive whose outcome is a transient failure (here the new envelope
/// cannot be appended: the disk is full) settles nothing: the DLQ line stays,
/// so the input is still in a DLQ, and a later redrive processes it.
#[cfg(unix)]
#[test]
fn a_transiently_failing_local_redrive_keeps_the_dlq_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let before = dead_letter_one(dir);
    assert!(before.len() > 512, "the DLQ file cannot grow under the cap");

    // Still too small a limit, so the redrive fails permanently again, and
    // its new envelope cannot be written: nothing records the failure.
    let out = sluice_on_a_full_disk(
        &["replay", "dlq", "--stage", "ingest", "--local", d, "--json"],
        &[("SLUICE_MAX_OBJECT_BYTES", "1000")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let after = std::fs::read_to_string(dir.join("dlq/ingest.jsonl")).unwrap();
    assert_eq!(after, before, "the DLQ line is kept as it was: {stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["counts"]["unsettled"], 1, "{v}");
    assert_eq!(v["counts"]["failed_again"], 0, "{v}");
    assert_eq!(v["objects"][0]["dlq"], "kept", "{v}");
    let reason = v["objects"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot append DLQ envelope"), "{v}");

    // The input is still visible as dead-lettered, and a redrive (the limit
    // fixed, the disk no longer full) processes it and settles the line.
    let status = json(&["status", "--local", d, "--json"], &[], 3);
    assert_eq!(status["stages"][0]["dlq_depth"], 1, "{status}");
    let fixed = json(
        &["replay", "dlq", "--stage", "ingest", "--local", d, "--json"],
        &[],
        0,
    );
    assert_eq!(fixed["counts"]["new"], 1, "{fixed}");
    assert_eq!(fixed["objects"][0]["dlq"], "deleted", "{fixed}");
    assert_eq!(dlq_lines(dir), 0);
}

/// The dead-letter marker means "an envelope for this version and code
/// version is in the DLQ". When the DLQ holds none (its line was lost, or
/// removed by hand), an ordinary delivery processes the input instead of
/// skipping it as already dead-lettered.
#[test]
fn a_stale_dead_letter_marker_does_not_hide_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    dead_letter_one(dir);
    // The envelope is gone; the marker stays.
    std::fs::write(dir.join("dlq/ingest.jsonl"), "").unwrap();

    let out = sluice(&["run", "--local", d], &[]);
    assert!(out.status.success(), "{out:?}");
    let keys = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--dry-run",
            "--json",
            "raw/trips/t.csv",
        ],
        &[],
        0,
    );
    assert_eq!(
        keys["counts"]["already_processed"],
        1,
        "the ordinary run processed it: {keys} {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // With the envelope there, the marker holds: an ordinary run skips the
    // input (it waits in the DLQ for a redrive), it does not send a second one.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let line = dead_letter_one(dir);
    let out = sluice(
        &["run", "--local", d],
        &[("SLUICE_MAX_OBJECT_BYTES", "1000")],
    );
    assert!(out.status.success(), "{out:?}");
    let out = sluice(&["run", "--local", d], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("dlq/ingest.jsonl")).unwrap(),
        line
    );
    let keys = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--dry-run",
            "--json",
            "raw/trips/t.csv",
        ],
        &[],
        0,
    );
    assert_eq!(keys["counts"]["would_replay"], 1, "{keys}");
}

/// The keys under `dir/<bucket>` that are data (not bookkeeping).
fn data_files(dir: &Path, bucket: &str) -> Vec<String> {
    let root = dir.join(bucket);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("_sluice") || rel.starts_with('.') || rel.contains("/.") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if rel.ends_with(".parquet") || rel.ends_with(".profile.json") {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Issue 10: a re-upload that no longer has rows for a day removed that
/// day's validated file, but the curated file and the profile derived from
/// it stayed (and curate dead-lettered `not_found` for the removed input).
#[test]
fn a_reupload_that_drops_a_partition_removes_it_downstream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    let file = raw.join("moving.csv");
    let generate = |days: &str| {
        let out = sluice(
            &[
                "generate",
                "trips",
                "--rows",
                "600",
                "--seed",
                "9",
                "--bad-ratio",
                "0",
                "--start",
                "2024-05-01",
                "--days",
                days,
                "--out",
                file.to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{out:?}");
    };
    generate("3");
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    let day = |files: &[String], dt: &str| files.iter().filter(|f| f.contains(dt)).count();
    for bucket in ["validated", "curated", "profiles"] {
        assert_eq!(
            day(&data_files(dir, bucket), "dt=2024-05-03"),
            1,
            "{bucket} before"
        );
    }

    generate("2");
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    for bucket in ["validated", "curated", "profiles"] {
        let files = data_files(dir, bucket);
        assert_eq!(
            day(&files, "dt=2024-05-03"),
            0,
            "{bucket} keeps the dropped day: {files:?}"
        );
        assert_eq!(
            files.len(),
            2,
            "{bucket}: exactly the new version's days: {files:?}"
        );
    }
    for stage in ["ingest", "curate", "profile"] {
        let dlq =
            std::fs::read_to_string(dir.join(format!("dlq/{stage}.jsonl"))).unwrap_or_default();
        assert!(dlq.trim().is_empty(), "{stage} DLQ: {dlq}");
    }
}

/// Invariant 5: deleting a landed object keeps what was derived from it;
/// `sluice retract` removes it from every stage, idempotently, and a re-run
/// does not bring it back.
#[test]
fn retract_removes_a_landed_key_from_every_stage_and_deleting_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    for (name, seed) in [("keep.csv", "3"), ("gone.csv", "4")] {
        let out = sluice(
            &[
                "generate",
                "trips",
                "--rows",
                "400",
                "--seed",
                seed,
                "--start",
                "2024-06-01",
                "--days",
                "2",
                "--out",
                raw.join(name).to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    let before: Vec<usize> = ["validated", "curated", "profiles"]
        .iter()
        .map(|b| data_files(dir, b).len())
        .collect();
    assert_eq!(before, vec![4, 4, 4], "two files over two days");

    // Deleting the landed file keeps its downstream data.
    let keep_copy = std::fs::read(raw.join("keep.csv")).unwrap();
    std::fs::remove_file(raw.join("keep.csv")).unwrap();
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    for (i, b) in ["validated", "curated", "profiles"].iter().enumerate() {
        assert_eq!(
            data_files(dir, b).len(),
            before[i],
            "{b} after a landing deletion"
        );
    }
    std::fs::write(raw.join("keep.csv"), keep_copy).unwrap();

    let out = json(
        &["retract", "raw/trips/gone.csv", "--local", d, "--json"],
        &[],
        0,
    );
    assert_eq!(
        out["retracted"][0]["ingest_outputs_removed"], 2,
        "two days: {out}"
    );
    for b in ["validated", "curated", "profiles"] {
        assert_eq!(
            data_files(dir, b).len(),
            2,
            "{b}: only keep.csv's days are left"
        );
    }
    // Again: nothing left to remove; a re-run does not resurrect it.
    let again = json(
        &["retract", "raw/trips/gone.csv", "--local", d, "--json"],
        &[],
        0,
    );
    assert_eq!(
        again["retracted"][0]["ingest_outputs_removed"], 0,
        "{again}"
    );
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    for b in ["validated", "curated", "profiles"] {
        assert_eq!(data_files(dir, b).len(), 2, "{b} after a re-run");
    }
}

/// Issue 10: `replay keys` and `backfill` answered "already processed", so
/// nothing could rebuild outputs after a logic fix. `--reprocess` rebuilds
/// the current version as a new generation through the commit protocol:
/// every stage's outputs of that key are replaced (same rows, new keys), the
/// old ones are gone, other keys are untouched, and a plain replay after it
/// changes nothing.
#[test]
fn replay_reprocess_rebuilds_a_key_through_every_stage_and_leaves_no_old_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let raw = dir.join("landing/raw/trips");
    std::fs::create_dir_all(&raw).unwrap();
    for (name, seed) in [("fix.csv", "5"), ("other.csv", "6")] {
        let out = sluice(
            &[
                "generate",
                "trips",
                "--rows",
                "300",
                "--seed",
                seed,
                "--start",
                "2024-07-01",
                "--days",
                "2",
                "--out",
                raw.join(name).to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    let buckets = ["validated", "curated", "profiles"];
    let before: Vec<Vec<String>> = buckets.iter().map(|b| data_files(dir, b)).collect();
    assert!(before.iter().all(|f| f.len() == 4), "{before:?}");

    let plain = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--json",
            "raw/trips/fix.csv",
        ],
        &[],
        0,
    );
    assert_eq!(plain["counts"]["already_processed"], 1, "{plain}");

    let rebuilt = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--reprocess",
            "--json",
            "raw/trips/fix.csv",
        ],
        &[],
        0,
    );
    assert_eq!(rebuilt["counts"]["new"], 1, "{rebuilt}");
    for (i, b) in buckets.iter().enumerate() {
        let after = data_files(dir, b);
        assert_eq!(after.len(), 4, "{b}: one file per day per key: {after:?}");
        let fresh: Vec<&String> = after.iter().filter(|f| !before[i].contains(f)).collect();
        assert_eq!(fresh.len(), 2, "{b}: fix.csv's two days rebuilt: {after:?}");
        assert!(
            fresh.iter().all(|f| f.contains("-r")),
            "{b}: a rebuild's keys name its generation: {fresh:?}"
        );
    }
    // The rebuild is committed: a plain replay, a re-run and a backfill
    // change nothing.
    let files: Vec<Vec<String>> = buckets.iter().map(|b| data_files(dir, b)).collect();
    let again = json(
        &[
            "replay",
            "keys",
            "--stage",
            "ingest",
            "--local",
            d,
            "--json",
            "raw/trips/fix.csv",
        ],
        &[],
        0,
    );
    assert_eq!(again["counts"]["already_processed"], 1, "{again}");
    let run = sluice(&["run", "--local", d], &[]);
    assert!(run.status.success(), "{run:?}");
    let backfill = json(
        &[
            "replay", "backfill", "--stage", "ingest", "--local", d, "--json",
        ],
        &[],
        0,
    );
    assert_eq!(backfill["counts"]["already_processed"], 2, "{backfill}");
    let now: Vec<Vec<String>> = buckets.iter().map(|b| data_files(dir, b)).collect();
    assert_eq!(now, files);
    // A rebuild of curate alone replaces curate's and profile's outputs.
    let curate = json(
        &[
            "replay",
            "backfill",
            "--stage",
            "curate",
            "--local",
            d,
            "--reprocess",
            "--json",
        ],
        &[],
        0,
    );
    assert_eq!(curate["counts"]["new"], 4, "{curate}");
    assert_eq!(data_files(dir, "validated"), files[0]);
    for (i, b) in buckets.iter().enumerate().skip(1) {
        let after = data_files(dir, b);
        assert_eq!(after.len(), 4, "{b}: {after:?}");
        assert!(
            after.iter().all(|f| !files[i].contains(f)),
            "{b}: every file rebuilt: {after:?} (before {:?})",
            files[i]
        );
    }
    for stage in ["ingest", "curate", "profile"] {
        let dlq =
            std::fs::read_to_string(dir.join(format!("dlq/{stage}.jsonl"))).unwrap_or_default();
        assert!(dlq.trim().is_empty(), "{stage} DLQ: {dlq}");
    }
}
