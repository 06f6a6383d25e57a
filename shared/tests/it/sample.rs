//! The trips sample generator against the trips contract: determinism, row
//! counts, good rows that pass, bad rows that fail the way they say,
//! duplicates and plausible distributions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sluice::contract::{Contract, Registry};
use sluice::sample::{
    write_trips, BadKind, Format, GenStats, NaiveDate, TripsOptions, TRIPS_COLUMNS,
};

fn trips() -> Arc<Contract> {
    Registry::embedded()
        .expect("embedded contracts")
        .get("trips")
        .expect("trips contract")
        .clone()
}

fn generate(opts: &TripsOptions) -> (Vec<u8>, GenStats) {
    let mut out = Vec::new();
    let stats = write_trips(&mut out, opts, &mut |_| {}).expect("generate");
    (out, stats)
}

fn opts(rows: u64, bad_ratio: f64, format: Format) -> TripsOptions {
    TripsOptions {
        rows,
        bad_ratio,
        format,
        ..TripsOptions::default()
    }
}

/// Why a row of raw values fails the contract, or None if it passes.
fn row_error<'a>(c: &Contract, raw: impl ExactSizeIterator<Item = &'a [u8]>) -> Option<String> {
    if raw.len() != c.fields.len() {
        return Some(format!(
            "{} fields instead of {}",
            raw.len(),
            c.fields.len()
        ));
    }
    let mut values = Vec::with_capacity(c.fields.len());
    for (field, bytes) in c.fields.iter().zip(raw) {
        match field.parse_checked(bytes) {
            Ok(v) => values.push(v),
            Err(e) => return Some(e),
        }
    }
    for rule in &c.rules {
        if let (Some(a), Some(b)) = (values[rule.left].as_f64(), values[rule.right].as_f64()) {
            if !rule.op.holds(a, b) {
                return Some(format!("rule {}", rule.name));
            }
        }
    }
    None
}

fn csv_records(data: &[u8]) -> (csv::ByteRecord, Vec<csv::ByteRecord>) {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let header = reader.byte_headers().expect("header").clone();
    let records = reader
        .byte_records()
        .collect::<Result<Vec<_>, _>>()
        .expect("well-formed CSV");
    (header, records)
}

/// A JSON line's values as the raw bytes a CSV would carry; Err if the line
/// is not a JSON object or lacks a key.
fn json_raw(c: &Contract, line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value.as_object().ok_or("not an object")?;
    c.fields
        .iter()
        .map(|f| match obj.get(&f.name) {
            None => Err(format!("missing key {}", f.name)),
            Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string().into_bytes()),
            Some(other) => Err(format!("{}: unexpected {other}", f.name)),
        })
        .collect()
}

fn json_row_error(c: &Contract, line: &[u8]) -> Option<String> {
    match json_raw(c, line) {
        Err(e) => Some(e),
        Ok(raw) => row_error(c, raw.iter().map(Vec::as_slice)),
    }
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    let body = data.strip_suffix(b"\n").expect("ends with a newline");
    body.split(|&b| b == b'\n').collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for format in [Format::Csv, Format::Jsonl] {
        let base = TripsOptions {
            duplicate_ratio: 0.05,
            ..opts(5000, 0.2, format)
        };
        let (a, sa) = generate(&base);
        let (b, sb) = generate(&base);
        assert!(a == b, "{format:?}: same options gave different bytes");
        assert_eq!(sa, sb);
        let (c, _) = generate(&TripsOptions {
            seed: base.seed + 1,
            ..base.clone()
        });
        assert!(a != c, "{format:?}: another seed gave the same bytes");
        let (d, _) = generate(&TripsOptions {
            start: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
            ..base.clone()
        });
        assert!(a != d, "{format:?}: another start gave the same bytes");
    }
}

