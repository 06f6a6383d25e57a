//! Inline SVG charts, drawn in Rust: no script, no stylesheet, nothing
//! fetched, so a report opens from `file://` anywhere. Every chart is an
//! `<svg class="chart">` with `data-chart` (its kind) and `data-points` (how
//! many values it draws), so tests can count charts and see they are not
//! empty. Every mark has a `<title>`: browsers show it as a tooltip.

use std::fmt::Write;

use super::fmt::{clip, compact, count, esc, num, pct};

/// Bars of the main quantity.
pub const BLUE: &str = "#3b6fd4";
/// A second series.
pub const AMBER: &str = "#e39b1b";
/// Breaches, thresholds, highlighted marks.
pub const RED: &str = "#d64545";
/// A third series.
pub const TEAL: &str = "#2a9d8f";
/// Background of highlighted categories.
const HIGHLIGHT_BG: &str = "#fde2e2";
const AXIS: &str = "#9aa3b2";
const GRID: &str = "#e6e9ef";
const LABEL: &str = "#4a5160";

/// How values are shown on axes and in tooltips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// Row counts.
    Count,
    /// Ratios, shown as percentages.
    Ratio,
    /// Measured values.
    Number,
    /// Microseconds since the epoch, shown as dates.
    TimeMicros,
}

impl Fmt {
    fn axis(self, v: f64, span: f64) -> String {
        match self {
            Fmt::Count | Fmt::Number => compact(v),
            Fmt::Ratio => {
                let p = v * 100.0;
                if p.fract().abs() < 1e-9 {
                    format!("{p:.0}%")
                } else {
                    format!("{p:.1}%")
                }
            }
            Fmt::TimeMicros => {
                let Some(t) = chrono::DateTime::from_timestamp_micros(v as i64) else {
                    return compact(v);
                };
                // Under two days a label needs the time of day.
                if span < 2.0 * 86_400e6 {
                    t.format("%m-%d %H:%M").to_string()
                } else {
                    t.format("%Y-%m-%d").to_string()
                }
            }
        }
    }

    fn full(self, v: f64) -> String {
        match self {
            Fmt::Count => count(v.max(0.0).round() as u64),
            Fmt::Ratio => pct(v),
            Fmt::Number => num(v),
            Fmt::TimeMicros => super::fmt::time_us(v),
        }
    }
}

/// One series of a bar chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Fill colour.
    pub color: &'static str,
    /// One value per category.
    pub values: Vec<f64>,
}

/// A vertical bar chart: grouped or stacked series over categories.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    /// `data-chart`.
    pub kind: &'a str,
    /// Accessible name and title.
    pub label: &'a str,
    /// The x axis.
    pub categories: &'a [String],
    /// The bars.
    pub series: &'a [Series],
    /// Stack the series instead of grouping them.
    pub stacked: bool,
    /// Categories to shade (breaches); may be shorter than `categories`.
    pub highlight: &'a [bool],
    /// Legend text of the shading.
    pub highlight_label: &'a str,
    /// Value format.
    pub fmt: Fmt,
    /// Size.
    pub width: f64,
    /// Size.
    pub height: f64,
}

/// A step of 1, 2, 2.5 or 5 times a power of ten giving about `target`
/// intervals over `range`.
fn nice_step(range: f64, target: usize) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    step * mag
}

/// The top of a zero-based axis and its tick step.
fn zero_axis(max: f64, fmt: Fmt) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let mut step = nice_step(max, 4);
    if fmt == Fmt::Count {
        step = step.max(1.0);
    }
    let top = (max / step).ceil() * step;
    (top.max(step), step)
}

fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0.0;
    loop {
        let t = lo + i * step;
        if t > hi + step * 1e-6 || out.len() > 50 {
            break;
        }
        out.push(t);
        i += 1.0;
    }
    out
}

fn wrap(kind: &str, label: &str, w: f64, h: f64, points: usize, body: &str) -> String {
    let l = esc(label);
    format!(
        "<svg class=\"chart\" data-chart=\"{kind}\" data-points=\"{points}\" \
         xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
         height=\"{h}\" role=\"img\" aria-label=\"{l}\"><title>{l}</title>{body}</svg>",
        kind = esc(kind),
    )
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, size: u32, s: &str) {
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\" fill=\"{LABEL}\">{}</text>",
        esc(s)
    );
}

fn rect(out: &mut String, x: f64, y: f64, w: f64, h: f64, fill: &str, tip: &str) {
    let _ = write!(
        out,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
        esc(tip)
    );
}

