//! The synchronous heart of the curate stage, run on a blocking thread: read
//! the spooled Parquet file batch by batch, drop duplicate record ids (as
//! quarantine lines), compute derived columns, look up reference columns,
//! and encode zstd Parquet. Encoded bytes and quarantine lines leave through
//! a bounded channel as they are produced, so memory stays bounded by one
//! row group plus a few chunks, whatever the file size (the dedup seen-set
//! aside: 16 bytes of key, ~32 with the table, per distinct row of the file).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use sluice::columns::{to_f64 as f64s, to_i64, to_utf8};
use sluice::config::ParquetCompression;
use sluice::error::ErrorKind;
use sluice::{Error, Result};
use tokio::sync::mpsc;

use crate::config::{CurationPlan, DedupOn, DerivedExpr, Join, KeyIndex, LINE, RECORD_ID, SOURCE};

/// Rows per batch read from the input.
const BATCH_ROWS: usize = 8 * 1024;
/// Rows per output row group: bounds the encoder's buffered memory.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Quarantine lines are sent on once this many bytes have accumulated.
const QUARANTINE_CHUNK: usize = 1024 * 1024;

/// Bytes produced by the blocking side.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Encoded Parquet, in order.
    Output(Bytes),
    /// Quarantine JSON lines, in order.
    Quarantine(Bytes),
}

/// Row counts of one file.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    pub rows_in: u64,
    pub rows_out: u64,
    pub duplicates: u64,
}

/// The fixed writer settings: identical input gives byte-identical output.
pub fn writer_properties() -> Result<WriterProperties> {
    writer_properties_for(ParquetCompression::Zstd)
}

/// The writer settings with the configured compression: zstd level 3 (what
/// is deployed), or none (the simulation's setting).
pub fn writer_properties_for(compression: ParquetCompression) -> Result<WriterProperties> {
    let compression = match compression {
        ParquetCompression::Zstd => Compression::ZSTD(
            ZstdLevel::try_new(3)
                .map_err(|e| Error::other(ErrorKind::Internal, "zstd level", Some(Box::new(e))))?,
        ),
        ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build())
}

fn internal(
    location: &str,
    what: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::other(
        ErrorKind::Internal,
        format!("{location}: {what}: {e}"),
        Some(Box::new(e)),
    )
}

/// One quarantine line: a duplicate row.
#[derive(Serialize)]
struct QuarantineLine<'a> {
    record_id: Option<&'a str>,
    line: Option<i64>,
    source: Option<&'a str>,
    reasons: [&'a str; 1],
}

/// How duplicates are recognised in one file.
enum DedupBy {
    /// By the `_record_id` column at this index.
    RecordId(usize),
    /// By the values of the columns at these indices, in Arrow's row format.
    Columns(Vec<usize>, RowConverter),
}

/// A derived column's operand.
#[derive(Debug, Clone, Copy)]
enum Operand {
    /// An input column.
    Input(usize),
    /// An earlier derived column.
    Derived(usize),
}

#[derive(Debug)]
enum BoundExpr {
    Duration {
        start: usize,
        end: usize,
        unit: f64,
    },
    Ratio {
        num: Operand,
        den: Operand,
        scale: f64,
    },
}

/// The plan resolved against one file's schema.
struct Bound<'p> {
    schema: SchemaRef,
    dedup: Option<DedupBy>,
    dedup_reason: &'p str,
    record_id: Option<usize>,
    line: Option<usize>,
    source: Option<usize>,
    derived: Vec<BoundExpr>,
    joins: Vec<(usize, &'p Join)>,
}

fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    )
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A record id column: ingest's 16 bytes of binary, or text (32 hex digits
/// in files ingest wrote before, or any text a producer chose).
fn is_id(t: &DataType) -> bool {
    is_text(t) || *t == DataType::FixedSizeBinary(16)
}

