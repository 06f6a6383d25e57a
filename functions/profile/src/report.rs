//! The profile document written for every curated file: what was measured
//! (row count, per-column statistics) and what was checked against the
//! contract's quality thresholds. Field order is fixed by these structs and
//! every value is derived from the data, so identical input gives identical
//! bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the document format.
pub const PROFILE_VERSION: u32 = 1;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Within the threshold.
    Pass,
    /// Outside the threshold: an alert is raised.
    Breach,
    /// Could not be evaluated (the reason says why); never an alert.
    Skipped,
}

impl CheckStatus {
    /// `pass`, `breach` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Breach => "breach",
            CheckStatus::Skipped => "skipped",
        }
    }
}

/// One quality check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `min_rows`, `max_null_ratio`, `mean_range`, `max_quarantine_ratio` or `volume`.
    pub check: String,
    /// The column, for per-column checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The measured value (null when skipped).
    pub value: Value,
    /// The threshold (a number, or `[low, high]`).
    pub threshold: Value,
    /// The outcome.
    pub status: CheckStatus,
    /// Why it was skipped, or what the value was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Check {
    /// A check that was evaluated.
    pub fn evaluated(
        check: &str,
        column: Option<&str>,
        value: f64,
        threshold: Value,
        breach: bool,
    ) -> Self {
        Check {
            check: check.to_string(),
            column: column.map(str::to_string),
            value: number(value),
            threshold,
            status: if breach {
                CheckStatus::Breach
            } else {
                CheckStatus::Pass
            },
            reason: None,
        }
    }

    /// A check that could not be evaluated.
    pub fn skipped(
        check: &str,
        column: Option<&str>,
        threshold: Value,
        reason: impl Into<String>,
    ) -> Self {
        Check {
            check: check.to_string(),
            column: column.map(str::to_string),
            value: Value::Null,
            threshold,
            status: CheckStatus::Skipped,
            reason: Some(reason.into()),
        }
    }

    /// With an explanatory reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// A JSON number (null if not finite).
pub fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// The profiled object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag of the version profiled.
    pub etag: String,
}

/// Quantiles of a numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// 1st percentile.
    pub p01: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Equal-width histogram between `lower` and `upper` (the last bin is closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge (the minimum).
    pub lower: f64,
    /// Upper edge (the maximum).
    pub upper: f64,
    /// Counts per bin.
    pub counts: Vec<u64>,
}

/// Statistics of a numeric column (ints, floats, decimals as f64;
/// timestamps and dates as microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    /// Non-null finite values.
    pub count: u64,
    /// NaN and infinite values (not in the other statistics).
    pub non_finite: u64,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (Welford); null below two values.
    pub stddev: Option<f64>,
    /// Approximate distinct values (HyperLogLog).
    pub distinct: u64,
    /// Approximate quantiles (t-digest).
    pub quantiles: Option<Quantiles>,
    /// Equal-width histogram.
    pub histogram: Option<Histogram>,
    /// `min` as a date/time, for temporal columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time: Option<String>,
    /// `max` as a date/time, for temporal columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<String>,
}

/// A frequent value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopValue {
    /// The value.
    pub value: String,
    /// Exact occurrences.
    pub count: u64,
}

/// Statistics of a text column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextProfile {
    /// Non-null values.
    pub count: u64,
    /// Approximate distinct values (HyperLogLog).
    pub distinct: u64,
    /// Shortest value, in characters.
    pub min_length: Option<u64>,
    /// Longest value, in characters.
    pub max_length: Option<u64>,
    /// Up to 10 most frequent values, exact counts, by count then value.
    pub top_values: Vec<TopValue>,
}

/// Statistics of a boolean column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoolProfile {
    /// `true` values.
    pub true_count: u64,
    /// `false` values.
    pub false_count: u64,
}

/// One column's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// `int`, `float`, `decimal`, `timestamp`, `date`, `bool`, `string`, or the Arrow type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Null values.
    pub null_count: u64,
    /// Null values / rows (0 for an empty file).
    pub null_ratio: f64,
    /// Numeric statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericProfile>,
    /// Text statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextProfile>,
    /// Boolean statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean: Option<BoolProfile>,
}

/// The profile of one curated file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// [`PROFILE_VERSION`].
    pub profile_version: u32,
    /// Dataset.
    pub dataset: String,
    /// Contract major version (from the key).
    pub major: u64,
    /// `dt=...` partition, if the key has one.
    pub partition: Option<String>,
    /// The profiled object.
    pub object: ObjectInfo,
    /// Correlation id of the landed file this data came from.
    pub correlation_id: String,
    /// Rows in the file.
    pub row_count: u64,
    /// `breach` if any check breached, else `pass`.
    pub status: CheckStatus,
    /// Quality checks, in a fixed order.
    pub checks: Vec<Check>,
    /// Per-column statistics (bookkeeping `_` columns excluded), in file order.
    pub columns: Vec<ColumnProfile>,
}

impl ProfileReport {
    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The breached checks.
    pub fn breaches(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Breach)
    }
}
