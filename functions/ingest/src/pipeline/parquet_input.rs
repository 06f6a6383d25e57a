//! Parquet landing files: columns are matched to the contract by name, and
//! every row gets the checks a CSV or JSON row gets (type, null, min, max,
//! allowed, pattern, rules), so a bad row is quarantined, not the file.
//!
//! - A typed column is read as its type: integers (any width) for `int`;
//!   floats or integers for `float`; booleans; decimals of any scale for
//!   `decimal` (rescaled exactly: a value with more digits after the point
//!   than the contract's scale, or more digits than its precision, is a bad
//!   row); timestamps of any unit for `timestamp` (a timestamp without a
//!   time zone is in the contract's `zone`, like text); Date32/Date64 for
//!   `date`.
//! - A text column is parsed as text is in CSV (so timestamps written as
//!   strings work).
//! - A required contract column missing from the file, a column whose type
//!   cannot hold the contract's, or a column name given twice is the whole
//!   file's problem: DLQ.
//! - A row's `line` in the quarantine is its row number (1-based), and its
//!   `raw` text is the row as a JSON object of displayed values.
//!
//! The file is spooled to ephemeral storage first: a Parquet reader needs
//! the footer, at the end, before the first row.

use std::fs::File;
use std::io::{BufRead, Write};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow::util::display::array_value_to_string;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use sluice::contract::{Field, FieldType, ValueRef};
use sluice::Error;

use super::{input_error, read_error, Pipeline, Sink};
use crate::columns::Column;
use crate::records::{cap_raw, RAW_CAP};

/// Rows per batch read.
const READ_BATCH_ROWS: usize = 8 * 1024;

fn is_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether a column of type `t` can hold values of the contract's type.
fn holds(ty: &FieldType, t: &DataType) -> bool {
    is_text(t)
        || match ty {
            FieldType::String => false,
            FieldType::Int => is_int(t),
            FieldType::Float => {
                is_int(t) || matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
            }
            FieldType::Bool => *t == DataType::Boolean,
            FieldType::Decimal { .. } => is_int(t) || matches!(t, DataType::Decimal128(_, _)),
            FieldType::Timestamp { .. } => matches!(t, DataType::Timestamp(_, _)),
            FieldType::Date { .. } => matches!(t, DataType::Date32 | DataType::Date64),
        }
}

fn int_at(col: &ArrayRef, r: usize) -> Option<i64> {
    Some(match col.data_type() {
        DataType::Int8 => i64::from(col.as_primitive::<Int8Type>().value(r)),
        DataType::Int16 => i64::from(col.as_primitive::<Int16Type>().value(r)),
        DataType::Int32 => i64::from(col.as_primitive::<Int32Type>().value(r)),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(r),
        DataType::UInt8 => i64::from(col.as_primitive::<UInt8Type>().value(r)),
        DataType::UInt16 => i64::from(col.as_primitive::<UInt16Type>().value(r)),
        DataType::UInt32 => i64::from(col.as_primitive::<UInt32Type>().value(r)),
        DataType::UInt64 => i64::try_from(col.as_primitive::<UInt64Type>().value(r)).ok()?,
        _ => return None,
    })
}

/// A decimal's unscaled value at `scale`, exactly, within `precision` digits.
fn rescale(v: i128, from: i8, precision: u8, scale: i8) -> Option<i128> {
    Rescale::new(from, precision, scale)?.apply(v)
}

/// [`rescale`] from one scale to another, its powers of ten worked out
/// once for a column rather than for each value.
#[derive(Clone, Copy)]
struct Rescale {
    /// Multiply by this (`shift` ≥ 0) or divide exactly by it.
    factor: i128,
    up: bool,
    /// The magnitude a value must stay under: 10^precision.
    limit: u128,
}

