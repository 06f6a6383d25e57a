//! Data contracts: one TOML file per dataset in `contracts/`, compiled into
//! every artifact. A contract gives the fields (type, nullability,
//! constraints), row rules across fields, the natural key, the partition
//! column, a semantic version, and quality thresholds. A broken contract is
//! rejected at load with the file, the field and the reason.
//!
//! This module also holds the typed value parsers the ingest stage runs on
//! every field, so "what a contract type accepts" is defined in one place.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field as ArrowField, Schema, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/contracts.rs"));
}

/// A field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true`/`false` (also `1`/`0`, `Y`/`N`, `yes`/`no`).
    Bool,
    /// A timestamp in `format`, at a fixed UTC offset; stored as UTC microseconds.
    Timestamp {
        /// chrono format string.
        format: String,
        /// Offset of the source's clock from UTC, in seconds.
        offset_secs: i32,
    },
    /// A date in `format`; stored as days since the epoch.
    Date {
        /// chrono format string.
        format: String,
    },
    /// A fixed-point decimal, stored as an unscaled 128-bit integer.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
}

impl FieldType {
    /// The Arrow type of a validated column.
    pub fn arrow_type(&self) -> DataType {
        match self {
            FieldType::String => DataType::Utf8,
            FieldType::Int => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Timestamp { .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            FieldType::Date { .. } => DataType::Date32,
            FieldType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Timestamp { .. } => "timestamp",
            FieldType::Date { .. } => "date",
            FieldType::Decimal { .. } => "decimal",
        }
    }
}

/// A parsed, typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing.
    Null,
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// UTC microseconds since the epoch.
    Timestamp(i64),
    /// Days since the epoch.
    Date(i32),
    /// Unscaled decimal.
    Decimal(i128),
}

impl Value {
    /// A number to compare with bounds and other fields.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_ref().as_f64()
    }

    /// Order two values: exactly when they have the same numeric variant
    /// (no i128 → f64 conversion on the hot path), else through `as_f64`.
    pub fn partial_cmp_num(&self, other: &Value) -> Option<std::cmp::Ordering> {
        self.as_ref().partial_cmp_num(other.as_ref())
    }

    /// The value, borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Str(s) => ValueRef::Str(s),
            Value::Int(v) => ValueRef::Int(*v),
            Value::Float(v) => ValueRef::Float(*v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::Timestamp(v) => ValueRef::Timestamp(*v),
            Value::Date(v) => ValueRef::Date(*v),
            Value::Decimal(v) => ValueRef::Decimal(*v),
        }
    }
}

/// A parsed, typed value that borrows its text from the input: what the
/// ingest hot path parses and checks, so that a row costs no allocation.
/// [`Value`] is the owned form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Missing.
    Null,
    /// Text.
    Str(&'a str),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// UTC microseconds since the epoch.
    Timestamp(i64),
    /// Days since the epoch.
    Date(i32),
    /// Unscaled decimal.
    Decimal(i128),
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Str(s) => Value::Str(s.to_string()),
            ValueRef::Int(v) => Value::Int(v),
            ValueRef::Float(v) => Value::Float(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Timestamp(v) => Value::Timestamp(v),
            ValueRef::Date(v) => Value::Date(v),
            ValueRef::Decimal(v) => Value::Decimal(v),
        }
    }

    /// A number to compare with bounds and other fields.
    #[inline]
    pub fn as_f64(self) -> Option<f64> {
        match self {
            ValueRef::Int(v) => Some(v as f64),
            ValueRef::Float(v) => Some(v),
            ValueRef::Timestamp(v) => Some(v as f64),
            ValueRef::Date(v) => Some(f64::from(v)),
            ValueRef::Decimal(v) => Some(v as f64),
            _ => None,
        }
    }

    /// Order two values: exactly when they have the same numeric variant
    /// (no i128 → f64 conversion on the hot path), else through `as_f64`.
    #[inline]
    pub fn partial_cmp_num(self, other: ValueRef<'_>) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (ValueRef::Int(a), ValueRef::Int(b))
            | (ValueRef::Timestamp(a), ValueRef::Timestamp(b)) => Some(a.cmp(&b)),
            (ValueRef::Decimal(a), ValueRef::Decimal(b)) => Some(a.cmp(&b)),
            (ValueRef::Date(a), ValueRef::Date(b)) => Some(a.cmp(&b)),
            _ => self.as_f64()?.partial_cmp(&other.as_f64()?),
        }
    }
}

