//! Trigger decoding: every shape a stage can be invoked with (direct S3
//! notification, S3 in SQS, S3 in SNS, SNS in SQS, EventBridge direct or in
//! SQS) becomes one list of [`ObjectRef`]s, with keys URL-decoded exactly once.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// One S3 object an event refers to: the identity a stage works from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, URL-decoded.
    pub key: String,
    /// Version id, when the bucket is versioned.
    #[serde(default)]
    pub version_id: Option<String>,
    /// ETag without quotes.
    #[serde(default)]
    pub etag: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// S3's per-key ordering token (hex).
    #[serde(default)]
    pub sequencer: Option<String>,
    /// When S3 recorded the event.
    #[serde(default)]
    pub event_time: Option<DateTime<Utc>>,
    /// `ObjectCreated:Put`, `Object Created`, ...
    #[serde(default)]
    pub event_name: String,
}

impl ObjectRef {
    /// Whether the event reports the object's removal (`ObjectRemoved:*`,
    /// EventBridge `Object Deleted`) rather than its creation.
    pub fn is_removal(&self) -> bool {
        self.event_name.starts_with("ObjectRemoved:") || self.event_name == "Object Deleted"
    }

    /// A removal event for bucket and key, as S3 sends when an object is deleted.
    pub fn removal(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        let mut o = ObjectRef::new(bucket, key);
        o.event_name = "ObjectRemoved:Delete".into();
        o
    }

    /// A reference with only bucket and key, for replays and local runs.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
            size: None,
            sequencer: None,
            event_time: None,
            event_name: "ObjectCreated:Put".into(),
        }
    }

    /// `s3://bucket/key`, for messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The SQS message attribute `sluice replay` sets on what it redrives: the
/// stage then retries an input version even if that version was already
/// dead-lettered with the same code version (its cause has been fixed).
pub const REDRIVE_ATTRIBUTE: &str = "sluice-redrive";

/// The SQS message attribute `sluice replay --reprocess` sets: the stage
/// rebuilds the current version of each object even though it is already
/// committed, as the generation the attribute names (see
/// [`crate::lineage::SourceIdentity::generation`]).
pub const REPROCESS_ATTRIBUTE: &str = "sluice-reprocess";

/// How a delivery asks to be processed, beyond an ordinary event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replay {
    /// Try again what was dead-lettered with this code version (its cause
    /// has been fixed).
    pub redrive: bool,
    /// Rebuild the current version as this generation, replacing what it
    /// committed (after a logic fix). Implies `redrive`.
    pub reprocess: Option<u64>,
}

impl Replay {
    /// An explicit redrive.
    pub fn redrive() -> Self {
        Replay {
            redrive: true,
            reprocess: None,
        }
    }

    /// A rebuild as `generation`.
    pub fn reprocess(generation: u64) -> Self {
        Replay {
            redrive: true,
            reprocess: Some(generation),
        }
    }

    /// Both asks at once: a redrive if either is one, the newer generation.
    pub fn or(self, other: Replay) -> Self {
        Replay {
            redrive: self.redrive || other.redrive,
            reprocess: self.reprocess.max(other.reprocess),
        }
    }
}

/// One delivery unit of an invocation: an SQS message (which the runner can
/// fail individually) or the whole payload of a direct invocation.
#[derive(Debug)]
pub struct Delivery {
    /// SQS message id, for partial batch responses; `None` for direct invokes.
    pub message_id: Option<String>,
    /// How many times SQS has delivered this message (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// When the message was first received (SQS), else when it was sent.
    pub first_seen: Option<DateTime<Utc>>,
    /// The objects, or why this delivery could not be decoded.
    pub objects: Result<Vec<ObjectRef>>,
    /// Events that were recognised and deliberately skipped (test events,
    /// deletions), with the reason, for logging.
    pub skipped: Vec<String>,
    /// The raw record, kept for DLQ envelopes.
    pub raw: Value,
    /// An explicit redrive ([`REDRIVE_ATTRIBUTE`]) or rebuild
    /// ([`REPROCESS_ATTRIBUTE`]).
    pub replay: Replay,
}

/// The decoded form of a whole invocation payload.
#[derive(Debug)]
pub struct Decoded {
    /// Whether the payload was an SQS batch (so the reply is a batch response).
    pub is_sqs_batch: bool,
    /// The deliveries, in order.
    pub deliveries: Vec<Delivery>,
}

impl Decoded {
    /// All objects from all deliveries, or the first decode error.
    pub fn into_objects(self) -> Result<Vec<ObjectRef>> {
        let mut out = Vec::new();
        for d in self.deliveries {
            out.extend(d.objects?);
        }
        Ok(out)
    }
}

