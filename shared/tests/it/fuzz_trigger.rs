//! Property-based fuzzing of trigger decoding (issue 10) on the stable
//! toolchain: `sluice::trigger::decode` on arbitrary JSON, on JSON shaped
//! like S3, SQS, SNS and EventBridge events with random fields, and on
//! mutated copies of the fixtures in `events/`; `decode_key` on arbitrary
//! text and `encode_key` round trips.
//!
//! The property everywhere: decoding never panics; every payload is either
//! decoded or rejected with a reason; an SQS batch yields exactly one
//! delivery per record (each decoded or failed with a reason); every decoded
//! object has a non-empty bucket and key.
//!
//! `SLUICE_FUZZ_CASES` sets the cases per property (`make fuzz` sets 20000),
//! `SLUICE_FUZZ_SEED` the seed (a number, or `random`; fixed by default so
//! that `make unit` checks the same cases every run).

use proptest::prelude::*;

use crate::fuzz::fuzz_config;
use serde_json::{json, Map, Value};
use sluice::error::Error;
use sluice::trigger::{decode, decode_key, encode_key, s3_notification, ObjectRef};

// ---- the property --------------------------------------------------------

/// The reason of a rejection: it must be an `InvalidEvent` with a non-empty
/// reason.
fn check_rejection(e: &Error) -> Result<(), TestCaseError> {
    match e {
        Error::InvalidEvent { reason, .. } => {
            prop_assert!(!reason.trim().is_empty(), "empty reason: {e:?}");
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "rejected with {other:?}, not an invalid-event error"
        ))),
    }
}

fn check_decode(payload: &Value) -> Result<(), TestCaseError> {
    let decoded = match decode(payload) {
        Err(e) => return check_rejection(&e),
        Ok(d) => d,
    };
    if decoded.is_sqs_batch {
        let records = payload
            .get("Records")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        prop_assert_eq!(
            decoded.deliveries.len(),
            records,
            "one delivery per SQS record"
        );
    } else {
        prop_assert_eq!(
            decoded.deliveries.len(),
            1,
            "a direct invocation is one delivery"
        );
    }
    for d in &decoded.deliveries {
        match &d.objects {
            Err(e) => check_rejection(e)?,
            Ok(objects) => {
                for o in objects {
                    prop_assert!(!o.bucket.is_empty(), "decoded an empty bucket: {o:?}");
                    prop_assert!(!o.key.is_empty(), "decoded an empty key: {o:?}");
                }
            }
        }
    }
    Ok(())
}

// ---- arbitrary JSON, biased toward event shapes ----------------------------

const KEYS: &[&str] = &[
    "Records",
    "eventSource",
    "EventSource",
    "eventName",
    "eventTime",
    "eventVersion",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "size",
    "eTag",
    "etag",
    "versionId",
    "version-id",
    "sequencer",
    "body",
    "messageId",
    "attributes",
    "messageAttributes",
    "ApproximateReceiveCount",
    "Type",
    "Message",
    "Sns",
    "detail-type",
    "source",
    "detail",
    "Event",
    "time",
    "id",
    "version",
    "sluice-redrive",
];

const WORDS: &[&str] = &[
    "aws:sqs",
    "aws:sns",
    "aws:s3",
    "aws.s3",
    "aws.ec2",
    "Notification",
    "s3:TestEvent",
    "ObjectCreated:Put",
    "ObjectCreated:CompleteMultipartUpload",
    "ObjectRemoved:Delete",
    "ObjectRemoved:DeleteMarkerCreated",
    "Object Created",
    "Object Deleted",
    "2024-01-15T10:00:00.000Z",
    "2024-01-15T10:00:00Z",
    "landing",
    "",
    "null",
    "\"abc\"",
    "0055AED6DCD90281E5", // pragma: allowlist secret
    "raw/trips/a.csv",
    "raw/trips/dt%3D2024-01-15/yellow+trip%2Bdata+%26+more+100%25+%C3%A9.csv",
    "bad%FFkey",
    "%",
    "%E",
    "%C3",
    "+",
    "1",
    "1705312800000",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_string),
        2 => "[a-zA-Z0-9%+/ =&._:-]{0,16}",
        1 => any::<String>(),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z-]{0,10}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        4 => word().prop_map(Value::String),
    ]
}