/// One field of a contract.
#[derive(Debug, Clone)]
pub struct Field {
    /// Column name, matched against headers and JSON keys exactly.
    pub name: String,
    /// Type.
    pub ty: FieldType,
    /// Whether empty values are allowed.
    pub nullable: bool,
    /// Inclusive lower bound, in the field's stored representation.
    pub min: Option<Value>,
    /// Inclusive upper bound.
    pub max: Option<Value>,
    /// Allowed values (int and string fields).
    pub allowed: Option<Vec<Value>>,
    /// A regular expression string values must match in full.
    pub pattern: Option<regex::Regex>,
}

/// Comparison used by row rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            _ => return None,
        })
    }

    /// Apply to two numbers.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// A rule across two fields of a row, e.g. dropoff >= pickup.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name used in quarantine reasons.
    pub name: String,
    /// Index of the left field.
    pub left: usize,
    /// Operator.
    pub op: CmpOp,
    /// Index of the right field.
    pub right: usize,
}

/// How output is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// `dt=YYYY-MM-DD`
    Day,
    /// `dt=YYYY-MM`
    Month,
}

/// The partition column and granularity.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Index of the timestamp or date field.
    pub field: usize,
    /// Granularity.
    pub granularity: Granularity,
}

/// Quality thresholds for the profile stage.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// Fewest rows a file may have.
    #[serde(default)]
    pub min_rows: u64,
    /// Largest share of rows that may be quarantined.
    #[serde(default = "one")]
    pub max_quarantine_ratio: f64,
    /// How many trailing profiles the volume check compares with (0 = off).
    #[serde(default)]
    pub volume_window: usize,
    /// Allowed relative deviation from the trailing mean row count.
    #[serde(default = "one")]
    pub volume_tolerance: f64,
    /// Largest null ratio per column.
    #[serde(default)]
    pub max_null_ratio: BTreeMap<String, f64>,
    /// Allowed [low, high] of a column's mean.
    #[serde(default)]
    pub mean_range: BTreeMap<String, (f64, f64)>,
}

fn one() -> f64 {
    1.0
}

/// A validated data contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Dataset name: the key segment after `raw/`.
    pub name: String,
    /// Semantic version (major, minor, patch).
    pub version: (u64, u64, u64),
    /// What the dataset is.
    pub description: String,
    /// The fields, in output order.
    pub fields: Vec<Field>,
    /// Indices of the natural-key fields (empty: none).
    pub natural_key: Vec<usize>,
    /// Partitioning, if any.
    pub partition: Option<Partition>,
    /// Row rules.
    pub rules: Vec<Rule>,
    /// Quality thresholds.
    pub quality: Quality,
    /// The `[curate]` section, interpreted (and validated) by the curate stage.
    pub curate: Option<toml::Value>,
    /// The file it came from, for messages.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    dataset: RawDataset,
    fields: Vec<RawField>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    quality: Quality,
    #[serde(default)]
    curate: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    natural_key: Vec<String>,
    #[serde(default)]
    partition: Option<RawPartition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    field: String,
    #[serde(default = "day")]
    granularity: String,
}

fn day() -> String {
    "day".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "yes")]
    nullable: bool,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    precision: Option<u8>,
    #[serde(default)]
    scale: Option<i8>,
    #[serde(default)]
    min: Option<toml::Value>,
    #[serde(default)]
    max: Option<toml::Value>,
    #[serde(default)]
    allowed: Option<Vec<toml::Value>>,
    #[serde(default)]
    pattern: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    left: String,
    op: String,
    right: String,
}

fn bad(source: &str, place: &str, reason: impl Into<String>) -> Error {
    Error::config(format!("contract {source}: {place}"), reason)
}

