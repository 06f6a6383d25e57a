//! Tests of `sluice report`: the renderer on hand-made reports (escaping,
//! charts, numbers, missing pieces) and collection from a local directory
//! laid out as the stages write it.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::json;
use sluice::dlq::Envelope;
use sluice::lineage::SourceIdentity;
use sluice::runner::{Manifest, OutputRef};
use sluice::store::{PutMode, PutOptions};
use sluice::Counts;

use super::html::{render, slug, SUBSECTIONS};
use super::model::*;
use super::*;

const EVIL: &str = "<script>alert('x')</script>&\"";

fn manifest(
    stage: &str,
    bucket: &str,
    key: &str,
    counts: [u64; 3],
    outputs: &[(&str, &str)],
) -> Manifest {
    Manifest {
        stage: stage.into(),
        source: SourceIdentity {
            bucket: bucket.into(),
            key: key.into(),
            etag: Some("e".into()),
            version_id: None,
            sequencer: None,
            generation: 0,
        },
        correlation_id: "sl-1".into(),
        code_version: "0.1.0".into(),
        outputs: outputs
            .iter()
            .map(|(b, k)| OutputRef {
                bucket: b.to_string(),
                key: k.to_string(),
            })
            .collect(),
        counts: Counts {
            rows_in: counts[0],
            rows_out: counts[1],
            rows_quarantined: counts[2],
            bytes_in: 1000,
            bytes_out: 900,
        },
        duration_ms: 42,
        processed_at: Utc.with_ymd_and_hms(2024, 2, 1, 12, 0, 0).unwrap(),
        origin_time: None,
        state: Default::default(),
        pending_cleanup: Vec::new(),
        clean: true,
        input_stage: None,
    }
}

fn profile(dataset: &str, partition: &str, rows: u64, nulls: u64, breach: bool) -> ProfileReport {
    let status = if breach { "breach" } else { "pass" };
    serde_json::from_value(json!({
        "profile_version": 1,
        "dataset": dataset,
        "major": 1,
        "partition": partition,
        "object": {"bucket": "curated", "key": format!("{dataset}/v1/{partition}/a.parquet"), "etag": "e"},
        "correlation_id": "sl-1",
        "row_count": rows,
        "status": status,
        "checks": [
            {"check": "min_rows", "value": rows, "threshold": 1, "status": "pass"},
            {"check": "max_null_ratio", "column": "passenger_count", "value": nulls as f64 / rows as f64,
             "threshold": 0.1, "status": "pass"},
            {"check": "max_quarantine_ratio", "value": if breach { 0.248 } else { 0.01 }, "threshold": 0.1,
             "status": status, "reason": format!("ingest quarantined <b>{}</b> rows", if breach { 496 } else { 5 })},
            {"check": "volume", "value": null, "threshold": 0.5, "status": "skipped", "reason": "no history"}
        ],
        "columns": [
            {"name": "passenger_count", "type": "int", "null_count": nulls, "null_ratio": nulls as f64 / rows as f64,
             "numeric": {"count": rows - nulls, "non_finite": 0, "min": 0.0, "max": 6.0, "mean": 1.5, "stddev": 1.0,
                         "distinct": 7, "quantiles": {"p01": 0.0, "p25": 1.0, "p50": 1.0, "p75": 2.0, "p99": 6.0},
                         "histogram": {"lower": 0.0, "upper": 6.0, "counts": [5, 50, 20, 3]}}},
            {"name": "pickup", "type": "timestamp", "null_count": 0, "null_ratio": 0.0,
             "numeric": {"count": rows, "non_finite": 0, "min": 1705881604000000.0, "max": 1705967971000000.0,
                         "mean": 1705934424784576.5, "stddev": 1.0, "distinct": 100,
                         "quantiles": {"p01": 1705881604000000.0, "p25": 1705900000000000.0, "p50": 1705930000000000.0,
                                       "p75": 1705950000000000.0, "p99": 1705967971000000.0},
                         "histogram": {"lower": 1705881604000000.0, "upper": 1705967971000000.0, "counts": [10, 20, 30]},
                         "min_time": "2024-01-22T00:00:04Z", "max_time": "2024-01-22T23:59:31Z"}},
            {"name": "zone", "type": "string", "null_count": 0, "null_ratio": 0.0,
             "text": {"count": rows, "distinct": 2, "min_length": 1, "max_length": 20,
                      "top_values": [{"value": EVIL, "count": 7}, {"value": "Midtown", "count": 3}]}}
        ]
    }))
    .unwrap()
}

