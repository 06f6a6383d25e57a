//! Property-based fuzzing of contract loading (issue 10): `Contract::parse`
//! and `Registry::from_sources` on structured mutations of the real
//! contracts in `contracts/`, on byte-level edits of their text, and on
//! generated TOML-ish documents made of contract sections and keys.
//!
//! The property: loading never panics; a contract is either loaded, and then
//! holds everything the loader promises to check (unique non-empty fields,
//! keys, partition, rules and quality thresholds that name real fields of
//! the right types, bounds in order), or rejected with a configuration error
//! that names the file and the place, with a reason. Every field of a loaded
//! contract then parses arbitrary raw values without panicking, and its
//! rejections name the field.
//!
//! `SLUICE_FUZZ_CASES` sets the cases per property (`make fuzz` sets 20000),
//! `SLUICE_FUZZ_SEED` the seed (a number, or `random`; fixed by default).

use proptest::prelude::*;

use crate::fuzz::fuzz_config;
use sluice::contract::{Contract, FieldType, Registry, Value};
use sluice::error::Error;

const SOURCE: &str = "fuzz.toml";

/// The real contracts, `(file name, text)`.
fn contracts() -> &'static [(String, String)] {
    static C: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no contracts in {}", dir.display());
        out
    })
}

// ---- the property --------------------------------------------------------

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

fn check_rejection(e: &Error) -> Result<(), TestCaseError> {
    match e {
        Error::Config { var, reason } => {
            let place = var
                .strip_prefix(&format!("contract {SOURCE}: "))
                .ok_or_else(|| fail(format!("{e} does not name the file")))?;
            prop_assert!(!place.trim().is_empty(), "{e}: no place");
            prop_assert!(!reason.trim().is_empty(), "{e}: no reason");
            Ok(())
        }
        other => Err(fail(format!("{other:?} is not a configuration error"))),
    }
}

/// What a loaded contract must hold.
fn check_loaded(c: &Contract) -> Result<(), TestCaseError> {
    let n = c.fields.len();
    prop_assert!(n > 0, "no fields");
    prop_assert!(
        !c.name.is_empty()
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'),
        "dataset name {:?}",
        c.name
    );
    prop_assert_eq!(&c.source, SOURCE);
    for (i, f) in c.fields.iter().enumerate() {
        prop_assert!(!f.name.is_empty(), "field {i} has no name");
        prop_assert!(
            c.fields[..i].iter().all(|g| g.name != f.name),
            "{} twice",
            f.name
        );
        if let FieldType::Decimal { precision, scale } = f.ty {
            prop_assert!(
                (1..=38).contains(&precision) && scale >= 0 && scale as u8 <= precision,
                "{}: decimal({precision},{scale})",
                f.name
            );
        }
        if let (Some(lo), Some(hi)) = (&f.min, &f.max) {
            prop_assert!(
                lo.partial_cmp_num(hi) != Some(std::cmp::Ordering::Greater),
                "{}: min {lo:?} > max {hi:?}",
                f.name
            );
        }
        for bound in [&f.min, &f.max].into_iter().flatten() {
            prop_assert!(
                !matches!(bound, Value::Null | Value::Str(_) | Value::Bool(_)),
                "{}: bound {bound:?}",
                f.name
            );
        }
        if f.allowed.is_some() {
            prop_assert!(
                matches!(f.ty, FieldType::Int | FieldType::String),
                "{}: allowed on {:?}",
                f.name,
                f.ty
            );
        }
        if f.pattern.is_some() {
            prop_assert!(
                f.ty == FieldType::String,
                "{}: pattern on {:?}",
                f.name,
                f.ty
            );
        }
    }
    prop_assert!(c.natural_key.iter().all(|&i| i < n), "natural key");
    if let Some(p) = &c.partition {
        prop_assert!(p.field < n, "partition field");
        let f = &c.fields[p.field];
        prop_assert!(
            matches!(f.ty, FieldType::Timestamp { .. } | FieldType::Date { .. }) && !f.nullable,
            "partition on {:?} (nullable: {})",
            f.ty,
            f.nullable
        );
    }
    for r in &c.rules {
        prop_assert!(r.left < n && r.right < n, "rule {}", r.name);
        let (l, rt) = (&c.fields[r.left].ty, &c.fields[r.right].ty);
        prop_assert!(
            l.arrow_type() == rt.arrow_type() && !matches!(l, FieldType::String | FieldType::Bool),
            "rule {} compares {l:?} with {rt:?}",
            r.name
        );
    }
    let q = &c.quality;
    let numeric = |name: &str| {
        c.field_index(name)
            .map(|i| !matches!(c.fields[i].ty, FieldType::String | FieldType::Bool))
    };
    for (col, ratio) in &q.max_null_ratio {
        prop_assert!(c.field_index(col).is_some(), "max_null_ratio.{col}");
        prop_assert!(
            (0.0..=1.0).contains(ratio),
            "max_null_ratio.{col} = {ratio}"
        );
    }
    for (col, (lo, hi)) in &q.mean_range {
        prop_assert_eq!(numeric(col), Some(true), "mean_range.{}", col);
        prop_assert!(lo <= hi, "mean_range.{col} = [{lo}, {hi}]");
    }
    prop_assert!(
        q.volume_tolerance >= 0.0,
        "volume_tolerance = {}",
        q.volume_tolerance
    );
    prop_assert!(
        (0.0..=1.0).contains(&q.max_quarantine_ratio),
        "max_quarantine_ratio = {}",
        q.max_quarantine_ratio
    );
    prop_assert_eq!(c.schema().fields().len(), n);
    Ok(())
}