/// Parse a fixed UTC offset: `UTC`, `Z`, `+HH:MM` or `-HH:MM`.
fn parse_offset(s: &str) -> Option<i32> {
    if s == "UTC" || s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

impl Contract {
    /// Parse and validate a contract; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Self> {
        let raw: RawContract =
            toml::from_str(text).map_err(|e| bad(source, "syntax", e.to_string()))?;
        let d = raw.dataset;
        if d.name.is_empty()
            || !d
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(bad(
                source,
                "dataset.name",
                format!(
                    "{:?} must be lower-case letters, digits, '_' or '-'",
                    d.name
                ),
            ));
        }
        let version = {
            let parts: Vec<Option<u64>> = d.version.split('.').map(|p| p.parse().ok()).collect();
            match parts.as_slice() {
                [Some(a), Some(b), Some(c)] => (*a, *b, *c),
                _ => {
                    return Err(bad(
                        source,
                        "dataset.version",
                        format!("{:?} is not MAJOR.MINOR.PATCH", d.version),
                    ))
                }
            }
        };
        if raw.fields.is_empty() {
            return Err(bad(source, "fields", "a contract needs at least one field"));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(raw.fields.len());
        for (i, f) in raw.fields.into_iter().enumerate() {
            let place = format!("field {:?}", f.name);
            if f.name.is_empty() {
                return Err(bad(source, &format!("fields[{i}].name"), "is empty"));
            }
            if fields.iter().any(|g| g.name == f.name) {
                return Err(bad(source, &place, "is defined twice"));
            }
            fields.push(Self::field(source, &place, f)?);
        }
        let index = |place: &str, name: &str| {
            fields
                .iter()
                .position(|f| f.name == name)
                .ok_or_else(|| bad(source, place, format!("names unknown field {name:?}")))
        };
        let natural_key = d
            .natural_key
            .iter()
            .map(|n| index("dataset.natural_key", n))
            .collect::<Result<Vec<_>>>()?;
        let partition = match d.partition {
            None => None,
            Some(p) => {
                let field = index("dataset.partition.field", &p.field)?;
                if !matches!(
                    fields[field].ty,
                    FieldType::Timestamp { .. } | FieldType::Date { .. }
                ) {
                    return Err(bad(
                        source,
                        "dataset.partition.field",
                        format!("{:?} must be a timestamp or date field", p.field),
                    ));
                }
                if fields[field].nullable {
                    return Err(bad(
                        source,
                        "dataset.partition.field",
                        format!("{:?} must not be nullable", p.field),
                    ));
                }
                let granularity = match p.granularity.as_str() {
                    "day" => Granularity::Day,
                    "month" => Granularity::Month,
                    g => {
                        return Err(bad(
                            source,
                            "dataset.partition.granularity",
                            format!("{g:?} is not day or month"),
                        ))
                    }
                };
                Some(Partition { field, granularity })
            }
        };
        let mut rules = Vec::new();
        for r in raw.rules {
            let place = format!("rule {:?}", r.name);
            let left = index(&place, &r.left)?;
            let right = index(&place, &r.right)?;
            let op = CmpOp::parse(&r.op).ok_or_else(|| {
                bad(
                    source,
                    &place,
                    format!("op {:?} is not one of < <= > >= == !=", r.op),
                )
            })?;
            if fields[left].ty.arrow_type() != fields[right].ty.arrow_type()
                || matches!(fields[left].ty, FieldType::String | FieldType::Bool)
            {
                return Err(bad(
                    source,
                    &place,
                    "compares fields of different or non-numeric types",
                ));
            }
            rules.push(Rule {
                name: r.name,
                left,
                op,
                right,
            });
        }
        let q = &raw.quality;
        for (col, ratio) in &q.max_null_ratio {
            index("quality.max_null_ratio", col)?;
            if !(0.0..=1.0).contains(ratio) {
                return Err(bad(
                    source,
                    &format!("quality.max_null_ratio.{col}"),
                    format!("{ratio} is not within 0..1"),
                ));
            }
        }
        for (col, (lo, hi)) in &q.mean_range {
            let i = index("quality.mean_range", col)?;
            // Not `lo > hi`: that holds for no NaN bound, which must be refused too.
            let ordered = lo.partial_cmp(hi).is_some_and(|o| o.is_le());
            if !ordered || matches!(fields[i].ty, FieldType::String | FieldType::Bool) {
                return Err(bad(
                    source,
                    &format!("quality.mean_range.{col}"),
                    "needs a numeric field and low <= high",
                ));
            }
        }
        if q.volume_tolerance.is_nan() || q.volume_tolerance < 0.0 {
            return Err(bad(
                source,
                "quality.volume_tolerance",
                format!("{} is not a number >= 0", q.volume_tolerance),
            ));
        }
        if !(0.0..=1.0).contains(&q.max_quarantine_ratio) {
            return Err(bad(
                source,
                "quality.max_quarantine_ratio",
                "is not within 0..1",
            ));
        }
        Ok(Contract {
            name: d.name,
            version,
            description: d.description,
            fields,
            natural_key,
            partition,
            rules,
            quality: raw.quality,
            curate: raw.curate,
            source: source.to_string(),
        })
    }

    fn field(source: &str, place: &str, f: RawField) -> Result<Field> {
        let ty = match f.ty.as_str() {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "timestamp" => {
                let format = f
                    .format
                    .clone()
                    .ok_or_else(|| bad(source, place, "a timestamp needs a format"))?;
                let zone = f.zone.as_deref().unwrap_or("UTC");
                let offset_secs = parse_offset(zone).ok_or_else(|| {
                    bad(
                        source,
                        place,
                        format!("zone {zone:?} is not UTC or +HH:MM / -HH:MM"),
                    )
                })?;
                FieldType::Timestamp {
                    format,
                    offset_secs,
                }
            }
            "date" => FieldType::Date {
                format: f.format.clone().unwrap_or_else(|| "%Y-%m-%d".into()),
            },
            "decimal" => {
                let precision = f
                    .precision
                    .ok_or_else(|| bad(source, place, "a decimal needs a precision"))?;
                let scale = f.scale.unwrap_or(0);
                if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(bad(source, place, format!("precision {precision} / scale {scale} must satisfy 1 <= precision <= 38, 0 <= scale <= precision")));
                }
                FieldType::Decimal { precision, scale }
            }
            other => {
                return Err(bad(
                    source,
                    place,
                    format!(
                    "type {other:?} is not string, int, float, bool, timestamp, date or decimal"
                ),
                ))
            }
        };
        if (f.format.is_some()
            && !matches!(ty, FieldType::Timestamp { .. } | FieldType::Date { .. }))
            || (f.zone.is_some() && !matches!(ty, FieldType::Timestamp { .. }))
        {
            return Err(bad(
                source,
                place,
                "format/zone apply only to timestamp and date fields",
            ));
        }
        if (f.precision.is_some() || f.scale.is_some()) && !matches!(ty, FieldType::Decimal { .. })
        {
            return Err(bad(
                source,
                place,
                "precision/scale apply only to decimal fields",
            ));
        }
        let mut field = Field {
            name: f.name.clone(),
            ty,
            nullable: f.nullable,
            min: None,
            max: None,
            allowed: None,
            pattern: None,
        };
        let bound = |which: &str, v: &toml::Value| -> Result<Value> {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match field.parse(text.as_bytes()) {
                Ok(Value::Null) | Err(_) => Err(bad(
                    source,
                    place,
                    format!("{which} {v} is not a valid {}", field.ty.name()),
                )),
                Ok(Value::Str(_) | Value::Bool(_)) => Err(bad(
                    source,
                    place,
                    format!("{which} applies only to numbers, dates and timestamps"),
                )),
                Ok(val) => Ok(val),
            }
        };
        let min = f.min.as_ref().map(|v| bound("min", v)).transpose()?;
        let max = f.max.as_ref().map(|v| bound("max", v)).transpose()?;
        if let (Some(a), Some(b)) = (
            min.as_ref().and_then(Value::as_f64),
            max.as_ref().and_then(Value::as_f64),
        ) {
            if a > b {
                return Err(bad(source, place, "min is greater than max"));
            }
        }
        let allowed = match &f.allowed {
            None => None,
            Some(vals) => {
                if !matches!(field.ty, FieldType::Int | FieldType::String) {
                    return Err(bad(
                        source,
                        place,
                        "allowed applies only to int and string fields",
                    ));
                }
                let mut out = Vec::new();
                for v in vals {
                    let text = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match field.parse(text.as_bytes()) {
                        Ok(Value::Null) | Err(_) => {
                            return Err(bad(
                                source,
                                place,
                                format!("allowed value {v} is not a valid {}", field.ty.name()),
                            ))
                        }
                        Ok(val) => out.push(val),
                    }
                }
                Some(out)
            }
        };
        let pattern = match &f.pattern {
            None => None,
            Some(p) => {
                if field.ty != FieldType::String {
                    return Err(bad(source, place, "pattern applies only to string fields"));
                }
                Some(
                    regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| bad(source, place, format!("pattern {p:?}: {e}")))?,
                )
            }
        };
        field.min = min;
        field.max = max;
        field.allowed = allowed;
        field.pattern = pattern;
        Ok(field)
    }

    /// The major version, which goes into output paths.
    pub fn major(&self) -> u64 {
        self.version.0
    }

    /// The Arrow schema of validated rows: the contract's fields only.
    pub fn schema(&self) -> Schema {
        Schema::new(
            self.fields
                .iter()
                .map(|f| ArrowField::new(&f.name, f.ty.arrow_type(), f.nullable))
                .collect::<Vec<_>>(),
        )
    }

    /// Index of a field by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

