//! Property-based fuzzing of CSV / JSON Lines row parsing and validation
//! through the real ingest stage and runner, in memory (issue 10).
//!
//! Files are generated from the trips contract's fields: valid values drawn
//! within each field's type and constraints, invalid ones that break exactly
//! one of them, random quoting and padding, shuffled, omitted and extra
//! columns, missing and extra fields, rule violations, CRLF, blank lines,
//! embedded quotes and newlines, invalid UTF-8, a BOM, gzip (named and by
//! magic only), a small record limit. A model of the contract says what
//! must happen to every row, and the run must agree exactly:
//!
//! * the object is processed, rows_in == rows_out + rows_quarantined, with
//!   the counts, the quarantine entries (one per quarantined row, with its
//!   line and a reason) and the Parquet `_line` values all as the model
//!   predicts; or
//! * it is dead-lettered (the model says why) with an invalid-input envelope
//!   whose message names the object, and nothing is written.
//!
//! A second property mutates those files byte by byte (inserting quotes,
//! separators, line ends, invalid UTF-8; deleting, duplicating, truncating,
//! before or after gzip), where no model holds: the outcome must still be
//! one of the two above with the counts balanced, never a panic, an
//! internal error or a retry.
//!
//! `SLUICE_FUZZ_CASES` sets the cases per property (`make fuzz` sets 20000),
//! `SLUICE_FUZZ_SEED` the seed (a number, or `random`; fixed by default).

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use sluice::config::{Config, RawConfig};
use sluice::contract::{Contract, Field, FieldType, Registry, Value};
use sluice::dlq::MemoryDeadLetter;
use sluice::error::ErrorKind;
use sluice::runner::ObjectOutcome;
use sluice::store::{MemoryStore, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sluice::telemetry::NoMetrics;
use sluice::trigger::{s3_notification, ObjectRef};
use sluice::{Runner, Runtime};
use sluice_ingest::Ingest;

#[path = "../../../../shared/tests/it/fuzz.rs"]
mod fuzz;

/// The shared configuration; each case runs the stage, so shrinking a
/// failure need not take all day.
fn fuzz_config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        max_shrink_iters: 2048,
        ..fuzz::fuzz_config(default_cases)
    }
}

fn trips() -> &'static Contract {
    Registry::embedded().unwrap().get("trips").unwrap()
}

// ---- cells: one value of one field, and what the contract makes of it ----------

/// One value as written, and the model's verdict on it.
#[derive(Debug, Clone)]
struct Cell {
    bytes: Vec<u8>,
    /// Whether the field accepts it.
    valid: bool,
    /// The value as the pipeline compares it in row rules (`as_f64` of the
    /// parsed value); `None` for null and non-numeric values.
    num: Option<f64>,
    /// Whether it may be written as a JSON number literal and mean the same.
    json_number: bool,
    /// Random choices for writing it (CSV quoting, JSON null style).
    style: u8,
}

fn cell(text: impl Into<Vec<u8>>, valid: bool, num: Option<f64>) -> Cell {
    let bytes = text.into();
    let json_number = valid
        && std::str::from_utf8(&bytes).is_ok_and(|t| {
            let t = t.strip_prefix('-').unwrap_or(t);
            let (int, frac) = t.split_once('.').unwrap_or((t, "1"));
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && (int == "0" || !int.starts_with('0'))
                && !frac.is_empty()
                && frac.bytes().all(|b| b.is_ascii_digit())
                && t.len() < 16
        });
    Cell {
        bytes,
        valid,
        num,
        json_number,
        style: 0,
    }
}