fn line(out: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, extra: &str) {
    let _ = write!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\" {extra}/>"
    );
}

fn legend(out: &mut String, mut x: f64, items: &[(&str, &str)]) {
    for (name, color) in items {
        rect(out, x, 6.0, 10.0, 10.0, color, name);
        text(out, x + 14.0, 15.0, "start", 11, name);
        x += 14.0 + name.chars().count() as f64 * 6.2 + 18.0;
    }
}

fn no_data(kind: &str, label: &str, w: f64, h: f64) -> String {
    let mut body = String::new();
    text(&mut body, w / 2.0, h / 2.0, "middle", 12, "no data");
    wrap(kind, label, w, h, 0, &body)
}

/// A vertical bar chart.
pub fn bars(b: &Bars) -> String {
    let n = b.categories.len();
    if n == 0 || b.series.is_empty() {
        return no_data(b.kind, b.label, b.width, b.height);
    }
    let value = |s: &Series, i: usize| s.values.get(i).copied().unwrap_or(0.0).max(0.0);
    let longest = b
        .categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let (ml, mr, mt) = (64.0, 12.0, 28.0);
    let band0 = (b.width - ml - mr) / n as f64;
    let rotate = longest * 6.5 > band0 * 0.95;
    let mb = if rotate {
        (longest.min(14.0) * 5.0 + 18.0).max(40.0)
    } else {
        24.0
    };
    let (pw, ph) = (b.width - ml - mr, b.height - mt - mb);
    let band = pw / n as f64;
    let max = (0..n)
        .map(|i| {
            if b.stacked {
                b.series.iter().map(|s| value(s, i)).sum::<f64>()
            } else {
                b.series.iter().map(|s| value(s, i)).fold(0.0f64, f64::max)
            }
        })
        .fold(0.0f64, f64::max);
    let (top, step) = zero_axis(max, b.fmt);
    let y = |v: f64| mt + ph - v / top * ph;
    let mut body = String::new();
    for (i, hl) in b.highlight.iter().enumerate().take(n) {
        if *hl {
            let tip = format!("{}: {}", b.categories[i], b.highlight_label);
            rect(
                &mut body,
                ml + i as f64 * band,
                mt,
                band,
                ph,
                HIGHLIGHT_BG,
                &tip,
            );
        }
    }
    for t in ticks(0.0, top, step) {
        line(&mut body, ml, y(t), ml + pw, y(t), GRID, "");
        text(
            &mut body,
            ml - 6.0,
            y(t) + 4.0,
            "end",
            11,
            &b.fmt.axis(t, top),
        );
    }
    let group = band * 0.78;
    let ns = b.series.len() as f64;
    let mut points = 0;
    let show_values = n * b.series.len() <= 12;
    for i in 0..n {
        let x0 = ml + i as f64 * band + (band - group) / 2.0;
        let mut acc = 0.0;
        for (j, s) in b.series.iter().enumerate() {
            let v = value(s, i);
            points += 1;
            if v <= 0.0 {
                continue;
            }
            // A non-zero value stays visible, however small.
            let h = (v / top * ph).max(1.5);
            let tip = format!("{} · {}: {}", b.categories[i], s.name, b.fmt.full(v));
            let (x, w, ybase) = if b.stacked {
                (x0, group, y(acc))
            } else {
                let sw = group / ns;
                (x0 + j as f64 * sw, sw * 0.92, y(0.0))
            };
            rect(&mut body, x, ybase - h, w, h, s.color, &tip);
            if show_values {
                text(
                    &mut body,
                    x + w / 2.0,
                    ybase - h - 3.0,
                    "middle",
                    10,
                    &b.fmt.axis(v, top),
                );
            }
            if b.stacked {
                acc += v;
            }
        }
    }
    line(&mut body, ml, y(0.0), ml + pw, y(0.0), AXIS, "");
    let max_labels = if rotate { pw / 15.0 } else { pw / 50.0 }.max(1.0);
    let every = ((n as f64 / max_labels).ceil() as usize).max(1);
    for (i, c) in b.categories.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let x = ml + (i as f64 + 0.5) * band;
        let label = clip(c, 14);
        let hl = b.highlight.get(i).copied().unwrap_or(false);
        let weight = if hl {
            format!(" font-weight=\"bold\" fill=\"{RED}\"")
        } else {
            format!(" fill=\"{LABEL}\"")
        };
        if rotate {
            let _ = write!(
                body,
                "<text transform=\"translate({x:.1},{:.1}) rotate(-40)\" text-anchor=\"end\" font-size=\"11\"{weight}>{}</text>",
                mt + ph + 12.0,
                esc(&label)
            );
        } else {
            let _ = write!(
                body,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\"{weight}>{}</text>",
                mt + ph + 16.0,
                esc(&label)
            );
        }
    }
    let mut items: Vec<(&str, &str)> = b
        .series
        .iter()
        .map(|s| (s.name.as_str(), s.color))
        .collect();
    if b.highlight.iter().any(|h| *h) {
        items.push((b.highlight_label, HIGHLIGHT_BG));
    }
    legend(&mut body, ml, &items);
    wrap(b.kind, b.label, b.width, b.height, points, &body)
}