impl Field {
    /// Parse one raw value (empty means null) and check it against the
    /// field's constraints. The error is the quarantine reason.
    pub fn parse_checked(&self, raw: &[u8]) -> std::result::Result<Value, String> {
        self.parse_checked_ref(raw).map(ValueRef::to_value)
    }

    /// [`Field::parse_checked`] without copying text out of `raw`.
    #[inline]
    pub fn parse_checked_ref<'a>(
        &self,
        raw: &'a [u8],
    ) -> std::result::Result<ValueRef<'a>, String> {
        let v = self.parse_ref(raw)?;
        if matches!(v, ValueRef::Null) {
            return if self.nullable {
                Ok(v)
            } else {
                Err(format!("{}: missing value", self.name))
            };
        }
        self.check_ref(v)?;
        Ok(v)
    }

    /// Check a parsed non-null value against min, max, allowed and pattern.
    pub fn check(&self, v: &Value) -> std::result::Result<(), String> {
        self.check_ref(v.as_ref())
    }

    /// [`Field::check`] of a borrowed value.
    #[inline]
    pub fn check_ref(&self, v: ValueRef<'_>) -> std::result::Result<(), String> {
        if let Some(allowed) = &self.allowed {
            if !allowed.iter().any(|a| a.as_ref() == v) {
                return Err(format!(
                    "{}: {} is not an allowed value",
                    self.name,
                    display(v)
                ));
            }
        }
        if let Some(min) = &self.min {
            if v.partial_cmp_num(min.as_ref()) == Some(std::cmp::Ordering::Less) {
                return Err(format!(
                    "{}: {} is below the minimum {}",
                    self.name,
                    display(v),
                    display(min.as_ref())
                ));
            }
        }
        if let Some(max) = &self.max {
            if v.partial_cmp_num(max.as_ref()) == Some(std::cmp::Ordering::Greater) {
                return Err(format!(
                    "{}: {} is above the maximum {}",
                    self.name,
                    display(v),
                    display(max.as_ref())
                ));
            }
        }
        if let (Some(p), ValueRef::Str(s)) = (&self.pattern, v) {
            if !p.is_match(s) {
                return Err(format!(
                    "{}: {s:?} does not match the pattern {}",
                    self.name,
                    p.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Parse one raw value by type only. Empty (after trimming) is null.
    pub fn parse(&self, raw: &[u8]) -> std::result::Result<Value, String> {
        self.parse_ref(raw).map(ValueRef::to_value)
    }

    /// [`Field::parse`] without copying text out of `raw`.
    #[inline]
    pub fn parse_ref<'a>(&self, raw: &'a [u8]) -> std::result::Result<ValueRef<'a>, String> {
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            return Ok(ValueRef::Null);
        }
        let utf8 =
            || std::str::from_utf8(raw).map_err(|_| format!("{}: not valid UTF-8", self.name));
        // Integers, timestamps and decimals are parsed from bytes (their
        // parsers accept ASCII only); the UTF-8 check is paid on failure.
        let fail = |what: &str| match std::str::from_utf8(raw) {
            Ok(text) => format!("{}: {text:?} is not {what}", self.name),
            Err(_) => format!("{}: not valid UTF-8", self.name),
        };
        Ok(match &self.ty {
            FieldType::String => ValueRef::Str(utf8()?),
            FieldType::Int => ValueRef::Int(parse_int(raw).ok_or_else(|| fail("an integer"))?),
            FieldType::Float => {
                let f: f64 = utf8()?.parse().map_err(|_| fail("a number"))?;
                if !f.is_finite() {
                    return Err(fail("a finite number"));
                }
                ValueRef::Float(f)
            }
            FieldType::Bool => ValueRef::Bool(match utf8()? {
                "true" | "TRUE" | "True" | "1" | "Y" | "y" | "yes" => true,
                "false" | "FALSE" | "False" | "0" | "N" | "n" | "no" => false,
                _ => return Err(fail("a boolean")),
            }),
            FieldType::Timestamp {
                format,
                offset_secs,
            } => {
                let local = parse_timestamp(raw, format)
                    .ok_or_else(|| fail(&format!("a timestamp in {format}")))?;
                ValueRef::Timestamp(local - i64::from(*offset_secs) * 1_000_000)
            }
            FieldType::Date { format } => {
                let d = NaiveDate::parse_from_str(utf8()?, format)
                    .map_err(|_| fail(&format!("a date in {format}")))?;
                ValueRef::Date(
                    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32,
                )
            }
            FieldType::Decimal { precision, scale } => ValueRef::Decimal(
                parse_decimal(raw, *precision, *scale)
                    .ok_or_else(|| fail(&format!("a decimal({precision},{scale})")))?,
            ),
        })
    }
}

fn display(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "null".into(),
        ValueRef::Str(s) => format!("{s:?}"),
        ValueRef::Int(i) => i.to_string(),
        ValueRef::Float(f) => f.to_string(),
        ValueRef::Bool(b) => b.to_string(),
        ValueRef::Timestamp(us) => chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| us.to_string()),
        ValueRef::Date(d) => d.to_string(),
        ValueRef::Decimal(d) => d.to_string(),
    }
}