fn int_of(v: &Option<Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

fn micros_of(v: &Option<Value>) -> Option<i64> {
    match v {
        Some(Value::Timestamp(t)) => Some(*t),
        _ => None,
    }
}

fn decimal_text(unscaled: i128, scale: usize, trim: bool) -> String {
    let neg = unscaled < 0;
    let digits = format!("{:0>width$}", unscaled.unsigned_abs(), width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let frac = if trim {
        frac.trim_end_matches('0')
    } else {
        frac
    };
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn float_text(hundredths: i64) -> String {
    let sign = if hundredths < 0 { "-" } else { "" };
    let a = hundredths.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Local seconds (in the source's clock) as text in `format`.
fn time_text(local_secs: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(local_secs, 0)
        .unwrap()
        .naive_utc()
        .format(format)
        .to_string()
}

const Y2000: i64 = 946_684_800;
const Y2036: i64 = 2_082_758_400;

/// A value the field accepts, with the model's idea of it.
fn valid_value(f: &'static Field) -> BoxedStrategy<Cell> {
    match &f.ty {
        FieldType::Int => match &f.allowed {
            Some(vals) => {
                let ints: Vec<i64> = vals
                    .iter()
                    .filter_map(|v| int_of(&Some(v.clone())))
                    .collect();
                (prop::sample::select(ints), 0..4u8)
                    .prop_map(|(n, form)| int_cell(n, form))
                    .boxed()
            }
            None => {
                let lo = int_of(&f.min).unwrap_or(-1_000_000);
                let hi = int_of(&f.max).unwrap_or(1_000_000);
                (lo..=hi, 0..4u8)
                    .prop_map(|(n, form)| int_cell(n, form))
                    .boxed()
            }
        },
        FieldType::Float => {
            let bound = |v: &Option<Value>| match v {
                Some(Value::Float(x)) => Some(*x),
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            };
            let lo = bound(&f.min).map_or(-100_000_000, |x| (x * 100.0).ceil() as i64);
            let hi = bound(&f.max).map_or(100_000_000, |x| (x * 100.0).floor() as i64);
            (lo..=hi)
                .prop_map(|h| {
                    let t = float_text(h);
                    let n = t.parse::<f64>().ok();
                    cell(t, true, n)
                })
                .boxed()
        }
        FieldType::Decimal { precision, scale } => {
            let scale = *scale as usize;
            let cap = 10i128.pow(u32::from(*precision).min(12)) - 1;
            let dec = |v: &Option<Value>| match v {
                Some(Value::Decimal(d)) => Some(*d),
                _ => None,
            };
            let lo = dec(&f.min).unwrap_or(-cap).max(-cap);
            let hi = dec(&f.max).unwrap_or(cap).min(cap);
            (lo..=hi, any::<bool>())
                .prop_map(move |(u, trim)| cell(decimal_text(u, scale, trim), true, Some(u as f64)))
                .boxed()
        }
        FieldType::Timestamp {
            format,
            offset_secs,
        } => {
            let off = i64::from(*offset_secs);
            let lo = micros_of(&f.min).map_or(Y2000, |m| m.div_euclid(1_000_000) + off + 1);
            let hi = micros_of(&f.max).map_or(Y2036, |m| m.div_euclid(1_000_000) + off);
            let format = format.clone();
            (lo..=hi)
                .prop_map(move |local| {
                    let stored = (local - off) * 1_000_000;
                    cell(time_text(local, &format), true, Some(stored as f64))
                })
                .boxed()
        }
        FieldType::Date { format } => {
            let format = format.clone();
            (Y2000 / 86_400..Y2036 / 86_400)
                .prop_map(move |day| cell(time_text(day * 86_400, &format), true, Some(day as f64)))
                .boxed()
        }
        FieldType::Bool => {
            prop::sample::select(&["true", "false", "1", "0", "Y", "N", "yes", "no"][..])
                .prop_map(|t| cell(t, true, None))
                .boxed()
        }
        FieldType::String => match &f.allowed {
            Some(vals) => {
                let strs: Vec<String> = vals
                    .iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                prop::sample::select(strs)
                    .prop_map(|s| cell(s, true, None))
                    .boxed()
            }
            None => "[a-zA-Z0-9]{1,8}".prop_map(|s| cell(s, true, None)).boxed(),
        },
    }
}

fn int_cell(n: i64, form: u8) -> Cell {
    let t = match form {
        1 => format!("{n}.0"),
        2 if n >= 0 => format!("+{n}"),
        3 if n >= 0 => format!("00{n}"),
        _ => n.to_string(),
    };
    cell(t, true, Some(n as f64))
}

/// A value the field accepts (or null, where allowed), maybe padded.
fn valid_cell(f: &'static Field) -> BoxedStrategy<Cell> {
    let value = if f.nullable {
        prop_oneof![
            1 => prop::sample::select(&["", " ", "  "][..]).prop_map(|t| cell(t, true, None)),
            6 => valid_value(f),
        ]
        .boxed()
    } else {
        valid_value(f)
    };
    (
        value,
        prop::sample::select(&["", "", "", "", " ", "\t", "  "][..]),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(mut c, pad, before, style)| {
            if !pad.is_empty() && !c.bytes.is_empty() {
                if before {
                    c.bytes.splice(0..0, pad.bytes());
                } else {
                    c.bytes.extend_from_slice(pad.as_bytes());
                }
                c.json_number = false;
            }
            c.style = style;
            c
        })
        .boxed()
}

/// A value the field certainly rejects.
fn invalid_cell(f: &'static Field) -> BoxedStrategy<Cell> {
    let bad = |t: &str| cell(t, false, None);
    let mut options: Vec<Cell> = vec![cell(vec![0xff, 0xfe], false, None)];
    if !f.nullable {
        options.push(bad(""));
        options.push(bad("  "));
    }
    match &f.ty {
        FieldType::Int => {
            for t in [
                "x",
                "1.5",
                "1e3",
                "--1",
                "1234567890123456789",
                "1\"5",
                "1,5",
                "1\n5",
                "1\r\n2",
            ] {
                options.push(bad(t));
            }
            if let Some(vals) = &f.allowed {
                let ints: Vec<i64> = vals
                    .iter()
                    .filter_map(|v| int_of(&Some(v.clone())))
                    .collect();
                let out = ints.iter().max().copied().unwrap_or(0) + 1;
                options.push(bad(&out.to_string()));
            }
            if let Some(lo) = int_of(&f.min) {
                options.push(bad(&(lo - 1).to_string()));
            }
            if let Some(hi) = int_of(&f.max) {
                options.push(bad(&(hi + 1).to_string()));
            }
        }
        FieldType::Float => {
            for t in ["abc", "nan", "inf", "-inf", "1..5", "1\n5", "1,5"] {
                options.push(bad(t));
            }
            if let Some(Value::Float(lo)) = &f.min {
                options.push(bad(&float_text((lo * 100.0) as i64 - 100)));
            }
            if let Some(Value::Float(hi)) = &f.max {
                options.push(bad(&float_text((hi * 100.0) as i64 + 100)));
            }
        }
        FieldType::Decimal { precision, scale } => {
            let scale = *scale as usize;
            for t in [
                "abc".to_string(),
                "1.2.3".to_string(),
                "1e2".to_string(),
                format!("0.{}1", "0".repeat(scale)),
                "9".repeat(usize::from(*precision) + 1),
                "1\n5".to_string(),
                "\"".to_string(),
            ] {
                options.push(bad(&t));
            }
            if let Some(Value::Decimal(lo)) = &f.min {
                options.push(bad(&decimal_text(lo - 1, scale, false)));
            }
            if let Some(Value::Decimal(hi)) = &f.max {
                options.push(bad(&decimal_text(hi + 1, scale, false)));
            }
        }
        FieldType::Timestamp {
            format,
            offset_secs,
        } => {
            for t in [
                "2024-13-01 00:00:00",
                "not a time",
                "2024-01-15\n10:30:00",
                "2024-02-30 10:30:00",
            ] {
                options.push(bad(t));
            }
            let off = i64::from(*offset_secs);
            if let Some(lo) = micros_of(&f.min) {
                options.push(bad(&time_text(lo.div_euclid(1_000_000) + off - 1, format)));
            }
            if let Some(hi) = micros_of(&f.max) {
                options.push(bad(&time_text(hi.div_euclid(1_000_000) + off + 1, format)));
            }
        }
        FieldType::Date { .. } => {
            for t in ["2024-13-01", "nope", "2024-02-30"] {
                options.push(bad(t));
            }
        }
        FieldType::Bool => {
            for t in ["maybe", "2", "t"] {
                options.push(bad(t));
            }
        }
        FieldType::String => {
            if let Some(vals) = &f.allowed {
                for t in ["ZZ", "Y,N", "Y\nN", "\"Y\"", "é"] {
                    if !vals.contains(&Value::Str(t.into())) {
                        options.push(bad(t));
                    }
                }
            }
            assert!(f.pattern.is_none(), "the generator knows no patterns");
        }
    }
    (prop::sample::select(options), any::<u8>())
        .prop_map(|(mut c, style)| {
            c.style = style;
            c
        })
        .boxed()
}

// ---- rows and files --------------------------------------------------------------

/// What is wrong with a row, if anything (beyond its cells).
#[derive(Debug, Clone)]
enum RowFault {
    None,
    /// These fields (indices into the contract) get an invalid value.
    Cells(Vec<usize>),
    /// CSV: one field fewer than the header.
    Short,
    /// CSV: one field more than the header.
    Long,
    /// Swap the two fields of every rule (valid values, rule broken unless equal).
    SwapRules,
    /// JSON: a field holds an array or object.
    Nested(usize),
    /// JSON: a key twice.
    RepeatedKey(usize),
    /// JSON: a line that is not an object.
    NotObject(&'static str),
}

#[derive(Debug, Clone)]
struct Row {
    valid: Vec<Cell>,
    invalid: Vec<Cell>,
    fault: RowFault,
    /// Blank lines written before the row.
    blank_before: usize,
    /// CRLF rather than LF after the row.
    crlf: bool,
    /// Values of the extra columns.
    extras: Vec<String>,
}

fn row() -> impl Strategy<Value = Row> {
    let c = trips();
    let n = c.fields.len();
    let valid: Vec<BoxedStrategy<Cell>> = c.fields.iter().map(valid_cell).collect();
    let invalid: Vec<BoxedStrategy<Cell>> = c.fields.iter().map(invalid_cell).collect();
    let fault = prop_oneof![
        12 => Just(RowFault::None),
        4 => prop::collection::vec(0..n, 1..4).prop_map(RowFault::Cells),
        1 => Just(RowFault::Short),
        1 => Just(RowFault::Long),
        2 => Just(RowFault::SwapRules),
        1 => (0..n).prop_map(RowFault::Nested),
        1 => (0..n).prop_map(RowFault::RepeatedKey),
        1 => prop::sample::select(&["[1]", "3", "\"x\"", "{", "not json", "null", "{\"a\":}"][..])
            .prop_map(RowFault::NotObject),
    ];
    (
        valid,
        invalid,
        fault,
        prop_oneof![8 => Just(0usize), 1 => 1..3usize],
        any::<bool>(),
        prop::collection::vec("[a-z0-9 ,\"]{0,6}", 3),
    )
        .prop_map(|(valid, invalid, fault, blank_before, crlf, extras)| Row {
            valid,
            invalid,
            fault,
            blank_before,
            crlf,
            extras,
        })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Csv,
    Jsonl,
}

/// A file-level fault the model expects to dead-letter the object.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FileFault {
    None,
    /// CSV: the header lacks a non-nullable column.
    MissingRequired(usize),
    /// CSV: the header names a column twice.
    RepeatedColumn(usize),
    /// Zero bytes.
    Empty,
}

#[derive(Debug, Clone)]
struct Spec {
    format: Format,
    ext: &'static str,
    name: String,
    rows: Vec<Row>,
    /// Column order: a permutation of the contract's field indices.
    order: Vec<usize>,
    /// Nullable fields left out of the file.
    omit: Vec<bool>,
    /// Extra columns the contract does not know.
    extra_columns: usize,
    file_fault: FileFault,
    bom: bool,
    /// Quote or pad header names.
    header_style: u8,
    /// The last row ends with a line terminator.
    trailing_newline: bool,
    /// 0: plain, 1: gzip named `.gz`, 2: gzip under a plain name.
    gzip: u8,
    /// `SLUICE_MAX_RECORD_BYTES`, if set.
    record_limit: Option<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let c = trips();
    let n = c.fields.len();
    let order: Vec<usize> = (0..n).collect();
    (
        (
            prop_oneof![
                3 => Just((Format::Csv, "csv")),
                1 => Just((Format::Jsonl, "jsonl")),
                1 => Just((Format::Jsonl, "ndjson")),
                1 => Just((Format::Jsonl, "json")),
            ],
            "[a-z0-9 +%=&é_-]{1,10}",
            prop::collection::vec(row(), 0..=30),
        ),
        (
            Just(order).prop_shuffle(),
            prop::collection::vec(prop::bool::weighted(0.15), n),
            prop_oneof![4 => Just(0usize), 1 => 1..3usize],
            prop_oneof![
                30 => Just(FileFault::None),
                1 => (0..n).prop_map(FileFault::MissingRequired),
                1 => (0..n).prop_map(FileFault::RepeatedColumn),
                1 => Just(FileFault::Empty),
            ],
        ),
        (
            prop::bool::weighted(0.1),
            any::<u8>(),
            prop::bool::weighted(0.8),
            prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
            prop_oneof![4 => Just(None), 1 => (64..1200usize).prop_map(Some)],
        ),
    )
        .prop_map(
            |(
                ((format, ext), name, rows),
                (order, omit, extra_columns, file_fault),
                (bom, header_style, trailing_newline, gzip, record_limit),
            )| {
                let omit = omit
                    .into_iter()
                    .zip(&trips().fields)
                    .map(|(o, f)| o && f.nullable)
                    .collect();
                Spec {
                    format,
                    ext,
                    name,
                    rows,
                    order,
                    omit,
                    extra_columns,
                    file_fault,
                    bom,
                    header_style,
                    trailing_newline,
                    gzip,
                    record_limit,
                }
            },
        )
}

/// What the model says must happen.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Processed: the line and verdict of every row, in order.
    Rows(Vec<(u64, bool)>),
    /// Dead-lettered with a message containing this.
    DeadLetter(&'static str),
}

#[derive(Debug, Clone)]
struct Case {
    key: String,
    body: Vec<u8>,
    expect: Expect,
    record_limit: Option<usize>,
}

fn csv_field(bytes: &[u8], quote: bool) -> Vec<u8> {
    let special = bytes
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !(quote || special) {
        return bytes.to_vec();
    }
    let mut out = vec![b'"'];
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

fn json_string(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::to_string(s).unwrap().into_bytes(),
        // Not UTF-8: written raw, which makes the line not JSON (still a bad row).
        Err(_) => [b"\"".as_slice(), bytes, b"\""].concat(),
    }
}

/// The final cells of a row (contract order) and whether the model accepts it.
fn row_cells(c: &Contract, r: &Row, omit: &[bool]) -> (Vec<Cell>, bool) {
    let mut cells = r.valid.clone();
    if let RowFault::Cells(at) = &r.fault {
        for &i in at {
            cells[i] = r.invalid[i].clone();
        }
    }
    if let RowFault::SwapRules = r.fault {
        for rule in &c.rules {
            cells.swap(rule.left, rule.right);
        }
    }
    let present = |i: usize| !omit[i];
    let fields_ok = (0..cells.len()).all(|i| !present(i) || cells[i].valid);
    let rules_ok = c.rules.iter().all(|rule| {
        let num = |i: usize| if present(i) { cells[i].num } else { None };
        match (num(rule.left), num(rule.right)) {
            (Some(a), Some(b)) => rule.op.holds(a, b),
            _ => true,
        }
    });
    (cells, fields_ok && rules_ok)
}

fn build(s: &Spec) -> Case {
    let c = trips();
    let gz_suffix = if s.gzip == 1 { ".gz" } else { "" };
    let key = format!("raw/trips/{}.{}{gz_suffix}", s.name, s.ext);
    let mut body: Vec<u8> = Vec::new();
    let mut lines = 1u64;
    let mut verdicts = Vec::new();
    let mut dead: Option<&'static str> = None;
    let limit = s.record_limit.unwrap_or(usize::MAX);
    let push = |body: &mut Vec<u8>, lines: &mut u64, bytes: &[u8]| {
        *lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        body.extend_from_slice(bytes);
    };
    if s.bom {
        body.extend_from_slice(b"\xEF\xBB\xBF");
    }
    // The columns written, in order: Some(field index) or None (an extra).
    let mut columns: Vec<Option<usize>> = s
        .order
        .iter()
        .copied()
        .filter(|&i| !s.omit[i])
        .map(Some)
        .collect();
    for e in 0..s.extra_columns {
        let at = (e * 7 + s.header_style as usize) % (columns.len() + 1);
        columns.insert(at, None);
    }
    match s.file_fault {
        FileFault::MissingRequired(i) if s.format == Format::Csv && !c.fields[i].nullable => {
            columns.retain(|&col| col != Some(i));
            dead = Some("missing required column");
        }
        FileFault::RepeatedColumn(i) if s.format == Format::Csv && !s.omit[i] => {
            columns.push(Some(i));
            dead = Some("more than once");
        }
        _ => {}
    }
    let n_rows = s.rows.len();
    match s.format {
        Format::Csv => {
            let mut header = Vec::new();
            for (k, col) in columns.iter().enumerate() {
                if k > 0 {
                    header.push(b',');
                }
                let name = match col {
                    Some(i) => c.fields[*i].name.clone(),
                    None => format!("x_extra_{k}"),
                };
                let name = match (s.header_style >> (k % 8)) & 3 {
                    1 => format!(" {name}"),
                    _ => name,
                };
                header.extend(csv_field(
                    name.as_bytes(),
                    s.header_style & 0x80 != 0 && k % 3 == 0,
                ));
            }
            // A BOM counts in the size of the record it starts.
            let bom = if s.bom { 3 } else { 0 };
            if header.len() + bom > limit {
                // Checked before the header's names are.
                dead = Some("SLUICE_MAX_RECORD_BYTES");
            }
            push(&mut body, &mut lines, &header);
            push(&mut body, &mut lines, b"\n");
            for (ri, r) in s.rows.iter().enumerate() {
                for _ in 0..r.blank_before {
                    push(&mut body, &mut lines, if r.crlf { b"\r\n" } else { b"\n" });
                }
                let (cells, cells_ok) = row_cells(c, r, &s.omit);
                let mut values: Vec<Vec<u8>> = columns
                    .iter()
                    .enumerate()
                    .map(|(k, col)| match col {
                        Some(i) => csv_field(&cells[*i].bytes, cells[*i].style % 5 == 0),
                        None => csv_field(r.extras[k % r.extras.len()].as_bytes(), false),
                    })
                    .collect();
                let width_ok = match r.fault {
                    RowFault::Short => {
                        values.pop();
                        false
                    }
                    RowFault::Long => {
                        values.push(b"extra".to_vec());
                        false
                    }
                    _ => true,
                };
                let record = values.join(&b","[..]);
                // A record holding one empty field is a blank line, not a row.
                let blank = record.is_empty();
                let line = lines;
                push(&mut body, &mut lines, &record);
                if !blank {
                    verdicts.push((line, cells_ok && width_ok && record.len() <= limit));
                }
                if ri + 1 < n_rows || s.trailing_newline {
                    push(&mut body, &mut lines, if r.crlf { b"\r\n" } else { b"\n" });
                }
            }
        }
        Format::Jsonl => {
            for (ri, r) in s.rows.iter().enumerate() {
                for b in 0..r.blank_before {
                    let blank: &[u8] = if b % 2 == 0 { b"" } else { b"  \t" };
                    push(&mut body, &mut lines, blank);
                    push(&mut body, &mut lines, if r.crlf { b"\r\n" } else { b"\n" });
                }
                let (cells, cells_ok) = row_cells(c, r, &s.omit);
                let mut entries: Vec<Vec<u8>> = Vec::new();
                for (k, col) in columns.iter().enumerate() {
                    let (name, value) = match col {
                        None => (format!("x_extra_{k}"), json_string(r.extras[0].as_bytes())),
                        Some(i) => {
                            let cell = &cells[*i];
                            let name = c.fields[*i].name.clone();
                            let value = if let RowFault::Nested(j) = r.fault {
                                if j == *i {
                                    Some(b"[1]".to_vec())
                                } else {
                                    None
                                }
                            } else {
                                None
                            };
                            let value = value.or_else(|| {
                                if cell.bytes.trim_ascii().is_empty() && cell.valid {
                                    // Null three ways: omitted, null, "".
                                    match cell.style % 3 {
                                        0 => None,
                                        1 => Some(b"null".to_vec()),
                                        _ => Some(json_string(&cell.bytes)),
                                    }
                                } else if cell.json_number && cell.style % 2 == 0 {
                                    Some(cell.bytes.clone())
                                } else {
                                    Some(json_string(&cell.bytes))
                                }
                            });
                            match value {
                                None => continue,
                                Some(v) => (name, v),
                            }
                        }
                    };
                    let mut e = serde_json::to_string(&name).unwrap().into_bytes();
                    e.extend_from_slice(b": ");
                    e.extend(value);
                    entries.push(e);
                }
                let mut json_ok = true;
                if let RowFault::Nested(j) = r.fault {
                    json_ok = s.omit[j];
                }
                if let RowFault::RepeatedKey(j) = r.fault {
                    let name = serde_json::to_string(&c.fields[j].name).unwrap();
                    entries.push(format!("{name}: \"again\"").into_bytes());
                    json_ok = false;
                }
                let record = match r.fault {
                    RowFault::NotObject(text) => {
                        json_ok = false;
                        text.as_bytes().to_vec()
                    }
                    _ => [b"{".to_vec(), entries.join(&b", "[..]), b"}".to_vec()].concat(),
                };
                let line = lines;
                let bom = if s.bom && body.len() == 3 { 3 } else { 0 };
                push(&mut body, &mut lines, &record);
                verdicts.push((line, cells_ok && json_ok && record.len() + bom <= limit));
                if ri + 1 < n_rows || s.trailing_newline {
                    push(&mut body, &mut lines, if r.crlf { b"\r\n" } else { b"\n" });
                }
            }
            if verdicts.is_empty() {
                dead = dead.or(Some("empty file"));
            }
        }
    }
    if s.file_fault == FileFault::Empty {
        body.clear();
    }
    if body.is_empty() {
        // No bytes at all (a JSON Lines file without rows, or on purpose).
        dead = Some(if s.gzip > 0 {
            "empty after decompression"
        } else {
            "empty file"
        });
    }
    let body = if s.gzip > 0 { gzip(&body) } else { body };
    let expect = match dead {
        Some(why) => Expect::DeadLetter(why),
        None => Expect::Rows(verdicts),
    };
    Case {
        key,
        body,
        expect,
        record_limit: s.record_limit,
    }
}

// ---- running the stage ----------------------------------------------------------

/// What a run produced.
#[derive(Debug)]
enum Outcome {
    Processed {
        counts: sluice::Counts,
        /// Quarantine entries: line, reasons.
        quarantined: Vec<(u64, Vec<String>)>,
        /// `_line` of every Parquet row.
        parquet_lines: Vec<u64>,
    },
    DeadLettered {
        kind: ErrorKind,
        message: String,
        /// Non-`_sluice/` keys in the output bucket.
        written: Vec<String>,
    },
    Other(String),
}

fn run(key: &str, body: Vec<u8>, record_limit: Option<usize>) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_async(key, body, record_limit))
}

async fn run_async(key: &str, body: Vec<u8>, record_limit: Option<usize>) -> Outcome {
    let store = MemoryStore::new();
    let dlq = MemoryDeadLetter::new();
    let limit = record_limit.map(|l| l.to_string());
    let mut vars = vec![
        ("SLUICE_INPUT", "s3://landing/raw/"),
        ("SLUICE_OUTPUT", "s3://validated/"),
        ("SLUICE_DLQ", "file:/unused"),
        ("SLUICE_RETRY_BASE_DELAY_MS", "1"),
        ("SLUICE_RETRY_MAX_DELAY_MS", "2"),
    ];
    if let Some(l) = &limit {
        vars.push(("SLUICE_MAX_RECORD_BYTES", l.as_str()));
    }
    let config = Config::from_raw("ingest", RawConfig::from_vars(vars).unwrap()).unwrap();
    let runner = Runner::new(
        Runtime {
            config: Arc::new(config),
            store: Arc::new(store.clone()),
            dlq: Arc::new(dlq.clone()),
            metrics: Arc::new(NoMetrics),
        },
        Ingest::new(Registry::embedded().unwrap()),
    );
    let body = Bytes::from(body);
    let put = store
        .put(
            "landing",
            key,
            body.clone(),
            PutOptions::new(PutMode::Overwrite),
        )
        .await
        .unwrap();
    let mut o = ObjectRef::new("landing", key);
    o.etag = Some(put.etag);
    o.sequencer = put.sequencer;
    o.size = Some(body.len() as u64);
    let report = match runner.handle(&s3_notification(&[o]), None).await {
        Ok(r) => r,
        Err(e) => return Outcome::Other(format!("handle failed: {e}")),
    };
    if report.outcomes.len() != 1 {
        return Outcome::Other(format!("{} outcomes: {report:?}", report.outcomes.len()));
    }
    let written: Vec<String> = store
        .list("validated", "")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !k.starts_with("_sluice/"))
        .collect();
    match &report.outcomes[0].1 {
        ObjectOutcome::Processed { counts, manifest } => {
            if manifest.counts != *counts {
                return Outcome::Other(format!(
                    "manifest counts {:?} differ from the outcome's {counts:?}",
                    manifest.counts
                ));
            }
            if !dlq.envelopes().is_empty() {
                return Outcome::Other(format!(
                    "processed, yet dead-lettered: {:?}",
                    dlq.envelopes()
                ));
            }
            let mut quarantined = Vec::new();
            let mut parquet_lines = Vec::new();
            for k in &written {
                let bytes = store.get_bytes("validated", k).await.unwrap();
                if k.starts_with("_quarantine/") {
                    for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let e: serde_json::Value = serde_json::from_slice(l).unwrap();
                        let reasons = e["reasons"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|r| r.as_str().unwrap_or("").to_string())
                                    .collect()
                            })
                            .unwrap_or_default();
                        quarantined.push((e["line"].as_u64().unwrap_or(0), reasons));
                    }
                } else if k.ends_with(".parquet") {
                    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap()
                        .build()
                        .unwrap();
                    for b in reader {
                        let b = b.unwrap();
                        let i = b.schema().index_of("_line").unwrap();
                        let col = b.column(i).as_primitive::<Int64Type>();
                        parquet_lines.extend((0..col.len()).map(|r| col.value(r) as u64));
                    }
                } else {
                    return Outcome::Other(format!("unexpected output {k}"));
                }
            }
            Outcome::Processed {
                counts: *counts,
                quarantined,
                parquet_lines,
            }
        }
        ObjectOutcome::DeadLettered(_) => {
            let envs = dlq.envelopes();
            if envs.len() != 1 {
                return Outcome::Other(format!("{} envelopes: {envs:?}", envs.len()));
            }
            Outcome::DeadLettered {
                kind: envs[0].error.kind,
                message: envs[0].error.message.clone(),
                written,
            }
        }
        other => Outcome::Other(format!("{other:?}")),
    }
}

