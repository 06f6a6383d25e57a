//! Quality checks of a profile against the contract's `[quality]` section:
//! row count, null ratios and mean ranges from the profile itself; the
//! quarantine ratio from the ingest manifest of the landed file the data
//! came from; volume against the trailing profiles of the same dataset.
//! A check that cannot be evaluated (missing lineage, no history) is
//! recorded as skipped with the reason; only transient storage errors fail
//! the object (and are retried), so the outcome never depends on luck.

use serde::Deserialize;
use serde_json::{json, Value};
use sluice::contract::Quality;
use sluice::error::ErrorKind;
use sluice::lineage::SourceIdentity;
use sluice::runner::{manifest_key_in, Manifest};
use sluice::store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sluice::{Error, Result};

use crate::layout::{partition_of, prefix_before_dataset, Target};
use crate::report::{number, Check, ColumnProfile};

/// The checks computed from the profile alone, in a fixed order: `min_rows`,
/// then `max_null_ratio` and `mean_range` per column (by column name).
pub fn data_checks(q: &Quality, row_count: u64, columns: &[ColumnProfile]) -> Vec<Check> {
    let mut min_rows = Check::evaluated(
        "min_rows",
        None,
        0.0,
        json!(q.min_rows),
        row_count < q.min_rows,
    );
    min_rows.value = json!(row_count);
    let mut out = vec![min_rows];
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    for (col, max) in &q.max_null_ratio {
        out.push(match find(col) {
            None => Check::skipped(
                "max_null_ratio",
                Some(col),
                number(*max),
                "the column is not in the file",
            ),
            Some(_) if row_count == 0 => Check::skipped(
                "max_null_ratio",
                Some(col),
                number(*max),
                "the file has no rows",
            ),
            Some(c) => Check::evaluated(
                "max_null_ratio",
                Some(col),
                c.null_ratio,
                number(*max),
                c.null_ratio > *max,
            )
            .because(format!("{} of {row_count} rows are null", c.null_count)),
        });
    }
    for (col, (lo, hi)) in &q.mean_range {
        let threshold = json!([number(*lo), number(*hi)]);
        let mean = find(col)
            .and_then(|c| c.numeric.as_ref())
            .and_then(|n| n.mean);
        out.push(match (find(col), mean) {
            (None, _) => Check::skipped(
                "mean_range",
                Some(col),
                threshold,
                "the column is not in the file",
            ),
            (Some(_), None) => Check::skipped(
                "mean_range",
                Some(col),
                threshold,
                "the column has no numeric values",
            ),
            (Some(_), Some(m)) => {
                Check::evaluated("mean_range", Some(col), m, threshold, m < *lo || m > *hi)
            }
        });
    }
    out
}

fn is_missing(e: &Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// `max_quarantine_ratio`: follow the lineage from the curated object (its
/// metadata names the validated object) to the validated object (whose
/// metadata names the landed file) to ingest's manifest for that file, and
/// compare rows quarantined / rows in with the threshold.
pub async fn quarantine_check(
    store: &dyn ObjectStore,
    input: &ObjectMeta,
    target: &Target,
    q: &Quality,
) -> Result<Check> {
    const CHECK: &str = "max_quarantine_ratio";
    let threshold = number(q.max_quarantine_ratio);
    let skipped = |reason: String| Ok(Check::skipped(CHECK, None, threshold.clone(), reason));
    let Some(validated) = SourceIdentity::from_metadata(&input.metadata) else {
        return skipped("the curated object carries no source metadata".into());
    };
    let vloc = format!("s3://{}/{}", validated.bucket, validated.key);
    let Some(vmeta) = store.head(&validated.bucket, &validated.key).await? else {
        return skipped(format!("the validated object {vloc} no longer exists"));
    };
    if validated.etag.as_ref().is_some_and(|e| *e != vmeta.etag) {
        return skipped(format!(
            "the validated object {vloc} has changed since it was curated"
        ));
    }
    let Some(landing) = SourceIdentity::from_metadata(&vmeta.metadata) else {
        return skipped(format!(
            "the validated object {vloc} carries no source metadata"
        ));
    };
    let prefix = prefix_before_dataset(&validated.key, &target.dataset);
    let mkey = manifest_key_in(&prefix, "ingest", &landing);
    let mloc = format!("s3://{}/{mkey}", validated.bucket);
    let body = match store.get_bytes(&validated.bucket, &mkey).await {
        Ok(b) => b,
        Err(e) if is_missing(&e) => {
            return skipped(format!("the ingest manifest {mloc} does not exist"))
        }
        Err(e) => return Err(e),
    };
    let manifest: Manifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return skipped(format!("the ingest manifest {mloc} is unreadable: {e}")),
    };
    if manifest.source.etag.is_some()
        && landing.etag.is_some()
        && manifest.source.etag != landing.etag
    {
        return skipped(format!(
            "the ingest manifest {mloc} is for another version of s3://{}/{}",
            landing.bucket, landing.key
        ));
    }
    let c = manifest.counts;
    let ratio = if c.rows_in == 0 {
        0.0
    } else {
        c.rows_quarantined as f64 / c.rows_in as f64
    };
    Ok(Check::evaluated(
        CHECK,
        None,
        ratio,
        threshold,
        ratio > q.max_quarantine_ratio,
    )
    .because(format!(
        "ingest quarantined {} of {} rows of s3://{}/{}",
        c.rows_quarantined, c.rows_in, landing.bucket, landing.key
    )))
}

