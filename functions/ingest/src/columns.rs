//! Column buffers for validated rows: plain typed vectors, turned into Arrow
//! arrays without copying at the end of a batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, Float64Array,
    Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use sluice::contract::{
    fast_timestamp, parse_decimal, parse_int, Field, FieldType, Value, ValueRef,
};

/// The values of one column for the rows of a batch.
#[derive(Debug)]
pub enum Values {
    /// Int64.
    Int(Vec<i64>),
    /// Float64.
    Float(Vec<f64>),
    /// Boolean.
    Bool(Vec<bool>),
    /// Timestamp (µs).
    Ts(Vec<i64>),
    /// Date32.
    Date(Vec<i32>),
    /// Decimal128 with precision and scale.
    Dec(Vec<i128>, u8, i8),
    /// Utf8: end offsets and bytes.
    Str(Vec<i32>, Vec<u8>),
    /// FixedSizeBinary(16): 128-bit ids, big-endian.
    Id(Vec<u8>),
}

/// One column: values plus validity (kept for nullable columns only).
#[derive(Debug)]
pub struct Column {
    values: Values,
    valid: Vec<bool>,
    nullable: bool,
    /// Rows a batch holds: the vectors get this room again when taken.
    capacity: usize,
    /// How `parse_push` reads a value of this column's field.
    parse: Parse,
    /// The field's checks, compiled for the column's type.
    check: Check,
}

/// A field's min, max and allowed values in the column's own type: a value
/// they pass passes [`Field::check_ref`]; one they fail is checked again by
/// it, which decides and words the reason. Checks that do not compile to
/// the column's type (a pattern, a bound of another type) are `General`.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    /// No checks.
    None,
    /// Every value goes through `Field::check_ref`.
    General,
    /// Integers and timestamps: inclusive bounds, and the allowed values.
    Int(i64, i64, Option<Box<[i64]>>),
    /// Floats: inclusive bounds.
    Float(f64, f64),
    /// Unscaled decimals: inclusive bounds.
    Dec(i128, i128),
    /// Strings: the allowed values.
    Str(Box<[Box<[u8]>]>),
}

impl Check {
    fn compile(f: &Field) -> Check {
        if f.min.is_none() && f.max.is_none() && f.allowed.is_none() && f.pattern.is_none() {
            return Check::None;
        }
        if f.pattern.is_some() {
            return Check::General;
        }
        let (min, max, allowed) = (f.min.as_ref(), f.max.as_ref(), f.allowed.as_deref());
        let compiled = match &f.ty {
            FieldType::Int | FieldType::Timestamp { .. } => {
                let int = |v: Option<&Value>, default: i64| match v {
                    None => Some(default),
                    Some(Value::Int(x)) if f.ty == FieldType::Int => Some(*x),
                    Some(Value::Timestamp(x)) if f.ty != FieldType::Int => Some(*x),
                    Some(_) => None,
                };
                let allowed = match allowed {
                    None => Some(None),
                    Some(list) => list
                        .iter()
                        .map(|v| int(Some(v), 0))
                        .collect::<Option<Box<[i64]>>>()
                        .map(Some),
                };
                match (int(min, i64::MIN), int(max, i64::MAX), allowed) {
                    (Some(lo), Some(hi), Some(allowed)) => Some(Check::Int(lo, hi, allowed)),
                    _ => None,
                }
            }
            FieldType::Float if allowed.is_none() => {
                let float = |v: Option<&Value>, default: f64| match v {
                    None => Some(default),
                    Some(Value::Float(x)) => Some(*x),
                    Some(_) => None,
                };
                match (float(min, f64::NEG_INFINITY), float(max, f64::INFINITY)) {
                    (Some(lo), Some(hi)) => Some(Check::Float(lo, hi)),
                    _ => None,
                }
            }
            FieldType::Decimal { .. } if allowed.is_none() => {
                let dec = |v: Option<&Value>, default: i128| match v {
                    None => Some(default),
                    Some(Value::Decimal(x)) => Some(*x),
                    Some(_) => None,
                };
                match (dec(min, i128::MIN), dec(max, i128::MAX)) {
                    (Some(lo), Some(hi)) => Some(Check::Dec(lo, hi)),
                    _ => None,
                }
            }
            FieldType::String if min.is_none() && max.is_none() => allowed.and_then(|list| {
                list.iter()
                    .map(|v| match v {
                        Value::Str(s) => Some(s.as_bytes().into()),
                        _ => None,
                    })
                    .collect::<Option<Box<[Box<[u8]>]>>>()
                    .map(Check::Str)
            }),
            _ => None,
        };
        compiled.unwrap_or(Check::General)
    }

