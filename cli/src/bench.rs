//! `sluice bench-ingest FILE`: run the ingest stage once on a file against a
//! scratch directory and print throughput, CPU time, peak RSS and output size.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use sluice::runner::ObjectOutcome;
use sluice::trigger::{s3_notification, ObjectRef};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The input file (CSV or JSONL, optionally gzip).
    pub file: PathBuf,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "bench-data/scratch")]
    pub scratch: PathBuf,
    /// Read and write through S3 instead of the scratch directory (the AWS
    /// configuration chain: `AWS_ENDPOINT_URL` for LocalStack). The buckets
    /// `landing` and `validated` are created if missing and emptied; the
    /// file is uploaded first, and the peak RSS is reset before ingest
    /// starts, so it is ingest's alone.
    #[arg(long)]
    pub s3: bool,
}

/// Empty (creating if missing) the buckets ingest reads and writes, and
/// upload `file` as `key`: the S3 store, ready for ingest.
#[cfg(feature = "aws")]
async fn s3_setup(
    file: &std::path::Path,
    key: &str,
) -> anyhow::Result<std::sync::Arc<dyn sluice::store::ObjectStore>> {
    use sluice::store::{ObjectStore, S3Store};
    let conf = sluice::aws::load_sdk_config().await;
    let client = sluice::aws::s3_client(&conf, sluice::aws::custom_endpoint_configured());
    let store = S3Store::with_client(client.clone());
    for bucket in ["landing", "validated"] {
        if store.list(bucket, "").await.is_err() {
            client
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .with_context(|| format!("creating bucket {bucket}"))?;
        }
        for o in store.list(bucket, "").await? {
            store.delete(bucket, &o.key).await?;
        }
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
        .await
        .with_context(|| format!("{}", file.display()))?;
    client
        .put_object()
        .bucket("landing")
        .key(key)
        .body(body)
        .send()
        .await
        .with_context(|| format!("uploading s3://landing/{key}"))?;
    Ok(std::sync::Arc::new(store))
}

#[cfg(not(feature = "aws"))]
async fn s3_setup(
    _file: &std::path::Path,
    _key: &str,
) -> anyhow::Result<std::sync::Arc<dyn sluice::store::ObjectStore>> {
    anyhow::bail!("--s3: {}", crate::target::WITHOUT_AWS)
}

/// Peak resident set size (VmHWM) and CPU seconds (user+sys) of this process.
fn usage() -> (u64, f64) {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                after.get(11)?.parse::<f64>().ok()? + after.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    (hwm * 1024, cpu)
}

/// Run the benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("file name")?
        .to_string();
    let _ = std::fs::remove_dir_all(&args.scratch);
    let landing = args.scratch.join("landing/raw/trips");
    std::fs::create_dir_all(&landing)?;
    let abs = args
        .file
        .canonicalize()
        .with_context(|| format!("{}", args.file.display()))?;
    // A hard link (or copy) puts the file in the landing "bucket" without rewriting it.
    if std::fs::hard_link(&abs, landing.join(&name)).is_err() {
        std::fs::copy(&abs, landing.join(&name))?;
    }
    let size = std::fs::metadata(&abs)?.len();
    // The runtime a stage binary gets on a one-vCPU Lambda: multi-thread
    // with one worker; parsing runs on one blocking thread. (Capping blocking
    // threads at one deadlocks: the local store's file I/O needs one too.)
    // CPU time is reported next to wall time to show the per-core figure.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let key = format!("raw/trips/{name}");
    let s3 = if args.s3 {
        let store = rt.block_on(s3_setup(&abs, &key))?;
        // "5" resets VmHWM to the current RSS: the peak is ingest's alone.
        std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
        Some(store)
    } else {
        None
    };
    let (_, cpu0) = usage();
    let started = Instant::now();
    let report = rt.block_on(async {
        let pipeline = match s3 {
            Some(store) => crate::local::LocalPipeline::open_on(&args.scratch, store)?,
            None => crate::local::LocalPipeline::open(&args.scratch)?,
        };
        let obj = ObjectRef::new("landing", key.clone());
        pipeline.invoke("ingest", &s3_notification(&[obj])).await
    })?;
    let wall = started.elapsed().as_secs_f64();
    let (rss, cpu1) = usage();
    let cpu = cpu1 - cpu0;
    let counts = match &report.outcomes.first().map(|(_, o)| o) {
        Some(ObjectOutcome::Processed { counts, .. }) => *counts,
        other => anyhow::bail!("ingest did not process {name}: {other:?}"),
    };
    let mb = size as f64 / 1e6;
    println!(
        "{name:<28} {:>8.1} MB  {:>7.1} MB/s  {:>9.0} rows/s  cpu {:>6.1} MB/s  peak RSS {:>5.0} MB  out {:>6.1} MB  rows {} ({} quarantined)",
        mb,
        mb / wall,
        counts.rows_in as f64 / wall,
        mb / cpu.max(1e-9),
        rss as f64 / 1e6,
        counts.bytes_out as f64 / 1e6,
        counts.rows_in,
        counts.rows_quarantined
    );
    let _ = std::fs::remove_dir_all(&args.scratch);
    Ok(ExitCode::SUCCESS)
}
