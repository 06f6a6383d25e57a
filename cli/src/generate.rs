//! `sluice generate`: write a deterministic sample dataset to a file, for
//! demos and benchmarks. The work is done by [`sluice::sample`]; this module
//! picks the format from the file name, compresses, writes atomically and
//! reports.

use std::fs::{self, File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use flate2::write::GzEncoder;
use flate2::Compression;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice::sample::{write_trips, Format, GenStats, NaiveDate, TripsOptions};

/// Datasets `generate` knows.
const DATASETS: [&str; 1] = ["trips"];

/// Arguments of `sluice generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Dataset (only "trips" today).
    pub dataset: String,
    /// Data rows to write.
    #[arg(long)]
    pub rows: u64,
    /// Random seed: the same arguments always give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of rows (0..=1) with exactly one defect the contract rejects.
    #[arg(long, default_value_t = 0.0)]
    pub bad_ratio: f64,
    /// Share of good rows (0..=1) that repeat a recent row exactly.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_ratio: f64,
    /// First pickup day.
    #[arg(long, default_value = "2024-01-01")]
    pub start: NaiveDate,
    /// Pickups are spread over this many days.
    #[arg(long, default_value_t = 31)]
    pub days: u32,
    /// Output file: .csv, .jsonl or .json, optionally followed by .gz.
    #[arg(long)]
    pub out: PathBuf,
}

/// Show a progress bar from this many rows on (and only on a terminal).
const PROGRESS_MIN_ROWS: u64 = 200_000;

/// Generate the dataset into `args.out`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    if !DATASETS.contains(&args.dataset.as_str()) {
        bail!(
            "unknown dataset {:?} (known: {})",
            args.dataset,
            DATASETS.join(", ")
        );
    }
    for (name, r) in [
        ("--bad-ratio", args.bad_ratio),
        ("--duplicate-ratio", args.duplicate_ratio),
    ] {
        if !(0.0..=1.0).contains(&r) {
            bail!("{name} {r} is not within 0..=1");
        }
    }
    let (format, gzip) = format_of(&args.out)?;
    let opts = TripsOptions {
        rows: args.rows,
        seed: args.seed,
        bad_ratio: args.bad_ratio,
        format,
        start: args.start,
        days: args.days,
        duplicate_ratio: args.duplicate_ratio,
    };
    opts.validate()
        .map_err(|e| anyhow::anyhow!("--start {} --days {}: {e}", args.start, args.days))?;

    let bar = if args.rows >= PROGRESS_MIN_ROWS && std::io::stderr().is_terminal() {
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, eta {eta})")
            .context("progress bar template")?;
        ProgressBar::with_draw_target(Some(args.rows), ProgressDrawTarget::stderr())
            .with_style(style)
    } else {
        ProgressBar::hidden()
    };

    let (tmp, file) = TempFile::create(&args.out)?;
    let started = Instant::now();
    let result = write_file(file, &opts, gzip, &bar);
    bar.finish_and_clear();
    let stats = result.with_context(|| format!("writing {}", args.out.display()))?;
    tmp.persist(&args.out)?;
    let secs = started.elapsed().as_secs_f64();

    let on_disk = fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    eprintln!("{}", summary(&args.out, &stats, on_disk, secs));
    Ok(())
}

/// The format and compression a file name asks for.
fn format_of(path: &Path) -> anyhow::Result<(Format, bool)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_ascii_lowercase)
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    let (stem, gzip) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    let format = if stem.ends_with(".csv") {
        Format::Csv
    } else if stem.ends_with(".jsonl") || stem.ends_with(".json") {
        Format::Jsonl
    } else {
        bail!(
            "cannot tell the format of {}: the name must end in .csv, .jsonl or .json, optionally followed by .gz",
            path.display()
        );
    };
    Ok((format, gzip))
}

fn write_file(
    file: File,
    opts: &TripsOptions,
    gzip: bool,
    bar: &ProgressBar,
) -> anyhow::Result<GenStats> {
    let mut progress = |rows: u64| bar.set_position(rows);
    let (stats, file) = if gzip {
        let mut enc = GzEncoder::new(file, Compression::default());
        let stats = write_trips(&mut enc, opts, &mut progress)?;
        (stats, enc.finish()?)
    } else {
        let mut file = file;
        (write_trips(&mut file, opts, &mut progress)?, file)
    };
    file.sync_all()?;
    Ok(stats)
}

