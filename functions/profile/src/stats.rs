//! Column statistics over a spooled Parquet file, on a blocking thread, in
//! two streaming passes: the first gathers counts, min/max, mean and
//! variance (Welford), distinct counts (HyperLogLog), quantiles (t-digest),
//! lengths and frequent-value candidates (Misra–Gries); the second fills
//! equal-width histograms between the now-known min and max and counts the
//! frequent-value candidates exactly. Memory per column is a fixed-size
//! sketch, whatever the row count. Bookkeeping columns (`_record_id`,
//! `_source`, `_line`) are not profiled.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use sluice::error::ErrorKind;
use sluice::{Error, Result};

use crate::report::{
    BoolProfile, ColumnProfile, Histogram, NumericProfile, Quantiles, TextProfile, TopValue,
};
use crate::sketch::frequent::{top, FrequentItems};
use crate::sketch::hll::HyperLogLog;
use crate::sketch::tdigest::TDigest;
use crate::sketch::{hash_bytes, hash_f64};

/// Rows per batch read.
const BATCH_ROWS: usize = 8 * 1024;
/// Histogram bins.
pub const HISTOGRAM_BINS: usize = 20;
/// Frequent values reported per text column.
pub const TOP_VALUES: usize = 10;

/// The measured part of a profile.
#[derive(Debug, Clone)]
pub struct FileStats {
    /// Rows in the file.
    pub row_count: u64,
    /// Per-column statistics, in file order.
    pub columns: Vec<ColumnProfile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Decimal,
    Timestamp,
    Date,
    Bool,
    Text,
    Other,
}

impl Kind {
    fn of(t: &DataType) -> Self {
        match t {
            t if t.is_integer() => Kind::Int,
            t if t.is_floating() => Kind::Float,
            DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => Kind::Decimal,
            DataType::Timestamp(_, _) => Kind::Timestamp,
            DataType::Date32 | DataType::Date64 => Kind::Date,
            DataType::Boolean => Kind::Bool,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
            _ => Kind::Other,
        }
    }

    fn name(self, t: &DataType) -> String {
        match self {
            Kind::Int => "int".into(),
            Kind::Float => "float".into(),
            Kind::Decimal => "decimal".into(),
            Kind::Timestamp => "timestamp".into(),
            Kind::Date => "date".into(),
            Kind::Bool => "bool".into(),
            Kind::Text => "string".into(),
            Kind::Other => t.to_string(),
        }
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            Kind::Int | Kind::Float | Kind::Decimal | Kind::Timestamp | Kind::Date
        )
    }
}

struct NumericAcc {
    count: u64,
    non_finite: u64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    hll: HyperLogLog,
    digest: TDigest,
    histogram: Vec<u64>,
}

impl NumericAcc {
    fn new() -> Self {
        NumericAcc {
            count: 0,
            non_finite: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            hll: HyperLogLog::new(),
            digest: TDigest::default(),
            histogram: Vec::new(),
        }
    }

    fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.hll.insert_hash(hash_f64(x));
        self.digest.add(x);
    }

    fn bins(&self) -> usize {
        if self.max > self.min {
            HISTOGRAM_BINS
        } else {
            1
        }
    }

    fn bin(&mut self, x: f64) {
        if !x.is_finite() || self.count == 0 {
            return;
        }
        let bins = self.bins();
        if self.histogram.is_empty() {
            self.histogram = vec![0; bins];
        }
        let i = if bins == 1 {
            0
        } else {
            (((x - self.min) / (self.max - self.min)) * bins as f64) as usize
        };
        if let Some(c) = self.histogram.get_mut(i.min(bins - 1)) {
            *c += 1;
        }
    }

    fn finish(mut self, kind: Kind) -> NumericProfile {
        let some = self.count > 0;
        let quantiles = some
            .then(|| {
                Some(Quantiles {
                    p01: self.digest.quantile(0.01)?,
                    p25: self.digest.quantile(0.25)?,
                    p50: self.digest.quantile(0.50)?,
                    p75: self.digest.quantile(0.75)?,
                    p99: self.digest.quantile(0.99)?,
                })
            })
            .flatten();
        let time = |us: f64| -> Option<String> {
            let t = chrono::DateTime::from_timestamp_micros(us as i64)?;
            Some(match kind {
                Kind::Date => t.format("%Y-%m-%d").to_string(),
                _ => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            })
        };
        let temporal = matches!(kind, Kind::Timestamp | Kind::Date);
        NumericProfile {
            count: self.count,
            non_finite: self.non_finite,
            min: some.then_some(self.min),
            max: some.then_some(self.max),
            mean: some.then_some(self.mean),
            stddev: (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).sqrt()),
            distinct: (self.hll.estimate().round() as u64).min(self.count),
            quantiles,
            histogram: some.then(|| Histogram {
                lower: self.min,
                upper: self.max,
                counts: if self.histogram.is_empty() {
                    vec![0; self.bins()]
                } else {
                    std::mem::take(&mut self.histogram)
                },
            }),
            min_time: if temporal && some {
                time(self.min)
            } else {
                None
            },
            max_time: if temporal && some {
                time(self.max)
            } else {
                None
            },
        }
    }
}