    // Whether a value certainly passes (`false`: ask the field), one test
    // per column type, so that the hot loop builds no `ValueRef`.

    #[inline]
    fn int_passes(&self, x: i64) -> bool {
        match self {
            Check::None => true,
            Check::Int(lo, hi, allowed) => {
                *lo <= x && x <= *hi && allowed.as_ref().is_none_or(|a| a.contains(&x))
            }
            _ => false,
        }
    }

    #[inline]
    fn float_passes(&self, x: f64) -> bool {
        match self {
            Check::None => true,
            Check::Float(lo, hi) => *lo <= x && x <= *hi,
            _ => false,
        }
    }

    #[inline]
    fn dec_passes(&self, x: i128) -> bool {
        match self {
            Check::None => true,
            Check::Dec(lo, hi) => *lo <= x && x <= *hi,
            _ => false,
        }
    }

    #[inline]
    fn str_passes(&self, s: &[u8]) -> bool {
        match self {
            Check::None => true,
            Check::Str(allowed) => allowed.iter().any(|a| **a == *s),
            _ => false,
        }
    }
}

/// The parse `Column::parse_push` does, fixed when the column is made.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Parse {
    /// Through `Field::parse_checked_ref` (a date, a boolean, a timestamp
    /// in another format, or a column not made for a field).
    General,
    /// `%Y-%m-%d %H:%M:%S` (or with a `T`, the separator given): the
    /// fixed-width fast path, less the zone's offset in microseconds.
    Timestamp(i64, u8),
    /// The column's own type, parsed in place.
    Typed,
}

impl Column {
    /// An empty column for a contract type.
    pub fn new(ty: &FieldType, nullable: bool, capacity: usize) -> Self {
        let values = match ty {
            FieldType::String => Values::Str(
                Vec::with_capacity(capacity),
                Vec::with_capacity(capacity * 4),
            ),
            FieldType::Int => Values::Int(Vec::with_capacity(capacity)),
            FieldType::Float => Values::Float(Vec::with_capacity(capacity)),
            FieldType::Bool => Values::Bool(Vec::with_capacity(capacity)),
            FieldType::Timestamp { .. } => Values::Ts(Vec::with_capacity(capacity)),
            FieldType::Date { .. } => Values::Date(Vec::with_capacity(capacity)),
            FieldType::Decimal { precision, scale } => {
                Values::Dec(Vec::with_capacity(capacity), *precision, *scale)
            }
        };
        Column {
            values,
            valid: Vec::with_capacity(if nullable { capacity } else { 0 }),
            nullable,
            capacity,
            parse: Parse::General,
            check: Check::General,
        }
    }

    /// An empty column for a contract field, read by [`Column::parse_push`].
    pub fn for_field(f: &Field, capacity: usize) -> Self {
        let mut c = Column::new(&f.ty, f.nullable, capacity);
        c.parse = match &f.ty {
            FieldType::Timestamp {
                format,
                offset_secs,
            } if format == "%Y-%m-%d %H:%M:%S" || format == "%Y-%m-%dT%H:%M:%S" => {
                Parse::Timestamp(i64::from(*offset_secs) * 1_000_000, format.as_bytes()[8])
            }
            FieldType::Int | FieldType::Float | FieldType::Decimal { .. } | FieldType::String => {
                Parse::Typed
            }
            _ => Parse::General,
        };
        c.check = Check::compile(f);
        c
    }

    /// A non-null FixedSizeBinary(16) column of 128-bit ids.
    pub fn id(capacity: usize) -> Self {
        Column {
            values: Values::Id(Vec::with_capacity(capacity * 16)),
            valid: Vec::new(),
            nullable: false,
            capacity,
            parse: Parse::General,
            check: Check::General,
        }
    }

