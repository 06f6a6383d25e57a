//! The ghost diff report as aligned text (terminals, CI logs) or Markdown (a
//! pull-request comment: verdict line first, then headings and tables, long
//! tables folded in `<details>`).

use std::fmt::Write as _;

use super::parquet_diff::{ColumnStats, SampleKind};
use super::{percent, Options, Report, TableReport, Verdict};

/// Files listed per section before "... and N more".
const LIST_MAX: usize = 20;
/// Rows of the per-file row-count table in text.
const FILE_ROWS_TEXT: usize = 50;
/// Rows of the per-file row-count table in Markdown.
const FILE_ROWS_MD: usize = 200;

/// A table that renders as aligned text or as Markdown.
struct Table {
    head: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named in `head`; those starting with `>` are right-aligned
    /// (the `>` is dropped).
    fn new(head: &[&str]) -> Self {
        Table {
            head: head
                .iter()
                .map(|h| h.trim_start_matches('>').to_string())
                .collect(),
            right: head.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn text(&self, indent: &str) -> String {
        let n = self.head.len();
        let mut width = vec![0; n];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = indent.to_string();
            for (i, c) in r.iter().enumerate().take(n) {
                let pad = width[i] - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < n {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let cells = |r: &[String]| {
            r.iter()
                .map(|c| md_escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let _ = writeln!(out, "| {} |", cells(&self.head));
        let sep: Vec<&str> = self
            .right
            .iter()
            .map(|r| if *r { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "| {} |", sep.join(" | "));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", cells(r));
        }
        out
    }
}

fn md_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('*', "\\*")
        .replace('`', "\\`")
}

/// A number for a report cell: at most 6 decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One statistic of both sides: the value, or `prod → ghost` when they
/// differ; and whether they do.
fn both(p: Option<String>, g: Option<String>) -> (String, bool) {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    if p == g {
        (show(&p), false)
    } else {
        (format!("{} → {}", show(&p), show(&g)), true)
    }
}

/// The statistics rows of a table: (differs, cells).
fn stats_rows(t: &TableReport) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for c in &t.columns {
        let (p, g) = (t.prod.get(c), t.ghost.get(c));
        let pick = |f: &dyn Fn(&ColumnStats) -> String| -> (Option<String>, Option<String>) {
            (p.map(f), g.map(f))
        };
        let ty = both(
            p.map(|s| s.data_type.to_string()),
            g.map(|s| s.data_type.to_string()),
        );
        let non_null = pick(&|s| s.non_null.to_string());
        let nulls = pick(&|s| s.nulls.to_string());
        let min = pick(&|s| s.min_text());
        let max = pick(&|s| s.max_text());
        let (pm, gm) = (p.and_then(ColumnStats::mean), g.and_then(ColumnStats::mean));
        // Means that differ beyond the sixth decimal are shown in full.
        let fmt = |m: Option<f64>, full: bool| {
            m.map(|v| if full { v.to_string() } else { num(v) })
                .unwrap_or_default()
        };
        let full = pm != gm && pm.map(num) == gm.map(num);
        let mean = (p.map(|_| fmt(pm, full)), g.map(|_| fmt(gm, full)));
        let distinct = pick(&|s| s.distinct_text());
        let mut cells = vec![c.clone(), ty.0];
        let mut differs = ty.1;
        for (a, b) in [non_null, nulls, min, max, mean, distinct] {
            let (cell, d) = both(a, b);
            differs |= d;
            cells.push(cell);
        }
        out.push((differs, cells));
    }
    out
}

const STATS_HEAD: [&str; 8] = [
    "column",
    "type",
    ">non-null",
    ">null",
    "min",
    "max",
    ">mean",
    ">distinct",
];

fn kind_text(k: SampleKind) -> &'static str {
    match k {
        SampleKind::Changed => "changed",
        SampleKind::OnlyProd => "only in prod",
        SampleKind::OnlyGhost => "only in ghost",
    }
}

/// How records were matched; `col` is the record id column as shown.
fn record_match(r: &Report, col: &str) -> String {
    if r.by_position.is_empty() {
        format!("matched by {col}")
    } else if r.by_position.len() == r.parquet_files {
        format!("matched by row position: no {col} column")
    } else {
        format!(
            "matched by {col}; {} file(s) without it matched by row position",
            r.by_position.len()
        )
    }
}

fn list_more(total: usize) -> Option<String> {
    (total > LIST_MAX).then(|| format!("... and {} more", total - LIST_MAX))
}

/// The report as aligned text.
pub fn text(r: &Report, opts: &Options, v: &Verdict) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", v.line);
    let _ = writeln!(o);
    let _ = writeln!(o, "  prod   {}", r.prod);
    let _ = writeln!(o, "  ghost  {}", r.ghost);
    let _ = writeln!(o, "  ignoring  {}", opts.ignore.join(", "));

    let _ = writeln!(o, "\nFiles");
    let mut t = Table::new(&["", ">count", ""]);
    t.row(vec![
        "prod outputs".into(),
        r.prod_files.to_string(),
        String::new(),
    ]);
    t.row(vec![
        "ghost outputs".into(),
        r.ghost_files.to_string(),
        String::new(),
    ]);
    t.row(vec![
        "compared".into(),
        r.compared.to_string(),
        format!(
            "{} Parquet, {} other; {} byte-identical",
            r.parquet_files, r.docs_compared, r.identical_files
        ),
    ]);
    t.row(vec![
        "only in prod".into(),
        r.only_prod.len().to_string(),
        if r.only_prod.is_empty() {
            String::new()
        } else if opts.require_complete {
            "fails: --require-complete".into()
        } else {
            "not yet seen by the ghost (not required)".into()
        },
    ]);
    t.row(vec![
        "only in ghost".into(),
        r.only_ghost.len().to_string(),
        String::new(),
    ]);
    t.row(vec![
        "ignored".into(),
        format!("{}/{}", r.ignored.0, r.ignored.1),
        "bookkeeping objects (prod/ghost): _sluice/, _quarantine/, ...".into(),
    ]);
    o.push_str(&t.text("  "));
    for (title, list) in [
        ("Only in prod", &r.only_prod),
        ("Only in ghost", &r.only_ghost),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "\n{title} ({})", list.len());
        for f in list.iter().take(LIST_MAX) {
            let _ = writeln!(o, "  {f}");
        }
        if let Some(m) = list_more(list.len()) {
            let _ = writeln!(o, "  {m}");
        }
    }

    if r.parquet_files > 0 {
        let _ = writeln!(o, "\nParquet tables");
        let mut t = Table::new(&["table", ">files", ">prod rows", ">ghost rows", "schema"]);
        for (name, tr) in &r.tables {
            t.row(vec![
                name.clone(),
                tr.files.to_string(),
                tr.prod_rows.to_string(),
                tr.ghost_rows.to_string(),
                if tr.schema_changes.is_empty() {
                    "same".into()
                } else {
                    format!("{} change(s)", tr.schema_changes.len())
                },
            ]);
        }
        o.push_str(&t.text("  "));
        for (name, tr) in &r.tables {
            if tr.schema_changes.is_empty() {
                continue;
            }
            let _ = writeln!(o, "\nSchema changes: {name}");
            for (c, files) in &tr.schema_changes {
                let _ = writeln!(o, "  {c}  [{files} of {} files]", tr.files);
            }
        }

        let _ = writeln!(o, "\nRows per file");
        let mut rows = r.file_rows.clone();
        rows.sort_by_key(|f| f.prod == f.ghost);
        let mut t = Table::new(&["file", ">prod", ">ghost", ""]);
        for f in rows.iter().take(FILE_ROWS_TEXT) {
            t.row(vec![
                f.file.clone(),
                f.prod.to_string(),
                f.ghost.to_string(),
                if f.prod == f.ghost { "" } else { "*" }.into(),
            ]);
        }
        if rows.len() > FILE_ROWS_TEXT {
            t.row(vec![
                format!("... {} more files", rows.len() - FILE_ROWS_TEXT),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        let (tp, tg) = rows
            .iter()
            .fold((0, 0), |(a, b), f| (a + f.prod, b + f.ghost));
        t.row(vec![
            "total".into(),
            tp.to_string(),
            tg.to_string(),
            if tp == tg { "" } else { "*" }.into(),
        ]);
        o.push_str(&t.text("  "));

        let rc = &r.records;
        let _ = writeln!(o, "\nRecords ({})", record_match(r, &opts.record_id));
        let mut t = Table::new(&["", ">records"]);
        t.row(vec!["compared".into(), rc.total().to_string()]);
        t.row(vec!["identical".into(), rc.same.to_string()]);
        t.row(vec!["changed".into(), rc.changed.to_string()]);
        t.row(vec!["only in prod".into(), rc.only_prod.to_string()]);
        t.row(vec!["only in ghost".into(), rc.only_ghost.to_string()]);
        o.push_str(&t.text("  "));
        let _ = writeln!(
            o,
            "  differing: {} ({}; threshold {})",
            rc.differing(),
            percent(super::fraction(rc.differing(), rc.total())),
            percent(opts.threshold)
        );
        for (name, tr) in &r.tables {
            if tr.changed_columns.is_empty() {
                continue;
            }
            let _ = writeln!(o, "\nChanged records per column: {name}");
            let mut t = Table::new(&["column", ">records"]);
            for (c, n) in &tr.changed_columns {
                t.row(vec![c.clone(), n.to_string()]);
            }
            o.push_str(&t.text("  "));
        }
        if !r.samples.is_empty() {
            let _ = writeln!(
                o,
                "\nDiffering records (first {} of {})",
                r.samples.len(),
                rc.differing()
            );
            let mut t = Table::new(&["record id", "column", "prod", "ghost", "difference", "file"]);
            for s in &r.samples {
                for c in &s.sample.cells {
                    t.row(vec![
                        s.sample.record.clone(),
                        c.column.clone(),
                        c.prod.clone(),
                        c.ghost.clone(),
                        kind_text(s.sample.kind).into(),
                        s.file.clone(),
                    ]);
                }
            }
            o.push_str(&t.text("  "));
        }
        for (name, tr) in &r.tables {
            let _ = writeln!(
                o,
                "\nColumn statistics: {name} (prod → ghost where they differ, * marks them)"
            );
            let mut head = vec![""];
            head.extend(STATS_HEAD);
            let mut t = Table::new(&head);
            for (differs, cells) in stats_rows(tr) {
                let mut row = vec![if differs { "*" } else { "" }.to_string()];
                row.extend(cells);
                t.row(row);
            }
            o.push_str(&t.text("  "));
        }
    }

    if r.docs_compared > 0 {
        let _ = writeln!(o, "\nDocuments (JSON and other files)");
        let mut t = Table::new(&["", ">count"]);
        t.row(vec!["compared".into(), r.docs_compared.to_string()]);
        t.row(vec!["differing".into(), r.docs_differing.to_string()]);
        t.row(vec!["differing paths".into(), r.doc_paths.to_string()]);
        o.push_str(&t.text("  "));
        if !r.doc_samples.is_empty() {
            let _ = writeln!(
                o,
                "\nDiffering paths (first {} of {})",
                r.doc_samples.len(),
                r.doc_paths
            );
            let mut t = Table::new(&["path", "prod", "ghost", "file"]);
            for s in &r.doc_samples {
                t.row(vec![
                    s.path.clone(),
                    s.prod.clone(),
                    s.ghost.clone(),
                    s.file.clone(),
                ]);
            }
            o.push_str(&t.text("  "));
        }
    }

    if !r.errors.is_empty() {
        let _ = writeln!(o, "\nErrors ({})", r.errors.len());
        for e in &r.errors {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}

/// The report as Markdown for a pull-request comment.
pub fn markdown(r: &Report, opts: &Options, v: &Verdict) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", md_escape(&v.line));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "**prod** `{}` · **ghost** `{}` · threshold {} · ignoring {}{}",
        r.prod.replace('`', "'"),
        r.ghost.replace('`', "'"),
        percent(opts.threshold),
        opts.ignore
            .iter()
            .map(|i| format!("`{}`", i.replace('`', "'")))
            .collect::<Vec<_>>()
            .join(", "),
        if opts.require_complete {
            " · --require-complete"
        } else {
            ""
        }
    );

    let _ = writeln!(o, "\n### Files\n");
    let mut t = Table::new(&["", ">files"]);
    t.row(vec!["prod outputs".into(), r.prod_files.to_string()]);
    t.row(vec!["ghost outputs".into(), r.ghost_files.to_string()]);
    t.row(vec![
        format!(
            "compared ({} Parquet, {} other; {} byte-identical)",
            r.parquet_files, r.docs_compared, r.identical_files
        ),
        r.compared.to_string(),
    ]);
    t.row(vec![
        if r.only_prod.is_empty() || opts.require_complete {
            "only in prod".into()
        } else {
            "only in prod (not yet seen by the ghost; not required)".into()
        },
        r.only_prod.len().to_string(),
    ]);
    t.row(vec!["only in ghost".into(), r.only_ghost.len().to_string()]);
    t.row(vec![
        "bookkeeping ignored (prod/ghost)".into(),
        format!("{}/{}", r.ignored.0, r.ignored.1),
    ]);
    o.push_str(&t.markdown());
    for (title, list) in [
        ("Only in prod", &r.only_prod),
        ("Only in ghost", &r.only_ghost),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\n<details><summary>{title} ({})</summary>\n",
            list.len()
        );
        for f in list.iter().take(LIST_MAX) {
            let _ = writeln!(o, "- `{f}`");
        }
        if let Some(m) = list_more(list.len()) {
            let _ = writeln!(o, "- {m}");
        }
        let _ = writeln!(o, "\n</details>");
    }

    if r.parquet_files > 0 {
        let _ = writeln!(o, "\n### Tables\n");
        let mut t = Table::new(&["table", ">files", ">prod rows", ">ghost rows", "schema"]);
        for (name, tr) in &r.tables {
            t.row(vec![
                name.clone(),
                tr.files.to_string(),
                tr.prod_rows.to_string(),
                tr.ghost_rows.to_string(),
                if tr.schema_changes.is_empty() {
                    "same".into()
                } else {
                    format!("{} change(s)", tr.schema_changes.len())
                },
            ]);
        }
        o.push_str(&t.markdown());
        let changed: Vec<_> = r
            .tables
            .iter()
            .filter(|(_, t)| !t.schema_changes.is_empty())
            .collect();
        if !changed.is_empty() {
            let _ = writeln!(o, "\n### Schema changes\n");
            let mut t = Table::new(&["table", "change", ">files"]);
            for (name, tr) in changed {
                for (c, n) in &tr.schema_changes {
                    t.row(vec![
                        name.clone(),
                        c.to_string(),
                        format!("{n} of {}", tr.files),
                    ]);
                }
            }
            o.push_str(&t.markdown());
        }

        let rc = &r.records;
        let _ = writeln!(o, "\n### Records\n");
        let col = format!("`{}`", opts.record_id.replace('`', "'"));
        let _ = writeln!(o, "Records are {}.\n", record_match(r, &col));
        let mut t = Table::new(&[
            ">compared",
            ">identical",
            ">changed",
            ">only in prod",
            ">only in ghost",
            ">differing",
        ]);
        t.row(vec![
            rc.total().to_string(),
            rc.same.to_string(),
            rc.changed.to_string(),
            rc.only_prod.to_string(),
            rc.only_ghost.to_string(),
            format!(
                "{} ({})",
                rc.differing(),
                percent(super::fraction(rc.differing(), rc.total()))
            ),
        ]);
        o.push_str(&t.markdown());
        let per_col: Vec<_> = r
            .tables
            .iter()
            .flat_map(|(n, t)| t.changed_columns.iter().map(move |(c, k)| (n, c, k)))
            .collect();
        if !per_col.is_empty() {
            let _ = writeln!(o, "\nChanged records per column:\n");
            let mut t = Table::new(&["table", "column", ">records"]);
            for (n, c, k) in per_col {
                t.row(vec![n.clone(), c.clone(), k.to_string()]);
            }
            o.push_str(&t.markdown());
        }
        if !r.samples.is_empty() {
            let _ = writeln!(
                o,
                "\n### Differing records (first {} of {})\n",
                r.samples.len(),
                rc.differing()
            );
            let mut t = Table::new(&["record id", "column", "prod", "ghost", "difference", "file"]);
            for s in &r.samples {
                for c in &s.sample.cells {
                    t.row(vec![
                        s.sample.record.clone(),
                        c.column.clone(),
                        c.prod.clone(),
                        c.ghost.clone(),
                        kind_text(s.sample.kind).into(),
                        s.file.clone(),
                    ]);
                }
            }
            o.push_str(&t.markdown());
        }

        let mut rows = r.file_rows.clone();
        rows.sort_by_key(|f| f.prod == f.ghost);
        let differing = rows.iter().filter(|f| f.prod != f.ghost).count();
        let _ = writeln!(
            o,
            "\n<details><summary>Rows per file ({} files, {} with different counts)</summary>\n",
            rows.len(),
            differing
        );
        let mut t = Table::new(&["file", ">prod", ">ghost"]);
        for f in rows.iter().take(FILE_ROWS_MD) {
            t.row(vec![
                f.file.clone(),
                f.prod.to_string(),
                f.ghost.to_string(),
            ]);
        }
        if rows.len() > FILE_ROWS_MD {
            t.row(vec![
                format!("... {} more files", rows.len() - FILE_ROWS_MD),
                String::new(),
                String::new(),
            ]);
        }
        o.push_str(&t.markdown());
        let _ = writeln!(o, "\n</details>");

        let _ = writeln!(o, "\n### Column statistics\n");
        for (name, tr) in &r.tables {
            let rows = stats_rows(tr);
            let differing: Vec<_> = rows.iter().filter(|(d, _)| *d).collect();
            let _ = writeln!(
                o,
                "**{}**: {} of {} columns differ (prod → ghost where they do).\n",
                md_escape(name),
                differing.len(),
                rows.len()
            );
            if !differing.is_empty() {
                let mut t = Table::new(&STATS_HEAD);
                for (_, cells) in &differing {
                    t.row(cells.clone());
                }
                o.push_str(&t.markdown());
                let _ = writeln!(o);
            }
            let _ = writeln!(
                o,
                "<details><summary>All columns of {}</summary>\n",
                md_escape(name)
            );
            let mut head = vec![""];
            head.extend(STATS_HEAD);
            let mut t = Table::new(&head);
            for (d, cells) in rows {
                let mut row = vec![if d { "≠" } else { "" }.to_string()];
                row.extend(cells);
                t.row(row);
            }
            o.push_str(&t.markdown());
            let _ = writeln!(o, "\n</details>\n");
        }
    }

    if r.docs_compared > 0 {
        let _ = writeln!(o, "\n### Documents (JSON and other files)\n");
        let mut t = Table::new(&[">compared", ">differing", ">differing paths"]);
        t.row(vec![
            r.docs_compared.to_string(),
            r.docs_differing.to_string(),
            r.doc_paths.to_string(),
        ]);
        o.push_str(&t.markdown());
        if !r.doc_samples.is_empty() {
            let _ = writeln!(
                o,
                "\nDiffering paths (first {} of {}):\n",
                r.doc_samples.len(),
                r.doc_paths
            );
            let mut t = Table::new(&["path", "prod", "ghost", "file"]);
            for s in &r.doc_samples {
                t.row(vec![
                    s.path.clone(),
                    s.prod.clone(),
                    s.ghost.clone(),
                    s.file.clone(),
                ]);
            }
            o.push_str(&t.markdown());
        }
    }

    if !r.errors.is_empty() {
        let _ = writeln!(o, "\n### Errors ({})\n", r.errors.len());
        for e in &r.errors {
            let _ = writeln!(o, "- {}", md_escape(e));
        }
    }
    o
}
