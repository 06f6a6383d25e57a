//! Lineage: the identity of an input object, the metadata stamped on every
//! output, correlation ids, deterministic ids, and S3 sequencer ordering.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Metadata, ObjectMeta};
use crate::trigger::ObjectRef;

/// Metadata keys (S3 `x-amz-meta-*`) written on every output.
pub mod keys {
    /// Bucket of the input the output was made from.
    pub const SOURCE_BUCKET: &str = "sluice-source-bucket";
    /// Key of the input, percent-encoded (metadata must be ASCII).
    pub const SOURCE_KEY: &str = "sluice-source-key";
    /// ETag of the input.
    pub const SOURCE_ETAG: &str = "sluice-source-etag";
    /// Version id of the input.
    pub const SOURCE_VERSION: &str = "sluice-source-version";
    /// S3 sequencer of the input's creation event.
    pub const SOURCE_SEQUENCER: &str = "sluice-source-sequencer";
    /// Stage that wrote the output.
    pub const STAGE: &str = "sluice-stage";
    /// Code version of that stage.
    pub const CODE_VERSION: &str = "sluice-code-version";
    /// Correlation id, shared by every output descended from one landed file.
    pub const CORRELATION_ID: &str = "sluice-correlation-id";
    /// When the producer's file first landed (RFC 3339), for end-to-end lag.
    pub const ORIGIN_TIME: &str = "sluice-origin-time";
    /// When this stage finished the output (RFC 3339).
    pub const PROCESSED_AT: &str = "sluice-processed-at";
    /// Milliseconds this stage spent on the input.
    pub const DURATION_MS: &str = "sluice-duration-ms";
}

/// Which version of which input an output was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// Input bucket.
    pub bucket: String,
    /// Input key (decoded).
    pub key: String,
    /// Input ETag.
    pub etag: Option<String>,
    /// Input version id.
    pub version_id: Option<String>,
    /// Sequencer of the input's creation event.
    pub sequencer: Option<String>,
    /// Which rebuild of this version it is: 0 for its first processing,
    /// then the generation `sluice replay --reprocess` stamped (a time in
    /// milliseconds, so a later rebuild has a higher one). Outputs of a
    /// rebuild carry it in their keys (`-r<generation>`), so no two
    /// generations share an output key either.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A claim tag read back: the content tag and the generation.
pub fn parse_claim_tag(tag: &str) -> (&str, u64) {
    match tag.split_once('r') {
        Some((content, g)) => match g.parse() {
            Ok(g) => (content, g),
            Err(_) => (tag, 0),
        },
        None => (tag, 0),
    }
}

impl SourceIdentity {
    /// A key with no version known: enough for [`SourceIdentity::object_id`],
    /// and so for finding the manifest or dead-letter marker of any version.
    pub fn of_key(bucket: &str, key: &str) -> Self {
        SourceIdentity {
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: None,
            version_id: None,
            sequencer: None,
            generation: 0,
        }
    }

    /// The identity of an event's object, completed from its current metadata.
    pub fn from_event(obj: &ObjectRef, current: Option<&ObjectMeta>) -> Self {
        SourceIdentity {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            etag: obj.etag.clone().or_else(|| current.map(|m| m.etag.clone())),
            version_id: obj
                .version_id
                .clone()
                .or_else(|| current.and_then(|m| m.version_id.clone())),
            sequencer: obj.sequencer.clone(),
            generation: 0,
        }
    }

    /// Read the identity back from an output's metadata.
    pub fn from_metadata(m: &Metadata) -> Option<Self> {
        Some(SourceIdentity {
            bucket: m.get(keys::SOURCE_BUCKET)?.clone(),
            key: decode_meta(m.get(keys::SOURCE_KEY)?),
            etag: m.get(keys::SOURCE_ETAG).cloned(),
            version_id: m.get(keys::SOURCE_VERSION).cloned(),
            sequencer: m.get(keys::SOURCE_SEQUENCER).cloned(),
            generation: 0,
        })
    }

    /// A stable id for the input *key* (not its version): outputs derived from
    /// it live at keys built from this id, so a newer version replaces them.
    pub fn object_id(&self) -> String {
        short_hash(&[self.bucket.as_bytes(), self.key.as_bytes()], 20)
    }