struct TextAcc {
    count: u64,
    hll: HyperLogLog,
    frequent: Option<FrequentItems>,
    exact: HashMap<String, u64>,
    min_len: Option<u64>,
    max_len: Option<u64>,
}

impl TextAcc {
    fn new() -> Self {
        TextAcc {
            count: 0,
            hll: HyperLogLog::new(),
            frequent: Some(FrequentItems::default()),
            exact: HashMap::new(),
            min_len: None,
            max_len: None,
        }
    }

    fn add(&mut self, v: &str) {
        self.count += 1;
        self.hll.insert_hash(hash_bytes(v.as_bytes()));
        if let Some(f) = self.frequent.as_mut() {
            f.add(v);
        }
        let len = v.chars().count() as u64;
        self.min_len = Some(self.min_len.map_or(len, |m| m.min(len)));
        self.max_len = Some(self.max_len.map_or(len, |m| m.max(len)));
    }

    /// Between the passes: keep the candidates, to be counted exactly.
    fn start_recount(&mut self) {
        if let Some(f) = self.frequent.take() {
            self.exact = f.into_candidates();
        }
    }

    fn recount(&mut self, v: &str) {
        if let Some(c) = self.exact.get_mut(v) {
            *c += 1;
        }
    }

    fn finish(self) -> TextProfile {
        TextProfile {
            count: self.count,
            distinct: (self.hll.estimate().round() as u64).min(self.count),
            min_length: self.min_len,
            max_length: self.max_len,
            top_values: top(self.exact, TOP_VALUES)
                .into_iter()
                .map(|(value, count)| TopValue { value, count })
                .collect(),
        }
    }
}

enum Acc {
    Numeric(Box<NumericAcc>),
    Text(Box<TextAcc>),
    Bool(BoolProfile),
    Nothing,
}

struct Column {
    /// Index in the file's Arrow schema.
    index: usize,
    name: String,
    kind: Kind,
    type_name: String,
    nulls: u64,
    acc: Acc,
}

/// A temporal column as f64 microseconds since the epoch; any other numeric
/// column as f64 (decimals divided by 10^scale).
fn as_f64(col: &ArrayRef, kind: Kind) -> std::result::Result<Float64Array, ArrowError> {
    let factor = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => 1e6,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1e3,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1.0,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1e-3,
        DataType::Date32 => 86_400e6,
        DataType::Date64 => 1e3,
        _ => {
            debug_assert!(!matches!(kind, Kind::Timestamp | Kind::Date));
            return sluice::columns::to_f64(col);
        }
    };
    Ok(sluice::columns::to_i64(col)?.unary::<_, Float64Type>(|v| v as f64 * factor))
}

fn as_text(col: &ArrayRef) -> std::result::Result<StringArray, ArrowError> {
    sluice::columns::to_utf8(col)
}

fn internal(location: &str, e: ArrowError) -> Error {
    Error::other(
        ErrorKind::Internal,
        format!("{location}: cannot profile: {e}"),
        Some(Box::new(e)),
    )
}