/// One row of a horizontal bar chart.
#[derive(Debug, Clone)]
pub struct HBar {
    /// Row label.
    pub label: String,
    /// Value.
    pub value: f64,
    /// A threshold drawn as a red mark on the row.
    pub threshold: Option<f64>,
    /// Draw the bar red.
    pub highlight: bool,
}

/// A horizontal bar chart, one row per item (null ratios, reasons, top values).
pub fn hbars(kind: &str, label: &str, rows: &[HBar], fmt: Fmt, width: f64) -> String {
    // Room for the longest label, within limits.
    let longest = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let lw = (longest * 6.2 + 12.0).clamp(60.0, width * 0.45);
    let (rw, mt, row) = (78.0, 24.0, 20.0);
    let label_chars = ((lw - 8.0) / 6.2).max(4.0) as usize;
    let height = mt + rows.len().max(1) as f64 * row + 8.0;
    if rows.is_empty() {
        return no_data(kind, label, width, height.max(60.0));
    }
    let pw = width - lw - rw;
    let max = rows
        .iter()
        .flat_map(|r| [Some(r.value), r.threshold])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let (top, step) = zero_axis(max, fmt);
    let x = |v: f64| lw + v.max(0.0) / top * pw;
    let mut body = String::new();
    let bottom = mt + rows.len() as f64 * row;
    for t in ticks(0.0, top, step) {
        line(&mut body, x(t), mt - 4.0, x(t), bottom, GRID, "");
        text(&mut body, x(t), mt - 8.0, "middle", 10, &fmt.axis(t, top));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = mt + i as f64 * row;
        let full = format!("{}: {}", r.label, fmt.full(r.value));
        let _ = write!(
            body,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"{}\"><title>{}</title>{}</text>",
            lw - 6.0,
            y + 14.0,
            if r.highlight { RED } else { LABEL },
            esc(&r.label),
            esc(&clip(&r.label, label_chars))
        );
        let w = if r.value > 0.0 {
            (x(r.value) - lw).max(1.5)
        } else {
            0.0
        };
        rect(
            &mut body,
            lw,
            y + 3.0,
            w,
            14.0,
            if r.highlight { RED } else { BLUE },
            &full,
        );
        text(
            &mut body,
            lw + w + 4.0,
            y + 14.0,
            "start",
            10,
            &fmt.full(r.value),
        );
        if let Some(t) = r.threshold.filter(|t| t.is_finite()) {
            let _ = write!(
                body,
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"{RED}\" stroke-width=\"2\" stroke-dasharray=\"3,2\"><title>threshold {3}</title></line>",
                x(t),
                y + 1.0,
                y + 19.0,
                esc(&fmt.full(t))
            );
        }
    }
    line(&mut body, lw, mt - 4.0, lw, bottom, AXIS, "");
    wrap(kind, label, width, height, rows.len(), &body)
}