fn sample_report() -> Report {
    let ingest = Places {
        input_bucket: "landing".into(),
        input_prefix: "raw/".into(),
        output_bucket: "validated".into(),
        output_prefix: String::new(),
    };
    let mut d = Dataset {
        name: "trips".into(),
        ..Default::default()
    };
    let m = manifest(
        "ingest",
        "landing",
        "raw/trips/a.csv",
        [1_234_567, 1_200_000, 34_567],
        &[],
    );
    assert_eq!(ingest.dataset_of_manifest(&m), "trips");
    d.add_manifest("ingest", &m);
    d.add_manifest(
        "curate",
        &manifest(
            "curate",
            "validated",
            "trips/v1/dt=2024-01-01/a.parquet",
            [700_000, 699_000, 1_000],
            &[],
        ),
    );
    d.add_manifest(
        "curate",
        &manifest(
            "curate",
            "validated",
            "trips/v1/dt=2024-01-02/a.parquet",
            [500_000, 500_000, 0],
            &[],
        ),
    );
    d.add_profiles(&[
        profile("trips", "dt=2024-01-01", 699_000, 6_990, false),
        profile("trips", "dt=2024-01-02", 500_000, 100_000, true),
    ]);
    let mut q = Reasons::default();
    q.add_line(
        &json!({"line": 3, "raw": EVIL, "reasons": [format!("VendorID: {EVIL}")]}).to_string(),
    );
    q.add_line(r#"{"line":4,"raw":"1,2","reasons":["expected 19 fields, found 2"]}"#);
    q.add_line(r#"{"line":5,"raw":"1,2,3","reasons":["expected 19 fields, found 3"]}"#);
    q.files = 1;
    q.files_found = 1;
    d.quarantine.insert("ingest".into(), q);
    d.dlq.push(DlqRow {
        stage: "ingest".into(),
        kind: "invalid_input".into(),
        object: Some("s3://landing/raw/trips/corrupt.csv.gz".into()),
        message: format!("the name says .gz but the content is not gzip {EVIL}"),
        time: Some(Utc.with_ymd_and_hms(2024, 2, 1, 12, 0, 0).unwrap()),
        attempts: Some(1),
    });
    Report {
        target: format!("local directory /tmp/{EVIL}"),
        generated_at: Utc.with_ymd_and_hms(2024, 2, 2, 0, 0, 0).unwrap(),
        stages: vec!["ingest".into(), "curate".into(), "profile".into()],
        datasets: vec![d],
        dlq_errors: BTreeMap::new(),
        notes: vec![format!("a note with {EVIL}")],
    }
}

/// The `<svg class="chart" ...>` elements of a page, with their `data-points`.
fn charts(page: &str) -> Vec<(String, usize)> {
    page.match_indices("<svg class=\"chart\"")
        .map(|(i, _)| {
            let tag = &page[i..i + page[i..].find('>').unwrap()];
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[start..start + tag[start..].find('"').unwrap()].to_string()
            };
            (attr("data-chart"), attr("data-points").parse().unwrap())
        })
        .collect()
}

#[test]
fn text_from_data_is_escaped_everywhere() {
    let page = render(&sample_report());
    assert!(!page.contains("<script"), "no script element, ever");
    assert!(!page.contains("<b>496"), "reasons are text, not markup");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    assert!(page.contains("ingest quarantined &lt;b&gt;496&lt;/b&gt; rows"));
    assert!(page.contains("<title>Sluice report · local directory /tmp/&lt;script&gt;"));
    // Inside SVG too: the frequent value of `zone` is the evil string (7
    // times in each of the two profiles).
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;: 14"));
}

#[test]
fn the_page_has_every_section_and_real_charts() {
    let r = sample_report();
    let page = render(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("id=\"summary\""));
    assert!(page.contains("<main data-datasets=\"trips\" data-slugs=\"trips\">"));
    assert!(page.contains("id=\"ds-trips\""));
    for (key, _) in SUBSECTIONS {
        assert!(
            page.contains(&format!("id=\"ds-trips-{key}\"")),
            "section {key}"
        );
    }
    let charts = charts(&page);
    let kinds: Vec<&str> = charts.iter().map(|(k, _)| k.as_str()).collect();
    for kind in [
        "volume",
        "stages",
        "reasons",
        "nulls",
        "histogram",
        "quantiles",
        "top-values",
    ] {
        assert!(kinds.contains(&kind), "a {kind} chart in {kinds:?}");
    }
    // volume: 2 partitions x 2 series; stages: 3 stages x 3 series;
    // reasons: 2 normalised reasons; nulls: 3 columns; 2 histograms (one
    // per numeric column); 1 quantile chart (timestamps have none); 1 top-values.
    assert_eq!(
        charts,
        vec![
            ("volume".to_string(), 4),
            ("stages".to_string(), 9),
            ("reasons".to_string(), 2),
            ("nulls".to_string(), 3),
            ("histogram".to_string(), 4),
            ("histogram".to_string(), 3),
            ("quantiles".to_string(), 2),
            ("top-values".to_string(), 2),
        ]
    );
    // No external resources: it must open from file:// offline.
    for bad in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(bad), "{bad}");
    }
}

