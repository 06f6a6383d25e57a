//! Idempotent output writes. An output's key depends only on its input's
//! identity; before writing, the current object at that key is compared with
//! the incoming input version:
//! - nothing there: create-only write (`If-None-Match: *`);
//! - same input version: a no-op ("already processed");
//! - older input version: replace, guarded by `If-Match` on its ETag;
//! - newer input version: leave it ("superseded": a late, older event).
//!
//! A lost race (another writer got there between the check and the write)
//! surfaces as a retryable error, and deciding again resolves it.

use bytes::Bytes;
use chrono::Utc;

use crate::error::{Error, ErrorKind, Result};
use crate::lineage::{freshness, keys, Freshness, Lineage, SourceIdentity};
use crate::store::{
    Metadata, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult,
};

/// What to do about one output key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Write with this mode.
    Write(PutMode),
    /// Do not write.
    Skip(Skip),
}

/// Why a write is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The output was already made from this very input version.
    AlreadyProcessed,
    /// The output was made from a newer input version.
    Superseded,
}

/// The result of an idempotent write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new output.
    Created(PutResult),
    /// An output from an older input version was replaced.
    Replaced(PutResult),
    /// Skipped; nothing written.
    Skipped(Skip),
}

impl WriteOutcome {
    /// Whether bytes were written.
    pub fn wrote(&self) -> bool {
        !matches!(self, WriteOutcome::Skipped(_))
    }
}

/// The pure decision: given what is stored at the output key (if anything)
/// and the incoming input version, what to do.
pub fn decide(existing: Option<&ObjectMeta>, incoming: &SourceIdentity) -> Plan {
    let Some(existing) = existing else {
        return Plan::Write(PutMode::Create);
    };
    let replace = Plan::Write(PutMode::Update {
        etag: existing.etag.clone(),
    });
    match SourceIdentity::from_metadata(&existing.metadata) {
        // Not written by Sluice (or by a version that stamped nothing): ours to replace.
        None => replace,
        Some(prev) => match freshness(&prev, incoming) {
            Freshness::Same => Plan::Skip(Skip::AlreadyProcessed),
            Freshness::Older => Plan::Skip(Skip::Superseded),
            Freshness::Newer => replace,
        },
    }
}

/// Look at the output key and decide.
pub async fn plan(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    incoming: &SourceIdentity,
) -> Result<Plan> {
    let existing = store.head(bucket, key).await?;
    Ok(decide(existing.as_ref(), incoming))
}

/// The metadata for an output: lineage, the time it was written, and extras.
pub fn output_metadata(lineage: &Lineage, extra: &Metadata) -> Metadata {
    let mut m = lineage.metadata();
    m.insert(
        keys::PROCESSED_AT.into(),
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}

/// A lost race between the decision and the write: retryable, because
/// deciding again (after a fresh look) gives the right answer.
fn race_lost(err: Error) -> Error {
    match err {
        Error::Storage {
            op,
            location,
            kind: ErrorKind::AlreadyExists | ErrorKind::NotFound,
            message,
            source,
        } => Error::Storage {
            op,
            location,
            kind: ErrorKind::Precondition,
            message: format!("lost a race with a concurrent writer: {message}"),
            source,
        },
        e => e,
    }
}

fn is_race(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::AlreadyExists | ErrorKind::Precondition | ErrorKind::NotFound
    )
}

