//! Structural comparison of two JSON documents (profiles): every path whose
//! values differ, with both values. Arrays of objects that each carry a
//! unique `"name"` (the profile's `columns`) are matched by name, not by
//! position, so an added column shows as one path rather than a shift.

use std::collections::BTreeSet;

use serde_json::Value;

/// One differing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDiff {
    /// `$.columns[name=fare_amount].numeric.mean`.
    pub path: String,
    /// The prod value (compact JSON), or `(missing)`.
    pub prod: String,
    /// The ghost value, or `(missing)`.
    pub ghost: String,
}

/// The differences between two documents.
#[derive(Debug, Clone, Default)]
pub struct JsonDiff {
    /// How many paths differ.
    pub count: usize,
    /// The first `limit` of them, in document order.
    pub samples: Vec<PathDiff>,
}

/// Compare two documents, keeping at most `limit` sample paths. Paths in
/// `ignore`, and everything below them, are left out.
pub fn diff(prod: &Value, ghost: &Value, ignore: &[String], limit: usize) -> JsonDiff {
    let mut out = JsonDiff::default();
    let mut w = Walk {
        ignore,
        limit,
        out: &mut out,
    };
    w.walk("$".to_string(), Some(prod), Some(ghost));
    out
}

/// Whether `path` is `prefix` or below it (`$.object` covers `$.object.etag`
/// and `$.object[0]`, not `$.objects`).
pub fn covered(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// A value for a report cell: compact JSON, long ones shortened.
pub fn render(v: Option<&Value>) -> String {
    match v {
        None => "(missing)".to_string(),
        Some(v) => super::shorten(&serde_json::to_string(v).unwrap_or_default()),
    }
}

struct Walk<'a> {
    ignore: &'a [String],
    limit: usize,
    out: &'a mut JsonDiff,
}

impl Walk<'_> {
    fn walk(&mut self, path: String, p: Option<&Value>, g: Option<&Value>) {
        if self.ignore.iter().any(|i| covered(&path, i)) {
            return;
        }
        match (p, g) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    self.walk(field_path(&path, k), a.get(k), b.get(k));
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => match (names(a), names(b)) {
                (Some(na), Some(nb)) => {
                    let mut order: Vec<&str> = na.clone();
                    order.extend(nb.iter().filter(|n| !na.contains(n)));
                    for n in order {
                        let pick = |arr: &[Value]| {
                            arr.iter()
                                .find(|v| v.get("name").and_then(Value::as_str) == Some(n))
                                .cloned()
                        };
                        let (x, y) = (pick(a), pick(b));
                        self.walk(format!("{path}[name={n}]"), x.as_ref(), y.as_ref());
                    }
                }
                _ => {
                    for i in 0..a.len().max(b.len()) {
                        self.walk(format!("{path}[{i}]"), a.get(i), b.get(i));
                    }
                }
            },
            (x, y) => {
                if x != y {
                    self.out.count += 1;
                    if self.out.samples.len() < self.limit {
                        self.out.samples.push(PathDiff {
                            path,
                            prod: render(x),
                            ghost: render(y),
                        });
                    }
                }
            }
        }
    }
}

/// The `name` of every element when all are objects with unique string names.
fn names(arr: &[Value]) -> Option<Vec<&str>> {
    if arr.is_empty() {
        return None;
    }
    let names: Vec<&str> = arr
        .iter()
        .map(|v| v.get("name").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    (unique.len() == names.len()).then_some(names)
}

fn field_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identical_documents_have_no_differences() {
        let v = json!({"a": [1, 2, {"b": null}], "c": "x"});
        let d = diff(&v, &v.clone(), &[], 10);
        assert_eq!(d.count, 0);
        assert!(d.samples.is_empty());
    }

    #[test]
    fn differences_are_reported_by_path_with_both_values() {
        let prod = json!({
            "row_count": 10,
            "columns": [
                {"name": "fare", "numeric": {"mean": 12.5}},
                {"name": "tip", "numeric": {"mean": 1.0}}
            ],
            "checks": [{"check": "min_rows", "status": "pass"}],
            "odd key": 1
        });
        let ghost = json!({
            "row_count": 10,
            "columns": [
                {"name": "tip", "numeric": {"mean": 1.0}},
                {"name": "fare", "numeric": {"mean": 13.75}},
                {"name": "extra", "numeric": {"mean": 0.0}}
            ],
            "checks": [{"check": "min_rows", "status": "fail"}],
            "odd key": 2
        });
        let d = diff(&prod, &ghost, &[], 10);
        let got: Vec<(&str, &str, &str)> = d
            .samples
            .iter()
            .map(|p| (p.path.as_str(), p.prod.as_str(), p.ghost.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("$.checks[0].status", "\"pass\"", "\"fail\""),
                ("$.columns[name=fare].numeric.mean", "12.5", "13.75"),
                (
                    "$.columns[name=extra]",
                    "(missing)",
                    "{\"name\":\"extra\",\"numeric\":{\"mean\":0.0}}"
                ),
                ("$[\"odd key\"]", "1", "2"),
            ]
        );
        assert_eq!(d.count, 4);
        let limited = diff(&prod, &ghost, &[], 1);
        assert_eq!(
            limited.count, 4,
            "the count is complete even when the sample is not"
        );
        assert_eq!(limited.samples.len(), 1);
        let ignored = diff(
            &prod,
            &ghost,
            &["$.columns".into(), "$.checks[0]".into()],
            10,
        );
        assert_eq!(ignored.count, 1, "{:?}", ignored.samples);
        assert!(covered("$.object.etag", "$.object"));
        assert!(covered("$.object", "$.object"));
        assert!(!covered("$.objects", "$.object"));
    }
}
