//! `sluice ghost diff`: compare a ghost's outputs with prod's for the same
//! inputs. Output keys are deterministic functions of input identity, so
//! files are matched by key relative to each side's prefix; inside Parquet
//! files, records are matched by record id. The report (text or Markdown)
//! gives schema changes, row counts, column statistics of both sides,
//! differing records and differing JSON paths; the exit code says whether
//! the ghost matches (0), differs beyond the threshold (1), or could not be
//! compared (2).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use sluice::config::Location;

use crate::target::{Target, TargetArgs};

mod json_diff;
mod parquet_diff;
mod place;
mod render;

use parquet_diff::{ColumnStats, RecordCounts, Sample, SchemaChange};
use place::Place;

/// The ghost matches prod (or differs within `--threshold`).
pub const EXIT_MATCH: u8 = 0;
/// The ghost differs from prod beyond `--threshold`.
pub const EXIT_DIFFER: u8 = 1;
/// The comparison could not be made (bad location, unreadable object).
pub const EXIT_ERROR: u8 = 2;

const AFTER_HELP: &str = "\
Locations (--prod, --ghost):
  s3://BUCKET/PREFIX/   read through the target's object store: S3 with
                        --deployment; with --local DIR, bucket BUCKET is the
                        folder DIR/BUCKET (e.g. s3://curated/)
  PATH or dir:PATH      any other value is a directory on this machine, read
                        as is (e.g. another pipeline's run/curated); nothing
                        is written under it

Output files are matched by key relative to each side's location; keys with
a segment starting with `_` or `.` (_sluice/, _quarantine/) are bookkeeping
and ignored. Parquet files (*.parquet) are compared by schema, row counts,
column statistics and records matched by --record-id; JSON files (*.json,
the profiles) path by path; anything else byte for byte.

What counts as differing:
  - a schema change, or an output only the ghost has: always;
  - differing records (changed, only in prod, only in ghost) as a fraction of
    the records compared, or differing documents (JSON and other files) as a
    fraction of those compared: when above --threshold;
  - a prod output without a ghost counterpart: only with --require-complete
    (a ghost deployed later has not seen older inputs; they are listed).

Exit status:
  0  the ghost matches prod, or differs within --threshold
  1  the ghost differs from prod beyond --threshold
  2  the comparison could not be made: a location that does not exist or
     holds no prod outputs, an object that cannot be read or parsed, bad
     arguments (the report, if any, lists the objects and reasons)";

/// `sluice ghost ...`
#[derive(Debug, clap::Subcommand)]
pub enum GhostCommand {
    /// Compare a ghost's outputs with prod's for the same inputs.
    ///
    /// Either a stage of a deployment (--deployment FILE --stage curate: prod's
    /// and the ghost's output locations come from its outputs), or two
    /// explicit locations (--prod LOC --ghost LOC).
    #[command(after_help = AFTER_HELP)]
    Diff(DiffArgs),
}

/// Arguments of `sluice ghost diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Compare this stage's prod output with its ghost's output (needs
    /// --deployment with a ghost of that stage).
    #[arg(
        long,
        value_name = "STAGE",
        conflicts_with_all = ["prod", "ghost"],
        required_unless_present_all = ["prod", "ghost"]
    )]
    stage: Option<String>,
    /// Prod's outputs: s3://BUCKET/PREFIX/, or a directory (see below).
    #[arg(long, value_name = "LOC", requires = "ghost")]
    prod: Option<String>,
    /// The ghost's outputs: s3://BUCKET/PREFIX/, or a directory (see below).
    #[arg(long, value_name = "LOC", requires = "prod")]
    ghost: Option<String>,
    /// Write Markdown (for a pull-request comment) instead of text.
    #[arg(long)]
    markdown: bool,
    /// Write the report to FILE instead of stdout; stdout then gets only the
    /// verdict line.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Fraction of compared records (and of compared documents) allowed to
    /// differ: 0 fails on any difference, 0.01 allows 1%.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = parse_fraction)]
    threshold: f64,
    /// How many differing records (and JSON paths) to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    sample: usize,
    /// Fail when a prod output has no ghost counterpart.
    #[arg(long)]
    require_complete: bool,
    /// The column that identifies a record in Parquet outputs. Files without
    /// it are matched row by row.
    #[arg(long, value_name = "COLUMN", default_value = "_record_id")]
    record_id: String,
    /// Leave a Parquet column, or a JSON path and everything below it
    /// (`$.checks`), out of the comparison; repeatable. For an intended change,
    /// or a field that differs by design. `$.object.bucket` (the bucket a
    /// profile read, the ghost's own when the stage before is ghosted too) is
    /// always left out.
    #[arg(long, value_name = "COLUMN|PATH")]
    ignore: Vec<String>,
}