/// Parse a decimal integer with optional sign. Also accepts `2.0` (a
/// float-formatted integer, common in exported data) but not `2.5`.
#[inline]
pub fn parse_int(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (int_part, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if int_part.is_empty() || int_part.len() > 18 || !frac.iter().all(|&b| b == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &b in int_part {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(if neg { -v } else { v })
}

/// Parse a decimal into an unscaled integer with `scale` digits after the
/// point; more digits than the scale, or more than `precision` in all, fail.
#[inline]
pub fn parse_decimal(raw: &[u8], precision: u8, scale: i8) -> Option<i128> {
    match parse_decimal_small(raw, precision, scale) {
        Small::Value(v) => Some(v),
        Small::Invalid => None,
        Small::Other => parse_decimal_general(raw, precision, scale),
    }
}

/// What the one-pass decimal parse made of a text.
enum Small {
    Value(i128),
    Invalid,
    /// Not for the one pass (a negative scale, or too many digits for a
    /// u64): the general parse decides.
    Other,
}

/// [`parse_decimal_general`] in one pass over the bytes, for a value
/// whose significant digits fit a u64 (the common case).
#[inline]
fn parse_decimal_small(raw: &[u8], precision: u8, scale: i8) -> Small {
    let Ok(scale) = usize::try_from(scale) else {
        return Small::Other;
    };
    let (neg, body) = match raw.first() {
        None => return Small::Invalid,
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        Some(_) => (false, raw),
    };
    let mut v: u64 = 0;
    // Integer digits after any leading zeros.
    let mut significant = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v * 10 + u64::from(b - b'0');
        significant += usize::from(v != 0);
        if significant + scale > 18 {
            return Small::Other;
        }
        i += 1;
    }
    let int_len = i;
    let mut frac_len = 0usize;
    if body.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&b) = body.get(i) {
            if !b.is_ascii_digit() {
                return Small::Invalid;
            }
            if frac_len < scale {
                v = v * 10 + u64::from(b - b'0');
                frac_len += 1;
            } else if b != b'0' {
                // A digit past the scale that is not a trailing zero.
                return Small::Invalid;
            }
            i += 1;
        }
        if int_len == 0 && i == int_len + 1 {
            return Small::Invalid; // "." alone
        }
    } else if i < body.len() || int_len == 0 {
        return Small::Invalid;
    }
    if significant + scale > usize::from(precision) {
        return Small::Invalid;
    }
    for _ in frac_len..scale {
        v *= 10;
    }
    let v = i128::from(v);
    Small::Value(if neg { -v } else { v })
}

