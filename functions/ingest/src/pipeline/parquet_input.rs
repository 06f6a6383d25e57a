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
    let shift = i32::from(scale) - i32::from(from);
    let v = if shift >= 0 {
        v.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?
    } else {
        let d = 10i128.checked_pow(shift.unsigned_abs())?;
        if v % d != 0 {
            return None;
        }
        v / d
    };
    let limit = 10i128.checked_pow(u32::from(precision))?;
    (v.unsigned_abs() < limit.unsigned_abs()).then_some(v)
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
            for r in 0..batch.num_rows() {
                line += 1;
                sink.stats.rows_in += 1;
                let verdict = self.validate_into(sink, |i, field, col| {
                    let v = match &cols[i] {
                        Some(c) => value_at(c, r, field)?,
                        None => ValueRef::Null,
                    };
                    if matches!(v, ValueRef::Null) {
                        return if field.nullable {
                            col.push(v);
                            Ok(())
                        } else {
                            Err(format!("{}: missing value", field.name))
                        };
                    }
                    field.check_ref(v)?;
                    col.push(v);
                    Ok(())
                });
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
