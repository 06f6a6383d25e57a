//! The write protocol: how a stage commits what it made from one input
//! version, so that whatever S3, SQS and Lambda do (duplicates, reordering,
//! overlapping versions, crashes at any await, lost responses) the pipeline
//! converges on exactly what processing each current input alone produces.
//!
//! # Invariants, once the system is quiet (no message in flight)
//!
//! 1. For every landed key, every stage's outputs derived from it are
//!    exactly, byte for byte, what processing its current version alone
//!    produces; nothing derived from an older version survives at any
//!    stage. A re-upload that drops a partition removes what was derived
//!    from that partition in every later stage.
//! 2. Every row of every current input is in exactly one place (an output
//!    or the quarantine), and every input is committed (a manifest),
//!    dead-lettered (an envelope), or in flight.
//! 3. A consumer never sees an unreadable output; an output that no commit
//!    owns is removed before the system is quiet, and later stages act only
//!    on committed outputs.
//! 4. A DLQ message leaves the DLQ only once its input has settled.
//! 5. Deleting a landed object keeps downstream data (landing buckets
//!    expire); an explicit retraction removes everything derived from it.
//!
//! # The mechanism
//!
//! - **Outputs are per version.** Output keys carry the input version's
//!   content tag ([`SourceIdentity::output_id`]), so two versions of one
//!   input never share an output key: no version can overwrite or delete
//!   another's output, and an output key, once written, always holds the
//!   same bytes.
//! - **Claims before writes.** Before an output is opened, a claim
//!   (`<out>/_sluice/claims/<stage>/<input id>/<tag>/<hash>.json`) records
//!   that this input version owns it. A crash after the write therefore
//!   never leaves an output that nothing points at.
//! - **The manifest is the one commit point** per stage and input key,
//!   written by compare-and-swap (`If-None-Match: *` for the first,
//!   `If-Match` on the ETag read for the rest). The commit winner is the
//!   input's *current* version, resolved by asking the store (HEAD) after
//!   reading the manifest and before the swap: an event's sequencer is never
//!   trusted (replays carry none, LocalStack stamps a constant one). Because
//!   the read precedes the HEAD and the swap checks the read, a version that
//!   stopped being current before its swap always loses the swap.
//! - **The winner owes the cleanup and records it.** The manifest it swaps
//!   in lists the outputs of the manifest it replaces (`pending_cleanup`).
//!   It then removes those and every output claimed by another version, and
//!   swaps in the manifest again with `clean: true`. A crash or a failed
//!   delete in between is re-driven by the next delivery of that input.
//! - **A loser removes what it created** (the outputs claimed by its own
//!   version), at the commit it loses or at the next delivery of its event.
//! - **Dead-lettering is a commit too.** When the current version fails
//!   permanently, a manifest in state `dead_lettered` (no outputs) replaces
//!   the last one, so an older version's outputs do not outlive it.
//! - **Downstream acts only on committed outputs.** A stage with an upstream
//!   (`SLUICE_UPSTREAM`) processes an input only once the upstream manifest
//!   for its source lists it, and re-checks that the input still exists
//!   when it commits.
//! - **Deletions propagate.** When an upstream stage removes an output, the
//!   deletion event reaches the next stage, which *retracts*: it swaps in a
//!   `retracted` tombstone (which also makes an in-flight commit for the
//!   deleted input lose) and removes everything it derived from that input,
//!   whose deletions in turn reach the stage after it. Deleting a landed
//!   object retracts nothing (invariant 5).
//! - **A rebuild is a generation.** `sluice replay --reprocess` processes
//!   the current version again as a new generation
//!   ([`SourceIdentity::generation`]); its outputs and claims carry the
//!   generation in their keys and tags, so generations never share a key,
//!   just as versions do not. Of two commits of the same content the higher
//!   generation wins; an ordinary event takes the committed generation (it
//!   is a duplicate) and removes what lower generations of that content
//!   claimed after the winner's cleanup (a late writer of one that then
//!   failed); the winner's cleanup spares the claims of a higher
//!   generation still being written. A committed version whose input is
//!   deleted keeps its cleanup to itself: no newer version will take it
//!   over, and a loser never removes what the current manifest lists.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::idempotent::output_metadata;
use crate::lineage::{short_hash, Lineage, SourceIdentity};
use crate::runner::{Manifest, OutputRef};
use crate::store::{Metadata, ObjectStore, ObjectStoreExt, PutMode, PutOptions};

/// What a manifest says about its input version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestState {
    /// Processed: the outputs are in place.
    #[default]
    Committed,
    /// Failed permanently: no outputs; its envelope is in the DLQ.
    DeadLettered,
    /// Its input was removed by the upstream stage; nothing derived from it
    /// is kept. A tombstone, so that an in-flight commit for it loses.
    Retracted,
}

/// One claim: an output some version of an input created or is creating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Where the claim itself is stored.
    pub key: String,
    /// The claim tag of the claiming version and generation
    /// ([`SourceIdentity::claim_tag`]).
    pub tag: String,
    /// The claimed output.
    pub output: OutputRef,
}

/// A stage's bookkeeping: manifests and claims under its output location.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    stage: String,
}

/// The result of a compare-and-swap of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// Written; the new manifest's ETag.
    Done(String),
    /// Someone else changed the manifest first: read again and decide again.
    Lost,
}