impl Rescale {
    /// `None` when no value can be rescaled (a power of ten past i128).
    fn new(from: i8, precision: u8, scale: i8) -> Option<Self> {
        let shift = i32::from(scale) - i32::from(from);
        Some(Rescale {
            factor: 10i128.checked_pow(shift.unsigned_abs())?,
            up: shift >= 0,
            limit: 10i128.checked_pow(u32::from(precision))?.unsigned_abs(),
        })
    }

    #[inline]
    fn apply(self, v: i128) -> Option<i128> {
        let v = if self.up {
            if self.factor == 1 {
                v
            } else {
                v.checked_mul(self.factor)?
            }
        } else {
            if v % self.factor != 0 {
                return None;
            }
            v / self.factor
        };
        (v.unsigned_abs() < self.limit).then_some(v)
    }
}

/// The value of `col` at row `r` for `field`, by type only (no checks).
fn value_at<'a>(col: &'a ArrayRef, r: usize, field: &Field) -> Result<ValueRef<'a>, String> {
    if col.is_null(r) {
        return Ok(ValueRef::Null);
    }
    let t = col.data_type();
    let text = || array_value_to_string(col, r).unwrap_or_default();
    let not = |what: &str| format!("{}: {:?} is not {what}", field.name, text());
    match t {
        DataType::Utf8 => return field.parse_ref(col.as_string::<i32>().value(r).as_bytes()),
        DataType::LargeUtf8 => return field.parse_ref(col.as_string::<i64>().value(r).as_bytes()),
        DataType::Utf8View => return field.parse_ref(col.as_string_view().value(r).as_bytes()),
        _ => {}
    }
    Ok(match &field.ty {
        FieldType::Int => ValueRef::Int(int_at(col, r).ok_or_else(|| not("an integer"))?),
        FieldType::Float => {
            let f = match t {
                DataType::Float16 => f64::from(col.as_primitive::<Float16Type>().value(r)),
                DataType::Float32 => f64::from(col.as_primitive::<Float32Type>().value(r)),
                DataType::Float64 => col.as_primitive::<Float64Type>().value(r),
                _ => int_at(col, r).ok_or_else(|| not("a number"))? as f64,
            };
            if !f.is_finite() {
                return Err(not("a finite number"));
            }
            ValueRef::Float(f)
        }
        FieldType::Bool => ValueRef::Bool(col.as_boolean().value(r)),
        FieldType::Decimal { precision, scale } => {
            let (v, from) = match t {
                DataType::Decimal128(_, s) => (col.as_primitive::<Decimal128Type>().value(r), *s),
                _ => (
                    i128::from(int_at(col, r).ok_or_else(|| not("an integer"))?),
                    0,
                ),
            };
            ValueRef::Decimal(
                rescale(v, from, *precision, *scale)
                    .ok_or_else(|| not(&format!("a decimal({precision},{scale})")))?,
            )
        }
        FieldType::Timestamp { offset_secs, .. } => {
            let DataType::Timestamp(unit, tz) = t else {
                return Err(not("a timestamp"));
            };
            let micros = match unit {
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .value(r)
                    .checked_mul(1_000_000),
                TimeUnit::Millisecond => col
                    .as_primitive::<TimestampMillisecondType>()
                    .value(r)
                    .checked_mul(1_000),
                TimeUnit::Microsecond => {
                    Some(col.as_primitive::<TimestampMicrosecondType>().value(r))
                }
                TimeUnit::Nanosecond => Some(
                    col.as_primitive::<TimestampNanosecondType>()
                        .value(r)
                        .div_euclid(1_000),
                ),
            }
            .ok_or_else(|| not("a timestamp"))?;
            // Without a zone the clock is the source's, as for text. (INT96
            // timestamps, which Spark and Hive write as UTC instants, come
            // without a zone too: give such a contract field `zone = "+00:00"`.)
            let utc = match tz {
                Some(_) => Some(micros),
                None => micros.checked_sub(i64::from(*offset_secs) * 1_000_000),
            }
            .ok_or_else(|| not("a timestamp"))?;
            ValueRef::Timestamp(utc)
        }
        FieldType::Date { .. } => ValueRef::Date(match t {
            DataType::Date32 => col.as_primitive::<Date32Type>().value(r),
            DataType::Date64 => {
                let days = col
                    .as_primitive::<Date64Type>()
                    .value(r)
                    .div_euclid(86_400_000);
                i32::try_from(days).map_err(|_| not("a date"))?
            }
            _ => return Err(not("a date")),
        }),
        FieldType::String => return Err(not("text")),
    })
}

