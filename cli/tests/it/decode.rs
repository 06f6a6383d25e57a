//! `sluice decode` as a user runs it: the real binary on the sample events.

use std::path::PathBuf;
use std::process::Command;

fn events() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

#[test]
fn decode_prints_one_json_line_per_object() {
    let out = sluice(&[
        "decode",
        events().join("sqs-eventbridge.json").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["bucket"], "landing");
    assert_eq!(
        lines[0]["key"],
        "raw/trips/dt=2024-01-15/yellow trip+data & more 100% é.csv"
    );
    assert_eq!(lines[0]["sequencer"], "0062E99A88DC407460");
    assert_eq!(lines[0]["size"], 2048);
    for field in ["version_id", "etag", "event_time"] {
        assert!(lines[0].get(field).is_some(), "field {field} present");
    }
}

#[test]
fn decode_fails_clearly_on_an_unrecognised_event() {
    let file = events().join("invalid/unrecognised.json");
    let out = sluice(&["decode", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unrecognised.json"), "names the file: {err}");
    assert!(
        err.contains("not an S3, SQS, SNS or EventBridge event"),
        "says why: {err}"
    );
}

#[test]
fn decode_fails_on_a_bad_message_in_a_batch() {
    let out = sluice(&[
        "decode",
        events()
            .join("invalid/sqs-garbage-body.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

#[test]
fn decode_reports_a_missing_file() {
    let out = sluice(&["decode", "/nonexistent/event.json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/event.json"));
}
