//! Every file in `events/` is a fixture: each is decoded here and compared with
//! what it must yield. A new file without an expectation fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice::trigger::{decode, ObjectRef};

const AWKWARD: &str = "raw/trips/dt=2024-01-15/yellow trip+data & more 100% é.csv";
const GZ: &str = "raw/trips/yellow_tripdata_2024-01.csv.gz";

/// What a file must decode to.
enum Expect {
    /// One entry per delivery: the keys it yields, or an error containing the text.
    Deliveries(Vec<Result<Vec<&'static str>, &'static str>>),
    /// The whole payload is rejected with an error containing the text.
    Rejected(&'static str),
}

fn expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("s3-put.json", Deliveries(vec![Ok(vec![AWKWARD])])),
        (
            "s3-multipart-and-delete.json",
            Deliveries(vec![Ok(vec![GZ, "raw/trips/old file.csv"])]),
        ),
        (
            "sqs-s3.json",
            Deliveries(vec![Ok(vec![AWKWARD]), Ok(vec![GZ])]),
        ),
        ("sns-s3.json", Deliveries(vec![Ok(vec![AWKWARD])])),
        ("sqs-sns-s3.json", Deliveries(vec![Ok(vec![AWKWARD])])),
        (
            "eventbridge-object-created.json",
            Deliveries(vec![Ok(vec![AWKWARD])]),
        ),
        (
            "sqs-eventbridge.json",
            Deliveries(vec![Ok(vec![AWKWARD]), Ok(vec![GZ])]),
        ),
        ("s3-test-event.json", Deliveries(vec![Ok(vec![])])),
        ("sqs-s3-test-event.json", Deliveries(vec![Ok(vec![])])),
        // Removals are decoded: a stage with an upstream retracts on them.
        (
            "eventbridge-object-deleted.json",
            Deliveries(vec![Ok(vec!["raw/trips/old file.csv"])]),
        ),
        (
            "invalid/unrecognised.json",
            Rejected("not an S3, SQS, SNS or EventBridge event"),
        ),
        ("invalid/eventbridge-ec2.json", Rejected("aws.ec2")),
        (
            "invalid/sqs-garbage-body.json",
            Deliveries(vec![Err("not JSON")]),
        ),
        ("invalid/bad-percent-encoding.json", Rejected("bad%FFkey")),
    ])
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn all_event_files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_event_files(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

fn load(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(events_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

#[test]
fn every_event_file_decodes_as_expected() {
    let mut files = Vec::new();
    all_event_files(&events_dir(), &events_dir(), &mut files);
    files.sort();
    let expect = expectations();
    let listed: Vec<&str> = expect.keys().copied().collect();
    assert_eq!(
        files, listed,
        "every file in events/ needs an expectation here, and vice versa"
    );

    for (name, want) in expect {
        let payload = load(name);
        match (decode(&payload), want) {
            (Err(e), Expect::Rejected(text)) => {
                assert!(
                    e.to_string().contains(text),
                    "{name}: error {e:?} lacks {text:?}"
                )
            }
            (Ok(d), Expect::Deliveries(want)) => {
                assert_eq!(d.deliveries.len(), want.len(), "{name}: delivery count");
                for (i, (got, want)) in d.deliveries.iter().zip(want).enumerate() {
                    match (&got.objects, want) {
                        (Ok(objs), Ok(keys)) => {
                            let got_keys: Vec<&str> = objs.iter().map(|o| o.key.as_str()).collect();
                            assert_eq!(got_keys, keys, "{name} delivery {i}");
                            assert!(objs.iter().all(|o| o.bucket == "landing"), "{name}: bucket");
                        }
                        (Err(e), Err(text)) => {
                            assert!(e.to_string().contains(text), "{name} delivery {i}: {e}")
                        }
                        (got, want) => panic!("{name} delivery {i}: got {got:?}, want {want:?}"),
                    }
                }
            }
            (Ok(d), Expect::Rejected(text)) => {
                panic!("{name}: decoded {d:?}, want rejection with {text:?}")
            }
            (Err(e), Expect::Deliveries(_)) => panic!("{name}: rejected: {e}"),
        }
    }
}

#[test]
fn s3_fields_are_carried_and_etags_unquoted() {
    let d = decode(&load("s3-multipart-and-delete.json")).unwrap();
    assert!(d.deliveries[0].skipped.is_empty());
    let objs = d.into_objects().unwrap();
    // The removal is decoded too (downstream stages retract on it).
    assert_eq!(objs.iter().filter(|o| o.is_removal()).count(), 1);
    assert!(!objs[0].is_removal());
    let o: &ObjectRef = &objs[0];
    assert_eq!(
        o.etag.as_deref(),
        Some("d41d8cd98f00b204e9800998ecf8427e-3")
    );
    assert_eq!(
        o.version_id.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    );
    assert_eq!(o.size, Some(26_214_400));
    assert_eq!(o.sequencer.as_deref(), Some("0055AED6DCD90281F0"));
    assert_eq!(o.event_name, "ObjectCreated:CompleteMultipartUpload");
}

#[test]
fn sqs_attributes_become_delivery_metadata() {
    let d = decode(&load("sqs-eventbridge.json")).unwrap();
    assert!(d.is_sqs_batch);
    let first = &d.deliveries[0];
    assert_eq!(
        first.message_id.as_deref(),
        Some("0c9a1d2e-0000-4000-8000-000000000001")
    );
    assert_eq!(first.receive_count, 2);
    assert_eq!(
        first.first_seen.unwrap().timestamp_millis(),
        1_705_312_800_100
    );
    let o = &first.objects.as_ref().unwrap()[0];
    assert_eq!(o.event_name, "Object Created");
    assert_eq!(o.sequencer.as_deref(), Some("0062E99A88DC407460"));
    assert_eq!(o.size, Some(2048));
}