/// Check and append the value of `c` at row `r` through the general path
/// ([`value_at`], then the field's checks): what a [`Lane`] does for the
/// rows it could not convert, and the reference it is tested against.
fn push_general(
    c: Option<&ArrayRef>,
    r: usize,
    field: &Field,
    col: &mut Column,
) -> Result<(), String> {
    let v = match c {
        Some(c) => value_at(c, r, field)?,
        None => ValueRef::Null,
    };
    col.push_checked(field, v)
}

/// A batch's input column for one contract field, converted to the field's
/// type a column at a time (not a value at a time through [`value_at`]'s
/// type dispatch). Rows whose value does not convert (out of range, not
/// finite, more digits than the decimal holds) are marked and go through
/// [`push_general`], which words the reason.
struct Lane<'a> {
    col: Option<&'a ArrayRef>,
    nulls: Option<arrow::buffer::NullBuffer>,
    values: LaneValues<'a>,
    /// Rows that did not convert.
    bad: Vec<bool>,
}

enum LaneValues<'a> {
    /// Not in the file: null in every row.
    Absent,
    /// Text, parsed as CSV text is.
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
    /// A type this lane does not convert: every row through `push_general`.
    General,
    Int(Vec<i64>),
    Float(Vec<f64>),
    Dec(Vec<i128>),
    Ts(Vec<i64>),
    Date(Vec<i32>),
    Bool(&'a arrow::array::BooleanArray),
}

/// A primitive column's values mapped by `f` (`None`: the row is bad).
fn convert<T: arrow::datatypes::ArrowPrimitiveType, O: Default>(
    col: &ArrayRef,
    bad: &mut [bool],
    f: impl Fn(T::Native) -> Option<O>,
) -> Vec<O> {
    col.as_primitive::<T>()
        .values()
        .iter()
        .zip(bad.iter_mut())
        .map(|(&v, bad)| {
            f(v).unwrap_or_else(|| {
                *bad = true;
                O::default()
            })
        })
        .collect()
}

/// An integer column's values as i64 (`None` for a UInt64 past i64::MAX).
fn ints(col: &ArrayRef, bad: &mut [bool]) -> Option<Vec<i64>> {
    Some(match col.data_type() {
        DataType::Int8 => convert::<Int8Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::Int16 => convert::<Int16Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::Int32 => convert::<Int32Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::Int64 => col.as_primitive::<Int64Type>().values().to_vec(),
        DataType::UInt8 => convert::<UInt8Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::UInt16 => convert::<UInt16Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::UInt32 => convert::<UInt32Type, _>(col, bad, |v| Some(i64::from(v))),
        DataType::UInt64 => convert::<UInt64Type, _>(col, bad, |v| i64::try_from(v).ok()),
        _ => return None,
    })
}

impl<'a> Lane<'a> {
    fn new(col: Option<&'a ArrayRef>, field: &Field) -> Self {
        let Some(c) = col else {
            return Lane {
                col,
                nulls: None,
                values: LaneValues::Absent,
                bad: Vec::new(),
            };
        };
        let t = c.data_type();
        let mut bad = vec![false; c.len()];
        let values = match t {
            DataType::Utf8 => LaneValues::Utf8(c.as_string::<i32>()),
            DataType::LargeUtf8 => LaneValues::LargeUtf8(c.as_string::<i64>()),
            DataType::Utf8View => LaneValues::Utf8View(c.as_string_view()),
            _ => lane_values(c, t, field, &mut bad).unwrap_or(LaneValues::General),
        };
        // Null slots hold arbitrary values: they are not bad rows.
        let nulls = c.nulls().cloned();
        if let Some(nulls) = &nulls {
            for (b, valid) in bad.iter_mut().zip(nulls.iter()) {
                *b &= valid;
            }
        }
        Lane {
            col,
            nulls,
            values,
            bad,
        }
    }