    /// A non-null Int64 column.
    pub fn int(capacity: usize) -> Self {
        Column::new(&FieldType::Int, false, capacity)
    }

    /// Append a parsed value (already checked against the field's type).
    pub fn push(&mut self, v: ValueRef<'_>) {
        let valid = !matches!(v, ValueRef::Null);
        match (&mut self.values, v) {
            (Values::Int(c), ValueRef::Int(x)) => c.push(x),
            (Values::Float(c), ValueRef::Float(x)) => c.push(x),
            (Values::Bool(c), ValueRef::Bool(x)) => c.push(x),
            (Values::Ts(c), ValueRef::Timestamp(x)) => c.push(x),
            (Values::Date(c), ValueRef::Date(x)) => c.push(x),
            (Values::Dec(c, _, _), ValueRef::Decimal(x)) => c.push(x),
            (Values::Str(off, data), ValueRef::Str(s)) => {
                data.extend_from_slice(s.as_bytes());
                off.push(data.len() as i32);
            }
            // Null (or, defensively, a mismatched type): a default slot.
            (Values::Int(c), _) | (Values::Ts(c), _) => c.push(0),
            (Values::Float(c), _) => c.push(0.0),
            (Values::Bool(c), _) => c.push(false),
            (Values::Date(c), _) => c.push(0),
            (Values::Dec(c, _, _), _) => c.push(0),
            (Values::Str(off, data), _) => off.push(data.len() as i32),
            (Values::Id(c), _) => c.extend_from_slice(&[0; 16]),
        }
        if self.nullable {
            self.valid.push(valid);
        }
    }

    /// Parse one raw field as `f` (the field this column was made for),
    /// check it against the field's rules and append it; on `Err` (the
    /// reason, worded as [`Field::parse_checked_ref`] words it) nothing is
    /// appended. Empty text, after trimming, is null.
    ///
    /// The common types are parsed straight into the column's vector; a
    /// failure is worded by the general parse, so the reasons are the same.
    #[inline]
    pub fn parse_push(&mut self, f: &Field, raw: &[u8]) -> Result<(), String> {
        let raw = raw.trim_ascii();
        if raw.is_empty() || self.parse == Parse::General {
            let v = f.parse_checked_ref(raw)?;
            self.push(v);
            return Ok(());
        }
        // Where the fast parse declines, the general one decides (and words
        // the reason): the same values and reasons either way.
        match (&mut self.values, self.parse) {
            (Values::Ts(c), Parse::Timestamp(offset, sep)) => {
                let Some(local) = fast_timestamp(raw, sep) else {
                    return self.push_general(f, raw);
                };
                let x = local - offset;
                if !self.check.int_passes(x) {
                    f.check_ref(ValueRef::Timestamp(x))?;
                }
                c.push(x);
            }
            (Values::Int(c), _) => {
                let Some(x) = parse_int(raw) else {
                    return self.push_general(f, raw);
                };
                if !self.check.int_passes(x) {
                    f.check_ref(ValueRef::Int(x))?;
                }
                c.push(x);
            }
            (Values::Float(c), _) => {
                let x = std::str::from_utf8(raw)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .filter(|x| x.is_finite());
                let Some(x) = x else {
                    return self.push_general(f, raw);
                };
                if !self.check.float_passes(x) {
                    f.check_ref(ValueRef::Float(x))?;
                }
                c.push(x);
            }
            (Values::Dec(c, p, s), _) => {
                let Some(x) = parse_decimal(raw, *p, *s) else {
                    return self.push_general(f, raw);
                };
                if !self.check.dec_passes(x) {
                    f.check_ref(ValueRef::Decimal(x))?;
                }
                c.push(x);
            }
            (Values::Str(off, data), _) => {
                let Ok(text) = std::str::from_utf8(raw) else {
                    return self.push_general(f, raw);
                };
                if !self.check.str_passes(raw) {
                    f.check_ref(ValueRef::Str(text))?;
                }
                data.extend_from_slice(raw);
                off.push(data.len() as i32);
            }
            _ => return self.push_general(f, raw),
        }
        if self.nullable {
            self.valid.push(true);
        }
        Ok(())
    }

