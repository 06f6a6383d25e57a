//! What a report shows, and how it is aggregated from what the stages wrote:
//! manifests (counts per stage and partition), profiles (columns, checks),
//! quarantine lines (reasons) and dead letters. Pure functions over parsed
//! documents, so they are tested without a store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::runner::{is_internal_key, Manifest};
use sluice_profile::report::{CheckStatus, ProfileReport};

use super::fmt::{clip, num, pct};

/// Partition name of keys without a `dt=` segment.
pub const NO_PARTITION: &str = "(none)";

/// Dataset name of things whose key shows none.
pub const UNKNOWN_DATASET: &str = "(unknown)";

/// Distinct quarantine reasons kept per stage and dataset; the rest are
/// counted together, so memory stays bounded whatever the data.
pub const MAX_REASONS: usize = 500;

/// Landed objects without a manifest listed by name.
pub const MAX_WAITING: usize = 20;

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was reported on (`local directory ...`).
    pub target: String,
    /// When.
    pub generated_at: DateTime<Utc>,
    /// Stages in pipeline order.
    pub stages: Vec<String>,
    /// One per dataset, by name.
    pub datasets: Vec<Dataset>,
    /// DLQs that could not be read, by stage, with the error.
    pub dlq_errors: BTreeMap<String, String>,
    /// Things that could not be read or were left out, for the reader.
    pub notes: Vec<String>,
}

/// Everything about one dataset.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Name.
    pub name: String,
    /// Totals per stage, from the manifests.
    pub stages: BTreeMap<String, StageTotals>,
    /// Volume per `dt=` partition.
    pub partitions: BTreeMap<String, Partition>,
    /// Partitions left out of the charts (older than the newest shown).
    pub partitions_hidden: usize,
    /// The landed files ingest finished, by key.
    pub landed: Vec<LandedFile>,
    /// Objects under the ingest input (the landing area).
    pub landed_objects: u64,
    /// Landed objects without an ingest manifest (not processed yet, or
    /// dead-lettered), with up to [`MAX_WAITING`] of their locations.
    pub without_manifest: u64,
    /// Some of them.
    pub without_manifest_examples: Vec<String>,
    /// Column statistics and checks, from the profiles.
    pub profiles: ProfileSummary,
    /// Quarantine reasons per stage.
    pub quarantine: BTreeMap<String, Reasons>,
    /// Dead letters of all stages.
    pub dlq: Vec<DlqRow>,
    /// Breached checks.
    pub breaches: Vec<Breach>,
}

/// What one stage did for a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTotals {
    /// Inputs processed (manifests).
    pub inputs: u64,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Manifests whose counts do not balance.
    pub unbalanced: u64,
    /// Time spent.
    pub duration_ms: u64,
    /// Newest `processed_at`.
    pub last_processed: Option<DateTime<Utc>>,
}

/// Rows of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partition {
    /// Rows curate read (validated rows).
    pub validated_rows: u64,
    /// Rows curate wrote.
    pub curated_rows: u64,
    /// Rows curate quarantined (duplicates).
    pub curate_quarantined: u64,
    /// Rows profiled.
    pub profiled_rows: u64,
    /// Curated files profiled.
    pub profiles: u64,
    /// Breached checks in its profiles.
    pub breaches: u64,
}

/// One landed file, from ingest's manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct LandedFile {
    /// `s3://bucket/key`.
    pub object: String,
    /// Rows read.
    pub rows_in: u64,
    /// Rows validated.
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// When ingest finished it.
    pub processed_at: DateTime<Utc>,
}

/// Aggregated profiles of a dataset.
#[derive(Debug, Clone, Default)]
pub struct ProfileSummary {
    /// Profiles read.
    pub files: u64,
    /// Rows profiled.
    pub rows: u64,
    /// Checks passed.
    pub pass: u64,
    /// Checks breached.
    pub breach: u64,
    /// Checks skipped.
    pub skipped: u64,
    /// Columns, in file order.
    pub columns: Vec<ColumnSummary>,
}