    /// Check and append row `r`'s value to `col`, as [`push_general`] does.
    #[inline]
    fn push_row(&self, r: usize, field: &Field, col: &mut Column) -> Result<(), String> {
        let c = match (&self.values, self.col) {
            (LaneValues::Absent, _) | (_, None) => return col.push_checked(field, ValueRef::Null),
            (LaneValues::General, Some(c)) => return push_general(Some(c), r, field, col),
            (_, Some(c)) => c,
        };
        if self.nulls.as_ref().is_some_and(|n| n.is_null(r)) {
            return col.push_checked(field, ValueRef::Null);
        }
        if self.bad[r] {
            return push_general(Some(c), r, field, col);
        }
        let v = match &self.values {
            LaneValues::Utf8(a) => return col.parse_push(field, a.value(r).as_bytes()),
            LaneValues::LargeUtf8(a) => return col.parse_push(field, a.value(r).as_bytes()),
            LaneValues::Utf8View(a) => return col.parse_push(field, a.value(r).as_bytes()),
            LaneValues::Int(v) => ValueRef::Int(v[r]),
            LaneValues::Float(v) => ValueRef::Float(v[r]),
            LaneValues::Dec(v) => ValueRef::Decimal(v[r]),
            LaneValues::Ts(v) => ValueRef::Timestamp(v[r]),
            LaneValues::Date(v) => ValueRef::Date(v[r]),
            LaneValues::Bool(b) => ValueRef::Bool(b.value(r)),
            LaneValues::Absent | LaneValues::General => ValueRef::Null,
        };
        col.push_checked(field, v)
    }
}

/// The values of typed column `c` (of type `t`) as `field`'s type, marking
/// in `bad` the rows that do not convert; `None` where `value_at` decides
/// every row (a type the contract's cannot take: each row says why).
fn lane_values<'a>(
    c: &'a ArrayRef,
    t: &DataType,
    field: &Field,
    bad: &mut [bool],
) -> Option<LaneValues<'a>> {
    Some(match &field.ty {
        FieldType::Int => LaneValues::Int(ints(c, bad)?),
        FieldType::Float => {
            let finite = |x: f64| x.is_finite().then_some(x);
            LaneValues::Float(match t {
                DataType::Float16 => convert::<Float16Type, _>(c, bad, |v| finite(f64::from(v))),
                DataType::Float32 => convert::<Float32Type, _>(c, bad, |v| finite(f64::from(v))),
                DataType::Float64 => convert::<Float64Type, _>(c, bad, finite),
                _ => ints(c, bad)?.into_iter().map(|x| x as f64).collect(),
            })
        }
        FieldType::Bool if *t == DataType::Boolean => LaneValues::Bool(c.as_boolean()),
        FieldType::Decimal { precision, scale } => {
            let (p, s) = (*precision, *scale);
            LaneValues::Dec(match t {
                DataType::Decimal128(_, from) => {
                    let to = Rescale::new(*from, p, s);
                    convert::<Decimal128Type, _>(c, bad, |v| to?.apply(v))
                }
                _ => {
                    let to = Rescale::new(0, p, s);
                    let ints = ints(c, bad)?;
                    ints.into_iter()
                        .zip(bad.iter_mut())
                        .map(|(x, bad)| {
                            to.and_then(|to| to.apply(i128::from(x)))
                                .unwrap_or_else(|| {
                                    *bad = true;
                                    0
                                })
                        })
                        .collect()
                }
            })
        }
        FieldType::Timestamp { offset_secs, .. } => {
            let DataType::Timestamp(unit, tz) = t else {
                return None;
            };
            let shift = if tz.is_some() {
                0
            } else {
                i64::from(*offset_secs) * 1_000_000
            };
            let utc = move |micros: Option<i64>| micros?.checked_sub(shift);
            LaneValues::Ts(match unit {
                TimeUnit::Second => {
                    convert::<TimestampSecondType, _>(c, bad, |v| utc(v.checked_mul(1_000_000)))
                }
                TimeUnit::Millisecond => {
                    convert::<TimestampMillisecondType, _>(c, bad, |v| utc(v.checked_mul(1_000)))
                }
                TimeUnit::Microsecond => {
                    convert::<TimestampMicrosecondType, _>(c, bad, |v| utc(Some(v)))
                }
                TimeUnit::Nanosecond => convert::<TimestampNanosecondType, _>(c, bad, |v| {
                    utc(Some(v.div_euclid(1_000)))
                }),
            })
        }
        FieldType::Date { .. } => LaneValues::Date(match t {
            DataType::Date32 => c.as_primitive::<Date32Type>().values().to_vec(),
            DataType::Date64 => {
                convert::<Date64Type, _>(c, bad, |v| i32::try_from(v.div_euclid(86_400_000)).ok())
            }
            _ => return None,
        }),
        FieldType::Bool | FieldType::String => return None,
    })
}