/// Arbitrary JSON; strings may hold JSON themselves (as SQS bodies and SNS
/// messages do).
fn any_json() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner.clone()), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                inner.prop_map(|v| Value::String(v.to_string())),
            ]
        })
        .boxed()
}

/// A field of a shaped event: usually the plausible value, sometimes absent,
/// sometimes anything at all.
fn field(name: &'static str, good: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        60 => good.prop_map(move |v| Some((name.to_string(), v))),
        1 => Just(None),
        1 => any_json().prop_map(move |v| Some((name.to_string(), v))),
    ]
    .boxed()
}

fn object(fields: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    fields
        .prop_map(|fs| Value::Object(fs.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

fn s(v: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![40 => Just(Value::String(v.into())), 1 => word().prop_map(Value::String)].boxed()
}

/// Mostly the first of `vs` (the value that decodes), else another or noise.
fn one_of(vs: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        30 => Just(Value::String(vs[0].into())),
        10 => prop::sample::select(vs).prop_map(|v| Value::String(v.into())),
        1 => word().prop_map(Value::String),
    ]
    .boxed()
}

/// A key as it may arrive: S3-encoded, raw noise, or empty.
fn raw_key() -> BoxedStrategy<Value> {
    prop_oneof![
        12 => any::<String>().prop_map(|k| Value::String(encode_key(&k))),
        3 => "[a-z/%+0-9A-F. ]{0,12}".prop_map(Value::String),
        1 => Just(Value::String(String::new())),
    ]
    .boxed()
}

fn size() -> BoxedStrategy<Value> {
    prop_oneof![
        40 => any::<u32>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!(1.5)),
        1 => Just(json!("12")),
    ]
    .boxed()
}

/// The records of an event: rarely none, else 1 to `max` - 1.
fn records(record: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Vec<Value>> {
    prop_oneof![
        1 => Just(Vec::new()),
        10 => prop::collection::vec(record, 1..max),
    ]
    .boxed()
}

fn s3_record() -> BoxedStrategy<Value> {
    let bucket = object(vec![
        field("name", s("landing")),
        field("arn", s("arn:aws:s3:::landing")),
    ]);
    let obj = object(vec![
        field("key", raw_key()),
        field("size", size()),
        field("eTag", s("\"9b2cf535f27731c974343645a3985328\"")), // pragma: allowlist secret
        field("versionId", s("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")),
        field("sequencer", s("0055AED6DCD90281E5")), // pragma: allowlist secret
    ]);
    let s3 = object(vec![
        field("s3SchemaVersion", s("1.0")),
        field("configurationId", s("sluice")),
        field("bucket", bucket),
        field("object", obj),
    ]);
    object(vec![
        field("eventVersion", s("2.1")),
        field("eventSource", s("aws:s3")),
        field("awsRegion", s("us-east-1")),
        field("eventTime", s("2024-01-15T10:00:00.000Z")),
        field(
            "userIdentity",
            Just(json!({"principalId": "AWS:AIDAEXAMPLE"})).boxed(),
        ),
        field(
            "requestParameters",
            Just(json!({"sourceIPAddress": "203.0.113.7"})).boxed(),
        ),
        field("responseElements", Just(json!({})).boxed()),
        field(
            "eventName",
            one_of(&[
                "ObjectCreated:Put",
                "ObjectCreated:Copy",
                "ObjectRemoved:Delete",
                "ObjectRestore:Completed",
            ]),
        ),
        field("s3", s3),
    ])
}

fn s3_event() -> BoxedStrategy<Value> {
    records(s3_record(), 4)
        .prop_map(|r| json!({ "Records": r }))
        .boxed()
}

fn test_event() -> BoxedStrategy<Value> {
    object(vec![
        field("Service", s("Amazon S3")),
        field("Event", s("s3:TestEvent")),
        field("Bucket", s("landing")),
    ])
}

fn eventbridge() -> BoxedStrategy<Value> {
    let detail = object(vec![
        field("version", s("0")),
        field("bucket", object(vec![field("name", s("landing"))])),
        field(
            "object",
            object(vec![
                field("key", raw_key()),
                field("size", size()),
                field("etag", s("b1946ac92492d2347c6235b4d2611184")), // pragma: allowlist secret
                field("version-id", s("v1")),
                field("sequencer", s("0062E99A88DC407460")), // pragma: allowlist secret
            ]),
        ),
        field("reason", s("PutObject")),
    ]);
    object(vec![
        field("version", s("0")),
        field("id", s("17793124-05d4-b198-2fde-7ededc63b103")),
        field(
            "detail-type",
            one_of(&[
                "Object Created",
                "Object Deleted",
                "Object Restore Completed",
            ]),
        ),
        field("source", one_of(&["aws.s3", "aws.ec2"])),
        field("account", s("123456789012")),
        field("time", s("2024-01-15T10:00:00Z")),
        field("region", s("us-east-1")),
        field("resources", Just(json!(["arn:aws:s3:::landing"])).boxed()),
        field("detail", detail),
    ])
}

/// What S3 itself sends: the innermost documents.
fn s3_document() -> BoxedStrategy<Value> {
    prop_oneof![6 => s3_event(), 3 => eventbridge(), 1 => test_event(), 1 => any_json()].boxed()
}

/// A JSON document serialised into a string, or (rarely) text that is not JSON.
fn embedded(doc: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        30 => doc.prop_map(|v| Value::String(v.to_string())),
        1 => word().prop_map(Value::String),
        1 => any_json(),
    ]
    .boxed()
}

/// An SNS notification as SNS delivers it to SQS (not raw delivery).
fn sns_notification(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    object(vec![
        field("Type", s("Notification")),
        field("MessageId", s("95df01b4-ee98-5cb9-9903-4c221d41eb5e")),
        field("TopicArn", s("arn:aws:sns:us-east-1:123456789012:t")),
        field("Message", embedded(inner)),
        field("Timestamp", s("2024-01-15T10:00:00.100Z")),
    ])
}

/// An SNS event as SNS invokes a Lambda.
fn sns_event(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let sns = object(vec![
        field("Type", s("Notification")),
        field("MessageId", s("95df01b4")),
        field("TopicArn", s("arn:aws:sns:us-east-1:123456789012:t")),
        field("Subject", s("Amazon S3 Notification")),
        field("Message", embedded(inner)),
        field("Timestamp", s("2024-01-15T10:00:00.100Z")),
        field("SignatureVersion", s("1")),
        field("Signature", s("EXAMPLE")),
        field("SigningCertUrl", s("https://example.com/c.pem")),
        field("UnsubscribeUrl", s("https://example.com/u")),
        field("MessageAttributes", Just(json!({})).boxed()),
    ]);
    let record = object(vec![
        field("EventSource", s("aws:sns")),
        field("EventVersion", s("1.0")),
        field("EventSubscriptionArn", s("arn:aws:sns:us-east-1:1:t:x")),
        field("Sns", sns),
    ]);
    records(record, 3)
        .prop_map(|r| json!({ "Records": r }))
        .boxed()
}

fn sqs_batch(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let attributes = object(vec![
        field(
            "ApproximateReceiveCount",
            one_of(&["1", "3", "0", "-1", "x"]),
        ),
        field(
            "SentTimestamp",
            one_of(&["1705312800000", "", "9999999999999999999"]), // pragma: allowlist secret
        ),
        field(
            "ApproximateFirstReceiveTimestamp",
            one_of(&["1705312800100", "-5"]),
        ),
    ]);
    let message_attributes = prop_oneof![
        3 => Just(json!({})),
        1 => Just(json!({"sluice-redrive": {"stringValue": "1", "dataType": "String"}})),
    ]
    .boxed();
    let record = object(vec![
        field("messageId", s("0c9a1d2e-0000-4000-8000-000000000001")),
        field("receiptHandle", s("AQEB-example-1")),
        field("body", embedded(inner)),
        field("attributes", attributes),
        field("messageAttributes", message_attributes),
        field("md5OfBody", s("e4e68fb7bd0e697a0ae8f1bb342846b3")), // pragma: allowlist secret
        field("eventSource", s("aws:sqs")),
        field("eventSourceARN", s("arn:aws:sqs:us-east-1:123456789012:q")),
        field("awsRegion", s("us-east-1")),
    ]);
    records(record, 4)
        .prop_map(|r| json!({ "Records": r }))
        .boxed()
}

/// Every trigger shape a stage accepts, with random fields.
fn shaped_event() -> BoxedStrategy<Value> {
    let doc = s3_document();
    let in_sqs = prop_oneof![
        6 => s3_document(),
        3 => sns_notification(s3_document()),
        1 => sqs_batch(s3_document()),
    ]
    .boxed();
    prop_oneof![
        2 => doc,
        1 => sns_event(s3_document()),
        1 => sns_notification(s3_document()),
        3 => sqs_batch(in_sqs),
    ]
    .boxed()
}

// ---- mutations of the fixtures in events/ -------------------------------------

fn fixtures() -> Vec<(String, Value)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, Value)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let v = serde_json::from_str(&text).unwrap();
                out.push((path.display().to_string(), v));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events"),
        &mut out,
    );
    assert!(out.len() >= 10, "fixtures found: {}", out.len());
    out
}