/// JSON paths never compared: where a profile says which bucket it read.
const ALWAYS_IGNORED: [&str; 1] = ["$.object.bucket"];

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (a fraction: 0.01 is 1%)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "{s} is not a fraction between 0 and 1 (0.01 is 1%)"
        ));
    }
    Ok(v)
}

/// What the comparison is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allowed fraction of differing records / documents.
    pub threshold: f64,
    /// Samples to keep.
    pub sample: usize,
    /// Whether missing ghost outputs fail.
    pub require_complete: bool,
    /// The record id column.
    pub record_id: String,
    /// Columns and JSON paths left out.
    pub ignore: Vec<String>,
}

/// Run `sluice ghost diff`. Problems that stop the comparison are reported
/// here and exit with [`EXIT_ERROR`], distinct from "differs" ([`EXIT_DIFFER`]).
pub async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    match run(&args).await {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("sluice ghost diff: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn run(args: &DiffArgs) -> anyhow::Result<u8> {
    let (prod, ghost) = resolve(args).await?;
    let opts = Options {
        threshold: args.threshold,
        sample: args.sample,
        require_complete: args.require_complete,
        record_id: args.record_id.clone(),
        ignore: args
            .ignore
            .iter()
            .cloned()
            .chain(ALWAYS_IGNORED.map(String::from))
            .collect(),
    };
    let report = compare(&prod, &ghost, &opts).await?;
    let verdict = report.verdict(&opts);
    let body = if args.markdown {
        render::markdown(&report, &opts, &verdict)
    } else {
        render::text(&report, &opts, &verdict)
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &body)
                .with_context(|| format!("writing the report to {}", path.display()))?;
            println!("{} (report: {})", verdict.line, path.display());
        }
        None => print!("{body}"),
    }
    Ok(verdict.code)
}

/// The two sides the arguments name.
async fn resolve(args: &DiffArgs) -> anyhow::Result<(Place, Place)> {
    let mut target: Option<Target> = None;
    let (prod, ghost) = if let Some(stage) = &args.stage {
        let t = open_target(&args.target).await?;
        let prod = t.stage(stage)?.output;
        let ghost = t.ghost_stage(stage)?.output;
        let (p, g) = (store_place(&t, prod), store_place(&t, ghost));
        target = Some(t);
        (p, g)
    } else {
        let (Some(p), Some(g)) = (&args.prod, &args.ghost) else {
            bail!("say what to compare: --stage STAGE, or --prod LOC and --ghost LOC");
        };
        let p = place(&args.target, &mut target, "--prod", p).await?;
        let g = place(&args.target, &mut target, "--ghost", g).await?;
        (p, g)
    };
    drop(target);
    if prod.overlaps(&ghost) {
        bail!(
            "prod {} and ghost {} overlap: one would list the other's outputs",
            prod.describe(),
            ghost.describe()
        );
    }
    Ok((prod, ghost))
}

async fn place(
    args: &TargetArgs,
    target: &mut Option<Target>,
    what: &str,
    value: &str,
) -> anyhow::Result<Place> {
    if value.starts_with("s3://") {
        if target.is_none() {
            let t = open_target(args)
                .await
                .with_context(|| format!("{what} {value} is read through a target"))?;
            *target = Some(t);
        }
        let t = target.as_ref().expect("opened above");
        let loc = Location::parse(what, value)?;
        Ok(store_place(t, loc))
    } else {
        let path = value.strip_prefix("dir:").unwrap_or(value);
        Place::dir(path.as_ref()).with_context(|| format!("{what} {value}"))
    }
}