impl<'p> Bound<'p> {
    fn new(plan: &'p CurationPlan, input: &Schema, location: &str) -> Result<Self> {
        let wrong = |reason: String| Error::invalid_input(location, reason);
        // A column the plan needs: present, and of a type `ok` accepts.
        let find = |name: &str, need: &str, expected: &str, ok: &dyn Fn(&DataType) -> bool| {
            let (i, f) = input.column_with_name(name).ok_or_else(|| {
                wrong(format!(
                    "has no column {name:?} (curate needs it for {need})"
                ))
            })?;
            if !ok(f.data_type()) {
                return Err(wrong(format!(
                    "column {name:?} is {}, but curate needs {expected} for {need}",
                    f.data_type()
                )));
            }
            Ok(i)
        };
        let record_id = input
            .index_of(RECORD_ID)
            .ok()
            .filter(|&i| is_id(input.field(i).data_type()));
        let dedup = match (plan.dedup, &plan.dedup_on) {
            (false, _) => None,
            (true, DedupOn::RecordId) => Some(DedupBy::RecordId(find(
                RECORD_ID,
                "dedup",
                "text or 16-byte binary",
                &is_id,
            )?)),
            (true, DedupOn::Columns(columns)) => {
                let indices = columns
                    .iter()
                    .map(|c| find(c, "dedup_on", "any type", &|_| true))
                    .collect::<Result<Vec<_>>>()?;
                let fields = indices
                    .iter()
                    .map(|&i| SortField::new(input.field(i).data_type().clone()))
                    .collect();
                let converter = RowConverter::new(fields).map_err(|e| {
                    wrong(format!(
                        "cannot compare rows on {}: {e}",
                        columns.join(", ")
                    ))
                })?;
                Some(DedupBy::Columns(indices, converter))
            }
        };
        let line = input
            .index_of(LINE)
            .ok()
            .filter(|&i| input.field(i).data_type().is_integer());
        let source = input
            .index_of(SOURCE)
            .ok()
            .filter(|&i| is_text(input.field(i).data_type()));
        let mut derived = Vec::with_capacity(plan.derived.len());
        for (n, d) in plan.derived.iter().enumerate() {
            let need = format!("derived column {:?}", d.name);
            let operand = |col: &str| -> Result<Operand> {
                match plan.derived[..n].iter().position(|e| e.name == col) {
                    Some(j) => Ok(Operand::Derived(j)),
                    None => find(col, &need, "a number", &is_numeric).map(Operand::Input),
                }
            };
            derived.push(match &d.expr {
                DerivedExpr::Duration { start, end, unit } => BoundExpr::Duration {
                    start: find(start, &need, "a timestamp or date", &is_temporal)?,
                    end: find(end, &need, "a timestamp or date", &is_temporal)?,
                    unit: unit.micros(),
                },
                DerivedExpr::Ratio {
                    numerator,
                    denominator,
                    scale,
                } => BoundExpr::Ratio {
                    num: operand(numerator)?,
                    den: operand(denominator)?,
                    scale: *scale,
                },
            });
        }
        let mut joins = Vec::with_capacity(plan.joins.len());
        for j in &plan.joins {
            let need = format!("join {} on {}", j.reference, j.on);
            let i = match j.index.as_ref() {
                KeyIndex::Int(_) => {
                    find(&j.on, &need, "an integer", &|t: &DataType| t.is_integer())?
                }
                KeyIndex::Text(_) => find(&j.on, &need, "text", &is_text)?,
            };
            joins.push((i, j));
        }
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for name in plan.added_columns() {
            if input.column_with_name(&name).is_some() {
                return Err(wrong(format!(
                    "already has a column {name:?}, which curate adds (curated twice?)"
                )));
            }
        }
        for d in &plan.derived {
            fields.push(Arc::new(Field::new(&d.name, DataType::Float64, true)));
        }
        for j in &plan.joins {
            for c in &j.columns {
                fields.push(Arc::new(Field::new(&c.output, DataType::Utf8, true)));
            }
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        Ok(Bound {
            schema,
            dedup,
            dedup_reason: &plan.dedup_reason,
            record_id,
            line,
            source,
            derived,
            joins,
        })
    }

    /// Derived and joined columns for a (deduplicated) batch.
    fn apply(&self, batch: &RecordBatch) -> std::result::Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut derived: Vec<ArrayRef> = Vec::with_capacity(self.derived.len());
        for expr in &self.derived {
            let out: Float64Array = match expr {
                BoundExpr::Duration { start, end, unit } => {
                    let s = micros(batch.column(*start))?;
                    let e = micros(batch.column(*end))?;
                    s.iter()
                        .zip(e.iter())
                        .map(|(s, e)| match (s, e) {
                            (Some(s), Some(e)) => Some((e - s) / unit).filter(|v| v.is_finite()),
                            _ => None,
                        })
                        .collect()
                }
                BoundExpr::Ratio { num, den, scale } => {
                    let pick = |o: &Operand| match o {
                        Operand::Input(i) => batch.column(*i).clone(),
                        Operand::Derived(j) => derived[*j].clone(),
                    };
                    let n = to_f64(&pick(num))?;
                    let d = to_f64(&pick(den))?;
                    n.iter()
                        .zip(d.iter())
                        .map(|(n, d)| match (n, d) {
                            (Some(n), Some(d)) if d != 0.0 => {
                                Some(n * scale / d).filter(|v| v.is_finite())
                            }
                            _ => None,
                        })
                        .collect()
                }
            };
            derived.push(Arc::new(out));
        }
        columns.extend(derived);
        for (on, join) in &self.joins {
            let keys = batch.column(*on);
            let rows: Vec<Option<usize>> = match join.index.as_ref() {
                KeyIndex::Int(index) => to_i64(keys)?
                    .iter()
                    .map(|k| k.and_then(|k| index.get(&k).copied()))
                    .collect(),
                KeyIndex::Text(index) => to_utf8(keys)?
                    .iter()
                    .map(|k| k.and_then(|k| index.get(k).copied()))
                    .collect(),
            };
            for c in &join.columns {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for row in &rows {
                    b.append_option(row.and_then(|r| join.table.cell(r, c.position)));
                }
                columns.push(Arc::new(b.finish()));
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// A temporal column as f64 microseconds since the epoch.
fn micros(col: &ArrayRef) -> std::result::Result<Float64Array, ArrowError> {
    let factor = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => 1e6,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1e3,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1.0,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1e-3,
        DataType::Date32 => 86_400e6,
        DataType::Date64 => 1e3,
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{other} is not a timestamp or date"
            )))
        }
    };
    Ok(to_i64(col)?.unary::<_, Float64Type>(|v| v as f64 * factor))
}