// ---- the properties -------------------------------------------------------------

/// What holds for every run, model or not: processed with the counts
/// balanced and every row in exactly one place, or dead-lettered as
/// unusable input naming the object, with nothing written.
fn check_sound(key: &str, out: &Outcome) -> Result<(), TestCaseError> {
    match out {
        Outcome::Processed {
            counts,
            quarantined,
            parquet_lines,
        } => {
            prop_assert!(counts.balanced(), "unbalanced: {counts:?}");
            prop_assert_eq!(
                quarantined.len() as u64,
                counts.rows_quarantined,
                "quarantine entries vs rows_quarantined"
            );
            prop_assert_eq!(
                parquet_lines.len() as u64,
                counts.rows_out,
                "Parquet rows vs rows_out"
            );
            for (line, reasons) in quarantined {
                prop_assert!(*line >= 1, "line {line}");
                prop_assert!(
                    !reasons.is_empty() && reasons.iter().all(|r| !r.trim().is_empty()),
                    "line {line}: reasons {reasons:?}"
                );
            }
            Ok(())
        }
        Outcome::DeadLettered {
            kind,
            message,
            written,
        } => {
            prop_assert_eq!(*kind, ErrorKind::InvalidInput, "{}", message);
            prop_assert!(message.contains(key), "{message:?} does not name {key:?}");
            prop_assert!(written.is_empty(), "dead-lettered, yet wrote {written:?}");
            Ok(())
        }
        Outcome::Other(what) => Err(TestCaseError::fail(format!("{key}: {what}"))),
    }
}