/// A decimal's unscaled value, parsed the plain way (the reference for
/// [`parse_decimal_small`], and the parse of what it leaves).
fn parse_decimal_general(raw: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (neg, body) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (int_part, frac) = match body.iter().position(|&b| b == b'.') {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &body[body.len()..]),
    };
    let scale = scale as usize;
    // Trailing zeros beyond the scale are harmless ("1.500" at scale 2).
    let frac_trimmed = {
        let mut f = frac;
        while f.len() > scale && f.last() == Some(&b'0') {
            f = &f[..f.len() - 1];
        }
        f
    };
    if (int_part.is_empty() && frac.is_empty()) || frac_trimmed.len() > scale {
        return None;
    }
    let int_digits = int_part.iter().skip_while(|&&b| b == b'0').count();
    if int_digits + scale > precision as usize {
        return None;
    }
    // Up to 18 digits fit a u64: accumulate there (a 128-bit multiply per
    // digit costs more than the rest of the parse).
    let digits = int_part.len() + frac_trimmed.len();
    let mut v: i128 = if digits <= 18 {
        let mut small: u64 = 0;
        for &b in int_part.iter().chain(frac_trimmed) {
            if !b.is_ascii_digit() {
                return None;
            }
            small = small * 10 + u64::from(b - b'0');
        }
        i128::from(small)
    } else {
        let mut big: i128 = 0;
        for &b in int_part.iter().chain(frac_trimmed) {
            if !b.is_ascii_digit() {
                return None;
            }
            big = big * 10 + i128::from(b - b'0');
        }
        big
    };
    for _ in frac_trimmed.len()..scale {
        v *= 10;
    }
    Some(if neg { -v } else { v })
}