/// A numeric column as f64 (decimals divided by 10^scale).
fn to_f64(col: &ArrayRef) -> std::result::Result<Float64Array, ArrowError> {
    f64s(col)
}

/// The per-file set of rows seen so far, as 128-bit keys: ingest's record
/// ids (32 lower-case hex digits) are kept exactly; any other id, and row
/// values (in Arrow's row format), as their 128-bit XXH3 (an accidental
/// collision is astronomically unlikely). Memory is ~32 bytes per distinct
/// row of the file, which is one day's partition of one landed file.
#[derive(Default)]
struct SeenIds {
    seen: HashSet<u128>,
}

impl SeenIds {
    fn key(id: &str) -> u128 {
        let exact = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match exact.then(|| u128::from_str_radix(id, 16).ok()).flatten() {
            Some(k) => k,
            None => xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
        }
    }

    /// Whether `id` is new (and remember it).
    fn insert(&mut self, id: &str) -> bool {
        self.seen.insert(Self::key(id))
    }

    /// Whether a 16-byte binary id is new (and remember it); the same id
    /// as 32 hex digits is the same key.
    fn insert_binary(&mut self, id: &[u8]) -> bool {
        match <[u8; 16]>::try_from(id) {
            Ok(b) => self.seen.insert(u128::from_be_bytes(b)),
            Err(_) => self.seen.insert(xxhash_rust::xxh3::xxh3_128(id)),
        }
    }

    /// Whether a row (its encoded key columns) is new (and remember it).
    fn insert_row(&mut self, row: &[u8]) -> bool {
        self.seen.insert(xxhash_rust::xxh3::xxh3_128(row))
    }
}

/// Send a chunk to the async side; a closed channel means it has failed
/// (and will report why), so stop quietly with an internal error.
fn send(tx: &mpsc::Sender<Chunk>, chunk: Chunk, location: &str) -> Result<()> {
    tx.blocking_send(chunk).map_err(|_| {
        Error::other(
            ErrorKind::Internal,
            format!("{location}: the output stream was closed"),
            None,
        )
    })
}