/// Decode an invocation payload.
///
/// Only a payload that is not JSON-shaped like any known trigger is an error
/// here; inside an SQS batch a bad message becomes a failed [`Delivery`] so
/// its neighbours still proceed.
pub fn decode(payload: &Value) -> Result<Decoded> {
    if is_sqs_batch(payload) {
        let event: SqsEvent = serde_json::from_value(payload.clone())
            .map_err(|e| invalid("malformed SQS event", payload, Some(e)))?;
        let deliveries = event.records.into_iter().map(decode_sqs_message).collect();
        return Ok(Decoded {
            is_sqs_batch: true,
            deliveries,
        });
    }
    let mut skipped = Vec::new();
    let objects = decode_body(payload, &mut skipped)?;
    Ok(Decoded {
        is_sqs_batch: false,
        deliveries: vec![Delivery {
            message_id: None,
            receive_count: 1,
            first_seen: None,
            objects: Ok(objects),
            skipped,
            raw: payload.clone(),
            replay: Replay::default(),
        }],
    })
}

fn is_sqs_batch(v: &Value) -> bool {
    v.get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

fn decode_sqs_message(msg: SqsMessage) -> Delivery {
    let raw = serde_json::to_value(&msg).unwrap_or(Value::Null);
    let receive_count = msg
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let first_seen = ["ApproximateFirstReceiveTimestamp", "SentTimestamp"]
        .iter()
        .find_map(|a| msg.attributes.get(*a))
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis);
    let mut replay = Replay {
        redrive: msg.message_attributes.contains_key(REDRIVE_ATTRIBUTE),
        reprocess: None,
    };
    let reprocess = msg
        .message_attributes
        .get(REPROCESS_ATTRIBUTE)
        .map(|a| a.string_value.as_deref().unwrap_or("").trim());
    let mut skipped = Vec::new();
    let objects = match (msg.body.as_deref(), reprocess) {
        (_, Some(g)) if !g.parse::<u64>().is_ok_and(|g| g > 0) => Err(invalid(
            &format!("SQS message attribute {REPROCESS_ATTRIBUTE} is {g:?}, not a generation (a positive integer)"),
            &raw,
            None,
        )),
        (None, _) => Err(invalid("SQS message has no body", &raw, None)),
        (Some(body), g) => match serde_json::from_str::<Value>(body) {
            Ok(inner) => {
                if let Some(g) = g.and_then(|g| g.parse().ok()) {
                    replay = Replay::reprocess(g).or(replay);
                }
                decode_body(&inner, &mut skipped)
            }
            Err(e) => Err(invalid(
                "SQS message body is not JSON",
                &Value::String(body.into()),
                Some(e),
            )),
        },
    };
    Delivery {
        message_id: msg.message_id,
        receive_count,
        first_seen,
        objects,
        skipped,
        raw,
        replay,
    }
}

/// Decode one non-SQS-batch document: an S3 notification, an SNS event or
/// notification, an EventBridge event or an S3 test event.
fn decode_body(v: &Value, skipped: &mut Vec<String>) -> Result<Vec<ObjectRef>> {
    // The S3 test event S3 sends when a notification is configured.
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        skipped.push("s3:TestEvent".into());
        return Ok(vec![]);
    }
    // An SNS notification as delivered to SQS (not raw delivery).
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = v
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("SNS notification without a Message", v, None))?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| invalid("SNS Message is not JSON", v, Some(e)))?;
        return decode_body(&inner, skipped);
    }
    // EventBridge.
    if v.get("detail-type").is_some() && v.get("source").is_some() {
        return decode_eventbridge(v, skipped);
    }
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        let first = records.first();
        let is_sns = first
            .and_then(|r| r.get("EventSource"))
            .and_then(Value::as_str)
            == Some("aws:sns");
        if is_sns {
            let event: SnsEvent = serde_json::from_value(v.clone())
                .map_err(|e| invalid("malformed SNS event", v, Some(e)))?;
            let mut out = Vec::new();
            for r in event.records {
                let inner: Value = serde_json::from_str(&r.sns.message)
                    .map_err(|e| invalid("SNS Message is not JSON", v, Some(e)))?;
                out.extend(decode_body(&inner, skipped)?);
            }
            return Ok(out);
        }
        if records.is_empty() || records.iter().all(|r| r.get("s3").is_some()) {
            let event: S3Event = serde_json::from_value(v.clone())
                .map_err(|e| invalid("malformed S3 notification", v, Some(e)))?;
            let mut out = Vec::new();
            for r in event.records {
                if let Some(o) = s3_record(r, v, skipped)? {
                    out.push(o);
                }
            }
            return Ok(out);
        }
        if first
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs")
        {
            return Err(invalid("SQS batch nested inside another message", v, None));
        }
    }
    Err(invalid("not an S3, SQS, SNS or EventBridge event", v, None))
}