/// Parse a timestamp to microseconds since the epoch (in the source's clock).
/// `%Y-%m-%d %H:%M:%S` and `%Y-%m-%dT%H:%M:%S` take a fast path.
#[inline]
pub fn parse_timestamp(raw: &[u8], format: &str) -> Option<i64> {
    if (format == "%Y-%m-%d %H:%M:%S" || format == "%Y-%m-%dT%H:%M:%S") && raw.len() == 19 {
        let sep = if format.as_bytes()[8] == b'T' {
            b'T'
        } else {
            b' '
        };
        return fast_timestamp(raw, sep);
    }
    let text = std::str::from_utf8(raw).ok()?;
    NaiveDateTime::parse_from_str(text, format)
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// `%Y-%m-%d<sep>%H:%M:%S` in exactly 19 bytes, to microseconds since the
/// epoch (in the source's clock); `None` for anything else.
#[inline]
pub fn fast_timestamp(b: &[u8], sep: u8) -> Option<i64> {
    if b.len() != 19 {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != sep || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000)
}

#[inline]
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
#[inline]
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// All contracts compiled into this build, by dataset name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    contracts: BTreeMap<String, Arc<Contract>>,
}

impl Registry {
    /// Build a registry from (file name, text) pairs, rejecting duplicates.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut contracts = BTreeMap::new();
        for (name, text) in sources {
            let c = Contract::parse(name, text)?;
            if let Some(prev) = contracts.insert(c.name.clone(), Arc::new(c)) {
                return Err(bad(
                    name,
                    "dataset.name",
                    format!("{:?} is also defined in {}", prev.name, prev.source),
                ));
            }
        }
        Ok(Registry { contracts })
    }

    /// The contracts compiled into this build (every `contracts/*.toml`),
    /// parsed once.
    pub fn embedded() -> Result<&'static Registry> {
        static REG: OnceLock<std::result::Result<Registry, String>> = OnceLock::new();
        REG.get_or_init(|| {
            Registry::from_sources(embedded::CONTRACTS.iter().copied()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::config("contracts", e.clone()))
    }

    /// An embedded reference table (`contracts/reference/<name>.csv`) as CSV text.
    pub fn reference(name: &str) -> Option<&'static str> {
        embedded::REFERENCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
    }

    /// A contract by dataset name.
    pub fn get(&self, dataset: &str) -> Option<&Arc<Contract>> {
        self.contracts.get(dataset)
    }

    /// Dataset names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.contracts.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4000))]
        /// The one-pass decimal parse says what the plain one says, of any
        /// text of digits, points, signs, spaces and letters.
        #[test]
        fn the_one_pass_decimal_parse_agrees_with_the_plain_one(
            raw in "[-+]?[0.]{0,3}[0-9.]{0,24}[ a]?",
            precision in 1u8..=38,
            scale in 0i8..=6,
        ) {
            proptest::prop_assert_eq!(
                parse_decimal(raw.as_bytes(), precision, scale),
                parse_decimal_general(raw.as_bytes(), precision, scale),
                "{:?} at ({}, {})", raw, precision, scale
            );
        }
    }

    use super::*;

    #[test]
    fn embedded_contracts_load() {
        let reg = Registry::embedded().unwrap();
        let trips = reg.get("trips").expect("trips contract");
        assert_eq!(trips.fields.len(), 19);
        assert_eq!(trips.major(), 1);
        assert_eq!(trips.rules.len(), 1);
        assert!(trips.partition.is_some());
        assert_eq!(trips.schema().fields().len(), 19);
    }

    #[test]
    fn broken_contracts_name_the_field_and_reason() {
        let base = "[dataset]\nname = \"d\"\nversion = \"1.0.0\"\n";
        let cases = [
            ("[dataset]\nname = \"d\"\nversion = \"one\"\n[[fields]]\nname=\"a\"\ntype=\"int\"\n", "dataset.version"),
            (&format!("{base}[[fields]]\nname=\"a\"\ntype=\"integer\"\n"), "field \"a\""),
            (&format!("{base}[[fields]]\nname=\"a\"\ntype=\"int\"\n[[fields]]\nname=\"a\"\ntype=\"int\"\n"), "defined twice"),
            (&format!("{base}[[fields]]\nname=\"t\"\ntype=\"timestamp\"\n"), "needs a format"),
            (&format!("{base}[[fields]]\nname=\"t\"\ntype=\"timestamp\"\nformat=\"%Y\"\nzone=\"Mars/Olympus\"\n"), "zone"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"decimal\"\nprecision=40\n"), "precision"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"int\"\nmin=5\nmax=1\n"), "min is greater"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"int\"\nmin=\"abc\"\n"), "min"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"float\"\nallowed=[1.0]\n"), "allowed"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"string\"\npattern=\"(\"\n"), "pattern"),
            (&format!("{base}natural_key=[\"nope\"]\n[[fields]]\nname=\"x\"\ntype=\"int\"\n"), "unknown field \"nope\""),
            (&format!("{base}partition={{field=\"x\"}}\n[[fields]]\nname=\"x\"\ntype=\"int\"\n"), "timestamp or date"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"int\"\nunits=\"m\"\n"), "units"),
            (&format!("{base}[[fields]]\nname=\"x\"\ntype=\"int\"\n[quality.max_null_ratio]\ny=0.1\n"), "unknown field \"y\""),
        ];
        for (text, want) in cases {
            let err = Contract::parse("test.toml", text).unwrap_err().to_string();
            assert!(err.contains("contract test.toml"), "names the file: {err}");
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b"-7"), Some(-7));
        assert_eq!(parse_int(b"2.0"), Some(2));
        assert_eq!(parse_int(b"2.5"), None);
        assert_eq!(parse_int(b"1e3"), None);
        assert_eq!(parse_decimal(b"12.34", 10, 2), Some(1234));
        assert_eq!(parse_decimal(b"-0.5", 10, 2), Some(-50));
        assert_eq!(parse_decimal(b"7", 10, 2), Some(700));
        assert_eq!(parse_decimal(b"1.500", 10, 2), Some(150));
        assert_eq!(parse_decimal(b"1.555", 10, 2), None, "too many digits");
        assert_eq!(
            parse_decimal(b"123456789.00", 10, 2),
            None,
            "too many for precision"
        );
        assert_eq!(parse_decimal(b"abc", 10, 2), None);
        let t = parse_timestamp(b"2024-01-15 10:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            t,
            chrono::NaiveDate::from_ymd_opt(2024, 1, 15)
                .unwrap()
                .and_hms_opt(10, 30, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        );
        assert_eq!(
            parse_timestamp(b"2024-02-30 10:30:00", "%Y-%m-%d %H:%M:%S"),
            None
        );
        assert_eq!(
            parse_timestamp(b"2024/01/15 10:30:00", "%Y-%m-%d %H:%M:%S"),
            None
        );
        assert_eq!(
            parse_timestamp(b"15.01.2024 10:30", "%d.%m.%Y %H:%M"),
            Some(t)
        );
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (1969, 12, 31)] {
            let want = (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days();
            assert_eq!(days_from_civil(y as i64, m as i64, d as i64), want);
        }
    }

    #[test]
    fn constraints_give_quarantine_reasons() {
        let reg = Registry::embedded().unwrap();
        let trips = reg.get("trips").unwrap();
        let f = |n: &str| &trips.fields[trips.field_index(n).unwrap()];
        assert!(f("fare_amount")
            .parse_checked(b"-3.50")
            .unwrap_err()
            .contains("below the minimum"));
        assert!(f("PULocationID")
            .parse_checked(b"999")
            .unwrap_err()
            .contains("above the maximum"));
        assert!(f("payment_type")
            .parse_checked(b"9")
            .unwrap_err()
            .contains("not an allowed value"));
        assert!(f("VendorID")
            .parse_checked(b"")
            .unwrap_err()
            .contains("missing value"));
        assert!(f("trip_distance")
            .parse_checked(b"abc")
            .unwrap_err()
            .contains("not a number"));
        assert!(f("store_and_fwd_flag")
            .parse_checked(b"X")
            .unwrap_err()
            .contains("not an allowed value"));
        assert!(f("store_and_fwd_flag")
            .parse_checked(&[0xff, 0xfe])
            .unwrap_err()
            .contains("UTF-8"));
        assert_eq!(
            f("passenger_count").parse_checked(b"").unwrap(),
            Value::Null
        );
        assert_eq!(
            f("passenger_count").parse_checked(b"2.0").unwrap(),
            Value::Int(2)
        );
    }
}