/// Write a small output idempotently, deciding again if a concurrent writer
/// changes the key between the decision and the write.
pub async fn write_bytes(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    body: Bytes,
    lineage: &Lineage,
    extra: &Metadata,
    content_type: Option<&str>,
) -> Result<WriteOutcome> {
    const ROUNDS: usize = 3;
    let mut last_err = None;
    for _ in 0..ROUNDS {
        let mode = match plan(store, bucket, key, &lineage.source).await? {
            Plan::Skip(s) => return Ok(WriteOutcome::Skipped(s)),
            Plan::Write(mode) => mode,
        };
        let replacing = matches!(mode, PutMode::Update { .. });
        let opts = PutOptions {
            mode,
            metadata: output_metadata(lineage, extra),
            content_type: content_type.map(str::to_string),
        };
        match store.put(bucket, key, body.clone(), opts).await {
            Ok(r) if replacing => return Ok(WriteOutcome::Replaced(r)),
            Ok(r) => return Ok(WriteOutcome::Created(r)),
            Err(e) if is_race(&e) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(race_lost(last_err.unwrap_or_else(|| {
        Error::other(
            ErrorKind::Precondition,
            format!("s3://{bucket}/{key}: no decision after {ROUNDS} rounds"),
            None,
        )
    })))
}

/// A streamed output in progress, started by [`begin_stream`].
pub struct StreamedOutput {
    upload: Box<dyn MultipartUpload>,
    replacing: bool,
}

impl StreamedOutput {
    /// Append bytes (buffered up to one part).
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.upload.write(data).await
    }

    /// The upload's part size, or 0 if it holds nothing back
    /// ([`crate::store::MultipartUpload::part_size`]).
    pub fn part_size(&self) -> usize {
        self.upload.part_size()
    }

    /// Make the output visible; a lost race is a retryable error.
    pub async fn complete(self) -> Result<WriteOutcome> {
        let replacing = self.replacing;
        let r = self.upload.complete().await.map_err(race_lost)?;
        Ok(if replacing {
            WriteOutcome::Replaced(r)
        } else {
            WriteOutcome::Created(r)
        })
    }

    /// Discard it.
    pub async fn abort(self) -> Result<()> {
        self.upload.abort().await
    }
}

/// Decide about an output key and, if it is to be written, start a streamed
/// upload with the right condition. `Err(skip)` means nothing is to be written.
pub async fn begin_stream(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    lineage: &Lineage,
    extra: &Metadata,
    content_type: Option<&str>,
) -> Result<std::result::Result<StreamedOutput, Skip>> {
    let mode = match plan(store, bucket, key, &lineage.source).await? {
        Plan::Skip(s) => return Ok(Err(s)),
        Plan::Write(mode) => mode,
    };
    let replacing = matches!(mode, PutMode::Update { .. });
    let opts = PutOptions {
        mode,
        metadata: output_metadata(lineage, extra),
        content_type: content_type.map(str::to_string),
    };
    let upload = store.put_multipart(bucket, key, opts).await?;
    Ok(Ok(StreamedOutput { upload, replacing }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ObjectStoreExt};
    use std::sync::Arc;

    fn lineage(etag: &str, seq: &str) -> Lineage {
        Lineage::for_input(
            SourceIdentity {
                bucket: "landing".into(),
                key: "raw/trips/x.csv".into(),
                etag: Some(etag.into()),
                version_id: None,
                sequencer: Some(seq.into()),
                generation: 0,
            },
            None,
            None,
            "ingest",
            "test",
        )
    }

    async fn write(store: &MemoryStore, l: &Lineage, body: &'static str) -> WriteOutcome {
        write_bytes(
            store,
            "out-bucket",
            "trips/out.parquet",
            Bytes::from_static(body.as_bytes()),
            l,
            &Metadata::new(),
            None,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn duplicate_event_yields_one_output() {
        let store = MemoryStore::new();
        let l = lineage("e1", "0A");
        assert!(matches!(
            write(&store, &l, "v1").await,
            WriteOutcome::Created(_)
        ));
        assert_eq!(
            write(&store, &l, "v1").await,
            WriteOutcome::Skipped(Skip::AlreadyProcessed)
        );
        assert_eq!(store.list("out-bucket", "").await.unwrap().len(), 1);
        assert_eq!(store.calls("put"), 1, "the duplicate wrote nothing");
    }

    #[tokio::test]
    async fn newer_version_replaces_and_late_older_event_is_ignored() {
        let store = MemoryStore::new();
        write(&store, &lineage("e1", "0A"), "v1").await;
        assert!(matches!(
            write(&store, &lineage("e2", "0B"), "v2").await,
            WriteOutcome::Replaced(_)
        ));
        // The v1 event arrives again, late: it must not clobber v2's output.
        assert_eq!(
            write(&store, &lineage("e1", "0A"), "v1").await,
            WriteOutcome::Skipped(Skip::Superseded)
        );
        let body = store
            .get_bytes("out-bucket", "trips/out.parquet")
            .await
            .unwrap();
        assert_eq!(&body[..], b"v2");
    }

    #[tokio::test]
    async fn concurrent_writers_exactly_one_wins() {
        let store = MemoryStore::new();
        let l = Arc::new(lineage("e1", "0A"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, l) = (store.clone(), l.clone());
                tokio::spawn(async move { write(&store, &l, "v1").await })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                WriteOutcome::Created(_) => created += 1,
                WriteOutcome::Skipped(Skip::AlreadyProcessed) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(store.calls("put"), 1);
    }

    #[test]
    fn decide_table() {
        let l1 = lineage("e1", "0A");
        let meta = |m: Metadata| ObjectMeta {
            bucket: "b".into(),
            key: "k".into(),
            size: 1,
            etag: "cur".into(),
            version_id: None,
            last_modified: None,
            metadata: m,
        };
        assert_eq!(decide(None, &l1.source), Plan::Write(PutMode::Create));
        let same = meta(l1.metadata());
        assert_eq!(
            decide(Some(&same), &l1.source),
            Plan::Skip(Skip::AlreadyProcessed)
        );
        let newer = meta(lineage("e2", "0B").metadata());
        assert_eq!(
            decide(Some(&newer), &l1.source),
            Plan::Skip(Skip::Superseded)
        );
        let update = Plan::Write(PutMode::Update { etag: "cur".into() });
        let older = meta(lineage("e0", "09").metadata());
        assert_eq!(decide(Some(&older), &l1.source), update);
        assert_eq!(
            decide(Some(&meta(Metadata::new())), &l1.source),
            update,
            "foreign object"
        );
    }

    #[tokio::test]
    async fn streamed_write_honours_the_plan() {
        let store = MemoryStore::new();
        let l = lineage("e1", "0A");
        let mut s = begin_stream(
            &store,
            "out-bucket",
            "k.parquet",
            &l,
            &Metadata::new(),
            None,
        )
        .await
        .unwrap()
        .expect("nothing there yet");
        s.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(matches!(
            s.complete().await.unwrap(),
            WriteOutcome::Created(_)
        ));
        let again = begin_stream(
            &store,
            "out-bucket",
            "k.parquet",
            &l,
            &Metadata::new(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(again.err(), Some(Skip::AlreadyProcessed));
    }
}