fn summary(out: &Path, s: &GenStats, on_disk: u64, secs: f64) -> String {
    let mb = s.bytes as f64 / 1e6;
    let kinds = if s.bad_by_kind.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = s
            .bad_by_kind
            .iter()
            .map(|(k, n)| format!("{}={n}", k.name()))
            .collect();
        format!(" [{}]", parts.join(" "))
    };
    let disk = if on_disk != s.bytes {
        format!(", {:.1} MB on disk", on_disk as f64 / 1e6)
    } else {
        String::new()
    };
    format!(
        "generated {}: {} rows, {} good, {} bad{kinds}, {} duplicates, {mb:.1} MB{disk}, {secs:.2} s, {:.1} MB/s",
        out.display(),
        s.rows,
        s.good,
        s.bad,
        s.duplicates,
        if secs > 0.0 { mb / secs } else { 0.0 }
    )
}

/// A temporary file next to the destination, removed unless persisted, so
/// readers never see a half-written output.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn create(dest: &Path) -> anyhow::Result<(Self, File)> {
        let name = dest
            .file_name()
            .with_context(|| format!("{} has no file name", dest.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let path = dest.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((TempFile { path, keep: false }, file))
    }

    fn persist(mut self, dest: &Path) -> anyhow::Result<()> {
        fs::rename(&self.path, dest)
            .with_context(|| format!("renaming {} to {}", self.path.display(), dest.display()))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_the_file_name() {
        let f = |p: &str| format_of(Path::new(p)).map_err(|e| e.to_string());
        assert_eq!(f("/tmp/x.csv").unwrap(), (Format::Csv, false));
        assert_eq!(f("x.CSV.gz").unwrap(), (Format::Csv, true));
        assert_eq!(f("x.jsonl").unwrap(), (Format::Jsonl, false));
        assert_eq!(f("x.json.gz").unwrap(), (Format::Jsonl, true));
        assert!(f("x.parquet").unwrap_err().contains("x.parquet"));
        assert!(f("x.gz").unwrap_err().contains(".csv, .jsonl or .json"));
    }

    fn args(dataset: &str, out: PathBuf) -> GenerateArgs {
        GenerateArgs {
            dataset: dataset.into(),
            rows: 1000,
            seed: 7,
            bad_ratio: 0.1,
            duplicate_ratio: 0.0,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            days: 31,
            out,
        }
    }

    #[test]
    fn writes_plain_and_gzip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        run(&args("trips", csv.clone())).unwrap();
        let plain = fs::read(&csv).unwrap();
        assert!(plain.starts_with(b"VendorID,"));
        let gz = dir.path().join("t.csv.gz");
        run(&args("trips", gz.clone())).unwrap();
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(File::open(&gz).unwrap()),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, plain, "same bytes, compressed");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn rejects_unknown_datasets_formats_and_ratios() {
        let dir = tempfile::tempdir().unwrap();
        let err = |a: GenerateArgs| run(&a).unwrap_err().to_string();
        assert!(err(args("zones", dir.path().join("z.csv"))).contains("unknown dataset \"zones\""));
        assert!(err(args("trips", dir.path().join("t.parquet"))).contains("t.parquet"));
        let mut a = args("trips", dir.path().join("t.csv"));
        a.bad_ratio = 1.5;
        assert!(err(a).contains("--bad-ratio 1.5"));
        let mut a = args("trips", dir.path().join("t.csv"));
        a.duplicate_ratio = -1.0;
        assert!(err(a).contains("--duplicate-ratio"));
        let mut a = args("trips", dir.path().join("t.csv"));
        a.start = NaiveDate::from_ymd_opt(2040, 1, 1).unwrap();
        assert!(err(a).contains("--start 2040-01-01 --days 31: pickups from 2040-01-01"));
        assert!(err(args("trips", dir.path().join("missing/t.csv"))).contains("creating"));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
}