    /// Check a value already of the field's type (from a typed Parquet
    /// column) and append it; on `Err` (worded as
    /// [`Field::parse_checked_ref`] words it) nothing is appended. The
    /// compiled checks decide a value they pass; the field decides (and
    /// words) the rest.
    #[inline]
    pub fn push_checked(&mut self, f: &Field, v: ValueRef<'_>) -> Result<(), String> {
        // The common case first: a value of the column's type that the
        // compiled checks pass.
        let check = &self.check;
        let pushed = match (&mut self.values, v) {
            (Values::Int(c), ValueRef::Int(x)) | (Values::Ts(c), ValueRef::Timestamp(x))
                if check.int_passes(x) =>
            {
                c.push(x);
                true
            }
            (Values::Float(c), ValueRef::Float(x)) if check.float_passes(x) => {
                c.push(x);
                true
            }
            (Values::Dec(c, _, _), ValueRef::Decimal(x)) if check.dec_passes(x) => {
                c.push(x);
                true
            }
            _ => false,
        };
        if pushed {
            if self.nullable {
                self.valid.push(true);
            }
            return Ok(());
        }
        let passes = match v {
            ValueRef::Null if !self.nullable => return Err(format!("{}: missing value", f.name)),
            ValueRef::Null => true,
            ValueRef::Int(x) | ValueRef::Timestamp(x) => self.check.int_passes(x),
            ValueRef::Float(x) => self.check.float_passes(x),
            ValueRef::Decimal(x) => self.check.dec_passes(x),
            ValueRef::Str(s) => self.check.str_passes(s.as_bytes()),
            ValueRef::Bool(_) | ValueRef::Date(_) => self.check == Check::None,
        };
        if !passes {
            f.check_ref(v)?;
        }
        self.push(v);
        Ok(())
    }

    /// Parse, check and append through the general path.
    fn push_general(&mut self, f: &Field, raw: &[u8]) -> Result<(), String> {
        let v = f.parse_checked_ref(raw)?;
        self.push(v);
        Ok(())
    }

    /// Drop every row past the first `n` (a rejected row rolled back).
    pub fn truncate(&mut self, n: usize) {
        match &mut self.values {
            Values::Int(c) | Values::Ts(c) => c.truncate(n),
            Values::Float(c) => c.truncate(n),
            Values::Bool(c) => c.truncate(n),
            Values::Date(c) => c.truncate(n),
            Values::Dec(c, _, _) => c.truncate(n),
            Values::Str(off, data) => {
                off.truncate(n);
                data.truncate(off.last().map_or(0, |&e| e as usize));
            }
            Values::Id(c) => c.truncate(n * 16),
        }
        self.valid.truncate(n);
    }

