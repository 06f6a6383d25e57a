//! `sluice ghost diff` as a user runs it: the real binary on two local
//! pipeline runs, first identical, then with one curated value changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

/// Rewrite `file` with `fare_amount` of row `row` multiplied by 1.1.
/// Returns (record id, old fare, new fare) as displayed.
fn bump_fare(file: &Path, row: usize) -> (String, String, String) {
    let data = bytes::Bytes::from(fs::read(file).unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let fare = schema.index_of("fare_amount").unwrap();
    let id = schema.index_of("_record_id").unwrap();
    let DataType::Decimal128(precision, scale) = *schema.field(fare).data_type() else {
        panic!("fare_amount is {}", schema.field(fare).data_type());
    };
    let mut changed = None;
    let mut out = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        if i != 0 {
            out.push(b.clone());
            continue;
        }
        let fares = b.column(fare).as_primitive::<Decimal128Type>();
        let new: Decimal128Array = (0..fares.len())
            .map(|r| {
                let v = fares.value(r);
                Some(if r == row { v * 11 / 10 } else { v })
            })
            .collect::<Decimal128Array>()
            .with_precision_and_scale(precision, scale)
            .unwrap();
        changed = Some((
            sluice::lineage::record_ids_as_text(b.column(id))
                .unwrap()
                .value(row)
                .to_string(),
            fares.value_as_string(row),
            new.value_as_string(row),
        ));
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[fare] = Arc::new(new);
        out.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    let mut w = ArrowWriter::try_new(fs::File::create(file).unwrap(), schema, None).unwrap();
    for b in &out {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    changed.unwrap()
}

#[test]
fn ghost_diff_on_two_local_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let prod = tmp.path().join("prod");
    let ghost = tmp.path().join("ghost");
    let raw = prod.join("landing/raw/trips");
    fs::create_dir_all(&raw).unwrap();
    let out = sluice(&[
        "generate",
        "trips",
        "--rows",
        "3000",
        "--seed",
        "1",
        "--bad-ratio",
        "0.02",
        "--start",
        "2024-01-01",
        "--days",
        "3",
        "--out",
        raw.join("a.csv").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sluice(&["run", "--local", prod.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    copy_dir(&prod, &ghost);

    let prod_s = prod.to_str().unwrap();
    let ghost_curated = ghost.join("curated");
    let ghost_curated_s = ghost_curated.to_str().unwrap().to_string();
    let diff = |extra: &[&str]| {
        let mut args = vec![
            "ghost",
            "diff",
            "--local",
            prod_s,
            "--prod",
            "s3://curated/",
            "--ghost",
            &ghost_curated_s,
        ];
        args.extend_from_slice(extra);
        sluice(&args)
    };

    // Identical copies.
    let out = diff(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("✅ ghost matches prod\n"),
        "{}",
        show(&out)
    );
    assert!(text.contains("compared           3"), "{}", show(&out));
    assert!(
        text.contains("Records (matched by _record_id)"),
        "{}",
        show(&out)
    );

    // The profiles too, with the ghost side spelled dir:PATH.
    let ghost_profiles = format!("dir:{}", ghost.join("profiles").display());
    let out = sluice(&[
        "ghost",
        "diff",
        "--local",
        prod_s,
        "--prod",
        "s3://profiles/",
        "--ghost",
        &ghost_profiles,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Documents (JSON and other files)"),
        "{}",
        show(&out)
    );

    // One fare changed in one curated file of the ghost.
    let mut files = Vec::new();
    parquet_files(&ghost_curated, &mut files);
    files.sort();
    let (record, old, new) = bump_fare(&files[0], 7);
    assert_ne!(old, new);
    let report = tmp.path().join("diff.md");
    let out = diff(&["--markdown", "--out", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("❌ ghost differs from prod: 1 of 2926 records differ"),
        "{}",
        show(&out)
    );
    let md = fs::read_to_string(&report).unwrap();
    assert!(md.starts_with("❌ ghost differs from prod"), "{md}");
    let row = format!("| {record} | fare_amount | {old} | {new} | changed |");
    assert!(md.contains(&row), "no {row:?} in\n{md}");
    assert!(md.contains("| trips/v1 | fare_amount | 1 |"), "{md}");

    // 1 of 2926 records is within a 1% threshold.
    let out = diff(&["--threshold", "0.01"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("within the threshold of 1%"),
        "{}",
        show(&out)
    );

    // A location that does not exist is an error (2), not a difference.
    let missing = tmp.path().join("nowhere");
    let out = sluice(&[
        "ghost",
        "diff",
        "--local",
        prod_s,
        "--prod",
        "s3://curated/",
        "--ghost",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nowhere"),
        "{}",
        show(&out)
    );
}