#[test]
fn the_numbers_are_shown() {
    let page = render(&sample_report());
    // Stage totals, with separators.
    for n in ["1,234,567", "1,200,000", "34,567", "1,199,000", "1,000"] {
        assert!(page.contains(&format!(">{n}<")), "{n}");
    }
    // Quarantine: the normalised reason counted twice, its share of 3 rows.
    assert!(page.contains("expected &lt;n&gt; fields, found &lt;n&gt;</td><td class=\"n\">2</td><td class=\"n\">66.67%"));
    // The breach, highlighted, with value and threshold as percentages.
    let breaches = &page[page.find("id=\"ds-trips-breaches\"").unwrap()..];
    let breaches = &breaches[..breaches.find("</section>").unwrap()];
    assert_eq!(
        breaches.matches("<tr class=\"breach\">").count(),
        1,
        "{breaches}"
    );
    assert!(
        breaches.contains("max_quarantine_ratio")
            && breaches.contains("24.80%")
            && breaches.contains("10.00%")
    );
    assert!(
        breaches.contains("8 checks in 2 profiles: 5 passed, 1 breached, 2 skipped."),
        "{breaches}"
    );
    // Null ratio over both partitions: 106,990 of 1,199,000.
    assert!(page.contains("8.92%"), "null ratio");
    // The worst partition is over the threshold: its row is highlighted.
    assert!(page.contains("<tr class=\"breach\"><td>passenger_count</td><td>int</td><td class=\"n\">106,990</td><td class=\"n\">8.92%</td><td class=\"n\">20.00% (dt=2024-01-02)</td><td class=\"n\">10.00%</td></tr>"), "{page}");
}