    /// The value of the last row (for rules, record ids and partitions).
    pub fn last(&self) -> ValueRef<'_> {
        if self.nullable && self.valid.last() == Some(&false) {
            return ValueRef::Null;
        }
        let v = match &self.values {
            Values::Int(c) => c.last().map(|&x| ValueRef::Int(x)),
            Values::Ts(c) => c.last().map(|&x| ValueRef::Timestamp(x)),
            Values::Float(c) => c.last().map(|&x| ValueRef::Float(x)),
            Values::Bool(c) => c.last().map(|&x| ValueRef::Bool(x)),
            Values::Date(c) => c.last().map(|&x| ValueRef::Date(x)),
            Values::Dec(c, _, _) => c.last().map(|&x| ValueRef::Decimal(x)),
            Values::Str(off, data) => {
                let end = off.last().map(|&e| e as usize);
                let start = off.len().checked_sub(2).map_or(0, |i| off[i] as usize);
                end.and_then(|end| std::str::from_utf8(&data[start..end]).ok())
                    .map(ValueRef::Str)
            }
            Values::Id(_) => None,
        };
        v.unwrap_or(ValueRef::Null)
    }

    /// Append a 128-bit id as 16 big-endian bytes (for id columns): the
    /// bytes read in order are the id's 32 hex digits.
    pub fn push_id(&mut self, id: u128) {
        if let Values::Id(c) = &mut self.values {
            c.extend_from_slice(&id.to_be_bytes());
        }
    }

    /// Append an integer (for Int64 columns).
    pub fn push_int(&mut self, x: i64) {
        if let Values::Int(c) = &mut self.values {
            c.push(x);
        }
    }

    /// Take the rows as an Arrow array, leaving the column empty.
    pub fn take_array(&mut self) -> ArrayRef {
        let room = if self.nullable { self.capacity } else { 0 };
        let valid = std::mem::replace(&mut self.valid, Vec::with_capacity(room));
        let nulls = if self.nullable && valid.iter().any(|v| !v) {
            Some(NullBuffer::new(BooleanBuffer::from(valid)))
        } else {
            None
        };
        let cap = self.capacity;
        match &mut self.values {
            Values::Int(c) => Arc::new(Int64Array::new(ScalarBuffer::from(renew(c, cap)), nulls)),
            Values::Float(c) => {
                Arc::new(Float64Array::new(ScalarBuffer::from(renew(c, cap)), nulls))
            }
            Values::Bool(c) => {
                Arc::new(BooleanArray::new(BooleanBuffer::from(renew(c, cap)), nulls))
            }
            Values::Ts(c) => Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(renew(c, cap)), nulls)
                    .with_timezone("+00:00"),
            ),
            Values::Date(c) => Arc::new(Date32Array::new(ScalarBuffer::from(renew(c, cap)), nulls)),
            Values::Dec(c, p, s) => Arc::new(
                Decimal128Array::new(ScalarBuffer::from(renew(c, cap)), nulls)
                    .with_precision_and_scale(*p, *s)
                    .unwrap_or_else(|_| Decimal128Array::from(Vec::<i128>::new())),
            ),
            Values::Id(c) => {
                let data = renew(c, cap * 16);
                match FixedSizeBinaryArray::try_new(16, data.into(), nulls) {
                    Ok(a) => Arc::new(a),
                    Err(_) => Arc::new(FixedSizeBinaryArray::new_null(16, 0)),
                }
            }
            Values::Str(off, data) => {
                let mut offsets = Vec::with_capacity(off.len() + 1);
                offsets.push(0i32);
                offsets.append(off);
                let room = data.len();
                let data = renew(data, room);
                // Every value was pushed from a &str, so the bytes are valid UTF-8
                // and the offsets monotonic; the checked constructor re-verifies.
                match StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    data.into(),
                    nulls,
                ) {
                    Ok(a) => Arc::new(a),
                    Err(_) => Arc::new(StringArray::from(Vec::<String>::new())),
                }
            }
        }
    }
}

