//! The ingest stage: validate landed CSV / JSON Lines files (optionally
//! gzip) against their dataset's contract, write good rows as partitioned
//! zstd Parquet with record ids and lineage columns, quarantine bad rows with
//! their line, raw text and reasons, and send unusable files to the DLQ.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use sluice::contract::{Contract, Registry};
use sluice::spool::OutputSet;
use sluice::{Counts, Error, ErrorKind, ObjectContext, Stage};
use tokio_util::io::SyncIoBridge;

mod columns;
mod json_row;
pub mod pipeline;
mod records;

use pipeline::{Format, Msg, Pipeline};

/// Content type of Parquet outputs.
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// The ingest stage.
#[derive(Debug, Clone)]
pub struct Ingest {
    contracts: BTreeMap<String, Arc<Contract>>,
    threads: usize,
    /// Set by [`Ingest::with_memory_budget`]; else the configuration's.
    memory_budget: Option<usize>,
}

impl Ingest {
    /// A stage that knows the datasets of `registry`.
    pub fn new(registry: &Registry) -> Self {
        Ingest {
            contracts: registry
                .names()
                .filter_map(|n| registry.get(n).map(|c| (n.to_string(), c.clone())))
                .collect(),
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            memory_budget: None,
        }
    }

    /// Hold about `bytes` per file, shared out as [`MEMORY_BUDGET`] says
    /// (instead of `SLUICE_MEMORY_BUDGET_BYTES`).
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Use at most `threads` threads per file (at least one). The default is
    /// the cores this process may run on: a Lambda of more than 1,769 MB has
    /// two or more vCPUs, and parsing and Parquet encoding then overlap.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    fn contract_for(&self, ctx: &ObjectContext) -> sluice::Result<Arc<Contract>> {
        let rel = ctx
            .object
            .key
            .strip_prefix(&ctx.config.input.prefix)
            .unwrap_or(&ctx.object.key);
        let dataset = rel.split('/').next().unwrap_or_default();
        self.contracts.get(dataset).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.contracts.keys().map(String::as_str).collect();
            Error::invalid_input(
                ctx.location(),
                format!("no contract for dataset {dataset:?} (keys are <input>/<dataset>/...; known: {})", known.join(", ")),
            )
        })
    }
}

/// The memory one file's ingest may hold (`SLUICE_MEMORY_BUDGET_BYTES`), by
/// default: half for validated
/// rows waiting to be encoded as row groups, a quarter for encoded bytes not
/// yet sent (all of the file's outputs together: past it, the output holding
/// the most is spilled to the ephemeral disk, [`OutputSet`]), and a quarter
/// for what is in between (the row groups on their way, the part being
/// sent). On S3 each output sends whole parts of at least 5 MiB; without the
/// shared share, a file spanning 365 daily partitions would hold up to a
/// part per partition.
pub const MEMORY_BUDGET: usize = sluice::config::DEFAULT_MEMORY_BUDGET_BYTES;

#[async_trait]
impl Stage for Ingest {
    fn name(&self) -> &str {
        "ingest"
    }

    async fn process(&self, ctx: &mut ObjectContext) -> sluice::Result<Counts> {
        let uri = ctx.location();
        let contract = self.contract_for(ctx)?;
        let (format, named_gz) = Format::of_key(&ctx.object.key).ok_or_else(|| {
            Error::invalid_input(
                &uri,
                "unknown format (expected .csv, .jsonl, .ndjson or .json, optionally .gz, or .parquet)",
            )
        })?;
        let size = ctx.input.size;
        if size == 0 {
            return Err(Error::invalid_input(&uri, "empty file"));
        }
        if size > ctx.config.max_object_bytes {
            return Err(Error::invalid_input(
                &uri,
                format!(
                    "object of {size} bytes exceeds the limit of {} bytes",
                    ctx.config.max_object_bytes
                ),
            ));
        }
        let budget = self.memory_budget.unwrap_or(ctx.config.memory_budget_bytes);
        // Per version: two versions of one input never share an output key.
        let id = ctx.lineage.source.output_id();
        let pipeline = Pipeline {
            contract: contract.clone(),
            source_uri: uri.clone(),
            record_seed: format!(
                "{}\u{1f}{}",
                uri,
                ctx.lineage.source.etag.as_deref().unwrap_or("")
            ),
            format,
            named_gz,
            object_size: size,
            max_ratio: ctx.config.max_decompression_ratio,
            max_record_bytes: ctx.config.max_record_bytes,
            file_name: format!("{id}.parquet"),
            compression: ctx.config.parquet_compression,
            threads: self.threads,
            pending_budget: budget / 2,
        };
        let input = ctx.open_input().await?;
        let reader = SyncIoBridge::new(input.into_async_read());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(4);
        let job = tokio::task::spawn_blocking(move || pipeline.run(reader, tx));

        let out = ctx.config.output.clone();
        let q = ctx.config.quarantine.clone();
        let quarantine_key = format!("{}{}/{id}.jsonl", q.prefix, contract.name);
        let mut outputs = OutputSet::new(budget / 4);
        let mut upload_err = None;
        while let Some(msg) = rx.recv().await {
            let res = match msg {
                Msg::Data { key, bytes, last } => {
                    let full = format!("{}{key}", out.prefix);
                    let r = outputs.write(ctx, &out.bucket, &full, bytes, PARQUET).await;
                    match r {
                        Ok(()) if last => outputs.complete(&full).await,
                        other => other,
                    }
                }
                Msg::Quarantine(bytes) => {
                    outputs
                        .write(
                            ctx,
                            &q.bucket,
                            &quarantine_key,
                            bytes,
                            "application/x-ndjson",
                        )
                        .await
                }
            };
            if let Err(e) = res {
                upload_err = Some(e);
                break;
            }
        }
        drop(rx);
        let result = job.await.map_err(|e| {
            Error::other(
                ErrorKind::Internal,
                format!("{uri}: ingest task failed: {e}"),
                None,
            )
        });
        let stats = match (upload_err, result) {
            (Some(e), _) | (None, Err(e)) | (None, Ok(Err(e))) => {
                outputs.abort_all().await;
                return Err(e);
            }
            (None, Ok(Ok(stats))) => stats,
        };
        outputs.complete(&quarantine_key).await?;
        if outputs.spilled() > 0 || stats.spilled_rows > 0 {
            tracing::info!(
                spilled_rows = stats.spilled_rows,
                spilled_output_bytes = outputs.spilled(),
                peak_output_bytes_held = outputs.peak(),
                memory_budget_bytes = budget,
                "rows and output past the memory budget went to the ephemeral disk"
            );
        }
        Ok(Counts {
            rows_in: stats.rows_in,
            rows_out: stats.rows_out,
            rows_quarantined: stats.rows_quarantined,
            bytes_in: size,
            bytes_out: stats.bytes_out,
        })
    }
}