/// Curate one spooled file, streaming the results through `tx`.
pub(crate) fn run(
    file: std::fs::File,
    location: &str,
    plan: &CurationPlan,
    compression: ParquetCompression,
    tx: mpsc::Sender<Chunk>,
) -> Result<Stats> {
    let corrupt = |e: parquet::errors::ParquetError| {
        Error::invalid_input(location, format!("not a readable Parquet file: {e}"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(corrupt)?;
    let bound = Bound::new(plan, builder.schema(), location)?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        bound.schema.clone(),
        Some(writer_properties_for(compression)?),
    )
    .map_err(|e| internal(location, "cannot start the Parquet writer", e))?;
    let mut stats = Stats::default();
    let mut seen = SeenIds::default();
    let mut quarantine: Vec<u8> = Vec::new();

    for batch in reader {
        let batch = batch
            .map_err(|e| Error::invalid_input(location, format!("corrupt Parquet data: {e}")))?;
        stats.rows_in += batch.num_rows() as u64;
        let batch = match &bound.dedup {
            Some(by) => {
                let (kept, dups) = dedup(&batch, by, &bound, &mut seen, &mut quarantine)
                    .map_err(|e| internal(location, "dedup failed", e))?;
                stats.duplicates += dups;
                kept
            }
            None => batch,
        };
        let out = bound
            .apply(&batch)
            .map_err(|e| internal(location, "cannot derive columns", e))?;
        stats.rows_out += out.num_rows() as u64;
        writer
            .write(&out)
            .map_err(|e| internal(location, "cannot encode Parquet", e))?;
        let encoded = std::mem::take(writer.inner_mut());
        if !encoded.is_empty() {
            send(&tx, Chunk::Output(encoded.into()), location)?;
        }
        if quarantine.len() >= QUARANTINE_CHUNK {
            send(
                &tx,
                Chunk::Quarantine(std::mem::take(&mut quarantine).into()),
                location,
            )?;
        }
    }
    writer
        .finish()
        .map_err(|e| internal(location, "cannot finish Parquet", e))?;
    let rest = std::mem::take(writer.inner_mut());
    if !rest.is_empty() {
        send(&tx, Chunk::Output(rest.into()), location)?;
    }
    if !quarantine.is_empty() {
        send(&tx, Chunk::Quarantine(quarantine.into()), location)?;
    }
    Ok(stats)
}

/// Drop rows already seen in this file, appending a quarantine line for
/// each. By record id, rows without one cannot be duplicates and are kept;
/// by columns, nulls compare equal (two identical rows are duplicates).
fn dedup(
    batch: &RecordBatch,
    by: &DedupBy,
    bound: &Bound<'_>,
    seen: &mut SeenIds,
    quarantine: &mut Vec<u8>,
) -> std::result::Result<(RecordBatch, u64), ArrowError> {
    let keep: BooleanArray = match by {
        DedupBy::RecordId(rid) => match batch.column(*rid).data_type() {
            DataType::FixedSizeBinary(16) => batch
                .column(*rid)
                .as_fixed_size_binary()
                .iter()
                .map(|id| Some(id.is_none_or(|id| seen.insert_binary(id))))
                .collect(),
            _ => to_utf8(batch.column(*rid))?
                .iter()
                .map(|id| Some(id.is_none_or(|id| seen.insert(id))))
                .collect(),
        },
        DedupBy::Columns(indices, converter) => {
            let columns: Vec<ArrayRef> = indices.iter().map(|&i| batch.column(i).clone()).collect();
            let rows = converter.convert_columns(&columns)?;
            (0..batch.num_rows())
                .map(|r| Some(seen.insert_row(rows.row(r).as_ref())))
                .collect()
        }
    };
    let dups = keep.false_count() as u64;
    if dups == 0 {
        return Ok((batch.clone(), 0));
    }
    let ids: Option<StringArray> = bound
        .record_id
        .map(|i| sluice::lineage::record_ids_as_text(batch.column(i)))
        .transpose()?;
    let lines: Option<Int64Array> = bound.line.map(|i| to_i64(batch.column(i))).transpose()?;
    let sources: Option<StringArray> =
        bound.source.map(|i| to_utf8(batch.column(i))).transpose()?;
    for row in (0..batch.num_rows()).filter(|&r| !keep.value(r)) {
        let line = QuarantineLine {
            record_id: ids
                .as_ref()
                .and_then(|s| s.is_valid(row).then(|| s.value(row))),
            line: lines
                .as_ref()
                .and_then(|l| l.is_valid(row).then(|| l.value(row))),
            source: sources
                .as_ref()
                .and_then(|s| s.is_valid(row).then(|| s.value(row))),
            reasons: [bound.dedup_reason],
        };
        serde_json::to_writer(&mut *quarantine, &line)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        quarantine.push(b'\n');
    }
    Ok((filter_record_batch(batch, &keep)?, dups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_keys_are_exact_for_hex_ids() {
        let a = "0123456789abcdef0123456789abcdef";
        assert_eq!(SeenIds::key(a), 0x0123456789abcdef0123456789abcdef);
        // Upper case is a different string, so it must not collide with `a`.
        assert_ne!(SeenIds::key(&a.to_uppercase()), SeenIds::key(a));
        assert_ne!(SeenIds::key("x"), SeenIds::key("y"));
        let mut s = SeenIds::default();
        assert!(s.insert(a));
        let bin = 0x0123456789abcdef0123456789abcdef_u128.to_be_bytes(); // pragma: allowlist secret
        assert!(!s.insert_binary(&bin), "binary and hex forms are one id");
        let ids: ArrayRef =
            Arc::new(arrow::array::FixedSizeBinaryArray::try_from_iter([bin].into_iter()).unwrap());
        assert_eq!(
            sluice::lineage::record_ids_as_text(&ids).unwrap().value(0),
            a
        );
        assert!(s.insert("k1"));
        assert!(!s.insert("k1"));
        assert!(s.insert("k2"));
    }

    #[test]
    fn temporal_columns_convert_to_micros() {
        let days: ArrayRef = Arc::new(arrow::array::Date32Array::from(vec![Some(1), None]));
        let m = micros(&days).unwrap();
        assert_eq!(m.value(0), 86_400e6);
        assert!(m.is_null(1));
        let secs: ArrayRef = Arc::new(arrow::array::TimestampSecondArray::from(vec![2]));
        assert_eq!(micros(&secs).unwrap().value(0), 2e6);
    }
}