    /// A deterministic correlation id for this exact version of the input.
    /// The version is named by its content (ETag) before the bucket's
    /// version id, which is random: a re-uploaded or restored copy of the
    /// same bytes (a phoenix rebuild) gets the same ids and outputs.
    pub fn derived_correlation_id(&self) -> String {
        let version = self.content_version();
        format!(
            "sl-{}",
            short_hash(
                &[
                    self.bucket.as_bytes(),
                    self.key.as_bytes(),
                    version.as_bytes()
                ],
                16
            )
        )
    }

    /// A short tag naming this version by its content (the ETag, else the
    /// version id). Outputs of an input version carry it in their keys, so
    /// two versions of one input never write the same output key: a
    /// version can neither overwrite nor delete another version's output.
    pub fn content_tag(&self) -> String {
        short_hash(&[self.content_version().as_bytes()], 12)
    }

    /// `<object id>-<content tag>` (then `-r<generation>` for a rebuild):
    /// the stem of the output keys of this version of the input.
    pub fn output_id(&self) -> String {
        format!(
            "{}-{}{}",
            self.object_id(),
            self.content_tag(),
            self.generation_suffix()
        )
    }

    /// `""`, or `-r<generation>` for a rebuild.
    pub fn generation_suffix(&self) -> String {
        match self.generation {
            0 => String::new(),
            g => format!("-r{g}"),
        }
    }

    /// A key derived from another stage's output key, for this generation:
    /// unchanged for a first processing, else with `-r<generation>` before
    /// the first `.` of its file name (`a/b-1.parquet` → `a/b-1-r7.parquet`).
    pub fn generation_key(&self, key: &str) -> String {
        if self.generation == 0 {
            return key.to_string();
        }
        let name_at = key.rfind('/').map_or(0, |i| i + 1);
        let dot = key[name_at..].find('.').map_or(key.len(), |i| name_at + i);
        format!("{}{}{}", &key[..dot], self.generation_suffix(), &key[dot..])
    }

    /// The tag a version's claims are filed under: the content tag, then
    /// `r<generation>` for a rebuild ([`parse_claim_tag`] reads it back).
    pub fn claim_tag(&self) -> String {
        match self.generation {
            0 => self.content_tag(),
            g => format!("{}r{g}", self.content_tag()),
        }
    }

    /// Whether `other` is the same content *and* the same generation: the
    /// same commit, whichever delivery made it.
    pub fn same_commit(&self, other: &SourceIdentity) -> bool {
        self.same_content(other) && self.generation == other.generation
    }

    /// Whether `other` is the same content of the same key (a duplicate
    /// event, or the same bytes uploaded again). Without an ETag on either
    /// side, version ids decide; with neither, nothing is known to be equal.
    pub fn same_content(&self, other: &SourceIdentity) -> bool {
        if self.bucket != other.bucket || self.key != other.key {
            return false;
        }
        match (&self.etag, &other.etag) {
            (Some(a), Some(b)) => a == b,
            _ => self.version_id.is_some() && self.version_id == other.version_id,
        }
    }

    /// The version as content: the ETag, else the version id.
    fn content_version(&self) -> &str {
        self.etag
            .as_deref()
            .or(self.version_id.as_deref())
            .unwrap_or("")
    }

    /// A record id from source identity and row number, for datasets without
    /// a natural key.
    pub fn record_id(&self, row_number: u64) -> String {
        let version = self.content_version();
        short_hash(
            &[
                self.bucket.as_bytes(),
                self.key.as_bytes(),
                version.as_bytes(),
                &row_number.to_be_bytes(),
            ],
            32,
        )
    }
}

/// Everything stamped on an output besides the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The input.
    pub source: SourceIdentity,
    /// Stage name.
    pub stage: String,
    /// Code version of the stage.
    pub code_version: String,
    /// Correlation id.
    pub correlation_id: String,
    /// When the original producer file landed.
    pub origin_time: Option<DateTime<Utc>>,
}

impl Lineage {
    /// Build lineage for an input: the correlation id and origin time are
    /// inherited from the input's own metadata when an earlier stage set them.
    pub fn for_input(
        source: SourceIdentity,
        input: Option<&Metadata>,
        event_time: Option<DateTime<Utc>>,
        stage: &str,
        code_version: &str,
    ) -> Self {
        let correlation_id = input
            .and_then(|m| m.get(keys::CORRELATION_ID))
            .filter(|c| is_valid_correlation_id(c))
            .cloned()
            .unwrap_or_else(|| source.derived_correlation_id());
        let origin_time = input
            .and_then(|m| m.get(keys::ORIGIN_TIME))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or(event_time);
        Lineage {
            source,
            stage: stage.to_string(),
            code_version: code_version.to_string(),
            correlation_id,
            origin_time,
        }
    }