fn s3_record(
    r: S3EventRecord,
    whole: &Value,
    skipped: &mut Vec<String>,
) -> Result<Option<ObjectRef>> {
    let event_name = r.event_name.clone().unwrap_or_default();
    // Deletions are decoded too: a stage with an upstream retracts what it
    // derived from an input its upstream removed. Delete markers count.
    if !event_name.starts_with("ObjectCreated:") && !event_name.starts_with("ObjectRemoved:") {
        skipped.push(format!("{event_name} (not an object creation or removal)"));
        return Ok(None);
    }
    let bucket =
        r.s3.bucket
            .name
            .clone()
            .ok_or_else(|| invalid("S3 record without bucket name", whole, None))?;
    let raw_key =
        r.s3.object
            .key
            .as_deref()
            .ok_or_else(|| invalid("S3 record without object key", whole, None))?;
    let key = decode_key(raw_key)?;
    non_empty_location(&bucket, &key, "S3 record", whole)?;
    Ok(Some(ObjectRef {
        bucket,
        key,
        version_id: non_empty(r.s3.object.version_id),
        etag: non_empty(r.s3.object.e_tag).map(|e| strip_quotes(&e)),
        size: r.s3.object.size.and_then(|s| u64::try_from(s).ok()),
        sequencer: non_empty(r.s3.object.sequencer),
        event_time: Some(r.event_time),
        event_name,
    }))
}

/// The `detail` of an EventBridge "Object Created" event from S3.
#[derive(Debug, Deserialize)]
struct S3Detail {
    bucket: S3DetailBucket,
    object: S3DetailObject,
}

#[derive(Debug, Deserialize)]
struct S3DetailBucket {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct S3DetailObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn decode_eventbridge(v: &Value, skipped: &mut Vec<String>) -> Result<Vec<ObjectRef>> {
    let event: EventBridgeEvent<Value> = serde_json::from_value(v.clone())
        .map_err(|e| invalid("malformed EventBridge event", v, Some(e)))?;
    if event.source != "aws.s3" {
        return Err(invalid(
            &format!("EventBridge event from {:?}, not aws.s3", event.source),
            v,
            None,
        ));
    }
    if event.detail_type != "Object Created" && event.detail_type != "Object Deleted" {
        skipped.push(format!(
            "{} (not an object creation or deletion)",
            event.detail_type
        ));
        return Ok(vec![]);
    }
    let detail: S3Detail = serde_json::from_value(event.detail).map_err(|e| {
        invalid(
            &format!("malformed S3 {} detail", event.detail_type),
            v,
            Some(e),
        )
    })?;
    let key = decode_key(&detail.object.key)?;
    non_empty_location(&detail.bucket.name, &key, "EventBridge S3 event", v)?;
    Ok(vec![ObjectRef {
        bucket: detail.bucket.name,
        key,
        version_id: non_empty(detail.object.version_id),
        etag: non_empty(detail.object.etag).map(|e| strip_quotes(&e)),
        size: detail.object.size,
        sequencer: non_empty(detail.object.sequencer),
        event_time: event.time,
        event_name: event.detail_type,
    }])
}

/// Decode an S3 event key: `+` is a space, then percent-decoding. Applied
/// exactly once, so a literal `+` (sent as `%2B`) and `%` (sent as `%25`)
/// survive.
pub fn decode_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| Error::InvalidEvent {
            reason: format!("object key {raw:?} is not valid percent-encoded UTF-8: {e}"),
            received: raw.to_string(),
        })
}

/// Encode a key the way S3 does in event notifications (the inverse of
/// [`decode_key`]); used when the local store synthesises events.
pub fn encode_key(key: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // S3 leaves unreserved characters and '/' alone and encodes spaces as '+'.
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/')
        .remove(b'*')
        .remove(b' ');
    utf8_percent_encode(key, SET).to_string().replace(' ', "+")
}

