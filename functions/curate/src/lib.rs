//! The curate stage: turns validated Parquet into curated Parquet as each
//! contract's `[curate]` section declares (see [`config`]): duplicate record
//! ids are dropped (and quarantined, so counts balance), derived columns are
//! computed, and reference tables are joined.
//!
//! - Input: `<input prefix><dataset>/v<major>/dt=.../<id>.parquet` in the
//!   validated bucket. The dataset is the first key segment after the input
//!   prefix; an unknown dataset is a permanent failure (DLQ).
//! - Output: the same relative key under the output location, zstd Parquet
//!   whose columns are the input's, then the derived ones, then the joined ones.
//! - Quarantine: `<quarantine prefix><dataset>/<id>.jsonl`, one JSON line per
//!   duplicate (`record_id`, `line`, `source`, `reasons`), only when there are
//!   duplicates.
//!
//! Memory is bounded: the object is spooled to a temporary file (the store
//! has no range reads), read back batch by batch on a blocking thread, and
//! the encoded Parquet leaves in row-group-sized chunks through a bounded
//! channel into a multipart upload. The one structure that grows with the
//! file is the dedup seen-set (~32 bytes per row of one landed file).
//!
//! Output is a pure function of the input bytes and the contracts: no clock,
//! no randomness, fixed writer properties, so replays and the ghost diff
//! compare byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use sluice::contract::Registry;
use sluice::idempotent::StreamedOutput;
use sluice::store::Metadata;
use sluice::{Counts, Error, ObjectContext, Result, Stage};
use tokio::sync::mpsc;

pub mod config;
pub mod reference;
mod transform;

pub use config::{CurationPlan, DedupOn, Derived, DerivedExpr, DurationUnit, Join, JoinColumn};
pub use reference::ReferenceTable;
pub use transform::{writer_properties, writer_properties_for};

/// Content type of curated objects.
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";
/// Content type of quarantine files.
pub const JSONL_CONTENT_TYPE: &str = "application/x-ndjson";

/// The curate stage, with every contract's `[curate]` section validated and
/// its reference tables loaded (once, at cold start).
#[derive(Debug)]
pub struct Curate {
    plans: BTreeMap<String, Arc<CurationPlan>>,
}

impl Curate {
    /// Validate every contract's `[curate]` section and load the reference
    /// tables they name from the embedded `contracts/reference/*.csv`.
    pub fn new(registry: &Registry) -> Result<Self> {
        Self::with_references(registry, |name| {
            Registry::reference(name).map(str::to_string)
        })
    }

    /// Like [`Curate::new`], with reference tables (CSV text by name) from
    /// `lookup` instead of the embedded ones.
    pub fn with_references(
        registry: &Registry,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Ok(Curate {
            plans: config::plans(registry, &lookup)?,
        })
    }

    /// The plan for a dataset.
    pub fn plan(&self, dataset: &str) -> Option<&CurationPlan> {
        self.plans.get(dataset).map(Arc::as_ref)
    }
}

/// Where the quarantine file of an input lives.
fn quarantine_key(prefix: &str, dataset: &str, object_id: &str) -> String {
    format!("{prefix}{dataset}/{object_id}.jsonl")
}

/// An output that may be skipped (already written for this input version).
async fn write_to(out: &mut Option<StreamedOutput>, data: bytes::Bytes) -> Result<()> {
    match out {
        Some(o) => o.write(data).await,
        None => Ok(()),
    }
}

async fn abort(out: Option<StreamedOutput>) {
    if let Some(o) = out {
        if let Err(e) = o.abort().await {
            tracing::warn!(error = %e, "could not abort an unfinished output");
        }
    }
}

#[async_trait]
impl Stage for Curate {
    fn name(&self) -> &str {
        "curate"
    }

    fn accepts(&self, key: &str) -> bool {
        key.ends_with(".parquet")
    }

    async fn process(&self, ctx: &mut ObjectContext) -> Result<Counts> {
        let location = ctx.location();
        let relative = ctx
            .object
            .key
            .strip_prefix(ctx.config.input.prefix.as_str())
            .unwrap_or(&ctx.object.key)
            .to_string();
        let dataset = relative.split('/').next().unwrap_or_default().to_string();
        let plan = self.plans.get(&dataset).cloned().ok_or_else(|| {
            Error::invalid_input(
                &location,
                format!(
                    "unknown dataset {dataset:?} (the first key segment); known: {}",
                    self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let (file, bytes_in) = ctx.spool_input().await?;

        let out = ctx.config.output.clone();
        // A rebuild (`--reprocess`) writes beside, never over, what it replaces.
        let source = &ctx.lineage.source;
        let out_key = format!("{}{}", out.prefix, source.generation_key(&relative));
        let q = ctx.config.quarantine.clone();
        let q_id = format!("{}{}", source.object_id(), source.generation_suffix());
        let q_key = quarantine_key(&q.prefix, &dataset, &q_id);
        let mut output = ctx
            .begin_output(
                &out.bucket,
                &out_key,
                Some(PARQUET_CONTENT_TYPE),
                &Metadata::new(),
            )
            .await?;
        if output.is_none() {
            tracing::info!(key = %out_key, "curated output already written for this input version; recounting only");
        }

        let (tx, mut rx) = mpsc::channel(4);
        let task = {
            let location = location.clone();
            let compression = ctx.config.parquet_compression;
            tokio::task::spawn_blocking(move || {
                transform::run(file, &location, &plan, compression, tx)
            })
        };
        let mut quarantine: Option<Option<StreamedOutput>> = None;
        let mut bytes_out = 0u64;
        let pumped: Result<()> = async {
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    transform::Chunk::Output(data) => {
                        bytes_out += data.len() as u64;
                        write_to(&mut output, data).await?;
                    }
                    transform::Chunk::Quarantine(data) => {
                        if quarantine.is_none() {
                            quarantine = Some(
                                ctx.begin_output(
                                    &q.bucket,
                                    &q_key,
                                    Some(JSONL_CONTENT_TYPE),
                                    &Metadata::new(),
                                )
                                .await?,
                            );
                        }
                        if let Some(qo) = quarantine.as_mut() {
                            write_to(qo, data).await?;
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        // If the pump failed, closing the channel stops the blocking side.
        drop(rx);
        let ran = task.await.map_err(|e| Error::from_join(&location, e));
        let stats = match (pumped, ran) {
            (Err(e), _) | (Ok(()), Err(e)) | (Ok(()), Ok(Err(e))) => {
                abort(output).await;
                abort(quarantine.flatten()).await;
                return Err(e);
            }
            (Ok(()), Ok(Ok(stats))) => stats,
        };
        // Quarantine first: once the curated object appears (and triggers the
        // next stage), everything about this input is in place.
        if let Some(qo) = quarantine.flatten() {
            if let Err(e) = qo.complete().await {
                abort(output).await;
                return Err(e);
            }
        }
        if let Some(o) = output {
            o.complete().await?;
        }
        if stats.duplicates > 0 {
            tracing::warn!(duplicates = stats.duplicates, key = %q_key, "duplicate record ids quarantined");
        }
        Ok(Counts {
            rows_in: stats.rows_in,
            rows_out: stats.rows_out,
            rows_quarantined: stats.duplicates,
            bytes_in,
            bytes_out,
        })
    }
}