/// An equal-width histogram between `lower` and `upper`.
pub fn histogram(
    kind: &str,
    label: &str,
    lower: f64,
    upper: f64,
    counts: &[u64],
    fmt: Fmt,
    (width, height): (f64, f64),
) -> String {
    if counts.is_empty() || counts.iter().all(|c| *c == 0) {
        return no_data(kind, label, width, height);
    }
    let (ml, mr, mt, mb) = (44.0, 10.0, 8.0, 30.0);
    let (pw, ph) = (width - ml - mr, height - mt - mb);
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let (top, step) = zero_axis(max, Fmt::Count);
    let y = |v: f64| mt + ph - v / top * ph;
    let mut body = String::new();
    for t in ticks(0.0, top, step) {
        line(&mut body, ml, y(t), ml + pw, y(t), GRID, "");
        text(&mut body, ml - 5.0, y(t) + 4.0, "end", 10, &compact(t));
    }
    let n = counts.len();
    let span = upper - lower;
    // One value only: a single narrow bar in the middle, not a wall.
    let single = n == 1 || span == 0.0;
    let (x0, bw) = if single {
        (ml + pw * 0.4, pw * 0.2)
    } else {
        (ml, pw / n as f64)
    };
    let edge = |i: usize| lower + span * i as f64 / n as f64;
    for (i, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let h = (*c as f64 / top * ph).max(1.5);
        let tip = if single {
            format!("{}: {} rows", fmt.full(lower), count(*c))
        } else {
            format!(
                "{} to {}: {} rows",
                fmt.full(edge(i)),
                fmt.full(edge(i + 1)),
                count(*c)
            )
        };
        rect(
            &mut body,
            x0 + i as f64 * bw + 0.5,
            mt + ph - h,
            (bw - 1.0).max(1.0),
            h,
            BLUE,
            &tip,
        );
    }
    line(&mut body, ml, y(0.0), ml + pw, y(0.0), AXIS, "");
    let ly = mt + ph + 14.0;
    if single {
        text(
            &mut body,
            ml + pw / 2.0,
            ly,
            "middle",
            10,
            &fmt.axis(lower, 0.0),
        );
    } else {
        text(&mut body, ml, ly, "start", 10, &fmt.axis(lower, span));
        text(&mut body, ml + pw, ly, "end", 10, &fmt.axis(upper, span));
        if fmt != Fmt::TimeMicros || span >= 2.0 * 86_400e6 {
            text(
                &mut body,
                ml + pw / 2.0,
                ly,
                "middle",
                10,
                &fmt.axis(lower + span / 2.0, span),
            );
        }
    }
    wrap(kind, label, width, height, n, &body)
}