impl Ledger {
    /// The ledger of `stage`, kept under `s3://bucket/prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str, stage: &str) -> Self {
        Ledger {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            stage: stage.to_string(),
        }
    }

    /// The bucket the ledger lives in.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Where the manifest of an input key lives.
    pub fn manifest_key(&self, source: &SourceIdentity) -> String {
        crate::runner::manifest_key_in(&self.prefix, &self.stage, source)
    }

    fn claims_prefix(&self, source: &SourceIdentity) -> String {
        format!(
            "{}_sluice/claims/{}/{}/",
            self.prefix,
            self.stage,
            source.object_id()
        )
    }

    /// The manifest of an input key and its ETag, if there is one. An
    /// unreadable manifest is an error, never "absent": treating it as
    /// absent would let an older version commit over it.
    pub async fn read(&self, source: &SourceIdentity) -> Result<Option<(Manifest, String)>> {
        let key = self.manifest_key(source);
        let got = match self.store.get(&self.bucket, &key).await {
            Ok(g) => g,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = got.meta.etag.clone();
        let bytes = got.bytes().await?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                format!("s3://{}/{key}: unreadable manifest", self.bucket),
                Some(Box::new(e)),
            )
        })?;
        Ok(Some((manifest, etag)))
    }

    /// Swap in `manifest` if the stored one still has ETag `expected`
    /// (`None`: if there is none).
    pub async fn swap(
        &self,
        manifest: &Manifest,
        expected: Option<&str>,
        lineage: &Lineage,
        extra: &Metadata,
    ) -> Result<Swap> {
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "cannot encode manifest",
                Some(Box::new(e)),
            )
        })?;
        let key = self.manifest_key(&manifest.source);
        let mode = match expected {
            Some(etag) => PutMode::Update {
                etag: etag.to_string(),
            },
            None => PutMode::Create,
        };
        let opts = PutOptions {
            mode,
            metadata: output_metadata(lineage, extra),
            content_type: Some("application/json".into()),
        };
        match self
            .store
            .put(&self.bucket, &key, Bytes::from(body), opts)
            .await
        {
            Ok(r) => Ok(Swap::Done(r.etag)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::Precondition | ErrorKind::NotFound
                ) =>
            {
                Ok(Swap::Lost)
            }
            Err(e) => Err(e),
        }
    }

    /// Record that `source`'s version owns `output`, before it is written.
    pub async fn claim(&self, source: &SourceIdentity, output: &OutputRef) -> Result<()> {
        let key = format!(
            "{}{}/{}.json",
            self.claims_prefix(source),
            source.claim_tag(),
            short_hash(&[output.bucket.as_bytes(), output.key.as_bytes()], 16)
        );
        let body = serde_json::to_vec(output).map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                "cannot encode claim",
                Some(Box::new(e)),
            )
        })?;
        self.store
            .put(
                &self.bucket,
                &key,
                Bytes::from(body),
                PutOptions::new(PutMode::Overwrite),
            )
            .await?;
        Ok(())
    }

    /// Every claim on outputs of any version of `source`'s key.
    pub async fn claims(&self, source: &SourceIdentity) -> Result<Vec<Claim>> {
        let prefix = self.claims_prefix(source);
        let mut out = Vec::new();
        for meta in self.store.list(&self.bucket, &prefix).await? {
            let rel = &meta.key[prefix.len()..];
            let Some((tag, _)) = rel.split_once('/') else {
                continue;
            };
            let body = match self.store.get_bytes(&self.bucket, &meta.key).await {
                Ok(b) => b,
                // Removed by a concurrent sweep since the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let output: OutputRef = serde_json::from_slice(&body).map_err(|e| {
                Error::other(
                    ErrorKind::Internal,
                    format!("s3://{}/{}: unreadable claim", self.bucket, meta.key),
                    Some(Box::new(e)),
                )
            })?;
            out.push(Claim {
                key: meta.key.clone(),
                tag: tag.to_string(),
                output,
            });
        }
        Ok(out)
    }

    /// Remove each output in `outputs` that `keep` does not list; deleting
    /// what is already gone is not an error. Returns how many were removed.
    /// (A `Vec` rather than an iterator: an iterator of closures held across
    /// the awaits would make callers' futures not provably `Send`.)
    pub async fn remove(
        &self,
        outputs: Vec<&OutputRef>,
        keep: &BTreeSet<OutputRef>,
    ) -> Result<usize> {
        let mut removed = BTreeSet::new();
        for o in outputs {
            if keep.contains(o) || removed.contains(o) {
                continue;
            }
            self.store.delete(&o.bucket, &o.key).await?;
            removed.insert(o.clone());
        }
        Ok(removed.len())
    }

    /// Drop the claims whose outputs a committed manifest now lists. Claims
    /// of other versions are kept: a writer of that version may still be in
    /// flight, and its own cleanup finds its outputs through them.
    pub async fn drop_claims(
        &self,
        claims: &[Claim],
        committed: &BTreeSet<OutputRef>,
    ) -> Result<()> {
        for c in claims.iter().filter(|c| committed.contains(&c.output)) {
            self.store.delete(&self.bucket, &c.key).await?;
        }
        Ok(())
    }
}
