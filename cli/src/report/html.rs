//! The report as one self-contained HTML page: inline CSS, inline SVG
//! charts, no script, nothing fetched. Every piece of text that comes from
//! data goes through [`esc`].
//!
//! Ids a test can rely on: `summary`, and per dataset `ds-<slug>` with the
//! subsections `ds-<slug>-volume`, `-stages`, `-breaches`, `-quarantine`,
//! `-dlq`, `-nulls` and `-distributions` (see [`SUBSECTIONS`]). `<main>`
//! lists the datasets in `data-datasets` and the slugs in `data-slugs`.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::fmt::{bytes, clip, count, esc, num, pct, when};
use super::model::{ColumnSummary, Dataset, Report};
use super::svg::{self, Bars, Fmt, HBar, Series, AMBER, BLUE, TEAL};

/// The subsections of every dataset section, in page order.
pub const SUBSECTIONS: [(&str, &str); 7] = [
    ("volume", "Volume per partition"),
    ("stages", "Rows per stage"),
    ("breaches", "Threshold breaches"),
    ("quarantine", "Quarantine reasons"),
    ("dlq", "Dead-letter queues"),
    ("nulls", "Null ratios per column"),
    ("distributions", "Distributions"),
];

const CSS: &str = r#"
:root{--fg:#1f2430;--muted:#6b7385;--line:#e3e6ec;--bg:#f4f6f9;--red:#d64545;--redbg:#fdecec;--blue:#3b6fd4}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header.top{background:#1f2a44;color:#fff;padding:18px 0}
header.top h1{margin:0;font-size:22px;font-weight:600}
header.top .meta{color:#c5cde0;margin:4px 0 0;font-size:13px}
header.top nav{margin-top:8px;font-size:13px}
header.top nav a{color:#fff;margin-right:14px}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
main{padding-bottom:48px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:20px;margin:28px 0 4px}
h3{font-size:16px;margin:0 0 8px}
h4{font-size:14px;margin:14px 0 6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:16px 0}
.stat{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.stat .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.stat .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.stat .s{color:var(--muted);font-size:12px}
.stat.bad{border-color:var(--red);background:var(--redbg)}
.stat.bad .v{color:var(--red)}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th{font-weight:600;color:var(--muted);font-size:12px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nw{white-space:nowrap}
tr.breach td,tr.bad td{background:var(--redbg)}
tr.breach td:first-child,tr.bad td:first-child{border-left:3px solid var(--red)}
td.hot{color:var(--red);font-weight:600}
.none{color:var(--muted);font-style:italic;margin:6px 0}
.warn{color:#8a4b00;background:#fff4e0;border:1px solid #f0d4a0;border-radius:6px;padding:6px 10px;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
figure{margin:0}
figcaption{font-size:12px;color:var(--muted);margin-bottom:2px;min-height:34px}
figcaption b{color:var(--fg)}
svg.chart{max-width:100%;height:auto;display:block;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
code{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all;white-space:pre-wrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e8edf7;color:var(--fg);margin-left:6px;font-weight:normal;vertical-align:middle}
.badge.bad{background:var(--red);color:#fff}
.badge.ok{background:#def2e4;color:#22663a}
details summary{cursor:pointer;color:var(--blue);font-size:13px;margin:6px 0}
.sub{color:var(--muted);font-size:13px;margin:-4px 0 8px}
"#;

/// Quarantine reasons in the visible table; the rest, up to
/// [`TABLE_REASONS`], are behind a disclosure.
const SHOWN_REASONS: usize = 10;
const TABLE_REASONS: usize = 50;

/// A dataset name as an id fragment: lower-case letters, digits and `-`.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "dataset".into()
    } else {
        s
    }
}

/// Unique slugs for the datasets, in order.
fn slugs(datasets: &[Dataset]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    datasets
        .iter()
        .map(|d| {
            let base = slug(&d.name);
            let mut s = base.clone();
            let mut i = 2;
            while !seen.insert(s.clone()) {
                s = format!("{base}-{i}");
                i += 1;
            }
            s
        })
        .collect()
}

/// Render the page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let slugs = slugs(&r.datasets);
    let names: Vec<&str> = r.datasets.iter().map(|d| d.name.as_str()).collect();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"sluice report\">\
         <title>Sluice report · {}</title><style>{CSS}</style></head><body>\n",
        esc(&r.target)
    );
    let _ = write!(
        h,
        "<header class=\"top\"><div class=\"wrap\"><h1>Sluice pipeline report</h1>\
         <p class=\"meta\">{} · generated {} · stages: {}</p><nav><a href=\"#summary\">Summary</a>",
        esc(&r.target),
        esc(&when(&r.generated_at)),
        esc(&r.stages.join(" → "))
    );
    for (d, s) in r.datasets.iter().zip(&slugs) {
        let _ = write!(h, "<a href=\"#ds-{s}\">{}</a>", esc(&d.name));
    }
    h.push_str("</nav></div></header>\n<div class=\"wrap\">");
    summary(&mut h, r, &slugs);
    if !r.notes.is_empty() {
        h.push_str("<section id=\"notes\" class=\"card\"><h3>Notes</h3>");
        for n in &r.notes {
            let _ = write!(h, "<p class=\"warn\">{}</p>", esc(n));
        }
        h.push_str("</section>");
    }
    let _ = write!(
        h,
        "<main data-datasets=\"{}\" data-slugs=\"{}\">",
        esc(&names.join(",")),
        esc(&slugs.join(","))
    );
    if r.datasets.is_empty() {
        h.push_str(
            "<section id=\"no-datasets\" class=\"card\"><p class=\"none\">none: no dataset has \
             manifests, profiles, quarantined rows or dead letters yet. Land files under the \
             ingest input (e.g. <code>landing/raw/&lt;dataset&gt;/</code>) and run the pipeline.</p></section>",
        );
    }
    for (d, s) in r.datasets.iter().zip(&slugs) {
        dataset(&mut h, r, d, s);
    }
    h.push_str("</main></div></body></html>\n");
    h
}

fn stat(h: &mut String, key: &str, value: &str, sub: &str, bad: bool) {
    let _ = write!(
        h,
        "<div class=\"stat{}\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"s\">{}</div></div>",
        if bad { " bad" } else { "" },
        esc(key),
        esc(value),
        esc(sub)
    );
}

fn summary(h: &mut String, r: &Report, slugs: &[String]) {
    let sum = |f: &dyn Fn(&Dataset) -> u64| r.datasets.iter().map(f).sum::<u64>();
    let landed = sum(&|d| d.landed_objects);
    let ingested = sum(&|d| d.stages.get("ingest").map_or(0, |s| s.inputs));
    let waiting = sum(&|d| d.without_manifest);
    let rows_landed = sum(&|d| d.stages.get("ingest").map_or(0, |s| s.rows_in));
    let curated = sum(&|d| d.stages.get("curate").map_or(0, |s| s.rows_out));
    let quarantined = sum(&|d| d.rows_quarantined());
    let dead = r.datasets.iter().map(|d| d.dlq.len()).sum::<usize>();
    let breaches = r.datasets.iter().map(|d| d.breaches.len()).sum::<usize>();
    let partitions = sum(&|d| d.dated_partitions().len() as u64);
    h.push_str("<section id=\"summary\"><div class=\"cards\">");
    stat(h, "datasets", &count(r.datasets.len() as u64), "", false);
    stat(
        h,
        "landed files",
        &count(landed.max(ingested)),
        &format!("{} ingested, {} not", count(ingested), count(waiting)),
        false,
    );
    stat(
        h,
        "rows landed",
        &count(rows_landed),
        "read by ingest",
        false,
    );
    stat(
        h,
        "rows curated",
        &count(curated),
        &format!("in {} partitions", count(partitions)),
        false,
    );
    let share = if rows_landed > 0 {
        format!(
            "{} of rows landed",
            pct(quarantined as f64 / rows_landed as f64)
        )
    } else {
        "all stages".into()
    };
    stat(h, "rows quarantined", &count(quarantined), &share, false);
    stat(
        h,
        "dead letters",
        &count(dead as u64),
        "in the DLQs",
        dead > 0,
    );
    stat(
        h,
        "breaches",
        &count(breaches as u64),
        "failed quality checks",
        breaches > 0,
    );
    h.push_str("</div>");
    if !r.datasets.is_empty() {
        h.push_str(
            "<div class=\"card\"><table><thead><tr><th>dataset</th><th class=\"n\">landed files</th>\
             <th class=\"n\">ingested</th><th class=\"n\">rows landed</th><th class=\"n\">rows curated</th><th class=\"n\">quarantined</th>\
             <th class=\"n\">partitions</th><th class=\"n\">dead letters</th><th class=\"n\">breaches</th>\
             <th>last processed</th></tr></thead><tbody>",
        );
        for (d, s) in r.datasets.iter().zip(slugs) {
            let bad = !d.dlq.is_empty() || !d.breaches.is_empty();
            let last = d.stages.values().filter_map(|s| s.last_processed).max();
            let _ = write!(
                h,
                "<tr{}><td><a href=\"#ds-{s}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n{}\">{}</td>\
                 <td class=\"n{}\">{}</td><td>{}</td></tr>",
                if bad { " class=\"bad\"" } else { "" },
                esc(&d.name),
                count(
                    d.landed_objects
                        .max(d.stages.get("ingest").map_or(0, |s| s.inputs))
                ),
                count(d.stages.get("ingest").map_or(0, |s| s.inputs)),
                count(d.stages.get("ingest").map_or(0, |s| s.rows_in)),
                count(d.stages.get("curate").map_or(0, |s| s.rows_out)),
                count(d.rows_quarantined()),
                count(d.dated_partitions().len() as u64),
                if d.dlq.is_empty() { "" } else { " hot" },
                count(d.dlq.len() as u64),
                if d.breaches.is_empty() { "" } else { " hot" },
                count(d.breaches.len() as u64),
                last.map(|t| esc(&when(&t))).unwrap_or_else(|| "—".into()),
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str("</section>");
}

fn none(h: &mut String, text: &str) {
    let _ = write!(h, "<p class=\"none\">none: {}</p>", esc(text));
}

fn open_sub(h: &mut String, slug: &str, key: &str, extra: &str) {
    let title = SUBSECTIONS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, t)| *t);
    let _ = write!(
        h,
        "<section id=\"ds-{slug}-{key}\" class=\"card\" data-section=\"{key}\"><h3>{}{extra}</h3>",
        esc(title)
    );
}

fn dataset(h: &mut String, r: &Report, d: &Dataset, slug: &str) {
    let mut badges = String::new();
    if !d.breaches.is_empty() {
        let _ = write!(
            badges,
            "<span class=\"badge bad\">{} breach{}</span>",
            d.breaches.len(),
            if d.breaches.len() == 1 { "" } else { "es" }
        );
    }
    if !d.dlq.is_empty() {
        let _ = write!(
            badges,
            "<span class=\"badge bad\">{} dead letter{}</span>",
            d.dlq.len(),
            if d.dlq.len() == 1 { "" } else { "s" }
        );
    }
    if d.breaches.is_empty() && d.dlq.is_empty() && d.profiles.files > 0 {
        badges.push_str("<span class=\"badge ok\">healthy</span>");
    }
    let _ = write!(
        h,
        "<section class=\"dataset\" id=\"ds-{slug}\" data-dataset=\"{}\"><h2>{}{badges}</h2>",
        esc(&d.name),
        esc(&d.name)
    );
    volume(h, d, slug);
    stages(h, r, d, slug);
    breaches(h, d, slug);
    quarantine(h, r, d, slug);
    dlq(h, r, d, slug);
    nulls(h, d, slug);
    distributions(h, d, slug);
    h.push_str("</section>\n");
}

fn volume(h: &mut String, d: &Dataset, slug: &str) {
    open_sub(h, slug, "volume", "");
    let parts = d.dated_partitions();
    let from_curate = parts
        .iter()
        .any(|(_, p)| p.validated_rows > 0 || p.curated_rows > 0);
    let from_profiles = parts.iter().any(|(_, p)| p.profiles > 0);
    if parts.is_empty() || !(from_curate || from_profiles) {
        none(
            h,
            "no partition has been curated or profiled yet (no curate manifests, no profiles)",
        );
        h.push_str("</section>");
        return;
    }
    let categories: Vec<String> = parts
        .iter()
        .map(|(k, _)| k.trim_start_matches("dt=").to_string())
        .collect();
    let highlight: Vec<bool> = parts.iter().map(|(_, p)| p.breaches > 0).collect();
    let series = if from_curate {
        vec![
            Series {
                name: "curated rows".into(),
                color: BLUE,
                values: parts.iter().map(|(_, p)| p.curated_rows as f64).collect(),
            },
            Series {
                name: "duplicates quarantined by curate".into(),
                color: AMBER,
                values: parts
                    .iter()
                    .map(|(_, p)| p.curate_quarantined as f64)
                    .collect(),
            },
        ]
    } else {
        vec![Series {
            name: "profiled rows".into(),
            color: BLUE,
            values: parts.iter().map(|(_, p)| p.profiled_rows as f64).collect(),
        }]
    };
    let total: u64 = parts
        .iter()
        .map(|(_, p)| {
            if from_curate {
                p.curated_rows
            } else {
                p.profiled_rows
            }
        })
        .sum();
    let _ = write!(
        h,
        "<p class=\"sub\">{} rows in {} partitions{}, by <code>dt=</code> partition (from the {}).</p>",
        count(total),
        count(parts.len() as u64),
        if d.partitions_hidden > 0 {
            format!(
                " (the newest; {} older partitions not shown)",
                count(d.partitions_hidden as u64)
            )
        } else {
            String::new()
        },
        if from_curate {
            "curate manifests"
        } else {
            "profiles"
        }
    );
    let label = format!("{}: rows per partition", d.name);
    h.push_str(&svg::bars(&Bars {
        kind: "volume",
        label: &label,
        categories: &categories,
        series: &series,
        stacked: true,
        highlight: &highlight,
        highlight_label: "partition with a breach",
        fmt: Fmt::Count,
        width: 1180.0,
        height: 300.0,
    }));
    h.push_str(
        "<details><summary>Per-partition numbers</summary><table><thead><tr><th>partition</th>\
         <th class=\"n\">validated rows</th><th class=\"n\">curated rows</th><th class=\"n\">duplicates</th>\
         <th class=\"n\">profiled rows</th><th class=\"n\">profiles</th><th class=\"n\">breaches</th></tr></thead><tbody>",
    );
    for (k, p) in &parts {
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if p.breaches > 0 { " class=\"breach\"" } else { "" },
            esc(k),
            count(p.validated_rows),
            count(p.curated_rows),
            count(p.curate_quarantined),
            count(p.profiled_rows),
            count(p.profiles),
            count(p.breaches)
        );
    }
    h.push_str("</tbody></table></details></section>");
}

fn stages(h: &mut String, r: &Report, d: &Dataset, slug: &str) {
    open_sub(h, slug, "stages", "");
    if d.stages.is_empty() {
        none(
            h,
            "no stage has finished an input of this dataset (no manifests)",
        );
        h.push_str("</section>");
        return;
    }
    let names: Vec<String> = r.stages.clone();
    let get = |f: &dyn Fn(&super::model::StageTotals) -> u64| -> Vec<f64> {
        names
            .iter()
            .map(|s| d.stages.get(s).map_or(0, f) as f64)
            .collect()
    };
    let series = vec![
        Series {
            name: "rows in".into(),
            color: BLUE,
            values: get(&|s| s.rows_in),
        },
        Series {
            name: "rows out".into(),
            color: TEAL,
            values: get(&|s| s.rows_out),
        },
        Series {
            name: "rows quarantined".into(),
            color: AMBER,
            values: get(&|s| s.rows_quarantined),
        },
    ];
    let label = format!("{}: rows in, out and quarantined per stage", d.name);
    h.push_str(&svg::bars(&Bars {
        kind: "stages",
        label: &label,
        categories: &names,
        series: &series,
        stacked: false,
        highlight: &[],
        highlight_label: "",
        fmt: Fmt::Count,
        width: 760.0,
        height: 260.0,
    }));
    h.push_str(
        "<table><thead><tr><th>stage</th><th class=\"n\">inputs</th><th class=\"n\">rows in</th>\
         <th class=\"n\">rows out</th><th class=\"n\">quarantined</th><th class=\"n\">quarantine ratio</th>\
         <th class=\"n\">bytes in</th><th class=\"n\">bytes out</th><th class=\"n\">time</th>\
         <th>last processed</th><th>balanced</th></tr></thead><tbody>",
    );
    for name in &names {
        let Some(s) = d.stages.get(name) else {
            let _ = write!(
                h,
                "<tr><td>{}</td><td colspan=\"10\" class=\"none\">none: no manifests</td></tr>",
                esc(name)
            );
            continue;
        };
        let ratio = if s.rows_in > 0 {
            pct(s.rows_quarantined as f64 / s.rows_in as f64)
        } else {
            "—".into()
        };
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.1}s</td><td class=\"nw\">{}</td><td>{}</td></tr>",
            if s.unbalanced > 0 { " class=\"bad\"" } else { "" },
            esc(name),
            count(s.inputs),
            count(s.rows_in),
            count(s.rows_out),
            count(s.rows_quarantined),
            ratio,
            bytes(s.bytes_in),
            bytes(s.bytes_out),
            s.duration_ms as f64 / 1000.0,
            s.last_processed
                .map(|t| esc(&when(&t)))
                .unwrap_or_else(|| "—".into()),
            if s.unbalanced > 0 {
                format!("NO ({} inputs)", count(s.unbalanced))
            } else {
                "yes".into()
            }
        );
    }
    h.push_str("</tbody></table>");
    h.push_str("<h4>Landed files</h4>");
    landing(h, d);
    if d.landed.is_empty() {
        none(h, "ingest has finished no landed file of this dataset");
    } else {
        let mut landed = d.landed.clone();
        landed.sort_by(|a, b| a.object.cmp(&b.object));
        h.push_str(
            "<table><thead><tr><th>object</th><th class=\"n\">rows in</th><th class=\"n\">rows out</th>\
             <th class=\"n\">quarantined</th><th class=\"n\">ratio</th><th>processed</th></tr></thead><tbody>",
        );
        for f in &landed {
            let ratio = if f.rows_in > 0 {
                f.rows_quarantined as f64 / f.rows_in as f64
            } else {
                0.0
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"nw\">{}</td></tr>",
                esc(&f.object),
                count(f.rows_in),
                count(f.rows_out),
                count(f.rows_quarantined),
                pct(ratio),
                esc(&when(&f.processed_at))
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

/// What is in the landing area without an ingest manifest.
fn landing(h: &mut String, d: &Dataset) {
    if d.landed_objects == 0 {
        return;
    }
    let _ = write!(
        h,
        "<p class=\"sub\">{} objects under the ingest input; {} without an ingest manifest{}</p>",
        count(d.landed_objects),
        count(d.without_manifest),
        if d.without_manifest > 0 {
            " (not processed yet, or dead-lettered):"
        } else {
            "."
        }
    );
    if d.without_manifest > 0 {
        h.push_str("<ul class=\"waiting\">");
        for o in &d.without_manifest_examples {
            let _ = write!(h, "<li><code>{}</code></li>", esc(o));
        }
        if d.without_manifest > d.without_manifest_examples.len() as u64 {
            let _ = write!(
                h,
                "<li>… and {} more</li>",
                count(d.without_manifest - d.without_manifest_examples.len() as u64)
            );
        }
        h.push_str("</ul>");
    }
}

fn breaches(h: &mut String, d: &Dataset, slug: &str) {
    let extra = if d.breaches.is_empty() {
        String::new()
    } else {
        format!("<span class=\"badge bad\">{}</span>", d.breaches.len())
    };
    open_sub(h, slug, "breaches", &extra);
    let p = &d.profiles;
    if p.files == 0 && d.breaches.is_empty() {
        none(h, "no profiles yet, so no checks have been evaluated");
        h.push_str("</section>");
        return;
    }
    let _ = write!(
        h,
        "<p class=\"sub\">{} checks in {} profiles: {} passed, {} breached, {} skipped.</p>",
        count(p.pass + p.breach + p.skipped),
        count(p.files),
        count(p.pass),
        count(p.breach),
        count(p.skipped)
    );
    if d.breaches.is_empty() {
        none(h, "every evaluated check passed");
        h.push_str("</section>");
        return;
    }
    h.push_str(
        "<table class=\"breaches\"><thead><tr><th>partition</th><th>check</th><th>column</th>\
         <th class=\"n\">value</th><th class=\"n\">threshold</th><th>reason</th><th>profiled object</th></tr></thead><tbody>",
    );
    for b in &d.breaches {
        let _ = write!(
            h,
            "<tr class=\"breach\"><td class=\"nw\">{}</td><td><b>{}</b></td><td>{}</td><td class=\"n hot\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&b.partition),
            esc(&b.check),
            esc(b.column.as_deref().unwrap_or("—")),
            esc(&b.value),
            esc(&b.threshold),
            esc(b.reason.as_deref().unwrap_or("")),
            esc(&b.object)
        );
    }
    h.push_str("</tbody></table></section>");
}

fn quarantine(h: &mut String, r: &Report, d: &Dataset, slug: &str) {
    open_sub(h, slug, "quarantine", "");
    for stage in &r.stages {
        let q = d.quarantine.get(stage);
        let rows = q.map_or(0, |q| q.rows);
        let Some(q) = q.filter(|_| rows > 0) else {
            let _ = write!(h, "<h4>{}</h4>", esc(stage));
            none(h, &format!("{stage} quarantined no rows of {}", d.name));
            continue;
        };
        let _ = write!(
            h,
            "<h4>{} <span class=\"badge\">{} rows in {} files</span></h4>",
            esc(stage),
            count(q.rows),
            count(q.files)
        );
        if q.files_found > q.files {
            let _ = write!(
                h,
                "<p class=\"warn\">Counted the newest {} of {} quarantine files.</p>",
                count(q.files),
                count(q.files_found)
            );
        }
        let ranked = q.ranked();
        let rows_chart: Vec<HBar> = ranked
            .iter()
            .take(12)
            .map(|(reason, c)| HBar {
                label: (*reason).clone(),
                value: c.count as f64,
                threshold: None,
                highlight: false,
            })
            .collect();
        let label = format!("{}: {stage} quarantine reasons", d.name);
        h.push_str(&svg::hbars(
            "reasons",
            &label,
            &rows_chart,
            Fmt::Count,
            1180.0,
        ));
        let head = "<table class=\"reasons\"><thead><tr><th>reason</th><th class=\"n\">rows</th>\
                    <th class=\"n\">share</th><th>first example</th></tr></thead><tbody>";
        h.push_str(head);
        for (i, (reason, c)) in ranked.iter().take(TABLE_REASONS).enumerate() {
            if i == SHOWN_REASONS {
                let _ = write!(
                    h,
                    "</tbody></table><details><summary>{} more reasons</summary>{head}",
                    count((ranked.len().min(TABLE_REASONS) - SHOWN_REASONS) as u64)
                );
            }
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
                esc(reason),
                count(c.count),
                pct(c.count as f64 / q.rows.max(1) as f64),
                esc(&clip(&c.example, 140))
            );
        }
        h.push_str("</tbody></table>");
        if ranked.len() > TABLE_REASONS {
            let rest: u64 = ranked
                .iter()
                .skip(TABLE_REASONS)
                .map(|(_, c)| c.count)
                .sum();
            let _ = write!(
                h,
                "<p class=\"sub\">… and {} more reasons ({} rows).</p>",
                count((ranked.len() - TABLE_REASONS) as u64),
                count(rest)
            );
        }
        if ranked.len() > SHOWN_REASONS {
            h.push_str("</details>");
        }
        if q.other > 0 {
            let _ = write!(
                h,
                "<p class=\"sub\">{} more occurrences of reasons beyond the {} distinct ones counted.</p>",
                count(q.other),
                super::model::MAX_REASONS
            );
        }
        if q.unreadable > 0 {
            let _ = write!(
                h,
                "<p class=\"warn\">{} quarantine lines were not readable JSON with reasons.</p>",
                count(q.unreadable)
            );
        }
    }
    h.push_str("</section>");
}

fn dlq(h: &mut String, r: &Report, d: &Dataset, slug: &str) {
    let extra = if d.dlq.is_empty() {
        String::new()
    } else {
        format!("<span class=\"badge bad\">{}</span>", d.dlq.len())
    };
    open_sub(h, slug, "dlq", &extra);
    for stage in &r.stages {
        let _ = write!(h, "<h4>{}</h4>", esc(stage));
        if let Some(e) = r.dlq_errors.get(stage) {
            let _ = write!(
                h,
                "<p class=\"warn\">could not read the DLQ: {}</p>",
                esc(e)
            );
            continue;
        }
        let rows: Vec<_> = d.dlq.iter().filter(|x| &x.stage == stage).collect();
        if rows.is_empty() {
            none(h, &format!("the {stage} DLQ holds nothing for {}", d.name));
            continue;
        }
        h.push_str(
            "<table class=\"dlq\"><thead><tr><th>kind</th><th>object</th><th>message</th>\
             <th>time</th><th class=\"n\">attempts</th></tr></thead><tbody>",
        );
        for x in rows {
            let _ = write!(
                h,
                "<tr class=\"bad\"><td><b>{}</b></td><td><code>{}</code></td><td>{}</td><td class=\"nw\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&x.kind),
                esc(x.object.as_deref().unwrap_or("—")),
                esc(&clip(&x.message, 400)),
                x.time.map(|t| esc(&when(&t))).unwrap_or_else(|| "—".into()),
                x.attempts.map(|a| a.to_string()).unwrap_or_else(|| "—".into())
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

fn nulls(h: &mut String, d: &Dataset, slug: &str) {
    open_sub(h, slug, "nulls", "");
    let cols = &d.profiles.columns;
    if cols.is_empty() {
        none(h, "no profiles yet");
        h.push_str("</section>");
        return;
    }
    let over = |c: &ColumnSummary| c.null_threshold.is_some_and(|t| c.null_ratio() > t);
    let rows: Vec<HBar> = cols
        .iter()
        .map(|c| HBar {
            label: c.name.clone(),
            value: c.null_ratio(),
            threshold: c.null_threshold,
            highlight: over(c),
        })
        .collect();
    let _ = write!(
        h,
        "<p class=\"sub\">Nulls over all {} profiled rows; the dashed red marks are the contract's \
         <code>max_null_ratio</code> thresholds.</p>",
        count(d.profiles.rows)
    );
    let label = format!("{}: null ratio per column", d.name);
    h.push_str(&svg::hbars("nulls", &label, &rows, Fmt::Ratio, 1180.0));
    h.push_str(
        "<details><summary>Per-column numbers</summary><table><thead><tr><th>column</th><th>type</th>\
         <th class=\"n\">nulls</th><th class=\"n\">ratio</th><th class=\"n\">worst partition</th>\
         <th class=\"n\">threshold</th></tr></thead><tbody>",
    );
    for c in cols {
        let worst_over = c
            .worst_null
            .as_ref()
            .zip(c.null_threshold)
            .is_some_and(|((w, _), t)| *w > t);
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if over(c) || worst_over { " class=\"breach\"" } else { "" },
            esc(&c.name),
            esc(&c.ty),
            count(c.nulls),
            pct(c.null_ratio()),
            c.worst_null
                .as_ref()
                .map(|(w, p)| format!("{} ({})", pct(*w), esc(p)))
                .unwrap_or_else(|| "—".into()),
            c.null_threshold.map(pct).unwrap_or_else(|| "—".into())
        );
    }
    h.push_str("</tbody></table></details></section>");
}

fn distributions(h: &mut String, d: &Dataset, slug: &str) {
    open_sub(h, slug, "distributions", "");
    let cols = &d.profiles.columns;
    if cols.is_empty() {
        none(h, "no profiles yet");
        h.push_str("</section>");
        return;
    }
    let numeric: Vec<&ColumnSummary> = cols.iter().filter(|c| c.numeric.is_some()).collect();
    h.push_str("<h4>Histograms</h4>");
    if numeric
        .iter()
        .all(|c| c.numeric.as_ref().is_none_or(|n| n.histogram.is_none()))
    {
        none(h, "no numeric column has a histogram");
    } else {
        h.push_str(
            "<p class=\"sub\">Each column's per-file histograms merged over all profiles \
             (times in UTC).</p><div class=\"grid\">",
        );
        for c in &numeric {
            let Some(n) = &c.numeric else { continue };
            let Some((lo, hi, counts)) = &n.histogram else {
                continue;
            };
            let fmt = if n.temporal {
                Fmt::TimeMicros
            } else {
                Fmt::Number
            };
            let show = |v: Option<f64>| {
                v.map(|v| {
                    if n.temporal {
                        super::fmt::time_us(v)
                    } else {
                        num(v)
                    }
                })
                .unwrap_or_else(|| "—".into())
            };
            let median = n.quantiles.iter().map(|(_, q)| q[2]).collect::<Vec<_>>();
            let _ = write!(
                h,
                "<figure><figcaption><b>{}</b> {} · min {} · mean {} · max {}{}</figcaption>",
                esc(&c.name),
                esc(&c.ty),
                esc(&show(n.min)),
                esc(&show(n.mean)),
                esc(&show(n.max)),
                if median.is_empty() || n.temporal {
                    String::new()
                } else {
                    format!(" · {} values", count(n.count))
                }
            );
            let label = format!("{}: distribution of {}", d.name, c.name);
            h.push_str(&svg::histogram(
                "histogram",
                &label,
                *lo,
                *hi,
                counts,
                fmt,
                (380.0, 160.0),
            ));
            h.push_str("</figure>");
        }
        h.push_str("</div>");
    }
    let with_q: Vec<&&ColumnSummary> = numeric
        .iter()
        .filter(|c| {
            c.numeric
                .as_ref()
                .is_some_and(|n| !n.temporal && !n.quantiles.is_empty())
        })
        .collect();
    h.push_str("<h4>Quantiles per partition</h4>");
    if with_q.is_empty() {
        none(h, "no quantiles in the profiles");
    } else {
        h.push_str(
            "<p class=\"sub\">Whiskers p01–p99, box p25–p75, line at the median, one box per \
             partition (oldest left).</p><div class=\"grid\">",
        );
        for c in with_q {
            let Some(n) = &c.numeric else { continue };
            let cats: Vec<String> = n.quantiles.iter().map(|(p, _)| p.clone()).collect();
            let qs: Vec<[f64; 5]> = n.quantiles.iter().map(|(_, q)| *q).collect();
            let _ = write!(
                h,
                "<figure><figcaption><b>{}</b> {}</figcaption>",
                esc(&c.name),
                esc(&c.ty)
            );
            let label = format!("{}: quantiles of {} per partition", d.name, c.name);
            h.push_str(&svg::boxes(
                "quantiles",
                &label,
                &cats,
                &qs,
                Fmt::Number,
                (380.0, 160.0),
            ));
            h.push_str("</figure>");
        }
        h.push_str("</div>");
    }
    let texts: Vec<&ColumnSummary> = cols
        .iter()
        .filter(|c| !c.top_values.is_empty() || c.booleans.is_some())
        .collect();
    h.push_str("<h4>Frequent values</h4>");
    if texts.is_empty() {
        none(h, "no text or boolean columns");
    } else {
        h.push_str(
            "<p class=\"sub\">Counts summed over each file's ten most frequent values (a lower \
             bound).</p><div class=\"grid\">",
        );
        for c in texts {
            let rows: Vec<HBar> = match c.booleans {
                Some((t, f)) => vec![("true", t), ("false", f)]
                    .into_iter()
                    .map(|(l, v)| HBar {
                        label: l.into(),
                        value: v as f64,
                        threshold: None,
                        highlight: false,
                    })
                    .collect(),
                None => c
                    .top_values
                    .iter()
                    .take(8)
                    .map(|(v, n)| HBar {
                        label: if v.is_empty() {
                            "(empty)".into()
                        } else {
                            v.clone()
                        },
                        value: *n as f64,
                        threshold: None,
                        highlight: false,
                    })
                    .collect(),
            };
            let _ = write!(
                h,
                "<figure><figcaption><b>{}</b> {}</figcaption>",
                esc(&c.name),
                esc(&c.ty)
            );
            let label = format!("{}: frequent values of {}", d.name, c.name);
            h.push_str(&svg::hbars("top-values", &label, &rows, Fmt::Count, 380.0));
            h.push_str("</figure>");
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
}