fn check_model(case: &Case, out: &Outcome) -> Result<(), TestCaseError> {
    check_sound(&case.key, out)?;
    match (&case.expect, out) {
        (
            Expect::Rows(rows),
            Outcome::Processed {
                counts,
                quarantined,
                parquet_lines,
            },
        ) => {
            let bad: Vec<u64> = rows.iter().filter(|r| !r.1).map(|r| r.0).collect();
            let good: Vec<u64> = rows.iter().filter(|r| r.1).map(|r| r.0).collect();
            prop_assert_eq!(counts.rows_in, rows.len() as u64, "rows_in");
            let got_bad: Vec<u64> = quarantined.iter().map(|q| q.0).collect();
            prop_assert_eq!(&got_bad, &bad, "quarantined lines ({:?})", quarantined);
            let mut got_good = parquet_lines.clone();
            got_good.sort_unstable();
            let mut want_good = good.clone();
            want_good.sort_unstable();
            prop_assert_eq!(got_good, want_good, "Parquet lines");
            let all: BTreeSet<u64> = rows.iter().map(|r| r.0).collect();
            prop_assert_eq!(all.len(), rows.len(), "rows on distinct lines");
            Ok(())
        }
        (Expect::DeadLetter(why), Outcome::DeadLettered { message, .. }) => {
            prop_assert!(message.contains(why), "{message:?} lacks {why:?}");
            Ok(())
        }
        (want, got) => Err(TestCaseError::fail(format!(
            "expected {want:?}, got {got:?}"
        ))),
    }
}