#[test]
fn csv_good_rows_pass_the_contract() {
    let c = trips();
    let o = opts(20_000, 0.0, Format::Csv);
    let (data, stats) = generate(&o);
    let (header, records) = csv_records(&data);
    let names: Vec<&[u8]> = header.iter().collect();
    let want: Vec<&[u8]> = c.fields.iter().map(|f| f.name.as_bytes()).collect();
    assert_eq!(names, want, "header is the contract's columns in order");
    assert_eq!(TRIPS_COLUMNS.map(str::as_bytes).to_vec(), want);
    assert!(data.starts_with(b"VendorID,tpep_pickup_datetime,"));
    assert!(!data.contains(&b'\r') && !data.windows(2).any(|w| w == b" \n" || w == b" ,"));
    assert_eq!(records.len() as u64, o.rows);
    assert_eq!(
        lines(&data).len() as u64,
        o.rows + 1,
        "no quoted newlines in good rows"
    );
    assert_eq!(stats.rows, o.rows);
    assert_eq!((stats.good, stats.bad, stats.duplicates), (o.rows, 0, 0));
    assert!(stats.bad_by_kind.is_empty());
    assert_eq!(stats.bytes, data.len() as u64);
    for (n, rec) in records.iter().enumerate() {
        if let Some(e) = row_error(&c, rec.iter()) {
            panic!("row {n} fails: {e}: {rec:?}");
        }
    }
}

#[test]
fn csv_bad_rows_all_fail_with_every_kind() {
    let c = trips();
    let o = opts(2000, 1.0, Format::Csv);
    let (data, stats) = generate(&o);
    assert_eq!((stats.rows, stats.good, stats.bad), (2000, 0, 2000));
    assert_eq!(stats.bad_by_kind.values().sum::<u64>(), 2000);
    for kind in BadKind::ALL {
        let n = stats.bad_by_kind.get(&kind).copied().unwrap_or(0);
        // Uniform over 10 kinds: ~200 each.
        assert!((120..=280).contains(&n), "{kind}: {n} rows");
    }
    assert_eq!(stats.bytes, data.len() as u64);
    let (_, records) = csv_records(&data);
    assert_eq!(records.len(), 2000, "every bad row is still one CSV record");
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for (n, rec) in records.iter().enumerate() {
        let Some(reason) = row_error(&c, rec.iter()) else {
            panic!("bad row {n} passes the contract: {rec:?}");
        };
        let class = match rec.len() {
            18 => "missing_field",
            20 => "extra_field",
            _ if rec.iter().any(|f| f.contains(&0xFF)) => "invalid_utf8",
            _ if rec.iter().any(|f| f.contains(&b',') || f.contains(&b'\n')) => {
                "quoted_delimiter_in_number"
            }
            _ if reason.starts_with("rule dropoff_after_pickup") => "dropoff_before_pickup",
            _ if reason.starts_with("fare_amount") && reason.contains("below the minimum") => {
                "negative_fare"
            }
            _ if reason.contains("is not a timestamp") => "malformed_timestamp",
            _ if ["is not an integer", "is not a number", "is not a decimal"]
                .iter()
                .any(|w| reason.contains(w)) =>
            {
                "unparseable_number"
            }
            _ if reason.contains("LocationID")
                && (reason.contains("below the minimum")
                    || reason.contains("above the maximum")) =>
            {
                "out_of_range_id"
            }
            _ if reason.contains("not an allowed value") => "invalid_enum",
            _ => panic!("row {n} fails for an unexpected reason: {reason}"),
        };
        *seen.entry(class).or_default() += 1;
    }
    let want: BTreeMap<&str, u64> = stats
        .bad_by_kind
        .iter()
        .map(|(k, n)| (k.name(), *n))
        .collect();
    assert_eq!(seen, want, "each row fails the way its kind says");
}

#[test]
fn csv_mixed_file_fails_exactly_the_bad_rows() {
    let c = trips();
    let o = TripsOptions {
        duplicate_ratio: 0.05,
        ..opts(20_000, 0.1, Format::Csv)
    };
    let (data, stats) = generate(&o);
    let (_, records) = csv_records(&data);
    assert_eq!(records.len() as u64, stats.rows);
    assert_eq!(stats.good + stats.bad, stats.rows);
    assert!((1700..=2300).contains(&stats.bad), "bad {}", stats.bad);
    let failing = records
        .iter()
        .filter(|r| row_error(&c, r.iter()).is_some())
        .count() as u64;
    assert_eq!(failing, stats.bad);
}