/// One edit at one node of a document (nodes counted in pre-order, JSON
/// held in strings included).
#[derive(Debug, Clone)]
enum Op {
    /// Drop the node from its parent.
    Remove,
    /// Put another value in its place.
    Replace(Value),
    /// The same content as another type (string <-> number, object -> array, ...).
    Retype,
    /// An empty value of the same type.
    Empty,
    /// Arrays: the first element twice; objects: nothing.
    Duplicate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Remove),
        3 => any_json().prop_map(Op::Replace),
        2 => word().prop_map(|w| Op::Replace(Value::String(w))),
        2 => Just(Op::Retype),
        2 => Just(Op::Empty),
        1 => Just(Op::Duplicate),
    ]
}

/// A string holding a JSON object or array, parsed.
fn inner_json(s: &str) -> Option<Value> {
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Object(m) => m.values().map(count).sum(),
        Value::Array(a) => a.iter().map(count).sum(),
        Value::String(s) => inner_json(s).map_or(0, |i| count(&i)),
        _ => 0,
    }
}

fn apply_here(v: &mut Value, op: &Op) {
    match op {
        Op::Remove => unreachable!("handled by the parent"),
        Op::Replace(x) => *v = x.clone(),
        Op::Retype => {
            *v = match v.take() {
                Value::String(s) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| s.parse::<f64>().map(|f| json!(f)))
                    .unwrap_or_else(|_| json!([s])),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::String("null".into()),
                Value::Array(a) => a.into_iter().next().unwrap_or(json!({})),
                Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
            }
        }
        Op::Empty => {
            *v = match v {
                Value::String(_) => json!(""),
                Value::Number(_) => json!(0),
                Value::Array(_) => json!([]),
                Value::Object(_) => json!({}),
                Value::Bool(_) | Value::Null => Value::Null,
            }
        }
        Op::Duplicate => {
            if let Value::Array(a) = v {
                if let Some(first) = a.first().cloned() {
                    a.push(first);
                }
            }
        }
    }
}