/// A byte-level edit of a file.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Flip(usize, u8),
    DuplicateLine(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    const SNIPPETS: &[&[u8]] = &[
        b"\"",
        b",",
        b"\n",
        b"\r",
        b"\r\n",
        b"\"\"",
        b"\xff",
        b"\xc3",
        b"{",
        b"}",
        b"\\",
        b"\0",
        b"\xEF\xBB\xBF",
        b",,,,",
        b"\n\n",
        b"\"\n\"",
    ];
    let snippet = prop_oneof![
        prop::sample::select(SNIPPETS).prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..6),
    ];
    prop_oneof![
        4 => (any::<usize>(), snippet).prop_map(|(a, s)| Edit::Insert(a, s)),
        2 => (any::<usize>(), 1..20usize).prop_map(|(a, l)| Edit::Delete(a, l)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Flip(a, b)),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Insert(i, s) => {
                let p = at(*i, b.len());
                b.splice(p..p, s.iter().copied());
            }
            Edit::Delete(i, l) => {
                let p = at(*i, b.len());
                let end = (p + l).min(b.len());
                b.drain(p..end);
            }
            Edit::Flip(i, x) => {
                if !b.is_empty() {
                    let p = i % b.len();
                    b[p] ^= x | 1;
                }
            }
            Edit::DuplicateLine(i) => {
                let p = at(*i, b.len());
                let start = b[..p]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |q| q + 1);
                let end = b[p..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |q| p + q + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            Edit::Truncate(i) => {
                let p = at(*i, b.len());
                b.truncate(p);
            }
        }
    }
    b
}

fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(fuzz_config(200))]

    /// Generated files: the run does exactly what the contract model says.
    #[test]
    fn rows_follow_the_contract_model(s in spec()) {
        let case = build(&s);
        let out = run(&case.key, case.body.clone(), case.record_limit);
        check_model(&case, &out)?;
    }

    /// Mangled files: no model, but the outcome is sound and balanced.
    #[test]
    fn mangled_files_are_processed_or_dead_lettered(
        s in spec(),
        edits in prop::collection::vec(edit(), 1..6),
        after_gzip in prop::bool::weighted(0.2),
    ) {
        let case = build(&s);
        let body = match (s.gzip > 0, after_gzip) {
            // Edit the compressed bytes (corrupt gzip is a file-level error).
            (true, true) | (false, _) => apply_edits(case.body.clone(), &edits),
            // Edit the text, then compress it again.
            (true, false) => gzip(&apply_edits(gunzip(&case.body).unwrap(), &edits)),
        };
        let out = run(&case.key, body, case.record_limit);
        check_sound(&case.key, &out)?;
    }
}

/// The generator is worth its name: its files hold valid and invalid rows
/// in fair shares, and a few of them are unusable.
#[test]
fn generated_files_mix_good_bad_and_unusable() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = spec();
    let (mut good, mut bad, mut dead) = (0, 0, 0);
    for _ in 0..300 {
        match build(&strategy.new_tree(&mut runner).unwrap().current()).expect {
            Expect::Rows(rows) => {
                good += rows.iter().filter(|r| r.1).count();
                bad += rows.iter().filter(|r| !r.1).count();
            }
            Expect::DeadLetter(_) => dead += 1,
        }
    }
    assert!(good > 1000 && bad > 500, "good {good}, bad {bad}");
    assert!((10..150).contains(&dead), "dead-lettered files: {dead}");
}