#[derive(Deserialize)]
struct TrailingProfile {
    row_count: u64,
}

/// `volume`: compare the row count with the mean of up to `volume_window`
/// trailing profiles of the same dataset and major version (partitions
/// strictly before this one, latest first). Listing starts with this year's
/// partitions and falls back to the whole series only when that is not
/// enough, so the usual cost is one listing of at most a year of profiles.
pub async fn volume_check(
    store: &dyn ObjectStore,
    bucket: &str,
    output_prefix: &str,
    target: &Target,
    row_count: u64,
    q: &Quality,
) -> Result<Check> {
    const CHECK: &str = "volume";
    let threshold = number(q.volume_tolerance);
    let skipped = |reason: &str| Ok(Check::skipped(CHECK, None, threshold.clone(), reason));
    if q.volume_window == 0 {
        return skipped("volume_window is 0 (the check is off)");
    }
    let Some(partition) = target.partition.as_deref() else {
        return skipped("the object has no dt= partition to order profiles by");
    };
    let series = format!("{output_prefix}{}", target.series_relative());
    let earlier = |metas: Vec<ObjectMeta>| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = metas
            .into_iter()
            .filter(|m| m.key.ends_with(".profile.json"))
            .filter_map(|m| {
                let p = partition_of(m.key.strip_prefix(series.as_str()).unwrap_or(&m.key))?
                    .to_string();
                (p.as_str() < partition).then_some((p, m.key))
            })
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found
    };
    // `dt=YYYY`: this year's partitions first.
    let year = partition
        .get(..7)
        .filter(|y| y.bytes().skip(3).all(|b| b.is_ascii_digit()));
    let mut candidates = match year {
        Some(y) => earlier(store.list(bucket, &format!("{series}{y}")).await?),
        None => Vec::new(),
    };
    if candidates.len() < q.volume_window {
        candidates = earlier(store.list(bucket, &series).await?);
    }
    // Bounded by what is there: a contract may set any window.
    let mut counts = Vec::with_capacity(q.volume_window.min(candidates.len()));
    for (_, key) in candidates {
        if counts.len() == q.volume_window {
            break;
        }
        let body = match store.get_bytes(bucket, &key).await {
            Ok(b) => b,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<TrailingProfile>(&body) {
            Ok(p) => counts.push(p.row_count),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "ignoring an unreadable trailing profile")
            }
        }
    }
    if counts.is_empty() {
        return skipped("no earlier profiles of this dataset to compare with");
    }
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let reason = format!(
        "{row_count} rows against a mean of {mean:.1} over {} earlier profile(s)",
        counts.len()
    );
    let deviation = if mean == 0.0 {
        if row_count == 0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (row_count as f64 - mean).abs() / mean
    };
    let mut check = Check::evaluated(
        CHECK,
        None,
        deviation,
        threshold,
        deviation > q.volume_tolerance,
    )
    .because(reason);
    if !deviation.is_finite() {
        check.value = Value::Null;
    }
    Ok(check)
}