#[test]
fn the_dlq_table_lists_kind_object_message_and_time() {
    let page = render(&sample_report());
    let dlq = &page[page.find("id=\"ds-trips-dlq\"").unwrap()..];
    let dlq = &dlq[..dlq.find("</section>").unwrap()];
    assert!(dlq.contains("<b>invalid_input</b>"));
    assert!(dlq.contains("s3://landing/raw/trips/corrupt.csv.gz"));
    assert!(dlq.contains("not gzip &lt;script&gt;"));
    assert!(dlq.contains("2024-02-01 12:00:00Z"));
    assert!(dlq.contains("none: the curate DLQ holds nothing for trips"));
}

#[test]
fn missing_pieces_are_explicit_nones() {
    let empty = Report {
        target: "local directory /x".into(),
        generated_at: Utc::now(),
        stages: vec!["ingest".into(), "curate".into(), "profile".into()],
        datasets: vec![],
        dlq_errors: BTreeMap::new(),
        notes: vec![],
    };
    let page = render(&empty);
    assert!(page.contains("id=\"summary\"") && page.contains("none: no dataset"));
    assert!(charts(&page).is_empty());

    let mut bare = empty.clone();
    bare.datasets.push(Dataset {
        name: "Green Taxi/2024".into(),
        ..Default::default()
    });
    bare.dlq_errors
        .insert("curate".into(), "access <denied>".into());
    let page = render(&bare);
    let s = slug("Green Taxi/2024");
    assert_eq!(s, "green-taxi-2024");
    for (key, _) in SUBSECTIONS {
        let at = page
            .find(&format!("id=\"ds-{s}-{key}\""))
            .unwrap_or_else(|| panic!("{key}"));
        let section = &page[at..at + page[at..].find("</section>").unwrap()];
        assert!(
            section.contains("none:") || section.contains("could not read"),
            "{key}: {section}"
        );
    }
    assert!(page.contains("could not read the DLQ: access &lt;denied&gt;"));
}