// ---- regressions found by the properties above -----------------------------

const HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge,Airport_fee";

fn good_json(minute: u32) -> String {
    let row = format!(
        "2,2024-01-15 10:{minute:02}:00,2024-01-15 10:{:02}:00,1,2.50,1,N,161,237,1,14.20,1.00,0.50,3.00,0.00,1.00,22.20,2.50,0.00",
        minute + 10
    );
    let obj: serde_json::Map<String, serde_json::Value> = HEADER
        .split(',')
        .zip(row.split(','))
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::Value::Object(obj).to_string()
}

/// Found by `rows_follow_the_contract_model`: a UTF-8 byte order mark at the
/// start of a JSON Lines file (as Windows tools write) made its first line
/// "not a JSON object" and quarantined a good row; a file holding only the
/// mark was "processed" with one bad row instead of being dead-lettered as
/// empty. CSV already skipped the mark.
#[test]
fn regression_jsonl_byte_order_mark_is_not_part_of_the_first_row() {
    let body = format!("\u{feff}{}\n{}\n", good_json(1), good_json(2));
    match run("raw/trips/bom.jsonl", body.into_bytes(), None) {
        Outcome::Processed { counts, .. } => {
            assert_eq!(
                (counts.rows_in, counts.rows_out, counts.rows_quarantined),
                (2, 2, 0)
            )
        }
        other => panic!("{other:?}"),
    }
    // Before a blank first line too.
    let body = format!("\u{feff}\n{}\n", good_json(1));
    match run("raw/trips/bom-blank.jsonl", body.into_bytes(), None) {
        Outcome::Processed { counts, .. } => {
            assert_eq!((counts.rows_in, counts.rows_out), (1, 1))
        }
        other => panic!("{other:?}"),
    }
    // The mark alone is an empty file.
    match run("raw/trips/only-bom.jsonl", b"\xEF\xBB\xBF".to_vec(), None) {
        Outcome::DeadLettered { message, .. } => {
            assert!(message.contains("empty file"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