/// Open the target; a diff reads, so a local directory must already exist
/// (opening one would create it).
async fn open_target(args: &TargetArgs) -> anyhow::Result<Target> {
    if let Some(dir) = &args.local {
        if !dir.is_dir() {
            bail!("--local {}: no such directory", dir.display());
        }
    }
    Target::open(args).await
}

fn store_place(t: &Target, loc: Location) -> Place {
    let local_bucket_dir = match t {
        Target::Local(l) => Some(l.pipeline.dir().join(&loc.bucket)),
        #[cfg(feature = "aws")]
        Target::Aws(_) => None,
    };
    Place::Store {
        store: t.store(),
        loc,
        local_bucket_dir,
    }
}

/// Shorten a value for a report cell.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let head: String = one_line.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// How files of a kind compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parquet,
    Json,
    Other,
}

fn kind_of(rel: &str, data: &[u8]) -> Kind {
    if rel.ends_with(".parquet") || (data.starts_with(b"PAR1") && data.ends_with(b"PAR1")) {
        Kind::Parquet
    } else if rel.ends_with(".json") {
        Kind::Json
    } else {
        Kind::Other
    }
}

/// Rows of one compared Parquet file.
#[derive(Debug, Clone)]
pub struct FileRows {
    /// Key relative to the locations.
    pub file: String,
    /// Prod's rows.
    pub prod: u64,
    /// The ghost's rows.
    pub ghost: u64,
}

/// Everything about one table (the key's folders less `k=v` partitions,
/// e.g. `trips/v1`), over all its compared files.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    /// Files compared.
    pub files: usize,
    /// Prod's rows.
    pub prod_rows: u64,
    /// The ghost's rows.
    pub ghost_rows: u64,
    /// Schema changes, with the number of files showing each.
    pub schema_changes: BTreeMap<SchemaChange, usize>,
    /// Column names, prod's order first.
    pub columns: Vec<String>,
    /// Prod's column statistics.
    pub prod: HashMap<String, ColumnStats>,
    /// The ghost's column statistics.
    pub ghost: HashMap<String, ColumnStats>,
    /// Records by outcome.
    pub records: RecordCounts,
    /// Changed records per column.
    pub changed_columns: BTreeMap<String, u64>,
}

/// A differing record, with its file.
#[derive(Debug, Clone)]
pub struct FileSample {
    /// Key relative to the locations.
    pub file: String,
    /// The record.
    pub sample: Sample,
}

/// A differing JSON path (or other file), with its file.
#[derive(Debug, Clone)]
pub struct DocSample {
    /// Key relative to the locations.
    pub file: String,
    /// JSON path, or `(bytes)` for other files.
    pub path: String,
    /// Prod's value.
    pub prod: String,
    /// The ghost's value.
    pub ghost: String,
}

/// The result of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Prod's location.
    pub prod: String,
    /// The ghost's location.
    pub ghost: String,
    /// Output files on prod's side.
    pub prod_files: usize,
    /// Output files on the ghost's side.
    pub ghost_files: usize,
    /// Bookkeeping objects ignored (prod, ghost).
    pub ignored: (usize, usize),
    /// Outputs only prod has.
    pub only_prod: Vec<String>,
    /// Outputs only the ghost has.
    pub only_ghost: Vec<String>,
    /// Files present on both sides.
    pub compared: usize,
    /// Of those, byte-identical.
    pub identical_files: usize,
    /// Parquet files compared.
    pub parquet_files: usize,
    /// Rows of every compared Parquet file.
    pub file_rows: Vec<FileRows>,
    /// Per table.
    pub tables: BTreeMap<String, TableReport>,
    /// Records over every compared Parquet file.
    pub records: RecordCounts,
    /// Parquet files matched by row position (no record id column).
    pub by_position: Vec<String>,
    /// The first differing records.
    pub samples: Vec<FileSample>,
    /// JSON and other documents compared.
    pub docs_compared: usize,
    /// Of those, differing.
    pub docs_differing: usize,
    /// Differing JSON paths in all.
    pub doc_paths: usize,
    /// The first differing paths.
    pub doc_samples: Vec<DocSample>,
    /// Objects that could not be compared, with the reason.
    pub errors: Vec<String>,
}