/// Build an S3 `ObjectCreated:Put` notification for these objects, with keys
/// encoded as S3 encodes them. The local runner and replays use it so that a
/// synthesised event goes through exactly the decoding a real one does.
pub fn s3_notification(objects: &[ObjectRef]) -> Value {
    let records: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut object = serde_json::json!({"key": encode_key(&o.key)});
            if let Some(size) = o.size {
                object["size"] = size.into();
            }
            if let Some(etag) = &o.etag {
                object["eTag"] = etag.clone().into();
            }
            if let Some(v) = &o.version_id {
                object["versionId"] = v.clone().into();
            }
            if let Some(seq) = &o.sequencer {
                object["sequencer"] = seq.clone().into();
            }
            let time = o.event_time.unwrap_or_else(Utc::now);
            serde_json::json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "local",
                "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "eventName": if o.event_name.starts_with("ObjectCreated:") || o.event_name.starts_with("ObjectRemoved:") { o.event_name.as_str() } else { "ObjectCreated:Put" },
                "userIdentity": {"principalId": "sluice"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "sluice",
                    "bucket": {"name": o.bucket, "arn": format!("arn:aws:s3:::{}", o.bucket)},
                    "object": object,
                }
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// No S3 object has an empty bucket name or key: an event naming one is
/// malformed, and rejected here rather than failing later in a store call.
fn non_empty_location(bucket: &str, key: &str, what: &str, whole: &Value) -> Result<()> {
    if bucket.is_empty() {
        return Err(invalid(
            &format!("{what} with an empty bucket name"),
            whole,
            None,
        ));
    }
    if key.is_empty() {
        return Err(invalid(
            &format!("{what} with an empty object key"),
            whole,
            None,
        ));
    }
    Ok(())
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty() && s != "null")
}

fn strip_quotes(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn invalid(reason: &str, received: &Value, source: Option<serde_json::Error>) -> Error {
    let mut text = received.to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let reason = match source {
        Some(e) => format!("{reason}: {e}"),
        None => reason.to_string(),
    };
    Error::InvalidEvent {
        reason,
        received: text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AWKWARD: &str = "raw/trips/dt=2024-01-15/yellow trip+data & more 100% é.csv";

    #[test]
    fn key_round_trips_through_s3_encoding() {
        let enc = encode_key(AWKWARD);
        assert_eq!(
            enc,
            "raw/trips/dt%3D2024-01-15/yellow+trip%2Bdata+%26+more+100%25+%C3%A9.csv"
        );
        assert_eq!(decode_key(&enc).unwrap(), AWKWARD);
        // %20 is also a space.
        assert_eq!(decode_key("a%20b+c").unwrap(), "a b c");
    }

    #[test]
    fn synthesised_notifications_decode_to_the_same_objects() {
        let mut o = ObjectRef::new("landing", AWKWARD);
        o.etag = Some("abc".into());
        o.sequencer = Some("0000000000000001".into());
        o.size = Some(5);
        o.event_time = Some(Utc::now());
        let back = decode(&s3_notification(std::slice::from_ref(&o)))
            .unwrap()
            .into_objects()
            .unwrap();
        let mut want = o.clone();
        want.event_time = back[0].event_time;
        assert_eq!(back, vec![want]);
    }

    #[test]
    fn decode_key_is_applied_once() {
        // "%2525" is an encoded "%25": decoding once must leave "%25".
        assert_eq!(decode_key("x%2525").unwrap(), "x%25");
    }

    #[test]
    fn invalid_utf8_key_is_an_error_naming_the_key() {
        let err = decode_key("bad%FF").unwrap_err();
        assert!(err.to_string().contains("bad%FF"), "{err}");
    }

    #[test]
    fn unrecognised_payload_names_what_was_received() {
        let err = decode(&json!({"hello": "world"})).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("not an S3, SQS, SNS or EventBridge event"),
            "{msg}"
        );
        assert!(msg.contains("hello"), "{msg}");
    }

    #[test]
    fn bad_sqs_message_fails_alone() {
        let batch = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "body": "not json", "attributes": {}},
            {"messageId": "m2", "eventSource": "aws:sqs", "attributes": {"ApproximateReceiveCount": "3"},
             "body": "{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"}
        ]});
        let d = decode(&batch).unwrap();
        assert!(d.is_sqs_batch);
        assert!(d.deliveries[0].objects.is_err());
        assert_eq!(d.deliveries[1].objects.as_ref().unwrap().len(), 0);
        assert_eq!(d.deliveries[1].receive_count, 3);
        assert_eq!(d.deliveries[1].skipped, vec!["s3:TestEvent".to_string()]);
    }

    #[test]
    fn eventbridge_from_other_source_is_rejected() {
        let ev = json!({"version": "0", "id": "1", "detail-type": "EC2 Instance State-change Notification",
                        "source": "aws.ec2", "detail": {}});
        let err = decode(&ev).unwrap_err();
        assert!(err.to_string().contains("aws.ec2"), "{err}");
    }
}