enum Walk {
    NotYet,
    Done,
    RemoveMe,
}

/// Apply `op` at node number `n` (pre-order).
fn mutate(v: &mut Value, n: &mut usize, op: &Op) -> Walk {
    if *n == 0 {
        if matches!(op, Op::Remove) {
            return Walk::RemoveMe;
        }
        apply_here(v, op);
        return Walk::Done;
    }
    *n -= 1;
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child = m.get_mut(&k).unwrap();
                match mutate(child, n, op) {
                    Walk::NotYet => {}
                    Walk::Done => return Walk::Done,
                    Walk::RemoveMe => {
                        m.remove(&k);
                        return Walk::Done;
                    }
                }
            }
            Walk::NotYet
        }
        Value::Array(a) => {
            for i in 0..a.len() {
                match mutate(&mut a[i], n, op) {
                    Walk::NotYet => {}
                    Walk::Done => return Walk::Done,
                    Walk::RemoveMe => {
                        a.remove(i);
                        return Walk::Done;
                    }
                }
            }
            Walk::NotYet
        }
        Value::String(s) => match inner_json(s) {
            None => Walk::NotYet,
            Some(mut inner) => match mutate(&mut inner, n, op) {
                Walk::NotYet => Walk::NotYet,
                Walk::Done => {
                    *s = inner.to_string();
                    Walk::Done
                }
                Walk::RemoveMe => {
                    s.clear();
                    Walk::Done
                }
            },
        },
        _ => Walk::NotYet,
    }
}