#[test]
fn jsonl_good_rows_are_objects_with_the_19_keys() {
    let c = trips();
    let o = opts(10_000, 0.0, Format::Jsonl);
    let (data, stats) = generate(&o);
    let lines = lines(&data);
    assert_eq!(lines.len() as u64, o.rows);
    assert_eq!(stats.bytes, data.len() as u64);
    let keys: HashSet<&str> = TRIPS_COLUMNS.into_iter().collect();
    let mut nulls = 0;
    for (n, line) in lines.iter().enumerate() {
        let v: serde_json::Value =
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("line {n}: {e}"));
        let obj = v.as_object().expect("an object");
        assert_eq!(
            obj.keys().map(String::as_str).collect::<HashSet<_>>(),
            keys,
            "line {n}"
        );
        assert!(
            obj["tpep_pickup_datetime"].is_string()
                && obj["trip_distance"].is_number()
                && obj["VendorID"].is_u64()
        );
        nulls += usize::from(obj["passenger_count"].is_null());
        if let Some(e) = json_row_error(&c, line) {
            panic!("line {n} fails: {e}");
        }
    }
    assert!(nulls > 0, "sparse columns are null as JSON null");
}

#[test]
fn jsonl_bad_rows_all_fail() {
    let c = trips();
    let (data, stats) = generate(&opts(2000, 1.0, Format::Jsonl));
    assert_eq!(stats.bad_by_kind.len(), BadKind::ALL.len());
    let lines = lines(&data);
    assert_eq!(lines.len(), 2000);
    let mut not_json = 0;
    for (n, line) in lines.iter().enumerate() {
        let reason = json_row_error(&c, line)
            .unwrap_or_else(|| panic!("bad line {n} passes: {}", String::from_utf8_lossy(line)));
        not_json += u64::from(reason.starts_with("not JSON"));
    }
    // Truncated lines (extra_field) and invalid UTF-8 are not JSON; the rest are.
    let want = stats.bad_by_kind[&BadKind::ExtraField] + stats.bad_by_kind[&BadKind::InvalidUtf8];
    assert_eq!(not_json, want);
}

#[test]
fn duplicates_repeat_earlier_rows_exactly() {
    let o = TripsOptions {
        duplicate_ratio: 0.1,
        ..opts(20_000, 0.0, Format::Csv)
    };
    let (data, stats) = generate(&o);
    assert_eq!(stats.good, 20_000);
    let mut seen = HashSet::new();
    let mut keys = HashSet::new();
    let (mut repeats, mut key_repeats) = (0u64, 0u64);
    for line in &lines(&data)[1..] {
        repeats += u64::from(!seen.insert(*line));
        let f: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        // VendorID, pickup, dropoff, PULocationID, DOLocationID.
        key_repeats += u64::from(!keys.insert((f[0], f[1], f[2], f[7], f[8])));
    }
    assert_eq!(repeats, stats.duplicates);
    assert_eq!(
        key_repeats, stats.duplicates,
        "a natural key repeats only in exact duplicates"
    );
    assert!(
        (1700..=2300).contains(&repeats),
        "{repeats} duplicates of 20000"
    );
    let (none, s0) = generate(&opts(20_000, 0.0, Format::Csv));
    assert_eq!(s0.duplicates, 0);
    assert_eq!(
        lines(&none).into_iter().collect::<HashSet<_>>().len(),
        20_001
    );
}