/// The vector's values, leaving it empty with room for `cap` of them (the
/// next batch's rows are pushed without growing it again).
fn renew<T>(c: &mut Vec<T>, cap: usize) -> Vec<T> {
    std::mem::replace(c, Vec::with_capacity(cap))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::Array;
    use proptest::prelude::*;
    use sluice::contract::Contract;

    /// Fields of every type and kind of check, some of whose checks compile
    /// to the column's type and some of which do not (a pattern, an int
    /// bound on a float, a timestamp in a zone and another format).
    pub(crate) const FIELDS: &str = r#"
[dataset]
name = "mix"
version = "1.0.0"

[[fields]]
name = "vendor"
type = "int"
allowed = [1, 2, 6, 7]

[[fields]]
name = "count"
type = "int"
nullable = false
min = -3
max = 9

[[fields]]
name = "free_int"
type = "int"

[[fields]]
name = "distance"
type = "float"
min = 0.0
max = 500.0

[[fields]]
name = "ratio"
type = "float"
min = 0
max = 1

[[fields]]
name = "fare"
type = "decimal"
precision = 6
scale = 2
min = "-10.00"
max = "999.99"

[[fields]]
name = "picked"
type = "timestamp"
format = "%Y-%m-%d %H:%M:%S"
zone = "+00:00"
nullable = false
min = "2000-01-01 00:00:00"
max = "2035-12-31 23:59:59"

[[fields]]
name = "dropped"
type = "timestamp"
format = "%Y-%m-%dT%H:%M:%S"
zone = "-05:00"

[[fields]]
name = "loose_time"
type = "timestamp"
format = "%d/%m/%Y %H:%M"

[[fields]]
name = "flag"
type = "string"
allowed = ["Y", "N"]

[[fields]]
name = "code"
type = "string"
pattern = "^[A-Z]{2}[0-9]+$"

[[fields]]
name = "note"
type = "string"

[[fields]]
name = "day"
type = "date"
format = "%Y-%m-%d"

[[fields]]
name = "ok"
type = "bool"
"#;

    fn mix() -> Contract {
        Contract::parse("mix.toml", FIELDS).expect("the test contract parses")
    }

    /// `parse_push` keeps what `parse_checked_ref` keeps and refuses what it
    /// refuses, with the same reason, and a refused value leaves the column
    /// as it was.
    fn agrees(f: &Field, col: &mut Column, raw: &[u8]) -> Result<(), TestCaseError> {
        let before = col.valid.len();
        let want = f.parse_checked_ref(raw);
        let got = col.parse_push(f, raw);
        match (&want, &got) {
            (Ok(v), Ok(())) => prop_assert_eq!(col.last(), *v, "{} of {:?}", f.name, raw),
            (Err(a), Err(b)) => {
                prop_assert_eq!(a, b, "{} of {:?}", f.name, raw);
                if f.nullable {
                    prop_assert_eq!(col.valid.len(), before, "a refused value was kept");
                }
            }
            _ => prop_assert!(
                false,
                "{} of {:?}: general {want:?}, typed {got:?}",
                f.name,
                raw
            ),
        }
        Ok(())
    }

    #[test]
    fn the_typed_parse_agrees_with_the_general_one_on_edge_cases() {
        let c = mix();
        let raws: &[&[u8]] = &[
            b"",
            b" ",
            b"1",
            b" 2 ",
            b"3",
            b"-3",
            b"-4",
            b"9",
            b"10",
            b"2.0",
            b"2.5",
            b"+7",
            b"0",
            b"-0",
            b"1e3",
            b"0.5",
            b"500",
            b"500.0001",
            b"-0.0",
            b"NaN",
            b"inf",
            b"1.005",
            b"999.99",
            b"1000",
            b"-10.00",
            b"-10.01",
            b"12.300",
            b"2024-01-13 00:18:25",
            b"2024-01-13T00:18:25",
            b"1999-12-31 23:59:59",
            b"2024-02-30 00:00:00",
            b"2024-1-5 1:2:3",
            b"13/01/2024 00:18",
            b"2024-01-13",
            b"Y",
            b"N",
            b"y",
            b"AB12",
            b"ab12",
            b"true",
            b"no",
            b"\xff\xfe",
            "caf\u{e9}".as_bytes(),
        ];
        for raw in raws {
            for f in &c.fields {
                let mut col = Column::for_field(f, 4);
                agrees(f, &mut col, raw).map_err(|e| e.to_string()).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn the_typed_parse_agrees_with_the_general_one(
            raw in prop_oneof![
                "[-+ ]?[0-9]{0,4}(\\.[0-9]{0,4})?",
                "20[0-9]{2}-[01][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-6][0-9]:[0-6][0-9]",
                "[YNAB0-9 ]{0,4}",
                any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ]
        ) {
            let c = mix();
            for f in &c.fields {
                let mut col = Column::for_field(f, 4);
                // Once into an empty column, once after a value was kept.
                agrees(f, &mut col, raw.as_bytes())?;
                agrees(f, &mut col, raw.as_bytes())?;
            }
        }
    }

    #[test]
    fn a_rolled_back_row_leaves_no_trace() {
        let c = mix();
        let note = c.fields.iter().find(|f| f.name == "note").unwrap();
        let mut col = Column::for_field(note, 4);
        col.parse_push(note, b"kept").unwrap();
        col.parse_push(note, b"rolled back").unwrap();
        col.truncate(1);
        col.parse_push(note, b"next").unwrap();
        let arr = col.take_array();
        let arr = arr.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            arr.iter().collect::<Vec<_>>(),
            vec![Some("kept"), Some("next")]
        );
    }

    #[test]
    fn ids_are_their_hex_digits_in_order() {
        let ids = [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0fed_cba9_8765_4321, // pragma: allowlist secret
        ];
        let mut col = Column::id(4);
        for id in ids {
            col.push_id(id);
        }
        let arr = col.take_array();
        let arr = arr.as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
        assert_eq!(arr.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(hex::encode(arr.value(i)), format!("{id:032x}"));
        }
    }
}