/// Quantiles per category as box plots: whiskers p01..p99, box p25..p75,
/// a line at the median.
pub fn boxes(
    kind: &str,
    label: &str,
    categories: &[String],
    quantiles: &[[f64; 5]],
    fmt: Fmt,
    (width, height): (f64, f64),
) -> String {
    let n = categories.len().min(quantiles.len());
    if n == 0 {
        return no_data(kind, label, width, height);
    }
    let (ml, mr, mt, mb) = (48.0, 10.0, 10.0, 30.0);
    let (pw, ph) = (width - ml - mr, height - mt - mb);
    let finite = quantiles[..n].iter().flatten().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, |a, b| a.min(*b));
    let hi = finite.fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let (lo, hi) = if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo <= 0.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    };
    let step = nice_step(hi - lo, 4);
    let (y0, y1) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let y = |v: f64| mt + ph - (v - y0) / (y1 - y0) * ph;
    let mut body = String::new();
    for t in ticks(y0, y1, step) {
        line(&mut body, ml, y(t), ml + pw, y(t), GRID, "");
        text(
            &mut body,
            ml - 5.0,
            y(t) + 4.0,
            "end",
            10,
            &fmt.axis(t, y1 - y0),
        );
    }
    let band = pw / n as f64;
    let bw = (band * 0.6).clamp(2.0, 18.0);
    for (i, q) in quantiles[..n].iter().enumerate() {
        if q.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let cx = ml + (i as f64 + 0.5) * band;
        let tip = format!(
            "{}: p01 {} · p25 {} · median {} · p75 {} · p99 {}",
            categories[i],
            fmt.full(q[0]),
            fmt.full(q[1]),
            fmt.full(q[2]),
            fmt.full(q[3]),
            fmt.full(q[4])
        );
        let _ = write!(body, "<g><title>{}</title>", esc(&tip));
        line(
            &mut body,
            cx,
            y(q[0]),
            cx,
            y(q[4]),
            BLUE,
            "stroke-width=\"1\"",
        );
        let top = y(q[3]);
        let _ = write!(
            body,
            "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#c9d8f5\" stroke=\"{BLUE}\"/>",
            cx - bw / 2.0,
            (y(q[1]) - top).max(1.0)
        );
        line(
            &mut body,
            cx - bw / 2.0,
            y(q[2]),
            cx + bw / 2.0,
            y(q[2]),
            "#1d3f8a",
            "stroke-width=\"2\"",
        );
        body.push_str("</g>");
    }
    let ly = mt + ph + 16.0;
    let mut shown = vec![0];
    if n > 2 {
        shown.push(n / 2);
    }
    if n > 1 {
        shown.push(n - 1);
    }
    for i in shown {
        let anchor = if n == 1 || (i > 0 && i < n - 1) {
            "middle"
        } else if i == 0 {
            "start"
        } else {
            "end"
        };
        let x = match anchor {
            "start" => ml,
            "end" => ml + pw,
            _ => ml + (i as f64 + 0.5) * band,
        };
        text(
            &mut body,
            x,
            ly,
            anchor,
            10,
            &clip(categories[i].trim_start_matches("dt="), 16),
        );
    }
    wrap(kind, label, width, height, n, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("dt=2024-01-{:02}", i + 1)).collect()
    }

    #[test]
    fn nice_axes() {
        assert_eq!(zero_axis(0.0, Fmt::Count), (1.0, 1.0));
        assert_eq!(zero_axis(3.0, Fmt::Count), (3.0, 1.0));
        assert_eq!(zero_axis(5496.0, Fmt::Count), (6000.0, 2000.0));
        let (top, step) = zero_axis(0.248, Fmt::Ratio);
        assert!(
            (top - 0.3).abs() < 1e-9 && (step - 0.1).abs() < 1e-9,
            "{top} {step}"
        );
        assert_eq!(
            ticks(0.0, 6000.0, 2000.0),
            vec![0.0, 2000.0, 4000.0, 6000.0]
        );
    }

    #[test]
    fn bar_charts_draw_one_mark_per_non_zero_value() {
        let categories = cats(3);
        let series = vec![
            Series {
                name: "curated rows".into(),
                color: BLUE,
                values: vec![10.0, 0.0, 30.0],
            },
            Series {
                name: "duplicates".into(),
                color: AMBER,
                values: vec![1.0, 2.0, 0.0],
            },
        ];
        let svg = bars(&Bars {
            kind: "volume",
            label: "rows <per> partition",
            categories: &categories,
            series: &series,
            stacked: true,
            highlight: &[false, true],
            highlight_label: "breach",
            fmt: Fmt::Count,
            width: 600.0,
            height: 240.0,
        });
        assert!(svg.starts_with("<svg class=\"chart\" data-chart=\"volume\" data-points=\"6\""));
        assert!(
            svg.contains("aria-label=\"rows &lt;per&gt; partition\""),
            "{svg}"
        );
        // 4 bars, 2 legend squares, 1 legend square and 1 band for the highlight.
        assert_eq!(svg.matches("<rect").count(), 4 + 2 + 2, "{svg}");
        assert!(svg.contains("dt=2024-01-03 · curated rows: 30"), "{svg}");
        assert!(svg.ends_with("</svg>"));
        let empty = bars(&Bars {
            categories: &[],
            ..Bars {
                kind: "volume",
                label: "x",
                categories: &categories,
                series: &series,
                stacked: false,
                highlight: &[],
                highlight_label: "",
                fmt: Fmt::Count,
                width: 600.0,
                height: 240.0,
            }
        });
        assert!(empty.contains("data-points=\"0\"") && empty.contains("no data"));
    }

    #[test]
    fn hbars_mark_thresholds_and_highlights() {
        let rows = vec![
            HBar {
                label: "passenger_count".into(),
                value: 0.02,
                threshold: Some(0.1),
                highlight: false,
            },
            HBar {
                label: "<b>".into(),
                value: 0.3,
                threshold: Some(0.2),
                highlight: true,
            },
        ];
        let svg = hbars("nulls", "null ratios", &rows, Fmt::Ratio, 800.0);
        assert!(svg.contains("data-points=\"2\""));
        assert!(svg.contains("threshold 10.00%"), "{svg}");
        assert!(svg.contains(&format!("fill=\"{RED}\"")), "{svg}");
        assert!(
            svg.contains("&lt;b&gt;: 30.00%") && !svg.contains("<b>"),
            "{svg}"
        );
    }

    #[test]
    fn histograms_and_boxes() {
        let svg = histogram(
            "hist",
            "fare",
            0.0,
            100.0,
            &[5, 0, 3],
            Fmt::Number,
            (300.0, 150.0),
        );
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("0 to 33.33: 5 rows"), "{svg}");
        let t = histogram(
            "hist",
            "pickup",
            1705881604000000.0,
            1705967971000000.0,
            &[1, 2],
            Fmt::TimeMicros,
            (300.0, 150.0),
        );
        assert!(t.contains("01-22 00:00"), "{t}");
        assert!(
            histogram("hist", "x", 0.0, 0.0, &[], Fmt::Number, (300.0, 150.0)).contains("no data")
        );
        let svg = boxes(
            "quantiles",
            "fare",
            &cats(2),
            &[[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]],
            Fmt::Number,
            (300.0, 150.0),
        );
        assert!(svg.contains("data-points=\"2\""));
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("median 3"), "{svg}");
    }
}
