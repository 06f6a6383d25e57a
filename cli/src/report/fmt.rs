//! Text helpers of the report: HTML escaping and number formatting.

use chrono::{DateTime, Utc};

/// Escape text for HTML and SVG, in element content and in quoted
/// attribute values alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed
            // in HTML text; show them as the replacement character.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An integer with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short form for axis labels: `950`, `1.2k`, `3.4M`, `0.25`.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if scaled.fract() == 0.0 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        trim(format!("{scaled:.1}"))
    } else if scaled.abs() >= 0.1 || scaled == 0.0 {
        trim(format!("{scaled:.2}"))
    } else {
        trim(format!("{scaled:.3}"))
    };
    format!("{s}{suffix}")
}

/// A measured value: integers with separators, others with a precision
/// that suits their size.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        let s = count(a as u64);
        return if v < 0.0 { format!("-{s}") } else { s };
    }
    if a >= 1e6 {
        return compact(v);
    }
    let s = if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    };
    trim(s)
}

/// A ratio as a percentage: `2.13%`, `<0.01%` for tiny non-zero ones.
pub fn pct(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "n/a".into();
    }
    if ratio > 0.0 && ratio < 0.0001 {
        return "<0.01%".into();
    }
    format!("{:.2}%", ratio * 100.0)
}

/// Microseconds since the epoch as a UTC date and time (`2024-01-22 13:05`).
pub fn time_us(us: f64) -> String {
    if !us.is_finite() {
        return us.to_string();
    }
    match DateTime::from_timestamp_micros(us as i64) {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => num(us),
    }
}

/// A UTC time for tables (`2024-01-22 13:05:09Z`).
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Bytes in binary units: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn trim(s: String) -> String {
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            esc(r#"<script>alert("x&y")</script> it's"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; it&#39;s"
        );
        assert_eq!(esc("a\u{0}b\nc"), "a\u{FFFD}b\nc");
        assert_eq!(esc("Zürich ✓"), "Zürich ✓");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(12_500.0), "12.5k");
        assert_eq!(compact(3_400_000.0), "3.4M");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(num(18.610664893617013), "18.61");
        assert_eq!(num(1504.0), "1,504");
        assert_eq!(num(-3.0), "-3");
        assert_eq!(num(0.021276), "0.0213");
        assert_eq!(pct(0.248), "24.80%");
        assert_eq!(pct(0.00001), "<0.01%");
        assert_eq!(pct(0.0), "0.00%");
        assert_eq!(time_us(1705881604000000.0), "2024-01-22 00:00");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