/// One column over all profiles.
#[derive(Debug, Clone, Default)]
pub struct ColumnSummary {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: String,
    /// Rows of the profiles that have the column.
    pub rows: u64,
    /// Null values.
    pub nulls: u64,
    /// The highest null ratio of one partition, and which.
    pub worst_null: Option<(f64, String)>,
    /// `max_null_ratio` threshold, if checked.
    pub null_threshold: Option<f64>,
    /// Numeric statistics.
    pub numeric: Option<NumericSummary>,
    /// Most frequent values (summed over the top values of each file: a
    /// lower bound for each value).
    pub top_values: Vec<(String, u64)>,
    /// `(true, false)` counts.
    pub booleans: Option<(u64, u64)>,
}

impl ColumnSummary {
    /// Nulls / rows.
    pub fn null_ratio(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.nulls as f64 / self.rows as f64
        }
    }
}

/// Numeric statistics of a column over all profiles.
#[derive(Debug, Clone, Default)]
pub struct NumericSummary {
    /// Timestamps or dates (values are microseconds since the epoch).
    pub temporal: bool,
    /// Finite values.
    pub count: u64,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Mean (weighted by counts).
    pub mean: Option<f64>,
    /// The files' histograms merged: `(lower, upper, counts)`.
    pub histogram: Option<(f64, f64, Vec<u64>)>,
    /// Quantiles p01, p25, p50, p75, p99 per partition (count-weighted mean
    /// over the partition's files).
    pub quantiles: Vec<(String, [f64; 5])>,
}

/// Quarantine reasons of one stage for one dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reasons {
    /// Quarantine files read.
    pub files: u64,
    /// Quarantine files found (more than read when capped).
    pub files_found: u64,
    /// Quarantined rows (lines).
    pub rows: u64,
    /// Lines that were not quarantine JSON.
    pub unreadable: u64,
    /// Rows per normalised reason (a row can have several).
    pub by_reason: BTreeMap<String, ReasonCount>,
    /// Rows with reasons beyond [`MAX_REASONS`] distinct ones.
    pub other: u64,
}

/// How often a reason occurred, with one example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReasonCount {
    /// Occurrences.
    pub count: u64,
    /// The first row seen with it (raw text, or line and source).
    pub example: String,
}

impl Reasons {
    /// Count one quarantine line (`{"line":..,"raw":..,"reasons":[..],"source":..}`).
    pub fn add_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.rows += 1;
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.unreadable += 1;
            return;
        };
        let Some(reasons) = v.get("reasons").and_then(Value::as_array) else {
            self.unreadable += 1;
            return;
        };
        let example = || {
            if let Some(raw) = v.get("raw").and_then(Value::as_str) {
                return clip(raw, 200);
            }
            let line = v.get("line").map(|l| l.to_string()).unwrap_or_default();
            let source = v.get("source").and_then(Value::as_str).unwrap_or("");
            clip(&format!("line {line} of {source}"), 200)
        };
        for r in reasons {
            let r = r
                .as_str()
                .map(normalize_reason)
                .unwrap_or_else(|| r.to_string());
            let room = self.by_reason.len() < MAX_REASONS;
            match self.by_reason.get_mut(&r) {
                Some(c) => c.count += 1,
                None if room => {
                    self.by_reason.insert(
                        r,
                        ReasonCount {
                            count: 1,
                            example: example(),
                        },
                    );
                }
                None => self.other += 1,
            }
        }
    }

    /// Add the counts of another file.
    pub fn merge(&mut self, other: Reasons) {
        self.files += other.files;
        self.files_found += other.files_found;
        self.rows += other.rows;
        self.unreadable += other.unreadable;
        self.other += other.other;
        for (reason, c) in other.by_reason {
            let room = self.by_reason.len() < MAX_REASONS;
            match self.by_reason.get_mut(&reason) {
                Some(mine) => mine.count += c.count,
                None if room => {
                    self.by_reason.insert(reason, c);
                }
                None => self.other += c.count,
            }
        }
    }

    /// Reasons by count (then name), most frequent first.
    pub fn ranked(&self) -> Vec<(&String, &ReasonCount)> {
        let mut v: Vec<_> = self.by_reason.iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        v
    }
}

