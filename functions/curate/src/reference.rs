//! Reference tables: small CSV lookups (`contracts/reference/<name>.csv`,
//! embedded at build time) that the curate stage joins onto rows. Parsed once
//! at cold start; a malformed table is a configuration error naming the file
//! and the line.

use std::collections::HashMap;

use sluice::{Error, Result};

/// A parsed reference table: a header and rows of optional cells (an empty
/// cell is null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceTable {
    /// Table name (the file stem).
    pub name: String,
    /// Column names from the header, in file order.
    pub columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    /// The file line of each row, for messages.
    lines: Vec<u64>,
}

/// Where a reference table comes from, for messages.
pub fn reference_path(name: &str) -> String {
    format!("contracts/reference/{name}.csv")
}

fn bad(name: &str, place: &str, reason: impl Into<String>) -> Error {
    Error::config(
        format!("reference table {}{place}", reference_path(name)),
        reason,
    )
}

impl ReferenceTable {
    /// Parse CSV text with a header row. Every row must have as many cells as
    /// the header; header names must be unique and non-empty.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| bad(name, " header", e.to_string()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if columns.is_empty() || columns.iter().any(String::is_empty) {
            return Err(bad(name, " header", "has an empty column name"));
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(bad(name, " header", format!("column {c:?} appears twice")));
            }
        }
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bad(name, &format!(" line {line}"), e.to_string())
            })?;
            lines.push(record.position().map(|p| p.line()).unwrap_or(0));
            rows.push(
                record
                    .iter()
                    .map(|cell| {
                        let cell = cell.trim();
                        (!cell.is_empty()).then(|| cell.to_string())
                    })
                    .collect(),
            );
        }
        Ok(ReferenceTable {
            name: name.to_string(),
            columns,
            rows,
            lines,
        })
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cell at `row`, `col` (null when empty or out of range).
    pub fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self.rows.get(row)?.get(col)?.as_deref()
    }

    /// Index the rows by an integer key column. Keys must be present, unique
    /// and integers.
    pub fn int_index(&self, key: usize) -> Result<HashMap<i64, usize>> {
        self.index_by(key, |raw| {
            raw.parse()
                .map_err(|_| format!("key {raw:?} is not an integer"))
        })
    }

    /// Index the rows by a text key column. Keys must be present and unique.
    pub fn text_index(&self, key: usize) -> Result<HashMap<String, usize>> {
        self.index_by(key, |raw| Ok(raw.to_string()))
    }

    /// Index the rows by a key column, parsing each key with `parse`; an
    /// empty, unparseable or repeated key is an error naming the line.
    fn index_by<K: std::hash::Hash + Eq + std::fmt::Debug>(
        &self,
        key: usize,
        parse: impl Fn(&str) -> std::result::Result<K, String>,
    ) -> Result<HashMap<K, usize>> {
        let mut index = HashMap::with_capacity(self.rows.len());
        for (row, cells) in self.rows.iter().enumerate() {
            let line = format!(" line {}", self.lines.get(row).copied().unwrap_or(0));
            let raw = cells
                .get(key)
                .and_then(Option::as_deref)
                .ok_or_else(|| bad(&self.name, &line, "the key cell is empty"))?;
            let k = parse(raw).map_err(|reason| bad(&self.name, &line, reason))?;
            if index.contains_key(&k) {
                return Err(bad(&self.name, &line, format!("key {k:?} appears twice")));
            }
            index.insert(k, row);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cells_and_indexes_keys() {
        let t = ReferenceTable::parse("z", "id,name,extra\n1,One,\n2, Two ,x\n").unwrap();
        assert_eq!(t.columns, vec!["id", "name", "extra"]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.cell(1, 1), Some("Two"));
        assert_eq!(t.cell(0, 2), None, "empty cell is null");
        let idx = t.int_index(0).unwrap();
        assert_eq!(idx[&2], 1);
        assert_eq!(t.text_index(1).unwrap()["One"], 0);
    }

    #[test]
    fn malformed_tables_name_the_file_and_line() {
        let err = ReferenceTable::parse("z", "id,name\n1,a\n2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("contracts/reference/z.csv line 3"), "{err}");
        let err = ReferenceTable::parse("z", "id,name\n1,a\n1,b\n")
            .unwrap()
            .int_index(0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("twice"), "{err}");
        let err = ReferenceTable::parse("z", "id,name\nx,a\n")
            .unwrap()
            .int_index(0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an integer"), "{err}");
        let err = ReferenceTable::parse("z", "id,id\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
    }
}