#[test]
fn distributions_are_plausible() {
    let c = trips();
    let o = TripsOptions {
        days: 14,
        ..opts(50_000, 0.0, Format::Csv)
    };
    let (data, _) = generate(&o);
    // Like real TLC CSV exports (about 90-110 bytes a row), not padded.
    let avg = data.len() as f64 / (o.rows + 1) as f64;
    assert!((100.0..=140.0).contains(&avg), "average row {avg:.1} bytes");
    let (_, records) = csv_records(&data);
    let idx = |name: &str| c.field_index(name).unwrap();
    let num = |r: &csv::ByteRecord, name: &str| -> f64 {
        std::str::from_utf8(&r[idx(name)])
            .unwrap()
            .parse()
            .unwrap_or(f64::NAN)
    };
    let n = records.len() as f64;
    let mean_distance = records.iter().map(|r| num(r, "trip_distance")).sum::<f64>() / n;
    assert!(
        (1.5..6.0).contains(&mean_distance),
        "mean distance {mean_distance}"
    );
    let mean_fare = records.iter().map(|r| num(r, "fare_amount")).sum::<f64>() / n;
    assert!((10.0..30.0).contains(&mean_fare), "mean fare {mean_fare}");
    let max_distance = records
        .iter()
        .map(|r| num(r, "trip_distance"))
        .fold(0.0, f64::max);
    assert!(
        (20.0..100.0).contains(&max_distance),
        "long tail, clamped: {max_distance}"
    );

    let payments: Vec<i64> = records
        .iter()
        .map(|r| num(r, "payment_type") as i64)
        .collect();
    let card = payments.iter().filter(|&&p| p == 1).count() as f64 / n;
    assert!(card > 0.5, "card share {card}");
    let mut cash = 0;
    let mut card_tips = 0;
    for (r, p) in records.iter().zip(&payments) {
        let tip = num(r, "tip_amount");
        if *p == 2 {
            cash += 1;
            assert_eq!(tip, 0.0, "cash trips have no recorded tip");
        }
        if *p == 1 && tip > 0.0 {
            card_tips += 1;
            let share = tip / num(r, "fare_amount");
            assert!((0.14..=0.31).contains(&share), "tip share {share}");
        }
        // The total is the sum of its parts, to the cent.
        let parts: f64 = [
            "fare_amount",
            "extra",
            "mta_tax",
            "tip_amount",
            "tolls_amount",
            "improvement_surcharge",
            "congestion_surcharge",
            "Airport_fee",
        ]
        .iter()
        .map(|f| if r[idx(f)].is_empty() { 0.0 } else { num(r, f) })
        .sum();
        assert!(
            (parts - num(r, "total_amount")).abs() < 0.005,
            "total of {r:?}"
        );
        // Speed is urban: between 1 and 70 mph for trips over a mile.
        let d = num(r, "trip_distance");
        if d > 1.0 {
            let t = |f: &str| {
                chrono::NaiveDateTime::parse_from_str(
                    std::str::from_utf8(&r[idx(f)]).unwrap(),
                    "%Y-%m-%d %H:%M:%S",
                )
                .unwrap()
            };
            let hours = (t("tpep_dropoff_datetime") - t("tpep_pickup_datetime")).num_seconds()
                as f64
                / 3600.0;
            assert!(
                hours > 0.0 && (1.0..70.0).contains(&(d / hours)),
                "{d} mi in {hours} h"
            );
        }
    }
    assert!(cash as f64 / n > 0.1, "cash share");
    assert!(card_tips as f64 / n > 0.5, "most card trips tip");

    for col in [
        "passenger_count",
        "RatecodeID",
        "store_and_fwd_flag",
        "congestion_surcharge",
        "Airport_fee",
    ] {
        let nulls = records.iter().filter(|r| r[idx(col)].is_empty()).count() as f64 / n;
        assert!((0.01..=0.03).contains(&nulls), "{col} null share {nulls}");
    }
    let share = |col: &str, pred: &dyn Fn(f64) -> bool| {
        records.iter().filter(|r| pred(num(r, col))).count() as f64 / n
    };
    assert!(share("VendorID", &|v| v == 1.0 || v == 2.0) > 0.99);
    assert!(share("VendorID", &|v| v == 2.0) > 0.6);
    assert!(share("RatecodeID", &|v| v == 1.0) > 0.9);
    assert!(
        share("PULocationID", &|v| (100.0..=250.0).contains(&v)) > 0.6,
        "Manhattan-heavy pickups"
    );

    // Daily cycle: evening rush is much busier than 4 am; every day is used.
    let mut by_hour = [0u32; 24];
    let mut days = HashMap::new();
    for r in &records {
        let ts = &r[idx("tpep_pickup_datetime")];
        by_hour[std::str::from_utf8(&ts[11..13])
            .unwrap()
            .parse::<usize>()
            .unwrap()] += 1;
        *days.entry(ts[..10].to_vec()).or_insert(0u32) += 1;
    }
    assert!(by_hour[18] > 4 * by_hour[4], "{by_hour:?}");
    assert_eq!(days.len(), 14);
    assert!(
        days.keys().min().unwrap().as_slice() == b"2024-01-01"
            && days.keys().max().unwrap().as_slice() == b"2024-01-14"
    );
}

#[test]
fn progress_every_65536_rows_and_at_the_end() {
    for (rows, want) in [
        (150_000u64, vec![65_536, 131_072, 150_000]),
        (131_072, vec![65_536, 131_072]),
        (10, vec![10]),
        (0, vec![0]),
    ] {
        let mut calls = Vec::new();
        let mut out = Vec::new();
        let stats = write_trips(&mut out, &opts(rows, 0.0, Format::Csv), &mut |n| {
            calls.push(n)
        })
        .unwrap();
        assert_eq!(calls, want, "{rows} rows");
        assert_eq!(stats.rows, rows);
        if rows == 0 {
            assert_eq!(out, format!("{}\n", TRIPS_COLUMNS.join(",")).into_bytes());
        }
    }
}