async fn put(store: &Arc<dyn ObjectStore>, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    store
        .put(
            bucket,
            key,
            body.into().into(),
            PutOptions::new(PutMode::Overwrite),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn collects_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let args = TargetArgs {
        local: Some(dir.path().to_path_buf()),
        deployment: None,
    };
    let target = Target::open(&args).await.unwrap();
    let store = target.store();

    // Nothing yet: a report anyway, with no datasets.
    let r = collect(&target, &Options::default()).await.unwrap();
    assert!(r.datasets.is_empty(), "{:?}", r.datasets);
    assert!(r.notes.is_empty(), "{:?}", r.notes);

    let ingest = manifest(
        "ingest",
        "landing",
        "raw/trips/a.csv",
        [100, 90, 10],
        &[("validated", "trips/v1/dt=2024-01-01/x.parquet")],
    );
    put(
        &store,
        "validated",
        "_sluice/manifests/ingest/x.json",
        serde_json::to_vec(&ingest).unwrap(),
    )
    .await;
    for (day, rows) in [("01", 60u64), ("02", 30)] {
        let m = manifest(
            "curate",
            "validated",
            &format!("trips/v1/dt=2024-01-{day}/x.parquet"),
            [rows, rows - 1, 1],
            &[],
        );
        put(
            &store,
            "curated",
            &format!("_sluice/manifests/curate/{day}.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .await;
        let p = profile(
            "trips",
            &format!("dt=2024-01-{day}"),
            rows - 1,
            1,
            day == "02",
        );
        put(
            &store,
            "profiles",
            &format!("trips/v1/dt=2024-01-{day}/x.profile.json"),
            serde_json::to_vec(&p).unwrap(),
        )
        .await;
    }
    put(
        &store,
        "profiles",
        "trips/v1/dt=2024-01-03/broken.profile.json",
        "{not json",
    )
    .await;
    let lines: String = (0..10)
        .map(|i| format!("{}\n", json!({"line": i, "raw": "r", "reasons": [format!("fare_amount: {i} is below the minimum 0")]})))
        .collect();
    put(
        &store,
        "validated",
        "_quarantine/ingest/trips/x.jsonl",
        lines,
    )
    .await;
    put(
        &store,
        "curated",
        "_quarantine/curate/trips/y.jsonl",
        "{\"record_id\":\"a\",\"line\":1,\"source\":\"s3://landing/raw/trips/a.csv\",\"reasons\":[\"duplicate record id\"]}\n",
    )
    .await;
    put(&store, "landing", "raw/trips/a.csv", "x\n").await;
    put(&store, "landing", "raw/trips/b.csv", "x\n").await;
    put(&store, "landing", "raw/zones/z.csv.gz", "not gzip").await;
    // Another dataset with only a dead letter.
    let err = sluice::error::Error::other(sluice::error::ErrorKind::InvalidInput, "not gzip", None);
    let source = SourceIdentity {
        bucket: "landing".into(),
        key: "raw/zones/z.csv.gz".into(),
        etag: None,
        version_id: None,
        sequencer: None,
        generation: 0,
    };
    let env = Envelope::new(
        "ingest",
        Some(source),
        &err,
        1,
        None,
        None,
        serde_json::Value::Null,
    );
    std::fs::create_dir_all(dir.path().join("dlq")).unwrap();
    std::fs::write(
        dir.path().join("dlq/ingest.jsonl"),
        format!("{}\n", serde_json::to_string(&env).unwrap()),
    )
    .unwrap();

    let r = collect(&target, &Options::default()).await.unwrap();
    let names: Vec<&str> = r.datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["trips", "zones"]);
    let trips = &r.datasets[0];
    assert_eq!(trips.stages["ingest"].rows_in, 100);
    assert_eq!(trips.stages["curate"].rows_out, 88);
    assert_eq!(trips.landed.len(), 1);
    assert_eq!((trips.landed_objects, trips.without_manifest), (2, 1));
    assert_eq!(
        trips.without_manifest_examples,
        ["s3://landing/raw/trips/b.csv"]
    );
    assert_eq!(
        trips.partitions.len(),
        2,
        "the broken profile of 03 adds nothing"
    );
    assert_eq!(trips.partitions["dt=2024-01-02"].curated_rows, 29);
    assert_eq!(trips.profiles.files, 2);
    assert_eq!(trips.breaches.len(), 1);
    assert_eq!(trips.quarantine["ingest"].rows, 10);
    assert_eq!(
        trips.quarantine["ingest"].by_reason["fare_amount: <n> is below the minimum <n>"].count,
        10
    );
    assert_eq!(trips.quarantine["curate"].rows, 1);
    assert!(trips.dlq.is_empty());
    let zones = &r.datasets[1];
    assert_eq!(zones.dlq.len(), 1);
    assert_eq!((zones.landed_objects, zones.without_manifest), (1, 1));
    assert_eq!(
        zones.dlq[0].object.as_deref(),
        Some("s3://landing/raw/zones/z.csv.gz")
    );
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].contains("broken.profile.json"), "{:?}", r.notes);

    // The newest partition only, one dataset only.
    let r = collect(
        &target,
        &Options {
            dataset: Some("trips".into()),
            partitions: 1,
            quarantine_files: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.datasets.len(), 1);
    assert_eq!(
        r.datasets[0].partitions.len(),
        0,
        "dt=2024-01-03 has only a broken profile"
    );
    assert_eq!(r.datasets[0].partitions_hidden, 2);

    // And the page for it all.
    let page = render(&collect(&target, &Options::default()).await.unwrap());
    assert!(page.contains("id=\"ds-zones-dlq\"") && page.contains("z.csv.gz"));
    assert!(page.contains("2 objects under the ingest input; 1 without an ingest manifest"));
    assert!(charts(&page).len() >= 8);
}

#[test]
fn the_summary_line_counts() {
    let line = summary_line(&sample_report(), 2048);
    assert_eq!(
        line,
        "1 dataset (trips): 2 partitions, 1,234,567 rows landed, 35,567 rows quarantined, \
         1 dead letter, 1 breach; 2.0 KiB"
    );
}