/// A reason with its values taken out, so that rows failing the same rule
/// count together: quoted values become `"…"`, numbers standing alone
/// become `<n>` (`fare_amount: -1073 is below the minimum 0` →
/// `fare_amount: <n> is below the minimum <n>`).
pub fn normalize_reason(r: &str) -> String {
    let chars: Vec<char> = r.chars().collect();
    let mut out = String::with_capacity(r.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str("\"…\"");
            i = j + 1;
            continue;
        }
        let starts = i == 0 || chars[i - 1].is_whitespace();
        let signed = c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if starts && (c.is_ascii_digit() || signed) {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            if j == chars.len() || !chars[j].is_alphanumeric() {
                out.push_str("<n>");
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    clip(&out, 160)
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqRow {
    /// Stage whose DLQ holds it.
    pub stage: String,
    /// Error kind.
    pub kind: String,
    /// The failed object, if known.
    pub object: Option<String>,
    /// Error message.
    pub message: String,
    /// When it failed (or was sent).
    pub time: Option<DateTime<Utc>>,
    /// Attempts (envelopes) or receives (raw messages).
    pub attempts: Option<u32>,
}

/// One breached check.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// `dt=` partition.
    pub partition: String,
    /// The profiled object.
    pub object: String,
    /// Check name.
    pub check: String,
    /// Column, for per-column checks.
    pub column: Option<String>,
    /// Measured value, formatted.
    pub value: String,
    /// Threshold, formatted.
    pub threshold: String,
    /// Why.
    pub reason: Option<String>,
}

/// The key relative to `prefix`, if under it.
pub fn relative<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
}

/// The first segment of a relative key, if it is a folder
/// (`trips/v1/x.parquet` → `trips`).
pub fn first_segment(rel: &str) -> Option<&str> {
    match rel.split_once('/') {
        Some((d, _)) if !d.is_empty() => Some(d),
        _ => None,
    }
}

/// The `dt=` partition of a key, or [`NO_PARTITION`].
pub fn partition_of(key: &str) -> String {
    key.split('/')
        .find(|s| s.starts_with("dt="))
        .unwrap_or(NO_PARTITION)
        .to_string()
}

/// Where a stage reads and writes, as far as attribution needs.
#[derive(Debug, Clone)]
pub struct Places {
    /// Input bucket.
    pub input_bucket: String,
    /// Input prefix.
    pub input_prefix: String,
    /// Output bucket.
    pub output_bucket: String,
    /// Output prefix.
    pub output_prefix: String,
}

impl Places {
    /// The dataset of an input object of the stage.
    pub fn dataset_of_input(&self, bucket: &str, key: &str) -> Option<String> {
        if bucket != self.input_bucket {
            return None;
        }
        relative(key, &self.input_prefix)
            .and_then(first_segment)
            .map(str::to_string)
    }

    /// The dataset a manifest is about: from its input, else from its outputs.
    pub fn dataset_of_manifest(&self, m: &Manifest) -> String {
        if let Some(d) = self.dataset_of_input(&m.source.bucket, &m.source.key) {
            return d;
        }
        m.outputs
            .iter()
            .filter(|o| o.bucket == self.output_bucket)
            .filter_map(|o| relative(&o.key, &self.output_prefix))
            .filter(|rel| !is_internal_key(rel))
            .find_map(first_segment)
            .unwrap_or(UNKNOWN_DATASET)
            .to_string()
    }
}

impl Dataset {
    /// Count one manifest of `stage`.
    pub fn add_manifest(&mut self, stage: &str, m: &Manifest) {
        let t = self.stages.entry(stage.to_string()).or_default();
        let c = &m.counts;
        t.inputs += 1;
        t.rows_in += c.rows_in;
        t.rows_out += c.rows_out;
        t.rows_quarantined += c.rows_quarantined;
        t.bytes_in += c.bytes_in;
        t.bytes_out += c.bytes_out;
        t.duration_ms += m.duration_ms;
        if !c.balanced() {
            t.unbalanced += 1;
        }
        if t.last_processed.is_none_or(|l| l < m.processed_at) {
            t.last_processed = Some(m.processed_at);
        }
        match stage {
            "ingest" => self.landed.push(LandedFile {
                object: format!("s3://{}/{}", m.source.bucket, m.source.key),
                rows_in: c.rows_in,
                rows_out: c.rows_out,
                rows_quarantined: c.rows_quarantined,
                processed_at: m.processed_at,
            }),
            "curate" => {
                let p = self
                    .partitions
                    .entry(partition_of(&m.source.key))
                    .or_default();
                p.validated_rows += c.rows_in;
                p.curated_rows += c.rows_out;
                p.curate_quarantined += c.rows_quarantined;
            }
            _ => {}
        }
    }

    /// Add the profiles (read for the partitions shown): per-partition rows
    /// and breaches, the breach list, and the column statistics.
    pub fn add_profiles(&mut self, profiles: &[ProfileReport]) {
        for p in profiles {
            let part = p.partition.clone().unwrap_or_else(|| NO_PARTITION.into());
            let entry = self.partitions.entry(part.clone()).or_default();
            entry.profiled_rows += p.row_count;
            entry.profiles += 1;
            for c in p.breaches() {
                entry.breaches += 1;
                self.breaches.push(Breach {
                    partition: part.clone(),
                    object: format!("s3://{}/{}", p.object.bucket, p.object.key),
                    check: c.check.clone(),
                    column: c.column.clone(),
                    value: check_value(&c.check, &c.value),
                    threshold: check_value(&c.check, &c.threshold),
                    reason: c.reason.clone(),
                });
            }
        }
        self.breaches.sort_by(|a, b| {
            (&a.partition, &a.check, &a.column, &a.object).cmp(&(
                &b.partition,
                &b.check,
                &b.column,
                &b.object,
            ))
        });
        self.profiles = aggregate_profiles(profiles);
    }

    /// Partitions in order, without the undated bucket unless it is all
    /// there is.
    pub fn dated_partitions(&self) -> Vec<(&String, &Partition)> {
        let dated: Vec<_> = self
            .partitions
            .iter()
            .filter(|(k, _)| k.as_str() != NO_PARTITION)
            .collect();
        if dated.is_empty() {
            self.partitions.iter().collect()
        } else {
            dated
        }
    }

    /// Quarantined rows over all stages.
    pub fn rows_quarantined(&self) -> u64 {
        self.stages.values().map(|s| s.rows_quarantined).sum()
    }
}

/// A check's value or threshold as text: ratios as percentages, ranges as
/// `low – high`, null as `—`.
pub fn check_value(check: &str, v: &Value) -> String {
    let ratio = check.contains("ratio");
    let one = |v: &Value| match v.as_f64() {
        Some(x) if ratio => pct(x),
        Some(x) => num(x),
        None if v.is_null() => "—".to_string(),
        None => v.to_string(),
    };
    match v {
        Value::Array(a) if a.len() == 2 => format!("{} – {}", one(&a[0]), one(&a[1])),
        v => one(v),
    }
}

/// Column statistics and check counts over profiles (sorted by partition
/// and key by the caller, for a stable column order).
pub fn aggregate_profiles(profiles: &[ProfileReport]) -> ProfileSummary {
    let mut s = ProfileSummary::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    // Per column: histograms to merge, quantile sums per partition.
    let mut hists: Vec<Vec<(f64, f64, Vec<u64>)>> = Vec::new();
    let mut qsums: Vec<BTreeMap<String, (f64, [f64; 5])>> = Vec::new();
    let mut mean_sums: Vec<(f64, u64)> = Vec::new();
    let mut tops: Vec<BTreeMap<String, u64>> = Vec::new();
    for p in profiles {
        s.files += 1;
        s.rows += p.row_count;
        let part = p.partition.clone().unwrap_or_else(|| NO_PARTITION.into());
        for c in &p.checks {
            match c.status {
                CheckStatus::Pass => s.pass += 1,
                CheckStatus::Breach => s.breach += 1,
                CheckStatus::Skipped => s.skipped += 1,
            }
        }
        for col in &p.columns {
            let i = *index.entry(col.name.clone()).or_insert_with(|| {
                s.columns.push(ColumnSummary {
                    name: col.name.clone(),
                    ty: col.ty.clone(),
                    ..Default::default()
                });
                hists.push(Vec::new());
                qsums.push(BTreeMap::new());
                mean_sums.push((0.0, 0));
                tops.push(BTreeMap::new());
                s.columns.len() - 1
            });
            let out = &mut s.columns[i];
            out.rows += p.row_count;
            out.nulls += col.null_count;
            if p.row_count > 0
                && out
                    .worst_null
                    .as_ref()
                    .is_none_or(|(r, _)| col.null_ratio > *r)
            {
                out.worst_null = Some((col.null_ratio, part.clone()));
            }
            if let Some(n) = &col.numeric {
                let o = out.numeric.get_or_insert_with(|| NumericSummary {
                    temporal: matches!(col.ty.as_str(), "timestamp" | "date"),
                    ..Default::default()
                });
                o.count += n.count;
                if let Some(m) = n.min {
                    o.min = Some(o.min.map_or(m, |x| x.min(m)));
                }
                if let Some(m) = n.max {
                    o.max = Some(o.max.map_or(m, |x| x.max(m)));
                }
                if let Some(m) = n.mean {
                    mean_sums[i].0 += m * n.count as f64;
                    mean_sums[i].1 += n.count;
                }
                if let Some(h) = &n.histogram {
                    hists[i].push((h.lower, h.upper, h.counts.clone()));
                }
                if let Some(q) = &n.quantiles {
                    let w = n.count.max(1) as f64;
                    let e = qsums[i].entry(part.clone()).or_insert((0.0, [0.0; 5]));
                    e.0 += w;
                    for (acc, v) in e.1.iter_mut().zip([q.p01, q.p25, q.p50, q.p75, q.p99]) {
                        *acc += v * w;
                    }
                }
            }
            if let Some(t) = &col.text {
                for tv in &t.top_values {
                    *tops[i].entry(tv.value.clone()).or_default() += tv.count;
                }
            }
            if let Some(b) = &col.boolean {
                let (t, f) = out.booleans.unwrap_or((0, 0));
                out.booleans = Some((t + b.true_count, f + b.false_count));
            }
        }
        for c in &p.checks {
            if c.check == "max_null_ratio" {
                if let (Some(col), Some(t)) = (&c.column, c.threshold.as_f64()) {
                    if let Some(&i) = index.get(col) {
                        s.columns[i].null_threshold = Some(t);
                    }
                }
            }
        }
    }
    for (i, col) in s.columns.iter_mut().enumerate() {
        if let Some(n) = col.numeric.as_mut() {
            let (sum, cnt) = mean_sums[i];
            n.mean = (cnt > 0).then(|| sum / cnt as f64);
            n.histogram = merge_histograms(&hists[i]);
            n.quantiles = qsums[i]
                .iter()
                .map(|(part, (w, q))| (part.clone(), q.map(|v| v / w)))
                .collect();
        }
        let mut top: Vec<(String, u64)> = std::mem::take(&mut tops[i]).into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(10);
        col.top_values = top;
    }
    s
}

/// Merge equal-width histograms with different bounds into one over the
/// union of their ranges, each source bin counted in the bin holding its
/// centre. The bin count is the largest of the sources'.
pub fn merge_histograms(hists: &[(f64, f64, Vec<u64>)]) -> Option<(f64, f64, Vec<u64>)> {
    let valid: Vec<_> = hists
        .iter()
        .filter(|(l, u, c)| l.is_finite() && u.is_finite() && u >= l && !c.is_empty())
        .collect();
    let lower = valid.iter().map(|h| h.0).fold(f64::INFINITY, f64::min);
    let upper = valid.iter().map(|h| h.1).fold(f64::NEG_INFINITY, f64::max);
    if valid.is_empty() {
        return None;
    }
    if upper == lower {
        let total = valid.iter().flat_map(|h| h.2.iter()).sum();
        return Some((lower, upper, vec![total]));
    }
    let bins = valid.iter().map(|h| h.2.len()).max().unwrap_or(1).max(2);
    let mut out = vec![0u64; bins];
    let slot =
        |x: f64| (((x - lower) / (upper - lower) * bins as f64).floor() as usize).min(bins - 1);
    for (l, u, counts) in valid {
        let n = counts.len();
        for (i, c) in counts.iter().enumerate() {
            let centre = if n == 1 || u == l {
                *l
            } else {
                l + (u - l) * (i as f64 + 0.5) / n as f64
            };
            out[slot(centre)] += c;
        }
    }
    Some((lower, upper, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_are_normalised_and_counted() {
        assert_eq!(
            normalize_reason("fare_amount: -1073 is below the minimum 0"),
            "fare_amount: <n> is below the minimum <n>"
        );
        assert_eq!(
            normalize_reason("expected 19 fields, found 18"),
            "expected <n> fields, found <n>"
        );
        assert_eq!(
            normalize_reason(r#"tip_amount: "1,\n2" is not a decimal(12,2)"#),
            r#"tip_amount: "…" is not a decimal(12,2)"#
        );
        assert_eq!(
            normalize_reason("store_and_fwd_flag: not valid UTF-8"),
            "store_and_fwd_flag: not valid UTF-8"
        );
        let mut r = Reasons::default();
        r.add_line(r#"{"line":10,"raw":"2,-10.73","reasons":["fare_amount: -1073 is below the minimum 0"],"source":"s3://l/raw/t/a.csv"}"#);
        r.add_line(r#"{"line":12,"raw":"x","reasons":["fare_amount: -5 is below the minimum 0","rule r failed"],"source":"s3://l/raw/t/a.csv"}"#);
        r.add_line(r#"{"record_id":"ab","line":494,"source":"s3://l/raw/t/a.csv","reasons":["duplicate record id"]}"#);
        r.add_line("not json");
        r.add_line("");
        assert_eq!(r.rows, 4);
        assert_eq!(r.unreadable, 1);
        let ranked = r.ranked();
        assert_eq!(ranked[0].0, "fare_amount: <n> is below the minimum <n>");
        assert_eq!(ranked[0].1.count, 2);
        assert_eq!(
            ranked[0].1.example, "2,-10.73",
            "the first row is the example"
        );
        let dup = &r.by_reason["duplicate record id"];
        assert_eq!(dup.example, "line 494 of s3://l/raw/t/a.csv");
    }

    #[test]
    fn distinct_reasons_are_capped() {
        let mut r = Reasons::default();
        for i in 0..MAX_REASONS + 10 {
            r.add_line(&format!(r#"{{"reasons":["reason x{i}"]}}"#));
        }
        assert_eq!(r.by_reason.len(), MAX_REASONS);
        assert_eq!(r.other, 10);
    }

    #[test]
    fn histograms_merge_over_the_union_of_ranges() {
        let merged =
            merge_histograms(&[(0.0, 10.0, vec![1, 2]), (10.0, 20.0, vec![3, 4])]).unwrap();
        assert_eq!(
            merged,
            (0.0, 20.0, vec![3, 7]),
            "as many bins as the widest source"
        );
        let merged =
            merge_histograms(&[(0.0, 10.0, vec![1, 2, 3, 4]), (10.0, 20.0, vec![5, 6])]).unwrap();
        assert_eq!(merged, (0.0, 20.0, vec![3, 7, 5, 6]));
        let single = merge_histograms(&[(5.0, 5.0, vec![7]), (5.0, 5.0, vec![3])]).unwrap();
        assert_eq!(single, (5.0, 5.0, vec![10]));
        assert_eq!(merge_histograms(&[]), None);
        let mixed = merge_histograms(&[(5.0, 5.0, vec![7]), (0.0, 10.0, vec![1, 1])]).unwrap();
        assert_eq!(mixed.2.iter().sum::<u64>(), 9);
    }

    #[test]
    fn check_values_are_formatted_by_kind() {
        assert_eq!(check_value("max_quarantine_ratio", &json!(0.248)), "24.80%");
        assert_eq!(check_value("mean_range", &json!([2.0, 150.0])), "2 – 150");
        assert_eq!(check_value("min_rows", &json!(1504)), "1,504");
        assert_eq!(check_value("volume", &Value::Null), "—");
    }

    #[test]
    fn datasets_come_from_inputs_or_outputs() {
        let p = Places {
            input_bucket: "landing".into(),
            input_prefix: "raw/".into(),
            output_bucket: "validated".into(),
            output_prefix: String::new(),
        };
        assert_eq!(
            p.dataset_of_input("landing", "raw/trips/a.csv").as_deref(),
            Some("trips")
        );
        assert_eq!(p.dataset_of_input("landing", "raw/a.csv"), None);
        assert_eq!(p.dataset_of_input("other", "raw/trips/a.csv"), None);
        assert_eq!(
            partition_of("trips/v1/dt=2024-01-01/a.parquet"),
            "dt=2024-01-01"
        );
        assert_eq!(partition_of("trips/v1/a.parquet"), NO_PARTITION);
    }
}