fn check_text(text: &str) -> Result<(), TestCaseError> {
    match Contract::parse(SOURCE, text) {
        Err(e) => check_rejection(&e),
        Ok(c) => {
            check_loaded(&c)?;
            // The registry loads what parse loads, under the dataset's name.
            let reg = Registry::from_sources([(SOURCE, text)])
                .map_err(|e| fail(format!("parse loaded it, the registry did not: {e}")))?;
            prop_assert!(reg.get(&c.name).is_some());
            // Twice is a duplicate, named as such.
            match Registry::from_sources([(SOURCE, text), (SOURCE, text)]) {
                Ok(_) => prop_assert!(false, "a dataset defined twice was loaded"),
                Err(e) => {
                    check_rejection(&e)?;
                    prop_assert!(e.to_string().contains("also defined"), "{e}");
                }
            }
            for raw in probe_values() {
                for f in &c.fields {
                    if let Err(reason) = f.parse_checked(raw) {
                        prop_assert!(
                            reason.starts_with(&format!("{}: ", f.name)),
                            "{reason:?} does not name field {}",
                            f.name
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Raw values every field of a loaded contract is probed with.
fn probe_values() -> &'static [&'static [u8]] {
    const PROBES: &[&[u8]] = &[
        b"",
        b" ",
        b"0",
        b"-0",
        b"1",
        b"-1",
        b"+",
        b"-",
        b".",
        b"-.5",
        b"2.0",
        b"1e308",
        b"nan",
        b"inf",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"999999999999999999",
        b"99999999999999999999999999999999999999999",
        b"0.000000000000000000000000000000000000001",
        b"2024-01-15",
        b"2024-01-15 10:30:00",
        b"2024-01-15T10:30:00",
        b"2024-02-30 10:30:00",
        b"9999-12-31 23:59:59",
        b"0000-01-01 00:00:00",
        b"+262143-12-31",
        b"true",
        b"Y",
        b"x",
        b"\xff\xfe",
        b"\xc3",
        b"\xc3\xa9",
    ];
    PROBES
}

// ---- structured mutations of the real contracts ----------------------------

/// Strings worth putting anywhere in a contract.
const WORDS: &[&str] = &[
    "",
    "trips",
    "Trips",
    "a b",
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "fare_amount",
    "store_and_fwd_flag",
    "nope",
    "string",
    "int",
    "float",
    "bool",
    "timestamp",
    "date",
    "decimal",
    "integer",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%",
    "%Q",
    "%s",
    "%.3f",
    "%d.%m.%Y %H:%M",
    "UTC",
    "Z",
    "+05:30",
    "-18:00",
    "+19:00",
    "+",
    "-:",
    "+1:60",
    "Mars/Olympus",
    "day",
    "month",
    "week",
    "1.0.0",
    "1.2",
    "x.y.z",
    "18446744073709551616.0.0",
    "1.0.0.0",
    "<",
    ">=",
    "=>",
    "!=",
    "(",
    "[A-Z]{3}[0-9]{2}",
    "a{100}{100}",
    "2000-01-01 00:00:00",
    "2035-12-31 23:59:59",
    "2024-01-15",
    "abc",
    "-5.00",
    "1.555",
    "99999999999999999999999999999999999999999",
];

fn toml_leaf() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|w| toml::Value::String(w.into())),
        1 => "[a-zA-Z0-9_ %:.+-]{0,12}".prop_map(toml::Value::String),
        2 => prop_oneof![
            Just(0i64), Just(1), Just(-1), Just(2), Just(9), Just(38), Just(39),
            Just(127), Just(128), Just(255), Just(256), Just(i64::MAX), Just(i64::MIN),
        ].prop_map(toml::Value::Integer),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => prop_oneof![
            Just(0.0f64), Just(0.1), Just(0.5), Just(1.0), Just(1.5), Just(-0.1), Just(2.0),
            Just(500.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
        ].prop_map(toml::Value::Float),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ]
}

fn toml_value() -> BoxedStrategy<toml::Value> {
    toml_leaf()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
                prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                    .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

#[derive(Debug, Clone)]
enum Op {
    /// Drop the node from its parent.
    Remove,
    /// Put another value in its place.
    Replace(toml::Value),
    /// The same content as another type.
    Retype,
    /// Arrays: the first element twice (a field or rule defined twice).
    Duplicate,
    /// Tables: add a key (known or not) with a value.
    Insert(String, toml::Value),
}

const CONTRACT_KEYS: &[&str] = &[
    "name",
    "type",
    "nullable",
    "format",
    "zone",
    "precision",
    "scale",
    "min",
    "max",
    "allowed",
    "pattern",
    "left",
    "op",
    "right",
    "natural_key",
    "partition",
    "field",
    "granularity",
    "version",
    "min_rows",
    "max_quarantine_ratio",
    "volume_window",
    "volume_tolerance",
    "max_null_ratio",
    "mean_range",
    "fare_amount",
    "trip_distance",
    "VendorID",
    "units",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Remove),
        4 => toml_value().prop_map(Op::Replace),
        2 => Just(Op::Retype),
        1 => Just(Op::Duplicate),
        3 => (prop::sample::select(CONTRACT_KEYS), toml_value())
            .prop_map(|(k, v)| Op::Insert(k.to_string(), v)),
    ]
}

fn count(v: &toml::Value) -> usize {
    1 + match v {
        toml::Value::Table(t) => t.values().map(count).sum(),
        toml::Value::Array(a) => a.iter().map(count).sum(),
        _ => 0,
    }
}

fn apply_here(v: &mut toml::Value, op: &Op) {
    use toml::Value as T;
    match op {
        Op::Remove => unreachable!("handled by the parent"),
        Op::Replace(x) => *v = x.clone(),
        Op::Retype => {
            *v = match v.clone() {
                T::String(s) => s
                    .parse::<i64>()
                    .map(T::Integer)
                    .or_else(|_| s.parse::<f64>().map(T::Float))
                    .unwrap_or(T::Array(vec![T::String(s)])),
                T::Integer(i) => T::Float(i as f64),
                T::Float(f) => T::String(f.to_string()),
                T::Boolean(b) => T::String(b.to_string()),
                T::Datetime(d) => T::String(d.to_string()),
                T::Array(a) => a.into_iter().next().unwrap_or(T::Table(Default::default())),
                T::Table(t) => T::Array(t.into_iter().map(|(_, v)| v).collect()),
            }
        }
        Op::Duplicate => {
            if let T::Array(a) = v {
                if let Some(first) = a.first().cloned() {
                    a.push(first);
                }
            }
        }
        Op::Insert(k, x) => {
            if let T::Table(t) = v {
                t.insert(k.clone(), x.clone());
            }
        }
    }
}

enum Walk {
    NotYet,
    Done,
    RemoveMe,
}

fn mutate(v: &mut toml::Value, n: &mut usize, op: &Op) -> Walk {
    if *n == 0 {
        if matches!(op, Op::Remove) {
            return Walk::RemoveMe;
        }
        apply_here(v, op);
        return Walk::Done;
    }
    *n -= 1;
    match v {
        toml::Value::Table(t) => {
            let keys: Vec<String> = t.keys().cloned().collect();
            for k in keys {
                match mutate(t.get_mut(&k).unwrap(), n, op) {
                    Walk::NotYet => {}
                    Walk::Done => return Walk::Done,
                    Walk::RemoveMe => {
                        t.remove(&k);
                        return Walk::Done;
                    }
                }
            }
            Walk::NotYet
        }
        toml::Value::Array(a) => {
            for i in 0..a.len() {
                match mutate(&mut a[i], n, op) {
                    Walk::NotYet => {}
                    Walk::Done => return Walk::Done,
                    Walk::RemoveMe => {
                        a.remove(i);
                        return Walk::Done;
                    }
                }
            }
            Walk::NotYet
        }
        _ => Walk::NotYet,
    }
}

/// A real contract with `edits` applied, as TOML text (`None` if the
/// result is not a table TOML can write).
fn mutated(text: &str, edits: &[(usize, Op)]) -> Option<String> {
    let mut v = toml::Value::Table(toml::from_str::<toml::Table>(text).unwrap());
    for (at, op) in edits {
        let mut n = at % count(&v);
        if let Walk::RemoveMe = mutate(&mut v, &mut n, op) {
            v = toml::Value::Table(Default::default());
        }
    }
    match v {
        toml::Value::Table(t) => toml::to_string(&t).ok(),
        _ => None,
    }
}

// ---- byte-level edits of the text ----------------------------------------------

#[derive(Debug, Clone)]
enum Edit {
    /// Remove `len` bytes at `at`.
    Delete(usize, usize),
    /// Insert a snippet at `at`.
    Insert(usize, String),
    /// Repeat the line at `at`.
    DuplicateLine(usize),
    /// Cut the text at `at`.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 1..40usize).prop_map(|(a, l)| Edit::Delete(a, l)),
        3 => (any::<usize>(), prop_oneof![
            prop::sample::select(&["\"", "'", "[", "]", "[[", "]]", "=", "\n", "#", ",", "{", "}", "\\", "\"\"\"", "nan", "\u{0}"][..])
                .prop_map(str::to_string),
            "[ -~\n]{0,8}",
        ]).prop_map(|(a, s)| Edit::Insert(a, s)),
        2 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn edited(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Delete(i, l) => {
                let s = at(*i, b.len());
                let end = (s + l).min(b.len());
                b.drain(s..end);
            }
            Edit::Insert(i, snippet) => {
                let s = at(*i, b.len());
                b.splice(s..s, snippet.bytes());
            }
            Edit::DuplicateLine(i) => {
                let s = at(*i, b.len());
                let start = b[..s]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let end = b[s..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| s + p + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            Edit::Truncate(i) => {
                let s = at(*i, b.len());
                b.truncate(s);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

// ---- generated TOML-ish contracts ----------------------------------------------

/// Lines of one table, each key once (TOML refuses a key twice).
fn block(header: &str, lines: Vec<String>) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let body: Vec<String> = lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .filter(|l| seen.insert(l.split(" = ").next().unwrap_or_default().to_string()))
        .collect();
    format!("{header}\n{}\n", body.join("\n"))
}

fn pick(options: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(options)
        .prop_map(str::to_string)
        .boxed()
}

/// `key = value`: mostly one of `good`, sometimes one of `bad`.
fn kv(
    key: &'static str,
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> BoxedStrategy<String> {
    let value = if bad.is_empty() {
        pick(good)
    } else if good.is_empty() {
        pick(bad)
    } else {
        prop_oneof![12 => pick(good), 1 => pick(bad)].boxed()
    };
    value.prop_map(move |v| format!("{key} = {v}")).boxed()
}

/// `k = value` with `k` one of `keys`.
fn kv_any(
    keys: &'static [&'static str],
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> BoxedStrategy<String> {
    (pick(keys), prop_oneof![8 => pick(good), 1 => pick(bad)])
        .prop_map(|(k, v)| format!("{k} = {v}"))
        .boxed()
}

/// Mostly the good line, sometimes a bad one, rarely none.
fn usually(good: &'static str, bad: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![24 => Just(good.to_string()), 1 => bad, 1 => Just(String::new())].boxed()
}

fn field_block() -> BoxedStrategy<String> {
    // Mostly a name and a type that fit together, then more keys.
    let head = prop_oneof![
        40 => pick(&[
            "name = \"a\"\ntype = \"int\"",
            "name = \"b\"\ntype = \"float\"",
            "name = \"d\"\ntype = \"decimal\"\nprecision = 10\nscale = 2",
            "name = \"s\"\ntype = \"string\"",
            "name = \"f\"\ntype = \"bool\"",
            "name = \"t\"\ntype = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S\"",
            "name = \"day\"\ntype = \"date\"",
        ]),
        1 => kv("name", &["\"a\""], &["\"\"", "\"A B\""]),
        1 => kv("type", &["\"int\""], &["\"integer\"", "1"]),
    ];
    let line = prop_oneof![
        3 => kv("nullable", &["true", "false"], &["\"yes\""]),
        2 => kv("format", &["\"%Y-%m-%d\"", "\"%Y-%m-%d %H:%M:%S\"", "\"%Y-%m-%dT%H:%M:%S\"", "\"%d.%m.%Y %H:%M\"", "\"%s\""], &["\"%\"", "\"%Q\"", "\"%.3f\"", "\"\""]),
        1 => kv("zone", &["\"UTC\"", "\"Z\"", "\"+05:30\"", "\"-18:00\""], &["\"+19:00\"", "\"+\"", "\"-:\"", "\"Mars\"", "\"+1:60\""]),
        1 => kv("precision", &["1", "10", "38"], &["0", "39", "255", "256", "-1"]),
        1 => kv("scale", &["0", "2"], &["38", "-1", "127", "128"]),
        3 => kv("min", &["0", "-5", "5", "1.5", "\"2000-01-01 00:00:00\"", "\"2024-01-15\"", "nan", "inf", "-inf", "9223372036854775807"], &["\"abc\"", "\"99999999999999999999999999999999999999999\"", "true", "[1]", "{ a = 1 }"]),
        3 => kv("max", &["0", "-5", "5", "1.5", "\"2035-12-31 23:59:59\"", "\"2024-01-15\"", "nan", "inf"], &["\"x\""]),
        2 => kv("allowed", &["[1, 2]", "[\"Y\", \"N\"]", "[]", "[\"\"]"], &["[1.0]", "[\"x\", 1]", "[true]"]),
        1 => kv("pattern", &["\"[A-Z]{3}\"", "\"\\\\d+\"", "\"\""], &["\"(\"", "\"a{100}{100}\""]),
        1 => kv("units", &[], &["\"m\""]),
    ];
    (head, prop::collection::vec(line, 0..3))
        .prop_map(|(head, mut ls)| {
            ls.splice(0..0, head.lines().map(str::to_string));
            block("[[fields]]", ls)
        })
        .boxed()
}

fn rule_block() -> BoxedStrategy<String> {
    let lines = (
        usually("name = \"r\"", pick(&["name = \"\"", "name = 1"])),
        usually(
            "left = \"t\"",
            kv("left", &["\"a\"", "\"b\"", "\"s\"", "\"d\""], &["\"nope\""]),
        ),
        usually(
            "right = \"t\"",
            kv(
                "right",
                &["\"a\"", "\"b\"", "\"d\"", "\"s\"", "\"day\""],
                &["\"nope\""],
            ),
        ),
        usually(
            "op = \">=\"",
            kv(
                "op",
                &["\"<\"", "\"<=\"", "\">\"", "\"==\"", "\"!=\""],
                &["\"=>\"", "\"\""],
            ),
        ),
    );
    lines
        .prop_map(|(n, l, r, o)| block("[[rules]]", vec![n, l, r, o]))
        .boxed()
}

/// At most one of each quality table (TOML refuses a table twice).
fn quality_blocks() -> BoxedStrategy<String> {
    prop::collection::vec(quality_block(), 0..3)
        .prop_map(|blocks| {
            let mut seen = std::collections::BTreeSet::new();
            blocks
                .into_iter()
                .filter(|b| seen.insert(b.lines().next().unwrap_or_default().to_string()))
                .collect()
        })
        .boxed()
}

fn quality_block() -> BoxedStrategy<String> {
    prop_oneof![
        prop::collection::vec(
            prop_oneof![
                kv("min_rows", &["0", "1"], &["-1", "1.5"]),
                kv(
                    "max_quarantine_ratio",
                    &["0.1", "1.0", "0.0"],
                    &["2.0", "-0.1", "nan", "1"]
                ),
                kv("volume_window", &["0", "7"], &["-1"]),
                kv("volume_tolerance", &["0.5", "0.0"], &["nan", "-1.0", "inf"]),
                kv("typo", &[], &["1"]),
            ],
            0..4
        )
        .prop_map(|ls| block("[quality]", ls)),
        prop::collection::vec(
            kv_any(
                &["a", "b", "t", "s", "d"],
                &["0.1", "0.0", "1.0"],
                &["2.0", "nan", "-0.5", "\"x\""]
            ),
            0..3
        )
        .prop_map(|ls| block("[quality.max_null_ratio]", ls)),
        prop::collection::vec(
            kv_any(
                &["a", "b", "d", "t", "s"],
                &["[0.0, 1.0]", "[-inf, inf]", "[1.0, 1.0]"],
                &[
                    "[2.0, 1.0]",
                    "[nan, 1.0]",
                    "[1.0, nan]",
                    "[nan, nan]",
                    "[1]",
                    "\"x\""
                ]
            ),
            0..3
        )
        .prop_map(|ls| block("[quality.mean_range]", ls)),
    ]
    .boxed()
}

fn dataset_block() -> BoxedStrategy<String> {
    let lines = (
        usually(
            "name = \"d\"",
            pick(&["name = \"\"", "name = \"D\"", "name = \"a b\"", "name = 1"]),
        ),
        usually(
            "version = \"1.0.0\"",
            pick(&[
                "version = \"1.0\"",
                "version = \"a.b.c\"",
                "version = \"18446744073709551616.0.0\"",
                "version = \"1.0.0.0\"",
                "version = \"\"",
                "version = 1",
            ]),
        ),
        prop::collection::vec(
            prop_oneof![
                kv(
                    "natural_key",
                    &["[\"a\"]", "[]", "[\"a\", \"t\"]"],
                    &["[\"nope\"]", "\"a\""]
                ),
                kv(
                    "partition",
                    &[
                        "{ field = \"t\" }",
                        "{ field = \"t\", granularity = \"month\" }",
                        "{ field = \"day\" }"
                    ],
                    &[
                        "{ field = \"t\", granularity = \"week\" }",
                        "{ field = \"a\" }",
                        "{ field = \"nope\" }",
                        "{ granularity = \"day\" }"
                    ],
                ),
                kv("description", &["\"x\"", "\"\""], &["1"]),
            ],
            0..3,
        ),
    );
    lines
        .prop_map(|(n, v, mut rest)| {
            rest.insert(0, v);
            rest.insert(0, n);
            block("[dataset]", rest)
        })
        .boxed()
}

/// A document of contract sections with plausible and implausible keys.
fn tomlish() -> impl Strategy<Value = String> {
    (
        prop_oneof![20 => dataset_block(), 1 => Just(String::new())],
        prop_oneof![1 => Just(Vec::new()), 12 => prop::collection::vec(field_block(), 1..5)],
        prop::collection::vec(rule_block(), 0..2),
        quality_blocks(),
    )
        .prop_map(|(head, fields, rules, quality)| {
            format!("{head}{}{}{quality}", fields.concat(), rules.concat())
        })
}

// ---- the properties ---------------------------------------------------------

proptest! {
    #![proptest_config(fuzz_config(2000))]

    #[test]
    fn load_mutated_contracts(
        which in any::<usize>(),
        edits in prop::collection::vec((any::<usize>(), op()), 1..5),
    ) {
        let all = contracts();
        let (_, text) = &all[which % all.len()];
        if let Some(text) = mutated(text, &edits) {
            check_text(&text)?;
        }
    }

    #[test]
    fn load_edited_contract_text(
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let all = contracts();
        let (_, text) = &all[which % all.len()];
        check_text(&edited(text, &edits))?;
    }

    #[test]
    fn load_generated_tomlish_contracts(text in tomlish()) {
        check_text(&text)?;
    }

    #[test]
    fn load_arbitrary_text(text in prop_oneof![any::<String>(), "[\\[\\]a-z =\"\n.0-9{},]{0,80}"]) {
        check_text(&text)?;
    }
}

#[test]
fn the_real_contracts_load_and_hold_the_invariants() {
    for (name, text) in contracts() {
        let c = Contract::parse(SOURCE, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_loaded(&c).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The structured mutation with no edit gives back a loadable contract.
        let back = mutated(text, &[]).unwrap();
        check_loaded(&Contract::parse(SOURCE, &back).unwrap()).unwrap();
    }
}

// ---- regressions found by the properties above -----------------------------

const BASE: &str = "[dataset]\nname = \"d\"\nversion = \"1.0.0\"\n[[fields]]\nname = \"d\"\ntype = \"decimal\"\nprecision = 10\nscale = 2\n";

fn rejection(text: &str) -> String {
    match Contract::parse(SOURCE, text) {
        Ok(c) => panic!("loaded: {:?}", c.quality),
        Err(e) => e.to_string(),
    }
}

/// Found by `load_generated_tomlish_contracts`: a `mean_range` bound of NaN
/// passed the "low <= high" check (NaN compares false both ways) and then
/// silently disabled that side of the profile stage's mean check.
#[test]
fn regression_mean_range_with_nan_is_rejected() {
    for range in ["[nan, 1.0]", "[1.0, nan]", "[nan, nan]"] {
        let why = rejection(&format!("{BASE}[quality.mean_range]\nd = {range}\n"));
        assert!(why.contains("quality.mean_range.d"), "{range}: {why}");
    }
    // Infinite bounds are a deliberate "no bound" and still load.
    Contract::parse(
        SOURCE,
        &format!("{BASE}[quality.mean_range]\nd = [-inf, inf]\n"),
    )
    .unwrap();
}

/// The same gap for `volume_tolerance`: NaN (the volume check never fails)
/// and a negative tolerance (it always fails) loaded without a word.
#[test]
fn regression_volume_tolerance_must_be_a_non_negative_number() {
    for tol in ["nan", "-0.5", "-inf"] {
        let why = rejection(&format!("{BASE}[quality]\nvolume_tolerance = {tol}\n"));
        assert!(why.contains("quality.volume_tolerance"), "{tol}: {why}");
    }
    for tol in ["0.0", "0.5", "inf"] {
        Contract::parse(
            SOURCE,
            &format!("{BASE}[quality]\nvolume_tolerance = {tol}\n"),
        )
        .unwrap();
    }
}