/// The row as the quarantine shows it: a JSON object of displayed values.
fn raw_row(names: &[String], cols: &[Option<ArrayRef>], r: usize) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    for (name, col) in names.iter().zip(cols) {
        let v = match col {
            Some(c) if c.is_valid(r) => {
                serde_json::Value::String(array_value_to_string(c, r).unwrap_or_default())
            }
            _ => serde_json::Value::Null,
        };
        obj.insert(name.clone(), v);
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// Copy the input to the spool file. A read error is the input's (or the
/// store's: it keeps its kind); a write error is ephemeral storage running
/// out, which is not the file's fault.
fn spool(input: &mut dyn BufRead, file: &mut File, uri: &str) -> Result<u64, Error> {
    let mut size = 0u64;
    loop {
        let buf = input
            .fill_buf()
            .map_err(|e| read_error(uri, "reading", &e))?;
        if buf.is_empty() {
            return Ok(size);
        }
        file.write_all(buf).map_err(|e| {
            Error::other(
                sluice::ErrorKind::Transient,
                format!(
                    "{uri}: spooling the Parquet file to ephemeral storage after {size} bytes: {e} (a larger ephemeral storage, or a smaller SLUICE_MAX_OBJECT_BYTES)"
                ),
                None,
            )
        })?;
        let n = buf.len();
        size += n as u64;
        input.consume(n);
    }
}

impl Pipeline {
    /// Ingest a Parquet file; returns the bytes spooled.
    pub(super) fn parquet(
        &self,
        mut input: Box<dyn BufRead>,
        sink: &mut Sink,
    ) -> Result<u64, Error> {
        let uri = &self.source_uri;
        let mut file: File = tempfile::tempfile().map_err(|e| {
            Error::other(
                sluice::ErrorKind::Transient,
                format!("{uri}: spooling the Parquet file to ephemeral storage: {e}"),
                None,
            )
        })?;
        let size = spool(&mut input, &mut file, uri)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| input_error(uri, format!("not a readable Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        let fields = &self.contract.fields;
        let names: Vec<&str> = schema.fields().iter().map(|c| c.name().as_str()).collect();
        let cols = self.match_columns(&names, "the file", "columns")?;
        let mut wrong = Vec::new();
        let mut roots = Vec::new();
        for (f, i) in fields.iter().zip(&cols) {
            if let Some(i) = *i {
                let t = schema.field(i).data_type();
                if !holds(&f.ty, t) {
                    wrong.push(format!("{} is {t}", f.name));
                }
                roots.push(i);
            }
        }
        if !wrong.is_empty() {
            return Err(input_error(
                uri,
                format!(
                    "column(s) of a type that cannot hold the contract's: {}",
                    wrong.join("; ")
                ),
            ));
        }
        roots.sort_unstable();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| input_error(uri, format!("not a readable Parquet file: {e}")))?;
        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
        let mut line = 0u64;
        for batch in reader {
            let batch =
                batch.map_err(|e| input_error(uri, format!("reading a Parquet row group: {e}")))?;
            let cols: Vec<Option<ArrayRef>> = fields
                .iter()
                .map(|f| batch.column_by_name(&f.name).cloned())
                .collect();
            let lanes: Vec<Lane> = fields
                .iter()
                .zip(&cols)
                .map(|(f, c)| Lane::new(c.as_ref(), f))
                .collect();
            for r in 0..batch.num_rows() {
                line += 1;
                sink.stats.rows_in += 1;
                let verdict =
                    self.validate_into(sink, |i, field, col| lanes[i].push_row(r, field, col));
                match verdict {
                    Ok(()) => sink.accept(line)?,
                    Err(reasons) => {
                        let raw = raw_row(&names, &cols, r);
                        let cut = raw.len() > self.max_record_bytes;
                        let raw = if cut { cap_raw(&raw, RAW_CAP) } else { &raw };
                        sink.reject(line, raw, &reasons, cut)?;
                    }
                }
            }
        }
        if line == 0 {
            return Err(input_error(uri, "empty file (a Parquet file with no rows)"));
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Arrow type a field's column may have, with edge values: each
    /// row a lane appends (or refuses, with the reason) as the general path
    /// does, value by value.
    #[test]
    fn a_lane_agrees_with_the_general_path_on_every_type() {
        use arrow::array::*;
        use std::sync::Arc;
        let contract = sluice::contract::Contract::parse("mix.toml", crate::columns::tests::FIELDS)
            .expect("parses");
        let ints: Vec<Option<i64>> =
            vec![Some(1), Some(2), None, Some(-4), Some(9), Some(10), Some(0)];
        let ints_of = |ty: &DataType| -> ArrayRef {
            let a: ArrayRef = Arc::new(Int64Array::from(ints.clone()));
            arrow::compute::cast(&a, ty).unwrap_or_else(|_| {
                // Unsigned types: the negative value becomes null.
                let pos: Vec<Option<i64>> = ints.iter().map(|v| v.filter(|x| *x >= 0)).collect();
                arrow::compute::cast(&(Arc::new(Int64Array::from(pos)) as ArrayRef), ty)
                    .expect("casts")
            })
        };
        let mut columns: Vec<ArrayRef> = [
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
        ]
        .iter()
        .map(ints_of)
        .collect();
        columns.push(Arc::new(UInt64Array::from(vec![
            Some(u64::MAX),
            Some(3),
            None,
            Some(i64::MAX as u64 + 1),
            Some(7),
            Some(0),
            Some(1),
        ])));
        let floats = vec![
            Some(0.5),
            Some(f64::NAN),
            None,
            Some(-1.0),
            Some(f64::INFINITY),
            Some(400.25),
            Some(1.0),
        ];
        columns.push(Arc::new(Float64Array::from(floats.clone())));
        columns.push(Arc::new(Float32Array::from(
            floats
                .iter()
                .map(|v| v.map(|x| x as f32))
                .collect::<Vec<_>>(),
        )));
        let f64s: ArrayRef = Arc::new(Float64Array::from(floats.clone()));
        columns.push(arrow::compute::cast(&f64s, &DataType::Float16).expect("casts"));
        for (p, sc) in [(10u8, 2i8), (12, 3), (8, 0), (20, 4)] {
            let vals = vec![
                Some(150i128),
                Some(1501),
                None,
                Some(-99_999),
                Some(99_999_999),
                Some(-7),
                Some(i128::from(i64::MAX)),
            ];
            columns.push(Arc::new(
                Decimal128Array::from(vals)
                    .with_precision_and_scale(p.max(19), sc)
                    .expect("decimal"),
            ));
        }
        let secs = vec![
            Some(1_700_000_000i64),
            Some(0),
            None,
            Some(i64::MAX / 10),
            Some(2_100_000_000),
            Some(-1),
            Some(946_684_800),
        ];
        for tz in [None, Some("+00:00")] {
            let tz: Option<Arc<str>> = tz.map(Into::into);
            columns.push(Arc::new(
                TimestampSecondArray::from(secs.clone()).with_timezone_opt(tz.clone()),
            ));
            columns.push(Arc::new(
                TimestampMillisecondArray::from(
                    secs.iter()
                        .map(|v| v.map(|x| x.saturating_mul(1000)))
                        .collect::<Vec<_>>(),
                )
                .with_timezone_opt(tz.clone()),
            ));
            columns.push(Arc::new(
                TimestampMicrosecondArray::from(
                    secs.iter()
                        .map(|v| v.map(|x| x.saturating_mul(1_000_000)))
                        .collect::<Vec<_>>(),
                )
                .with_timezone_opt(tz.clone()),
            ));
            columns.push(Arc::new(
                TimestampNanosecondArray::from(
                    secs.iter()
                        .map(|v| v.map(|x| x.saturating_mul(1_000_000_001)))
                        .collect::<Vec<_>>(),
                )
                .with_timezone_opt(tz),
            ));
        }
        columns.push(Arc::new(Date32Array::from(vec![
            Some(0),
            Some(-1),
            None,
            Some(i32::MAX),
            Some(19_000),
            Some(1),
            Some(2),
        ])));
        columns.push(Arc::new(Date64Array::from(vec![
            Some(0),
            Some(-1),
            None,
            Some(i64::MAX),
            Some(86_400_000 * 19_000),
            Some(1),
            Some(86_399_999),
        ])));
        columns.push(Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(false),
            Some(true),
            Some(false),
        ])));
        let texts = vec![
            Some("1"),
            Some(" 2 "),
            None,
            Some(""),
            Some("Y"),
            Some("x"),
            Some("2024-01-02 03:04:05"),
        ];
        columns.push(Arc::new(StringArray::from(texts.clone())));
        columns.push(Arc::new(LargeStringArray::from(texts.clone())));
        columns.push(Arc::new(StringViewArray::from(texts)));

        let mut compared = 0;
        for field in &contract.fields {
            for c in columns.iter().filter(|c| holds(&field.ty, c.data_type())) {
                let lane = Lane::new(Some(c), field);
                let mut got = Column::for_field(field, 8);
                let mut want = Column::for_field(field, 8);
                for r in 0..c.len() {
                    let g = lane.push_row(r, field, &mut got);
                    let w = push_general(Some(c), r, field, &mut want);
                    assert_eq!(g, w, "{} from {} row {r}", field.name, c.data_type());
                    assert_eq!(
                        got.last(),
                        want.last(),
                        "{} from {} row {r}",
                        field.name,
                        c.data_type()
                    );
                    compared += 1;
                }
            }
            // Absent from the file: null, or missing for a required field.
            let lane = Lane::new(None, field);
            let mut got = Column::for_field(field, 8);
            let mut want = Column::for_field(field, 8);
            assert_eq!(
                lane.push_row(0, field, &mut got),
                push_general(None, 0, field, &mut want)
            );
        }
        assert!(compared > 300, "only {compared} values compared");
    }

    #[test]
    fn decimals_rescale_exactly_or_not_at_all() {
        assert_eq!(rescale(150, 2, 10, 2), Some(150));
        assert_eq!(rescale(15, 1, 10, 2), Some(150));
        assert_eq!(rescale(1500, 3, 10, 2), Some(150));
        assert_eq!(rescale(1501, 3, 10, 2), None, "a digit past the scale");
        assert_eq!(rescale(-7, 0, 10, 2), Some(-700));
        assert_eq!(rescale(9_999_999_999, 2, 10, 2), Some(9_999_999_999));
        assert_eq!(
            rescale(10_000_000_000, 2, 10, 2),
            None,
            "over the precision"
        );
        assert_eq!(rescale(i128::MAX / 2, 0, 38, 5), None, "overflow");
    }
}