/// Read `file` in batches of the columns at `indices` (file schema indices,
/// ascending), calling `each` with every batch's columns in that order.
fn scan(
    file: &std::fs::File,
    location: &str,
    indices: &[usize],
    mut each: impl FnMut(&[ArrayRef]) -> Result<()>,
) -> Result<()> {
    let corrupt = |e: parquet::errors::ParquetError| {
        Error::invalid_input(location, format!("not a readable Parquet file: {e}"))
    };
    let reopened = file.try_clone().map_err(|e| {
        Error::other(
            ErrorKind::Transient,
            format!("{location}: cannot reopen the spooled file"),
            Some(Box::new(e)),
        )
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(reopened).map_err(corrupt)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
    for batch in reader {
        let batch = batch
            .map_err(|e| Error::invalid_input(location, format!("corrupt Parquet data: {e}")))?;
        each(batch.columns())?;
    }
    Ok(())
}

/// Profile every data column of a spooled Parquet file.
pub fn profile_file(file: std::fs::File, location: &str) -> Result<FileStats> {
    let corrupt = |e: parquet::errors::ParquetError| {
        Error::invalid_input(location, format!("not a readable Parquet file: {e}"))
    };
    let reopened = file.try_clone().map_err(|e| {
        Error::other(
            ErrorKind::Transient,
            format!("{location}: cannot reopen the spooled file"),
            Some(Box::new(e)),
        )
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(reopened).map_err(corrupt)?;
    let row_count = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let mut columns: Vec<Column> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.name().starts_with('_'))
        .map(|(index, f)| {
            let kind = Kind::of(f.data_type());
            Column {
                index,
                name: f.name().clone(),
                kind,
                type_name: kind.name(f.data_type()),
                nulls: 0,
                acc: match kind {
                    k if k.numeric() => Acc::Numeric(Box::new(NumericAcc::new())),
                    Kind::Text => Acc::Text(Box::new(TextAcc::new())),
                    Kind::Bool => Acc::Bool(BoolProfile {
                        true_count: 0,
                        false_count: 0,
                    }),
                    _ => Acc::Nothing,
                },
            }
        })
        .collect();
    drop(builder);

    // Pass 1.
    let indices: Vec<usize> = columns.iter().map(|c| c.index).collect();
    let mut rows_seen = 0u64;
    scan(&file, location, &indices, |arrays| {
        rows_seen += arrays.first().map_or(0, |a| a.len() as u64);
        for (col, array) in columns.iter_mut().zip(arrays) {
            col.nulls += array.null_count() as u64;
            match &mut col.acc {
                Acc::Numeric(acc) => {
                    for v in as_f64(array, col.kind)
                        .map_err(|e| internal(location, e))?
                        .iter()
                        .flatten()
                    {
                        acc.add(v);
                    }
                }
                Acc::Text(acc) => {
                    for v in as_text(array)
                        .map_err(|e| internal(location, e))?
                        .iter()
                        .flatten()
                    {
                        acc.add(v);
                    }
                }
                Acc::Bool(b) => {
                    let a = array.as_boolean();
                    b.true_count += a.true_count() as u64;
                    b.false_count += a.false_count() as u64;
                }
                Acc::Nothing => {}
            }
        }
        Ok(())
    })?;
    if !columns.is_empty() && rows_seen != row_count {
        return Err(Error::invalid_input(
            location,
            format!("the footer says {row_count} rows but {rows_seen} were read"),
        ));
    }

    // Pass 2: histograms and exact counts of frequent-value candidates.
    let mut second: Vec<usize> = Vec::new();
    for (i, col) in columns.iter_mut().enumerate() {
        match &mut col.acc {
            Acc::Numeric(acc) if acc.count > 0 => second.push(i),
            Acc::Text(acc) if acc.count > 0 => {
                acc.start_recount();
                second.push(i);
            }
            _ => {}
        }
    }
    if !second.is_empty() {
        let indices: Vec<usize> = second.iter().map(|&i| columns[i].index).collect();
        scan(&file, location, &indices, |arrays| {
            for (&i, array) in second.iter().zip(arrays) {
                let col = &mut columns[i];
                match &mut col.acc {
                    Acc::Numeric(acc) => {
                        for v in as_f64(array, col.kind)
                            .map_err(|e| internal(location, e))?
                            .iter()
                            .flatten()
                        {
                            acc.bin(v);
                        }
                    }
                    Acc::Text(acc) => {
                        for v in as_text(array)
                            .map_err(|e| internal(location, e))?
                            .iter()
                            .flatten()
                        {
                            acc.recount(v);
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
    }

    let ratio = |nulls: u64| {
        if row_count == 0 {
            0.0
        } else {
            nulls as f64 / row_count as f64
        }
    };
    let columns = columns
        .into_iter()
        .map(|c| {
            let mut p = ColumnProfile {
                name: c.name,
                ty: c.type_name,
                null_count: c.nulls,
                null_ratio: ratio(c.nulls),
                numeric: None,
                text: None,
                boolean: None,
            };
            match c.acc {
                Acc::Numeric(acc) => p.numeric = Some(acc.finish(c.kind)),
                Acc::Text(acc) => p.text = Some(acc.finish()),
                Acc::Bool(b) => p.boolean = Some(b),
                Acc::Nothing => {}
            }
            p
        })
        .collect();
    Ok(FileStats { row_count, columns })
}