    /// The metadata every output of this input carries.
    pub fn metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(keys::SOURCE_BUCKET.into(), self.source.bucket.clone());
        m.insert(keys::SOURCE_KEY.into(), encode_meta(&self.source.key));
        if let Some(e) = &self.source.etag {
            m.insert(keys::SOURCE_ETAG.into(), e.clone());
        }
        if let Some(v) = &self.source.version_id {
            m.insert(keys::SOURCE_VERSION.into(), v.clone());
        }
        if let Some(s) = &self.source.sequencer {
            m.insert(keys::SOURCE_SEQUENCER.into(), s.clone());
        }
        m.insert(keys::STAGE.into(), self.stage.clone());
        m.insert(keys::CODE_VERSION.into(), self.code_version.clone());
        m.insert(keys::CORRELATION_ID.into(), self.correlation_id.clone());
        if let Some(t) = self.origin_time {
            m.insert(
                keys::ORIGIN_TIME.into(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
        m
    }
}

/// Correlation ids arriving in metadata are trusted only if they are short and
/// printable: they go into every log line.
fn is_valid_correlation_id(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 128
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Percent-encode a value for S3 metadata, which must be ASCII: everything
/// but letters, digits and `/-_.~` is encoded (including `%` itself).
pub fn encode_meta(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SET).to_string()
}

/// Inverse of [`encode_meta`].
pub fn decode_meta(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Hex of the first `hex_len / 2` bytes of SHA-256 over the parts, each
/// length-prefixed so that ("ab","c") and ("a","bc") differ.
pub fn short_hash(parts: &[&[u8]], hex_len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut s = hex::encode(h.finalize());
    s.truncate(hex_len);
    s
}

/// Compare two S3 sequencers for the same key: left-pad the shorter with
/// zeros, then compare as strings (case-insensitively; they are hex).
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{s:0>width$}").to_ascii_uppercase();
    pad(a).cmp(&pad(b))
}

/// How an incoming input version relates to the one an output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Same input version: the output is already done.
    Same,
    /// The incoming version is newer: replace the output.
    Newer,
    /// The incoming version is older: leave the output alone.
    Older,
}

/// Decide how `incoming` relates to `existing` (the source of a stored output).
///
/// Same ETag and version means the same input. Otherwise sequencers decide.
/// Without sequencers on both sides (manual replays, hand-made events), or
/// with equal ones for different versions (S3 never does that, LocalStack
/// stamps one constant sequencer on every event), the incoming event wins:
/// the runner has already checked it describes the object as it is now.
pub fn freshness(existing: &SourceIdentity, incoming: &SourceIdentity) -> Freshness {
    let same_etag = existing.etag.is_some() && existing.etag == incoming.etag;
    let same_version = match (&existing.version_id, &incoming.version_id) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if same_etag && same_version {
        return Freshness::Same;
    }
    match (&existing.sequencer, &incoming.sequencer) {
        (Some(a), Some(b)) => match compare_sequencers(b, a) {
            Ordering::Greater => Freshness::Newer,
            Ordering::Less => Freshness::Older,
            Ordering::Equal => Freshness::Newer,
        },
        _ => Freshness::Newer,
    }
}

/// Record ids (`_record_id`) as text: ingest's 16-byte binary ids as their
/// 32 lower-case hex digits, a text column as it is ([`crate::columns::to_utf8`]).
pub fn record_ids_as_text(
    ids: &arrow::array::ArrayRef,
) -> std::result::Result<arrow::array::StringArray, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray, StringBuilder};
    use std::fmt::Write;
    match ids.data_type() {
        arrow::datatypes::DataType::FixedSizeBinary(_) => {
            let ids = ids.as_fixed_size_binary();
            let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 32);
            let mut text = String::with_capacity(32);
            for id in ids.iter() {
                match id {
                    Some(bytes) => {
                        text.clear();
                        for b in bytes {
                            let _ = write!(text, "{b:02x}");
                        }
                        out.append_value(&text);
                    }
                    None => out.append_null(),
                }
            }
            Ok(out.finish())
        }
        _ => crate::columns::to_utf8(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(etag: &str, seq: Option<&str>) -> SourceIdentity {
        SourceIdentity {
            bucket: "landing".into(),
            key: "raw/trips/a b+c é.csv".into(),
            etag: Some(etag.into()),
            version_id: None,
            sequencer: seq.map(str::to_string),
            generation: 0,
        }
    }

    #[test]
    fn a_rebuild_names_its_outputs_and_claims_by_its_generation() {
        let first = src("e1", None);
        let rebuild = SourceIdentity {
            generation: 1764590000123,
            ..first.clone()
        };
        assert_eq!(
            rebuild.output_id(),
            format!("{}-r1764590000123", first.output_id())
        );
        assert!(first.same_content(&rebuild) && !first.same_commit(&rebuild));
        assert_eq!(
            first.generation_key("t/v1/dt=x/a-b.parquet"),
            "t/v1/dt=x/a-b.parquet"
        );
        assert_eq!(
            rebuild.generation_key("t/v1/dt=x/a-b.parquet"),
            "t/v1/dt=x/a-b-r1764590000123.parquet"
        );
        assert_eq!(
            rebuild.generation_key("t/v1/a.b/x.profile.json"),
            "t/v1/a.b/x-r1764590000123.profile.json"
        );
        assert_eq!(rebuild.generation_key("noext"), "noext-r1764590000123");
        for s in [&first, &rebuild] {
            let tag = s.claim_tag();
            assert_eq!(
                parse_claim_tag(&tag),
                (s.content_tag().as_str(), s.generation)
            );
        }
        // A generation of 0 is not written, so older manifests read the same.
        let json = serde_json::to_value(&first).unwrap();
        assert!(json.get("generation").is_none(), "{json}");
        let back: SourceIdentity = serde_json::from_value(json).unwrap();
        assert_eq!(back, first);
    }

    #[test]
    fn sequencers_compare_after_left_padding() {
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        // Different lengths: "FF" is 0x00FF, smaller than 0x0100.
        assert_eq!(compare_sequencers("FF", "0100"), Ordering::Less);
        assert_eq!(compare_sequencers("ab", "00AB"), Ordering::Equal);
    }

    #[test]
    fn freshness_table() {
        use Freshness::*;
        let cases = [
            (src("e1", Some("01")), src("e1", Some("01")), Same),
            (src("e1", Some("01")), src("e2", Some("02")), Newer),
            (src("e2", Some("02")), src("e1", Some("01")), Older),
            (src("e1", None), src("e2", None), Newer),
            (src("e1", None), src("e1", None), Same),
            // LocalStack's constant sequencer: the (current) incoming wins.
            (src("e1", Some("01")), src("e2", Some("01")), Newer),
        ];
        for (existing, incoming, want) in cases {
            assert_eq!(
                freshness(&existing, &incoming),
                want,
                "{existing:?} vs {incoming:?}"
            );
        }
    }

    #[test]
    fn ids_are_deterministic_and_version_sensitive() {
        let a = src("e1", None);
        let b = src("e2", None);
        assert_eq!(
            a.object_id(),
            b.object_id(),
            "object id ignores the version"
        );
        assert_ne!(a.derived_correlation_id(), b.derived_correlation_id());
        assert_eq!(
            a.derived_correlation_id(),
            src("e1", None).derived_correlation_id()
        );
        assert_ne!(a.record_id(1), a.record_id(2));
        assert_eq!(a.record_id(7), src("e1", None).record_id(7));
        // The same bytes under another version id (re-uploaded, restored) keep their ids.
        let v1 = src("e1", Some("v1"));
        let v2 = src("e1", Some("v2"));
        assert_eq!(v1.derived_correlation_id(), v2.derived_correlation_id());
        assert_eq!(v1.record_id(3), v2.record_id(3));
    }

    #[test]
    fn metadata_round_trips_awkward_keys() {
        let l = Lineage::for_input(src("e1", Some("0A")), None, None, "ingest", "1.0.0");
        let m = l.metadata();
        assert!(m.values().all(|v| v.is_ascii()), "{m:?}");
        assert_eq!(SourceIdentity::from_metadata(&m).unwrap(), l.source);
    }

    #[test]
    fn correlation_id_is_inherited_when_valid() {
        let mut m = Metadata::new();
        m.insert(keys::CORRELATION_ID.into(), "sl-abc123".into());
        let l = Lineage::for_input(src("e1", None), Some(&m), None, "curate", "1");
        assert_eq!(l.correlation_id, "sl-abc123");
        m.insert(keys::CORRELATION_ID.into(), "bad id\nwith newline".into());
        let l = Lineage::for_input(src("e1", None), Some(&m), None, "curate", "1");
        assert_eq!(l.correlation_id, src("e1", None).derived_correlation_id());
    }
}