/// The outcome: exit code, verdict line, and why.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// [`EXIT_MATCH`], [`EXIT_DIFFER`] or [`EXIT_ERROR`].
    pub code: u8,
    /// `✅ ghost matches prod` / `❌ ghost differs from prod: ...`.
    pub line: String,
}

fn fraction(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

/// `0.034%`.
pub(crate) fn percent(f: f64) -> String {
    if f == 0.0 {
        return "0%".into();
    }
    let s = format!("{:.3}", f * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

impl Report {
    /// Judge the report against the options.
    pub fn verdict(&self, opts: &Options) -> Verdict {
        let thr = percent(opts.threshold);
        let mut fails = Vec::new();
        let mut notes = Vec::new();
        let schema: usize = self.tables.values().map(|t| t.schema_changes.len()).sum();
        if schema > 0 {
            let tables: Vec<&str> = self
                .tables
                .iter()
                .filter(|(_, t)| !t.schema_changes.is_empty())
                .map(|(n, _)| n.as_str())
                .collect();
            fails.push(format!(
                "schema changed ({} change{} in {})",
                schema,
                plural(schema as u64),
                tables.join(", ")
            ));
        }
        let r = &self.records;
        let rf = fraction(r.differing(), r.total());
        if r.differing() > 0 {
            let what = format!(
                "{} of {} records differ ({})",
                r.differing(),
                r.total(),
                percent(rf)
            );
            if rf > opts.threshold {
                fails.push(format!("{what}, above the threshold of {thr}"));
            } else {
                notes.push(format!("{what}, within the threshold of {thr}"));
            }
        }
        let df = fraction(self.docs_differing as u64, self.docs_compared as u64);
        if self.docs_differing > 0 {
            let what = format!(
                "{} of {} documents differ ({})",
                self.docs_differing,
                self.docs_compared,
                percent(df)
            );
            if df > opts.threshold {
                fails.push(format!("{what}, above the threshold of {thr}"));
            } else {
                notes.push(format!("{what}, within the threshold of {thr}"));
            }
        }
        if !self.only_ghost.is_empty() {
            fails.push(format!(
                "{} output{} only in the ghost",
                self.only_ghost.len(),
                plural(self.only_ghost.len() as u64)
            ));
        }
        if !self.only_prod.is_empty() {
            let what = format!(
                "{} prod output{} without a ghost counterpart",
                self.only_prod.len(),
                plural(self.only_prod.len() as u64)
            );
            if opts.require_complete {
                fails.push(format!("{what} (--require-complete)"));
            } else {
                notes.push(format!("{what} (not required)"));
            }
        }
        if !self.errors.is_empty() {
            let mut line = format!(
                "❌ ghost diff incomplete: {} object{} could not be compared",
                self.errors.len(),
                plural(self.errors.len() as u64)
            );
            if !fails.is_empty() {
                line.push_str(&format!("; also {}", fails.join("; ")));
            }
            return Verdict {
                code: EXIT_ERROR,
                line,
            };
        }
        if !fails.is_empty() {
            return Verdict {
                code: EXIT_DIFFER,
                line: format!("❌ ghost differs from prod: {}", fails.join("; ")),
            };
        }
        if self.compared == 0 {
            return Verdict {
                code: EXIT_MATCH,
                line: format!(
                    "⚠️ nothing to compare yet: the ghost has none of prod's {} outputs",
                    self.prod_files
                ),
            };
        }
        let mut line = "✅ ghost matches prod".to_string();
        if !notes.is_empty() {
            line.push_str(&format!(": {}", notes.join("; ")));
        }
        Verdict {
            code: EXIT_MATCH,
            line,
        }
    }

    fn add_parquet(&mut self, rel: &str, d: parquet_diff::FileDiff, limit: usize) {
        self.parquet_files += 1;
        self.identical_files += usize::from(d.identical_bytes);
        self.file_rows.push(FileRows {
            file: rel.to_string(),
            prod: d.prod_rows,
            ghost: d.ghost_rows,
        });
        self.records.add(&d.records);
        if !d.by_record_id {
            self.by_position.push(rel.to_string());
        }
        for s in d.samples {
            if self.samples.len() < limit {
                self.samples.push(FileSample {
                    file: rel.to_string(),
                    sample: s,
                });
            }
        }
        let t = self.tables.entry(table_of(rel)).or_default();
        t.files += 1;
        t.prod_rows += d.prod_rows;
        t.ghost_rows += d.ghost_rows;
        t.records.add(&d.records);
        for c in d.schema_changes {
            *t.schema_changes.entry(c).or_default() += 1;
        }
        for (c, n) in d.changed_columns {
            *t.changed_columns.entry(c).or_default() += n;
        }
        for (side, stats) in [(true, d.prod_stats), (false, d.ghost_stats)] {
            for (name, s) in stats {
                if !t.columns.contains(&name) {
                    t.columns.push(name.clone());
                }
                let map = if side { &mut t.prod } else { &mut t.ghost };
                match map.get_mut(&name) {
                    Some(cur) => cur.merge(&s),
                    None => {
                        map.insert(name, s);
                    }
                }
            }
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The table a key belongs to: its folders, less `k=v` partition folders.
fn table_of(rel: &str) -> String {
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    let t: Vec<&str> = parts.into_iter().filter(|p| !p.contains('=')).collect();
    if t.is_empty() {
        "(top level)".into()
    } else {
        t.join("/")
    }
}

/// Compare everything under the two sides.
pub async fn compare(prod: &Place, ghost: &Place, opts: &Options) -> anyhow::Result<Report> {
    let (p, g) = tokio::join!(prod.list(), ghost.list());
    let p = p.context("prod")?;
    let g = g.context("ghost")?;
    if p.files.is_empty() {
        bail!(
            "prod {} holds no outputs{}: nothing to compare (is the location right?)",
            prod.describe(),
            if p.ignored > 0 {
                format!(" (only {} bookkeeping objects)", p.ignored)
            } else {
                String::new()
            }
        );
    }
    let mut report = Report {
        prod: prod.describe(),
        ghost: ghost.describe(),
        prod_files: p.files.len(),
        ghost_files: g.files.len(),
        ignored: (p.ignored, g.ignored),
        only_prod: p
            .files
            .keys()
            .filter(|k| !g.files.contains_key(*k))
            .cloned()
            .collect(),
        only_ghost: g
            .files
            .keys()
            .filter(|k| !p.files.contains_key(*k))
            .cloned()
            .collect(),
        ..Report::default()
    };
    let popts = parquet_diff::Options {
        record_id: opts.record_id.clone(),
        sample: opts.sample,
        ignore: opts.ignore.clone(),
    };
    for rel in p.files.keys().filter(|k| g.files.contains_key(*k)) {
        report.compared += 1;
        let (pn, gn) = (prod.name_of(rel), ghost.name_of(rel));
        let (pb, gb) = tokio::join!(prod.read(rel), ghost.read(rel));
        let (pb, gb) = match (pb, gb) {
            (Ok(p), Ok(g)) => (p, g),
            (p, g) => {
                for e in [p.err(), g.err()].into_iter().flatten() {
                    report.errors.push(format!("{e:#}"));
                }
                continue;
            }
        };
        match kind_of(rel, &pb) {
            Kind::Parquet => {
                let popts = popts.clone();
                let res = tokio::task::spawn_blocking(move || {
                    parquet_diff::compare(&pn, pb, &gn, gb, &popts)
                })
                .await
                .context("comparison task failed")?;
                match res {
                    Ok(d) => report.add_parquet(rel, d, opts.sample),
                    Err(e) => report.errors.push(format!("{e:#}")),
                }
            }
            Kind::Json => {
                report.docs_compared += 1;
                if pb == gb {
                    report.identical_files += 1;
                    continue;
                }
                let parse = |name: &str, b: &[u8]| {
                    serde_json::from_slice::<serde_json::Value>(b)
                        .with_context(|| format!("{name}: not valid JSON"))
                };
                match (parse(&pn, &pb), parse(&gn, &gb)) {
                    (Ok(a), Ok(b)) => {
                        let left = opts.sample.saturating_sub(report.doc_samples.len());
                        let d = json_diff::diff(&a, &b, &opts.ignore, left);
                        if d.count > 0 {
                            report.docs_differing += 1;
                            report.doc_paths += d.count;
                        }
                        report
                            .doc_samples
                            .extend(d.samples.into_iter().map(|s| DocSample {
                                file: rel.clone(),
                                path: s.path,
                                prod: s.prod,
                                ghost: s.ghost,
                            }));
                    }
                    (a, b) => {
                        for e in [a.err(), b.err()].into_iter().flatten() {
                            report.errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
            Kind::Other => {
                report.docs_compared += 1;
                if pb == gb {
                    report.identical_files += 1;
                } else {
                    report.docs_differing += 1;
                    report.doc_paths += 1;
                    if report.doc_samples.len() < opts.sample {
                        report.doc_samples.push(DocSample {
                            file: rel.clone(),
                            path: "(bytes)".into(),
                            prod: format!("{} bytes", pb.len()),
                            ghost: format!("{} bytes", gb.len()),
                        });
                    }
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;

    use super::*;

    fn opts(threshold: f64) -> Options {
        Options {
            threshold,
            sample: 5,
            require_complete: false,
            record_id: "_record_id".into(),
            ignore: vec!["$.object.bucket".into()],
        }
    }

    /// Rows (id, fare, zone) as a curated-like Parquet file.
    fn write(dir: &Path, rel: &str, rows: &[(&str, f64, Option<&str>)], extra: bool) {
        let mut fields = vec![
            Field::new("_record_id", DataType::Utf8, false),
            Field::new("fare_amount", DataType::Float64, false),
            Field::new("zone", DataType::Utf8, true),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
        ];
        if extra {
            fields.push(Field::new("tip_pct", DataType::Int64, true));
            cols.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|_| 1),
            )));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    const ROWS: [(&str, f64, Option<&str>); 4] = [
        ("a1", 10.0, Some("Bronx")),
        ("b2", 12.5, None),
        ("c3", 7.25, Some("Queens")),
        ("d4", 30.0, Some("Bronx")),
    ];
    const KEY: &str = "trips/v1/dt=2024-01-01/x.parquet";

    struct Sides {
        _tmp: tempfile::TempDir,
        prod: Place,
        ghost: Place,
        prod_dir: PathBuf,
        ghost_dir: PathBuf,
    }

    fn sides() -> Sides {
        let tmp = tempfile::tempdir().unwrap();
        let (p, g) = (tmp.path().join("prod"), tmp.path().join("ghost"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::create_dir_all(&g).unwrap();
        Sides {
            prod: Place::dir(&p).unwrap(),
            ghost: Place::dir(&g).unwrap(),
            prod_dir: p,
            ghost_dir: g,
            _tmp: tmp,
        }
    }

    async fn run(s: &Sides, o: &Options) -> (Report, Verdict, String, String) {
        let r = compare(&s.prod, &s.ghost, o).await.unwrap();
        let v = r.verdict(o);
        let text = render::text(&r, o, &v);
        let md = render::markdown(&r, o, &v);
        (r, v, text, md)
    }

    #[tokio::test]
    async fn identical_outputs_match() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        write(&s.ghost_dir, KEY, &ROWS, false);
        // Bookkeeping on one side only is not a difference.
        std::fs::create_dir_all(s.prod_dir.join("_sluice/manifests")).unwrap();
        std::fs::write(s.prod_dir.join("_sluice/manifests/m.json"), "{}").unwrap();
        let (r, v, text, md) = run(&s, &opts(0.0)).await;
        assert_eq!(v.code, EXIT_MATCH, "{text}");
        assert_eq!(v.line, "✅ ghost matches prod");
        assert!(text.starts_with("✅ ghost matches prod\n"), "{text}");
        assert!(md.starts_with("✅ ghost matches prod\n"), "{md}");
        assert_eq!((r.compared, r.identical_files, r.ignored), (1, 1, (1, 0)));
        assert_eq!(r.records.same, 4);
        let t = &r.tables["trips/v1"];
        assert_eq!(t.prod["fare_amount"].non_null, 4);
        assert_eq!(t.prod["zone"].nulls, 1);
        assert_eq!(t.prod["zone"].distinct_text(), "2");
        assert_eq!(t.prod["fare_amount"].min_text(), "7.25");
        assert_eq!(t.prod["fare_amount"].max_text(), "30.0");
        assert_eq!(t.prod["fare_amount"].mean(), Some(14.9375));
    }

    #[tokio::test]
    async fn one_changed_value_names_the_record_and_respects_the_threshold() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        let mut ghost = ROWS;
        ghost[2].1 = 7.98;
        write(&s.ghost_dir, KEY, &ghost, false);
        let (r, v, text, md) = run(&s, &opts(0.0)).await;
        assert_eq!(v.code, EXIT_DIFFER, "{text}");
        assert!(
            v.line
                .starts_with("❌ ghost differs from prod: 1 of 4 records differ (25%)"),
            "{}",
            v.line
        );
        assert_eq!(r.records.changed, 1);
        assert_eq!(r.samples.len(), 1);
        let sample = &r.samples[0].sample;
        assert_eq!(sample.record, "c3");
        assert_eq!(
            sample.cells,
            vec![parquet_diff::Cell {
                column: "fare_amount".into(),
                prod: "7.25".into(),
                ghost: "7.98".into()
            }]
        );
        assert!(
            md.contains("| c3 | fare_amount | 7.25 | 7.98 | changed |"),
            "{md}"
        );
        assert!(
            text.contains("c3         fare_amount  7.25  7.98"),
            "{text}"
        );
        // The statistics of the column differ and are marked; the others not.
        assert!(text.contains("*  fare_amount"), "{text}");
        assert!(!text.contains("*  zone"), "{text}");
        assert!(md.contains("14.9375 → 15.12"), "{md}");

        // 1 of 4 records is 25%: within a 30% threshold, beyond 20%.
        let (_, v, _, _) = run(&s, &opts(0.3)).await;
        assert_eq!(v.code, EXIT_MATCH);
        assert!(v.line.contains("within the threshold of 30%"), "{}", v.line);
        let (_, v, _, _) = run(&s, &opts(0.2)).await;
        assert_eq!(v.code, EXIT_DIFFER);
    }

    #[tokio::test]
    async fn reordered_missing_and_extra_records_are_matched_by_id() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        let ghost = [ROWS[3], ROWS[2], ("e5", 1.0, None), ROWS[0]];
        write(&s.ghost_dir, KEY, &ghost, false);
        let (r, v, text, _) = run(&s, &opts(0.0)).await;
        assert_eq!(v.code, EXIT_DIFFER);
        assert_eq!(
            r.records,
            RecordCounts {
                same: 3,
                changed: 0,
                only_prod: 1,
                only_ghost: 1
            },
            "{text}"
        );
        let kinds: Vec<_> = r
            .samples
            .iter()
            .map(|s| (s.sample.record.as_str(), s.sample.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b2", parquet_diff::SampleKind::OnlyProd),
                ("e5", parquet_diff::SampleKind::OnlyGhost)
            ]
        );
    }

    #[tokio::test]
    async fn an_added_column_is_a_schema_change_whatever_the_threshold() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        write(&s.ghost_dir, KEY, &ROWS, true);
        let (r, v, text, md) = run(&s, &opts(1.0)).await;
        assert_eq!(v.code, EXIT_DIFFER, "{text}");
        assert!(
            v.line.contains("schema changed (1 change in trips/v1)"),
            "{}",
            v.line
        );
        let changes: Vec<_> = r.tables["trips/v1"].schema_changes.keys().collect();
        assert_eq!(
            changes,
            vec![&SchemaChange::Added {
                column: "tip_pct".into(),
                ty: "Int64, nullable".into()
            }]
        );
        assert!(
            text.contains("added column tip_pct (Int64, nullable)  [1 of 1 files]"),
            "{text}"
        );
        assert!(
            md.contains("| trips/v1 | added column tip_pct (Int64, nullable) | 1 of 1 |"),
            "{md}"
        );
        assert_eq!(r.records.same, 4, "the common columns are still compared");
    }

    #[tokio::test]
    async fn a_missing_ghost_file_fails_only_when_complete_is_required() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        write(&s.ghost_dir, KEY, &ROWS, false);
        let old = "trips/v1/dt=2023-12-31/old.parquet";
        write(&s.prod_dir, old, &ROWS, false);
        let (r, v, text, md) = run(&s, &opts(0.0)).await;
        assert_eq!(r.only_prod, vec![old.to_string()]);
        assert_eq!(v.code, EXIT_MATCH, "{text}");
        assert!(
            v.line
                .contains("1 prod output without a ghost counterpart (not required)"),
            "{}",
            v.line
        );
        assert!(text.contains(old), "{text}");
        assert!(md.contains(&format!("- `{old}`")), "{md}");
        let mut o = opts(0.0);
        o.require_complete = true;
        let (_, v, _, _) = run(&s, &o).await;
        assert_eq!(v.code, EXIT_DIFFER);
        assert!(v.line.contains("(--require-complete)"), "{}", v.line);

        // A ghost-only output always fails: the ghost wrote something prod did not.
        write(
            &s.ghost_dir,
            "trips/v1/dt=2024-01-02/new.parquet",
            &ROWS,
            false,
        );
        let (r, v, _, _) = run(&s, &opts(0.0)).await;
        assert_eq!(r.only_ghost.len(), 1);
        assert_eq!(v.code, EXIT_DIFFER);
    }

    #[tokio::test]
    async fn json_documents_are_compared_by_path() {
        let s = sides();
        let key = "trips/v1/dt=2024-01-01/x.profile.json";
        for (dir, mean) in [(&s.prod_dir, 14.9375), (&s.ghost_dir, 15.12)] {
            let doc = serde_json::json!({
                "row_count": 4,
                "columns": [{"name": "fare_amount", "numeric": {"mean": mean}}]
            });
            std::fs::create_dir_all(dir.join("trips/v1/dt=2024-01-01")).unwrap();
            std::fs::write(dir.join(key), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        }
        let (r, v, text, md) = run(&s, &opts(0.0)).await;
        assert_eq!(v.code, EXIT_DIFFER, "{text}");
        assert_eq!((r.docs_compared, r.docs_differing, r.doc_paths), (1, 1, 1));
        let d = &r.doc_samples[0];
        assert_eq!(
            (d.path.as_str(), d.prod.as_str(), d.ghost.as_str()),
            (
                "$.columns[name=fare_amount].numeric.mean",
                "14.9375",
                "15.12"
            )
        );
        assert!(
            md.contains("| $.columns[name=fare_amount].numeric.mean | 14.9375 | 15.12 |"),
            "{md}"
        );
    }

    #[tokio::test]
    async fn unreadable_objects_are_errors_naming_the_object() {
        let s = sides();
        write(&s.prod_dir, KEY, &ROWS, false);
        let bad = s.ghost_dir.join(KEY);
        std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
        std::fs::write(&bad, b"not parquet at all").unwrap();
        let (r, v, text, _) = run(&s, &opts(0.0)).await;
        assert_eq!(v.code, EXIT_ERROR, "{text}");
        assert_eq!(r.errors.len(), 1);
        let name = Place::dir(&s.ghost_dir).unwrap().name_of(KEY);
        assert!(r.errors[0].contains(&name), "{}", r.errors[0]);
        assert!(
            r.errors[0].contains("not a readable Parquet file"),
            "{}",
            r.errors[0]
        );

        // An empty prod location is an error too, not a silent match.
        let empty = sides();
        let e = compare(&empty.prod, &empty.ghost, &opts(0.0))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("holds no outputs"), "{e:#}");
    }

    #[test]
    fn thresholds_are_fractions() {
        assert_eq!(parse_fraction("0.01"), Ok(0.01));
        assert!(parse_fraction("5").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("1%").is_err());
        assert_eq!(table_of("trips/v1/dt=2024-01-01/x.parquet"), "trips/v1");
        assert_eq!(table_of("x.parquet"), "(top level)");
        assert_eq!(percent(1.0 / 2926.0), "0.034%");
    }
}