fn mutated(doc: &Value, edits: &[(usize, Op)]) -> Value {
    let mut v = doc.clone();
    for (at, op) in edits {
        let mut n = at % count(&v);
        if let Walk::RemoveMe = mutate(&mut v, &mut n, op) {
            v = Value::Null;
        }
    }
    v
}

// ---- the properties ---------------------------------------------------------

proptest! {
    #![proptest_config(fuzz_config(2000))]

    #[test]
    fn decode_arbitrary_json(payload in any_json()) {
        check_decode(&payload)?;
    }

    #[test]
    fn decode_event_shaped_json(payload in shaped_event()) {
        check_decode(&payload)?;
    }

    #[test]
    fn decode_mutated_fixtures(
        which in any::<usize>(),
        edits in prop::collection::vec((any::<usize>(), op()), 1..5),
    ) {
        let all = fixtures_cached();
        let (_name, doc) = &all[which % all.len()];
        check_decode(&mutated(doc, &edits))?;
    }

    #[test]
    fn decode_key_never_panics_and_names_a_bad_key(raw in prop_oneof![
        any::<String>(),
        "(%[0-9A-Fa-f]{0,2}|[+ a-z/é])*",
    ]) {
        match decode_key(&raw) {
            Ok(_) => {}
            Err(Error::InvalidEvent { reason, .. }) => {
                prop_assert!(reason.contains(&format!("{raw:?}")), "{reason} names {raw:?}");
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn encode_key_round_trips(key in prop_oneof![
        any::<String>(),
        "[ +%=&/a-zé.*~_-]{0,24}",
    ]) {
        let encoded = encode_key(&key);
        prop_assert!(
            encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~/*+%".contains(&b)),
            "{key:?} encoded as {encoded:?}"
        );
        prop_assert_eq!(decode_key(&encoded).ok(), Some(key));
    }

    #[test]
    fn synthesised_notifications_decode_to_their_objects(
        objects in prop::collection::vec(
            ("[a-z0-9][a-z0-9.-]{2,20}", any::<String>().prop_filter("a key", |k| !k.is_empty())),
            0..5,
        ),
    ) {
        let refs: Vec<ObjectRef> = objects.iter().map(|(b, k)| ObjectRef::new(b, k)).collect();
        let back = decode(&s3_notification(&refs)).map_err(|e| TestCaseError::fail(e.to_string()))?
            .into_objects().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<(String, String)> = back.into_iter().map(|o| (o.bucket, o.key)).collect();
        prop_assert_eq!(got, objects);
    }
}

fn fixtures_cached() -> &'static [(String, Value)] {
    static F: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    F.get_or_init(fixtures)
}

/// The shaped generator is worth its name: a fair share of what it makes
/// decodes to objects, and a fair share is rejected (so both paths are fuzzed).
#[test]
fn shaped_events_reach_both_outcomes() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = shaped_event();
    let (mut objects, mut rejected, n) = (0, 0, 400);
    for _ in 0..n {
        let payload = strategy.new_tree(&mut runner).unwrap().current();
        match decode(&payload) {
            Err(_) => rejected += 1,
            Ok(d) => {
                for del in d.deliveries {
                    match del.objects {
                        Ok(o) if !o.is_empty() => objects += 1,
                        Ok(_) => {}
                        Err(_) => rejected += 1,
                    }
                }
            }
        }
    }
    assert!(
        objects * 5 >= n,
        "only {objects} of {n} payloads decoded to objects"
    );
    assert!(
        rejected * 5 >= n,
        "only {rejected} of {n} payloads were rejected"
    );
}

#[test]
fn every_fixture_is_mutable_at_every_node() {
    // The mutation walk reaches every node it counts (so "drop a field" can
    // hit every field, also inside an SQS body or SNS message).
    for (name, doc) in fixtures_cached() {
        let n = count(doc);
        for at in 0..n {
            let v = mutated(doc, &[(at, Op::Replace(json!("MARK")))]);
            assert!(
                v.to_string().contains("MARK"),
                "{name}: node {at} of {n} not reached"
            );
        }
    }
}

// ---- regressions found by the properties above -----------------------------

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reason a payload (or its only delivery) is rejected.
fn rejection(payload: &Value) -> String {
    let d = match decode(payload) {
        Err(e) => return e.to_string(),
        Ok(d) => d,
    };
    match d.into_objects() {
        Err(e) => e.to_string(),
        Ok(objects) => panic!("decoded {objects:?}"),
    }
}

/// Found by `decode_event_shaped_json` and `decode_mutated_fixtures`: an
/// EventBridge event whose object key is "" decoded to an object with an
/// empty key.
#[test]
fn regression_eventbridge_empty_key_is_rejected() {
    let mut ev = fixture("eventbridge-object-created.json");
    ev["detail"]["object"]["key"] = json!("");
    let why = rejection(&ev);
    assert!(why.contains("empty object key"), "{why}");
    let mut ev = fixture("eventbridge-object-deleted.json");
    ev["detail"]["object"]["key"] = json!("");
    assert!(rejection(&ev).contains("empty object key"));
}

/// The same for the bucket name, and for S3 notifications, direct or in SQS.
#[test]
fn regression_empty_bucket_or_key_is_rejected_in_every_shape() {
    let mut ev = fixture("eventbridge-object-created.json");
    ev["detail"]["bucket"]["name"] = json!("");
    let why = rejection(&ev);
    assert!(why.contains("empty bucket name"), "{why}");

    let mut ev = fixture("s3-put.json");
    ev["Records"][0]["s3"]["object"]["key"] = json!("");
    let why = rejection(&ev);
    assert!(why.contains("empty object key"), "{why}");
    let mut ev = fixture("s3-put.json");
    ev["Records"][0]["s3"]["bucket"]["name"] = json!("");
    let why = rejection(&ev);
    assert!(why.contains("empty bucket name"), "{why}");

    // In an SQS batch only that message fails; its neighbour is decoded.
    let mut ev = fixture("sqs-s3.json");
    let body = ev["Records"][0]["body"].as_str().unwrap();
    let mut inner: Value = serde_json::from_str(body).unwrap();
    inner["Records"][0]["s3"]["object"]["key"] = json!("");
    ev["Records"][0]["body"] = json!(inner.to_string());
    let d = decode(&ev).unwrap();
    assert_eq!(d.deliveries.len(), 2);
    let why = d.deliveries[0].objects.as_ref().unwrap_err().to_string();
    assert!(why.contains("empty object key"), "{why}");
    assert_eq!(d.deliveries[1].objects.as_ref().unwrap().len(), 1);
}
